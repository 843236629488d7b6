package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// TestClusterTransmitterReceiver: two nodes share an SMSC that takes no
// transceivers, with upstreams[].bind_mode transmitter_receiver, 2
// transmitters and 1 receiver. The carrier sees at most 2 transmitters
// and 1 receiver at once (the receivers are a cap of their own); every
// message goes out on a transmitter and its receipt comes in on the one
// receiver, whichever node holds it, and reaches the ESME on either
// node. When a node stops, the other takes its binds, the receiver
// included, and receipts go on.
func TestClusterTransmitterReceiver(t *testing.T) {
	t.Parallel()
	const binds, n = 2, 10
	etcd := clustertest.Start(t)
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true})
	node := func(id int) *proc {
		cfg := writeClusterConfig(t, id, etcd.Endpoints, simAddr, binds)
		replaceInConfig(t, cfg, fmt.Sprintf("    binds: %d\n", binds),
			fmt.Sprintf("    binds: %d\n    bind_mode: transmitter_receiver\n    receivers: 1\n", binds))
		p := startDaemon(t, cfg)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("node %d log:\n%s", id, p.log())
			}
		})
		return p
	}
	bound := func(what string, tx, rx int) {
		t.Helper()
		waitCond(t, 20*time.Second, what, func() bool {
			nt, _ := sim.BindsOfKind("up", smpp.BindTransmitter)
			nr, _ := sim.BindsOfKind("up", smpp.BindReceiver)
			return nt == tx && nr == rx
		})
	}
	n1, n2 := node(1), node(2)
	bound("2 transmitters and 1 receiver over the two nodes", binds, 1)
	// Each node's /readyz names its share, receivers included.
	for _, p := range []*proc{n1, n2} {
		code, body := postJSON(t, http.MethodGet, "http://"+p.httpAddr+"/readyz", "", "")
		if code != http.StatusOK || !strings.Contains(body, "receivers") {
			t.Errorf("node /readyz: %d %q, want 200 naming its receivers", code, body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sink := newSink()
	var ids []string
	for k, p := range []*proc{n1, n2} {
		c := dialAs(t, p.smppAddr, "esme", "secret1", sink.handler())
		got, _ := submitEach(ctx, t, c, fmt.Sprintf("138222%d%%04d", k), n, "over a transmitter")
		ids = append(ids, got...)
	}
	sink.waitAll(t, ids, 30*time.Second)

	n1.stop(t)
	bound("node 2 holding every bind once node 1 stopped", binds, 1)
	c := dialAs(t, n2.smppAddr, "esme", "secret1", sink.handler())
	more, _ := submitEach(ctx, t, c, "1383333%04d", n, "after the stop")
	sink.waitAll(t, more, 30*time.Second)

	for _, m := range sim.Received() {
		if m.Bind != smpp.BindTransmitter {
			t.Fatalf("message %s came on a %s bind", m.ID, m.Bind)
		}
	}
	for kind, most := range map[smpp.BindKind]int{smpp.BindTransmitter: binds, smpp.BindReceiver: 1, smpp.BindTransceiver: 0} {
		if _, peak := sim.BindsOfKind("up", kind); peak > most {
			t.Errorf("the SMSC saw %d %s binds at once, the cluster holds %d", peak, kind, most)
		}
	}
}

// TestDaemonOutbind: the daemon with bind_mode transmitter and an
// outbind_listen, against an SMSC that takes no transceivers and delivers
// by outbind. The daemon logs where it listens; the SMSC's outbind, its
// password read from outbind_password_file, is answered with a
// bind_receiver, the receipts come in on it, and the admin status counts
// the session. A stop unbinds it and exits 0.
func TestDaemonOutbind(t *testing.T) {
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true})
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "outbind.password")
	if err := os.WriteFile(pwFile, []byte("smscpw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, simAddr, "")
	replaceInConfig(t, cfg, "    binds: 2\n",
		"    binds: 2\n    bind_mode: transmitter\n    outbind_listen: 127.0.0.1:0\n    outbind_system_id: smsc\n    outbind_password_file: "+pwFile+"\n")
	p := startDaemon(t, cfg)
	addr, _ := p.waitLog(t, "upstream outbind listening", 0, 10*time.Second)["addr"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sim.Outbind(ctx, addr, "smsc", "smscpw"); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "upstream bound as a receiver after the SMSC's outbind", 0, 10*time.Second)
	sink := newSink()
	c := dialAs(t, p.smppAddr, "esme", "secret1", sink.handler())
	ids, _ := submitEach(ctx, t, c, "1385555%04d", 5, "its receipt by outbind")
	sink.waitAll(t, ids, 20*time.Second)
	var st struct {
		Upstreams []struct {
			OutbindSessions int `json:"outbind_sessions"`
		} `json:"upstreams"`
	}
	code, body := postJSON(t, http.MethodGet, "http://"+p.httpAddr+"/admin/v1/status", "test-token", "")
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("admin status: %d %s (%v)", code, body, err)
	}
	if len(st.Upstreams) != 1 || st.Upstreams[0].OutbindSessions != 1 {
		t.Errorf("admin status upstreams %+v, want 1 outbind session", st.Upstreams)
	}
	if _, peak := sim.BindsOfKind("up", smpp.BindReceiver); peak != 1 {
		t.Errorf("the SMSC saw %d receivers at once, want the outbind's 1", peak)
	}
	var stdout, stderr strings.Builder
	if code := runIO(strings.NewReader(""), []string{"admin", "--api", "http://" + p.httpAddr, "--token", "test-token", "daemon", "status"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "2/2 binds up, 1 outbind sessions") {
		t.Errorf("daemon status: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	p.stop(t) // exits 0: the session unbound, the listener closed
}

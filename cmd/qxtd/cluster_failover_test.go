package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// TestClusterFailover: two nodes, two upstreams serving China Mobile,
// "sim" first with one bind (so one node holds it and the other relays
// through it) and "backup" second, delivery.failover_after 1s.
//   - While sim's one bind is up on either node, neither node routes
//     around it, past failover_after too: the node without the bind
//     knows from the other's published upstreams that it is up.
//   - Once sim's SMSC is gone, both nodes' /readyz say "routed around"
//     after failover_after, and new messages from either node go to the
//     backup.
//   - Once it is back, both route to it again; messages routed to it
//     before the failover waited and go to it then.
//
// Every number reaches one SMSC once and every receipt its ESME. Before,
// a cluster ignored failover_after.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	etcd := clustertest.Start(t)
	primary, primaryAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	backup, backupAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	node := func(id int) *proc {
		cfg := writeClusterConfig(t, id, etcd.Endpoints, primaryAddr, 1)
		replaceInConfig(t, cfg, "    reconnect_max: 200ms\n", "    reconnect_max: 200ms\n    carriers: [china_mobile]\n"+
			"  - { name: backup, addr: "+backupAddr+", system_id: up, password: uppw, binds: 2, window: 50, resp_timeout: 2s, reconnect_max: 200ms, carriers: [china_mobile] }\n")
		replaceInConfig(t, cfg, "dlr_retry: 500ms }", "dlr_retry: 500ms, failover_after: 1s }")
		p := startDaemon(t, cfg)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("node %d log:\n%s", id, p.log())
			}
		})
		return p
	}
	n1, n2 := node(1), node(2)
	nodes := []*proc{n1, n2}
	waitCond(t, 20*time.Second, "sim's bind and backup's two up", func() bool {
		p, _ := primary.Binds("up")
		b, _ := backup.Binds("up")
		return p == 1 && b == 2
	})
	routedAround := func(p *proc) bool {
		_, body := postJSON(t, http.MethodGet, "http://"+p.httpAddr+"/readyz", "", "")
		for _, part := range strings.Split(body, ";") {
			if strings.Contains(part, "upstream sim ") {
				return strings.Contains(part, "routed around")
			}
		}
		t.Fatalf("/readyz names no upstream sim: %q", body)
		return false
	}

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	sink := newSink()
	esmes := []*smpp.Conn{
		dialAs(t, n1.smppAddr, "esme", "secret1", sink.handler()),
		dialAs(t, n2.smppAddr, "esme", "secret1", sink.handler()),
	}
	want := map[string]string{} // number → the SMSC it must reach
	var ids []string
	send := func(format, to string) {
		t.Helper()
		for k, c := range esmes {
			got, dests := submitEach(ctx, t, c, fmt.Sprintf(format, k), 3, "failover")
			ids = append(ids, got...)
			for d := range dests {
				want[d] = to
			}
		}
	}

	// 1. sim up: past failover_after, from both nodes, everything goes to it.
	past := time.NewTimer(1500 * time.Millisecond) // failover_after and more: the window a wrong failover would need
	<-past.C
	for _, p := range nodes {
		if routedAround(p) {
			t.Fatalf("node at %s routes around sim while its bind is up on a node", p.httpAddr)
		}
	}
	send("137100%d%%04d", "primary")
	sink.waitAll(t, ids, 30*time.Second)

	// 2. sim's SMSC goes away: what is sent at once is queued for it;
	// once failover_after has passed, both nodes send to the backup, and
	// move what was queued for sim there too (delivery.failover_queued).
	_ = primary.Close()
	waitCond(t, 20*time.Second, "sim down", func() bool { p, _ := primary.Binds("up"); return p == 0 })
	waiting := len(ids)
	send("137200%d%%04d", "backup")
	waitCond(t, 20*time.Second, "both nodes routing around sim", func() bool { return routedAround(n1) && routedAround(n2) })
	held := ids[waiting:]
	// The admin status says so too, on the node without sim's bind as well.
	for _, p := range nodes {
		code, body := postJSON(t, http.MethodGet, "http://"+p.httpAddr+"/admin/v1/status", "test-token", "")
		if code != http.StatusOK || !strings.Contains(body, `"name":"sim","binds_up":0,"binds_configured":1,"receivers_up":0,"receivers_configured":0,"outbind_sessions":0,"routed_around":true,"queued":`) {
			t.Errorf("admin status: %d %s, want sim routed around", code, body)
		}
	}
	send("137300%d%%04d", "backup")
	sink.waitAll(t, ids[waiting:], 30*time.Second)
	if len(held) == 0 {
		t.Fatal("nothing was queued for sim")
	}

	// 3. sim's SMSC is back on its address: new messages from both nodes
	// go to it.
	again := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", DLRDelay: 10 * time.Millisecond, Record: true})
	l, err := net.Listen("tcp", primaryAddr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = again.Serve(l) }()
	t.Cleanup(func() { _ = again.Close() })
	waitCond(t, 20*time.Second, "both nodes routing to sim again", func() bool {
		b, _ := again.Binds("up")
		return b == 1 && !routedAround(n1) && !routedAround(n2)
	})
	send("137400%d%%04d", "primary again")
	sink.waitAll(t, ids, 30*time.Second)

	where := map[string][]string{}
	for name, s := range map[string]*smpp.Simulator{"primary": primary, "backup": backup, "primary again": again} {
		for _, m := range s.Received() {
			where[m.Dest] = append(where[m.Dest], name)
		}
	}
	for d, w := range want {
		if got := where[d]; len(got) != 1 || got[0] != w {
			t.Errorf("%s reached %v, want %s once", d, got, w)
		}
	}
	if len(where) != len(want) {
		t.Errorf("the SMSCs got %d numbers, want %d", len(where), len(want))
	}
}

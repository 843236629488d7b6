package main

import (
	"context"
	"fmt"
	"os"
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
	const binds, n = 2, 10
	etcd := clustertest.Start(t)
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true})
	node := func(id int) *proc {
		cfg := writeClusterConfig(t, id, etcd.Endpoints, simAddr, binds)
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mode := fmt.Sprintf("    binds: %d\n    bind_mode: transmitter_receiver\n    receivers: 1\n", binds)
		if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), fmt.Sprintf("    binds: %d\n", binds), mode, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
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

package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// TestClusterHandoverDrainsTheBind: when a node joins, a node that held
// more than its share of an upstream's binds gives one away. The bind it
// gives away still has segments out at the SMSC: it waits for their
// answers before it unbinds, and the joining node binds only once the
// slot is free. Nothing is cut and sent again: every segment reaches the
// SMSC once, every receipt reaches the ESME, and the carrier never sees
// more binds than it allows.
func TestClusterHandoverDrainsTheBind(t *testing.T) {
	t.Parallel()
	const binds, n = 2, 20
	etcd := clustertest.Start(t)
	// Held, not delayed: the answers wait for the test, however slowly the
	// second node starts.
	hold := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(release) // a failed test must not leave qxtd's stops waiting
	sim, simAddr := startSim(t, smpp.SimOptions{MaxBinds: binds, DLRDelay: 10 * time.Millisecond, Faults: smpp.Faults{Hold: hold}})
	node := func(id int) *proc {
		cfg := writeClusterConfig(t, id, etcd.Endpoints, simAddr, binds)
		// The answers are held for seconds here; the default test config's
		// 2 s would time the segments out and send them again.
		setRespTimeout(t, cfg, "30s")
		p := startDaemon(t, cfg)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("node %d log:\n%s", id, p.log())
			}
		})
		return p
	}

	n1 := node(1)
	waitCond(t, 15*time.Second, "node 1 alone holding both binds", func() bool {
		now, _ := sim.Binds("up")
		return now == binds
	})
	sink := newSink()
	c := dialAs(t, n1.smppAddr, "esme", "secret1", sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids, dests := submitEach(ctx, t, c, "1381111%04d", n, "out at the SMSC at the handover")
	waitCond(t, 10*time.Second, fmt.Sprintf("all %d segments out at the SMSC", n), func() bool {
		return sim.Answering() == n
	})

	n2 := node(2)
	n1.waitLog(t, "cluster: giving this bind to another node", 0, 20*time.Second)
	// The bind given away waits for its segments' answers: it stays up,
	// nothing out is cut, and node 2 cannot bind meanwhile.
	settle := time.NewTimer(500 * time.Millisecond)
	<-settle.C
	if now, _ := sim.Binds("up"); now != binds {
		t.Errorf("%d binds up while the answers are held, want %d (the bind given away must wait for them)", now, binds)
	}
	if got := sim.Answering(); got != n {
		t.Errorf("%d segments out at the SMSC while the answers are held, want %d", got, n)
	}
	if strings.Contains(n2.log(), `"msg":"upstream bound"`) {
		t.Errorf("node 2 bound while node 1's bind still had segments out")
	}

	sim.SetFaults(smpp.Faults{})
	release()
	n2.waitLog(t, "upstream bound", 0, 20*time.Second)
	sink.waitAll(t, ids, 30*time.Second)
	// Arrived, not Received: the simulator records a message only when it
	// answers, so a segment cut off while held and sent again would be
	// received once but have arrived twice.
	arrived := sim.Arrived()
	for dst := range dests {
		if arrived[dst] != 1 {
			t.Errorf("%s reached the SMSC %d times, want once", dst, arrived[dst])
		}
	}
	if _, peak := sim.Binds("up"); peak > binds {
		t.Errorf("the SMSC saw %d binds at once, it allows %d", peak, binds)
	}

	// Node 2 sends, now that it holds a bind (the receipt may come back
	// over either node's bind and reach either session of the account).
	c2 := dialAs(t, n2.smppAddr, "esme", "secret1", sink.handler())
	id, err := submit(ctx, c2, "13811119999", "through node 2")
	if err != nil {
		t.Fatal(err)
	}
	sink.waitAll(t, []string{id}, 30*time.Second)
}

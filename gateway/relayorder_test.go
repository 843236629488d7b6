package gateway_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// relayedTo waits until node 1 sees the receivers bound on node 2.
func relayedTo(t *testing.T, b *bindBoard, n int) {
	t.Helper()
	eventually(t, 5*time.Second, "node 1 sees the receivers on node 2", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.binds[2]) == n
	})
}

// TestRelayedRepliesInOrder: replies that came in on node 1 reach
// alice's bind on node 2 in the order they came, however her ESME's
// answers come back, several unanswered at once. Before, node 2 sent a
// request's deliveries side by side, in whatever order its goroutines
// ran.
func TestRelayedRepliesInOrder(t *testing.T) {
	const n = 200
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2)
	var want []string
	for i := range n {
		text := fmt.Sprintf("r%03d", i)
		if err := n1.sim.InjectMO("13712345678", "10657500112", text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	// Bound after the replies are stored: node 1 hands them over in
	// requests of many.
	e := bindWindowESME(t, n2.rig, "alice", "secret1")
	relayedTo(t, b, 1)
	got := e.wait(t, n)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alice got %v\nwant %v", got, want)
	}
	e.mu.Lock()
	maxOpen := e.maxOpen
	e.mu.Unlock()
	if maxOpen < 2 {
		t.Errorf("at most %d unanswered at once: one at a time", maxOpen)
	}
	waitFor(t, 10*time.Second, "every reply acknowledged on node 1", func() bool {
		pending, err := n1.store.PendingMOs("E1", 0, nil)
		return err == nil && len(pending) == 0
	})
	if got := relayed(t, n1.rig, gateway.DeliveryMO, string(gateway.PeerDelivered)); got != n {
		t.Errorf("node 1 counted %v replies delivered by node 2, want %d", got, n)
	}
}

// TestRelayedRepliesThrottled: an ESME on node 2 that answers a reply
// node 1 handed over with ESME_RTHROTTLED gets nothing new for
// delivery.retry_min, as from its local forwarder: what was in flight
// (at most 32, node 2's deliveries at once) goes on, the rest of node
// 1's request is answered "throttled" unsent, and node 1 backs off and
// sends it later. Before, node 2 sent the whole request (64) regardless.
// Every reply reaches the ESME once.
func TestRelayedRepliesThrottled(t *testing.T) {
	const n = 100
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2, func(c *gateway.Config) { c.RetryMin, c.RetryMax = 300*time.Millisecond, time.Second })
	for i := range n {
		if err := n1.sim.InjectMO("13712345678", "10657500112", fmt.Sprintf("r%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := bindThrottlingESME(t, n2.rig, "alice", "secret1", smpp.BindReceiver, 1, 5*time.Millisecond)
	relayedTo(t, b, 1)
	e.wait(t, n)
	for text, k := range e.took {
		if k != 1 {
			t.Errorf("%q taken %d times", text, k)
		}
	}
	e.mu.Lock()
	times, throttledAt := slices.Clone(e.times), e.throttled[0]
	e.mu.Unlock()
	// In the pause's first half, from the throttle's answer, no more
	// than what was in flight then (the window, 32). Counted from the
	// throttled deliver_sm's arrival instead, a loaded machine that runs
	// its handler late counts what the answers before it let in (57 once
	// in CI, against a bound of 40). What tells a pause from none is the
	// throttled answers counted below: without the pause (sabotaged)
	// node 2 answered 1, not at least 2, while this count stayed 32-33.
	during := 0
	for _, at := range times[1:] {
		if at.After(throttledAt) && at.Sub(throttledAt) < 150*time.Millisecond {
			during++
		}
	}
	t.Logf("%d replies came within 150 ms of the throttle; %d deliver_sm in all", during, len(times))
	if during > 40 {
		t.Errorf("%d replies came within 150 ms of the throttle (retry_min 300 ms), want what was in flight (≤ 32)", during)
	}
	if got := counters(t, n2.rig)["qxtd_cluster_deliveries_served_total,kind=mo,result=throttled"]; got < 2 {
		t.Errorf("node 2 answered %v deliveries throttled, want the throttled one and those held by the pause", got)
	}
	waitFor(t, 10*time.Second, "every reply acknowledged on node 1", func() bool {
		return relayed(t, n1.rig, gateway.DeliveryMO, string(gateway.PeerDelivered)) == n
	})
	if got := relayed(t, n1.rig, gateway.DeliveryMO, string(gateway.PeerThrottled)); got < 2 {
		t.Errorf("node 1 counted %v deliveries throttled", got)
	}
}

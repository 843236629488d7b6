package cluster

import (
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

func ids(ms []Member) []uint16 {
	out := make([]uint16, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func sameIDs(ms []Member, want ...uint16) bool {
	got := ids(ms)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// Each node sees the live members sorted by id, with what they published,
// and is signalled on joins and leaves.
func TestMembersView(t *testing.T) {
	t.Parallel() // mostly waiting for a lease to expire
	et := clustertest.Start(t)
	n3 := join(t, et, 3, 2*time.Second)
	sig, cancel := n3.Subscribe()
	defer cancel()
	if !sameIDs(n3.Members(), 3) {
		t.Fatalf("after Join: %v, want [3]", ids(n3.Members()))
	}
	n1 := join(t, et, 1, 2*time.Second)
	n2 := join(t, et, 2, 2*time.Second)
	closed(t, sig, 3*time.Second, "no signal after joins")
	for _, n := range []*Node{n1, n2, n3} {
		waitFor(t, 3*time.Second, "members not [1 2 3]", func() bool { return sameIDs(n.Members(), 1, 2, 3) })
	}
	m, ok := n3.Peer(1)
	if !ok || m.Name != "node-1" || m.PeerURL != "http://127.0.0.1:1" || m.Started.IsZero() {
		t.Fatalf("Peer(1) = %+v, %v", m, ok)
	}
	if _, ok := n3.Peer(9); ok {
		t.Fatal("Peer(9) found")
	}

	// Drain, then a leave signals again and the view drops the node.
	select {
	case <-sig:
	default:
	}
	n2.Close()
	closed(t, sig, 3*time.Second, "no signal after a leave")
	waitFor(t, 3*time.Second, "members not [1 3] after node 2 closed", func() bool { return sameIDs(n3.Members(), 1, 3) })

	// A crashed node leaves when its lease expires.
	n1.abandon()
	waitFor(t, 6*time.Second, "members not [3] after node 1's lease expired", func() bool { return sameIDs(n3.Members(), 3) })
}

func TestShare(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 3, DefaultTTL) // no expiry awaited: a short lease only risks expiring under a loaded run
	waitFor(t, 3*time.Second, "3 members", func() bool { return len(nodes[0].Members()) == 3 })
	if got := nodes[0].Share(90); got != 30 {
		t.Fatalf("Share(90) of 3 = %v", got)
	}
	sig, cancel := nodes[0].Subscribe()
	defer cancel()
	nodes[2].Close()
	closed(t, sig, 3*time.Second, "no signal")
	waitFor(t, 3*time.Second, "share not rebalanced to 45", func() bool { return nodes[0].Share(90) == 45 })
	nodes[1].Close()
	waitFor(t, 3*time.Second, "share not 90 alone", func() bool { return nodes[0].Share(90) == 90 })
	// Even with an empty view (lost), a node's share is the whole.
	nodes[0].mu.Lock()
	nodes[0].members = map[uint16]Member{}
	nodes[0].mu.Unlock()
	if got := nodes[0].Share(90); got != 90 {
		t.Fatalf("Share with no members = %v, want 90", got)
	}
}

// TestUpstreamUp: what each node publishes of its upstreams' binds is
// seen by the others (UpstreamUp), names with a comma included; a member
// that publishes nothing (an earlier release) counts as having every
// upstream up; publishing the same again writes nothing new.
func TestUpstreamUp(t *testing.T) {
	t.Parallel()
	et := clustertest.Start(t)
	n1 := join(t, et, 1, 2*time.Second)
	n2 := join(t, et, 2, 2*time.Second)
	waitFor(t, 3*time.Second, "two members", func() bool { return sameIDs(n2.Members(), 1, 2) })
	// Neither publishes yet: both count as having anything up.
	if !n2.UpstreamUp("cmcc") {
		t.Fatal("UpstreamUp(cmcc) false with members that publish nothing")
	}
	if err := n1.PublishUpstreamsUp([]string{"cmcc", "a,b"}); err != nil {
		t.Fatal(err)
	}
	if err := n2.PublishUpstreamsUp(nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{n1, n2} {
		waitFor(t, 3*time.Second, "node 1's upstreams seen", func() bool {
			return n.UpstreamUp("cmcc") && n.UpstreamUp("a,b") && !n.UpstreamUp("a") && !n.UpstreamUp("cucc")
		})
	}
	sig, cancel := n2.Subscribe()
	defer cancel()
	if err := n1.PublishUpstreamsUp([]string{"a,b", "cmcc"}); err != nil { // the same, in another order
		t.Fatal(err)
	}
	if err := n1.PublishUpstreamsUp(nil); err != nil {
		t.Fatal(err)
	}
	closed(t, sig, 3*time.Second, "no signal after node 1's upstreams went down")
	waitFor(t, 3*time.Second, "cmcc down everywhere", func() bool { return !n2.UpstreamUp("cmcc") })
	m, _ := n2.Peer(1)
	if !m.ReportsUp || m.UpstreamsUp != "" || m.Name != "node-1" {
		t.Fatalf("node 1 as node 2 sees it: %+v", m)
	}
}

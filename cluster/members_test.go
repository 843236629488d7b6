package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// TestDiffering: the digests of the configuration's parts each node
// publishes (at its join, then after a reload) are compared in every
// node's view: nodes that publish one alike do not differ, one that
// publishes another does (on every node, in the metric too), and agree
// again once it is published alike. A node that publishes no digest of a
// part (an earlier release) is not compared on it; publishing the same
// digest again writes nothing.
func TestDiffering(t *testing.T) {
	t.Parallel()
	et := clustertest.Start(t)
	joinWith := func(id uint16, digests map[string]string) *Node {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := Join(ctx, Config{Endpoints: et.Endpoints, NodeID: id, TTL: 2 * time.Second, PeerURL: "http://127.0.0.1:1", Digests: digests}, testLog(t))
		if err != nil {
			t.Fatalf("join node %d: %v", id, err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	n1 := joinWith(1, map[string]string{"account_managers": "aaa"})
	n2 := joinWith(2, map[string]string{"account_managers": "aaa"})
	n3 := joinWith(3, nil) // an earlier release
	nodes := []*Node{n1, n2, n3}
	want := func(what string, parts ...string) {
		t.Helper()
		for i, n := range nodes {
			waitFor(t, 3*time.Second, fmt.Sprintf("%s, in node %d's view: differing %v", what, i+1, parts), func() bool {
				return sameIDs(n.Members(), 1, 2, 3) && slices.Equal(n.Differing(), parts)
			})
		}
	}
	want("joined alike")
	if err := n2.PublishDigest("account_managers", "bbb"); err != nil {
		t.Fatal(err)
	}
	want("node 2 reloaded, node 1 not yet", "account_managers")
	reg := prometheus.NewRegistry()
	if err := n3.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if got := differsGauge(t, reg, "account_managers"); got != 1 {
		t.Errorf("qxtd_cluster_config_differs{part=account_managers} = %v, want 1", got)
	}
	rev := func() int64 {
		t.Helper()
		resp, err := n2.Client().Get(context.Background(), n2.memberKey(2))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("node 2's member key: %v %v", resp, err)
		}
		return resp.Kvs[0].ModRevision
	}
	before := rev()
	if err := n2.PublishDigest("account_managers", "bbb"); err != nil { // the same again: nothing written
		t.Fatal(err)
	}
	if after := rev(); after != before {
		t.Errorf("publishing the same digest again wrote node 2's member key (revision %d, then %d)", before, after)
	}
	if err := n1.PublishDigest("account_managers", "bbb"); err != nil {
		t.Fatal(err)
	}
	want("both reloaded")
	if got := differsGauge(t, reg, "account_managers"); got != 0 {
		t.Errorf("qxtd_cluster_config_differs{part=account_managers} = %v, want 0", got)
	}
	if m, _ := n3.Peer(1); m.Digests["account_managers"] != "bbb" || m.Name != "node-1" || m.PeerURL != "http://127.0.0.1:1" {
		t.Errorf("node 1 as node 3 sees it: %+v", m)
	}
}

// differsGauge is qxtd_cluster_config_differs{part} as reg gathers it
// (-1: absent).
func differsGauge(t *testing.T, reg *prometheus.Registry, part string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "qxtd_cluster_config_differs" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "part" && l.GetValue() == part {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

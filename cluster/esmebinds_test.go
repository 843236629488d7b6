package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

func openBinds(t *testing.T, n *Node) *ESMEBinds {
	t.Helper()
	b, err := OpenESMEBinds(ctxT(t, 10*time.Second), n, testLog(t))
	if err != nil {
		t.Fatalf("open esme binds of node %d: %v", n.ID(), err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// waitBinds waits, on Changed, until b's view is want.
func waitBinds(t *testing.T, b *ESMEBinds, want []ESMEBind, what string) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		ch := b.Changed()
		got := b.Binds()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: binds %+v, want %+v", what, got, want)
		}
	}
}

// TestESMEBinds: a node's first receiver bind of an account is seen by
// the others, its last unbind removes it, and a node's death takes its
// binds with its lease; a node never lists its own.
func TestESMEBinds(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 3, 2*time.Second)
	b1, b2, b3 := openBinds(t, nodes[0]), openBinds(t, nodes[1]), openBinds(t, nodes[2])
	cli := admin(t, et)

	b2.Bound("bob", "E2")
	b2.Bound("bob", "E2") // a second bind: one key
	b3.Bound("bob", "E2")
	b3.Bound("a/lice", "E1") // escaped in the key
	waitBinds(t, b1, []ESMEBind{{3, "a/lice", "E1"}, {2, "bob", "E2"}, {3, "bob", "E2"}}, "node 1 sees 2's and 3's")
	waitBinds(t, b2, []ESMEBind{{3, "a/lice", "E1"}, {3, "bob", "E2"}}, "node 2 sees 3's only")
	if got := count(t, cli, nodes[0].Prefix()+"esmebinds/"); got != 3 {
		t.Errorf("%d keys, want 3 (one per node and account)", got)
	}

	b2.Unbound("bob")
	b3.Unbound("a/lice")
	waitBinds(t, b1, []ESMEBind{{2, "bob", "E2"}, {3, "bob", "E2"}}, "one of two binds gone: kept; the only one gone: removed")
	b2.Unbound("bob")
	waitBinds(t, b1, []ESMEBind{{3, "bob", "E2"}}, "node 2's last bind gone")

	nodes[2].abandon() // a crash: the key lasts until the lease expires
	waitBinds(t, b1, nil, "node 3's lease expired")
}

// TestESMEBindsUnboundBeforePublished: binds that flap faster than etcd
// is written end in the last state only; a fresh load sees it.
func TestESMEBindsUnboundBeforePublished(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 2, DefaultTTL) // no expiry awaited: a short lease only risks expiring under a loaded run
	b1, b2 := openBinds(t, nodes[0]), openBinds(t, nodes[1])
	for range 50 { // flaps coalesce; the end state wins
		b2.Bound("bob", "E2")
		b2.Unbound("bob")
	}
	b2.Bound("carol", "E3")
	waitBinds(t, b1, []ESMEBind{{2, "carol", "E3"}}, "only the bind that stayed")
	b1.Close()
	b1 = openBinds(t, nodes[0]) // a fresh load sees the same
	waitBinds(t, b1, []ESMEBind{{2, "carol", "E3"}}, "loaded again")
}

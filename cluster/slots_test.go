package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

// 3 nodes × 3 goroutines take and give back 2 slots: never more than 2
// held, by the holders' count and by the keys in etcd. The nodes' leases
// have the default TTL: nothing here waits for one to expire, and a short
// one expired under a loaded CI run (etcd: "requested lease not found").
func TestSlotsNeverExceedTotal(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 3, DefaultTTL)
	cli := admin(t, et)
	const total = 2
	var held, maxHeld, rounds atomic.Int64
	var keyViolation atomic.Bool
	ctx := ctxT(t, 20*time.Second)
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 8 {
					s, err := n.AcquireSlot(ctx, "carrier-a", total)
					if err != nil {
						t.Errorf("node %d: %v", n.ID(), err)
						return
					}
					h := held.Add(1)
					for {
						m := maxHeld.Load()
						if h <= m || maxHeld.CompareAndSwap(m, h) {
							break
						}
					}
					resp, err := cli.Get(ctx, n.Prefix()+"slots/carrier-a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
					if err != nil {
						t.Error(err)
					} else if resp.Count > total {
						keyViolation.Store(true)
					}
					if s.Index() < 0 || s.Index() >= total {
						t.Errorf("index %d", s.Index())
					}
					hold := time.NewTimer(time.Duration(rand.IntN(20)) * time.Millisecond)
					<-hold.C
					held.Add(-1)
					s.Release()
					rounds.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if got := maxHeld.Load(); got > total || got < 1 {
		t.Fatalf("at most %d slots held at once, want 1..%d", got, total)
	}
	if keyViolation.Load() {
		t.Fatalf("more than %d slot keys seen", total)
	}
	if rounds.Load() != 3*3*8 {
		t.Fatalf("%d rounds", rounds.Load())
	}
	if c := count(t, cli, nodes[0].Prefix()+"slots/"); c != 0 {
		t.Fatalf("%d slot keys left after all released", c)
	}
}

// A node's Close frees its slots at once: a waiter elsewhere gets one well
// within the TTL.
func TestSlotFreedOnClose(t *testing.T) {
	et := clustertest.Start(t)
	a := join(t, et, 1, 10*time.Second)
	b := join(t, et, 2, 10*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Slot, 1)
	go func() {
		s, err := b.AcquireSlot(ctxT(t, 8*time.Second), "c", 1)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	start := time.Now()
	a.Close()
	closed(t, s.Done(), 2*time.Second, "slot's Done not closed by Close")
	select {
	case s2 := <-got:
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("slot taken %v after Close, not at once", d)
		}
		if s2 == nil || s2.Index() != 0 {
			t.Fatalf("slot %v", s2)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never got the slot")
	}
	s.Release() // after Close: harmless
}

// A node whose lease is lost (revoked from outside, as an expiry) loses its
// slot: Done closes, and another node takes it.
func TestSlotLostWithLease(t *testing.T) {
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	b := join(t, et, 2, 2*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, admin(t, et), a)
	closed(t, s.Done(), 3*time.Second, "Done not closed after the lease was lost")
	if _, err := b.AcquireSlot(ctxT(t, 5*time.Second), "c", 1); err != nil {
		t.Fatal(err)
	}
	closed(t, a.Lost(), 3*time.Second, "Lost not closed")
	if _, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 5); !errors.Is(err, ErrLost) {
		t.Fatalf("acquire on a lost node: %v, want ErrLost", err)
	}
}

// A node whose keepalive has gone unanswered for TTL/2 gives its slot up
// (Done) before etcd could expire its lease and hand the slot to another
// node: the carrier never sees both binds.
func TestSlotGivenUpWhenFenced(t *testing.T) {
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	a.lastKeepAlive.Store(time.Now().Add(-2 * time.Second).UnixNano()) // as if etcd had not answered for a whole TTL
	closed(t, s.Done(), 3*time.Second, "a fenced node kept its bind slot")
}

// A slot key deleted by someone else (an operator) closes Done.
func TestSlotDeletedOutside(t *testing.T) {
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin(t, et).Delete(context.Background(), s.key); err != nil {
		t.Fatal(err)
	}
	closed(t, s.Done(), 3*time.Second, "Done not closed after the key was deleted")
}

// A node takes its previous index again when it is free; a smaller total
// never hands out an index ≥ total nor more than total slots.
func TestSlotStableAndShrink(t *testing.T) {
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	b := join(t, et, 2, 2*time.Second)
	ctx := ctxT(t, 10*time.Second)
	s0, _ := a.AcquireSlot(ctx, "c", 3)
	s1, _ := a.AcquireSlot(ctx, "c", 3)
	s2, err := b.AcquireSlot(ctx, "c", 3)
	if err != nil || s0.Index() != 0 || s1.Index() != 1 || s2.Index() != 2 {
		t.Fatalf("indexes %d %d %v", s0.Index(), s1.Index(), err)
	}
	s1.Release()
	s1.Release() // idempotent
	s0.Release()
	again, _ := a.AcquireSlot(ctx, "c", 3)
	if again.Index() != 1 {
		t.Fatalf("node took %d, want its last index 1", again.Index())
	}
	again.Release()
	// b's last index is 2; after a reload to total 2 it must not be used.
	s2.Release()
	x, _ := b.AcquireSlot(ctx, "c", 2)
	if x.Index() >= 2 {
		t.Fatalf("index %d ≥ total 2", x.Index())
	}
	// With 2 held, total 2 refuses a third until one is released.
	y, _ := a.AcquireSlot(ctx, "c", 2)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if z, err := a.AcquireSlot(short, "c", 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third slot of 2: %v, %v", z, err)
	}
	y.Release()
	x.Release()
}

func TestSlotBadArgs(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, 2*time.Second)
	for _, tc := range []struct {
		name  string
		total int
	}{{"", 1}, {"a/b", 1}, {"a", 0}} {
		if _, err := n.AcquireSlot(ctxT(t, time.Second), tc.name, tc.total); err == nil {
			t.Errorf("AcquireSlot(%q, %d) accepted", tc.name, tc.total)
		}
	}
}

// A crashed node (keepalive stopped, no revoke) holds its slot until its
// lease expires, then another node takes it.
func TestSlotFreedOnExpiry(t *testing.T) {
	t.Parallel() // mostly waiting for a lease to expire
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	b := join(t, et, 2, 2*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	a.abandon()
	closed(t, s.Done(), time.Second, "Done not closed when the node stopped")
	start := time.Now()
	if _, err := b.AcquireSlot(ctxT(t, 6*time.Second), "c", 1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("slot taken %v after the crash: before the lease could expire", d)
	}
}

// TestSlotGivenUpWhenEtcdUnreachable: a node cut off from etcd gives its
// slot up once its keepalive has gone unanswered for TTL/2, as it does when
// etcd answers nothing on an open connection (TestSlotGivenUpWhenFenced):
// before, the slot's watch, failed with the connection, waited for etcd to
// come back to open again (and a Get to ask whether the key was still
// ours), checking nothing meanwhile, so the node kept its bind past the
// expiry of its lease, when another node may take the slot.
func TestSlotGivenUpWhenEtcdUnreachable(t *testing.T) {
	et := clustertest.StartBehindProxy(t)
	a := join(t, et, 1, 6*time.Second)
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	et.Stop()
	// TTL/2 after the last keepalive answered (at most TTL/3 before the
	// stop), and a tick; well before the lease is lost.
	closed(t, s.Done(), 4*time.Second, "a node cut off from etcd kept its bind slot")
	select {
	case <-a.Lost():
		t.Fatal("the slot was given up only when the lease was lost, not when fenced")
	default:
	}
	et.Restart(t) // the node's Close revokes its lease at once
}

// TestSlotReleasedDuringOutageFreesOnceEtcdIsBack: a slot given up while
// etcd is down (fenced) and released then, its delete failing, is deleted
// once etcd is back, while the node lives on: before, its key stayed on
// the node's lease, which etcd's return kept alive, so the node (and the
// cluster) held one bind fewer until it restarted.
func TestSlotReleasedDuringOutageFreesOnceEtcdIsBack(t *testing.T) {
	et := clustertest.StartBehindProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Release's try is bounded by DialTimeout: 1 s fails it within the
	// outage, which ends long before the 6 s lease runs out.
	a, err := Join(ctx, Config{Endpoints: et.Endpoints, NodeID: 1, TTL: 6 * time.Second, DialTimeout: time.Second}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	s, err := a.AcquireSlot(ctxT(t, 5*time.Second), "c", 1)
	if err != nil {
		t.Fatal(err)
	}
	et.Stop()
	closed(t, s.Done(), 4*time.Second, "a fenced node kept its bind slot")
	s.Release() // its delete fails: etcd is down
	et.Restart(t)
	again, err := a.AcquireSlot(ctxT(t, 3*time.Second), "c", 1)
	if err != nil {
		t.Fatalf("the only slot, released during the outage, not taken again once etcd was back: %v", err)
	}
	again.Release()
	select {
	case <-a.Lost():
		t.Fatal("lease lost in an outage shorter than its ttl")
	default:
	}
}

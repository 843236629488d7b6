package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

// 3 nodes lead "reminders": one runs fn at a time; closing the leader
// hands over at once, a crash within the TTL; the leader's fn context
// ends with it.
func TestLeaderHandover(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 3, 2*time.Second)
	var running, overlap atomic.Int32
	leaders := make(chan uint16, 16) // ids of nodes as they start leading
	ended := make(chan uint16, 16)   // ids as their fn's ctx ends
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Lead(ctx, "reminders", func(lctx context.Context) {
				if running.Add(1) > 1 {
					overlap.Add(1)
				}
				leaders <- n.ID()
				<-lctx.Done()
				running.Add(-1)
				ended <- n.ID()
			})
		}()
	}
	next := func(ch chan uint16, what string) uint16 {
		t.Helper()
		timer := time.NewTimer(4 * time.Second) // TTL 2 s + margin
		defer timer.Stop()
		select {
		case id := <-ch:
			return id
		case <-timer.C:
			t.Fatalf("no %s within 4 s", what)
			return 0
		}
	}
	first := next(leaders, "leader")
	byID := map[uint16]*Node{}
	for _, n := range nodes {
		byID[n.ID()] = n
	}
	waitFor(t, time.Second, "is_leader not set", func() bool {
		byID[first].mu.Lock()
		defer byID[first].mu.Unlock()
		return byID[first].leading["reminders"]
	})

	// The leader closes: its fn ends, another node takes over.
	start := time.Now()
	byID[first].Close()
	if id := next(ended, "end of the first leader's fn"); id != first {
		t.Fatalf("fn of node %d ended, want %d", id, first)
	}
	second := next(leaders, "second leader")
	if second == first {
		t.Fatal("the closed node leads again")
	}
	t.Logf("handover from %d to %d in %v", first, second, time.Since(start))

	// The second leader crashes (no revoke): another node leads once
	// the lease expired, within the TTL and a tick of etcd's expiry.
	start = time.Now()
	byID[second].abandon()
	if id := next(ended, "end of the second leader's fn"); id != second {
		t.Fatalf("fn of node %d ended, want %d", id, second)
	}
	third := next(leaders, "third leader")
	if third == first || third == second {
		t.Fatalf("third leader %d", third)
	}
	t.Logf("handover from %d to %d after a crash in %v", second, third, time.Since(start))
	cancel()
	next(ended, "end of the last fn after ctx ended")
	wg.Wait() // every Lead returned
	if overlap.Load() != 0 {
		t.Fatalf("%d times two nodes led at once", overlap.Load())
	}
}

// A leader whose keepalive goes unanswered for TTL/2 steps down; one whose
// lease is lost stops leading and Lead returns.
func TestLeaderStepsDown(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, 2*time.Second)
	started := make(chan struct{}, 4)
	ended := make(chan struct{}, 4)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		n.Lead(context.Background(), "r", func(lctx context.Context) {
			started <- struct{}{}
			<-lctx.Done()
			ended <- struct{}{}
		})
	}()
	closed(t, chanOf(started), 3*time.Second, "not leading")
	n.lastKeepAlive.Store(time.Now().Add(-2 * time.Second).UnixNano())
	closed(t, chanOf(ended), 3*time.Second, "a fenced leader did not step down")
	revoke(t, admin(t, et), n)
	closed(t, returned, 5*time.Second, "Lead did not return after the lease was lost")
}

// chanOf turns one value received from ch into a closed channel, for closed.
func chanOf(ch <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		<-ch
		close(out)
	}()
	return out
}

// TestLeadReturnsWhileEtcdUnreachable: Lead returns once its context ends
// while it campaigns and etcd cannot be reached. Before, Campaign resigned
// under the etcd client's own context, which waits for etcd to answer: a
// daemon that lost its membership (etcd unreachable past lease_ttl) waited
// for it in its stop, and never exited (TestSoakClusterEtcd, seed 3: a
// node cut off from etcd still running 24 s after it logged membership
// lost).
func TestLeadReturnsWhileEtcdUnreachable(t *testing.T) {
	et := clustertest.StartBehindProxy(t)
	a := join(t, et, 1, 10*time.Second)
	b := join(t, et, 2, 10*time.Second)
	leading := make(chan struct{})
	go a.Lead(ctxT(t, 30*time.Second), "r", func(ctx context.Context) {
		close(leading)
		<-ctx.Done()
	})
	closed(t, leading, 5*time.Second, "node 1 never led")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		b.Lead(ctx, "r", func(ctx context.Context) { <-ctx.Done() })
	}()
	cli := admin(t, et)
	deadline := time.Now().Add(5 * time.Second)
	for count(t, cli, a.key("leader", "r")+"/") < 2 { // node 2 campaigning: its key stands behind node 1's
		if time.Now().After(deadline) {
			t.Fatal("node 2 not campaigning after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	et.Stop()
	stop()
	closed(t, returned, 2*time.Second, "Lead still campaigning 2 s after its context ended, etcd unreachable")
	et.Restart(t) // the nodes' Close revoke their leases at once
}

// TestGuardLeadStepsDownWhenCutOffAtStart: a leader cut off from etcd as
// its leadership starts, before its guard's watch is open, still steps
// down once fenced (keepalive unanswered for ttl/2): the watch, which
// waits for etcd while it is unreachable, is opened aside. Before, the
// guard waited in Watch and checked nothing until etcd came back.
func TestGuardLeadStepsDownWhenCutOffAtStart(t *testing.T) {
	et := clustertest.StartBehindProxy(t)
	a := join(t, et, 1, 6*time.Second)
	el := concurrency.NewElection(a.sess, a.key("leader", "g"))
	if err := el.Campaign(ctxT(t, 5*time.Second), "1"); err != nil {
		t.Fatal(err)
	}
	et.Stop()
	stepped := make(chan struct{})
	go func() {
		defer close(stepped)
		a.guardLead(ctxT(t, 30*time.Second), el)
	}()
	// TTL/2 after the last keepalive answered (at most TTL/3 before the
	// stop), and a tick: before the 6 s lease runs out.
	closed(t, stepped, 5500*time.Millisecond, "a leader cut off from etcd as it began did not step down before its lease ran out")
	et.Restart(t) // the node's Close revokes its lease at once
}

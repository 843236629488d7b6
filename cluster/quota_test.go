package cluster

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

// quotaTotal is Σ used + Σ free in etcd for ent's month.
func quotaTotal(t testing.TB, cli *clientv3.Client, n *Node, ent, month string) int64 {
	t.Helper()
	p := n.key("quota", month, ent) + "/"
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, kv := range resp.Kvs {
		if string(kv.Key) == p+"rev" {
			continue
		}
		v, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		sum += v
	}
	return sum
}

// 3 nodes × 4 goroutines spend one segment at a time against a limit of
// 1,000: exactly 1,000 are spent, never more.
func TestQuotaExact(t *testing.T) {
	et := clustertest.Start(t)
	// The default TTL: a keepalive late under -race must not fence the
	// claims, which would stop spenders early and fail the exact count.
	nodes := joinN(t, et, 3, DefaultTTL)
	const limit, ent, month = 1000, "acme", "2026-12"
	var spent atomic.Int64
	var over atomic.Bool
	perNode := make([]int64, len(nodes))
	ctx := ctxT(t, 30*time.Second)
	var wg sync.WaitGroup
	for i, n := range nodes {
		q := n.Quota(0)
		var mu sync.Mutex // guards perNode[i], the node's local usage
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					if perNode[i]+1 <= q.Claim(ent, month) {
						perNode[i]++
						mu.Unlock()
						if spent.Add(1) > limit {
							over.Store(true)
						}
						continue
					}
					used := perNode[i]
					mu.Unlock()
					if _, err := q.Grow(ctx, ent, month, used, 1, limit); err != nil {
						t.Errorf("node %d: %v", n.ID(), err)
						return
					}
					mu.Lock()
					done := perNode[i]+1 > q.Claim(ent, month)
					mu.Unlock()
					if done {
						return // quota exceeded for this node
					}
				}
			}()
		}
	}
	wg.Wait()
	if over.Load() || spent.Load() != limit {
		t.Fatalf("spent %d (over: %v), want exactly %d; per node %v", spent.Load(), over.Load(), limit, perNode)
	}
	if got := quotaTotal(t, admin(t, et), nodes[0], ent, month); got != limit {
		t.Fatalf("Σ used + Σ free in etcd = %d, want %d", got, limit)
	}
	var reqs uint64
	for _, n := range nodes {
		reqs += n.Requests()
	}
	t.Logf("per node %v; etcd requests of the 3 nodes in all: %d", perNode, reqs)
}

// A dead node's free part comes back when its lease expires; its used
// part stays counted.
func TestQuotaDeadNode(t *testing.T) {
	t.Parallel() // mostly waiting for a lease to expire
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	b := join(t, et, 2, 2*time.Second)
	const limit, ent, month = 1000, "acme", "2026-12"
	qa, qb := a.Quota(100), b.Quota(100)
	ctx := ctxT(t, 10*time.Second)
	if c, err := qa.Grow(ctx, ent, month, 0, 1, limit); err != nil || c != 100 {
		t.Fatalf("a's first claim %d, %v; want 100", c, err)
	}
	// a spent its 100 and grows: its used is 100 now, its free block
	// doubled as it grows again within a second.
	c, err := qa.Grow(ctx, ent, month, 100, 1, limit)
	if err != nil || c != 300 {
		t.Fatalf("a's second claim %d, %v; want 100 + 200", c, err)
	}
	if c, _ := qb.Grow(ctx, ent, month, 0, 900, limit); c != 700 {
		t.Fatalf("b's claim with a alive = %d, want 700", c)
	}
	a.abandon() // a crash: the lease expires by itself
	cli := admin(t, et)
	waitFor(t, 6*time.Second, "a's free key outlived its lease", func() bool {
		return count(t, cli, a.key("quota", month, ent, "free")+"/1") == 0
	})
	if c, _ := qb.Grow(ctx, ent, month, 0, 900, limit); c != 900 {
		t.Fatalf("b's claim after a died = %d, want 900 (all but a's used 100)", c)
	}
	if c, _ := qb.Grow(ctx, ent, month, 0, 901, limit); c >= 901 {
		t.Fatalf("b's claim %d goes into a's used part", c)
	}
}

// A lost lease, or a keepalive unanswered for TTL/2, leaves only the used
// part to spend.
func TestQuotaFenced(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, 2*time.Second)
	q := n.Quota(100)
	ctx := ctxT(t, 10*time.Second)
	if c, err := q.Grow(ctx, "e", "m", 10, 1, 1000); err != nil || c != 110 {
		t.Fatalf("claim %d, %v", c, err)
	}
	if c := q.Claim("other", "m"); c != 0 {
		t.Fatalf("claim of an unknown enterprise = %d", c)
	}
	last := n.lastKeepAlive.Load()
	n.lastKeepAlive.Store(time.Now().Add(-2 * time.Second).UnixNano())
	if c := q.Claim("e", "m"); c != 10 {
		t.Fatalf("claim with a stale keepalive = %d, want the used 10", c)
	}
	n.lastKeepAlive.CompareAndSwap(n.lastKeepAlive.Load(), max(last, time.Now().UnixNano()))
	if c := q.Claim("e", "m"); c != 110 {
		t.Fatalf("claim with a fresh keepalive = %d, want 110", c)
	}
	revoke(t, admin(t, et), n)
	closed(t, n.Lost(), 3*time.Second, "Lost")
	if c := q.Claim("e", "m"); c != 10 {
		t.Fatalf("claim after the lease was lost = %d, want the used 10", c)
	}
	if _, err := q.Grow(ctx, "e", "m", 10, 1, 1000); err == nil {
		t.Fatal("Grow on a lost node succeeded")
	}
}

// Unlimited costs nothing; blocks adapt to the pace and to what remains;
// Shrink gives the free part back.
func TestQuotaBlocks(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, DefaultTTL)
	q := n.Quota(0)
	ctx := ctxT(t, 10*time.Second)

	before := n.Requests()
	if c, err := q.Grow(ctx, "e", "m", 5, 1, -1); err != nil || c != math.MaxInt64 {
		t.Fatalf("unlimited: %d, %v", c, err)
	}
	if got := n.Requests() - before; got != 0 {
		t.Fatalf("unlimited Grow made %d etcd requests", got)
	}

	// Near the end, a quarter of what remains.
	if c, _ := q.Grow(ctx, "small", "m", 0, 1, 100); c != 25 {
		t.Fatalf("first claim of 100 = %d, want a quarter, 25", c)
	}
	// A need larger than the block is granted whole if it fits.
	if c, _ := q.Grow(ctx, "small", "m", 25, 60, 100); c != 85 {
		t.Fatalf("claim for need 60 = %d, want 85", c)
	}
	// And only what remains when it does not.
	if c, _ := q.Grow(ctx, "small", "m", 85, 60, 100); c != 100 {
		t.Fatalf("claim for need 60 with 15 left = %d, want 100", c)
	}

	// Far from the end: the base block, doubled when growing again
	// within a second.
	c1, _ := q.Grow(ctx, "big", "m", 0, 1, 1_000_000)
	c2, _ := q.Grow(ctx, "big", "m", c1, 1, 1_000_000)
	if c1 != DefaultBlock || c2-c1 != 2*DefaultBlock {
		t.Fatalf("claims %d then %d, want blocks %d then %d", c1, c2, DefaultBlock, 2*DefaultBlock)
	}
	before = n.Requests()
	if got := q.Claim("big", "m"); got != c2 || n.Requests() != before {
		t.Fatalf("Claim = %d (want %d) and made %d requests", got, c2, n.Requests()-before)
	}
	if err := q.Shrink(ctx, "big", "m", c1+7); err != nil {
		t.Fatal(err)
	}
	if got := q.Claim("big", "m"); got != c1+7 {
		t.Fatalf("claim after Shrink = %d, want the used %d", got, c1+7)
	}
	if got := quotaTotal(t, admin(t, et), n, "big", "m"); got != c1+7 {
		t.Fatalf("etcd total after Shrink = %d, want %d", got, c1+7)
	}
}

package cluster

import (
	"context"
	"math"
	"math/rand/v2"
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

// quotaKeyValue is one quota key of node id in etcd, 0 if absent.
func quotaKeyValue(t testing.TB, cli *clientv3.Client, n *Node, ent, month, kind string, id uint16) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), n.key("quota", month, ent, kind, strconv.Itoa(int(id))))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	v, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lastStep is the size of q's last publish for ent's month.
func lastStep(q *Quota, ent, month string) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c := q.claims[quotaKey{ent, month}]; c != nil {
		return c.step
	}
	return 0
}

// A dead node's free part comes back when its lease expires; its
// published part stays counted, even what it had not spent of it, until
// the node comes back and reconciles.
func TestQuotaDeadNode(t *testing.T) {
	t.Parallel() // mostly waiting for a lease to expire
	et := clustertest.Start(t)
	a := join(t, et, 1, 2*time.Second)
	b := join(t, et, 2, 2*time.Second)
	const limit, ent, month = 1000, "acme", "2026-12"
	qa, qb := a.Quota(100), b.Quota(100)
	ctx := ctxT(t, 10*time.Second)
	cli := admin(t, et)
	// a takes a block of 100 and publishes half of it.
	if c, err := qa.Grow(ctx, ent, month, 0, 1, limit); err != nil || c != 50 {
		t.Fatalf("a's first claim %d, %v; want 50", c, err)
	}
	if p, f := quotaKeyValue(t, cli, a, ent, month, "used", 1), quotaKeyValue(t, cli, a, ent, month, "free", 1); p != 50 || f != 50 {
		t.Fatalf("a's keys: used %d, free %d; want 50, 50", p, f)
	}
	const spentA = 40 // a spends within its claim, then crashes
	if c, _ := qb.Grow(ctx, ent, month, 0, 1000, limit); c != 900 {
		t.Fatalf("b's claim with a alive = %d, want 900", c)
	}
	a.abandon() // a crash: the lease expires by itself
	waitFor(t, 6*time.Second, "a's free key outlived its lease", func() bool {
		return count(t, cli, a.key("quota", month, ent, "free")+"/1") == 0
	})
	// a's F is back, its P = 50 is not: b gets exactly limit − 50.
	if c, _ := qb.Grow(ctx, ent, month, 900, 100, limit); c != limit-50 {
		t.Fatalf("b's claim after a died = %d, want %d (all but a's published 50)", c, limit-50)
	}
	if c, _ := qb.Grow(ctx, ent, month, limit-50, 1, limit); c != limit-50 {
		t.Fatalf("b's claim %d goes into a's published part", c)
	}
	if got := qb.Claim(ent, month) + spentA; got > limit {
		t.Fatalf("b's claim + a's spent = %d > %d", got, limit)
	}
	if lost := int64(50 - spentA); lost > lastStep(qa, ent, month) {
		t.Fatalf("a's published but unspent %d is more than its last step %d", lost, lastStep(qa, ent, month))
	}

	// a comes back with its true usage: its P is its own to spend again,
	// and Shrink gives back what it did not spend.
	a2 := join(t, et, 1, 2*time.Second)
	qa2 := a2.Quota(100)
	if c, err := qa2.Grow(ctx, ent, month, spentA, 1, limit); err != nil || c != 50 {
		t.Fatalf("a's claim back from the crash = %d, %v; want its published 50", c, err)
	}
	if err := qa2.Shrink(ctx, ent, month, spentA); err != nil {
		t.Fatal(err)
	}
	if c := qa2.Claim(ent, month); c != spentA {
		t.Fatalf("a's claim after Shrink = %d, want %d", c, spentA)
	}
	if c, _ := qb.Grow(ctx, ent, month, limit-50, 50, limit); c != limit-spentA {
		t.Fatalf("b's claim after a reconciled = %d, want %d", c, limit-spentA)
	}
	if got := quotaTotal(t, cli, b, ent, month); got != limit {
		t.Fatalf("Σ used + Σ free in etcd = %d, want %d", got, limit)
	}
}

// spender models one node's local usage: goroutines charge one segment at
// a time under the node's claim and grow it when it is reached.
type spender struct {
	q  *Quota
	mu sync.Mutex // guards spent and crashed
	// spent is S, the node's local usage.
	spent   int64
	crashed bool
}

// spend charges segments of ent's month until the cluster has no more or
// the node crashed. crash, when set, is asked after each charge (under
// mu) whether the node crashes now; it then ends it. A failing Grow is a
// test error unless the node may crash (its lease may be lost first).
func (sp *spender) spend(ctx context.Context, t *testing.T, ent, month string, limit int64, total *atomic.Int64, crash func(spent, claim int64) bool) {
	for {
		sp.mu.Lock()
		if sp.crashed {
			sp.mu.Unlock()
			return
		}
		if claim := sp.q.Claim(ent, month); sp.spent+1 <= claim {
			sp.spent++
			total.Add(1)
			if crash != nil && crash(sp.spent, claim) {
				sp.crashed = true
				sp.mu.Unlock()
				sp.q.n.abandon()
				return
			}
			sp.mu.Unlock()
			continue
		}
		used := sp.spent
		sp.mu.Unlock()
		if _, err := sp.q.Grow(ctx, ent, month, used, 1, limit); err != nil {
			if crash == nil {
				t.Errorf("node %d: %v", sp.q.n.ID(), err)
			}
			return
		}
		sp.mu.Lock()
		done := sp.crashed || sp.spent+1 > sp.q.Claim(ent, month)
		sp.mu.Unlock()
		if done {
			return // quota exceeded for this node
		}
	}
}

// 3 nodes × 4 goroutines spend; the third crashes without revoking its
// lease at a random point. The survivors and the dead node never spend
// more than the limit; once the dead node's lease expired the survivors
// get all of it but the dead node's published watermark, which is at most
// one step more than it spent.
func TestQuotaCrashMidRace(t *testing.T) {
	t.Parallel() // mostly waiting for a lease to expire
	et := clustertest.Start(t)
	const limit, ent, month = 1000, "acme", "2026-12"
	survivors := joinN(t, et, 2, DefaultTTL)
	doomed := join(t, et, 3, 2*time.Second)
	var total atomic.Int64
	sps := []*spender{{q: survivors[0].Quota(0)}, {q: survivors[1].Quota(0)}, {q: doomed.Quota(0)}}
	crashAt := rand.Int64N(300) + 1
	// The crash comes after a charge below the claim: no grant of the
	// node is in flight then (a grant starts only when spent reaches the
	// claim), so what etcd has is the node's claim.
	crash := func(spent, claim int64) bool { return spent >= crashAt && spent < claim }
	ctx := ctxT(t, 30*time.Second)
	race := func(sps []*spender) {
		var wg sync.WaitGroup
		for i, sp := range sps {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i == 2 {
						sp.spend(ctx, t, ent, month, limit, &total, crash)
					} else {
						sp.spend(ctx, t, ent, month, limit, &total, nil)
					}
				}()
			}
		}
		wg.Wait()
	}
	race(sps)
	dead := sps[2]
	if !dead.crashed {
		// It ran out (or lost its lease) before crashAt: crash it now.
		dead.crashed = true
		doomed.abandon()
	}
	if total.Load() > limit {
		t.Fatalf("spent %d > limit %d before the crash was known", total.Load(), limit)
	}
	cli := admin(t, et)
	waitFor(t, 6*time.Second, "the dead node's free key outlived its lease", func() bool {
		return count(t, cli, doomed.key("quota", month, ent, "free")+"/3") == 0
	})
	race(sps[:2])
	pDead := quotaKeyValue(t, cli, doomed, ent, month, "used", 3)
	sDead, survived := dead.spent, sps[0].spent+sps[1].spent
	t.Logf("crash at %d: dead spent %d, published %d (last step %d); survivors %d, %d",
		crashAt, sDead, pDead, lastStep(dead.q, ent, month), sps[0].spent, sps[1].spent)
	if got := survived + sDead; got > limit || total.Load() != got {
		t.Fatalf("survivors %d + dead %d = %d (counted %d), limit %d", survived, sDead, got, total.Load(), limit)
	}
	if survived != limit-pDead {
		t.Fatalf("survivors spent %d, want all but the dead node's published %d: %d", survived, pDead, limit-pDead)
	}
	if c := dead.q.Claim(ent, month); pDead != c {
		t.Fatalf("the dead node's used key %d, its claim was %d", pDead, c)
	}
	if sDead > pDead || pDead-sDead > lastStep(dead.q, ent, month) {
		t.Fatalf("dead node spent %d of its published %d: more, or short by more than its last step %d",
			sDead, pDead, lastStep(dead.q, ent, month))
	}
	if got := quotaTotal(t, cli, doomed, ent, month); got != limit {
		t.Fatalf("Σ used + Σ free in etcd = %d, want %d", got, limit)
	}
}

// The claim is the published watermark: it needs no lease, so it holds
// when keepalives go unanswered and after the lease is lost; Grow needs a
// live node.
func TestQuotaClaimOutlivesLease(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, 2*time.Second)
	q := n.Quota(100)
	ctx := ctxT(t, 10*time.Second)
	// used 10 beyond P = 0 is counted, a block of 100 taken and half of it
	// published.
	if c, err := q.Grow(ctx, "e", "m", 10, 1, 1000); err != nil || c != 60 {
		t.Fatalf("claim %d, %v; want 60", c, err)
	}
	if c := q.Claim("other", "m"); c != 0 {
		t.Fatalf("claim of an unknown enterprise = %d", c)
	}
	n.lastKeepAlive.Store(time.Now().Add(-2 * time.Second).UnixNano())
	if c := q.Claim("e", "m"); c != 60 {
		t.Fatalf("claim with a stale keepalive = %d, want the published 60", c)
	}
	cli := admin(t, et)
	revoke(t, cli, n)
	closed(t, n.Lost(), 3*time.Second, "Lost")
	if c := q.Claim("e", "m"); c != 60 {
		t.Fatalf("claim after the lease was lost = %d, want the published 60", c)
	}
	if got := quotaTotal(t, cli, n, "e", "m"); got != 60 {
		t.Fatalf("etcd total after the lease was lost = %d, want the published 60", got)
	}
	if _, err := q.Grow(ctx, "e", "m", 60, 1, 1000); err == nil {
		t.Fatal("Grow on a lost node succeeded")
	}
}

// Unlimited costs nothing; blocks adapt to the pace and to what remains;
// steps move from the node's free part to its published one; Shrink gives
// back.
func TestQuotaBlocks(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, DefaultTTL)
	q := n.Quota(0)
	ctx := ctxT(t, 10*time.Second)
	cli := admin(t, et)

	before := n.Requests()
	if c, err := q.Grow(ctx, "e", "m", 5, 1, -1); err != nil || c != math.MaxInt64 {
		t.Fatalf("unlimited: %d, %v", c, err)
	}
	if got := n.Requests() - before; got != 0 {
		t.Fatalf("unlimited Grow made %d etcd requests", got)
	}

	// Near the end, a quarter of what remains, half of it published.
	if c, _ := q.Grow(ctx, "small", "m", 0, 1, 100); c != 12 {
		t.Fatalf("first claim of 100 = %d, want half of a quarter, 12", c)
	}
	if f := quotaKeyValue(t, cli, n, "small", "m", "free", 1); f != 13 {
		t.Fatalf("free part %d, want the rest of the quarter, 13", f)
	}
	// A need larger than the block is granted whole if it fits.
	if c, _ := q.Grow(ctx, "small", "m", 12, 60, 100); c != 72 {
		t.Fatalf("claim for need 60 = %d, want 72", c)
	}
	// And only what remains when it does not.
	if c, _ := q.Grow(ctx, "small", "m", 72, 60, 100); c != 100 {
		t.Fatalf("claim for need 60 with 28 left = %d, want 100", c)
	}

	// Far from the end: a block of 500, half of it published; growing
	// again within a second doubles the block, so the step is the rest of
	// the free part; then a block of 2,000 is taken, half of it published.
	keys := func() (used, free int64) {
		return quotaKeyValue(t, cli, n, "big", "m", "used", 1), quotaKeyValue(t, cli, n, "big", "m", "free", 1)
	}
	before = n.Requests()
	c1, _ := q.Grow(ctx, "big", "m", 0, 1, 1_000_000)
	if u, f := keys(); c1 != 250 || u != 250 || f != 250 {
		t.Fatalf("first claim %d, keys used %d free %d; want 250, 250, 250", c1, u, f)
	}
	if got := n.Requests() - before; got != 2 {
		t.Fatalf("first grant made %d requests, want a Range and a Txn", got)
	}
	before = n.Requests()
	c2, _ := q.Grow(ctx, "big", "m", c1, 1, 1_000_000)
	if u, f := keys(); c2 != 500 || u != 500 || f != 0 {
		t.Fatalf("second claim %d, keys used %d free %d; want 500, 500, 0", c2, u, f)
	}
	c3, _ := q.Grow(ctx, "big", "m", c2, 1, 1_000_000)
	if u, f := keys(); c3 != 1500 || u != 1500 || f != 1000 {
		t.Fatalf("third claim %d, keys used %d free %d; want 1500, 1500, 1000", c3, u, f)
	}
	if got := n.Requests() - before; got != 2 {
		t.Fatalf("a step and a block from the pool made %d requests, want one Txn each", got)
	}
	before = n.Requests()
	if got := q.Claim("big", "m"); got != c3 || n.Requests() != before {
		t.Fatalf("Claim = %d (want %d) and made %d requests", got, c3, n.Requests()-before)
	}
	if err := q.Shrink(ctx, "big", "m", c1+7); err != nil {
		t.Fatal(err)
	}
	if got := q.Claim("big", "m"); got != c1+7 {
		t.Fatalf("claim after Shrink = %d, want the used %d", got, c1+7)
	}
	if got := quotaTotal(t, cli, n, "big", "m"); got != c1+7 {
		t.Fatalf("etcd total after Shrink = %d, want %d", got, c1+7)
	}
}

// etcd requests per 1,000 segments spent by one node far from the limit:
// under load (blocks double) and at a steady pace that keeps the default
// block.
func TestQuotaRequests(t *testing.T) {
	et := clustertest.Start(t)
	n := join(t, et, 1, DefaultTTL)
	q := n.Quota(0)
	ctx := ctxT(t, 10*time.Second)
	const segments, limit, month = 10_000, 1_000_000, "m"
	spend := func(ent string, steady bool) float64 {
		before := n.Requests()
		var s int64
		for s < segments {
			if c := q.Claim(ent, month); s < c {
				s = min(c, segments) // charged locally, one by one
				continue
			}
			if steady {
				// As if the last grant were long ago: no doubling.
				q.mu.Lock()
				q.claimLocked(quotaKey{ent, month}).lastGrow = time.Time{}
				q.mu.Unlock()
			}
			if _, err := q.Grow(ctx, ent, month, s, 1, limit); err != nil {
				t.Fatal(err)
			}
		}
		return float64(n.Requests()-before) * 1000 / segments
	}
	load, steady := spend("load", false), spend("steady", true)
	t.Logf("etcd requests per 1,000 segments: %.1f under load, %.1f at the default block", load, steady)
	if load > 1 || steady > 5 {
		t.Fatalf("requests per 1,000 segments: %.1f under load (want ≤ 1), %.1f steady (want ≤ 5)", load, steady)
	}
}

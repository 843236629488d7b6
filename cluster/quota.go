package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Quota block sizes, in segments.
const (
	DefaultBlock = 500
	MaxBlock     = 10_000
	// growAgain is how soon a second Grow doubles the block: the node
	// spends faster than a block per second, so it asks etcd less often.
	growAgain = time.Second
	// blockReset is the idleness after which the block falls back.
	blockReset = time.Minute
	// growAttempts bounds the compare-and-swap retries of one Grow.
	growAttempts = 20
)

// ErrContention is wrapped by Grow when every attempt lost the race.
var ErrContention = errors.New("quota grant lost the race too many times")

// Quota shares monthly segment limits among the nodes. Each node spends
// from a claim published in etcd, so that no message costs an etcd request:
//
//	quota/<month>/<ent>/rev         bumped by every grant from the pool: the compare-and-swap guard
//	quota/<month>/<ent>/used/<node> no lease: P, the node's published watermark
//	quota/<month>/<ent>/free/<node> the node's lease: F, held by the node, not yet spendable
//
// A node spends only up to its P (its local usage S ≤ P, always), so F is
// truly unspent: when the node dies, F returns to the pool with the lease,
// and P stays counted. The cluster's total is Σ P + Σ F of live nodes, and
// every grant from the pool keeps it ≤ limit, because it is computed from
// the keys as of one revision and written in a txn that fails if rev moved
// since. A dead node's P − S (at most its last step) is the conservative
// part: nobody spends it until the node comes back, where Grow makes its P
// spendable again, or Shrink lowers P to the node's true usage.
//
// Grow publishes by steps (the need, at least half a block): moving a step
// from F to P is one txn that keeps the node's P + F, guarded by the mod
// revisions of its own two keys (the free key still there proves the lease
// still holds it); when F is short, the same single txn takes a block from
// the pool into F and publishes a step, guarded by rev as well. The node
// keeps what it last read or wrote (Σ of the others as of rev's mod
// revision): a grant costs one txn when no other node took from the pool
// since, and a txn that fails returns a fresh Range in its Else branch.
type Quota struct {
	n     *Node
	block int64

	mu     sync.Mutex
	claims map[quotaKey]*claim
}

type quotaKey struct{ ent, month string }

// quotaView is a month's keys as this node last read or wrote them.
type quotaView struct {
	pub, free int64 // this node's P and F
	others    int64 // Σ used + Σ free of the other nodes, as of revMod
	// Mod revisions, 0 for a key that is absent.
	revMod, usedMod, freeMod int64
}

type claim struct {
	v quotaView
	// known is false until v was read from etcd, and again after Shrink
	// (which bumps rev without knowing the others): the next Grow reads.
	known bool
	// step is the size of the last publish: how far P can be ahead of
	// what the node spent.
	step     int64
	block    int64 // adaptive block size
	lastGrow time.Time
	// growing holds one token: one Grow or Shrink per claim at a time on
	// this node, and those that waited find the claim grown and ask etcd
	// nothing.
	growing chan struct{}
}

func (q *Quota) claimLocked(k quotaKey) *claim {
	c := q.claims[k]
	if c == nil {
		c = &claim{block: q.block, growing: make(chan struct{}, 1)}
		q.claims[k] = c
	}
	return c
}

// hold waits for claim k's turn — one Grow or Shrink per claim at a time —
// or for ctx, and returns the claim and the release of its turn.
func (q *Quota) hold(ctx context.Context, k quotaKey) (*claim, func(), error) {
	q.mu.Lock()
	c := q.claimLocked(k)
	q.mu.Unlock()
	select {
	case c.growing <- struct{}{}:
		return c, func() { <-c.growing }, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Quota returns the node's quota claims with the given base block (≤ 0:
// DefaultBlock). Use one per node.
func (n *Node) Quota(block int64) *Quota {
	if block <= 0 {
		block = DefaultBlock
	}
	if block > MaxBlock {
		block = MaxBlock
	}
	return &Quota{n: n, block: block, claims: map[quotaKey]*claim{}}
}

// Claim is how far this node may count its usage of ent's month, from
// memory, without etcd: its published watermark P, 0 if none. It holds
// even once the lease is lost or keepalives go unanswered: P has no lease
// and stays counted by every other node; only F, which Claim does not
// include, can return to the pool.
func (q *Quota) Claim(ent, month string) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if c := q.claims[quotaKey{ent, month}]; c != nil {
		return c.v.pub
	}
	return 0
}

// quotaKeys are the keys of one month of one enterprise, for this node.
type quotaKeys struct{ prefix, rev, used, free string }

func (q *Quota) keys(ent, month string) quotaKeys {
	p := q.n.key("quota", month, ent) + "/"
	me := strconv.Itoa(int(q.n.cfg.NodeID))
	return quotaKeys{prefix: p, rev: p + "rev", used: p + "used/" + me, free: p + "free/" + me}
}

// view reads a month's keys as of one revision.
func (ks quotaKeys) view(kvs []*mvccpb.KeyValue) (quotaView, error) {
	var v quotaView
	for _, kv := range kvs {
		key := string(kv.Key)
		if key == ks.rev {
			v.revMod = kv.ModRevision
			continue
		}
		n, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err != nil {
			// A value we cannot read counts as nothing we can trust:
			// refuse rather than overspend.
			return v, fmt.Errorf("%s: %w", key, err)
		}
		switch {
		case key == ks.used:
			v.pub, v.usedMod = n, kv.ModRevision
		case key == ks.free:
			v.free, v.freeMod = n, kv.ModRevision
		case strings.HasPrefix(key, ks.prefix+"used/"), strings.HasPrefix(key, ks.prefix+"free/"):
			v.others += n
		}
	}
	return v, nil
}

// grant is one write of Grow: the node's new P and F.
type grant struct {
	pub, free int64
	// pool: P + F grows, the grant takes from the pool (or counts what
	// was spent beyond P): it bumps rev and is guarded by it.
	pool bool
}

// plan is the grant for used + need from v: a step from F if F covers the
// need, else a block from the pool into F and a step from it. A step is
// at least the need and at least half the block (the block taken, near
// the end), at most what is held: P − S, what a crash leaves counted but
// unspent, is at most that.
func (v quotaView) plan(used, need, limit, block int64) grant {
	target := used + need
	if target <= v.pub {
		return grant{pub: v.pub, free: v.free} // covered: a node back from a crash finds its P
	}
	if short := target - v.pub; used <= v.pub && short <= v.free {
		s := min(v.free, max(short, block/2, 1))
		return grant{pub: v.pub + s, free: v.free - s}
	}
	// What was spent beyond P (a node that overspent under older rules)
	// is counted: it cannot be undone.
	base := max(v.pub, used)
	pool := limit - v.others - base - v.free
	// Near the end, a block is at most a quarter of what remains, so
	// that the last segments are not hoarded by one node.
	b := min(block, max(pool/4, 1))
	take := min(max(b, target-base-v.free), max(pool, 0))
	held := base + v.free + take
	pub := min(held, max(target, base+max(b/2, 1)))
	return grant{pub: pub, free: held - pub, pool: held > v.pub+v.free}
}

// Grow makes this node's published watermark P cover used + need (used is
// its true usage: reserved + charged) and returns it, the new claim. A
// claim below used+need is the answer "quota exceeded", not an error; it
// is given only after a fresh read of etcd. A limit < 0 is unlimited:
// math.MaxInt64 without a request.
//
// Goroutines of this node grow a claim one at a time; when the claim
// already covers used+need (another one grew it meanwhile), Grow returns it
// without a request.
//
// Grow does not wait for a keepalive answer: a step commits only while
// the node's free key is still there (its txn compares its mod revision),
// so etcd, not this node's clock, says whether the lease still holds F.
//
// Grow never lowers P, even when used is below it: goroutines of this node
// may charge under the current claim while Grow runs, and what they spend
// must stay counted. Shrink is the one that gives back.
func (q *Quota) Grow(ctx context.Context, ent, month string, used, need, limit int64) (int64, error) {
	if limit < 0 {
		return math.MaxInt64, nil
	}
	if err := checkQuotaNames(ent, month); err != nil {
		return 0, fmt.Errorf("cluster: quota grow: %w", err)
	}
	if err := q.n.live(ctx); err != nil {
		return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %w", month, ent, err)
	}
	k := quotaKey{ent, month}
	c, release, err := q.hold(ctx, k)
	if err != nil {
		return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %w", month, ent, err)
	}
	defer release()
	if cl := q.Claim(ent, month); cl >= used+need {
		return cl, nil // grown by another goroutine while we waited
	}
	block := q.nextBlock(k)
	ks := q.keys(ent, month)
	fail := func(what string, err error) (int64, error) {
		return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %s: %w", month, ent, what, err)
	}
	read := func() (quotaView, error) {
		resp, err := q.n.cli.Get(ctx, ks.prefix, clientv3.WithPrefix())
		if err != nil {
			return quotaView{}, err
		}
		return ks.view(resp.Kvs)
	}
	q.mu.Lock()
	v, fresh := c.v, false
	known := c.known
	q.mu.Unlock()
	if !known {
		var err error
		if v, err = read(); err != nil {
			return fail("read", err)
		}
		fresh = true
	}
	for range growAttempts {
		g := v.plan(used, need, limit, block)
		if g.pub < used+need && !fresh {
			// Not "exceeded" from what we knew: leases may have
			// expired and nodes shrunk since.
			var err error
			if v, err = read(); err != nil {
				return fail("read", err)
			}
			fresh = true
			g = v.plan(used, need, limit, block)
		}
		if g.pub == v.pub && g.free == v.free {
			q.keep(c, v, 0) // covered already (a node back from a crash), or exceeded
			return q.Claim(ent, month), nil
		}
		// Our own keys as we know them: the free key still there is
		// still on our lease, and no one else wrote them.
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(ks.used), "=", v.usedMod),
			clientv3.Compare(clientv3.ModRevision(ks.free), "=", v.freeMod),
		}
		var ops []clientv3.Op
		if g.pool {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ks.rev), "=", v.revMod))
			ops = append(ops, clientv3.OpPut(ks.rev, ""))
		}
		ops = append(ops, clientv3.OpPut(ks.used, strconv.FormatInt(g.pub, 10)))
		if g.free > 0 {
			ops = append(ops, clientv3.OpPut(ks.free, strconv.FormatInt(g.free, 10), clientv3.WithLease(q.n.sess.Lease())))
		} else {
			ops = append(ops, clientv3.OpDelete(ks.free))
		}
		tr, err := q.n.cli.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(ks.prefix, clientv3.WithPrefix())).
			Commit()
		if err != nil {
			return fail("write", err)
		}
		if !tr.Succeeded {
			// Another grant came between: its Range is the Else's.
			if v, err = ks.view(tr.Responses[0].GetResponseRange().Kvs); err != nil {
				return fail("read", err)
			}
			fresh = true
			continue
		}
		rev := tr.Header.Revision
		step := g.pub - v.pub
		v.pub, v.free, v.usedMod, v.freeMod = g.pub, g.free, rev, 0
		if g.free > 0 {
			v.freeMod = rev
		}
		if g.pool {
			v.revMod = rev
		}
		q.keep(c, v, step)
		return q.Claim(ent, month), nil
	}
	return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %w (%d attempts)", month, ent, ErrContention, growAttempts)
}

// keep records v as the claim's view; step > 0 is the size of a publish.
func (q *Quota) keep(c *claim, v quotaView, step int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c.v, c.known = v, true
	if step > 0 {
		c.step = step
	}
}

// nextBlock is the block for this grant, adapted to how often the node
// grows: doubled when it grew less than a second ago, back to the base
// after a minute without growing.
func (q *Quota) nextBlock(k quotaKey) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.claimLocked(k)
	now := time.Now()
	switch {
	case c.lastGrow.IsZero():
	case now.Sub(c.lastGrow) < growAgain:
		c.block = min(c.block*2, MaxBlock)
	case now.Sub(c.lastGrow) > blockReset:
		c.block = q.block
	}
	c.lastGrow = now
	return c.block
}

// Shrink sets this node's P to used, its true usage, and gives F back:
// what the node published but did not spend returns to the pool. This is
// how a node back from a crash reconciles the P its previous life left.
// Call it when nothing of ent's month can be charged on this node
// meanwhile (idle enterprise, month end, start-up before serving); a later
// charge needs a Grow first.
func (q *Quota) Shrink(ctx context.Context, ent, month string, used int64) error {
	if err := checkQuotaNames(ent, month); err != nil {
		return fmt.Errorf("cluster: quota shrink: %w", err)
	}
	if err := q.n.live(ctx); err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: %w", month, ent, err)
	}
	k := quotaKey{ent, month}
	c, release, err := q.hold(ctx, k)
	if err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: %w", month, ent, err)
	}
	defer release()
	// The claim goes down first, so nothing is charged beyond used while
	// the request is in flight.
	q.mu.Lock()
	c.v.pub = min(c.v.pub, used)
	c.known = false
	q.mu.Unlock()
	ks := q.keys(ent, month)
	// Lowering the total needs no compare: a concurrent grant computed
	// with our larger P + F, which only makes it more careful. rev moves
	// so that a grant computed before does not reuse what we knew.
	_, err = q.n.cli.Txn(ctx).Then(
		clientv3.OpPut(ks.rev, ""),
		clientv3.OpPut(ks.used, strconv.FormatInt(used, 10)),
		clientv3.OpDelete(ks.free),
	).Commit()
	if err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: write: %w", month, ent, err)
	}
	q.mu.Lock()
	c.v.pub, c.v.free, c.step = used, 0, 0
	q.mu.Unlock()
	return nil
}

// checkQuotaNames refuses names that would make one month's or one
// enterprise's keys look like another's (a "/" in them).
func checkQuotaNames(ent, month string) error {
	if ent == "" || month == "" || strings.Contains(ent, "/") || strings.Contains(month, "/") {
		return fmt.Errorf("enterprise %q, month %q: must be non-empty, without '/'", ent, month)
	}
	return nil
}

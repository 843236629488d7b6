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
// from a claim it holds in etcd, so that no message costs an etcd request:
//
//	quota/<month>/<ent>/rev         bumped by every grant: the compare-and-swap guard
//	quota/<month>/<ent>/used/<node> no lease: the node's usage (charged + reserved) at its last grant
//	quota/<month>/<ent>/free/<node> the node's lease: the unspent part of its block
//
// The cluster's total is Σ used + Σ free of live nodes, and every grant
// keeps it ≤ limit, because it is computed from one Range and written in a
// txn that fails if rev moved since.
//
// The claim of a node is used + free as of its last grant: the node charges
// locally until its own usage reaches it, then calls Grow.
type Quota struct {
	n     *Node
	block int64

	mu     sync.Mutex
	claims map[quotaKey]*claim
}

type quotaKey struct{ ent, month string }

type claim struct {
	used, free int64
	rev        int64 // etcd revision of the grant, so an older one never wins
	block      int64 // adaptive block size
	lastGrow   time.Time
	// growing holds one token: one Grow per claim at a time on this node,
	// and those that waited find the claim grown and ask etcd nothing.
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
// memory, without etcd: used + free of its last grant, 0 if none. Once the
// lease is lost, or no keepalive was answered for TTL/2, it is the used part
// only: a node cut off from etcd must stop spending before its lease can
// expire and others take the free part.
func (q *Quota) Claim(ent, month string) int64 {
	var used, free int64
	q.mu.Lock()
	if c := q.claims[quotaKey{ent, month}]; c != nil {
		used, free = c.used, c.free
	}
	q.mu.Unlock()
	if q.n.fenced() {
		return used
	}
	return used + free
}

func (q *Quota) prefix(ent, month string) string {
	return q.n.key("quota", month, ent) + "/"
}

// Grow asks for more: it sets this node's used to used (never below what
// etcd has for it) and its free part to a block of at least need, within
// what limit leaves after the other nodes' used and free, and returns the
// new claim. A claim below used+need is the answer "quota exceeded", not
// an error. A limit < 0 is unlimited: math.MaxInt64 without a request.
//
// Goroutines of this node grow a claim one at a time; when the claim
// already covers used+need (another one grew it meanwhile), Grow returns it
// without a request.
//
// Grow never lowers this node's used+free in etcd: goroutines of this node
// may charge under the previous claim while Grow runs, and what they spend
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
	q.mu.Lock()
	c := q.claimLocked(k)
	q.mu.Unlock()
	select {
	case c.growing <- struct{}{}:
		defer func() { <-c.growing }()
	case <-ctx.Done():
		return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %w", month, ent, ctx.Err())
	}
	if cl := q.Claim(ent, month); cl >= used+need {
		return cl, nil // grown by another goroutine while we waited
	}
	block := q.nextBlock(k)
	me := strconv.Itoa(int(q.n.cfg.NodeID))
	p := q.prefix(ent, month)
	revKey, usedKey, freeKey := p+"rev", p+"used/"+me, p+"free/"+me
	for range growAttempts {
		resp, err := q.n.cli.Get(ctx, p, clientv3.WithPrefix())
		if err != nil {
			return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: read: %w", month, ent, err)
		}
		var revMod, others, myUsed, myFree int64
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			if key == revKey {
				revMod = kv.ModRevision
				continue
			}
			v, err := strconv.ParseInt(string(kv.Value), 10, 64)
			if err != nil {
				// A value we cannot read counts as nothing we can
				// trust: refuse rather than overspend.
				return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %s: %w", month, ent, key, err)
			}
			switch {
			case key == usedKey:
				myUsed = v
			case key == freeKey:
				myFree = v
			case strings.HasPrefix(key, p+"used/"), strings.HasPrefix(key, p+"free/"):
				others += v
			}
		}
		newUsed := max(used, myUsed)
		remaining := limit - others - newUsed
		b := block
		// Near the end, a block is at most a quarter of what remains, so
		// that the last segments are not hoarded by one node.
		if quarter := max(remaining/4, 1); b > quarter {
			b = quarter
		}
		free := min(max(b, need), remaining)
		// Never lower our total: what was ours may already be spent.
		free = max(free, myUsed+myFree-newUsed, 0)

		ops := []clientv3.Op{
			clientv3.OpPut(revKey, ""),
			clientv3.OpPut(usedKey, strconv.FormatInt(newUsed, 10)),
		}
		if free > 0 {
			ops = append(ops, clientv3.OpPut(freeKey, strconv.FormatInt(free, 10), clientv3.WithLease(q.n.sess.Lease())))
		} else {
			ops = append(ops, clientv3.OpDelete(freeKey))
		}
		tr, err := q.n.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(revKey), "=", revMod)).
			Then(ops...).
			Commit()
		if err != nil {
			return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: write: %w", month, ent, err)
		}
		if !tr.Succeeded {
			continue // another grant came between: read again
		}
		q.record(k, newUsed, free, tr.Header.Revision)
		return q.Claim(ent, month), nil
	}
	return q.Claim(ent, month), fmt.Errorf("cluster: quota grow %s/%s: %w (%d attempts)", month, ent, ErrContention, growAttempts)
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

// record keeps a successful grant unless a later one is already known
// (two goroutines of this node may grow at once).
func (q *Quota) record(k quotaKey, used, free, rev int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.claimLocked(k)
	if rev > c.rev {
		c.used, c.free, c.rev = used, free, rev
	}
}

// Shrink gives back the free part: used becomes this node's used (never
// below what etcd has) and free goes. Call it when nothing of ent's month
// can be charged on this node meanwhile (idle enterprise, month end);
// a later charge needs a Grow first.
func (q *Quota) Shrink(ctx context.Context, ent, month string, used int64) error {
	if err := checkQuotaNames(ent, month); err != nil {
		return fmt.Errorf("cluster: quota shrink: %w", err)
	}
	if err := q.n.live(ctx); err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: %w", month, ent, err)
	}
	k := quotaKey{ent, month}
	me := strconv.Itoa(int(q.n.cfg.NodeID))
	p := q.prefix(ent, month)
	usedKey := p + "used/" + me
	// Our claim goes to used first, so nothing is charged beyond used
	// while the request is in flight.
	q.mu.Lock()
	if c := q.claims[k]; c != nil {
		c.free = 0
		used = max(used, c.used)
	}
	q.mu.Unlock()
	g, err := q.n.cli.Get(ctx, usedKey)
	if err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: read: %w", month, ent, err)
	}
	if len(g.Kvs) > 0 {
		if v, err := strconv.ParseInt(string(g.Kvs[0].Value), 10, 64); err == nil {
			used = max(used, v)
		}
	}
	// Lowering the total needs no compare: a concurrent grant computed
	// with our larger free part, which only makes it more careful.
	tr, err := q.n.cli.Txn(ctx).Then(
		clientv3.OpPut(p+"rev", ""),
		clientv3.OpPut(usedKey, strconv.FormatInt(used, 10)),
		clientv3.OpDelete(p+"free/"+me),
	).Commit()
	if err != nil {
		return fmt.Errorf("cluster: quota shrink %s/%s: write: %w", month, ent, err)
	}
	q.record(k, used, 0, tr.Header.Revision)
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

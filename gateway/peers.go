package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qxtd/qxtd/queue"
)

// Cluster mode: receipts that another node must match.
//
// The nodes share the carrier binds, so an SMSC returns a receipt on any
// node's bind. One that matches no part here is stored as an orphan, as
// on a single node (durable before its deliver_sm_resp). With
// Config.Peers set, the pusher (one goroutine of the Gateway) offers the
// orphans, in batches, to every live peer; a peer matches them with
// queue.Store.ApplyDLRIfKnown (MatchPeerReceipts) and the receipt then
// flows to the ESME on the owner's node like a local one. An orphan that
// a peer matched (or found already final) is deleted here; one that no
// peer knows stays and is offered again with a backoff (1 s doubling to
// 30 s, per orphan), because its owner may be down or may not have
// committed its submit_sm_resp yet. Nothing is dropped while a peer is
// down: a local Submitted still takes the orphan first, and only the
// purge (Config.OrphanTTL, default a day) ends it, so an owner down
// longer than OrphanTTL loses those receipts and its parts end Unknown
// (ExpireSubmitted). A stored orphan wakes the pusher at once.

// Peers is the cluster as the gateway needs it: the other live nodes and
// a way to offer them receipts. cmd/qxtd implements it over the cluster
// membership and cluster.PeerClient (whose types PeerReceipt and
// PeerResult convert to and from these).
type Peers interface {
	// Live lists the other nodes (never this one) that are members now.
	Live() []Peer
	// PushReceipts offers rs (at most MaxPeerBatch) to p and returns p's
	// result for each, in order. An error means the outcome is unknown:
	// the receipts stay here and are offered again.
	PushReceipts(ctx context.Context, p Peer, rs []PeerReceipt) ([]PeerResult, error)
}

// Peer is another node of the cluster.
type Peer struct {
	ID  uint16
	URL string // base URL of its peer listener
}

// PeerReceipt is a receipt offered between nodes. Its fields are
// cluster.PeerReceipt's: one converts to the other.
type PeerReceipt struct {
	Upstream string    `json:"upstream"`
	SMSCID   string    `json:"smsc_id"`
	State    string    `json:"state"` // queue.State.String()
	Err      string    `json:"err,omitempty"`
	DoneAt   time.Time `json:"done_at"`
	// Convert: the receipt came long enough ago (its upstream's
	// resp_timeout, convert.go) that its id may be looked up in the other
	// base too; before that, only a part with the id's own form takes it.
	Convert bool `json:"convert,omitempty"`
}

// PeerResult is what a node did with a PeerReceipt (cluster.PeerResult).
type PeerResult string

// Results of MatchPeerReceipts.
const (
	PeerMatched   PeerResult = "matched"
	PeerDuplicate PeerResult = "duplicate"
	PeerUnknown   PeerResult = "unknown"
)

// Pusher tuning.
const (
	MaxPeerBatch     = 512 // receipts in one PushReceipts (cluster.PeerMaxReceipts)
	peerRetryMin     = time.Second
	peerRetryMax     = 30 * time.Second
	peerPushTimeout  = 10 * time.Second // one PushReceipts: a peer that hangs delays a round this long at most
	DefaultOrphanTTL = 24 * time.Hour
)

// MatchPeerReceipts applies receipts another node offers
// (cluster.PeerBackend.MatchReceipts): a receipt whose SMSC id one of our
// parts has is applied as if it had come on our bind (metrics included);
// the others are PeerUnknown and nothing is stored. An error (the store
// failed) fails the batch: the peer keeps the receipts and offers them
// again.
func (g *Gateway) MatchPeerReceipts(ctx context.Context, rs []PeerReceipt) ([]PeerResult, error) {
	out := make([]PeerResult, len(rs))
	errs := make([]error, len(rs))
	// Concurrent, so that the batch shares the store's group commits.
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { out[i], errs[i] = g.matchPeerReceipt(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (g *Gateway) matchPeerReceipt(ctx context.Context, r PeerReceipt) (PeerResult, error) {
	state, ok := queue.ParseState(r.State)
	if !ok || !state.Final() {
		g.log.Warn("peer receipt with an unknown state", "upstream", r.Upstream, "state", r.State)
		return PeerUnknown, nil
	}
	now := time.Now()
	if r.DoneAt.IsZero() {
		r.DoneAt = now
	}
	res, submitted, err := g.store.ApplyDLRIfKnown(ctx, queue.DLR{
		Upstream: r.Upstream, SMSCID: r.SMSCID, State: state, ErrCode: r.Err, DoneAt: r.DoneAt,
	}, r.Convert)
	if errors.Is(err, queue.ErrInvalid) {
		g.log.Warn("peer receipt refused", "upstream", r.Upstream, "err", err)
		return PeerUnknown, nil
	}
	if err != nil {
		return "", fmt.Errorf("gateway: peer receipt: %w", err)
	}
	var pr PeerResult
	switch res {
	case queue.Matched:
		pr = PeerMatched
		if !submitted.IsZero() {
			g.metrics.dlrDelay.WithLabelValues(r.Upstream).Observe(r.DoneAt.Sub(submitted).Seconds())
		}
	case queue.Duplicate:
		pr = PeerDuplicate
	default:
		return PeerUnknown, nil
	}
	g.metrics.dlrs.WithLabelValues(state.String(), res.String()).Inc()
	return pr, nil
}

// PeerMessage returns message id of enterprise as JSON, for a peer that
// routes a query to the owner (cluster.PeerBackend.Message). The error is
// queue.ErrNotFound when there is none (or it is another enterprise's).
func (g *Gateway) PeerMessage(_ context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, err := g.Message(&Account{Enterprise: enterprise}, id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// PeersChanged tells the pusher that the membership changed (a node
// joined or came back): every orphan is offered again at once, without
// waiting for its backoff. cmd/qxtd calls it from its membership watch.
func (g *Gateway) PeersChanged() {
	if g.pusher != nil {
		g.pusher.reset.Store(true)
		g.pusher.kick()
	}
}

// orphanStored wakes the pusher after handleSMSC stored an orphan.
func (g *Gateway) orphanStored() {
	if g.pusher != nil {
		g.pusher.kick()
	}
}

// pusher offers the store's orphan receipts to the peers (see above).
type pusher struct {
	g     *Gateway
	peers Peers
	wake  chan struct{} // 1-buffered: kicks coalesce
	reset atomic.Bool   // PeersChanged: forget the backoffs

	// retry holds the backoff of the orphans no peer took, by key; it
	// mirrors the orphan bucket (pruned at each full scan), so it is
	// bounded by the stored orphans, not by traffic.
	retry map[string]peerRetry

	forwarded *prometheus.CounterVec // result: matched, duplicate, unknown, failed
}

type peerRetry struct {
	next  time.Time
	delay time.Duration
}

func newPusher(g *Gateway, peers Peers) *pusher {
	p := &pusher{g: g, peers: peers, wake: make(chan struct{}, 1), retry: make(map[string]peerRetry)}
	p.forwarded = promauto.With(g.metrics.reg).NewCounterVec(prometheus.CounterOpts{
		Name: "qxtd_cluster_receipts_forwarded_total",
		Help: "Orphan receipts offered to the other nodes, by outcome: matched or duplicate (taken by a node: deleted here), unknown (no node has the id yet), failed (a node could not be asked).",
	}, []string{"result"})
	for _, r := range []string{"matched", "duplicate", "unknown", "failed"} {
		p.forwarded.WithLabelValues(r)
	}
	return p
}

func (p *pusher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run offers orphans until ctx ends: at start (orphans kept across a
// restart), when kicked, and when the earliest backoff ends.
func (p *pusher) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
		if p.reset.Swap(false) {
			clear(p.retry)
		}
		next := p.round(ctx)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// round scans every orphan once, offers those due, and returns when the
// earliest of the others is due (zero: none waits).
func (p *pusher) round(ctx context.Context) time.Time {
	if len(p.peers.Live()) == 0 {
		// Alone (a one-node cluster, or every other node gone): nobody
		// to offer them to. PeersChanged wakes the pusher when a node
		// joins or comes back.
		return time.Time{}
	}
	now := time.Now()
	var next time.Time
	seen := make(map[string]struct{}, len(p.retry))
	var batch []queue.OrphanDLR
	var after []byte
	for ctx.Err() == nil {
		page, more, err := p.g.store.Orphans(ctx, after, MaxPeerBatch)
		if err != nil {
			p.g.log.Error("list orphan receipts", "err", err)
			return now.Add(peerRetryMin)
		}
		for _, o := range page {
			k := string(o.Key)
			seen[k] = struct{}{}
			if r, ok := p.retry[k]; ok && r.next.After(now) {
				if next.IsZero() || r.next.Before(next) {
					next = r.next
				}
				continue
			}
			batch = append(batch, o)
			if len(batch) == MaxPeerBatch {
				if n := p.push(ctx, batch); !n.IsZero() && (next.IsZero() || n.Before(next)) {
					next = n
				}
				batch = batch[:0]
			}
		}
		if more == nil {
			break
		}
		after = more
	}
	if len(batch) > 0 {
		if n := p.push(ctx, batch); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	if ctx.Err() == nil {
		for k := range p.retry {
			if _, ok := seen[k]; !ok {
				delete(p.retry, k) // taken by a local Submitted, or purged
			}
		}
	}
	return next
}

// push offers batch to every live peer at once, deletes the orphans one of
// them took, and backs off the others; it returns the earliest retry.
func (p *pusher) push(ctx context.Context, batch []queue.OrphanDLR) time.Time {
	rs := make([]PeerReceipt, len(batch))
	for i, o := range batch {
		first, _ := convertGrace(p.g, o.DLR.Upstream)
		rs[i] = PeerReceipt{Upstream: o.DLR.Upstream, SMSCID: o.DLR.SMSCID, State: o.DLR.State.String(),
			Err: o.DLR.ErrCode, DoneAt: o.DLR.DoneAt, Convert: p.g.converts(o.DLR.Upstream) && time.Since(o.ReceivedAt) >= first}
	}
	peers := p.peers.Live()
	answers := make([][]PeerResult, len(peers))
	pctx, cancel := context.WithTimeout(ctx, peerPushTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Go(func() {
			res, err := p.peers.PushReceipts(pctx, peer, rs)
			if err != nil || len(res) != len(rs) {
				if ctx.Err() == nil {
					p.g.log.Warn("offer receipts to a peer", "peer", peer.ID, "url", peer.URL, "receipts", len(rs), "err", err)
				}
				return
			}
			answers[i] = res
		})
	}
	wg.Wait()
	var taken []queue.OrphanDLR
	var next time.Time
	now := time.Now()
	for i, o := range batch {
		outcome := "unknown"
		if len(peers) == 0 {
			outcome = "failed"
		}
		for _, a := range answers {
			switch {
			case a == nil:
				if outcome == "unknown" {
					outcome = "failed"
				}
			case a[i] == PeerMatched:
				outcome = "matched"
			case a[i] == PeerDuplicate && outcome != "matched":
				outcome = "duplicate"
			}
		}
		p.forwarded.WithLabelValues(outcome).Inc()
		k := string(o.Key)
		if outcome == "matched" || outcome == "duplicate" {
			taken = append(taken, o)
			delete(p.retry, k)
			continue
		}
		r := p.retry[k]
		r.delay = min(max(2*r.delay, peerRetryMin), peerRetryMax)
		r.next = now.Add(r.delay)
		p.retry[k] = r
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	if len(taken) > 0 {
		if _, err := p.g.store.DeleteOrphans(ctx, taken); err != nil && ctx.Err() == nil {
			// Kept: offered again, and the peers answer duplicate.
			p.g.log.Error("delete orphan receipts a peer took", "receipts", len(taken), "err", err)
			return now.Add(peerRetryMin)
		}
	}
	return next
}

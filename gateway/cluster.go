package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Cluster is what the gateway needs of cluster mode: the carrier's binds
// and the enterprises' monthly quotas are shared by every node. cmd/qxtd
// adapts package cluster to it; the gateway knows nothing of etcd.
type Cluster interface {
	// BindShare is how many of an upstream's total binds this node should
	// hold now: total spread evenly over the live nodes, rounded up.
	BindShare(total int) int
	// Changed returns a channel closed at the next change of the live
	// nodes (BindShare may then differ).
	Changed() <-chan struct{}
	// AcquireBind blocks until this node holds one of the total binds of
	// upstream, or of its receivers (UpstreamConfig.Receivers: a cap of
	// their own at the carrier); the carrier never sees more than total
	// at once.
	AcquireBind(ctx context.Context, upstream string, receivers bool, total int) (BindSlot, error)
	// QuotaClaim is how many segments of the enterprise's month this
	// node may have reserved and charged: the watermark it published in
	// etcd (never spent beyond, so the cluster counts it even if this
	// node dies). Memory only.
	QuotaClaim(enterprise, month string) int64
	// QuotaGrow asks for room for need more segments over used (this
	// node's reserved + charged) within the enterprise's limit for the
	// whole cluster, and returns the new claim: less than used + need when
	// the cluster has no more.
	QuotaGrow(ctx context.Context, enterprise, month string, used, need, limit int64) (int64, error)
	// PublishUpstreamsUp tells the other nodes the upstreams of which this
	// node has a sending bind up (routing's failover: failover.go).
	PublishUpstreamsUp(names []string) error
	// UpstreamUp reports whether some node, this one included, has a
	// sending bind of upstream up as far as this node knows, or may have
	// (a node that publishes nothing counts as up).
	UpstreamUp(upstream string) bool
}

// BindSlot is one of an upstream's binds held by this node.
type BindSlot interface {
	// Done is closed when the slot is lost (the node lost its etcd lease,
	// or an operator took it): the bind must end.
	Done() <-chan struct{}
	// Release gives the slot back.
	Release()
}

// runShared runs bind i of the upstream (receiver i with receivers) while
// this node holds a slot for it and i is within the node's share: when
// another node joins, the binds past the share are unbound so that it can
// take theirs; when one leaves, its slots free up (its lease expires) and
// ours take them.
func (u *upstream) runShared(ctx context.Context, receivers bool, i int, c *smpp.Client) {
	cl := u.g.cfg.Cluster
	total := u.cfg.Binds
	log := u.g.log.With("upstream", u.cfg.Name, "bind", i)
	if receivers {
		total = u.cfg.Receivers
		log = u.g.log.With("upstream", u.cfg.Name, "receiver", i)
	}
	backoff := time.Second
	for ctx.Err() == nil {
		for ctx.Err() == nil {
			changed := cl.Changed()
			if i < cl.BindShare(total) {
				break
			}
			select {
			case <-ctx.Done():
			case <-changed:
			}
		}
		slot, err := cl.AcquireBind(ctx, u.cfg.Name, receivers, total)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("cluster: no bind slot", "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		bctx, cancel := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { // ends the bind when the slot is lost or the share shrinks
			defer close(watched)
			for {
				changed := cl.Changed()
				if i >= cl.BindShare(total) {
					log.Info("cluster: giving this bind to another node")
					cancel()
					return
				}
				select {
				case <-bctx.Done():
					return
				case <-slot.Done():
					log.Warn("cluster: bind slot lost; unbinding")
					cancel()
					return
				case <-changed:
				}
			}
		}()
		c.Run(bctx)
		cancel()
		<-watched
		slot.Release()
	}
}

// nodeLimit is the quota the store checks on this node: the enterprise's
// limit on its own, this node's claim on it in a cluster.
func (g *Gateway) nodeLimit(enterprise string, limit int64) int64 {
	if g.cfg.Cluster == nil || limit < 0 {
		return limit
	}
	return g.cfg.Cluster.QuotaClaim(enterprise, queue.BillingMonth(time.Now()))
}

// growQuota asks the cluster for room for need more segments of the
// enterprise's month; ok is false when it has none (or etcd failed: a
// quota that cannot be checked is not spent).
func (g *Gateway) growQuota(ctx context.Context, enterprise string, limit, need int64) (claim int64, ok bool) {
	if g.cfg.Cluster == nil || limit < 0 {
		return limit, false
	}
	month := queue.BillingMonth(time.Now())
	r, c := g.store.Usage(enterprise, month)
	claim, err := g.cfg.Cluster.QuotaGrow(ctx, enterprise, month, r+c, need, limit)
	if err != nil {
		g.log.Warn("cluster: quota claim failed", "enterprise", enterprise, "err", err)
		return 0, false
	}
	return claim, claim >= r+c+need
}

// enqueueLimited is store.EnqueueLimit under the enterprise's quota; in a
// cluster, messages refused for this node's claim are tried once more
// after the claim grew. With render set, each commit also stores the
// request's answer, rendered from the outcomes of every message so far
// (errs, ids: by msgs' index) (queue.WithAnswer); stored is the last one
// committed (nil: none). ctx must then not end (context.WithoutCancel):
// an enqueue that returned early could still commit, and its answer
// with it.
func (g *Gateway) enqueueLimited(ctx context.Context, enterprise string, limit int64, msgs []*queue.Message,
	render func(errs []error, ids []uint64) *queue.Answer) (errs []error, stored *queue.Answer, err error) {
	var ac *answerCommits // nil without render: nothing allocated on the SMPP path
	if render != nil {
		ac = &answerCommits{render: render, n: len(msgs)}
	}
	errs, err = g.store.EnqueueLimit(ac.with(ctx, nil, nil, nil), g.nodeLimit(enterprise, limit), msgs...)
	if err != nil || g.cfg.Cluster == nil || limit < 0 {
		return errs, ac.stored(), err
	}
	var again []*queue.Message
	var at []int
	var need int64
	for k, e := range errs {
		if e != nil {
			again = append(again, msgs[k])
			at = append(at, k)
			need += msgs[k].Segments()
		}
	}
	if len(again) == 0 {
		return errs, ac.stored(), nil
	}
	claim, ok := g.growQuota(ctx, enterprise, limit, need)
	if claim <= 0 && !ok {
		return errs, ac.stored(), nil
	}
	var ids []uint64
	if ac != nil {
		ids = make([]uint64, len(msgs))
		for k, e := range errs {
			if e == nil {
				ids[k] = msgs[k].ID
			}
		}
	}
	errs2, err := g.store.EnqueueLimit(ac.with(ctx, at, errs, ids), claim, again...)
	if err != nil && ac == nil {
		return nil, nil, err
	}
	if err != nil {
		// The first commit stored its messages and its answer, and this
		// one nothing (render's caller passes a context that cannot end,
		// so an error is a transaction not committed): the rest stay
		// refused for the quota, as that answer says, rather than the
		// request failing as if nothing had been stored.
		g.log.Error("store the messages of a grown quota claim", "enterprise", enterprise, "messages", len(again), "err", err)
		return errs, ac.stored(), nil
	}
	for j, k := range at {
		errs[k] = errs2[j]
	}
	return errs, ac.stored(), nil
}

// answerCommits renders the answer of each enqueue of a send
// (enqueueLimited) from the outcomes of all its messages so far.
type answerCommits struct {
	render func(errs []error, ids []uint64) *queue.Answer
	n      int // the send's messages
	// last is the answer of the last commit: written in the store's
	// commit loop, read once EnqueueLimit has returned (ordered by its
	// answer).
	last *queue.Answer
}

// with returns ctx with the answer of an enqueue of messages at (by the
// send's index; nil: all of them) over the outcomes before it (prevErrs,
// prevIDs; nil: none); ctx itself without answers (a nil ac).
func (ac *answerCommits) with(ctx context.Context, at []int, prevErrs []error, prevIDs []uint64) context.Context {
	if ac == nil {
		return ctx
	}
	return queue.WithAnswer(ctx, func(done []*queue.Message, doneErrs []error) *queue.Answer {
		errs, ids := slices.Clone(prevErrs), slices.Clone(prevIDs)
		if errs == nil {
			errs, ids = make([]error, ac.n), make([]uint64, ac.n)
		}
		for j, m := range done {
			k := j
			if at != nil {
				k = at[j]
			}
			errs[k], ids[k] = doneErrs[j], 0
			if doneErrs[j] == nil {
				ids[k] = m.ID
			}
		}
		ac.last = ac.render(errs, ids)
		return ac.last
	})
}

// stored is the answer of the last commit (nil: none, or no answers).
func (ac *answerCommits) stored() *queue.Answer {
	if ac == nil {
		return nil
	}
	return ac.last
}

package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Lead campaigns for the leadership called name (an etcd election under
// leader/<name>, on the node's lease) and runs fn while this node leads,
// with a context that ends when the leadership or the lease is lost or ctx
// ends. When fn returns, the node resigns and campaigns again, so fn should
// run until its context ends. Lead returns when ctx ends or the node's lease
// is lost (an election needs a live lease; a new Join is needed).
//
// A name that is empty or holds a "/" is refused at once (logged): it would
// share keys with another leadership.
func (n *Node) Lead(ctx context.Context, name string, fn func(ctx context.Context)) {
	if err := checkName(name); err != nil {
		n.log.Error("cluster: lead", "err", err)
		return
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	// Campaign blocks in etcd calls under ctx: end them with the node.
	go func() {
		select {
		case <-n.lost:
		case <-n.ctx.Done():
		case <-ctx.Done():
		}
		stop()
	}()
	el := concurrency.NewElection(n.sess, n.key("leader", name))
	val := n.cfg.Name
	for ctx.Err() == nil {
		if err := n.campaign(ctx, el, val); err != nil {
			if ctx.Err() == nil && !errors.Is(err, concurrency.ErrSessionExpired) {
				n.log.Warn("cluster: campaign", "leader", name, "err", err)
				// Lead's ctx, not the node's: a campaign that failed as
				// etcd went away (before ctx ended) kept Lead in this
				// pause 2.5 s after ctx ended (CI, 2026-12-06:
				// TestLeadReturnsWhileEtcdUnreachable).
				pause(ctx, n.cfg.TTL/4)
			}
			continue
		}
		n.lead(ctx, el, name, fn)
		// Resign under a context of its own: ctx may be the reason we stop.
		rctx, cancel := n.opCtx()
		if err := el.Resign(rctx); err != nil && n.ctx.Err() == nil {
			n.log.Warn("cluster: resign; the lease frees it", "leader", name, "err", err)
		}
		cancel()
	}
}

// campaign is el.Campaign, returning when ctx ends even while etcd is
// unreachable: Campaign, its ctx ended, resigns under the client's own
// context, which waits for etcd to answer or for the client to close (in
// Close, after the node's users stopped: a daemon that lost its membership
// would never stop). It then goes on aside until one of those, resigning
// too if it won meanwhile; Close waits for it after closing the client.
func (n *Node) campaign(ctx context.Context, el *concurrency.Election, val string) error {
	done := make(chan error, 1)
	n.campaigns.Go(func() {
		err := el.Campaign(ctx, val)
		if err == nil && ctx.Err() != nil {
			rctx, cancel := n.opCtx()
			_ = el.Resign(rctx) // won as we stopped waiting; else the lease frees it
			cancel()
		}
		done <- err
	})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lead runs fn while our leader key stands.
func (n *Node) lead(ctx context.Context, el *concurrency.Election, name string, fn func(context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Close waits for fn to end before it revokes the lease, so that the
	// next leader never starts while this one still runs.
	ran := make(chan struct{})
	defer close(ran)
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	n.leads[ran] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.leads, ran)
		n.mu.Unlock()
	}()

	n.setLeading(name, true)
	defer n.setLeading(name, false)
	n.log.Info("cluster: leading", "leader", name)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		n.guardLead(lctx, el)
	}()
	fn(lctx)
	cancel()
	<-done
	n.log.Info("cluster: no longer leading", "leader", name)
}

// guardLead returns when the leadership must end: our key went (deleted,
// lease expired), or the keepalive has not been answered for TTL/2, so that
// etcd may expire the lease soon and elect another node while we cannot
// hear it: stopping then keeps two leaders from running at once.
func (n *Node) guardLead(ctx context.Context, el *concurrency.Election) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Watch itself waits while etcd is unreachable: opened aside, so that
	// a leader cut off from etcd as its leadership starts still steps
	// down at ttl/2 below (cancel ends the wait), as a bind slot does.
	// The key and revision are read here: el is not safe for concurrent
	// use, and Lead resigns with it once this returns.
	key, rev := el.Key(), el.Rev()
	opened := make(chan clientv3.WatchChan, 1)
	go func() { opened <- n.cli.Watch(wctx, key, clientv3.WithRev(rev+1), clientv3.WithFilterPut()) }()
	var wch clientv3.WatchChan // nil until opened
	tick := time.NewTicker(max(n.cfg.TTL/10, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case wch = <-opened:
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil || len(resp.Events) > 0 {
				return
			}
		case <-tick.C:
			if n.fenced() {
				n.log.Warn("cluster: keepalive unanswered for ttl/2; stepping down")
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// Leads lists the elections this node leads now, sorted.
func (n *Node) Leads() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name, on := range n.leading {
		if on {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (n *Node) setLeading(name string, on bool) {
	n.mu.Lock()
	n.leading[name] = on
	n.mu.Unlock()
}

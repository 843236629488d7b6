package cluster

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Lead campaigns for the leadership called name (an etcd election under
// leader/<name>, on the node's lease) and runs fn while this node leads,
// with a context that ends when the leadership or the lease is lost or ctx
// ends. When fn returns, the node resigns and campaigns again, so fn should
// run until its context ends. Lead returns when ctx ends or the node's lease
// is lost (an election needs a live lease; a new Join is needed).
func (n *Node) Lead(ctx context.Context, name string, fn func(ctx context.Context)) {
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
		if err := el.Campaign(ctx, val); err != nil {
			if ctx.Err() == nil && !errors.Is(err, concurrency.ErrSessionExpired) {
				n.log.Warn("cluster: campaign", "leader", name, "err", err)
				n.pause(n.cfg.TTL / 4)
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

// lead runs fn while our leader key stands.
func (n *Node) lead(ctx context.Context, el *concurrency.Election, name string, fn func(context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.setLeading(name, true)
	defer n.setLeading(name, false)
	n.log.Info("cluster: leading", "leader", name)
	// The key going (deleted, lease expired) ends the leadership even
	// when our keepalive has not noticed yet.
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		wch := n.cli.Watch(clientv3.WithRequireLeader(lctx), el.Key(), clientv3.WithRev(el.Rev()+1), clientv3.WithFilterPut())
		for resp := range wch {
			if resp.Err() != nil || len(resp.Events) > 0 {
				return
			}
		}
	}()
	fn(lctx)
	cancel()
	<-done
	n.log.Info("cluster: no longer leading", "leader", name)
}

func (n *Node) setLeading(name string, on bool) {
	n.mu.Lock()
	n.leading[name] = on
	n.mu.Unlock()
}

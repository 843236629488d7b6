package gateway

import (
	"context"
	"slices"
	"time"
)

// Failover between upstreams serving a carrier (route, Config.FailoverAfter)
// needs to know since when an upstream has had no bind up. On one node
// that is its own binds (upstream.downSince). In a cluster a node may hold
// none of an upstream's binds while others send for it (submitrelay.go),
// so every node publishes the upstreams it has a bind of up
// (Cluster.PublishUpstreamsUp) and reads the others' (Cluster.UpstreamUp):
// an upstream is routed around once no node has had a bind of it up for
// FailoverAfter (upstream.nowhereSince).

// markFailovers sets each upstream's hasFailover: another upstream is a
// candidate for one of its carriers (both list it, or both list none), so
// that route can pass it by. One with none is never said to be routed
// around: its messages wait for it whatever happens.
func markFailovers(ups []*upstream) {
	for _, u := range ups {
		for _, v := range ups {
			if v == u {
				continue
			}
			both := len(u.cfg.Carriers) == 0 && len(v.cfg.Carriers) == 0
			for _, c := range u.cfg.Carriers {
				both = both || slices.Contains(v.cfg.Carriers, c)
			}
			if both {
				u.hasFailover = true
				break
			}
		}
	}
}

// upChanged wakes watchUpstreams and the dispatcher: an upstream's first
// bind came up here, or its last went down. The dispatcher hands an
// upstream with no bind up nothing (dispatcher.upRoom), so the parts
// left in the store for it are scanned for once it is back. It never
// blocks.
func (g *Gateway) upChanged() {
	g.disp.kick()
	select {
	case g.upSig <- struct{}{}:
	default:
	}
}

// watchUpstreams, in cluster mode, publishes this node's upstreams up and
// keeps each upstream's nowhereSince, at every change here or of the
// members, until ctx ends. A publication that fails is tried again a
// second later.
func (g *Gateway) watchUpstreams(ctx context.Context) {
	cl := g.cfg.Cluster
	var retry <-chan time.Time
	for {
		changed := cl.Changed()
		var up []string
		now := time.Now().UnixNano()
		for _, u := range g.ups {
			here := u.upCount() > 0
			if here {
				up = append(up, u.cfg.Name)
			}
			if here || cl.UpstreamUp(u.cfg.Name) {
				if u.nowhereSince.Swap(0) != 0 {
					g.disp.kick() // its parts left in the store can go (dispatcher.upRoom)
				}
			} else {
				u.nowhereSince.CompareAndSwap(0, now)
			}
		}
		retry = nil
		if err := cl.PublishUpstreamsUp(up); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.log.Warn("cluster: could not publish this node's upstreams up; retrying", "err", err)
			retry = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-g.upSig:
		case <-retry:
		}
	}
}

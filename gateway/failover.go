package gateway

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
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

// moveQueuedEvery is how often moveQueued looks for upstreams routed
// around; moveQueuedBatch how many messages one store operation moves
// (so that the commit loop serves the hot path in between), and
// moveQueuedScan how many it reads: the messages that cannot move (partly
// sent, in flight, or counting other segments where they would go) are
// read once a walk of the queue, not at every turn.
const (
	moveQueuedEvery = time.Second
	moveQueuedBatch = 1000
	moveQueuedScan  = 4 * moveQueuedBatch
)

// moveQueued (Config.FailoverQueued), until ctx ends, moves the messages
// queued for each upstream routed around where a new message to their
// number would go now (standInFor), every moveQueuedEvery: those routed
// to it before its outage, and those it left at a restart. New messages
// already go there (route). Each turn goes on where the last one stopped
// in the upstream's queue (walks), and starts again from the top once it
// reached the end.
func (g *Gateway) moveQueued(ctx context.Context) {
	t := time.NewTicker(moveQueuedEvery)
	defer t.Stop()
	walks := map[string][]byte{} // by upstream: where its next turn resumes
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !g.store.Writable() {
			continue // the dispatcher waits for the disk (waitWritable); so does this
		}
		now := time.Now()
		for _, u := range g.ups {
			if !u.routedAroundAt(now) {
				delete(walks, u.cfg.Name)
				continue
			}
			walks[u.cfg.Name] = g.moveQueuedFrom(ctx, u.cfg.Name, u, walks[u.cfg.Name])
		}
		// Upstreams no longer configured (renamed, removed) whose
		// messages wait in the store: they go where their carrier's new
		// messages go, as from an upstream routed around for good.
		for _, name := range g.store.DueUpstreams() {
			if g.byName[name] == nil {
				walks[name] = g.moveQueuedFrom(ctx, name, nil, walks[name])
			}
		}
	}
}

// standInFor names the upstream a queued message of u moves to: the one
// a new message to its number would go to now (pick, by the number's
// carrier: CarrierLookup), if that is another upstream with a bind up
// (here or, in a cluster, on a node); "" keeps it for u. So each message
// goes where route sends its carrier's new ones, whichever upstream
// serves it: an aggregator serving every carrier stands in for a
// carrier's own upstream, and each carrier's own upstream for an
// aggregator. One turn's answers are remembered by carrier.
//
// noRoute, when set, hears of each message whose carrier no upstream
// serves at all now (an upstream no longer configured was its only one).
func (g *Gateway) standInFor(u *upstream, noRoute func(*queue.Message)) func(*queue.Message) string {
	carrierOf := func(string) string { return "" }
	if cl, ok := g.policy.(CarrierLookup); ok {
		carrierOf = cl.CarrierOf
	}
	type choice struct {
		to   string
		none bool // no upstream serves the carrier
	}
	byCarrier := map[string]choice{}
	return func(m *queue.Message) string {
		c := carrierOf(m.Dest)
		ch, ok := byCarrier[c]
		if !ok {
			first, v := g.pick(c)
			ch.none = first == nil
			if v != nil && v != u && !v.unavailable() {
				ch.to = v.cfg.Name
			}
			byCarrier[c] = ch
		}
		if ch.none && noRoute != nil {
			noRoute(m)
		}
		return ch.to
	}
}

// failNoRoute fails, refused no_route as a new message to its number
// would be, each part of msgs: messages of an upstream no longer
// configured whose carrier no upstream serves now. Concurrently, so that
// they share the store's group commits; a part that cannot be failed
// (the disk) is met again at the next walk.
func (g *Gateway) failNoRoute(ctx context.Context, from string, msgs []*queue.Message) {
	if len(msgs) == 0 {
		return
	}
	now := time.Now()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for _, m := range msgs {
		for i := range m.Parts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := g.store.Fail(ctx, queue.Key{ID: m.ID, Part: uint16(i)}, queue.StateRejected, policy.ReasonNoRoute.String(), now); err != nil {
					failed.Add(1)
				}
			})
		}
	}
	wg.Wait()
	g.log.Warn("upstream no longer configured: its queued messages whose carrier no upstream serves now are refused no_route",
		"upstream", from, "messages", len(msgs), "parts_not_failed", failed.Load())
}

// sameParts reports whether upstreams configured with a and b make a
// text's parts alike: the same concatenation, packing and alphabet
// (MaxChars only limits what is accepted).
func sameParts(a, b segment.Options) bool {
	return a.Concat == b.Concat && a.GSMPacked == b.GSMPacked && a.Alphabet == b.Alphabet
}

// remakeFrom makes a queued message's parts again, from its signed text,
// for the upstream it moves to from u when that one makes them another
// way, as Send would have made them had it been routed there (no limit
// on characters: it was accepted already); nil when it makes them as u
// does. u nil (an upstream no longer configured, whose options are not
// known): always made again. The store moves it only if they count as
// many segments on the air as before (queue.RerouteOptions.Remake): a
// text that would cost the enterprise more, or less, than it was told
// stays for its upstream.
func (g *Gateway) remakeFrom(u *upstream) func(*queue.Message, string) (*queue.Remade, bool) {
	return func(m *queue.Message, to string) (*queue.Remade, bool) {
		v := g.byName[to]
		if v == nil {
			return nil, false
		}
		if u != nil && sameParts(u.cfg.Segment, v.cfg.Segment) {
			return nil, true
		}
		opt := v.cfg.Segment
		opt.MaxChars = math.MaxInt32
		plan, err := encode(m.Text, opt)
		if err != nil {
			return nil, false
		}
		return &queue.Remade{Parts: plan.Parts, DataCoding: plan.DataCoding, Concat: uint8(opt.Concat), Weight: weightOf(plan)}, true
	}
}

// moveQueuedFrom moves what is queued for the upstream named from (u, or
// nil when it is no longer configured) to its stand-ins, a batch at a
// time from where (nil: the top of its queue), while the dispatcher
// holds its parts back (dispatcher.hold): a part it sent through u
// meanwhile would have its SMSC id recorded under another upstream.
// Parts in flight when the hold began stay (queue.RerouteOptions.Skip).
// It reads at most moveQueuedScan messages a batch and returns where the
// next turn resumes (nil: the top, this one having reached the end).
func (g *Gateway) moveQueuedFrom(ctx context.Context, from string, u *upstream, where []byte) []byte {
	inFlight := g.disp.hold(from)
	defer g.disp.release(from)
	var noRoute []*queue.Message
	var onNoRoute func(*queue.Message)
	if u == nil {
		seen := map[uint64]bool{} // once, should the store run a transaction again
		onNoRoute = func(m *queue.Message) {
			if !seen[m.ID] {
				seen[m.ID] = true
				noRoute = append(noRoute, m)
			}
		}
	}
	// A message of an upstream no longer configured moves whatever its
	// parts count where it goes (the reservation follows): it could
	// never be sent otherwise.
	opt := queue.RerouteOptions{Limit: moveQueuedBatch, Scan: moveQueuedScan, From: where,
		Target: g.standInFor(u, onNoRoute), Remake: g.remakeFrom(u), AnyCount: u == nil,
		Skip: func(k queue.Key) bool { return inFlight[k] }}
	moved, by := 0, map[string]int{}
	remade, kept := 0, 0
	for ctx.Err() == nil {
		res, err := g.store.Reroute(ctx, from, opt)
		if err != nil {
			if ctx.Err() == nil {
				g.log.Error("move queued messages to the upstreams standing in", "upstream", from, "err", err)
			}
			break
		}
		moved, remade, kept = moved+res.Moved, remade+res.Remade, kept+res.Kept
		for to, n := range res.By {
			by[to] += n
		}
		opt.From = res.Next
		// A full batch goes on at once; a batch cut short by its reads
		// waits for the next turn, so a queue of messages that cannot
		// move costs moveQueuedScan reads a turn, not a walk of it.
		if res.Done || res.Moved < moveQueuedBatch {
			break
		}
	}
	g.failNoRoute(ctx, from, noRoute)
	what := "upstream down: moved its queued messages to the next upstream that serves its carriers"
	if u == nil {
		what = "upstream no longer configured: moved its queued messages to the upstream that serves their carrier now"
	}
	for to, n := range by {
		g.metrics.movedQueued.WithLabelValues(from, to).Add(float64(n))
		g.log.Info(what, "upstream", from, "to", to, "messages", n)
	}
	if moved > 0 {
		g.log.Info("moved queued messages", "upstream", from, "messages", moved,
			"parts_made_again", remade, "staying", kept)
		g.disp.kick()
	}
	return opt.From
}

package gateway

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// dispatcher moves due segments from the store to the upstreams. The
// store is the buffer: in memory there is only the in-flight set, at most
// the sum of the upstreams' windows, and the parts the store handed over
// as it stored them (a bounded queue), so nothing is lost by a crash and
// nothing in memory grows with the backlog.
type dispatcher struct {
	g        *Gateway
	wake     chan struct{}
	capacity int // the upstreams' workers together: their windows and the outcomes being recorded
	entMax   int // the most slots one enterprise takes while others wait (Config.TenantShare of the windows)

	mu       sync.Mutex
	inflight map[queue.Key]flight
	perEnt   map[string]int // parts in flight per enterprise
	perUp    map[string]int // parts in flight per upstream (qxtd_upstream_window_in_use)
	// full names the upstreams a scan passed due parts by for want of
	// room (upRoom): the next part of one to finish makes a scan due, so
	// those parts go as soon as there is room for them.
	full map[string]bool
	// held names the upstreams whose queued messages are moving to
	// another (moveQueuedTo): none of their parts goes in flight.
	held map[string]bool
	free chan struct{} // signalled when a job finishes
	// hand receives the parts the store hands over at the commit that
	// stored them (offer); handed holds them, oldest first, until they
	// go out without being read back. rescan says the store may hold due
	// parts that are neither handed nor in flight, so the next turn with
	// room scans for them: at the start, after a kick (something made
	// parts due that was not handed over), when a hand-over did not fit.
	// A scan also runs every idlePoll, for retries and scheduled sends
	// coming due.
	hand   *handOver[queue.Job]
	handed []handed[queue.Job]
	// urgent and urgents are the same for the parts of messages sent
	// with priority (queue.Message.Priority): a lane of their own, so a
	// flood of ordinary parts does not push them out of the hand-over,
	// and taken while a scan is pending too (takeUrgent), ahead of the
	// backlog in the store. Those the lane's hand-over could not hold,
	// and those read back from the store (after a restart, a retry, at
	// their scheduled time), a scan takes first (queue.DueSharedAt's
	// priority pass), into the same lane. perUrgent bounds each
	// enterprise's in flight (urgentMax) either way, so that priority is
	// a narrow lane beside the shares, not a way around them.
	urgent    *handOver[queue.Job]
	urgents   []handed[queue.Job]
	perUrgent map[string]int
	rescan    bool
	lastScan  time.Time
	scanned   queue.Snapshot // what the latest scan saw
	dueUntil  time.Time      // the latest scan's clock: it saw parts due by then
}

// flight is where a part in flight comes from and goes, and whether it
// went in the priority lane.
type flight struct {
	enterprise, upstream string
	urgent               bool
}

func newDispatcher(g *Gateway) *dispatcher {
	capacity, windows := 0, 0
	for _, u := range g.ups {
		capacity += u.workers()
		windows += u.capacity()
	}
	return &dispatcher{
		g:        g,
		capacity: capacity,
		// One enterprise gets at most this many slots while others have
		// due parts; alone, it gets them all (queue.Store.DueShared). A
		// share of the windows, not of the workers: its parts waiting for
		// their outcome's commit count too, so it never holds more of
		// the wire than its share.
		entMax:    max(1, int(float64(windows)*g.cfg.TenantShare)),
		wake:      make(chan struct{}, 1),
		inflight:  make(map[queue.Key]flight),
		perEnt:    make(map[string]int),
		perUp:     make(map[string]int),
		full:      make(map[string]bool),
		held:      make(map[string]bool),
		free:      make(chan struct{}, 1),
		hand:      newHandOver[queue.Job](dueHandedMax(capacity)),
		urgent:    newHandOver[queue.Job](dueHandedMax(capacity)),
		perUrgent: make(map[string]int),
		rescan:    true,
	}
}

// urgentMax is how many parts sent with priority one enterprise may have
// in flight through the priority lane: an eighth of the workers, at
// least one. Beyond it they wait for a scan, in due order.
func urgentMax(capacity int) int { return max(1, capacity/8) }

// kick wakes the dispatcher to scan the store: parts became due that the
// store did not hand over (a reschedule, a cancelled backoff).
func (d *dispatcher) kick() {
	d.mu.Lock()
	d.rescan = true
	d.mu.Unlock()
	wakeUp(d.wake)
}

// dueHandedMax bounds the handed-over parts waiting for a slot: twice the
// windows. Beyond it they are left to a scan of the store.
func dueHandedMax(capacity int) int { return 2 * capacity }

// offer is the store's hand-over (queue.Store.SetDueCallback), on the
// commit goroutine: parts stored at snapshot at, due at once.
func (d *dispatcher) offer(jobs []queue.Job, at queue.Snapshot) {
	if !slices.ContainsFunc(jobs, func(j queue.Job) bool { return j.Msg.Priority }) {
		d.hand.put(jobs, at)
	} else {
		var ordinary, urgent []queue.Job
		for _, j := range jobs {
			if j.Msg.Priority {
				urgent = append(urgent, j)
			} else {
				ordinary = append(ordinary, j)
			}
		}
		d.hand.put(ordinary, at)
		d.urgent.put(urgent, at)
	}
	wakeUp(d.wake)
}

// pull moves what the store handed over into d.handed; if some did not
// fit, the store must be scanned for it. d.mu held.
func (d *dispatcher) pull() {
	var dropped, droppedUrgent bool
	d.handed, dropped = d.hand.drain(d.handed)
	d.urgents, droppedUrgent = d.urgent.drain(d.urgents)
	if dropped || droppedUrgent {
		d.rescan = true
	}
}

// takeUrgent moves up to room parts sent with priority in flight, each
// enterprise at most urgentMax of them at a time, whether or not a scan
// is pending: they go ahead of the backlog in the store. One that the
// latest scan saw is left to the scans (it took it, or will), so that no
// part is sent twice. d.mu held.
func (d *dispatcher) takeUrgent(room int) []queue.Job {
	var out []queue.Job
	kept := d.urgents[:0]
	for _, h := range d.urgents {
		switch {
		case d.seen(h) || d.skip(h.v.Key) || d.unsendable(h.v):
		case len(out) == room || d.laneRoom(h.v.Msg.Enterprise) <= 0 || d.upRoom(h.v.Msg.Upstream) <= 0:
			kept = append(kept, h)
		default:
			d.takeInLane(h.v)
			out = append(out, h.v)
		}
	}
	clear(d.urgents[len(kept):])
	d.urgents = kept
	return out
}

// takeHanded moves up to room handed-over parts in flight, in the turns
// DueShared takes them from the store: first each within its enterprise's
// share (share: d.mu held), then, if room is left, the rest in order.
// Only for when no scan is pending: then handed and in flight are all the
// due parts there are, so no other enterprise (and no older part) waits
// in the store. Parts a scan saw are dropped: it took them, or they were
// in flight (a part is handed over once, at the commit that stored it, so
// one no scan saw cannot be in flight). d.mu held.
func (d *dispatcher) takeHanded(room int, share func(ent string) int) []queue.Job {
	var out []queue.Job
	kept := d.handed[:0] // over their share, in order
	for i, h := range d.handed {
		if len(out) == room {
			kept = append(kept, d.handed[i:]...)
			break
		}
		if d.seen(h) || d.skip(h.v.Key) || d.unsendable(h.v) {
			continue
		}
		if share(h.v.Msg.Enterprise) <= 0 || d.upRoom(h.v.Msg.Upstream) <= 0 {
			kept = append(kept, h)
			continue
		}
		d.take(h.v)
		out = append(out, h.v)
	}
	clear(d.handed[len(kept):])
	d.handed = kept
	if len(out) == room || len(d.handed) == 0 {
		return out
	}
	kept = d.handed[:0] // their upstream's windows full, in order
	for i, h := range d.handed {
		if len(out) == room {
			kept = append(kept, d.handed[i:]...)
			break
		}
		if d.seen(h) || d.skip(h.v.Key) || d.unsendable(h.v) {
			continue
		}
		if d.upRoom(h.v.Msg.Upstream) <= 0 {
			kept = append(kept, h)
			continue
		}
		d.take(h.v)
		out = append(out, h.v)
	}
	clear(d.handed[len(kept):])
	d.handed = kept
	return out
}

// upRoom is how many more parts of the upstream named up may go in
// flight: its workers less those it has, so that handing it a part never
// blocks (dispatcher.send) and one upstream's backlog never takes the
// slots of the others; none while it cannot send (upstream.unavailable).
// An upstream no longer configured has none with Config.FailoverQueued
// (moveQueued moves its parts where their carrier's go), else room: send
// fails its parts. d.mu held.
func (d *dispatcher) upRoom(up string) int {
	u := d.g.byName[up]
	switch {
	case u == nil && d.g.cfg.FailoverQueued && d.g.store != nil:
		return 0
	case u == nil:
		return d.capacity
	case u.unavailable() || d.held[up]:
		return 0
	}
	return u.workers() - d.perUp[up]
}

// unsendable reports whether j's upstream cannot send now: a part handed
// over for it is left in the store, where a scan finds it once the
// upstream is back (upChanged kicks one). The same for a part of an
// enterprise the operator disabled (Disabling): it waits in the store,
// where the scans pass it by (queue.DueQuery.Hold), until the enterprise
// is enabled again and the next scan takes it (one runs every idlePoll
// while there is room).
func (d *dispatcher) unsendable(j queue.Job) bool {
	u := d.g.byName[j.Msg.Upstream]
	return u != nil && (u.unavailable() || d.held[j.Msg.Upstream]) || d.g.disabled(j.Msg.Enterprise)
}

// hold keeps the parts of the upstream named up out of flight until
// release, drops those handed over for it (they are in the store, and
// may move to another upstream: a copy here would still name this one),
// and returns the parts of it in flight now.
func (d *dispatcher) hold(up string) map[queue.Key]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.held[up] = true
	d.pull()
	drop := func(hs []handed[queue.Job]) []handed[queue.Job] {
		kept := slices.DeleteFunc(hs, func(h handed[queue.Job]) bool { return h.v.Msg.Upstream == up })
		if len(kept) < len(hs) {
			d.rescan = true
		}
		return kept
	}
	d.handed, d.urgents = drop(d.handed), drop(d.urgents)
	out := map[queue.Key]bool{}
	for k, f := range d.inflight {
		if f.upstream == up {
			out[k] = true
		}
	}
	return out
}

// release ends hold.
func (d *dispatcher) release(up string) {
	d.mu.Lock()
	delete(d.held, up)
	d.mu.Unlock()
	d.kick()
}

// seen reports whether the latest scan saw a handed-over part: the scan's
// snapshot has its commit, and its clock was past the part's due time (a
// part accepted after the scan read its clock, due a moment later, was
// not looked at). d.mu held.
func (d *dispatcher) seen(h handed[queue.Job]) bool {
	return h.at <= d.scanned && !h.v.Part.DueAt.After(d.dueUntil)
}

// take puts j in flight. d.mu held.
func (d *dispatcher) take(j queue.Job) {
	d.inflight[j.Key] = flight{enterprise: j.Msg.Enterprise, upstream: j.Msg.Upstream}
	d.perEnt[j.Msg.Enterprise]++
	d.perUp[j.Msg.Upstream]++
}

// takeInLane puts j in flight in the priority lane. d.mu held.
func (d *dispatcher) takeInLane(j queue.Job) {
	d.take(j)
	d.inflight[j.Key] = flight{enterprise: j.Msg.Enterprise, upstream: j.Msg.Upstream, urgent: true}
	d.perUrgent[j.Msg.Enterprise]++
}

// laneRoom is how many more parts sent with priority the enterprise ent
// may put in flight through the priority lane. d.mu held.
func (d *dispatcher) laneRoom(ent string) int { return urgentMax(d.capacity) - d.perUrgent[ent] }

func (d *dispatcher) done(k queue.Key) {
	d.mu.Lock()
	if f, ok := d.inflight[k]; ok {
		delete(d.inflight, k)
		if d.perEnt[f.enterprise]--; d.perEnt[f.enterprise] <= 0 {
			delete(d.perEnt, f.enterprise)
		}
		if f.urgent {
			if d.perUrgent[f.enterprise]--; d.perUrgent[f.enterprise] <= 0 {
				delete(d.perUrgent, f.enterprise)
			}
		}
		if d.perUp[f.upstream]--; d.perUp[f.upstream] <= 0 {
			delete(d.perUp, f.upstream)
		}
		if d.full[f.upstream] {
			delete(d.full, f.upstream)
			d.rescan = true
		}
	}
	d.mu.Unlock()
	select {
	case d.free <- struct{}{}:
	default:
	}
}

// inflightOf is the number of parts in flight to the upstream named up.
func (d *dispatcher) inflightOf(up string) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return float64(d.perUp[up])
}

func (d *dispatcher) skip(k queue.Key) bool {
	_, ok := d.inflight[k] // called with d.mu held
	return ok
}

// refill is how many free slots make a rescan worth it while the queue is
// backed up: an eighth of the windows, so they never run dry.
func refill(capacity int) int { return max(1, capacity/8) }

// probeEvery is how often a paused dispatcher asks the store whether it
// takes writes again.
const probeEvery = 500 * time.Millisecond

// waitWritable holds new submissions back while the store cannot commit:
// an SMSC's acceptance could not be recorded, and the segments in flight
// already wait for theirs (upstream.persist). It probes the store until a
// commit succeeds; false if ctx ended first.
func (d *dispatcher) waitWritable(ctx context.Context) bool {
	g := d.g
	g.log.Warn("store not writable: dispatch paused")
	start := time.Now()
	t := time.NewTimer(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if err := g.store.Probe(ctx); err == nil {
			g.log.Info("store writable again: dispatch resumed", "paused", time.Since(start).String())
			return true
		}
		t.Reset(probeEvery)
	}
}

// idlePoll is how often the store is looked at when nothing woke us:
// it catches retries coming due.
const idlePoll = 200 * time.Millisecond

func (d *dispatcher) run(ctx context.Context) {
	g := d.g
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if !g.store.Writable() {
			if !d.waitWritable(ctx) {
				return
			}
			d.mu.Lock()
			d.rescan = true
			d.mu.Unlock()
			continue
		}
		jobs, err := d.next()
		if err != nil {
			g.log.Error("store scan", "err", err)
		}
		if !d.send(ctx, jobs) {
			return
		}
		// Wait for a hand-over, a kick, a free slot or the poll. A free
		// slot with nothing handed and no scan due costs one look at
		// the state in next.
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(idlePoll)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-d.free:
		case <-t.C:
		}
	}
}

// next puts the parts to send now in flight and returns them: what the
// store handed over while it holds nothing else due, else (once there is
// room worth a scan) what a scan of the store finds.
func (d *dispatcher) next() ([]queue.Job, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	share := func(ent string) int { return d.entMax - d.perEnt[ent] }
	d.pull()
	urgent := d.takeUrgent(d.capacity - len(d.inflight))
	room := d.capacity - len(d.inflight)
	if !d.rescan && time.Since(d.lastScan) < idlePoll {
		// Every due part is handed over or in flight: send what the
		// store handed over, nothing to read back.
		return append(urgent, d.takeHanded(room, share)...), nil
	}
	if room == 0 || room < refill(d.capacity) && len(d.inflight) > 0 {
		return urgent, nil
	}
	// The store may hold due parts that were not handed over (or a poll
	// is due): scan, in due order, before sending anything handed over,
	// which must not overtake them; but first the parts sent with
	// priority, as far as each enterprise's lane has room. Only once a
	// worthwhile share of the windows is free (or all of them): each
	// scan skips the whole in-flight set.
	now := time.Now()
	res, err := d.g.store.DueFor(now, queue.DueQuery{Limit: room, Priority: d.laneRoom, Share: share, Skip: d.skip, Room: d.upRoom, Hold: d.g.disabled})
	if err != nil {
		return nil, err
	}
	found, at := res.Jobs, res.At
	for up := range res.PassedBy {
		if u := d.g.byName[up]; u != nil && !u.unavailable() {
			d.full[up] = true
		}
	}
	d.lastScan, d.scanned, d.dueUntil = time.Now(), at, now
	// Short of room: every due part was taken or is in flight. Full:
	// there may be more.
	d.rescan = len(found) == room
	// The priority pass's parts come first, at most laneRoom of each
	// enterprise: they go in the lane. A part with priority found later
	// (its enterprise's lane was full) goes as any other.
	for _, j := range found {
		if j.Msg.Priority && d.laneRoom(j.Msg.Enterprise) > 0 {
			d.takeInLane(j)
		} else {
			d.take(j)
		}
	}
	return append(urgent, found...), nil
}

// send gives each job to its upstream's workers; false once ctx ended.
func (d *dispatcher) send(ctx context.Context, jobs []queue.Job) bool {
	g := d.g
	for _, j := range jobs {
		u := g.byName[j.Msg.Upstream]
		if u == nil {
			// Its upstream left the configuration. Sending it through
			// another would index its SMSC id under the wrong name and
			// its receipt would never match: fail it, loudly.
			g.log.Error("message routed to an upstream no longer configured", "id", j.Key.String(), "upstream", j.Msg.Upstream)
			if err := g.store.Fail(ctx, j.Key, queue.StateRejected, policy.ReasonNoRoute.String(), time.Now()); err != nil {
				g.log.Error("store update", "err", err)
			}
			d.done(j.Key)
			continue
		}
		select {
		case u.jobs <- j:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// dispatcher moves due segments from the store to the upstreams. The
// store is the buffer: in memory there is only the in-flight set, at most
// the sum of the upstreams' windows, so nothing is lost by a crash and
// nothing in memory grows with the backlog.
type dispatcher struct {
	g    *Gateway
	wake chan struct{}

	mu       sync.Mutex
	inflight map[queue.Key]flight
	perEnt   map[string]int // parts in flight per enterprise
	perUp    map[string]int // parts in flight per upstream (qxtd_upstream_window_in_use)
	free     chan struct{}  // signalled when a job finishes
}

// flight is where a part in flight comes from and goes.
type flight struct{ enterprise, upstream string }

func newDispatcher(g *Gateway) *dispatcher {
	return &dispatcher{
		g:        g,
		wake:     make(chan struct{}, 1),
		inflight: make(map[queue.Key]flight),
		perEnt:   make(map[string]int),
		perUp:    make(map[string]int),
		free:     make(chan struct{}, 1),
	}
}

func (d *dispatcher) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) done(k queue.Key) {
	d.mu.Lock()
	if f, ok := d.inflight[k]; ok {
		delete(d.inflight, k)
		if d.perEnt[f.enterprise]--; d.perEnt[f.enterprise] <= 0 {
			delete(d.perEnt, f.enterprise)
		}
		if d.perUp[f.upstream]--; d.perUp[f.upstream] <= 0 {
			delete(d.perUp, f.upstream)
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
	capacity := 0
	for _, u := range g.ups {
		capacity += u.capacity()
	}
	// One enterprise gets at most this many slots while others have due
	// parts; alone, it gets them all (queue.Store.DueShared).
	perEnt := max(1, int(float64(capacity)*g.cfg.TenantShare))
	share := func(ent string) int { return perEnt - d.perEnt[ent] } // d.mu held
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if !g.store.Writable() {
			if !d.waitWritable(ctx) {
				return
			}
			continue
		}
		d.mu.Lock()
		room := capacity - len(d.inflight)
		var jobs []queue.Job
		var err error
		if room > 0 {
			jobs, err = g.store.DueShared(time.Now(), room, share, d.skip)
			for _, j := range jobs {
				d.inflight[j.Key] = flight{enterprise: j.Msg.Enterprise, upstream: j.Msg.Upstream}
				d.perEnt[j.Msg.Enterprise]++
				d.perUp[j.Msg.Upstream]++
			}
		}
		d.mu.Unlock()
		if err != nil {
			g.log.Error("store scan", "err", err)
		}
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
				return
			}
		}
		if len(jobs) == room && room > 0 {
			// There may be more: wait for slots, not for a timer. Each
			// scan skips the whole in-flight set, so rescan only once a
			// batch's worth of slots is free, not for every single one.
			for {
				select {
				case <-ctx.Done():
					return
				case <-d.free:
				}
				d.mu.Lock()
				free := capacity - len(d.inflight)
				d.mu.Unlock()
				if free >= refill(capacity) {
					break
				}
			}
			continue
		}
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
			if len(jobs) == 0 && room > 0 {
				// A slot freed but nothing was due: no need to rescan
				// until something is enqueued or the poll fires.
				select {
				case <-ctx.Done():
					return
				case <-d.wake:
				case <-t.C:
				}
			}
		case <-t.C:
		}
	}
}

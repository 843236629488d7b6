package gateway

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pace is one bind's adaptive send rate, driven by the SMSC's
// flow-control answers (ESME_RTHROTTLED, ESME_RMSGQFUL): cut
// multiplicatively on a throttle, raised additively on every success.
//
// It starts unlimited (or at the upstream's TPS). A throttle cuts the
// limit to paceCut of the rate the bind had — its limit, or the rate it
// was measured sending at when it had none — at most once per
// paceInterval, so a burst of throttles from one overload counts once.
// Every accepted submit_sm raises the limit by paceStep per second. The
// limit never exceeds the upstream's TPS and never falls below paceFloor,
// so a bind always makes progress; without a TPS, a limit grown to twice
// the rate the bind really sends at is lifted.
//
// Because the raise is per success, the limit regains paceStep·(1-t) of
// itself per second when a fraction t is throttled, while the cuts take
// (1-paceCut)/paceInterval of it: below a real rate cap of the SMSC (where
// t grows with the rate) the two settle near the cap; under throttles
// that come at random whatever the rate (t = 30 %: +1.4 against -0.6 per
// second) the limit keeps up with what the bind can do.
type pace struct {
	mu      sync.Mutex
	ceil    float64 // the upstream's TPS; +Inf: no cap (changes on reload)
	lim     *rate.Limiter
	limit   float64   // current limit; +Inf: none
	lastCut time.Time // zero: never cut
	// A two-bucket meter of submissions; full says prev covers a whole
	// paceMeterWin (else the rate is cur over the time since winAt).
	winAt     time.Time
	cur, prev int
	full      bool
}

const (
	paceCut      = 0.7 // a throttle keeps this fraction of the rate
	paceInterval = 500 * time.Millisecond
	paceStep     = 2.0 // submit_sm per second added by each success
	paceFloor    = 5.0 // submit_sm per second, whatever the SMSC says
	paceMeterWin = time.Second
)

func newPace(tps float64) *pace {
	p := &pace{ceil: math.Inf(1), limit: math.Inf(1)}
	if tps > 0 {
		p.ceil, p.limit = tps, tps
	}
	p.lim = rate.NewLimiter(limitOf(p.limit), burstOf(p.limit))
	return p
}

func limitOf(l float64) rate.Limit {
	if math.IsInf(l, 1) {
		return rate.Inf
	}
	return rate.Limit(l)
}

// burstOf lets a tenth of a second's worth go at once.
func burstOf(l float64) int {
	if math.IsInf(l, 1) {
		return 1
	}
	return max(1, int(l/10))
}

// wait takes one submission's turn.
func (p *pace) wait(ctx context.Context) error { return p.lim.Wait(ctx) }

// sent counts one submission for the meter.
func (p *pace) sent(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roll(now)
	p.cur++
}

func (p *pace) roll(now time.Time) {
	switch el := now.Sub(p.winAt); {
	case el >= 2*paceMeterWin:
		// Idle for a while: start afresh.
		p.prev, p.cur, p.winAt, p.full = 0, 0, now, false
	case el >= paceMeterWin:
		p.prev, p.cur, p.winAt, p.full = p.cur, 0, p.winAt.Add(paceMeterWin), true
	}
}

// measured is the submissions per second over about the last second (or
// since sending started, if that is less).
func (p *pace) measured(now time.Time) float64 {
	p.roll(now)
	el := now.Sub(p.winAt)
	if !p.full {
		return float64(p.cur) / max(el, 10*time.Millisecond).Seconds()
	}
	frac := float64(el) / float64(paceMeterWin)
	return float64(p.prev)*(1-frac) + float64(p.cur)
}

// throttled cuts the limit (at most once per paceInterval).
func (p *pace) throttled(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.lastCut.IsZero() && now.Sub(p.lastCut) < paceInterval {
		return
	}
	p.lastCut = now
	base := p.limit
	if math.IsInf(base, 1) {
		base = p.measured(now)
	}
	p.set(now, max(paceFloor, base*paceCut))
}

// setCeil follows a new TPS of the upstream (a configuration reload;
// 0: no cap): the limit never exceeds it from now on.
func (p *pace) setCeil(now time.Time, tps float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ceil = math.Inf(1)
	if tps > 0 {
		p.ceil = tps
	}
	if p.limit > p.ceil {
		p.set(now, p.ceil)
	}
}

// ok raises the limit after a success.
func (p *pace) ok(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if math.IsInf(p.limit, 1) || p.limit >= p.ceil {
		return
	}
	next := min(p.limit+paceStep, p.ceil)
	if math.IsInf(p.ceil, 1) && next > 2*p.measured(now)+paceFloor {
		next = math.Inf(1) // the limit no longer holds the bind back
	}
	p.set(now, next)
}

func (p *pace) set(now time.Time, l float64) {
	if l == p.limit {
		return
	}
	p.limit = l
	p.lim.SetLimitAt(now, limitOf(l))
	p.lim.SetBurstAt(now, burstOf(l))
}

// current is the limit now (+Inf: none), for metrics.
func (p *pace) current() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}

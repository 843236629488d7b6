package gateway

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pace is one bind's adaptive send rate: additive increase, multiplicative
// decrease (AIMD), driven by the SMSC's flow-control answers
// (ESME_RTHROTTLED, ESME_RMSGQFUL).
//
// It starts unlimited (or at the upstream's TPS). A throttle cuts the
// limit to paceCut of the rate the bind had (its limit, or the rate it
// was measured sending at when it had none), at most once per
// paceInterval, so a burst of throttles from one overload counts once.
// Every success raises the limit again, linearly, by as much as the cut
// took over paceInterval; once it is back where it was and a further
// paceInterval passed without a throttle, an uncapped bind is unlimited
// again. The limit never exceeds the upstream's TPS and never falls below
// paceFloor, so a bind always makes progress.
//
// Under an SMSC that throttles above a rate C the limit saws between
// paceCut·C and C; under throttles that come at random whatever the rate,
// it saws between paceCut and 1 of the rate the bind can do.
type pace struct {
	ceil float64 // the upstream's TPS; +Inf: no cap

	mu      sync.Mutex
	lim     *rate.Limiter
	limit   float64   // current limit; +Inf: none
	top     float64   // what the last cut started from
	rise    float64   // limit added per second of successes
	lastCut time.Time // zero: never cut
	lastUp  time.Time // last time rise was applied
	// A two-bucket meter of submissions (for the cut of an unlimited bind).
	winAt     time.Time
	cur, prev int
}

const (
	paceCut      = 0.7 // a throttle keeps this fraction of the rate
	paceInterval = 500 * time.Millisecond
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
		p.prev, p.cur, p.winAt = 0, 0, now
	case el >= paceMeterWin:
		p.prev, p.cur, p.winAt = p.cur, 0, p.winAt.Add(paceMeterWin)
	}
}

// measured is the submissions per second over about the last second.
func (p *pace) measured(now time.Time) float64 {
	p.roll(now)
	frac := float64(now.Sub(p.winAt)) / float64(paceMeterWin)
	return float64(p.prev)*(1-frac) + float64(p.cur)
}

// throttled cuts the limit (at most once per paceInterval).
func (p *pace) throttled(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.lastCut.IsZero() && now.Sub(p.lastCut) < paceInterval {
		return
	}
	base := p.limit
	if math.IsInf(base, 1) {
		base = max(p.measured(now), paceFloor)
	}
	next := max(paceFloor, base*paceCut)
	p.top = base
	p.rise = (base - next) / paceInterval.Seconds()
	p.lastCut, p.lastUp = now, now
	p.set(now, next)
}

// ok raises the limit after a success.
func (p *pace) ok(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if math.IsInf(p.limit, 1) || p.limit >= p.ceil {
		return
	}
	next := p.limit + p.rise*now.Sub(p.lastUp).Seconds()
	p.lastUp = now
	if next >= p.top {
		next = p.top
		if math.IsInf(p.ceil, 1) && now.Sub(p.lastCut) >= 2*paceInterval {
			next = math.Inf(1) // recovered and quiet: no limit
		}
	}
	p.set(now, min(next, p.ceil))
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

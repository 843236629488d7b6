package main

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
)

// How busy the node was over its last minute, for GET /admin/v1/status
// (the desk's 运行概况, `qxtd admin daemon status`): messages accepted,
// the process's CPU and what it cost a message, the store's commits and
// writes. An operator without Prometheus sees the load and its price,
// the figures README's Operating section (CPU, Disk writes) sizes by.
// Counters already kept are sampled (the gateway's accepted count, the
// store's commit counters, the kernel's CPU time), none added.

// loadEvery is how often the counters are sampled; loadWindow how far
// back an answer looks.
const (
	loadEvery  = 5 * time.Second
	loadWindow = time.Minute
)

// loadSample is the counters at one time.
type loadSample struct {
	at       time.Time
	cpu      time.Duration // the process's user and system time
	accepted uint64
	commits  uint64
	written  uint64 // bytes
	// byEnterprise is accepted by enterprise (gateway.AcceptedByEnterprise):
	// one entry per enterprise that sent since the start.
	byEnterprise map[string]uint64
	upstreams    []gateway.UpstreamCount // gateway.UpstreamCounts
}

// topSenders is how many enterprises the load names, those that sent the
// most in its span.
const topSenders = 5

// loadMeter keeps the samples of the last loadWindow (plus one, the span's
// start) and answers from them and one taken at the time of the question.
type loadMeter struct {
	read func() loadSample

	mu      sync.Mutex
	samples []loadSample // oldest first
}

// run samples every loadEvery until ctx ends.
func (m *loadMeter) run(ctx context.Context) {
	m.add(m.read())
	t := time.NewTicker(loadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.add(m.read())
		}
	}
}

// add keeps s and drops the samples no answer needs: those older than the
// newest one at least loadWindow old.
func (m *loadMeter) add(s loadSample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, s)
	drop := 0
	for drop+1 < len(m.samples) && s.at.Sub(m.samples[drop+1].at) >= loadWindow {
		drop++
	}
	m.samples = append(m.samples[:0], m.samples[drop:]...)
}

// status is the load from the oldest sample within loadWindow to now (just
// after a start, from the first sample; if sampling stalled, from the
// newest); nil before any sample.
// keep, when not nil, is the enterprises the top senders are ranked among
// (an account manager's portfolio).
func (m *loadMeter) status(keep func(string) bool) *api.LoadStatus {
	return m.statusTop(topSenders, keep)
}

// statusTop is status naming the top enterprises that sent the most
// (peerTopSenders for another node's status, which adds the members'
// up), of those keep holds (nil: all).
func (m *loadMeter) statusTop(top int, keep func(string) bool) *api.LoadStatus {
	now := m.read()
	m.mu.Lock()
	var from loadSample
	found := false
	for _, s := range m.samples {
		if now.at.Sub(s.at) <= loadWindow {
			from, found = s, true
			break
		}
	}
	if !found && len(m.samples) > 0 {
		from, found = m.samples[len(m.samples)-1], true
	}
	m.mu.Unlock()
	secs := now.at.Sub(from.at).Seconds()
	if !found || secs <= 0 {
		return nil
	}
	st := &api.LoadStatus{
		Seconds:               secs,
		Accepted:              now.accepted - from.accepted,
		CPUCores:              (now.cpu - from.cpu).Seconds() / secs,
		CommitsPerSecond:      float64(now.commits-from.commits) / secs,
		WrittenBytesPerSecond: float64(now.written-from.written) / secs,
	}
	st.AcceptedPerSecond = float64(st.Accepted) / secs
	st.TopEnterprises = topOf(from.byEnterprise, now.byEnterprise, secs, top, keep)
	st.Upstreams = upstreamsOf(from.upstreams, now.upstreams, secs)
	if st.Accepted > 0 {
		us := float64((now.cpu - from.cpu).Microseconds()) / float64(st.Accepted)
		st.CPUMicrosPerMessage = &us
	}
	return st
}

// topOf is the n enterprises that accepted the most between the counts
// from and now, the most first (by code at a tie), none that accepted
// nothing in the span, of those keep holds (nil: all).
func topOf(from, now map[string]uint64, secs float64, n int, keep func(string) bool) []api.EnterpriseLoad {
	top := []api.EnterpriseLoad{}
	for ent, n := range now {
		d := n - from[ent] // a counter only grows; absent in from is 0
		if d == 0 || (keep != nil && !keep(ent)) {
			continue
		}
		top = append(top, api.EnterpriseLoad{Enterprise: ent, Accepted: d})
	}
	slices.SortFunc(top, func(a, b api.EnterpriseLoad) int {
		if c := cmp.Compare(b.Accepted, a.Accepted); c != 0 {
			return c
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	top = top[:min(len(top), n)]
	for i := range top {
		top[i].AcceptedPerSecond = float64(top[i].Accepted) / secs
	}
	return top
}

// upstreamsOf is each upstream's counters between from and now, and its
// state now; an upstream absent from from counts from zero.
func upstreamsOf(from, now []gateway.UpstreamCount, secs float64) []api.UpstreamLoad {
	out := make([]api.UpstreamLoad, 0, len(now))
	for _, n := range now {
		var f gateway.UpstreamCount
		for _, c := range from {
			if c.Name == n.Name {
				f = c
			}
		}
		u := api.UpstreamLoad{Name: n.Name, Relayed: n.Relayed - f.Relayed, Throttled: n.Throttled - f.Throttled,
			Failed: n.Failed - f.Failed, TPS: n.TPS, InFlight: n.InFlight, Slots: n.Slots}
		u.RelayedPerSecond = float64(u.Relayed) / secs
		if k := n.RespCount - f.RespCount; k > 0 {
			ms := (n.RespSeconds - f.RespSeconds) / float64(k) * 1000
			u.SubmitMeanMS = &ms
		}
		if !math.IsInf(n.Pace, 1) {
			p := n.Pace
			u.PacePerSecond = &p
		}
		out = append(out, u)
	}
	return out
}

// processCPU is the user and system time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The restart scenario (qxtd/restart): how long a restarted qxtd takes to
// serve, on an empty queue and on a queue of -queued messages (a backlog
// after an outage), the same daemon, store and configuration each time.
//
//  1. qxtd starts with its upstream pointed at an address nobody listens
//     on, and is stopped: the store has the seeded accounts only.
//  2. Timed start with the upstream at the peer, on that store (the
//     empty row), and stop.
//  3. qxtd starts again with the dead upstream, takes -queued messages
//     over HTTP (POST /v1/messages, 1,000 numbers per request, so they
//     stay queued), and is stopped.
//  4. Timed start with the upstream at the peer (the backlog row); the
//     backlog starts draining to the peer while the client binds. Then
//     the drain itself is measured over the next -n messages the peer
//     gets (at most half of what is still queued): the rate and qxtd's
//     CPU per message, with nothing else to do (the peer's receipts
//     included: qxtd asks for one with every segment).
//  5. SIGKILL, and a timed start again (the after-a-crash row): the file
//     has the list of its free pages only if the last commit wrote it
//     (queue: while it is short), else bbolt walks every page first.
//
// A timed start measures, from the exec: /readyz saying ready (every bind
// to the peer up), an ESME's bind_resp (the client dials every 5 ms from
// the exec on) and that ESME's first submit_sm_resp.

// RestartResult is the restart scenario's outcome.
type RestartResult struct {
	Queued   int     `json:"queued"`
	FillRate float64 `json:"fill_msg_s"` // messages queued per second over HTTP (step 3)
	// StoreBytes is the store file's size per queued message after step 3
	// (the seeded accounts and the empty row's one message included).
	StoreBytes float64 `json:"store_bytes_per_msg"`
	Empty      Startup `json:"empty"`
	Full       Startup `json:"full"`
	Crash      Startup `json:"full_after_kill"`
	// DrainRate and DrainCPU are the backlog's drain to the peer after
	// the timed start: relayed msg/s and qxtd's CPU µs per message.
	DrainRate float64 `json:"drain_msg_s"`
	DrainCPU  float64 `json:"drain_cpu_us_per_msg"`
}

// Startup is one timed start, in milliseconds from the exec.
type Startup struct {
	ReadyMS  float64 `json:"ready_ms"`  // /readyz ready
	BindMS   float64 `json:"bind_ms"`   // an ESME's bind answered
	SubmitMS float64 `json:"submit_ms"` // its first submit_sm answered
}

// fillPerRequest is the most numbers one POST /v1/messages takes.
const fillPerRequest = 1000

func runRestart(ctx context.Context, cfg benchConfig, o daemonOpts, sc scenario, peer *Peer, queued int) (Result, []string, error) {
	res := Result{Scenario: sc.Name, N: cfg.N, Restart: &RestartResult{Queued: queued}}
	live := o
	dead := o
	dead.Unbound = true
	var err error
	if dead.PeerAddr, err = freeAddr(); err != nil {
		return res, nil, err
	}
	d, err := startDaemon(ctx, dead)
	if err != nil {
		return res, nil, err
	}
	defer d.Remove()
	defer d.Stop()
	stop := func() error {
		m := markEnds(peer)
		if err := d.stopTerm(); err != nil {
			return err
		}
		return m.dropHeld(ctx, peer)
	}
	if err := stop(); err != nil {
		return res, d.LogLines(), err
	}
	d.unbound = false

	// The empty row.
	if err := d.configure(live); err != nil {
		return res, d.LogLines(), err
	}
	if res.Restart.Empty, err = timedStart(ctx, d); err != nil {
		return res, d.LogLines(), fmt.Errorf("start on the empty queue: %w", err)
	}
	if err := stop(); err != nil {
		return res, d.LogLines(), err
	}

	// The backlog, queued while the upstream is down.
	if err := d.configure(dead); err != nil {
		return res, d.LogLines(), err
	}
	d.unbound = true
	if err := d.start(ctx); err != nil {
		return res, d.LogLines(), err
	}
	t0 := time.Now()
	if err := fill(ctx, d.HTTPAddr, queued); err != nil {
		return res, d.LogLines(), fmt.Errorf("queueing %d messages: %w", queued, err)
	}
	res.Restart.FillRate = float64(queued) / time.Since(t0).Seconds()
	if n, err := d.Metric("qxtd_queue_segments"); err != nil || n < float64(queued) {
		return res, d.LogLines(), fmt.Errorf("qxtd_queue_segments says %v after queueing %d (%v)", n, queued, err)
	}
	if err := stop(); err != nil {
		return res, d.LogLines(), err
	}
	fi, err := os.Stat(filepath.Join(d.dir, "qxtd.db"))
	if err != nil {
		return res, d.LogLines(), err
	}
	res.Restart.StoreBytes = float64(fi.Size()) / float64(queued)

	// The backlog row.
	if err := d.configure(live); err != nil {
		return res, d.LogLines(), err
	}
	d.unbound = false
	if res.Restart.Full, err = timedStart(ctx, d); err != nil {
		return res, d.LogLines(), fmt.Errorf("start on %d queued: %w", queued, err)
	}
	if res.Restart.DrainRate, res.Restart.DrainCPU, err = drain(ctx, d, peer, cfg.N, cfg.Stall); err != nil {
		return res, d.LogLines(), fmt.Errorf("draining the backlog: %w", err)
	}

	// The crash row.
	m := markEnds(peer)
	if err := d.Kill(); err != nil {
		return res, d.LogLines(), err
	}
	if err := m.dropHeld(ctx, peer); err != nil {
		return res, d.LogLines(), err
	}
	if res.Restart.Crash, err = timedStart(ctx, d); err != nil {
		return res, d.LogLines(), fmt.Errorf("start on %d queued after SIGKILL: %w", queued, err)
	}
	err = stop()
	return res, d.LogLines(), err
}

// drain measures qxtd relaying n messages of its backlog to the peer (at
// most half of what it still has queued, so that the measure ends while
// the backlog lasts): msg/s and qxtd's CPU µs per message, from the call
// to the n-th submit the peer gets after it. Nothing left to measure is
// 0, 0.
func drain(ctx context.Context, d *daemon, p *Peer, n int, stall time.Duration) (rate, cpu float64, err error) {
	c0, err := d.CPU()
	if err != nil {
		return 0, 0, err
	}
	queued, err := d.Metric(`qxtd_queue_segments{state="accepted"}`)
	if err != nil {
		return 0, 0, err
	}
	if n = min(n, int(queued)/2); n < 1 {
		return 0, 0, nil
	}
	// Not waitPeer: while the backlog drains, the receipts the peer owes
	// never all catch up.
	s0, t0 := p.Submits.Load(), time.Now()
	progress := newStallClock()
	for p.Submits.Load()-s0 < int64(n) {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case now := <-time.After(5 * time.Millisecond):
			if got := p.Submits.Load() - s0; progress.stalled(now, got, stall) {
				return 0, 0, fmt.Errorf("stalled: %d of %d relayed", got, n)
			}
		}
	}
	c1, err := d.CPU()
	got, last := p.Submits.Load()-s0, p.LastSubmit.Load()
	if err != nil {
		return 0, 0, err
	}
	// The poll is every 5 ms: the peer's own clock of its latest submit
	// is the end.
	secs := time.Unix(0, last).Sub(t0).Seconds()
	return float64(got) / secs, float64((c1 - c0).Microseconds()) / float64(got), nil
}

// configure rewrites the daemon's configuration file from o (same store,
// ports and directory).
func (d *daemon) configure(o daemonOpts) error {
	base, err := os.ReadFile(o.BaseConfig)
	if err != nil {
		return err
	}
	cfg, err := derivedConfig(base, o, d.dir, d.SMPPAddr, d.HTTPAddr)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.dir, "qxtd.yaml"), cfg, 0o600)
}

// timedStart starts d again and times it (see the top of this file).
func timedStart(ctx context.Context, d *daemon) (Startup, error) {
	type esme struct {
		bind, submit time.Duration
		err          error
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the dialler stops at ctx's end
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan esme, 1)
	t0 := time.Now()
	wg.Go(func() {
		for {
			cl, err := Dial(ctx, d.SMPPAddr, benchSystemID, benchPassword)
			if err == nil {
				e := esme{bind: time.Since(t0)}
				var r RunResult
				r, e.err = cl.Run(ctx, RunSpec{N: 1, Window: 1, FirstDst: 13900000000, Stall: 30 * time.Second})
				e.submit = time.Since(t0)
				if e.err == nil && (r.Answered != 1 || r.Errors != 0) {
					e.err = fmt.Errorf("first submit: %d answered, %d refused (0x%08x)", r.Answered, r.Errors, r.FirstErr)
				}
				cl.Close()
				got <- e
				return
			}
			select {
			case <-ctx.Done():
				got <- esme{err: fmt.Errorf("bind: %w (last: %v)", ctx.Err(), err)}
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	d.poll = 5 * time.Millisecond
	err := d.start(ctx)
	ready := time.Since(t0)
	d.poll = 0
	if err != nil {
		return Startup{}, err
	}
	var e esme
	select {
	case e = <-got:
	case <-time.After(30 * time.Second):
		return Startup{}, errors.New("no bind answered 30 s after the start")
	}
	if e.err != nil {
		return Startup{}, e.err
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Startup{ReadyMS: ms(ready), BindMS: ms(e.bind), SubmitMS: ms(e.submit)}, nil
}

// fill queues n messages on qxtd over HTTP, fillPerRequest numbers per
// request, 8 requests at a time.
func fill(ctx context.Context, addr string, n int) error {
	t, err := loginQxtd(ctx, addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	reqs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for first := range reqs {
				if err := t.post(ctx, first, min(fillPerRequest, n-first)); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for first := 0; first < n; first += fillPerRequest {
		select {
		case reqs <- first:
		case <-ctx.Done():
			break feed
		}
	}
	close(reqs)
	wg.Wait()
	return context.Cause(ctx)
}

// post sends one text to count numbers from 13700000000+first and checks
// that qxtd accepted every one.
func (t qxtdTarget) post(ctx context.Context, first, count int) error {
	to := make([]string, count)
	for i := range to {
		to[i] = strconv.Itoa(13700000000 + first + i)
	}
	req, err := t.send(ctx, map[string]any{"to": to, "text": "backlog message"})
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return acceptedAll(resp.StatusCode, b, count)
}

// endsMark is the peer's connection counts before qxtd stops.
type endsMark struct{ binds, ended int64 }

func markEnds(p *Peer) endsMark { return endsMark{p.Binds.Load(), p.Ended.Load()} }

// dropHeld waits until every connection bound to the peer since the mark
// has ended, then drops the receipts they left: they are of a store this
// scenario throws away, and would otherwise go to the next scenario's
// qxtd (the peer sends held receipts on the next bind).
func (m endsMark) dropHeld(ctx context.Context, p *Peer) error {
	deadline := time.Now().Add(10 * time.Second)
	for p.Ended.Load()-m.ended < p.Binds.Load()-m.binds {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d connections to the peer still open 10 s after qxtd stopped",
				p.Binds.Load()-m.binds-(p.Ended.Load()-m.ended), p.Binds.Load()-m.binds)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.DropHeld()
	return nil
}

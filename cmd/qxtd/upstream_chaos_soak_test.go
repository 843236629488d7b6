//go:build soak

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// The upstream side of the soak: two carriers (A takes China Mobile, B
// the rest), each a simulator behind a front the test owns. The front
// relays SMPP frame by frame and does what the simulator cannot: it
// loses the SMSC's answers to accepted submits, relays them late, goes
// away for a few seconds on the same port, and answers ESME_RINVBNDSTS
// as an SMSC that lost a session's bind behind a TCP connection that
// stayed up. It also keeps a ledger of every submit_sm and the fate of
// its answer, which is what the duplicates are explained with.
const (
	upRespTimeout = 400 * time.Millisecond
	upBinds       = 2  // per upstream
	upWindow      = 10 // per bind
	upUpstreams   = 2
	// upWindows is what the README's case 1 allows a kill to leave
	// answered but unrecorded: the windows of every upstream (and their
	// recording_slots, 0 here).
	upWindows = upUpstreams * upBinds * upWindow
	// upDLRWindow is delivery.dlr_window (default): the receipts a kill
	// may leave sent and unanswered per account, sent again at restart.
	upDLRWindow = 128
)

// TestSoakUpstreamChaos runs the real daemon against two SMSCs that
// misbehave in seeded phases (SOAK_UPSTREAM_SEED replays one) under
// steady load from two ESMEs (short texts and long ones qxtd splits,
// receipts asked) and HTTP sends, with one to three kill -9 among them:
//
//   - noresponse: the simulator never answers a fraction of submits
//     (resp_timeout, then a retry 3 × resp_timeout later);
//   - late: a fraction of accepted submits answered 1.4–2.4 ×
//     resp_timeout late (README case 2: the late answer is recorded, the
//     segment must not be sent again);
//   - too-late: answered 6–7 × resp_timeout late, and a few never
//     (sent again: a duplicate the README allows);
//   - lost-answers: accepted, the answer never relayed (case 2, never);
//   - drops: the SMSC closes every connection twice and each new one
//     after 15–40 submits (case 3);
//   - outage: the SMSC's port closed for 2–5 s, then served again (the
//     daemon rebinds with its backoff);
//   - throttle: ESME_RTHROTTLED and ESME_RMSGQFUL storms;
//   - bind-lost: a connection's bind lost behind it (ESME_RINVBNDSTS to
//     every later submit on it).
//
// Then, faults cleared, it waits for the daemon to drain, checks the
// README's guarantees, puts the same daemon through a shorter storm and
// compares its goroutines, heap, binds and throughput before and after.
func TestSoakUpstreamChaos(t *testing.T) {
	seed := soakSeed(t, "SOAK_UPSTREAM_SEED")
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc908))

	base := smpp.Faults{Undeliv: 0.07, Expire: 0.03}
	simA, simAddrA := startSim(t, smpp.SimOptions{DLRDelay: 100 * time.Millisecond, Seed: seed | 1, Faults: base})
	simB, simAddrB := startSim(t, smpp.SimOptions{DLRDelay: 100 * time.Millisecond, Seed: seed | 3, Faults: base})
	u := &upChaos{
		x:     newChaos(t),
		base:  base,
		sims:  map[string]*smpp.Simulator{"a": simA, "b": simB},
		front: map[string]*smscFront{"a": newSMSCFront(t, "a", simAddrA, seed+11), "b": newSMSCFront(t, "b", simAddrB, seed+13)},
	}
	u.kills = map[int]time.Time{}

	dir := t.TempDir()
	cfg := writeUpstreamConfig(t, dir, u.front["a"].addr, u.front["b"].addr)
	d := startDaemon(t, cfg)
	u.setDaemon(d)
	u.x.webKey = issueAPIKey(t, "http://"+d.httpAddr, "web")

	endCtx, end := context.WithCancel(context.Background())
	var conns sync.WaitGroup
	defer func() {
		end()
		conns.Wait()
	}()
	for i := range 2 {
		e := &chaosESME{x: u.x, n: i + 1, sink: u.x.sinks[i]}
		u.esmes = append(u.esmes, e)
		conns.Go(func() { e.keepBound(endCtx) })
	}
	probeBefore := u.probe(t, "1396", 200)
	t.Logf("probe before the faults: 200 messages to their receipts in %v", probeBefore.Round(time.Millisecond))

	// The storm: every phase once, in a seeded order, with kills among them.
	phases := u.plan(rng, []string{"noresponse", "late", "too-late", "lost-answers", "drops", "outage", "throttle", "bind-lost"})
	kills := 1 + rng.IntN(3)
	events := u.schedule(rng, phases, kills)
	load := u.startLoad(seed)
	u.run(t, cfg, &d, events)
	u.clearFaults()
	calm := time.NewTimer(2 * time.Second) // clean traffic after the storm: the schedule, not a wait for an event
	<-calm.C
	load.stop()
	stormEnd := time.Now()
	t.Logf("storm over after %v: %s", stormEnd.Sub(began).Round(time.Millisecond), u.x.counts())

	base1 := "http://" + d.httpAddr
	u.waitFinal(t, base1, 90*time.Second)
	u.waitBinds(t, d, 15*time.Second)
	t.Logf("drained %v after the faults cleared", time.Since(stormEnd).Round(time.Millisecond))
	q1 := u.quiet(t, d)

	// A second, shorter storm on the same daemon, no kill: what faults
	// leave behind in a process that lives on (goroutines, memory, binds
	// down) shows between the two quiet points.
	phases2 := u.plan(rng, []string{"late", "drops", "bind-lost", "outage", "noresponse"})
	events2 := u.schedule(rng, phases2, 0)
	load2 := u.startLoad(seed + 1000)
	u.run(t, cfg, &d, events2)
	u.clearFaults()
	calm2 := time.NewTimer(time.Second) // the schedule
	<-calm2.C
	load2.stop()
	storm2End := time.Now()
	u.waitFinal(t, base1, 90*time.Second)
	u.waitBinds(t, d, 15*time.Second)
	t.Logf("second storm drained %v after its faults cleared", time.Since(storm2End).Round(time.Millisecond))
	q2 := u.quiet(t, d)
	t.Logf("quiet points: goroutines %v → %v, heap target %.1f → %.1f MiB", q1.goroutines, q2.goroutines, q1.heap/(1<<20), q2.heap/(1<<20))
	// A handful of goroutines come and go with the connections of the
	// test's own HTTP clients; a leak per fault would be tens to hundreds
	// (every phase drops, times out or rebinds dozens of requests).
	leaked := q2.goroutines > q1.goroutines+10
	if leaked {
		t.Errorf("goroutines grew across a storm that ended: %v at the first quiet point, %v at the second", q1.goroutines, q2.goroutines)
	}
	// The live heap moves with the store's caches and with what was in
	// flight at the last collection; a leak of what the storm carried (a
	// few thousand requests, each some KiB with its buffers) would double
	// it.
	if q2.heap > 2*q1.heap+16<<20 {
		t.Errorf("heap grew across a storm that ended: target %.1f MiB, then %.1f MiB", q1.heap/(1<<20), q2.heap/(1<<20))
	}
	probeAfter := u.probe(t, "1395", 200)
	t.Logf("probe after the faults: 200 messages to their receipts in %v (before: %v)", probeAfter.Round(time.Millisecond), probeBefore.Round(time.Millisecond))
	// Throughput is back: the same probe within three times its first
	// time (a shared 2-core machine's noise) and two seconds.
	if probeAfter > 3*probeBefore+2*time.Second {
		t.Errorf("throughput not back: the probe took %v after the faults, %v before", probeAfter, probeBefore)
	}

	u.check(t, "http://"+d.httpAddr)
	t.Logf("warnings and errors the daemons logged: %s", u.logLevels())
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
	if leaked {
		// Where they wait: SIGQUIT makes the Go runtime print every
		// goroutine's stack and exit.
		if err := d.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		t.Logf("the daemon's goroutines at the end, by where they wait:\n%s", goroutineGroups(d.log()))
	}
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 200))
	}
}

// writeUpstreamConfig writes the daemon's configuration: two upstreams
// at the fronts, resp_timeout upRespTimeout, and three accounts of T1.
func writeUpstreamConfig(t *testing.T, dir, addrA, addrB string) string {
	t.Helper()
	up := func(name, addr, carriers string) string {
		return fmt.Sprintf(`  - name: %s
    addr: %s
    system_id: up
    password: uppw
    binds: %d
    window: %d
    resp_timeout: %s
    reconnect_max: 2s
%s`, name, addr, upBinds, upWindow, upRespTimeout, carriers)
	}
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0, admin_token: test-token }
store: { path: %s }
simulator: { enabled: false }
upstreams:
%s%sdelivery: { retry_min: 100ms, retry_max: 1s, dlr_retry: 500ms, dlr_window: %d }
policy: { bcrypt_cost: 4 }
enterprises:
  - code: T1
    signature: "【测试】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
accounts:
  - { system_id: esme1, password: secret1, enterprise: T1 }
  - { system_id: esme2, password: secret1, enterprise: T1 }
  - { system_id: web, password: secret1, enterprise: T1, admin: true }
`, filepath.Join(dir, "qxtd.db"), up("a", addrA, "    carriers: [china_mobile]\n"), up("b", addrB, ""), upDLRWindow)
	path := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type upChaos struct {
	x     *chaos
	base  smpp.Faults
	sims  map[string]*smpp.Simulator
	front map[string]*smscFront
	esmes []*chaosESME

	gen     int               // the daemon of the moment (1, 2, …)
	kills   map[int]time.Time // when the daemon of a generation was killed
	killed  int
	phases  []string   // as run, for the report
	outages []upOutage // when an SMSC came back
	procs   []*proc    // every daemon run, for their logs
}

type upOutage struct {
	front string
	back  time.Time
}

func (u *upChaos) setDaemon(d *proc) {
	u.procs = append(u.procs, d)
	u.gen++
	for _, f := range u.front {
		f.gen.Store(int64(u.gen))
	}
	u.x.net.set(d)
}

// upPhase is one fault phase: start makes the SMSC misbehave, stop
// mends it, and moments are extra actions inside it (drops).
type upPhase struct {
	name    string
	dur     time.Duration
	gap     time.Duration // calm before it
	start   func()
	stop    func()
	moments []time.Duration
	moment  func()
}

// plan draws each named phase's target (A, B or both), length and
// strength, in a seeded order.
func (u *upChaos) plan(rng *rand.Rand, names []string) []upPhase {
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	between := func(lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	var out []upPhase
	for _, name := range names {
		targets := [][]string{{"a"}, {"b"}, {"a", "b"}}[rng.IntN(3)]
		p := upPhase{name: name + " " + strings.Join(targets, "+"), dur: dur(2*time.Second, 4*time.Second), gap: dur(300*time.Millisecond, 1200*time.Millisecond)}
		simFaults := func(f smpp.Faults) func() {
			return func() {
				for _, tg := range targets {
					u.sims[tg].SetFaults(f)
				}
			}
		}
		frontFaults := func(f upFaults) func() {
			return func() {
				for _, tg := range targets {
					u.front[tg].faults.Store(&f)
				}
			}
		}
		f := u.base
		switch name {
		case "noresponse":
			f.NoResponse = between(0.1, 0.3)
			p.start = simFaults(f)
			p.name += fmt.Sprintf(" %.2f", f.NoResponse)
		case "late":
			ff := upFaults{delayFrac: between(0.3, 0.6), delayMin: upRespTimeout * 14 / 10, delayMax: upRespTimeout * 24 / 10}
			p.start = frontFaults(ff)
			p.name += fmt.Sprintf(" %.2f", ff.delayFrac)
		case "too-late":
			ff := upFaults{delayFrac: between(0.1, 0.2), delayMin: 6 * upRespTimeout, delayMax: 7 * upRespTimeout, swallow: 0.03}
			p.start = frontFaults(ff)
			p.name += fmt.Sprintf(" %.2f", ff.delayFrac)
		case "lost-answers":
			ff := upFaults{swallow: between(0.05, 0.15)}
			p.start = frontFaults(ff)
			p.name += fmt.Sprintf(" %.2f", ff.swallow)
		case "drops":
			f.DropAfter = 15 + rng.IntN(26)
			p.start = simFaults(f)
			p.moments = []time.Duration{dur(0, p.dur/2), dur(p.dur/2, p.dur)}
			p.moment = func() {
				for _, tg := range targets {
					u.sims[tg].DropConnections()
				}
			}
			p.name += fmt.Sprintf(" after %d", f.DropAfter)
		case "outage":
			p.dur = dur(2*time.Second, 5*time.Second)
			p.start = func() {
				for _, tg := range targets {
					u.front[tg].stop()
				}
			}
			p.stop = func() {
				for _, tg := range targets {
					if err := u.front[tg].start(); err != nil {
						u.x.t.Errorf("front %s back on its port: %v", tg, err)
					}
					u.outages = append(u.outages, upOutage{front: tg, back: time.Now()})
				}
			}
		case "throttle":
			f.Throttle, f.QueueFull = between(0.2, 0.4), between(0.1, 0.2)
			p.start = simFaults(f)
			p.name += fmt.Sprintf(" %.2f+%.2f", f.Throttle, f.QueueFull)
		case "bind-lost":
			ff := upFaults{bindLost: between(0.01, 0.04)}
			p.start = frontFaults(ff)
			p.name += fmt.Sprintf(" %.3f", ff.bindLost)
		}
		if p.stop == nil {
			p.stop = func() {
				for _, tg := range targets {
					u.sims[tg].SetFaults(u.base)
					u.front[tg].faults.Store(&upFaults{})
				}
			}
		}
		p.name += fmt.Sprintf(" %v", p.dur.Round(100*time.Millisecond))
		out = append(out, p)
	}
	return out
}

type upEvent struct {
	at   time.Duration
	what string
	do   func()
	kill bool
}

// schedule lays the phases end to end and puts kills kill -9s at seeded
// moments among them, at least 3 s apart.
func (u *upChaos) schedule(rng *rand.Rand, phases []upPhase, kills int) []upEvent {
	var ev []upEvent
	at := time.Duration(0)
	for _, p := range phases {
		at += p.gap
		ev = append(ev, upEvent{at: at, what: "begin " + p.name, do: p.start})
		for _, m := range p.moments {
			ev = append(ev, upEvent{at: at + m, what: "drop connections", do: p.moment})
		}
		at += p.dur
		ev = append(ev, upEvent{at: at, what: "end " + p.name, do: p.stop})
		u.phases = append(u.phases, p.name)
	}
	total := at
	var times []time.Duration
	for len(times) < kills {
		k := 2*time.Second + time.Duration(rng.Int64N(int64(total-3*time.Second)))
		if !slices.ContainsFunc(times, func(o time.Duration) bool { return (k - o).Abs() < 3*time.Second }) {
			times = append(times, k)
		}
	}
	for _, k := range times {
		ev = append(ev, upEvent{at: k, what: "kill -9", kill: true})
	}
	slices.SortStableFunc(ev, func(a, b upEvent) int { return int(a.at - b.at) })
	return ev
}

// run plays the events at their moments (a kill restarts the daemon,
// which takes the time it takes: later events then follow at once).
func (u *upChaos) run(t *testing.T, cfg string, d **proc, events []upEvent) {
	t.Helper()
	start := time.Now()
	for _, e := range events {
		if wait := time.Until(start.Add(e.at)); wait > 0 {
			tm := time.NewTimer(wait) // the chaos schedule, not a wait for an event
			<-tm.C
		}
		if !e.kill {
			e.do()
			t.Logf("%6.2fs %s", time.Since(start).Seconds(), e.what)
			continue
		}
		u.x.net.down()
		if err := (*d).cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-(*d).exited
		u.kills[u.gen] = time.Now()
		u.killed++
		*d = startDaemon(t, cfg)
		u.setDaemon(*d)
		t.Logf("%6.2fs kill -9 (%d), restarted: %s", time.Since(start).Seconds(), u.killed, u.x.counts())
	}
}

func (u *upChaos) clearFaults() {
	for name, f := range u.front {
		u.sims[name].SetFaults(u.base)
		f.faults.Store(&upFaults{})
		if err := f.start(); err != nil && !errors.Is(err, errFrontUp) {
			u.x.t.Errorf("front %s: %v", name, err)
		}
	}
}

// upLoad is the traffic of a storm: ESME submit loops and HTTP sends.
type upLoad struct {
	stop func()
}

// startLoad starts two ESMEs' submitters (6 each, about 12 a second
// each: some 150 messages a second) and two HTTP senders (5 requests a
// second each, 1–3 numbers).
func (u *upChaos) startLoad(seed uint64) upLoad {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, e := range u.esmes {
		for w := range 6 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 5))
			wg.Go(func() { u.submitLoop(ctx, e, wrng) })
		}
	}
	for w := range 2 {
		wrng := rand.New(rand.NewPCG(seed+uint64(100+w), 6))
		wg.Go(func() { u.httpLoop(ctx, wrng) })
	}
	return upLoad{stop: func() {
		cancel()
		wg.Wait()
	}}
}

// upDest is a new destination of upstream A (China Mobile, 139…) or B
// (China Unicom, 130…); tag tells the traffic apart (its 4th digit).
func (u *upChaos) upDest(rng *rand.Rand, tag byte) string {
	if rng.IntN(2) == 0 {
		return u.x.dest("139" + string(tag))
	}
	return u.x.dest("130" + string(tag))
}

// submitLoop submits short texts and (one in four) long ones in
// message_payload (four UCS-2 segments with the signature), receipts
// asked; one whose answer is lost (a kill) is not sent again.
func (u *upChaos) submitLoop(ctx context.Context, e *chaosESME, rng *rand.Rand) {
	e.submitPaced(ctx, rng, func() string { return u.upDest(rng, '8') }, "upstream chaos", 4, 7)
}

// httpLoop sends to 1–3 new numbers a request, about 5 a second, no
// receipt asked; a request whose answer is lost is not sent again.
func (u *upChaos) httpLoop(ctx context.Context, rng *rand.Rand) {
	// No keep-alive: idle connections would be goroutines in the daemon
	// at the quiet points, counted as a leak.
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(200 * time.Millisecond) // pacing
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var to []string
		for range 1 + rng.IntN(3) {
			to = append(to, u.upDest(rng, '7'))
		}
		text := "上游测试 " + to[0]
		req, _ := json.Marshal(map[string]any{"to": to, "text": text})
		code, body, _, ok := u.x.post(ctx, cl, "/v1/messages", u.x.webKey, "", "application/json", string(req))
		if !ok {
			return
		}
		if code/100 != 2 {
			u.x.refused(fmt.Sprintf("http:%d", code))
			continue
		}
		var res sendResult
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			u.x.refused("http:undecodable")
			continue
		}
		for _, r := range res.Results {
			if r.Status == "accepted" {
				u.x.ack(r.ID, what{kind: "http", ent: "T1", dest: r.To, text: text})
			} else {
				u.x.refused("http:" + r.Status)
			}
		}
	}
}

// probe submits n short messages on the first ESME, 20 at a time, and
// returns the time from the first submit to the last receipt.
func (u *upChaos) probe(t *testing.T, prefix string, n int) time.Duration {
	t.Helper()
	e := u.esmes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	ids := make(chan string, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 20 {
		wg.Go(func() {
			for range next {
				c := e.bound(ctx)
				if c == nil {
					failed.Add(1)
					continue
				}
				dst := u.x.dest(prefix)
				id, err := submit(ctx, c, dst, "probe "+dst)
				if err != nil {
					failed.Add(1)
					continue
				}
				u.x.ack(id, what{kind: "probe", ent: "T1", dest: dst, text: "probe " + dst, receipt: e.account()})
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	if failed.Load() > 0 {
		t.Fatalf("probe: %d of %d submits failed with no fault injected", failed.Load(), n)
	}
	want := slices.Collect(func(yield func(string) bool) {
		for id := range ids {
			if !yield(id) {
				return
			}
		}
	})
	sink := u.x.sinks[0]
	waitCond(t, 60*time.Second, "every probe's receipt", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, id := range want {
			if len(sink.ids[id]) == 0 {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// waitFinal waits until every acknowledged message so far is final.
func (u *upChaos) waitFinal(t *testing.T, base string, d time.Duration) {
	t.Helper()
	u.x.mu.Lock()
	acked := maps.Clone(u.x.acked)
	u.x.mu.Unlock()
	done := map[string]bool{}
	deadline := time.Now().Add(d)
	for {
		pending := 0
		var example string
		for id := range acked {
			if done[id] {
				continue
			}
			var m chaosMessage
			if _, err := getJSON(base, "/v1/messages/"+id, u.x.webKey, &m); err == nil && final(m.State) {
				done[id] = true
				continue
			}
			pending++
			example = id
		}
		if pending == 0 {
			// And the messages whose acknowledgement a kill cut off.
			for _, m := range export(t, base, u.x.webKey) {
				if !final(m.State) {
					pending++
					example = m.ID
				}
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d of %d acknowledged messages (or stored, unacknowledged) not final, e.g. %s", d, pending, len(acked), example)
		}
		tm := time.NewTimer(250 * time.Millisecond) // polling another process
		<-tm.C
	}
}

// waitBinds waits until every configured upstream bind is up again.
func (u *upChaos) waitBinds(t *testing.T, d *proc, within time.Duration) {
	t.Helper()
	var up, conf float64
	deadline := time.Now().Add(within)
	for {
		up, conf = metricSum(t, d, "qxtd_upstream_binds_up{"), metricSum(t, d, "qxtd_upstream_binds_configured{")
		if conf == upUpstreams*upBinds && up == conf {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v of %v upstream binds up", within, up, conf)
		}
		tm := time.NewTimer(100 * time.Millisecond) // polling another process
		<-tm.C
	}
}

// upQuiet is the daemon at rest: its goroutines, and its heap's target
// (go_memstats_next_gc_bytes: twice the live heap the last collection
// found, which unlike the heap in use does not count the garbage waiting
// for the next one).
type upQuiet struct{ goroutines, heap float64 }

// quiet reads the daemon's goroutines and heap once it is idle: the
// lowest of five readings a moment apart, so that a request of the
// test's own in flight does not count. Every connection is new first: a
// session keeps the handler goroutines it grew (smpp.Conn's workers, up
// to its InboundWindow) until it ends, so sessions older or busier at
// one quiet point than at the other would differ by up to 64 each.
func (u *upChaos) quiet(t *testing.T, d *proc) upQuiet {
	t.Helper()
	accepted := map[string]int{}
	for name, f := range u.front {
		f.mu.Lock()
		accepted[name] = f.nconn
		f.mu.Unlock()
		u.sims[name].DropConnections()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, e := range u.esmes {
		old := e.bound(ctx)
		if old == nil {
			t.Fatalf("ESME %s not bound", e.account())
		}
		_ = old.Close()
		<-old.Done()
		if c := e.bound(ctx); c == nil || c == old {
			t.Fatalf("ESME %s not bound again", e.account())
		}
	}
	waitCond(t, 15*time.Second, "every upstream bind connected again", func() bool {
		for name, f := range u.front {
			f.mu.Lock()
			n := f.nconn
			f.mu.Unlock()
			if n < accepted[name]+upBinds {
				return false
			}
		}
		return true
	})
	u.waitBinds(t, d, 15*time.Second)
	q := upQuiet{goroutines: 1e9, heap: 1e18}
	for range 5 {
		q.goroutines = min(q.goroutines, metricSum(t, d, "go_goroutines "))
		q.heap = min(q.heap, metricSum(t, d, "go_memstats_next_gc_bytes "))
		tm := time.NewTimer(200 * time.Millisecond) // spacing the readings
		<-tm.C
	}
	return q
}

// upFaults are what a front does wrong on purpose; fractions are drawn
// per submit_sm (bindLost) or per accepted answer (the others).
type upFaults struct {
	swallow            float64 // accepted, the answer never relayed
	delayFrac          float64 // accepted, the answer relayed late
	delayMin, delayMax time.Duration
	bindLost           float64 // the SMSC loses the session's bind at this submit
	// The deliver_sm direction (receipts and replies from the SMSC):
	// dlvCut drops the connection just after a deliver_sm is relayed,
	// before the daemon's deliver_sm_resp can come back; dlvRespLost
	// loses the daemon's deliver_sm_resp on its way. A session whose bind
	// the SMSC lost (bindLost) loses every deliver_sm_resp too: the SMSC
	// no longer knows it. Drawn per deliver_sm and per deliver_sm_resp.
	dlvCut, dlvRespLost float64
}

// upSubmit is one submit_sm through a front and the fate of its answer.
type upSubmit struct {
	gen, conn int
	dest      string
	seg       int
	sent      time.Time // read from the daemon
	refused   bool      // answered ESME_RINVBNDSTS by the front: never at the SMSC
	status    uint32
	smscID    string
	answered  time.Time // the SMSC's answer reached the front
	relayed   time.Time // the answer written to the daemon
	swallowed bool
	connEnd   time.Time // its connection ended
}

var errFrontUp = errors.New("front already serving")

// smscFront is the SMSC as the daemon sees it: a relay to a simulator on
// a fixed port, with faults of its own and a ledger.
type smscFront struct {
	t                  *testing.T
	name, addr, target string
	faults             atomic.Pointer[upFaults]
	gen                atomic.Int64

	mu        sync.Mutex
	rng       *rand.Rand
	ln        net.Listener
	conns     map[*frontConn]bool
	nconn     int
	ledger    []*upSubmit
	byID      map[string]*upSubmit
	dlrs      map[string]smpp.MessageState // the simulator's verdict by its id, from its receipts
	bindLosts int
	binds     []time.Time // binds the SMSC answered OK
	// The deliver_sm faults done: connections cut after a deliver_sm,
	// deliver_sm_resp lost, and lost because the bind was.
	dlvCuts, dlvRespLosts, dlvOnLost int
	// Receipts relayed before their segment's submit_sm_resp was.
	early int
	// The replies (deliver_sm that are no receipts, whole texts) relayed,
	// by source, destination and text, with what became of each answer.
	dlvLog map[moKey][]*dlvRec
	wg     sync.WaitGroup
}

func newSMSCFront(t *testing.T, name, target string, seed uint64) *smscFront {
	t.Helper()
	f := &smscFront{t: t, name: name, target: target, rng: rand.New(rand.NewPCG(seed, 7)),
		conns: map[*frontConn]bool{}, byID: map[string]*upSubmit{}, dlrs: map[string]smpp.MessageState{}}
	f.faults.Store(&upFaults{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.ln = ln
	f.wg.Add(1)
	go f.serve(ln)
	t.Cleanup(func() {
		f.stop()
		f.wg.Wait()
	})
	return f
}

// start serves again on the same port after stop (the SMSC is back).
func (f *smscFront) start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		return errFrontUp
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.addr, err)
	}
	f.ln = ln
	f.wg.Add(1)
	go f.serve(ln)
	return nil
}

// stop closes the port and every connection (the SMSC is gone).
func (f *smscFront) stop() {
	f.mu.Lock()
	ln := f.ln
	f.ln = nil
	conns := slices.Collect(maps.Keys(f.conns))
	f.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
}

func (f *smscFront) serve(ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // stopped
		}
		s, err := net.DialTimeout("tcp", f.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		f.mu.Lock()
		if f.ln != ln {
			f.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		f.nconn++
		fc := &frontConn{f: f, id: f.nconn, gen: int(f.gen.Load()), client: c, server: s,
			done: make(chan struct{}), pending: map[uint32]*upSubmit{}, pendingDlv: map[uint32]*dlvRec{}}
		f.conns[fc] = true
		f.mu.Unlock()
		f.wg.Add(2)
		go fc.fromDaemon()
		go fc.fromSMSC()
	}
}

type frontConn struct {
	f              *smscFront
	id, gen        int
	client, server net.Conn
	cw             sync.Mutex // writes to the daemon, frame by frame
	lost           bool       // the bind is lost (fromDaemon only)
	done           chan struct{}
	once           sync.Once
	pending        map[uint32]*upSubmit // by sequence number, under f.mu
	mine           []*upSubmit          // under f.mu
	pendingDlv     map[uint32]*dlvRec   // replies relayed, not yet answered, under f.mu
}

func (fc *frontConn) close() {
	fc.once.Do(func() {
		close(fc.done)
		_ = fc.client.Close()
		_ = fc.server.Close()
		f := fc.f
		f.mu.Lock()
		now := time.Now()
		for _, e := range fc.mine {
			e.connEnd = now
		}
		for _, r := range fc.pendingDlv {
			if r.fate == "" {
				r.fate, r.end = "ended", now
				if fc.lost {
					r.fate = "ended, its bind lost"
				}
			}
		}
		delete(f.conns, fc)
		f.mu.Unlock()
	})
}

// readFrame reads one SMPP PDU whole.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 16 || n > 1<<16 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	copy(b, hdr[:])
	if _, err := io.ReadFull(r, b[4:]); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return b, nil
}

// segOf is a segment's number in its message from its UDH (1 without).
func segOf(esm uint8, sm []byte) int {
	if esm&0x40 == 0 || len(sm) == 0 || 1+int(sm[0]) > len(sm) {
		return 1
	}
	udh := sm[1 : 1+int(sm[0])]
	for len(udh) >= 2 {
		iei, l := udh[0], int(udh[1])
		if 2+l > len(udh) {
			break
		}
		switch {
		case iei == 0x00 && l == 3:
			return int(udh[4])
		case iei == 0x08 && l == 4:
			return int(udh[5])
		}
		udh = udh[2+l:]
	}
	return 1
}

func (fc *frontConn) writeDaemon(frame []byte, e *upSubmit) {
	fc.cw.Lock()
	_, err := fc.client.Write(frame)
	fc.cw.Unlock()
	if err != nil {
		fc.close()
		return
	}
	if e != nil {
		fc.f.mu.Lock()
		e.relayed = time.Now()
		fc.f.mu.Unlock()
	}
}

// fromDaemon relays the daemon's frames to the SMSC, noting each
// submit_sm, and answers for an SMSC that lost the bind.
func (fc *frontConn) fromDaemon() {
	defer fc.f.wg.Done()
	defer fc.close()
	f := fc.f
	br := bufio.NewReader(fc.client)
	for {
		fr, err := readFrame(br)
		if err != nil {
			return
		}
		if binary.BigEndian.Uint32(fr[4:]) == uint32(pdu.DeliverSMRespID) {
			f.mu.Lock()
			lose := fc.lost
			fate := "lost-bind"
			if lose {
				f.dlvOnLost++
			} else if dl := f.faults.Load().dlvRespLost; dl > 0 && f.rng.Float64() < dl {
				lose = true
				f.dlvRespLosts++
				fate = "resp-lost"
			}
			seq := binary.BigEndian.Uint32(fr[12:])
			if r := fc.pendingDlv[seq]; r != nil {
				delete(fc.pendingDlv, seq)
				if !lose {
					fate = fmt.Sprintf("answered 0x%x", binary.BigEndian.Uint32(fr[8:]))
				}
				r.fate, r.end = fate, time.Now()
			}
			f.mu.Unlock()
			if lose {
				continue // the SMSC sends that deliver_sm again
			}
		}
		if binary.BigEndian.Uint32(fr[4:]) == uint32(pdu.SubmitSMID) {
			seq := binary.BigEndian.Uint32(fr[12:])
			p, err := smpp.Decode(fr)
			if err != nil {
				f.t.Errorf("front %s: submit_sm undecodable: %v", f.name, err)
				return
			}
			e := &upSubmit{gen: fc.gen, conn: fc.id, dest: smpp.Str(p, pdufield.DestinationAddr),
				seg: segOf(smpp.Byte(p, pdufield.ESMClass), smpp.Bytes(p, pdufield.ShortMessage)), sent: time.Now()}
			f.mu.Lock()
			if bl := f.faults.Load().bindLost; !fc.lost && bl > 0 && f.rng.Float64() < bl {
				fc.lost = true
				f.bindLosts++
			}
			e.refused = fc.lost
			f.ledger = append(f.ledger, e)
			fc.mine = append(fc.mine, e)
			if !fc.lost {
				fc.pending[seq] = e
			}
			f.mu.Unlock()
			if fc.lost {
				// submit_sm_resp ESME_RINVBNDSTS: the SMSC no longer has
				// this session bound; every later submit gets the same.
				// On odd connections as a generic_nack, as some SMSCs
				// answer a request of a session they do not know.
				resp := make([]byte, 17)
				binary.BigEndian.PutUint32(resp[0:], 17)
				binary.BigEndian.PutUint32(resp[4:], uint32(pdu.SubmitSMRespID))
				if fc.id%2 == 1 {
					resp = resp[:16]
					binary.BigEndian.PutUint32(resp[0:], 16)
					binary.BigEndian.PutUint32(resp[4:], uint32(pdu.GenericNACKID))
				}
				binary.BigEndian.PutUint32(resp[8:], uint32(smpp.StatusInvalidBindStatus))
				binary.BigEndian.PutUint32(resp[12:], seq)
				fc.writeDaemon(resp, nil)
				continue
			}
		}
		if _, err := fc.server.Write(fr); err != nil {
			return
		}
	}
}

// fromSMSC relays the SMSC's frames to the daemon: a submit_sm_resp
// accepting a segment may be lost or held back (the faults), a receipt
// is noted with the state the simulator decided.
func (fc *frontConn) fromSMSC() {
	defer fc.f.wg.Done()
	defer fc.close()
	f := fc.f
	br := bufio.NewReader(fc.server)
	for {
		fr, err := readFrame(br)
		if err != nil {
			return
		}
		var e *upSubmit
		switch binary.BigEndian.Uint32(fr[4:]) {
		case uint32(pdu.SubmitSMRespID):
			seq, status := binary.BigEndian.Uint32(fr[12:]), binary.BigEndian.Uint32(fr[8:])
			var delay time.Duration
			f.mu.Lock()
			e = fc.pending[seq]
			delete(fc.pending, seq)
			if e != nil {
				e.answered, e.status = time.Now(), status
				if status == 0 {
					id, _, _ := strings.Cut(string(fr[16:]), "\x00")
					e.smscID = strings.ToLower(id)
					f.byID[e.smscID] = e
					ff := f.faults.Load()
					switch r := f.rng.Float64(); {
					case r < ff.swallow:
						e.swallowed = true
					case r < ff.swallow+ff.delayFrac:
						delay = ff.delayMin + time.Duration(f.rng.Int64N(int64(ff.delayMax-ff.delayMin)+1))
					}
				}
			}
			swallowed := e != nil && e.swallowed
			f.mu.Unlock()
			if swallowed {
				continue
			}
			if delay > 0 {
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					tm := time.NewTimer(delay) // the fault: an answer this late
					defer tm.Stop()
					select {
					case <-tm.C:
						fc.writeDaemon(fr, e)
					case <-fc.done:
					}
				}()
				continue
			}
		case uint32(pdu.BindTransceiverRespID):
			if binary.BigEndian.Uint32(fr[8:]) == 0 {
				f.mu.Lock()
				f.binds = append(f.binds, time.Now())
				f.mu.Unlock()
			}
		case uint32(pdu.DeliverSMID):
			if p, err := smpp.Decode(fr); err == nil {
				if rc, err := smpp.ParseReceipt(p); err == nil {
					f.mu.Lock()
					f.dlrs[strings.ToLower(rc.ID)] = rc.State
					if s := f.byID[strings.ToLower(rc.ID)]; s != nil && s.relayed.IsZero() {
						f.early++
					}
					f.mu.Unlock()
				}
			}
			var rec *dlvRec
			if p, err := smpp.Decode(fr); err == nil {
				if _, err := smpp.ParseReceipt(p); errors.Is(err, smpp.ErrNotReceipt) && smpp.Byte(p, pdufield.ESMClass)&0x40 == 0 {
					text, _, err := segment.DecodeIncoming(smpp.Byte(p, pdufield.DataCoding), 0, smpp.Bytes(p, pdufield.ShortMessage), nil, false)
					if err == nil {
						rec = &dlvRec{at: time.Now()}
						k := moKey{smpp.Str(p, pdufield.SourceAddr), smpp.Str(p, pdufield.DestinationAddr), text}
						f.mu.Lock()
						if f.dlvLog == nil {
							f.dlvLog = map[moKey][]*dlvRec{}
						}
						f.dlvLog[k] = append(f.dlvLog[k], rec)
						fc.pendingDlv[binary.BigEndian.Uint32(fr[12:])] = rec
						f.mu.Unlock()
					}
				}
			}
			f.mu.Lock()
			cut := false
			if dc := f.faults.Load().dlvCut; dc > 0 && f.rng.Float64() < dc {
				cut = true
				f.dlvCuts++
				for _, r := range fc.pendingDlv { // this one, and any other out on the connection
					if r.fate == "" {
						r.fate, r.end = "cut", time.Now()
					}
				}
			}
			f.mu.Unlock()
			if cut {
				// The deliver_sm reaches the daemon, its answer cannot
				// come back: the SMSC sends it again on another bind.
				fc.writeDaemon(fr, nil)
				fc.close()
				return
			}
		}
		fc.writeDaemon(fr, e)
	}
}

// dlvRec is one reply relayed to the daemon and what became of its
// answer: "answered 0x…" (relayed to the SMSC with that status),
// "resp-lost", "lost-bind" (lost on the way), "cut" (the front dropped
// the connection), "ended" (the connection ended first: a stop, a kill;
// "ended, its bind lost": the daemon left a bind the SMSC had lost).
type dlvRec struct {
	at, end time.Time
	fate    string
}

// upCopy is one copy of a segment that an SMSC accepted.
type upCopy struct {
	front string
	msg   smpp.SimMessage
	e     *upSubmit // nil: the front never read its answer
}

// Why an accepted copy of a segment was sent again (its successor).
const (
	whyLost     = "answer lost"       // swallowed, or never read from the SMSC (case 2, never answered)
	whyCut      = "connection cut"    // the connection ended before it was relayed (case 3)
	whyCutAfter = "cut just after"    // relayed, the connection ended within 100 ms (case 3)
	whyTooLate  = "answered too late" // after the retry was due (case 2)
	whyEdge     = "answered at an edge"
	whyKill     = "kill"
	whyUnexplnd = "unexplained"
)

// explain is why a segment accepted as c was sent again: the ledger's
// account of its answer, against the daemon's rules.
func (u *upChaos) explain(c upCopy) string {
	e := c.e
	switch {
	case e == nil || e.swallowed:
		return whyLost
	case e.relayed.IsZero():
		return whyCut
	}
	if k, ok := u.kills[e.gen]; ok && !e.relayed.After(k) && k.Sub(e.relayed) < time.Second {
		// Answered, not yet recorded when the daemon was killed (case 1):
		// a commit takes milliseconds, a second is generous.
		return whyKill
	}
	if !e.connEnd.IsZero() && e.connEnd.Sub(e.relayed) < 100*time.Millisecond {
		// Written to the daemon just before the connection ended: on a
		// reset the daemon may never read it (case 3).
		return whyCutAfter
	}
	// The front reads the submit after the daemon started its timer and
	// writes the answer before the daemon reads it: margins for both.
	d := e.relayed.Sub(e.sent)
	const margin = 100 * time.Millisecond
	switch {
	case d < upRespTimeout-margin:
		return whyUnexplnd // answered in time: it must not have been sent again
	case d < upRespTimeout+margin:
		return whyEdge
	case d < upRespTimeout+3*upRespTimeout-3*margin:
		// After resp_timeout, before the retry is due (3 × resp_timeout
		// after the timeout): the late answer must be recorded (case 2).
		return whyUnexplnd
	case d < upRespTimeout+3*upRespTimeout+3*margin:
		return whyEdge
	}
	return whyTooLate
}

func stateName(s smpp.MessageState) string {
	switch s {
	case smpp.StateDelivered:
		return "delivered"
	case smpp.StateUndeliverable:
		return "undeliverable"
	case smpp.StateExpired:
		return "expired"
	}
	return fmt.Sprintf("state %d", s)
}

type upSegKey struct {
	dest string
	seg  int
}

// check verifies the README's guarantees once everything drained.
func (u *upChaos) check(t *testing.T, base string) {
	x := u.x
	x.mu.Lock()
	acked := maps.Clone(x.acked)
	x.mu.Unlock()

	// 1. Every acknowledged id names its message and is final.
	got := map[string]chaosMessage{}
	for id, w := range acked {
		var m chaosMessage
		if _, err := getJSON(base, "/v1/messages/"+id, x.webKey, &m); err != nil {
			t.Errorf("acknowledged id %s (%s to %s): %v", id, w.kind, w.dest, err)
			continue
		}
		got[id] = m
		account := w.receipt
		if account == "" {
			account = "web"
		}
		if digits(m.To) != w.dest || !strings.Contains(m.Text, w.text) || m.Account != account || !final(m.State) {
			t.Errorf("id %s acknowledged for %s %q to %s by %s is %s %q to %s by %s", id, w.kind, w.text, w.dest, account, m.State, m.Text, m.To, m.Account)
		}
	}

	// The SMSCs' side: every accepted copy, with the fate of its answer.
	copies := map[upSegKey][]upCopy{}
	byID := map[string]upCopy{}
	arrived := map[string]string{} // destinations any SMSC read a submit for, and which
	accepted := 0
	for name, sim := range u.sims {
		f := u.front[name]
		f.mu.Lock()
		for _, m := range sim.Received() {
			c := upCopy{front: name, msg: m, e: f.byID[strings.ToLower(m.ID)]}
			k := upSegKey{m.Dest, segOf(m.ESMClass, m.ShortMessage)}
			copies[k] = append(copies[k], c)
			byID[strings.ToLower(m.ID)] = c
			accepted++
		}
		f.mu.Unlock()
		for dst := range sim.Arrived() {
			arrived[dst] = name
		}
	}

	// 2. The outbox: one message a destination, each routed to its
	// carrier's SMSC, every segment accepted there at least once, each
	// part's state the SMSC's verdict on a copy of it; the usage is the
	// delivered segments.
	outbox := export(t, base, x.webKey)
	byDest := map[string]chaosMessage{}
	var delivered, segments int64
	for _, m := range outbox {
		d := digits(m.To)
		if prev, ok := byDest[d]; ok {
			t.Errorf("two messages to %s: %s and %s", d, prev.ID, m.ID)
		}
		byDest[d] = m
		want := "b"
		if strings.HasPrefix(d, "139") {
			want = "a"
		}
		var full chaosMessage
		if _, err := getJSON(base, "/v1/messages/"+m.ID, x.webKey, &full); err != nil {
			t.Fatalf("message %s: %v", m.ID, err)
		}
		if !final(full.State) || full.State == "rejected" {
			t.Errorf("message %s to %s is %s", m.ID, d, full.State)
		}
		segments += int64(m.Segments)
		for i, p := range full.Parts {
			cs := copies[upSegKey{d, i + 1}]
			if len(cs) == 0 {
				t.Errorf("message %s to %s (%s): segment %d of %d never accepted by an SMSC", m.ID, d, full.State, i+1, m.Segments)
				continue
			}
			if p.State == "delivered" {
				delivered++
			}
			own, verdicts := false, []string{}
			for _, c := range cs {
				if c.front != want {
					t.Errorf("message %s to %s: segment %d went to SMSC %s, its carrier's is %s", m.ID, d, i+1, c.front, want)
				}
				id := strings.ToLower(c.msg.ID)
				own = own || id == strings.ToLower(p.SMSCID)
				u.front[c.front].mu.Lock()
				st, ok := u.front[c.front].dlrs[id]
				u.front[c.front].mu.Unlock()
				if ok {
					verdicts = append(verdicts, stateName(st))
				}
			}
			if !own {
				t.Errorf("message %s to %s: part %d has SMSC id %q, which no copy of it got", m.ID, d, i+1, p.SMSCID)
			}
			if !slices.Contains(verdicts, p.State) {
				t.Errorf("message %s to %s: part %d is %s, the SMSC's receipts for its copies said %v", m.ID, d, i+1, p.State, verdicts)
			}
		}
		if len(full.Parts) != m.Segments {
			t.Errorf("message %s: %d parts, %d segments", m.ID, len(full.Parts), m.Segments)
		}
	}
	for d, front := range arrived {
		if _, ok := byDest[d]; !ok {
			t.Errorf("SMSC %s read a submit for %s, which no stored message names", front, d)
		}
	}
	for id, w := range acked {
		if _, ok := byDest[w.dest]; !ok {
			t.Errorf("acknowledged id %s to %s is not in the outbox", id, w.dest)
		}
	}
	var usage struct{ Reserved, Delivered int64 }
	if _, err := getJSON(base, "/v1/usage", x.webKey, &usage); err != nil {
		t.Fatalf("usage: %v", err)
	}
	if usage.Delivered != delivered || usage.Reserved != 0 {
		t.Errorf("usage: delivered %d, reserved %d; the messages' delivered segments: %d", usage.Delivered, usage.Reserved, delivered)
	}

	// 3. Segments accepted more than once, each explained by a cause the
	// README lists: the copy before it was answered too late or never,
	// its connection cut, or its daemon killed before recording it.
	why := map[string]int{}
	var unexplained []string
	dups := 0
	for k, cs := range copies {
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, b upCopy) int { return a.msg.At.Compare(b.msg.At) })
		for _, c := range cs[:len(cs)-1] {
			dups++
			w := u.explain(c)
			why[w]++
			if w == whyUnexplnd {
				e := c.e
				unexplained = append(unexplained, fmt.Sprintf("%s seg %d at %s: id %s answered %v after its submit (gen %d, conn %d, conn ended %v after)",
					k.dest, k.seg, c.front, c.msg.ID, e.relayed.Sub(e.sent).Round(time.Millisecond), e.gen, e.conn, e.connEnd.Sub(e.relayed).Round(time.Millisecond)))
			}
		}
	}
	// The bound the README's causes give: every accepted copy whose
	// answer the daemon may not have had in time (lost, cut, too late, at
	// an edge: cases 2 and 3) may be sent once more, and each kill the
	// windows' worth (case 1). Each duplicate explained by one of them is
	// within it by construction; what can fail is a duplicate with no
	// such cause (an answer in time, or late but before its retry was
	// due, on a daemon not killed) and more kill duplicates than the
	// windows.
	risky := map[string]int{}
	for _, c := range byID {
		if w := u.explain(c); w != whyUnexplnd && w != whyKill {
			risky[w]++
		}
	}
	bound := u.killed * upWindows
	for _, n := range risky {
		bound += n
	}
	submits, refused := 0, 0
	bindLosts := 0
	for _, f := range u.front {
		f.mu.Lock()
		for _, e := range f.ledger {
			submits++
			if e.refused {
				refused++
			}
		}
		bindLosts += f.bindLosts
		f.mu.Unlock()
	}
	t.Logf("phases: %s", strings.Join(u.phases, "; "))
	t.Logf("%d acknowledged, %d messages, %d segments, %d delivered; %d submit_sm at the fronts (%d answered ESME_RINVBNDSTS on %d lost binds), %d accepted by the SMSCs",
		len(acked), len(outbox), segments, delivered, submits, refused, bindLosts, accepted)
	t.Logf("segments accepted twice: %d, by cause %v; bound %d (kills %d × windows %d + copies at risk %v)", dups, why, bound, u.killed, upWindows, risky)
	if len(unexplained) > 0 {
		t.Errorf("%d segments sent again although their answer reached the daemon in time, or late but before their retry was due (README case 2), with no kill; e.g. %v",
			len(unexplained), unexplained[:min(10, len(unexplained))])
	}
	if why[whyKill] > u.killed*upWindows {
		t.Errorf("%d segments sent again after %d kills: more than the windows allow (%d)", why[whyKill], u.killed, u.killed*upWindows)
	}

	// 4. After each outage every bind of that SMSC was back within the
	// reconnect backoff's ceiling (reconnect_max, 2 s: the jittered wait
	// never exceeds it) and a second for the dial and bind.
	var backIn []string
	for _, o := range u.outages {
		f := u.front[o.front]
		f.mu.Lock()
		var after []time.Time
		for _, b := range f.binds {
			if b.After(o.back) {
				after = append(after, b)
			}
		}
		f.mu.Unlock()
		if len(after) < upBinds {
			t.Errorf("SMSC %s back at %v: %d binds since, want %d", o.front, o.back.Format("15:04:05.000"), len(after), upBinds)
			continue
		}
		in := after[upBinds-1].Sub(o.back)
		backIn = append(backIn, fmt.Sprintf("%s %v", o.front, in.Round(time.Millisecond)))
		if in > 3*time.Second {
			t.Errorf("SMSC %s back: its %d binds took %v, more than reconnect_max (2 s) and a second", o.front, upBinds, in)
		}
	}
	t.Logf("binds back after the outages: %v", backIn)

	// 5. Every receipt asked for reached its ESME, with its message's
	// state; more than once only by a kill (dlr_window an account each).
	rcptDups := 0
	waitCond(t, 60*time.Second, "every receipt at its ESME", func() bool {
		for id, w := range acked {
			if w.receipt == "" {
				continue
			}
			s := x.sinks[w.receipt[len(w.receipt)-1]-'1']
			s.mu.Lock()
			n := len(s.ids[id])
			s.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	})
	for id, w := range acked {
		if w.receipt == "" {
			continue
		}
		s := x.sinks[w.receipt[len(w.receipt)-1]-'1']
		s.mu.Lock()
		states := slices.Clone(s.ids[id])
		s.mu.Unlock()
		rcptDups += len(states) - 1
		for _, st := range states {
			if stateName(st) != got[id].State {
				t.Errorf("receipt of %s at %s: %s, the message is %s", id, w.receipt, stateName(st), got[id].State)
			}
		}
	}
	rcptBound := u.killed * len(u.esmes) * upDLRWindow
	t.Logf("receipts sent twice to the ESMEs: %d (bound %d: %d kills × %d accounts × dlr_window %d)", rcptDups, rcptBound, u.killed, len(u.esmes), upDLRWindow)
	if rcptDups > rcptBound {
		t.Errorf("%d receipts sent twice over %d kills, more than the receipt windows allow (%d)", rcptDups, u.killed, rcptBound)
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()
}

// goroutineGroups counts the goroutines of a Go runtime's stack dump
// (SIGQUIT) by their state and top functions, most first.
func goroutineGroups(dump string) string {
	groups := map[string]int{}
	for block := range strings.SplitSeq(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := lines[0][strings.IndexByte(lines[0], '['):]
		var fns []string
		for i := 1; i < len(lines) && len(fns) < 4; i += 2 {
			fn := lines[i]
			if j := strings.LastIndexByte(fn, '('); j > 0 {
				fn = fn[:j]
			}
			fns = append(fns, fn)
		}
		groups[state+" "+strings.Join(fns, " < ")]++
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b string) int { return groups[b] - groups[a] })
	var b strings.Builder
	for _, k := range keys[:min(25, len(keys))] {
		fmt.Fprintf(&b, "%5d %s\n", groups[k], k)
	}
	return b.String()
}

// logLevels counts the WARN and ERROR lines of every daemon run by
// message, for the report.
func (u *upChaos) logLevels() string {
	n := map[string]int{}
	for _, p := range u.procs {
		for line := range strings.SplitSeq(p.log(), "\n") {
			var rec struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &rec) == nil && (rec.Level == "WARN" || rec.Level == "ERROR") {
				n[rec.Level+" "+rec.Msg]++
			}
		}
	}
	keys := slices.Sorted(maps.Keys(n))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %5d %s", n[k], k)
	}
	return b.String()
}

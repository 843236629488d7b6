//go:build soak

package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestSoakPlannedStops checks the README's promise that a planned stop
// (SIGTERM) repeats nothing: "What qxtd guarantees (and where it can
// duplicate)". Under steady load the real daemon is stopped with SIGTERM
// 5–8 times at seeded moments and started again at once, with SIGHUPs
// (log.level, the upstream's tps) between them and once right before a
// SIGTERM:
//
//   - three ESMEs (transceivers) submit short texts and long ones in
//     message_payload, all asking for receipts; esme1 and esme2 answer
//     their deliver_sm at once, esme3 100–800 ms late;
//   - HTTP sends with a receipt_url (half keyed), and a receiver (rx1)
//     and a reply_url for replies injected at the simulator; both
//     webhooks answer 2xx 0–150 ms late, so POSTs are under way at a stop;
//   - two batch jobs paced by their enterprise's rate across the stops;
//   - the SMSC (the simulator, which outlives every daemon) answers every
//     submit_sm 20–60 ms late, so segments are on the wire at each stop.
//
// Once everything has drained the test requires, strictly:
//
//   - no segment reached the SMSC twice (counted as it arrived, answered
//     or not);
//   - no receipt (nor reply) the ESME answered before its unbind_resp
//     was sent to it again. Each ESME's connection is tapped: a
//     deliver_sm counts as answered before the unbind when its
//     deliver_sm_resp went on the wire before the ESME's unbind_resp on
//     that connection; every bound connection a stop ended must end with
//     unbind_resp;
//   - no receipt webhook and no reply webhook POSTed twice after a 2xx
//     (the endpoints always answer 2xx, well within webhooks.timeout);
//   - each batch row once; every acknowledged message final, its receipt
//     at its ESME or webhook; the usage is the delivered segments (the
//     checks of TestSoakChaos, with no kill: every count > 1 an error);
//   - every SIGTERM'd daemon exits 0 within its shutdown bound (15 s for
//     the ESMEs, then resp_timeout, then webhooks.timeout: README, Stop),
//     and none logs at error level.
//
// SOAK_TERM_SEED replays a seed.
func TestSoakPlannedStops(t *testing.T) {
	seed := soakSeed(t, "SOAK_TERM_SEED")
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909))

	respDelay := 20*time.Millisecond + time.Duration(rng.Int64N(int64(40*time.Millisecond)))
	sim, simAddr := startSim(t, smpp.SimOptions{
		DLRDelay: 100 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Undeliv: 0.05, RespDelay: respDelay},
	})
	x := newChaos(t)
	tt := &termSoak{x: x, sim: sim, mos: map[string]bool{}, rx: map[string]int{}, replies: map[string][]string{},
		slowRng: rand.New(rand.NewPCG(seed+5, 6)), hookRng: rand.New(rand.NewPCG(seed+6, 7))}
	hooks := httptest.NewServer(http.HandlerFunc(tt.serveHooks))
	t.Cleanup(hooks.Close)
	x.hookURL = hooks.URL + "/dlr"

	const respTimeout, hookTimeout = 2 * time.Second, 5 * time.Second
	stopBound := 15*time.Second + respTimeout + hookTimeout

	dir := t.TempDir()
	cfg := writeConfig(t, dir, simAddr, chaosAccounts+"  - { system_id: rx1, password: secret1, enterprise: R1 }\n")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replyBatch := []int{1, 10}[rng.IntN(2)]
	held := rng.IntN(2) == 0
	conf := strings.Replace(string(b), "enterprises:\n", "enterprises:\n"+chaosEnterprise+
		strings.ReplaceAll(strings.Replace(termReplyEnterprise, "BATCH", fmt.Sprint(replyBatch), 1), "HOOK", hooks.URL+"/mo"), 1)
	conf = strings.Replace(conf, "    resp_timeout: 2s\n", "    resp_timeout: 2s\n    tps: TPS\n", 1)
	if held {
		conf = strings.Replace(conf, "store: {", "store: { record_delay: 10ms, commit_delay: 2ms,", 1)
		conf = strings.Replace(conf, "    tps: 100000\n", "    tps: 100000\n    receipt_batch: 20\n", 1)
	}
	conf += fmt.Sprintf("webhooks: { allow_private: true, timeout: %s }\nlog: { level: LEVEL }\n", hookTimeout)
	t.Logf("simulator answers %v late; store.record_delay, commit_delay and receipt_batch set: %v; reply_batch %d; stop bound %v",
		respDelay, held, replyBatch, stopBound)
	level, tps := "info", 1500
	write := func() {
		c := strings.Replace(strings.Replace(conf, "TPS", fmt.Sprint(tps), 1), "LEVEL", level, 1)
		if err := os.WriteFile(cfg, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write()

	d := startDaemon(t, cfg)
	x.net.set(d)
	base := "http://" + d.httpAddr
	x.webKey = issueAPIKey(t, base, "web")
	x.bulkKey = issueAPIKey(t, base, "bulk")

	submitCtx, stopSubmitting := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopSubmitting()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	for i := range 3 {
		e := &termESME{t: tt, e: &chaosESME{x: x, n: i + 1, sink: x.sinks[i]}, slow: i == 2}
		conns.Go(func() { e.keepBound(endCtx) })
		for w := range 6 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 1))
			drivers.Go(func() { e.e.submitLoop(submitCtx, wrng) })
		}
	}
	rx1 := &termESME{t: tt, e: &chaosESME{x: x, system: "rx1", kind: smpp.BindReceiver}}
	conns.Go(func() { rx1.keepBound(endCtx) })
	for w := range 2 {
		wrng := rand.New(rand.NewPCG(seed+uint64(100+w), 2))
		drivers.Go(func() { x.httpLoop(submitCtx, w, wrng) })
	}
	for n := range 2 {
		drivers.Go(func() { tt.injectLoop(submitCtx, n) })
	}
	jobs := make(chan string, 2)
	batch := func(n, rows int) {
		id := x.startBatch(submitCtx, n, rows)
		jobs <- id
		if id != "" {
			conns.Go(func() { x.watchJob(endCtx, id, x.bulkKey) })
		}
	}
	drivers.Go(func() { batch(1, 1100) })

	stops := 5 + rng.IntN(4)
	quick := 1 + rng.IntN(stops-1)
	hupGaps := map[int]bool{}
	for len(hupGaps) < 3+rng.IntN(2) {
		hupGaps[rng.IntN(stops)] = true
	}
	hupLast := slices.Sorted(maps.Keys(hupGaps))[rng.IntN(len(hupGaps))] // this gap's SIGHUP comes right before its SIGTERM
	tpsChoices := []int{400, 800, 1500, 3000}
	var (
		stopTimes []time.Duration
		hupsSent  int
		reloaded  int
	)
	hup := func(wait bool) {
		if level == "info" {
			level = "debug"
		} else {
			level = "info"
		}
		next := tps
		for next == tps {
			next = tpsChoices[rng.IntN(len(tpsChoices))]
		}
		tps = next
		write()
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		hupsSent++
		if !wait {
			return
		}
		rec := d.waitLog(t, "configuration reloaded", 0, 30*time.Second) // one SIGHUP a daemon
		reloaded++
		applied, restart := strs(rec["applied"]), strs(rec["restart_required"])
		if !slices.Contains(applied, "log.level") || !slices.Contains(applied, "upstreams[0].tps") || len(restart) != 0 {
			t.Errorf("SIGHUP (log.level %s, tps %d): applied %v, restart_required %v", level, tps, applied, restart)
		}
	}
	// 30–45 s of stops, the gaps 0.5–1.5 times their share.
	span := 30*time.Second + time.Duration(rng.Int64N(int64(15*time.Second)))
	for k := range stops {
		gap := time.Duration(float64(span/time.Duration(stops)) * (0.5 + rng.Float64()))
		if k == quick {
			// Once soon after a restart: a stop while the daemon sends
			// what the last one left and resumes the jobs.
			gap = 300*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
		}
		first := gap
		if hupGaps[k] && k != hupLast {
			first = gap / time.Duration(2+rng.IntN(3))
		}
		tm := time.NewTimer(first) // the schedule, not a wait for an event
		<-tm.C
		if k == 1 {
			drivers.Go(func() { batch(2, 300) })
		}
		if hupGaps[k] {
			if k == hupLast {
				hup(false)
			} else {
				hup(true)
				tm := time.NewTimer(gap - first) // the schedule
				<-tm.C
			}
		}
		onWire, outAtESMEs, posts := sim.Answering(), tt.outstanding(), tt.posting.Load()
		x.net.down()
		stopAt := time.Now()
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.exited:
		case <-time.After(stopBound + 10*time.Second):
			t.Fatalf("stop %d: no exit %v after SIGTERM:\n%s", k+1, stopBound+10*time.Second, tail(d.log(), 100))
		}
		took := time.Since(stopAt)
		stopTimes = append(stopTimes, took)
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("stop %d: exit %d after SIGTERM:\n%s", k+1, code, tail(d.log(), 100))
		}
		if took > stopBound {
			t.Errorf("stop %d took %v, more than its bound %v", k+1, took, stopBound)
		}
		tt.checkLog(t, fmt.Sprintf("daemon %d (SIGTERM %d)", k+1, k+1), d.log())
		if dir := os.Getenv("SOAK_TERM_LOGS"); dir != "" {
			_ = os.WriteFile(fmt.Sprintf("%s/daemon-%d.log", dir, k+1), []byte(d.log()), 0o600)
		}
		hupNote := ""
		if k == hupLast {
			if n := strings.Count(d.log(), `"msg":"configuration reloaded"`); n > 0 {
				reloaded++
				hupNote = "; its SIGHUP just before was applied"
			} else {
				hupNote = "; its SIGHUP just before was not read (the stop came first)"
			}
		}
		d = startDaemon(t, cfg)
		x.net.set(d)
		t.Logf("SIGTERM %d of %d after %v: %d segments on the wire, %d deliver_sm out at ESMEs, %d webhook POSTs under way; exited 0 in %v%s; %s",
			k+1, stops, gap.Round(time.Millisecond), onWire, outAtESMEs, posts, took.Round(time.Millisecond), hupNote, x.counts())
	}
	tm := time.NewTimer(2 * time.Second) // a last stretch on the daemon that stays up
	<-tm.C
	stopSubmitting()
	drivers.Wait()
	chaosEnd := time.Now()
	t.Logf("stops over after %v: %s; %d replies injected and acknowledged", chaosEnd.Sub(began).Round(time.Millisecond), x.counts(), tt.acked())
	close(jobs)

	base = "http://" + d.httpAddr
	x.check(t, sim, base, jobs)
	tt.check(t, sim, base, stops)
	tt.checkLog(t, "the last daemon", d.log())

	// The last daemon stops too, once everything is checked: the ESMEs
	// go first (theirs is the last word), then SIGTERM.
	end()
	conns.Wait()
	stopAt := time.Now()
	d.stop(t)
	tt.checkLog(t, "the last daemon, stopped", d.log())
	slices.Sort(stopTimes)
	t.Logf("SIGTERMs %d (last daemon's stop %v), SIGHUPs %d (%d applied); stop times %v, max %v (bound %v)",
		stops, time.Since(stopAt).Round(time.Millisecond), hupsSent, reloaded, roundAll(stopTimes), stopTimes[len(stopTimes)-1].Round(time.Millisecond), stopBound)
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 200))
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// R1: replies to 1065901 go to rx1 and to the reply_url.
const termReplyEnterprise = `  - code: R1
    signature: "【回复】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065901"
    reply_url: HOOK
    reply_batch: BATCH
`

type termSoak struct {
	x   *chaos
	sim *smpp.Simulator

	mu       sync.Mutex
	mos      map[string]bool     // replies injected by handset: true once acknowledged
	rx       map[string]int      // replies at rx1 by handset (handler calls)
	replies  map[string][]string // reply webhook: ids POSTed (and answered 2xx) by handset
	sessions []*termSession
	dels     []*termDelivery // every deliver_sm read by a test ESME, in order
	slowRng  *rand.Rand
	hookRng  *rand.Rand
	handsets atomic.Int64
	posting  atomic.Int64 // webhook POSTs being answered
}

// termSession is one ESME connection as its tap saw it.
type termSession struct {
	account    string
	gen        int // the daemon's (chaosNet)
	ended      time.Time
	endErr     error
	bound      bool // the bind succeeded
	closedByUs bool // the test closed it (at its end)
	gotUnbind  time.Time
	unbindResp time.Time // written: the ESME's last word
	bySeq      map[uint32]*termDelivery
}

// termDelivery is one deliver_sm at a test ESME: a receipt (key "r:" and
// the message id) or a reply ("m:" and the handset).
type termDelivery struct {
	key      string
	sess     *termSession
	at       time.Time
	answered time.Time // its deliver_sm_resp (OK) went on the wire
}

func (tt *termSoak) acked() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	n := 0
	for _, ok := range tt.mos {
		if ok {
			n++
		}
	}
	return n
}

// outstanding counts the deliver_sm read by the ESMEs and not yet answered.
func (tt *termSoak) outstanding() int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	n := 0
	for _, s := range tt.sessions {
		for _, d := range s.bySeq {
			if d.answered.IsZero() && s.unbindResp.IsZero() && !s.closedByUs {
				n++
			}
		}
	}
	return n
}

// serveHooks is the receipt webhook (/dlr, recorded by chaos.hook) and
// R1's reply_url (/mo): each answers 2xx 0–150 ms after it recorded the
// POST, so that a stop finds POSTs under way.
func (tt *termSoak) serveHooks(w http.ResponseWriter, r *http.Request) {
	tt.posting.Add(1)
	defer tt.posting.Add(-1)
	switch r.URL.Path {
	case "/dlr":
		tt.x.hook(w, r)
	case "/mo":
		body, _ := io.ReadAll(r.Body)
		var batch webhook.ReplyBatch
		if err := json.Unmarshal(body, &batch); err != nil || len(batch.Replies) == 0 {
			var rp webhook.Reply
			if err := json.Unmarshal(body, &rp); err != nil || rp.ID == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			batch.Replies = []webhook.Reply{rp}
		}
		tt.mu.Lock()
		for _, rp := range batch.Replies {
			tt.replies[rp.From] = append(tt.replies[rp.From], rp.ID)
		}
		tt.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	tt.mu.Lock()
	delay := time.Duration(tt.hookRng.Int64N(int64(150 * time.Millisecond)))
	tt.mu.Unlock()
	tm := time.NewTimer(delay) // a slow endpoint: its 2xx leaves when the handler returns
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-r.Context().Done():
	}
}

// injectLoop injects replies to R1 about four a second, each from a
// handset of its own (its key).
func (tt *termSoak) injectLoop(ctx context.Context, n int) {
	tick := time.NewTicker(250 * time.Millisecond) // pacing
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		from := fmt.Sprintf("1390%07d", tt.handsets.Add(1))
		tt.mu.Lock()
		tt.mos[from] = false
		tt.mu.Unlock()
		if err := tt.sim.InjectMO(from, "1065901", fmt.Sprintf("reply %d-%d", n, i)); err != nil {
			continue // not acknowledged: stored or not
		}
		tt.mu.Lock()
		tt.mos[from] = true
		tt.mu.Unlock()
	}
}

// termESME binds a chaosESME (so that its submitLoop runs on it) through
// a tap that records every deliver_sm, its answer and the unbind.
type termESME struct {
	t    *termSoak
	e    *chaosESME
	slow bool // answers each deliver_sm 100–800 ms late
}

func (te *termESME) handler() smpp.Handler {
	tt := te.t
	return smpp.HandlerFunc(func(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if te.slow {
			tt.mu.Lock()
			delay := 100*time.Millisecond + time.Duration(tt.slowRng.Int64N(int64(700*time.Millisecond)))
			tt.mu.Unlock()
			tm := time.NewTimer(delay) // a slow ESME
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return nil // the connection went: no answer
			}
		}
		if rc, err := smpp.ParseReceipt(p); err == nil {
			if s := te.e.sink; s != nil {
				s.mu.Lock()
				s.ids[rc.ID] = append(s.ids[rc.ID], rc.State)
				s.mu.Unlock()
			}
		} else {
			tt.mu.Lock()
			tt.rx[smpp.Str(p, pdufield.SourceAddr)]++
			tt.mu.Unlock()
		}
		return pdu.NewDeliverSMResp()
	})
}

// keepBound is chaosESME.keepBound through the tap.
func (te *termESME) keepBound(ctx context.Context) {
	e := te.e
	for ctx.Err() == nil {
		gen, addr, _, ok := e.x.net.current(ctx)
		if !ok {
			return
		}
		kind := e.kind
		if kind == 0 {
			kind = smpp.BindTransceiver
		}
		var sess *termSession
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			sess = &termSession{account: e.account(), bySeq: map[uint32]*termDelivery{}}
			te.t.mu.Lock()
			te.t.sessions = append(te.t.sessions, sess)
			te.t.mu.Unlock()
			return &termTap{Conn: nc, t: te.t, s: sess}, nil
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := smpp.Dial(dctx, smpp.ClientOptions{
			Addr: addr, SystemID: e.account(), Password: "secret1", Kind: kind,
			Handler: te.handler(), DialTimeout: 5 * time.Second, Dial: dial,
			Conn: smpp.ConnOptions{Window: 32, RespTimeout: 10 * time.Second},
		})
		cancel()
		if err != nil {
			e.x.net.after(ctx, gen) // the daemon stopped meanwhile: again soon
			continue
		}
		te.t.mu.Lock()
		sess.bound, sess.gen = true, gen
		te.t.mu.Unlock()
		e.mu.Lock()
		e.conn, e.gen = c, gen
		if e.wake != nil {
			close(e.wake)
			e.wake = nil
		}
		e.mu.Unlock()
		select {
		case <-c.Done():
		case <-ctx.Done():
			te.t.mu.Lock()
			sess.closedByUs = true
			te.t.mu.Unlock()
			_ = c.Close()
			<-c.Done()
		}
		te.t.mu.Lock()
		sess.ended, sess.endErr = time.Now(), c.Err()
		te.t.mu.Unlock()
		e.mu.Lock()
		if e.conn == c {
			e.conn = nil
		}
		e.mu.Unlock()
	}
}

// termTap reads the frames going both ways on an ESME's connection: its
// reader and its writer are one goroutine each, so each buffer has one.
type termTap struct {
	net.Conn
	t          *termSoak
	s          *termSession
	rbuf, wbuf []byte
}

func (p *termTap) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if n > 0 {
		p.rbuf = frames(append(p.rbuf, b[:n]...), p.read)
	}
	return n, err
}

func (p *termTap) Write(b []byte) (int, error) {
	// Recorded before the write: a frame is on the wire once Write
	// returns, and the daemon may act on it at once.
	p.wbuf = frames(append(p.wbuf, b...), p.wrote)
	return p.Conn.Write(b)
}

// frames calls f with each whole frame at the start of buf and returns
// what is left.
func frames(buf []byte, f func([]byte)) []byte {
	for len(buf) >= 16 {
		l := int(binary.BigEndian.Uint32(buf))
		if l < 16 || len(buf) < l {
			break
		}
		f(buf[:l])
		buf = buf[l:]
	}
	return append([]byte(nil), buf...)
}

func (p *termTap) read(frame []byte) {
	id, seq := binary.BigEndian.Uint32(frame[4:]), binary.BigEndian.Uint32(frame[12:])
	tt := p.t
	switch id {
	case 0x00000005: // deliver_sm
		pb, err := smpp.Decode(frame)
		if err != nil {
			return
		}
		key := "m:" + smpp.Str(pb, pdufield.SourceAddr)
		if rc, err := smpp.ParseReceipt(pb); err == nil {
			key = "r:" + rc.ID
		}
		d := &termDelivery{key: key, sess: p.s, at: time.Now()}
		tt.mu.Lock()
		p.s.bySeq[seq] = d
		tt.dels = append(tt.dels, d)
		tt.mu.Unlock()
	case 0x00000006: // unbind
		tt.mu.Lock()
		p.s.gotUnbind = time.Now()
		tt.mu.Unlock()
	}
}

func (p *termTap) wrote(frame []byte) {
	id, status, seq := binary.BigEndian.Uint32(frame[4:]), binary.BigEndian.Uint32(frame[8:]), binary.BigEndian.Uint32(frame[12:])
	tt := p.t
	tt.mu.Lock()
	defer tt.mu.Unlock()
	switch id {
	case 0x80000005: // deliver_sm_resp
		if d := p.s.bySeq[seq]; d != nil && status == 0 {
			d.answered = time.Now()
			delete(p.s.bySeq, seq)
		}
	case 0x80000006: // unbind_resp
		p.s.unbindResp = time.Now()
	}
}

// checkLog requires a daemon's log to hold nothing at error level.
func (tt *termSoak) checkLog(t *testing.T, who, log string) {
	t.Helper()
	warns := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec["level"] {
		case "ERROR":
			t.Errorf("%s logged at error level: %s", who, line)
		case "WARN":
			msg, _ := rec["msg"].(string)
			warns[msg]++
		}
	}
	if len(warns) > 0 {
		t.Logf("%s warned: %v", who, warns)
	}
}

// check: segments arrived once, replies at rx1 and the reply_url, and
// no deliver_sm sent again after an ESME answered it before its
// unbind_resp.
func (tt *termSoak) check(t *testing.T, sim *smpp.Simulator, base string, stops int) {
	// 0. Nothing stored that its sender was not told of: a submit_sm or
	// POST whose answer a stop cut off is, for its sender, not taken,
	// and sent again it would reach the handset twice.
	x := tt.x
	known := map[string]bool{}
	x.mu.Lock()
	for _, w := range x.acked {
		known[w.dest] = true
	}
	for _, b := range x.batches {
		for _, d := range b.dests {
			known[d] = true
		}
	}
	x.mu.Unlock()
	unacked := 0
	for _, key := range []string{x.webKey, x.bulkKey} {
		for _, m := range export(t, base, key) {
			if !known[digits(m.To)] {
				unacked++
				t.Errorf("message %s to %s (%s, %q) stored but never acknowledged to its sender", m.ID, m.To, m.Account, m.Text)
			}
		}
	}

	// 1. Every segment reached the SMSC once, answered or not: a segment
	// cut off by a stop and sent again counts twice in Arrived.
	arrived, twice := sim.Arrived(), 0
	seen := segSeen(sim)
	for d, n := range arrived {
		answered := 0
		for _, c := range seen[d] {
			answered += c
		}
		if n != answered {
			twice += n - answered
			t.Errorf("%s: %d submit_sm arrived at the SMSC, %d answered and recorded (%v): a segment sent twice", d, n, answered, seen[d])
		}
	}

	// 2. Every acknowledged reply reached rx1 and the reply_url.
	tt.mu.Lock()
	var ackedMOs []string
	for from, ok := range tt.mos {
		if ok {
			ackedMOs = append(ackedMOs, from)
		}
	}
	tt.mu.Unlock()
	waitCond(t, 90*time.Second, "every acknowledged reply at rx1 and at the reply_url", func() bool {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		for _, from := range ackedMOs {
			if tt.rx[from] == 0 || len(tt.replies[from]) == 0 {
				return false
			}
		}
		return true
	})
	tt.mu.Lock()
	defer tt.mu.Unlock()
	replyHookDups := 0
	for from, ids := range tt.replies {
		if !tt.mos[from] {
			t.Errorf("reply from %s POSTed to the reply_url (%v) but never acknowledged to the SMSC", from, ids)
		}
		if len(ids) > 1 {
			replyHookDups += len(ids) - 1
			t.Errorf("reply from %s POSTed %d times after a 2xx: %v", from, len(ids), ids)
		}
	}
	for from, n := range tt.rx {
		if !tt.mos[from] {
			t.Errorf("reply from %s at rx1 (%d times) but never acknowledged to the SMSC", from, n)
		}
	}

	// 3. No deliver_sm sent again once its ESME answered it before its
	// unbind_resp, and every bound connection a stop ended ended with
	// one.
	unbound, abrupt := 0, 0
	for _, s := range tt.sessions {
		switch {
		case !s.bound || s.closedByUs || s.ended.IsZero(): // the last daemon's are still up
		case s.unbindResp.IsZero():
			abrupt++
			t.Errorf("%s's connection to daemon %d ended %s without unbind (unbind read: %v): %v", s.account, s.gen, stamp(s.ended), !s.gotUnbind.IsZero(), s.endErr)
		default:
			unbound++
		}
	}
	byKey := map[string][]*termDelivery{}
	for _, d := range tt.dels {
		byKey[d.key] = append(byKey[d.key], d)
	}
	var rcptRepeats, moRepeats, allowed int
	for key, ds := range byKey {
		for i, d := range ds[:len(ds)-1] {
			next := ds[i+1]
			switch {
			case d.answered.IsZero():
				allowed++ // never answered: sent again as it must be
			case !d.sess.unbindResp.IsZero() || d.sess.closedByUs:
				if strings.HasPrefix(key, "r:") {
					rcptRepeats++
				} else {
					moRepeats++
				}
				t.Errorf("%s at %s answered %v (its connection's unbind read %v, unbind_resp %v), sent again %v on another connection: %v",
					key, d.sess.account, d.answered.Format("15:04:05.000"), stamp(d.sess.gotUnbind), stamp(d.sess.unbindResp),
					next.at.Format("15:04:05.000"), next.sess != d.sess)
			default:
				allowed++
				t.Logf("%s at %s answered, its connection ended without unbind, sent again", key, d.sess.account)
			}
		}
	}
	t.Logf("SIGTERMs %d; ESME connections unbound by a stop %d, ended otherwise %d; %d messages stored but never acknowledged; duplicates: %d segments at the SMSC, %d receipts and %d replies sent again to an ESME that answered them before its unbind_resp (%d sent again unanswered), %d replies POSTed twice (receipt webhooks: TestSoakChaos's check above)",
		stops, unbound, abrupt, unacked, twice, rcptRepeats, moRepeats, allowed, replyHookDups)
}

func stamp(tm time.Time) string {
	if tm.IsZero() {
		return "never"
	}
	return tm.Format("15:04:05.000")
}

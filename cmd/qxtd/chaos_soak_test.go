//go:build soak

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestSoakChaos runs the real daemon under every kind of traffic at once
// and kills it -9 at random moments, then checks what the README's
// guarantees promise once everything has drained:
//
//   - three ESMEs (one bind each) submit short texts, long ones in
//     message_payload (split by qxtd) and messages they split themselves
//     (UDH), all asking for receipts, and answer every deliver_sm;
//   - HTTP clients send to 1–3 numbers with a receipt_url, half of them
//     with an Idempotency-Key, retried with the same key after a
//     connection error, and now and then a replay of an answered key;
//   - two batch jobs of another enterprise, paced by its rate so that
//     they span the kills;
//   - the SMSC (the simulator) throttles some submits and reports some
//     segments undeliverable.
//
// The seed (SOAK_CHAOS_SEED to replay one) draws the kills: 5–8 of them,
// 2–6 s apart but one soon after a restart, the simulator's faults, the
// traffic's mix and whether the store holds records back.
func TestSoakChaos(t *testing.T) {
	runChaosSoak(t, soakSeed(t, "SOAK_CHAOS_SEED"), nil)
}

// chaosDisk puts the daemon's store on another disk than the test's
// temporary directory: TestSoakPowerLoss's, which loses at each kill what
// was not synced.
type chaosDisk struct {
	dir string                      // where store.path goes
	cut func(rng *rand.Rand) string // after each kill: cuts the power and mounts what it kept
	// fail, if set, starts (true) and ends a stretch in which the disk's
	// fsyncs fail and lose what they were to write (TestSoakDiskErrors).
	fail func(on bool)
	// failedSyncs, with fail, is how many fsyncs failed on the disk (and
	// the ones it was mounted from again after each cut).
	failedSyncs func() int
}

// failIn, on a disk that can fail, makes it fail in two gaps of three
// between kills, for 0.5–2.5 s from a point drawn in the gap's first 60 %,
// sometimes still failing at the gap's end (the kill). It returns what is
// left of the gap to wait (all of it when it did nothing).
func (d *chaosDisk) failIn(t *testing.T, rng *rand.Rand, gap time.Duration) time.Duration {
	if d == nil || d.fail == nil || rng.IntN(3) == 0 {
		return gap
	}
	before := time.Duration(float64(gap) * (0.2 + 0.4*rng.Float64()))
	failing := 500*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))
	tm := time.NewTimer(before) // the chaos schedule, not a wait for an event
	<-tm.C
	d.fail(true)
	tm.Reset(min(failing, gap-before))
	<-tm.C
	if failing < gap-before {
		d.fail(false)
	}
	t.Logf("fsyncs failing for %v, %v into the gap of %v%s", min(failing, gap-before).Round(time.Millisecond), before.Round(time.Millisecond),
		gap.Round(time.Millisecond), map[bool]string{true: ", still at its end"}[failing >= gap-before])
	return gap - min(before+failing, gap)
}

// lastStretch waits out a soak's last 2 s of traffic; on a disk that can
// fail, failing for the middle second, so that the checks read a daemon
// that went through failed commits without a restart since.
func (d *chaosDisk) lastStretch(t *testing.T) {
	tm := time.NewTimer(2 * time.Second) // the chaos schedule, not a wait for an event
	if d != nil && d.fail != nil {
		tm.Reset(500 * time.Millisecond)
		<-tm.C
		d.fail(true)
		tm.Reset(time.Second)
		<-tm.C
		d.fail(false)
		t.Logf("fsyncs failing for 1s in the last stretch")
		tm.Reset(500 * time.Millisecond)
	}
	<-tm.C
}

// syncLog counts in a daemon's log its store's commits written but not
// synced, and the operations the empty commits that synced again
// confirmed (queue.Options.SyncWait): how often a failing disk's
// commits were answered as accepted after all.
func syncLog(log string) string {
	unsynced, resynced, confirmed := 0, 0, 0
	for line := range strings.Lines(log) {
		switch {
		case strings.Contains(line, "commit written but not synced"), strings.Contains(line, "written but not synced: it waits"):
			unsynced++
		case strings.Contains(line, "a commit synced again"):
			resynced++
			var e struct {
				Confirmed int `json:"confirmed"`
			}
			if json.Unmarshal([]byte(line), &e) == nil {
				confirmed += e.Confirmed
			}
		}
	}
	return fmt.Sprintf("%d commits written but not synced, %d synced again after, confirming %d held operations", unsynced, resynced, confirmed)
}

// runChaosSoak is TestSoakChaos with seed; disk nil: the store in the
// test's temporary directory, killed -9 only.
func runChaosSoak(t *testing.T, seed uint64, disk *chaosDisk) {
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	sim, simAddr := startSim(t, smpp.SimOptions{
		DLRDelay: 100 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Throttle: 0.05, Undeliv: 0.1},
	})
	x := newChaos(t)
	hooks := httptest.NewServer(http.HandlerFunc(x.hook))
	t.Cleanup(hooks.Close)
	x.hookURL = hooks.URL + "/dlr"

	dir := t.TempDir()
	cfg := writeConfig(t, dir, simAddr, chaosAccounts)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(b), "enterprises:\n", "enterprises:\n"+chaosEnterprise, 1)
	conf = strings.Replace(conf, "smpp: { listen: 127.0.0.1:0 }", "smpp: { listen: 127.0.0.1:0, reassembly_timeout: 20s }", 1)
	conf += "webhooks: { allow_private: true }\n"
	if disk != nil {
		conf = strings.Replace(conf, filepath.Join(dir, "qxtd.db"), filepath.Join(disk.dir, "qxtd.db"), 1)
	}
	// Half the seeds hold records and commits back (more in flight at a
	// kill: README, store.record_delay) and batch the receipt webhooks.
	held := rng.IntN(2) == 0
	t.Logf("store.record_delay, commit_delay and receipt_batch set: %v", held)
	if held {
		conf = strings.Replace(conf, "store: {", "store: { record_delay: 10ms, commit_delay: 2ms,", 1)
		conf = strings.Replace(conf, "tps: 40\n", "tps: 40\n    receipt_batch: 20\n", 1)
		conf = strings.Replace(conf, "    tps: 100000\n", "    tps: 100000\n    receipt_batch: 20\n", 1)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
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
		e := &chaosESME{x: x, n: i + 1, sink: x.sinks[i]}
		conns.Go(func() { e.keepBound(endCtx) })
		for w := range 12 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 1))
			drivers.Go(func() { e.submitLoop(submitCtx, wrng) })
		}
		drivers.Go(func() { e.splitLoop(submitCtx) })
	}
	for w := range 3 {
		wrng := rand.New(rand.NewPCG(seed+uint64(100+w), 2))
		drivers.Go(func() { x.httpLoop(submitCtx, w, wrng) })
	}
	jobs := make(chan string, 2)
	batch := func(n, rows int) {
		id := x.startBatch(submitCtx, n, rows)
		jobs <- id
		if id != "" {
			conns.Go(func() { x.watchJob(endCtx, id, x.bulkKey) })
		}
	}
	drivers.Go(func() { batch(1, 800) })

	kills := 5 + rng.IntN(4)
	quick := 1 + rng.IntN(kills-1)
	for k := range kills {
		gap := 2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
		if k == quick {
			// Once soon after a restart: a kill while the daemon resends
			// what the last one left, and resumes the jobs.
			gap = 300*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
		}
		tm := time.NewTimer(disk.failIn(t, rng, gap)) // the chaos schedule, not a wait for an event
		<-tm.C
		if k == 1 {
			drivers.Go(func() { batch(2, 400) })
		}
		x.net.down()
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		x.killedAt = append(x.killedAt, x.counts())
		if disk != nil {
			t.Logf("power cut %d: %s; the daemon's store: %s", k+1, disk.cut(rng), syncLog(d.log()))
		}
		d = startDaemon(t, cfg)
		x.net.set(d)
		t.Logf("kill %d of %d after %v: %s", k+1, kills, gap.Round(time.Millisecond), x.killedAt[k])
	}
	// A last stretch of traffic on the daemon that stays up.
	disk.lastStretch(t)
	stopSubmitting()
	drivers.Wait()
	chaosEnd := time.Now()
	t.Logf("chaos over after %v: %s", chaosEnd.Sub(began).Round(time.Millisecond), x.counts())
	if disk != nil {
		t.Logf("the last daemon's store: %s", syncLog(d.log()))
	}
	close(jobs)

	base = "http://" + d.httpAddr
	x.check(t, sim, base, jobs)
	// The store itself after the kills (and cuts): a backup is verified,
	// its invariants and the counts Open trusts among them.
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, out, errs := runOps("backup", backup, "--api", base, "--token", "test-token"); code != 0 {
		t.Errorf("qxtd backup after the chaos: exit %d: %s%s", code, out, errs)
	}
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 200))
	}
}

// soakSeed is a soak's seed: from the environment variable env to replay
// one (not QXTD_…, which the daemon would refuse as an unknown setting),
// else new; logged either way.
func soakSeed(t *testing.T, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		seed = v
	}
	t.Logf("seed %d (%s=%d to replay)", seed, env, seed)
	return seed
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

const chaosEnterprise = `  - code: T2
    signature: "【批量】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 40
`

const chaosAccounts = `  - { system_id: esme1, password: secret1, enterprise: T1 }
  - { system_id: esme2, password: secret1, enterprise: T1 }
  - { system_id: esme3, password: secret1, enterprise: T1 }
  - { system_id: web, password: secret1, enterprise: T1, admin: true }
  - { system_id: bulk, password: secret1, enterprise: T2, admin: true }
`

// chaosNet is where the daemon of the moment listens: every restart has
// new ports. Drivers wait for the next daemon while it is down.
type chaosNet struct {
	mu         sync.Mutex
	gen        int
	smpp, http string
	up         chan struct{} // closed while a daemon is up
}

func (n *chaosNet) set(p *proc) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	n.smpp, n.http = p.smppAddr, p.httpAddr
	close(n.up)
}

func (n *chaosNet) down() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up = make(chan struct{})
}

// current waits for a daemon up and returns its generation and addresses.
func (n *chaosNet) current(ctx context.Context) (gen int, smppAddr, httpAddr string, ok bool) {
	for {
		n.mu.Lock()
		up := n.up
		gen, smppAddr, httpAddr = n.gen, n.smpp, n.http
		n.mu.Unlock()
		select {
		case <-up:
			n.mu.Lock()
			same := n.up == up
			n.mu.Unlock()
			if same {
				return gen, smppAddr, httpAddr, true
			}
		case <-ctx.Done():
			return 0, "", "", false
		}
	}
}

// after is the backoff of a try that failed on the daemon of gen: the
// next try waits in current for the next daemon if this one died.
func (n *chaosNet) after(ctx context.Context, _ int) {
	tm := time.NewTimer(100 * time.Millisecond) // a retry's backoff
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// what is one acknowledged message as its sender knows it.
type what struct {
	kind      string // esme, long, part, http, keyed
	ent       string // T1, T2
	dest      string
	text      string // the text sent (the stored one has the signature too)
	receipt   string // the ESME account whose binds get its receipt ("": none)
	hook      bool   // a receipt webhook was asked for
	lastRetry bool   // the last part of a split message, acknowledged on a retry
}

type chaos struct {
	t       *testing.T
	net     chaosNet
	seq     atomic.Int64 // destinations
	hookURL string
	webKey  string
	bulkKey string

	sinks [3]*chaosSink

	mu        sync.Mutex
	acked     map[string]what
	conflicts []string
	refusals  map[string]int // by kind and status
	keyedKill int            // keyed sends answered only after a failed try
	replays   int            // keyed sends replayed and compared
	batches   map[int]*chaosBatch
	killedAt  []string

	hookMu sync.Mutex
	hooks  map[string][]webhook.Receipt // by id, as posted
}

type chaosBatch struct {
	id    string
	rows  int
	dests []string
	file  string
}

func newChaos(t *testing.T) *chaos {
	x := &chaos{t: t, acked: map[string]what{}, refusals: map[string]int{}, hooks: map[string][]webhook.Receipt{},
		batches: map[int]*chaosBatch{}}
	x.net.up = make(chan struct{})
	for i := range x.sinks {
		x.sinks[i] = &chaosSink{ids: map[string][]smpp.MessageState{}}
	}
	return x
}

func (x *chaos) counts() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	kinds := map[string]int{}
	for _, w := range x.acked {
		kinds[w.kind]++
	}
	return fmt.Sprintf("%d acknowledged %v, refusals %v", len(x.acked), kinds, x.refusals)
}

// ack records id as acknowledged for w; an id already acknowledged for
// another message is a conflict.
func (x *chaos) ack(id string, w what) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if prev, ok := x.acked[id]; ok {
		if prev.dest != w.dest || prev.text != w.text {
			x.conflicts = append(x.conflicts, fmt.Sprintf("id %s: %s %q to %s, then %s %q to %s", id, prev.kind, prev.text, prev.dest, w.kind, w.text, w.dest))
		}
		if w.lastRetry {
			prev.lastRetry = true
			x.acked[id] = prev
		}
		return
	}
	x.acked[id] = w
}

func (x *chaos) refused(what string) {
	x.mu.Lock()
	x.refusals[what]++
	x.mu.Unlock()
}

// dest returns a new destination of prefix (3 digits and one).
func (x *chaos) dest(prefix string) string {
	return fmt.Sprintf("%s%07d", prefix, x.seq.Add(1)%10_000_000)
}

func (x *chaos) hook(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var batch webhook.Batch
	if err := json.Unmarshal(b, &batch); err != nil || len(batch.Receipts) == 0 {
		var rc webhook.Receipt
		if err := json.Unmarshal(b, &rc); err != nil || rc.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		batch.Receipts = []webhook.Receipt{rc}
	}
	x.hookMu.Lock()
	for _, rc := range batch.Receipts {
		x.hooks[rc.ID] = append(x.hooks[rc.ID], rc)
	}
	x.hookMu.Unlock()
}

// chaosSink counts the receipts of one ESME account by id.
type chaosSink struct {
	mu  sync.Mutex
	ids map[string][]smpp.MessageState
}

func (s *chaosSink) handler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if rc, err := smpp.ParseReceipt(p); err == nil {
			s.mu.Lock()
			s.ids[rc.ID] = append(s.ids[rc.ID], rc.State)
			s.mu.Unlock()
		}
		return pdu.NewDeliverSMResp()
	})
}

// chaosESME is one account with one transceiver bind, bound again to
// every new daemon.
type chaosESME struct {
	x    *chaos
	n    int
	sink *chaosSink
	// system, kind and handler, when set, bind another account (a
	// receiver, say) with its own handler instead of esme<n>'s
	// transceiver with the sink's.
	system  string
	kind    smpp.BindKind
	handler smpp.Handler

	mu   sync.Mutex
	conn *smpp.Conn
	gen  int
	wake chan struct{}
}

func (e *chaosESME) account() string {
	if e.system != "" {
		return e.system
	}
	return fmt.Sprintf("esme%d", e.n)
}

// keepBound binds to each daemon in turn until ctx ends.
func (e *chaosESME) keepBound(ctx context.Context) {
	for ctx.Err() == nil {
		gen, addr, _, ok := e.x.net.current(ctx)
		if !ok {
			return
		}
		kind, h := e.kind, e.handler
		if kind == 0 {
			kind = smpp.BindTransceiver
		}
		if h == nil {
			h = e.sink.handler()
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := smpp.Dial(dctx, smpp.ClientOptions{
			Addr: addr, SystemID: e.account(), Password: "secret1", Kind: kind,
			Handler: h, DialTimeout: 5 * time.Second,
			Conn: smpp.ConnOptions{Window: 32, RespTimeout: 10 * time.Second},
		})
		cancel()
		if err != nil {
			e.x.net.after(ctx, gen) // the daemon died meanwhile, or a bind refused: again soon
			continue
		}
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
			_ = c.Close()
			<-c.Done()
		}
		e.mu.Lock()
		if e.conn == c {
			e.conn = nil
		}
		e.mu.Unlock()
	}
}

// bound returns the live connection, waiting for one.
func (e *chaosESME) bound(ctx context.Context) *smpp.Conn {
	for {
		e.mu.Lock()
		c := e.conn
		if c != nil {
			select {
			case <-c.Done():
				c = nil
			default:
			}
		}
		if c != nil {
			e.mu.Unlock()
			return c
		}
		if e.wake == nil {
			e.wake = make(chan struct{})
		}
		wake := e.wake
		e.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// status is the command_status of a refusal (0: not a refusal).
func smppStatus(err error) pdu.Status {
	var st pdu.Status
	if errors.As(err, &st) {
		return st
	}
	return 0
}

// submitLoop submits short texts and (one in five) long ones in
// message_payload, about 12 a second; one whose answer is lost is not
// sent again (an ESME may; it would be a new message).
func (e *chaosESME) submitLoop(ctx context.Context, rng *rand.Rand) {
	e.submitPaced(ctx, rng, func() string { return e.x.dest(fmt.Sprintf("139%d", e.n)) }, "chaos", 5, 9)
}

// submitPaced submits to dst() every 80 ms while bound, one text in
// longOneIn a long one (label repeated repeat times; submitShortOrLong).
func (e *chaosESME) submitPaced(ctx context.Context, rng *rand.Rand, dst func() string, label string, longOneIn, repeat int) {
	tick := time.NewTicker(80 * time.Millisecond) // pacing
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := e.bound(ctx)
		if c == nil {
			return
		}
		to := dst()
		e.x.submitShortOrLong(c, to, label, rng.IntN(longOneIn) == 0, repeat, e.account())
	}
}

// splitLoop sends messages of three parts split by the ESME (UCS-2, an
// 8-bit UDH reference), every part asking for a receipt, one message at
// a time. A part whose answer is lost is sent again, as ESMEs do, until
// it is answered.
func (e *chaosESME) splitLoop(ctx context.Context) {
	enc := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder()
	tick := time.NewTicker(400 * time.Millisecond) // pacing
	defer tick.Stop()
	for ref := 1; ; ref++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dst := e.x.dest(fmt.Sprintf("136%d", e.n))
		parts := []string{"第一段" + dst + strings.Repeat("一", 20), "第二段" + strings.Repeat("二", 30), "第三段" + strings.Repeat("三", 30)}
		whole := strings.Join(parts, "")
		for seq, part := range parts {
			data, _ := enc.Bytes([]byte(part))
			retried := false
			for {
				c := e.bound(context.Background())
				p := pdu.NewSubmitSM(nil)
				f := p.Fields()
				_ = f.Set(pdufield.SourceAddr, "10690001")
				_ = f.Set(pdufield.DestinationAddr, dst)
				_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
				_ = f.Set(pdufield.DataCoding, uint8(8))
				_ = f.Set(pdufield.ESMClass, uint8(0x40))
				_ = f.Set(pdufield.ShortMessage, append([]byte{0x05, 0x00, 0x03, byte(ref), byte(len(parts)), byte(seq + 1)}, data...))
				rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				resp, err := c.Request(rctx, p)
				cancel()
				if err == nil {
					e.x.ack(smpp.Str(resp, pdufield.MessageID), what{kind: "part", ent: "T1", dest: dst, text: whole,
						receipt: e.account(), lastRetry: retried && seq == len(parts)-1})
					break
				}
				if st := smppStatus(err); st != 0 {
					e.x.refused(fmt.Sprintf("part:%s", st))
					if st == pdu.Status(0x58) || st == pdu.Status(0x08) || st == pdu.Status(0x14) {
						continue // throttled, a store failure: again
					}
					break
				}
				retried = true
				e.x.refused("part:lost")
				wait := time.NewTimer(time.Second) // the connection's end, or a retry's backoff
				select {
				case <-c.Done():
				case <-wait.C:
				}
				wait.Stop()
			}
		}
	}
}

// sendResult is POST /v1/messages's answer.
type sendResult struct {
	Results []struct {
		To, Status, ID string
	}
}

// httpLoop sends to 1–3 new numbers a request, about 5 a second: half
// with an Idempotency-Key, retried with it until answered; one in ten is
// a replay of a key answered earlier, whose answer must be the first.
func (x *chaos) httpLoop(ctx context.Context, w int, rng *rand.Rand) {
	cl := &http.Client{Timeout: 10 * time.Second}
	type answered struct{ key, body, answer string }
	var done []answered
	tick := time.NewTicker(200 * time.Millisecond) // pacing
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if len(done) > 0 && rng.IntN(10) == 0 {
			a := done[rng.IntN(len(done))]
			code, body, hdr, ok := x.post(ctx, cl, "/v1/messages", x.webKey, a.key, "application/json", a.body)
			if !ok {
				return
			}
			if code/100 == 2 {
				x.mu.Lock()
				x.replays++
				if body != a.answer || hdr.Get("Idempotent-Replayed") != "true" {
					x.conflicts = append(x.conflicts, fmt.Sprintf("key %s replayed %d %s (replayed %q), first answer %s", a.key, code, body, hdr.Get("Idempotent-Replayed"), a.answer))
				}
				x.mu.Unlock()
			}
			continue
		}
		var to []string
		for range 1 + rng.IntN(3) {
			to = append(to, x.dest("1370"))
		}
		text := fmt.Sprintf("网关测试 %s", to[0])
		req, _ := json.Marshal(map[string]any{"to": to, "text": text, "receipt_url": x.hookURL})
		key := ""
		if rng.IntN(2) == 0 {
			key = fmt.Sprintf("chaos-%d-%d", w, n)
		}
		code, body, tries := 0, "", 0
		for {
			var ok bool
			tries++
			code, body, _, ok = x.post(context.Background(), cl, "/v1/messages", x.webKey, key, "application/json", string(req))
			if !ok || key == "" || (code != 0 && code < 500) {
				break
			}
		}
		if code/100 != 2 {
			x.refused(fmt.Sprintf("http:%d", code))
			continue
		}
		var res sendResult
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			x.refused("http:undecodable")
			continue
		}
		kind := "http"
		if key != "" {
			kind = "keyed"
			done = append(done, answered{key, string(req), body})
			if tries > 1 {
				x.mu.Lock()
				x.keyedKill++
				x.mu.Unlock()
			}
		}
		for _, r := range res.Results {
			if r.Status == "accepted" {
				x.ack(r.ID, what{kind: kind, ent: "T1", dest: r.To, text: text, hook: true})
			} else {
				x.refused("http:" + r.Status)
			}
		}
	}
}

// post sends one request to the daemon of the moment: the status (0 for
// a connection error: the daemon died), body and headers; false once ctx
// ends.
func (x *chaos) post(ctx context.Context, cl *http.Client, path, apiKey, idem, ctype, body string) (int, string, http.Header, bool) {
	return x.do(ctx, cl, http.MethodPost, path, apiKey, idem, ctype, body)
}

// do is post with another method (PATCH, DELETE, GET: body "").
func (x *chaos) do(ctx context.Context, cl *http.Client, method, path, apiKey, idem, ctype, body string) (int, string, http.Header, bool) {
	gen, _, addr, ok := x.net.current(ctx)
	if !ok {
		return 0, "", nil, false
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := cl.Do(req)
	if err != nil {
		x.net.after(ctx, gen)
		return 0, "", nil, true
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		x.net.after(ctx, gen)
		return 0, "", nil, true
	}
	return resp.StatusCode, string(b), resp.Header, true
}

// startBatch uploads a CSV of rows for enterprise T2 (paced at its 40 a
// second) with an Idempotency-Key, again after a connection error, and
// returns the job's id.
func (x *chaos) startBatch(ctx context.Context, n, rows int) string {
	b := &chaosBatch{rows: rows}
	var file strings.Builder
	for i := range rows {
		d := x.dest(fmt.Sprintf("135%d", n))
		b.dests = append(b.dests, d)
		fmt.Fprintf(&file, "%s,批量第%d行\n", d, i)
	}
	b.file = file.String()
	cl := &http.Client{Timeout: 30 * time.Second}
	for {
		code, body, _, ok := x.post(ctx, cl, "/v1/batches", x.bulkKey, fmt.Sprintf("batch-%d", n), "text/csv", file.String())
		if !ok {
			return ""
		}
		if code == 0 || code >= 500 {
			continue
		}
		var created struct {
			JobID string `json:"job_id"`
		}
		if code != http.StatusAccepted || json.Unmarshal([]byte(body), &created) != nil || created.JobID == "" {
			x.t.Errorf("batch %d: %d %s", n, code, body)
			return ""
		}
		b.id = created.JobID
		x.mu.Lock()
		x.batches[n] = b
		x.mu.Unlock()
		return created.JobID
	}
}

// jobProgress is GET /v1/batches/{id}'s answer.
type jobProgress struct {
	State                     string
	RowsRead                  int `json:"rows_read"`
	Accepted, Refused, Unsent int
	Reason                    string
}

// watchJob reads a job's progress (as the user of apiKey) over and over
// until ctx ends, across the kills: its count of rows accepted never goes
// back (those rows were stored with their messages), it never has fewer
// rows read than rows accepted and refused, and once it read an end
// (done, cancelled, failed) it stays there.
func (x *chaos) watchJob(ctx context.Context, id, apiKey string) {
	var last jobProgress
	tick := time.NewTicker(100 * time.Millisecond) // polling another process
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, _, addr, ok := x.net.current(ctx)
		if !ok {
			return
		}
		var p jobProgress
		if _, err := getJSON("http://"+addr, "/v1/batches/"+id, apiKey, &p); err != nil {
			continue
		}
		if p.Accepted < last.Accepted || p.RowsRead < p.Accepted+p.Refused || (last.State != "" && last.State != "running" && p.State != last.State) {
			x.mu.Lock()
			x.conflicts = append(x.conflicts, fmt.Sprintf("job %s went back: %+v after %+v", id, p, last))
			x.mu.Unlock()
		}
		last = p
	}
}

// chaosMessage is a message of GET /v1/messages/{id} or the export.
// waitFinal waits up to d until every message of acked (by id) is final
// through GET /v1/messages/{id} on base with key, and returns them.
func waitFinal[V any](t *testing.T, d time.Duration, base, key string, acked map[string]V) map[string]chaosMessage {
	t.Helper()
	got := map[string]chaosMessage{}
	waitCond(t, d, "every acknowledged message final", func() bool {
		for id := range acked {
			if m, ok := got[id]; ok && final(m.State) {
				continue
			}
			var m chaosMessage
			if _, err := getJSON(base, "/v1/messages/"+id, key, &m); err != nil || !final(m.State) {
				return false
			}
			got[id] = m
		}
		return true
	})
	return got
}

type chaosMessage struct {
	ID, Account, To, Text, State string
	ErrorCode                    string `json:"error_code"`
	Segments                     int
	Parts                        []struct {
		State  string
		SMSCID string `json:"smsc_id"`
	}
}

func final(state string) bool {
	switch state {
	case "delivered", "undeliverable", "expired", "rejected", "unknown", "cancelled":
		return true
	}
	return false
}

func getJSON(base, path, key string, v any) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s", b)
	}
	return resp.StatusCode, json.Unmarshal(b, v)
}

// export reads the whole outbox of key's enterprise (jsonl).
func export(t *testing.T, base, key string) []chaosMessage {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/messages/export?format=jsonl", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d %s", resp.StatusCode, b)
	}
	var out []chaosMessage
	for line := range bytes.Lines(b) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m chaosMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// segSeen counts the segments the SMSC accepted, by destination and
// sequence number (1 for a message of one segment).
func segSeen(sim *smpp.Simulator) map[string]map[int]int {
	out := map[string]map[int]int{}
	for _, m := range sim.Received() {
		seq := 1
		if m.ESMClass&0x40 != 0 && len(m.ShortMessage) > 0 {
			udh := m.ShortMessage[1 : 1+int(m.ShortMessage[0])]
			for len(udh) >= 2 {
				iei, l := udh[0], int(udh[1])
				if 2+l > len(udh) {
					break
				}
				switch {
				case iei == 0x00 && l == 3:
					seq = int(udh[4])
				case iei == 0x08 && l == 4:
					seq = int(udh[5])
				}
				udh = udh[2+l:]
			}
		}
		if out[m.Dest] == nil {
			out[m.Dest] = map[int]int{}
		}
		out[m.Dest][seq]++
	}
	return out
}

// digits is the national number of an address however written.
func digits(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "+"), "86")
	return s
}

func (x *chaos) check(t *testing.T, sim *smpp.Simulator, base string, jobs <-chan string) {
	x.mu.Lock()
	acked := make(map[string]what, len(x.acked))
	for id, w := range x.acked {
		acked[id] = w
	}
	t.Logf("keyed sends answered after a failed try: %d; keyed answers replayed and compared: %d", x.keyedKill, x.replays)
	x.mu.Unlock()
	keyOf := func(ent string) string {
		if ent == "T2" {
			return x.bulkKey
		}
		return x.webKey
	}

	// 1. Every acknowledged id exists, names the message acknowledged,
	// and reaches a final state.
	got := map[string]chaosMessage{}
	// A split message's last part sent again after its answer was lost
	// is a new message if the first try was stored and joined: "A part
	// retried after its message was already joined (its response lost
	// after the last part came) starts a new message that expires as
	// incomplete" (README, SMPP ingress). Its id is unknown (404) until
	// that message is rejected, incomplete, after smpp.reassembly_timeout.
	limitation := map[string]bool{}
	limitationMsg := map[string]bool{} // the rejected messages of those
	drain := 90 * time.Second
	waitCond(t, drain, "every acknowledged message final", func() bool {
		pending := 0
		for id, w := range acked {
			if m, ok := got[id]; ok && final(m.State) {
				continue
			}
			var m chaosMessage
			code, err := getJSON(base, "/v1/messages/"+id, keyOf(w.ent), &m)
			if code == http.StatusNotFound && w.lastRetry {
				limitation[id] = true
				continue
			}
			if err != nil {
				pending++
				continue
			}
			delete(limitation, id)
			if w.lastRetry && m.State == "rejected" && m.ErrorCode == "incomplete" {
				limitation[id] = true
				limitationMsg[m.ID] = true
				continue
			}
			got[id] = m
			if !final(m.State) {
				pending++
			}
		}
		return pending == 0
	})
	for id, w := range acked {
		if limitation[id] {
			continue
		}
		m := got[id]
		account := w.receipt
		if account == "" {
			account = "web"
		}
		if digits(m.To) != w.dest || !strings.Contains(m.Text, w.text) || m.Account != account {
			t.Errorf("id %s acknowledged for %s %q to %s by %s names %q to %s by %s", id, w.kind, w.text, w.dest, account, m.Text, m.To, m.Account)
		}
	}
	if len(limitation) > 0 {
		t.Logf("%d split messages' last parts, retried after a lost answer, are a new incomplete message (the README's limitation): %v", len(limitation), slices.Sorted(maps.Keys(limitation)))
	}

	// 2. The batch jobs end done, each row once.
	var jobIDs []string
	for id := range jobs {
		jobIDs = append(jobIDs, id)
	}
	for n, b := range x.batches {
		var p jobProgress
		waitCond(t, drain, "batch job "+b.id+" ended", func() bool {
			_, err := getJSON(base, "/v1/batches/"+b.id, x.bulkKey, &p)
			return err == nil && p.State != "running"
		})
		if p.State != "done" || p.RowsRead != b.rows || p.Accepted != b.rows || p.Refused != 0 || p.Unsent != 0 {
			t.Errorf("batch %d (job %s): %+v, want done with %d rows accepted", n, b.id, p, b.rows)
		}
	}
	if len(x.batches) != 2 {
		t.Errorf("%d batch jobs started (%v), want 2", len(x.batches), jobIDs)
	}
	// An upload sent again with its key is the first job, no second one.
	for n, b := range x.batches {
		code, body, hdr, _ := x.post(context.Background(), http.DefaultClient, "/v1/batches", x.bulkKey, fmt.Sprintf("batch-%d", n), "text/csv", b.file)
		if code != http.StatusAccepted || !strings.Contains(body, `"job_id":"`+b.id+`"`) || hdr.Get("Idempotent-Replayed") != "true" {
			t.Errorf("batch %d sent again with its key: %d %s (replayed %q), want job %s", n, code, body, hdr.Get("Idempotent-Replayed"), b.id)
		}
	}
	var list struct{ Jobs []jobProgress }
	if _, err := getJSON(base, "/v1/batches", x.bulkKey, &list); err != nil || len(list.Jobs) != len(x.batches) {
		t.Errorf("jobs listed: %+v (%v), want %d", list.Jobs, err, len(x.batches))
	}

	// 3. The outboxes: one message a destination, every message final;
	// the usage is the delivered segments, nothing reserved.
	outbox := map[string][]chaosMessage{}
	for _, ent := range []string{"T1", "T2"} {
		waitCond(t, drain, "every message of "+ent+" final", func() bool {
			outbox[ent] = export(t, base, keyOf(ent))
			for _, m := range outbox[ent] {
				if !final(m.State) {
					return false
				}
			}
			return true
		})
	}
	seen := segSeen(sim)           // every message final: every segment answered
	smscIDs := map[string]string{} // the SMSC's id → the destination and segment it took
	for _, m := range sim.Received() {
		smscIDs[m.ID] = m.Dest
	}
	byDest := map[string]chaosMessage{}
	smscDups := 0
	for _, ent := range []string{"T1", "T2"} {
		msgs := outbox[ent]
		var delivered int64
		for _, m := range msgs {
			if limitationMsg[m.ID] {
				continue
			}
			d := digits(m.To)
			if prev, ok := byDest[d]; ok {
				t.Errorf("two messages to %s: %s %q and %s %q", d, prev.ID, prev.Text, m.ID, m.Text)
			}
			byDest[d] = m
			if m.State == "rejected" {
				t.Errorf("message %s to %s rejected", m.ID, d)
			}
			var full chaosMessage
			if _, err := getJSON(base, "/v1/messages/"+m.ID, keyOf(ent), &full); err != nil {
				t.Fatalf("message %s: %v", m.ID, err)
			}
			for i, p := range full.Parts {
				if p.State == "delivered" {
					delivered++
				}
				// The receipt that made the part final was the SMSC's for
				// this destination: no receipt matched to another message.
				if dest, ok := smscIDs[p.SMSCID]; !ok || dest != d {
					t.Errorf("message %s to %s: part %d (%s) has SMSC id %q, which the SMSC gave %q", m.ID, d, i, p.State, p.SMSCID, dest)
				}
			}
			for seq := 1; seq <= m.Segments; seq++ {
				switch n := seen[d][seq]; {
				case n == 0:
					t.Errorf("message %s to %s (%s): segment %d of %d never reached the SMSC", m.ID, d, m.State, seq, m.Segments)
				case n > 1:
					smscDups += n - 1
					if n > 1+len(x.killedAt) {
						t.Errorf("message %s to %s: segment %d sent %d times over %d kills (at most once more a kill)", m.ID, d, seq, n, len(x.killedAt))
					}
				}
			}
		}
		var usage struct{ Reserved, Delivered int64 }
		if _, err := getJSON(base, "/v1/usage", keyOf(ent), &usage); err != nil {
			t.Fatalf("usage of %s: %v", ent, err)
		}
		t.Logf("%s: %d messages stored, %d segments delivered; usage %+v", ent, len(msgs), delivered, usage)
		if usage.Delivered != delivered || usage.Reserved != 0 {
			t.Errorf("usage of %s: delivered %d, reserved %d; the messages' delivered segments: %d", ent, usage.Delivered, usage.Reserved, delivered)
		}
	}
	for d := range seen {
		if _, ok := byDest[d]; !ok {
			t.Errorf("the SMSC got %v for %s, which no stored message names", seen[d], d)
		}
	}
	for n, b := range x.batches {
		for _, d := range b.dests {
			if _, ok := byDest[d]; !ok {
				t.Errorf("batch %d: row to %s accepted but no message", n, d)
			}
		}
	}

	// 4. Receipts: one (at least) for every acknowledged message that
	// asked, at its ESME and at the webhook, with the message's state.
	rcptDups, hookDups := 0, 0
	stateOf := map[string]smpp.MessageState{"delivered": smpp.StateDelivered, "undeliverable": smpp.StateUndeliverable}
	waitCond(t, drain, "every receipt at its ESME and webhook", func() bool {
		for id, w := range acked {
			if limitation[id] {
				continue
			}
			if w.receipt != "" {
				s := x.sinks[w.receipt[len(w.receipt)-1]-'1']
				s.mu.Lock()
				n := len(s.ids[id])
				s.mu.Unlock()
				if n == 0 {
					return false
				}
			}
			if w.hook {
				x.hookMu.Lock()
				n := len(x.hooks[id])
				x.hookMu.Unlock()
				if n == 0 {
					return false
				}
			}
		}
		return true
	})
	for id, w := range acked {
		if limitation[id] {
			continue
		}
		if w.receipt != "" {
			s := x.sinks[w.receipt[len(w.receipt)-1]-'1']
			s.mu.Lock()
			states := s.ids[id]
			s.mu.Unlock()
			rcptDups += len(states) - 1
			if len(states) > 1+len(x.killedAt) {
				t.Errorf("receipt of %s at %s %d times over %d kills", id, w.receipt, len(states), len(x.killedAt))
			}
			for _, st := range states {
				if want, ok := stateOf[got[id].State]; ok && st != want {
					t.Errorf("receipt of %s at %s: state %d, the message is %s", id, w.receipt, st, got[id].State)
				}
			}
		}
		if w.hook {
			x.hookMu.Lock()
			states := x.hooks[id]
			x.hookMu.Unlock()
			hookDups += len(states) - 1
			if len(states) > 1+len(x.killedAt) {
				t.Errorf("webhook receipt of %s %d times over %d kills", id, len(states), len(x.killedAt))
			}
			m := got[id]
			delivered := 0
			for _, p := range m.Parts {
				if p.State == "delivered" {
					delivered++
				}
			}
			for _, rc := range states {
				if rc.State != m.State || rc.Segments != m.Segments || rc.Delivered != delivered || digits(rc.Recipient) != w.dest {
					t.Errorf("webhook receipt of %s: %+v, the message is %s to %s, %d of %d segments delivered", id, rc, m.State, w.dest, delivered, m.Segments)
				}
			}
		}
	}
	kills := len(x.killedAt)
	t.Logf("kills %d; duplicates: %d segments at the SMSC (bound %d: the windows, 2 × 50 a kill), %d receipts at the ESMEs (bound about %d: dlr_window 128 an account a kill), %d webhook receipts",
		kills, smscDups, kills*100, rcptDups, kills*3*128, hookDups)
	if smscDups > kills*100 {
		t.Errorf("%d segments sent twice over %d kills: more than the windows allow (%d)", smscDups, kills, kills*100)
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()
}

// submitShortOrLong submits one text to dst asking for a receipt (for
// account), a long one in message_payload (label repeated) when long,
// and records the answer: acknowledged, refused with its status, or lost.
func (x *chaos) submitShortOrLong(c *smpp.Conn, dst, label string, long bool, repeat int, account string) {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, "10690001")
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	kind, text := "esme", label+" "+dst
	if long {
		kind, text = "long", strings.Repeat("long "+label+" "+dst+" ", repeat)
		_ = f.Set(pdufield.ShortMessage, []byte(nil))
		_ = p.TLVFields().Set(pdutlv.TagMessagePayload, []byte(text))
	} else {
		_ = f.Set(pdufield.ShortMessage, []byte(text))
	}
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	resp, err := c.Request(rctx, p)
	cancel()
	switch {
	case err == nil:
		x.ack(smpp.Str(resp, pdufield.MessageID), what{kind: kind, ent: "T1", dest: dst, text: text, receipt: account})
	case smppStatus(err) != 0:
		x.refused(fmt.Sprintf("%s:%s", kind, smppStatus(err)))
	default:
		x.refused(kind + ":lost")
	}
}

//go:build soak

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestSoakChaosMore is the third chaos soak: the daemon killed -9 5–7
// times at seeded moments under what the other two leave out:
//
//   - an ESME's submit_multi to 1–4 new numbers, with recipients refused
//     beside them (a number opted out, an invalid one, a distribution list
//     that does not exist), receipts asked for;
//   - personalized sends over HTTP (POST /v1/messages/personalized), each
//     with an Idempotency-Key retried across the kills until answered, an
//     invalid row now and then, and replays of answered keys; and a
//     templated batch job ({姓名}, {码} from a CSV with a header) that
//     spans the kills;
//   - long replies (MO in message_payload, 140–300 characters, and in 2–3
//     UDH parts sent again until acknowledged, joined into one reply) to an enterprise with a
//     receiver, a transceiver and a working reply_url;
//   - replies to another enterprise whose reply_url answers 503 always,
//     with webhooks.max_age 3 s: given up, not retried for ever, kept in
//     the inbox and forwarded to its receiver;
//   - opt-outs made by a TD reply and removed through DELETE
//     /v1/optouts/{number} across the kills: refused before the removal
//     was answered, accepted after;
//   - two batch jobs that fail: one whose file is removed while the
//     daemon is down (file_gone), one whose user is disabled before a
//     kill (account_disabled).
//
// SOAK_MORE_SEED replays a seed: the kills (their number, gaps, which one
// removes the file, after which restart the user is disabled), the
// simulator's faults and the traffic's mix.
func TestSoakChaosMore(t *testing.T) {
	seed := soakSeed(t, "SOAK_MORE_SEED")
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909))

	sim, simAddr := startSim(t, smpp.SimOptions{
		DLRDelay: 100 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Throttle: 0.03, Undeliv: 0.05},
	})
	x := newChaos(t)
	m := newMore(x, sim)
	up := httptest.NewServer(http.HandlerFunc(m.upHook))
	t.Cleanup(up.Close)
	down := httptest.NewServer(http.HandlerFunc(m.downHook))
	t.Cleanup(down.Close)

	dir := t.TempDir()
	cfg := writeConfig(t, dir, simAddr, moreAccounts)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ents := strings.ReplaceAll(moreEnterprises, "UPHOOK", up.URL+"/mo")
	ents = strings.ReplaceAll(ents, "DOWNHOOK", down.URL+"/mo")
	conf := strings.Replace(string(b), "enterprises:\n", "enterprises:\n"+ents, 1)
	conf += fmt.Sprintf("webhooks: { allow_private: true, max_age: %s }\n", moreMaxAge)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	m.procs = append(m.procs, d)
	x.net.set(d)
	base := "http://" + d.httpAddr
	for _, a := range []string{"web3", "web4", "bulk3", "bulk4", "doomed"} {
		m.keys[a] = issueAPIKey(t, base, a)
	}
	x.bulkKey = m.keys["bulk3"]

	submitCtx, stopSubmitting := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopSubmitting()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	multi := &chaosESME{x: x, system: "multi", handler: m.esmeHandler("multi")}
	rx3 := &chaosESME{x: x, system: "rx3", kind: smpp.BindReceiver, handler: m.esmeHandler("rx3")}
	rx4 := &chaosESME{x: x, system: "rx4", kind: smpp.BindReceiver, handler: m.esmeHandler("rx4")}
	for _, e := range []*chaosESME{multi, rx3, rx4} {
		conns.Go(func() { e.keepBound(endCtx) })
	}
	// The numbers opted out of M1 for good, refused in submit_multi:
	// their TD replies acknowledged before any traffic.
	for i := range moreOptedOut {
		n := fmt.Sprintf("1389000000%d", i+1)
		if !m.injectUntilAcked(submitCtx, n, moreM1Number, i) {
			t.Fatal("the first opt-outs never acknowledged")
		}
		m.optedOut = append(m.optedOut, n)
	}
	for w := range 3 {
		wrng := rand.New(rand.NewPCG(seed+uint64(w), 11))
		drivers.Go(func() { m.multiLoop(submitCtx, multi, wrng) })
	}
	for w := range 2 {
		wrng := rand.New(rand.NewPCG(seed+uint64(10+w), 12))
		drivers.Go(func() { m.persLoop(submitCtx, w, wrng) })
	}
	lrng := rand.New(rand.NewPCG(seed+20, 13))
	drivers.Go(func() { m.longLoop(submitCtx, lrng) })
	drivers.Go(func() { m.deadLoop(submitCtx) })
	drivers.Go(func() { m.optLoop(submitCtx) })
	jobs := map[string]chan string{"tmpl": make(chan string, 1), "file": make(chan string, 1), "acct": make(chan string, 1)}
	for name, ch := range jobs {
		drivers.Go(func() {
			id := m.startJob(submitCtx, name)
			ch <- id
			if id != "" {
				conns.Go(func() { x.watchJob(endCtx, id, m.keys[moreJobs[name].admin]) })
			}
		})
	}

	kills := 5 + rng.IntN(3)
	fileAt := 1 + rng.IntN(kills-2)    // the kill whose downtime removes job "file"'s file
	disableAt := 1 + rng.IntN(kills-2) // the gap after which restart disables job "acct"'s user: a kill follows
	t.Logf("%d kills; job file's file removed at kill %d; job acct's user disabled after restart %d", kills, fileAt+1, disableAt)
	jobID := map[string]string{}
	for k := range kills {
		gap := 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		if k == disableAt {
			if jobID["acct"] == "" {
				jobID["acct"] = <-jobs["acct"]
			}
			after := 200*time.Millisecond + time.Duration(rng.Int64N(int64(gap-600*time.Millisecond)))
			drivers.Go(func() { m.disableUser(endCtx, "doomed", after) })
		}
		tm := time.NewTimer(gap) // the chaos schedule, not a wait for an event
		<-tm.C
		if k == fileAt && jobID["file"] == "" {
			jobID["file"] = <-jobs["file"]
		}
		x.net.down()
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		if k == fileAt {
			m.removeJobFile(t, filepath.Join(dir, "qxtd.db.batches"), "file")
		}
		x.killedAt = append(x.killedAt, m.counts())
		d = startDaemon(t, cfg)
		m.procs = append(m.procs, d)
		x.net.set(d)
		t.Logf("kill %d of %d after %v: %s", k+1, kills, gap.Round(time.Millisecond), x.killedAt[k])
	}
	tm := time.NewTimer(2 * time.Second) // a last stretch on the daemon that stays up
	<-tm.C
	stopSubmitting()
	drivers.Wait()
	chaosEnd := time.Now()
	t.Logf("chaos over after %v: %s", chaosEnd.Sub(began).Round(time.Millisecond), m.counts())
	for name, ch := range jobs {
		if jobID[name] == "" {
			jobID[name] = <-ch
		}
	}
	m.check(t, "http://"+d.httpAddr, jobID, d)
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 200))
	}
}

// moreMaxAge is webhooks.max_age: short, so that replies to the dead
// reply_url are given up within the soak.
const moreMaxAge = 3 * time.Second

// moreOptedOut is how many numbers stay opted out of M1 throughout.
const moreOptedOut = 3

const (
	moreM1Number = "1065903" // M1's service number: its replies go to rx3, multi and the working reply_url
	moreM2Number = "1065904" // M2's: to rx4 and the reply_url that always answers 503
)

const moreEnterprises = `  - code: M1
    signature: "【多测】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065903"
    ext_len: 2
    reply_url: UPHOOK
  - code: M2
    signature: "【死钩】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065904"
    ext_len: 2
    reply_url: DOWNHOOK
  - code: B3
    signature: "【批三】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 30
  - code: B4
    signature: "【批四】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 30
`

const moreAccounts = `  - { system_id: multi, password: secret1, enterprise: M1 }
  - { system_id: rx3, password: secret1, enterprise: M1 }
  - { system_id: web3, password: secret1, enterprise: M1, admin: true }
  - { system_id: rx4, password: secret1, enterprise: M2 }
  - { system_id: web4, password: secret1, enterprise: M2, admin: true }
  - { system_id: bulk3, password: secret1, enterprise: B3, admin: true }
  - { system_id: bulk4, password: secret1, enterprise: B4, admin: true }
  - { system_id: doomed, password: secret1, enterprise: B4 }
`

// moreJob is one batch job of the soak: who uploads it, who watches it
// (an admin of its enterprise), its rows and how it must end.
type moreJob struct {
	ent, owner, admin string
	rows              int
	template          string // a templated send: the CSV has a header
	state, reason     string // the end it must reach
}

var moreJobs = map[string]moreJob{
	// 450 rows at B3's 30 a second: spans the kills.
	"tmpl": {ent: "B3", owner: "bulk3", admin: "bulk3", rows: 450, template: "{姓名}您好，您的验证码是{码}", state: "done"},
	// Far from their ends when they fail.
	"file": {ent: "B3", owner: "bulk3", admin: "bulk3", rows: 3000, state: "failed", reason: "file_gone"},
	// Its user disabled while the daemon runs: the job fails at its next
	// gateway call (account_disabled); were it disabled while the daemon
	// is down, it would fail at the resume (account_gone).
	"acct": {ent: "B4", owner: "doomed", admin: "bulk4", rows: 3000, state: "failed", reason: "account_disabled"},
}

// multiSent is one submit_multi as the ESME knows it.
type multiSent struct {
	id      string
	ok      []string              // the recipients accepted
	refused map[string]pdu.Status // the recipients that must be in unsuccess_sme
	text    string
}

// persRow is one message of a personalized send the daemon accepted.
type persRow struct{ to, text string }

// optRemoval is one handset whose opt-out of M1 was removed.
type optRemoval struct {
	number  string
	removed bool // DELETE answered (204, or 404 after a lost try)
	after   int  // sends accepted after the removal's answer
}

type more struct {
	x    *chaos
	sim  *smpp.Simulator
	keys map[string]string
	seq  atomic.Int64

	procs []*proc // every daemon of the soak, for their logs (main goroutine only)

	mu         sync.Mutex
	multis     []multiSent
	multiLost  [][]string                // the valid recipients of a submit_multi whose answer was lost
	multiRefd  [][]string                // ... of one refused as a whole (must never be sent)
	rcpt       map[string]map[string]int // submit_multi receipts: id → recipient → count
	pers       map[string]persRow        // personalized: id → row
	persBad    []string                  // personalized rows refused (their numbers)
	persLost   int                       // keyed sends answered after a failed try
	persReplay int                       // keyed answers replayed and compared
	mos        map[moKey]*moSent         // every reply injected (long, opt-out keywords, dead)
	esme       map[moKey]map[string]int  // replies at the ESMEs: account → count
	upHooked   map[moKey][]string        // M1's reply_url: ids posted
	downPosts  map[string]int            // M2's dead reply_url: POSTs by reply id
	optedOut   []string                  // numbers opted out of M1 for good
	removals   []*optRemoval
	jobs       map[string]*chaosBatch
	lastDead   time.Time // the last reply to M2 acknowledged
}

func newMore(x *chaos, sim *smpp.Simulator) *more {
	return &more{x: x, sim: sim, keys: map[string]string{}, rcpt: map[string]map[string]int{},
		pers: map[string]persRow{}, mos: map[moKey]*moSent{}, esme: map[moKey]map[string]int{},
		upHooked: map[moKey][]string{}, downPosts: map[string]int{}, jobs: map[string]*chaosBatch{}}
}

func (m *more) conflict(format string, args ...any) {
	m.x.mu.Lock()
	m.x.conflicts = append(m.x.conflicts, fmt.Sprintf(format, args...))
	m.x.mu.Unlock()
}

func (m *more) counts() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ok := 0
	for _, s := range m.multis {
		ok += len(s.ok)
	}
	acked := map[string]int{}
	for _, s := range m.mos {
		if s.acked {
			acked[s.ent]++
		}
	}
	removed := 0
	for _, r := range m.removals {
		if r.removed {
			removed++
		}
	}
	m.x.mu.Lock()
	refusals := maps.Clone(m.x.refusals)
	m.x.mu.Unlock()
	return fmt.Sprintf("submit_multi %d (%d recipients, %d lost, %d refused); personalized %d rows; replies acknowledged %v; opt-outs removed %d; refusals %v",
		len(m.multis), ok, len(m.multiLost), len(m.multiRefd), len(m.pers), acked, removed, refusals)
}

// dest is a new number of prefix (4 digits).
func (m *more) dest(prefix string) string {
	return fmt.Sprintf("%s%07d", prefix, m.seq.Add(1)%10_000_000)
}

// upHook is M1's reply_url: every POST answered 204 and recorded.
func (m *more) upHook(rw http.ResponseWriter, r *http.Request) {
	replies, ok := readReplies(r)
	if !ok {
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	for _, rp := range replies {
		k := moKey{rp.From, rp.To, rp.Text}
		m.upHooked[k] = append(m.upHooked[k], rp.ID)
	}
	m.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// downHook is M2's reply_url: every POST answered 503, counted by id.
func (m *more) downHook(rw http.ResponseWriter, r *http.Request) {
	replies, ok := readReplies(r)
	m.mu.Lock()
	for _, rp := range replies {
		m.downPosts[rp.ID]++
	}
	m.mu.Unlock()
	if !ok {
		m.conflict("M2's reply_url got an unreadable POST")
	}
	rw.WriteHeader(http.StatusServiceUnavailable)
}

func readReplies(r *http.Request) ([]webhook.Reply, bool) {
	body, _ := io.ReadAll(r.Body)
	var batch webhook.ReplyBatch
	if err := json.Unmarshal(body, &batch); err == nil && len(batch.Replies) > 0 {
		return batch.Replies, true
	}
	var rp webhook.Reply
	if err := json.Unmarshal(body, &rp); err != nil || rp.ID == "" {
		return nil, false
	}
	return []webhook.Reply{rp}, true
}

// esmeHandler records what account's binds get: receipts by id and
// recipient, replies by key.
func (m *more) esmeHandler(account string) smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if rc, err := smpp.ParseReceipt(p); err == nil {
			to := digits(smpp.Str(p, pdufield.SourceAddr))
			m.mu.Lock()
			if m.rcpt[rc.ID] == nil {
				m.rcpt[rc.ID] = map[string]int{}
			}
			m.rcpt[rc.ID][to]++
			m.mu.Unlock()
			return pdu.NewDeliverSMResp()
		}
		text, _, err := segment.DecodeIncoming(smpp.Byte(p, pdufield.DataCoding), smpp.Byte(p, pdufield.ESMClass),
			smpp.Bytes(p, pdufield.ShortMessage), smpp.TLV(p, pdutlv.TagMessagePayload), false)
		if err != nil {
			m.conflict("%s: undecodable reply: %v", account, err)
		}
		k := moKey{smpp.Str(p, pdufield.SourceAddr), smpp.Str(p, pdufield.DestinationAddr), text}
		m.mu.Lock()
		if m.esme[k] == nil {
			m.esme[k] = map[string]int{}
		}
		m.esme[k][account]++
		m.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

// inject injects one reply and records it: true if the daemon
// acknowledged it. A reply not acknowledged may be stored all the same.
func (m *more) inject(ctx context.Context, s *moSent, from, to, text string) bool {
	if _, _, _, ok := m.x.net.current(ctx); !ok {
		return false
	}
	k := moKey{from, to, text}
	m.mu.Lock()
	if _, dup := m.mos[k]; dup {
		m.mu.Unlock()
		m.conflict("reply %+v injected twice by the soak", k)
		return false
	}
	m.mos[k] = s
	m.mu.Unlock()
	if err := m.sim.InjectMO(from, to, text); err != nil {
		return false
	}
	m.mu.Lock()
	s.acked = true
	m.mu.Unlock()
	return true
}

// injectUntilAcked has from opt out of the enterprise of number to, as
// an SMSC sends a reply again until it is answered: each try another
// spelling of the keyword (each its own reply in the inbox).
func (m *more) injectUntilAcked(ctx context.Context, from, to string, n int) bool {
	for try := 0; ctx.Err() == nil; try++ {
		word := optOutWords[(n+try)%len(optOutWords)]
		if try >= len(optOutWords) {
			word = strings.Repeat(" ", try/len(optOutWords)) + word // still a keyword, another text
		}
		s := &moSent{ent: "M1", keyword: true}
		if to == moreM2Number {
			s.ent = "M2"
		}
		if m.inject(ctx, s, from, to, word) {
			return true
		}
		m.x.net.after(ctx, 0) // the daemon died or had no bind yet: again soon
	}
	return false
}

// multiLoop submits a submit_multi about four a second: 1–4 new numbers,
// and now and then a number opted out of M1, an invalid one and a
// distribution list that does not exist, which must be refused in
// unsuccess_sme and never sent.
func (m *more) multiLoop(ctx context.Context, e *chaosESME, rng *rand.Rand) {
	tick := time.NewTicker(250 * time.Millisecond) // pacing
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := e.bound(ctx)
		if c == nil {
			return
		}
		var dests smpp.DestList
		var valid []string
		for range 1 + rng.IntN(4) {
			d := m.dest("1382")
			valid = append(valid, d)
			dests = append(dests, smpp.DestAddress{TON: 0, NPI: 1, Addr: d})
		}
		refused := map[string]pdu.Status{}
		if rng.IntN(3) == 0 {
			o := m.optedOut[rng.IntN(len(m.optedOut))]
			refused[o] = 0x40A // opted_out
			dests = append(dests, smpp.DestAddress{TON: 0, NPI: 1, Addr: o})
		}
		if rng.IntN(4) == 0 {
			refused["12345"] = 0
			dests = append(dests, smpp.DestAddress{TON: 0, NPI: 1, Addr: "12345"})
		}
		if rng.IntN(6) == 0 {
			refused["nolist"] = 0x34
			dests = append(dests, smpp.DestAddress{DL: true, Addr: "nolist"})
		}
		rng.Shuffle(len(dests), func(i, j int) { dests[i], dests[j] = dests[j], dests[i] })
		text := "multi " + valid[0] // data_coding 0: ASCII
		p := smpp.NewSubmitMulti(dests)
		f := p.Fields()
		_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
		_ = f.Set(pdufield.ShortMessage, []byte(text))
		rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		resp, err := c.Request(rctx, p)
		cancel()
		switch {
		case err == nil:
			failed, perr := smpp.ParseUnsuccess(resp)
			if perr != nil {
				m.conflict("submit_multi to %v: unsuccess_sme: %v", valid, perr)
			}
			got := map[string]pdu.Status{}
			for _, u := range failed {
				got[u.Addr] = u.Status
			}
			for a, st := range refused {
				if g, ok := got[a]; !ok || (st != 0 && g != st) {
					m.conflict("submit_multi %v: %s refused %#x (listed %v), want %#x", valid, a, uint32(g), ok, uint32(st))
				}
			}
			for _, a := range valid {
				if _, ok := got[a]; ok {
					m.conflict("submit_multi: %s refused %#x", a, uint32(got[a]))
				}
			}
			m.mu.Lock()
			m.multis = append(m.multis, multiSent{id: smpp.Str(resp, pdufield.MessageID), ok: valid, refused: refused, text: text})
			m.mu.Unlock()
		case smppStatus(err) != 0:
			m.x.refused(fmt.Sprintf("multi:%s", smppStatus(err)))
			m.mu.Lock()
			m.multiRefd = append(m.multiRefd, valid)
			m.mu.Unlock()
		default:
			m.mu.Lock()
			m.multiLost = append(m.multiLost, valid)
			m.mu.Unlock()
		}
	}
}

// persLoop sends 2–4 personalized messages a request about three times a
// second, each request with an Idempotency-Key, retried with it until
// answered; one in five has an invalid row; one in eight is a replay of
// a key answered before, whose answer must be the first.
func (m *more) persLoop(ctx context.Context, w int, rng *rand.Rand) {
	cl := &http.Client{Timeout: 10 * time.Second}
	type answered struct{ key, body, answer string }
	var done []answered
	tick := time.NewTicker(300 * time.Millisecond) // pacing
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if len(done) > 0 && rng.IntN(8) == 0 {
			a := done[rng.IntN(len(done))]
			code, body, hdr, ok := m.x.post(ctx, cl, "/v1/messages/personalized", m.keys["web3"], a.key, "application/json", a.body)
			if !ok {
				return
			}
			if code/100 == 2 {
				m.mu.Lock()
				m.persReplay++
				m.mu.Unlock()
				if body != a.answer || hdr.Get("Idempotent-Replayed") != "true" {
					m.conflict("personalized key %s replayed %d %s (replayed %q), first answer %s", a.key, code, body, hdr.Get("Idempotent-Replayed"), a.answer)
				}
			}
			continue
		}
		type row struct {
			To   string `json:"to"`
			Text string `json:"text"`
		}
		var rows []row
		for range 2 + rng.IntN(3) {
			to := m.dest("1383")
			rows = append(rows, row{to, fmt.Sprintf("%s您好，验证码 %06d", to[7:], rng.IntN(1_000_000))})
		}
		bad := -1
		if rng.IntN(5) == 0 {
			bad = rng.IntN(len(rows) + 1)
			rows = slices.Insert(rows, bad, row{"123", "无效号码"})
		}
		req, _ := json.Marshal(map[string]any{"messages": rows})
		key := fmt.Sprintf("pers-%d-%d", w, n)
		code, body, tries := 0, "", 0
		for {
			var ok bool
			tries++
			code, body, _, ok = m.x.post(context.Background(), cl, "/v1/messages/personalized", m.keys["web3"], key, "application/json", string(req))
			if !ok || (code != 0 && code < 500) {
				break
			}
		}
		var res sendResults
		if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != len(rows) {
			m.conflict("personalized %s: %d %s", key, code, body)
			continue
		}
		done = append(done, answered{key, string(req), body})
		m.mu.Lock()
		if tries > 1 {
			m.persLost++
		}
		for i, r := range res.Results {
			switch {
			case i == bad:
				m.persBad = append(m.persBad, rows[i].To)
				if r.Status == "accepted" {
					m.x.conflicts = append(m.x.conflicts, fmt.Sprintf("personalized %s: invalid row %d accepted: %+v", key, i, r))
				}
			case r.Status != "accepted" || digits(r.To) != rows[i].To:
				m.x.conflicts = append(m.x.conflicts, fmt.Sprintf("personalized %s: row %d %+v, want %s accepted", key, i, r, rows[i].To))
			default:
				m.pers[r.ID] = persRow{rows[i].To, rows[i].Text}
			}
		}
		m.mu.Unlock()
	}
}

// longLoop injects a long reply to M1 (message_payload: 140–200
// characters of UCS-2 or 260–300 of ASCII) about three times a second.
func (m *more) longLoop(ctx context.Context, rng *rand.Rand) {
	tick := time.NewTicker(350 * time.Millisecond) // pacing
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		from := fmt.Sprintf("1384%07d", rng.IntN(20))
		to := []string{moreM1Number, moreM1Number + "77"}[rng.IntN(2)]
		if i%3 == 2 {
			m.splitReply(ctx, rng, i, from, to)
			continue
		}
		var text string
		if i%2 == 0 {
			text = fmt.Sprintf("长回复%d：", i) + strings.Repeat("这是一条很长的回复，", 14+rng.IntN(6))
		} else {
			text = fmt.Sprintf("long reply %d: ", i) + strings.Repeat("a long reply, ", 19+rng.IntN(3))
		}
		m.inject(ctx, &moSent{ent: "M1"}, from, to, text)
	}
}

// splitReply injects a long reply the SMSC split itself (2 or 3 UDH
// parts, 8-bit reference i), each part sent again until acknowledged as
// an SMSC does, across the kills: the enterprise gets it once, joined. A
// part sent again after a failure may have been stored before the kill
// (its answer lost) and its reply joined already: it then starts a
// group of its own, stored alone at smpp.mo_reassembly_timeout, so
// such a part alone may be in the inbox too (once at most).
func (m *more) splitReply(ctx context.Context, rng *rand.Rand, i int, from, to string) {
	n := 2 + rng.IntN(2)
	texts := make([]string, n)
	for seq := range texts {
		texts[seq] = fmt.Sprintf("part %d/%d of reply %d: ", seq+1, n, i) + strings.Repeat("split reply, ", 8)
	}
	s := &moSent{ent: "M1"}
	m.mu.Lock()
	m.mos[moKey{from, to, strings.Join(texts, "")}] = s
	m.mu.Unlock()
	// Not the loop's ctx: a part left unsent at the end would leave its
	// reply to the timeout, joined without it.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	acked := true
	for seq, text := range texts {
		sm := smpp.SM{SourceAddr: from, DestinationAddr: to, ESMClass: 0x40,
			ShortMessage: append([]byte{5, 0, 3, byte(i), byte(n), byte(seq + 1)}, text...)}
		ok, retried := m.injectPartUntilAcked(sendCtx, sm)
		if retried {
			m.mu.Lock()
			if _, dup := m.mos[moKey{from, to, text}]; !dup {
				m.mos[moKey{from, to, text}] = &moSent{ent: "M1"}
			}
			m.mu.Unlock()
		}
		acked = acked && ok
	}
	if acked {
		m.mu.Lock()
		s.acked = true
		m.mu.Unlock()
	}
}

// injectPartUntilAcked sends sm until the daemon answers OK or ctx
// ends; retried: it failed at least once.
func (m *more) injectPartUntilAcked(ctx context.Context, sm smpp.SM) (ok, retried bool) {
	for ctx.Err() == nil {
		if m.sim.InjectDeliverSM(sm) == nil {
			return true, retried
		}
		retried = true
		m.x.net.after(ctx, 0) // the daemon died or had no bind yet: again soon
	}
	return false, retried
}

// deadLoop injects a reply to M2, whose reply_url always fails, about
// twice a second.
func (m *more) deadLoop(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond) // pacing
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		from := fmt.Sprintf("1386%07d", i%10)
		if m.inject(ctx, &moSent{ent: "M2"}, from, moreM2Number, fmt.Sprintf("无人接收 %d", i)) {
			m.mu.Lock()
			m.lastDead = time.Now()
			m.mu.Unlock()
		}
	}
}

// optLoop, one handset after another: it opts out of M1 (a TD reply,
// sent again until acknowledged); a send to it is refused opted_out; its
// opt-out is removed (DELETE, again after a lost answer); a send to it is
// then accepted, on whichever daemon is up.
func (m *more) optLoop(ctx context.Context) {
	cl := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(300 * time.Millisecond) // pacing
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h := m.dest("1388")
		if !m.injectUntilAcked(ctx, h, moreM1Number, i) {
			return
		}
		r := &optRemoval{number: h}
		m.mu.Lock()
		m.removals = append(m.removals, r)
		m.mu.Unlock()
		st, reason, ok := m.sendTo(ctx, cl, "web3", h, "退订前")
		if !ok {
			return
		}
		if st != "refused" || reason != "opted_out" {
			m.conflict("send to %s after its opt-out was acknowledged, before its removal: %s %s", h, st, reason)
		}
		lost := false
		for !r.removed {
			code, body, _, ok := m.x.do(ctx, cl, http.MethodDelete, "/v1/optouts/"+h, m.keys["web3"], "", "", "")
			switch {
			case !ok:
				return
			case code == http.StatusNoContent, code == http.StatusNotFound && lost:
				m.mu.Lock()
				r.removed = true
				m.mu.Unlock()
			case code == 0 || code >= 500:
				lost = true
			default:
				m.conflict("DELETE /v1/optouts/%s: %d %s", h, code, body)
				return
			}
		}
		st, reason, ok = m.sendTo(ctx, cl, "web3", h, "退订取消后")
		if !ok {
			return
		}
		if st != "accepted" {
			m.conflict("send to %s after its opt-out's removal was answered: %s %s", h, st, reason)
			continue
		}
		m.mu.Lock()
		r.after++
		m.mu.Unlock()
	}
}

// sendTo sends text to number as account over HTTP, again after a
// connection error (no key: a send lost to a kill may be stored, and the
// checks allow it): the first answer's status and reason.
func (m *more) sendTo(ctx context.Context, cl *http.Client, account, number, text string) (status, reason string, ok bool) {
	body, _ := json.Marshal(map[string]any{"to": []string{number}, "text": text})
	for {
		code, resp, _, ok := m.x.post(ctx, cl, "/v1/messages", m.keys[account], "", "application/json", string(body))
		if !ok {
			return "", "", false
		}
		if code == 0 || code >= 500 {
			m.x.refused("opt:lost")
			continue
		}
		var res sendResults
		if code != http.StatusOK || json.Unmarshal([]byte(resp), &res) != nil || len(res.Results) != 1 {
			m.conflict("send from %s to %s: %d %s", account, number, code, resp)
			return "", "", true
		}
		return res.Results[0].Status, res.Results[0].Reason, true
	}
}

// startJob uploads job name's file with an Idempotency-Key, again after a
// lost answer, and returns its id.
func (m *more) startJob(ctx context.Context, name string) string {
	spec := moreJobs[name]
	b := &chaosBatch{rows: spec.rows}
	var file strings.Builder
	path := "/v1/batches"
	if spec.template != "" {
		file.WriteString("手机号,姓名,码\n")
		path += "?template=" + url.QueryEscape(spec.template) + "&number_column=" + url.QueryEscape("手机号")
	}
	for i := range spec.rows {
		d := m.dest(map[string]string{"tmpl": "1351", "file": "1352", "acct": "1355"}[name])
		b.dests = append(b.dests, d)
		if spec.template != "" {
			fmt.Fprintf(&file, "%s,用户%d,%06d\n", d, i+1, i*7919%1_000_000)
		} else {
			fmt.Fprintf(&file, "%s,%s任务第%d行\n", d, name, i+1)
		}
	}
	b.file = file.String()
	cl := &http.Client{Timeout: 30 * time.Second}
	for {
		code, body, _, ok := m.x.post(ctx, cl, path, m.keys[spec.owner], "job-"+name, "text/csv", b.file)
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
			m.conflict("job %s: %d %s", name, code, body)
			return ""
		}
		b.id = created.JobID
		m.mu.Lock()
		m.jobs[name] = b
		m.mu.Unlock()
		return b.id
	}
}

// tmplText is the templated job's text of row i (0-based), unsigned.
func tmplText(i int) string {
	return fmt.Sprintf("用户%d您好，您的验证码是%06d", i+1, i*7919%1_000_000)
}

// removeJobFile removes job name's file from the batches' directory
// while the daemon is down, as an operator's cleanup or a lost disk
// would: found by its content.
func (m *more) removeJobFile(t *testing.T, spool, name string) {
	t.Helper()
	m.mu.Lock()
	b := m.jobs[name]
	m.mu.Unlock()
	if b == nil {
		t.Fatalf("job %s not started before its file was to go", name)
	}
	ents, err := os.ReadDir(spool)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, e := range ents {
		p := filepath.Join(spool, e.Name())
		c, err := os.ReadFile(p)
		if err != nil || string(c) != b.file {
			continue
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		removed++
	}
	if removed != 1 {
		t.Fatalf("job %s: %d files of its content in %s (%d entries)", name, removed, spool, len(ents))
	}
	t.Logf("job %s (%s): file removed while the daemon was down", name, b.id)
}

// disableUser has the operator disable account after a while, again
// after a lost answer.
func (m *more) disableUser(ctx context.Context, account string, after time.Duration) {
	tm := time.NewTimer(after) // the operator's moment
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
		return
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	for {
		code, body, _, ok := m.x.do(ctx, cl, http.MethodPatch, "/admin/v1/users/"+account, "test-token", "", "application/json", `{"disabled":true}`)
		if !ok {
			return
		}
		if code == 0 || code >= 500 {
			continue
		}
		if code != http.StatusOK {
			m.conflict("disable %s: %d %s", account, code, body)
		}
		m.x.t.Logf("user %s disabled", account)
		return
	}
}

// logLines are the JSON log lines of every daemon of the soak whose msg
// is msg.
func (m *more) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, p := range m.procs {
		for line := range strings.Lines(p.log()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				out = append(out, rec)
			}
		}
	}
	return out
}

type inboxEntry struct {
	ID, From, To, Extension, Account, Text string
	Forwarded                              bool
}

func inboxOf(t *testing.T, base, key string) []inboxEntry {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/inbox/export?format=jsonl", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("inbox export: %d %s", resp.StatusCode, b)
	}
	var out []inboxEntry
	for line := range bytes.Lines(b) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var it inboxEntry
		if err := json.Unmarshal(line, &it); err != nil {
			t.Fatalf("inbox line %q: %v", line, err)
		}
		out = append(out, it)
	}
	return out
}

func (m *more) check(t *testing.T, base string, jobID map[string]string, last *proc) {
	x := m.x
	drain := 60 * time.Second
	kills := len(x.killedAt)
	keyOf := map[string]string{"M1": m.keys["web3"], "M2": m.keys["web4"], "B3": m.keys["bulk3"], "B4": m.keys["bulk4"]}
	m.mu.Lock()
	multis := slices.Clone(m.multis)
	multiLost, multiRefd := slices.Clone(m.multiLost), slices.Clone(m.multiRefd)
	pers := make(map[string]persRow, len(m.pers))
	for id, r := range m.pers {
		pers[id] = r
	}
	persBad := slices.Clone(m.persBad)
	mos := make(map[moKey]moSent, len(m.mos))
	for k, s := range m.mos {
		mos[k] = *s
	}
	var removals []optRemoval
	for _, r := range m.removals {
		removals = append(removals, *r)
	}
	lastDead := m.lastDead
	t.Logf("personalized: %d keyed sends answered after a failed try, %d answers replayed and compared", m.persLost, m.persReplay)
	m.mu.Unlock()

	// 1. The dead reply_url: once max_age has passed since the last reply
	// to M2, a retry-now (立即重试回复) gives up what is still waiting;
	// then nothing of M2's replies waits.
	if wait := time.Until(lastDead.Add(moreMaxAge + 100*time.Millisecond)); wait > 0 {
		tm := time.NewTimer(wait) // a reply's age is time: nothing else to wait on
		<-tm.C
	}
	code, body, _, _ := x.post(context.Background(), http.DefaultClient, "/v1/receipt-webhook/retry", m.keys["web4"], "", "application/json", `{"kind":"reply"}`)
	if code != http.StatusOK {
		t.Errorf("M2's reply retry-now: %d %s", code, body)
	}
	var hookStatus struct {
		ReplyStatus struct {
			Pending, Retrying int
		} `json:"reply_status"`
	}
	waitCond(t, drain, "no reply of M2 waiting for its webhook", func() bool {
		_, err := getJSON(base, "/v1/receipt-webhook", keyOf["M2"], &hookStatus)
		return err == nil && hookStatus.ReplyStatus.Pending == 0
	})

	// 2. Replies: every acknowledged one in its enterprise's inbox once,
	// whole; every stored one at an ESME of its enterprise; M1's at its
	// reply_url with the inbox's id; M2's given up.
	inbox := map[moKey][]inboxEntry{}
	inboxEnt := map[moKey]string{}
	for _, ent := range []string{"M1", "M2"} {
		var items []inboxEntry
		waitCond(t, drain, "every reply of "+ent+" forwarded", func() bool {
			items = inboxOf(t, base, keyOf[ent])
			for _, it := range items {
				if !it.Forwarded {
					return false
				}
			}
			return true
		})
		for _, it := range items {
			k := moKey{it.From, it.To, it.Text}
			inbox[k] = append(inbox[k], it)
			inboxEnt[k] = ent
		}
	}
	counts := map[string]map[string]int{"M1": {}, "M2": {}}
	for k, s := range mos {
		items := inbox[k]
		switch {
		case s.acked && len(items) != 1:
			t.Errorf("reply %q from %s to %s acknowledged: %d times in the inbox", k.text, k.from, k.to, len(items))
		case !s.acked && len(items) > 1:
			t.Errorf("reply %q from %s to %s (not acknowledged): %d times in the inbox", k.text, k.from, k.to, len(items))
		case s.acked:
			counts[s.ent]["acked"]++
		case len(items) == 1:
			counts[s.ent]["stored unacknowledged"]++
		default:
			counts[s.ent]["lost unacknowledged"]++
		}
		if len(items) > 0 && inboxEnt[k] != s.ent {
			t.Errorf("reply %q from %s to %s in %s's inbox, want %s's", k.text, k.from, k.to, inboxEnt[k], s.ent)
		}
	}
	for k, items := range inbox {
		if _, ok := mos[k]; !ok {
			t.Errorf("the inbox holds %q from %s to %s (%d), which no handset sent whole", k.text, k.from, k.to, len(items))
		}
	}
	accounts := map[string][]string{"M1": {"rx3", "multi"}, "M2": {"rx4"}}
	waitCond(t, drain, "every stored reply at an ESME, and M1's at its reply_url", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for k, s := range mos {
			if len(inbox[k]) == 0 {
				continue
			}
			n := 0
			for _, a := range accounts[s.ent] {
				n += m.esme[k][a]
			}
			if n == 0 || s.ent == "M1" && len(m.upHooked[k]) == 0 {
				return false
			}
		}
		return true
	})
	esmeDups, upDups := 0, 0
	m.mu.Lock()
	for k, got := range m.esme {
		s, ok := mos[k]
		if !ok || len(inbox[k]) == 0 {
			t.Errorf("an ESME got reply %q from %s to %s (%v), which is not in the inbox", k.text, k.from, k.to, got)
			continue
		}
		n := 0
		for a, c := range got {
			if !slices.Contains(accounts[s.ent], a) {
				t.Errorf("reply %q of %s reached %s", k.text, s.ent, a)
			}
			n += c
		}
		esmeDups += n - 1
	}
	for k, ids := range m.upHooked {
		if s, ok := mos[k]; !ok || len(inbox[k]) == 0 || s.ent != "M1" {
			t.Errorf("M1's reply_url got %q from %s to %s (%v), not a reply of M1's inbox", k.text, k.from, k.to, ids)
			continue
		}
		for _, id := range ids {
			if id != inbox[k][0].ID {
				t.Errorf("reply %q posted with id %s, the inbox's is %s", k.text, id, inbox[k][0].ID)
			}
		}
		upDups += len(ids) - 1
	}
	downPosts := maps.Clone(m.downPosts)
	m.mu.Unlock()

	// The dead reply_url: each of M2's replies given up once (logged
	// by the daemon that gave it up), POSTed a bounded number of times
	// (its first try, its retry at 10 s or the retry-now, and once more
	// a kill: not for ever), and none delivered.
	givenUp := map[string]int{}
	for _, rec := range m.logLines("reply webhook given up") {
		if rec["enterprise"] == "M2" {
			givenUp[fmt.Sprint(rec["id"])]++
		} else {
			t.Errorf("a reply of %v given up: %v", rec["enterprise"], rec)
		}
	}
	m2 := 0
	maxPosts := 0
	for k, items := range inbox {
		if inboxEnt[k] != "M2" {
			continue
		}
		m2++
		id := items[0].ID
		if givenUp[id] != 1 {
			t.Errorf("M2's reply %s (%q): given up %d times in the logs", id, k.text, givenUp[id])
		}
		if n := downPosts[id]; n == 0 || n > 2+kills {
			t.Errorf("M2's reply %s (%q): POSTed %d times to its dead reply_url (want 1 to %d)", id, k.text, n, 2+kills)
		}
		maxPosts = max(maxPosts, downPosts[id])
	}
	lastGaveUp := 0
	for line := range strings.Lines(last.log()) {
		if strings.Contains(line, `"msg":"reply webhook given up"`) {
			lastGaveUp++
		}
	}
	if g := metric(t, last.httpAddr, `qxtd_reply_webhooks_total{outcome="gave_up"}`); int(g) != lastGaveUp {
		t.Errorf("the last daemon counts %v replies given up, and logged %d", g, lastGaveUp)
	}
	if d := metric(t, last.httpAddr, `qxtd_reply_webhooks_total{outcome="delivered"}`); d == 0 && len(m.upHooked) > 0 && counts["M1"]["acked"] > 0 {
		t.Logf("the last daemon delivered no reply (all before it)")
	}
	t.Logf("replies M1 %v, M2 %v; M2's %d given up (%d by the last daemon), at most %d POSTs each to the dead reply_url; duplicates: %d at the ESMEs, %d at M1's reply_url",
		counts["M1"], counts["M2"], len(givenUp), lastGaveUp, maxPosts, esmeDups, upDups)
	if m2 == 0 {
		t.Errorf("no reply of M2 stored: the dead reply_url was not exercised")
	}

	// 3. Opt-outs: each removal answered holds (a send accepted now, the
	// number not listed); the numbers opted out for good still are.
	var page struct {
		Entries []struct{ Number string }
	}
	if _, err := getJSON(base, "/v1/optouts?limit=1000", keyOf["M1"], &page); err != nil {
		t.Fatalf("optouts of M1: %v", err)
	}
	listed := map[string]bool{}
	for _, e := range page.Entries {
		listed[digits(e.Number)] = true
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	extraTo := map[string]int{} // sends accepted to a number outside the unique workloads
	removed := 0
	for _, r := range removals {
		extraTo[r.number] += r.after
		if !r.removed {
			continue // its DELETE never answered: either way
		}
		removed++
		if listed[r.number] {
			t.Errorf("%s: its opt-out's removal was answered, yet listed", r.number)
		}
		st, reason, _ := m.sendTo(context.Background(), cl, "web3", r.number, "检查")
		if st != "accepted" {
			t.Errorf("send to %s after its opt-out's removal (and the kills): %s %s", r.number, st, reason)
		} else {
			extraTo[r.number]++
		}
	}
	for _, n := range m.optedOut {
		if !listed[n] {
			t.Errorf("%s opted out for good: not listed", n)
		}
	}
	t.Logf("opt-outs: %d made and removed across the kills (%d removals answered), %d listed", len(removals), removed, len(listed))
	if removed == 0 {
		t.Errorf("no opt-out removal answered")
	}

	// 4. The batch jobs: tmpl done, each row once with its text; file and
	// acct failed with their reasons, their accepted rows once, none
	// after; each end logged once.
	jobProg := map[string]jobProgress{}
	for name, spec := range moreJobs {
		id := jobID[name]
		if id == "" {
			t.Errorf("job %s never started", name)
			continue
		}
		var p jobProgress
		waitCond(t, drain, "job "+name+" ended", func() bool {
			_, err := getJSON(base, "/v1/batches/"+id, m.keys[spec.admin], &p)
			return err == nil && p.State != "running"
		})
		jobProg[name] = p
		if p.State != spec.state || p.Reason != spec.reason {
			t.Errorf("job %s (%s): %+v, want %s %s", name, id, p, spec.state, spec.reason)
		}
		if p.Refused != 0 || p.RowsRead != p.Accepted+p.Unsent || spec.state == "done" && (p.Accepted != spec.rows || p.Unsent != 0) {
			t.Errorf("job %s (%s): %+v: want every row read accepted or unsent (%d rows)", name, id, p, spec.rows)
		}
		ends := 0
		for _, rec := range append(m.logLines("batch: job failed"), m.logLines("batch: job ended")...) {
			if rec["job"] == id {
				ends++
				if rec["state"] != spec.state || spec.reason != "" && rec["reason"] != spec.reason {
					t.Errorf("job %s logged %v", name, rec)
				}
			}
		}
		if ends != 1 {
			t.Errorf("job %s (%s): its end logged %d times", name, id, ends)
		}
		t.Logf("job %s (%s): %+v", name, id, p)
	}

	// 5. The outboxes: every message final, one a unique destination,
	// each as acknowledged; the SMSC's copies; the usage.
	outbox := map[string][]chaosMessage{}
	for _, ent := range []string{"M1", "B3", "B4"} {
		waitCond(t, drain, "every message of "+ent+" final", func() bool {
			outbox[ent] = export(t, base, keyOf[ent])
			for _, msg := range outbox[ent] {
				if !final(msg.State) {
					return false
				}
			}
			return true
		})
	}
	copies := segSeen(m.sim)
	byDest := map[string][]chaosMessage{}
	byID := map[string]chaosMessage{}
	smscDups := 0
	for _, ent := range []string{"M1", "B3", "B4"} {
		var delivered int64
		for _, msg := range outbox[ent] {
			d := digits(msg.To)
			byDest[d] = append(byDest[d], msg)
			byID[msg.ID] = msg
			if msg.State == "rejected" {
				t.Errorf("message %s to %s rejected (%s)", msg.ID, d, msg.ErrorCode)
			}
			var full chaosMessage
			if _, err := getJSON(base, "/v1/messages/"+msg.ID, keyOf[ent], &full); err != nil {
				t.Fatalf("message %s: %v", msg.ID, err)
			}
			for _, p := range full.Parts {
				if p.State == "delivered" {
					delivered++
				}
			}
		}
		var usage struct{ Reserved, Delivered int64 }
		if _, err := getJSON(base, "/v1/usage", keyOf[ent], &usage); err != nil {
			t.Fatalf("usage of %s: %v", ent, err)
		}
		t.Logf("%s: %d messages, %d segments delivered; usage %+v", ent, len(outbox[ent]), delivered, usage)
		if usage.Delivered != delivered || usage.Reserved != 0 {
			t.Errorf("usage of %s: delivered %d, reserved %d; the messages' delivered segments: %d", ent, usage.Delivered, usage.Reserved, delivered)
		}
	}
	// want says destination d has n messages (exactly, or at most with
	// atMost), each of whose segments reached the SMSC within the bound.
	want := func(what, d string, n int, atMost bool) {
		msgs := byDest[d]
		if len(msgs) != n && !(atMost && len(msgs) < n) {
			t.Errorf("%s to %s: %d messages, want %d", what, d, len(msgs), n)
		}
		segs := 0
		for _, msg := range msgs {
			segs = max(segs, msg.Segments)
		}
		for seq := 1; seq <= segs; seq++ {
			c := copies[d][seq]
			switch {
			case c < len(msgs):
				t.Errorf("%s to %s: segment %d reached the SMSC %d times for %d messages", what, d, seq, c, len(msgs))
			case c > len(msgs):
				smscDups += c - len(msgs)
				if c > len(msgs)*(1+kills) {
					t.Errorf("%s to %s: segment %d reached the SMSC %d times over %d kills", what, d, seq, c, kills)
				}
			}
		}
		if len(msgs) == 0 && len(copies[d]) > 0 {
			t.Errorf("%s to %s: no message, yet the SMSC got %v", what, d, copies[d])
		}
	}
	named := map[string]bool{}
	multiOK, multiRefused := 0, 0
	for _, s := range multis {
		first := true
		for _, d := range s.ok {
			named[d] = true
			multiOK++
			want("submit_multi "+s.id, d, 1, false)
			for _, msg := range byDest[d] {
				if !strings.Contains(msg.Text, s.text) || msg.Account != "multi" {
					t.Errorf("submit_multi %s to %s: stored %q by %s, want %q by multi", s.id, d, msg.Text, msg.Account, s.text)
				}
			}
			if first {
				// The id answered is one of its messages (the first
				// accepted recipient's), and names it.
				first = false
				if msg, ok := byID[s.id]; !ok || !slices.Contains(s.ok, digits(msg.To)) {
					t.Errorf("submit_multi %s to %v: its id names %+v", s.id, s.ok, msg)
				}
			}
		}
		for d := range s.refused {
			multiRefused++
			if d == "nolist" || d == "12345" {
				continue
			}
			if n := len(copies[d]); n > 0 {
				t.Errorf("submit_multi %s: %s refused (opted out), yet the SMSC got it %d times", s.id, d, n)
			}
		}
	}
	for _, n := range m.optedOut {
		if len(byDest[n]) > 0 || len(copies[n]) > 0 {
			t.Errorf("%s opted out for good: %d messages, %d copies at the SMSC", n, len(byDest[n]), len(copies[n]))
		}
		named[n] = true
	}
	for _, ds := range multiLost {
		for _, d := range ds {
			named[d] = true
			want("submit_multi (answer lost)", d, 1, true)
		}
	}
	for _, ds := range multiRefd {
		for _, d := range ds {
			named[d] = true
			want("submit_multi (refused as a whole)", d, 0, false)
		}
	}
	for id, r := range pers {
		named[r.to] = true
		want("personalized "+id, r.to, 1, false)
		if msg, ok := byID[id]; !ok || digits(msg.To) != r.to || !strings.Contains(msg.Text, r.text) {
			t.Errorf("personalized %s to %s %q: stored %+v", id, r.to, r.text, msg)
		}
	}
	for _, d := range persBad {
		if len(byDest[d]) > 0 || len(copies[d]) > 0 {
			t.Errorf("personalized invalid row to %s: %d messages, %d copies", d, len(byDest[d]), len(copies[d]))
		}
	}
	for d, n := range extraTo {
		named[d] = true
		// A send lost to a kill was sent again without a key: one more
		// message at most for each such loss.
		if got := len(byDest[d]); got < n {
			t.Errorf("%s: %d messages, %d sends accepted", d, got, n)
		}
		want("after an opt-out's removal", d, len(byDest[d]), false)
	}
	for name := range moreJobs {
		m.mu.Lock()
		b := m.jobs[name]
		m.mu.Unlock()
		if b == nil {
			continue
		}
		acc := jobProg[name].Accepted
		for i, d := range b.dests {
			named[d] = true
			if i < acc {
				want("job "+name, d, 1, false)
				if name == "tmpl" {
					for _, msg := range byDest[d] {
						if !strings.Contains(msg.Text, tmplText(i)) {
							t.Errorf("job tmpl row %d to %s: %q, want %q", i+1, d, msg.Text, tmplText(i))
						}
					}
				}
			} else {
				want("job "+name+" (after its accepted rows)", d, 0, false)
			}
		}
	}
	for d := range copies {
		if !named[d] {
			t.Errorf("the SMSC got %v for %s, which no workload names", copies[d], d)
		}
	}

	// 6. Receipts of the submit_multi: one (at least) for each accepted
	// recipient at the ESME, carrying the id the submit_multi answered.
	rcptDups := 0
	waitCond(t, drain, "every submit_multi receipt at the ESME", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range multis {
			for _, d := range s.ok {
				if m.rcpt[s.id][d] == 0 {
					return false
				}
			}
		}
		return true
	})
	m.mu.Lock()
	for _, s := range multis {
		for _, d := range s.ok {
			n := m.rcpt[s.id][d]
			rcptDups += n - 1
			if n > 1+kills {
				t.Errorf("submit_multi %s: receipt for %s %d times over %d kills", s.id, d, n, kills)
			}
		}
	}
	m.mu.Unlock()
	t.Logf("submit_multi: %d acknowledged, %d recipients accepted, %d refused beside them, %d answers lost, %d refused whole; personalized: %d rows, %d invalid; receipts sent twice %d",
		len(multis), multiOK, multiRefused, len(multiLost), len(multiRefd), len(pers), len(persBad), rcptDups)
	t.Logf("kills %d; %d segments sent twice (bound %d)", kills, smscDups, kills*100)
	if smscDups > kills*100 {
		t.Errorf("%d segments sent twice over %d kills", smscDups, kills)
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()
}

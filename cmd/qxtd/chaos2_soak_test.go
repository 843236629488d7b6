//go:build soak

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestSoakChaosTwoWay is TestSoakChaos's other half: the daemon restarted
// 5–8 times, now by SIGKILL, now by SIGTERM, at seeded moments, under the
// traffic that flows the other way or waits:
//
//   - handsets reply (the simulator's InjectMO) to the service numbers of
//     two enterprises, with and without extensions, some of them opt-out
//     keywords (TD, 退订, …) and near misses (TDX, 请退订吧); R1's replies
//     go to its receiver (rx1, which answers late now and then) and its
//     transceiver, and to its reply_url, which answers 503 for a stretch
//     and then recovers (and is asked to retry at once); R2's to its
//     receiver only;
//   - R1 schedules messages a few seconds ahead over SMPP
//     (schedule_delivery_time) and HTTP (send_at), cancels some (cancel_sm,
//     DELETE) and replaces some (replace_sm, PATCH; text, and sometimes a
//     later time) while others fall due across the restarts;
//   - enterprise B1 runs a batch job from an XLSX file with refused rows,
//     and a long CSV job that is cancelled (DELETE) between two restarts.
//
// Then, drained: every reply the SMSC had acknowledged is in the inbox
// once, reached an ESME of its enterprise (the one of its extension), and
// R1's its webhook, with the inbox's id; an acknowledged opt-out refuses
// that enterprise's sends to the number, not the other's; no cancelled
// message reached the SMSC; a replaced one reached it with the new text
// only; none went out before its time; the cancelled job stayed
// cancelled with no row sent after the cancel's answer; the other lists
// its refused rows; the usage is the delivered segments.
//
// SOAK_TWOWAY_SEED replays a seed.
func TestSoakChaosTwoWay(t *testing.T) {
	runTwoWaySoak(t, soakSeed(t, "SOAK_TWOWAY_SEED"), nil)
}

// runTwoWaySoak is TestSoakChaosTwoWay with seed; disk as runChaosSoak's.
func runTwoWaySoak(t *testing.T, seed uint64, disk *chaosDisk) {
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d))

	sim, simAddr := startSim(t, smpp.SimOptions{
		DLRDelay: 100 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Throttle: 0.03, Undeliv: 0.05},
	})
	x := newChaos(t)
	w := newTwoWay(x, seed)
	w.sim = sim
	// The reply endpoint fails from 2–5 s for 8–14 s.
	w.failFrom = began.Add(2*time.Second + time.Duration(rng.Int64N(int64(3*time.Second))))
	w.failTo = w.failFrom.Add(8*time.Second + time.Duration(rng.Int64N(int64(6*time.Second))))
	hooks := httptest.NewServer(http.HandlerFunc(w.replyHook))
	t.Cleanup(hooks.Close)

	dir := t.TempDir()
	cfg := writeConfig(t, dir, simAddr, twoWayAccounts)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replyBatch := 1
	if rng.IntN(2) == 0 {
		replyBatch = 20
	}
	t.Logf("R1's reply_batch %d; its reply endpoint fails from %v to %v", replyBatch,
		w.failFrom.Sub(began).Round(time.Millisecond), w.failTo.Sub(began).Round(time.Millisecond))
	ents := strings.ReplaceAll(twoWayEnterprises, "HOOK", hooks.URL+"/mo")
	ents = strings.Replace(ents, "BATCH", strconv.Itoa(replyBatch), 1)
	conf := strings.Replace(string(b), "enterprises:\n", "enterprises:\n"+ents, 1)
	conf += "webhooks: { allow_private: true }\n"
	if disk != nil {
		conf = strings.Replace(conf, filepath.Join(dir, "qxtd.db"), filepath.Join(disk.dir, "qxtd.db"), 1)
	}
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	x.net.set(d)
	base := "http://" + d.httpAddr
	for _, a := range []string{"snd1", "web2", "bulk"} {
		w.keys[a] = issueAPIKey(t, base, a)
	}
	x.bulkKey = w.keys["bulk"]

	submitCtx, stopSubmitting := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, actions, conns sync.WaitGroup
	defer func() {
		stopSubmitting()
		end()
		drivers.Wait()
		actions.Wait()
		conns.Wait()
	}()
	rx1 := &chaosESME{x: x, system: "rx1", kind: smpp.BindReceiver, handler: w.moHandler("rx1", true)}
	snd1 := &chaosESME{x: x, system: "snd1", handler: w.moHandler("snd1", false)}
	rx2 := &chaosESME{x: x, system: "rx2", kind: smpp.BindReceiver, handler: w.moHandler("rx2", false)}
	for _, e := range []*chaosESME{rx1, snd1, rx2} {
		conns.Go(func() { e.keepBound(endCtx) })
	}
	for i := range 2 {
		irng := rand.New(rand.NewPCG(seed+uint64(i), 3))
		drivers.Go(func() { w.injectLoop(submitCtx, i, irng) })
	}
	srng := rand.New(rand.NewPCG(seed+7, 4))
	drivers.Go(func() { w.scheduleLoop(submitCtx, snd1, srng, &actions) })
	drivers.Go(func() {
		tm := time.NewTimer(time.Until(w.failTo)) // the endpoint's recovery, then the retry-now a user would press
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-submitCtx.Done():
			return
		}
		w.retryReplies(submitCtx)
	})
	jobA, jobB := make(chan string, 1), make(chan string, 1)
	drivers.Go(func() {
		id := w.startJobA(submitCtx)
		jobA <- id
		if id != "" {
			conns.Go(func() { x.watchJob(endCtx, id, x.bulkKey) })
		}
	})
	drivers.Go(func() {
		id := w.startJobB(submitCtx)
		jobB <- id
		if id != "" {
			conns.Go(func() { x.watchJob(endCtx, id, x.bulkKey) })
		}
	})

	restarts := 5 + rng.IntN(4)
	terms := make([]bool, restarts)
	for k := range terms {
		terms[k] = rng.IntN(5) < 2
	}
	terms[rng.IntN(restarts)] = true
	for k := range terms {
		if !terms[k] {
			break
		}
		if k == restarts-1 {
			terms[rng.IntN(restarts)] = false
		}
	}
	cancelAt := 1 + rng.IntN(restarts-3) // the gap after restart cancelAt: at least two more follow
	var bID string
	for k := range restarts {
		gap := 2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
		if k == cancelAt {
			if bID == "" {
				bID = <-jobB
			}
			after := 300*time.Millisecond + time.Duration(rng.Int64N(int64(gap-800*time.Millisecond)))
			actions.Go(func() { w.cancelJob(endCtx, bID, after) })
		}
		tm := time.NewTimer(disk.failIn(t, rng, gap)) // the chaos schedule, not a wait for an event
		<-tm.C
		x.net.down()
		how := "kill -9"
		if terms[k] {
			how = "SIGTERM"
			if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.exited:
			case <-time.After(40 * time.Second):
				t.Fatalf("no exit 40 s after SIGTERM:\n%s", tail(d.log(), 100))
			}
			if code := d.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d after SIGTERM:\n%s", code, tail(d.log(), 100))
			}
		} else {
			if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-d.exited
		}
		w.restarts = append(w.restarts, how)
		if disk != nil {
			t.Logf("power cut after the %s: %s", how, disk.cut(rng))
		}
		d = startDaemon(t, cfg)
		x.net.set(d)
		t.Logf("%s (%d of %d) after %v: %s", how, k+1, restarts, gap.Round(time.Millisecond), w.counts())
	}
	disk.lastStretch(t) // a last stretch on the daemon that stays up
	stopSubmitting()
	drivers.Wait()
	actions.Wait()
	chaosEnd := time.Now()
	t.Logf("chaos over after %v: %s", chaosEnd.Sub(began).Round(time.Millisecond), w.counts())
	if bID == "" {
		bID = <-jobB
	}
	w.check(t, sim, "http://"+d.httpAddr, <-jobA, bID)
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 200))
	}
}

// R1: replies to 1065901 (+ 2 extension digits: rx1's is 12) go to rx1,
// snd1 and the reply_url; R2: replies to 1065902 go to rx2; B1 runs the
// batch jobs at 30 rows a second between them.
const twoWayEnterprises = `  - code: R1
    signature: "【回复一】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065901"
    ext_len: 2
    reply_url: HOOK
    reply_batch: BATCH
  - code: R2
    signature: "【回复二】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065902"
    ext_len: 2
  - code: B1
    signature: "【批量】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 30
`

const twoWayAccounts = `  - { system_id: rx1, password: secret1, enterprise: R1, extension: "12" }
  - { system_id: snd1, password: secret1, enterprise: R1, admin: true }
  - { system_id: rx2, password: secret1, enterprise: R2 }
  - { system_id: web2, password: secret1, enterprise: R2, admin: true }
  - { system_id: bulk, password: secret1, enterprise: B1, admin: true }
`

// moKey names one reply: every reply's text is unique for its handset
// and number (an opt-out keyword or a near miss comes from a handset
// used for nothing else).
type moKey struct{ from, to, text string }

// moSent is one reply injected, as the SMSC knows it.
type moSent struct {
	ent      string // R1, R2
	rcpt     string // the account of its extension ("": any of the enterprise's binds)
	acked    bool   // InjectMO returned nil: qxtd stored it
	keyword  bool   // an opt-out keyword
	nearMiss bool   // TDX, 请退订吧: no opt-out
}

// schedMsg is one scheduled message of R1 and what was done to it.
type schedMsg struct {
	id, dest, text string
	via            string    // smpp, http
	notBefore      time.Time // its time as asked (a lower bound of qxtd's)
	// replace: "" none, "acked", "refused" (on a first try: too late),
	// "maybe" (an answer lost); the same for cancel.
	replace, cancel string
	newText         string
	newNotBefore    time.Time // a replace that moved it later (acked)
}

type twoWay struct {
	x    *chaos
	sim  *smpp.Simulator
	seed uint64
	keys map[string]string // account → API key

	failFrom, failTo time.Time
	hookRefused      atomic.Int64 // POSTs answered 503
	hookPosts        atomic.Int64 // POSTs answered 204

	mu          sync.Mutex
	mos         map[moKey]*moSent
	handsets    atomic.Int64
	esme        map[moKey]map[string]int // account → deliver_sm answered
	hooked      map[moKey][]string       // ids posted and answered 2xx
	sched       map[string]*schedMsg
	schedMaybe  []string // destinations of scheduled submits whose answer was lost
	optChecked  int      // opt-outs checked at once after their reply
	jobBCancel  *jobProgress
	jobBCancelN int // DELETEs tried
	restarts    []string
	slowRng     *rand.Rand
}

func newTwoWay(x *chaos, seed uint64) *twoWay {
	return &twoWay{x: x, seed: seed, keys: map[string]string{}, mos: map[moKey]*moSent{},
		esme: map[moKey]map[string]int{}, hooked: map[moKey][]string{}, sched: map[string]*schedMsg{},
		slowRng: rand.New(rand.NewPCG(seed+99, 5))}
}

func (w *twoWay) counts() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked, kw := 0, 0
	for _, m := range w.mos {
		if m.acked {
			acked++
			if m.keyword {
				kw++
			}
		}
	}
	var c, r int
	for _, s := range w.sched {
		if s.cancel == "acked" {
			c++
		}
		if s.replace == "acked" {
			r++
		}
	}
	return fmt.Sprintf("replies %d injected, %d acknowledged (%d opt-outs); scheduled %d (%d cancelled, %d replaced); reply POSTs 503 %d, 204 %d",
		len(w.mos), acked, kw, len(w.sched), c, r, w.hookRefused.Load(), w.hookPosts.Load())
}

func (w *twoWay) conflict(format string, args ...any) {
	w.x.mu.Lock()
	w.x.conflicts = append(w.x.conflicts, fmt.Sprintf(format, args...))
	w.x.mu.Unlock()
}

// replyHook is R1's reply_url: 503 between failFrom and failTo, else 204
// and the replies recorded.
func (w *twoWay) replyHook(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if now := time.Now(); !now.Before(w.failFrom) && now.Before(w.failTo) {
		w.hookRefused.Add(1)
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var batch webhook.ReplyBatch
	if err := json.Unmarshal(body, &batch); err != nil || len(batch.Replies) == 0 {
		var rp webhook.Reply
		if err := json.Unmarshal(body, &rp); err != nil || rp.ID == "" {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		batch.Replies = []webhook.Reply{rp}
	}
	w.hookPosts.Add(1)
	w.mu.Lock()
	for _, rp := range batch.Replies {
		k := moKey{rp.From, rp.To, rp.Text}
		w.hooked[k] = append(w.hooked[k], rp.ID)
	}
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// moHandler records the replies account's binds get; a slow one answers
// one in twenty 0.3–2.3 s late.
func (w *twoWay) moHandler(account string, slow bool) smpp.Handler {
	return smpp.HandlerFunc(func(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if _, err := smpp.ParseReceipt(p); err == nil {
			return pdu.NewDeliverSMResp()
		}
		text, _, err := segment.DecodeIncoming(smpp.Byte(p, pdufield.DataCoding), smpp.Byte(p, pdufield.ESMClass),
			smpp.Bytes(p, pdufield.ShortMessage), smpp.TLV(p, pdutlv.TagMessagePayload), false)
		if err != nil {
			w.conflict("%s: undecodable reply: %v", account, err)
		}
		if slow {
			w.mu.Lock()
			late := w.slowRng.IntN(20) == 0
			delay := 300*time.Millisecond + time.Duration(w.slowRng.Int64N(int64(2*time.Second)))
			w.mu.Unlock()
			if late {
				tm := time.NewTimer(delay) // a slow ESME
				select {
				case <-tm.C:
				case <-ctx.Done():
					tm.Stop()
					return nil // the bind went: no answer
				}
			}
		}
		k := moKey{smpp.Str(p, pdufield.SourceAddr), smpp.Str(p, pdufield.DestinationAddr), text}
		w.mu.Lock()
		if w.esme[k] == nil {
			w.esme[k] = map[string]int{}
		}
		w.esme[k][account]++
		w.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

var (
	optOutWords = []string{"TD", "td。", "退订", "T", " Td "}
	nearMisses  = []string{"TDX", "请退订吧"}
)

// injectLoop injects replies about four a second: to R1 (two in three:
// its number, rx1's extension 12, or extension 34 that is nobody's) or R2
// (its number, or extension 56), from a pool of 30 handsets with unique
// texts; one in twelve is an opt-out keyword and one in twenty-five a
// near miss, each from a handset of its own.
func (w *twoWay) injectLoop(ctx context.Context, n int, rng *rand.Rand) {
	tick := time.NewTicker(250 * time.Millisecond) // pacing
	defer tick.Stop()
	cl := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, _, _, ok := w.x.net.current(ctx); !ok {
			return
		}
		m := &moSent{ent: "R1"}
		var to string
		if rng.IntN(3) == 0 {
			m.ent = "R2"
			to = []string{"1065902", "106590256"}[rng.IntN(2)]
		} else {
			to = []string{"1065901", "106590112", "106590134"}[rng.IntN(3)]
			if to == "106590112" {
				m.rcpt = "rx1"
			}
		}
		from := fmt.Sprintf("1380%07d", rng.IntN(30))
		text := fmt.Sprintf("回复 %d-%d", n, i)
		if i%2 == 0 {
			text = fmt.Sprintf("reply %d-%d", n, i)
		}
		switch r := rng.IntN(100); {
		case r < 8:
			m.keyword = true
			text = optOutWords[rng.IntN(len(optOutWords))]
			from = fmt.Sprintf("1381%07d", w.handsets.Add(1))
		case r < 12:
			m.nearMiss = true
			text = nearMisses[rng.IntN(len(nearMisses))]
			from = fmt.Sprintf("1381%07d", w.handsets.Add(1))
		}
		k := moKey{from, to, text}
		w.mu.Lock()
		w.mos[k] = m
		w.mu.Unlock()
		err := w.sim.InjectMO(from, to, text)
		if err != nil {
			continue // not acknowledged: stored or not
		}
		w.mu.Lock()
		m.acked = true
		w.mu.Unlock()
		if m.keyword && rng.IntN(2) == 0 {
			w.sendOptedOut(ctx, cl, m.ent, from)
		}
	}
}

// sendOptedOut sends to a number just opted out of ent, on the daemon
// that acknowledged the reply (or the next one): refused opted_out.
func (w *twoWay) sendOptedOut(ctx context.Context, cl *http.Client, ent, number string) {
	key := w.keys["snd1"]
	if ent == "R2" {
		key = w.keys["web2"]
	}
	body, _ := json.Marshal(map[string]any{"to": []string{number}, "text": "退订之后"})
	for {
		code, resp, _, ok := w.x.post(ctx, cl, "/v1/messages", key, "", "application/json", string(body))
		if !ok {
			return
		}
		if code == 0 {
			continue
		}
		var res sendResults
		if code != http.StatusOK || json.Unmarshal([]byte(resp), &res) != nil || len(res.Results) != 1 ||
			res.Results[0].Status != "refused" || res.Results[0].Reason != "opted_out" {
			w.conflict("send from %s to %s after its opt-out was acknowledged: %d %s", ent, number, code, resp)
		}
		w.mu.Lock()
		w.optChecked++
		w.mu.Unlock()
		return
	}
}

type sendResults struct {
	Results []struct {
		To, Status, ID, Reason string
	}
}

// scheduleLoop schedules a message of R1 about three a second, 3–12 s
// ahead, over SMPP (snd1) or HTTP (keyed, retried until answered); of
// those at least 5 s ahead, one in three is cancelled and one in three
// replaced at a random moment at least 2.5 s before its time.
func (w *twoWay) scheduleLoop(ctx context.Context, snd1 *chaosESME, rng *rand.Rand, actions *sync.WaitGroup) {
	tick := time.NewTicker(350 * time.Millisecond) // pacing
	defer tick.Stop()
	cl := &http.Client{Timeout: 10 * time.Second}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		dest := w.x.dest("1391")
		text := "sched " + dest
		ahead := 3 + rng.IntN(10)
		s := &schedMsg{dest: dest, text: text}
		if rng.IntN(2) == 0 {
			s.via = "smpp"
			c := snd1.bound(ctx)
			if c == nil {
				return
			}
			p := pdu.NewSubmitSM(nil)
			f := p.Fields()
			_ = f.Set(pdufield.DestinationAddr, dest)
			_ = f.Set(pdufield.ShortMessage, []byte(text))
			_ = f.Set(pdufield.ScheduleDeliveryTime, fmt.Sprintf("0000000000%02d000R", ahead))
			s.notBefore = time.Now().Add(time.Duration(ahead) * time.Second)
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			resp, err := c.Request(rctx, p)
			cancel()
			if err != nil {
				// ESME_RSYSERR: the store failed (TestSoakDiskErrorsTwoWay's
				// disk); written all the same if the commit's sync alone
				// failed: a maybe, as a lost answer is.
				if st := smppStatus(err); st != 0 && st != smpp.StatusSystemError {
					w.conflict("scheduled submit to %s refused: %v", dest, err)
				} else {
					w.mu.Lock()
					w.schedMaybe = append(w.schedMaybe, dest)
					w.mu.Unlock()
				}
				continue
			}
			s.id = smpp.Str(resp, pdufield.MessageID)
		} else {
			s.via = "http"
			at := time.Now().Add(time.Duration(ahead) * time.Second).Truncate(time.Second)
			s.notBefore = at
			body, _ := json.Marshal(map[string]any{"to": []string{dest}, "text": text, "send_at": at.Format(time.RFC3339)})
			var code int
			var resp string
			for {
				var ok bool
				code, resp, _, ok = w.x.post(ctx, cl, "/v1/messages", w.keys["snd1"], fmt.Sprintf("sched-%d", n), "application/json", string(body))
				if !ok {
					return
				}
				if code != 0 && code < 500 {
					break
				}
			}
			var res sendResults
			if code != http.StatusOK || json.Unmarshal([]byte(resp), &res) != nil || len(res.Results) != 1 || res.Results[0].Status != "accepted" {
				w.conflict("scheduled send to %s: %d %s", dest, code, resp)
				continue
			}
			s.id = res.Results[0].ID
		}
		w.mu.Lock()
		w.sched[s.id] = s
		w.mu.Unlock()
		room := time.Until(s.notBefore) - 2500*time.Millisecond
		if room < 500*time.Millisecond {
			continue
		}
		act := rng.IntN(3)
		if act == 2 {
			continue
		}
		at := 200*time.Millisecond + time.Duration(rng.Int64N(int64(room-200*time.Millisecond)))
		useSMPP := rng.IntN(2) == 0
		later := 0
		if act == 1 && rng.IntN(3) == 0 {
			later = 2 + rng.IntN(4)
		}
		actions.Go(func() {
			tm := time.NewTimer(at) // the moment the user changes its mind
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-ctx.Done():
				return
			}
			if act == 0 {
				w.cancelSched(ctx, cl, snd1, s, useSMPP)
			} else {
				w.replaceSched(ctx, cl, snd1, s, useSMPP, later)
			}
		})
	}
}

// cancelSched cancels s (cancel_sm or DELETE), again after an answer
// lost.
func (w *twoWay) cancelSched(ctx context.Context, cl *http.Client, snd1 *chaosESME, s *schedMsg, useSMPP bool) {
	lost := false
	outcome := ""
	for outcome == "" {
		if useSMPP {
			c := snd1.bound(ctx)
			if c == nil {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := cancelSM(rctx, c, s.id)
			cancel()
			switch st := smppStatus(err); {
			case err == nil:
				outcome = "acked"
			case st == pdu.Status(0x11): // ESME_RCANCELFAIL: sent (or cancelled by the lost try)
				outcome = "refused"
			case st != 0 && st != smpp.StatusSystemError && st != smpp.StatusInvalidBindStatus:
				// ESME_RSYSERR, the store failed: as lost (done if only
				// its sync failed). ESME_RINVBNDSTS: sent as a stop's
				// unbind crossed it, not run: as lost too.
				w.conflict("cancel_sm %s: %v", s.id, err)
				return
			default:
				lost = true
			}
		} else {
			code, body, _, ok := w.x.do(ctx, cl, http.MethodDelete, "/v1/messages/"+s.id, w.keys["snd1"], "", "", "")
			switch {
			case !ok:
				return
			case code == http.StatusOK:
				outcome = "acked"
			case code == http.StatusConflict && strings.Contains(body, "not_scheduled"):
				outcome = "refused"
			case code == 0 || code >= 500:
				lost = true
			default:
				w.conflict("DELETE %s: %d %s", s.id, code, body)
				return
			}
		}
	}
	if lost && outcome == "refused" {
		outcome = "maybe"
	}
	w.mu.Lock()
	s.cancel = outcome
	w.mu.Unlock()
}

// replaceSched replaces s's text (replace_sm or PATCH), and its time
// later by later seconds if not 0, again after an answer lost.
func (w *twoWay) replaceSched(ctx context.Context, cl *http.Client, snd1 *chaosESME, s *schedMsg, useSMPP bool, later int) {
	newText := "new " + s.dest
	lost := false
	outcome := ""
	var newNotBefore time.Time
	for outcome == "" {
		if useSMPP {
			c := snd1.bound(ctx)
			if c == nil {
				return
			}
			sched := ""
			if later > 0 {
				ahead := int(time.Until(s.notBefore).Seconds()) + later
				sched = fmt.Sprintf("0000000000%02d000R", ahead)
				newNotBefore = time.Now().Add(time.Duration(ahead) * time.Second)
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := replaceSM(rctx, c, s.id, sched, newText)
			cancel()
			switch st := smppStatus(err); {
			case err == nil:
				outcome = "acked"
			case st == pdu.Status(0x13): // ESME_RREPLACEFAIL: no longer scheduled
				outcome = "refused"
			case st != 0 && st != smpp.StatusSystemError && st != smpp.StatusInvalidBindStatus: // as cancel_sm's
				w.conflict("replace_sm %s: %v", s.id, err)
				return
			default:
				lost = true
			}
		} else {
			patch := map[string]any{"text": newText}
			if later > 0 {
				newNotBefore = s.notBefore.Add(time.Duration(later) * time.Second).Truncate(time.Second)
				patch["send_at"] = newNotBefore.Format(time.RFC3339)
			}
			body, _ := json.Marshal(patch)
			code, resp, _, ok := w.x.do(ctx, cl, http.MethodPatch, "/v1/messages/"+s.id, w.keys["snd1"], "", "application/json", string(body))
			switch {
			case !ok:
				return
			case code == http.StatusOK:
				outcome = "acked"
			case code == http.StatusConflict && strings.Contains(resp, "not_scheduled"):
				outcome = "refused"
			case code == 0 || code >= 500:
				lost = true
			default:
				w.conflict("PATCH %s: %d %s", s.id, code, resp)
				return
			}
		}
	}
	if lost && outcome != "acked" {
		outcome = "maybe"
	}
	w.mu.Lock()
	s.replace, s.newText = outcome, newText
	if outcome == "acked" && later > 0 {
		s.newNotBefore = newNotBefore
	}
	w.mu.Unlock()
}

// retryReplies asks for R1's waiting replies at once (立即重试回复) once
// its endpoint works again.
func (w *twoWay) retryReplies(ctx context.Context) {
	cl := &http.Client{Timeout: 10 * time.Second}
	for {
		code, body, _, ok := w.x.post(ctx, cl, "/v1/receipt-webhook/retry", w.keys["snd1"], "", "application/json", `{"kind":"reply"}`)
		if !ok || code == http.StatusOK || code == http.StatusTooManyRequests {
			return
		}
		if code != 0 && code < 500 {
			w.conflict("reply retry-now: %d %s", code, body)
			return
		}
	}
}

// jobA's rows: every twentieth from the 8th an invalid number, from the
// 14th an empty text, every fortieth from the 4th a number Excel cut.
const jobARows = 240

func jobARefusal(i int) string {
	switch {
	case i%20 == 7:
		return "invalid_number"
	case i%20 == 13:
		return "empty_text"
	case i%40 == 3:
		return "number_truncated"
	}
	return ""
}

// startJobA uploads B1's XLSX job with refused rows.
func (w *twoWay) startJobA(ctx context.Context) string {
	f := excelize.NewFile()
	b := &chaosBatch{rows: jobARows}
	for i := range jobARows {
		num, text := w.x.dest("1353"), fmt.Sprintf("表格第%d行", i+1)
		switch jobARefusal(i) {
		case "invalid_number":
			num = "12345"
		case "empty_text":
			text = ""
		case "number_truncated":
			num = "1.38001E+10"
		default:
			b.dests = append(b.dests, num)
		}
		_ = f.SetCellStr("Sheet1", fmt.Sprintf("A%d", i+1), num)
		if text != "" {
			_ = f.SetCellStr("Sheet1", fmt.Sprintf("B%d", i+1), text)
		}
	}
	buf, err := f.WriteToBuffer()
	if err != nil {
		w.conflict("xlsx: %v", err)
		return ""
	}
	return w.upload(ctx, 1, b, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", buf.String())
}

// jobBRows is the job cancelled: at 15 rows a second, far from its end.
const jobBRows = 2000

func (w *twoWay) startJobB(ctx context.Context) string {
	b := &chaosBatch{rows: jobBRows}
	var file strings.Builder
	for i := range jobBRows {
		d := w.x.dest("1354")
		b.dests = append(b.dests, d)
		fmt.Fprintf(&file, "%s,撤销的批量第%d行\n", d, i+1)
	}
	return w.upload(ctx, 2, b, "text/csv", file.String())
}

// upload posts a job's file with an Idempotency-Key, again after a lost
// answer.
func (w *twoWay) upload(ctx context.Context, n int, b *chaosBatch, ctype, file string) string {
	b.file = file
	cl := &http.Client{Timeout: 30 * time.Second}
	for {
		code, body, _, ok := w.x.post(ctx, cl, "/v1/batches", w.keys["bulk"], fmt.Sprintf("twoway-%d", n), ctype, file)
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
			w.conflict("batch %d: %d %s", n, code, body)
			return ""
		}
		b.id = created.JobID
		w.x.mu.Lock()
		w.x.batches[n] = b
		w.x.mu.Unlock()
		return b.id
	}
}

// cancelJob cancels job id after a while, again after a lost answer, and
// keeps the answer.
func (w *twoWay) cancelJob(ctx context.Context, id string, after time.Duration) {
	tm := time.NewTimer(after) // the user's moment
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
		return
	}
	cl := &http.Client{Timeout: 30 * time.Second}
	for tries := 1; ; tries++ {
		code, body, _, ok := w.x.do(ctx, cl, http.MethodDelete, "/v1/batches/"+id, w.keys["bulk"], "", "", "")
		if !ok {
			return
		}
		if code == 0 || code >= 500 {
			// As a client honouring Retry-After would, sooner: a 503
			// (the cancel not stored, the disk failing) is tried
			// again after a pause, not in a tight loop.
			pause := time.NewTimer(100 * time.Millisecond)
			select {
			case <-pause.C:
			case <-ctx.Done():
				pause.Stop()
				return
			}
			continue
		}
		var p jobProgress
		if code != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil {
			w.conflict("cancel job %s: %d %s", id, code, body)
			return
		}
		w.mu.Lock()
		w.jobBCancel, w.jobBCancelN = &p, tries
		w.mu.Unlock()
		w.x.t.Logf("job %s cancelled (try %d): %+v", id, tries, p)
		return
	}
}

// jobErrors is GET /v1/batches/{id} with its row errors.
type jobErrors struct {
	jobProgress
	Errors []struct {
		Row    int
		Number string
		Reason string
	}
	UnsentRows []struct{ From, To int } `json:"unsent_rows"`
}

// smscCopy is one submit_sm the SMSC accepted, its text decoded.
type smscCopy struct {
	text string
	at   time.Time
}

func (w *twoWay) check(t *testing.T, sim *smpp.Simulator, base, jobAID, jobBID string) {
	x := w.x
	drain := 90 * time.Second
	keyOf := map[string]string{"R1": w.keys["snd1"], "R2": w.keys["web2"], "B1": w.keys["bulk"]}
	other := map[string]string{"R1": "R2", "R2": "R1"}
	w.mu.Lock()
	mos := make(map[moKey]moSent, len(w.mos))
	for k, m := range w.mos {
		mos[k] = *m
	}
	sched := make(map[string]schedMsg, len(w.sched))
	for id, s := range w.sched {
		sched[id] = *s
	}
	maybeDests := slices.Clone(w.schedMaybe)
	cancelAnswer, optChecked := w.jobBCancel, w.optChecked
	w.mu.Unlock()
	kills, terms := 0, 0
	for _, r := range w.restarts {
		if r == "SIGTERM" {
			terms++
		} else {
			kills++
		}
	}

	// 1. Replies: in the inbox once, at an ESME of the enterprise (of the
	// extension's account), at R1's webhook with the inbox's id.
	type inboxItem struct {
		ID, From, To, Extension, Account, Text string
		Forwarded                              bool
	}
	inbox := map[moKey][]inboxItem{}
	inboxEnt := map[moKey]string{}
	for _, ent := range []string{"R1", "R2"} {
		var items []inboxItem
		waitCond(t, drain, "every reply in "+ent+"'s inbox forwarded", func() bool {
			items = nil
			req, _ := http.NewRequest(http.MethodGet, base+"/v1/inbox/export?format=jsonl", nil)
			req.Header.Set("Authorization", "Bearer "+keyOf[ent])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("inbox export of %s: %d %s", ent, resp.StatusCode, b)
			}
			all := true
			for line := range bytes.Lines(b) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				var it inboxItem
				if err := json.Unmarshal(line, &it); err != nil {
					t.Fatalf("inbox line %q: %v", line, err)
				}
				items = append(items, it)
				all = all && it.Forwarded
			}
			return all
		})
		for _, it := range items {
			k := moKey{it.From, it.To, it.Text}
			inbox[k] = append(inbox[k], it)
			inboxEnt[k] = ent
		}
	}
	acked, unackedStored, unackedLost := 0, 0, 0
	for k, m := range mos {
		items := inbox[k]
		switch {
		case m.acked && len(items) != 1:
			t.Errorf("reply %+v acknowledged to the SMSC: %d times in the inbox", k, len(items))
		case !m.acked && len(items) > 1:
			t.Errorf("reply %+v (its injection failed) %d times in the inbox", k, len(items))
		case !m.acked && len(items) == 1:
			unackedStored++
		case !m.acked:
			unackedLost++
		default:
			acked++
		}
		if len(items) > 0 {
			it := items[0]
			wantExt := strings.TrimPrefix(strings.TrimPrefix(k.to, "1065901"), "1065902")
			if inboxEnt[k] != m.ent || it.Account != m.rcpt || it.Extension != wantExt {
				t.Errorf("reply %+v in %s's inbox as %+v, want %s's, account %q, extension %q", k, inboxEnt[k], it, m.ent, m.rcpt, wantExt)
			}
		}
	}
	for k, items := range inbox {
		if _, ok := mos[k]; !ok {
			t.Errorf("inbox holds %+v (%d), which no handset sent", k, len(items))
		}
	}
	entAccounts := map[string][]string{"R1": {"rx1", "snd1"}, "R2": {"rx2"}}
	stored := func(k moKey) bool { return len(inbox[k]) > 0 }
	waitCond(t, drain, "every stored reply at an ESME and R1's at the webhook", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for k, m := range mos {
			if !stored(k) {
				continue
			}
			n := 0
			for _, a := range entAccounts[m.ent] {
				n += w.esme[k][a]
			}
			if n == 0 || (m.ent == "R1" && len(w.hooked[k]) == 0) {
				return false
			}
		}
		return true
	})
	esmeDups, hookDups := 0, 0
	w.mu.Lock()
	for k, got := range w.esme {
		m, ok := mos[k]
		if !ok || !stored(k) {
			t.Errorf("an ESME got reply %+v (%v), which is not in the inbox", k, got)
			continue
		}
		n := 0
		for a, c := range got {
			if !slices.Contains(entAccounts[m.ent], a) || (m.rcpt != "" && a != m.rcpt) {
				t.Errorf("reply %+v of %s (for %q) reached %s", k, m.ent, m.rcpt, a)
			}
			n += c
		}
		esmeDups += n - 1
	}
	for k, ids := range w.hooked {
		m, ok := mos[k]
		if !ok || !stored(k) || m.ent != "R1" {
			t.Errorf("R1's webhook got reply %+v (%v), not one of R1's inbox", k, ids)
			continue
		}
		for _, id := range ids {
			if id != inbox[k][0].ID {
				t.Errorf("reply %+v posted with id %s, the inbox's is %s", k, id, inbox[k][0].ID)
			}
		}
		hookDups += len(ids) - 1
	}
	w.mu.Unlock()
	t.Logf("replies: %d injected, %d acknowledged, %d not acknowledged but stored, %d lost unacknowledged; duplicates: %d at the ESMEs, %d at the webhook (%d POSTs refused 503, %d answered)",
		len(mos), acked, unackedStored, unackedLost, esmeDups, hookDups, w.hookRefused.Load(), w.hookPosts.Load())
	if w.hookRefused.Load() == 0 {
		t.Errorf("the reply endpoint refused nothing: its failure was not exercised")
	}

	// 2. Opt-outs: an acknowledged keyword listed and refused for its
	// enterprise only; a near miss not listed.
	cl := &http.Client{Timeout: 10 * time.Second}
	listed := map[string]map[string]bool{}
	for _, ent := range []string{"R1", "R2"} {
		var page struct {
			Entries []struct{ Number string }
			Next    string
		}
		listed[ent] = map[string]bool{}
		if _, err := getJSON(base, "/v1/optouts?limit=1000", keyOf[ent], &page); err != nil {
			t.Fatalf("optouts of %s: %v", ent, err)
		}
		for _, e := range page.Entries {
			listed[ent][digits(e.Number)] = true
		}
	}
	extra := map[string][]string{} // messages sent here: enterprise → destinations
	send := func(ent, number string) (status, reason string) {
		body, _ := json.Marshal(map[string]any{"to": []string{number}, "text": "退订检查"})
		code, resp, _, _ := x.post(context.Background(), cl, "/v1/messages", keyOf[ent], "", "application/json", string(body))
		var res sendResults
		if code != http.StatusOK || json.Unmarshal([]byte(resp), &res) != nil || len(res.Results) != 1 {
			t.Fatalf("send from %s to %s: %d %s", ent, number, code, resp)
		}
		if res.Results[0].Status == "accepted" {
			extra[ent] = append(extra[ent], number)
		}
		return res.Results[0].Status, res.Results[0].Reason
	}
	optOuts := 0
	mayList := map[string]map[string]bool{"R1": {}, "R2": {}}
	for k, m := range mos {
		switch {
		case m.keyword && m.acked:
			optOuts++
			mayList[m.ent][k.from] = true
			if !listed[m.ent][k.from] {
				t.Errorf("%s replied %q to %s (acknowledged): not on %s's opt-out list", k.from, k.text, k.to, m.ent)
			}
			if st, r := send(m.ent, k.from); st != "refused" || r != "opted_out" {
				t.Errorf("send from %s to %s after its %q: %s %s, want refused opted_out", m.ent, k.from, k.text, st, r)
			}
			if st, r := send(other[m.ent], k.from); st != "accepted" {
				t.Errorf("send from %s to %s (opted out of %s only): %s %s", other[m.ent], k.from, m.ent, st, r)
			}
		case m.keyword:
			mayList[m.ent][k.from] = true
		case m.nearMiss && stored(k):
			if listed[m.ent][k.from] {
				t.Errorf("%s replied %q to %s: opted out by a near miss", k.from, k.text, m.ent)
			}
			if st, r := send(m.ent, k.from); st != "accepted" {
				t.Errorf("send from %s to %s after %q: %s %s", m.ent, k.from, k.text, st, r)
			}
		}
	}
	for ent, nums := range listed {
		for n := range nums {
			if !mayList[ent][n] {
				t.Errorf("%s is on %s's opt-out list without an opt-out reply", n, ent)
			}
		}
	}
	t.Logf("opt-outs: %d acknowledged (%d checked at once, the rest after the restarts), listed R1 %d, R2 %d", optOuts, optChecked, len(listed["R1"]), len(listed["R2"]))

	// 3. The batch jobs: A done with its refused rows listed; B cancelled,
	// no row sent after the cancel's answer.
	var pa, pb jobErrors
	waitCond(t, drain, "job A ended", func() bool {
		_, err := getJSON(base, "/v1/batches/"+jobAID, keyOf["B1"], &pa)
		return err == nil && pa.State != "running"
	})
	var wantRefused []string
	for i := range jobARows {
		if r := jobARefusal(i); r != "" {
			wantRefused = append(wantRefused, fmt.Sprintf("%d:%s", i+1, r))
		}
	}
	var gotRefused []string
	for _, e := range pa.Errors {
		gotRefused = append(gotRefused, fmt.Sprintf("%d:%s", e.Row, e.Reason))
	}
	if pa.State != "done" || pa.RowsRead != jobARows || pa.Refused != len(wantRefused) || pa.Accepted != jobARows-len(wantRefused) || pa.Unsent != 0 {
		t.Errorf("job A (%s): %+v, want done, %d rows, %d refused", jobAID, pa.jobProgress, jobARows, len(wantRefused))
	}
	if !slices.Equal(gotRefused, wantRefused) {
		t.Errorf("job A's refused rows: %v, want %v", gotRefused, wantRefused)
	}
	waitCond(t, drain, "job B ended", func() bool {
		_, err := getJSON(base, "/v1/batches/"+jobBID, keyOf["B1"], &pb)
		return err == nil && pb.State != "running"
	})
	if cancelAnswer == nil {
		t.Errorf("job B's cancel never answered")
	} else {
		if pb.State != "cancelled" || pb.Refused != 0 || pb.RowsRead != pb.Accepted+pb.Refused+pb.Unsent || pb.RowsRead > jobBRows {
			t.Errorf("job B (%s): %+v, want cancelled, rows read = accepted + unsent", jobBID, pb.jobProgress)
		}
		if cancelAnswer.State == "cancelled" && pb.Accepted != cancelAnswer.Accepted {
			t.Errorf("job B: %d rows accepted, %d when its cancel was answered %+v", pb.Accepted, cancelAnswer.Accepted, *cancelAnswer)
		}
		if cancelAnswer.State != "cancelled" && pb.Accepted > cancelAnswer.Accepted+100 {
			t.Errorf("job B: %d rows accepted, %d when its cancel was answered (running) %+v", pb.Accepted, cancelAnswer.Accepted, *cancelAnswer)
		}
	}
	t.Logf("job A %+v; job B %+v (cancel answered %+v)", pa.jobProgress, pb.jobProgress, cancelAnswer)

	// 4. The outboxes: every message final; scheduled ones as changed;
	// one message a destination; the SMSC's copies.
	waitCond(t, drain, "R1's scheduled outbox empty", func() bool {
		var page struct{ Messages []chaosMessage }
		_, err := getJSON(base, "/v1/scheduled", keyOf["R1"], &page)
		return err == nil && len(page.Messages) == 0
	})
	outbox := map[string][]chaosMessage{}
	for _, ent := range []string{"R1", "R2", "B1"} {
		waitCond(t, drain, "every message of "+ent+" final", func() bool {
			outbox[ent] = export(t, base, keyOf[ent])
			for _, m := range outbox[ent] {
				if !final(m.State) {
					return false
				}
			}
			return true
		})
	}
	copies := map[string][]smscCopy{}
	for _, m := range sim.Received() {
		text, err := segment.Reassemble([]segment.Frame{{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs}}, segment.Options{})
		if err != nil {
			t.Errorf("SMSC copy to %s: %v", m.Dest, err)
		}
		copies[m.Dest] = append(copies[m.Dest], smscCopy{text, m.At})
	}
	smscDups := 0
	named := map[string]bool{}
	byID := map[string]chaosMessage{}
	jobBSent := 0
	for _, ent := range []string{"R1", "R2", "B1"} {
		seen := map[string]string{}
		var delivered int64
		for _, m := range outbox[ent] {
			d := digits(m.To)
			named[d] = true
			byID[m.ID] = m
			if prev, ok := seen[d]; ok {
				t.Errorf("%s: two messages to %s: %s and %s", ent, d, prev, m.ID)
			}
			seen[d] = m.ID
			if strings.HasPrefix(d, "1354") {
				jobBSent++
			}
			cs := copies[d]
			switch {
			case m.State == "cancelled":
				if len(cs) != 0 {
					t.Errorf("message %s to %s cancelled, yet the SMSC got it %d times", m.ID, d, len(cs))
				}
				continue
			case m.State == "rejected":
				t.Errorf("message %s to %s rejected (%s)", m.ID, d, m.ErrorCode)
				continue
			case len(cs) == 0:
				t.Errorf("message %s to %s (%s) never reached the SMSC", m.ID, d, m.State)
				continue
			}
			smscDups += len(cs) - 1
			if len(cs) > 1+kills+terms {
				t.Errorf("message %s to %s reached the SMSC %d times over %d restarts", m.ID, d, len(cs), kills+terms)
			}
			if m.State == "delivered" {
				delivered += int64(m.Segments)
			} else if m.Segments > 1 {
				var full chaosMessage
				if _, err := getJSON(base, "/v1/messages/"+m.ID, keyOf[ent], &full); err != nil {
					t.Fatalf("message %s: %v", m.ID, err)
				}
				for _, p := range full.Parts {
					if p.State == "delivered" {
						delivered++
					}
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
	for d, cs := range copies {
		if !named[d] {
			t.Errorf("the SMSC got %d copies for %s, which no stored message names", len(cs), d)
		}
	}
	if pb.State == "cancelled" && jobBSent != pb.Accepted {
		t.Errorf("job B: %d messages in the outbox, %d rows accepted", jobBSent, pb.Accepted)
	}
	for n, bt := range x.batches {
		if n == 2 {
			// The cancelled job: its accepted rows are not always its
			// first ones (chunks run BatchInFlight at once, and one
			// waiting for a failing store may be unsent at the cancel
			// while a later one was taken), but as many are stored as
			// it counts, none past the rows it read.
			// It lists which rows it did not send (unsent_rows), unless
			// it ended at a restart: each row read is sent or listed.
			unsent := map[int]bool{}
			for _, rg := range pb.UnsentRows {
				for row := rg.From; row <= rg.To; row++ {
					unsent[row] = true
				}
			}
			listed := len(unsent) == pb.Unsent
			sentRows := 0
			for i, d := range bt.dests {
				sent := named[d] || len(copies[d]) > 0
				if listed && i < pb.RowsRead && sent == unsent[i+1] {
					t.Errorf("batch 2: row %d to %s: sent %v, listed unsent %v", i+1, d, sent, unsent[i+1])
				}
				if !sent {
					continue
				}
				sentRows++
				if i >= pb.RowsRead {
					t.Errorf("batch 2: row %d to %s sent, past the %d rows the cancelled job read", i+1, d, pb.RowsRead)
				}
			}
			if sentRows != pb.Accepted {
				t.Errorf("batch 2: %d rows sent, the cancelled job counts %d accepted", sentRows, pb.Accepted)
			}
			t.Logf("batch 2: unsent rows %v (listed: %v)", pb.UnsentRows, listed)
			continue
		}
		for _, d := range bt.dests {
			if !named[d] {
				t.Errorf("batch %d: row to %s accepted but no message", n, d)
			}
		}
	}

	// 5. Scheduled messages: a cancel answered OK holds; a replace
	// answered OK sends the new text only; none before its time.
	nCancelled, nReplaced, nMaybe := 0, 0, 0
	var minLate, maxLate time.Duration // of a copy after its time
	nLate := 0
	for id, s := range sched {
		m, ok := byID[id]
		if !ok {
			t.Errorf("scheduled %s to %s: not in the outbox", id, s.dest)
			continue
		}
		cs := copies[s.dest]
		if s.cancel == "acked" && m.State != "cancelled" {
			t.Errorf("scheduled %s to %s: cancel answered OK (%s), yet %s", id, s.dest, s.via, m.State)
		}
		if m.State == "cancelled" {
			nCancelled++
			if s.cancel != "acked" && s.cancel != "maybe" {
				t.Errorf("scheduled %s to %s cancelled; its cancel was %q", id, s.dest, s.cancel)
			}
			continue
		}
		var full struct {
			SendAt time.Time `json:"send_at"`
		}
		if _, err := getJSON(base, "/v1/messages/"+id, keyOf["R1"], &full); err != nil {
			t.Fatalf("message %s: %v", id, err)
		}
		notBefore := s.notBefore
		if s.newNotBefore.After(notBefore) {
			notBefore = s.newNotBefore
		}
		if full.SendAt.After(notBefore) {
			notBefore = full.SendAt
		}
		texts := map[string]bool{}
		for _, c := range cs {
			texts[c.text] = true
			late := c.at.Sub(notBefore)
			if nLate == 0 || late < minLate {
				minLate = late
			}
			maxLate = max(maxLate, late)
			nLate++
			if c.at.Before(notBefore) {
				t.Errorf("scheduled %s to %s (%s, replace %q) reached the SMSC at %v, %v before its time %v",
					id, s.dest, s.via, s.replace, c.at.Format(time.StampMilli), notBefore.Sub(c.at), notBefore.Format(time.StampMilli))
			}
		}
		var want []string
		switch s.replace {
		case "acked":
			nReplaced++
			want = []string{s.newText}
		case "maybe":
			nMaybe++
			want = []string{s.text, s.newText}
		default:
			want = []string{s.text}
		}
		if len(texts) != 1 {
			t.Errorf("scheduled %s to %s reached the SMSC with %d texts: %v", id, s.dest, len(texts), texts)
		}
		for txt := range texts {
			if !slices.ContainsFunc(want, func(wt string) bool { return strings.HasSuffix(txt, wt) }) {
				t.Errorf("scheduled %s to %s (replace %q) reached the SMSC as %q, want one of %q", id, s.dest, s.replace, txt, want)
			}
		}
	}
	for _, d := range maybeDests {
		if len(copies[d]) > 1+kills+terms {
			t.Errorf("scheduled to %s (answer lost): %d copies", d, len(copies[d]))
		}
	}
	t.Logf("scheduled: %d (%d answers lost), %d cancelled, %d replaced (%d maybe); %d copies at the SMSC %v to %v after their time",
		len(sched), len(maybeDests), nCancelled, nReplaced, nMaybe, nLate, minLate.Round(time.Millisecond), maxLate.Round(time.Millisecond))

	t.Logf("restarts %v (%d kill -9, %d SIGTERM); duplicates: %d segments at the SMSC (bound %d: the windows, 2 × 50 a kill), %d replies at the ESMEs, %d at the webhook",
		w.restarts, kills, terms, smscDups, kills*100, esmeDups, hookDups)
	if smscDups > kills*100 {
		t.Errorf("%d segments sent twice over %d kills", smscDups, kills)
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()
}

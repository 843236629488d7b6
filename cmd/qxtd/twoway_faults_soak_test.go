//go:build soak

package main

import (
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
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// TestSoakTwoWayFaults is the two-way paths under the SMSC's faults and
// failing webhooks, with store.record_delay 50ms and store.max_orphans
// 30: one daemon, restarted by SIGTERM and by kill -9 at seeded moments,
// against the simulator behind a front the test owns (smscFront), which
// in seeded phases
//
//   - drops the connection just after relaying a deliver_sm (a receipt or
//     a reply), before the daemon's deliver_sm_resp can come back;
//   - loses the daemon's deliver_sm_resp on its way;
//   - loses a bind (submits answered ESME_RINVBNDSTS) while receipts and
//     replies still arrive on it, their answers lost with it;
//   - holds submit_sm_resp back 150–1200 ms, so the receipt comes first.
//
// The SMSC sends again every deliver_sm it got no answer to, or an error
// to: the simulator its receipts, the test (as the SMSC) the replies it
// injects. Meanwhile an ESME submits asking for receipts, HTTP sends
// ask for a receipt_url, handsets reply to R1's number (short replies,
// long ones in 2–3 parts, UCS-2 ones in two with an emoji or 退|订 split
// across them, some 回复TD opt-outs), the SMSC sends receipts for ids it
// never gave (which fill max_orphans: the receipts that beat their
// submit_sm_resp are then refused and sent again), the receiver rx1
// answers one reply in eight late, and the receipt_url and reply_url
// answer one POST in four slowly (within webhooks.timeout) and, in two
// stretches, one around a SIGTERM and one around a kill -9, answer 503,
// hang past webhooks.timeout or reset the connection.
//
// Then, drained: every reply the SMSC sent is in R1's inbox, whole, at
// least once; a second copy only of a reply the SMSC sent again after an
// answer was cut (none of a long one); each reached the receiver rx1 and
// the reply_url; every acknowledged message is final with its receipt at
// its ESME or webhook, every part's SMSC id one the SMSC gave; no
// webhook item answered 2xx is POSTed again, nor an ESME's receipt or
// reply sent again after its answer, unless a kill -9 came after it
// arrived; nothing is given up (webhooks.max_age 10m) or left pending;
// every opt-out refuses R1's sends; the usage is the delivered segments;
// and nothing is logged at error level.
//
// SOAK_TWOWAY_FAULTS_SEED replays a seed.
func TestSoakTwoWayFaults(t *testing.T) {
	seed := soakSeed(t, "SOAK_TWOWAY_FAULTS_SEED")
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, seed^0x51ed27f4a1c3b9e5))

	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 50 * time.Millisecond, Seed: seed | 1,
		Faults: smpp.Faults{Undeliv: 0.05}})
	front := newSMSCFront(t, "sim", simAddr, seed+1)
	x := newChaos(t)
	tw := &twFaults{x: x, sim: sim, front: front, began: began,
		replies: map[moKey]*twReply{}, refusals: map[string]int{}, slowRng: rand.New(rand.NewPCG(seed+8, 5)), rx: map[moKey][]time.Time{}, rcpts: map[string][]time.Time{}}
	tw.rcptHook = newFaultHook("receipt_url", seed+2)
	tw.replyHook = newFaultHook("reply_url", seed+3)
	rcptSrv := httptest.NewServer(tw.rcptHook)
	t.Cleanup(rcptSrv.Close)
	replySrv := httptest.NewServer(tw.replyHook)
	t.Cleanup(replySrv.Close)
	x.hookURL = rcptSrv.URL + "/dlr"

	dir := t.TempDir()
	cfg := writeConfig(t, dir, front.addr, twFaultsAccounts)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(b), "enterprises:\n", "enterprises:\n"+strings.ReplaceAll(twFaultsEnterprises, "HOOK", replySrv.URL+"/mo"), 1)
	conf = strings.Replace(conf, "store: { path: ", "store: { record_delay: 50ms, max_orphans: 30, path: ", 1)
	// Receipts and replies POSTed one at a time or in batches (seeded).
	rcptBatch, replyBatch := 1+rng.IntN(2)*19, 1+rng.IntN(2)*19
	conf = strings.Replace(conf, "    tps: 100000\naccounts:", fmt.Sprintf("    tps: 100000\n    receipt_batch: %d\naccounts:", rcptBatch), 1)
	conf = strings.Replace(conf, "    reply_url: "+replySrv.URL+"/mo\n", fmt.Sprintf("    reply_url: %s/mo\n    reply_batch: %d\n", replySrv.URL, replyBatch), 1)
	conf = strings.Replace(conf, "    resp_timeout: 2s\n", "    resp_timeout: 2s\n    reconnect_max: 1s\n", 1)
	for _, want := range []string{"record_delay: 50ms", fmt.Sprintf("receipt_batch: %d", rcptBatch), fmt.Sprintf("reply_batch: %d", replyBatch), "reconnect_max: 1s"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("the configuration lacks %q:\n%s", want, conf)
		}
	}
	t.Logf("receipt_batch %d, reply_batch %d", rcptBatch, replyBatch)
	conf += "webhooks: { allow_private: true, timeout: 3s, max_age: 10m }\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	procs := []*proc{d}
	x.net.set(d)
	base := "http://" + d.httpAddr
	x.webKey = issueAPIKey(t, base, "web")
	tw.r1Key = issueAPIKey(t, base, "r1web")

	loadCtx, stopLoad := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopLoad()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	esme := &chaosESME{x: x, n: 1, system: "esme1", handler: tw.receiptHandler()}
	rx1 := &chaosESME{x: x, system: "rx1", kind: smpp.BindReceiver, handler: tw.replyHandler()}
	for _, e := range []*chaosESME{esme, rx1} {
		conns.Go(func() { e.keepBound(endCtx) })
	}
	erng := rand.New(rand.NewPCG(seed+4, 1))
	drivers.Go(func() {
		esme.submitPaced(loadCtx, erng, func() string { return x.dest("1391") }, "twoway", 6, 9)
	})
	hrng := rand.New(rand.NewPCG(seed+5, 2))
	drivers.Go(func() { x.httpLoop(loadCtx, 0, hrng) })
	mrng := rand.New(rand.NewPCG(seed+6, 3))
	drivers.Go(func() { tw.replyLoop(loadCtx, endCtx, mrng) })
	drivers.Go(func() { tw.unknownReceipts(loadCtx) })

	// The schedule: a SIGTERM at 9–13 s and a kill -9 at 25–29 s, each
	// inside a stretch of both webhooks failing (from 2–3 s before to 2–4
	// s after); 3–5 more restarts, two in three kill -9, at least 2.5 s
	// from any other; the front's phases change every 3–5 s; the load ends at 45 s.
	type stopAt struct {
		at   time.Duration
		kill bool
	}
	termAt := 9*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
	killAt := 25*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
	stops := []stopAt{{termAt, false}, {killAt, true}}
	for extra := 3 + rng.IntN(3); extra > 0; {
		at := 4*time.Second + time.Duration(rng.Int64N(int64(38*time.Second)))
		if slices.ContainsFunc(stops, func(s stopAt) bool { return (s.at - at).Abs() < 2500*time.Millisecond }) {
			continue
		}
		stops = append(stops, stopAt{at, rng.IntN(3) != 0})
		extra--
	}
	sort.Slice(stops, func(i, j int) bool { return stops[i].at < stops[j].at })
	type stretch struct{ from, to time.Duration }
	var stretches []stretch
	for _, at := range []time.Duration{termAt, killAt} {
		stretches = append(stretches, stretch{at - 2*time.Second - time.Duration(rng.Int64N(int64(time.Second))),
			at + 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))})
	}
	loadFor := 45 * time.Second
	t.Logf("seed %d: stops %v; webhooks failing %v", seed, stops, stretches)
	drivers.Go(func() { tw.phases(loadCtx, rand.New(rand.NewPCG(seed+7, 4)), loadFor) })
	drivers.Go(func() {
		for _, s := range stretches {
			for _, edge := range []struct {
				at time.Duration
				on bool
			}{{s.from, true}, {s.to, false}} {
				tm := time.NewTimer(time.Until(began.Add(edge.at))) // the chaos schedule
				select {
				case <-tm.C:
				case <-loadCtx.Done():
					tm.Stop()
					return
				}
				tw.rcptHook.failing.Store(edge.on)
				tw.replyHook.failing.Store(edge.on)
			}
		}
	})

	for k, s := range stops {
		tm := time.NewTimer(time.Until(began.Add(s.at))) // the chaos schedule, not a wait for an event
		<-tm.C
		x.net.down()
		how := "SIGTERM"
		if s.kill {
			how = "kill -9"
			if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-d.exited
			tw.mu.Lock()
			tw.kills = append(tw.kills, time.Now()) // dead by now
			tw.mu.Unlock()
		} else {
			stopped := time.Now()
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
			tw.mu.Lock()
			tw.termTook = append(tw.termTook, time.Since(stopped).Round(10*time.Millisecond))
			tw.terms = append(tw.terms, span{stopped, time.Now()})
			tw.mu.Unlock()
		}
		tw.restarts = append(tw.restarts, how)
		d = startDaemon(t, cfg)
		procs = append(procs, d)
		x.net.set(d)
		t.Logf("%s (%d of %d) at %v: %s", how, k+1, len(stops), time.Since(began).Round(time.Millisecond), tw.counts())
	}
	tm := time.NewTimer(time.Until(began.Add(loadFor))) // the rest of the load on the daemon that stays up
	<-tm.C
	stopLoad()
	drivers.Wait()
	front.faults.Store(&upFaults{})
	tw.rcptHook.failing.Store(false)
	tw.replyHook.failing.Store(false)
	chaosEnd := time.Now()
	t.Logf("load over after %v: %s", chaosEnd.Sub(began).Round(time.Millisecond), tw.counts())
	tw.check(t, "http://"+d.httpAddr, procs)
	t.Logf("drained and checked in %v; whole test %v", time.Since(chaosEnd).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 150))
	}
}

// T1 sends (esme1 over SMPP, web over HTTP with a receipt_url); R1 owns
// the service number 1065901 (rx1 its extension 12) and its reply_url.
const twFaultsEnterprises = `  - code: R1
    signature: "【回复】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065901"
    ext_len: 2
    reply_url: HOOK
`

const twFaultsAccounts = `  - { system_id: esme1, password: secret1, enterprise: T1 }
  - { system_id: web, password: secret1, enterprise: T1, admin: true }
  - { system_id: rx1, password: secret1, enterprise: R1, extension: "12" }
  - { system_id: r1web, password: secret1, enterprise: R1, admin: true }
`

// twReply is one reply as the SMSC knows it: sent until answered OK.
type twReply struct {
	long, keyword bool
	tries         int    // deliver_sm sent (a long reply: of all its parts)
	cut           int    // tries with no answer back (cut, lost, timed out): maybe stored
	refused       int    // tries answered with an error status
	acked         bool   // every part answered OK
	cutAt         []span // when the cut tries were out
}

type span struct{ from, to time.Time }

type twFaults struct {
	x                   *chaos
	sim                 *smpp.Simulator
	front               *smscFront
	began               time.Time
	r1Key               string
	rcptHook, replyHook *faultHook

	unknownSent, unknownOK, unknownRefused atomic.Int64

	mu       sync.Mutex
	replies  map[moKey]*twReply
	handsets int
	rx       map[moKey][]time.Time  // replies at rx1 answered, when they arrived
	rcpts    map[string][]time.Time // receipts at esme1 by message id
	kills    []time.Time
	terms    []span         // SIGTERM to exit
	refusals map[string]int // the daemon's error answers to replies, by status
	slowRng  *rand.Rand     // rx1's late answers
	restarts []string
	termTook []time.Duration
	phaseLog []string
}

func (tw *twFaults) counts() string {
	tw.mu.Lock()
	n, acked, long, kw, cut := len(tw.replies), 0, 0, 0, 0
	for _, r := range tw.replies {
		if r.acked {
			acked++
		}
		if r.long {
			long++
		}
		if r.keyword {
			kw++
		}
		cut += r.cut
	}
	refusals := fmt.Sprint(tw.refusals)
	tw.mu.Unlock()
	f := tw.front
	f.mu.Lock()
	fronts := fmt.Sprintf("front: %d deliver_sm cut, %d deliver_sm_resp lost, %d lost with a bind (%d binds lost), %d receipts before their submit_sm_resp", f.dlvCuts, f.dlvRespLosts, f.dlvOnLost, f.bindLosts, f.early)
	f.mu.Unlock()
	return fmt.Sprintf("%s; replies %d (%d long, %d opt-outs), %d answered, %d tries cut, refused %s; unknown receipts %d sent, %d answered OK; %s; %s; %s",
		tw.x.counts(), n, long, kw, acked, cut, refusals, tw.unknownSent.Load(), tw.unknownOK.Load(), fronts, tw.rcptHook.counts(), tw.replyHook.counts())
}

// phases sets the front's deliver_sm faults, changing every 3–5 s.
func (tw *twFaults) phases(ctx context.Context, rng *rand.Rand, until time.Duration) {
	names := []string{"calm", "cut", "resp-lost", "bind-lost", "early", "all"}
	for {
		name := names[rng.IntN(len(names))]
		var f upFaults
		switch name {
		case "cut":
			f.dlvCut = 0.1
		case "resp-lost":
			f.dlvRespLost = 0.1
		case "bind-lost":
			f.bindLost = 0.02
		case "early":
			f.delayFrac, f.delayMin, f.delayMax = 0.3, 150*time.Millisecond, 1200*time.Millisecond
		case "all":
			f = upFaults{dlvCut: 0.04, dlvRespLost: 0.04, bindLost: 0.005, delayFrac: 0.2, delayMin: 150 * time.Millisecond, delayMax: 600 * time.Millisecond}
		}
		tw.front.faults.Store(&f)
		tw.mu.Lock()
		tw.phaseLog = append(tw.phaseLog, fmt.Sprintf("%v %s", time.Since(tw.began).Round(time.Second), name))
		tw.mu.Unlock()
		tm := time.NewTimer(3*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))) // the chaos schedule
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return
		}
		if time.Since(tw.began) > until {
			return
		}
	}
}

// inject sends one deliver_sm until the daemon answers it OK (injectReply).
func (tw *twFaults) inject(ctx context.Context, r *twReply, send func() error) bool {
	return injectReply(ctx, &tw.mu, &tw.x.net, r, send, func(st pdu.Status) { tw.refusals[st.Error()]++ })
}

// injectReply sends a reply (send: one deliver_sm) until the daemon
// answers it OK, as an SMSC does, noting in r under mu each try whose
// answer never came (cut: it may be stored all the same) or was an error
// (refused, also under mu, if not nil). It waits for a daemon while none
// is up or no receiver is bound; false when ctx ended first.
func injectReply(ctx context.Context, mu *sync.Mutex, n *chaosNet, r *twReply, send func() error, refused func(pdu.Status)) bool {
	for ctx.Err() == nil {
		began := time.Now()
		err := send()
		if errors.Is(err, smpp.ErrNoReceiver) {
			n.after(ctx, 0) // no bind: nothing sent
			continue
		}
		mu.Lock()
		r.tries++
		switch st := smppStatus(err); {
		case err == nil:
		case st != 0:
			r.refused++
			if refused != nil {
				refused(st)
			}
		default:
			r.cut++
			r.cutAt = append(r.cutAt, span{began, time.Now()})
		}
		mu.Unlock()
		if err == nil {
			return true
		}
		n.after(ctx, 0)
	}
	return false
}

// replyOf is the reply a deliver_sm to rx1 carries, keyed by source,
// destination and text; false (a conflict noted in x) for a receipt,
// which rx1 never asked for.
func replyOf(x *chaos, p pdu.Body) (moKey, bool) {
	if _, err := smpp.ParseReceipt(p); err == nil {
		x.conflict("rx1 got a receipt")
		return moKey{}, false
	}
	text, _, err := segment.DecodeIncoming(smpp.Byte(p, pdufield.DataCoding), smpp.Byte(p, pdufield.ESMClass),
		smpp.Bytes(p, pdufield.ShortMessage), smpp.TLV(p, pdutlv.TagMessagePayload), false)
	if err != nil {
		x.conflict("rx1: undecodable reply: %v", err)
	}
	return moKey{smpp.Str(p, pdufield.SourceAddr), smpp.Str(p, pdufield.DestinationAddr), text}, true
}

// replyLoop injects a reply about every 200 ms: one in six long (2–3
// UDH parts), one in ten an opt-out keyword from a handset of its own,
// the others short, unique texts from 40 handsets to 1065901 or rx1's
// extension. A reply begun is sent to its end (until drain ends).
func (tw *twFaults) replyLoop(ctx, drainCtx context.Context, rng *rand.Rand) {
	tick := time.NewTicker(200 * time.Millisecond) // pacing
	defer tick.Stop()
	var sending sync.WaitGroup
	defer sending.Wait()
	slots := make(chan struct{}, 8) // replies being sent at once
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		to := []string{"1065901", "106590112"}[rng.IntN(2)]
		from := fmt.Sprintf("1380%07d", rng.IntN(40))
		r := &twReply{}
		var text string
		var parts [][]byte
		var coding uint8 // of the parts
		switch p := rng.IntN(60); {
		case p < 3:
			// UCS-2 in two parts: an opt-out (退|订), or a text whose
			// emoji (a surrogate pair) is split across the parts.
			r.long = true
			halves := [2][]byte{utf16be("退"), utf16be("订")}
			text = "退订"
			if p == 0 {
				r.keyword = true
				tw.mu.Lock()
				tw.handsets++
				from = fmt.Sprintf("1382%07d", tw.handsets)
				tw.mu.Unlock()
			} else {
				text = fmt.Sprintf("回复%d 好的👍 谢谢", i)
				b := utf16be(text)
				cut := len(utf16be(fmt.Sprintf("回复%d 好的", i))) + 2 // inside 👍
				halves = [2][]byte{b[:cut], b[cut:]}
			}
			for seq, h := range halves {
				parts = append(parts, append([]byte{5, 0, 3, byte(i), 2, byte(seq + 1)}, h...))
			}
			coding = 8
		case p < 10:
			r.long = true
			n := 2 + rng.IntN(2)
			for seq := range n {
				pt := fmt.Sprintf("part %d/%d of reply %d: ", seq+1, n, i) + strings.Repeat("a reply the SMSC split, ", 5)
				text += pt
				parts = append(parts, append([]byte{5, 0, 3, byte(i), byte(n), byte(seq + 1)}, pt...))
			}
		case p < 16:
			r.keyword = true
			text = optOutWords[rng.IntN(len(optOutWords))]
			tw.mu.Lock()
			tw.handsets++
			from = fmt.Sprintf("1381%07d", tw.handsets)
			tw.mu.Unlock()
		case p < 38:
			text = fmt.Sprintf("回复 %d", i)
		default:
			text = fmt.Sprintf("reply %d", i)
		}
		k := moKey{from, to, text}
		tw.mu.Lock()
		tw.replies[k] = r
		tw.mu.Unlock()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		sending.Go(func() {
			defer func() { <-slots }()
			// Not the load's ctx: a reply begun is sent to its end, as
			// the SMSC would, within a minute.
			sendCtx, cancel := context.WithTimeout(drainCtx, time.Minute)
			defer cancel()
			ok := true
			if !r.long {
				ok = tw.inject(sendCtx, r, func() error { return tw.sim.InjectMO(from, to, text) })
			}
			for _, sm := range parts {
				ok = ok && tw.inject(sendCtx, r, func() error {
					return tw.sim.InjectDeliverSM(smpp.SM{SourceAddr: from, DestinationAddr: to, ESMClass: 0x40, DataCoding: coding, ShortMessage: sm})
				})
			}
			tw.mu.Lock()
			r.acked = ok
			tw.mu.Unlock()
		})
	}
}

// utf16be is s in UCS-2 (UTF-16, big-endian), as data_coding 8 carries it.
func utf16be(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// unknownReceipts has the SMSC send a receipt for an id it never gave
// every 700 ms (an id no message of this run can have).
func (tw *twFaults) unknownReceipts(ctx context.Context) {
	tick := time.NewTicker(700 * time.Millisecond) // pacing
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tw.unknownSent.Add(1)
		switch err := tw.sim.InjectReceipt(fmt.Sprintf("fffffff%06x", n), "13999999999", "10690001"); {
		case err == nil:
			tw.unknownOK.Add(1)
		case smppStatus(err) != 0:
			tw.unknownRefused.Add(1)
		}
	}
}

// receiptHandler is esme1's: the receipts by id, when answered.
func (tw *twFaults) receiptHandler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if rc, err := smpp.ParseReceipt(p); err == nil {
			tw.mu.Lock()
			tw.rcpts[rc.ID] = append(tw.rcpts[rc.ID], time.Now())
			tw.mu.Unlock()
		} else {
			tw.x.conflict("esme1 got a deliver_sm that is no receipt: %v", err)
		}
		return pdu.NewDeliverSMResp()
	})
}

// replyHandler is rx1's: the replies, when answered; one in eight
// answered 0.2–0.7 s late.
func (tw *twFaults) replyHandler() smpp.Handler {
	return smpp.HandlerFunc(func(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		k, ok := replyOf(tw.x, p)
		if !ok {
			return pdu.NewDeliverSMResp()
		}
		arrived := time.Now()
		tw.mu.Lock()
		late := tw.slowRng.IntN(8) == 0
		delay := 200*time.Millisecond + time.Duration(tw.slowRng.Int64N(int64(500*time.Millisecond)))
		tw.mu.Unlock()
		if late {
			tm := time.NewTimer(delay) // a slow ESME: replies out to it at the stops
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return nil // the bind went: no answer
			}
		}
		tw.mu.Lock()
		tw.rx[k] = append(tw.rx[k], arrived)
		tw.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

func (x *chaos) conflict(format string, args ...any) {
	x.mu.Lock()
	x.conflicts = append(x.conflicts, fmt.Sprintf(format, args...))
	x.mu.Unlock()
}

// faultHook is a webhook endpoint that, while failing, answers 503,
// hangs until the daemon gives up (webhooks.timeout) or resets the
// connection, one at random a POST; else it answers 204 and notes when
// each item (a receipt's message id, a reply's id) was delivered.
type faultHook struct {
	name    string
	failing atomic.Bool

	mu       sync.Mutex
	rng      *rand.Rand
	modes    map[string]int
	ok       map[string][]time.Time // when each POST answered 2xx arrived
	receipts map[string]webhook.Receipt
	replies  map[string]webhook.Reply
}

func newFaultHook(name string, seed uint64) *faultHook {
	return &faultHook{name: name, rng: rand.New(rand.NewPCG(seed, 9)), modes: map[string]int{},
		ok: map[string][]time.Time{}, receipts: map[string]webhook.Receipt{}, replies: map[string]webhook.Reply{}}
}

func (h *faultHook) counts() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%s %v, %d items delivered", h.name, h.modes, len(h.ok))
}

func (h *faultHook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if h.failing.Load() {
		h.mu.Lock()
		mode := []string{"503", "hang", "reset"}[h.rng.IntN(3)]
		h.modes[mode]++
		h.mu.Unlock()
		switch mode {
		case "503":
			rw.WriteHeader(http.StatusServiceUnavailable)
		case "hang":
			<-r.Context().Done() // the daemon's webhooks.timeout, or the server closing
		case "reset":
			if c, _, err := http.NewResponseController(rw).Hijack(); err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				_ = c.Close()
			}
		}
		return
	}
	h.mu.Lock()
	slow := h.rng.IntN(4) == 0
	delay := 100*time.Millisecond + time.Duration(h.rng.Int64N(int64(300*time.Millisecond)))
	h.mu.Unlock()
	if slow {
		// A slow 2xx, well within webhooks.timeout: POSTs under way when the
		// daemon is stopped or killed.
		h.mu.Lock()
		h.modes["slow"]++
		h.mu.Unlock()
		tm := time.NewTimer(delay) // the endpoint's own pace
		select {
		case <-tm.C:
		case <-r.Context().Done():
			tm.Stop()
			return // the daemon gave up or died: no 2xx
		}
	}
	var ids []string
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Header.Get("X-Qxtd-Event") == "reply" {
		var batch webhook.ReplyBatch
		if err := json.Unmarshal(body, &batch); err != nil || len(batch.Replies) == 0 {
			var rp webhook.Reply
			if err := json.Unmarshal(body, &rp); err != nil || rp.ID == "" {
				rw.WriteHeader(http.StatusBadRequest)
				return
			}
			batch.Replies = []webhook.Reply{rp}
		}
		for _, rp := range batch.Replies {
			ids = append(ids, rp.ID)
			h.replies[rp.ID] = rp
		}
	} else {
		var batch webhook.Batch
		if err := json.Unmarshal(body, &batch); err != nil || len(batch.Receipts) == 0 {
			var rc webhook.Receipt
			if err := json.Unmarshal(body, &rc); err != nil || rc.ID == "" {
				rw.WriteHeader(http.StatusBadRequest)
				return
			}
			batch.Receipts = []webhook.Receipt{rc}
		}
		for _, rc := range batch.Receipts {
			ids = append(ids, rc.ID)
			h.receipts[rc.ID] = rc
		}
	}
	h.modes["204"]++
	for _, id := range ids {
		h.ok[id] = append(h.ok[id], arrived)
	}
	rw.WriteHeader(http.StatusNoContent)
}

// since is times as offsets from the test's start.
func (tw *twFaults) since(times ...time.Time) []time.Duration {
	out := make([]time.Duration, len(times))
	for i, tm := range times {
		out[i] = tm.Sub(tw.began).Round(time.Millisecond)
	}
	return out
}

func (tw *twFaults) spans(ss []span) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%v–%v", s.from.Sub(tw.began).Round(time.Millisecond), s.to.Sub(tw.began).Round(time.Millisecond))
	}
	return out
}

// unexplained counts the deliveries in times (sorted; when each
// delivery that was answered arrived) beyond the first `copies` that no
// kill -9 preceded since the one before arrived: a kill while an answer
// is on its way, or recorded in no commit yet, explains a repeat.
func unexplained(times []time.Time, copies int, kills []time.Time) int {
	n := 0
	for i := copies; i < len(times); i++ {
		// A kill is noted once the daemon is dead; what it wrote just
		// before may reach a handler a little later: onWire of slack.
		const onWire = 100 * time.Millisecond
		if !slices.ContainsFunc(kills, func(k time.Time) bool { return k.Add(onWire).After(times[i-1]) && k.Before(times[i]) }) {
			n++
		}
	}
	return n
}

// expectedErrors are the error-level log lines the faults explain, by
// their msg.
var expectedErrors = map[string]string{}

func (tw *twFaults) check(t *testing.T, base string, procs []*proc) {
	x := tw.x
	drain := 60 * time.Second
	// A user pressing retry-now for the webhooks once the endpoints are
	// mended (their backoff is 10 s doubling).
	for _, kind := range []string{"receipt", "reply"} {
		for _, ent := range []string{"T1", "R1"} {
			_, _, _, _ = x.post(context.Background(), http.DefaultClient, "/admin/v1/enterprises/"+ent+"/receipt-retry", "test-token", "", "application/json", `{"kind":"`+kind+`"}`)
		}
	}

	// 1. Replies: every one the SMSC sent is in the inbox, whole; copies
	// beyond one only of a reply sent again after a cut answer (never a
	// long one: its parts sent again are answered and dropped).
	tw.mu.Lock()
	replies := make(map[moKey]twReply, len(tw.replies))
	for k, r := range tw.replies {
		replies[k] = *r
	}
	tw.mu.Unlock()
	inbox := map[moKey][]inboxEntry{}
	waitCond(t, drain, "every reply the SMSC sent in R1's inbox and forwarded", func() bool {
		clear(inbox)
		all := true
		for _, it := range inboxOf(t, base, tw.r1Key) {
			k := moKey{it.From, it.To, it.Text}
			inbox[k] = append(inbox[k], it)
			all = all && it.Forwarded
		}
		for k := range replies {
			if len(inbox[k]) == 0 {
				return false
			}
		}
		return all
	})
	tw.mu.Lock()
	kills := slices.Clone(tw.kills)
	terms := slices.Clone(tw.terms)
	tw.mu.Unlock()
	dupCause := map[string]int{} // the answers not back of replies stored twice, by what became of them
	var cutTries, resent, longResent, dupStored, dupUnexplained, refusedTries int
	for k, r := range replies {
		if !r.acked {
			t.Errorf("reply %+v: the SMSC never got its answer OK (%d tries)", k, r.tries)
		}
		cutTries += r.cut
		refusedTries += r.refused
		if r.cut+r.refused > 0 {
			resent++
			if r.long {
				longResent++
			}
		}
		copies := len(inbox[k])
		dupStored += copies - 1
		allowed := 1 + r.cut
		if r.long {
			allowed = 1
		}
		if copies > 1 && !r.long {
			// What became of the answers to its copies, as the front saw
			// them: a connection that ended at a SIGTERM or a kill, or a
			// fault of the front's.
			tw.front.mu.Lock()
			for _, rec := range tw.front.dlvLog[k] {
				cause := rec.fate
				switch {
				case cause == "answered 0x0":
					continue
				case cause == "ended" && slices.ContainsFunc(terms, func(s span) bool { return !rec.end.Before(s.from) && !rec.end.After(s.to) }):
					cause = "ended at a SIGTERM"
					t.Logf("reply %+v stored %d times; one copy's answer cut by a planned stop: relayed %v, ended %v", k, copies, rec.at.Sub(tw.began), rec.end.Sub(tw.began))
				case cause == "ended" && slices.ContainsFunc(kills, func(kt time.Time) bool {
					return rec.end.After(kt.Add(-time.Second)) && rec.end.Before(kt.Add(time.Second))
				}):
					cause = "ended at a kill -9"
				case cause == "ended":
					t.Logf("reply %+v stored %d times; one copy's connection ended: relayed %v, ended %v", k, copies, rec.at.Sub(tw.began), rec.end.Sub(tw.began))
				default:
					t.Logf("reply %+v stored %d times; one copy's answer %s: relayed %v, ended %v", k, copies, cause, rec.at.Sub(tw.began), rec.end.Sub(tw.began))
				}
				dupCause[cause]++
			}
			tw.front.mu.Unlock()
		}
		if copies > allowed {
			dupUnexplained += copies - allowed
			t.Errorf("reply %+v (long %v): %d copies in the inbox, %d tries of which %d cut, %d refused", k, r.long, copies, r.tries, r.cut, r.refused)
		}
	}
	for k, items := range inbox {
		if _, ok := replies[k]; !ok {
			t.Errorf("inbox holds %+v (%d), which no handset sent (a long reply not whole?)", k, len(items))
		}
	}

	// 2. Each reached rx1 and the reply_url, and neither again after its
	// answer unless a kill -9 came between (or it was stored twice).
	waitCond(t, drain, "every reply at rx1 and at the reply_url", func() bool {
		tw.mu.Lock()
		defer tw.mu.Unlock()
		tw.replyHook.mu.Lock()
		defer tw.replyHook.mu.Unlock()
		for k := range replies {
			if len(tw.rx[k]) == 0 {
				return false
			}
			for _, it := range inbox[k] {
				if len(tw.replyHook.ok[it.ID]) == 0 {
					return false
				}
			}
		}
		return true
	})
	var rxAgain, rxUnexplained, replyHookAgain, replyHookUnexplained int
	tw.mu.Lock()
	tw.replyHook.mu.Lock()
	for k := range replies {
		rxAgain += len(tw.rx[k]) - len(inbox[k])
		if n := unexplained(tw.rx[k], len(inbox[k]), kills); n > 0 {
			rxUnexplained += n
			t.Errorf("reply %+v at rx1 %d times (stored %d), %d of them again after an answer with no kill -9 between (at %v; kills at %v, SIGTERMs %v)", k, len(tw.rx[k]), len(inbox[k]), n,
				tw.since(tw.rx[k]...), tw.since(kills...), tw.spans(terms))
		}
		for _, it := range inbox[k] {
			times := tw.replyHook.ok[it.ID]
			replyHookAgain += len(times) - 1
			if n := unexplained(times, 1, kills); n > 0 {
				replyHookUnexplained += n
				t.Errorf("reply %s (%+v) POSTed to the reply_url again after a 2xx %d times with no kill -9 between (2xx at %v; kills at %v, SIGTERMs %v)", it.ID, k, n,
					tw.since(times...), tw.since(kills...), tw.spans(terms))
			}
			if rp := tw.replyHook.replies[it.ID]; rp.Text != k.text || rp.From != k.from || rp.To != k.to {
				t.Errorf("reply %s POSTed as %+v, stored as %+v", it.ID, rp, k)
			}
		}
	}
	for id := range tw.replyHook.ok {
		found := false
		for _, items := range inbox {
			found = found || slices.ContainsFunc(items, func(it inboxEntry) bool { return it.ID == id })
		}
		if !found {
			t.Errorf("reply_url got reply %s, which the inbox does not hold", id)
		}
	}
	tw.replyHook.mu.Unlock()
	tw.mu.Unlock()

	// 3. Opt-outs: each keyword's handset listed once with the first
	// copy of its reply, and R1's sends to it refused.
	var page struct {
		Entries []struct {
			Number string
			MOID   uint64 `json:"mo_id"`
		}
	}
	if _, err := getJSON(base, "/v1/optouts?limit=1000", tw.r1Key, &page); err != nil {
		t.Fatalf("optouts of R1: %v", err)
	}
	listed := map[string][]uint64{}
	for _, e := range page.Entries {
		listed[digits(e.Number)] = append(listed[digits(e.Number)], e.MOID)
	}
	optOuts := 0
	for k, r := range replies {
		if !r.keyword {
			if len(listed[k.from]) > 0 {
				t.Errorf("%s opted out by %q, no keyword", k.from, k.text)
			}
			continue
		}
		optOuts++
		first := uint64(0)
		for _, it := range inbox[k] {
			if id, err := strconv.ParseUint(it.ID, 10, 64); err == nil && (first == 0 || id < first) {
				first = id
			}
		}
		if ids := listed[k.from]; len(ids) != 1 || ids[0] != first {
			t.Errorf("%s (%q, stored as %d copies, the first %d) listed as opted out by %v", k.from, k.text, len(inbox[k]), first, ids)
		}
		body, _ := json.Marshal(map[string]any{"to": []string{k.from}, "text": "退订之后"})
		code, resp, _, _ := x.post(context.Background(), http.DefaultClient, "/v1/messages", tw.r1Key, "", "application/json", string(body))
		var res sendResults
		if code != http.StatusOK || json.Unmarshal([]byte(resp), &res) != nil || len(res.Results) != 1 ||
			res.Results[0].Status != "refused" || res.Results[0].Reason != "opted_out" {
			t.Errorf("R1's send to %s after its %q: %d %s, want refused opted_out", k.from, k.text, code, resp)
		}
	}

	// 4. Every acknowledged message final, named as sent, its receipt at
	// esme1 or the receipt_url, again after an answer only across a kill.
	x.mu.Lock()
	acked := maps.Clone(x.acked)
	x.mu.Unlock()
	got := waitFinal(t, drain, base, x.webKey, acked)
	for id, w := range acked {
		m := got[id]
		if digits(m.To) != w.dest || !strings.Contains(m.Text, w.text) {
			t.Errorf("id %s acknowledged for %q to %s names %q to %s", id, w.text, w.dest, m.Text, m.To)
		}
		if m.State == "rejected" {
			t.Errorf("message %s to %s rejected", id, w.dest)
		}
	}
	waitCond(t, drain, "every receipt at esme1 and the receipt_url", func() bool {
		tw.mu.Lock()
		defer tw.mu.Unlock()
		tw.rcptHook.mu.Lock()
		defer tw.rcptHook.mu.Unlock()
		for id, w := range acked {
			if (w.receipt != "" && len(tw.rcpts[id]) == 0) || (w.hook && len(tw.rcptHook.ok[id]) == 0) {
				return false
			}
		}
		return true
	})
	var rcptAgain, rcptUnexplained, rcptHookAgain, rcptHookUnexplained int
	tw.mu.Lock()
	tw.rcptHook.mu.Lock()
	for id, w := range acked {
		if w.receipt != "" {
			times := tw.rcpts[id]
			rcptAgain += len(times) - 1
			if n := unexplained(times, 1, kills); n > 0 {
				rcptUnexplained += n
				t.Errorf("receipt of %s at esme1 %d times, %d of them again after an answer with no kill -9 between (at %v; kills at %v, SIGTERMs %v)", id, len(times), n,
					tw.since(times...), tw.since(kills...), tw.spans(terms))
			}
		}
		if w.hook {
			times := tw.rcptHook.ok[id]
			rcptHookAgain += len(times) - 1
			if n := unexplained(times, 1, kills); n > 0 {
				rcptHookUnexplained += n
				t.Errorf("receipt of %s POSTed to the receipt_url again after a 2xx %d times with no kill -9 between (2xx at %v; kills at %v, SIGTERMs %v)", id, n,
					tw.since(times...), tw.since(kills...), tw.spans(terms))
			}
			if rc := tw.rcptHook.receipts[id]; rc.State != got[id].State {
				t.Errorf("receipt of %s POSTed %s, the message is %s", id, rc.State, got[id].State)
			}
		}
	}
	tw.rcptHook.mu.Unlock()
	tw.mu.Unlock()

	// 5. The outbox: every part's SMSC id one the SMSC gave for its
	// destination (no receipt of an unknown id matched), and the usage
	// the delivered segments.
	smscIDs := map[string]string{}
	for _, m := range tw.sim.Received() {
		smscIDs[m.ID] = m.Dest
	}
	for _, ent := range []struct{ code, key string }{{"T1", x.webKey}, {"R1", tw.r1Key}} {
		var delivered int64
		var msgs []chaosMessage
		waitCond(t, drain, "every message of "+ent.code+" final", func() bool {
			msgs = export(t, base, ent.key)
			return !slices.ContainsFunc(msgs, func(m chaosMessage) bool { return !final(m.State) })
		})
		for _, m := range msgs {
			var full chaosMessage
			if _, err := getJSON(base, "/v1/messages/"+m.ID, ent.key, &full); err != nil {
				t.Fatalf("message %s: %v", m.ID, err)
			}
			for i, p := range full.Parts {
				if p.State == "delivered" {
					delivered++
				}
				if dest, ok := smscIDs[p.SMSCID]; !ok || dest != digits(m.To) {
					t.Errorf("message %s to %s: part %d (%s) has SMSC id %q, which the SMSC gave %q", m.ID, m.To, i, p.State, p.SMSCID, dest)
				}
			}
		}
		var usage struct{ Reserved, Delivered int64 }
		if _, err := getJSON(base, "/v1/usage", ent.key, &usage); err != nil {
			t.Fatalf("usage of %s: %v", ent.code, err)
		}
		t.Logf("%s: %d messages, %d segments delivered; usage %+v", ent.code, len(msgs), delivered, usage)
		if usage.Delivered != delivered || usage.Reserved != 0 {
			t.Errorf("usage of %s: delivered %d, reserved %d; the messages' delivered segments: %d", ent.code, usage.Delivered, usage.Reserved, delivered)
		}
	}

	// 6. Nothing waits for a webhook any more.
	for _, ent := range []struct{ code, key string }{{"T1", x.webKey}, {"R1", tw.r1Key}} {
		var raw struct {
			Status      struct{ Pending, Retrying int }
			ReplyStatus struct{ Pending, Retrying int } `json:"reply_status"`
		}
		waitCond(t, drain, ent.code+"'s webhooks with nothing pending", func() bool {
			_, err := getJSON(base, "/v1/receipt-webhook", ent.key, &raw)
			return err == nil && raw.Status.Pending == 0 && raw.ReplyStatus.Pending == 0
		})
	}

	// 7. The logs: nothing at error level but what the faults explain.
	levels := map[string]int{}
	for i, p := range procs {
		for line := range strings.Lines(p.log()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			msg, _ := rec["msg"].(string)
			if msg == "reply webhook given up" || msg == "receipt webhook given up" {
				// webhooks.max_age is 10 minutes: nothing is that old.
				t.Errorf("daemon %d gave a webhook up before webhooks.max_age: %s", i, strings.TrimSpace(line))
			}
			if rec["level"] != "ERROR" {
				continue
			}
			levels[msg]++
			if _, ok := expectedErrors[msg]; !ok {
				t.Errorf("daemon %d logged at error level: %s", i, strings.TrimSpace(line))
			}
		}
	}

	tw.mu.Lock()
	took := tw.termTook
	phases := tw.phaseLog
	tw.mu.Unlock()
	t.Logf("phases: %v", phases)
	t.Logf("restarts %v (SIGTERM exits in %v); %s", tw.restarts, took, tw.counts())
	t.Logf("replies: %d sent, %d sent again (%d long; %d tries cut, %d refused), %d copies stored twice (%d unexplained; their answers not back: %v); %d opt-outs refusing; at rx1 %d again (%d unexplained); reply_url %d again after a 2xx (%d unexplained)",
		len(replies), resent, longResent, cutTries, refusedTries, dupStored, dupUnexplained, dupCause, optOuts, rxAgain, rxUnexplained, replyHookAgain, replyHookUnexplained)
	t.Logf("receipts: %d messages acknowledged; at esme1 %d again (%d unexplained); receipt_url %d again after a 2xx (%d unexplained); unknown ids %d sent, %d answered OK, %d refused; error lines %v",
		len(acked), rcptAgain, rcptUnexplained, rcptHookAgain, rcptHookUnexplained, tw.unknownSent.Load(), tw.unknownOK.Load(), tw.unknownRefused.Load(), levels)
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()
}

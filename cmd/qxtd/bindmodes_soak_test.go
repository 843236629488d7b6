//go:build soak

package main

import (
	"context"
	"encoding/binary"
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
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// The bind modes under faults: the daemon as a subprocess against an SMSC
// (the simulator) that takes no transceivers, behind a front the test
// owns that knows each connection's bind kind.
const (
	bmBinds       = 2 // transmitters
	bmWindow      = 10
	bmRespTimeout = 2 * time.Second
	// bmDLRWindow is delivery.dlr_window (its default): the receipts a
	// kill may leave sent and unanswered per account.
	bmDLRWindow = 128
)

// TestSoakBindModes runs the real daemon in the two bind modes for an SMSC
// that takes no transceivers, each under steady load (two ESMEs
// submitting short and long texts with receipts asked, handsets replying
// to a service number whose receiver ESME is bound) and faults in a
// seeded order (SOAK_BINDMODES_SEED replays one):
//
//   - transmitter_receiver (2 transmitters, 1 or 2 receivers): the
//     receivers' connections dropped and kept from binding for 2–4 s
//     (the transmitters keep sending; receipts and replies wait at the
//     SMSC), one receiver dropped, the transmitters dropped with submits
//     out and kept from binding for 0.5–1.5 s, the SMSC losing every
//     bind (LoseBinds: submits answered ESME_RINVBNDSTS, enquire_link
//     answered generic_nack ESME_RINVBNDSTS), a SIGTERM and a kill -9;
//   - transmitter with outbind_listen: the SMSC outbinds after each start
//     and after each loss of its session; the session dropped twice (the
//     SMSC outbinds again 0.5–2 s later), the transmitters dropped, the
//     SMSC losing its binds, a SIGTERM and a kill -9, while the outbind
//     port gets noise all along: wrong passwords and system_ids, silent
//     connections, garbage and an ESME's bind_transmitter.
//
// Then, drained: every acknowledged message is final as sent, every
// segment reached the SMSC on a transmitter and one taken twice had its
// answer cut by a drop, come late, or its daemon killed; every receipt
// reached its ESME, again after an answer only across a kill -9; every
// reply is in the inbox (twice only when a try's answer was cut) and
// reached the receiver; the usage is the delivered segments; the SMSC
// never saw more transmitters or receivers at once than configured, nor
// a transceiver; the outbind port answered no noise; nothing was logged
// at error level; and the last daemon exits 0 at SIGTERM.
func TestSoakBindModes(t *testing.T) {
	seed := soakSeed(t, "SOAK_BINDMODES_SEED")
	began := time.Now()
	t.Run("transmitter_receiver", func(t *testing.T) {
		runBindModes(t, seed, false)
	})
	t.Run("outbind", func(t *testing.T) {
		runBindModes(t, seed+1, true)
	})
	t.Logf("whole test %v (seed %d)", time.Since(began).Round(time.Millisecond), seed)
}

// bmSoak is one phase: one daemon restarted at its faults.
type bmSoak struct {
	frontSoak
	outbind   bool
	receivers int // configured receivers (transmitter_receiver)
	sim       *smpp.Simulator
	front     *bmFront
	relay     *bmRelay // the SMSC's outbinds go through it (outbind)

	// under mu
	terms    []span
	drops    []time.Time // the front dropped transmitters
	held     []bmOutage  // receivers (or the outbind session) kept away
	obAddr   string      // the daemon's outbind listener now
	replies  map[moKey]*twReply
	rx       map[moKey][]time.Time
	outbinds int // sent by the SMSC
	noise    map[string]int
	answered []string // noise the outbind port answered
}

type bmOutage struct {
	from, to            time.Time
	acceptedDuring      int // segments the SMSC took meanwhile
	receiversAtEnd      int
	rcptsBefore, rcptsA int // receipts at the ESMEs at its start and end
}

// bmEnterprises: T1 sends (esme1, esme2 over SMPP, web over HTTP); R1's
// service number 1065901 takes the replies, rx1 its extension 12.
const bmEnterprises = `  - code: R1
    signature: "【回复】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
    service_number: "1065901"
    ext_len: 2
`

const bmAccounts = `  - { system_id: esme1, password: secret1, enterprise: T1 }
  - { system_id: esme2, password: secret1, enterprise: T1 }
  - { system_id: web, password: secret1, enterprise: T1, admin: true }
  - { system_id: rx1, password: secret1, enterprise: R1, extension: "12" }
  - { system_id: r1web, password: secret1, enterprise: R1, admin: true }
`

func runBindModes(t *testing.T, seed uint64, outbind bool) {
	rng := rand.New(rand.NewPCG(seed, seed^0x3c6ef372fe94f82b))
	began := time.Now()
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 100 * time.Millisecond, Seed: seed | 1, NoTransceiver: true,
		Faults: smpp.Faults{Undeliv: 0.05}})
	b := &bmSoak{frontSoak: newFrontSoak(t, began), outbind: outbind, sim: sim,
		replies: map[moKey]*twReply{}, rx: map[moKey][]time.Time{}, noise: map[string]int{}}
	b.front = newBMFront(t, simAddr)
	mode := ""
	if outbind {
		b.relay = newBMRelay(t)
		mode = "    bind_mode: transmitter\n    outbind_listen: 127.0.0.1:0\n    outbind_system_id: smsc\n    outbind_password: smscpw\n"
	} else {
		b.receivers = 1 + rng.IntN(2)
		mode = fmt.Sprintf("    bind_mode: transmitter_receiver\n    receivers: %d\n", b.receivers)
	}
	t.Logf("seed %d: %s", seed, strings.ReplaceAll(strings.TrimSpace(mode), "\n   ", ","))
	dir := t.TempDir()
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0, admin_token: test-token }
store: { path: %s }
simulator: { enabled: false }
upstreams:
  - name: up
    addr: %s
    system_id: up
    password: uppw
    binds: %d
%s    window: %d
    resp_timeout: %s
    enquire_link: 1s
    reconnect_max: 1s
delivery: { retry_min: 100ms, retry_max: 1s, dlr_retry: 500ms, dlr_window: %d }
policy: { bcrypt_cost: 4 }
enterprises:
  - code: T1
    signature: "【测试】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
%saccounts:
%s`, filepath.Join(dir, "qxtd.db"), b.front.addr, bmBinds, mode, bmWindow, bmRespTimeout, bmDLRWindow, bmEnterprises, bmAccounts)
	b.cfg = filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	base := "http://" + b.daemon().httpAddr
	b.x.webKey = issueAPIKey(t, base, "web")
	r1Key := issueAPIKey(t, base, "r1web")

	loadCtx, stopLoad := context.WithCancel(context.Background())
	endCtx, end := context.WithCancel(context.Background())
	var drivers, conns sync.WaitGroup
	defer func() {
		stopLoad()
		end()
		drivers.Wait()
		conns.Wait()
	}()
	var esmes []*chaosESME
	for i := range 2 {
		account := fmt.Sprintf("esme%d", i+1)
		e := &chaosESME{x: b.x, n: i + 1, system: account, handler: b.receiptHandler(account)}
		esmes = append(esmes, e)
	}
	rx1 := &chaosESME{x: b.x, system: "rx1", kind: smpp.BindReceiver, handler: b.replyHandler()}
	for _, e := range append(slices.Clone(esmes), rx1) {
		conns.Go(func() { e.keepBound(endCtx) })
	}
	if outbind {
		conns.Go(func() { b.outbinder(endCtx) })
	}
	b.warmUp(t, esmes[0])
	quiet0 := b.quietGoroutines(t, append(slices.Clone(esmes), rx1), true)

	for i, e := range esmes {
		for w := range 3 {
			wrng := rand.New(rand.NewPCG(seed+uint64(10*i+w), 7))
			drivers.Go(func() {
				e.submitPaced(loadCtx, wrng, func() string { return b.x.dest(fmt.Sprintf("139%d", 5+i)) }, "bindmodes", 4, 7)
			})
		}
	}
	drivers.Go(func() { b.replyLoop(loadCtx, endCtx, rand.New(rand.NewPCG(seed+50, 8))) })
	if outbind {
		drivers.Go(func() { b.noiseLoop(loadCtx, rand.New(rand.NewPCG(seed+60, 9))) })
	}

	// The faults, in a seeded order, 1.5–3 s apart.
	names := []string{"rx-drop-all", "rx-drop-one", "tx-drop", "lose-binds", "sigterm", "kill -9"}
	if outbind {
		names = []string{"ob-drop", "ob-drop", "tx-drop", "lose-binds", "sigterm", "kill -9"}
	}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	t.Logf("faults: %v", names)
	for _, name := range names {
		gap := 1500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
		tm := time.NewTimer(gap) // the chaos schedule, not a wait for an event
		<-tm.C
		b.fault(t, name, rng)
		t.Logf("%6.2fs %s: %s", time.Since(began).Seconds(), b.lastEvent(), b.x.counts())
	}
	calm := time.NewTimer(1500 * time.Millisecond) // clean traffic after the faults: the schedule
	<-calm.C
	stopLoad()
	drivers.Wait()
	loadEnd := time.Now()
	t.Logf("load over after %v: %s", loadEnd.Sub(began).Round(time.Millisecond), b.x.counts())

	b.check(t, "http://"+b.daemon().httpAddr, r1Key)
	quiet1 := b.quietGoroutines(t, append(slices.Clone(esmes), rx1), true)
	t.Logf("goroutines of a daemon at rest, every session new: %v after its start, %v at the end", quiet0, quiet1)
	// A leak per fault or per message would be hundreds or thousands;
	// the test's HTTP connections account for a few.
	if quiet1 > quiet0+40 {
		t.Errorf("goroutines grew from %v to %v", quiet0, quiet1)
	}

	// The last stop: exit 0, the receivers or the outbind session unbound.
	end()
	conns.Wait()
	d := b.daemon()
	took := stopDaemon(t, d, "the last SIGTERM")
	b.checkLogs(t)
	t.Logf("last SIGTERM: exit in %v; SMSC binds now: %s", took.Round(time.Millisecond), b.bindsNow())
	t.Logf("phase %v", time.Since(began).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("seed %d; the last daemon's log:\n%s", seed, tail(d.log(), 150))
	}
}

// start runs a daemon on the configuration and points the ESMEs (and the
// SMSC's outbinds) at it.
func (b *bmSoak) start() {
	t := b.t
	d := b.startNext(&b.front.relayFront)
	if b.relay != nil {
		addr, _ := d.waitLog(t, "upstream outbind listening", 0, 10*time.Second)["addr"].(string)
		b.mu.Lock()
		b.obAddr = addr
		b.mu.Unlock()
		b.relay.setTarget(addr)
	}
	b.x.net.set(d)
}

// down takes the daemon away from the ESMEs and the SMSC's outbinds.
func (b *bmSoak) down() {
	b.x.net.down()
	if b.relay != nil {
		b.relay.setTarget("")
		b.mu.Lock()
		b.obAddr = ""
		b.mu.Unlock()
	}
}

// fault does one fault of the schedule (some last a few seconds).
func (b *bmSoak) fault(t *testing.T, name string, rng *rand.Rand) {
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	switch name {
	case "rx-drop-all":
		// Every receiver dropped and kept from binding: the transmitters
		// keep sending, the receipts and replies wait at the SMSC.
		hold := dur(2*time.Second, 4*time.Second)
		o := bmOutage{from: time.Now(), rcptsBefore: b.rcptCount()}
		acc0, _ := b.sim.Stats()
		b.front.block(smpp.BindReceiver, true)
		n := b.front.dropKind(smpp.BindReceiver)
		tm := time.NewTimer(hold) // the fault's length
		<-tm.C
		acc1, _ := b.sim.Stats()
		o.acceptedDuring = acc1 - acc0
		o.receiversAtEnd, _ = b.sim.BindsOfKind("up", smpp.BindReceiver)
		o.rcptsA = b.rcptCount()
		// The daemon says so: ready, degraded, its receivers down.
		if code, body := b.readyz(t); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf("upstream up 0/%d receivers up", b.receivers)) {
			t.Errorf("/readyz with every receiver away: %d %q", code, body)
		}
		if n := metricSum(t, b.daemon(), "qxtd_upstream_receivers_up{"); n != 0 {
			t.Errorf("qxtd_upstream_receivers_up %v with every receiver away", n)
		}
		o.to = time.Now()
		b.front.block(smpp.BindReceiver, false)
		b.mu.Lock()
		b.held = append(b.held, o)
		b.mu.Unlock()
		b.waitBinds(t, 10*time.Second)
		waitCond(t, 5*time.Second, "/readyz ready once the receivers are back", func() bool {
			code, body := b.readyz(t)
			return code == http.StatusOK && body == "ready"
		})
		b.event("receivers dropped (%d) and kept away %v: %d segments taken meanwhile, receipts at the ESMEs %d → %d; back in %v",
			n, hold.Round(10*time.Millisecond), o.acceptedDuring, o.rcptsBefore, o.rcptsA, time.Since(o.to).Round(time.Millisecond))
	case "rx-drop-one":
		n := b.front.dropOne(smpp.BindReceiver)
		b.event("one receiver dropped (%d)", n)
	case "tx-drop":
		hold := dur(500*time.Millisecond, 1500*time.Millisecond)
		b.front.block(smpp.BindTransmitter, true)
		n := b.front.dropKind(smpp.BindTransmitter)
		b.mu.Lock()
		b.drops = append(b.drops, time.Now())
		b.mu.Unlock()
		tm := time.NewTimer(hold) // the fault's length
		<-tm.C
		b.front.block(smpp.BindTransmitter, false)
		b.waitBinds(t, 10*time.Second)
		b.event("transmitters dropped (%d) and kept away %v", n, hold.Round(10*time.Millisecond))
	case "lose-binds":
		// The SMSC forgets every session behind connections that stay
		// up: it refuses their submits (ESME_RINVBNDSTS), sends them
		// nothing, and (the front) answers their enquire_link with a
		// generic_nack ESME_RINVBNDSTS, as an SMSC that no longer knows a
		// session does. The outbind session goes through no front: the
		// SMSC outbinds again (a new session), the old one lingers.
		lost := b.front.loseAll()
		n := b.sim.LoseBinds()
		b.waitBinds(t, 10*time.Second)
		b.event("the SMSC lost %d binds (%d through the front)", n, lost)
	case "ob-drop":
		hold := dur(500*time.Millisecond, 2*time.Second)
		b.relay.hold(true)
		n := b.relay.dropAll()
		o := bmOutage{from: time.Now(), rcptsBefore: b.rcptCount()}
		acc0, _ := b.sim.Stats()
		tm := time.NewTimer(hold) // the SMSC's wait before it outbinds again
		<-tm.C
		acc1, _ := b.sim.Stats()
		o.acceptedDuring = acc1 - acc0
		o.receiversAtEnd, _ = b.sim.BindsOfKind("up", smpp.BindReceiver)
		o.rcptsA = b.rcptCount()
		if n := metricSum(t, b.daemon(), "qxtd_upstream_outbind_sessions{"); n != 0 {
			t.Errorf("qxtd_upstream_outbind_sessions %v with the SMSC's sessions dropped", n)
		}
		o.to = time.Now()
		b.relay.hold(false)
		b.mu.Lock()
		b.held = append(b.held, o)
		b.mu.Unlock()
		b.waitBinds(t, 10*time.Second)
		b.event("outbind session dropped (%d) and the SMSC away %v: %d segments taken meanwhile, receipts at the ESMEs %d → %d; back in %v",
			n, hold.Round(10*time.Millisecond), o.acceptedDuring, o.rcptsBefore, o.rcptsA, time.Since(o.to).Round(time.Millisecond))
	case "sigterm":
		d := b.daemon()
		b.down()
		stopped := time.Now()
		took := stopDaemon(t, d, "SIGTERM")
		b.mu.Lock()
		b.terms = append(b.terms, span{stopped, time.Now()})
		b.termTook = append(b.termTook, took.Round(10*time.Millisecond))
		b.mu.Unlock()
		b.start()
		b.waitBinds(t, 10*time.Second)
		b.event("SIGTERM: exit 0 in %v, restarted and bound again in %v", took.Round(time.Millisecond), (time.Since(stopped) - took).Round(time.Millisecond))
	case "kill -9":
		d := b.daemon()
		b.down()
		b.kill9(t, d)
		b.start()
		b.waitBinds(t, 10*time.Second)
		b.event("kill -9, restarted")
	default:
		t.Fatalf("no fault %q", name)
	}
}

// readyz is the daemon's GET /readyz.
func (b *bmSoak) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + b.daemon().httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// bindsNow is the SMSC's binds by kind, now and at most at once.
func (b *bmSoak) bindsNow() string {
	var parts []string
	for _, k := range []smpp.BindKind{smpp.BindTransmitter, smpp.BindReceiver, smpp.BindTransceiver} {
		now, peak := b.sim.BindsOfKind("up", k)
		parts = append(parts, fmt.Sprintf("%s %d (peak %d)", k, now, peak))
	}
	return strings.Join(parts, ", ")
}

// waitBinds waits until the SMSC has every transmitter bound, and every
// receiver (or the outbind session) too.
func (b *bmSoak) waitBinds(t *testing.T, within time.Duration) {
	t.Helper()
	want := max(b.receivers, 1)
	waitCond(t, within, "every transmitter and receiver bound at the SMSC", func() bool {
		tx, _ := b.sim.BindsOfKind("up", smpp.BindTransmitter)
		rx, _ := b.sim.BindsOfKind("up", smpp.BindReceiver)
		return tx == bmBinds && rx == want
	})
}

// quietGoroutines is the lowest of five readings of the daemon's
// goroutines, a moment apart, once every bind is up and every ESME bound.
// With renew, every session is new first: a session keeps the handler
// goroutines it grew (smpp.Conn's workers, up to its inbound window)
// until it ends, so a busy one would count as a leak.
func (b *bmSoak) quietGoroutines(t *testing.T, esmes []*chaosESME, renew bool) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if renew {
		b.front.dropAll()
		if b.relay != nil {
			b.relay.dropAll()
		}
		for _, e := range esmes {
			old := e.bound(ctx)
			if old == nil {
				t.Fatalf("ESME %s not bound", e.account())
			}
			_ = old.Close()
			<-old.Done()
		}
	}
	for _, e := range esmes {
		if e.bound(ctx) == nil {
			t.Fatalf("ESME %s not bound", e.account())
		}
	}
	b.waitBinds(t, 15*time.Second)
	d := b.daemon()
	q := 1e9
	for range 5 {
		q = min(q, metricSum(t, d, "go_goroutines "))
		tm := time.NewTimer(100 * time.Millisecond) // spacing the readings
		<-tm.C
	}
	return q
}

// warmUp has every path carry something before the first reading of the
// goroutines (some pools start with their first work): 20 messages to
// their receipts and 3 replies to rx1.
func (b *bmSoak) warmUp(t *testing.T, e *chaosESME) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := e.bound(ctx)
	if c == nil {
		t.Fatalf("ESME %s not bound", e.account())
	}
	var ids []string
	for range 20 {
		dst := b.x.dest("1394")
		id, err := submit(ctx, c, dst, "warm-up "+dst)
		if err != nil {
			t.Fatalf("warm-up submit: %v", err)
		}
		b.x.ack(id, what{kind: "esme", ent: "T1", dest: dst, text: "warm-up " + dst, receipt: e.account()})
		ids = append(ids, id)
	}
	var keys []moKey
	for i := range 3 {
		k := moKey{"13700000099", "106590112", fmt.Sprintf("warm-up reply %d", i)}
		r := &twReply{}
		b.mu.Lock()
		b.replies[k] = r
		b.mu.Unlock()
		r.acked = injectReply(ctx, &b.mu, &b.x.net, r, func() error { return b.sim.InjectMO(k.from, k.to, k.text) }, nil)
		keys = append(keys, k)
	}
	waitCond(t, 20*time.Second, "the warm-up's receipts and replies", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, id := range ids {
			if len(b.rcpts[id]) == 0 {
				return false
			}
		}
		for _, k := range keys {
			if len(b.rx[k]) == 0 {
				return false
			}
		}
		return true
	})
}

// replyHandler is rx1's: the replies, when they came.
func (b *bmSoak) replyHandler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		k, ok := replyOf(b.x, p)
		if !ok {
			return pdu.NewDeliverSMResp()
		}
		b.mu.Lock()
		b.rx[k] = append(b.rx[k], time.Now())
		b.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

// replyLoop has a handset reply about every 150 ms (to R1's number or
// rx1's extension, short texts in ASCII or Chinese), each sent by the SMSC
// until the daemon answers it OK: it waits while no receiver is bound.
func (b *bmSoak) replyLoop(ctx, drainCtx context.Context, rng *rand.Rand) {
	tick := time.NewTicker(150 * time.Millisecond) // pacing
	defer tick.Stop()
	var sending sync.WaitGroup
	defer sending.Wait()
	slots := make(chan struct{}, 8)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		to := []string{"1065901", "106590112"}[rng.IntN(2)]
		from := fmt.Sprintf("1370%07d", rng.IntN(30))
		text := fmt.Sprintf("bind modes reply %d", i)
		if rng.IntN(3) == 0 {
			text = fmt.Sprintf("收到 %d", i)
		}
		k := moKey{from, to, text}
		r := &twReply{}
		b.mu.Lock()
		b.replies[k] = r
		b.mu.Unlock()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		sending.Go(func() {
			defer func() { <-slots }()
			sendCtx, cancel := context.WithTimeout(drainCtx, time.Minute)
			defer cancel()
			ok := injectReply(sendCtx, &b.mu, &b.x.net, r, func() error { return b.sim.InjectMO(from, to, text) }, nil)
			b.mu.Lock()
			r.acked = ok
			b.mu.Unlock()
		})
	}
}

// outbinder is the SMSC's side of outbind: whenever it has no session
// with the daemon (none bound, the relay not held), it outbinds through
// the relay, and waits for the session or the connection's end.
func (b *bmSoak) outbinder(ctx context.Context) {
	for ctx.Err() == nil {
		if _, _, _, ok := b.x.net.current(ctx); !ok {
			return
		}
		if n, _ := b.sim.BindsOfKind("up", smpp.BindReceiver); n > 0 || b.relay.held() {
			b.pause(ctx, 20*time.Millisecond)
			continue
		}
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := b.sim.Outbind(octx, b.relay.addr, "smsc", "smscpw")
		cancel()
		if err != nil {
			b.pause(ctx, 100*time.Millisecond)
			continue
		}
		b.mu.Lock()
		b.outbinds++
		b.mu.Unlock()
		// Bound, or the connection gone (no daemon behind the relay): a
		// real SMSC tries again a little later.
		deadline := time.Now().Add(3 * time.Second)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if n, _ := b.sim.BindsOfKind("up", smpp.BindReceiver); n > 0 {
				break
			}
			if b.relay.live() == 0 {
				b.pause(ctx, 100*time.Millisecond)
				break
			}
			b.pause(ctx, 20*time.Millisecond)
		}
	}
}

// pause waits d or until ctx ends: polling the simulator's state, which
// has no event to wait on.
func (b *bmSoak) pause(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// noiseLoop knocks on the daemon's outbind port every 150–500 ms with
// something it must close unanswered: an outbind with a wrong password or
// system_id, a silent connection (0.3–2.5 s), garbage,
// an ESME's bind_transmitter, half a frame.
func (b *bmSoak) noiseLoop(ctx context.Context, rng *rand.Rand) {
	var wg sync.WaitGroup
	defer wg.Wait()
	// At most 4 at once: with the SMSC's session (and one it lost) the
	// listener's cap of 8 is never reached, which TestUpstreamOutbind
	// covers; here the noise must not keep the SMSC out.
	open := make(chan struct{}, 4)
	for i := 0; ; i++ {
		b.pause(ctx, 150*time.Millisecond+time.Duration(rng.Int64N(int64(350*time.Millisecond))))
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		addr := b.obAddr
		b.mu.Unlock()
		if addr == "" {
			continue
		}
		kinds := []string{"wrong password", "wrong system_id", "silent", "garbage", "bind_transmitter", "half a frame"}
		kind := kinds[rng.IntN(len(kinds))]
		var frame []byte
		hold := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
		switch kind {
		case "wrong password":
			frame = bmPDU(pdu.OutbindID, uint32(i+1), bmCStr("smsc"), bmCStr(fmt.Sprintf("guess%d", i)))
		case "wrong system_id":
			frame = bmPDU(pdu.OutbindID, uint32(i+1), bmCStr("intruder"), bmCStr("smscpw"))
		case "garbage":
			frame = make([]byte, 8+rng.IntN(60))
			for j := range frame {
				frame[j] = byte(rng.IntN(256))
			}
		case "bind_transmitter":
			frame = bmPDU(pdu.BindTransmitterID, uint32(i+1), bmCStr("esme1"), bmCStr("secret1"), bmCStr(""), []byte{0x34, 0, 0}, bmCStr(""))
		case "half a frame":
			full := bmPDU(pdu.OutbindID, uint32(i+1), bmCStr("smsc"), bmCStr("smscpw"))
			frame = full[:len(full)/2]
		}
		select {
		case open <- struct{}{}:
		default:
			continue
		}
		wg.Go(func() {
			defer func() { <-open }()
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return // the daemon between two lives
			}
			defer nc.Close()
			b.mu.Lock()
			b.noise[kind]++
			b.mu.Unlock()
			if frame != nil {
				if _, err := nc.Write(frame); err != nil {
					return
				}
				hold = 2 * time.Second // long enough for an answer to come, were there one
			}
			_ = nc.SetReadDeadline(time.Now().Add(hold))
			var buf [64]byte
			n, _ := io.ReadAtLeast(nc, buf[:], 1)
			if n > 0 {
				b.mu.Lock()
				b.answered = append(b.answered, fmt.Sprintf("%s: % x", kind, buf[:n]))
				b.mu.Unlock()
			}
		})
	}
}

func bmCStr(s string) []byte { return append([]byte(s), 0) }

// bmPDU frames a PDU of id with body parts, as any SMPP peer sends it.
func bmPDU(id pdu.ID, seq uint32, body ...[]byte) []byte {
	b := make([]byte, 16)
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)))
	binary.BigEndian.PutUint32(b[4:], uint32(id))
	binary.BigEndian.PutUint32(b[12:], seq)
	return b
}

// Why a segment accepted before was sent again.
const (
	bmWhyCut   = "answer cut by a drop"
	bmWhyKill  = "kill -9"
	bmWhyLate  = "answered late"
	bmWhyUnexp = "unexplained"
)

// explain is why the copy e (nil: the front never read its answer) was
// followed by another: its connection dropped before the daemon could
// read the answer (README case 3), its daemon killed before recording it
// (case 1), or its answer slower than resp_timeout (case 2). A SIGTERM,
// a lost bind, a receiver's drop explain nothing.
func (b *bmSoak) explain(e *bmSubmit) string {
	if e == nil {
		return bmWhyCut // its answer never reached the front: only a cut connection does that
	}
	b.mu.Lock()
	k, killed := b.killGen[e.gen]
	drops := slices.Clone(b.drops)
	b.mu.Unlock()
	if killed && (e.relayed.IsZero() || (!e.relayed.After(k) && k.Sub(e.relayed) < time.Second)) {
		return bmWhyKill
	}
	return explainCut(e, drops, bmRespTimeout)
}

// check verifies the guarantees once everything drained.
func (b *bmSoak) check(t *testing.T, base, r1Key string) {
	x := b.x
	drain := 60 * time.Second
	x.mu.Lock()
	acked := maps.Clone(x.acked)
	x.mu.Unlock()

	// 1 and 2: the messages final as sent, the outbox against the SMSC,
	// every segment taken on a transmitter.
	got, outbox, received, copies, segments, delivered := checkOutbox(t, drain, base, x.webKey, acked, b.sim)
	for _, m := range received {
		if m.Bind != smpp.BindTransmitter {
			t.Errorf("segment %s to %s came on a %s bind", m.ID, m.Dest, m.Bind)
		}
	}

	// 3. Segments taken twice, each explained by the ledger.
	why, dups, submits, killBound := b.front.checkCopies(t, &b.frontSoak, copies, b.explain, bmBinds, bmWindow)
	b.mu.Lock()
	kills := slices.Clone(b.kills)
	terms := slices.Clone(b.terms)
	b.mu.Unlock()

	// 4. Receipts: every one asked at its ESME with its message's state,
	// again after an answer only across a kill -9.
	rcptAgain, rcptUnexplained := b.checkReceipts(t, drain, acked, got, outbox, bmDLRWindow)

	// 5. Replies: each in R1's inbox and at rx1; a second copy only of a
	// reply a try of which was cut; at rx1 again after an answer only
	// across a kill -9.
	b.mu.Lock()
	replies := make(map[moKey]twReply, len(b.replies))
	for k, r := range b.replies {
		replies[k] = *r
	}
	b.mu.Unlock()
	inbox := map[moKey][]inboxEntry{}
	waitCond(t, drain, "every reply in R1's inbox and forwarded", func() bool {
		clear(inbox)
		all := true
		for _, it := range inboxOf(t, base, r1Key) {
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
	waitCond(t, drain, "every reply at rx1", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for k := range replies {
			if len(b.rx[k]) == 0 {
				return false
			}
		}
		return true
	})
	var cutTries, storedTwice, rxAgain int
	b.mu.Lock()
	for k, r := range replies {
		if !r.acked {
			t.Errorf("reply %+v: the SMSC never got its answer OK (%d tries)", k, r.tries)
		}
		cutTries += r.cut
		copies := len(inbox[k])
		storedTwice += copies - 1
		if copies > 1+r.cut {
			t.Errorf("reply %+v: %d copies in the inbox, %d tries of which %d cut, %d refused", k, copies, r.tries, r.cut, r.refused)
		}
		rxAgain += len(b.rx[k]) - copies
		slices.SortFunc(b.rx[k], time.Time.Compare)
		if n := unexplained(b.rx[k], copies, kills); n > 0 {
			t.Errorf("reply %+v at rx1 %d times (stored %d), %d again after an answer with no kill -9 between (at %v; kills at %v)", k, len(b.rx[k]), copies, n, b.since(b.rx[k]...), b.since(kills...))
		}
	}
	for k, items := range inbox {
		if _, ok := replies[k]; !ok {
			t.Errorf("the inbox holds %+v (%d), which no handset sent", k, len(items))
		}
	}
	b.mu.Unlock()

	// 6. The bind kinds the SMSC saw, and the faults' own evidence.
	wantRx := b.receivers
	if b.outbind {
		wantRx = 1
	}
	_, txPeak := b.sim.BindsOfKind("up", smpp.BindTransmitter)
	_, rxPeak := b.sim.BindsOfKind("up", smpp.BindReceiver)
	_, trxPeak := b.sim.BindsOfKind("up", smpp.BindTransceiver)
	if txPeak > bmBinds || rxPeak > wantRx || trxPeak != 0 {
		t.Errorf("the SMSC saw at most %d transmitters, %d receivers, %d transceivers at once; configured %d, %d, 0", txPeak, rxPeak, trxPeak, bmBinds, wantRx)
	}
	b.front.mu.Lock()
	frontBinds := maps.Clone(b.front.binds)
	refusedBinds := maps.Clone(b.front.blocked)
	nacked := b.front.nacked
	b.front.mu.Unlock()
	if n := frontBinds[smpp.BindTransceiver]; n > 0 {
		t.Errorf("the daemon bound %d transceivers", n)
	}
	if n := frontBinds[smpp.BindReceiver]; b.outbind && n > 0 {
		t.Errorf("the daemon bound %d receivers itself with bind_mode transmitter", n)
	}
	b.mu.Lock()
	held := slices.Clone(b.held)
	for _, o := range held {
		// Nobody to take the receipts: none reached an ESME after the
		// ones already on their way (DLRDelay 100 ms, the ESMEs' windows),
		// while the transmitters kept sending.
		if o.receiversAtEnd != 0 {
			t.Errorf("a receiver bound at the SMSC while every one was kept away (%v–%v)", b.since(o.from), b.since(o.to))
		}
		if o.acceptedDuring == 0 {
			t.Errorf("no segment taken while the receivers were away (%v–%v): the transmitters stopped", b.since(o.from), b.since(o.to))
		}
	}
	answered := slices.Clone(b.answered)
	noise := maps.Clone(b.noise)
	outbinds := b.outbinds
	b.mu.Unlock()
	for _, a := range answered {
		t.Errorf("the outbind port answered noise: %s", a)
	}
	x.mu.Lock()
	for _, c := range x.conflicts {
		t.Errorf("conflict: %s", c)
	}
	x.mu.Unlock()

	b.mu.Lock()
	events := slices.Clone(b.events)
	b.mu.Unlock()
	t.Logf("events: %s", strings.Join(events, "; "))
	t.Logf("%d acknowledged, %d messages, %d segments, %d delivered; %d submit_sm at the front, %d taken by the SMSC; binds at the front %v, refused while kept away %v, enquire_link nacked on lost binds %d",
		len(acked), len(outbox), segments, delivered, submits, len(received), frontBinds, refusedBinds, nacked)
	t.Logf("segments taken twice: %d, by cause %v (kills %d, bound %d)", dups, why, len(kills), killBound)
	t.Logf("receipts: %d at the ESMEs again (%d unexplained); replies: %d, %d tries cut, %d stored twice, %d at rx1 again",
		rcptAgain, rcptUnexplained, len(replies), cutTries, storedTwice, rxAgain)
	t.Logf("SMSC binds: %s; SIGTERM exits %v; kills %v, SIGTERMs %v", b.bindsNow(), b.termTook, b.since(kills...), len(terms))
	if b.outbind {
		d := b.daemon()
		t.Logf("outbinds sent by the SMSC %d; noise on the outbind port %v; the last daemon's qxtd_upstream_outbinds_total: bound %v, refused %v, failed %v, full %v",
			outbinds, noise, metricSum(t, d, `qxtd_upstream_outbinds_total{result="bound"`), metricSum(t, d, `qxtd_upstream_outbinds_total{result="refused"`),
			metricSum(t, d, `qxtd_upstream_outbinds_total{result="failed"`), metricSum(t, d, `qxtd_upstream_outbinds_total{result="full"`))
	}
}

// offsets are times as offsets from began, to the millisecond.
func offsets(began time.Time, times ...time.Time) []time.Duration {
	out := make([]time.Duration, len(times))
	for i, tm := range times {
		out[i] = tm.Sub(began).Round(time.Millisecond)
	}
	return out
}

// explainCopies explains every copy of a segment the SMSC took but the
// last (copies: by segment) with explain, from the front's ledger (byID:
// by the SMSC's id): how many were explained each way, the unexplained
// ones described, and the copies in all. The bind-mode and TLS soaks
// share it.
func explainCopies(copies map[upSegKey][]smpp.SimMessage, byID map[string]*bmSubmit, began time.Time,
	explain func(*bmSubmit) string) (why map[string]int, unexplained []string, dups int) {
	why = map[string]int{}
	for k, cs := range copies {
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, c smpp.SimMessage) int { return a.At.Compare(c.At) })
		for _, c := range cs[:len(cs)-1] {
			dups++
			e := byID[strings.ToLower(c.ID)]
			w := explain(e)
			why[w]++
			if w == bmWhyUnexp {
				unexplained = append(unexplained, fmt.Sprintf("%s seg %d: id %s sent %v, answered %v after, gen %d conn %d ended %v after the answer",
					k.dest, k.seg, c.ID, e.sent.Sub(began).Round(time.Millisecond), e.relayed.Sub(e.sent).Round(time.Millisecond), e.gen, e.conn, e.connEnd.Sub(e.relayed).Round(time.Millisecond)))
			}
		}
	}
	return why, unexplained, dups
}

// checkOutbox checks an enterprise's sends once every message is final
// (the bind-mode and TLS soaks): 1. every acknowledged id (acked) final,
// naming what was sent, none rejected; 2. the outbox (key's) against what
// the SMSC received: every segment taken, each part's SMSC id the one
// the SMSC gave that destination, nothing taken that no message names,
// the usage the delivered segments. What sim received is read once the
// outbox is final. It returns the messages by acknowledged id, the
// outbox, what the SMSC received and its copies of each segment, and the
// outbox's segments and delivered segments.
func checkOutbox(t *testing.T, drain time.Duration, base, key string, acked map[string]what, sim *smpp.Simulator) (
	got map[string]chaosMessage, outbox []chaosMessage, received []smpp.SimMessage, copies map[upSegKey][]smpp.SimMessage, segments, delivered int64) {
	t.Helper()
	// 1. Every acknowledged id final, naming what was sent.
	got = waitFinal(t, drain, base, key, acked)
	for id, w := range acked {
		m := got[id]
		if digits(m.To) != w.dest || !strings.Contains(m.Text, w.text) || m.Account != w.receipt {
			t.Errorf("id %s acknowledged for %s %q to %s by %s names %q to %s by %s", id, w.kind, w.text, w.dest, w.receipt, m.Text, m.To, m.Account)
		}
		if m.State == "rejected" {
			t.Errorf("message %s to %s rejected", id, w.dest)
		}
	}

	// 2. The outbox against the SMSC: every segment taken; the parts'
	// SMSC ids the SMSC's for that destination; the usage the delivered
	// segments.
	waitCond(t, drain, "every message of T1 final", func() bool {
		outbox = export(t, base, key)
		return !slices.ContainsFunc(outbox, func(m chaosMessage) bool { return !final(m.State) })
	})
	received = sim.Received()
	smscIDs := map[string]string{}
	copies = map[upSegKey][]smpp.SimMessage{}
	for _, m := range received {
		smscIDs[m.ID] = m.Dest
		k := upSegKey{m.Dest, segOf(m.ESMClass, m.ShortMessage)}
		copies[k] = append(copies[k], m)
	}
	byDest := map[string]chaosMessage{}
	for _, m := range outbox {
		d := digits(m.To)
		if prev, ok := byDest[d]; ok {
			t.Errorf("two messages to %s: %s and %s", d, prev.ID, m.ID)
		}
		byDest[d] = m
		var full chaosMessage
		if _, err := getJSON(base, "/v1/messages/"+m.ID, key, &full); err != nil {
			t.Fatalf("message %s: %v", m.ID, err)
		}
		segments += int64(m.Segments)
		for i, p := range full.Parts {
			if p.State == "delivered" {
				delivered++
			}
			if dest, ok := smscIDs[p.SMSCID]; !ok || dest != d {
				t.Errorf("message %s to %s: part %d (%s) has SMSC id %q, which the SMSC gave %q", m.ID, d, i+1, p.State, p.SMSCID, dest)
			}
			if len(copies[upSegKey{d, i + 1}]) == 0 {
				t.Errorf("message %s to %s (%s): segment %d of %d never reached the SMSC", m.ID, d, m.State, i+1, m.Segments)
			}
		}
	}
	for k := range copies {
		if _, ok := byDest[k.dest]; !ok {
			t.Errorf("the SMSC took segment %d for %s, which no stored message names", k.seg, k.dest)
		}
	}
	for id, w := range acked {
		if _, ok := byDest[w.dest]; !ok {
			t.Errorf("acknowledged id %s to %s is not in the outbox", id, w.dest)
		}
	}
	var usage struct{ Reserved, Delivered int64 }
	if _, err := getJSON(base, "/v1/usage", key, &usage); err != nil {
		t.Fatalf("usage: %v", err)
	}
	if usage.Delivered != delivered || usage.Reserved != 0 {
		t.Errorf("usage: delivered %d, reserved %d; the messages' delivered segments: %d", usage.Delivered, usage.Reserved, delivered)
	}

	return got, outbox, received, copies, segments, delivered
}

// checkLogs: no daemon logged at error level.
func (b *bmSoak) checkLogs(t *testing.T) {
	t.Logf("warnings logged: %v", b.scanLogs(t, nil, nil))
}

// bmFront is the SMSC as the daemon sees it: a relay to the simulator
// that knows each connection's bind kind, so that it can drop or keep
// away the receivers or the transmitters alone, and answers the
// enquire_link of a session the SMSC lost with a generic_nack
// ESME_RINVBNDSTS. Its ledger notes every submit_sm and its answer.
type bmFront struct {
	relayFront

	// under mu
	conns   map[*bmConn]bool
	keep    map[smpp.BindKind]bool // binds of this kind are closed at once
	blocked map[smpp.BindKind]int  // binds closed so
	binds   map[smpp.BindKind]int  // binds the SMSC answered OK
	nacked  int
}

type bmConn struct {
	*relayConn
	f    *bmFront
	kind smpp.BindKind // under f.mu
	lost bool          // under f.mu
}

func newBMFront(t *testing.T, target string) *bmFront {
	t.Helper()
	f := &bmFront{conns: map[*bmConn]bool{}, keep: map[smpp.BindKind]bool{}, blocked: map[smpp.BindKind]int{},
		binds: map[smpp.BindKind]int{}}
	f.listen(t, target, f.handle, f.dropAll)
	return f
}

// handle relays one connection, its binds' kinds known.
func (f *bmFront) handle(c net.Conn) {
	s, err := net.DialTimeout("tcp", f.target, 2*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	f.mu.Lock()
	fc := &bmConn{f: f}
	fc.relayConn = f.relay(c, s, relayHooks{daemon: fc.fromDaemonHook, bound: fc.bound, closed: func() { delete(f.conns, fc) }})
	f.conns[fc] = true
	f.mu.Unlock()
	f.run(fc.relayConn)
}

func (f *bmFront) block(kind smpp.BindKind, on bool) {
	f.mu.Lock()
	f.keep[kind] = on
	f.mu.Unlock()
}

func (f *bmFront) ofKind(kind smpp.BindKind) []*bmConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*bmConn
	for c := range f.conns {
		if c.kind == kind {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *bmConn) int { return a.id - b.id })
	return out
}

// dropKind closes every connection bound as kind; dropOne the oldest.
func (f *bmFront) dropKind(kind smpp.BindKind) int {
	cs := f.ofKind(kind)
	for _, c := range cs {
		c.close()
	}
	return len(cs)
}

func (f *bmFront) dropOne(kind smpp.BindKind) int {
	cs := f.ofKind(kind)
	if len(cs) == 0 {
		return 0
	}
	cs[0].close()
	return 1
}

func (f *bmFront) dropAll() {
	f.mu.Lock()
	conns := slices.Collect(maps.Keys(f.conns))
	f.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// loseAll marks every connection's session lost (its enquire_link nacked).
func (f *bmFront) loseAll() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.lost = true
	}
	return len(f.conns)
}

func bindKindOf(id pdu.ID) smpp.BindKind {
	switch id {
	case pdu.BindTransmitterID, pdu.BindTransmitterRespID:
		return smpp.BindTransmitter
	case pdu.BindReceiverID, pdu.BindReceiverRespID:
		return smpp.BindReceiver
	case pdu.BindTransceiverID, pdu.BindTransceiverRespID:
		return smpp.BindTransceiver
	}
	return 0
}

// fromDaemonHook is the front's faults on the daemon's frames: a bind of
// a kind kept away closed unanswered, the enquire_link of a session the
// SMSC lost answered generic_nack ESME_RINVBNDSTS.
func (c *bmConn) fromDaemonHook(id pdu.ID, seq uint32) relayVerdict {
	f := c.f
	switch id {
	case pdu.BindTransmitterID, pdu.BindReceiverID, pdu.BindTransceiverID:
		kind := bindKindOf(id)
		f.mu.Lock()
		c.kind = kind
		keep := f.keep[kind]
		if keep {
			f.blocked[kind]++
		}
		f.mu.Unlock()
		if keep {
			return relayClose // the SMSC away for this kind: closed unanswered
		}
	case pdu.EnquireLinkID:
		f.mu.Lock()
		lost := c.lost
		if lost {
			f.nacked++
		}
		f.mu.Unlock()
		if lost {
			nack := make([]byte, 16)
			binary.BigEndian.PutUint32(nack[0:], 16)
			binary.BigEndian.PutUint32(nack[4:], uint32(pdu.GenericNACKID))
			binary.BigEndian.PutUint32(nack[8:], uint32(smpp.StatusInvalidBindStatus))
			binary.BigEndian.PutUint32(nack[12:], seq)
			if !c.writeDaemon(nack) {
				return relayClose
			}
			return relaySkip
		}
	}
	return relayOn
}

// bound counts a bind the SMSC answered OK by its kind (under f.mu).
func (c *bmConn) bound(id pdu.ID) { c.f.binds[bindKindOf(id)]++ }

// bmRelay carries the SMSC's outbind connections to the daemon's outbind
// listener of the moment, byte for byte, so that the test can drop the
// session; held, it takes none (the SMSC waits before outbinding again).
type bmRelay struct {
	addr string

	mu       sync.Mutex
	ln       net.Listener
	target   string
	holding  bool
	pairs    map[*bmPair]bool
	accepted int
	wg       sync.WaitGroup
}

type bmPair struct {
	a, b net.Conn
	once sync.Once
}

func (p *bmPair) close() {
	p.once.Do(func() {
		_ = p.a.Close()
		_ = p.b.Close()
	})
}

func newBMRelay(t *testing.T) *bmRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &bmRelay{addr: ln.Addr().String(), ln: ln, pairs: map[*bmPair]bool{}}
	r.wg.Go(r.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		r.dropAll()
		r.wg.Wait()
	})
	return r
}

func (r *bmRelay) setTarget(addr string) {
	r.mu.Lock()
	r.target = addr
	r.mu.Unlock()
}

func (r *bmRelay) hold(on bool) {
	r.mu.Lock()
	r.holding = on
	r.mu.Unlock()
}

func (r *bmRelay) held() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holding
}

func (r *bmRelay) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pairs)
}

func (r *bmRelay) dropAll() int {
	r.mu.Lock()
	pairs := slices.Collect(maps.Keys(r.pairs))
	r.mu.Unlock()
	for _, p := range pairs {
		p.close()
	}
	return len(pairs)
}

func (r *bmRelay) serve() {
	for {
		a, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		target, holding := r.target, r.holding
		r.mu.Unlock()
		if target == "" || holding {
			_ = a.Close()
			continue
		}
		bc, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			_ = a.Close()
			continue
		}
		p := &bmPair{a: a, b: bc}
		r.mu.Lock()
		r.pairs[p] = true
		r.accepted++
		r.mu.Unlock()
		done := func() {
			p.close()
			r.mu.Lock()
			delete(r.pairs, p)
			r.mu.Unlock()
		}
		r.wg.Go(func() {
			defer done()
			_, _ = io.Copy(bc, a)
		})
		r.wg.Go(func() {
			defer done()
			_, _ = io.Copy(a, bc)
		})
	}
}

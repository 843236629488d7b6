package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

var errDiskFull = errors.New("test: no space left on device")

// waitFor polls cond until it holds or d passes (the conditions are
// counters of other goroutines: there is no event to wait on).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestStoreFailureHoldsAcceptedParts: while the store cannot commit, a
// segment the SMSC accepted stays in flight until its acceptance is
// recorded — it is not sent again — and nothing new goes out beyond the
// windows and the recording slots; once the store writes again everything
// is recorded and delivered, each message exactly once at the SMSC.
func TestStoreFailureHoldsAcceptedParts(t *testing.T) {
	for _, slots := range []int{0, 10} {
		t.Run(fmt.Sprintf("recording_slots=%d", slots), func(t *testing.T) { testStoreFailureHolds(t, slots) })
	}
}

func testStoreFailureHolds(t *testing.T, slots int) {
	const n, binds, window = 100, 2, 20
	var failing atomic.Bool
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	r := newRig(t, rigOpts{
		// The SMSC holds its answers until the disk fills: whatever the
		// gateway has on the wire then is accepted while its acceptance
		// cannot be recorded, and none is recorded before, however long
		// the submissions take on a loaded machine.
		sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{Hold: hold}},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Binds, u.Window, u.RecordingSlots = binds, window, slots
			// Longer than any wait here: a held submit_sm that timed out
			// would be rescheduled (a commit that succeeds) and its
			// worker freed for another part.
			u.RespTimeout = time.Minute
		},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				if failing.Load() {
					return errDiskFull
				}
				return nil
			}
		},
	})
	t.Cleanup(release) // before the rig stops, which waits for the answers
	// Each worker sends on its own bind while that bind is up: with one
	// bind still down, they would all queue for the other's window.
	waitFor(t, 10*time.Second, "every bind up", func() bool { return r.gw.Health().Upstreams[0].BindsUp == binds })
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ids := submitN(t, e, n, "1380077")
	inflight := func() int { return r.gw.UpstreamCounts()[0].InFlight }

	// How many of its workers the dispatcher fills is its own business:
	// it reads the store again only once a worthwhile share of them is
	// free, so with a backlog it may stop a few short of all of them, and
	// with nothing answered stay there. Wait until it has parts out at the
	// SMSC and, with recording slots, more in flight than the windows
	// hold: those wait for a window slot, which the answers free while
	// their acceptance cannot be recorded.
	waitFor(t, 20*time.Second, "parts in flight and out at the SMSC", func() bool {
		in := inflight()
		return in > 0 && r.sim.Answering() > 0 && (slots == 0 || in > binds*window)
	})
	failedAt := r.store.Stats().FailedCommits
	failing.Store(true)
	r.sim.SetFaults(smpp.Faults{}) // from now on answered at once
	release()

	// The answers free the windows, and the parts that waited for a
	// window slot go out and are accepted too; no acceptance can be
	// recorded, so the dispatcher stops and every part stays in flight.
	// Let the gateway try for a while (many failed commits) before the
	// disk frees up.
	waitFor(t, 20*time.Second, "every part in flight accepted, and failed commits", func() bool {
		acc, _ := r.sim.Stats()
		return r.sim.Answering() == 0 && acc >= inflight() && r.store.Stats().FailedCommits >= failedAt+15
	})
	if r.gw.Health().StoreWritable {
		t.Error("Health says the store is writable while its commits fail")
	}
	acc, _ := r.sim.Stats()
	in := inflight()
	t.Logf("SMSC accepted %d submit_sm while the store could not write; %d parts in flight", acc, in)
	if acc > binds*window+slots {
		t.Errorf("SMSC got %d submit_sm while the store could not write, want at most the windows and the recording slots (%d)", acc, binds*window+slots)
	}
	if acc > in {
		t.Errorf("SMSC accepted %d submit_sm but only %d parts are in flight: a part was let go before its acceptance was recorded", acc, in)
	}
	if slots > 0 && acc <= binds*window {
		t.Errorf("SMSC accepted %d submit_sm, want more than the windows (%d): the parts in the recording slots did not go out as the answers freed the windows", acc, binds*window)
	}
	failing.Store(false)

	got := e.waitReceipts(t, n, 30*time.Second)
	for _, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("message %s: receipt %+v present=%v", id, rc, ok)
		}
	}
	perDest := map[string]int{}
	for _, m := range r.sim.Received() {
		perDest[m.Dest]++
	}
	if len(perDest) != n {
		t.Errorf("SMSC got %d distinct messages, want %d", len(perDest), n)
	}
	for d, c := range perDest {
		if c != 1 {
			t.Errorf("%s reached the SMSC %d times, want once", d, c)
		}
	}
	if !r.gw.Health().StoreWritable {
		t.Error("Health says the store is not writable after commits succeed again")
	}
}

// TestReconnectAllBindsPromptly: after an SMSC outage long enough for the
// reconnect backoff to grow, every configured bind is up again within 5 s
// of the SMSC's return, and Health reports the binds down meanwhile.
func TestReconnectAllBindsPromptly(t *testing.T) {
	const binds = 4
	sl := listen(t)
	addr := sl.Addr().String()
	startSim := func(l net.Listener) *smpp.Simulator {
		s := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw"})
		go func() { _ = s.Serve(l) }()
		return s
	}
	sim := startSim(sl)
	r := newRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = addr, binds
	}})
	up := func() int { return r.gw.Health().Upstreams[0].BindsUp }
	waitFor(t, 10*time.Second, "all binds up", func() bool { return up() == binds })
	if h := r.gw.Health(); h.Degraded() || h.Upstreams[0].BindsConfigured != binds {
		t.Fatalf("health with every bind up: %+v", h)
	}

	_ = sim.Close() // the SMSC goes away: listener and binds
	waitFor(t, 10*time.Second, "all binds down", func() bool { return up() == 0 })
	if !r.gw.Health().Degraded() {
		t.Error("health not degraded with every bind down")
	}
	// While it is away, its address takes connections and closes them at
	// once (bind failed). Stay away until each bind failed six times in a
	// row: a doubling backoff is then past 5 s (0.2, 0.4, … 6.4 s).
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	refused := make(chan struct{})
	go func() {
		defer close(refused)
		for n := 0; n < 6*binds; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	select {
	case <-refused:
	case <-time.After(60 * time.Second):
		t.Fatal("binds did not try again")
	}
	back := time.Now()
	sim = startSim(l)
	t.Cleanup(func() { _ = sim.Close() })
	waitFor(t, 15*time.Second, "all binds up again", func() bool { return up() == binds })
	if el := time.Since(back); el > 5*time.Second {
		t.Errorf("all %d binds up %v after the SMSC returned, want within 5s", binds, el)
	} else {
		t.Logf("all %d binds up %v after the SMSC returned", binds, el)
	}
	if h := r.gw.Health(); h.Degraded() {
		t.Errorf("health still degraded: %+v", h)
	}
}

// TestUpstreamSeriesStartAtZero: the per-upstream series exist before
// anything happened, so alerts and rate() see them from the start.
func TestUpstreamSeriesStartAtZero(t *testing.T) {
	r := newRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) { u.Binds = 3 }})
	have := counters(t, r)
	want := map[string]float64{
		"qxtd_upstream_binds_configured,upstream=sim":     3,
		"qxtd_upstream_receivers_configured,upstream=sim": 0,
		"qxtd_upstream_disconnects_total,upstream=sim":    0,
		"qxtd_upstream_record_retries_total,upstream=sim": 0,
	}
	for _, k := range []string{"timeout", "throttled", "queue_full", "system_error", "rejected", "connection", "late_ok", "bind_lost"} {
		want["qxtd_upstream_submit_errors_total,kind="+k+",upstream=sim"] = 0
	}
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

// TestReceiptSentAgainAfterFailedAck: when the commit of a receipt's
// acknowledgement fails, the receipt is still pending in the store and
// neither handed over nor in flight: the forwarder scans for it as soon
// as the store takes writes again (not a DLRRetry later, a minute here),
// sends it again, and the second acknowledgement is recorded.
func TestReceiptSentAgainAfterFailedAck(t *testing.T) {
	var armed atomic.Bool
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		gwcfg: func(c *gateway.Config) {
			c.DLRRetry = time.Minute
		},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				if armed.CompareAndSwap(true, false) {
					return errDiskFull // the next commit: the acknowledgement's
				}
				return nil
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got := make(chan string, 4)
	conn := r.dialHandler(ctx, t, func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		rc, err := smpp.ParseReceipt(p)
		if err != nil {
			return smpp.ErrorResponse(p, smpp.StatusSystemError)
		}
		if len(got) == 0 {
			armed.Store(true) // fail the commit of this answer
		}
		got <- rc.ID
		return pdu.NewDeliverSMResp()
	})
	resp, err := conn.Request(ctx, submitSM("1069", "13900001111", "ack fails once"))
	if err != nil {
		t.Fatal(err)
	}
	id := smpp.Str(resp, pdufield.MessageID)
	for i := range 2 {
		select {
		case rid := <-got:
			if rid != id {
				t.Fatalf("receipt %d for %s, want %s", i+1, rid, id)
			}
		case <-ctx.Done():
			t.Fatalf("%d receipts arrived, want the first and, after its acknowledgement failed to commit, a second", i)
		}
	}
	r.waitNoPendingDLRs(ctx, t, "esme")
	if armed.Load() {
		t.Error("the injected commit failure never happened")
	}
}

// TestReceiptsPausedWhileStoreFails: while the store cannot commit, a
// receipt whose acknowledgement it could not record is not sent to the
// ESME again and again at the ESME's pace (it would come back at once,
// its acknowledgement failing each time): the forwarder waits until the
// store takes writes again, then sends it once more and the
// acknowledgement is recorded.
func TestReceiptsPausedWhileStoreFails(t *testing.T) {
	var failing atomic.Bool
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				if failing.Load() {
					return errDiskFull
				}
				return nil
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got atomic.Int32
	conn := r.dialHandler(ctx, t, func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if _, err := smpp.ParseReceipt(p); err != nil {
			return smpp.ErrorResponse(p, smpp.StatusSystemError)
		}
		if got.Add(1) == 1 {
			failing.Store(true) // from the commit of this answer on
		}
		return pdu.NewDeliverSMResp()
	})
	if _, err := conn.Request(ctx, submitSM("1069", "13900001112", "store fails")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !failing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no receipt reached the ESME")
		}
		time.Sleep(5 * time.Millisecond)
	}
	<-time.After(time.Second) // the window the receipts are counted over, not a wait for an event
	t.Logf("%d copies while the store failed", got.Load())
	if n := got.Load(); n > 3 {
		t.Errorf("%d copies of one receipt sent in a second while the store could not record an acknowledgement", n)
	}
	failing.Store(false)
	r.waitNoPendingDLRs(ctx, t, "esme")
}

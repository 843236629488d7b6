package smpp_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/smpp"
)

// esme binds to addr once and records the deliver_sm it receives.
type esme struct {
	*smpp.Conn
	got *recorder[pdu.Body]
}

func dialESME(t *testing.T, addr, systemID, password string, kind smpp.BindKind) *esme {
	t.Helper()
	e := &esme{got: newRecorder[pdu.Body]()}
	c, err := smpp.Dial(testCtx(t), smpp.ClientOptions{
		Addr: addr, SystemID: systemID, Password: password, Kind: kind,
		Conn: smpp.ConnOptions{RespTimeout: 2 * time.Second},
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			e.got.add(p)
			return pdu.NewDeliverSMResp()
		}),
	})
	if err != nil {
		t.Fatalf("bind %s as %s: %v", addr, systemID, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.Conn = c
	return e
}

func (e *esme) submit(t *testing.T, text string, reg uint8) string {
	t.Helper()
	resp, err := e.Request(testCtx(t), newSubmitSM("10086", "13712345678", text, reg))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	id := smpp.Str(resp, pdufield.MessageID)
	if id == "" {
		t.Fatal("submit_sm_resp without message_id")
	}
	return id
}

func (e *esme) receipts(t *testing.T, n int) []smpp.Receipt {
	t.Helper()
	var rs []smpp.Receipt
	for _, p := range e.got.waitN(t, fmt.Sprintf("%d receipts", n), n) {
		r, err := smpp.ParseReceipt(p)
		if err != nil {
			t.Fatalf("ParseReceipt(%q): %v", smpp.Bytes(p, pdufield.ShortMessage), err)
		}
		rs = append(rs, r)
	}
	return rs
}

func TestSimulatorBind(t *testing.T) {
	_, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "pw"})
	for _, tc := range []struct {
		name, user, pass string
		want             pdu.Status
	}{
		{"accepted", "gw", "pw", smpp.StatusOK},
		{"wrong password", "gw", "nope", smpp.StatusInvalidPassword},
		{"wrong system_id", "other", "pw", smpp.StatusInvalidSystemID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransceiverID, tc.user, tc.pass, 1, tc.want)
		})
	}
}

// A carrier caps binds per account: the third bind of the same system_id
// is refused while two are open, and taken once one of them ends.
func TestSimulatorMaxBinds(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "pw", MaxBinds: 2})
	a := dialPeer(t, addr)
	a.bind(pdu.BindTransceiverID, "gw", "pw", 1, smpp.StatusOK)
	b := dialPeer(t, addr)
	b.bind(pdu.BindTransmitterID, "gw", "pw", 1, smpp.StatusOK)
	c := dialPeer(t, addr)
	c.bind(pdu.BindReceiverID, "gw", "pw", 1, smpp.StatusBindFailed)
	if now, peak := sim.Binds("gw"); now != 2 || peak != 2 {
		t.Fatalf("Binds = %d now, %d peak; want 2, 2", now, peak)
	}
	_ = a.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for now, _ := sim.Binds("gw"); now != 1; now, _ = sim.Binds("gw") {
		if time.Now().After(deadline) {
			t.Fatalf("a closed bind still counted: %d open", now)
		}
		time.Sleep(5 * time.Millisecond) // polling the count: the close is the server's event
	}
	d := dialPeer(t, addr)
	d.bind(pdu.BindReceiverID, "gw", "pw", 1, smpp.StatusOK)
	if _, peak := sim.Binds("gw"); peak != 2 {
		t.Fatalf("peak %d, want 2", peak)
	}
}

// An SMSC of SMPP 3.3 has no transceivers: with NoTransceiver the
// simulator refuses bind_transceiver and takes a transmitter and a
// receiver, counted by kind.
func TestSimulatorNoTransceiver(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "pw", NoTransceiver: true})
	a := dialPeer(t, addr)
	a.bind(pdu.BindTransceiverID, "gw", "pw", 1, smpp.StatusInvalidCommandID)
	b := dialPeer(t, addr)
	b.bind(pdu.BindTransmitterID, "gw", "pw", 1, smpp.StatusOK)
	c := dialPeer(t, addr)
	c.bind(pdu.BindReceiverID, "gw", "pw", 1, smpp.StatusOK)
	for _, k := range []struct {
		kind            smpp.BindKind
		wantNow, wantPk int
	}{{smpp.BindTransceiver, 0, 0}, {smpp.BindTransmitter, 1, 1}, {smpp.BindReceiver, 1, 1}} {
		if now, peak := sim.BindsOfKind("gw", k.kind); now != k.wantNow || peak != k.wantPk {
			t.Errorf("BindsOfKind(%s) = %d now, %d peak; want %d, %d", k.kind, now, peak, k.wantNow, k.wantPk)
		}
	}
	if now, _ := sim.Binds("gw"); now != 2 {
		t.Errorf("Binds = %d, want 2", now)
	}
}

func TestSimulatorSubmitAndReceipt(t *testing.T) {
	const delay = 50 * time.Millisecond
	sim, addr := startSim(t, smpp.SimOptions{DLRDelay: delay, Record: true})
	e := dialESME(t, addr, "gw", "any", smpp.BindTransceiver)
	start := time.Now()
	id := e.submit(t, "hello world", 1)
	if _, err := strconv.ParseUint(id, 16, 64); err != nil {
		t.Fatalf("message id %q is not hex", id)
	}
	p := e.got.waitN(t, "receipt", 1)[0]
	if d := time.Since(start); d < delay {
		t.Errorf("receipt after %s, DLRDelay is %s", d, delay)
	}
	if esm := smpp.Byte(p, pdufield.ESMClass); esm != 0x04 {
		t.Errorf("esm_class %#x", esm)
	}
	if src, dst := smpp.Str(p, pdufield.SourceAddr), smpp.Str(p, pdufield.DestinationAddr); src != "13712345678" || dst != "10086" {
		t.Errorf("receipt from %q to %q", src, dst)
	}
	text := string(smpp.Bytes(p, pdufield.ShortMessage))
	if !strings.HasPrefix(text, "id:"+id+" ") || !strings.Contains(text, "stat:DELIVRD") {
		t.Errorf("receipt text %q", text)
	}
	r := e.receipts(t, 1)[0]
	if r.ID != id || r.State != smpp.StateDelivered || r.Err != "000" || r.Text != "hello world" || r.Dlvrd != 1 {
		t.Errorf("receipt %+v", r)
	}
	if got := sim.Received(); len(got) != 1 || got[0].ID != id || string(got[0].ShortMessage) != "hello world" ||
		got[0].Dest != "13712345678" || got[0].SystemID != "gw" || got[0].RegDelivery != 1 {
		t.Errorf("Received() = %+v", got)
	}
	waitFor(t, "stats", func() bool { acc, sent := sim.Stats(); return acc == 1 && sent == 1 })
	t.Run("no receipt unless asked", func(t *testing.T) {
		e.submit(t, "quiet", 0)
		e.got.expectNone(t, 2*delay)
	})
}

// waitFor polls cond with a ticker until it holds (for state without an
// event to wait on, such as counters).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// expectNone asserts that no further event arrives within d.
func (r *recorder[T]) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	n := len(r.all())
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-r.ch:
			if got := r.all(); len(got) > n {
				t.Fatalf("unexpected event %v", got[n])
			}
		case <-timer.C:
			return
		}
	}
}

func TestSimulatorReceiptToReceiverBind(t *testing.T) {
	_, addr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	tx := dialESME(t, addr, "gw", "", smpp.BindTransmitter)
	rx := dialESME(t, addr, "gw", "", smpp.BindReceiver)
	other := dialESME(t, addr, "someone-else", "", smpp.BindReceiver)
	id := tx.submit(t, "to the receiver", 1)
	if r := rx.receipts(t, 1)[0]; r.ID != id {
		t.Fatalf("receipt for %q, want %q", r.ID, id)
	}
	if got := tx.got.all(); len(got) != 0 {
		t.Errorf("the transmitter bind got %d deliver_sm", len(got))
	}
	other.got.expectNone(t, 50*time.Millisecond)
	// A receiver bind may not submit.
	if _, err := rx.Request(testCtx(t), newSubmitSM("1", "2", "x", 0)); !isStatus(err, smpp.StatusInvalidBindStatus) {
		t.Errorf("submit on a receiver bind: %v", err)
	}
}

func isStatus(err error, want pdu.Status) bool {
	var st pdu.Status
	return errors.As(err, &st) && st == want
}

// Receipts wait while no receiver of the system_id is bound, and go out
// when one binds.
func TestSimulatorReceiptsWaitForReceiver(t *testing.T) {
	const delay = 10 * time.Millisecond
	sim, addr := startSim(t, smpp.SimOptions{DLRDelay: delay})
	tx := dialESME(t, addr, "gw", "", smpp.BindTransmitter)
	ids := map[string]bool{tx.submit(t, "a", 1): true, tx.submit(t, "b", 1): true}
	due := time.NewTimer(5 * delay) // the receipts are due by then
	<-due.C
	if _, sent := sim.Stats(); sent != 0 {
		t.Fatalf("%d receipts sent without a receiver", sent)
	}
	rx := dialESME(t, addr, "gw", "", smpp.BindReceiver)
	for _, r := range rx.receipts(t, 2) {
		if !ids[r.ID] {
			t.Errorf("receipt for unknown id %q", r.ID)
		}
		delete(ids, r.ID)
	}
}

// Many receipts due at once go out concurrently, each exactly once.
func TestSimulatorManyReceipts(t *testing.T) {
	const n = 40
	sim, addr := startSim(t, smpp.SimOptions{DLRDelay: 20 * time.Millisecond})
	e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
	ids := make(map[string]bool)
	res := make([]<-chan reqResult, n)
	for i := range n {
		res[i] = request(testCtx(t), e.Conn, newSubmitSM("1", "2", fmt.Sprint(i), 1))
	}
	for _, ch := range res {
		r := recvWithin(t, "submit", ch)
		if r.err != nil {
			t.Fatal(r.err)
		}
		ids[smpp.Str(r.resp, pdufield.MessageID)] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct ids for %d submits", len(ids), n)
	}
	for _, r := range e.receipts(t, n) {
		if !ids[r.ID] {
			t.Errorf("receipt for %q: unknown or repeated", r.ID)
		}
		delete(ids, r.ID)
	}
	e.got.expectNone(t, 50*time.Millisecond)
	waitFor(t, "stats", func() bool { acc, sent := sim.Stats(); return acc == n && sent == n })
}

func TestSimulatorFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults smpp.Faults
		want   pdu.Status
	}{
		{"throttle", smpp.Faults{Throttle: 1}, smpp.StatusThrottled},
		{"queue full", smpp.Faults{QueueFull: 1}, smpp.StatusMsgQueueFull},
		{"reject", smpp.Faults{Reject: 1}, smpp.StatusSubmitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, addr := startSim(t, smpp.SimOptions{Faults: tc.faults, DLRDelay: time.Millisecond})
			e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
			for i := range 20 {
				resp, err := e.Request(testCtx(t), newSubmitSM("1", "2", "x", 1))
				if !isStatus(err, tc.want) || resp.Header().ID != pdu.SubmitSMRespID {
					t.Fatalf("submit %d: %v, want status %#x", i, err, uint32(tc.want))
				}
			}
			if acc, _ := sim.Stats(); acc != 0 {
				t.Errorf("accepted %d", acc)
			}
			sim.SetFaults(smpp.Faults{}) // faults change at once
			e.submit(t, "now fine", 0)
		})
	}
	for _, tc := range []struct {
		name   string
		faults smpp.Faults
		state  smpp.MessageState
		stat   string
	}{
		{"undeliverable", smpp.Faults{Undeliv: 1}, smpp.StateUndeliverable, "stat:UNDELIV err:001"},
		{"expired", smpp.Faults{Expire: 1}, smpp.StateExpired, "stat:EXPIRED err:002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startSim(t, smpp.SimOptions{Faults: tc.faults, DLRDelay: time.Millisecond})
			e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
			for i := range 5 {
				e.submit(t, fmt.Sprint(i), 1)
			}
			for i, p := range e.got.waitN(t, "receipts", 5) {
				if text := string(smpp.Bytes(p, pdufield.ShortMessage)); !strings.Contains(text, tc.stat) || !strings.Contains(text, "dlvrd:000") {
					t.Errorf("receipt %d: %q", i, text)
				}
				if r, err := smpp.ParseReceipt(p); err != nil || r.State != tc.state {
					t.Errorf("receipt %d: %+v %v", i, r, err)
				}
			}
		})
	}
	t.Run("no response", func(t *testing.T) {
		_, addr := startSim(t, smpp.SimOptions{Faults: smpp.Faults{NoResponse: 1}})
		e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := e.Request(ctx, newSubmitSM("1", "2", "x", 0)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("drop after", func(t *testing.T) {
		_, addr := startSim(t, smpp.SimOptions{Faults: smpp.Faults{DropAfter: 2}})
		e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
		e.submit(t, "1", 0)
		e.submit(t, "2", 0)
		if _, err := e.Request(testCtx(t), newSubmitSM("1", "2", "3", 0)); !errors.Is(err, smpp.ErrClosed) {
			t.Fatalf("third submit: %v, want ErrClosed", err)
		}
	})
}

func TestSimulatorMessageIDFormats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     smpp.SimOptions
		receipt func(id string) string
	}{
		{"hex", smpp.SimOptions{}, func(id string) string { return id }},
		{"dec", smpp.SimOptions{IDFormat: "dec"}, func(id string) string { return id }},
		{"receipt decimal", smpp.SimOptions{ReceiptDecimal: true}, func(id string) string {
			v, _ := strconv.ParseUint(id, 16, 64)
			return strconv.FormatUint(v, 10)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.DLRDelay = time.Millisecond
			_, addr := startSim(t, tc.opt)
			e := dialESME(t, addr, "gw", "", smpp.BindTransceiver)
			id := e.submit(t, "x", 1)
			base := 16
			if tc.opt.IDFormat == "dec" {
				base = 10
			}
			if _, err := strconv.ParseUint(id, base, 64); err != nil {
				t.Fatalf("id %q is not base %d", id, base)
			}
			p := e.got.waitN(t, "receipt", 1)[0]
			want := tc.receipt(id)
			if !strings.HasPrefix(string(smpp.Bytes(p, pdufield.ShortMessage)), "id:"+want+" ") {
				t.Errorf("receipt text %q, want id %s", smpp.Bytes(p, pdufield.ShortMessage), want)
			}
			if got := strings.TrimRight(string(smpp.TLV(p, pdutlv.TagReceiptedMessageID)), "\x00"); got != want {
				t.Errorf("receipted_message_id %q, want %q", got, want)
			}
		})
	}
}

// LoseBinds: the SMSC forgets the sessions bound while their connections
// stay up. Each then answers submit_sm ESME_RINVBNDSTS and no longer
// counts against MaxBinds, so the client can bind again at once; closing
// a lost session does not uncount it twice.
func TestSimulatorLoseBinds(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "pw", MaxBinds: 2, Record: true})
	a := dialESME(t, addr, "gw", "pw", smpp.BindTransceiver)
	b := dialESME(t, addr, "gw", "pw", smpp.BindTransmitter)
	a.submit(t, "before", 0)
	if n := sim.LoseBinds(); n != 2 {
		t.Fatalf("LoseBinds forgot %d sessions, want 2", n)
	}
	for name, e := range map[string]*esme{"transceiver": a, "transmitter": b} {
		_, err := e.Request(testCtx(t), newSubmitSM("10086", "13712345678", "after", 0))
		if !errors.Is(err, smpp.StatusInvalidBindStatus) {
			t.Errorf("submit on the lost %s: %v, want ESME_RINVBNDSTS", name, err)
		}
	}
	if now, _ := sim.Binds("gw"); now != 0 {
		t.Fatalf("%d binds counted after LoseBinds, want 0", now)
	}
	c := dialESME(t, addr, "gw", "pw", smpp.BindTransceiver)
	c.submit(t, "on the new bind", 0)
	_ = a.Close()
	_ = b.Close()
	<-a.Done()
	<-b.Done()
	d := dialESME(t, addr, "gw", "pw", smpp.BindTransmitter)
	d.submit(t, "a second new bind", 0)
	if now, peak := sim.Binds("gw"); now != 2 || peak != 2 {
		t.Fatalf("Binds = %d now, %d peak; want 2, 2 (lost sessions closed, uncounted once)", now, peak)
	}
	if got := len(sim.Received()); got != 3 {
		t.Fatalf("the SMSC accepted %d submit_sm, want 3 (none on a lost session)", got)
	}
}

// InjectDeliverSMOn sends on the bind it names, in the order the binds
// came; a bind that is not there is ErrNoReceiver.
func TestSimulatorInjectDeliverSMOn(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{})
	var rx []*esme
	for range 3 {
		rx = append(rx, dialESME(t, addr, "gw", "", smpp.BindReceiver))
	}
	dialESME(t, addr, "gw", "", smpp.BindTransmitter) // not a receiver: not counted
	if n := sim.Receivers("gw"); n != 3 {
		t.Fatalf("Receivers = %d, want 3", n)
	}
	for _, i := range []int{2, 0, 2} {
		sm := smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10086", ShortMessage: []byte("to bind " + strconv.Itoa(i))}
		if err := sim.InjectDeliverSMOn("gw", i, sm); err != nil {
			t.Fatalf("inject on bind %d: %v", i, err)
		}
	}
	if got := rx[2].got.waitN(t, "two deliver_sm on bind 2", 2); string(smpp.Bytes(got[1], pdufield.ShortMessage)) != "to bind 2" {
		t.Fatalf("bind 2 got %q", smpp.Bytes(got[1], pdufield.ShortMessage))
	}
	if got := rx[0].got.waitN(t, "one deliver_sm on bind 0", 1); string(smpp.Bytes(got[0], pdufield.ShortMessage)) != "to bind 0" {
		t.Fatalf("bind 0 got %q", smpp.Bytes(got[0], pdufield.ShortMessage))
	}
	rx[1].got.expectNone(t, 50*time.Millisecond)
	for _, bad := range []struct {
		id string
		i  int
	}{{"gw", 3}, {"gw", -1}, {"nobody", 0}} {
		if err := sim.InjectDeliverSMOn(bad.id, bad.i, smpp.SM{ShortMessage: []byte("x")}); !errors.Is(err, smpp.ErrNoReceiver) {
			t.Errorf("bind %d of %q: %v, want ErrNoReceiver", bad.i, bad.id, err)
		}
	}
}

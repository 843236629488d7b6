package smpp_test

import (
	"bufio"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// runClient starts c.Run and returns a channel closed when it returns;
// the test ends by cancelling it.
func runClient(t *testing.T, opt smpp.ClientOptions) (*smpp.Client, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	c := smpp.NewClient(opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); waitDone(t, "Run to return", done) })
	return c, cancel, done
}

func startSim(t *testing.T, opt smpp.SimOptions) (*smpp.Simulator, string) {
	t.Helper()
	s := smpp.NewSimulator(opt)
	l := listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	return s, l.Addr().String()
}

func states(r *recorder[bool], want ...bool) func([]bool) bool {
	return func(got []bool) bool {
		if len(got) < len(want) {
			return false
		}
		for i := range want {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
}

func TestClientReconnects(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "pw"})
	up := newRecorder[bool]()
	c, _, _ := runClient(t, smpp.ClientOptions{
		Addr: addr, SystemID: "gw", Password: "pw",
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnState: up.add,
	})
	ctx := testCtx(t)
	up.wait(t, "bind up", states(up, true))
	if _, err := c.Submit(ctx, newSubmitSM("10086", "13712345678", "one", 0)); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	for round := range 2 {
		sim.DropConnections()
		up.wait(t, "down and up again", states(up, append([]bool{true}, repeatUpDown(round+1)...)...))
		if !c.Up() {
			t.Fatal("Up() = false after OnState(true)")
		}
		if _, err := c.Submit(ctx, newSubmitSM("10086", "13712345678", "again", 0)); err != nil {
			t.Fatalf("Submit after reconnect: %v", err)
		}
	}
	if acc, _ := sim.Stats(); acc != 3 {
		t.Errorf("simulator accepted %d", acc)
	}
}

func repeatUpDown(n int) []bool {
	var v []bool
	for range n {
		v = append(v, false, true)
	}
	return v
}

// flakyBackend refuses every bind while refuse is set, and records when
// each bind was tried.
type flakyBackend struct {
	*recBackend
	refuse atomic.Bool
	tries  *recorder[time.Time]
}

func (b *flakyBackend) Bind(ctx context.Context, req smpp.BindRequest) (smpp.Session, error) {
	b.tries.add(time.Now())
	if b.refuse.Load() {
		return nil, smpp.StatusBindFailed
	}
	return b.recBackend.Bind(ctx, req)
}

func TestClientSubmitWaitsForBind(t *testing.T) {
	const minBackoff = 20 * time.Millisecond
	b := &flakyBackend{recBackend: newRecBackend(), tries: newRecorder[time.Time]()}
	b.refuse.Store(true)
	_, addr := startServer(t, b, smpp.ServerOptions{})
	up := newRecorder[bool]()
	c, _, _ := runClient(t, smpp.ClientOptions{
		Addr: addr, SystemID: "ent1", Password: "secret",
		MinBackoff: minBackoff, MaxBackoff: time.Second,
		OnState: up.add,
	})
	res := goResult(func() reqResult {
		resp, err := c.Submit(testCtx(t), newSubmitSM("1", "2", "queued", 0))
		return reqResult{resp, err}
	})
	tries := b.tries.waitN(t, "four refused binds", 4)
	select {
	case r := <-res:
		t.Fatalf("Submit returned while the bind was down: %v %v", r.resp, r.err)
	default:
	}
	if c.Up() || len(up.all()) != 0 {
		t.Fatalf("Up() = %v, states %v while refused", c.Up(), up.all())
	}
	// Backoff doubles from MinBackoff with ±50 % jitter: the wait before
	// the fourth try is at least half of 4×MinBackoff.
	if gap := tries[3].Sub(tries[2]); gap < 2*minBackoff {
		t.Errorf("retried after %s, want at least %s", gap, 2*minBackoff)
	}
	b.refuse.Store(false)
	r := recvWithin(t, "Submit", res)
	if r.err != nil || smpp.Str(r.resp, pdufield.MessageID) != "srv-1" {
		t.Fatalf("Submit: %v %v", r.resp, r.err)
	}
	up.wait(t, "up", states(up, true))
}

func TestClientRunCancelUnbinds(t *testing.T) {
	l := listen(t)
	up := newRecorder[bool]()
	c, cancel, done := runClient(t, smpp.ClientOptions{
		Addr: l.Addr().String(), SystemID: "gw", Password: "pw", Kind: smpp.BindTransmitter,
		OnState: up.add,
	})
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, nc)
	t.Cleanup(func() { _ = nc.Close() })
	bind := p.nextPDU()
	if bind.Header().ID != pdu.BindTransmitterID || smpp.Str(bind, pdufield.SystemID) != "gw" ||
		smpp.Str(bind, pdufield.Password) != "pw" || smpp.Byte(bind, pdufield.InterfaceVersion) != 0x34 {
		t.Fatalf("bind %s %v", bind.Header().ID, bind.Fields())
	}
	p.send(frame(pdu.BindTransmitterRespID, 0, bind.Header().Seq, cs("smsc")))
	up.wait(t, "up", states(up, true))
	if !c.Up() {
		t.Fatal("Up() = false")
	}
	cancel()
	h, _ := p.next()
	if h.ID != pdu.UnbindID {
		t.Fatalf("got %s, want unbind", h.ID)
	}
	select {
	case <-done:
		t.Fatal("Run returned before unbind_resp")
	default:
	}
	// Being unbound: not up, and a submit is refused at once, so that
	// the caller sends it on another bind.
	if c.Up() {
		t.Error("Up() while unbinding")
	}
	if _, err := c.SubmitIfUp(context.Background(), newSubmitSM("1", "2", "x", 0)); !errors.Is(err, smpp.ErrNotBound) {
		t.Errorf("SubmitIfUp while unbinding = %v, want ErrNotBound", err)
	}
	p.send(frame(pdu.UnbindRespID, 0, h.Seq))
	waitDone(t, "Run", done)
	p.expectClosed()
	up.wait(t, "down", states(up, true, false))
	if c.Up() {
		t.Fatal("Up() after Run returned")
	}
	if _, err := c.Submit(canceledCtx(), newSubmitSM("1", "2", "x", 0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit after Run = %v", err)
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestClientRunCancelWhileDown(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	_ = l.Close() // nothing listens: every dial fails
	_, cancel, done := runClient(t, smpp.ClientOptions{Addr: addr, MinBackoff: time.Hour})
	cancel()
	waitDone(t, "Run", done)
}

// The SMSC's requests (deliver_sm) reach the client's Handler.
func TestClientHandler(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	_ = sim
	got := newRecorder[pdu.Body]()
	c, _, _ := runClient(t, smpp.ClientOptions{
		Addr: addr, SystemID: "gw",
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			got.add(p)
			return pdu.NewDeliverSMResp()
		}),
	})
	resp, err := c.Submit(testCtx(t), newSubmitSM("10086", "13712345678", "hi", 1))
	if err != nil {
		t.Fatal(err)
	}
	r, err := smpp.ParseReceipt(got.waitN(t, "receipt", 1)[0])
	if err != nil || r.ID != smpp.Str(resp, pdufield.MessageID) {
		t.Fatalf("receipt %+v %v for %s", r, err, smpp.Str(resp, pdufield.MessageID))
	}
}

// TestClientBindLost: a submit_sm answered ESME_RINVBNDSTS says the SMSC
// no longer has the session bound (it restarted or failed over behind
// the TCP connection). The bind is down at once (Up, SubmitIfUp,
// OnState), the request still out gets its answer, then the session is
// unbound and closed (ErrBindLost) and bound again, where submits go.
func TestClientBindLost(t *testing.T) {
	for _, nack := range []bool{false, true} {
		t.Run(map[bool]string{false: "submit_sm_resp", true: "generic_nack"}[nack], func(t *testing.T) {
			l := listen(t)
			up := newRecorder[bool]()
			c, _, _ := runClient(t, smpp.ClientOptions{
				Addr: l.Addr().String(), SystemID: "gw", Password: "pw",
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
				OnState: up.add,
			})
			accept := func() *peer {
				t.Helper()
				nc, err := l.Accept()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = nc.Close() })
				p := newPeer(t, nc)
				bind := p.nextPDU()
				if bind.Header().ID != pdu.BindTransceiverID {
					t.Fatalf("got %s, want bind_transceiver", bind.Header().ID)
				}
				p.send(frame(pdu.BindTransceiverRespID, 0, bind.Header().Seq, cs("smsc")))
				return p
			}
			refuse := func(p *peer, id pdu.ID, seq uint32) {
				if nack {
					p.send(frame(pdu.GenericNACKID, smpp.StatusInvalidBindStatus, seq))
				} else {
					p.send(frame(id, smpp.StatusInvalidBindStatus, seq))
				}
			}
			p := accept()
			up.wait(t, "up", states(up, true))
			submit := func(text string) <-chan reqResult {
				return goResult(func() reqResult {
					resp, err := c.SubmitIfUp(testCtx(t), newSubmitSM("1", "2", text, 0))
					return reqResult{resp, err}
				})
			}
			first := submit("first")
			h1, _ := p.next()
			second := submit("second")
			h2, _ := p.next()
			refuse(p, pdu.SubmitSMRespID, h1.Seq)
			if r := recvWithin(t, "the refused submit", first); !errors.Is(r.err, smpp.StatusInvalidBindStatus) {
				t.Fatalf("refused submit: %v %v", r.resp, r.err)
			}
			// Down as the answer is returned: the caller picks another bind.
			if c.Up() {
				t.Error("Up() after ESME_RINVBNDSTS")
			}
			if _, err := c.SubmitIfUp(testCtx(t), newSubmitSM("1", "2", "x", 0)); !errors.Is(err, smpp.ErrNotBound) {
				t.Errorf("SubmitIfUp after ESME_RINVBNDSTS = %v, want ErrNotBound", err)
			}
			up.wait(t, "down", states(up, true, false))
			// The request out is answered before the unbind: the SMSC may
			// take it still.
			p.send(frame(pdu.SubmitSMRespID, 0, h2.Seq, cs("m2")))
			if r := recvWithin(t, "the submit out", second); r.err != nil || smpp.Str(r.resp, pdufield.MessageID) != "m2" {
				t.Fatalf("submit out: %v %v", r.resp, r.err)
			}
			h, _ := p.next()
			if h.ID != pdu.UnbindID {
				t.Fatalf("got %s, want unbind", h.ID)
			}
			refuse(p, pdu.UnbindRespID, h.Seq) // it does not know the session bound
			p.expectClosed()
			p = accept()
			up.wait(t, "up again", states(up, true, false, true))
			res := submit("again")
			h, _ = p.next()
			p.send(frame(pdu.SubmitSMRespID, 0, h.Seq, cs("m3")))
			if r := recvWithin(t, "the submit on the new bind", res); r.err != nil || smpp.Str(r.resp, pdufield.MessageID) != "m3" {
				t.Fatalf("submit on the new bind: %v %v", r.resp, r.err)
			}
			if got := up.all(); len(got) != 3 {
				t.Errorf("states %v, want up, down, up", got)
			}
		})
	}
}

// TestClientBindLostBackoff: an SMSC that binds qxtd and then refuses
// every submit_sm ESME_RINVBNDSTS is bound again ever more slowly
// (doubling from MinBackoff, as a refused bind is), not every MinBackoff.
func TestClientBindLostBackoff(t *testing.T) {
	const minBackoff = 20 * time.Millisecond
	l := listen(t)
	binds := newRecorder[time.Time]()
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := bufio.NewReader(nc)
				for {
					f, err := smpp.ReadFrame(r)
					if err != nil {
						return
					}
					h := hdr(f)
					switch h.ID {
					case pdu.BindTransceiverID:
						binds.add(time.Now())
						_, _ = nc.Write(frame(pdu.BindTransceiverRespID, 0, h.Seq, cs("smsc")))
					case pdu.SubmitSMID:
						_, _ = nc.Write(frame(pdu.SubmitSMRespID, smpp.StatusInvalidBindStatus, h.Seq, cs("")))
					case pdu.UnbindID:
						_, _ = nc.Write(frame(pdu.UnbindRespID, 0, h.Seq))
						return
					}
				}
			}()
		}
	}()
	c, _, _ := runClient(t, smpp.ClientOptions{
		Addr: l.Addr().String(), SystemID: "gw", Password: "pw",
		MinBackoff: minBackoff, MaxBackoff: time.Second,
	})
	ctx := testCtx(t)
	go func() {
		for ctx.Err() == nil {
			_, _ = c.Submit(ctx, newSubmitSM("1", "2", "x", 0))
		}
	}()
	tries := binds.waitN(t, "four binds", 4)
	// After three sessions lost without an answer OK, the wait before the
	// fourth bind is jitter(4×MinBackoff): at least 2×MinBackoff, where
	// a lost connection's is jitter(MinBackoff), at most 1.5×.
	if gap := tries[3].Sub(tries[2]); gap < 2*minBackoff {
		t.Errorf("bound again after %s, want at least %s", gap, 2*minBackoff)
	}
}

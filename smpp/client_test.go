package smpp_test

import (
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

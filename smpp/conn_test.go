package smpp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// request runs c.Request in a goroutine.
func request(ctx context.Context, c *smpp.Conn, p pdu.Body) <-chan reqResult {
	return goResult(func() reqResult {
		resp, err := c.Request(ctx, p)
		return reqResult{resp, err}
	})
}

// roundTrip sends one submit_sm, answers it from the peer and returns
// the sequence number the Conn chose.
func roundTrip(t *testing.T, c *smpp.Conn, p *peer) uint32 {
	t.Helper()
	ch := request(testCtx(t), c, newSubmitSM("1", "2", "x", 0))
	h, _ := p.next()
	p.sendPDU(submitResp("ok"), h.Seq)
	if r := recvWithin(t, "response", ch); r.err != nil {
		t.Fatalf("request: %v", r.err)
	}
	return h.Seq
}

func TestConnRequestsMatchedOutOfOrder(t *testing.T) {
	const n = 60
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: n})
	ctx := testCtx(t)
	results := make([]<-chan reqResult, n)
	for i := range n {
		results[i] = request(ctx, c, newSubmitSM("10086", "13712345678", fmt.Sprintf("msg-%03d", i), 0))
	}
	type sent struct {
		seq  uint32
		text string
	}
	var reqs []sent
	seen := make(map[uint32]bool)
	for range n {
		b := p.nextPDU()
		seq := b.Header().Seq
		if b.Header().ID != pdu.SubmitSMID {
			t.Fatalf("peer got %s", b.Header().ID)
		}
		// A fresh session numbers its requests 1, 2, 3 … whatever the
		// process-wide counter of go-smpp says.
		if seq < 1 || seq > n || seen[seq] {
			t.Fatalf("sequence number %d: want unique in 1..%d", seq, n)
		}
		seen[seq] = true
		reqs = append(reqs, sent{seq, string(smpp.Bytes(b, pdufield.ShortMessage))})
	}
	for i := len(reqs) - 1; i >= 0; i-- { // answer in reverse order
		p.sendPDU(submitResp("id-"+reqs[i].text), reqs[i].seq)
	}
	for i, ch := range results {
		r := recvWithin(t, "response", ch)
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if got, want := smpp.Str(r.resp, pdufield.MessageID), fmt.Sprintf("id-msg-%03d", i); got != want {
			t.Errorf("request %d got message_id %q, want %q", i, got, want)
		}
	}
}

func TestConnWindowWaitsWhenFull(t *testing.T) {
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 2})
	ctx := testCtx(t)
	var results []<-chan reqResult
	for i := range 3 {
		results = append(results, request(ctx, c, newSubmitSM("1", "2", fmt.Sprint(i), 0)))
	}
	h1, _ := p.next()
	h2, _ := p.next()
	p.expectQuiet(150 * time.Millisecond) // the third waits for a slot
	for i, ch := range results {
		select {
		case r := <-ch:
			t.Fatalf("request %d returned while the window was full: %v", i, r.err)
		default:
		}
	}
	p.sendPDU(submitResp("a"), h1.Seq)
	h3, _ := p.next() // a slot freed: the third goes out
	p.sendPDU(submitResp("b"), h2.Seq)
	p.sendPDU(submitResp("c"), h3.Seq)
	for i, ch := range results {
		if r := recvWithin(t, "response", ch); r.err != nil {
			t.Fatalf("request %d: %v (the window must wait, not fail)", i, r.err)
		}
	}
}

func TestConnSequenceNumbers(t *testing.T) {
	t.Run("start at 1", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{})
		for want := uint32(1); want <= 5; want++ {
			if got := roundTrip(t, c, p); got != want {
				t.Fatalf("request %d has sequence number %d", want, got)
			}
		}
	})
	for _, tc := range []struct {
		last uint32
		want []uint32
	}{
		{0x7FFFFFFD, []uint32{0x7FFFFFFE, 0x7FFFFFFF, 1, 2}},
		{0xFFFFFFFE, []uint32{0x7FFFFFFF, 1}},
	} {
		t.Run(fmt.Sprintf("wrap after %#x", tc.last), func(t *testing.T) {
			c, p := newConnPeer(t, nil, smpp.ConnOptions{})
			smpp.SetLastSeq(c, tc.last)
			for _, want := range tc.want {
				if got := roundTrip(t, c, p); got != want {
					t.Fatalf("sequence number %#x, want %#x", got, want)
				}
			}
		})
	}
}

func TestConnTimeoutThenLateResponse(t *testing.T) {
	type late struct{ req, resp pdu.Body }
	lates := newRecorder[late]()
	c, p := newConnPeer(t, nil, smpp.ConnOptions{
		RespTimeout:    100 * time.Millisecond,
		OnLateResponse: func(req, resp pdu.Body) { lates.add(late{req, resp}) },
	})
	ctx := testCtx(t)
	first := request(ctx, c, newSubmitSM("1", "2", "first", 0))
	h1, _ := p.next()
	start := time.Now()
	if r := recvWithin(t, "timeout", first); !errors.Is(r.err, smpp.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", r.err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("timed out after %s, RespTimeout is 100ms", d)
	}
	second := request(ctx, c, newSubmitSM("1", "2", "second", 0))
	h2, _ := p.next()
	if h2.Seq == h1.Seq {
		t.Fatalf("sequence number %d reused while its request may still be answered", h1.Seq)
	}
	p.sendPDU(submitResp("id-first"), h1.Seq) // late
	p.sendPDU(submitResp("id-second"), h2.Seq)
	r := recvWithin(t, "second response", second)
	if r.err != nil || smpp.Str(r.resp, pdufield.MessageID) != "id-second" {
		t.Fatalf("second request got %v, %v", r.resp, r.err)
	}
	got := lates.waitN(t, "late response", 1)
	if len(got) != 1 || string(smpp.Bytes(got[0].req, pdufield.ShortMessage)) != "first" ||
		smpp.Str(got[0].resp, pdufield.MessageID) != "id-first" {
		t.Fatalf("OnLateResponse got %+v", got)
	}
}

// A response that races with the timeout is either returned by Request
// or passed to OnLateResponse, never lost: the SMSC's message id is what
// matches the receipt later. The peer answers each request about when it
// times out; the next request goes out once the previous response has
// been accounted for, so late requests never pile up.
func TestConnResponseRacingTimeoutIsNotLost(t *testing.T) {
	const n = 200
	const d = 2 * time.Millisecond
	lates := newRecorder[struct{}]()
	c, p := newConnPeer(t, nil, smpp.ConnOptions{
		Window:         1,
		RespTimeout:    d,
		OnLateResponse: func(req, resp pdu.Body) { lates.add(struct{}{}) },
	})
	answered := make(chan error, 1)
	go func() {
		for range n {
			_ = p.nc.SetReadDeadline(time.Now().Add(waitLimit))
			f, err := smpp.ReadFrame(p.r)
			if err != nil {
				answered <- err
				return
			}
			timer := time.NewTimer(d)
			<-timer.C
			if _, err := p.nc.Write(encodePDU(t, submitResp("x"), hdr(f).Seq)); err != nil {
				answered <- err
				return
			}
		}
		answered <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // n round trips on a busy machine
	defer cancel()
	var direct, late int
	for i := range n {
		_, err := c.Request(ctx, newSubmitSM("1", "2", "x", 0))
		switch {
		case err == nil:
			direct++
		case errors.Is(err, smpp.ErrTimeout):
			late++
			lates.waitN(t, fmt.Sprintf("late response to request %d (lost?)", i), late)
		default:
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := recvWithin(t, "peer", answered); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d answered in time, %d late", direct, late)
}

// go-smpp #87: a deliver_sm that happens to carry the sequence number of
// our outstanding submit_sm is a request, not the submit_sm_resp; and a
// response of the wrong command does not complete the request either.
func TestConnRequestWithPendingSeqIsARequest(t *testing.T) {
	delivered := newRecorder[pdu.Body]()
	h := smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		delivered.add(p)
		return pdu.NewDeliverSMResp()
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{})
	res := request(testCtx(t), c, newSubmitSM("1", "2", "hello", 0))
	h1, _ := p.next()
	p.send(frame(pdu.DeliverSMID, 0, h1.Seq, submitSMBody("13712345678", "10086", "MO text", 0)))
	p.expect(pdu.DeliverSMRespID, 0, h1.Seq)
	got := delivered.waitN(t, "deliver_sm at the handler", 1)
	if string(smpp.Bytes(got[0], pdufield.ShortMessage)) != "MO text" {
		t.Fatalf("handler got %v", got[0].Fields())
	}
	p.send(frame(pdu.DeliverSMRespID, 0, h1.Seq, cs(""))) // wrong command for seq
	p.sendPDU(submitResp("id-1"), h1.Seq)
	r := recvWithin(t, "submit_sm_resp", res)
	if r.err != nil || r.resp.Header().ID != pdu.SubmitSMRespID || smpp.Str(r.resp, pdufield.MessageID) != "id-1" {
		t.Fatalf("request got %v %v", r.resp, r.err)
	}
}

func TestConnAnswersEnquireLink(t *testing.T) {
	handled := newRecorder[pdu.ID]()
	h := smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		handled.add(p.Header().ID)
		return nil
	})
	_, p := newConnPeer(t, h, smpp.ConnOptions{})
	for _, seq := range []uint32{7, 0x7FFFFFFF} {
		p.send(frame(pdu.EnquireLinkID, 0, seq))
		p.expect(pdu.EnquireLinkRespID, 0, seq)
	}
	if got := handled.all(); len(got) != 0 {
		t.Fatalf("handler saw %v; enquire_link is the engine's", got)
	}
}

func TestConnInboundUnbindAfterInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	h := smpp.HandlerFunc(func(context.Context, *smpp.Conn, pdu.Body) pdu.Body {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return submitResp("id-1")
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{})
	p.send(frame(pdu.SubmitSMID, 0, 1, submitSMBody("1", "2", "x", 0)))
	waitDone(t, "handler start", started)
	// A request after the unbind is not the session's any more: never
	// handled nor answered (calls stays 1).
	p.send(frame(pdu.UnbindID, 0, 2), frame(pdu.SubmitSMID, 0, 3, submitSMBody("1", "2", "late", 0)))
	p.expectQuiet(100 * time.Millisecond) // no unbind_resp while submit_sm is in flight
	close(release)
	p.expect(pdu.SubmitSMRespID, 0, 1)
	p.expect(pdu.UnbindRespID, 0, 2)
	p.expectClosed()
	waitDone(t, "conn done", c.Done())
	if !errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err = %v, want io.EOF", c.Err())
	}
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times", calls.Load())
	}
}

func TestConnUnbind(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{})
		res := goResult(func() error { return c.Unbind(testCtx(t)) })
		h, _ := p.next()
		if h.ID != pdu.UnbindID {
			t.Fatalf("peer got %s, want unbind", h.ID)
		}
		p.send(frame(pdu.UnbindRespID, 0, h.Seq))
		if err := recvWithin(t, "Unbind", res); err != nil {
			t.Fatalf("Unbind: %v", err)
		}
		p.expectClosed()
		select {
		case <-c.Done():
		default:
			t.Fatal("Unbind returned before the session ended")
		}
	})
	t.Run("not answered", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		res := goResult(func() error { return c.Unbind(ctx) })
		p.expect(pdu.UnbindID, 0, 1)
		if err := recvWithin(t, "Unbind", res); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Unbind = %v, want deadline exceeded", err)
		}
		p.expectClosed()
		waitDone(t, "conn done", c.Done())
	})
}

// Unbind waits for the requests out to be answered before it sends
// unbind, and starts none meanwhile: a request made while it waits is not
// sent (ErrUnsent: the caller may send it elsewhere).
func TestConnUnbindWaitsForRequestsOut(t *testing.T) {
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 4})
	ctx := testCtx(t)
	var out []<-chan reqResult
	var seqs []uint32
	for i := range 3 {
		out = append(out, request(ctx, c, newSubmitSM("1", "2", fmt.Sprint(i), 0)))
		h, _ := p.next()
		seqs = append(seqs, h.Seq)
	}
	unbound := goResult(func() error { return c.Unbind(ctx) })
	p.expectQuiet(100 * time.Millisecond) // no unbind while three are out
	for _, seq := range seqs[:2] {
		p.sendPDU(submitResp("ok"), seq)
	}
	p.expectQuiet(100 * time.Millisecond) // nor while one is
	late := request(ctx, c, newSubmitSM("1", "2", "late", 0))
	p.expectQuiet(100 * time.Millisecond) // and the request made meanwhile is not sent
	p.sendPDU(submitResp("ok"), seqs[2])
	p.expect(pdu.UnbindID, 0, 4) // the next sequence number: the late request never took one
	p.send(frame(pdu.UnbindRespID, 0, 4))
	if err := recvWithin(t, "Unbind", unbound); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	for i, ch := range out {
		if r := recvWithin(t, "response", ch); r.err != nil {
			t.Errorf("request %d out at the unbind: %v", i, r.err)
		}
	}
	if r := recvWithin(t, "the request made while unbinding", late); !errors.Is(r.err, smpp.ErrUnsent) {
		t.Errorf("request made while unbinding: %v, want ErrUnsent", r.err)
	}
}

// Unbind answers the peer's requests before it sends unbind: one its
// handler is still working on when Unbind is called is answered first
// (the gateway at a stop, storing a submit_sm: an ESME that closes once
// it has answered unbind would lose the answer, and the message stored
// all the same is sent twice when it sends it again), and one read once
// the window has drained (none is out here) is refused ESME_RINVBNDSTS
// without reaching the handler.
// Before, unbind went out at once and the handler's context ended with
// the session: in TestSoakPlannedStops the daemon logged "smpp handler
// … enqueue abandoned: context canceled" and the ESME got no answer.
func TestConnUnbindAnswersRequestsInFlight(t *testing.T) {
	entered := make(chan uint32, 2)
	release := make(chan struct{})
	h := smpp.HandlerFunc(func(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		entered <- p.Header().Seq
		select {
		case <-release:
			return submitResp("stored")
		case <-ctx.Done():
			return nil // the session ended first: no answer
		}
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{})
	ctx := testCtx(t)
	p.sendPDU(newSubmitSM("1", "2", "in flight", 0), 1)
	if seq := recvWithin(t, "the handler", entered); seq != 1 {
		t.Fatalf("handler got seq %d", seq)
	}
	unbound := goResult(func() error { return c.Unbind(ctx) })
	p.expectQuiet(100 * time.Millisecond) // no unbind while the handler works
	p.sendPDU(newSubmitSM("1", "2", "after the unbind began", 0), 2)
	p.expect(pdu.SubmitSMRespID, smpp.StatusInvalidBindStatus, 2)
	select {
	case seq := <-entered:
		t.Fatalf("the request read after Unbind began (seq %d) reached the handler", seq)
	default:
	}
	close(release)
	b := p.expect(pdu.SubmitSMRespID, 0, 1)
	if r, err := smpp.Decode(b); err != nil || smpp.Str(r, pdufield.MessageID) != "stored" {
		t.Fatalf("answer of the request in flight: %v %v", r, err)
	}
	h2, _ := p.next()
	if h2.ID != pdu.UnbindID {
		t.Fatalf("after the answer: %s, want unbind", h2.ID)
	}
	p.send(frame(pdu.UnbindRespID, 0, h2.Seq))
	if err := recvWithin(t, "Unbind", unbound); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
}

// Unbind is not put off by requests made while it waits for the window:
// each fails at once with ErrUnsent instead of taking the slot Unbind
// waits for. Before, under a steady stream of them (every receipt
// worker of an account, 128, on an ESME's window of 64) Unbind had a
// slot only once all the others waiting had had theirs, so thousands of
// receipts went out first: at a slow ESME a stop waited out its whole
// 15 s and closed the connection without unbind, and receipts the ESME
// had answered were sent again after the restart (TestSoakPlannedStops).
func TestConnUnbindNotPutOffByNewRequests(t *testing.T) {
	const window, senders = 4, 40
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: window})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { _ = c.Close() }()
	for range senders {
		wg.Go(func() {
			for {
				_, err := c.Request(ctx, pdu.NewDeliverSM())
				if errors.Is(err, smpp.ErrClosed) || ctx.Err() != nil {
					return // ErrUnsent too
				}
			}
		})
	}
	// The stream is flowing: the peer answers as fast as it reads.
	for range 3 * senders {
		h, _ := p.next()
		p.send(frame(pdu.DeliverSMRespID, 0, h.Seq))
	}
	// The peer stops answering until Unbind has begun, so that what it
	// reads from then on can be counted against Unbind and not against
	// the moment its goroutine was started (late on a loaded machine,
	// while the stream kept flowing). At most the window's requests are
	// out, or hold a slot, when it begins.
	unbound := goResult(func() error { return c.Unbind(ctx) })
	for deadline := time.Now().Add(waitLimit); !c.Unbinding(); {
		if time.Now().After(deadline) {
			t.Fatal("Unbind did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	after := 0
	for {
		h, _ := p.next()
		if h.ID == pdu.UnbindID {
			p.send(frame(pdu.UnbindRespID, 0, h.Seq))
			break
		}
		after++
		p.send(frame(pdu.DeliverSMRespID, 0, h.Seq))
	}
	if err := recvWithin(t, "Unbind", unbound); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	// Those out when Unbind began, and those that had taken a slot then:
	// a window's worth, never the senders' turn after turn.
	if after > window {
		t.Errorf("%d requests reached the peer after Unbind began, want at most %d (the window's)", after, window)
	}
}

// A peer that answers and then closes at once has answered: the answer is
// returned, not ErrClosed (for a submit_sm, ErrClosed would have it sent
// again). AfterSend holds each request until the session has ended, so
// that the answer and the end are both there when it starts waiting;
// before the fix, it picked either at random.
func TestConnAnswerThenCloseIsAnswered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		do     func(ctx context.Context, c *smpp.Conn) error
		answer func(p *peer, h pdu.Header)
	}{
		{"submit_sm", func(ctx context.Context, c *smpp.Conn) error {
			resp, err := c.Request(ctx, newSubmitSM("1", "2", "x", 0))
			if err == nil && smpp.Str(resp, pdufield.MessageID) != "id-1" {
				return fmt.Errorf("message_id %q", smpp.Str(resp, pdufield.MessageID))
			}
			return err
		}, func(p *peer, h pdu.Header) { p.sendPDU(submitResp("id-1"), h.Seq) }},
		{"unbind", func(ctx context.Context, c *smpp.Conn) error {
			return c.Unbind(ctx)
		}, func(p *peer, h pdu.Header) { p.send(frame(pdu.UnbindRespID, 0, h.Seq)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 50 {
				c, p := newConnPeer(t, nil, smpp.ConnOptions{})
				c.AfterSend(func() {
					select {
					case <-c.Done():
					case <-time.After(waitLimit):
					}
				})
				res := goResult(func() error { return tc.do(testCtx(t), c) })
				h, _ := p.next()
				tc.answer(p, h)
				_ = p.nc.Close()
				if err := recvWithin(t, "the answer", res); err != nil {
					t.Fatalf("round %d: answered, then closed: %v", i, err)
				}
			}
		})
	}
}

// Bad input that keeps the framing intact gets generic_nack, and the
// session goes on (SMPP 3.4 §5.1.3).
func TestConnGenericNack(t *testing.T) {
	full := submitSMBody("10086", "13712345678", "hello", 1)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  pdu.Status
	}{
		{"unknown command", frame(0x00000099, 0, 11), smpp.StatusInvalidCommandID},
		{"unknown command with body", frame(0x00010004, 0, 12, []byte("junk")), smpp.StatusInvalidCommandID},
		{"reserved id between extras", frame(0x0000000A, 0, 13), smpp.StatusInvalidCommandID},
		{"submit_sm truncated in destination_addr", frame(pdu.SubmitSMID, 0, 14, full[:12]), smpp.StatusInvalidCommandLen},
		{"submit_sm truncated before sm_length", frame(pdu.SubmitSMID, 0, 15, full[:len(full)-6]), smpp.StatusInvalidCommandLen},
		{"submit_sm sm_length past the end", frame(pdu.SubmitSMID, 0, 16, full[:len(full)-2]), smpp.StatusInvalidCommandLen},
		{"submit_sm empty body", frame(pdu.SubmitSMID, 0, 17), smpp.StatusInvalidCommandLen},
		{"submit_sm TLV length past the end", frame(pdu.SubmitSMID, 0, 18, full, []byte{0x04, 0x24, 0x00, 0x10, 'a', 'b'}), smpp.StatusInvalidCommandLen},
		{"bind truncated", frame(pdu.BindTransmitterID, 0, 19, cs("user"), []byte("pa")), smpp.StatusInvalidCommandLen},
		{"cancel_sm truncated", frame(pdu.CancelSMID, 0, 20, cs(""), cs("abc"), []byte{1}), smpp.StatusInvalidCommandLen},
		{"data_sm TLV length past the end", frame(pdu.DataSMID, 0, 21, cs(""), []byte{1, 1}, cs("1"), []byte{1, 1}, cs("2"), []byte{0, 0, 0}, []byte{0x04, 0x24, 0xFF, 0xFF}), smpp.StatusInvalidCommandLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handled := newRecorder[pdu.Body]()
			h := smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
				handled.add(p)
				return pdu.NewGenericNACK()
			})
			c, p := newConnPeer(t, h, smpp.ConnOptions{})
			seq := hdr(tc.frame).Seq
			p.send(tc.frame)
			p.expect(pdu.GenericNACKID, tc.want, seq)
			p.send(frame(pdu.EnquireLinkID, 0, 99)) // the session goes on
			p.expect(pdu.EnquireLinkRespID, 0, 99)
			if got := handled.all(); len(got) != 0 {
				t.Fatalf("handler got %v", got[0].Fields())
			}
			if c.Err() != nil {
				t.Fatalf("session ended: %v", c.Err())
			}
		})
	}
}

// A command_length outside 16..4096 loses the framing: the session ends.
func TestConnBadCommandLengthCloses(t *testing.T) {
	for _, n := range []uint32{0, 1, 15, 4097, 0x7FFFFFFF, 0xFFFFFFFF} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, p := newConnPeer(t, nil, smpp.ConnOptions{})
			p.send(badLength(n))
			p.expectClosed()
			waitDone(t, "conn done", c.Done())
			if !errors.Is(c.Err(), smpp.ErrFrameLength) {
				t.Fatalf("Err = %v, want ErrFrameLength", c.Err())
			}
		})
	}
	t.Run("4096 accepted", func(t *testing.T) {
		got := newRecorder[int]()
		h := smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			got.add(len(smpp.TLV(p, 0x0424)))
			return submitResp("big")
		})
		_, p := newConnPeer(t, h, smpp.ConnOptions{})
		body := submitSMBody("1", "2", "", 0)
		payload := make([]byte, 4096-16-len(body)-4)
		f := frame(pdu.SubmitSMID, 0, 3, body, tlv(0x0424, payload))
		if len(f) != 4096 {
			t.Fatalf("test frame is %d bytes", len(f))
		}
		p.send(f)
		p.expect(pdu.SubmitSMRespID, 0, 3)
		if n := got.waitN(t, "handler", 1)[0]; n != len(payload) {
			t.Fatalf("message_payload of %d bytes, want %d", n, len(payload))
		}
	})
}

func TestConnHandlerPanic(t *testing.T) {
	h := smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if string(smpp.Bytes(p, pdufield.ShortMessage)) == "boom" {
			panic("handler bug")
		}
		return submitResp("fine")
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{})
	p.send(frame(pdu.SubmitSMID, 0, 5, submitSMBody("1", "2", "boom", 0)))
	p.expect(pdu.GenericNACKID, smpp.StatusSystemError, 5)
	p.send(frame(pdu.EnquireLinkID, 0, 6))
	p.expect(pdu.EnquireLinkRespID, 0, 6)
	p.send(frame(pdu.SubmitSMID, 0, 7, submitSMBody("1", "2", "ok", 0)))
	p.expect(pdu.SubmitSMRespID, 0, 7)
	if c.Err() != nil {
		t.Fatalf("session ended: %v", c.Err())
	}
}

func TestConnNilHandlerNacks(t *testing.T) {
	_, p := newConnPeer(t, nil, smpp.ConnOptions{})
	p.send(frame(pdu.DeliverSMID, 0, 3, submitSMBody("1", "2", "MO", 0)))
	p.expect(pdu.GenericNACKID, smpp.StatusInvalidCommandID, 3)
}

func TestConnIdleTimeout(t *testing.T) {
	t.Run("silent peer", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{IdleTimeout: 100 * time.Millisecond})
		start := time.Now()
		waitDone(t, "idle close", c.Done())
		if d := time.Since(start); d < 90*time.Millisecond {
			t.Errorf("closed after %s, IdleTimeout is 100ms", d)
		}
		var ne net.Error
		if !errors.As(c.Err(), &ne) || !ne.Timeout() {
			t.Fatalf("Err = %v, want a timeout", c.Err())
		}
		p.expectClosed()
	})
	t.Run("traffic keeps it open", func(t *testing.T) {
		const idle = 300 * time.Millisecond
		c, p := newConnPeer(t, nil, smpp.ConnOptions{IdleTimeout: idle})
		tick := time.NewTicker(idle / 3)
		defer tick.Stop()
		start := time.Now()
		for seq := uint32(1); time.Since(start) < 2*idle; seq++ {
			<-tick.C
			p.send(frame(pdu.EnquireLinkID, 0, seq))
			p.expect(pdu.EnquireLinkRespID, 0, seq)
		}
		if c.Err() != nil {
			t.Fatalf("session ended while the peer kept talking: %v", c.Err())
		}
	})
}

func TestConnKeepalive(t *testing.T) {
	t.Run("answered", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{EnquireLink: 20 * time.Millisecond, RespTimeout: time.Second})
		for range 3 {
			h, _ := p.next()
			if h.ID != pdu.EnquireLinkID {
				t.Fatalf("peer got %s", h.ID)
			}
			p.send(frame(pdu.EnquireLinkRespID, 0, h.Seq))
		}
		if c.Err() != nil {
			t.Fatalf("session ended: %v", c.Err())
		}
	})
	t.Run("unanswered", func(t *testing.T) {
		c, p := newConnPeer(t, nil, smpp.ConnOptions{EnquireLink: 20 * time.Millisecond, RespTimeout: 100 * time.Millisecond})
		if h, _ := p.next(); h.ID != pdu.EnquireLinkID {
			t.Fatalf("peer got %s", h.ID)
		}
		waitDone(t, "keepalive failure", c.Done())
		// keepalive bounds the request by RespTimeout as Request does:
		// either timer may fire first.
		if !errors.Is(c.Err(), smpp.ErrTimeout) && !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err = %v, want a timeout", c.Err())
		}
		p.expectClosed()
	})
}

func TestConnRequestErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(seq uint32) []byte
		want  pdu.Status
	}{
		{"status in submit_sm_resp", func(seq uint32) []byte { return frame(pdu.SubmitSMRespID, smpp.StatusThrottled, seq) }, smpp.StatusThrottled},
		{"generic_nack with status", func(seq uint32) []byte { return frame(pdu.GenericNACKID, smpp.StatusInvalidCommandLen, seq) }, smpp.StatusInvalidCommandLen},
		{"generic_nack without status", func(seq uint32) []byte { return frame(pdu.GenericNACKID, 0, seq) }, smpp.StatusInvalidCommandID},
		{"unparsable submit_sm_resp", func(seq uint32) []byte { return frame(pdu.SubmitSMRespID, 0, seq, cs("id"), []byte{0x04, 0x24, 0, 9}) }, smpp.StatusInvalidCommandLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := newConnPeer(t, nil, smpp.ConnOptions{})
			res := request(testCtx(t), c, newSubmitSM("1", "2", "x", 0))
			h, _ := p.next()
			p.send(tc.reply(h.Seq))
			r := recvWithin(t, "response", res)
			var st pdu.Status
			if !errors.As(r.err, &st) || st != tc.want {
				t.Fatalf("err = %v, want status %#x", r.err, uint32(tc.want))
			}
			if r.resp == nil {
				t.Fatal("no response returned with the status")
			}
		})
	}
}

func TestConnEndWakesRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(c *smpp.Conn, p *peer)
	}{
		{"Close", func(c *smpp.Conn, _ *peer) { _ = c.Close() }},
		{"peer hangs up", func(_ *smpp.Conn, p *peer) { _ = p.nc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 1})
			ctx := testCtx(t)
			first := request(ctx, c, newSubmitSM("1", "2", "x", 0))
			p.next()
			second := request(ctx, c, newSubmitSM("1", "2", "y", 0)) // waits for the window
			tc.end(c, p)
			for _, ch := range []<-chan reqResult{first, second} {
				if r := recvWithin(t, "request end", ch); !errors.Is(r.err, smpp.ErrClosed) {
					t.Fatalf("err = %v, want ErrClosed", r.err)
				}
			}
			waitDone(t, "conn done", c.Done())
			if _, err := c.Request(ctx, newSubmitSM("1", "2", "z", 0)); !errors.Is(err, smpp.ErrClosed) {
				t.Fatalf("Request after end: %v", err)
			}
		})
	}
}

func TestConnRequestContextWhileWindowFull(t *testing.T) {
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 1})
	first := request(testCtx(t), c, newSubmitSM("1", "2", "x", 0))
	h, _ := p.next()
	ctx, cancel := context.WithCancel(context.Background())
	second := request(ctx, c, newSubmitSM("1", "2", "y", 0))
	cancel()
	if r := recvWithin(t, "cancelled request", second); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", r.err)
	}
	p.sendPDU(submitResp("a"), h.Seq)
	if r := recvWithin(t, "first", first); r.err != nil {
		t.Fatal(r.err)
	}
	p.expectQuiet(50 * time.Millisecond) // the cancelled request never went out
}

// TestConnClosedWhileWindowFull: a request still waiting for a window
// slot when the connection closes was never sent, and says so
// (ErrUnsent, which is also ErrClosed), so an upstream worker sends it on
// another bind without recording a retry; one that was written may have
// reached the peer and is ErrClosed only.
func TestConnClosedWhileWindowFull(t *testing.T) {
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 1})
	first := request(testCtx(t), c, newSubmitSM("1", "2", "x", 0))
	p.next()
	second := request(testCtx(t), c, newSubmitSM("1", "2", "y", 0))
	_ = c.Close()
	r := recvWithin(t, "request waiting for the window", second)
	if !errors.Is(r.err, smpp.ErrUnsent) || !errors.Is(r.err, smpp.ErrClosed) {
		t.Errorf("waiting request: err = %v, want ErrUnsent (and ErrClosed)", r.err)
	}
	r = recvWithin(t, "request written", first)
	if !errors.Is(r.err, smpp.ErrClosed) || errors.Is(r.err, smpp.ErrUnsent) {
		t.Errorf("written request: err = %v, want ErrClosed, not ErrUnsent", r.err)
	}
}

// A peer that stops answering altogether is reset once the timed-out
// requests it owes pile up.
func TestConnResetAfterTooManyTimeouts(t *testing.T) {
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: 1, RespTimeout: 10 * time.Millisecond})
	go func() { _, _ = io.Copy(io.Discard, p.nc) }()
	ctx := testCtx(t)
	timeouts := 0
	for {
		_, err := c.Request(ctx, newSubmitSM("1", "2", "x", 0))
		if errors.Is(err, smpp.ErrClosed) {
			break
		}
		if !errors.Is(err, smpp.ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
		if timeouts++; timeouts > 20 {
			t.Fatal("session not reset after 20 unanswered requests")
		}
	}
	waitDone(t, "conn done", c.Done())
	if c.Err() == nil || errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err = %v, want a failure", c.Err())
	}
	t.Logf("reset after %d timeouts", timeouts)
}

// PeerHasRoom: a peer that waits for each answer never has room; one that
// had three requests out at once has room while it has fewer, and none
// when it is back at three.
func TestConnPeerHasRoom(t *testing.T) {
	arrived := make(chan chan struct{}, 8)
	rooms := make(chan bool, 8)
	h := smpp.HandlerFunc(func(_ context.Context, c *smpp.Conn, _ pdu.Body) pdu.Body {
		release := make(chan struct{})
		arrived <- release
		<-release
		rooms <- c.PeerHasRoom()
		return submitResp("x")
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{InboundWindow: 10})
	seq := uint32(0)
	// send has the peer send n requests at once and waits until each
	// handler holds its own.
	send := func(n int) []chan struct{} {
		t.Helper()
		held := make([]chan struct{}, n)
		for i := range n {
			seq++
			p.sendPDU(newSubmitSM("1", "2", "x", 0), seq)
			held[i] = recvWithin(t, "the handler", arrived)
		}
		return held
	}
	// ask lets one held handler ask and answer.
	ask := func(release chan struct{}) bool {
		t.Helper()
		close(release)
		return recvWithin(t, "PeerHasRoom", rooms)
	}
	// answered reads n answers: their slots were freed before they went
	// out.
	answered := func(n int) {
		t.Helper()
		for range n {
			p.nextPDU()
		}
		if k := c.InboundLen(); k > 0 {
			t.Fatalf("%d answered requests are still counted", k)
		}
	}

	for range 2 {
		if ask(send(1)[0]) {
			t.Error("a peer with one request out, the most it ever had, has room")
		}
		answered(1)
	}
	held := send(3)
	if ask(held[2]) {
		t.Error("a peer with three requests out, the most it ever had, has room")
	}
	ask(held[0])
	ask(held[1])
	answered(3)
	if !ask(send(1)[0]) {
		t.Error("a peer with one request out, after three at once, has no room")
	}
	answered(1)
	held = send(3)
	if ask(held[1]) {
		t.Error("a peer back at three requests out has room")
	}
	ask(held[0])
	ask(held[2])
	answered(3)
}

// A peer that sends each request as soon as the answer to the last one
// arrives never has room: the slot of a request is freed before its answer
// goes out, so the next one is never read while the last still counts.
func TestConnStopAndWaitPeerNeverHasRoom(t *testing.T) {
	var roomy atomic.Int32
	h := smpp.HandlerFunc(func(_ context.Context, c *smpp.Conn, _ pdu.Body) pdu.Body {
		if c.PeerHasRoom() {
			roomy.Add(1)
		}
		return submitResp("x")
	})
	c, p := newConnPeer(t, h, smpp.ConnOptions{InboundWindow: 10})
	const n = 500
	for i := range n {
		p.sendPDU(newSubmitSM("1", "2", "x", 0), uint32(i+1))
		p.expect(pdu.SubmitSMRespID, 0, uint32(i+1))
		if k := c.InboundLen(); k != 0 {
			t.Fatalf("request %d still counted (%d) once its answer arrived", i+1, k)
		}
	}
	if k := roomy.Load(); k > 0 {
		t.Errorf("a peer that waits for each answer had room for %d of %d requests", k, n)
	}
}

// TestConnHandlesEveryQueuedRequest: requests read while the handlers of
// others run are each handled at once, not left queued until a handler
// frees. Before, a worker that had just taken a request still counted as
// idle, so the read loop started no worker for the next one: a burst one
// request larger than the workers a session had left one request waiting
// out another's handler (a store commit) in most runs.
func TestConnHandlesEveryQueuedRequest(t *testing.T) {
	const n = 20
	for round := range 30 {
		var release chan struct{}
		var running atomic.Int32
		h := smpp.HandlerFunc(func(context.Context, *smpp.Conn, pdu.Body) pdu.Body {
			running.Add(1)
			<-release
			running.Add(-1)
			return submitResp("id")
		})
		_, p := newConnPeer(t, h, smpp.ConnOptions{InboundWindow: 64})
		seq := uint32(0)
		// burst sends k requests in one write (read back to back, as a
		// burst is) and says how many were being handled at once.
		burst := func(k int) int32 {
			release = make(chan struct{})
			frames := make([][]byte, k)
			for i := range frames {
				seq++
				frames[i] = frame(pdu.SubmitSMID, 0, seq, submitSMBody("1", "2", "x", 0))
			}
			p.send(frames...)
			deadline := time.Now().Add(2 * time.Second)
			for running.Load() < int32(k) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			got := running.Load()
			close(release)
			for range k {
				p.next()
			}
			return got
		}
		burst(n - 1) // n-1 workers, idle once answered
		if got := burst(n); got != n {
			t.Fatalf("round %d: %d of %d requests being handled after 2 s; the rest waited for a handler to free", round, got, n)
		}
	}
}

// TestConnEnded: a session tells how it ended: with an unbind answered
// either way (the peer got every answer) or cut, and when.
func TestConnEnded(t *testing.T) {
	noHandler := smpp.HandlerFunc(func(context.Context, *smpp.Conn, pdu.Body) pdu.Body { return nil })
	ended := func(c *smpp.Conn) (time.Time, bool) {
		t.Helper()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the session did not end")
		}
		at, unbound, ok := c.Ended()
		if !ok || at.IsZero() {
			t.Fatalf("Ended: %v %v %v", at, unbound, ok)
		}
		return at, unbound
	}
	// The peer unbinds: answered, the session ends unbound.
	c, p := newConnPeer(t, noHandler, smpp.ConnOptions{})
	if _, _, ok := c.Ended(); ok {
		t.Fatal("a running session reports an end")
	}
	before := time.Now()
	p.send(frame(pdu.UnbindID, 0, 1))
	p.expect(pdu.UnbindRespID, 0, 1)
	if at, unbound := ended(c); !unbound || at.Before(before) {
		t.Fatalf("the peer's unbind: unbound %v at %v", unbound, at)
	}
	// We unbind and the peer answers.
	c, p = newConnPeer(t, noHandler, smpp.ConnOptions{})
	done := make(chan error, 1)
	go func() { done <- c.Unbind(testCtx(t)) }()
	h, _ := p.next()
	p.send(frame(pdu.UnbindRespID, 0, h.Seq))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, unbound := ended(c); !unbound {
		t.Fatal("our unbind, answered: not unbound")
	}
	// We unbind, and the peer answers and closes at once (as SMSCs, and
	// qxtd's simulator, do): unbound, as read at the end of the session's
	// context and at Done. The read loop may see the close before Unbind
	// resumes from its answer: Ended said cut in about a third of such
	// stops of the daemon, before the answer itself recorded the end.
	for range 100 {
		c, p = newConnPeer(t, noHandler, smpp.ConnOptions{})
		atEnd := make(chan bool, 1)
		context.AfterFunc(c.Context(), func() {
			_, unbound, _ := c.Ended()
			atEnd <- unbound
		})
		go func() { done <- c.Unbind(testCtx(t)) }()
		h, _ = p.next()
		p.send(frame(pdu.UnbindRespID, 0, h.Seq))
		_ = p.nc.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, unbound := ended(c); !unbound || !<-atEnd {
			t.Fatal("our unbind, answered, then the peer's close: not unbound")
		}
	}
	// A Client's unbind of a session whose bind the SMSC lost, answered:
	// no clean end (what was answered on it may be gone).
	c, p = newConnPeer(t, noHandler, smpp.ConnOptions{})
	go func() { done <- smpp.UnbindWith(testCtx(t), c, smpp.ErrBindLost) }()
	h, _ = p.next()
	p.send(frame(pdu.UnbindRespID, 0, h.Seq))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, unbound := ended(c); unbound {
		t.Fatal("a lost bind's unbind, answered: unbound")
	}
	// The peer drops the connection: cut.
	c, p = newConnPeer(t, noHandler, smpp.ConnOptions{})
	_ = p.nc.Close()
	if _, unbound := ended(c); unbound {
		t.Fatal("a dropped connection: unbound")
	}
	// Our unbind the peer never answers: cut too.
	c, p = newConnPeer(t, noHandler, smpp.ConnOptions{})
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if err := c.Unbind(ctx); err == nil {
		t.Fatal("an unanswered unbind returned nil")
	}
	p.next()
	if _, unbound := ended(c); unbound {
		t.Fatal("an unanswered unbind: unbound")
	}
}

// TestConnRequestQueued: requests each started once the one before it
// called queued reach the peer in that order, all awaited together
// (answered in reverse); queued is called once, also for a request that
// fails before it is written.
func TestConnRequestQueued(t *testing.T) {
	const n = 40
	c, p := newConnPeer(t, nil, smpp.ConnOptions{Window: n})
	ctx := testCtx(t)
	results := make([]<-chan reqResult, n)
	for i := range n {
		queued := make(chan struct{})
		calls := atomic.Int32{}
		results[i] = goResult(func() reqResult {
			resp, err := c.RequestQueued(ctx, newSubmitSM("10086", "13712345678", fmt.Sprintf("msg-%03d", i), 0), func() {
				if calls.Add(1) == 1 {
					close(queued)
				}
			})
			if calls.Load() != 1 {
				t.Errorf("request %d: queued called %d times", i, calls.Load())
			}
			return reqResult{resp, err}
		})
		recvWithin(t, "queued", queued)
	}
	var seqs []uint32
	for i := range n {
		b := p.nextPDU()
		if got, want := string(smpp.Bytes(b, pdufield.ShortMessage)), fmt.Sprintf("msg-%03d", i); got != want {
			t.Fatalf("the peer's request %d is %q, want %q", i, got, want)
		}
		seqs = append(seqs, b.Header().Seq)
	}
	for i := n - 1; i >= 0; i-- {
		p.sendPDU(submitResp(fmt.Sprint(i)), seqs[i])
	}
	for i, ch := range results {
		if r := recvWithin(t, "response", ch); r.err != nil || smpp.Str(r.resp, pdufield.MessageID) != fmt.Sprint(i) {
			t.Fatalf("request %d: %v", i, r.err)
		}
	}

	// Closed: it fails before it is queued, and says so.
	_ = c.Close()
	called := false
	if _, err := c.RequestQueued(ctx, newSubmitSM("1", "2", "x", 0), func() { called = true }); err == nil || !called {
		t.Errorf("on a closed connection: err %v, queued called %v", err, called)
	}
}

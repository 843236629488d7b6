package smpp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// recSession records what a bound peer sent and how often Close ran.
type recSession struct {
	req     smpp.BindRequest
	handled *recorder[pdu.Body]
	closes  atomic.Int32
	closed  chan struct{}
	handle  func(ctx context.Context, p pdu.Body) (pdu.Body, error)
	n       atomic.Int32
}

func (s *recSession) Handle(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	s.handled.add(p)
	if s.handle != nil {
		return s.handle(ctx, p)
	}
	if p.Header().ID == pdu.SubmitSMID {
		return submitResp(fmt.Sprintf("srv-%d", s.n.Add(1))), nil
	}
	return nil, smpp.StatusInvalidCommandID
}

func (s *recSession) Close() {
	if s.closes.Add(1) == 1 {
		close(s.closed)
	}
}

// recBackend accepts the users it knows, records every bind and keeps
// the sessions it made.
type recBackend struct {
	users  map[string]string // system_id → password
	binds  *recorder[smpp.BindRequest]
	made   *recorder[*recSession]
	hook   func(ctx context.Context, req smpp.BindRequest) error // runs first
	handle func(ctx context.Context, p pdu.Body) (pdu.Body, error)
}

func newRecBackend() *recBackend {
	return &recBackend{
		users: map[string]string{"ent1": "secret"},
		binds: newRecorder[smpp.BindRequest](),
		made:  newRecorder[*recSession](),
	}
}

func (b *recBackend) Bind(ctx context.Context, req smpp.BindRequest) (smpp.Session, error) {
	b.binds.add(req)
	if b.hook != nil {
		if err := b.hook(ctx, req); err != nil {
			return nil, err
		}
	}
	pw, ok := b.users[req.SystemID]
	if !ok {
		return nil, errors.New("no such user") // not a pdu.Status: ESME_RBINDFAIL
	}
	if pw != req.Password {
		return nil, smpp.StatusInvalidPassword
	}
	s := &recSession{req: req, handled: newRecorder[pdu.Body](), closed: make(chan struct{}), handle: b.handle}
	b.made.add(s)
	return s, nil
}

// assertClosedOnce checks that every session made was closed exactly
// once. Call it after the server stopped (Close waits for every OnClose).
func (b *recBackend) assertClosedOnce(t *testing.T) {
	t.Helper()
	for i, s := range b.made.all() {
		if n := s.closes.Load(); n != 1 {
			t.Errorf("session %d (%s) closed %d times, want 1", i, s.req.Kind, n)
		}
	}
}

var _ smpp.Backend = (*recBackend)(nil)

func startServer(t *testing.T, b smpp.Backend, opt smpp.ServerOptions) (*smpp.Server, string) {
	t.Helper()
	if opt.FailDelay == 0 {
		opt.FailDelay, opt.MaxFailDelay = time.Millisecond, time.Millisecond
	}
	if opt.SystemID == "" {
		opt.SystemID = "qxtd-test"
	}
	l := listen(t)
	s := smpp.NewServer(b, opt)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := recvWithin(t, "Serve to return", served); !errors.Is(err, smpp.ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().String()
}

var bindIDs = []pdu.ID{pdu.BindTransmitterID, pdu.BindReceiverID, pdu.BindTransceiverID}

func TestServerBind(t *testing.T) {
	kinds := map[pdu.ID]smpp.BindKind{
		pdu.BindTransmitterID: smpp.BindTransmitter,
		pdu.BindReceiverID:    smpp.BindReceiver,
		pdu.BindTransceiverID: smpp.BindTransceiver,
	}
	for _, id := range bindIDs {
		for _, tc := range []struct {
			name, user, pass string
			want             pdu.Status
		}{
			{"accepted", "ent1", "secret", smpp.StatusOK},
			{"wrong password", "ent1", "guess", smpp.StatusInvalidPassword}, // the backend's status
			{"unknown user", "nobody", "secret", smpp.StatusBindFailed},     // a plain error
		} {
			t.Run(fmt.Sprintf("%s/%s", kinds[id], tc.name), func(t *testing.T) {
				b := newRecBackend()
				srv, addr := startServer(t, b, smpp.ServerOptions{})
				p := dialPeer(t, addr)
				p.sendPDU(bindPDU(id, tc.user, tc.pass), 1)
				_, f := p.next()
				resp, err := smpp.Decode(f)
				if err != nil {
					t.Fatal(err)
				}
				h := resp.Header()
				if h.ID != id|0x80000000 || h.Status != tc.want || h.Seq != 1 {
					t.Fatalf("got %s status %#x seq %d", h.ID, uint32(h.Status), h.Seq)
				}
				if got := smpp.Str(resp, pdufield.SystemID); got != "qxtd-test" {
					t.Errorf("bind_resp system_id %q", got)
				}
				req := b.binds.waitN(t, "bind", 1)[0]
				if req.Kind != kinds[id] || req.SystemID != tc.user || req.Password != tc.pass || req.Conn == nil {
					t.Errorf("backend got %+v", req)
				}
				if tc.want != smpp.StatusOK {
					if n := len(b.made.all()); n != 0 {
						t.Fatalf("%d sessions made for a refused bind", n)
					}
					return
				}
				p.send(frame(pdu.EnquireLinkID, 0, 2))
				p.expect(pdu.EnquireLinkRespID, 0, 2)
				if srv.Sessions() != 1 {
					t.Errorf("Sessions() = %d", srv.Sessions())
				}
			})
		}
	}
}

// The upstream client's bind works against our own server.
func TestServerBindWithClient(t *testing.T) {
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{})
	ctx := testCtx(t)
	c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: addr, SystemID: "ent1", Password: "secret", Kind: smpp.BindTransmitter})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Request(ctx, newSubmitSM("10086", "13712345678", "hi", 1))
	if err != nil || smpp.Str(resp, pdufield.MessageID) != "srv-1" {
		t.Fatalf("submit: %v %v", resp, err)
	}
	if err := c.Unbind(ctx); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	_, err = smpp.Dial(ctx, smpp.ClientOptions{Addr: addr, SystemID: "ent1", Password: "nope"})
	var st pdu.Status
	if !errors.As(err, &st) || st != smpp.StatusInvalidPassword {
		t.Fatalf("Dial with a wrong password: %v", err)
	}
}

// Repeated failures from one IP are answered later and later.
func TestServerFailDelayGrows(t *testing.T) {
	const base = 20 * time.Millisecond
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{FailDelay: base, MaxFailDelay: time.Second})
	var took []time.Duration
	for i := range 3 {
		p := dialPeer(t, addr) // a new connection each time: the count is per IP
		start := time.Now()
		p.bind(pdu.BindTransmitterID, "ent1", "guess", uint32(i+1), smpp.StatusInvalidPassword)
		took = append(took, time.Since(start))
	}
	for i, d := range took {
		if min := base << i; d < min {
			t.Errorf("failure %d answered after %s, want at least %s", i+1, d, min)
		}
	}
	t.Logf("failures answered after %v", took)
	// A success clears the count; the other peers were not held up.
	p := dialPeer(t, addr)
	p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
}

// Failures from many addresses of one network (a /24 taking turns) are
// answered later and later too, a doubling every smpp.PrefixTimes of them,
// where each address's first failure used to wait the first delay.
func TestServerFailDelayGrowsByNetwork(t *testing.T) {
	const base = 20 * time.Millisecond
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{FailDelay: base, MaxFailDelay: time.Second})
	const n = 3*smpp.PrefixTimes + 1
	var last time.Duration
	for i := range n {
		p := dialFrom(t, fmt.Sprintf("127.0.7.%d", i+1), addr)
		start := time.Now()
		p.bind(pdu.BindTransmitterID, "ent1", "guess", uint32(i+1), smpp.StatusInvalidPassword)
		last = time.Since(start)
	}
	if min := base << ((n - 1) / smpp.PrefixTimes); last < min {
		t.Errorf("the %dth address of the network answered after %s, want at least %s", n, last, min)
	}
	// Another network's first failure is not held up by it.
	p := dialFrom(t, "127.0.8.1", addr)
	start := time.Now()
	p.bind(pdu.BindTransmitterID, "ent1", "guess", 1, smpp.StatusInvalidPassword)
	t.Logf("the %dth address of one /24 answered after %v, another /24's first after %v", n, last, time.Since(start))
}

func TestServerRequiresBind(t *testing.T) {
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{})
	p := dialPeer(t, addr)
	for _, tc := range []struct {
		name string
		req  []byte
		resp pdu.ID
	}{
		{"submit_sm", frame(pdu.SubmitSMID, 0, 1, submitSMBody("1", "2", "x", 0)), pdu.SubmitSMRespID},
		{"query_sm", frame(pdu.QuerySMID, 0, 2, cs("abc"), []byte{1, 1}, cs("1")), pdu.QuerySMRespID},
		{"cancel_sm", frame(pdu.CancelSMID, 0, 3, cs(""), cs("abc"), []byte{1, 1}, cs("1"), []byte{1, 1}, cs("2")), pdu.CancelSMRespID},
		{"data_sm", frame(pdu.DataSMID, 0, 4, cs(""), []byte{1, 1}, cs("1"), []byte{1, 1}, cs("2"), []byte{0, 0, 0}), pdu.DataSMRespID},
		{"outbind", frame(pdu.OutbindID, 0, 5, cs("x"), cs("y")), pdu.GenericNACKID},
		{"replace_sm", frame(pdu.ReplaceSMID, 0, 6, cs("abc"), []byte{1, 1}, cs("1"), cs(""), cs(""), []byte{0, 0, 1}, []byte("x")), pdu.ReplaceSMRespID},
		{"submit_multi", frame(pdu.SubmitMultiID, 0, 7, cs(""), []byte{1, 1}, cs("1"), []byte{1, 1, 1, 1}, cs("2"), []byte{0, 0, 0}, cs(""), cs(""), []byte{0, 0, 0, 0, 1}, []byte("x")), pdu.SubmitMultiRespID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.send(tc.req)
			p.expect(tc.resp, smpp.StatusInvalidBindStatus, hdr(tc.req).Seq)
		})
	}
	p.send(frame(pdu.EnquireLinkID, 0, 9)) // allowed before bind
	p.expect(pdu.EnquireLinkRespID, 0, 9)
	if n := len(b.binds.all()); n != 0 {
		t.Fatalf("backend saw %d binds", n)
	}
}

// The bind_resp carries sc_interface_version 0x34 (§5.3.2.25) to an ESME
// that binds with interface_version 0x34, and none to one of SMPP 3.3 or
// earlier (0x33, 0x00), which knows no optional parameters (§5.2.4) and
// is bound all the same.
func TestServerBindRespInterfaceVersion(t *testing.T) {
	for _, tc := range []struct {
		version uint8
		want    []byte // sc_interface_version's value; nil: absent
	}{
		{0x34, []byte{0x34}},
		{0x50, []byte{0x34}}, // a client of 5.0 learns that we speak 3.4
		{0x33, nil},
		{0x00, nil},
	} {
		for _, id := range bindIDs {
			t.Run(fmt.Sprintf("%#02x/%s", tc.version, id), func(t *testing.T) {
				_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{})
				p := dialPeer(t, addr)
				b := bindPDU(id, "ent1", "secret")
				_ = b.Fields().Set(pdufield.InterfaceVersion, tc.version)
				p.sendPDU(b, 1)
				f := p.expect(id|0x80000000, smpp.StatusOK, 1)
				resp, err := smpp.Decode(f)
				if err != nil {
					t.Fatal(err)
				}
				if got := smpp.TLV(resp, smpp.TagSCInterfaceVersion); !bytes.Equal(got, tc.want) {
					t.Fatalf("sc_interface_version % x, want % x (bind_resp % x)", got, tc.want, f)
				}
				if n := len(resp.TLVFields()); n != len(tc.want) {
					t.Fatalf("%d TLVs in bind_resp % x", n, f)
				}
				p.send(frame(pdu.EnquireLinkID, 0, 2)) // bound: the session goes on
				p.expect(pdu.EnquireLinkRespID, 0, 2)
			})
		}
	}
	t.Run("refused bind", func(t *testing.T) {
		_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.sendPDU(bindPDU(pdu.BindTransceiverID, "ent1", "wrong"), 1)
		f := p.expect(pdu.BindTransceiverRespID, smpp.StatusInvalidPassword, 1)
		resp, err := smpp.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := smpp.TLV(resp, smpp.TagSCInterfaceVersion); got != nil {
			t.Fatalf("a refused bind's bind_resp has sc_interface_version % x", got)
		}
	})
}

// Responses to nothing qxtd asked — a stray submit_sm_resp, deliver_sm_resp
// or generic_nack with a sequence number it never used, before and after
// the bind — are dropped: no generic_nack back, the session goes on. A
// request with a non-zero command_status is served.
func TestServerStrayResponses(t *testing.T) {
	_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{})
	p := dialPeer(t, addr)
	strays := func(seq uint32) {
		p.send(frame(pdu.SubmitSMRespID, 0, seq, cs("x1")),
			frame(pdu.DeliverSMRespID, 0, seq+1, cs("")),
			frame(pdu.DeliverSMRespID, smpp.StatusRxTApp, seq+2),
			frame(pdu.GenericNACKID, smpp.StatusInvalidCommandID, seq+3),
			frame(pdu.EnquireLinkRespID, 0, seq+4),
			frame(pdu.EnquireLinkID, 0, seq+5))
		p.expect(pdu.EnquireLinkRespID, 0, seq+5) // the first thing back
	}
	strays(100)
	p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
	strays(200)
	p.send(frame(pdu.SubmitSMID, 0, 300, submitSMBody("1", "2", "x", 0)))
	p.expect(pdu.SubmitSMRespID, 0, 300)
	// A request's command_status should be NULL (§3.2); one that is not
	// is served all the same, as the field means nothing in a request.
	p.send(frame(pdu.SubmitSMID, smpp.StatusSystemError, 301, submitSMBody("1", "2", "x", 0)))
	p.expect(pdu.SubmitSMRespID, 0, 301)
}

func TestServerAlreadyBound(t *testing.T) {
	for _, second := range bindIDs {
		t.Run(second.String(), func(t *testing.T) {
			b := newRecBackend()
			_, addr := startServer(t, b, smpp.ServerOptions{})
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
			p.bind(second, "ent1", "secret", 2, smpp.StatusAlreadyBound)
			p.send(frame(pdu.SubmitSMID, 0, 3, submitSMBody("1", "2", "x", 0)))
			p.expect(pdu.SubmitSMRespID, 0, 3) // the first bind still stands
			if n := len(b.binds.all()); n != 1 {
				t.Fatalf("backend saw %d binds, want 1", n)
			}
		})
	}
}

// Two binds sent back to back on one connection are handled concurrently
// (the session is windowed): only one may reach the backend.
func TestServerPipelinedBinds(t *testing.T) {
	b := newRecBackend()
	release := make(chan struct{})
	b.hook = func(ctx context.Context, _ smpp.BindRequest) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	srv, addr := startServer(t, b, smpp.ServerOptions{})
	p := dialPeer(t, addr)
	p.send(encodePDU(t, bindPDU(pdu.BindTransceiverID, "ent1", "secret"), 1),
		encodePDU(t, bindPDU(pdu.BindTransceiverID, "ent1", "secret"), 2))
	h, _ := p.next() // the loser is answered at once
	if h.ID != pdu.BindTransceiverRespID || h.Status != smpp.StatusAlreadyBound {
		t.Fatalf("first answer %s status %#x, want ESME_RALYBND", h.ID, uint32(h.Status))
	}
	close(release)
	p.expect(pdu.BindTransceiverRespID, smpp.StatusOK, 3-h.Seq)
	_ = srv.Close()
	if n := len(b.binds.all()); n != 1 {
		t.Errorf("backend saw %d binds, want 1", n)
	}
	b.assertClosedOnce(t)
}

func TestServerSessionHandle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(context.Context, pdu.Body) (pdu.Body, error)
		want   pdu.ID
		status pdu.Status
	}{
		{"response", func(context.Context, pdu.Body) (pdu.Body, error) { return submitResp("m1"), nil }, pdu.SubmitSMRespID, 0},
		{"status refusal", func(context.Context, pdu.Body) (pdu.Body, error) { return nil, pdu.Status(0x401) }, pdu.SubmitSMRespID, 0x401},
		{"wrapped status", func(context.Context, pdu.Body) (pdu.Body, error) {
			return nil, fmt.Errorf("policy: %w", smpp.StatusInvalidDstAddr)
		}, pdu.SubmitSMRespID, smpp.StatusInvalidDstAddr},
		{"internal error", func(context.Context, pdu.Body) (pdu.Body, error) { return nil, errors.New("disk full") }, pdu.SubmitSMRespID, smpp.StatusSystemError},
		{"panic", func(context.Context, pdu.Body) (pdu.Body, error) { panic("bug") }, pdu.GenericNACKID, smpp.StatusSystemError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecBackend()
			b.handle = tc.handle
			_, addr := startServer(t, b, smpp.ServerOptions{})
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
			p.send(frame(pdu.SubmitSMID, 0, 2, submitSMBody("1", "2", "x", 0)))
			p.expect(tc.want, tc.status, 2)
			p.send(frame(pdu.EnquireLinkID, 0, 3))
			p.expect(pdu.EnquireLinkRespID, 0, 3)
		})
	}
	t.Run("no response", func(t *testing.T) {
		b := newRecBackend()
		b.handle = func(context.Context, pdu.Body) (pdu.Body, error) { return nil, nil }
		_, addr := startServer(t, b, smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
		p.send(frame(pdu.SubmitSMID, 0, 2, submitSMBody("1", "2", "x", 0)), frame(pdu.EnquireLinkID, 0, 3))
		p.expect(pdu.EnquireLinkRespID, 0, 3)
		p.expectQuiet(50 * time.Millisecond)
	})
}

// TestSubmitSMRespErrorWithoutBody: a submit_sm_resp with a non-zero
// command_status goes out as a header alone, as SMPP 3.4 §4.4.2 has it
// ("The submit_sm_resp PDU Body is not returned if the command_status
// field contains a non-zero value"): a refusal, an internal error, a
// response the session built with a message_id and then a status, and a
// submit_sm before the bind. Strict clients read the length against the
// fields: osmocom's libsmpp34 refuses a 17-octet one ("Error in PDU length
// 17!=16"), so such an ESME could not read why its message was refused.
// Before, qxtd wrote an empty message_id (17 octets), as go-smpp's codec
// does. A response OK keeps its message_id.
func TestSubmitSMRespErrorWithoutBody(t *testing.T) {
	built := submitResp("m1")
	built.Header().Status = smpp.StatusThrottled
	for _, tc := range []struct {
		name   string
		handle func(context.Context, pdu.Body) (pdu.Body, error)
		status pdu.Status
		length int
	}{
		{"refusal", func(context.Context, pdu.Body) (pdu.Body, error) { return nil, smpp.StatusInvalidDstAddr }, smpp.StatusInvalidDstAddr, pdu.HeaderLen},
		{"vendor refusal", func(context.Context, pdu.Body) (pdu.Body, error) { return nil, pdu.Status(0x401) }, 0x401, pdu.HeaderLen},
		{"internal error", func(context.Context, pdu.Body) (pdu.Body, error) { return nil, errors.New("disk full") }, smpp.StatusSystemError, pdu.HeaderLen},
		{"built with a status", func(context.Context, pdu.Body) (pdu.Body, error) { return built, nil }, smpp.StatusThrottled, pdu.HeaderLen},
		{"OK", func(context.Context, pdu.Body) (pdu.Body, error) { return submitResp("m1"), nil }, 0, pdu.HeaderLen + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecBackend()
			b.handle = tc.handle
			_, addr := startServer(t, b, smpp.ServerOptions{})
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
			p.send(frame(pdu.SubmitSMID, 0, 2, submitSMBody("1", "2", "x", 0)))
			if f := p.expect(pdu.SubmitSMRespID, tc.status, 2); len(f) != tc.length || int(binary.BigEndian.Uint32(f)) != tc.length {
				t.Errorf("submit_sm_resp % x: %d octets, want %d", f, len(f), tc.length)
			}
		})
	}
	t.Run("before the bind", func(t *testing.T) {
		_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.send(frame(pdu.SubmitSMID, 0, 1, submitSMBody("1", "2", "x", 0)))
		if f := p.expect(pdu.SubmitSMRespID, smpp.StatusInvalidBindStatus, 1); len(f) != pdu.HeaderLen {
			t.Errorf("submit_sm_resp % x: %d octets, want a header alone", f, len(f))
		}
	})
}

// TestErrorResponseBodies: what an error response carries. SMPP 3.4
// leaves the body out for submit_sm_resp only (§4.4.2) among these:
// data_sm_resp and deliver_sm_resp keep an empty message_id (§4.7.2,
// §4.6.2), query_sm_resp its four fields empty (§4.8.2), submit_multi_resp
// an empty message_id and no_unsuccess 0 (§4.5.2); cancel_sm_resp and
// replace_sm_resp have no body. Each decodes to nothing past its fields.
// Before, submit_multi_resp had one octet more (go-smpp writes an empty
// unsuccess_sme as a NUL), which a reader takes for a TLV cut short.
func TestErrorResponseBodies(t *testing.T) {
	for _, tc := range []struct {
		req  pdu.Body
		body []byte
	}{
		{pdu.NewSubmitSM(nil), nil},
		{smpp.NewSubmitMulti(nil), []byte{0, 0}},
		{pdu.NewDeliverSM(), []byte{0}},
		{smpp.NewPDU(smpp.DataSMID), []byte{0}},
		{pdu.NewQuerySM(), []byte{0, 0, 0, 0}},
		{smpp.NewPDU(smpp.CancelSMID), nil},
		{smpp.NewPDU(smpp.ReplaceSMID), nil},
	} {
		id := tc.req.Header().ID
		t.Run(id.String(), func(t *testing.T) {
			r := smpp.ErrorResponse(tc.req, smpp.StatusInvalidDstAddr)
			r.Header().Seq = 5
			f, err := smpp.Encode(r)
			if err != nil {
				t.Fatal(err)
			}
			want := frame(id|0x80000000, smpp.StatusInvalidDstAddr, 5, tc.body)
			if !bytes.Equal(f, want) {
				t.Fatalf("% x, want % x", f, want)
			}
			if int(binary.BigEndian.Uint32(f)) != len(f) {
				t.Fatalf("command_length %d of %d octets", binary.BigEndian.Uint32(f), len(f))
			}
			if _, err := smpp.Decode(f); err != nil {
				t.Fatalf("does not decode: %v", err)
			}
		})
	}
}

// Session.Close runs exactly once per bound connection, however it ends.
func TestServerSessionClosedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, srv *smpp.Server, p *peer)
	}{
		{"peer unbinds", func(t *testing.T, _ *smpp.Server, p *peer) {
			p.send(frame(pdu.UnbindID, 0, 9))
			p.expect(pdu.UnbindRespID, 0, 9)
			p.expectClosed()
		}},
		{"peer hangs up", func(_ *testing.T, _ *smpp.Server, p *peer) { _ = p.nc.Close() }},
		{"server Close", func(_ *testing.T, srv *smpp.Server, p *peer) { _ = srv.Close(); p.expectClosed() }},
		{"bad frame", func(_ *testing.T, _ *smpp.Server, p *peer) { p.send(badLength(1)); p.expectClosed() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRecBackend()
			srv, addr := startServer(t, b, smpp.ServerOptions{})
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
			tc.end(t, srv, p)
			s := b.made.waitN(t, "session", 1)[0]
			waitDone(t, "Session.Close", s.closed)
			_ = srv.Close()
			b.assertClosedOnce(t)
		})
	}
	t.Run("connection lost during Bind", func(t *testing.T) {
		b := newRecBackend()
		entered := make(chan struct{})
		b.hook = func(_ context.Context, req smpp.BindRequest) error {
			close(entered)
			<-req.Conn.Context().Done() // the backend is slow; the peer gives up
			return nil
		}
		srv, addr := startServer(t, b, smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.sendPDU(bindPDU(pdu.BindTransceiverID, "ent1", "secret"), 1)
		waitDone(t, "Bind", entered)
		_ = p.nc.Close()
		s := b.made.waitN(t, "session", 1)[0]
		waitDone(t, "Session.Close", s.closed)
		_ = srv.Close()
		b.assertClosedOnce(t)
	})
	t.Run("never bound", func(t *testing.T) {
		b := newRecBackend()
		srv, addr := startServer(t, b, smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.bind(pdu.BindTransceiverID, "ent1", "wrong", 1, smpp.StatusInvalidPassword)
		_ = p.nc.Close()
		_ = srv.Close()
		if n := len(b.made.all()); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
}

func TestServerShutdown(t *testing.T) {
	t.Run("peers answer unbind", func(t *testing.T) {
		b := newRecBackend()
		srv, addr := startServer(t, b, smpp.ServerOptions{})
		var peers []*peer
		for range 3 {
			p := dialPeer(t, addr)
			p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
			peers = append(peers, p)
		}
		done := goResult(func() error { return srv.Shutdown(testCtx(t)) })
		var seqs []uint32
		for _, p := range peers {
			h, _ := p.next()
			if h.ID != pdu.UnbindID {
				t.Fatalf("peer got %s, want unbind", h.ID)
			}
			seqs = append(seqs, h.Seq)
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Error("still accepting during Shutdown")
		}
		peers[0].expectQuiet(50 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v before the peers answered", err)
		default:
		}
		for i, p := range peers {
			p.send(frame(pdu.UnbindRespID, 0, seqs[i]))
			p.expectClosed()
		}
		if err := recvWithin(t, "Shutdown", done); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if srv.Sessions() != 0 {
			t.Errorf("Sessions() = %d after Shutdown", srv.Sessions())
		}
		b.assertClosedOnce(t)
	})
	t.Run("peer does not answer", func(t *testing.T) {
		b := newRecBackend()
		srv, addr := startServer(t, b, smpp.ServerOptions{})
		p := dialPeer(t, addr)
		p.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		done := goResult(func() error { return srv.Shutdown(ctx) })
		p.expect(pdu.UnbindID, 0, 1)
		recvWithin(t, "Shutdown", done)
		p.expectClosed()
		b.assertClosedOnce(t)
	})
}

// TestServerShutdownNotHeldByUnbound: a planned stop unbinds the bound
// peers and does not wait on the rest. A refused bind sleeping out its
// failure delay (here 3 s: a password guesser's, or any ESME's after a few
// refusals from one address) and a connection that never bound and
// answers nothing used to hold Shutdown, each being sent an unbind and
// waited for: the first until its handler woke, the second until ctx
// ended. Both are closed at once instead; the bound peer is unbound as
// before.
func TestServerShutdownNotHeldByUnbound(t *testing.T) {
	b := newRecBackend()
	srv, addr := startServer(t, b, smpp.ServerOptions{FailDelay: 3 * time.Second, MaxFailDelay: 3 * time.Second})
	bound := dialPeer(t, addr)
	bound.bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
	refused := dialPeer(t, addr)
	refused.sendPDU(bindPDU(pdu.BindTransceiverID, "ent1", "wrong"), 1)
	silent := dialPeer(t, addr)
	silent.send(frame(pdu.EnquireLinkID, 0, 1))
	silent.expect(pdu.EnquireLinkRespID, 0, 1)
	// The refused bind is with its failure delay once the backend saw it.
	waitFor(t, "the refused bind", func() bool { return len(b.binds.all()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	done := goResult(func() error { return srv.Shutdown(ctx) })
	h, _ := bound.next()
	if h.ID != pdu.UnbindID {
		t.Fatalf("the bound peer got %s, want unbind", h.ID)
	}
	bound.send(frame(pdu.UnbindRespID, 0, h.Seq))
	bound.expectClosed()
	if err := recvWithin(t, "Shutdown", done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v: held by the peers that were not bound", d)
	}
	refused.expectClosed()
	silent.expectClosed()
}

func TestServerClose(t *testing.T) {
	b := newRecBackend()
	srv, addr := startServer(t, b, smpp.ServerOptions{})
	var peers []*peer
	for _, id := range bindIDs {
		p := dialPeer(t, addr)
		p.bind(id, "ent1", "secret", 1, smpp.StatusOK)
		peers = append(peers, p)
	}
	unbound := dialPeer(t, addr)
	unbound.send(frame(pdu.EnquireLinkID, 0, 1))
	unbound.expect(pdu.EnquireLinkRespID, 0, 1)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(peers, unbound) {
		p.expectClosed()
	}
	if srv.Sessions() != 0 {
		t.Errorf("Sessions() = %d", srv.Sessions())
	}
	if err := srv.Serve(listen(t)); !errors.Is(err, smpp.ErrServerClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
	b.assertClosedOnce(t)
	if n := len(b.made.all()); n != 3 {
		t.Errorf("%d sessions made", n)
	}
}

func TestServerBindTimeout(t *testing.T) {
	b := newRecBackend()
	_, addr := startServer(t, b, smpp.ServerOptions{BindTimeout: 100 * time.Millisecond})
	p := dialPeer(t, addr)
	p.send(frame(pdu.EnquireLinkID, 0, 1)) // talking is not binding
	p.expect(pdu.EnquireLinkRespID, 0, 1)
	p.expectClosed()
	bound := dialPeer(t, addr)
	bound.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	bound.expectQuiet(200 * time.Millisecond) // a bound peer stays
}

// Many peers bind and submit at once; every session is closed once.
func TestServerConcurrentPeers(t *testing.T) {
	b := newRecBackend()
	srv, addr := startServer(t, b, smpp.ServerOptions{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: addr, SystemID: "ent1", Password: "secret"})
			if err != nil {
				errs <- err
				return
			}
			for range 10 {
				if _, err := c.Request(ctx, newSubmitSM("1", "2", "x", 0)); err != nil {
					errs <- err
					return
				}
			}
			errs <- c.Unbind(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = srv.Close()
	b.assertClosedOnce(t)
	if n := len(b.made.all()); n != 20 {
		t.Errorf("%d sessions", n)
	}
}

// flakyListener fails Accept with a temporary error n times, then accepts.
type flakyListener struct {
	net.Listener
	temporary atomic.Int32
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "accept: too many open files (test)" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.temporary.Add(-1) >= 0 {
		return nil, timeoutError{}
	}
	return l.Listener.Accept()
}

func TestServerAcceptErrors(t *testing.T) {
	t.Run("temporary errors back off and go on", func(t *testing.T) {
		l := &flakyListener{Listener: listen(t)}
		l.temporary.Store(3)
		b := newRecBackend()
		s := smpp.NewServer(b, smpp.ServerOptions{})
		served := goResult(func() error { return s.Serve(l) })
		p := dialPeer(t, l.Addr().String())
		p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
		_ = s.Close()
		if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrServerClosed) {
			t.Fatalf("Serve = %v", err)
		}
	})
	t.Run("ListenAndServe on a bad address", func(t *testing.T) {
		s := smpp.NewServer(newRecBackend(), smpp.ServerOptions{})
		defer s.Close()
		if err := s.ListenAndServe("127.0.0.1:notaport"); err == nil {
			t.Fatal("no error")
		}
	})
}

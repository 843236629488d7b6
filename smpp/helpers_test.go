package smpp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// waitLimit bounds every wait for an event; tests never sleep to sync.
const waitLimit = 5 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// tcpPair returns both ends of one loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	l := listen(t)
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	_ = l.Close()
	t.Cleanup(func() { _ = a.Close(); _ = r.c.Close() })
	return a, r.c
}

// newConnPeer starts a Conn on one end of a loopback connection and
// returns a raw peer on the other.
func newConnPeer(t testing.TB, h smpp.Handler, opt smpp.ConnOptions) (*smpp.Conn, *peer) {
	t.Helper()
	a, b := tcpPair(t)
	c := smpp.NewConn(a, h, opt)
	t.Cleanup(func() { _ = c.Close() })
	return c, newPeer(t, b)
}

// peer is the raw side of a connection: it writes bytes and reads frames
// with smpp.ReadFrame. Its methods call t.Fatal: use them from the test
// goroutine only.
type peer struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func newPeer(t testing.TB, nc net.Conn) *peer {
	return &peer{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func dialPeer(t testing.TB, addr string) *peer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return newPeer(t, nc)
}

func (p *peer) send(frames ...[]byte) {
	p.t.Helper()
	if _, err := p.nc.Write(bytes.Join(frames, nil)); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

// sendPDU encodes b with sequence number seq and writes it.
func (p *peer) sendPDU(b pdu.Body, seq uint32) {
	p.t.Helper()
	p.send(encodePDU(p.t, b, seq))
}

// next reads one frame, failing the test after waitLimit.
func (p *peer) next() (pdu.Header, []byte) {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(waitLimit))
	f, err := smpp.ReadFrame(p.r)
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	return hdr(f), f
}

// nextPDU reads and decodes one frame.
func (p *peer) nextPDU() pdu.Body {
	p.t.Helper()
	_, f := p.next()
	b, err := smpp.Decode(f)
	if err != nil {
		p.t.Fatalf("peer decode % x: %v", f, err)
	}
	return b
}

// expect reads one frame and checks its header.
func (p *peer) expect(id pdu.ID, st pdu.Status, seq uint32) []byte {
	p.t.Helper()
	h, f := p.next()
	if h.ID != id || h.Status != st || h.Seq != seq {
		p.t.Fatalf("peer got %s status %#x seq %d, want %s status %#x seq %d",
			h.ID, uint32(h.Status), h.Seq, id, uint32(st), seq)
	}
	return f
}

// expectQuiet asserts that nothing arrives for d.
func (p *peer) expectQuiet(d time.Duration) {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	f, err := smpp.ReadFrame(p.r)
	var ne net.Error
	if err == nil {
		p.t.Fatalf("peer got % x, want nothing for %s", f, d)
	}
	if !errors.As(err, &ne) || !ne.Timeout() {
		p.t.Fatalf("peer read: %v, want nothing for %s", err, d)
	}
}

// expectClosed asserts that the other side closes the connection.
func (p *peer) expectClosed() {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(waitLimit))
	b, err := io.ReadAll(p.r)
	if len(b) > 0 {
		p.t.Fatalf("peer got % x before close", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatal("connection still open")
	}
}

// bind sends a bind_* and expects status st in its response.
func (p *peer) bind(id pdu.ID, systemID, password string, seq uint32, st pdu.Status) {
	p.t.Helper()
	p.sendPDU(bindPDU(id, systemID, password), seq)
	p.expect(id|0x80000000, st, seq)
}

func bindPDU(id pdu.ID, systemID, password string) pdu.Body {
	var b pdu.Body
	switch id {
	case pdu.BindTransmitterID:
		b = pdu.NewBindTransmitter()
	case pdu.BindReceiverID:
		b = pdu.NewBindReceiver()
	default:
		b = pdu.NewBindTransceiver()
	}
	f := b.Fields()
	_ = f.Set(pdufield.SystemID, systemID)
	_ = f.Set(pdufield.Password, password)
	_ = f.Set(pdufield.InterfaceVersion, uint8(0x34))
	return b
}

func hdr(f []byte) pdu.Header { return smpp.HeaderOf(f) }

// frame builds a PDU by hand: header with the right command_length, then
// the body parts in order.
func frame(id pdu.ID, st pdu.Status, seq uint32, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	f := make([]byte, 16, 16+len(b))
	binary.BigEndian.PutUint32(f[0:4], uint32(16+len(b)))
	binary.BigEndian.PutUint32(f[4:8], uint32(id))
	binary.BigEndian.PutUint32(f[8:12], uint32(st))
	binary.BigEndian.PutUint32(f[12:16], seq)
	return append(f, b...)
}

// badLength is an enquire_link header claiming command_length n.
func badLength(n uint32) []byte {
	f := frame(pdu.EnquireLinkID, 0, 1)
	binary.BigEndian.PutUint32(f[0:4], n)
	return f
}

// cs is a C-octet string.
func cs(s string) []byte { return append([]byte(s), 0) }

func tlv(tag uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v))
	binary.BigEndian.PutUint16(b[0:2], tag)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(v)))
	return append(b, v...)
}

func encodePDU(t testing.TB, b pdu.Body, seq uint32) []byte {
	t.Helper()
	b.Header().Seq = seq
	var buf bytes.Buffer
	if err := b.SerializeTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// submitSMBody is a submit_sm body per SMPP 3.4 §4.4.1, by hand.
func submitSMBody(src, dst, text string, regDelivery byte) []byte {
	return bytes.Join([][]byte{
		cs(""),          // service_type
		{1, 1}, cs(src), // source_addr_ton, _npi, source_addr
		{1, 1}, cs(dst), // dest_addr_ton, _npi, destination_addr
		{0, 0, 0},      // esm_class, protocol_id, priority_flag
		cs(""), cs(""), // schedule_delivery_time, validity_period
		{regDelivery, 0, 0, 0},          // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
		{byte(len(text))}, []byte(text), // sm_length, short_message
	}, nil)
}

func newSubmitSM(src, dst, text string, regDelivery uint8) pdu.Body {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddrTON, uint8(1))
	_ = f.Set(pdufield.SourceAddrNPI, uint8(1))
	_ = f.Set(pdufield.SourceAddr, src)
	_ = f.Set(pdufield.DestAddrTON, uint8(1))
	_ = f.Set(pdufield.DestAddrNPI, uint8(1))
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.RegisteredDelivery, regDelivery)
	_ = f.Set(pdufield.ShortMessage, []byte(text))
	return p
}

func submitResp(id string) pdu.Body {
	r := pdu.NewSubmitSMResp()
	_ = r.Fields().Set(pdufield.MessageID, id)
	return r
}

// recorder collects events from other goroutines; wait blocks until a
// condition on them holds, or fails the test after waitLimit.
type recorder[T any] struct {
	mu    sync.Mutex
	items []T
	ch    chan struct{}
}

func newRecorder[T any]() *recorder[T] { return &recorder[T]{ch: make(chan struct{}, 1)} }

func (r *recorder[T]) add(v T) {
	r.mu.Lock()
	r.items = append(r.items, v)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}

func (r *recorder[T]) wait(t testing.TB, what string, cond func([]T) bool) []T {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		if items := r.all(); cond(items) {
			return items
		}
		select {
		case <-r.ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; have %d events: %v", what, len(r.all()), r.all())
		}
	}
}

// waitN waits for at least n events and returns them.
func (r *recorder[T]) waitN(t testing.TB, what string, n int) []T {
	t.Helper()
	return r.wait(t, what, func(v []T) bool { return len(v) >= n })
}

// waitDone waits for a channel to close.
func waitDone(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// goResult runs f in a goroutine; the returned channel yields its result.
func goResult[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

func recvWithin[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

type reqResult struct {
	resp pdu.Body
	err  error
}

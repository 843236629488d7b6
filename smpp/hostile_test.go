package smpp_test

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerLogAmplification sends 300 KB of malformed bind PDUs from an
// unauthenticated peer: each is answered generic_nack, and the log stays
// small (a burst of lines per peer and message, then one per interval with
// a suppressed count).
func TestServerLogAmplification(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{Logger: log})
	p := dialPeer(t, addr)
	const n = 300 << 10 / 35
	var sent bytes.Buffer
	for seq := uint32(1); seq <= n; seq++ {
		f := frame(pdu.BindTransmitterID, 0, seq, []byte("no terminators here")) // C-strings without NUL
		sent.Write(f)
	}
	go func() { _, _ = p.nc.Write(sent.Bytes()) }()
	r := bufio.NewReader(p.nc)
	for i := 0; i < n; i++ {
		f, err := smpp.ReadFrame(r)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if h := smpp.HeaderOf(f); h.ID != pdu.GenericNACKID || h.Status != smpp.StatusInvalidCommandLen {
			t.Fatalf("answer %d: %s status %#x, want generic_nack ESME_RINVCMDLEN", i, h.ID, uint32(h.Status))
		}
	}
	t.Logf("%d bytes of malformed binds (%d PDUs) → %d bytes of log", sent.Len(), n, logs.Len())
	if logs.Len() > 8<<10 {
		t.Errorf("log grew by %d bytes, want ≤ 8 KiB", logs.Len())
	}
}

// emfileListener fails Accept with the errors the test feeds it, then
// (fail closed) accepts. Every call to Accept is announced on calls.
type emfileListener struct {
	net.Listener
	fail   chan error
	calls  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newEMFILEListener(t *testing.T) *emfileListener {
	return &emfileListener{Listener: listen(t), fail: make(chan error), calls: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.calls <- struct{}{}
	select {
	case err, ok := <-l.fail:
		if ok {
			return nil, err
		}
	case <-l.closed:
		return nil, net.ErrClosed
	}
	return l.Listener.Accept()
}

// SetDeadline is the TCP listener's: Serve retries with a deadline.
func (l *emfileListener) SetDeadline(t time.Time) error {
	return l.Listener.(*net.TCPListener).SetDeadline(t)
}

func (l *emfileListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// errEMFILE is Accept's error at the descriptor limit.
var errEMFILE = &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}

// TestServerSurvivesEMFILE: at the descriptor limit Accept fails with
// EMFILE (not a timeout). Serve backs off and goes on, Healthy reports the
// failure while it lasts and clears once a connection is accepted.
func TestServerSurvivesEMFILE(t *testing.T) {
	l := newEMFILEListener(t)
	s := smpp.NewServer(newRecBackend(), smpp.ServerOptions{})
	served := goResult(func() error { return s.Serve(l) })
	recvWithin(t, "Accept", l.calls)
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy before any failure = %v", err)
	}
	start := time.Now()
	for i := range 5 {
		l.fail <- errEMFILE
		recvWithin(t, "Accept again", l.calls) // the error was taken and waited out
		if err := s.Healthy(); !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("Healthy after %d EMFILE = %v, want EMFILE", i+1, err)
		}
	}
	t.Logf("5 EMFILE retried in %s", time.Since(start))
	close(l.fail)
	p := dialPeer(t, l.Addr().String())
	p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery = %v", err)
	}
	_ = s.Close()
	if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrServerClosed) {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
}

// TestServerRecoversEMFILEWithEmptyBacklog: Linux's accept fails with
// EMFILE at the descriptor limit even when no connection waits, and once
// descriptors are free it blocks on the empty backlog. Healthy must clear
// then, not wait for the next client (it did: /readyz said 503 until one
// came, and TestDescriptorExhaustion failed when the flood's last
// connection had been accepted).
func TestServerRecoversEMFILEWithEmptyBacklog(t *testing.T) {
	l := newEMFILEListener(t)
	s := serveUntilCleanup(t, l)
	recvWithin(t, "Accept", l.calls)
	l.fail <- errEMFILE
	recvWithin(t, "Accept again", l.calls)
	if err := s.Healthy(); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Healthy during the retry = %v, want EMFILE", err)
	}
	close(l.fail) // descriptors free, nobody connecting
	recvWithin(t, "Accept after the empty retry", l.calls)
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy after a retry found the backlog empty = %v, want nil", err)
	}
	p := dialPeer(t, l.Addr().String()) // and it still accepts
	p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
}

// serveUntilCleanup serves l on a new server until the test ends, then
// closes it and checks that Serve returned ErrServerClosed.
func serveUntilCleanup(t *testing.T, l net.Listener) *smpp.Server {
	t.Helper()
	s := smpp.NewServer(newRecBackend(), smpp.ServerOptions{})
	served := goResult(func() error { return s.Serve(l) })
	t.Cleanup(func() {
		_ = s.Close()
		if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	return s
}

// plainListener hides SetDeadline: a listener Serve cannot probe.
type plainListener struct{ net.Listener }

// TestServerRecoversEMFILEWithoutDeadline: a listener without deadlines is
// taken to be well once its retry starts (a new failure sets it back).
func TestServerRecoversEMFILEWithoutDeadline(t *testing.T) {
	l := newEMFILEListener(t)
	s := serveUntilCleanup(t, plainListener{l})
	recvWithin(t, "Accept", l.calls)
	l.fail <- errEMFILE
	recvWithin(t, "Accept again", l.calls)
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy while the retry waits on an empty backlog = %v, want nil", err)
	}
}

// TestServerCloseEndsAcceptBackoff: Close does not wait out the backoff.
func TestServerCloseEndsAcceptBackoff(t *testing.T) {
	l := newEMFILEListener(t)
	s := smpp.NewServer(newRecBackend(), smpp.ServerOptions{})
	served := goResult(func() error { return s.Serve(l) })
	recvWithin(t, "Accept", l.calls)
	for range 8 { // 5 ms doubling: the 9th wait is the 1 s cap
		l.fail <- errEMFILE
		recvWithin(t, "Accept again", l.calls)
	}
	l.fail <- errEMFILE
	start := time.Now()
	_ = s.Close()
	if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrServerClosed) {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Serve returned %s after Close, during a 1 s backoff", d)
	}
}

// TestServerListenerClosedBehindItsBack: a listener closed by someone
// else ends Serve with ErrListenerClosed, and Healthy says so.
func TestServerListenerClosedBehindItsBack(t *testing.T) {
	l := listen(t)
	s := smpp.NewServer(newRecBackend(), smpp.ServerOptions{})
	defer s.Close()
	served := goResult(func() error { return s.Serve(l) })
	_ = l.Close()
	if err := recvWithin(t, "Serve", served); !errors.Is(err, smpp.ErrListenerClosed) {
		t.Fatalf("Serve = %v, want ErrListenerClosed", err)
	}
	if err := s.Healthy(); !errors.Is(err, smpp.ErrListenerClosed) {
		t.Fatalf("Healthy = %v, want ErrListenerClosed", err)
	}
}

// dialFrom connects to addr from source address src (any of 127.0.0.0/8
// is loopback on Linux).
func dialFrom(t *testing.T, src, addr string) *peer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return newPeer(t, nc)
}

// TestServerMaxUnboundPerIP: past MaxUnboundPerIP connections from one
// address that have not bound, a new one is closed at once; a bound
// connection does not count, and other addresses are not affected.
func TestServerMaxUnboundPerIP(t *testing.T) {
	rejected := newRecorder[string]()
	_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{MaxUnboundPerIP: 3, OnReject: rejected.add})
	var held []*peer
	for range 3 {
		held = append(held, dialFrom(t, "127.0.0.1", addr))
	}
	extra := dialFrom(t, "127.0.0.1", addr) // accepted after the three: one Serve loop
	extra.expectClosed()
	if got := rejected.waitN(t, "rejection", 1); got[0] != smpp.RejectUnboundPerIP {
		t.Fatalf("OnReject(%q), want %q", got[0], smpp.RejectUnboundPerIP)
	}
	// Another address has its own allowance.
	dialFrom(t, "127.0.0.2", addr).bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	// Once one of the three binds, it no longer counts: room for one more.
	held[0].bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	held = append(held, dialFrom(t, "127.0.0.1", addr))
	dialFrom(t, "127.0.0.1", addr).expectClosed()
	rejected.waitN(t, "second rejection", 2)
	for _, p := range held[1:] { // the unbound ones still work
		p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	}
}

// TestServerMaxConns: past MaxConns open connections, bound or not, a new
// one is closed at once, whatever its address.
func TestServerMaxConns(t *testing.T) {
	rejected := newRecorder[string]()
	_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{MaxConns: 3, OnReject: rejected.add})
	dialFrom(t, "127.0.0.1", addr).bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	dialFrom(t, "127.0.0.2", addr).bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	unbound := dialFrom(t, "127.0.0.3", addr)
	dialFrom(t, "127.0.0.4", addr).expectClosed()
	if got := rejected.waitN(t, "rejection", 1); got[0] != smpp.RejectMaxConns {
		t.Fatalf("OnReject(%q), want %q", got[0], smpp.RejectMaxConns)
	}
	unbound.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
}

// TestServerMaxUnboundPerNetwork: a network (an IPv4 /24) holds at most
// PrefixTimes × MaxUnboundPerIP connections not bound yet, however many
// addresses it spreads them over; a bound one does not count, and another
// /24 has its own allowance.
func TestServerMaxUnboundPerNetwork(t *testing.T) {
	rejected := newRecorder[string]()
	_, addr := startServer(t, newRecBackend(), smpp.ServerOptions{MaxUnboundPerIP: 4, OnReject: rejected.add})
	const perNet = 4 * smpp.PrefixTimes
	var held []*peer
	for i := range 50 { // one connection from each of 127.0.1.1–50
		p := dialFrom(t, net.IPv4(127, 0, 1, byte(1+i)).String(), addr)
		if i < perNet {
			held = append(held, p) // accepted in the order dialled: one Serve loop
		}
	}
	got := rejected.waitN(t, "rejections", 50-perNet)
	for _, r := range got {
		if r != smpp.RejectUnboundPerNetwork {
			t.Fatalf("OnReject(%q), want %q (all %v)", r, smpp.RejectUnboundPerNetwork, got)
		}
	}
	// Another /24 has its own allowance.
	dialFrom(t, "127.0.2.1", addr).bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	// Once one of the sixteen binds, it no longer counts: room for one more.
	held[0].bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	held = append(held, dialFrom(t, "127.0.1.99", addr))
	dialFrom(t, "127.0.1.100", addr).expectClosed()
	if got := rejected.waitN(t, "one more rejection", 50-perNet+1); got[len(got)-1] != smpp.RejectUnboundPerNetwork {
		t.Fatalf("OnReject(%q), want %q", got[len(got)-1], smpp.RejectUnboundPerNetwork)
	}
	for _, p := range held[1:] { // the unbound ones still work
		p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	}
}

// TestServerEvictsLongestUnbound: with MaxConns held by connections that
// never bind (spread over three /24s, within every per-source cap), a new
// connection is refused while the oldest has been unbound for less than
// EvictGrace, and from then on closes the one unbound the longest, in the
// order they came, and binds. A bound connection is never closed for room.
func TestServerEvictsLongestUnbound(t *testing.T) {
	rejected := newRecorder[string]()
	s, addr := startServer(t, newRecBackend(), smpp.ServerOptions{MaxConns: 40, MaxUnboundPerIP: 4, OnReject: rejected.add})
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	smpp.SetClock(s, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	var held []*peer
	for i := range 40 { // four an address, sixteen a /24: 127.0.2.1–4, 127.0.3.1–4, 127.0.4.1–2
		held = append(held, dialFrom(t, net.IPv4(127, 0, byte(2+i/16), byte(1+i%16/4)).String(), addr))
	}
	// A dial returns once the kernel has the connection, before the
	// server's accept loop has stamped it: the clock moves only when all
	// forty are stamped, or a late one would be too young to evict.
	waitFor(t, "the server to take in forty connections", func() bool { return s.Sessions() == 40 })
	// Within the grace: the newcomer is refused, nobody is closed.
	advance(smpp.EvictGrace - time.Nanosecond)
	dialFrom(t, "127.0.9.1", addr).expectClosed()
	if got := rejected.waitN(t, "rejection", 1); len(got) != 1 || got[0] != smpp.RejectMaxConns {
		t.Fatalf("OnReject %v, want [%q]", got, smpp.RejectMaxConns)
	}
	// Past it: a real ESME gets in and binds; the first to come is closed.
	advance(time.Nanosecond)
	dialFrom(t, "127.0.9.1", addr).bind(pdu.BindTransceiverID, "ent1", "secret", 1, smpp.StatusOK)
	held[0].expectClosed()
	if got := rejected.waitN(t, "eviction", 2); got[1] != smpp.RejectEvictedIdle {
		t.Fatalf("OnReject %v, want %q second", got, smpp.RejectEvictedIdle)
	}
	// The next newcomer closes the next oldest; the others are still open.
	dialFrom(t, "127.0.9.2", addr).bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	held[1].expectClosed()
	rejected.waitN(t, "second eviction", 3)
	for _, p := range held[2:] {
		p.bind(pdu.BindTransmitterID, "ent1", "secret", 1, smpp.StatusOK)
	}
	// Forty bound connections, however old: a newcomer is refused.
	advance(time.Hour)
	dialFrom(t, "127.0.9.3", addr).expectClosed()
	if got := rejected.waitN(t, "rejection when all are bound", 4); got[3] != smpp.RejectMaxConns {
		t.Fatalf("OnReject %v, want %q fourth", got, smpp.RejectMaxConns)
	}
	if n := s.Sessions(); n != 40 {
		t.Fatalf("%d connections open, want 40", n)
	}
}

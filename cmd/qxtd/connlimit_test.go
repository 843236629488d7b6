package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// limitRig is an HTTP server on a limitListener that follows its states,
// as the daemon serves: its clock is the test's, and it records every
// connection state the server reports, by the client's address.
type limitRig struct {
	t    *testing.T
	l    *limitListener
	addr string
	tls  *tls.Config // the clients' config; nil: plain HTTP

	clockMu sync.Mutex
	now     time.Time

	mu     sync.Mutex
	states map[string][]http.ConnState // by the client's address
	wake   chan struct{}

	// /block answers once release is closed; entered gets a value as
	// each such request starts.
	entered chan struct{}
	release chan struct{}
}

func newLimitRig(t *testing.T, max, perAddr, perNet int, useTLS bool) *limitRig {
	t.Helper()
	r := &limitRig{t: t, now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), states: map[string][]http.ConnState{},
		wake: make(chan struct{}, 1), entered: make(chan struct{}, 8), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.l = newConnMetrics(prometheus.NewRegistry()).limit(ln, max, perAddr, perNet)
	r.l.now = r.clock
	var certs *certReloader
	if useTLS {
		dir := t.TempDir()
		ca := newTestCA(t, dir, "ca")
		certFile, keyFile := filepath.Join(dir, "http.crt"), filepath.Join(dir, "http.key")
		ca.issueFiles(t, 7, certFile, keyFile, "127.0.0.1")
		if certs, err = newCertReloader("http", "http.tls_cert_file", certFile, "http.tls_key_file", keyFile); err != nil {
			t.Fatal(err)
		}
		r.l.tls = true
		// HTTP/1.1 only: the raw requests below are written by hand.
		r.tls = &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) {
		r.entered <- struct{}{}
		<-r.release
		_, _ = io.WriteString(w, "released\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute, ConnState: r.record,
		ErrorLog: log.New(io.Discard, "", 0)} // the handshakes of closed connections fail
	r.l.evictIdle(srv)
	go func() { _ = serveHTTP(srv, r.l, certs) }()
	t.Cleanup(func() {
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		_ = srv.Close()
	})
	return r
}

func (r *limitRig) clock() time.Time {
	r.clockMu.Lock()
	defer r.clockMu.Unlock()
	return r.now
}

func (r *limitRig) advance(d time.Duration) {
	r.clockMu.Lock()
	r.now = r.now.Add(d)
	r.clockMu.Unlock()
}

func (r *limitRig) record(c net.Conn, st http.ConnState) {
	r.mu.Lock()
	r.states[c.RemoteAddr().String()] = append(r.states[c.RemoteAddr().String()], st)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitState waits until the server has reported state st of the
// connection from client address from.
func (r *limitRig) waitState(from net.Addr, st http.ConnState) {
	r.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		seen := r.states[from.String()]
		r.mu.Unlock()
		for _, s := range seen {
			if s == st {
				return
			}
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			r.t.Fatalf("the server never reported %s for %s (saw %v)", st, from, seen)
		}
	}
}

// dial connects from src, over TLS if the rig speaks it (the handshake
// done: an error if the listener closed the connection instead).
func (r *limitRig) dial(src string) (net.Conn, error) {
	r.t.Helper()
	c := dialFrom(r.t, src, r.addr)
	if r.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, r.tls)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	err := tc.Handshake()
	_ = tc.SetDeadline(time.Time{})
	return tc, err
}

// get sends GET path on c and returns the answer's status, or 0 when the
// connection ends without one.
func get(t *testing.T, c net.Conn, path string, keepAlive bool) int {
	t.Helper()
	conn := ""
	if !keepAlive {
		conn = "Connection: close\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: qxtd\r\n%s\r\n", path, conn); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPConnsPerNetwork: a /24 holds at most perNet connections however
// many addresses it spreads them over; the next is answered 503 and
// counted; another /24 is served.
func TestHTTPConnsPerNetwork(t *testing.T) {
	t.Parallel()
	r := newLimitRig(t, 100, 2, 8, false)
	for i := range 12 { // one kept-alive connection from each of 127.0.1.1–12
		c, _ := r.dial(fmt.Sprintf("127.0.1.%d", i+1))
		want := http.StatusOK
		if i >= 8 {
			want = http.StatusServiceUnavailable
		}
		if got := get(t, c, "/", true); got != want {
			t.Fatalf("connection %d of 127.0.1.0/24: %d, want %d", i+1, got, want)
		}
	}
	c, _ := r.dial("127.0.2.1")
	if got := get(t, c, "/", true); got != http.StatusOK {
		t.Fatalf("another /24 while 127.0.1.0/24 is full: %d", got)
	}
	if got := testutil.ToFloat64(r.l.m.refused.WithLabelValues(capPerNetwork)); got != 4 {
		t.Errorf("refused %s %v, want 4", capPerNetwork, got)
	}
}

// TestHTTPEvictsIdle: with max_conns held by a request in flight, two
// connections that sent nothing (over HTTPS: not even a handshake) and a
// kept-alive one between requests, a new client is refused while the
// oldest idle one has been idle less than the grace, and from then on each
// new client is served in place of the one idle the longest: the two that
// sent nothing, then the keep-alive. The request in flight, the oldest
// connection of all, is never closed and is answered when its handler is
// released.
func TestHTTPEvictsIdle(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newLimitRig(t, 4, 2, 8, useTLS)
			active, err := r.dial("127.0.4.1")
			if err != nil {
				t.Fatal(err)
			}
			activeStatus := make(chan int, 1)
			go func() { activeStatus <- get(t, active, "/block", true) }()
			select {
			case <-r.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the /block request never started")
			}
			var silent []net.Conn // connected, sent nothing
			for _, src := range []string{"127.0.2.1", "127.0.3.1"} {
				c := dialFrom(t, src, r.addr)
				r.waitState(c.LocalAddr(), http.StateNew)
				silent = append(silent, c)
			}
			keep, err := r.dial("127.0.5.1")
			if err != nil {
				t.Fatal(err)
			}
			if got := get(t, keep, "/", true); got != http.StatusOK {
				t.Fatalf("keep-alive client: %d", got)
			}
			r.waitState(keep.LocalAddr(), http.StateIdle)

			// refused: a new client is refused (503; over HTTPS closed
			// before its handshake ends).
			refused := func(src string) {
				t.Helper()
				c, err := r.dial(src)
				if err != nil {
					return // HTTPS
				}
				if got := get(t, c, "/", false); useTLS || got != http.StatusServiceUnavailable {
					t.Fatalf("a client while all are busy or idle within the grace: answered %d", got)
				}
			}
			// Within the grace: refused, nobody closed.
			r.advance(idleGrace - time.Nanosecond)
			refused("127.0.9.1")
			// Past it: each new client is served (and kept alive), the one
			// idle the longest closed.
			r.advance(time.Nanosecond)
			for i, victim := range []net.Conn{silent[0], silent[1], keep} {
				c, err := r.dial(fmt.Sprintf("127.0.9.%d", 2+i))
				if err != nil {
					t.Fatalf("client %d: %v", i+1, err)
				}
				if got := get(t, c, "/", true); got != http.StatusOK {
					t.Fatalf("client %d: %d, want 200", i+1, got)
				}
				closedWithin(t, victim, 10*time.Second)
				r.waitState(c.LocalAddr(), http.StateIdle)
			}
			// Now the idle ones became so within the grace: refused again.
			refused("127.0.9.9")
			close(r.release)
			select {
			case got := <-activeStatus:
				if got != http.StatusOK {
					t.Fatalf("the request in flight: %d, want 200", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the request in flight was never answered")
			}
			for c, want := range map[string]float64{capMaxConns: 2, capEvictedIdle: 3} {
				if got := testutil.ToFloat64(r.l.m.refused.WithLabelValues(c)); got != want {
					t.Errorf("refused %s %v, want %v", c, got, want)
				}
			}
		})
	}
}

// h2Client is an HTTP/2 client whose connections come from src: each
// connection it dials is sent on conns, so the test knows its address.
func (r *limitRig) h2Client(src string, conns chan<- net.Conn) *http.Client {
	cfg := r.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   cfg,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				conns <- c
			}
			return c, err
		},
	}
	r.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHTTPEvictsIdleHTTP2: over HTTP/2 (what browsers and most HTTP
// libraries speak to an HTTPS listener) a connection between requests is
// idle and may be closed for a newcomer, and one with a stream in flight
// is not, however long it has been open: the server reports HTTP/2's
// connection states as HTTP/1.1's, and the listener goes by them.
func TestHTTPEvictsIdleHTTP2(t *testing.T) {
	t.Parallel()
	r := newLimitRig(t, 2, 2, 8, true)
	busyConns, idleConns := make(chan net.Conn, 4), make(chan net.Conn, 4)
	busy, idle := r.h2Client("127.0.6.1", busyConns), r.h2Client("127.0.7.1", idleConns)
	url := "https://" + r.addr

	busyStatus := make(chan int, 1)
	go func() {
		resp, err := busy.Get(url + "/block")
		if err != nil {
			busyStatus <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			busyStatus <- -resp.ProtoMajor
			return
		}
		busyStatus <- resp.StatusCode
	}()
	select {
	case <-r.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the /block request never started")
	}
	busyConn := <-busyConns

	resp, err := idle.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("idle client: %d over HTTP/%d, want 200 over HTTP/2", resp.StatusCode, resp.ProtoMajor)
	}
	idleConn := <-idleConns
	r.waitState(idleConn.LocalAddr(), http.StateIdle)

	// Both slots taken; past the grace the newcomer is served, and the
	// connection closed for it is the idle HTTP/2 one.
	r.advance(idleGrace)
	c, err := r.dial("127.0.9.1")
	if err != nil {
		t.Fatalf("newcomer: %v", err)
	}
	if got := get(t, c, "/", true); got != http.StatusOK {
		t.Fatalf("newcomer: %d, want 200", got)
	}
	r.waitState(idleConn.LocalAddr(), http.StateClosed)
	r.waitState(c.LocalAddr(), http.StateIdle)

	// The stream in flight keeps its connection: the next newcomer, the
	// other connection idle within the grace, is refused.
	if c2, err := r.dial("127.0.9.2"); err == nil {
		t.Fatalf("second newcomer served (%v) while the only other connection has a stream in flight", c2.LocalAddr())
	}
	close(r.release)
	select {
	case got := <-busyStatus:
		if got != http.StatusOK {
			t.Fatalf("the stream in flight: %d, want 200 over HTTP/2 (negative: the HTTP major version instead)", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream in flight was never answered")
	}
	r.mu.Lock()
	busyStates := r.states[busyConn.LocalAddr().String()]
	r.mu.Unlock()
	for _, st := range busyStates {
		if st == http.StateClosed {
			t.Fatalf("the connection with a stream in flight was closed (states %v)", busyStates)
		}
	}
	if got := testutil.ToFloat64(r.l.m.refused.WithLabelValues(capEvictedIdle)); got != 1 {
		t.Errorf("evicted_idle %v, want 1", got)
	}
}

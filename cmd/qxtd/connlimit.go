package main

import (
	"container/list"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qxtd/qxtd/smpp"
)

// limitListener caps the connections an HTTP listener holds open: in all
// (http.max_conns), from one source address (http.max_conns_per_addr) and
// from one network (smpp.SourcePrefix: an IPv4 /24, an IPv6 /48; four
// times the address's cap, smpp.PrefixTimes).
//
// A connection beyond a source's cap is answered "503 Service Unavailable"
// (Connection: close, Retry-After) and closed at once; it does not wait.
// At max_conns, a listener that follows its server's connection states
// (evictIdle) first makes room: it closes the connection idle the longest
// (one that has not sent a whole request yet, or a keep-alive between
// requests), if idle for evictGrace or more, and admits the new one; only
// with none such is the new one refused. A connection with a request in
// flight, or hijacked, is never closed for room. So clients that connect
// and send nothing cannot hold every slot against clients that send
// requests: to keep all of them, they must open max_conns a second.
// Waiting (as x/net/netutil.LimitListener does, by not accepting) would
// leave new clients, /metrics scrapes and health checks included, in the
// kernel's backlog behind whoever holds the slots, with no answer until
// they time out; refusing tells them at once, and the accept loop keeps
// draining the backlog, so a flood holds no descriptor beyond the caps.
//
// With http.ops_listen each HTTP listener has caps of its own (of the same
// values), so a flood on the enterprises' port cannot take the slots of
// scrapes and operators on the other; the metrics count both together.
type limitListener struct {
	net.Listener
	max, perAddr int
	// perNet caps a network's connections; 0: no cap (the cluster's peer
	// listener, whose clients, the other nodes, commonly share a /24).
	perNet int
	m      *connMetrics
	// tls: the connections speak TLS (HTTPS), so a refusal is a close
	// without the 503: plain text would be garbage to a TLS client, and a
	// handshake per refused connection would cost what refusing saves.
	tls bool
	// now and evictGrace: time.Now and idleGrace (tests change them
	// before the listener serves).
	now        func() time.Time
	evictGrace time.Duration

	mu     sync.Mutex
	open   int
	byAddr map[string]int
	byNet  map[string]int
	// evict: connection states are followed (evictIdle), and idle holds
	// the connections that are idle (http.StateNew, http.StateIdle) in the
	// order they became so: the front is the one idle the longest.
	evict bool
	idle  *list.List
}

// idleGrace is how long an HTTP connection is idle before it may be
// closed to make room at http.max_conns. A client sends its request as
// soon as it has connected (over TLS, after a handshake of two round
// trips), and a keep-alive closed between requests costs its client one
// reconnect; a second keeps a client that has just connected from being
// closed before it could ask anything, where a flood's connections are
// older than that within a second.
const idleGrace = time.Second

// connMetrics are the HTTP listeners' connection metrics, registered once
// whatever the number of listeners.
type connMetrics struct {
	refused *prometheus.CounterVec

	mu        sync.Mutex
	listeners []*limitListener
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{}
	m.refused = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "qxtd_http_connections_refused_total",
		Help: "HTTP connections closed by a cap: answered 503 at accept, by the cap they were over (max_conns, max_conns_per_addr, max_conns_per_network: 4 × max_conns_per_addr a /24 or /48), or evicted_idle: the one idle the longest, closed at max_conns to make room for a new one.",
	}, []string{"cap"})
	for _, c := range connCaps {
		m.refused.WithLabelValues(c)
	}
	promauto.With(reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qxtd_http_connections_open",
		Help: "HTTP connections open (at most http.max_conns per HTTP listener).",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		n := 0
		for _, l := range m.listeners {
			l.mu.Lock()
			n += l.open
			l.mu.Unlock()
		}
		return float64(n)
	})
	return m
}

// The values of qxtd_http_connections_refused_total's cap label.
const (
	capMaxConns    = "max_conns"
	capPerAddr     = "max_conns_per_addr"
	capPerNetwork  = "max_conns_per_network"
	capEvictedIdle = "evicted_idle"
)

var connCaps = []string{capMaxConns, capPerAddr, capPerNetwork, capEvictedIdle}

// limit wraps l with the caps max (in all), perAddr (per source address)
// and perNet (per network; 0: none).
func (m *connMetrics) limit(l net.Listener, max, perAddr, perNet int) *limitListener {
	ll := &limitListener{Listener: l, max: max, perAddr: perAddr, perNet: perNet, m: m,
		now: time.Now, evictGrace: idleGrace,
		byAddr: make(map[string]int), byNet: make(map[string]int), idle: list.New()}
	m.mu.Lock()
	m.listeners = append(m.listeners, ll)
	m.mu.Unlock()
	return ll
}

// refusal is the whole answer to a connection over a cap.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 1\r\nConnection: close\r\nContent-Length: 30\r\n\r\ntoo many connections, retry.\r\n"

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote := c.RemoteAddr().String()
		lc := &limitConn{Conn: c, l: l, key: smpp.SourceKey(remote), prefix: smpp.SourcePrefix(remote)}
		over, victim := l.admit(lc)
		if over == "" {
			if victim != nil {
				// Its server's read fails, and it closes the limitConn:
				// its slot is lc's already.
				_ = victim.Conn.Close()
				l.m.refused.WithLabelValues(capEvictedIdle).Inc()
			}
			return lc, nil
		}
		l.m.refused.WithLabelValues(over).Inc()
		if l.tls {
			_ = c.Close()
			continue
		}
		// A fresh socket's send buffer is empty: the write does not block,
		// the deadline only guards against the impossible.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.WriteString(c, refusal)
		_ = c.Close()
	}
}

// admit takes a slot for c, or names the cap it is over. At max_conns it
// takes the slot of the connection idle the longest, if idle evictGrace
// or more, and returns it for the caller to close (its counts are
// released already). Full with none such, the new connection is refused
// before its source's caps are looked at; a source at its caps is refused
// whatever room could be made: it holds its share already.
func (l *limitListener) admit(c *limitConn) (over string, victim *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	full := l.open >= l.max
	if full {
		victim = l.evictable(now)
	}
	switch {
	case full && victim == nil:
		return capMaxConns, nil
	case l.byAddr[c.key] >= l.perAddr:
		return capPerAddr, nil
	case l.perNet > 0 && l.byNet[c.prefix] >= l.perNet:
		return capPerNetwork, nil
	}
	if victim != nil {
		l.releaseLocked(victim)
	}
	l.open++
	l.byAddr[c.key]++
	l.byNet[c.prefix]++
	if l.evict {
		c.since = now
		c.idle = l.idle.PushBack(c)
	}
	return "", victim
}

// evictable is the connection idle the longest, if it has been for
// evictGrace or more, else nil. O(1): idle is in the order its
// connections became idle.
func (l *limitListener) evictable(now time.Time) *limitConn {
	e := l.idle.Front()
	if e == nil {
		return nil
	}
	c := e.Value.(*limitConn)
	if now.Sub(c.since) < l.evictGrace {
		return nil
	}
	return c
}

// releaseLocked gives c's slot back (once).
func (l *limitListener) releaseLocked(c *limitConn) {
	if c.released {
		return
	}
	c.released = true
	if c.idle != nil {
		l.idle.Remove(c.idle)
		c.idle = nil
	}
	l.open--
	if l.byAddr[c.key]--; l.byAddr[c.key] <= 0 {
		delete(l.byAddr, c.key) // the maps hold only sources with open connections
	}
	if l.byNet[c.prefix]--; l.byNet[c.prefix] <= 0 {
		delete(l.byNet, c.prefix)
	}
}

// evictIdle makes l follow srv's connection states (srv.ConnState, any
// hook set before still called), so that at max_conns it can close the
// connection idle the longest. Call it before srv serves l. srv sees the
// limitConn l returns, or (HTTPS: ServeTLS layers crypto/tls over l) a
// *tls.Conn over it, which is unwrapped; HTTP/2's server reports its
// connections' states alike (idle: no stream open).
func (l *limitListener) evictIdle(srv *http.Server) {
	l.mu.Lock()
	l.evict = true
	l.mu.Unlock()
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		l.connState(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
}

// connState moves c to the back of the idle list when it becomes idle
// (from when it was accepted, for a new one), and out of it when a request
// starts, or it is hijacked or closed.
func (l *limitListener) connState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released || c.l != l {
		return
	}
	switch st {
	case http.StateNew: // on the list since admit
	case http.StateIdle:
		if c.idle != nil {
			l.idle.Remove(c.idle)
		}
		c.since = l.now()
		c.idle = l.idle.PushBack(c)
	default: // active, hijacked, closed
		if c.idle != nil {
			l.idle.Remove(c.idle)
			c.idle = nil
		}
	}
}

// limitConn gives its slot back when closed (once, however often Close
// is called, and not when it was closed to make room: admit gave its slot
// to the new connection).
type limitConn struct {
	net.Conn
	l           *limitListener
	key, prefix string

	// Guarded by l.mu.
	released bool
	idle     *list.Element // in l.idle while idle
	since    time.Time     // when it became idle
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return err
}

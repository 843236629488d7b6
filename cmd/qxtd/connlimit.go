package main

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qxtd/qxtd/smpp"
)

// limitListener caps the connections an HTTP listener holds open: in all
// (http.max_conns) and from one source address (http.max_conns_per_addr).
//
// A connection beyond either cap is answered "503 Service Unavailable"
// (Connection: close, Retry-After) and closed at once; it does not wait.
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
	m            *connMetrics
	// tls: the connections speak TLS (HTTPS), so a refusal is a close
	// without the 503: plain text would be garbage to a TLS client, and a
	// handshake per refused connection would cost what refusing saves.
	tls bool

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

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
		Help: "HTTP connections answered 503 and closed at accept, by the cap they were over (max_conns, max_conns_per_addr).",
	}, []string{"cap"})
	for _, c := range []string{"max_conns", "max_conns_per_addr"} {
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

// limit wraps l with the caps max (in all) and perAddr (per source address).
func (m *connMetrics) limit(l net.Listener, max, perAddr int) *limitListener {
	ll := &limitListener{Listener: l, max: max, perAddr: perAddr, m: m, byAddr: make(map[string]int)}
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
		key := sourceKey(c.RemoteAddr())
		over := l.admit(key)
		if over == "" {
			return &limitConn{Conn: c, l: l, key: key}, nil
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

// admit takes a slot for key, or names the cap it is over.
func (l *limitListener) admit(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.max:
		return "max_conns"
	case l.byAddr[key] >= l.perAddr:
		return "max_conns_per_addr"
	}
	l.open++
	l.byAddr[key]++
	return ""
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key) // the map holds only addresses with open connections
	}
}

// limitConn gives its slot back when closed (once, however often Close
// is called).
type limitConn struct {
	net.Conn
	l    *limitListener
	key  string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// sourceKey is the source a connection is counted under: its address, an
// IPv6 one by its /64 (smpp.SourceKey, as every listener counts).
func sourceKey(a net.Addr) string { return smpp.SourceKey(a.String()) }

// Package clustertest starts a real etcd server inside a test process, for
// the tests of qxtd's cluster mode (go.etcd.io/etcd/server/v3/embed): the
// same server as a production cluster, one member, data in t.TempDir().
package clustertest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is a running one-member etcd.
type Etcd struct {
	// Endpoints are its client addresses (host:port).
	Endpoints []string

	mu      sync.Mutex
	e       *embed.Etcd
	dir     string  // its data, kept across Stop and Restart
	client  url.URL // the addresses the kernel chose at Start, kept by Restart
	peer    url.URL
	proxies []*Proxy // StartBehindProxy's and NewProxy's
}

// StartBehindProxy is Start with the clients reaching etcd through a TCP
// proxy of the test's (Endpoints are the proxy's): Stop then cuts every
// client connection at once, as an etcd that crashed or became unreachable
// would, instead of etcd's own stop, which serves the streams already open
// (watches, lease keepalives) for up to 7 s more. Restart opens the proxy
// again on the same port.
func StartBehindProxy(t testing.TB) *Etcd {
	t.Helper()
	et := Start(t)
	et.Endpoints = []string{et.NewProxy(t).Endpoint}
	return et
}

// Proxy is a TCP proxy of the test's to etcd's client port, cut when etcd
// stops and opened again when it restarts, unless Isolate cut it alone.
type Proxy struct {
	// Endpoint is its address (host:port), for a client's Endpoints.
	Endpoint string
	et       *Etcd
	p        *proxy
	isolated bool // by Isolate, until Rejoin; under et.mu
}

// NewProxy is one more way in to etcd, for one client: Isolate cuts that
// client off alone (a network partition), Rejoin lets it in again.
func (et *Etcd) NewProxy(t testing.TB) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clustertest: proxy: %v", err)
	}
	px := &Proxy{Endpoint: l.Addr().String(), et: et,
		p: &proxy{addr: l.Addr().String(), to: et.client.Host, conns: map[net.Conn]struct{}{}}}
	et.mu.Lock()
	et.proxies = append(et.proxies, px)
	running := et.e != nil
	et.mu.Unlock()
	if running {
		px.p.serve(l)
	} else {
		_ = l.Close()
	}
	t.Cleanup(px.p.cut) // before Start's Stop
	return px
}

// Isolate cuts the proxy's connections at once and refuses new ones until
// Rejoin, whether etcd runs or not.
func (px *Proxy) Isolate() {
	px.et.mu.Lock()
	px.isolated = true
	px.et.mu.Unlock()
	px.p.cut()
}

// Rejoin opens the proxy again (if etcd runs; else Restart will).
func (px *Proxy) Rejoin(t testing.TB) {
	t.Helper()
	px.et.mu.Lock()
	defer px.et.mu.Unlock()
	px.isolated = false
	if px.et.e != nil {
		px.listen(t)
	}
}

// listen opens the proxy on its port; et.mu is held.
func (px *Proxy) listen(t testing.TB) {
	t.Helper()
	px.p.mu.Lock()
	open := px.p.l != nil
	px.p.mu.Unlock()
	if open {
		return
	}
	l, err := net.Listen("tcp", px.p.addr)
	if err != nil {
		t.Fatalf("clustertest: proxy: listen again on %s: %v", px.p.addr, err)
	}
	px.p.serve(l)
}

// Start runs an etcd member on loopback ports chosen by the kernel and stops
// it when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	cu, _ := url.Parse("http://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	et := &Etcd{dir: t.TempDir()}
	e, err := et.start(*cu, *pu)
	if err != nil {
		t.Fatal(err)
	}
	et.e = e
	for _, l := range e.Clients {
		et.Endpoints = append(et.Endpoints, l.Addr().String())
	}
	et.client = url.URL{Scheme: "http", Host: e.Clients[0].Addr().String()}
	et.peer = url.URL{Scheme: "http", Host: e.Peers[0].Listener.Addr().String()}
	t.Cleanup(et.Stop)
	return et
}

// start runs the member on cu and pu with the data in e.dir.
func (et *Etcd) start(cu, pu url.URL) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = et.dir
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	// Its own log would repeat every shutdown error of the listeners it
	// closes; the tests' failures say what matters.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Whitelist imports replicate in transactions of up to 1,000 puts.
	cfg.MaxTxnOps = 1024
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("clustertest: start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, errors.New("clustertest: etcd not ready after 30 s")
	}
}

// Stop stops the member (idempotent): clients see it unreachable. Its data
// stay for Restart.
func (et *Etcd) Stop() {
	et.mu.Lock()
	defer et.mu.Unlock()
	for _, px := range et.proxies {
		px.p.cut()
	}
	if et.e != nil {
		et.e.Close()
		et.e = nil
	}
}

// Restart starts the stopped member again on the same ports with the same
// data (an etcd that was down and came back: its clients reconnect to the
// endpoints they had, and find their leases and keys). It does nothing if
// the member runs.
func (et *Etcd) Restart(t testing.TB) {
	t.Helper()
	et.mu.Lock()
	defer et.mu.Unlock()
	if et.e != nil {
		return
	}
	e, err := et.start(et.client, et.peer)
	if err != nil {
		t.Fatal(err)
	}
	et.e = e
	for _, px := range et.proxies {
		if !px.isolated {
			px.listen(t)
		}
	}
}

// proxy relays TCP connections from addr to etcd's client port.
type proxy struct {
	addr, to string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (p *proxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // cut
			}
			p.wg.Go(func() { p.relay(c) })
		}
	})
}

// relay copies both ways until either side closes or cut.
func (p *proxy) relay(c net.Conn) {
	u, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.l == nil { // cut meanwhile
		p.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// cut closes the listener and every connection, and waits for the relays
// to end. It is idempotent.
func (p *proxy) cut() {
	p.mu.Lock()
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

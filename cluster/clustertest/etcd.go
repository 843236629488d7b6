// Package clustertest starts a real etcd server inside a test process, for
// the tests of qxtd's cluster mode (go.etcd.io/etcd/server/v3/embed): the
// same server as a production cluster, one member, data in t.TempDir().
package clustertest

import (
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is a running one-member etcd.
type Etcd struct {
	// Endpoints are its client addresses (host:port).
	Endpoints []string
	e         *embed.Etcd
}

// Start runs an etcd member on loopback ports chosen by the kernel and stops
// it when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cu, _ := url.Parse("http://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	// Its own log would repeat every shutdown error of the listeners it
	// closes; the tests' failures say what matters.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Whitelist imports replicate in transactions of up to 1,000 puts.
	cfg.MaxTxnOps = 1024
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("clustertest: start etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("clustertest: etcd not ready after 30 s")
	}
	et := &Etcd{e: e}
	for _, l := range e.Clients {
		et.Endpoints = append(et.Endpoints, l.Addr().String())
	}
	t.Cleanup(et.Stop)
	return et
}

// Stop stops the member (idempotent): clients see it unreachable.
func (e *Etcd) Stop() {
	if e.e != nil {
		e.e.Close()
		e.e = nil
	}
}

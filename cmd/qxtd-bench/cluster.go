package main

import (
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// The cluster scenarios' etcd: one member in this process, started on
// first use and left running until the bench exits (its data in a
// directory below). It is idle but for qxtd's lease
// keepalives and quota blocks, so it costs the bench little CPU. Its
// data stays in a temporary directory (os.TempDir, qxtd-bench-etcd-*).
var (
	etcdOnce      sync.Once
	etcdEndpoints []string
	etcdErr       error
)

func benchEtcd() ([]string, error) {
	etcdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qxtd-bench-etcd-")
		if err != nil {
			etcdErr = err
			return
		}
		cfg := embed.NewConfig()
		cfg.Dir = dir
		cu, _ := url.Parse("http://127.0.0.1:0")
		pu, _ := url.Parse("http://127.0.0.1:0")
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = cfg.Name + "=" + pu.String()
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			etcdErr = fmt.Errorf("etcd: %w", err)
			return
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			etcdErr = fmt.Errorf("etcd: not ready after 30 s")
			return
		}
		for _, l := range e.Clients {
			etcdEndpoints = append(etcdEndpoints, l.Addr().String())
		}
	})
	return etcdEndpoints, etcdErr
}

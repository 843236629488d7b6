package clustertest

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStartServesClients(t *testing.T) {
	e := Start(t)
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("get k = %v, %v", r, err)
	}
}

// TestRestartKeepsPortsAndData: a member stopped and started again serves
// the same endpoints with the same keys, and a client made before the stop
// reaches it again without being told anything; behind the proxy, the stop
// cuts the client's open streams at once.
func TestRestartKeepsPortsAndData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *Etcd
	}{{"etcd", Start}, {"proxied", StartBehindProxy}} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.start(t)
			endpoints := slices.Clone(e.Endpoints)
			c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			if tc.name == "proxied" {
				// etcd's own stop would serve an open stream 7 s more.
				wctx, stopWatch := context.WithCancel(ctx)
				defer stopWatch()
				wch := c.Watch(clientv3.WithRequireLeader(wctx), "w")
				if _, err := c.Put(ctx, "w", "1"); err != nil {
					t.Fatal(err)
				}
				if r := <-wch; len(r.Events) != 1 {
					t.Fatalf("watch: %+v", r)
				}
			}
			stopping := time.Now()
			e.Stop()
			if took := time.Since(stopping); tc.name == "proxied" && took > 2*time.Second {
				t.Fatalf("stop behind the proxy took %v with a watch open, want its streams cut at once", took)
			}
			down, cancelDown := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = c.Get(down, "k")
			cancelDown()
			if err == nil {
				t.Fatal("get k answered while etcd was stopped")
			}
			e.Restart(t)
			e.Restart(t) // running: nothing to do
			if !slices.Equal(e.Endpoints, endpoints) {
				t.Fatalf("endpoints %v after the restart, %v before", e.Endpoints, endpoints)
			}
			r, err := c.Get(ctx, "k")
			if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
				t.Fatalf("get k after the restart = %v, %v", r, err)
			}
		})
	}
}

// TestProxyIsolatesOneClient: a client behind an isolated proxy reaches
// etcd no more, one behind another proxy still does; the isolated one
// stays cut across a restart of etcd, and reaches it again once rejoined.
func TestProxyIsolatesOneClient(t *testing.T) {
	e := StartBehindProxy(t)
	px := e.NewProxy(t)
	client := func(endpoint string) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := client(e.Endpoints[0]), client(px.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	get := func(c *clientv3.Client, d time.Duration) error {
		gctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := c.Get(gctx, "k")
		return err
	}
	if err := get(b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	px.Isolate()
	if err := get(b, 300*time.Millisecond); err == nil {
		t.Fatal("an isolated client reached etcd")
	}
	if err := get(a, 5*time.Second); err != nil {
		t.Fatalf("a client behind another proxy: %v", err)
	}
	e.Stop()
	e.Restart(t)
	if err := get(a, 5*time.Second); err != nil {
		t.Fatalf("after the restart, a client behind another proxy: %v", err)
	}
	if err := get(b, 300*time.Millisecond); err == nil {
		t.Fatal("an isolated client reached etcd after its restart")
	}
	px.Rejoin(t)
	if err := get(b, 5*time.Second); err != nil {
		t.Fatalf("rejoined: %v", err)
	}
}

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

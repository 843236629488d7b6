package cluster

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

// testLog is quiet unless -v, where the nodes' logs help read a failure.
func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// join starts node id on et with ttl and closes it when the test ends.
func join(t testing.TB, et *clustertest.Etcd, id uint16, ttl time.Duration) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Join(ctx, Config{Endpoints: et.Endpoints, NodeID: id, TTL: ttl, PeerURL: "http://127.0.0.1:1"}, testLog(t))
	if err != nil {
		t.Fatalf("join node %d: %v", id, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// joinN starts nodes 1..count.
func joinN(t testing.TB, et *clustertest.Etcd, count int, ttl time.Duration) []*Node {
	t.Helper()
	nodes := make([]*Node, count)
	for i := range nodes {
		nodes[i] = join(t, et, uint16(i+1), ttl)
	}
	return nodes
}

// admin is a plain client, the operator's or another process's view.
func admin(t testing.TB, et *clustertest.Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: et.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// revoke ends n's lease from outside, as an expiry would, while n runs.
func revoke(t testing.TB, cli *clientv3.Client, n *Node) {
	t.Helper()
	if _, err := cli.Revoke(context.Background(), n.Session().Lease()); err != nil {
		t.Fatalf("revoke node %d's lease: %v", n.ID(), err)
	}
}

// closed waits for ch to close within d.
func closed(t testing.TB, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("after %v: %s", d, what)
	}
}

// count is the number of keys under prefix.
func count(t testing.TB, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count %s: %v", prefix, err)
	}
	return resp.Count
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// abandon stops the node without revoking its lease, as a crash would: the
// lease expires after TTL.
func (n *Node) abandon() {
	if !n.closed.CompareAndSwap(false, true) {
		return
	}
	n.cancel()
	n.sess.Orphan()
	n.wg.Wait()
	n.markLost()
	n.cli.Close()
}

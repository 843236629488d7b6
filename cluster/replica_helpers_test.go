package cluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/policy"
)

const testPrefix = "/qxtd/test/"

// mirrored is the match of the tests: policy's and the reminders' buckets.
func mirrored(name []byte) bool {
	return strings.HasPrefix(string(name), "policy_") || strings.HasPrefix(string(name), "reminder_")
}

// newClient connects to et and closes the client when the test ends.
func newClient(t testing.TB, et *clustertest.Etcd) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: et.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// openDB opens a bbolt file and checks its consistency when it is closed.
func openDB(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, db) })
	return db
}

func closeDB(t testing.TB, db *bolt.DB) {
	t.Helper()
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Errorf("bbolt consistency: %v", err)
	}
	db.Close()
}

// node is one qxtd's replicated state: its file, Replica and policy.
type node struct {
	path string
	db   *bolt.DB
	rep  *Replica
	p    *policy.Policy
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// openNode opens (or reopens) the node of path on cli: file, Replica and,
// with withPolicy, a policy on top. close undoes it (also at cleanup).
func openNode(t testing.TB, cli *clientv3.Client, path string, withPolicy bool, opts ...ReplicaOption) *node {
	t.Helper()
	n := &node{path: path}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n.db = db
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.rep, err = OpenReplica(ctx, cli, testPrefix, db, mirrored, testLogger(t), append([]ReplicaOption{WithMaxTxnOps(1024)}, opts...)...)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	if withPolicy {
		n.p, err = policy.New(db, policy.Config{HomeProvince: "广东", BcryptCost: bcrypt.MinCost, DefaultTPS: 10, Shared: n.rep})
		if err != nil {
			n.close(t)
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *node) close(t testing.TB) {
	if n.rep != nil {
		n.rep.Close()
		n.rep = nil
		closeDB(t, n.db)
	}
}

// waitFor waits until cond holds, failing the test after d. It returns how
// long it waited.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not after %v", what, d)
		case <-tick.C:
		}
	}
	return time.Since(start)
}

// dump is every key of the mirrored buckets of db, as etcd keys → value
// (the Replica's own encoding, so nested buckets and sequences count).
func dump(t testing.TB, r *Replica, db *bolt.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := db.View(func(tx *bolt.Tx) error {
		var ops []op
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if mirrored(name) {
				r.emitBucket(b, [][]byte{name}, false, &ops)
			}
			return nil
		})
		for _, o := range ops {
			out[o.key] = string(o.val)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }

// The daemon passes a Replica as policy's and reminder's Committer.
var _ policy.Committer = (*Replica)(nil)

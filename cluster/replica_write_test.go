package cluster

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// TestReplicaWritesThroughStore: a node's copy of etcd's data is written
// through the queue's store, as the daemon wires it (WithWrite =
// queue.Store.Update), so that a failing disk seals the state file for
// the replica's writes as for the queue's own. While b's syncs fail, the
// first change it applies is written but not synced, and the store then
// refuses every write (the queue's too) until one syncs again; the
// replica keeps trying, and b catches up with the cluster once the disk
// answers.
func TestReplicaWritesThroughStore(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)

	db, err := bolt.Open(tempPath(t, "b.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	eio := errors.New("fdatasync: input/output error")
	st, err := queue.New(db, queue.Options{NoSync: true, SyncFault: func() error {
		if failing.Load() {
			return eio
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := OpenReplica(ctx, cli, testPrefix, db, mirrored, testLogger(t), WithMaxTxnOps(1024), WithWrite(st.Update))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rep.Close()
		_ = st.Close()
		closeDB(t, db)
	})
	p, err := policy.New(db, policy.Config{HomeProvince: "广东", BcryptCost: bcrypt.MinCost, DefaultTPS: 10, Shared: rep})
	if err != nil {
		t.Fatal(err)
	}
	create := func(code string) {
		t.Helper()
		if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: code, Name: code, Package: 1}); err != nil {
			t.Fatal(err)
		}
	}
	inFile := func(code string) bool {
		found := false
		if err := db.View(func(tx *bolt.Tx) error {
			found = tx.Bucket([]byte("policy_enterprises")).Get([]byte(code)) != nil
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return found
	}
	create("GD0000001")
	waitFor(t, 5*time.Second, "the first enterprise on b", func() bool { _, ok := p.Lookup("GD0000001"); return ok })

	failing.Store(true)
	failed := st.Stats().FailedCommits
	create("GD0000002")
	// The apply of GD0000002 (written, not synced), then a try again
	// refused before it wrote.
	waitFor(t, 5*time.Second, "b's store refusing the replica's writes", func() bool { return st.Stats().FailedCommits >= failed+2 })
	create("GD0000003")
	if !inFile("GD0000002") {
		t.Error("GD0000002 is not in b's file: its apply was not written")
	}
	if inFile("GD0000003") {
		t.Fatal("GD0000003 was written to b's file while the store refused writes")
	}
	if err := st.Enqueue(context.Background(), &queue.Message{Account: "x", Dest: "13800000001", Upstream: "u", Parts: []queue.Part{{Body: []byte("x")}}}); err == nil || errors.Is(err, queue.ErrNotSynced) {
		t.Fatalf("the queue's enqueue after the replica's unsynced write: %v, want refused before it ran", err)
	}

	failing.Store(false)
	waitFor(t, 15*time.Second, "b caught up", func() bool {
		_, ok2 := p.Lookup("GD0000002")
		_, ok3 := p.Lookup("GD0000003")
		return ok2 && ok3
	})
	want := dump(t, a.rep, a.db)
	waitFor(t, 5*time.Second, "b's file equals a's", func() bool { return maps.Equal(dump(t, rep, db), want) })
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

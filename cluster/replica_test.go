package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/policy"
)

var operator = policy.OperatorActor("manager-li")

func TestReplicaKeyDecode(t *testing.T) {
	r := &Replica{prefix: testPrefix}
	bk := r.bucketKey([][]byte{[]byte("policy_x"), {0, '/', 0xff}})
	for _, tc := range []struct {
		key  string
		want path
	}{
		{bk + "m", path{buckets: [][]byte{[]byte("policy_x"), {0, '/', 0xff}}, tail: 'm'}},
		{bk + "s", path{buckets: [][]byte{[]byte("policy_x"), {0, '/', 0xff}}, tail: 's'}},
		{keyOf(bk, []byte("a/b")), path{buckets: [][]byte{[]byte("policy_x"), {0, '/', 0xff}}, tail: 'k', key: []byte("a/b")}},
	} {
		got, ok := r.decode(tc.key)
		if !ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("decode(%q) = %v %v, want %v", tc.key, got, ok, tc.want)
		}
	}
	for _, bad := range []string{testPrefix + "data/m", testPrefix + "data/x70/m", testPrefix + "data/b7/m", testPrefix + "data/b70/kzz", testPrefix + "data-rev"} {
		if _, ok := r.decode(bad); ok {
			t.Errorf("decode(%q) accepted", bad)
		}
	}
}

// TestReplicaBuckets replicates raw bbolt changes: nested and empty
// buckets, sequences, a key that becomes a bucket and back, deletions; a
// bucket the match leaves out stays local.
func TestReplicaBuckets(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), false)
	b := openNode(t, cli, tempPath(t, "b.db"), false)
	ctx := context.Background()
	same := func(step string) {
		t.Helper()
		want := dump(t, a.rep, a.db)
		waitFor(t, 5*time.Second, step+": b equals a", func() bool { return maps.Equal(dump(t, b.rep, b.db), want) })
	}
	err := a.rep.Update(ctx, func(tx *bolt.Tx) error {
		x, err := tx.CreateBucketIfNotExists([]byte("policy_x"))
		if err != nil {
			return err
		}
		if _, err := x.CreateBucket([]byte("empty")); err != nil {
			return err
		}
		n, err := x.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		if _, err := n.NextSequence(); err != nil {
			return err
		}
		if err := n.Put([]byte{0, 1, '/'}, []byte("binary key")); err != nil {
			return err
		}
		if err := x.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		if err := x.Put([]byte("empty value"), []byte{}); err != nil {
			return err
		}
		local, err := tx.CreateBucketIfNotExists([]byte("queue_local"))
		if err != nil {
			return err
		}
		return local.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Read-your-writes: a's file has it when Update returns.
	if d := dump(t, a.rep, a.db); len(d) != 7 {
		t.Fatalf("a after the write: %d entries: %v", len(d), d)
	}
	same("create")
	err = b.db.View(func(tx *bolt.Tx) error {
		x := tx.Bucket([]byte("policy_x"))
		switch {
		case x == nil || x.Bucket([]byte("empty")) == nil:
			return errors.New("empty nested bucket missing")
		case x.Bucket([]byte("nested")).Sequence() != 1:
			return errors.New("sequence not replicated")
		case tx.Bucket([]byte("queue_local")) != nil:
			return errors.New("an unmirrored bucket was replicated")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("queue_local")) != nil {
			return errors.New("kept")
		}
		return nil
	}) != nil {
		t.Error("fn's write outside the mirrored buckets reached the file")
	}

	err = a.rep.Update(ctx, func(tx *bolt.Tx) error {
		x := tx.Bucket([]byte("policy_x"))
		if err := x.DeleteBucket([]byte("nested")); err != nil {
			return err
		}
		if err := x.Put([]byte("nested"), []byte("now a value")); err != nil {
			return err
		}
		if err := x.Delete([]byte("k")); err != nil {
			return err
		}
		kb, err := x.CreateBucket([]byte("k"))
		if err != nil {
			return err
		}
		return kb.Put([]byte("inner"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	same("retype")
	if err := a.rep.Update(ctx, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("policy_x")) }); err != nil {
		t.Fatal(err)
	}
	same("delete")
	if d := dump(t, b.rep, b.db); len(d) != 0 {
		t.Errorf("b after deleting everything: %v", d)
	}

	// fn's error: returned as is, nothing sent.
	boom := errors.New("boom")
	rev := a.rep.Applied()
	if err := a.rep.Update(ctx, func(tx *bolt.Tx) error {
		_, _ = tx.CreateBucket([]byte("policy_y"))
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if a.rep.Applied() != rev {
		t.Error("a failed fn wrote to etcd")
	}
}

// TestReplicaPolicy: a policy write on a reaches b's snapshot.
func TestReplicaPolicy(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	b := openNode(t, cli, tempPath(t, "b.db"), true)
	var worst time.Duration
	seen := func(what string, cond func() bool) {
		t.Helper()
		d := waitFor(t, time.Second, what, cond)
		worst = max(worst, d)
		t.Logf("%s: visible on b after %v", what, d)
	}

	const code, num = "GD0755001", "+8613712345678"
	start := time.Now()
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: code, Name: "甲公司", Signature: "【甲公司】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	t.Logf("CreateEnterprise on a: %v (read-your-writes included)", time.Since(start))
	if _, ok := a.p.Lookup(code); !ok {
		t.Fatal("a does not see its own write")
	}
	seen("enterprise", func() bool { _, ok := b.p.Lookup(code); return ok })

	u, err := a.p.CreateUser(operator, policy.NewUser{Enterprise: code, Name: "张三", Mobile: "13712345678", SystemID: "a_admin", Password: "secret1", Role: policy.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	admin := policy.ActorFor(u)
	if res, err := a.p.AddWhitelist(admin, code, []string{num}); err != nil || res.Added != 1 {
		t.Fatalf("add whitelist: %+v %v", res, err)
	}
	seen("pending whitelist entry", func() bool { st, ok := b.p.WhitelistStatus(code, num); return ok && st == policy.WhitelistPending })
	if res, err := a.p.Approve(operator, code, num); err != nil || res.Changed != 1 {
		t.Fatalf("approve: %+v %v", res, err)
	}
	ent, _ := a.p.Lookup(code)
	seen("approved number", func() bool { _, err := b.p.CheckRecipient(ent, num); return err == nil })
	if err := a.p.SetPassword(operator, "a_admin", "newpass1"); err != nil {
		t.Fatal(err)
	}
	seen("new password", func() bool { _, _, err := b.p.Authenticate("a_admin", "newpass1"); return err == nil })
	if _, _, err := b.p.Authenticate("a_admin", "secret1"); err == nil {
		t.Error("b still accepts the old password")
	}
	// And the other way round, through b.
	if _, err := b.p.UpdateEnterprise(operator, code, func(e *policy.Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	seen("disabled on a", func() bool { e, _ := a.p.Lookup(code); return e.Disabled })
	if _, err := a.p.OptOut(code, num, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	seen("opt-out", func() bool { return b.p.OptedOut(code, num) })
	// A number added by hand on b, to a list that exists (patched in, one
	// number, on a), and a removal on a.
	const num2 = "+8613712345679"
	if res, err := b.p.AddOptOuts(admin, code, []string{num2}); err != nil || res.Added != 1 {
		t.Fatalf("add an opt-out by hand: %+v %v", res, err)
	}
	seen("opt-out by hand, on a", func() bool { return a.p.OptedOut(code, num2) })
	if err := a.p.RemoveOptOut(admin, code, num); err != nil {
		t.Fatal(err)
	}
	seen("opt-out removed", func() bool { return !b.p.OptedOut(code, num) && b.p.OptedOut(code, num2) })
	t.Logf("worst replication latency: %v", worst)
}

// TestReplicaConflicts: the same enterprise created on two nodes at once
// exists once; sequences taken at once on two nodes never repeat.
func TestReplicaConflicts(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	b := openNode(t, cli, newClientPath(t), true)
	const rounds = 10
	for i := range rounds {
		code := fmt.Sprintf("GD%07d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, n := range []*node{a, b} {
			wg.Go(func() {
				_, errs[j] = n.p.CreateEnterprise(operator, policy.Enterprise{Code: code, Name: "甲", Package: 1})
			})
		}
		wg.Wait()
		ok, exists := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, policy.ErrExists):
				exists++
			default:
				t.Errorf("%s: %v", code, err)
			}
		}
		if ok != 1 || exists != 1 {
			t.Errorf("%s: %d created, %d ErrExists", code, ok, exists)
		}
	}

	const per = 30
	ids := make(chan uint64, 2*per)
	var wg sync.WaitGroup
	for _, n := range []*node{a, b} {
		wg.Go(func() {
			for range per {
				var id uint64
				err := n.rep.Update(context.Background(), func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("reminder_seq"))
					if err != nil {
						return err
					}
					id, err = bk.NextSequence()
					if err != nil {
						return err
					}
					return bk.Put(fmt.Appendf(nil, "%08d", id), nil)
				})
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[uint64]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %d given twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 2*per {
		t.Errorf("%d ids", len(seen))
	}
	// Both converge: each node's last writes reach the other a moment
	// after its own Update returned, so compare the two as they are now
	// (a snapshot of a taken at once could miss b's last write).
	waitFor(t, 5*time.Second, "b equals a", func() bool {
		return maps.Equal(dump(t, b.rep, b.db), dump(t, a.rep, a.db))
	})
	if n := len(dump(t, a.rep, a.db)); n == 0 {
		t.Error("nothing replicated")
	}
	if len(a.p.Enterprises(operator)) != rounds {
		t.Errorf("%d enterprises", len(a.p.Enterprises(operator)))
	}
}

func newClientPath(t *testing.T) string { return tempPath(t, "b.db") }

// TestReplicaBigImport: a 20,000-number whitelist import is split in
// transactions and reaches the other node whole.
func TestReplicaBigImport(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	b := openNode(t, cli, tempPath(t, "b.db"), true)
	const code, n = "GD0755001", 20_000
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: code, Name: "甲", Signature: "【甲公司】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	numbers := make([]string, n)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("137%08d", i)
	}
	start := time.Now()
	res, err := a.p.AddWhitelist(operator, code, numbers)
	if err != nil || res.Added != n {
		t.Fatalf("import: added %d, %v", res.Added, err)
	}
	onA := time.Since(start)
	last := fmt.Sprintf("+86137%08d", n-1)
	waitFor(t, 30*time.Second, "last number on b", func() bool { return b.p.Allowed(code, last) })
	t.Logf("import of %d numbers: %v on a (etcd write + local apply), %v until b has them all", n, onA, time.Since(start))
	counts, err := b.p.WhitelistCounts(operator, code)
	if err != nil || counts[policy.WhitelistApproved] != n {
		t.Errorf("b's counts %v %v", counts, err)
	}
	// One more write costs the diff of 20,000 keys.
	start = time.Now()
	if _, err := a.p.RemoveWhitelist(operator, code, numbers[:1]); err != nil {
		t.Fatal(err)
	}
	t.Logf("one removal beside %d numbers: %v", n, time.Since(start))
	// b patches its whitelist in memory with the entry the removal named.
	waitFor(t, 10*time.Second, "removal on b", func() bool {
		_, listed := b.p.WhitelistStatus(code, "+86"+numbers[0])
		counts, err := b.p.WhitelistCounts(operator, code)
		return !listed && err == nil && counts[policy.WhitelistApproved] == n-1
	})
}

// TestReplicaRestart: a node closed while others write catches up when it
// opens again.
func TestReplicaRestart(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	bPath := tempPath(t, "b.db")
	b := openNode(t, cli, bPath, true)
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: "GD0000001", Name: "甲", Package: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "first enterprise on b", func() bool { _, ok := b.p.Lookup("GD0000001"); return ok })
	b.close(t)
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: "GD0000002", Name: "乙", Package: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.p.UpdateEnterprise(operator, "GD0000001", func(e *policy.Enterprise) error { e.Name = "甲二"; return nil }); err != nil {
		t.Fatal(err)
	}
	b = openNode(t, cli, bPath, true)
	if e, ok := b.p.Lookup("GD0000001"); !ok || e.Name != "甲二" {
		t.Errorf("after restart: %+v %v", e, ok)
	}
	if _, ok := b.p.Lookup("GD0000002"); !ok {
		t.Error("after restart: the enterprise created while down is missing")
	}
}

// TestReplicaSeed: the first node seeds etcd from its file; a second
// node's own data is replaced by the cluster's.
func TestReplicaSeed(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	single := func(path, code string) {
		db := openDB(t, path)
		p, err := policy.New(db, policy.Config{HomeProvince: "广东", BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.CreateEnterprise(operator, policy.Enterprise{Code: code, Name: code, Package: 1}); err != nil {
			t.Fatal(err)
		}
		closeDB(t, db)
	}
	aPath, bPath := tempPath(t, "a.db"), tempPath(t, "b.db")
	single(aPath, "GD000000A")
	single(bPath, "GD000000B")
	a := openNode(t, cli, aPath, true)
	if _, ok := a.p.Lookup("GD000000A"); !ok {
		t.Fatal("the seeding node lost its data")
	}
	b := openNode(t, cli, bPath, true)
	if _, ok := b.p.Lookup("GD000000A"); !ok {
		t.Error("b did not load the cluster's data")
	}
	if _, ok := b.p.Lookup("GD000000B"); ok {
		t.Error("b kept its own enterprise")
	}
	if !maps.Equal(dump(t, a.rep, a.db), dump(t, b.rep, b.db)) {
		t.Error("a and b differ")
	}
}

// TestReplicaSeedRace: two nodes with their own data start at once on an
// empty etcd: one seeds, both end with its data.
func TestReplicaSeedRace(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	paths := []string{tempPath(t, "a.db"), tempPath(t, "b.db")}
	for i, p := range paths {
		db := openDB(t, p)
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("policy_x"))
			if err != nil {
				return err
			}
			for k := range 300 { // more than one transaction
				if err := b.Put(fmt.Appendf(nil, "%d-%d", i, k), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		closeDB(t, db)
	}
	nodes := make([]*node, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, p := range paths {
		wg.Go(func() {
			n := openNode(t, cli, p, false, WithMaxTxnOps(128))
			mu.Lock()
			nodes[i] = n
			mu.Unlock()
		})
	}
	wg.Wait()
	// The loser may have loaded a part of the winner's seed: its watch
	// brings the rest.
	waitFor(t, 5*time.Second, "both nodes equal", func() bool {
		a, b := dump(t, nodes[0].rep, nodes[0].db), dump(t, nodes[1].rep, nodes[1].db)
		return len(a) == 301 && maps.Equal(a, b)
	})
}

// TestReplicaDiffCost measures what Update's diff costs beside a big
// whitelist (no etcd: prepare only).
func TestReplicaDiffCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measure")
	}
	db := openDB(t, tempPath(t, "d.db"))
	r := &Replica{prefix: testPrefix, db: db, match: mirrored}
	for _, n := range []int{20_000, 100_000} {
		err := db.Update(func(tx *bolt.Tx) error {
			_ = tx.DeleteBucket([]byte("policy_whitelist"))
			wl, err := tx.CreateBucket([]byte("policy_whitelist"))
			if err != nil {
				return err
			}
			b, err := wl.CreateBucket([]byte("GD0755001"))
			if err != nil {
				return err
			}
			val := []byte(`A{"added_at":"2024-03-15T10:00:00Z","added_by":"manager-li","decided_by":"manager-li"}`)
			for i := range n {
				if err := b.Put(fmt.Appendf(nil, "+86137%08d", i), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		const runs = 5
		start := time.Now()
		for i := range runs {
			ops, _, err := r.prepare(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("policy_whitelist")).Bucket([]byte("GD0755001")).Put(fmt.Appendf(nil, "+86137%08d", i), []byte("B"))
			})
			if err != nil || len(ops) != 1 {
				t.Fatalf("ops %v, %v", ops, err)
			}
		}
		t.Logf("diff of one change beside %d keys: %v per write", n, time.Since(start)/runs)
	}
}

// TestReplicaEtcdDown: a write etcd does not take changes nothing locally
// and says why; Close still returns.
func TestReplicaEtcdDown(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), false)
	before := dump(t, a.rep, a.db)
	et.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := a.rep.Update(ctx, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("policy_x"))
		return err
	})
	if err == nil {
		t.Fatal("a write without etcd succeeded")
	}
	t.Logf("write without etcd: %v", err)
	if !maps.Equal(dump(t, a.rep, a.db), before) {
		t.Error("the failed write changed the local file")
	}
	a.close(t) // returns: the watcher stops without etcd
}

// TestReplicaCompacted: a watcher that resumes from a compacted revision
// reloads everything and tells the hooks (policy's snapshot follows).
func TestReplicaCompacted(t *testing.T) {
	et := clustertest.Start(t)
	cli := newClient(t, et)
	a := openNode(t, cli, tempPath(t, "a.db"), true)
	b := openNode(t, cli, tempPath(t, "b.db"), true)
	ctx := context.Background()
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: "GD0000001", Name: "甲", Package: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "first enterprise on b", func() bool { _, ok := b.p.Lookup("GD0000001"); return ok })
	b.rep.Close() // b's watcher stops; its file and policy stay
	if _, err := a.p.CreateEnterprise(operator, policy.Enterprise{Code: "GD0000002", Name: "乙", Package: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.p.UpdateEnterprise(operator, "GD0000001", func(e *policy.Enterprise) error { e.Name = "甲二"; return nil }); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	// Resume b's watcher from where it stopped, now compacted away.
	wctx, cancel := context.WithCancel(context.Background())
	b.rep.done, b.rep.cancel = make(chan struct{}), cancel
	go b.rep.watch(wctx)
	waitFor(t, 5*time.Second, "b reloaded", func() bool {
		e, ok := b.p.Lookup("GD0000001")
		_, ok2 := b.p.Lookup("GD0000002")
		return ok && ok2 && e.Name == "甲二"
	})
	if !maps.Equal(dump(t, a.rep, a.db), dump(t, b.rep, b.db)) {
		t.Error("a and b differ")
	}
}

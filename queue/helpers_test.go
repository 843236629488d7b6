package queue

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testStore is a Store under test with its file path, so it can be reopened.
type testStore struct {
	*Store
	t    testing.TB
	path string
	opt  Options

	mu     sync.Mutex
	ready  []string   // OnDLRReady calls
	handed []*Message // the messages they handed over
	at     []Snapshot // and the snapshot of each call
}

// newStore opens a store in a fresh temporary directory. Cleanup checks the
// store's consistency and closes it.
func newStore(t testing.TB, opt Options) *testStore {
	t.Helper()
	return openStoreAt(t, filepath.Join(t.TempDir(), "queue.db"), opt)
}

// openStoreAt is newStore on an existing (or new) file.
func openStoreAt(t testing.TB, path string, opt Options) *testStore {
	t.Helper()
	ts := &testStore{t: t, path: path, opt: opt}
	ts.open()
	t.Cleanup(func() {
		if err := ts.Check(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("consistency check: %v", err)
		}
		if err := ts.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ts
}

func (ts *testStore) open() {
	ts.t.Helper()
	opt := ts.opt
	user := opt.OnDLRReady
	opt.OnDLRReady = func(account string, ready []*Message, at Snapshot) {
		ts.mu.Lock()
		ts.ready = append(ts.ready, account)
		ts.handed = append(ts.handed, ready...)
		ts.at = append(ts.at, at)
		ts.mu.Unlock()
		if user != nil {
			user(account, ready, at)
		}
	}
	s, err := Open(ts.path, opt)
	if err != nil {
		ts.t.Fatalf("open: %v", err)
	}
	ts.Store = s
}

// reopen checks, closes and reopens the file: what survives is what was
// committed.
func (ts *testStore) reopen() {
	ts.t.Helper()
	if err := ts.Check(); err != nil {
		ts.t.Fatalf("check before reopen: %v", err)
	}
	if err := ts.Close(); err != nil {
		ts.t.Fatalf("close: %v", err)
	}
	ts.open()
	if err := ts.Check(); err != nil {
		ts.t.Fatalf("check after reopen: %v", err)
	}
}

func (ts *testStore) readyCalls() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.ready...)
}

func (ts *testStore) get(id uint64) *Message {
	ts.t.Helper()
	m, err := ts.Get(id)
	if err != nil {
		ts.t.Fatalf("get %d: %v", id, err)
	}
	return m
}

func (ts *testStore) enqueue(msgs ...*Message) {
	ts.t.Helper()
	if err := ts.Enqueue(context.Background(), msgs...); err != nil {
		ts.t.Fatalf("enqueue: %v", err)
	}
}

func (ts *testStore) submitted(k Key, smscID string) {
	ts.t.Helper()
	if err := ts.Submitted(context.Background(), k, smscID, time.Now()); err != nil {
		ts.t.Fatalf("submitted %s: %v", k, err)
	}
}

func (ts *testStore) dlr(upstream, smscID string, st State) Result {
	ts.t.Helper()
	r, err := ts.ApplyDLR(context.Background(), DLR{Upstream: upstream, SMSCID: smscID, State: st, ErrCode: "000", DoneAt: time.Now()})
	if err != nil {
		ts.t.Fatalf("dlr %s/%s: %v", upstream, smscID, err)
	}
	return r
}

// matchOrphans runs MatchOrphans over every stored orphan (as the gateway
// does once they are old enough) and returns the results in key order.
func (ts *testStore) matchOrphans() []Result {
	ts.t.Helper()
	os, _, err := ts.Orphans(context.Background(), nil, 1000)
	if err != nil {
		ts.t.Fatalf("orphans: %v", err)
	}
	res, err := ts.MatchOrphans(context.Background(), os)
	if err != nil {
		ts.t.Fatalf("match orphans: %v", err)
	}
	return res
}

// dueKeys returns the keys Due reports at now.
func (ts *testStore) dueKeys(now time.Time) []Key {
	ts.t.Helper()
	jobs, err := ts.Due(now, 0, nil)
	if err != nil {
		ts.t.Fatalf("due: %v", err)
	}
	keys := make([]Key, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Key
		if j.Part.State != StateAccepted {
			ts.t.Errorf("due job %s is %s", j.Key, j.Part.State)
		}
	}
	return keys
}

// wantUsage checks the in-memory usage of enterprise for the current month.
func (ts *testStore) wantUsage(enterprise string, reserved, charged int64) {
	ts.t.Helper()
	r, c := ts.Usage(enterprise, BillingMonth(time.Now()))
	if r != reserved || c != charged {
		ts.t.Errorf("usage %s: reserved %d charged %d, want %d %d", enterprise, r, c, reserved, charged)
	}
}

// wantCounts checks the in-memory part counts; states not listed must be 0.
func (ts *testStore) wantCounts(want map[State]int) {
	ts.t.Helper()
	got := ts.Counts()
	for _, st := range States {
		if got[st] != want[st] {
			ts.t.Errorf("counts[%s] = %d, want %d (all: %v)", st, got[st], want[st], got)
		}
	}
}

// bucketLen counts the keys of a bucket.
func (ts *testStore) bucketLen(name []byte) int {
	ts.t.Helper()
	n := 0
	err := ts.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return n
}

// block occupies the commit loop until the returned release is called, so
// that the operations queued meanwhile are committed together.
func (ts *testStore) block() (release func()) {
	ts.t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- ts.exec(context.Background(), func(*txn) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	return func() {
		close(unblock)
		if err := <-errc; err != nil {
			ts.t.Errorf("blocker: %v", err)
		}
	}
}

// waitQueued spins until n operations wait in the commit channel.
func (ts *testStore) waitQueued(n int) {
	deadline := time.Now().Add(10 * time.Second)
	for len(ts.ops) < n {
		if time.Now().After(deadline) {
			ts.t.Fatalf("only %d of %d operations queued", len(ts.ops), n)
		}
		runtime.Gosched()
	}
}

func msg(account, dest string, parts int) *Message {
	m := &Message{
		Account: account, Source: "10657", Dest: dest, DataCoding: 8,
		Upstream: "up1", Text: "【测试】hello", RegisteredDelivery: 1,
	}
	for i := range parts {
		m.Parts = append(m.Parts, Part{Body: []byte{byte(i), 0xAB}})
	}
	return m
}

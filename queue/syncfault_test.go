package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A commit whose last sync fails (bbolt wrote the meta page, the disk
// answered EIO to its fdatasync) is visible to every later read: bbolt
// reads its meta from the mapped file. Its operations are refused
// (ErrNotSynced: not known durable), but the store must go on as if it
// had committed: the in-memory counts and usage, the counts the next
// commit writes from them, the parts handed to the dispatcher. Before
// 2026-12-06 they missed it, and the state and due counts kept in the
// file stayed wrong for good (Open trusts them).
func TestCommitNotSynced(t *testing.T) {
	ts, failing, eio := failingStore(t, -1)
	ctx := context.Background()
	var handed atomic.Int64
	var first atomic.Uint64 // the id of the first message handed over
	defer ts.SetDueCallback(func(jobs []Job, _ Snapshot) {
		handed.Add(int64(len(jobs)))
		first.CompareAndSwap(0, jobs[0].Key.ID)
	})()

	if err := ts.Update(ctx, putOther("a")); err != nil {
		t.Fatalf("another writer's write on a sound store: %v", err)
	}
	failing.Store(true)
	m := upMsg("cm", "13800000001", 2)
	err := ts.Enqueue(ctx, m)
	if !errors.Is(err, ErrNotSynced) || !errors.Is(err, eio) {
		t.Fatalf("enqueue on a failing sync: %v, want ErrNotSynced wrapping the disk's error", err)
	}
	if ts.Writable() {
		t.Error("writable after a commit that was not synced")
	}
	if err := ts.Check(); err != nil {
		t.Fatalf("after the unsynced commit: %v", err)
	}
	if got := ts.DueOf("cm"); got != 2 {
		t.Errorf("due for cm %d, want the 2 parts the unsynced commit wrote", got)
	}
	if got := handed.Load(); got != 2 {
		t.Errorf("%d parts handed to the dispatcher, want 2", got)
	}
	id := first.Load() // the caller was not given it: its enqueue failed

	// Until a commit syncs again, nothing more is written: the disk may
	// hold only the state before, whose pages bbolt would reuse.
	if err := ts.Submitted(ctx, Key{ID: id, Part: 0}, "smsc-1", time.Now()); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("submitted, the sync failing: %v, want refused before it ran", err)
	}
	if err := ts.Enqueue(ctx, upMsg("cm", "13800000009", 1)); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("an enqueue, the sync failing: %v, want refused before it ran", err)
	}
	if got := ts.DueOf("cm"); got != 2 {
		t.Errorf("due for cm %d after refused writes, want 2", got)
	}
	if err := ts.Probe(ctx); err == nil {
		t.Fatal("a probe succeeded with the sync failing")
	}
	// The file's other writers (the policy, reminders, a cluster's
	// replica) wait the same way: nothing of theirs is written.
	if err := ts.Update(ctx, putOther("b")); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("another writer's write with the sync failing: %v, want refused before it ran", err)
	}
	if got := readOther(t, ts); got != "a" {
		t.Fatalf("the other writer's keys %q after the refused write, want a", got)
	}
	failing.Store(false)
	if err := ts.Update(ctx, putOther("b")); err != nil {
		t.Fatalf("another writer's write once the sync succeeds: %v", err)
	}
	if err := ts.Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if !ts.Writable() {
		t.Error("not writable after a probe that synced")
	}

	// Written, though refused: the next commit finds it done, and the
	// refusal of an operation that wrote nothing is its own.
	failing.Store(true)
	if err := ts.Submitted(ctx, Key{ID: id, Part: 0}, "smsc-1", time.Now()); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("submitted on a failing sync: %v", err)
	}
	failing.Store(false)
	if err := ts.Retry(ctx, Key{ID: id, Part: 0}, time.Now(), "x"); !errors.Is(err, ErrState) {
		t.Fatalf("a retry of it: %v, want ErrState (it is submitted in the store)", err)
	}
	ts.enqueue(upMsg("cu", "13000000002", 1))
	if !ts.Writable() {
		t.Error("not writable after a commit that synced")
	}
	want := map[State]int{StateAccepted: 2, StateSubmitted: 1}
	for st, n := range ts.Counts() {
		if n != want[st] {
			t.Errorf("%s: %d parts, want %d", st, n, want[st])
		}
	}
	// What Open trusts, and a backup's verification, agree with the records.
	ts.reopen()
	if got := [2]int{ts.DueOf("cm"), ts.DueOf("cu")}; got != [2]int{1, 1} {
		t.Errorf("reopened: due cm, cu %v, want [1 1]", got)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Backup(f); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := VerifyBackup(backup); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// A commit that failed before bbolt wrote its meta page (CommitFault)
	// is not visible: refused, and nothing of it counted.
	ts.opt.CommitFault = func() error { return eio }
	ts.reopen()
	if err := ts.Enqueue(ctx, upMsg("cm", "13800000003", 1)); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("enqueue on a failing write: %v, want a plain failure", err)
	}
	if got := ts.DueOf("cm"); got != 1 {
		t.Errorf("due for cm %d after a failed write, want 1", got)
	}
	ts.opt.CommitFault = nil
	ts.reopen()
}

// TestUpdateNotSynced: a write of the file's other writers (Update) whose
// sync fails after bbolt wrote its meta page seals the file as the
// queue's own commits do: it returns ErrNotSynced, its keys are what
// reads see, and no commit of the queue writes a page until an empty
// commit has synced. An error of fn is returned as is, nothing written.
func TestUpdateNotSynced(t *testing.T) {
	ts, failing, eio := failingStore(t, -1)
	ctx := context.Background()
	mine := errors.New("invalid")
	if err := ts.Update(ctx, func(tx *bolt.Tx) error {
		if err := putOther("x")(tx); err != nil {
			return err
		}
		return mine
	}); err != mine {
		t.Fatalf("fn's error: %v, want it as is", err)
	}
	if got := readOther(t, ts); got != "" || !ts.Writable() {
		t.Fatalf("after fn's error: keys %q, writable %v; want none written, writable", got, ts.Writable())
	}

	failing.Store(true)
	if err := ts.Update(ctx, putOther("a")); !errors.Is(err, ErrNotSynced) || !errors.Is(err, eio) {
		t.Fatalf("a write on a failing sync: %v, want ErrNotSynced wrapping the disk's error", err)
	}
	if got := readOther(t, ts); got != "a" {
		t.Fatalf("keys %q after the unsynced write, want a (bbolt reads what it wrote)", got)
	}
	if ts.Writable() {
		t.Error("writable after a write that was not synced")
	}
	// Sealed: the queue's next commit does not run while the sync fails.
	if err := ts.Enqueue(ctx, upMsg("cm", "13800000001", 1)); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("an enqueue after the unsynced write: %v, want refused before it ran", err)
	}
	if got := ts.DueOf("cm"); got != 0 {
		t.Fatalf("due for cm %d after the refused enqueue, want 0", got)
	}
	failing.Store(false)
	ts.enqueue(upMsg("cm", "13800000001", 1))
	if !ts.Writable() || ts.DueOf("cm") != 1 {
		t.Fatalf("after the sync came back: writable %v, due %d; want true, 1", ts.Writable(), ts.DueOf("cm"))
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.Update(ctx, putOther("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("a write after Close: %v, want ErrClosed", err)
	}
}

var bucketOther = []byte("other_writer")

// putOther is a write of another writer of the file: key k in a bucket
// of its own.
func putOther(k string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOther)
		if err != nil {
			return err
		}
		return b.Put([]byte(k), []byte{1})
	}
}

// readOther lists putOther's keys, joined.
func readOther(t *testing.T, ts *testStore) string {
	t.Helper()
	var keys []string
	if err := ts.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketOther); b != nil {
			return b.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(keys, "")
}

// failingStore is a store whose syncs fail with eio after bbolt wrote
// each commit (Options.SyncFault) while failing is set; wait is its
// SyncWait.
func failingStore(t *testing.T, wait time.Duration) (ts *testStore, failing *atomic.Bool, eio error) {
	failing = new(atomic.Bool)
	eio = errors.New("fdatasync: input/output error")
	ts = newStore(t, Options{NoSync: true, SyncWait: wait, SyncFault: func() error {
		if failing.Load() {
			return eio
		}
		return nil
	}})
	return ts, failing, eio
}

// TestNotSyncedConfirmedLater: an operation whose commit was written but
// not synced waits (SyncWait) for the empty commit that makes it
// durable, which the store tries meanwhile: a disk that answers again
// within the wait confirms it, and the caller gets success, not a
// refusal that a retry would turn into a second message. Past the wait,
// or at Close, it fails with ErrNotSynced. The file's other writers
// (Update) wait the same way.
func TestNotSyncedConfirmedLater(t *testing.T) {
	ts, failing, eio := failingStore(t, time.Minute)
	ctx := context.Background()
	failedAfter := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for ts.Stats().FailedCommits < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d failed commits, want %d", ts.Stats().FailedCommits, n)
			}
			time.Sleep(time.Millisecond) // polling for the event, with a deadline
		}
	}
	async := func(fn func() error) chan error {
		done := make(chan error, 1)
		go func() { done <- fn() }()
		return done
	}
	answer := func(done chan error, within time.Duration) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(within):
			t.Fatalf("no answer within %v", within)
			return nil
		}
	}

	// The queue's own operation: confirmed once the disk answers.
	failing.Store(true)
	enq := async(func() error { return ts.Enqueue(ctx, upMsg("cm", "13800000001", 2)) })
	failedAfter(2) // its commit, and a try of the empty commit
	select {
	case err := <-enq:
		t.Fatalf("the enqueue answered while the disk fails: %v", err)
	default:
	}
	failing.Store(false)
	if err := answer(enq, 5*time.Second); err != nil {
		t.Fatalf("the enqueue once the disk answers: %v, want confirmed", err)
	}
	if !ts.Writable() {
		t.Error("not writable after the empty commit synced")
	}

	// Another writer's: the same.
	failing.Store(true)
	failed := ts.Stats().FailedCommits
	upd := async(func() error { return ts.Update(ctx, putOther("a")) })
	failedAfter(failed + 1)
	failing.Store(false)
	if err := answer(upd, 5*time.Second); err != nil {
		t.Fatalf("another writer's write once the disk answers: %v, want confirmed", err)
	}

	// At Close, a held operation fails at once, whatever its wait.
	failing.Store(true)
	failed = ts.Stats().FailedCommits
	enq = async(func() error { return ts.Enqueue(ctx, upMsg("cm", "13800000002", 1)) })
	failedAfter(failed + 1)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if err := answer(enq, 5*time.Second); !errors.Is(err, ErrNotSynced) || !errors.Is(err, eio) {
		t.Fatalf("a held enqueue at Close: %v, want ErrNotSynced", err)
	}
	failing.Store(false)
	ts.open()
	if got := ts.DueOf("cm"); got != 3 {
		t.Fatalf("reopened: due for cm %d, want 3 (the refused one's pages stayed, as Linux keeps them)", got)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}

	// Past its wait, an operation fails with ErrNotSynced.
	ts.opt.SyncWait = 100 * time.Millisecond
	ts.reopen()
	failing.Store(true)
	if err := ts.Enqueue(ctx, upMsg("cm", "13800000003", 1)); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("an enqueue past its wait: %v, want ErrNotSynced", err)
	}
	if err := ts.Update(ctx, putOther("b")); err == nil || errors.Is(err, ErrNotSynced) {
		t.Fatalf("another writer's write after it: %v, want refused before it wrote", err)
	}
	failing.Store(false)
}

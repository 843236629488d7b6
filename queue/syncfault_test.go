package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
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
	var failing atomic.Bool
	eio := errors.New("fdatasync: input/output error")
	ts := newStore(t, Options{NoSync: true, SyncFault: func() error {
		if failing.Load() {
			return eio
		}
		return nil
	}})
	ctx := context.Background()
	var handed atomic.Int64
	var first atomic.Uint64 // the id of the first message handed over
	defer ts.SetDueCallback(func(jobs []Job, _ Snapshot) {
		handed.Add(int64(len(jobs)))
		first.CompareAndSwap(0, jobs[0].Key.ID)
	})()

	txns := ts.Stats().Txns
	if err := ts.WriteGate(ctx); err != nil || ts.Stats().Txns != txns {
		t.Fatalf("the write gate of a sound store: %v, %d commits (want none)", err, ts.Stats().Txns-txns)
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
	// The file's other writers (the policy, reminders) wait the same way.
	if err := ts.WriteGate(ctx); err == nil {
		t.Fatal("the write gate open with the sync failing")
	}
	failing.Store(false)
	if err := ts.WriteGate(ctx); err != nil {
		t.Fatalf("the write gate once the sync succeeds: %v", err)
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

package batch

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// TestJobWaitsForFailingStore: a job whose store fails for a while (a full
// disk, then one whose sync fails after the commit was written) waits and
// goes on, each row stored once, and counted only once the disk has it. Before 2026-12-06 it ended failed
// (store_error) at the first failure, its remaining rows needing a new
// upload (cmd/qxtd: TestSoakDiskErrors).
func TestJobWaitsForFailingStore(t *testing.T) {
	const rows = 12
	eio := errors.New("input/output error")
	var writeFails, syncFails atomic.Bool
	s := newStoreRigWith(t, queue.Options{
		CommitFault: func() error {
			if writeFails.Load() {
				return eio
			}
			return nil
		},
		SyncFault: func() error {
			if syncFails.Load() {
				return eio
			}
			return nil
		},
	})
	j, _ := s.start(s.runner(nil), rows)
	waitAccepted(t, j, 2)

	failedBy := func(n uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); s.store.Stats().FailedCommits < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not %d failed commits in 10 s: %d", n, s.store.Stats().FailedCommits)
			}
		}
	}
	// Commits fail before they are written: the job's next chunk is
	// refused, and refused again.
	writeFails.Store(true)
	failedBy(2)
	if p := j.Progress(false); p.State != JobRunning {
		t.Fatalf("the store failing: %+v, want the job running", p)
	}
	// Then a commit is written and its sync fails: that chunk's rows are
	// stored, its call refused, and the commits after it wait for a sync.
	writeFails.Store(false)
	syncFails.Store(true)
	failedBy(s.store.Stats().FailedCommits + 2)
	// Not counted while the disk may not have it: a power cut now would
	// lose it, and the resumed job would count fewer rows than shown.
	if p, stored := j.Progress(false), s.store.Counts()[queue.StateAccepted]; stored <= p.Accepted {
		t.Errorf("the sync failing: %d messages stored, the job counts %d accepted; want the unsynced chunk not counted yet", stored, p.Accepted)
	}
	syncFails.Store(false)

	waitDone(t, j)
	if p := j.Progress(false); p.State != JobDone || p.RowsRead != rows || p.Accepted != rows {
		t.Fatalf("the job's end: %+v, want done with %d rows read and accepted", p, rows)
	}
	if got := s.store.Counts()[queue.StateAccepted]; got != rows {
		t.Errorf("%d messages stored, want %d: a row sent twice or left out", got, rows)
	}
}

// TestCancelNotStored: a cancel that the store cannot take (the disk
// failing) is refused, and the job runs on: a cancel answered must be a
// cancel a restart keeps. Before 2026-12-06 the job was cancelled all
// the same; a crash before its end was stored then resumed it and sent
// every row (TestSoakDiskErrorsTwoWay: 2,000 rows sent after a cancel
// answered at 125). Once the store takes writes again, the cancel goes
// through and holds over a restart.
func TestCancelNotStored(t *testing.T) {
	eio := errors.New("input/output error")
	var writeFails atomic.Bool
	s := newStoreRigWith(t, queue.Options{CommitFault: func() error {
		if writeFails.Load() {
			return eio
		}
		return nil
	}})
	r := s.runner(nil)
	j, _ := s.start(r, 40)
	waitAccepted(t, j, 2)
	writeFails.Store(true)
	if was, err := j.Cancel(); !errors.Is(err, eio) || was != JobRunning {
		t.Fatalf("a cancel the store refuses: was %s, %v; want running and the store's error", was, err)
	}
	writeFails.Store(false)
	at := j.Progress(false).Accepted
	waitAccepted(t, j, at+1) // it runs on
	if p := j.Progress(false); p.State != JobRunning {
		t.Fatalf("after the refused cancel: %+v, want running", p)
	}
	if was, err := j.Cancel(); err != nil || was != JobRunning {
		t.Fatalf("the cancel again: was %s, %v", was, err)
	}
	waitDone(t, j)
	p := j.Progress(false)
	if p.State != JobCancelled {
		t.Fatalf("after the cancel: %+v, want cancelled", p)
	}
	r.Close()
	if again := s.resumed(j.ID()).Progress(false); again.State != JobCancelled || again.Accepted != p.Accepted {
		t.Fatalf("after a restart: %+v, want cancelled with %d accepted", again, p.Accepted)
	}
}

// TestCancelWhileChunkUnconfirmed: a chunk whose commit was written but
// not confirmed (the sync failing past the store's wait) is stored, and
// its messages go out; the job waits for the disk before it counts it.
// A cancel that comes as the disk answers again ends that wait: the
// chunk is counted accepted, not unsent (before 2026-12-06 it was
// counted unsent, its messages sent all the same).
func TestCancelWhileChunkUnconfirmed(t *testing.T) {
	eio := errors.New("input/output error")
	var syncFails atomic.Bool
	s := newStoreRigWith(t, queue.Options{SyncWait: 50 * time.Millisecond, SyncFault: func() error {
		if syncFails.Load() {
			return eio
		}
		return nil
	}})
	j, _ := s.start(s.runner(nil), 40)
	waitAccepted(t, j, 2)
	syncFails.Store(true)
	// The chunk's commit, the store's tries for the wait, then the job's
	// probes doubling to 320 ms: it sleeps long between them now.
	for deadline := time.Now().Add(10 * time.Second); s.store.Stats().FailedCommits < 12; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not 12 failed commits in 10 s: %d", s.store.Stats().FailedCommits)
		}
	}
	syncFails.Store(false)
	if was, err := j.Cancel(); err != nil || was != JobRunning {
		t.Fatalf("cancel: was %s, %v", was, err)
	}
	waitDone(t, j)
	p := j.Progress(false)
	stored := s.store.Counts()[queue.StateAccepted]
	if p.State != JobCancelled || p.Accepted != stored || p.RowsRead != p.Accepted+p.Unsent {
		t.Fatalf("cancelled: %+v, %d messages stored; want every stored row counted accepted", p, stored)
	}
}

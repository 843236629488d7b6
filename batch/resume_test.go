package batch

import (
	"runtime"
	"testing"
)

// TestResumedProgressCountsSentRows: a job resumed after a restart counts
// the rows it had sent as read from the start, so its progress never
// shows fewer rows read than accepted and refused; by its end each row
// is read once. Before, a resumed job read 0 rows with its accepted rows
// counted until it had read its file past them again: a client polling
// through a kill -9 saw 102 read, 100 accepted, then 0 read, 103
// accepted (cmd/qxtd: TestSoakChaos).
func TestResumedProgressCountsSentRows(t *testing.T) {
	const rows = 12
	s := newStoreRig(t)
	r1 := s.runner(nil)
	j, _ := s.start(r1, rows)
	waitAccepted(t, j, 3)
	r1.Close() // a planned stop: the job resumes at the next start
	before := j.Progress(false)
	if before.Accepted == rows {
		t.Fatalf("the job ended before the stop: %+v", before)
	}

	// On one P the resumed job's goroutine waits for this one to block,
	// so the progress below is what a client reads before the job has
	// read a row again.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r2 := s.runner(nil)
	if _, err := r2.Resume(s.account, RowsOptions{}); err != nil {
		t.Fatal(err)
	}
	again := r2.Get(j.ID())
	if again == nil {
		t.Fatal("the job is gone after the restart")
	}
	p := again.Progress(false)
	if p.State != JobRunning || p.Accepted != before.Accepted || p.RowsRead < p.Accepted+p.Refused {
		t.Fatalf("resumed: %+v, want running with %d accepted and at least as many rows read; before the stop: %+v", p, before.Accepted, before)
	}
	waitDone(t, again)
	if p := again.Progress(false); p.State != JobDone || p.RowsRead != rows || p.Accepted != rows {
		t.Fatalf("the resumed job's end: %+v, want done with %d rows read and accepted", p, rows)
	}
}

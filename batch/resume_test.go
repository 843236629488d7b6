package batch

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/queue"
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
	again := s.resumed(j.ID())
	p := again.Progress(false)
	if p.State != JobRunning || p.Accepted != before.Accepted || p.RowsRead < p.Accepted+p.Refused {
		t.Fatalf("resumed: %+v, want running with %d accepted and at least as many rows read; before the stop: %+v", p, before.Accepted, before)
	}
	waitDone(t, again)
	if p := again.Progress(false); p.State != JobDone || p.RowsRead != rows || p.Accepted != rows {
		t.Fatalf("the resumed job's end: %+v, want done with %d rows read and accepted", p, rows)
	}
}

// TestResumedProgressKeepsReadRefusals: rows the file's reader refused
// (here, without a number) are stored with the next gateway call's
// answer, so a job resumed after a restart counts them from the start:
// its refused count does not dip, and each is listed once by its end.
// Before, they were counted only as the resumed job read past them again.
func TestResumedProgressKeepsReadRefusals(t *testing.T) {
	var b strings.Builder
	for i := 1; i <= 12; i++ {
		if i == 1 || i == 3 {
			b.WriteString(",没有号码\n")
			continue
		}
		fmt.Fprintf(&b, "13800138000,第%d条\n", i)
	}
	s := newStoreRig(t)
	r1 := s.runner(nil)
	j, _ := s.startCSV(r1, b.String())
	waitAccepted(t, j, 3)
	r1.Close()
	before := j.Progress(false)
	if before.Refused != 2 || before.Accepted == 10 {
		t.Fatalf("before the stop: %+v, want rows 1 and 3 refused and the job not done", before)
	}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // as above: read before the job reads again
	again := s.resumed(j.ID())
	if p := again.Progress(false); p.Refused != 2 || p.Accepted != before.Accepted || p.RowsRead < p.Accepted+p.Refused {
		t.Fatalf("resumed: %+v, want rows 1 and 3 refused still, %d accepted; before the stop: %+v", p, before.Accepted, before)
	}
	waitDone(t, again)
	p := again.Progress(true)
	if p.State != JobDone || p.RowsRead != 12 || p.Accepted != 10 || p.Refused != 2 || len(p.Errors) != 2 ||
		p.Errors[0].Row != 1 || p.Errors[1].Row != 3 {
		t.Fatalf("the resumed job's end: %+v, want done, 12 read, 10 accepted, rows 1 and 3 refused once", p)
	}
}

// TestReadRefusalsBoundedByChunk: a run of refused rows longer than a
// chunk is stored at most BatchChunk rows a chunk answer (one of them a
// row sent), which every release decodes; the rest are read again at a
// restart. Resumed from its chunks alone (its end lost, as by a kill),
// the job counts each row once.
func TestReadRefusalsBoundedByChunk(t *testing.T) {
	var b strings.Builder
	for range 100 {
		b.WriteString(",没有号码\n")
	}
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, "13800138000,第%d条\n", i)
	}
	s := newStoreRig(t)
	st := &endless{Store: s.store}
	st.lose.Store(true)
	r1 := s.runner(st)
	j, _ := s.startCSV(r1, b.String())
	waitDone(t, j)
	r1.Close()
	err := s.store.Jobs(func(id string, _ []byte, chunks []*queue.Answer) error {
		for _, a := range chunks {
			ca, err := decodeChunk(a.Body)
			if err != nil || len(ca.Rows) > BatchChunk || ca.Accepted == 0 {
				t.Errorf("chunk %q: %d rows, %d accepted, %v; want at most %d, one sent", a.Key, len(ca.Rows), ca.Accepted, err, BatchChunk)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	again := s.resumed(j.ID())
	waitDone(t, again)
	if p := again.Progress(false); p.State != JobDone || p.RowsRead != 103 || p.Accepted != 3 || p.Refused != 100 || p.ErrorCount != 100 {
		t.Fatalf("resumed from its chunks: %+v, want done, 103 read, 3 accepted, 100 refused", p)
	}
}

package api

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// restart stops the rig's API (its running jobs stop where they are) and
// starts another on the same store, gateway and policy: the daemon
// restarted.
func (r *userRig) restart() {
	r.t.Helper()
	old := r.srv
	old.Close()
	r.srv = New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, Reminders: r.rem})
	r.srv.ResumeBatches()
	r.srv.jobs.tmpDir = old.jobs.tmpDir // where the rig's checks look
	hs := httptest.NewServer(r.srv.Handler())
	r.t.Cleanup(hs.Close)
	r.url = hs.URL
}

// carlBatch starts a batch of carl's (enterprise C: 1 row a second) of
// rows rows to uNumA1, each its own text (a gateway call each), row
// blank (0: none) without a number, and returns once atLeast of them
// are accepted: a job a restart will cut in the middle.
func (r *userRig) carlBatch(rows, blank, atLeast int) (id string, now BatchJob) {
	r.t.Helper()
	var b strings.Builder
	for i := 1; i <= rows; i++ {
		if i == blank {
			b.WriteString(",没有号码\n")
			continue
		}
		fmt.Fprintf(&b, "%s,第%d条\n", uNumA1, i)
	}
	id = r.c().startBatch(r.keys["carl"], "/v1/batches?format=csv", "text/csv", []byte(b.String()))
	for deadline := time.Now().Add(20 * time.Second); ; {
		if now = r.c().job(r.keys["carl"], id); now.Accepted >= atLeast {
			return id, now
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not %d rows accepted in 20 s: %+v", atLeast, now)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBatchResumesAfterRestart: a job stopped by a restart goes on where
// its stored rows end — each row sent once, the refused row still listed —
// and a finished job is still shown after the next restart.
func TestBatchResumesAfterRestart(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}})
	id, before := r.carlBatch(7, 3, 2)
	r.restart()
	j := r.c().waitJob(r.keys["carl"], id, 30*time.Second, nil)
	if before.Accepted >= 6 {
		t.Fatalf("the job had ended before the restart: %+v", before)
	}
	checkAccounted(t, j)
	if j.State != JobDone || j.RowsRead != 7 || j.Accepted != 6 || j.Refused != 1 || len(j.Errors) != 1 || j.Errors[0].Row != 3 {
		t.Fatalf("resumed after %d accepted: %+v, want done, 6 accepted, row 3 refused", before.Accepted, j)
	}
	var page MessagePage
	if code, body := r.c().upload("GET", "/v1/messages?limit=100", r.keys["carl"], "", nil, &page); code != 200 || len(page.Messages) != 6 {
		t.Fatalf("outbox: %d, %d messages for 6 rows: %s", code, len(page.Messages), body)
	}
	seen := map[string]int{}
	for _, m := range page.Messages {
		seen[m.Text]++
	}
	for text, n := range seen {
		if n != 1 {
			t.Errorf("%q sent %d times", text, n)
		}
	}

	r.restart()
	again := r.c().job(r.keys["carl"], id)
	if again.State != JobDone || again.Accepted != 6 || again.Refused != 1 || len(again.Errors) != 1 || !again.FinishedAt.Equal(j.FinishedAt) {
		t.Fatalf("a finished job after a restart: %+v, was %+v", again, j)
	}
	var list BatchJobList
	if code, _ := r.c().upload("GET", "/v1/batches", r.keys["carl"], "", nil, &list); code != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != id {
		t.Fatalf("list after a restart: %+v", list)
	}
}

// TestBatchResumeAccountGone: a job whose enterprise was disabled while
// the daemon was down ends failed at the next start, its rows accounted
// for, the rest not sent.
func TestBatchResumeAccountGone(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}})
	id, _ := r.carlBatch(6, 0, 1)
	r.srv.Close()
	if _, err := r.pol.UpdateEnterprise(policy.OperatorActor("test"), "C", func(e *policy.Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	r.restart()
	// The enterprise is disabled: the operator's view of the job.
	var j BatchJob
	for _, job := range r.srv.batches().List() {
		if job.ID() == id {
			j = job.Progress(true)
		}
	}
	if j.State != JobFailed || j.Reason != "account_gone" || j.Accepted < 1 || j.Accepted >= 6 {
		t.Fatalf("job of a disabled enterprise after a restart: %+v", j)
	}
	checkAccounted(t, j)
}

// TestBatchSpoolSwept: at start the spool beside the store keeps the
// files of the jobs that resume and loses the rest (an upload a crash
// cut off, an XLSX copy); a job's file goes when it ends.
func TestBatchSpoolSwept(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}})
	dir := r.store.Path() + ".batches" // the daemon's spool
	r.srv.jobs.tmpDir = dir
	id, _ := r.carlBatch(4, 0, 1)
	jobFile, _ := filepath.Glob(filepath.Join(dir, "qxtd-batch-*"))
	if len(jobFile) != 1 {
		t.Fatalf("spool: %v, want the job's file", jobFile)
	}
	for _, stale := range []string{"qxtd-batch-cut", "qxtd-sheet-left", "other"} {
		if err := os.WriteFile(filepath.Join(dir, stale), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.restart()
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if want := []string{filepath.Join(dir, "other"), jobFile[0]}; !slices.Equal(left, want) { // Glob sorts
		t.Errorf("spool after the restart: %v, want %v (the job's file, and what is not ours)", left, want)
	}
	if j := r.c().waitJob(r.keys["carl"], id, 30*time.Second, nil); j.State != JobDone || j.Accepted != 4 {
		t.Fatalf("job: %+v", j)
	}
	// The file goes just after the job reads done (its last record
	// stored first).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := os.Stat(jobFile[0])
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job's file 10 s after it ended: %v", err)
		}
	}
	_ = os.Remove(filepath.Join(dir, "other")) // for the rig's check of the spool
}

// TestBatchCancelledStaysCancelled: a job cancelled before a restart is
// not resumed by it: the cancel is stored before DELETE answers.
func TestBatchCancelledStaysCancelled(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}})
	id, _ := r.carlBatch(6, 0, 1)
	var cancelled BatchJob
	if code, b := r.c().upload("DELETE", "/v1/batches/"+id, r.keys["carl"], "", nil, &cancelled); code != 200 || cancelled.State != JobCancelled {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	r.restart()
	j := r.c().job(r.keys["carl"], id)
	if j.State != JobCancelled || j.Accepted != cancelled.Accepted || j.Unsent != cancelled.Unsent {
		t.Fatalf("after a restart: %+v, was %+v", j, cancelled)
	}
	var page MessagePage
	if code, _ := r.c().upload("GET", "/v1/messages?limit=100", r.keys["carl"], "", nil, &page); code != 200 || len(page.Messages) != cancelled.Accepted {
		t.Fatalf("outbox: %d messages, the job accepted %d", len(page.Messages), cancelled.Accepted)
	}
}

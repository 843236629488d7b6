package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestBatchJobAcrossKill: a batch job running when the daemon is killed
// -9 resumes at the next start where its stored rows end: every row is
// accepted once (the enterprise's usage counts each message once, the
// job counts each row once) and the job ends done, its file removed.
func TestBatchJobAcrossKill(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	base := "http://" + d.httpAddr
	// 100 rows a second, so that the kill comes mid-job.
	if code, body := postJSON(t, http.MethodPatch, base+"/admin/v1/enterprises/T1", "test-token", `{"tps":100}`); code != http.StatusOK {
		t.Fatalf("tps: %d %s", code, body)
	}
	key := issueAPIKey(t, base, "esme")
	const rows = 600
	var file strings.Builder
	for i := range rows {
		fmt.Fprintf(&file, "1380013%04d,第%d条\n", i, i)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/batches", strings.NewReader(file.String()))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var created struct {
		JobID string `json:"job_id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &created) != nil || created.JobID == "" {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	type progress struct {
		State                     string
		RowsRead                  int `json:"rows_read"`
		Accepted, Refused, Unsent int
		Reason                    string
	}
	job := func(base string) progress {
		code, body := postJSON(t, http.MethodGet, base+"/v1/batches/"+created.JobID, key, "")
		var p progress
		if code != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("job: %d %s", code, body)
		}
		return p
	}
	var before progress
	waitCond(t, 20*time.Second, "a third of the rows accepted", func() bool { before = job(base); return before.Accepted >= rows/3 })
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	t.Logf("killed with %d rows read, %d accepted", before.RowsRead, before.Accepted)

	d = startDaemon(t, cfg)
	base = "http://" + d.httpAddr
	var p progress
	waitCond(t, 30*time.Second, "the job resumed and done", func() bool { p = job(base); return p.State != "running" })
	if p.State != "done" || p.RowsRead != rows || p.Accepted != rows || p.Refused != 0 || p.Unsent != 0 {
		t.Fatalf("job after the kill: %+v, want done with %d rows accepted", p, rows)
	}
	code, body := postJSON(t, http.MethodGet, base+"/v1/usage", key, "")
	var usage struct{ Reserved, Delivered int64 }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &usage) != nil {
		t.Fatalf("usage: %d %s", code, body)
	}
	if n := usage.Reserved + usage.Delivered; n != rows {
		t.Errorf("%d messages stored for %d rows (reserved %d, delivered %d): a row sent twice or left out", n, rows, usage.Reserved, usage.Delivered)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "qxtd.db.batches", "qxtd-batch-*"))
	if len(left) != 0 {
		t.Errorf("the job's file is still there after it ended: %v", left)
	}
}

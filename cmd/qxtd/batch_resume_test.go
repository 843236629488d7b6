package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
	batchAcrossKill(t, "http://"+d.httpAddr, 100, func() string {
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		d = startDaemon(t, cfg)
		return "http://" + d.httpAddr
	})
	// The file goes just after the job reads done (its last record
	// stored first).
	waitCond(t, 10*time.Second, "the job's file removed", func() bool {
		left, _ := filepath.Glob(filepath.Join(dir, "qxtd.db.batches", "qxtd-batch-*"))
		return len(left) == 0
	})
}

// TestBatchJobFromBackup: a batch job running when `qxtd backup` is taken
// resumes from the backup alone, the machine lost (the store and its
// spool directory gone): the backup carries the job's file. Every row is
// accepted once in the restored store (those accepted after the backup
// were lost with the machine, and are sent again, as any message is).
func TestBatchJobFromBackup(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	backup := filepath.Join(t.TempDir(), "qxtd-backup.db")
	// Restored on another machine: another directory, nothing of the
	// first (its spool included), the same simulator as the SMSC.
	moved := t.TempDir()
	batchAcrossKill(t, "http://"+d.httpAddr, 100, func() string {
		if code, out, errs := runOps("backup", backup, "--api", "http://"+d.httpAddr, "--token", "test-token"); code != 0 {
			t.Fatalf("qxtd backup: %d %q %q", code, out, errs)
		}
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(backup)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(moved, "qxtd.db"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		d = startDaemon(t, writeConfig(t, moved, simAddr, ""))
		return "http://" + d.httpAddr
	})
	// Written back into the new spool at the start, and gone once the
	// job ended.
	if !strings.Contains(d.log(), "files written back from a restored backup") {
		t.Errorf("no file written back logged:\n%s", d.log())
	}
	waitCond(t, 10*time.Second, "the job's file removed", func() bool {
		left, _ := filepath.Glob(filepath.Join(moved, "qxtd.db.batches", "qxtd-batch-*"))
		return len(left) == 0
	})
}

// TestClusterBatchJobAcrossKill: the same on a node of a cluster, which
// resumes its job once it is a member again (its enterprise's quota is
// the cluster's), the usage read on another node.
func TestClusterBatchJobAcrossKill(t *testing.T) {
	t.Parallel()
	nodes, _, _ := startCluster(t, 3, 2, smpp.SimOptions{}, writeClusterConfig)
	n1 := nodes[0]
	batchAcrossKill(t, "http://"+n1.proc.httpAddr, 300, func() string {
		if err := n1.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-n1.proc.exited
		n1.proc = startDaemon(t, n1.cfg)
		return "http://" + n1.proc.httpAddr
	}, "http://"+nodes[1].proc.httpAddr)
}

// batchAcrossKill uploads a 600-row batch to base as esme (enterprise T1,
// paced at tps, so that the kill comes mid-job: a cluster's nodes share
// an enterprise's tps, so the node running the job has a third of it in
// a cluster of three), kills and restarts its daemon (restart
// returns its new base) with a third of the rows accepted, and checks
// that the job ends done with every row accepted once: by the job, and
// by the usage of T1 read on base and on others.
func batchAcrossKill(t *testing.T, base string, tps int, restart func() string, others ...string) {
	t.Helper()
	if code, body := postJSON(t, http.MethodPatch, base+"/admin/v1/enterprises/T1", "test-token", fmt.Sprintf(`{"tps":%d}`, tps)); code != http.StatusOK {
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
	base = restart()
	t.Logf("killed with %d rows read, %d accepted", before.RowsRead, before.Accepted)
	var p progress
	waitCond(t, 30*time.Second, "the job resumed and done", func() bool { p = job(base); return p.State != "running" })
	if p.State != "done" || p.RowsRead != rows || p.Accepted != rows || p.Refused != 0 || p.Unsent != 0 {
		t.Fatalf("job after the kill: %+v, want done with %d rows accepted", p, rows)
	}
	for _, at := range append([]string{base}, others...) {
		code, body := postJSON(t, http.MethodGet, at+"/v1/usage", key, "")
		var usage struct{ Reserved, Delivered int64 }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &usage) != nil {
			t.Fatalf("usage at %s: %d %s", at, code, body)
		}
		if n := usage.Reserved + usage.Delivered; n != rows {
			t.Errorf("usage at %s: %d messages stored for %d rows (reserved %d, delivered %d): a row sent twice or left out", at, n, rows, usage.Reserved, usage.Delivered)
		}
	}
}

package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJobFilesInBackup: the files of the jobs a backup says still run go
// into the backup's own file, over several transactions for a large one,
// and a store opened on the backup writes them back, byte for byte, into
// the spool directory (not over a file already there), once.
func TestJobFilesInBackup(t *testing.T) {
	ts := newStore(t, Options{})
	ctx := context.Background()
	spool := t.TempDir()
	big := make([]byte, jobFileTxBytes+jobFileChunk+123) // two transactions, a short last chunk
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	files := map[string][]byte{"qxtd-batch-1": big, "qxtd-batch-2": []byte("13800138000,你好\n"), "qxtd-batch-3": nil}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(spool, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for id, rec := range map[string]string{
		"1": "running " + filepath.Join(spool, "qxtd-batch-1"),
		"2": "running " + filepath.Join(spool, "qxtd-batch-2"),
		"3": "running " + filepath.Join(spool, "qxtd-batch-3"), // empty
		"4": "done",
		"5": "running " + filepath.Join(spool, "qxtd-batch-gone"),
	} {
		if err := ts.SaveJob(ctx, id, []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	running := func(rec []byte) (string, bool) { return strings.CutPrefix(string(rec), "running ") }

	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n, size, err := AddJobFiles(backup, running)
	if err != nil || n != 3 || size != int64(len(big)+len(files["qxtd-batch-2"])) {
		t.Fatalf("AddJobFiles: %d files, %d bytes, %v; want 3 (the gone one left out), %d bytes", n, size, err, len(big)+len(files["qxtd-batch-2"]))
	}
	if err := VerifyBackup(backup); err != nil {
		t.Fatalf("the backup with its files: %v", err)
	}

	// Restored on another machine: an empty spool but for a file of the
	// same name as one carried, which is not overwritten.
	restored := openStoreAt(t, backup, Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "qxtd-batch-2"), []byte("its own"), 0o600); err != nil {
		t.Fatal(err)
	}
	written, err := restored.RestoreJobFiles(ctx, dir)
	if err != nil || len(written) != 2 {
		t.Fatalf("RestoreJobFiles: %v, %v; want the two not there", written, err)
	}
	for name, want := range map[string][]byte{"qxtd-batch-1": big, "qxtd-batch-2": []byte("its own"), "qxtd-batch-3": {}} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s written back: %d bytes (%v), want %d, the same", name, len(got), err, len(want))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".restoring-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if again, err := restored.RestoreJobFiles(ctx, t.TempDir()); err != nil || len(again) != 0 {
		t.Errorf("a second start wrote %v (%v): the files are dropped from the store once written", again, err)
	}
}

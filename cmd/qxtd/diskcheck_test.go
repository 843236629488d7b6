package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDiskCheck: disk-check measures the store on a file of its own in
// the directory named, reports both phases and what they mean (or, with
// --json, the figures), and leaves the directory as it found it; a
// directory it cannot write is an error, a duration out of range a usage
// error.
func TestDiskCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runIO(strings.NewReader(""), []string{"disk-check", dir, "--duration", "400ms"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, re := range []string{
		`disk check of ` + regexp.QuoteMeta(dir) + ` \(a store file of its own, removed after\)`,
		`one writer:  [1-9]\d* commits in 0\.\d s, each \d+\.\d\d ms at p50, \d+\.\d\d ms at p99, \d+\.\d\d ms at most`,
		`64 writers: [1-9]\d* operations in 0\.\d s in [1-9]\d* commits \([1-9]\d* a commit\): [1-9]\d* operations/s, \d+\.\d KiB written an operation`,
		`at least \d+\.\d\d ms here`, `gets at most about [1-9]\d* a second`, `allows about [1-9]\d* messages a second`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil || len(left) != 1 || left[0].Name() != "keep" {
		t.Errorf("left in the directory: %v (%v)", left, err)
	}

	stdout.Reset()
	if code := runIO(strings.NewReader(""), []string{"disk-check", dir, "--duration", "400ms", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--json: exit %d\n%s", code, stderr.String())
	}
	var j diskCheckJSON
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || j.Dir != dir || j.Commits == 0 || j.CommitP50MS <= 0 ||
		j.CommitP99MS < j.CommitP50MS || j.Writers != 64 || j.Operations == 0 || j.SharedCommits == 0 || j.OperationsPerSec <= 0 {
		t.Errorf("--json: %+v (%v)\n%s", j, err, stdout.String())
	}

	stdout.Reset()
	stderr.Reset()
	if code := runIO(strings.NewReader(""), []string{"disk-check", filepath.Join(dir, "nonexistent")}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "disk-check:") {
		t.Errorf("a missing directory: exit %d\n%s", code, stderr.String())
	}
	stderr.Reset()
	if code := runIO(strings.NewReader(""), []string{"disk-check", dir, "--duration", "1ms"}, &stdout, &stderr); code != 2 {
		t.Errorf("--duration 1ms: exit %d\n%s", code, stderr.String())
	}
}

// TestDiskCheckSlow: a disk whose commits take over 10 ms at p99 is
// called slow, with what to look at; a quick one is not.
func TestDiskCheckSlow(t *testing.T) {
	r := diskCheck{Dir: "/var/lib/qxtd", Commits: 100, P50: 8 * time.Millisecond, P99: 25 * time.Millisecond, Max: 40 * time.Millisecond,
		SerialSeconds: 1, Ops: 3000, OpsCommits: 100, ConcurrentSeconds: 1, OpsPerSecond: 3000, WrittenBytesPerOp: 2048}
	var b bytes.Buffer
	printDiskCheck(&b, r)
	if !strings.Contains(b.String(), "SLOW: commits take over 10.00 ms at p99") || !strings.Contains(b.String(), "gets at most about 125 a second") {
		t.Errorf("a slow disk:\n%s", b.String())
	}
	r.P50, r.P99 = 300*time.Microsecond, time.Millisecond
	b.Reset()
	printDiskCheck(&b, r)
	if strings.Contains(b.String(), "SLOW") {
		t.Errorf("a quick disk called slow:\n%s", b.String())
	}
}

// TestDiskCheckBounded: each phase stops at half the operations allowed,
// long before the time asked for, and says so.
func TestDiskCheckBounded(t *testing.T) {
	r, err := checkDisk(t.Context(), t.TempDir(), 10*time.Minute, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Capped || r.Commits != 1000 || r.Ops != 1000 || r.SerialSeconds > 60 || r.ConcurrentSeconds > 60 {
		t.Fatalf("with 2,000 operations allowed: capped %v after %.1f + %.1f s, %d commits, %d operations",
			r.Capped, r.SerialSeconds, r.ConcurrentSeconds, r.Commits, r.Ops)
	}
	var b bytes.Buffer
	printDiskCheck(&b, r)
	if !strings.Contains(b.String(), "stopped before --duration, at 1000 operations a phase") {
		t.Errorf("output:\n%s", b.String())
	}
}

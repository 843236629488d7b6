package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
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
		`one writer:  [1-9]\d* commits in \d+\.\d s, each \d+\.\d\d ms at p50, \d+\.\d\d ms at p99, \d+\.\d\d ms at most`,
		`64 writers: [1-9]\d* operations in \d+\.\d s in [1-9]\d* commits \([1-9]\d* a commit\): [1-9]\d* operations/s, \d+\.\d KiB written an operation`,
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
	// By the names a script reads, not through the type that wrote them.
	var j map[string]any
	num := func(k string) float64 { f, _ := j[k].(float64); return f }
	if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || j["dir"] != dir || num("commits") == 0 || num("commit_p50_ms") <= 0 ||
		num("commit_p99_ms") < num("commit_p50_ms") || num("commit_max_ms") < num("commit_p99_ms") || num("writers") != 64 ||
		num("operations") == 0 || num("shared_commits") == 0 || num("operations_per_second") <= 0 ||
		num("written_bytes_per_operation") <= 0 || j["slow"] != (num("commit_p99_ms") > 10) || j["stopped_at_operation_limit"] != false {
		t.Errorf("--json: %v (%v)\n%s", j, err, stdout.String())
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
	r := diskCheck{Dir: "/var/lib/qxtd", Commits: 100, P50MS: 8, P99MS: 25, MaxMS: 40, Writers: 64,
		SerialSeconds: 1, Ops: 3000, OpsCommits: 100, ConcurrentSeconds: 1, OpsPerSecond: 3000, WrittenBytesPerOp: 2048}
	r.judge()
	var b bytes.Buffer
	printDiskCheck(&b, r)
	if !r.Slow || !strings.Contains(b.String(), "SLOW: commits take over 10.00 ms at p99") || !strings.Contains(b.String(), "gets at most about 125 a second") {
		t.Errorf("a slow disk:\n%s", b.String())
	}
	r.P50MS, r.P99MS = 0.3, 1
	r.judge()
	b.Reset()
	printDiskCheck(&b, r)
	if r.Slow || strings.Contains(b.String(), "SLOW") {
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

// TestDiskCheckInterrupted: a check interrupted (Ctrl-C) still removes its
// file, and exits with a failure.
func TestDiskCheckInterrupted(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "disk-check", dir, "--duration", "10m")
	cmd.Env = append(os.Environ(), "QXTD_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for its store file: then the interrupt finds it measuring.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ms, _ := filepath.Glob(filepath.Join(dir, ".qxtd-disk-check-*", "check.db")); len(ms) == 1 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no store file in %s", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit after the interrupt: %v\n%s", err, stderr.String())
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("left after the interrupt: %v (%v)", left, err)
	}
}

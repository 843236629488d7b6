package main

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/smpp"
)

// TestReadBuild: the -ldflags values win; without them the toolchain's
// record fills in; without either the version is "dev" and the rest
// "unknown".
func TestReadBuild(t *testing.T) {
	t.Parallel()
	goTail := ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	recorded := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/qxtd/qxtd", Version: "v0.0.0-20261201100000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-tags", Value: "soak"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name     string
		stamped  buildInfo
		bi       *debug.BuildInfo
		line     string
		revision string
	}{
		{
			name:     "make build",
			stamped:  buildInfo{Version: "v1.2.0", Revision: "fedcba9876543210fedcba9876543210fedcba98", Branch: "main", Date: "2026-12-02T08:00:00Z"},
			bi:       recorded,
			line:     "qxtd v1.2.0 (commit fedcba987654, built 2026-12-02T08:00:00Z" + goTail,
			revision: "fedcba9876543210fedcba9876543210fedcba98",
		},
		{
			name:     "go build in a checkout",
			bi:       recorded,
			line:     "qxtd v0.0.0-20261201100000-0123456789ab+dirty (commit 0123456789ab-dirty, built 2026-12-01T10:00:00Z" + goTail,
			revision: "0123456789abcdef0123456789abcdef01234567-dirty",
		},
		{
			name: "go test, -buildvcs=false",
			bi:   &debug.BuildInfo{Main: debug.Module{Path: "github.com/qxtd/qxtd", Version: "(devel)"}},
			line: "qxtd dev (commit unknown, built unknown" + goTail,
		},
		{name: "no build information", line: "qxtd dev (commit unknown, built unknown" + goTail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := readBuild(tc.stamped, tc.bi)
			if got := b.String(); got != tc.line {
				t.Errorf("String:\n got %s\nwant %s", got, tc.line)
			}
			if b.Revision != tc.revision {
				t.Errorf("Revision %q, want %q", b.Revision, tc.revision)
			}
		})
	}
}

// TestVersionCommands: qxtd version and qxtd --version print the same
// line and exit 0.
func TestVersionCommands(t *testing.T) {
	t.Parallel()
	want := currentBuild().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errs := runOps(args...)
		if code != 0 || out != want || errs != "" {
			t.Errorf("qxtd %s: exit %d, stdout %q, stderr %q; want 0, %q, nothing", args[0], code, out, errs, want)
		}
	}
}

// TestMakeBuildStamps builds qxtd with make build (as a release would, the
// values given on make's command line) and checks what the binary says:
// both version commands, the ready log line, and qxtd_build_info on the
// running daemon's /metrics.
func TestMakeBuildStamps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "qxtd")
	const rev = "0123456789abcdef0123456789abcdef01234567"
	mk := exec.Command("make", "-C", filepath.Join("..", ".."), "build", "BIN="+bin,
		"VERSION=1.2.3-test", "COMMIT="+rev, "BRANCH=release", "BUILD_DATE=2026-12-01T10:00:00Z")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build (apt-get install make golang): %v\n%s", err, out)
	}
	goVersion := strings.TrimSpace(run1(t, "go", "env", "GOVERSION"))
	want := "qxtd 1.2.3-test (commit 0123456789ab, built 2026-12-01T10:00:00Z, " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, arg := range []string{"version", "--version"} {
		if got := run1(t, bin, arg); got != want {
			t.Errorf("qxtd %s:\n got %q\nwant %q", arg, got, want)
		}
	}

	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemonBin(t, bin, writeConfig(t, dir, simAddr, ""))
	if !strings.Contains(d.log(), `"version":"1.2.3-test","revision":"`+rev+`"`) {
		t.Errorf("the ready line lacks the version and revision:\n%s", d.log())
	}
	resp, err := http.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var sample string
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "qxtd_build_info{") {
			sample = strings.TrimSpace(line)
		}
	}
	if sample == "" {
		t.Fatalf("no qxtd_build_info in /metrics:\n%s", body)
	}
	for _, w := range []string{`version="1.2.3-test"`, `revision="` + rev + `"`, `branch="release"`,
		`goversion="` + goVersion + `"`, `goos="` + runtime.GOOS + `"`, `goarch="` + runtime.GOARCH + `"`} {
		if !strings.Contains(sample, w) {
			t.Errorf("qxtd_build_info lacks %s: %s", w, sample)
		}
	}
	if !strings.HasSuffix(sample, "} 1") {
		t.Errorf("qxtd_build_info is not 1: %s", sample)
	}
}

// run1 runs a command and returns its standard output; it must succeed.
func run1(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

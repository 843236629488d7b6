package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// debTools are what TestDebianPackage runs besides go: .ci/run installs
// them. Missing is a failure with the install command, never a skip.
var debTools = map[string]string{
	"make":            "make",
	"dpkg-deb":        "dpkg",
	"systemd-analyze": "systemd",
}

// TestDebianPackage builds the package as `make deb` does (the Makefile's
// recipe, nfpm from go.mod, a fresh binary) into a temporary directory,
// checks what it holds with dpkg-deb, extracts it into a throwaway root
// (dpkg-deb -x: installing with dpkg --root would run the maintainer
// scripts chrooted, which needs a whole Debian inside), and runs the
// extracted binary on the extracted conffile: as shipped it must pass
// --check and refuse to start with the placeholder message; with the
// upstream edited (the one edit an operator must make) it must start,
// tell a notify socket READY=1 and become ready. The unit, pointed at the
// extracted binary, must pass systemd-analyze verify without a warning.
// systemd itself does not run here: the unit is verified, not started.
func TestDebianPackage(t *testing.T) {
	for tool, pkg := range debTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (apt-get install -y %s; .ci/run does): %v", tool, pkg, err)
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	// A version as git describe gives it after a pre-release tag: the
	// Makefile turns it into a Debian version that sorts correctly.
	const gitVersion, debVersion = "v1.2.3-rc1-3-gabcdef0-dirty", "1.2.3~rc1+3.gabcdef0+dirty"
	mk := exec.Command("make", "-C", repo, "deb", "VERSION="+gitVersion, "DIST="+dist, "GOARCH="+runtime.GOARCH)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb := filepath.Join(dist, fmt.Sprintf("qxtd_%s_%s.deb", debVersion, runtime.GOARCH))
	if _, err := os.Stat(deb); err != nil {
		ls, _ := filepath.Glob(filepath.Join(dist, "*"))
		t.Fatalf("package not where make deb says: %v (dist has %v)", err, ls)
	}

	fields := cmdOut(t, "dpkg-deb", "-f", deb)
	for _, want := range []string{"Package: qxtd", "Version: " + debVersion, "Architecture: " + runtime.GOARCH,
		"Depends: adduser", "Maintainer: ", "Description: "} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want)).MatchString(fields) {
			t.Errorf("dpkg-deb -f: no %q line in\n%s", want, fields)
		}
	}
	// dpkg-deb -c: mode, owner, size, date, time, path.
	listing := map[string]string{}
	for _, line := range strings.Split(cmdOut(t, "dpkg-deb", "-c", deb), "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			listing[f[len(f)-1]] = f[0]
		}
	}
	for path, mode := range map[string]string{
		"./usr/bin/qxtd":                    "-rwxr-xr-x",
		"./etc/qxtd/qxtd.yaml":              "-rw-r-----", // upstream passwords; postinst makes it root:qxtd
		"./lib/systemd/system/qxtd.service": "-rw-r--r--",
		"./usr/share/doc/qxtd/README.md":    "-rw-r--r--",
		"./usr/share/doc/qxtd/copyright":    "-rw-r--r--",
		"./var/lib/qxtd/":                   "drwxr-x---",
	} {
		if got, ok := listing[path]; !ok {
			t.Errorf("dpkg-deb -c: %s missing", path)
		} else if got != mode {
			t.Errorf("dpkg-deb -c: %s is %s, want %s", path, got, mode)
		}
	}
	ctl := filepath.Join(t.TempDir(), "DEBIAN")
	cmdOut(t, "dpkg-deb", "-e", deb, ctl)
	if b, err := os.ReadFile(filepath.Join(ctl, "conffiles")); err != nil || string(b) != "/etc/qxtd/qxtd.yaml\n" {
		t.Errorf("conffiles: %q, %v; want /etc/qxtd/qxtd.yaml", b, err)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		cmdOut(t, "sh", "-n", filepath.Join(ctl, script))
	}
	postinst, err := os.ReadFile(filepath.Join(ctl, "postinst"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(postinst, []byte("adduser --system --group")) || !bytes.Contains(postinst, []byte("chmod 0750 /var/lib/qxtd")) {
		t.Errorf("postinst does not create the qxtd system user or own /var/lib/qxtd:\n%s", postinst)
	}
	// The configuration needs the operator's SMSC first.
	if m := regexp.MustCompile(`(?m)^[ \t]*(systemctl|deb-systemd-invoke)[ \t]+([^ \t\n]+[ \t]+)*(start|restart|enable)\b`).Find(postinst); m != nil {
		t.Errorf("postinst starts or enables the service: %q", m)
	}

	root := filepath.Join(t.TempDir(), "root")
	cmdOut(t, "dpkg-deb", "-x", deb, root)
	bin := filepath.Join(root, "usr/bin/qxtd")
	conf := filepath.Join(root, "etc/qxtd/qxtd.yaml")
	if out := cmdOut(t, bin, "version"); !strings.Contains(out, debVersion) {
		t.Errorf("qxtd version: %q, want the package's version %s", out, debVersion)
	}
	for _, secret := range []string{"demo", "admin_token: demo", "password: qxtd"} {
		if b, _ := os.ReadFile(conf); bytes.Contains(b, []byte(secret)) {
			t.Errorf("the packaged configuration contains %q", secret)
		}
	}

	// As shipped: valid, with the warning; serve refuses, naming the file.
	// Its store and listeners are moved into the test (the environment
	// overrides), so that a serve that wrongly starts touches nothing.
	safe := []string{"QXTD_STORE_PATH=" + filepath.Join(t.TempDir(), "qxtd.db"),
		"QXTD_SMPP_LISTEN=127.0.0.1:0", "QXTD_HTTP_LISTEN=127.0.0.1:0"}
	stdout, stderr, code := runBin(t, bin, safe, "serve", "--check", "--config", conf)
	if code != 0 || !strings.Contains(stdout, "configuration ok") ||
		!strings.Contains(stderr, "upstreams[0].addr: smsc.example.invalid:2775 is a placeholder") {
		t.Errorf("serve --check on the packaged file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	_, stderr, code = runBin(t, bin, safe, "serve", "--config", conf)
	if code != 1 || !strings.Contains(stderr, "is a placeholder") || !strings.Contains(stderr, "edit "+conf) {
		t.Errorf("serve on the packaged file: exit %d, want 1 with the placeholder message naming %s\nstderr: %s", code, conf, stderr)
	}

	// The one edit: the upstream. Then it starts, tells systemd, is ready.
	_, simAddr := startSim(t, smpp.SimOptions{})
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.NewReplacer("smsc.example.invalid:2775", simAddr,
		"system_id: CHANGE-ME", "system_id: up", "password: CHANGE-ME", "password: uppw").Replace(string(b))
	if edited == string(b) {
		t.Fatal("the packaged configuration has no placeholder upstream to edit")
	}
	if err := os.WriteFile(conf, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	notify, sock := listenNotify(t, t.TempDir())
	httpAddr := runPackaged(t, bin, append(safe, "NOTIFY_SOCKET="+sock), "serve", "--config", conf)
	if got := readNotify(t, notify, 20*time.Second); got != "READY=1" {
		t.Fatalf("sd_notify: %q, want READY=1", got)
	}
	waitReady(t, "http://"+httpAddr+"/readyz", 20*time.Second)

	// systemd-analyze verify checks the unit's syntax, directives and that
	// ExecStart's binary exists and runs: a copy points at the extracted one.
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/qxtd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "User=qxtd", "ExecStart=/usr/bin/qxtd serve --config /etc/qxtd/qxtd.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "LimitNOFILE=65536", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/qxtd", "StateDirectory=qxtd", "CapabilityBoundingSet=\n"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("qxtd.service has no %q", strings.TrimSpace(want))
		}
	}
	unitDir := t.TempDir()
	copyUnit := filepath.Join(unitDir, "qxtd.service")
	if err := os.WriteFile(copyUnit, bytes.ReplaceAll(unit, []byte("/usr/bin/qxtd"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	va := exec.Command("systemd-analyze", "verify", copyUnit)
	out, err := va.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify qxtd.service: %v\n%s", err, out)
	}
}

// cmdOut runs name with args and returns its standard output; failing is fatal.
func cmdOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// runBin runs a command that should end by itself (within 30 s) and
// returns its output and exit status.
func runBin(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not end within 30s:\n%s", bin, args, e.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// runPackaged starts the packaged daemon, waits for its ready log line and
// returns its HTTP address; at cleanup it is stopped with SIGTERM and must
// exit 0.
func runPackaged(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	var logs bytes.Buffer
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(io.TeeReader(stderr, &logs))
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "qxtd ready" {
				addr, _ := rec["http"].(string)
				ready <- addr
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { <-logDone; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("packaged daemon after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("packaged daemon did not exit within 20s of SIGTERM")
		}
	})
	select {
	case addr := <-ready:
		return addr
	case err := <-exited:
		exited <- err
		t.Fatalf("packaged daemon exited before ready (%v):\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("packaged daemon not ready within 30s")
	}
	return ""
}

// waitReady polls /readyz until 200 (the upstream bound) or d passes.
func waitReady(t *testing.T, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		<-tick.C
	}
	t.Fatalf("%s not ready within %v: %s", url, d, last)
}

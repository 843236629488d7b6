package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// waitLog waits until a JSON log line of the daemon has msg, and returns
// that line (the first such line after skip of them).
func (p *proc) waitLog(t *testing.T, msg string, skip int, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		n := 0
		for _, line := range strings.Split(p.log(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				if n == skip {
					return rec
				}
				n++
			}
		}
		select {
		case <-p.wake:
		case <-p.exited:
			t.Fatalf("daemon exited waiting for %q:\n%s", msg, p.log())
		case <-deadline.C:
			t.Fatalf("no log line %q in %v:\n%s", msg, d, p.log())
		}
	}
}

// metric reads one sample of the daemon's /metrics.
func metric(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestSIGHUPReload: SIGHUP re-reads the file. A changed file applies
// log.level, an upstream's tps and a new account (it can bind at once),
// and names the changed listen address as needing a restart; an invalid
// file is logged and ignored. The daemon keeps serving SMPP and HTTP
// throughout, and the reload gauges say how the last reload went.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	path := writeConfig(t, dir, simAddr, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := strings.Replace(string(b), "    resp_timeout: 2s\n", "    resp_timeout: 2s\n    tps: 1000\n", 1)
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, path)
	esme := dialESME(t, d.smppAddr, nil)
	at0 := metric(t, d.httpAddr, "qxtd_config_last_reload_success_timestamp_seconds")
	if ok := metric(t, d.httpAddr, "qxtd_config_last_reload_successful"); ok != 1 || at0 == 0 {
		t.Fatalf("at start: successful %v, at %v", ok, at0)
	}

	// 1. A changed file.
	changed := strings.Replace(orig, "    tps: 1000\n", "    tps: 500\n", 1)
	changed = strings.Replace(changed, "smpp: { listen: 127.0.0.1:0 }", "smpp: { listen: 127.0.0.1:1 }", 1)
	changed += "  - system_id: esme2\n    password: secret2\n    enterprise: T1\nlog: { level: debug }\n"
	if err := os.WriteFile(path, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec := d.waitLog(t, "configuration reloaded", 0, 30*time.Second)
	applied, restart := strs(rec["applied"]), strs(rec["restart_required"])
	for _, k := range []string{"log.level", "upstreams[0].tps", "seed"} {
		if !slices.Contains(applied, k) {
			t.Errorf("applied %v: %s missing", applied, k)
		}
	}
	if !slices.Equal(restart, []string{"smpp.listen"}) {
		t.Errorf("restart_required %v, want [smpp.listen]", restart)
	}
	if rec["users_created"] != 1.0 {
		t.Errorf("reload log: %v", rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: d.smppAddr, SystemID: "esme2", Password: "secret2", Kind: smpp.BindTransmitter,
		Conn: smpp.ConnOptions{RespTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatalf("the account added by the reload cannot bind: %v", err)
	}
	_ = c2.Close()
	if ok := metric(t, d.httpAddr, "qxtd_config_last_reload_successful"); ok != 1 {
		t.Errorf("after a good reload: successful %v", ok)
	}
	at1 := metric(t, d.httpAddr, "qxtd_config_last_reload_success_timestamp_seconds")
	if at1 < at0 {
		t.Errorf("success timestamp went from %v to %v", at0, at1)
	}
	if !strings.Contains(d.log(), `"level":"DEBUG"`) {
		t.Error("log.level debug not applied: no debug line")
	}

	// 2. An invalid file: logged, ignored, the daemon goes on.
	if err := os.WriteFile(path, []byte(orig+"log: { level: loud }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec = d.waitLog(t, "configuration reload failed; the running configuration stays", 0, 30*time.Second)
	if e, _ := rec["err"].(string); !strings.Contains(e, "log.level") {
		t.Errorf("reload error does not name the key: %v", rec)
	}
	if ok := metric(t, d.httpAddr, "qxtd_config_last_reload_successful"); ok != 0 {
		t.Errorf("after a bad reload: successful %v", ok)
	}
	if at := metric(t, d.httpAddr, "qxtd_config_last_reload_success_timestamp_seconds"); at != at1 {
		t.Errorf("a failed reload moved the success timestamp: %v → %v", at1, at)
	}

	// Still serving: the ESME bound before both reloads submits, HTTP answers.
	if _, err := submit(ctx, esme, "8613800138000", "after SIGHUP"); err != nil {
		t.Fatalf("submit after SIGHUP: %v", err)
	}
	resp, err := http.Get("http://" + d.httpAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	select {
	case <-d.exited:
		t.Fatalf("daemon exited:\n%s", d.log())
	default:
	}
}

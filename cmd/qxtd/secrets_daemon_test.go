package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// runCheck runs `qxtd serve --check` as its own process with env added,
// and returns its output (stdout and stderr) and whether it succeeded.
func runCheck(t *testing.T, cfgPath string, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--check", "--config", cfgPath)
	cmd.Env = append(append(os.Environ(), "QXTD_TEST_MAIN=1"), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("serve --check: %v", err)
	}
	return string(out), err == nil
}

// bindWith binds to addr as systemID with password, or fails the test.
func bindWith(t *testing.T, addr, systemID, password string) *smpp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: addr, SystemID: systemID, Password: password, Kind: smpp.BindTransceiver,
		Conn: smpp.ConnOptions{RespTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatalf("bind %s at %s with its secret: %v", systemID, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSecretsNeverLogged: a daemon whose four secrets come from files and
// the environment uses them (the admin token answers, the account and the
// embedded simulator bind with theirs, the upstream binds with its), and
// none of them, nor the ones a SIGHUP brings in, appears in the output of
// serve --check (good, with warnings, and failing) or in the daemon's log
// at debug level, through a good and a failed reload and a shutdown.
func TestSecretsNeverLogged(t *testing.T) {
	dir := t.TempDir()
	const (
		adminToken = "adm-Q7f3c1e9b2d4-token"
		upPassword = "Up7kQz9w"
		acPassword = "Ac3xR8mv"
		simPass    = "Sm5tY2pq"
		// What the files hold after the reload.
		adminToken2 = "adm-W8k2p5n1x7-token"
		acPassword2 = "Ac9pL4ds"
		upPassword2 = "Up2nV6hb"
	)
	secrets := []string{adminToken, upPassword, acPassword, simPass, adminToken2, acPassword2, upPassword2}

	sim := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: upPassword, Record: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sim.Serve(l) }()
	t.Cleanup(func() { _ = sim.Close() })

	adminFile := writeSecret(t, filepath.Join(dir, "admin_token"), adminToken+"\n", 0o400)
	upFile := writeSecret(t, filepath.Join(dir, "upstream.password"), upPassword+"\n", 0o644) // warned about
	acFile := writeSecret(t, filepath.Join(dir, "esme.password"), acPassword+"\n", 0o600)
	ac2File := filepath.Join(dir, "esme2.password") // written before the reload
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0 }
store: { path: %s }
simulator: { enabled: true, listen: 127.0.0.1:0, system_id: simup }
log: { level: debug }
upstreams:
  - name: sim
    addr: %s
    system_id: up
    password_file: %s
    resp_timeout: 2s
policy: { bcrypt_cost: 4 }
enterprises:
  - { code: T1, signature: "【测试】", package: 12, national: true, offnet: true, no_whitelist: true }
accounts:
  - system_id: esme
    password_file: %s
    enterprise: T1
`, filepath.Join(dir, "qxtd.db"), l.Addr(), upFile, acFile)
	path := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"QXTD_HTTP_ADMIN_TOKEN_FILE=" + adminFile, "QXTD_SIMULATOR_PASSWORD=" + simPass}

	var outputs []string
	// serve --check: ok, with the warning naming the upstream's file.
	out, ok := runCheck(t, path, env...)
	outputs = append(outputs, out)
	if !ok || !strings.Contains(out, "configuration ok") || !strings.Contains(out, "upstreams[0].password_file: secret file "+upFile+" is readable by group or others") {
		t.Errorf("serve --check: ok %v:\n%s", ok, out)
	}
	// A typo in the environment: refused, naming it.
	out, ok = runCheck(t, path, append(env, "QXTD_SMPP_LISTN=0.0.0.0:2775")...)
	outputs = append(outputs, out)
	if ok || !strings.Contains(out, "QXTD_SMPP_LISTN: not a configuration key; did you mean QXTD_SMPP_LISTEN?") {
		t.Errorf("serve --check with QXTD_SMPP_LISTN: ok %v:\n%s", ok, out)
	}
	// Bad values next to the secrets, and a secret set twice.
	out, ok = runCheck(t, path, append(env, "QXTD_HTTP_ADMIN_TOKEN="+adminToken, "QXTD_LOG_LEVEL=loud")...)
	outputs = append(outputs, out)
	if ok || !strings.Contains(out, "http.admin_token (QXTD_HTTP_ADMIN_TOKEN) and http.admin_token_file (QXTD_HTTP_ADMIN_TOKEN_FILE): both set") {
		t.Errorf("serve --check with the token twice: ok %v:\n%s", ok, out)
	}
	tooLong := writeSecret(t, filepath.Join(dir, "long"), acPassword+"X\n", 0o600)
	bad := strings.Replace(cfg, acFile, tooLong, 1)
	badPath := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, ok = runCheck(t, badPath, env...)
	outputs = append(outputs, out)
	if ok || !strings.Contains(out, "accounts[0].password: 9 characters; SMPP allows at most 8") {
		t.Errorf("serve --check with a long password: ok %v:\n%s", ok, out)
	}

	// The daemon uses every secret.
	d := startDaemon(t, path, env...)
	ready := d.waitLog(t, "qxtd ready", 0, 10*time.Second)
	if code, body := postJSON(t, "GET", "http://"+d.httpAddr+"/admin/v1/enterprises", adminToken, ""); code != http.StatusOK {
		t.Errorf("admin API with the token from the file: %d %s", code, body)
	}
	if code, _ := postJSON(t, "GET", "http://"+d.httpAddr+"/admin/v1/enterprises", "wrong", ""); code == http.StatusOK {
		t.Error("admin API answers any token")
	}
	esme := bindWith(t, d.smppAddr, "esme", acPassword)
	simAddr, _ := ready["simulator"].(string)
	_ = bindWith(t, simAddr, "simup", simPass)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if id, err := submit(ctx, esme, "13800138000", "secrets"); err != nil || id == "" {
		t.Fatalf("submit: id %q, %v", id, err)
	}
	defer func() { // what the daemon did, when the test failed
		if t.Failed() {
			t.Log(d.log())
		}
	}()
	waitReceived(t, sim, "13800138000", 20*time.Second) // the upstream bound with its file's password
	warn := d.waitLog(t, "secret file is readable by group or others; make it 0600 or 0400", 0, 5*time.Second)
	if warn["file"] != upFile || warn["key"] != "upstreams[0].password_file" {
		t.Errorf("warning: %v", warn)
	}

	// SIGHUP with new secrets in the files and a new account: reloaded,
	// naming keys only.
	writeSecret(t, ac2File, acPassword2+"\n", 0o600)
	if err := os.Chmod(adminFile, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, adminFile, adminToken2+"\n", 0o400)
	writeSecret(t, upFile, upPassword2+"\n", 0o600)
	next := cfg + fmt.Sprintf("  - system_id: esme2\n    password_file: %s\n    enterprise: T1\n", ac2File)
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec := d.waitLog(t, "configuration reloaded", 0, 30*time.Second)
	if r := strings.Join(strs(rec["restart_required"]), " "); r != "http.admin_token upstreams[0].password" {
		t.Errorf("restart_required %q, want the changed secrets' keys", r)
	}
	_ = bindWith(t, d.smppAddr, "esme2", acPassword2)

	// SIGHUP with a file that sets a secret twice: refused, naming keys.
	if err := os.WriteFile(path, []byte(strings.Replace(next, "    password_file: "+upFile, "    password: "+upPassword2+"\n    password_file: "+upFile, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rec = d.waitLog(t, "configuration reload failed; the running configuration stays", 0, 30*time.Second)
	if e, _ := rec["err"].(string); !strings.Contains(e, "upstreams[0].password and upstreams[0].password_file: both set") {
		t.Errorf("reload error: %v", rec)
	}

	d.stop(t) // so that the whole log is in
	outputs = append(outputs, d.log())
	if !strings.Contains(d.log(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", d.log())
	}
	for i, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %d shows the secret %q:\n%s", i, s, out)
			}
		}
	}
}

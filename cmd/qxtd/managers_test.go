package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestAccountManagersConfig: http.account_managers is checked as the
// README says, every error naming its key.
func TestAccountManagersConfig(t *testing.T) {
	t.Parallel()
	const up = "upstreams:\n  - name: smsc\n    addr: 127.0.0.1:2776\n    system_id: qxtd\n    password: qxtd\n"
	for _, c := range []struct{ http, err string }{
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789}, {name: 李经理, token: li-0123456789abc}]}`, ""},
		{`{account_managers: [{name: 张经理, token: zhang-0123456789}]}`, "http.account_managers: set, but http.admin_token is empty"},
		{`{admin_token: admin-token-0123456789, account_managers: [{token: zhang-0123456789}]}`, "http.account_managers[0].name: required"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: short}]}`, "http.account_managers[0].token: 5 characters, at least 16"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: admin-token-0123456789}]}`, "http.account_managers[0].token: the same as another manager's or http.admin_token"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789}, {name: 张经理, token: zhang-0123456789x}]}`, `http.account_managers[1].name: "张经理" used twice`},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789}, {name: 李经理, token: zhang-0123456789}]}`, "http.account_managers[1].token: the same as another manager's"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: admin-api, token: zhang-0123456789}]}`, `http.account_managers[0].name: "admin-api" is the admin token's own name`},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: "` + strings.Repeat("经", 33) + `", token: zhang-0123456789}]}`, "http.account_managers[0].name: 33 characters, at most 32"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: "张\u0007", token: zhang-0123456789}]}`, "http.account_managers[0].name: \"张\\a\" has a character that is not printable"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, tokn: zhang-0123456789}]}`, "http.account_managers[0].tokn: unknown key"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789, enterprises: [GD0755001, GD0200002]}]}`, ""},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 王客服, token: wang-0123456789a, read_only: true, enterprises: [GD0755001]}]}`, ""},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 王客服, token: wang-0123456789a, read_only: "yes"}]}`, "http.account_managers[0].read_only"},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789, enterprises: [GD0755001, "GD 02"]}]}`, `http.account_managers[0].enterprises[1]: policy: invalid: group code "GD 02": only letters, digits, - and _`},
		{`{admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789, enterprises: [GD0755001, GD0755001]}]}`, `http.account_managers[0].enterprises[1]: "GD0755001" listed twice`},
	} {
		_, err := parseConfig("qxtd.yaml", []byte("http: "+c.http+"\n"+up), nil)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.http, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v, want %q", c.http, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789") {
			t.Errorf("%s: the error shows a token: %v", c.http, err)
		}
	}
	// configDiff names a changed manager's key, which a SIGHUP applies
	// (TestReloadAccountManagers).
	a, err := parseConfig("qxtd.yaml", []byte("http: {admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-0123456789}]}\n"+up), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseConfig("qxtd.yaml", []byte("http: {admin_token: admin-token-0123456789, account_managers: [{name: 张经理, token: zhang-9876543210}]}\n"+up), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := configDiff(a, b); len(d) != 1 || !strings.HasPrefix(d[0], "http.account_managers[0]") {
		t.Errorf("a manager's new token: changed keys %v, want the manager's", d)
	}
}

// TestAccountManagerDecides: the daemon takes an account manager's token
// (from its token_file) for the admin API, and the whitelist entry the
// manager approves says so to the enterprise: decided_by 张经理, not
// admin-api.
func TestAccountManagerDecides(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "zhang.token")
	const token = "zhang-token-0123456789abcdef"
	const liToken = "li-token-0123456789abcdef"
	const roToken = "wang-readonly-0123456789"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, simAddr := startSim(t, smpp.SimOptions{})
	path := writeConfig(t, dir, simAddr, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "admin_token: test-token }",
		"admin_token: test-token, account_managers: [{name: 张经理, token_file: "+tokenFile+"}, {name: 李经理, token: "+liToken+", enterprises: [T9]}, {name: 王客服, token: "+roToken+", read_only: true}] }", 1)
	if cfg == string(b) {
		t.Fatal("the test configuration's http line changed: the manager was not added")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, path)
	base := "http://" + d.httpAddr
	key := issueAPIKey(t, base, "esme")
	if code, body := postJSON(t, http.MethodPost, base+"/v1/whitelist", key, `{"number":"13712340001"}`); code != http.StatusCreated {
		t.Fatalf("the enterprise asks for a number: %d %s", code, body)
	}
	// 李经理 serves T9 only (not opened yet: the log says so).
	if code, body := postJSON(t, http.MethodPost, base+"/admin/v1/enterprises/T1/whitelist/approve", liToken, `{"numbers":["13712340001"]}`); code != http.StatusForbidden ||
		!strings.Contains(body, "企业 T1 不在客户经理李经理负责的企业之中") {
		t.Fatalf("李经理 (T9's) approves for T1: %d %s, want 403 forbidden", code, body)
	}
	if !strings.Contains(d.log(), "an account manager's enterprise does not exist (yet)") || !strings.Contains(d.log(), `"enterprise":"T9"`) {
		t.Errorf("no warning of 李经理's T9 in the log:\n%s", d.log())
	}
	// 王客服 is read-only: it sees T1's pending number, approves nothing,
	// and the daemon's own route refuses it too.
	if code, body := postJSON(t, http.MethodGet, base+"/admin/v1/enterprises/T1/whitelist?state=pending", roToken, ""); code != http.StatusOK || !strings.Contains(body, "13712340001") {
		t.Errorf("王客服 (read-only) reads T1's pending numbers: %d %s", code, body)
	}
	for _, req := range [][3]string{{http.MethodPost, "/admin/v1/enterprises/T1/whitelist/approve", `{"numbers":["13712340001"]}`},
		{http.MethodPut, "/admin/v1/log-level", `{"level":"debug"}`}} {
		if code, body := postJSON(t, req[0], base+req[1], roToken, req[2]); code != http.StatusForbidden || !strings.Contains(body, "客户经理王客服为只读账号") {
			t.Errorf("王客服 (read-only): %s %s: %d %s, want 403 forbidden", req[0], req[1], code, body)
		}
	}
	if code, body := postJSON(t, http.MethodPost, base+"/admin/v1/enterprises/T1/whitelist/approve", token, `{"numbers":["13712340001"]}`); code != http.StatusOK {
		t.Fatalf("张经理 approves: %d %s", code, body)
	}
	code, body := postJSON(t, http.MethodGet, base+"/v1/whitelist?state=approved", key, "")
	if code != http.StatusOK || !strings.Contains(body, `"decided_by":"张经理"`) {
		t.Fatalf("the enterprise's approved numbers: %d %s, want decided_by 张经理", code, body)
	}
	if strings.Contains(d.log(), token) || strings.Contains(d.log(), liToken) || strings.Contains(d.log(), roToken) {
		t.Error("the daemon's log shows a manager's token")
	}
}

// TestReloadAccountManagers: a SIGHUP applies http.account_managers to the
// running daemon, its SMPP binds and everything else untouched. A token
// rotated by a reload is refused at once, and so are the sessions opened
// with the old one; a manager added works; a manager whose portfolio
// changed keeps its session under the new portfolio. With the admin token
// changed too, the managers wait for the restart as the admin token does.
func TestReloadAccountManagers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const (
		oldTok = "zhang-old-0123456789abcdef"
		newTok = "zhang-new-0123456789abcdef"
		liTok  = "li-readonly-0123456789abc"
	)
	_, simAddr := startSim(t, smpp.SimOptions{})
	path := rewriteConfig(t, writeConfig(t, dir, simAddr, ""), "admin_token: test-token }",
		"admin_token: test-token, account_managers: [{name: 张经理, token: "+oldTok+"}] }")
	d := startDaemon(t, path)
	base := "http://" + d.httpAddr
	key := issueAPIKey(t, base, "esme")
	if code, body := postJSON(t, http.MethodPost, base+"/v1/whitelist", key, `{"number":"13712340001"}`); code != http.StatusCreated {
		t.Fatalf("the enterprise asks for a number: %d %s", code, body)
	}
	login := func(tok string) string {
		t.Helper()
		code, body := postJSON(t, http.MethodPost, base+"/admin/v1/login", "", `{"token":"`+tok+`"}`)
		var out struct{ Token string }
		if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil {
			t.Fatalf("login: %d %s", code, body)
		}
		return out.Token
	}
	status := func(method, path, tok, body string) int {
		t.Helper()
		code, _ := postJSON(t, method, base+path, tok, body)
		return code
	}
	reload := func(n int, old, new string) map[string]any {
		t.Helper()
		rewriteConfig(t, path, old, new)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		return d.waitLog(t, "configuration reloaded", n, 30*time.Second)
	}
	oldSession := login(oldTok)

	// 1. 张经理's token rotated, 李经理 added (read-only).
	rec := reload(0, "account_managers: [{name: 张经理, token: "+oldTok+"}]",
		"account_managers: [{name: 张经理, token: "+newTok+"}, {name: 李经理, token: "+liTok+", read_only: true}]")
	applied, restart := strs(rec["applied"]), strs(rec["restart_required"])
	if !slices.Contains(applied, "http.account_managers[0].token") || !slices.Contains(applied, "http.account_managers[1]") || len(restart) != 0 {
		t.Errorf("reload: applied %v, restart_required %v; want the managers' keys applied", applied, restart)
	}
	if slices.ContainsFunc(applied, func(k string) bool { return strings.HasPrefix(k, "http.account_managers[1].") }) {
		t.Errorf("reload: applied %v names the fields of the manager added besides the manager", applied)
	}
	for what, got := range map[string]int{
		"the old token":            status(http.MethodGet, "/admin/v1/enterprises", oldTok, ""),
		"the old token's session":  status(http.MethodGet, "/admin/v1/enterprises", oldSession, ""),
		"the new token":            status(http.MethodGet, "/admin/v1/enterprises", newTok, ""),
		"李经理 reads":                status(http.MethodGet, "/admin/v1/enterprises/T1/whitelist?state=pending", liTok, ""),
		"李经理 approves (read-only)": status(http.MethodPost, "/admin/v1/enterprises/T1/whitelist/approve", liTok, `{"numbers":["13712340001"]}`),
	} {
		want := map[string]int{"the old token": 401, "the old token's session": 401, "the new token": 200, "李经理 reads": 200, "李经理 approves (read-only)": 403}[what]
		if got != want {
			t.Errorf("after the reload, %s: %d, want %d", what, got, want)
		}
	}

	// 2. 张经理 given a portfolio that is not T1: the session goes on,
	// under it.
	session := login(newTok)
	rec = reload(1, "{name: 张经理, token: "+newTok+"}", "{name: 张经理, token: "+newTok+", enterprises: [T9]}")
	if applied := strs(rec["applied"]); !slices.Equal(applied, []string{"http.account_managers[0].enterprises"}) {
		t.Errorf("reload: applied %v, want 张经理's enterprises", applied)
	}
	if code, body := postJSON(t, http.MethodPost, base+"/admin/v1/enterprises/T1/whitelist/approve", session, `{"numbers":["13712340001"]}`); code != http.StatusForbidden ||
		!strings.Contains(body, "企业 T1 不在客户经理张经理负责的企业之中") {
		t.Errorf("张经理's session approves for T1 after its portfolio became T9: %d %s", code, body)
	}
	if got := status(http.MethodGet, "/admin/v1/enterprises/T9", session, ""); got == http.StatusForbidden || got == http.StatusUnauthorized {
		t.Errorf("张经理's session reads T9's (not opened yet): %d, want allowed (404)", got)
	}

	// 3. The admin token and a manager changed together: both wait.
	reload(2, "admin_token: test-token,", "admin_token: test-token-2,")
	rec = reload(3, "{name: 李经理, token: "+liTok+", read_only: true}", "{name: 李经理, token: "+liTok+"}")
	if applied, restart := strs(rec["applied"]), strs(rec["restart_required"]); slices.Contains(applied, "http.account_managers[1].read_only") ||
		!slices.Contains(restart, "http.account_managers[1].read_only") || !slices.Contains(restart, "http.admin_token") {
		t.Errorf("with the admin token changed: applied %v, restart_required %v; want the manager's change waiting", applied, restart)
	}
	if got := status(http.MethodPost, "/admin/v1/enterprises/T1/whitelist/approve", liTok, `{"numbers":["13712340001"]}`); got != http.StatusForbidden {
		t.Errorf("李经理 approves after a reload that could not apply: %d, want 403 (still read-only)", got)
	}
	if strings.Contains(d.log(), oldTok) || strings.Contains(d.log(), newTok) || strings.Contains(d.log(), liTok) {
		t.Error("the daemon's log shows a manager's token")
	}
}

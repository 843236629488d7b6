package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestQuickStart is the README's quick start: the daemon with
// configs/qxtd.yaml (its addresses and store moved so tests can run side
// by side) and `qxtd send` with its defaults get a DELIVRD receipt, and a
// number off the whitelist is refused 0x400.
func TestQuickStart(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "qxtd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The listeners take ports the kernel chooses; the simulator's must be
	// known before (the upstream dials it), so a test running beside this
	// one can take it in between: then the daemon starts again.
	var d *proc
	for attempt := 1; d == nil; attempt++ {
		dir := t.TempDir()
		cfg := strings.NewReplacer(
			"127.0.0.1:2775", "127.0.0.1:0", "127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:2776", freePort(t),
			"./data/qxtd.db", filepath.Join(dir, "qxtd.db"),
		).Replace(string(b))
		path := filepath.Join(dir, "qxtd.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if d, err = tryDaemonArgs(t, os.Args[0], []string{"serve", "--config", path}); err != nil &&
			(attempt == 3 || !strings.Contains(err.Error(), "address already in use")) {
			t.Fatal(err)
		}
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"send", "--smpp", d.smppAddr, "--to", "13800138000", "--text", "你好，这是一条测试短信"}, &out, &errOut); code != 0 {
		t.Fatalf("qxtd send: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "stat:DELIVRD") {
		t.Errorf("qxtd send printed %q, want a DELIVRD receipt", out.String())
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"send", "--smpp", d.smppAddr, "--to", "13800138009", "--text", "hi"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), fmt.Sprintf("0x%08X not_whitelisted", 0x400)) {
		t.Errorf("send off the whitelist: exit %d, %q", code, errOut.String())
	}

	// The README's console addresses: the portal and the desk answer with
	// their login pages, and the demo account logs in to the portal.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	base := "http://" + d.httpAddr
	for path, want := range map[string]string{"/": "用户登录", "/ops/": "客户经理工作台"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want 200 with %q", path, resp.StatusCode, want)
		}
		if path == "/" {
			m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(body))
			if m == nil {
				t.Fatal("the login page has no CSRF token")
			}
			resp, err = hc.PostForm(base+"/login", url.Values{"csrf": {m[1]}, "system_id": {"demo"}, "password": {"demo1234"}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "演示企业") {
				t.Errorf("demo login: %d, want the console of 演示企业", resp.StatusCode)
			}
		}
	}
}

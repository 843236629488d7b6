package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// readyField is a field of the daemon's "qxtd ready" log line.
func readyField(t *testing.T, d *proc, key string) string {
	t.Helper()
	for _, line := range strings.Split(d.log(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "qxtd ready" {
			v, _ := rec[key].(string)
			return v
		}
	}
	t.Fatalf("no ready line:\n%s", d.log())
	return ""
}

// audiencePaths are the daemon's HTTP paths by audience: the
// enterprises' (/v1 and their console), the operators' (metrics, admin
// API, the desk), and the health checks every listener answers.
var audiencePaths = []struct {
	method, path string
	audience     string // "enterprise", "ops" or "both"
}{
	{"GET", "/healthz", "both"},
	{"GET", "/readyz", "both"},
	{"GET", "/v1/me", "enterprise"},
	{"GET", "/", "enterprise"},
	{"GET", "/login", "enterprise"},
	{"GET", "/outbox", "enterprise"},
	{"GET", "/metrics", "ops"},
	{"GET", "/admin/v1/enterprises", "ops"},
	{"PUT", "/admin/v1/log-level", "ops"},
	{"GET", "/ops/", "ops"},
	{"GET", "/ops/login", "ops"},
	{"GET", "/ops/enterprises", "ops"},
}

// status is the answer's status to method path at base, as the operator
// (the token is ignored where no route wants it); redirects are not
// followed, so a console page that wants a login is 303, not 404.
func status(t *testing.T, c *http.Client, method, base, path string) int {
	t.Helper()
	var body io.Reader
	if method == http.MethodPut {
		body = strings.NewReader("info")
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test-token")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func noRedirects() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// Without http.ops_listen every path answers on the one port (the demo).
func TestListenersOnePort(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, ""))
	if ops := readyField(t, d, "ops"); ops != "" {
		t.Fatalf("ops listener %q without http.ops_listen", ops)
	}
	c := noRedirects()
	for _, p := range audiencePaths {
		if got := status(t, c, p.method, "http://"+d.httpAddr, p.path); got == http.StatusNotFound {
			t.Errorf("%s %s: 404 on the one port", p.method, p.path)
		}
	}
}

// With http.ops_listen each path answers on its audience's port and 404
// on the other; both listeners have the connection caps, each its own.
func TestListenersByAudience(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, ""),
		"QXTD_HTTP_OPS_LISTEN=127.0.0.1:0", "QXTD_HTTP_MAX_CONNS_PER_ADDR=4")
	ops := readyField(t, d, "ops")
	if ops == "" || ops == d.httpAddr {
		t.Fatalf("ops listener %q (http %s)", ops, d.httpAddr)
	}
	c := noRedirects()
	for _, p := range audiencePaths {
		pub := status(t, c, p.method, "http://"+d.httpAddr, p.path)
		op := status(t, c, p.method, "http://"+ops, p.path)
		switch p.audience {
		case "both":
			if pub == http.StatusNotFound || op == http.StatusNotFound {
				t.Errorf("%s %s: %d on http.listen, %d on http.ops_listen; want both served", p.method, p.path, pub, op)
			}
		case "enterprise":
			if pub == http.StatusNotFound || op != http.StatusNotFound {
				t.Errorf("%s %s: %d on http.listen, %d on http.ops_listen; want served, 404", p.method, p.path, pub, op)
			}
		case "ops":
			if pub != http.StatusNotFound || op == http.StatusNotFound {
				t.Errorf("%s %s: %d on http.listen, %d on http.ops_listen; want 404, served", p.method, p.path, pub, op)
			}
		}
	}
	// The operator's answers are the real ones, not just "not 404".
	for _, p := range []string{"/metrics", "/admin/v1/enterprises", "/ops/login"} {
		if got := status(t, c, "GET", "http://"+ops, p); got != http.StatusOK {
			t.Errorf("GET %s on http.ops_listen: %d", p, got)
		}
	}
	if got := status(t, c, "PUT", "http://"+ops, "/admin/v1/log-level"); got != http.StatusOK {
		t.Errorf("PUT /admin/v1/log-level on http.ops_listen: %d", got)
	}

	// Fill the ops listener's per-address cap with held connections (each
	// answered once, so admitted): the next is refused there, while the
	// enterprise port, with caps of its own, still answers.
	refused := false
	for i := 0; i < 5 && !refused; i++ { // the cap is 4; c may hold one more
		conn, err := net.Dial("tcp", ops)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: qxtd\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		refused = resp.StatusCode == http.StatusServiceUnavailable
	}
	if !refused {
		t.Fatal("http.ops_listen admitted more than http.max_conns_per_addr connections")
	}
	if got := status(t, &http.Client{Timeout: 10 * time.Second}, "GET", "http://"+d.httpAddr, "/healthz"); got != http.StatusOK {
		t.Fatalf("http.listen while http.ops_listen is full: %d", got)
	}
}

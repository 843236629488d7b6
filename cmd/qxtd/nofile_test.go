package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// readyz asks GET /readyz on an open keep-alive connection (a daemon out
// of descriptors cannot accept a new one) and returns status and body.
func readyz(t *testing.T, c net.Conn, r *bufio.Reader) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: qxtd\r\n\r\n"); err != nil {
		t.Fatalf("readyz: %v", err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// readyzUntil asks /readyz every 20 ms until it answers want or d passes
// (the daemon's state has no event a test can wait on), and returns the
// last answer.
func readyzUntil(t *testing.T, c net.Conn, r *bufio.Reader, want int, d time.Duration) (int, string) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, body := readyz(t, c, r)
		if code == want {
			return code, body
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return code, body
		}
	}
}

// TestDescriptorExhaustion runs the daemon with 64 descriptors and opens
// SMPP connections until it cannot accept any more (EMFILE). The SMPP
// listener must survive it: /readyz says 503 while accepts fail, and once
// the connections are gone a new bind succeeds and /readyz is 200 again.
// (Before, Serve returned at the first EMFILE: the daemon ran on without
// an SMPP port while /readyz said 200.)
func TestDescriptorExhaustion(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The caps on connections would turn the flood away before the
	// descriptors run out: lift them to see the listener at the limit.
	b = []byte(strings.Replace(string(b), "smpp: { listen: 127.0.0.1:0 }",
		"smpp: { listen: 127.0.0.1:0, max_conns: 10000, max_unbound_per_ip: 10000 }", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg, "QXTD_TEST_NOFILE=64")

	hc, err := net.Dial("tcp", d.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hr := bufio.NewReader(hc)
	if code, body := readyzUntil(t, hc, hr, http.StatusOK, 10*time.Second); code != http.StatusOK {
		t.Fatalf("not ready before the flood: %d %s", code, body)
	}

	// Connect until the daemon's descriptors are gone: the kernel still
	// completes connections into the listen backlog, so count on /readyz.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var code int
	var body string
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", d.smppAddr, 2*time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
		if i >= 40 && i%10 == 0 {
			if code, body = readyz(t, hc, hr); code == http.StatusServiceUnavailable {
				break
			}
		}
	}
	if code != http.StatusServiceUnavailable {
		code, body = readyzUntil(t, hc, hr, http.StatusServiceUnavailable, 10*time.Second)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "SMPP listener") {
		t.Fatalf("with %d connections and 64 descriptors: /readyz %d %q, want 503 naming the SMPP listener", len(conns), code, body)
	}
	t.Logf("descriptors exhausted after %d connections: /readyz %d %q", len(conns), code, body)

	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	if code, body = readyzUntil(t, hc, hr, http.StatusOK, 15*time.Second); code != http.StatusOK {
		t.Fatalf("descriptors freed, /readyz still %d %q:\n%s", code, body, d.log())
	}
	c := dialESME(t, d.smppAddr, nil) // binds, or fails the test
	_ = c.Close()
}

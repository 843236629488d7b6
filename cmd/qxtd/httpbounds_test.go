package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// withHTTP adds keys (YAML flow-map entries) to the http section of a
// configuration written by writeConfig.
func withHTTP(t *testing.T, path, keys string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const line = "http: { listen: 127.0.0.1:0, admin_token: test-token }"
	s := strings.Replace(string(b), line, strings.TrimSuffix(line, " }")+", "+keys+" }", 1)
	if s == string(b) {
		t.Fatal("no http line to extend")
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialFrom opens a TCP connection to addr from the loopback source
// address src (any 127.x.y.z is local on Linux): how tests stand for
// clients at different addresses.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until the server closes it (EOF or reset)
// and returns how long that took; it fails the test if c is still open
// after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

// TestHTTPTimeouts: a body that never arrives (slowloris) is cut after
// http.read_timeout; an idle keep-alive connection is closed after
// http.idle_timeout.
func TestHTTPTimeouts(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := withHTTP(t, writeConfig(t, dir, simAddr, ""), "read_timeout: 700ms, idle_timeout: 700ms")
	d := startDaemon(t, cfg)

	t.Run("slow body", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", d.httpAddr)
		fmt.Fprintf(c, "POST /v1/login HTTP/1.1\r\nHost: qxtd\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"sys")
		took := closedWithin(t, c, 10*time.Second)
		if took < 500*time.Millisecond {
			t.Errorf("cut after %v, before the read timeout", took)
		}
		t.Logf("slow body cut after %v (read_timeout 700ms)", took)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", d.httpAddr)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: qxtd\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("healthz %d, close %v", resp.StatusCode, resp.Close)
		}
		took := closedWithin(t, c, 10*time.Second)
		if took < 500*time.Millisecond {
			t.Errorf("closed after %v, before the idle timeout", took)
		}
		t.Logf("idle keep-alive closed after %v (idle_timeout 700ms)", took)
	})
}

// TestHTTPConnectionCaps: with max_conns_per_addr 3 and max_conns 5, the
// 4th connection from one address and the 6th in all (all five with a
// request in flight, none to close for room) are answered 503 and closed
// at once; a slot is free again when a connection closes.
func TestHTTPConnectionCaps(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	cfg := withHTTP(t, writeConfig(t, dir, simAddr, ""), "max_conns: 5, max_conns_per_addr: 3")
	d := startDaemon(t, cfg)

	// open returns a connection with a request in flight: its handler
	// has asked for the body (100 Continue), which never comes, so the
	// server holds it and will not close it for room; or the refusal's
	// status.
	open := func(src string) (net.Conn, int) {
		c := dialFrom(t, src, d.httpAddr)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "PUT /admin/v1/log-level HTTP/1.1\r\nHost: qxtd\r\nAuthorization: Bearer test-token\r\n"+
			"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("from %s: %v", src, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetDeadline(time.Time{})
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !resp.Close || resp.Header.Get("Retry-After") == "" {
				t.Errorf("refusal without Connection: close and Retry-After: %v", resp.Header)
			}
			closedWithin(t, c, 5*time.Second)
		}
		return c, resp.StatusCode
	}
	var held []net.Conn
	for i := range 3 {
		c, code := open("127.0.0.1")
		if code != http.StatusContinue {
			t.Fatalf("connection %d from 127.0.0.1: %d", i+1, code)
		}
		held = append(held, c)
	}
	if _, code := open("127.0.0.1"); code != http.StatusServiceUnavailable {
		t.Fatalf("4th connection from one address: %d, want 503", code)
	}
	for i := range 2 {
		c, code := open("127.0.0.2")
		if code != http.StatusContinue {
			t.Fatalf("connection %d from 127.0.0.2: %d", i+1, code)
		}
		held = append(held, c)
	}
	if _, code := open("127.0.0.3"); code != http.StatusServiceUnavailable {
		t.Fatalf("6th connection: %d, want 503", code)
	}
	// A closed connection gives its slot back (once the server has seen
	// the close: retried until then).
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, code := open("127.0.0.3")
		if code == http.StatusContinue {
			held[0] = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection never came back")
		}
	}
	// held[1]'s request ends (its body sent, the answer read); its
	// connection, kept alive, reads the metrics.
	_ = held[1].SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(held[1], "info")
	br := bufio.NewReader(held[1])
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the held request's answer: %v, %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = held[1].SetDeadline(time.Time{})
	metrics := scrape(t, held[1], "qxtd_http_connections_refused_total")
	for _, want := range []string{`qxtd_http_connections_refused_total{cap="max_conns_per_addr"} 1`, `qxtd_http_connections_refused_total{cap="max_conns"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

// scrape reads /metrics over c (a kept-alive connection) and returns the
// lines that start with prefix.
func scrape(t *testing.T, c net.Conn, prefix string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: qxtd\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHTTPIdleEviction: the daemon's HTTP listener counts a /24's
// connections (max_conns_per_addr 1: four a /24, the fifth answered 503),
// and once max_conns is held by connections that sent nothing, a client
// retrying as the 503 tells it (Retry-After) is served in the place of the
// oldest of them, after the grace.
func TestHTTPIdleEviction(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	// read_header_timeout well past the test's deadline: the connections
	// that send nothing are not closed by it.
	cfg := withHTTP(t, writeConfig(t, dir, simAddr, ""), "max_conns: 5, max_conns_per_addr: 1, read_header_timeout: 1m")
	d := startDaemon(t, cfg)

	var silent []net.Conn
	for i := range 4 {
		silent = append(silent, dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), d.httpAddr))
	}
	// The fifth of the /24 is refused at once (the four before it were
	// accepted first: one accept loop).
	c := dialFrom(t, "127.0.1.5", d.httpAddr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the fifth connection of a /24: %v, %v; want 503", resp, err)
	}
	resp.Body.Close()
	silent = append(silent, dialFrom(t, "127.0.2.1", d.httpAddr)) // max_conns reached

	deadline := time.Now().Add(15 * time.Second)
	var served net.Conn
	for served == nil {
		c := dialFrom(t, "127.0.3.1", d.httpAddr)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: qxtd\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetDeadline(time.Time{})
		switch {
		case resp.StatusCode == http.StatusOK:
			served = c
		case resp.StatusCode != http.StatusServiceUnavailable:
			t.Fatalf("healthz: %d", resp.StatusCode)
		case time.Now().After(deadline):
			t.Fatal("still refused after 15 s: no idle connection closed to make room")
		default:
			after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			wait := time.NewTimer(time.Duration(after) * time.Second) // as a client told to retry does
			<-wait.C
		}
	}
	closedWithin(t, silent[0], 10*time.Second)
	metrics := scrape(t, served, "qxtd_http_connections_refused_total")
	for _, want := range []string{`qxtd_http_connections_refused_total{cap="max_conns_per_network"} 1`, `qxtd_http_connections_refused_total{cap="evicted_idle"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// listenNotify is the service manager's end of $NOTIFY_SOCKET: a unixgram
// socket in dir.
func listenNotify(t *testing.T, dir string) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, path
}

// readNotify returns the next datagram, failing after d.
func readNotify(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram within %v: %v", d, err)
	}
	return string(buf[:n])
}

func TestSdNotify(t *testing.T) {
	conn, path := listenNotify(t, t.TempDir())
	if err := sdNotify(path, "READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn, 5*time.Second); got != "READY=1" {
		t.Fatalf("datagram %q, want READY=1", got)
	}
	// Not run by systemd: nothing to do, no error.
	if err := sdNotify("", "READY=1"); err != nil {
		t.Fatalf("empty NOTIFY_SOCKET: %v", err)
	}
	// A socket that is gone is an error naming it (the daemon logs it).
	missing := filepath.Join(t.TempDir(), "gone")
	if err := sdNotify(missing, "READY=1"); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing socket: %v", err)
	}
}

// TestDaemonNotifiesReady: the real daemon sends READY=1 only once its
// listeners accept (what Type=notify relies on), and STOPPING=1 on SIGTERM.
func TestDaemonNotifiesReady(t *testing.T) {
	dir := t.TempDir()
	conn, path := listenNotify(t, dir)
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, dir, simAddr, ""), "NOTIFY_SOCKET="+path)
	if got := readNotify(t, conn, 20*time.Second); got != "READY=1" {
		t.Fatalf("first datagram %q, want READY=1", got)
	}
	for _, addr := range []string{d.smppAddr, d.httpAddr} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("READY=1 sent but %s does not accept: %v", addr, err)
		}
		_ = c.Close()
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := readNotify(t, conn, 20*time.Second); got != "STOPPING=1" {
		t.Fatalf("datagram after SIGTERM %q, want STOPPING=1", got)
	}
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
}

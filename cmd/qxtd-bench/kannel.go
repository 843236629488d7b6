package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The Kannel scenarios put Kannel (bearerbox and smsbox of Debian's
// kannel package, 1.4.5) where qxtd is: the HTTP load client submits
// through smsbox's sendsms interface, bearerbox relays over SMPP to the
// same peer with the same binds and window, and with receipts the peer's
// deliver_sm comes back to the client through dlr-url. Kannel has no SMPP
// server of its own (that is the separate opensmppbox), so its ingress is
// HTTP; qxtd-http/… is qxtd behind the same client for a like-for-like
// row, and qxtd/… its SMPP ingress.
//
// Kannel is set up as a careful operator would for throughput: its file
// store (as durable as Kannel gets: the store is written, not fsync'd, per
// message), internal DLR storage, no throughput cap on the binds, log
// level warning.

// kannelBins are the two boxes, where Debian installs them.
var kannelBins = struct{ bearerbox, smsbox string }{"/usr/sbin/bearerbox", "/usr/sbin/smsbox"}

// kannel is a running bearerbox and smsbox.
type kannel struct {
	dir            string
	bearer, smsbox *exec.Cmd
	exited         [2]chan struct{}
	adminAddr      string
	sendsmsAddr    string
}

// kannelConf is the configuration both boxes read.
func kannelConf(dir, peerAddr, adminAddr, boxAddr, sendsmsAddr string, binds, window int) (string, error) {
	host, port, err := splitAddr(peerAddr)
	if err != nil {
		return "", err
	}
	_, adminPort, _ := splitAddr(adminAddr)
	_, boxPort, _ := splitAddr(boxAddr)
	_, sendsmsPort, _ := splitAddr(sendsmsAddr)
	var b strings.Builder
	fmt.Fprintf(&b, `group = core
admin-port = %d
admin-interface = 127.0.0.1
admin-password = bench
status-password = bench
admin-allow-ip = 127.0.0.1
smsbox-port = %d
box-allow-ip = 127.0.0.1
log-file = %q
log-level = 2
store-type = file
store-location = %q
dlr-storage = internal

`, adminPort, boxPort, filepath.Join(dir, "bearerbox.log"), filepath.Join(dir, "kannel.store"))
	// One smsc group per bind: bearerbox balances between the groups of
	// one smsc-id as qxtd does between its binds.
	for i := range binds {
		fmt.Fprintf(&b, `group = smsc
smsc = smpp
smsc-id = peer
smsc-admin-id = peer%d
host = %s
port = %d
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel
system-type = ""
max-pending-submits = %d
msg-id-type = 0x03
enquire-link-interval = 30

`, i, host, port, window)
	}
	fmt.Fprintf(&b, `group = smsbox
bearerbox-host = 127.0.0.1
sendsms-port = %d
sendsms-interface = 127.0.0.1
log-file = %q
log-level = 2
max-pending-requests = 4096

group = sendsms-user
username = bench
password = bench123
concatenation = false
max-messages = 1

group = sms-service
keyword = default
catch-all = true
text = ""
omit-empty = true
`, sendsmsPort, filepath.Join(dir, "smsbox.log"))
	return b.String(), nil
}

func splitAddr(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("address %q has no port", addr)
	}
	p, err := strconv.Atoi(addr[i+1:])
	return addr[:i], p, err
}

// startKannel writes the configuration, starts bearerbox, waits for every
// bind to the peer to be online, starts smsbox and waits for it to take
// requests. A box that could not listen on a port freeAddr had found free
// (bearerbox panics "Could not open smsbox port": CI's run failed so on
// 2026-12-05) is started again with new ports, as startDaemon does.
func startKannel(ctx context.Context, peerAddr string, binds, window int) (*kannel, error) {
	return startKannelOn(ctx, peerAddr, binds, window, freeAddr)
}

// startKannelOn is startKannel with its ports from addr.
func startKannelOn(ctx context.Context, peerAddr string, binds, window int, addr func() (string, error)) (*kannel, error) {
	for attempt := 1; ; attempt++ {
		k, err := startKannelOnce(ctx, peerAddr, binds, window, addr)
		if err == nil || attempt == portAttempts || !errors.Is(err, errPortTaken) {
			return k, err
		}
	}
}

// startKannelOnce is one try of startKannelOn.
func startKannelOnce(ctx context.Context, peerAddr string, binds, window int, addr func() (string, error)) (*kannel, error) {
	for _, bin := range []string{kannelBins.bearerbox, kannelBins.smsbox} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("kannel: %w (apt-get install kannel)", err)
		}
	}
	dir, err := os.MkdirTemp("", "qxtd-bench-kannel-")
	if err != nil {
		return nil, err
	}
	k := &kannel{dir: dir}
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = addr(); err != nil {
			k.Stop()
			return nil, err
		}
	}
	k.adminAddr, k.sendsmsAddr = addrs[0], addrs[2]
	conf, err := kannelConf(dir, peerAddr, addrs[0], addrs[1], addrs[2], binds, window)
	if err != nil {
		k.Stop()
		return nil, err
	}
	path := filepath.Join(dir, "kannel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		k.Stop()
		return nil, err
	}
	start := func(i int, bin string) (*exec.Cmd, error) {
		out, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".out"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, path)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			out.Close()
			return nil, err
		}
		k.exited[i] = make(chan struct{})
		go func() { _ = cmd.Wait(); out.Close(); close(k.exited[i]) }()
		return cmd, nil
	}
	if k.bearer, err = start(0, kannelBins.bearerbox); err != nil {
		k.Stop()
		return nil, err
	}
	if err := k.waitStatus(ctx, func(s string) bool { return strings.Count(s, "(online") >= binds }); err != nil {
		k.Stop()
		return nil, fmt.Errorf("bearerbox: %w", err)
	}
	if k.smsbox, err = start(1, kannelBins.smsbox); err != nil {
		k.Stop()
		return nil, err
	}
	if err := k.waitStatus(ctx, func(s string) bool { return strings.Contains(s, "smsbox:") }); err != nil {
		k.Stop()
		return nil, fmt.Errorf("smsbox: %w", err)
	}
	return k, nil
}

// waitStatus polls bearerbox's status page until ok says yes (30 s at
// most, or either box exits).
func (k *kannel) waitStatus(ctx context.Context, ok func(string) bool) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		for i, ch := range k.exited {
			if ch == nil {
				continue
			}
			select {
			case <-ch:
				err := fmt.Errorf("%s exited: %s", []string{"bearerbox", "smsbox"}[i], k.tail())
				if k.logged("Address already in use") {
					err = fmt.Errorf("%w: %w", errPortTaken, err)
				}
				return err
			default:
			}
		}
		resp, err := hc.Get("http://" + k.adminAddr + "/status.txt?password=bench")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			last = string(b)
			if ok(last) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready after 30 s; status: %.500s; logs: %s", last, k.tail())
}

// tail is the end of the boxes' logs, for errors.
func (k *kannel) tail() string {
	var out []string
	for _, f := range []string{"bearerbox.out", "bearerbox.log", "smsbox.out", "smsbox.log"} {
		b, err := os.ReadFile(filepath.Join(k.dir, f))
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 800 {
			b = b[len(b)-800:]
		}
		out = append(out, f+": "+string(b))
	}
	return strings.Join(out, "\n")
}

// logged says whether either box's output or log has s.
func (k *kannel) logged(s string) bool {
	for _, f := range []string{"bearerbox.out", "bearerbox.log", "smsbox.out", "smsbox.log"} {
		if b, err := os.ReadFile(filepath.Join(k.dir, f)); err == nil && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// CPU is both boxes' user+system CPU time so far.
func (k *kannel) CPU() (time.Duration, error) {
	a, err1 := procCPU(k.bearer.Process.Pid)
	b, err2 := procCPU(k.smsbox.Process.Pid)
	return a + b, errors.Join(err1, err2)
}

// Written is both boxes' bytes written to storage so far (the message
// store file and the logs).
func (k *kannel) Written() (int64, error) {
	a, err1 := procWritten(k.bearer.Process.Pid)
	b, err2 := procWritten(k.smsbox.Process.Pid)
	return a + b, errors.Join(err1, err2)
}

// DroppedReceipts counts bearerbox's "got DLR but could not find
// message": a receipt that came before Kannel had stored the message's
// DLR entry (the receipt on one bind, the submit_sm_resp still being
// handled on another), which Kannel then drops.
func (k *kannel) DroppedReceipts() int {
	b, _ := os.ReadFile(filepath.Join(k.dir, "bearerbox.log"))
	return bytes.Count(b, []byte("got DLR but could not find message"))
}

// LogLines are the boxes' log lines at warning or above.
func (k *kannel) LogLines() []string {
	var out []string
	for _, f := range []string{"bearerbox.log", "smsbox.log"} {
		b, _ := os.ReadFile(filepath.Join(k.dir, f))
		for _, l := range strings.Split(string(b), "\n") {
			// A new file store is missing at first start: bearerbox says
			// so in six ERROR lines and creates it.
			if strings.Contains(l, "fopen failed") || strings.Contains(l, "System error 2:") {
				continue
			}
			if strings.Contains(l, "WARNING:") || strings.Contains(l, "ERROR:") || strings.Contains(l, "PANIC:") {
				out = append(out, f+": "+l)
			}
		}
	}
	return out
}

// Stop ends both boxes (SIGTERM, SIGKILL after 2 s) and removes the
// directory. smsbox ends at once; bearerbox, told to stop, stayed up
// until killed, 10 s when that was the grace: nothing of it is kept
// (its store is in the directory), so a run need not wait for it.
func (k *kannel) Stop() {
	for i, cmd := range []*exec.Cmd{k.smsbox, k.bearer} {
		if cmd == nil || cmd.Process == nil {
			continue
		}
		ch := k.exited[1-i]
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ch:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-ch
		}
	}
	_ = os.RemoveAll(k.dir)
}

// kannelTarget is smsbox's sendsms interface (GET, as Kannel documents
// it; several numbers in "to" separated by spaces); a receipt is asked
// for with dlr-mask 3 (delivered or failed) and dlr-url, in which Kannel
// puts the report type for %d and the message's two numbers for %p and
// %P (which of them is the handset's, a report's sender or receiver, is
// Kannel's business: recipient takes the one in the run's range).
type kannelTarget struct{ addr string }

// kannelFrom is the sender of the bench's messages through Kannel: in a
// receipt, the number that is not the handset's.
const kannelFrom = "1069000"

func (t kannelTarget) request(ctx context.Context, dsts []int64, text, receiptURL string) (*http.Request, error) {
	to := make([]string, len(dsts))
	for i, d := range dsts {
		to[i] = strconv.FormatInt(d, 10)
	}
	q := url.Values{"username": {"bench"}, "password": {"bench123"}, "from": {kannelFrom},
		"to": {strings.Join(to, " ")}, "text": {text}}
	if receiptURL != "" {
		q.Set("dlr-mask", "3")
		q.Set("dlr-url", receiptURL+"&t=%d&p=%p&q=%P")
	}
	return http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+"/cgi-bin/sendsms?"+q.Encode(), nil)
}

// accepted: smsbox answers 202 ("0: Accepted for delivery", or "3:
// Queued for later delivery" while the bind is busy) when bearerbox took
// the message.
func (kannelTarget) accepted(status int, body []byte, _ int) error {
	if status != http.StatusAccepted {
		return fmt.Errorf("HTTP %d: %.200s", status, body)
	}
	return nil
}

// split: Kannel calls a dlr-url once a receipt.
func (kannelTarget) split(body []byte) [][]byte { return [][]byte{body} }

// final: Kannel's type 1 is delivered, 2 failed (both final).
func (kannelTarget) final(r *http.Request, _ []byte) bool {
	t := r.URL.Query().Get("t")
	return t == "1" || t == "2"
}

// recipient: the receipt's number that is not the sender's (%p or %P).
func (kannelTarget) recipient(r *http.Request, _ []byte) (int64, bool) {
	q := r.URL.Query()
	for _, k := range []string{"p", "q"} {
		if n, err := strconv.ParseInt(strings.TrimPrefix(q.Get(k), "+"), 10, 64); err == nil && q.Get(k) != kannelFrom {
			return n, true
		}
	}
	return 0, false
}

//go:build soak

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// TestSoakDiskFullUnderLoad: the real daemon keeps its bbolt file on a
// small tmpfs (mounted in a user and mount namespace of its own, so no
// privileges are needed) and relays under load while the tmpfs fills up
// and is freed again. Acknowledged messages all reach the SMSC; none more
// than twice, and copies stay under 1 % of the messages.
func TestSoakDiskFullUnderLoad(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "qxtd")
	build := exec.Command("go", "build", "-o", bin, "github.com/qxtd/qxtd/cmd/qxtd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}

	sim := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", Record: true, DLRDelay: 50 * time.Millisecond})
	sl := listen(t)
	go func() { _ = sim.Serve(sl) }()
	t.Cleanup(func() { _ = sim.Close() })

	cfg := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0, admin_token: test-token }
store: { path: %s }
simulator: { enabled: false }
upstreams:
  - name: sim
    addr: %s
    system_id: up
    password: uppw
    binds: 2
    window: 50
    resp_timeout: 2s
delivery: { retry_min: 100ms, retry_max: 1s, dlr_retry: 500ms }
policy: { bcrypt_cost: 4 }
enterprises:
  - code: T1
    signature: "【测试】"
    package: 12
    national: true
    offnet: true
    no_whitelist: true
    tps: 100000
accounts:
  - system_id: esme
    password: secret1
    enterprise: T1
`, filepath.Join(state, "qxtd.db"), sl.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}

	// The tmpfs exists only in the daemon's mount namespace; the test
	// reaches it through /proc/<pid>/root.
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount -t tmpfs -o size=24m tmpfs "$1" && exec "$2" serve --config "$3"`, "sh", state, bin, cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan string, 1)
	var logMu sync.Mutex
	var logTail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logTail = append(logTail, line)
			if len(logTail) > 40 {
				logTail = logTail[1:]
			}
			logMu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "qxtd ready" {
				addr, _ := rec["smpp"].(string)
				ready <- addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	tail := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		out := ""
		for _, l := range logTail {
			out += l + "\n"
		}
		return out
	}
	var smppAddr string
	select {
	case smppAddr = <-ready:
	case <-exited:
		t.Fatalf("daemon exited before ready:\n%s", tail())
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon not ready:\n%s", tail())
	}
	filler := filepath.Join("/proc", fmt.Sprint(cmd.Process.Pid), "root", state, "filler")

	r := &rig{t: t, addr: smppAddr}
	e, err := r.bind("esme", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}

	// Load: 32 senders, each message to its own number. Acknowledged
	// numbers must reach the SMSC; refused ones (ESME_RSYSERR while the
	// disk is full) need not.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		next     atomic.Int64
		refused  atomic.Int64
		ackMu    sync.Mutex
		acked    []string
		loadDone sync.WaitGroup
	)
	for range 32 {
		loadDone.Add(1)
		go func() {
			defer loadDone.Done()
			for ctx.Err() == nil {
				dst := fmt.Sprintf("138%08d", next.Add(1))
				_, err := e.submit(ctx, submitSM("1069", dst, "disk full soak"))
				var st pdu.Status
				switch {
				case err == nil:
					ackMu.Lock()
					acked = append(acked, dst)
					ackMu.Unlock()
				case errors.As(err, &st):
					refused.Add(1)
				}
			}
		}()
	}
	nAcked := func() int { ackMu.Lock(); defer ackMu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, "load under way", func() bool { return nAcked() > 2000 })

	// Fill the tmpfs.
	f, err := os.Create(filler)
	if err != nil {
		t.Fatalf("create %s: %v", filler, err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	_ = f.Close()
	fullAt := nAcked()
	t.Logf("disk full after %d acknowledged", fullAt)
	// The disk stays full until ingress refused a good many submits.
	waitFor(t, 60*time.Second, "refusals while the disk is full", func() bool { return refused.Load() >= 20000 })
	atFull, _ := sim.Stats()
	if err := os.Remove(filler); err != nil {
		t.Fatalf("free: %v", err)
	}
	t.Logf("disk freed: %d refused, %d acknowledged, SMSC accepted %d", refused.Load(), nAcked(), atFull)
	waitFor(t, 60*time.Second, "acknowledgements again", func() bool { return nAcked() > fullAt+2000 })
	stop()
	loadDone.Wait()

	want := map[string]bool{}
	ackMu.Lock()
	for _, d := range acked {
		want[d] = true
	}
	ackMu.Unlock()
	perDest := map[string]int{}
	waitFor(t, 120*time.Second, "every acknowledged message at the SMSC", func() bool {
		clear(perDest)
		for _, m := range sim.Received() {
			perDest[m.Dest]++
		}
		for d := range want {
			if perDest[d] == 0 {
				return false
			}
		}
		return true
	})
	extra, most := 0, 0
	for _, c := range perDest {
		extra += c - 1
		most = max(most, c)
	}
	t.Logf("%d acknowledged, %d refused; SMSC got %d distinct, %d extra copies (%.3f %%), most copies of one message %d",
		len(want), refused.Load(), len(perDest), extra, 100*float64(extra)/float64(len(want)), most)
	if most > 2 {
		t.Errorf("a message reached the SMSC %d times, want at most 2", most)
	}
	if float64(extra) >= 0.01*float64(len(want)) {
		t.Errorf("%d extra copies for %d messages, want under 1 %%", extra, len(want))
	}
}

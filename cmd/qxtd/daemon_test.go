package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// The test binary doubles as the daemon: with QXTD_TEST_MAIN=1 it runs
// main's run() instead of the tests, so crash tests use the real daemon
// as a subprocess (with the race detector) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("QXTD_TEST_MAIN") == "1" {
		if n, err := strconv.ParseUint(os.Getenv("QXTD_TEST_NOFILE"), 10, 64); err == nil {
			// A daemon with few descriptors (TestDescriptorExhaustion).
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				fmt.Fprintln(os.Stderr, "setrlimit:", err)
				os.Exit(1)
			}
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd      *exec.Cmd
	smppAddr string
	httpAddr string
	exited   chan struct{}
	logs     *strings.Builder
	logMu    *sync.Mutex
	wake     chan struct{} // a log line arrived (waitLog)
}

// startDaemon runs qxtd serve with cfgPath (and env, NAME=value) and
// waits for its ready line.
func startDaemon(t *testing.T, cfgPath string, env ...string) *proc {
	t.Helper()
	return startDaemonBin(t, os.Args[0], cfgPath, env...)
}

// startDaemonBin is startDaemon of another binary (one built by make
// build in TestMakeBuildStamps).
func startDaemonBin(t *testing.T, bin, cfgPath string, env ...string) *proc {
	t.Helper()
	return startDaemonArgs(t, bin, []string{"serve", "--config", cfgPath}, env...)
}

// startDaemonArgs is startDaemonBin with the whole command line.
func startDaemonArgs(t *testing.T, bin string, args []string, env ...string) *proc {
	t.Helper()
	p, err := tryDaemonArgs(t, bin, args, env...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryDaemonArgs is startDaemonArgs that returns a daemon's exit before it
// was ready as an error (with its log), for a test that can start it
// again (a port taken meanwhile).
func tryDaemonArgs(t *testing.T, bin string, args []string, env ...string) (*proc, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "QXTD_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{}), logs: &strings.Builder{}, logMu: &sync.Mutex{}, wake: make(chan struct{}, 1)}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logMu.Lock()
			p.logs.WriteString(line + "\n")
			p.logMu.Unlock()
			select {
			case p.wake <- struct{}{}:
			default:
			}
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "qxtd ready" {
				ready <- rec
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	select {
	case rec := <-ready:
		p.smppAddr, _ = rec["smpp"].(string)
		p.httpAddr, _ = rec["http"].(string)
	case <-p.exited:
		return nil, fmt.Errorf("daemon exited before ready:\n%s", p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon not ready in time:\n%s", p.log())
	}
	return p, nil
}

// stop sends SIGTERM and waits for the daemon to exit cleanly (status 0).
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit after SIGTERM:\n%s", p.log())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.log())
	}
}

func (p *proc) log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.logs.String()
}

func writeConfig(t *testing.T, dir, simAddr string, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
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
%s`, filepath.Join(dir, "qxtd.db"), simAddr, extra)
	path := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startSim(t *testing.T, opt smpp.SimOptions) (*smpp.Simulator, string) {
	t.Helper()
	opt.SystemID, opt.Password, opt.Record = "up", "uppw", true
	sim := smpp.NewSimulator(opt)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sim.Serve(l) }()
	t.Cleanup(func() { _ = sim.Close() })
	return sim, l.Addr().String()
}

// receiptSink binds as an ESME transceiver and collects receipts by id.
type receiptSink struct {
	mu   sync.Mutex
	ids  map[string]smpp.MessageState
	wake chan struct{}
}

func newSink() *receiptSink {
	return &receiptSink{ids: make(map[string]smpp.MessageState), wake: make(chan struct{}, 1)}
}

func (s *receiptSink) handler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if rc, err := smpp.ParseReceipt(p); err == nil {
			s.mu.Lock()
			s.ids[rc.ID] = rc.State
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		return pdu.NewDeliverSMResp()
	})
}

func (s *receiptSink) missing(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := s.ids[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

func (s *receiptSink) waitAll(t *testing.T, ids []string, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		miss := s.missing(ids)
		if len(miss) == 0 {
			return
		}
		select {
		case <-s.wake:
		case <-deadline.C:
			t.Fatalf("%d of %d receipts missing, e.g. %v", len(miss), len(ids), miss[:min(5, len(miss))])
		}
	}
}

func dialESME(t *testing.T, addr string, h smpp.Handler) *smpp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: addr, SystemID: "esme", Password: "secret1", Kind: smpp.BindTransceiver, Handler: h,
		Conn: smpp.ConnOptions{Window: 64, RespTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func submit(ctx context.Context, c *smpp.Conn, dst, text string) (string, error) {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, "10690001")
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.ShortMessage, []byte(text))
	resp, err := c.Request(ctx, p)
	if err != nil {
		return "", err
	}
	return smpp.Str(resp, pdufield.MessageID), nil
}

// TestCrashKill9 kills the daemon with SIGKILL while an ESME is submitting
// with a full window, restarts it on the same store and checks that every
// message acknowledged before the kill reaches the SMSC and that its
// receipt reaches the ESME.
func TestCrashKill9(t *testing.T) {
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 50 * time.Millisecond})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)

	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	var (
		mu    sync.Mutex
		acked = map[string]string{} // our id → destination
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const workers, killAfter = 32, 400
	reached := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 1000; i++ {
				dst := fmt.Sprintf("139%02d%06d", w, i)
				id, err := submit(ctx, c, dst, "crash test "+dst)
				if err != nil {
					return // the daemon died under us
				}
				mu.Lock()
				acked[id] = dst
				n := len(acked)
				mu.Unlock()
				if n >= killAfter {
					once.Do(func() { close(reached) })
				}
			}
		}()
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d acks before the deadline", len(acked))
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	wg.Wait() // every submitter saw its connection die
	cancel()

	mu.Lock()
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	mu.Unlock()
	t.Logf("%d messages acknowledged before SIGKILL", len(ids))

	d2 := startDaemon(t, cfg)
	_ = dialESME(t, d2.smppAddr, sink.handler())
	sink.waitAll(t, ids, 60*time.Second)

	got := map[string]int{}
	for _, m := range sim.Received() {
		got[m.Dest]++
	}
	dups := 0
	for _, id := range ids {
		n := got[acked[id]]
		if n == 0 {
			t.Errorf("message %s to %s acknowledged but never reached the SMSC", id, acked[id])
		}
		if n > 1 {
			dups++
		}
	}
	t.Logf("duplicates at the SMSC after the crash: %d of %d", dups, len(ids))
}

// TestGracefulShutdown: SIGTERM makes the daemon unbind its ESMEs, keep
// what it has not sent, and exit 0; a restart delivers the rest.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	// An upstream that throttles everything keeps messages in the store.
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Faults: smpp.Faults{Throttle: 1}})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := range 20 {
		id, err := submit(ctx, c, fmt.Sprintf("1370000%04d", i), "graceful")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done(): // the daemon unbound us
	case <-time.After(20 * time.Second):
		t.Fatal("ESME not unbound after SIGTERM")
	}
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, d.log())
	}
	if n := len(sim.Received()); n != 0 {
		t.Fatalf("throttling simulator accepted %d messages", n)
	}
	sim.SetFaults(smpp.Faults{})
	d2 := startDaemon(t, cfg)
	_ = dialESME(t, d2.smppAddr, sink.handler())
	sink.waitAll(t, ids, 30*time.Second)
}

// TestGracefulShutdownWaitsForTheSMSC: segments out at the SMSC when
// SIGTERM comes are answered and recorded before qxtd unbinds and exits,
// so a restart sends none of them again (each would reach a handset
// twice). The SMSC holds its answers until the stop has begun.
func TestGracefulShutdownWaitsForTheSMSC(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	// Held, not delayed: with a fixed delay, a slow machine had the first
	// segments answered before the last were out, and never all ten out
	// at once.
	hold := make(chan struct{})
	sim, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Faults: smpp.Faults{Hold: hold}})
	cfg := writeConfig(t, dir, simAddr, "")
	// The answers are held from the segments' sending until after the
	// stop has begun: on a loaded machine (CI, -race, every package at
	// once) that outlasted the test config's 2 s resp_timeout once, and
	// the segments, taken for unanswered, were sent again after the
	// restart. The stop waits up to resp_timeout for each answer.
	setRespTimeout(t, cfg, "30s")
	d := startDaemon(t, cfg)
	sink := newSink()
	c := dialESME(t, d.smppAddr, sink.handler())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, dests := submitEach(ctx, t, c, "1371111%04d", n, "in flight at the stop")
	deadline := time.Now().Add(10 * time.Second)
	for sim.Answering() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d segments out at the SMSC", sim.Answering(), n)
		}
		tm := time.NewTimer(5 * time.Millisecond) // the simulator has no signal for it
		<-tm.C
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "shutting down", 0, 10*time.Second)
	// The stop must wait for the answers: qxtd still runs while they are
	// held (a stop that did not wait would exit at once).
	held := time.NewTimer(300 * time.Millisecond)
	select {
	case <-d.exited:
		t.Fatalf("qxtd exited with %d segments unanswered at the SMSC:\n%s", sim.Answering(), d.log())
	case <-held.C:
	}
	sim.SetFaults(smpp.Faults{})
	close(hold)
	select {
	case <-d.exited:
	case <-ctx.Done():
		t.Fatalf("daemon did not exit after SIGTERM:\n%s", d.log())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, d.log())
	}
	d2 := startDaemon(t, cfg)
	_ = dialESME(t, d2.smppAddr, sink.handler())
	sink.waitAll(t, ids, 30*time.Second)
	// Arrived, not Received: the simulator records a message only when it
	// answers, so a segment cut off while held and sent again after the
	// restart would be received once but have arrived twice.
	arrived := sim.Arrived()
	for dst := range dests {
		if arrived[dst] != 1 {
			t.Errorf("%s reached the SMSC %d times, want once", dst, arrived[dst])
		}
	}
	if t.Failed() {
		t.Logf("the stopped daemon's log:\n%s\nthe restarted one's:\n%s", d.log(), d2.log())
	}
}

// setRespTimeout sets the upstream's resp_timeout in the configuration
// file at path (a writeConfig one, where it is 2s) to d.
func setRespTimeout(t *testing.T, path, d string) {
	t.Helper()
	replaceInConfig(t, path, "resp_timeout: 2s", "resp_timeout: "+d)
}

// replaceInConfig replaces the first old in the configuration file at
// path with new; a file without old fails the test.
func replaceInConfig(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("no %q in the configuration %s", old, path)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// submitEach submits text to n destinations (dstFormat of 0 … n-1) and
// returns the message ids and the destinations.
func submitEach(ctx context.Context, t *testing.T, c *smpp.Conn, dstFormat string, n int, text string) ([]string, map[string]bool) {
	t.Helper()
	var ids []string
	dests := map[string]bool{}
	for i := range n {
		dst := fmt.Sprintf(dstFormat, i)
		id, err := submit(ctx, c, dst, text)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		dests[dst] = true
	}
	return ids, dests
}

// TestGracefulShutdownSendsReceiptsOnce: receipts out at an ESME that
// answers slowly when SIGTERM comes are answered before it is unbound, and
// their answers recorded: after the restart none is sent again.
func TestGracefulShutdownSendsReceiptsOnce(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		out    int // receipts being answered
		slow   = true
	)
	// The slow ESME answers the receipts only once the stop has begun.
	release := make(chan struct{})
	wake := make(chan struct{}, 1)
	h := smpp.HandlerFunc(func(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		rc, err := smpp.ParseReceipt(p)
		if err != nil {
			return pdu.NewDeliverSMResp()
		}
		mu.Lock()
		counts[rc.ID]++
		out++
		wait := slow
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
		if wait {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		mu.Lock()
		out--
		mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
	c := dialESME(t, d.smppAddr, h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := range n {
		id, err := submit(ctx, c, fmt.Sprintf("1372222%04d", i), "receipt at the stop")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for {
		mu.Lock()
		held := out
		mu.Unlock()
		if held == n {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatalf("%d of %d receipts out at the ESME", held, n)
		}
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "shutting down", 0, 10*time.Second)
	close(release)
	select {
	case <-d.exited:
	case <-ctx.Done():
		t.Fatalf("daemon did not exit after SIGTERM:\n%s", d.log())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, d.log())
	}

	mu.Lock()
	slow = false
	mu.Unlock()
	d2 := startDaemon(t, cfg)
	c2 := dialESME(t, d2.smppAddr, h)
	// Receipts still pending go out before a newer one (oldest first):
	// once the newer one is here, any repeat would have come.
	last, err := submit(ctx, c2, "13722229999", "after the restart")
	if err != nil {
		t.Fatal(err)
	}
	for {
		mu.Lock()
		got := counts[last]
		mu.Unlock()
		if got > 0 {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("no receipt after the restart")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if counts[id] != 1 {
			t.Errorf("receipt %s reached the ESME %d times, want once", id, counts[id])
		}
	}
}

// TestReadmeErrorTable keeps the README's refusal table equal to the code's.
func TestReadmeErrorTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), policy.ReasonTable()) {
		t.Fatalf("README.md does not contain policy.ReasonTable():\n%s", policy.ReasonTable())
	}
}

// TestDaemonHealthAndLogLevel: /readyz turns ready once an upstream bind
// is up; the log level changes at run time through the admin API (debug
// lines appear only after the change), and only with the token.
func TestDaemonHealthAndLogLevel(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, dir, simAddr, ""))
	base := "http://" + d.httpAddr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d", resp.StatusCode)
		}
		tm := time.NewTimer(50 * time.Millisecond) // readiness has no event to wait on from outside
		<-tm.C
	}
	put := func(token, body string) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/admin/v1/log-level", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("", "debug"); code != http.StatusUnauthorized {
		t.Fatalf("log level without token: %d", code)
	}
	if code := put("test-token", "loud"); code != http.StatusBadRequest {
		t.Fatalf("bad log level: %d", code)
	}
	if strings.Contains(d.log(), `"level":"DEBUG"`) {
		t.Fatal("debug lines before the level was lowered")
	}
	// Through api.Client, as `qxtd admin daemon log-level` sets it.
	cl := &api.Client{Base: base, Token: "test-token"}
	if now, err := cl.SetLogLevel(context.Background(), "debug"); err != nil || now != "DEBUG" {
		t.Fatalf("log level debug: %q, %v", now, err)
	}
	// Any activity now logs at debug: an SMPP bind attempt does.
	c := dialESME(t, d.smppAddr, nil)
	_ = c
	for !strings.Contains(d.log(), `"level":"DEBUG"`) {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("no debug line after the change:\n%s", d.log())
		}
		tm := time.NewTimer(50 * time.Millisecond)
		<-tm.C
	}
}

// postJSON sends body to the daemon's HTTP API with a bearer token.
func postJSON(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReceived waits until the simulator accepted a message for dest.
func waitReceived(t *testing.T, sim *smpp.Simulator, dest string, d time.Duration) []smpp.SimMessage {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var got []smpp.SimMessage
		for _, m := range sim.Received() {
			if m.Dest == dest {
				got = append(got, m)
			}
		}
		if len(got) > 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing reached the SMSC for %s", dest)
		}
		tm := time.NewTimer(20 * time.Millisecond) // the simulator has no per-destination signal
		<-tm.C
	}
}

// TestPasswordResetSMS: a password reset sends the new password by SMS to
// the registered mobile, through qxtd itself, signed as the operator's
// notification enterprise; the new password then binds.
func TestPasswordResetSMS(t *testing.T) {
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, `  - system_id: reset1
    password: oldpw01
    enterprise: T1
    name: 王五
    mobile: "13712345670"
`)
	b, _ := os.ReadFile(cfg)
	extra := strings.Replace(string(b), "policy: { bcrypt_cost: 4 }",
		"policy: { bcrypt_cost: 4, notify_enterprise: SYS, notify_source: \"10658000\" }", 1)
	extra = strings.Replace(extra, "enterprises:\n", "enterprises:\n  - { code: SYS, signature: \"【企信通】\", national: true, offnet: true, no_whitelist: true, tps: 1000 }\n", 1)
	if err := os.WriteFile(cfg, []byte(extra), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	base := "http://" + d.httpAddr
	code, body := postJSON(t, http.MethodPost, base+"/admin/v1/password-reset", "test-token",
		`{"group_code":"T1","user_name":"王五","mobile":"13712345670"}`)
	if code != http.StatusAccepted {
		t.Fatalf("reset: %d %s", code, body)
	}
	msgs := waitReceived(t, sim, "13712345670", 20*time.Second)
	frames := []segment.Frame{{ESMClass: msgs[0].ESMClass, DataCoding: msgs[0].DataCoding, ShortMessage: msgs[0].ShortMessage, TLVs: msgs[0].TLVs}}
	text, err := segment.Reassemble(frames, segment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, "【企信通】") {
		t.Fatalf("reset SMS %q is not signed by the notification enterprise", text)
	}
	// The new password is the last run of printable non-space ASCII.
	fields := strings.FieldsFunc(text, func(r rune) bool { return r > 0x7E || r <= ' ' || r == ':' || r == '：' })
	if len(fields) == 0 {
		t.Fatalf("no password in %q", text)
	}
	pw := fields[len(fields)-1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: d.smppAddr, SystemID: "reset1", Password: pw, Kind: smpp.BindTransmitter})
	if err != nil {
		t.Fatalf("bind with the new password %q from %q: %v", pw, text, err)
	}
	_ = c.Close()
}

// TestScheduledAcrossRestart: a message due while the daemon is down goes
// out once, at once, after the restart.
func TestScheduledAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	sim, simAddr := startSim(t, smpp.SimOptions{})
	cfg := writeConfig(t, dir, simAddr, "")
	d := startDaemon(t, cfg)
	c := dialESME(t, d.smppAddr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := pdu.NewSubmitSM(nil)
	_ = p.Fields().Set(pdufield.SourceAddr, "1069")
	_ = p.Fields().Set(pdufield.DestinationAddr, "13700000001")
	_ = p.Fields().Set(pdufield.ShortMessage, []byte("due during downtime"))
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000000001000R") // in 1 s
	if _, err := c.Request(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if n := len(sim.Received()); n != 0 {
		t.Fatalf("sent before its time (%d)", n)
	}
	// Stay down past the due time: the store is closed, nothing can send.
	tm := time.NewTimer(1500 * time.Millisecond)
	<-tm.C
	start := time.Now()
	_ = startDaemon(t, cfg)
	got := waitReceived(t, sim, "13700000001", 15*time.Second)
	t.Logf("sent %v after the restart", time.Since(start))
	if len(got) != 1 {
		t.Fatalf("sent %d times, want once", len(got))
	}
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bench account on qxtd (SMPP passwords are 6–8 characters).
const (
	benchSystemID = "bench"
	benchPassword = "bench123"
)

// daemonOpts is how qxtd is set up for a run.
type daemonOpts struct {
	Bin, BaseConfig, PeerAddr string
	Binds, Window             int            // of the upstream to the peer
	RecordingSlots            int            // upstreams[].recording_slots; 0 leaves it out (older builds refuse the key)
	CommitDelay               *time.Duration // store.commit_delay; nil leaves it out (older builds refuse the key)
	RecordDelay               *time.Duration // store.record_delay; likewise
	IngressWindow             int            // smpp.window; 0 keeps the base file's
	ReceiptBatch              int            // the bench enterprise's receipt_batch; 0 leaves it out (older builds refuse the key)
	// Tenants is how many enterprises (one account each) the bench
	// configures: the first is BENCH with the bench account, the others
	// the same with a number (tenants.go); 0 is 1.
	Tenants    int
	ProfileDir string // where runOne puts each qxtd scenario's CPU profile; "" none
	CPUProfile string // qxtd serve --cpuprofile (written when it stops); "" none
	MemProfile string // qxtd serve --memprofile (written when it stops); "" none
	// Etcd, for a cluster scenario: qxtd joins it as node 1 under
	// EtcdPrefix (a new one per run, so runs share nothing).
	Etcd       []string
	EtcdPrefix string
	NodeID     int // cluster.node_id; 0 is 1
	// Unbound: the upstream is expected to be down (PeerAddr nobody's),
	// so the daemon counts as started once /readyz answers at all.
	Unbound bool
	// Place, when not nil, is given the pid of every qxtd started
	// (-hog-cgroup: it moves qxtd into its cgroup).
	Place func(pid int) error
}

// daemon is a running `qxtd serve`.
type daemon struct {
	cmd      *exec.Cmd
	dir      string
	SMPPAddr string
	HTTPAddr string
	LogPath  string
	exited   chan struct{}
	waitErr  error
	bin      string
	args     []string
	relays   bool                // a cluster node meant to hold no bind: ready without one
	unbound  bool                // daemonOpts.Unbound
	place    func(pid int) error // daemonOpts.Place
	// poll is how often waitReady asks /readyz (0: every 100 ms); the
	// restart scenario asks every few milliseconds to time it.
	poll time.Duration
}

// freeAddr is a loopback address nobody listens on (now), for a process
// to listen on later. Its port is drawn below the kernel's ephemeral
// range: a port of that range found free can be given to an outgoing
// connection of this machine before the process listens (a run's round
// and a CI run failed so, 2026-12-05), one below it only to a listener
// that names it. Where the range cannot be read, or nothing below it is
// free in 64 draws, the kernel picks (":0"), as before.
func freeAddr() (string, error) {
	if lo := ephemeralLow(); lo > 2048 {
		for range 64 {
			p := lo/2 + rand.IntN(lo-lo/2)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err == nil {
				ln.Close()
				return ln.Addr().String(), nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, 0 if
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, _ := strconv.Atoi(f[0])
	return lo
}

// derivedConfig is the base file with the benchmark's changes: the
// simulator off, one upstream (the peer), the bench enterprise (no
// whitelist, every scope, the biggest package with no cap, the highest
// rate) and account, the store in dir, log level warn.
func derivedConfig(base []byte, o daemonOpts, dir, smppAddr, httpAddr string) ([]byte, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal(base, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", o.BaseConfig, err)
	}
	section := func(k string) map[string]any {
		s, ok := m[k].(map[string]any)
		if !ok {
			s = map[string]any{}
			m[k] = s
		}
		return s
	}
	section("smpp")["listen"] = smppAddr
	if o.IngressWindow > 0 {
		section("smpp")["window"] = o.IngressWindow
	}
	section("http")["listen"] = httpAddr
	section("store")["path"] = filepath.Join(dir, "qxtd.db")
	if o.CommitDelay != nil {
		section("store")["commit_delay"] = o.CommitDelay.String()
	}
	if o.RecordDelay != nil {
		section("store")["record_delay"] = o.RecordDelay.String()
	}
	section("simulator")["enabled"] = false
	// The HTTP scenarios: the load client keeps -window connections from
	// one address, and receipts go back to it on loopback, as many at
	// once as Kannel's smsbox would call its dlr-urls.
	section("http")["max_conns_per_addr"] = 512
	section("webhooks")["allow_private"] = true
	section("webhooks")["workers"] = 128
	section("webhooks")["per_enterprise"] = 128
	section("log")["level"] = "warn"
	section("log")["format"] = "json" // explicit: every qxtd version reads it (auto is newer)
	up := map[string]any{
		"name": "bench-peer", "addr": o.PeerAddr, "system_id": "qxtd", "password": "qxtd",
		"binds": o.Binds, "window": o.Window, "tps": 0, "concat": "udh8",
	}
	if o.RecordingSlots > 0 {
		up["recording_slots"] = o.RecordingSlots
	}
	m["upstreams"] = []any{up}
	ents, _ := m["enterprises"].([]any)
	bench := map[string]any{
		"code": "BENCH", "name": "压测企业", "signature": "【压测】", "package": 12,
		"national": true, "offnet": true, "no_whitelist": true, "tps": 100000,
	}
	if o.ReceiptBatch > 0 {
		bench["receipt_batch"] = o.ReceiptBatch
	}
	m["enterprises"] = append(ents, bench)
	accts, _ := m["accounts"].([]any)
	m["accounts"] = append(accts, map[string]any{
		"system_id": benchSystemID, "password": benchPassword, "enterprise": "BENCH", "name": "bench",
	})
	for i := 1; i < o.Tenants; i++ {
		m["enterprises"] = append(m["enterprises"].([]any), map[string]any{
			"code": tenantEnterprise(i), "name": fmt.Sprintf("压测企业%d", i+1), "signature": "【压测】", "package": 12,
			"national": true, "offnet": true, "no_whitelist": true, "tps": 100000,
		})
		m["accounts"] = append(m["accounts"].([]any), map[string]any{
			"system_id": tenantAccount(i), "password": benchPassword, "enterprise": tenantEnterprise(i), "name": tenantAccount(i),
		})
	}
	if o.Tenants > 1 {
		// Every tenant's password is hashed at the start and checked at
		// its bind: at the default cost that is seconds of CPU per start
		// for a hundred tenants, none of it what the run measures.
		section("policy")["bcrypt_cost"] = 4
	}
	if len(o.Etcd) > 0 {
		m["cluster"] = map[string]any{
			"etcd_endpoints": o.Etcd, "node_id": max(o.NodeID, 1), "peer_listen": "127.0.0.1:0",
			"secret": "qxtd-bench-cluster-secret", "prefix": o.EtcdPrefix,
		}
		// A spending cap, so that the run takes its quota from the
		// cluster's counter (blocks, not a request per message): on
		// every tenant's enterprise, the last ones listed.
		ents := m["enterprises"].([]any)
		for _, e := range ents[len(ents)-max(o.Tenants, 1):] {
			e.(map[string]any)["cap_yuan"] = "100000000"
		}
	}
	return yaml.Marshal(m)
}

// Metric is the sum of every series of the named metric at qxtd's
// /metrics.
func (d *daemon) Metric(name string) (float64, error) {
	m, err := d.Metrics(name)
	return m[name], err
}

// Metrics is Metric for several names from one scrape of /metrics.
func (d *daemon) Metrics(names ...string) (map[string]float64, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + d.HTTPAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return sumMetrics(string(b), names), nil
}

// sumMetrics sums, for each name, the samples of the Prometheus text
// exposition whose series starts with it: the bare name, or the name with
// labels (every series of the metric, or those the labels given select).
func sumMetrics(text string, names []string) map[string]float64 {
	sums := make(map[string]float64, len(names))
	for l := range strings.Lines(text) {
		l = strings.TrimSuffix(l, "\n")
		for _, name := range names {
			rest, ok := strings.CutPrefix(l, name)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
			if err == nil {
				sums[name] += v
			}
		}
	}
	return sums
}

// startDaemon writes the derived configuration, checks it with
// `qxtd serve --check`, starts `qxtd serve` and waits for /readyz to say
// ready (every bind to the peer up).
func startDaemon(ctx context.Context, o daemonOpts) (*daemon, error) {
	for attempt := 1; ; attempt++ {
		d, err := startDaemonOnce(ctx, o)
		if err == nil || attempt == portAttempts || !errors.Is(err, errPortTaken) {
			return d, err
		}
	}
}

// portAttempts is how many times startDaemon tries, each with new ports.
const portAttempts = 3

// errPortTaken is a qxtd (or a Kannel box) that could not listen on a
// port freeAddr had found free: between that check and the listen,
// another socket took it. startDaemon and startKannel try again with new
// ports.
var errPortTaken = errors.New("a port was taken before it was listened on")

func startDaemonOnce(ctx context.Context, o daemonOpts) (*daemon, error) {
	base, err := os.ReadFile(o.BaseConfig)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "qxtd-bench-")
	if err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, LogPath: filepath.Join(dir, "qxtd.log"), exited: make(chan struct{}), relays: o.NodeID > 1, unbound: o.Unbound, place: o.Place}
	ok := false
	defer func() {
		if !ok {
			d.Remove() // runOne removes it only once started
		}
	}()
	if d.SMPPAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if d.HTTPAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	cfg, err := derivedConfig(base, o, dir, d.SMPPAddr, d.HTTPAddr)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, o.Bin, "serve", "--check", "--config", path).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s serve --check: %v: %s", o.Bin, err, out)
	}
	d.args = []string{"serve", "--config", path}
	if o.CPUProfile != "" {
		d.args = append(d.args, "--cpuprofile", o.CPUProfile)
	}
	if o.MemProfile != "" {
		d.args = append(d.args, "--memprofile", o.MemProfile)
	}
	d.bin = o.Bin
	if err := d.start(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	ok = true
	return d, nil
}

// start runs `qxtd serve` (again, after a Kill: the same store,
// configuration and ports), its output appended to the log, and waits for
// /readyz to say ready.
func (d *daemon) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.cmd = exec.Command(d.bin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	cmd, exited := d.cmd, make(chan struct{})
	d.exited = exited
	go func() {
		d.waitErr = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	if d.place != nil {
		if err := d.place(cmd.Process.Pid); err != nil {
			return err
		}
	}
	return d.waitReady(ctx, 30*time.Second)
}

// Kill ends qxtd with SIGKILL (no shutdown of any kind) and waits for it
// to be gone.
func (d *daemon) Kill() error {
	if d.cmd == nil || d.cmd.Process == nil {
		return errors.New("qxtd not running")
	}
	if err := d.cmd.Process.Kill(); err != nil {
		return err
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("qxtd still running 10 s after SIGKILL")
	}
}

func (d *daemon) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	hc := http.Client{Timeout: time.Second}
	last := ""
	poll := d.poll
	if poll == 0 {
		poll = 100 * time.Millisecond
	}
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			log := d.tail(20)
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("%w: qxtd exited at start (%v); its log:\n%s", errPortTaken, d.waitErr, log)
			}
			return fmt.Errorf("qxtd exited at start (%v); its log:\n%s", d.waitErr, log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		resp, err := hc.Get("http://" + d.HTTPAddr + "/readyz")
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = strings.TrimSpace(string(b))
		if d.unbound {
			return nil
		}
		if resp.StatusCode == http.StatusOK && (last == "ready" || allBindsHere(last) ||
			(d.relays && strings.HasPrefix(last, "ready: cluster node"))) {
			return nil
		}
	}
	return fmt.Errorf("qxtd not ready after %v: /readyz said %q", limit, last)
}

// Stop ends qxtd: SIGTERM, then SIGKILL after 10 s.
func (d *daemon) Stop() { _ = d.stopTerm() }

// stopTerm is Stop that says when the stop was not a clean one: qxtd
// needed the SIGKILL, or exited with an error (a measurement of the next
// start would be of a crash's file).
func (d *daemon) stopTerm() error {
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			return fmt.Errorf("qxtd exited on SIGTERM: %v; its log:\n%s", d.waitErr, d.tail(10))
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("qxtd did not stop within 10 s of SIGTERM: killed")
	}
}

// Remove deletes the daemon's directory (store, configuration, log).
func (d *daemon) Remove() { _ = os.RemoveAll(d.dir) }

// CPU is qxtd's user+system CPU time so far, from /proc/<pid>/stat
// (clock ticks of 10 ms: USER_HZ is 100 on Linux).
func (d *daemon) CPU() (time.Duration, error) {
	return procCPU(d.cmd.Process.Pid)
}

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// Written is the bytes qxtd has caused to be written to storage so far
// (/proc/<pid>/io write_bytes): its store's pages, counted when they are
// dirtied in the page cache, so at the commit that writes them.
func (d *daemon) Written() (int64, error) {
	return procWritten(d.cmd.Process.Pid)
}

func procWritten(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "write_bytes:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no write_bytes in /proc io")
}

// selfCPU is this process's user+system CPU time (client and peer).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// LogLines are qxtd's log lines (warn and error: the level is warn).
func (d *daemon) LogLines() []string {
	f, err := os.Open(d.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func (d *daemon) tail(n int) string {
	l := d.LogLines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// SaveMetrics writes qxtd's /metrics, as it is now, to path.
func (d *daemon) SaveMetrics(path string) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + d.HTTPAddr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var bindsHere = regexp.MustCompile(`(\d+) of (\d+) binds here`)

// allBindsHere reads a cluster node's /readyz ("ready: cluster node 1;
// upstream bench-peer 2 of 2 binds here"): ready with every bind of the
// upstream on this node, as the single-node scenarios start.
func allBindsHere(s string) bool {
	if !strings.HasPrefix(s, "ready: cluster node") {
		return false
	}
	ms := bindsHere.FindAllStringSubmatch(s, -1)
	for _, m := range ms {
		if m[1] != m[2] {
			return false
		}
	}
	return len(ms) > 0
}

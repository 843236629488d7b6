package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qxtd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       benchConfig
		o         daemonOpts
		only      = fs.String("scenarios", "", "comma-separated subset of: "+names())
		jsonPath  = fs.String("json", "", "also write one JSON line per scenario to this file (with -rounds, its median round's)")
		roundsOut = fs.String("json-rounds", "", "also write one JSON line per round of every scenario to this file, in the order they ran (\"round\" says which)")
		dlrDelay  = fs.Duration("dlr-delay", 100*time.Millisecond, "the peer's delay before a receipt")
		timeout   = fs.Duration("timeout", 15*time.Minute, "the whole run at most")
		showLines = fs.Int("log-lines", 5, "qxtd log lines (warn and error) to show per qxtd scenario")
	)
	fs.IntVar(&cfg.N, "n", 20000, "messages per measured run")
	rounds := fs.Int("rounds", 1, "run every scenario this many times, interleaved, and report the median run of each (by relayed rate)")
	baseline := fs.String("baseline", "", "a second qxtd binary (e.g. the previous commit's): its qxtd scenarios run beside the -qxtd ones, named base:…")
	fs.IntVar(&cfg.Warmup, "warmup", 1000, "messages sent (and answered, and receipted) before each measured run")
	fs.IntVar(&cfg.Window, "window", 100, "the client's outstanding submit_sm")
	fs.IntVar(&cfg.Tenants, "tenants", 1, "enterprises sending at once, one account and one bind each, sharing -n, -window and -offered (the SMPP scenarios: direct, qxtd, their +hog, qxtd-cluster)")
	fs.IntVar(&cfg.Queued, "queued", 1_000_000, "messages queued before the timed start of qxtd/restart")
	fs.IntVar(&cfg.Bulk, "bulk", 100, "the bulk scenarios' recipients a request (one text to that many numbers; qxtd takes up to 1,000)")
	fs.IntVar(&cfg.BulkWindow, "bulk-window", 4, "the bulk scenarios' requests outstanding")
	fs.Float64Var(&cfg.Offered, "offered", 0, "pace submits at this rate (msg/s); 0 = as fast as the window allows")
	fs.DurationVar(&cfg.Stall, "stall", 20*time.Second, "a run with no progress for this long fails")
	fs.StringVar(&o.Bin, "qxtd", "bin/qxtd", "the qxtd binary")
	fs.StringVar(&o.BaseConfig, "config", "configs/qxtd.yaml", "qxtd configuration the run's is derived from")
	fs.IntVar(&o.Binds, "binds", 2, "qxtd's binds to the peer")
	fs.IntVar(&o.Window, "upstream-window", 100, "qxtd's window per bind to the peer")
	fs.IntVar(&o.RecordingSlots, "recording-slots", 0, "qxtd's upstreams[].recording_slots (0: left out, as older builds refuse it; with -baseline, both binaries get it)")
	fs.Func("commit-delay", "qxtd's store.commit_delay, 0s included (not given: left out, qxtd's default, as older builds refuse the key; with -baseline, both binaries get it)", durationFlag(&o.CommitDelay))
	fs.Func("record-delay", "qxtd's store.record_delay, as -commit-delay", durationFlag(&o.RecordDelay))
	fs.IntVar(&o.IngressWindow, "ingress-window", 0, "qxtd's smpp.window (per ESME bind); 0 keeps the config file's")
	fs.IntVar(&o.ReceiptBatch, "receipt-batch", 0, "the bench enterprise's receipt_batch: receipts one webhook POST may carry in the qxtd-http scenarios (0: left out, qxtd's default of one, as older builds refuse the key; with -baseline, both binaries get it)")
	hogCgroup := fs.String("hog-cgroup", "", "a cgroup directory (v2 with the cpu controller for its children, or v1's cpu hierarchy) to put qxtd, the +hog scenarios' hog and the bench in groups of their own under, as systemd units would be (cgroup.go); needs the right to write there")
	gatewayWeight := fs.Int("gateway-weight", 100, "with -hog-cgroup, qxtd's CPU weight on systemd's CPUWeight scale (100 is the default; the hog has 100, the bench 1000)")
	fs.StringVar(&o.ProfileDir, "cpuprofile-dir", "", "write qxtd's CPU profile (DIR/<scenario>.pprof), its allocation profile (DIR/<scenario>.allocs.pprof) and its /metrics at the end of the run (DIR/<scenario>.metrics) for each qxtd scenario; with -rounds, one set a round (DIR/<scenario>.r1.pprof, …)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	scenarios := allScenarios
	if *only != "" {
		scenarios = nil
		known := slices.Concat(allScenarios, extraScenarios)
		for _, n := range strings.Split(*only, ",") {
			i := slices.IndexFunc(known, func(s scenario) bool { return s.Name == strings.TrimSpace(n) })
			if i < 0 {
				fmt.Fprintf(stderr, "qxtd-bench: unknown scenario %q (have %s)\n", n, names())
				return 2
			}
			scenarios = append(scenarios, known[i])
		}
	}
	if cfg.N < 1 || cfg.Window < 1 || cfg.Warmup < 0 || cfg.Queued < 1 || cfg.Tenants < 1 || cfg.Bulk < 1 || cfg.BulkWindow < 1 {
		fmt.Fprintln(stderr, "qxtd-bench: -n, -window, -queued, -tenants, -bulk and -bulk-window must be at least 1, -warmup not negative")
		return 2
	}
	if cfg.Tenants > 1 {
		for _, sc := range scenarios {
			if sc.Kill || sc.Restart || sc.Relay || sc.HTTP || sc.Kannel {
				fmt.Fprintf(stderr, "qxtd-bench: -tenants is for the SMPP scenarios, not %s\n", sc.Name)
				return 2
			}
		}
	}
	o.Tenants = cfg.Tenants
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			fmt.Fprintln(stderr, "qxtd-bench: -cpuprofile-dir:", err)
			return 2
		}
	}

	var cg *cgroups
	if *hogCgroup != "" {
		var err error
		if cg, err = openCgroups(*hogCgroup, *gatewayWeight); err != nil {
			fmt.Fprintln(stderr, "qxtd-bench:", err)
			return 2
		}
		defer cg.Close()
	}
	o.Place = cg.placer(cgGateway)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	peerCtx, stopPeer := context.WithCancel(ctx)
	peer, err := StartPeer(peerCtx, "127.0.0.1:0", *dlrDelay)
	if err != nil {
		stopPeer()
		fmt.Fprintln(stderr, "qxtd-bench: peer:", err)
		return 1
	}
	defer func() { stopPeer(); peer.Wait() }()
	o.PeerAddr = peer.Addr()

	if *baseline != "" {
		var with []scenario
		for _, sc := range scenarios {
			with = append(with, sc)
			if sc.Qxtd {
				b := sc
				b.Name, b.Bin = "base:"+sc.Name, *baseline
				with = append(with, b)
			}
		}
		scenarios = with
	}
	var runs []scenario
	for k := range max(1, *rounds) {
		for _, sc := range scenarios {
			if *rounds > 1 {
				sc.Round = k + 1
			}
			runs = append(runs, sc)
		}
	}

	began := time.Now()
	var results []Result
	failed := false
	for _, sc := range runs {
		t0 := time.Now()
		res, lines, err := runOne(ctx, cfg, o, sc, peer, cg)
		if err != nil {
			res.Err = err.Error()
			failed = true
		}
		res.QxtdLogLines = len(lines)
		res.Round = sc.Round
		results = append(results, res)
		fmt.Fprintf(stderr, "qxtd-bench: %s done in %.1fs", sc.Name, time.Since(t0).Seconds())
		if err != nil {
			fmt.Fprintf(stderr, ": FAILED: %v", err)
		}
		fmt.Fprintln(stderr)
		if sc.Qxtd || sc.Kannel {
			fmt.Fprintf(stderr, "qxtd-bench: %s: the gateway logged %d lines at warn or above\n", sc.Name, len(lines))
			for _, l := range lines[:min(len(lines), *showLines)] {
				fmt.Fprintln(stderr, "  ", l)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	all := results
	results = medians(results)
	compare(results)
	fmt.Fprintf(stdout, "qxtd-bench: rounds=%d (median of each) n=%d warm-up=%d window=%d tenants=%d binds=%d upstream window=%d dlr delay=%v offered=%s\n\n",
		max(1, *rounds), cfg.N, cfg.Warmup, cfg.Window, cfg.Tenants, o.Binds, o.Window, *dlrDelay, offered(cfg.Offered))
	writeTable(stdout, results)
	writeSpread(stdout, all)
	fmt.Fprintf(stdout, "\nwhole run: %.1fs\n", time.Since(began).Seconds())
	for _, out := range []struct {
		flag, path string
		rs         []Result
	}{{"-json", *jsonPath, results}, {"-json-rounds", *roundsOut, all}} {
		if out.path == "" {
			continue
		}
		if err := writeJSONFile(out.path, out.rs); err != nil {
			fmt.Fprintf(stderr, "qxtd-bench: %s: %v\n", out.flag, err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

// runOne runs one scenario, starting (and stopping) qxtd for it when it
// goes through qxtd; lines are qxtd's log lines.
func runOne(ctx context.Context, cfg benchConfig, o daemonOpts, sc scenario, peer *Peer, cg *cgroups) (Result, []string, error) {
	if !sc.Hog {
		return runGateway(ctx, cfg, o, sc, peer)
	}
	stop, pid, err := startHog(cg.placer(cgHog))
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
	}
	defer stop()
	// runScenario measures what the hog takes over the measured interval:
	// the share of the machine that the rate beside it may fairly lose.
	cfg.HogPID = pid
	return runGateway(ctx, cfg, o, sc, peer)
}

// runGateway runs one scenario without its hog (runOne starts that).
func runGateway(ctx context.Context, cfg benchConfig, o daemonOpts, sc scenario, peer *Peer) (Result, []string, error) {
	if sc.Kannel {
		return runKannel(ctx, cfg, o, sc, peer)
	}
	if !sc.Qxtd {
		res, err := runScenario(ctx, cfg, sc, peer, peer.Addr(), nil)
		return res, nil, err
	}
	if sc.Bin != "" {
		o.Bin = sc.Bin
	}
	if o.ProfileDir != "" && !sc.Kill { // a killed qxtd writes no profile
		o.CPUProfile = filepath.Join(o.ProfileDir, fileBase(sc)+".pprof")
		o.MemProfile = filepath.Join(o.ProfileDir, fileBase(sc)+".allocs.pprof")
	}
	if sc.Cluster {
		endpoints, err := benchEtcd()
		if err != nil {
			return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
		}
		o.Etcd, o.EtcdPrefix = endpoints, fmt.Sprintf("/qxtd-bench/%d/", time.Now().UnixNano())
	}
	if sc.Relay {
		return runRelay(ctx, cfg, o, sc, peer)
	}
	if sc.Restart {
		o.CPUProfile, o.MemProfile = "", "" // several starts: a profile would be of the last only
		return runRestart(ctx, cfg, o, sc, peer, cfg.Queued)
	}
	d, err := startDaemon(ctx, o)
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
	}
	defer d.Remove()
	var res Result
	switch {
	case sc.Kill:
		res, err = runKill(ctx, cfg, sc, peer, d)
	case sc.HTTP:
		res, err = runQxtdHTTP(ctx, cfg, sc, peer, d)
	default:
		res, err = runScenario(ctx, cfg, sc, peer, d.SMPPAddr, d)
	}
	if o.ProfileDir != "" {
		// qxtd's own view of the run (commit durations and batch sizes,
		// receipt delays…) beside its CPU profile.
		path := filepath.Join(o.ProfileDir, fileBase(sc)+".metrics")
		if merr := d.SaveMetrics(path); merr != nil {
			fmt.Fprintln(os.Stderr, "qxtd-bench: metrics:", merr)
		}
	}
	d.Stop()
	return res, d.LogLines(), err
}

// runRelay runs a relay scenario: node 1 takes the one bind to the peer,
// node 2 joins with none, and the client binds to node 2.
func runRelay(ctx context.Context, cfg benchConfig, o daemonOpts, sc scenario, peer *Peer) (Result, []string, error) {
	fail := func(err error) (Result, []string, error) {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
	}
	o.Binds, o.CPUProfile, o.MemProfile = 1, "", ""
	o.NodeID = 1
	n1, err := startDaemon(ctx, o)
	if err != nil {
		return fail(fmt.Errorf("node 1: %w", err))
	}
	defer n1.Remove()
	defer n1.Stop()
	o.NodeID = 2
	n2, err := startDaemon(ctx, o)
	if err != nil {
		return fail(fmt.Errorf("node 2: %w", err))
	}
	defer n2.Remove()
	defer n2.Stop()
	cl, err := Dial(ctx, n2.SMPPAddr, benchSystemID, benchPassword)
	if err != nil {
		return fail(err)
	}
	res, err := measure(ctx, cfg, sc, peer, cl, daemons{n1, n2}, n2)
	if o.ProfileDir != "" {
		for i, d := range []*daemon{n1, n2} {
			path := filepath.Join(o.ProfileDir, fmt.Sprintf("%s.node%d.metrics", fileBase(sc), i+1))
			if merr := d.SaveMetrics(path); merr != nil {
				fmt.Fprintln(os.Stderr, "qxtd-bench: metrics:", merr)
			}
		}
	}
	return res, append(n1.LogLines(), n2.LogLines()...), err
}

// daemons is the CPU of several qxtd nodes together.
type daemons []*daemon

func (ds daemons) CPU() (time.Duration, error) {
	var sum time.Duration
	for _, d := range ds {
		c, err := d.CPU()
		if err != nil {
			return 0, err
		}
		sum += c
	}
	return sum, nil
}

// runKannel runs a Kannel scenario: Kannel started for it (the same
// binds and window to the peer as qxtd gets), the HTTP load client.
func runKannel(ctx context.Context, cfg benchConfig, o daemonOpts, sc scenario, peer *Peer) (Result, []string, error) {
	k, err := startKannel(ctx, peer.Addr(), o.Binds, o.Window)
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
	}
	defer k.Stop()
	l, err := NewHTTPLoad(kannelTarget{addr: k.sendsmsAddr}, cfg.httpWindow(sc))
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, nil, err
	}
	l.Dropped = k.DroppedReceipts
	res, err := measure(ctx, cfg, sc, peer, l, k, nil)
	return res, k.LogLines(), err
}

// runQxtdHTTP runs a qxtd-http scenario: the HTTP load client on qxtd's
// API, logged in as the bench account.
func runQxtdHTTP(ctx context.Context, cfg benchConfig, sc scenario, peer *Peer, d *daemon) (Result, error) {
	t, err := loginQxtd(ctx, d.HTTPAddr)
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, err
	}
	var target httpTarget = t
	if sc.Personal {
		target = personalTarget{t}
	}
	l, err := NewHTTPLoad(target, cfg.httpWindow(sc))
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N}, err
	}
	return measure(ctx, cfg, sc, peer, l, d, d)
}

func names() string {
	var n []string
	for _, s := range allScenarios {
		n = append(n, s.Name)
	}
	for _, s := range extraScenarios {
		n = append(n, s.Name+" (only when named)")
	}
	return strings.Join(n, ", ")
}

func offered(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f/s", r)
}

// durationFlag sets *p to a duration given on the command line: a flag
// that, not given, leaves *p nil (the key out of qxtd's configuration).
func durationFlag(p **time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p = &d
		return nil
	}
}

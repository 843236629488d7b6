package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// scenario is one row of the table.
type scenario struct {
	Name     string
	Qxtd     bool // through qxtd; else the client binds to the peer directly
	Receipts bool
	Bin      string // the qxtd binary of this scenario; "" the -qxtd one
	Kill     bool   // the crash scenario (kill.go)
	Restart  bool   // the restart scenario (restart.go)
	// Cluster runs qxtd in cluster mode, one node on an etcd the bench
	// starts (cluster.go): what coordination costs a node.
	Cluster bool
	// Hog runs a busy loop at nice 19 beside the scenario (hog.go): how
	// much speed a background CPU hog on one core costs.
	Hog bool
	// Relay (with Cluster) runs two nodes sharing one bind to the peer:
	// the client binds to node 2, which holds none, so every segment is
	// relayed through node 1 (POST /peer/v1/relay) and its receipt comes
	// back through node 1 too. The gateway CPU is both nodes'.
	Relay bool
	// HTTP submits through the gateway's HTTP interface with the HTTP
	// load client (httpload.go) instead of SMPP; Kannel puts Kannel where
	// qxtd is (kannel.go).
	HTTP, Kannel bool
	// Bulk (with HTTP) sends -bulk recipients a request, -bulk-window
	// requests at once: a group send, one text to many numbers, as
	// enterprises send notices (qxtd's POST /v1/messages takes up to
	// 1,000 numbers, Kannel's sendsms numbers separated by spaces).
	Bulk bool
	// Personal (with Bulk, qxtd only) sends each number of a request its
	// own text: POST /v1/messages/personalized, as a client with
	// different texts (codes, names) sends them.
	Personal bool
	// Round is which round of -rounds this run is, from 1; 0 when there
	// is one round only. It names the run's profile files apart.
	Round int
}

// fileBase is the name of sc's files in -cpuprofile-dir: the scenario's
// name with "-" for "/", and the round (".r2") when there are several.
func fileBase(sc scenario) string {
	name := strings.ReplaceAll(sc.Name, "/", "-")
	if sc.Round > 0 {
		name += fmt.Sprintf(".r%d", sc.Round)
	}
	return name
}

// allScenarios in the order they run.
var allScenarios = []scenario{
	{Name: "direct/no-receipts"},
	{Name: "qxtd/no-receipts", Qxtd: true},
	{Name: "direct/receipts", Receipts: true},
	{Name: "qxtd/receipts", Qxtd: true, Receipts: true},
}

// extraScenarios run only when -scenarios names them.
var extraScenarios = []scenario{
	{Name: "qxtd/kill9", Qxtd: true, Receipts: true, Kill: true},
	{Name: "qxtd/restart", Qxtd: true, Restart: true},
	{Name: "qxtd-cluster/no-receipts", Qxtd: true, Cluster: true},
	{Name: "direct/no-receipts+hog", Hog: true},
	{Name: "qxtd/no-receipts+hog", Qxtd: true, Hog: true},
	{Name: "qxtd/receipts+hog", Qxtd: true, Receipts: true, Hog: true},
	{Name: "qxtd-cluster/receipts", Qxtd: true, Receipts: true, Cluster: true},
	{Name: "qxtd-cluster-relay/no-receipts", Qxtd: true, Cluster: true, Relay: true},
	{Name: "qxtd-cluster-relay/receipts", Qxtd: true, Receipts: true, Cluster: true, Relay: true},
	{Name: "kannel/no-receipts", HTTP: true, Kannel: true},
	{Name: "kannel/receipts", Receipts: true, HTTP: true, Kannel: true},
	{Name: "qxtd-http/no-receipts", Qxtd: true, HTTP: true},
	{Name: "qxtd-http/receipts", Qxtd: true, Receipts: true, HTTP: true},
	{Name: "kannel-bulk/no-receipts", HTTP: true, Kannel: true, Bulk: true},
	{Name: "kannel-bulk/receipts", Receipts: true, HTTP: true, Kannel: true, Bulk: true},
	{Name: "qxtd-http-bulk/no-receipts", Qxtd: true, HTTP: true, Bulk: true},
	{Name: "qxtd-http-bulk/receipts", Qxtd: true, Receipts: true, HTTP: true, Bulk: true},
	{Name: "qxtd-http-personal/no-receipts", Qxtd: true, HTTP: true, Bulk: true, Personal: true},
	{Name: "qxtd-http-personal/receipts", Qxtd: true, Receipts: true, HTTP: true, Bulk: true, Personal: true},
}

// loader is a load client: SMPP (Client) or HTTP (HTTPLoad).
type loader interface {
	Run(ctx context.Context, spec RunSpec) (RunResult, error)
	Close()
}

// cpuMeter is the measured gateway's CPU time so far: qxtd, or Kannel's
// two boxes.
type cpuMeter interface {
	CPU() (time.Duration, error)
}

// diskMeter is the measured gateway's bytes written to storage so far:
// qxtd's, or Kannel's two boxes'.
type diskMeter interface {
	Written() (int64, error)
}

// Inside is qxtd's own count of its work per message over the measured
// interval: heap allocations (the Go runtime's counters), store commits
// and operations. Unlike CPU time these do not depend on what else the
// machine runs, so a change that saves a few percent shows here in one
// run when CPU time cannot show it in seven.
type Inside struct {
	Allocs    float64 `json:"allocs_per_msg"`
	AllocKiB  float64 `json:"alloc_kib_per_msg"`
	GCs       float64 `json:"gc_cycles"`
	Commits   float64 `json:"commits_per_msg"`
	OpsCommit float64 `json:"ops_per_commit"`
}

// insideMetrics are the /metrics series Inside is the difference of.
var insideMetrics = []string{"go_memstats_mallocs_total", "go_memstats_alloc_bytes_total", "go_gc_duration_seconds_count",
	"qxtd_store_commits_total", "qxtd_store_ops_total"}

// etcdRequests counts a cluster node's requests to etcd.
const etcdRequests = "qxtd_cluster_etcd_requests_total"

// inside is Inside from the /metrics snapshots a (start) and b (end) of
// an interval that carried n messages.
func inside(a, b map[string]float64, n int) *Inside {
	d := func(name string) float64 { return b[name] - a[name] }
	in := &Inside{
		Allocs:   d("go_memstats_mallocs_total") / float64(n),
		AllocKiB: d("go_memstats_alloc_bytes_total") / 1024 / float64(n),
		GCs:      d("go_gc_duration_seconds_count"),
		Commits:  d("qxtd_store_commits_total") / float64(n),
	}
	if c := d("qxtd_store_commits_total"); c > 0 {
		in.OpsCommit = d("qxtd_store_ops_total") / c
	}
	return in
}

// benchConfig is the run's settings (the flags).
type benchConfig struct {
	N, Warmup, Window int
	// Tenants is how many enterprises send at once, one bind each
	// (tenants.go); 0 or 1 is the one bench account.
	Tenants int
	Queued  int // qxtd/restart's backlog
	// Bulk is the recipients of one request in the bulk scenarios, and
	// BulkWindow how many of those requests are outstanding at once.
	Bulk, BulkWindow int
	Offered          float64
	Stall            time.Duration
	// HogPID is a +hog scenario's busy loop (runOne starts it): its CPU
	// over the measured interval is Result.HogCores. 0: none.
	HogPID int
}

// httpWindow is the HTTP client's requests outstanding in sc.
func (cfg benchConfig) httpWindow(sc scenario) int {
	if sc.Bulk {
		return cfg.BulkWindow
	}
	return cfg.Window
}

// Result is one scenario's measurement (one JSON line with -json).
type Result struct {
	Scenario    string  `json:"scenario"`
	Round       int     `json:"round,omitempty"` // of -rounds, from 1; 0: one round only
	Receipts    bool    `json:"receipts"`
	N           int     `json:"n"`
	Window      int     `json:"window"` // submits (SMPP) or requests (HTTP) outstanding
	Bulk        int     `json:"recipients_per_request,omitempty"`
	Offered     float64 `json:"offered_msg_s,omitempty"`
	Answered    int     `json:"answered"`
	Errors      int     `json:"errors"`
	FirstErr    string  `json:"first_error,omitempty"`
	ReceiptsGot int     `json:"receipts_matched"`
	// DroppedReceipts are receipts the gateway said it could not match to
	// a message, so never sent on (Kannel's "got DLR but could not find
	// message"): the run does not wait for them.
	DroppedReceipts int `json:"receipts_dropped_by_gateway,omitempty"`
	DupReceipts     int `json:"receipts_duplicate"`
	// Rates over the measured interval from the first submit: acked =
	// the client's last submit_sm_resp, relayed = the peer's last
	// submit_sm, full loop = the client's last receipt.
	AckedRate    float64 `json:"acked_msg_s"`
	RelayedRate  float64 `json:"relayed_msg_s"`
	FullLoopRate float64 `json:"full_loop_msg_s,omitempty"`
	Seconds      float64 `json:"seconds"`
	// GatewayCPU is the gateway's CPU per message: qxtd's, or Kannel's
	// two boxes together (the JSON name is older than the Kannel rows).
	GatewayCPU float64 `json:"qxtd_cpu_us_per_msg,omitempty"`
	// HogCores is the CPU a +hog scenario's busy loop used, in cores,
	// over the measured interval (as GatewayCPU).
	HogCores float64 `json:"hog_cores,omitempty"`
	BenchCPU float64 `json:"bench_cpu_us_per_msg"`
	// GatewayDisk is the KiB the gateway wrote to storage per message
	// (/proc/<pid>/io write_bytes): what a store's commits cost a disk.
	GatewayDisk float64 `json:"gateway_disk_kib_per_msg,omitempty"`
	SubmitP50   float64 `json:"submit_resp_p50_ms"`
	// EtcdPer1000 is the etcd requests qxtd made per 1,000 messages
	// (cluster scenarios).
	EtcdPer1000 float64 `json:"etcd_requests_per_1000,omitempty"`
	SubmitP99   float64 `json:"submit_resp_p99_ms"`
	ReceiptP50  float64 `json:"receipt_p50_ms,omitempty"`
	ReceiptP99  float64 `json:"receipt_p99_ms,omitempty"`
	// Against the direct scenario with the same receipts setting.
	RelayedVsDirect  float64 `json:"relayed_vs_direct,omitempty"`
	FullLoopVsDirect float64 `json:"full_loop_vs_direct,omitempty"`
	SubmitP50VsDir   float64 `json:"submit_p50_vs_direct,omitempty"`
	QxtdLogLines     int     `json:"qxtd_log_lines"`
	// Inside qxtd over the measured interval, from its /metrics: what a
	// change to its code moves without the machine's noise in CPU time
	// (qxtd scenarios only).
	Inside *Inside `json:"inside,omitempty"`
	// Machine is what the rest of the machine did over the measured
	// interval (nil where /proc/stat cannot be read).
	Machine *Machine `json:"machine,omitempty"`
	Err     string   `json:"error,omitempty"`

	Kill    *KillResult    `json:"kill,omitempty"`    // the crash scenario's counts
	Restart *RestartResult `json:"restart,omitempty"` // the restart scenario's times
}

// KillResult is the crash scenario's outcome (qxtd/kill9). Lost are
// acknowledged messages (submit_sm_resp OK) of which neither the receipt
// reached the client nor the text (its token) the peer; the scenario
// passes when none is.
type KillResult struct {
	Acked           int     `json:"acked"`
	AckedBeforeKill int     `json:"acked_before_kill"`
	Unanswered      int     `json:"unanswered"` // submits the kill left without an answer: neither acked nor lost
	Lost            int     `json:"lost"`
	ReceiptsMissing int     `json:"receipts_missing"` // acked with no receipt at the client (lost or not)
	ReceiptsResent  int     `json:"receipts_resent"`  // receipts the kill cut off that the peer held and sent again
	NotAtPeer       int     `json:"not_at_peer"`      // acked whose token never reached the peer (lost or not)
	PeerDups        int     `json:"peer_duplicates"`  // extra submit_sm of a token at the peer
	RestartMS       float64 `json:"restart_ms"`       // SIGKILL → /readyz ready
	Wait            string  `json:"wait,omitempty"`   // why the final wait ended early
}

// peerMark is the peer's counters at one moment.
type peerMark struct{ submits, due, acked int64 }

func markOf(p *Peer) peerMark {
	return peerMark{p.Submits.Load(), p.ReceiptsDue.Load(), p.ReceiptsAcked.Load()}
}

// waitPeer waits until the peer got n submits since m and every receipt
// it owes was acknowledged (qxtd asks for receipts whatever the client
// asks, so through qxtd the peer sends them in every scenario).
func waitPeer(ctx context.Context, p *Peer, m peerMark, n int, stall time.Duration) error {
	last, lastAt := int64(-1), time.Now()
	for {
		now := markOf(p)
		if now.submits-m.submits >= int64(n) && now.acked-m.acked >= now.due-m.due {
			return nil
		}
		if prog := now.submits + now.acked; prog != last {
			last, lastAt = prog, time.Now()
		} else if time.Since(lastAt) > stall {
			return fmt.Errorf("peer stalled: got %d/%d submit_sm, %d/%d receipts acknowledged",
				now.submits-m.submits, n, now.acked-m.acked, now.due-m.due)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// runScenario measures one scenario on target (the peer or qxtd's SMPP
// port): a warm-up batch, then the measured one; d is qxtd (nil direct).
func runScenario(ctx context.Context, cfg benchConfig, sc scenario, p *Peer, target string, d *daemon) (Result, error) {
	var cl loader
	var err error
	if cfg.Tenants > 1 {
		cl, err = DialTenants(ctx, target, cfg.Tenants)
	} else {
		cl, err = Dial(ctx, target, benchSystemID, benchPassword)
	}
	if err != nil {
		return Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N, Window: cfg.Window, Offered: cfg.Offered}, err
	}
	var gw cpuMeter
	if d != nil {
		gw = d
	}
	return measure(ctx, cfg, sc, p, cl, gw, d)
}

// measure runs a warm-up batch through cl, then the measured one; gw is
// the gateway between client and peer (nil direct), d the same when it is
// qxtd (for its metrics).
func measure(ctx context.Context, cfg benchConfig, sc scenario, p *Peer, cl loader, gw cpuMeter, d *daemon) (Result, error) {
	res := Result{Scenario: sc.Name, Receipts: sc.Receipts, N: cfg.N, Window: cfg.Window, Offered: cfg.Offered}
	var err error
	defer cl.Close()
	spec := RunSpec{N: cfg.Warmup, Window: cfg.Window, Receipts: sc.Receipts, FirstDst: 13900000000,
		Offered: cfg.Offered, Stall: cfg.Stall}
	if sc.Bulk {
		spec.Window, spec.Bulk = cfg.BulkWindow, cfg.Bulk
		res.Window, res.Bulk = cfg.BulkWindow, cfg.Bulk
	}
	m := markOf(p)
	if _, err := cl.Run(ctx, spec); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	if err := waitPeer(ctx, p, m, cfg.Warmup, cfg.Stall); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}

	spec.N, spec.FirstDst = cfg.N, 13800000000
	m = markOf(p)
	var q0 time.Duration
	var w0 int64
	dm, _ := gw.(diskMeter)
	if gw != nil {
		if q0, err = gw.CPU(); err != nil {
			return res, err
		}
	}
	if dm != nil {
		if w0, err = dm.Written(); err != nil {
			return res, err
		}
	}
	// qxtd's /metrics, scraped once at each end of the run: its etcd
	// requests (cluster) and Inside. Without the first scrape the row has
	// neither, and the run goes on.
	var m0 map[string]float64
	if d != nil {
		m0, _ = d.Metrics(append(insideMetrics, etcdRequests)...)
	}
	b0, t0 := selfCPU(), time.Now()
	ms0, msErr := readMachine()
	var h0 time.Duration
	hogRead := false // the hog's CPU at the start, when there is a hog
	if cfg.HogPID != 0 {
		var err error
		h0, err = procCPU(cfg.HogPID)
		hogRead = err == nil
	}
	r, runErr := cl.Run(ctx, spec)
	if runErr == nil {
		runErr = waitPeer(ctx, p, m, cfg.N, cfg.Stall)
	}
	end := time.Now()
	b1 := selfCPU()
	ms1, msErr1 := readMachine()
	if hogRead {
		if h1, err := procCPU(cfg.HogPID); err == nil {
			res.HogCores = (h1 - h0).Seconds() / end.Sub(t0).Seconds()
		}
	}
	ours := b1 - b0 // the CPU of the gateway and the bench, for Machine.Others
	if gw != nil {
		q1, err := gw.CPU()
		if err != nil {
			return res, err
		}
		res.GatewayCPU = float64((q1 - q0).Microseconds()) / float64(cfg.N)
		ours += q1 - q0
	}
	if msErr == nil && msErr1 == nil {
		res.Machine = machineOver(ms0, ms1, ours)
	}
	if dm != nil {
		w1, err := dm.Written()
		if err != nil {
			return res, err
		}
		res.GatewayDisk = float64(w1-w0) / 1024 / float64(cfg.N)
	}
	if d != nil {
		m1, err := d.Metrics(append(insideMetrics, etcdRequests)...)
		if err != nil && sc.Cluster {
			return res, err
		}
		if err == nil && m0 != nil {
			if sc.Cluster {
				res.EtcdPer1000 = (m1[etcdRequests] - m0[etcdRequests]) * 1000 / float64(cfg.N)
			}
			res.Inside = inside(m0, m1, cfg.N)
		}
	}
	res.BenchCPU = float64((b1 - b0).Microseconds()) / float64(cfg.N)
	res.Answered, res.Errors, res.ReceiptsGot, res.DupReceipts = r.Answered, r.Errors, r.Receipts, r.DupReceipts
	res.DroppedReceipts = r.Dropped
	if r.FirstErr != 0 {
		res.FirstErr = fmt.Sprintf("command_status %#08x", r.FirstErr)
	} else if r.FirstErrText != "" {
		res.FirstErr = r.FirstErrText
	}
	res.Seconds = end.Sub(r.Start).Seconds()
	rate := func(t time.Time) float64 {
		if s := t.Sub(r.Start).Seconds(); s > 0 {
			return float64(cfg.N) / s
		}
		return 0
	}
	if runErr != nil {
		return res, runErr
	}
	res.AckedRate = rate(r.LastResp)
	res.RelayedRate = rate(time.Unix(0, p.LastSubmit.Load()))
	if sc.Receipts {
		res.FullLoopRate = rate(r.LastRcpt)
	}
	res.SubmitP50, res.SubmitP99 = percentiles(r.RespLat)
	res.ReceiptP50, res.ReceiptP99 = percentiles(r.RcptLat)
	if res.Errors > 0 {
		return res, fmt.Errorf("%d of %d submits refused (first: %s)", res.Errors, cfg.N, res.FirstErr)
	}
	return res, nil
}

// percentiles are p50 and p99 in milliseconds of the answered ones.
func percentiles(lat []time.Duration) (p50, p99 float64) {
	s := make([]time.Duration, 0, len(lat))
	for _, l := range lat {
		if l > 0 {
			s = append(s, l)
		}
	}
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	at := func(q float64) float64 {
		return float64(s[int(q*float64(len(s)-1)+0.5)]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99)
}

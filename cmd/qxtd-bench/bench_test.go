package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDirect runs the peer and the client alone, as the direct scenarios
// do: every submit is answered and, with receipts, every receipt is
// matched to its submit. With -tenants 3 the client is three binds, one
// per tenant account, sharing the messages out (500 = 167 + 167 + 166,
// each to its own numbers), reported as one run.
func TestDirect(t *testing.T) {
	for _, tenants := range []int{1, 3} {
		t.Run(fmt.Sprintf("tenants=%d", tenants), func(t *testing.T) { testDirect(t, tenants) })
	}
}

func testDirect(t *testing.T, tenants int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	cfg := benchConfig{N: 500, Warmup: 50, Window: 50, Tenants: tenants, Stall: 5 * time.Second}
	for _, sc := range allScenarios {
		if sc.Qxtd {
			continue
		}
		res, err := runScenario(ctx, cfg, sc, peer, peer.Addr(), nil)
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		if res.Answered != cfg.N || res.Errors != 0 {
			t.Errorf("%s: %d of %d answered, %d errors", sc.Name, res.Answered, cfg.N, res.Errors)
		}
		want := 0
		if sc.Receipts {
			want = cfg.N
			if res.ReceiptP50 < 10 {
				t.Errorf("%s: receipt p50 %.2f ms, below the peer's 10 ms delay", sc.Name, res.ReceiptP50)
			}
		}
		if res.ReceiptsGot != want || res.DupReceipts != 0 {
			t.Errorf("%s: %d receipts matched (%d duplicate), want %d", sc.Name, res.ReceiptsGot, res.DupReceipts, want)
		}
		if res.AckedRate <= 0 || res.SubmitP99 <= 0 {
			t.Errorf("%s: no rate or latency: %+v", sc.Name, res)
		}
	}
	if n := peer.Binds.Load(); n != 2*int64(tenants) {
		t.Errorf("peer saw %d binds, want %d per scenario", n, tenants)
	}
}

// TestStallFails: a target that answers nothing fails the run with the
// counts, within the stall time, instead of hanging.
func TestStallFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peer := startTestPeer(t, ctx, time.Hour) // receipts never come
	cl, err := Dial(ctx, peer.Addr(), "x", "y")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	r, err := cl.Run(ctx, RunSpec{N: 20, Window: 5, Receipts: true, FirstDst: 13800000000, Stall: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "stalled") || !strings.Contains(err.Error(), "0/20 receipts") {
		t.Fatalf("err = %v, want a stall with 0/20 receipts", err)
	}
	if r.Answered != 20 {
		t.Errorf("answered %d, want 20", r.Answered)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestReceiptID(t *testing.T) {
	for in, want := range map[string]string{
		"id:1a2b sub:001 dlvrd:001 stat:DELIVRD": "1a2b",
		"id:42":                                  "42",
		"stat:DELIVRD":                           "",
	} {
		if got := receiptID(in); got != want {
			t.Errorf("receiptID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDerivedConfig: the demo file with the benchmark's changes keeps
// its sections and gets the peer upstream and the bench account; with
// -tenants, an enterprise and an account per tenant and a cheap password
// hash (a start hashes every one); with -recording-slots and
// -commit-delay and -record-delay, their keys (left out otherwise: older
// builds refuse them).
func TestDerivedConfig(t *testing.T) {
	base, err := os.ReadFile("../../configs/qxtd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"addr: 127.0.0.1:9", "system_id: bench\n", "no_whitelist: true", "enabled: false", "level: warn", "code: DEMO", "home_province"}
	for _, c := range []struct {
		tenants, slots int
		delay, record  *time.Duration
		etcd           []string
		want, not      []string
	}{
		{1, 0, nil, nil, nil, common, []string{"cmcc-gd", "BENCH2", "bcrypt_cost", "recording_slots", "commit_delay", "record_delay"}},
		{3, 16, new(2 * time.Millisecond), new(10 * time.Millisecond), nil, append(common, "code: BENCH2", "code: BENCH3", "system_id: bench2", "system_id: bench3", "bcrypt_cost: 4", "recording_slots: 16", "commit_delay: 2ms", "record_delay: 10ms"),
			[]string{"cmcc-gd", "BENCH4"}},
		// In a cluster every tenant's enterprise has the spending cap.
		{3, 0, new(time.Duration(0)), nil, []string{"127.0.0.1:2379"}, append(common, "code: BENCH3", "commit_delay: 0s"), []string{"record_delay"}},
	} {
		out, err := derivedConfig(base, daemonOpts{BaseConfig: "qxtd.yaml", PeerAddr: "127.0.0.1:9", Binds: 2, Window: 100,
			Tenants: c.tenants, RecordingSlots: c.slots, CommitDelay: c.delay, RecordDelay: c.record, Etcd: c.etcd}, t.TempDir(), "127.0.0.1:1", "127.0.0.1:2")
		if err != nil {
			t.Fatal(err)
		}
		s := string(out)
		for _, want := range c.want {
			if !strings.Contains(s, want) {
				t.Errorf("tenants %d: derived configuration lacks %q:\n%s", c.tenants, want, s)
			}
		}
		for _, not := range c.not {
			if strings.Contains(s, not) {
				t.Errorf("tenants %d: derived configuration has %q:\n%s", c.tenants, not, s)
			}
		}
		if want := map[bool]int{true: c.tenants}[c.etcd != nil]; strings.Count(s, "cap_yuan") != want {
			t.Errorf("tenants %d, etcd %v: %d spending caps, want %d", c.tenants, c.etcd, strings.Count(s, "cap_yuan"), want)
		}
	}
}

// The spread line gives each repeated scenario's lowest, median and
// highest figures, leaves out failed rounds and scenarios run once.
func TestSpread(t *testing.T) {
	rs := []Result{
		{Scenario: "qxtd/receipts", RelayedRate: 9000, GatewayCPU: 110, SubmitP99: 30},
		{Scenario: "direct/receipts", RelayedRate: 50000, SubmitP99: 1},
		{Scenario: "qxtd/receipts", RelayedRate: 11000, GatewayCPU: 90, SubmitP99: 6.5},
		{Scenario: "qxtd/receipts", Err: "boom"},
		{Scenario: "qxtd/receipts", RelayedRate: 10000, GatewayCPU: 100, SubmitP99: 8.25},
		{Scenario: "qxtd/no-receipts", RelayedRate: 12000, GatewayCPU: 80, SubmitP99: 5},
	}
	var b strings.Builder
	writeSpread(&b, rs)
	want := "\nspread over the rounds (lowest / median / highest):\n" +
		"  qxtd/receipts (3 rounds): relayed msg/s 9000 / 10000 / 11000; gateway CPU µs/msg 90 / 100 / 110; submit_sm_resp p99 ms 6.50 / 8.25 / 30.00\n"
	if got := b.String(); got != want {
		t.Errorf("writeSpread =\n%q\nwant\n%q", got, want)
	}
	// With the machine's figures of every round, their steal too.
	steal := []float64{2, 0, 0, 0, 9.5, 1}
	withMachine := slices.Clone(rs)
	for i := range withMachine {
		withMachine[i].Machine = &Machine{Steal: steal[i]}
	}
	b.Reset()
	writeSpread(&b, withMachine)
	want = "\nspread over the rounds (lowest / median / highest):\n" +
		"  qxtd/receipts (3 rounds): relayed msg/s 9000 / 10000 / 11000; gateway CPU µs/msg 90 / 100 / 110; submit_sm_resp p99 ms 6.50 / 8.25 / 30.00; steal % 0.0 / 2.0 / 9.5\n"
	if got := b.String(); got != want {
		t.Errorf("writeSpread =\n%q\nwant\n%q", got, want)
	}
	b.Reset()
	writeSpread(&b, rs[1:2])
	if b.Len() != 0 {
		t.Errorf("a scenario run once got a spread line: %q", b.String())
	}

	// A restart scenario's line is its times to a bind.
	restart := func(empty, full, crash float64) Result {
		return Result{Scenario: "qxtd/restart", Restart: &RestartResult{
			Empty: Startup{BindMS: empty}, Full: Startup{BindMS: full}, Crash: Startup{BindMS: crash}}}
	}
	b.Reset()
	writeSpread(&b, []Result{restart(170, 180, 400), restart(160, 190, 560), {Scenario: "qxtd/restart", Err: "boom", Restart: &RestartResult{}}, restart(150, 185, 390)})
	want = "\nspread over the rounds (lowest / median / highest):\n" +
		"  qxtd/restart (3 rounds): ms from the exec to an ESME's bind: empty queue 150 / 160 / 170; backlog 180 / 185 / 190; backlog after SIGKILL 390 / 400 / 560\n"
	if got := b.String(); got != want {
		t.Errorf("writeSpread =\n%q\nwant\n%q", got, want)
	}

	// A crash scenario's line is what the kill duplicated and the restart.
	kill := func(peer, receipts int, ms float64) Result {
		return Result{Scenario: "qxtd/kill9", DupReceipts: receipts, Kill: &KillResult{PeerDups: peer, RestartMS: ms}}
	}
	b.Reset()
	writeSpread(&b, []Result{kill(64, 128, 150), kill(0, 0, 170), {Scenario: "qxtd/kill9", Err: "2 lost", Kill: &KillResult{PeerDups: 999}}, kill(100, 192, 160), kill(36, 64, 140)})
	want = "\nspread over the rounds (lowest / median / highest):\n" +
		"  qxtd/kill9 (4 rounds): duplicates at the peer 0 / 36 / 100; duplicate receipts 0 / 64 / 192; restart ms 140 / 150 / 170\n"
	if got := b.String(); got != want {
		t.Errorf("writeSpread =\n%q\nwant\n%q", got, want)
	}
}

// A +hog scenario is reported against the same scenario without the hog,
// beside the share of the machine the hog took (what the rate may fairly
// lose); a failed run, or one without its pair, is not.
func TestHogCost(t *testing.T) {
	rs := []Result{
		{Scenario: "qxtd/no-receipts", RelayedRate: 10000},
		{Scenario: "qxtd/no-receipts+hog", RelayedRate: 7000, HogCores: 1},
		{Scenario: "qxtd/receipts+hog", RelayedRate: 5000, HogCores: 0.5},
		{Scenario: "direct/no-receipts+hog", RelayedRate: 5000, HogCores: 0.5, Err: "stalled"},
		{Scenario: "direct/no-receipts", RelayedRate: 9000},
	}
	var b strings.Builder
	writeHogCost(&b, rs)
	n := runtime.NumCPU()
	want := fmt.Sprintf("\nqxtd/no-receipts+hog: relayed rate 0.70× of qxtd/no-receipts (a busy loop at nice 19 beside it, which used 1.00 of the machine's %d cores: %.0f %%)\n", n, 100/float64(n))
	if got := b.String(); got != want {
		t.Errorf("writeHogCost =\n%q\nwant\n%q", got, want)
	}
}

func TestSumMetrics(t *testing.T) {
	text := `# HELP qxtd_store_ops_total Store operations.
# TYPE qxtd_store_ops_total counter
qxtd_store_ops_total 300
qxtd_store_ops_total_other 7
qxtd_queue_segments{state="accepted"} 2
qxtd_queue_segments{state="final"} 5
go_memstats_mallocs_total 1.5e+06
`
	got := sumMetrics(text, []string{"qxtd_store_ops_total", "qxtd_queue_segments", `qxtd_queue_segments{state="final"}`, "go_memstats_mallocs_total", "absent"})
	want := map[string]float64{"qxtd_store_ops_total": 300, "qxtd_queue_segments": 7, `qxtd_queue_segments{state="final"}`: 5, "go_memstats_mallocs_total": 1.5e6}
	if !maps.Equal(got, want) {
		t.Errorf("sumMetrics = %v, want %v", got, want)
	}
	in := inside(map[string]float64{"go_memstats_mallocs_total": 1000, "qxtd_store_commits_total": 10, "qxtd_store_ops_total": 100},
		map[string]float64{"go_memstats_mallocs_total": 3000, "go_memstats_alloc_bytes_total": 20480, "qxtd_store_commits_total": 12, "qxtd_store_ops_total": 130}, 10)
	if *in != (Inside{Allocs: 200, AllocKiB: 2, Commits: 0.2, OpsCommit: 15}) {
		t.Errorf("inside = %+v", *in)
	}
}

package main

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A /proc/stat of a 2-core guest: its cpu line, then the per-CPU lines.
const statSample = `cpu  771079 6815 278030 1214874 58258 0 34555 103519 0 0
cpu0 374877 3417 119426 660333 17941 0 9736 52106 0 0
cpu1 396201 3398 158604 554541 40317 0 24818 51413 0 0
intr 1 2 3
`

func TestParseStatCPU(t *testing.T) {
	busy, steal, total, err := parseStatCPU(statSample)
	if err != nil {
		t.Fatal(err)
	}
	// busy: user+nice+system+irq+softirq; total adds idle, iowait, steal.
	if busy != 771079+6815+278030+0+34555 || steal != 103519 || total != busy+1214874+58258+103519 {
		t.Errorf("parseStatCPU = %d, %d, %d", busy, steal, total)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7 8\n", "cpu 1 -2 3 4 5 6 7 8\n", "cpu 72057594037927936 0 0 0 0 0 0 0\n"} {
		if _, _, _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func TestParsePressureSome(t *testing.T) {
	got, err := parsePressureSome("some avg10=24.21 avg60=19.77 avg300=23.45 total=2867732664\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	if err != nil || got != 2867732664*time.Microsecond {
		t.Errorf("parsePressureSome = %v, %v", got, err)
	}
	for _, bad := range []string{"", "full avg10=0.00 total=5\n", "some avg10=1.0\n", "some total=x\n"} {
		if _, err := parsePressureSome(bad); err == nil {
			t.Errorf("parsePressureSome(%q): no error", bad)
		}
	}
}

// Over 10 s of a 2-core machine (2,000 ticks), 1,200 busy of which the
// gateway and the bench used 9 s of CPU, 100 stolen, and a task waited for
// a CPU 2.5 s of the 10.
func TestMachineOver(t *testing.T) {
	t0 := time.Now()
	a := machineSnap{at: t0, busy: 5000, steal: 300, total: 20000, pressure: time.Second}
	b := machineSnap{at: t0.Add(10 * time.Second), busy: 6200, steal: 400, total: 22000, pressure: 3500 * time.Millisecond}
	m := machineOver(a, b, 9*time.Second)
	if m == nil || m.Steal != 5 || m.Pressure != 25 || !near(m.Others, 0.3) {
		t.Fatalf("machineOver = %+v, want steal 5 %%, pressure 25 %%, others 0.3 cores", m)
	}
	// Without pressure accounting it says so; our CPU read a tick above
	// the machine's busy time is no negative neighbour.
	a.pressure = -1
	if m := machineOver(a, b, 13*time.Second); m.Pressure != -1 || m.Others != 0 {
		t.Errorf("machineOver = %+v, want pressure -1 and others 0", m)
	}
	if m := machineOver(a, a, 0); m != nil {
		t.Errorf("machineOver of an empty interval = %+v, want nil", m)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestWriteMachine(t *testing.T) {
	rs := []Result{
		{Scenario: "qxtd/receipts", Machine: &Machine{Steal: 4.26, Pressure: 31, Others: 0.051}},
		{Scenario: "direct/receipts", Machine: &Machine{Steal: 0, Pressure: -1, Others: 0}},
		{Scenario: "qxtd/no-receipts", Err: "boom", Machine: &Machine{}},
		{Scenario: "qxtd/kill9", Kill: &KillResult{}, Machine: &Machine{}},
	}
	var b strings.Builder
	writeMachine(&b, rs)
	want := "| qxtd/receipts | 4.3 | 31 | 0.05 |\n| direct/receipts | 0.0 | – | 0.00 |\n"
	if got := b.String(); !strings.HasSuffix(got, "|---|--:|--:|--:|\n"+want) {
		t.Errorf("writeMachine =\n%s\nwant the rows\n%s", got, want)
	}
	b.Reset()
	writeMachine(&b, rs[2:])
	if b.Len() != 0 {
		t.Errorf("no steady row measured, yet: %q", b.String())
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add(statSample)
	f.Add("cpu 1 2 3 4 5 6 7 8\n")
	f.Fuzz(func(t *testing.T, s string) {
		busy, steal, total, err := parseStatCPU(s)
		if err == nil && (busy < 0 || steal < 0 || total < busy+steal) {
			t.Errorf("total %d below busy %d + steal %d", total, busy, steal)
		}
	})
}

func FuzzParsePressureSome(f *testing.F) {
	f.Add("some avg10=24.21 avg60=19.77 avg300=23.45 total=2867732664\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parsePressureSome(s) // an error, never a panic
	})
}

// A busy neighbour shows in the machine's other cores: a paced direct run
// beside a busy loop counts the loop's CPU (read from its own /proc entry)
// there, and the steal and pressure are shares. Other tests running
// meanwhile (go test runs packages in parallel) are neighbours too, so
// other cores may be more than the loop's, never less.
func TestMachineCountsANeighbour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	// At the default nice value, unlike startHog's, so that the loop gets
	// its share of the CPUs however busy the machine is.
	loop := exec.Command("sh", "-c", "while :; do :; done")
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = loop.Process.Kill(); _ = loop.Wait() }()
	// Two seconds at 2,000/s: long enough for /proc/stat's 10 ms ticks,
	// and busy enough (the test's own CPU, client and peer, about a
	// third of a core) that leaving it in the other cores would show.
	cfg := benchConfig{N: 4000, Warmup: 50, Window: 50, Offered: 2000, Stall: 10 * time.Second, HogPID: loop.Process.Pid}
	res, err := runScenario(ctx, cfg, allScenarios[0], peer, peer.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Machine
	if m == nil {
		t.Fatal("no machine figures")
	}
	t.Logf("the loop used %.2f cores; machine %+v; the bench %.0f µs a message", res.HogCores, *m, res.BenchCPU)
	// A process's CPU is sampled by the tick, and a tick the hypervisor
	// took may still be charged to the loop: up to the steal's cores less,
	// and on this 2-core guest up to 0.07 cores less without steal.
	stolen := m.Steal / 100 * float64(runtime.NumCPU())
	if res.HogCores < 0.05 || m.Others < res.HogCores-0.15-stolen {
		t.Errorf("other cores %.2f beside a loop that used %.2f (%.2f cores stolen)", m.Others, res.HogCores, stolen)
	}
	if m.Steal < 0 || m.Steal > 100 || m.Pressure < -1 || m.Pressure > 101 {
		t.Errorf("machine = %+v: steal and pressure are per cents", m)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// compare fills each gateway row's ratios (qxtd's, Kannel's) against the
// direct row with the same receipts setting.
func compare(rs []Result) {
	for i := range rs {
		q := &rs[i]
		if strings.HasPrefix(q.Scenario, "direct/") || q.Err != "" || !q.steady() {
			continue
		}
		for _, d := range rs {
			if !strings.HasPrefix(d.Scenario, "direct/") || d.Receipts != q.Receipts || d.Err != "" {
				continue
			}
			q.RelayedVsDirect = ratio(q.RelayedRate, d.RelayedRate)
			q.FullLoopVsDirect = ratio(q.FullLoopRate, d.FullLoopRate)
			q.SubmitP50VsDir = ratio(q.SubmitP50, d.SubmitP50)
		}
	}
}

func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// steady reports whether r is a row of the main table: a steady run, not
// a crash or a restart.
func (r Result) steady() bool { return r.Kill == nil && r.Restart == nil }

// writeTable prints the markdown table, then the crash and restart
// scenarios' own.
func writeTable(w io.Writer, rs []Result) {
	var kills, restarts []Result
	for _, r := range rs {
		switch {
		case r.Kill != nil:
			kills = append(kills, r)
		case r.Restart != nil:
			restarts = append(restarts, r)
		}
	}
	if !slices.ContainsFunc(rs, Result.steady) {
		writeKillTable(w, kills)
		if len(kills) > 0 && len(restarts) > 0 {
			fmt.Fprintln(w)
		}
		writeRestartTable(w, restarts)
		return
	}
	fmt.Fprintln(w, "| scenario | msgs | acked msg/s | relayed msg/s | full loop msg/s | gateway CPU µs/msg | gateway disk KiB/msg | bench CPU µs/msg | submit_sm_resp p50 / p99 ms | receipt p50 / p99 ms | relayed vs direct | full loop vs direct | resp p50 vs direct |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		if !r.steady() {
			continue
		}
		if r.Err != "" {
			fmt.Fprintf(w, "| %s | %d | FAILED: %s ||||||||||\n", r.Scenario, r.N, strings.ReplaceAll(r.Err, "|", "/"))
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.N, num(r.AckedRate, "%.0f"), num(r.RelayedRate, "%.0f"), num(r.FullLoopRate, "%.0f"),
			num(r.GatewayCPU, "%.0f"), num(r.GatewayDisk, "%.1f"), num(r.BenchCPU, "%.0f"),
			pair(r.SubmitP50, r.SubmitP99), pair(r.ReceiptP50, r.ReceiptP99),
			times(r.RelayedVsDirect, r.Scenario), times(r.FullLoopVsDirect, r.Scenario), times(r.SubmitP50VsDir, r.Scenario))
	}
	writeInside(w, rs)
	writeMachine(w, rs)
	writeClusterCost(w, rs)
	writeHogCost(w, rs)
	writeKannelCost(w, rs)
	for _, r := range rs {
		if r.DroppedReceipts > 0 {
			fmt.Fprintf(w, "\n%s: %d receipts dropped by the gateway (it could not match them to a message)\n", r.Scenario, r.DroppedReceipts)
		}
	}
	if len(kills) > 0 {
		fmt.Fprintln(w)
		writeKillTable(w, kills)
	}
	if len(restarts) > 0 {
		fmt.Fprintln(w)
		writeRestartTable(w, restarts)
	}
}

// writeInside prints, for the rows through qxtd, its own counts per
// message (Inside).
func writeInside(w io.Writer, rs []Result) {
	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Inside != nil && r.Err == "" }) {
		return
	}
	fmt.Fprintln(w, "\ninside qxtd (its /metrics over the same interval; steady from run to run, unlike CPU time):")
	fmt.Fprintln(w, "\n| scenario | allocations/msg | KiB allocated/msg | GC cycles | store commits/msg | operations/commit |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		if r.Inside == nil || r.Err != "" {
			continue
		}
		in := r.Inside
		fmt.Fprintf(w, "| %s | %.0f | %.1f | %.0f | %.3f | %.1f |\n", r.Scenario, in.Allocs, in.AllocKiB, in.GCs, in.Commits, in.OpsCommit)
	}
}

// writeMachine prints, for the rows of the main table, what the rest of
// the machine did while each was measured (Machine): a round with much
// steal or pressure ran on a slower machine than one without.
func writeMachine(w io.Writer, rs []Result) {
	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Machine != nil && r.Err == "" && r.steady() }) {
		return
	}
	fmt.Fprintln(w, "\nthe rest of the machine over the same interval (steal: the CPUs' time its hypervisor gave to other guests; CPU pressure: the time in which a task waited for a CPU; other cores: the CPU of processes besides the gateway and the bench):")
	fmt.Fprintln(w, "\n| scenario | steal % | CPU pressure % | other cores |")
	fmt.Fprintln(w, "|---|--:|--:|--:|")
	for _, r := range rs {
		m := r.Machine
		if m == nil || r.Err != "" || !r.steady() {
			continue
		}
		pressure := "–"
		if m.Pressure >= 0 {
			pressure = fmt.Sprintf("%.0f", m.Pressure)
		}
		fmt.Fprintf(w, "| %s | %.1f | %s | %.2f |\n", r.Scenario, m.Steal, pressure, m.Others)
	}
}

// writeRestartTable prints the restart scenarios' table: from the exec of
// a stopped qxtd to /readyz ready, to an ESME's bind_resp and to its
// first submit_sm_resp: on an empty queue and on a backlog after SIGTERM,
// and on the backlog after SIGKILL.
func writeRestartTable(w io.Writer, rs []Result) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "| scenario | queued | queued over HTTP msg/s | store B/msg | empty queue: ready / bind / first submit ms | backlog: ready / bind / first submit ms | backlog drain: relayed msg/s / qxtd CPU µs/msg | backlog after SIGKILL: ready / bind / first submit ms | result |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range rs {
		x := r.Restart
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s / %s | %s | %s |\n", r.Scenario, x.Queued, num(x.FillRate, "%.0f"),
			num(x.StoreBytes, "%.0f"), startup(x.Empty), startup(x.Full), num(x.DrainRate, "%.0f"), num(x.DrainCPU, "%.0f"),
			startup(x.Crash), verdict(r, ""))
	}
}

// verdict is a crash or restart row's result cell: pass, or the failure,
// with note (if any) after it, on one line of the table.
func verdict(r Result, note string) string {
	v := "pass"
	if r.Err != "" {
		v = "FAILED: " + r.Err
	}
	if note != "" {
		v += " (" + note + ")"
	}
	return strings.ReplaceAll(strings.ReplaceAll(v, "|", "/"), "\n", " ")
}

func startup(s Startup) string {
	if s == (Startup{}) {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f", s.ReadyMS, s.BindMS, s.SubmitMS)
}

// writeClusterCost prints what cluster mode costs a node: etcd requests
// per 1,000 messages, and its relayed rate and CPU against the same qxtd
// on its own in the same run.
func writeClusterCost(w io.Writer, rs []Result) {
	for _, r := range rs {
		alone, ok := strings.CutPrefix(r.Scenario, "qxtd-cluster/")
		if !ok || r.Err != "" {
			continue
		}
		fmt.Fprintf(w, "\n%s: %.2f etcd requests per 1,000 messages", r.Scenario, r.EtcdPer1000)
		for _, a := range rs {
			if a.Scenario == "qxtd/"+alone && a.Err == "" && a.RelayedRate > 0 && a.GatewayCPU > 0 {
				fmt.Fprintf(w, "; relayed rate %.2f× and CPU per message %.2f× of qxtd/%s", r.RelayedRate/a.RelayedRate, r.GatewayCPU/a.GatewayCPU, alone)
			}
		}
		fmt.Fprintln(w)
	}
}

// writeKillTable prints the crash scenarios' table (after the main one).
func writeKillTable(w io.Writer, rs []Result) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "| scenario | msgs | acked (before kill) | unanswered | lost | receipts missing | receipts resent by the peer | not at peer | peer duplicates | duplicate receipts | restart ms | result |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range rs {
		k := r.Kill
		note := ""
		if k.Wait != "" {
			note = "wait ended: " + k.Wait
		}
		fmt.Fprintf(w, "| %s | %d | %d (%d) | %d | %d | %d | %d | %d | %d | %d | %.0f | %s |\n",
			r.Scenario, r.N, k.Acked, k.AckedBeforeKill, k.Unanswered, k.Lost, k.ReceiptsMissing, k.ReceiptsResent, k.NotAtPeer,
			k.PeerDups, r.DupReceipts, k.RestartMS, verdict(r, note))
	}
}

func num(v float64, f string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf(f, v)
}

func pair(a, b float64) string {
	if a == 0 && b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.2f", a, b)
}

func times(v float64, scenario string) string {
	if strings.HasPrefix(scenario, "direct/") {
		return "1"
	}
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// writeJSONFile writes rs to a new file at path, one line each.
func writeJSONFile(path string, rs []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = writeJSON(f, rs)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeJSON writes one line per result.
func writeJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// medians keeps, of the rounds' results of each scenario, the one with the
// median relayed rate (for an even count, the lower middle), in the order
// the scenarios first ran. A failed result counts as rate 0. A restart
// scenario's is the round with the median time to a bind on the backlog
// (a failed one counts as the slowest).
func medians(rs []Result) []Result {
	groups := byScenario(rs, func(Result) bool { return true })
	out := make([]Result, 0, len(groups))
	for _, xs := range groups {
		key := func(r Result) float64 { return r.RelayedRate }
		if xs[0].Restart != nil {
			key = func(r Result) float64 {
				if r.Err != "" {
					return math.Inf(-1)
				}
				return -r.Restart.Full.BindMS
			}
		}
		sort.Slice(xs, func(i, j int) bool { return key(xs[i]) < key(xs[j]) })
		out = append(out, xs[(len(xs)-1)/2])
	}
	return out
}

// byScenario groups the results keep accepts by scenario, in the order
// the scenarios first ran.
func byScenario(rs []Result, keep func(Result) bool) [][]Result {
	var groups [][]Result
	at := map[string]int{}
	for _, r := range rs {
		if !keep(r) {
			continue
		}
		i, ok := at[r.Scenario]
		if !ok {
			i = len(groups)
			at[r.Scenario] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// writeSpread prints, for each scenario run more than once, the lowest,
// median and highest of its rounds' relayed rate, gateway CPU and
// submit_sm_resp p99. The table shows the round with the median rate; a
// p99 or a CPU figure of that one round can sit anywhere in this range,
// and a target is only met if the whole range says so. For the crash
// scenario it is what each kill duplicated and the restart time: the
// duplicates depend on where the kill falls in the windows' batches and
// vary by a hundred or more from one run to the next, so that only the
// spread of many rounds compares two builds.
func writeSpread(w io.Writer, rs []Result) {
	header := false
	for _, xs := range byScenario(rs, func(r Result) bool { return r.Err == "" }) {
		if len(xs) < 2 {
			continue
		}
		name := xs[0].Scenario
		if !header {
			fmt.Fprintln(w, "\nspread over the rounds (lowest / median / highest):")
			header = true
		}
		if xs[0].Kill != nil {
			fmt.Fprintf(w, "  %s (%d rounds): duplicates at the peer %s; duplicate receipts %s; restart ms %s\n", name, len(xs),
				spread(xs, "%.0f", func(r Result) float64 { return float64(r.Kill.PeerDups) }),
				spread(xs, "%.0f", func(r Result) float64 { return float64(r.DupReceipts) }),
				spread(xs, "%.0f", func(r Result) float64 { return r.Kill.RestartMS }))
			continue
		}
		if xs[0].Restart != nil {
			fmt.Fprintf(w, "  %s (%d rounds): ms from the exec to an ESME's bind: empty queue %s; backlog %s; backlog after SIGKILL %s\n", name, len(xs),
				spread(xs, "%.0f", func(r Result) float64 { return r.Restart.Empty.BindMS }),
				spread(xs, "%.0f", func(r Result) float64 { return r.Restart.Full.BindMS }),
				spread(xs, "%.0f", func(r Result) float64 { return r.Restart.Crash.BindMS }))
			continue
		}
		fmt.Fprintf(w, "  %s (%d rounds): relayed msg/s %s", name, len(xs), spread(xs, "%.0f", func(r Result) float64 { return r.RelayedRate }))
		if xs[0].GatewayCPU > 0 {
			fmt.Fprintf(w, "; gateway CPU µs/msg %s", spread(xs, "%.0f", func(r Result) float64 { return r.GatewayCPU }))
		}
		fmt.Fprintf(w, "; submit_sm_resp p99 ms %s", spread(xs, "%.2f", func(r Result) float64 { return r.SubmitP99 }))
		if !slices.ContainsFunc(xs, func(r Result) bool { return r.Machine == nil }) {
			fmt.Fprintf(w, "; steal %% %s", spread(xs, "%.1f", func(r Result) float64 { return r.Machine.Steal }))
		}
		fmt.Fprintln(w)
	}
}

// spread formats the lowest, median (for an even count, the lower middle,
// as medians picks) and highest of f over rs.
func spread(rs []Result, format string, f func(Result) float64) string {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	return fmt.Sprintf(format+" / "+format+" / "+format, vs[0], vs[(len(vs)-1)/2], vs[len(vs)-1])
}

// writeHogCost prints each +hog scenario's relayed rate against the same
// scenario without the hog in the same run.
func writeHogCost(w io.Writer, rs []Result) {
	for _, r := range rs {
		base, ok := strings.CutSuffix(r.Scenario, "+hog")
		if !ok || r.Err != "" {
			continue
		}
		for _, a := range rs {
			if a.Scenario == base && a.Err == "" && a.RelayedRate > 0 {
				fmt.Fprintf(w, "\n%s: relayed rate %.2f× of %s (a busy loop at nice 19 beside it, which used %.2f of the machine's %d cores: %.0f %%)\n",
					r.Scenario, r.RelayedRate/a.RelayedRate, base, r.HogCores, runtime.NumCPU(), 100*r.HogCores/float64(runtime.NumCPU()))
			}
		}
	}
}

// writeKannelCost prints qxtd's rows against Kannel's with the same
// receipts setting: relayed rate, full loop and CPU per message (qxtd/…
// is SMPP in, qxtd-http/… the same HTTP client Kannel gets; the bulk
// rows against each other; qxtd-http-personal/…, a text for each number
// as Kannel's a request each, but many in a request, against kannel/…).
func writeKannelCost(w io.Writer, rs []Result) {
	for _, k := range rs {
		if k.Err != "" || k.RelayedRate == 0 {
			continue
		}
		var against []string
		if setting, ok := strings.CutPrefix(k.Scenario, "kannel/"); ok {
			against = []string{"qxtd/" + setting, "qxtd-http/" + setting, "qxtd-http-personal/" + setting}
		} else if setting, ok := strings.CutPrefix(k.Scenario, "kannel-bulk/"); ok {
			against = []string{"qxtd-http-bulk/" + setting}
		}
		for _, q := range rs {
			if !slices.Contains(against, q.Scenario) || q.Err != "" {
				continue
			}
			fmt.Fprintf(w, "\n%s against %s: relayed rate %.2f×", q.Scenario, k.Scenario, q.RelayedRate/k.RelayedRate)
			if q.FullLoopRate > 0 && k.FullLoopRate > 0 {
				fmt.Fprintf(w, ", full loop %.2f×", q.FullLoopRate/k.FullLoopRate)
			}
			if q.GatewayCPU > 0 && k.GatewayCPU > 0 {
				fmt.Fprintf(w, ", CPU per message %.2f×", q.GatewayCPU/k.GatewayCPU)
			}
			fmt.Fprintln(w)
		}
	}
}

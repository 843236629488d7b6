package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRestartScenario runs qxtd/restart small: a backlog queued over HTTP
// while the upstream is down, and both timed starts measured in order
// (a bind before its first submit is answered). The scenario itself fails
// unless qxtd counts the whole backlog before the second start; the
// receipts the stopped binds left at the peer are dropped, not sent to the
// next scenario's qxtd.
func TestRestartScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := buildQxtd(t, ctx)
	peer := startTestPeer(t, ctx, 10*time.Millisecond)
	const queued = 2500 // three requests, the last one short
	// One bind with a window of 1 to the peer, so that the backlog lasts
	// past the timed start for the drain to be measured.
	cfg := benchConfig{N: 500, Window: 1, Queued: queued, Stall: 10 * time.Second}
	o := daemonOpts{Bin: bin, BaseConfig: "../../configs/qxtd.yaml", PeerAddr: peer.Addr(), Binds: 1, Window: 1}
	res, lines, err := runOne(ctx, cfg, o, extraScenario(t, "qxtd/restart"), peer, nil)
	if err != nil {
		t.Fatalf("%v (gateway log: %q)", err, lines)
	}
	r := res.Restart
	if r == nil || r.Queued != queued || r.FillRate <= 0 || r.StoreBytes <= 0 || r.DrainRate <= 0 || r.DrainCPU <= 0 {
		t.Fatalf("restart result %+v", r)
	}
	for name, s := range map[string]Startup{"empty": r.Empty, "backlog": r.Full, "after SIGKILL": r.Crash} {
		if s.ReadyMS <= 0 || s.BindMS <= 0 || s.SubmitMS < s.BindMS {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if peer.Submits.Load() < 2+int64(cfg.N) {
		t.Errorf("the peer got %d submit_sm: not even the two first submits and the %d drained", peer.Submits.Load(), cfg.N)
	}
	peer.heldMu.Lock()
	held := len(peer.held)
	peer.heldMu.Unlock()
	if held != 0 {
		t.Errorf("%d receipts still held at the peer", held)
	}
	var b strings.Builder
	writeTable(&b, []Result{res})
	t.Log("\n" + b.String())
	if !strings.Contains(b.String(), "| qxtd/restart | 2500 |") || !strings.Contains(b.String(), "| pass |") {
		t.Errorf("table:\n%s", b.String())
	}
}

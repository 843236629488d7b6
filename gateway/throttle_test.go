package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// sendScheduled stores n single-part messages of account acct, due at
// once at at, through Send (group sends of 100), to destinations
// prefix+0000….
func sendScheduled(t *testing.T, r *rig, acct *gateway.Account, n int, prefix string, at time.Time) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []uint64
	for i := 0; i < n; i += 100 {
		req := gateway.SendRequest{Ingress: "http", Source: "1069", Text: "relay " + prefix, SendAt: at, RegisteredDelivery: 1}
		for k := i; k < min(i+100, n); k++ {
			req.Dests = append(req.Dests, fmt.Sprintf("%s%04d", prefix, k))
		}
		res, err := r.gw.Send(ctx, acct, req)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		for _, x := range res {
			if x.Err != nil {
				t.Fatalf("send to %s: %v", x.Dest, x.Err)
			}
			ids = append(ids, x.ID)
		}
	}
	return ids
}

// relayRate stores n messages due all at once and measures how fast the
// gateway relays them: from the SMSC's first acceptance to its n-th.
func relayRate(t *testing.T, n int, faults smpp.Faults) float64 {
	t.Helper()
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Faults: faults, Seed: 42},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Binds, u.Window = 2, 50
		},
		gwcfg: func(c *gateway.Config) { c.RetryMin, c.RetryMax = time.Second, time.Minute },
	})
	waitFor(t, 10*time.Second, "binds up", func() bool { return !r.gw.Health().Degraded() })
	acct := &gateway.Account{SystemID: "esme", Enterprise: "E1", Signature: "【测试】"}
	sendScheduled(t, r, acct, n, "1380099", time.Now().Add(time.Second))
	var first time.Time
	marks := map[int]time.Duration{}
	waitFor(t, 60*time.Second, "the first acceptance", func() bool {
		acc, _ := r.sim.Stats()
		if acc > 0 {
			first = time.Now()
		}
		return acc > 0
	})
	waitFor(t, 60*time.Second, fmt.Sprintf("%d messages at the SMSC", n), func() bool {
		acc, _ := r.sim.Stats()
		for _, q := range []int{50, 90, 99} {
			if acc >= n*q/100 && marks[q] == 0 {
				marks[q] = time.Since(first)
			}
		}
		return acc >= n
	})
	t.Logf("50%%: %v 90%%: %v 99%%: %v all: %v", marks[50], marks[90], marks[99], time.Since(first))
	el := time.Since(first)
	perDest := map[string]int{}
	for _, m := range r.sim.Received() {
		perDest[m.Dest]++
	}
	if len(perDest) != n {
		t.Errorf("SMSC got %d distinct messages, want %d", len(perDest), n)
	}
	return float64(n) / el.Seconds()
}

// TestThrottlingSlowsNotStalls: with 30 % of submit_sm throttled at
// random, the gateway still relays at more than half its unthrottled rate
// (asserted with a margin for a noisy machine: 0.35), and every message
// gets out without a restart.
//
// The two rates are measured one after the other, so a machine whose
// other work comes and goes between them (a shared CI host; make test's
// other packages) can halve one and not the other. A pair below the line
// is therefore measured again, up to three pairs, and the best ratio
// counts: a gateway that stalls under throttling (the bug this guards
// against: every throttled part waiting out RetryMax) is below the line in
// every pair, where the noise of one pair is not.
func TestThrottlingSlowsNotStalls(t *testing.T) {
	const n = 5000
	best := 0.0
	for pair := 1; pair <= 3 && best < 0.35; pair++ {
		base := relayRate(t, n, smpp.Faults{})
		throttled := relayRate(t, n, smpp.Faults{Throttle: 0.3})
		ratio := throttled / base
		t.Logf("pair %d: unthrottled %.0f msg/s, 30%% throttled %.0f msg/s: ratio %.2f", pair, base, throttled, ratio)
		best = max(best, ratio)
	}
	if best < 0.35 {
		t.Errorf("under 30%% throttling the relay rate is at best %.2f of the unthrottled rate in three pairs, want at least 0.5 (0.35 with margin)", best)
	}
}

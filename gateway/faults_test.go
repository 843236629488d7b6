package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// submitN submits n messages to distinct destinations concurrently and
// returns their ids.
func submitN(t *testing.T, e *esme, n int, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := e.submit(ctx, submitSM("1069", fmt.Sprintf("%s%04d", prefix, i), "fault "+prefix))
			if err != nil {
				errs <- err
				return
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("submit: %v", err)
	}
	return ids
}

// TestUpstreamFaults: whatever the SMSC does wrong — throttling, a full
// queue, dropped connections, late or missing answers — every accepted
// message ends with a receipt at the ESME.
func TestUpstreamFaults(t *testing.T) {
	cases := []struct {
		name   string
		faults smpp.Faults
		up     func(*gateway.UpstreamConfig)
	}{
		{name: "throttled", faults: smpp.Faults{Throttle: 0.5}},
		{name: "queue_full", faults: smpp.Faults{QueueFull: 0.5}},
		{name: "dropped_connections", faults: smpp.Faults{DropAfter: 15}},
		{name: "no_response", faults: smpp.Faults{NoResponse: 0.2},
			up: func(u *gateway.UpstreamConfig) { u.RespTimeout = 100 * time.Millisecond }},
		{name: "slow_responses", faults: smpp.Faults{RespDelay: 150 * time.Millisecond},
			up: func(u *gateway.UpstreamConfig) { u.RespTimeout = 100 * time.Millisecond }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: tc.faults}, upstream: tc.up})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			ids := submitN(t, e, 60, "1380013")
			got := e.waitReceipts(t, len(ids), 40*time.Second)
			for _, id := range ids {
				if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
					t.Errorf("message %s: receipt %+v present=%v", id, rc, ok)
				}
			}
			if n := len(r.sim.Received()); n < len(ids) {
				t.Errorf("simulator accepted %d, want at least %d", n, len(ids))
			}
		})
	}
}

// TestRejectedAndUndeliverable: a permanent submit error and a failed
// delivery both reach the ESME as final receipts with their states.
func TestRejectedAndUndeliverable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults smpp.Faults
		want   smpp.MessageState
		stored queue.State
	}{
		{"rejected", smpp.Faults{Reject: 1}, smpp.StateRejected, queue.StateRejected},
		{"undeliverable", smpp.Faults{Undeliv: 1}, smpp.StateUndeliverable, queue.StateUndeliverable},
		{"expired", smpp.Faults{Expire: 1}, smpp.StateExpired, queue.StateExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: tc.faults}})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			ids := submitN(t, e, 5, "1390013")
			got := e.waitReceipts(t, len(ids), 20*time.Second)
			for _, id := range ids {
				if got[id].State != tc.want {
					t.Errorf("%s: receipt state %s, want %s", id, got[id].State.Stat(), tc.want.Stat())
				}
			}
			// The counters follow each commit a moment later: a receipt
			// read from a committed transaction can reach the ESME first.
			waitFor(t, 10*time.Second, fmt.Sprintf("%d parts %s in the store's counts", len(ids), tc.stored),
				func() bool { return r.store.Counts()[tc.stored] == len(ids) })
		})
	}
}

// TestUpstreamTPSCap: with tps set, the upstream never gets more than the
// cap (plus its burst) per second, however many are queued.
func TestUpstreamTPSCap(t *testing.T) {
	const tps, n = 40, 30
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.TPS = tps }})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ids := submitN(t, e, n, "1370000")
	e.waitReceipts(t, len(ids), 20*time.Second)
	// The limiter's burst is tps/10 = 4: the rest go at 40/s, so all 30
	// take at least (30-4)/40 s = 650 ms. Without the cap they take a few ms.
	if el, min := time.Since(start), time.Duration(n-tps/10)*time.Second/tps; el < min {
		t.Fatalf("%d messages relayed in %v, faster than %d/s allows (%v)", n, el, tps, min)
	}
	// The status's view of it: the cap, and a pace no higher (each of
	// the binds' paces starts at the whole cap); a reload's cap is read.
	if c := r.gw.UpstreamCounts(); len(c) != 1 || c[0].TPS != tps || c[0].Pace != tps || c[0].Relayed != n {
		t.Errorf("upstream counts %+v, want tps and pace %d, %d relayed", c, tps, n)
	}
	if err := r.gw.SetUpstreamTPS("sim", 25); err != nil {
		t.Fatal(err)
	}
	if c := r.gw.UpstreamCounts(); c[0].TPS != 25 || c[0].Pace != 25 {
		t.Errorf("after a reload to 25: tps %v, pace %v", c[0].TPS, c[0].Pace)
	}
	if err := r.gw.SetUpstreamTPS("sim", 0); err != nil {
		t.Fatal(err)
	}
	// Lifted, the cap is gone at once; each bind keeps its 25/s until
	// successes raise it (pace.go), and the status says so.
	if c := r.gw.UpstreamCounts(); c[0].TPS != 0 || c[0].Pace != 2*25 {
		t.Errorf("after the cap is lifted: tps %v, pace %v, want 0 and the two binds' 25/s", c[0].TPS, c[0].Pace)
	}
	// Only binds up send: with the SMSC gone the pace is 0, not the
	// binds' limits that no bind can use (in a cluster, the binds
	// another node holds are likewise not this node's pace).
	_ = r.sim.Close()
	waitFor(t, 10*time.Second, "the binds down", func() bool {
		for _, h := range r.gw.Health().Upstreams {
			if h.BindsUp > 0 {
				return false
			}
		}
		return true
	})
	if c := r.gw.UpstreamCounts(); c[0].Pace != 0 {
		t.Errorf("with no bind up: pace %v, want 0", c[0].Pace)
	}
}

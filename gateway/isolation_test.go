package gateway_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestUpstreamIsolation: China Mobile goes through "cm", China Unicom
// through "cu". While cm cannot send — its SMSC gone, or bound but
// answering nothing — with a backlog of 500 messages for it, cu's
// messages still reach their SMSC and their receipts the ESME at once;
// and once cm is back, its backlog goes, each message once. Before, the
// dispatcher handed cm's backlog to cm's workers until its queue was
// full and then waited on it, so every other upstream stopped too: a
// carrier's outage stopped them all. qxtd_upstream_window_in_use shows
// the bound: cm holds nothing while down, at most its workers while
// stalled; qxtd_upstream_queued_segments shows cm's backlog.
func TestUpstreamIsolation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stalled bool // bound and answering nothing, rather than gone
	}{{"down", false}, {"stalled", true}} {
		t.Run(tc.name, func(t *testing.T) { upstreamIsolation(t, tc.stalled) })
	}
}

func upstreamIsolation(t *testing.T, stalled bool) {
	const backlog = 500
	hold := make(chan struct{})
	var cmFaults smpp.Faults
	if stalled {
		cmFaults.Hold = hold
	}
	cm, cu := upSim(cmFaults), upSim(smpp.Faults{})
	cml, cul := listen(t), listen(t)
	serveSim(t, cm, cml)
	serveSim(t, cu, cul)
	r := newRig(t, rigOpts{
		upstream: func(u *gateway.UpstreamConfig) {
			u.Name, u.Addr, u.Carriers = "cm", cml.Addr().String(), []string{"china_mobile"}
			u.ReconnectMax = 100 * time.Millisecond
			u.RespTimeout = time.Minute // held answers are not given up on: each message goes once
		},
		gwcfg: func(c *gateway.Config) {
			up := c.Upstreams[0]
			up.Name, up.Addr, up.Carriers = "cu", cul.Addr().String(), []string{"china_unicom"}
			c.Upstreams = append(c.Upstreams, up)
		},
		rules: anyNumberRules,
	})
	bindsUp := func(name string) int { return upHealth(t, r, name).BindsUp }
	waitUpstreams(t, r, "both upstreams bound", func() bool { return bindsUp("cm") == 2 && bindsUp("cu") == 2 })
	if !stalled {
		_ = cm.Close()
		waitUpstreams(t, r, "cm down", func() bool { return bindsUp("cm") == 0 })
	}
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i := range backlog {
		if _, err := alice.submit(ctx, submitSM("1069", fmt.Sprintf("1371%07d", i), "cm")); err != nil {
			t.Fatal(err)
		}
	}
	cuIDs := map[string]bool{}
	start := time.Now()
	for i := range 5 {
		id, err := alice.submit(ctx, submitSM("1069", fmt.Sprintf("1301%07d", i), "cu"))
		if err != nil {
			t.Fatal(err)
		}
		cuIDs[id] = true
	}
	// cm's messages cannot finish, so the first five receipts are cu's.
	got := alice.waitReceipts(t, len(cuIDs), 10*time.Second)
	t.Logf("cu's %d receipts at the ESME %v after their first submit", len(cuIDs), time.Since(start).Round(time.Millisecond))
	for id := range got {
		if !cuIDs[id] {
			t.Errorf("receipt of %s, not one of cu's messages", id)
		}
	}
	m := counters(t, r)
	if q, qu := m["qxtd_upstream_queued_segments,upstream=cm"], m["qxtd_upstream_queued_segments,upstream=cu"]; q != backlog || qu != 0 {
		t.Errorf("qxtd_upstream_queued_segments: cm %v, cu %v; want %d, 0", q, qu, backlog)
	}
	if q := upHealth(t, r, "cm").Queued; q != backlog {
		t.Errorf("Health: cm has %d queued, want %d", q, backlog)
	}
	inUse := m["qxtd_upstream_window_in_use,upstream=cm"]
	if !stalled && inUse != 0 {
		t.Errorf("cm down: qxtd_upstream_window_in_use %v, want 0 (its parts wait in the store)", inUse)
	}
	if max := float64(2 * 20); stalled && (inUse == 0 || inUse > max) {
		t.Errorf("cm stalled: qxtd_upstream_window_in_use %v, want 1..%v (its workers)", inUse, max)
	}

	// cm back: its backlog goes, each message once.
	if stalled {
		close(hold)
	} else {
		cm = upSim(smpp.Faults{})
		l, err := net.Listen("tcp", cml.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		serveSim(t, cm, l)
	}
	alice.waitReceipts(t, backlog+len(cuIDs), 30*time.Second)
	if q := counters(t, r)["qxtd_upstream_queued_segments,upstream=cm"]; q != 0 {
		t.Errorf("cm's backlog gone, qxtd_upstream_queued_segments %v", q)
	}
	seen := map[string]int{}
	for _, m := range cm.Received() {
		seen[m.Dest]++
	}
	for i := range backlog {
		if d := fmt.Sprintf("1371%07d", i); seen[d] != 1 {
			t.Errorf("%s reached cm %d times, want once", d, seen[d])
		}
	}
	if n := len(cu.Received()); n != len(cuIDs) {
		t.Errorf("cu got %d messages, want %d", n, len(cuIDs))
	}
}

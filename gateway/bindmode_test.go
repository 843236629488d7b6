package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestUpstreamTransmitterReceiver: an SMSC that takes no transceivers (as
// one of SMPP 3.3, which has none) is bound as the README's bind_mode
// transmitter_receiver says: the messages go out on the transmitters
// only, and the receipts and a handset's reply come in on the receiver
// and reach the ESME. Health and the metrics count the receiver apart.
func TestUpstreamTransmitterReceiver(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: 10 * time.Millisecond, NoTransceiver: true},
		upstream: func(u *gateway.UpstreamConfig) { u.Binds, u.Receivers = 2, 1 },
	})
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the transmitters and the receiver up", func() bool { return !r.gw.Health().Degraded() })
	want := gateway.UpstreamHealth{Name: "sim", BindsConfigured: 2, BindsUp: 2, ReceiversConfigured: 1, ReceiversUp: 1}
	if h := r.gw.Health().Upstreams[0]; h != want {
		t.Fatalf("health %+v, want %+v", h, want)
	}
	g := counters(t, r)
	if g["qxtd_upstream_receivers_up,upstream=sim"] != 1 || g["qxtd_upstream_receivers_configured,upstream=sim"] != 1 || g["qxtd_upstream_binds_up,upstream=sim"] != 2 {
		t.Fatalf("gauges %v", g)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 20
	ids := map[string]bool{}
	for i := range n {
		dst := []string{"13712345678", "13923412345"}[i%2]
		id, err := bob.submit(ctx, submitSM("", dst, fmt.Sprintf("over the transmitter %d", i)))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids[id] = true
	}
	got := bob.waitReceipts(t, n, 20*time.Second)
	for id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v (present %v)", id, rc, ok)
		}
	}
	recv := r.sim.Received()
	if len(recv) != n {
		t.Fatalf("the SMSC received %d messages, want %d", len(recv), n)
	}
	for _, m := range recv {
		if m.Bind != smpp.BindTransmitter {
			t.Fatalf("message %s came on a %s bind", m.ID, m.Bind)
		}
	}

	if err := r.sim.InjectMO("13923412345", "106575002", "a reply on the receiver"); err != nil {
		t.Fatal(err)
	}
	mo := bob.waitMOs(t, 1)
	if moText(t, mo[0]) != "a reply on the receiver" {
		t.Fatalf("bob got %+v", mo[0])
	}

	for kind, wantPeak := range map[smpp.BindKind]int{smpp.BindTransmitter: 2, smpp.BindReceiver: 1, smpp.BindTransceiver: 0} {
		if _, peak := r.sim.BindsOfKind("up", kind); peak != wantPeak {
			t.Errorf("the SMSC saw at most %d %s binds, want %d", peak, kind, wantPeak)
		}
	}
}

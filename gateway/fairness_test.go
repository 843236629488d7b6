package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// TestTenantShareOfWindows: enterprise A's backlog holds at most its share
// of the upstream windows while B has messages due, so B's few messages go
// out at once instead of after A's whole backlog; the same when A sends
// its whole backlog with priority (the priority lane is narrow: it is no
// way around the shares).
func TestTenantShareOfWindows(t *testing.T) {
	for _, priority := range []bool{false, true} {
		t.Run(fmt.Sprintf("priority %v", priority), func(t *testing.T) { tenantShare(t, priority) })
	}
}

func tenantShare(t *testing.T, priority bool) {
	const backlog, few = 2000, 5
	r := newRig(t, rigOpts{
		// 20 slots at 20 ms each: A's backlog takes about 2 s.
		sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{RespDelay: 20 * time.Millisecond}},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Binds, u.Window = 2, 10
		},
	})
	waitFor(t, 10*time.Second, "binds up", func() bool { return !r.gw.Health().Degraded() })
	a := &gateway.Account{SystemID: "esme", Enterprise: "A", Signature: "【甲】"}
	b := &gateway.Account{SystemID: "esme", Enterprise: "B", Signature: "【乙】"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := 0; i < backlog; i += 100 {
		req := gateway.SendRequest{Ingress: "http", Source: "1069", Text: "relay A", RegisteredDelivery: 1, Priority: priority}
		for k := i; k < i+100; k++ {
			req.Dests = append(req.Dests, fmt.Sprintf("1380011%04d", k))
		}
		if _, err := r.gw.Send(ctx, a, req); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (na, nb int) {
		for _, m := range r.sim.Received() {
			switch {
			case strings.HasPrefix(m.Dest, "1380011"):
				na++
			case strings.HasPrefix(m.Dest, "1380022"):
				nb++
			}
		}
		return na, nb
	}
	waitFor(t, 10*time.Second, "A's backlog under way", func() bool { na, _ := count(); return na > 0 })
	sendScheduled(t, r, b, few, "1380022", time.Time{})
	var naAtB int
	waitFor(t, 30*time.Second, "B's messages at the SMSC", func() bool {
		na, nb := count()
		naAtB = na
		return nb == few
	})
	t.Logf("B's %d messages were all out when %d of A's %d were", few, naAtB, backlog)
	if naAtB > backlog/2 {
		t.Errorf("B's messages went out after %d of A's %d: they waited for A's backlog", naAtB, backlog)
	}
	waitFor(t, 60*time.Second, "A's backlog out", func() bool { na, _ := count(); return na == backlog })
}

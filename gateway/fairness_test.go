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

// TestEnterpriseShareAcrossUpstreams: an enterprise's backlog for one
// upstream (a campaign to China Mobile numbers, through a slow SMSC)
// does not hold up its messages for another (a few to China Unicom
// numbers, through another upstream that is idle): they go out while
// the backlog is still going, though the backlog could fill the
// enterprise's whole share of the windows on its own.
func TestEnterpriseShareAcrossUpstreams(t *testing.T) {
	const backlog, few = 3000, 5
	fast := upSim(smpp.Faults{})
	fl := listen(t)
	serveSim(t, fast, fl)
	r := newRig(t, rigOpts{
		// China Mobile's upstream has 100 slots, more than the
		// enterprise's share of all the windows (half of 120): the
		// share, 60 slots at 50 ms each, takes the backlog 2.5 s.
		sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{RespDelay: 50 * time.Millisecond}},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Name, u.Carriers, u.Binds, u.Window = "cm", []string{"china_mobile"}, 2, 50
		},
		gwcfg: func(c *gateway.Config) {
			up := c.Upstreams[0]
			up.Name, up.Addr, up.Carriers, up.Window = "cu", fl.Addr().String(), []string{"china_unicom"}, 10
			up.SystemID, up.Password = "up", "uppw"
			c.Upstreams = append(c.Upstreams, up)
		},
		rules: anyNumberRules,
	})
	waitFor(t, 10*time.Second, "binds up", func() bool { return !r.gw.Health().Degraded() })
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := 0; i < backlog; i += 100 {
		req := gateway.SendRequest{Ingress: "http", Source: "1069", Text: "campaign", RegisteredDelivery: 1}
		for k := i; k < i+100; k++ {
			req.Dests = append(req.Dests, fmt.Sprintf("1380011%04d", k))
		}
		if res, err := r.gw.Send(ctx, acct, req); err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
	}
	atCM := func() int { return len(r.sim.Received()) }
	waitFor(t, 10*time.Second, "the backlog under way", func() bool { return atCM() > 0 })
	req := gateway.SendRequest{Ingress: "http", Source: "1069", Text: "code 1234", RegisteredDelivery: 1}
	for k := range few {
		req.Dests = append(req.Dests, fmt.Sprintf("1301234%04d", k))
	}
	if res, err := r.gw.Send(ctx, acct, req); err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	var cmAtCU int
	waitFor(t, 30*time.Second, "the few at China Unicom's SMSC", func() bool {
		cmAtCU = atCM()
		return len(fast.Received()) == few
	})
	t.Logf("the %d for China Unicom were all out when %d of the %d for China Mobile were", few, cmAtCU, backlog)
	if cmAtCU > backlog/2 {
		t.Errorf("the few for China Unicom went out after %d of the %d for China Mobile: they waited for the backlog of another upstream", cmAtCU, backlog)
	}
	waitFor(t, 60*time.Second, "the backlog out", func() bool { return atCM() == backlog })
}

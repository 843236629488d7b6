package gateway_test

import (
	"context"
	"fmt"
	"github.com/qxtd/qxtd/queue"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestRouteFailover: two upstreams serve China Mobile, "primary" first.
// While the primary has binds up, messages go to it. Once it has had no
// bind up for FailoverAfter, new messages go to "backup" (counted in
// qxtd_upstream_failovers_total, Health says it is routed around), and
// their receipts come back; messages routed to the primary before that
// stay with it and go once it is back; and once it is back, new
// messages go to it again. Every message reaches one SMSC, once, and its
// receipt the ESME. Before, the first upstream listing the carrier took
// every message, and they waited for it whatever the second could do.
func TestRouteFailover(t *testing.T) {
	const after = 300 * time.Millisecond
	newSim := func() *smpp.Simulator { return upSim(smpp.Faults{}) }
	serve := func(s *smpp.Simulator, l net.Listener) { serveSim(t, s, l) }
	r, primary, backup, pl := failoverRig(t, after, nil)
	health := func(name string) gateway.UpstreamHealth { return upHealth(t, r, name) }
	waitHealth := func(what string, ok func() bool) { t.Helper(); waitUpstreams(t, r, what, ok) }
	waitHealth("both upstreams bound", func() bool { return health("primary").BindsUp == 2 && health("backup").BindsUp == 2 })
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sent := 0
	send := func(dst string) string {
		t.Helper()
		id, err := alice.submit(ctx, submitSM("1069", dst, "failover "+dst))
		if err != nil {
			t.Fatalf("submit to %s: %v", dst, err)
		}
		sent++
		return id
	}
	failovers := func() float64 {
		return counters(t, r)["qxtd_upstream_failovers_total,to=backup,upstream=primary"]
	}

	// 1. Both up: the primary takes China Mobile.
	send("13712340001")
	alice.waitReceipts(t, sent, 10*time.Second)

	// 2. The primary's SMSC goes away. Until FailoverAfter has passed the
	// messages are still routed to it and wait; then they go to the backup.
	_ = primary.Close()
	waitHealth("primary down", func() bool { return health("primary").BindsUp == 0 })
	waiting := []string{"13712340002", "13712340003"}
	if health("primary").RoutedAround {
		t.Fatalf("primary routed around at once, want after %v", after)
	}
	for _, d := range waiting {
		send(d)
	}
	waitHealth("primary routed around", func() bool { return health("primary").RoutedAround })
	before := failovers()
	for i := range 5 {
		send(fmt.Sprintf("1371234100%d", i))
	}
	if got := failovers() - before; got != 5 {
		t.Errorf("qxtd_upstream_failovers_total{primary,backup} rose by %v, want 5", got)
	}
	if g := counters(t, r); g["qxtd_upstream_routed_around,upstream=primary"] != 1 || g["qxtd_upstream_routed_around,upstream=backup"] != 0 {
		t.Errorf("qxtd_upstream_routed_around: primary %v, backup %v; want 1, 0", g["qxtd_upstream_routed_around,upstream=primary"], g["qxtd_upstream_routed_around,upstream=backup"])
	}
	alice.waitReceipts(t, sent-len(waiting), 10*time.Second)

	// 3. The primary comes back on its address: what waited goes to it,
	// and so do new messages.
	again := newSim()
	l, err := net.Listen("tcp", pl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	serve(again, l)
	waitHealth("primary back", func() bool { return health("primary").BindsUp > 0 && !health("primary").RoutedAround })
	send("13712342000")
	alice.waitReceipts(t, sent, 15*time.Second)
	if g := counters(t, r)["qxtd_upstream_routed_around,upstream=primary"]; g != 0 {
		t.Errorf("qxtd_upstream_routed_around{primary} %v once it is back, want 0", g)
	}

	where := map[string][]string{}
	for name, s := range map[string]*smpp.Simulator{"primary": primary, "backup": backup, "primary again": again} {
		for _, m := range s.Received() {
			where[m.Dest] = append(where[m.Dest], name)
		}
	}
	want := map[string]string{"13712340001": "primary", "13712342000": "primary again"}
	for _, d := range waiting {
		want[d] = "primary again"
	}
	for i := range 5 {
		want[fmt.Sprintf("1371234100%d", i)] = "backup"
	}
	for d, w := range want {
		if got := where[d]; len(got) != 1 || got[0] != w {
			t.Errorf("%s reached %v, want %s once", d, got, w)
		}
	}
	if len(where) != len(want) {
		t.Errorf("the SMSCs got %d numbers, want %d: %v", len(where), len(want), where)
	}
	for id, rc := range alice.receipts() {
		if rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %v, want DELIVRD", id, rc.State)
		}
	}
}

// TestRouteFailoverNeedsAnother: an upstream no other upstream could
// stand in for (here the only one) is never said to be routed around,
// however long it is down: its messages wait for it, and /readyz and the
// admin status do not claim they go elsewhere.
func TestRouteFailoverNeedsAnother(t *testing.T) {
	r := newRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.FailoverAfter = time.Millisecond }})
	deadline := time.Now().Add(15 * time.Second)
	for r.gw.Health().Upstreams[0].BindsUp < 2 {
		if time.Now().After(deadline) {
			t.Fatal("binds not up")
		}
		tm := time.NewTimer(10 * time.Millisecond) // polling Health
		<-tm.C
	}
	_ = r.sim.Close()
	for r.gw.Health().Upstreams[0].BindsUp > 0 {
		if time.Now().After(deadline) {
			t.Fatal("binds not down")
		}
		tm := time.NewTimer(10 * time.Millisecond) // polling Health
		<-tm.C
	}
	tm := time.NewTimer(20 * time.Millisecond) // FailoverAfter many times over
	<-tm.C
	if h := r.gw.Health().Upstreams[0]; h.RoutedAround {
		t.Fatalf("the only upstream routed around: %+v", h)
	}
}

// upSim is an SMSC for the tests of several upstreams: it keeps what it
// accepts (Received) and sends each receipt at once, with faults f.
func upSim(f smpp.Faults) *smpp.Simulator {
	return smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", DLRDelay: time.Millisecond, Record: true, Faults: f})
}

// serveSim serves s on l until the test ends.
func serveSim(t *testing.T, s *smpp.Simulator, l net.Listener) {
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
}

// upHealth is the Health of r's upstream name.
func upHealth(t *testing.T, r *rig, name string) gateway.UpstreamHealth {
	t.Helper()
	for _, u := range r.gw.Health().Upstreams {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no upstream %s in Health", name)
	return gateway.UpstreamHealth{}
}

// waitUpstreams waits up to 15 s for ok, what r's upstreams' Health must
// come to say.
func waitUpstreams(t *testing.T, r *rig, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 15 s: %+v", what, r.gw.Health().Upstreams)
		}
		tm := time.NewTimer(10 * time.Millisecond) // polling Health, which has no event to wait on
		<-tm.C
	}
}

// TestRouteFailoverMovesQueued: with FailoverQueued, the messages queued
// for an upstream that is routed around — routed to it before its
// outage was FailoverAfter old — move to the backup and reach the ESME's
// receipts from there, each number at one SMSC only; counted in
// qxtd_upstream_moved_queued_total. A backup that makes its parts another
// way (here a UDH with a 16-bit reference instead of an 8-bit one) gets
// them made again from the text when they count as many segments there
// (105 characters: two parts either way), and leaves for the primary
// those that would count other segments (134 characters: two parts of 67
// with the primary's UDH, three of at most 66 with the backup's), which go
// once it is back.
func TestRouteFailoverMovesQueued(t *testing.T) {
	for _, tc := range []struct {
		name string
		same bool // the backup makes its parts as the primary does
	}{{"same parts", true}, {"other parts", false}} {
		t.Run(tc.name, func(t *testing.T) { routeFailoverMovesQueued(t, tc.same) })
	}
}

func routeFailoverMovesQueued(t *testing.T, same bool) {
	// after: long enough for the 40 submits below under -race on a busy
	// machine (at 300 ms a CI-loaded run routed around before the last).
	const after, queued = time.Second, 40
	r, primary, backup, pl := failoverRig(t, after, func(c *gateway.Config) {
		if !same {
			c.Upstreams[1].Segment.Concat = segment.ConcatUDH16
		}
		c.FailoverQueued = true
	})
	health := func(name string) gateway.UpstreamHealth { return upHealth(t, r, name) }
	waitUpstreams(t, r, "both upstreams bound", func() bool { return health("primary").BindsUp == 2 && health("backup").BindsUp == 2 })
	_ = primary.Close()
	waitUpstreams(t, r, "primary down", func() bool { return health("primary").BindsUp == 0 })
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Signed with 【甲公司】 (5 characters), in UCS-2: 67 characters a part
	// with an 8-bit reference, 66 with a 16-bit one.
	fits, grows := strings.Repeat("m", 100), strings.Repeat("g", 129)
	movable := map[string]bool{} // by number: should move to the backup
	for i := range queued {
		text, dest := fits, fmt.Sprintf("137123%05d", i)
		if !same && i%2 == 1 {
			text = grows
		} else {
			movable[dest] = true
		}
		if _, err := alice.submit(ctx, submitSM("1069", dest, text)); err != nil {
			t.Fatal(err)
		}
	}
	if health("primary").RoutedAround {
		t.Fatalf("routed around before %v: the messages did not queue for the primary", after)
	}
	moved := func() float64 { return counters(t, r)["qxtd_upstream_moved_queued_total,to=backup,upstream=primary"] }
	alice.waitReceipts(t, len(movable), 15*time.Second)
	if got := moved(); got != float64(len(movable)) {
		t.Errorf("qxtd_upstream_moved_queued_total{primary,backup} %v, want %d", got, len(movable))
	}
	var again *smpp.Simulator
	if !same {
		// Two more turns of moveQueued: the rest may not move.
		tm := time.NewTimer(2500 * time.Millisecond) // waiting for something that must not happen
		<-tm.C
		if n, m := len(alice.receipts()), moved(); n != len(movable) || m != float64(len(movable)) {
			t.Fatalf("the rest count other segments at the backup, yet %d receipts, %v moved; want %d", n, m, len(movable))
		}
		again = upSim(smpp.Faults{})
		l, err := net.Listen("tcp", pl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		serveSim(t, again, l)
		alice.waitReceipts(t, queued, 15*time.Second)
	}
	// Each number at one SMSC, in two parts, with the header its
	// upstream makes: IEI 0x08 (16-bit reference) at a backup making
	// them so, 0x00 (8-bit) at the primary.
	parts := map[string]map[*smpp.Simulator]int{}
	for _, s := range []*smpp.Simulator{backup, again} {
		if s == nil {
			continue
		}
		for _, m := range s.Received() {
			if parts[m.Dest] == nil {
				parts[m.Dest] = map[*smpp.Simulator]int{}
			}
			parts[m.Dest][s]++
			iei := byte(0x00)
			if s == backup && !same {
				iei = 0x08
			}
			if m.ESMClass&0x40 == 0 || len(m.ShortMessage) < 2 || m.ShortMessage[1] != iei {
				t.Errorf("%s at the %s: esm_class %#x, short_message % x; want a UDH with IEI %#x",
					m.Dest, map[bool]string{true: "backup", false: "primary"}[s == backup], m.ESMClass, m.ShortMessage[:min(8, len(m.ShortMessage))], iei)
			}
		}
	}
	if len(parts) != queued {
		t.Errorf("%d numbers reached an SMSC, want %d", len(parts), queued)
	}
	for d, by := range parts {
		at := again
		if movable[d] {
			at = backup
		}
		if len(by) != 1 || by[at] != 2 {
			t.Errorf("%s: parts by SMSC %v, want 2 at the %s only", d, by, map[bool]string{true: "backup", false: "primary"}[at == backup])
		}
	}
	if err := r.store.Check(); err != nil {
		t.Error(err)
	}
}

// failoverRig is a rig with two upstreams serving China Mobile, "primary"
// first and "backup", each with an SMSC of its own (upSim), failover
// after after, and cfg's changes to the configuration (nil: none). It
// returns the primary's listener, on whose address a test brings the
// primary back.
func failoverRig(t *testing.T, after time.Duration, cfg func(*gateway.Config)) (r *rig, primary, backup *smpp.Simulator, pl net.Listener) {
	primary, backup = upSim(smpp.Faults{}), upSim(smpp.Faults{})
	pl, bl := listen(t), listen(t)
	serveSim(t, primary, pl)
	serveSim(t, backup, bl)
	r = newRig(t, rigOpts{
		upstream: func(u *gateway.UpstreamConfig) {
			u.Name, u.Addr, u.Carriers = "primary", pl.Addr().String(), []string{"china_mobile"}
			u.ReconnectMax = 100 * time.Millisecond
		},
		gwcfg: func(c *gateway.Config) {
			up := c.Upstreams[0]
			up.Name, up.Addr = "backup", bl.Addr().String()
			c.Upstreams = append(c.Upstreams, up)
			c.FailoverAfter = after
			if cfg != nil {
				cfg(c)
			}
		},
		rules: anyNumberRules,
	})
	return r, primary, backup, pl
}

// TestRouteFailoverMovesQueuedByCarrier: the messages queued for an
// aggregator serving two carriers, once it is routed around, go where new
// messages to their numbers go: China Mobile's to the upstream of China
// Mobile, China Unicom's to China Unicom's, though neither serves every
// carrier the aggregator serves; each counted under its own stand-in.
func TestRouteFailoverMovesQueuedByCarrier(t *testing.T) {
	const after, each = 300 * time.Millisecond, 10
	cm, cu := upSim(smpp.Faults{}), upSim(smpp.Faults{})
	cml, cul := listen(t), listen(t)
	serveSim(t, cm, cml)
	serveSim(t, cu, cul)
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Name, u.Carriers, u.ReconnectMax = "agg", []string{"china_mobile", "china_unicom"}, 100*time.Millisecond
		},
		gwcfg: func(c *gateway.Config) {
			for _, x := range []struct{ name, addr, carrier string }{{"cm", cml.Addr().String(), "china_mobile"}, {"cu", cul.Addr().String(), "china_unicom"}} {
				up := c.Upstreams[0]
				up.Name, up.Addr, up.Carriers = x.name, x.addr, []string{x.carrier}
				c.Upstreams = append(c.Upstreams, up)
			}
			c.FailoverAfter, c.FailoverQueued = after, true
		},
		rules: anyNumberRules,
	})
	health := func(name string) gateway.UpstreamHealth { return upHealth(t, r, name) }
	waitUpstreams(t, r, "all upstreams bound", func() bool {
		return health("agg").BindsUp == 2 && health("cm").BindsUp == 2 && health("cu").BindsUp == 2
	})
	_ = r.sim.Close()
	waitUpstreams(t, r, "the aggregator down", func() bool { return health("agg").BindsUp == 0 })
	sendBothCarriers(t, r, each)
	if health("agg").RoutedAround {
		t.Fatalf("routed around before %v: the messages did not queue for the aggregator", after)
	}
	waitUpstreams(t, r, "each carrier's messages at its own SMSC", func() bool {
		return len(cm.Received()) == each && len(cu.Received()) == each
	})
	for s, prefix := range map[*smpp.Simulator]string{cm: "138", cu: "130"} {
		for _, m := range s.Received() {
			if !strings.HasPrefix(m.Dest, prefix) {
				t.Errorf("%s reached the SMSC of the other carrier", m.Dest)
			}
		}
	}
	c := counters(t, r)
	if a, b := c["qxtd_upstream_moved_queued_total,to=cm,upstream=agg"], c["qxtd_upstream_moved_queued_total,to=cu,upstream=agg"]; a != each || b != each {
		t.Errorf("moved from agg: %v to cm, %v to cu; want %d each", a, b, each)
	}
	if err := r.store.Check(); err != nil {
		t.Error(err)
	}
}

// TestQueuedForRemovedUpstream: messages queued for an upstream that a
// restart no longer has in its configuration (renamed here, "old" to
// "new") are not failed no_route: they go where their carrier's new
// messages go, their parts made again for it (its options are known, the
// old one's are not), and are delivered; counted as moved. One that
// counts a segment more there (134 characters: 2 parts with old's 8-bit
// reference, 3 with new's 16-bit one) goes all the same, its enterprise's
// reservation growing with it: it could not be sent otherwise.
func TestQueuedForRemovedUpstream(t *testing.T) {
	const short, long = 20, 5
	path := filepath.Join(t.TempDir(), "q.db")
	queued := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Name, u.Password = "old", "not the SMSC's" },
		gwcfg:    func(c *gateway.Config) { c.FailoverQueued = true }})
	e, err := queued.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	submitN(t, e, short, "1370000")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range long {
		if _, err := e.submit(ctx, payloadSM(t, fmt.Sprintf("1370001%04d", i), strings.Repeat("长", 100))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.submit(ctx, payloadSM(t, "13700020000", strings.Repeat("长", 130))); err != nil { // with 【测试】: 134
		t.Fatal(err)
	}
	queued.stop()

	r := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Name, u.Segment.Concat = "new", segment.ConcatUDH16 },
		gwcfg:    func(c *gateway.Config) { c.FailoverQueued = true }})
	e2, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	e2.waitReceipts(t, short+long+1, 15*time.Second)
	if n := len(r.sim.Received()); n != short+2*long+3 {
		t.Errorf("%d submit_sm at the SMSC, want %d (%d short, %d in two parts, one in three)", n, short+2*long+3, short, long)
	}
	for _, m := range r.sim.Received() {
		if !strings.HasPrefix(m.Dest, "1370000") && (len(m.ShortMessage) < 2 || m.ShortMessage[1] != 0x08) {
			t.Errorf("%s: a part without the new upstream's 16-bit reference: % x", m.Dest, m.ShortMessage[:min(8, len(m.ShortMessage))])
		}
	}
	if got := counters(t, r)["qxtd_upstream_moved_queued_total,to=new,upstream=old"]; got != short+long+1 {
		t.Errorf("moved from old to new: %v, want %d", got, short+long+1)
	}
	if n := r.store.Counts()[queue.StateRejected]; n != 0 {
		t.Errorf("%d parts rejected", n)
	}
}

// TestQueuedForRemovedUpstreamNoRoute: of the messages queued for an
// upstream no longer configured, those whose carrier another upstream
// serves go there; those whose carrier none serves now are refused
// no_route, as a new message to the number would be, rather than wait
// for good.
func TestQueuedForRemovedUpstreamNoRoute(t *testing.T) {
	const each = 5
	path := filepath.Join(t.TempDir(), "q.db")
	queued := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond}, rules: anyNumberRules,
		upstream: func(u *gateway.UpstreamConfig) {
			u.Name, u.Password, u.Carriers = "old", "not the SMSC's", []string{"china_mobile", "china_unicom"}
		},
		gwcfg: func(c *gateway.Config) { c.FailoverQueued = true }})
	ids := map[string]uint64{}
	for _, x := range sendBothCarriers(t, queued, each) {
		ids[x.Dest] = x.ID
	}
	queued.stop()

	r := newRig(t, rigOpts{dbPath: path, sim: smpp.SimOptions{DLRDelay: time.Millisecond}, rules: anyNumberRules,
		upstream: func(u *gateway.UpstreamConfig) { u.Name, u.Carriers = "new", []string{"china_mobile"} },
		gwcfg:    func(c *gateway.Config) { c.FailoverQueued = true }})
	final := func(dest string) queue.State {
		m, err := r.store.Get(ids[dest])
		if err != nil {
			t.Fatal(err)
		}
		return m.Parts[0].State
	}
	waitFor(t, 15*time.Second, "every message final", func() bool {
		for d := range ids {
			if !final(d).Final() {
				return false
			}
		}
		return true
	})
	for d := range ids {
		want := queue.StateDelivered
		if strings.HasPrefix(d, "130") {
			want = queue.StateRejected
		}
		if got := final(d); got != want {
			t.Errorf("%s: %v, want %v", d, got, want)
		}
	}
	if m, _ := r.store.Get(ids["13012340000"]); m.Parts[0].ErrCode != "no_route" {
		t.Errorf("China Unicom's: error %q, want no_route", m.Parts[0].ErrCode)
	}
	if n := len(r.sim.Received()); n != each {
		t.Errorf("%d at the new upstream's SMSC, want the %d for China Mobile", n, each)
	}
}

// sendBothCarriers sends, as anyNumberRules' alice over HTTP, one message
// to each of n China Mobile numbers (1380013…) and n China Unicom ones
// (1301234…), and wants every one accepted.
func sendBothCarriers(t *testing.T, r *rig, n int) []gateway.SendResult {
	t.Helper()
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	req := gateway.SendRequest{Ingress: "http", Source: "1069", Text: "queued", RegisteredDelivery: 1}
	for i := range n {
		req.Dests = append(req.Dests, fmt.Sprintf("1380013%04d", i), fmt.Sprintf("1301234%04d", i))
	}
	res, err := r.gw.Send(t.Context(), acct, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res {
		if x.Err != nil {
			t.Fatal(x.Dest, x.Err)
		}
	}
	return res
}

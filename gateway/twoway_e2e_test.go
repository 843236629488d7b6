package gateway_test

import (
	"cmp"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// twoWayRig: two enterprises with service numbers (E1 106575001 with
// 2-digit extensions, alice on extension 12; E2 106575002), and E3
// without one (sources relayed as before).
func twoWayRig(t testing.TB, o rigOpts) (*rig, *policy.Policy) {
	t.Helper()
	var pol *policy.Policy
	o.rules = func(t testing.TB, db *bbolt.DB) gateway.Policy {
		var err error
		pol, err = policy.New(db, policy.Config{Packages: testPackages, BcryptCost: 4, DefaultTPS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		wl := []string{"13712345678", "13923412345"}
		_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
			{
				Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1, ServiceNumber: "106575001", ExtLen: 2},
				Users: []policy.NewUser{
					{Name: "甲", SystemID: "alice", Password: "secret1", Extension: "12"},
					{Name: "甲管理员", SystemID: "amy", Password: "secret1", Role: policy.RoleAdmin},
				},
				Whitelist: wl,
			},
			{
				Enterprise: policy.Enterprise{Code: "E2", Name: "乙公司", Signature: "【乙公司】", Package: 1, ServiceNumber: "106575002"},
				Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret2"}},
				Whitelist:  wl,
			},
			{
				Enterprise: policy.Enterprise{Code: "E3", Name: "丙公司", Signature: "【丙公司】", Package: 1},
				Users:      []policy.NewUser{{Name: "丙", SystemID: "carol", Password: "secret3"}},
				Whitelist:  wl,
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if o.wrapRules != nil {
			return o.wrapRules(gateway.Rules{P: pol})
		}
		return gateway.Rules{P: pol}
	}
	return newRig(t, o), pol
}

// waitReceived waits until the simulator accepted n messages.
func (r *rig) waitReceived(t *testing.T, n int) []smpp.SimMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if got := r.sim.Received(); len(got) >= n {
			return got
		}
		if ctx.Err() != nil {
			t.Fatalf("the SMSC received %d messages, want %d", len(r.sim.Received()), n)
		}
		waitABit(ctx)
	}
}

// TestServiceNumberSources: the source of every message is the
// enterprise's service number plus an allowed extension, over SMPP.
func TestServiceNumberSources(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	carol, err := r.bind("carol", "secret3", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"106575002", "10086", "106575001123", "10657500"} {
		_, err := alice.submit(ctx, submitSM(src, "13712345678", "x"))
		wantStatus(t, err, 0x409)
	}
	want := []string{}
	for _, tc := range []struct{ src, want string }{
		{"", "10657500112"},            // empty: the service number + alice's extension
		{"106575001", "106575001"},     // the service number alone
		{"10657500199", "10657500199"}, // another extension of at most ext_len digits
	} {
		if _, err := alice.submit(ctx, submitSM(tc.src, "13712345678", "x")); err != nil {
			t.Fatalf("source %q: %v", tc.src, err)
		}
		want = append(want, tc.want)
	}
	// Without a service number, the source is relayed as given.
	if _, err := carol.submit(ctx, submitSM("1069", "13712345678", "x")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "1069")
	got := map[string]int{}
	for _, m := range r.waitReceived(t, len(want)) {
		got[m.Source]++
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("the SMSC got source %s %d times, want once (all: %v)", w, got[w], got)
		}
	}
}

// TestUserChangedWhileBound: the operator changes a bound user's
// extension and shows its user signature, and the next message on the
// same bind goes from the new extension, signed with the user's name.
// Before, a bind kept the user as it was when it bound, so an ESME bound
// for weeks sent from the old extension (its replies going to the new
// one) until it was restarted.
func TestUserChangedWhileBound(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := r.bind("alice", "secret1", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.submit(ctx, submitSM("", "13712345678", "before")); err != nil {
		t.Fatal(err)
	}
	ext, show := "34", true
	if _, err := pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{Extension: &ext, ShowSignature: &show}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.submit(ctx, submitSM("", "13712345678", "after")); err != nil {
		t.Fatal(err)
	}
	got := r.waitReceived(t, 2)
	for i, want := range []struct{ source, text string }{
		{"10657500112", "【甲公司】before"},
		{"10657500134", "【甲公司】after——甲"},
	} {
		if got[i].Source != want.source || moText(t, got[i]) != want.text {
			t.Errorf("message %d: from %s reading %q, want from %s reading %q", i+1, got[i].Source, moText(t, got[i]), want.source, want.text)
		}
	}
}

// waitMOs waits until the ESME received n replies; their texts decoded.
func (e *esme) waitMOs(t *testing.T, n int) []smpp.SimMessage {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		order := make([]int, len(e.mos))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(e.moSeqs[a], e.moSeqs[b]) })
		got := make([]smpp.SimMessage, len(order))
		for i, k := range order {
			got[i] = e.mos[k]
		}
		e.mu.Unlock()
		if len(got) >= n {
			return got // in the order they came on the wire
		}
		select {
		case <-e.got:
		case <-deadline.C:
			t.Fatalf("the ESME got %d replies, want %d", len(got), n)
		}
	}
}

func moText(t *testing.T, m smpp.SimMessage) string {
	t.Helper()
	text, _, err := segment.DecodeIncoming(m.DataCoding, m.ESMClass, m.ShortMessage, m.TLVs[segment.TagMessagePayload], false)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestRepliesRouted: replies to a service number + extension reach the
// enterprise's receiver (the user's, by extension), are listed in its
// inbox, and a reply to an unknown number is kept and counted.
func TestRepliesRouted(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{})
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r) // an upstream bind receives the replies
	inject := func(src, dst, text string) {
		t.Helper()
		if err := r.sim.InjectMO(src, dst, text); err != nil {
			t.Fatalf("inject %s → %s: %v", src, dst, err)
		}
	}
	inject("13712345678", "10657500112", "你好，收到")       // alice's extension
	inject("13923412345", "1065750029", "reply to bob") // E2's number + an extension nobody has
	inject("13923412345", "106999", "nobody's")         // no enterprise

	got := alice.waitMOs(t, 1)
	if got[0].Source != "13712345678" || got[0].Dest != "10657500112" || got[0].ESMClass != 0 || moText(t, got[0]) != "你好，收到" {
		t.Fatalf("alice got %+v (%q)", got[0], moText(t, got[0]))
	}
	got = bob.waitMOs(t, 1)
	if got[0].Dest != "1065750029" || moText(t, got[0]) != "reply to bob" {
		t.Fatalf("bob got %+v", got[0])
	}

	list, _, err := r.store.Inbox("E1", queue.InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 || list[0].Account != "alice" || list[0].Extension != "12" || list[0].Text != "你好，收到" {
		t.Fatalf("E1 inbox %+v, %v", list, err)
	}
	list, _, err = r.store.Inbox("", queue.InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 || list[0].Dest != "106999" || list[0].Text != "nobody's" {
		t.Fatalf("unmatched %+v, %v", list, err)
	}
	for key, want := range map[string]float64{
		"qxtd_mo_received_total,result=matched":   2,
		"qxtd_mo_received_total,result=unmatched": 1,
		"qxtd_mo_unmatched_total":                 1,
	} {
		if got := counters(t, r)[key]; got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}

// counters reads every counter and gauge of the rig's registry, keyed
// name,label=value,….
func counters(t *testing.T, r *rig) map[string]float64 {
	t.Helper()
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				have[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				have[key] = m.GetGauge().GetValue()
			}
		}
	}
	return have
}

// TestReplyKeptAcrossRestart: a reply acknowledged to the SMSC while no
// receiver of its enterprise is bound is forwarded after a restart.
func TestReplyKeptAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	r, _ := twoWayRig(t, rigOpts{dbPath: path})
	waitReady(t, r)
	if err := r.sim.InjectMO("13712345678", "106575001", "TD之前的回复"); err != nil {
		t.Fatal(err) // acknowledged: stored
	}
	r.stop()

	r2, _ := twoWayRig(t, rigOpts{dbPath: path})
	amy, err := r2.bind("amy", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	got := amy.waitMOs(t, 1)
	if got[0].Dest != "106575001" || moText(t, got[0]) != "TD之前的回复" {
		t.Fatalf("after restart amy got %+v", got[0])
	}
}

func waitReady(t testing.TB, r *rig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !r.gw.Ready() {
		if ctx.Err() != nil {
			t.Fatal("no upstream bind")
		}
		waitABit(ctx)
	}
}

// failingOptOuts is the real policy whose opt-out writes fail while
// failing is set, as a cluster's policy writes do while etcd is out of
// reach.
type failingOptOuts struct {
	gateway.Rules
	failing *atomic.Bool
	tries   *atomic.Int32
}

func (f failingOptOuts) OptOut(enterprise, number string, moID uint64, at time.Time) (bool, error) {
	f.tries.Add(1)
	if f.failing.Load() {
		return false, errors.New("etcd: context deadline exceeded")
	}
	return f.Rules.OptOut(enterprise, number, moID, at)
}

// TestOptOutRecordedLater: an opt-out reply whose opt-out cannot be
// recorded (the policy store failing) is stored once, answered, and its
// opt-out recorded when the policy store works again: in the running
// gateway (its retries), and at the next start for one still pending at
// a stop. Before, a failed recording was logged and dropped: the number
// kept receiving the enterprise's messages.
func TestOptOutRecordedLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var failing atomic.Bool
	var tries atomic.Int32
	failing.Store(true)
	wrap := func(r gateway.Rules) gateway.Policy {
		return failingOptOuts{Rules: r, failing: &failing, tries: &tries}
	}
	r, pol := twoWayRig(t, rigOpts{dbPath: path, wrapRules: wrap})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitReady(t, r)
	optedOut := func(p *policy.Policy) []string {
		t.Helper()
		list, _, err := p.ListOptOuts(policy.OperatorActor("op"), "E1", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range list {
			out = append(out, e.Number)
		}
		return out
	}
	pending := func() int {
		t.Helper()
		ms, err := r.store.PendingOptOuts(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}

	// 1. Recorded by the running gateway once the policy store works.
	if err := r.sim.InjectMO("13712345678", "10657500112", "TD"); err != nil {
		t.Fatal(err) // answered OK although the opt-out failed
	}
	eventually(t, 10*time.Second, "a second try", func() bool { return tries.Load() >= 2 })
	if got := optedOut(pol); len(got) != 0 || pending() != 1 {
		t.Fatalf("while failing: opted out %v, pending %d; want none, 1", got, pending())
	}
	failing.Store(false)
	eventually(t, 10*time.Second, "the opt-out recorded", func() bool { return len(optedOut(pol)) == 1 && pending() == 0 })
	alice, err := r.bind("alice", "secret1", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.submit(ctx, submitSM("", "13712345678", "sale"))
	wantStatus(t, err, 0x40A)

	// 2. Still pending at a stop: recorded at the next start.
	failing.Store(true)
	if err := r.sim.InjectMO("13923412345", "10657500112", "退订"); err != nil {
		t.Fatal(err)
	}
	if pending() != 1 {
		t.Fatalf("pending %d after the second opt-out failed, want 1", pending())
	}
	r.stop()
	r2, pol2 := twoWayRig(t, rigOpts{dbPath: path})
	eventually(t, 10*time.Second, "the opt-out recorded at start", func() bool {
		ms, err := r2.store.PendingOptOuts(0, 0)
		return err == nil && len(ms) == 0 && len(optedOut(pol2)) == 2
	})
	inbox, _, err := r2.store.Inbox("E1", queue.InboxFilter{}, 0, 10)
	if err != nil || len(inbox) != 2 {
		t.Fatalf("inbox: %d replies (%v), want 2: each stored once", len(inbox), err)
	}
	alice, err = r2.bind("alice", "secret1", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.submit(ctx, submitSM("", "13923412345", "sale"))
	wantStatus(t, err, 0x40A)
	if err := r2.store.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestOptOutOverSMPP: a handset replies "td " to E1's service number → E1's
// next submit_sm to it is refused opted_out (0x40A), E2 still sends to it;
// replies that merely contain the keyword opt nobody out; E1's admin
// removes the number and sends again; the list survives a restart.
func TestOptOutOverSMPP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	r, pol := twoWayRig(t, rigOpts{dbPath: path})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitReady(t, r)
	// InjectMO returns once the gateway acknowledged the reply: stored,
	// and the opt-out recorded before the acknowledgement.
	for _, mo := range []struct{ src, text string }{
		{"13923412345", "TDX"}, {"13923412345", "请退订吧"}, // not opt-outs
		{"13712345678", "td "}, {"13712345678", "退订"}, // the second adds nothing
	} {
		if err := r.sim.InjectMO(mo.src, "10657500112", mo.text); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := r.bind("alice", "secret1", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "secret2", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.submit(ctx, submitSM("", "13712345678", "sale"))
	wantStatus(t, err, 0x40A)
	if _, err := alice.submit(ctx, submitSM("", "13923412345", "sale")); err != nil {
		t.Fatalf("E1 to a number that replied TDX / 请退订吧: %v", err)
	}
	if _, err := bob.submit(ctx, submitSM("", "13712345678", "x")); err != nil {
		t.Fatalf("E2 to E1's opted-out number: %v", err)
	}
	if got := counters(t, r)["qxtd_optouts_total"]; got != 1 {
		t.Errorf("qxtd_optouts_total = %v, want 1", got)
	}
	list, _, err := pol.ListOptOuts(policy.OperatorActor("op"), "E1", "", 0)
	if err != nil || len(list) != 1 || list[0].Number != "+8613712345678" || list[0].MOID == 0 {
		t.Fatalf("E1's opt-outs: %+v, %v", list, err)
	}
	r.stop()

	r2, pol2 := twoWayRig(t, rigOpts{dbPath: path})
	alice, err = r2.bind("alice", "secret1", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.submit(ctx, submitSM("", "13712345678", "sale"))
	wantStatus(t, err, 0x40A) // after the restart too
	amy := policy.Actor{Enterprise: "E1", Admin: true, Name: "amy"}
	if err := pol2.RemoveOptOut(amy, "E1", "13712345678"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.submit(ctx, submitSM("", "13712345678", "sale")); err != nil {
		t.Fatalf("after the admin removed it: %v", err)
	}
}

package policy

import (
	"testing"
	"time"
)

// TestStopReason: what a message accepted earlier meets when its turn
// comes. Withdrawing a grant (not any other change, not giving it) marks
// the enterprise's scope narrowed, and a message accepted before that (or
// within scopeSettle after it) to a number now out of scope is stopped
// scope_national or scope_offnet, before its opt-out and whitelist; one
// accepted well after was admitted under the narrower scope. Then the
// opt-out, then the whitelist (not for an enterprise exempt from it);
// an unknown enterprise or an unreadable number is never stopped.
func TestStopReason(t *testing.T) {
	f := newFixture(t)
	const beijing, unicom, home = "13910001234", "13012345678", "13712345678"
	if _, err := f.p.AddWhitelist(op, entB, []string{beijing, unicom, home}); err != nil {
		t.Fatal(err)
	}
	accepted := f.clk.Now()
	set := func(fn func(*Enterprise)) *Enterprise {
		t.Helper()
		e, err := f.p.UpdateEnterprise(op, entB, func(e *Enterprise) error { fn(e); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if e := set(func(e *Enterprise) { e.TPS = 5 }); !e.ScopeNarrowed.IsZero() {
		t.Fatalf("another change marked the scope narrowed: %v", e.ScopeNarrowed)
	}
	for n, want := range map[string]Reason{beijing: 0, unicom: 0, home: 0, "13600136000": ReasonNotWhitelisted} {
		if got, stop := f.p.StopReason(entB, n, accepted); got != want || stop != (want != 0) {
			t.Errorf("full scope, %s: %v %v, want %v", n, got, stop, want)
		}
	}
	f.clk.Advance(time.Hour)
	narrowed := set(func(e *Enterprise) { e.National, e.OffNet = false, false }).ScopeNarrowed
	if !narrowed.Equal(f.clk.Now()) {
		t.Fatalf("scope narrowed at %v, want %v", narrowed, f.clk.Now())
	}
	for _, tc := range []struct {
		number string
		at     time.Time
		want   Reason
	}{
		{beijing, accepted, ReasonScopeNational},
		{unicom, accepted, ReasonScopeOffNet},
		{home, accepted, 0},
		{beijing, narrowed.Add(scopeSettle / 2), ReasonScopeNational}, // perhaps admitted by a node not yet told
		{beijing, narrowed.Add(2 * scopeSettle), 0},                   // admitted under the narrower scope: not looked at
		{"1391000123", accepted, 0},                                   // not a number a message holds
	} {
		if got, stop := f.p.StopReason(entB, tc.number, tc.at); got != tc.want || stop != (tc.want != 0) {
			t.Errorf("narrowed, %s accepted at %v: %v %v, want %v", tc.number, tc.at, got, stop, tc.want)
		}
	}
	if got, _ := f.p.StopReason("NOSUCH", beijing, accepted); got != 0 {
		t.Errorf("an unknown enterprise: %v", got)
	}
	// Given back: in scope again; the mark stays, and costs a lookup.
	if e := set(func(e *Enterprise) { e.National = true }); !e.ScopeNarrowed.Equal(narrowed) {
		t.Errorf("giving the grant back moved the mark to %v", e.ScopeNarrowed)
	}
	if got, stop := f.p.StopReason(entB, beijing, accepted); stop {
		t.Errorf("grant given back: %v", got)
	}
	// The opt-out, then the whitelist.
	if _, err := f.p.OptOut(entB, home, 1, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.p.StopReason(entB, home, accepted); got != ReasonOptedOut {
		t.Errorf("opted out: %v", got)
	}
	if _, err := f.p.RemoveWhitelist(op, entB, []string{beijing}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.p.StopReason(entB, beijing, accepted); got != ReasonNotWhitelisted {
		t.Errorf("taken off the whitelist: %v", got)
	}
	set(func(e *Enterprise) { e.NoWhitelist = true })
	if got, stop := f.p.StopReason(entB, beijing, accepted); stop {
		t.Errorf("exempt from the whitelist: %v", got)
	}
}

// TestStopReasonAfterOverride: a number ported to another carrier after
// a message to it was accepted (携号转网: the operator sets an override)
// is classified again when the message's turn comes, and stopped
// scope_offnet for an enterprise without 外网发送; one accepted well after
// the change was admitted under it and is not looked at; the override
// removed, the number is in scope again. A daemon started with overrides
// classifies again what was accepted before it started (a change while it
// was down is not known).
func TestStopReasonAfterOverride(t *testing.T) {
	f := newFixture(t)
	const home = "13712345678" // China Mobile, Guangdong: in A's scope
	if _, err := f.p.AddWhitelist(op, entA, []string{home}); err != nil {
		t.Fatal(err)
	}
	accepted := f.clk.Now()
	if got, stop := f.p.StopReason(entA, home, accepted); stop {
		t.Fatalf("before the override: %v", got)
	}
	f.clk.Advance(time.Hour)
	if err := f.p.SetOverride(op, Override{Prefix: home, Carrier: ChinaUnicom, Province: "广东"}); err != nil {
		t.Fatal(err)
	}
	changed := f.clk.Now()
	// A reload of the file (after a failed commit) marks what was
	// accepted before it, and does not shorten the change's settle.
	f.clk.Advance(time.Second)
	if err := f.p.reload(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want Reason
	}{
		{accepted, ReasonScopeOffNet},
		{changed.Add(scopeSettle / 2), ReasonScopeOffNet}, // perhaps admitted by a node not yet told
		{changed.Add(2 * scopeSettle), 0},                 // admitted under the override: not looked at
	} {
		if got, stop := f.p.StopReason(entA, home, tc.at); got != tc.want || stop != (tc.want != 0) {
			t.Errorf("ported, accepted at %v: %v %v, want %v", tc.at, got, stop, tc.want)
		}
	}
	// Started again with the override: what was accepted before is
	// classified again.
	f.clk.Advance(time.Hour)
	p2 := newPolicy(t, f.db, f.clk)
	if got, _ := p2.StopReason(entA, home, f.clk.Now().Add(-time.Minute)); got != ReasonScopeOffNet {
		t.Errorf("after a start with the override: %v, want scope_offnet", got)
	}
	if err := f.p.RemoveOverride(op, home); err != nil {
		t.Fatal(err)
	}
	if got, stop := f.p.StopReason(entA, home, accepted); stop {
		t.Errorf("override removed: %v", got)
	}
}

// TestStopReasonAfterHomeProvince: a daemon started with another home
// province (policy.home_province corrected, say) classifies again what
// its enterprises had accepted before it started, to the nanosecond: for an enterprise
// without 全网发送, a message waiting for a number of the old home province
// is out of its scope now (scope_national), and one for the new home
// province's number is not stopped. One accepted from the start on was
// admitted under the new province and is not looked at. Started
// again with the same province, nothing waiting is stopped.
func TestStopReasonAfterHomeProvince(t *testing.T) {
	f := newFixture(t)
	const guangdong, beijing = "13712345678", "13910001234"
	for _, code := range []string{entA, entB} {
		if _, err := f.p.AddWhitelist(op, code, []string{guangdong, beijing}); err != nil {
			t.Fatal(err)
		}
	}
	accepted := f.clk.Now()
	if got, stop := f.p.StopReason(entA, guangdong, accepted); stop {
		t.Fatalf("home province 广东: %v", got)
	}
	start := func(home string) *Policy {
		t.Helper()
		f.clk.Advance(time.Hour)
		cfg := testConfig(f.clk)
		cfg.HomeProvince = home
		p, err := New(f.db, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	same := start("广东省")
	if got, stop := same.StopReason(entA, guangdong, accepted); stop {
		t.Errorf("started again with 广东省: %v", got)
	}
	moved := start("北京")
	started := f.clk.Now()
	for _, tc := range []struct {
		number string
		at     time.Time
		want   Reason
	}{
		{guangdong, accepted, ReasonScopeNational},
		{beijing, accepted, 0},
		{guangdong, started.Add(-time.Millisecond), ReasonScopeNational}, // the previous process's last
		{guangdong, started, 0},                                          // admitted under 北京: not looked at
	} {
		if got, stop := moved.StopReason(entA, tc.number, tc.at); got != tc.want || stop != (tc.want != 0) {
			t.Errorf("home province 北京, %s accepted at %v: %v %v, want %v", tc.number, tc.at, got, stop, tc.want)
		}
	}
	// An enterprise with 全网发送 sends to every province.
	if got, stop := moved.StopReason(entB, guangdong, accepted); stop {
		t.Errorf("an enterprise with 全网发送: %v", got)
	}
}

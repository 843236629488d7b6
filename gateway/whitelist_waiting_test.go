package gateway_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// TestWhitelistStopsWaitingMessages: E1's messages accepted for a number
// that E1's admin then took off the whitelist, or whose entry the account
// manager then rejected, are not sent once their turn comes: a one-part
// one and every part of a long one get REJECTD receipts with
// err:not_whitelisted, and the SMSC sees none of them; a message to a
// number still approved goes; once the number is approved again, a
// message still waiting for it goes too.
func TestWhitelistStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	later := func(dst, text string) uint64 { return submitLater(ctx, t, alice, dst, text, false) }
	const removed, approved = "13712345678", "13923412345"
	single := later(removed, "sale today")
	long := later(removed, strings.Repeat("a long sale text ", 12)) // 4 parts
	toApproved := later(approved, "sale today")
	kept := later(removed, "sale tomorrow")

	amy := policy.Actor{Enterprise: "E1", Admin: true, Name: "amy"}
	if res, err := pol.RemoveWhitelist(amy, "E1", []string{removed}); err != nil || res.Changed != 1 {
		t.Fatalf("remove %s from the whitelist: %+v %v", removed, res, err)
	}
	sendNow(ctx, t, r, []uint64{single, long, toApproved})
	rcs := alice.waitReceipts(t, 3, 10*time.Second)
	for _, id := range []uint64{single, long} {
		rc := rcs[strconv.FormatUint(id, 10)]
		if rc.State != smpp.StateRejected || rc.Err != "not_whitelisted" {
			t.Errorf("message %d to the number taken off: receipt %s err:%s, want REJECTD err:not_whitelisted", id, rc.State.Stat(), rc.Err)
		}
	}
	if rc := rcs[strconv.FormatUint(toApproved, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message to a number still approved: receipt %s, want DELIVRD", rc.State.Stat())
	}
	for _, m := range r.sim.Received() {
		if strings.HasSuffix(m.Dest, removed) {
			t.Errorf("the SMSC got %q for the number taken off the whitelist", m.ShortMessage)
		}
	}
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	m, err := r.gw.Message(acct, long)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) < 2 {
		t.Fatalf("the long message has %d parts", len(m.Parts))
	}
	for i, p := range m.Parts {
		if p.State.String() != "rejected" || p.ErrCode != "not_whitelisted" {
			t.Errorf("long message's part %d: %s %q, want rejected not_whitelisted", i, p.State, p.ErrCode)
		}
	}
	c := counters(t, r)
	if got, want := c["qxtd_stopped_total,reason=not_whitelisted"], float64(1+len(m.Parts)); got != want {
		t.Errorf("qxtd_stopped_total{reason=not_whitelisted} = %v, want %v (one part and the long message's)", got, want)
	}
	if got := c["qxtd_optout_stopped_total"]; got != 0 {
		t.Errorf("qxtd_optout_stopped_total = %v, want 0", got)
	}

	// Approved again: what still waits for it goes.
	if _, err := pol.AddWhitelist(amy, "E1", []string{removed}); err != nil {
		t.Fatal(err)
	}
	if res, err := pol.Approve(policy.OperatorActor("manager"), "E1", removed); err != nil || res.Changed != 1 {
		t.Fatalf("approve %s again: %+v %v", removed, res, err)
	}
	sendNow(ctx, t, r, []uint64{kept})
	if rc := alice.waitReceipts(t, 4, 10*time.Second)[strconv.FormatUint(kept, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message waiting while the number was approved again: receipt %s err:%s, want DELIVRD", rc.State.Stat(), rc.Err)
	}
}

// TestRejectedEntryStopsWaitingMessages: the account manager rejecting an
// approved entry (a customer who complains he never agreed) stops E1's
// message waiting for it, as taking it off does.
func TestRejectedEntryStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	const number = "13923412345"
	id := submitLater(ctx, t, alice, number, "sale today", false)
	if res, err := pol.Reject(policy.OperatorActor("manager"), "E1", "the customer says he never agreed", number); err != nil || res.Changed != 1 {
		t.Fatalf("reject %s: %+v %v", number, res, err)
	}
	sendNow(ctx, t, r, []uint64{id})
	rc := alice.waitReceipts(t, 1, 10*time.Second)[strconv.FormatUint(id, 10)]
	if rc.State != smpp.StateRejected || rc.Err != "not_whitelisted" {
		t.Errorf("receipt %s err:%s, want REJECTD err:not_whitelisted", rc.State.Stat(), rc.Err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Errorf("the SMSC got %d messages, want none", n)
	}
}

// TestScopeNarrowedStopsWaitingMessages: E1's messages to another
// province accepted while it had 全网发送 are not sent once the operator
// withdraws the grant: REJECTD err:scope_national, the SMSC sees none;
// its message to a home-province number goes; one still waiting when the
// grant is given back goes too.
func TestScopeNarrowedStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	op := policy.OperatorActor("ops")
	national := func(on bool) {
		t.Helper()
		if _, err := pol.UpdateEnterprise(op, "E1", func(e *policy.Enterprise) error { e.National = on; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	const beijing, home = "13910001234", "13712345678"
	national(true)
	if _, err := pol.AddWhitelist(op, "E1", []string{beijing}); err != nil {
		t.Fatal(err)
	}
	later := func(dst, text string) uint64 { return submitLater(ctx, t, alice, dst, text, false) }
	out, in, kept := later(beijing, "sale today"), later(home, "sale today"), later(beijing, "sale tomorrow")
	national(false)
	if e, _ := pol.Lookup("E1"); e.ScopeNarrowed.IsZero() {
		t.Fatal("withdrawing 全网发送 did not mark the enterprise's scope narrowed")
	}
	sendNow(ctx, t, r, []uint64{out, in})
	rcs := alice.waitReceipts(t, 2, 10*time.Second)
	if rc := rcs[strconv.FormatUint(out, 10)]; rc.State != smpp.StateRejected || rc.Err != "scope_national" {
		t.Errorf("message to Beijing: receipt %s err:%s, want REJECTD err:scope_national", rc.State.Stat(), rc.Err)
	}
	if rc := rcs[strconv.FormatUint(in, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message to Guangdong: receipt %s, want DELIVRD", rc.State.Stat())
	}
	for _, m := range r.sim.Received() {
		if strings.HasSuffix(m.Dest, beijing) {
			t.Errorf("the SMSC got %q for Beijing", m.ShortMessage)
		}
	}
	if got := counters(t, r)["qxtd_stopped_total,reason=scope_national"]; got != 1 {
		t.Errorf("qxtd_stopped_total{reason=scope_national} = %v, want 1", got)
	}
	national(true)
	sendNow(ctx, t, r, []uint64{kept})
	if rc := alice.waitReceipts(t, 3, 10*time.Second)[strconv.FormatUint(kept, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message waiting while the grant was given back: receipt %s err:%s, want DELIVRD", rc.State.Stat(), rc.Err)
	}
}

// TestPortedNumberStopsWaitingMessages: E1 (no 外网发送) had a message to
// a China Mobile number of Guangdong accepted; before its turn the number
// is ported to China Unicom (the operator's override, 携号转网). The
// message is failed rejected scope_offnet, as a new one would be refused;
// one to a number not ported goes.
func TestPortedNumberStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	const ported, kept = "13712345678", "13923412345"
	out := submitLater(ctx, t, alice, ported, "sale today", false)
	in := submitLater(ctx, t, alice, kept, "sale today", false)
	if err := pol.SetOverride(policy.OperatorActor("ops"), policy.Override{Prefix: ported, Carrier: policy.ChinaUnicom, Province: "广东"}); err != nil {
		t.Fatal(err)
	}
	sendNow(ctx, t, r, []uint64{out, in})
	rcs := alice.waitReceipts(t, 2, 10*time.Second)
	if rc := rcs[strconv.FormatUint(out, 10)]; rc.State != smpp.StateRejected || rc.Err != "scope_offnet" {
		t.Errorf("message to the ported number: receipt %s err:%s, want REJECTD err:scope_offnet", rc.State.Stat(), rc.Err)
	}
	if rc := rcs[strconv.FormatUint(in, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message to a number not ported: receipt %s, want DELIVRD", rc.State.Stat())
	}
	for _, m := range r.sim.Received() {
		if strings.HasSuffix(m.Dest, ported) {
			t.Errorf("the SMSC got %q for the ported number", m.ShortMessage)
		}
	}
	if got := counters(t, r)["qxtd_stopped_total,reason=scope_offnet"]; got != 1 {
		t.Errorf("qxtd_stopped_total{reason=scope_offnet} = %v, want 1", got)
	}
}

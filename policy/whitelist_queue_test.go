package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The account manager's queue: pending entries of every enterprise, oldest
// first; decisions across enterprises; the reason of a rejection reaching the
// sender; the metric's figures; all of it surviving a restart.
func TestWhitelistPendingQueue(t *testing.T) {
	f := newFixture(t)
	add := func(a Actor, code string, numbers ...string) {
		t.Helper()
		if _, err := f.p.AddWhitelist(a, code, numbers); err != nil {
			t.Fatal(err)
		}
	}
	if n, oldest := f.p.PendingStats(); n != 0 || !oldest.IsZero() {
		t.Fatalf("empty: PendingStats %d %v", n, oldest)
	}
	t0 := f.clk.Now()
	add(f.aAdmin, entA, "13712345001", "13712345002")
	f.clk.Advance(time.Minute)
	add(f.bAdmin, entB, "13712345003")
	f.clk.Advance(time.Minute)
	add(f.aAdmin, entA, "13712345004")
	add(op, entA, "13712345005") // the operator's own: approved at once, never queued

	if n, oldest := f.p.PendingStats(); n != 4 || !oldest.Equal(t0) {
		t.Errorf("PendingStats %d %v, want 4 %v", n, oldest, t0)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		es, next, err := f.p.ListPending(op, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.State != WhitelistPending || e.AddedBy == "" || e.AddedAt.IsZero() {
				t.Errorf("entry %+v", e)
			}
			got = append(got, e.Enterprise+" "+e.Number)
		}
		if next == "" {
			if pages != 1 {
				t.Errorf("%d pages, want 2", pages+1)
			}
			break
		}
		cursor = next
	}
	want := []string{entA + " +8613712345001", entA + " +8613712345002", entB + " +8613712345003", entA + " +8613712345004"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queue %v\nwant  %v", got, want)
	}
	if _, _, err := f.p.ListPending(f.aAdmin, "", 0); err != ErrForbidden {
		t.Errorf("enterprise admin lists the queue: %v", err)
	}
	if _, _, err := f.p.ListPending(op, "nonsense", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad cursor: %v", err)
	}

	// Pending: refused, and the refusal says it awaits approval.
	_, err := f.p.CheckRecipient(f.a, "13712345001")
	if !isReason(err, ReasonNotWhitelisted) || !strings.Contains(err.Error(), "awaits the account manager's approval") {
		t.Errorf("pending: %v", err)
	}

	// Bulk decisions across enterprises.
	if _, err := f.p.DecideEntries(f.aAdmin, WhitelistApproved, "", []EntryRef{{entA, "13712345001"}}); err != ErrForbidden {
		t.Errorf("enterprise admin decides: %v", err)
	}
	if _, err := f.p.DecideEntries(op, WhitelistRejected, " ", []EntryRef{{entA, "13712345001"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("rejection without a reason: %v", err)
	}
	if _, err := f.p.DecideEntries(op, WhitelistApproved, "why", []EntryRef{{entA, "13712345001"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("approval with a reason: %v", err)
	}
	res, err := f.p.DecideEntries(op, WhitelistApproved, "", []EntryRef{
		{entA, "13712345001"}, {entB, "+86 137 1234 5003"}, {entA, "13712345003"}, {"NOSUCH", "13712345001"},
		{entA, "bad"}, {entA, "13712345001"}, {entA, "13712345005"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantRes := DecideResult{Changed: 2, Unchanged: 1,
		NotFound: []EntryRef{{entA, "+8613712345003"}, {"NOSUCH", "+8613712345001"}},
		Errors:   []RowError{{Row: 5, Value: "bad", Reason: ReasonInvalidNumber.String(), Detail: res.Errors[0].Detail, DetailZH: res.Errors[0].DetailZH}}}
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("approve: %+v\nwant     %+v", res, wantRes)
	}
	if _, err := f.p.CheckRecipient(f.b, "13712345003"); err != nil {
		t.Errorf("approved in B: %v", err)
	}
	f.clk.Advance(time.Hour)
	if _, err := f.p.DecideEntries(op, WhitelistRejected, "号码不属于贵公司客户", []EntryRef{{entA, "13712345002"}}); err != nil {
		t.Fatal(err)
	}
	_, err = f.p.CheckRecipient(f.a, "13712345002")
	if !isReason(err, ReasonNotWhitelisted) || !strings.HasSuffix(err.Error(), "rejected by the account manager: 号码不属于贵公司客户") {
		t.Errorf("rejected: %v", err)
	}
	if n, oldest := f.p.PendingStats(); n != 1 || !oldest.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after decisions: PendingStats %d %v", n, oldest)
	}

	// The enterprise sees who added, who decided, when, and why.
	check := func(p *Policy) {
		t.Helper()
		es, _, err := p.ListWhitelist(f.aUser, entA, WhitelistRejected, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		wantE := []WhitelistEntry{{Number: "+8613712345002", State: WhitelistRejected, AddedAt: t0, AddedBy: "a_admin",
			DecidedAt: t0.Add(2*time.Minute + time.Hour), DecidedBy: op.Name, Reason: "号码不属于贵公司客户"}}
		if !reflect.DeepEqual(es, wantE) {
			t.Errorf("rejected entries %+v\nwant %+v", es, wantE)
		}
		if n, _ := p.PendingStats(); n != 1 {
			t.Errorf("PendingStats %d", n)
		}
		if _, err := p.CheckRecipient(f.a, "13712345002"); err == nil || !strings.Contains(err.Error(), "号码不属于贵公司客户") {
			t.Errorf("rejected: %v", err)
		}
	}
	check(f.p)
	f.db.Close()
	check(newPolicy(t, reopenDB(t, f.path), f.clk))
}

// Re-adding a number says why it was not added, per row, and a rejected
// number sent again goes back to pending without its old reason.
func TestWhitelistAlreadyListed(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"13712345001", "13712345002"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Approve(op, entA, "13712345002"); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"13712345001", "13712345002", "13712345003"})
	if err != nil {
		t.Fatal(err)
	}
	want := ImportResult{Rows: 3, Added: 1, Duplicates: 2, Listed: []RowError{
		{Row: 1, Value: "13712345001", Reason: RowAlreadyListed, Detail: "+8613712345001: already on the whitelist, awaiting the account manager's approval",
			DetailZH: "+8613712345001：已在白名单中，等待客户经理审批"},
		{Row: 2, Value: "13712345002", Reason: RowAlreadyListed, Detail: "+8613712345002: already on the whitelist, approved",
			DetailZH: "+8613712345002：已在白名单中，已通过审批"},
	}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("re-add %+v\nwant %+v", res, want)
	}
	if _, err := f.p.Reject(op, entA, "空号", "13712345003"); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.p.AddWhitelist(f.aAdmin, entA, []string{"13712345003"}); res.Added != 1 {
		t.Errorf("re-submit after rejection: %+v", res)
	}
	es, _, _ := f.p.ListWhitelist(f.aAdmin, entA, WhitelistPending, "", 0)
	for _, e := range es {
		if e.Reason != "" || !e.DecidedAt.IsZero() {
			t.Errorf("re-submitted entry keeps its old decision: %+v", e)
		}
	}
	if _, err := f.p.Reject(op, entA, strings.Repeat("长", MaxDecisionReason+1), "13712345003"); !errors.Is(err, ErrInvalid) {
		t.Errorf("long reason: %v", err)
	}
}

package policy

import (
	"errors"
	"slices"
	"testing"
)

// An account manager with a portfolio (Actor.Scope) is the operator of its
// own enterprises and of no other: it reads and changes A's, not B's; the
// lists across enterprises (the enterprises, the pending whitelist
// entries, the signature requests, a number's opt-outs) hold A's only; a
// decision naming B is refused whole; what belongs to no enterprise
// (creating one, applications, the overrides) is the operator of every
// enterprise's alone.
func TestManagerScope(t *testing.T) {
	f := newFixture(t)
	mgr := ManagerActor("张经理", []string{entA})
	if ManagerActor("王经理", nil).Scope != nil || !ManagerActor("王经理", []string{}).Everywhere() {
		t.Fatal("a manager without enterprises is not the operator of every enterprise")
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", what, err)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}

	if got := f.p.Enterprises(mgr); len(got) != 1 || got[0].Code != entA {
		t.Errorf("Enterprises: %+v, want %s only", got, entA)
	}
	_, err := f.p.Enterprise(mgr, entA)
	allowed("Enterprise(A)", err)
	_, err = f.p.Enterprise(mgr, entB)
	forbidden("Enterprise(B)", err)
	_, err = f.p.UpdateEnterprise(mgr, entA, func(e *Enterprise) error { e.Name = "甲公司二"; return nil })
	allowed("UpdateEnterprise(A)", err)
	_, err = f.p.UpdateEnterprise(mgr, entB, func(e *Enterprise) error { e.Name = "x"; return nil })
	forbidden("UpdateEnterprise(B)", err)
	_, err = f.p.CreateEnterprise(mgr, Enterprise{Code: "GD0755099", Name: "丙公司", Signature: "【丙公司】", Package: 1})
	forbidden("CreateEnterprise", err)

	_, err = f.p.User(mgr, "a_user")
	allowed("User(a_user)", err)
	_, err = f.p.User(mgr, "b_admin")
	forbidden("User(b_admin)", err)
	// No telling B's users from users that do not exist.
	_, err = f.p.User(mgr, "nobody")
	forbidden("User(nobody)", err)
	_, err = f.p.UpdateUser(mgr, "b_admin", UserUpdate{Name: new("x")})
	forbidden("UpdateUser(b_admin)", err)

	// Pending entries of both; the manager's queue holds A's.
	_, err = f.p.AddWhitelist(f.aAdmin, entA, []string{"13700000001"})
	allowed("AddWhitelist A", err)
	_, err = f.p.AddWhitelist(f.bAdmin, entB, []string{"13700000002"})
	allowed("AddWhitelist B", err)
	pend, _, err := f.p.ListPending(mgr, "", 100)
	allowed("ListPending", err)
	if len(pend) != 1 || pend[0].Enterprise != entA {
		t.Errorf("ListPending: %+v, want A's entry only", pend)
	}
	if all, _, _ := f.p.ListPending(op, "", 100); len(all) != 2 {
		t.Errorf("the operator's ListPending: %d entries, want 2", len(all))
	}
	_, err = f.p.AddWhitelist(mgr, entB, []string{"13700000003"})
	forbidden("AddWhitelist(B)", err)
	_, err = f.p.DecideWhitelist(mgr, entB, WhitelistApproved, "", nil)
	forbidden("DecideWhitelist(B)", err)
	_, err = f.p.DecideEntries(mgr, WhitelistApproved, "", []EntryRef{{entA, "13700000001"}, {entB, "13700000002"}})
	forbidden("DecideEntries(A and B)", err)
	if pend, _, _ := f.p.ListPending(op, "", 100); len(pend) != 2 {
		t.Errorf("after the refused decision: %d pending, want 2 (A's not decided either)", len(pend))
	}
	res, err := f.p.DecideEntries(mgr, WhitelistApproved, "", []EntryRef{{entA, "13700000001"}})
	allowed("DecideEntries(A)", err)
	if res.Changed != 1 {
		t.Errorf("DecideEntries(A): %+v, want 1 changed", res)
	}

	// Signature requests.
	ra, err := f.p.RequestSignature(f.aAdmin, entA, "【甲新】")
	allowed("RequestSignature A", err)
	rb, err := f.p.RequestSignature(f.bAdmin, entB, "【乙新】")
	allowed("RequestSignature B", err)
	reqs, err := f.p.SignatureRequests(mgr, "", SignaturePending)
	allowed("SignatureRequests", err)
	if len(reqs) != 1 || reqs[0].ID != ra.ID {
		t.Errorf("SignatureRequests: %+v, want A's only", reqs)
	}
	_, err = f.p.SignatureRequests(mgr, entB, "")
	forbidden("SignatureRequests(B)", err)
	_, err = f.p.DecideSignature(mgr, rb.ID, true, "")
	forbidden("DecideSignature(B's)", err)
	if reqs, _ := f.p.SignatureRequests(op, entB, SignaturePending); len(reqs) != 1 {
		t.Errorf("B's request after the refused decision: %+v, want pending", reqs)
	}
	_, err = f.p.DecideSignature(mgr, ra.ID, true, "")
	allowed("DecideSignature(A's)", err)

	// Opt-outs: one number on both lists; the manager sees A's.
	const num = "13700000009"
	_, err = f.p.AddOptOuts(op, entA, []string{num})
	allowed("AddOptOuts A", err)
	_, err = f.p.AddOptOuts(op, entB, []string{num})
	allowed("AddOptOuts B", err)
	outs, err := f.p.OptOutsOf(mgr, num)
	allowed("OptOutsOf", err)
	if len(outs) != 1 || outs[0].Enterprise != entA {
		t.Errorf("OptOutsOf: %+v, want A's only", outs)
	}
	forbidden("ExportOptOuts(all)", f.p.ExportOptOuts(mgr, "", func(OptOutEntry) error { return nil }))
	allowed("ExportOptOuts(A)", f.p.ExportOptOuts(mgr, entA, func(OptOutEntry) error { return nil }))
	forbidden("ExportOptOuts(B)", f.p.ExportOptOuts(mgr, entB, func(OptOutEntry) error { return nil }))

	// What belongs to no enterprise.
	_, err = f.p.Applications(mgr, "", 10)
	forbidden("Applications", err)
	forbidden("SetOverride", f.p.SetOverride(mgr, Override{Prefix: "1370000", Carrier: ChinaUnicom}))
	forbidden("RemoveOverride", f.p.RemoveOverride(mgr, "1370000"))
	_, err = f.p.Overrides(mgr)
	allowed("Overrides (read)", err)

	// The decisions it made carry its name.
	wl, _, err := f.p.ListWhitelist(mgr, entA, WhitelistApproved, "", 10)
	allowed("ListWhitelist(A)", err)
	if !slices.ContainsFunc(wl, func(e WhitelistEntry) bool { return e.DecidedBy == "张经理" }) {
		t.Errorf("A's approved entries %+v: none decided by 张经理", wl)
	}
}

package policy

import (
	"errors"
	"testing"
	"time"
)

func TestIsOptOut(t *testing.T) {
	kw := append(DefaultOptOutKeywords, "0000")
	for text, want := range map[string]bool{
		"TD": true, "td ": true, " Td。": true, "T": true, "t!": true, "退订": true, "【退订】": true,
		"0000": true, "TDX": false, "请退订吧": false, "": false, "  ": false, "TD TD": false, "D": false,
	} {
		if got := IsOptOut(text, kw); got != want {
			t.Errorf("IsOptOut(%q) = %v, want %v", text, got, want)
		}
	}
	if IsOptOut("0000", DefaultOptOutKeywords) {
		t.Error("0000 opts out without being configured")
	}
}

func TestOptOut(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(op, entB, []string{"13712345678"}); err != nil {
		t.Fatal(err)
	}
	at := f.clk.Now()
	for i, want := range []bool{true, false} { // idempotent: the first entry stays
		added, err := f.p.OptOut(entA, "8613712345678", uint64(7+i), at)
		if err != nil || added != want {
			t.Fatalf("OptOut #%d: %v, %v; want added %v", i, added, err, want)
		}
	}
	if _, err := f.p.OptOut(entA, "10086", 9, at); !isReason(err, ReasonInvalidNumber) {
		t.Errorf("OptOut of a service number: %v", err)
	}
	check := func(ent *Enterprise, want Reason) {
		t.Helper()
		_, err := f.p.CheckRecipient(ent, "13712345678")
		if r, _ := ReasonOf(err); r != want || (err == nil) != (want == 0) {
			t.Errorf("%s: %v, want %v", ent.Code, err, want)
		}
	}
	check(f.a, ReasonOptedOut)
	check(f.b, 0)
	// As a stored message holds the number (the gateway's check before
	// each part goes): national digits only.
	for _, tc := range []struct {
		code, number string
		want         bool
	}{
		{entA, "13712345678", true}, {entB, "13712345678", false}, {entA, "13712345679", false},
		{entA, "+8613712345678", false}, {entA, "1371234567", false}, {entA, "1371234567x", false}, {"NOPE", "13712345678", false},
	} {
		if got := f.p.OptedOutNational(tc.code, tc.number); got != tc.want {
			t.Errorf("OptedOutNational(%s, %q) = %v, want %v", tc.code, tc.number, got, tc.want)
		}
	}

	// Durable: a reopened file still has it, with the reply's id and time.
	f.db.Close()
	p := newPolicy(t, reopenDB(t, f.path), f.clk)
	f.p = p
	check(f.a, ReasonOptedOut)
	list, next, err := p.ListOptOuts(f.aUser, entA, "", 0)
	if err != nil || next != "" || len(list) != 1 || list[0].Number != "+8613712345678" || list[0].MOID != 7 || !list[0].At.Equal(at) {
		t.Fatalf("list: %+v %q %v", list, next, err)
	}
	if _, _, err := p.ListOptOuts(f.bAdmin, entA, "", 0); err != ErrForbidden {
		t.Errorf("B lists A's opt-outs: %v", err)
	}
	var all []OptOutEntry
	if err := p.ExportOptOuts(op, "", func(e OptOutEntry) error { all = append(all, e); return nil }); err != nil || len(all) != 1 || all[0].Enterprise != entA {
		t.Errorf("export: %+v %v", all, err)
	}
	if err := p.ExportOptOuts(f.aAdmin, entA, func(OptOutEntry) error { return nil }); err != ErrForbidden {
		t.Errorf("export by an enterprise: %v", err)
	}
	if err := p.ExportOptOuts(op, "NOPE", func(OptOutEntry) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("export of an unknown enterprise: %v", err)
	}
	// One number's entries on every list: in any form; the operator only.
	if _, err := p.OptOut(entB, "13712345678", 11, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	of, err := p.OptOutsOf(op, "+86 137 1234 5678")
	moOf := map[string]uint64{}
	for _, e := range of {
		moOf[e.Enterprise] = e.MOID
	}
	if err != nil || len(of) != 2 || moOf[entA] != 7 || moOf[entB] != 11 || of[0].Enterprise > of[1].Enterprise {
		t.Errorf("the opt-outs of 13712345678: %+v %v", of, err)
	}
	if of, err := p.OptOutsOf(op, "13912345678"); err != nil || len(of) != 0 {
		t.Errorf("a number on no list: %+v %v", of, err)
	}
	if _, err := p.OptOutsOf(op, "5678"); !isReason(err, ReasonInvalidNumber) {
		t.Errorf("last digits: %v", err)
	}
	if _, err := p.OptOutsOf(f.aAdmin, "13712345678"); err != ErrForbidden {
		t.Errorf("an enterprise asks: %v", err)
	}
	// One enterprise's entry of a number: its members', in any form.
	if e, err := p.FindOptOut(f.aUser, entA, "137 1234 5678"); err != nil || e == nil || e.MOID != 7 {
		t.Errorf("A's entry of 13712345678: %+v %v", e, err)
	}
	if e, err := p.FindOptOut(f.aUser, entA, "13912345678"); err != nil || e != nil {
		t.Errorf("A's entry of a number not listed: %+v %v", e, err)
	}
	if _, err := p.FindOptOut(f.bAdmin, entA, "13712345678"); err != ErrForbidden {
		t.Errorf("B asks A's: %v", err)
	}
	if err := p.RemoveOptOut(op, entB, "13712345678"); err != nil {
		t.Fatal(err)
	}

	// Removal: admins only; absent → not found.
	if err := p.RemoveOptOut(f.aUser, entA, "13712345678"); err != ErrForbidden {
		t.Errorf("user removes: %v", err)
	}
	if err := p.RemoveOptOut(f.bAdmin, entA, "13712345678"); err != ErrForbidden {
		t.Errorf("B removes A's: %v", err)
	}
	if err := p.RemoveOptOut(f.aAdmin, entA, "13712345678"); err != nil {
		t.Fatal(err)
	}
	check(f.a, 0)
	if err := p.RemoveOptOut(f.aAdmin, entA, "13712345678"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove again: %v", err)
	}
}

// An enterprise without a whitelist is bound by its opt-outs too.
func TestOptOutWithoutWhitelist(t *testing.T) {
	f := newFixture(t)
	e, err := f.p.CreateEnterprise(op, Enterprise{Code: "GD0755009", Name: "丙公司", Signature: "【丙公司】", Package: 1, NoWhitelist: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.CheckRecipient(e, "13712345678"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.OptOut(e.Code, "13712345678", 1, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.CheckRecipient(e, "13712345678"); !isReason(err, ReasonOptedOut) {
		t.Errorf("no-whitelist enterprise: %v", err)
	}
}

package policy

import (
	"strings"
	"testing"
	"unicode"

	"github.com/qxtd/qxtd/sheet"
)

// wantZH fails unless detail reads as Chinese: not empty, with Han
// characters, and none of the English detail's words.
func wantZH(t *testing.T, what, detail string) {
	t.Helper()
	han := strings.ContainsFunc(detail, func(r rune) bool { return unicode.Is(unicode.Han, r) })
	if !han || strings.Contains(detail, " the ") || strings.Contains(detail, "not ") {
		t.Errorf("%s: detail_zh %q, want it in Chinese", what, detail)
	}
}

// TestDetailsInChinese: every refusal a sender meets at a send, and every
// row a list or an import of numbers does not add, carries its detail
// in Chinese for the consoles (Refusal.DetailZH, RowError.DetailZH,
// ContactRowError.DetailZH), beside the English one the API has always
// given.
func TestDetailsInChinese(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678", "13800138000", "18612345678"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"13923412345"}); err != nil { // pending
		t.Fatal(err)
	}
	if _, err := f.p.OptOut(entA, "13712345678", 1, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{
		"13712345678",      // opted out
		"13712345679",      // not whitelisted
		"13923412345",      // pending
		"13800138000",      // China Mobile of another province
		"18612345678",      // China Unicom
		"+86 20 8888 8888", // a landline
		"+1 650 253 0000",  // foreign
		"abc",
		"1371234567812345678901",
	} {
		_, err := f.p.CheckRecipient(f.a, n)
		if err == nil {
			t.Fatalf("%s: not refused", n)
		}
		wantZH(t, n+" ("+err.Error()+")", DetailZH(err))
	}
	if _, err := Source("106575001", 2, "", "106575002"); err == nil {
		t.Fatal("a foreign source not refused")
	} else {
		wantZH(t, "bad source", DetailZH(err))
	}
	dis := *f.a
	dis.Disabled = true
	wantZH(t, "disabled", DetailZH(f.p.CheckEnterprise(&dis)))

	res, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"", "abc", "13712345678", "13923412345", "13923412346", "13923412346"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 2 || len(res.Listed) != 3 {
		t.Fatalf("whitelist rows: %+v", res)
	}
	for _, e := range append(res.Errors, res.Listed...) {
		wantZH(t, "whitelist row "+e.Value+" ("+e.Detail+")", e.DetailZH)
	}
	res, err = f.p.AddOptOuts(f.aUser, entA, []string{"13712345678", "13923412346", "13923412346", "5678"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 1 || len(res.Listed) != 2 {
		t.Fatalf("opt-out rows: %+v", res)
	}
	for _, e := range append(res.Errors, res.Listed...) {
		wantZH(t, "opt-out row "+e.Value+" ("+e.Detail+")", e.DetailZH)
	}
	cres, err := f.p.ImportContacts(f.aUser, Book{Enterprise: entA, User: "a_user"},
		strings.NewReader("姓名,手机号码\n张三,abc\n"+strings.Repeat("长", 40)+",13712345678\n王五,13800138000,"+strings.Repeat("组", 40)+"\n赵六,1.38001E+10\n"), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(cres.Errors) != 4 {
		t.Fatalf("contact rows: %+v", cres)
	}
	for _, e := range cres.Errors {
		wantZH(t, "contact row "+e.Number+" ("+e.Detail+")", e.DetailZH)
	}
}

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/sheet"
)

func TestWhitelistLifecycle(t *testing.T) {
	f := newFixture(t)
	const n = "+8613712345678"
	res, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"137 1234 5678", "13712345678", "020-88888888", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := ImportResult{Rows: 4, Added: 1, Duplicates: 1, Errors: []RowError{
		{Row: 3, Value: "020-88888888", Reason: ReasonInvalidNumber.String(), Detail: "+862088888888: not a mobile number", DetailZH: "+862088888888：不是手机号码"},
		{Row: 4, Value: "", Reason: ReasonInvalidNumber.String(), Detail: "empty number", DetailZH: "号码为空"},
	}, Listed: []RowError{{Row: 2, Value: "13712345678", Reason: RowAlreadyListed, Detail: "+8613712345678: repeats row 1", DetailZH: "+8613712345678：与第 1 行重复"}}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("add: %+v\nwant %+v", res, want)
	}
	step := func(name string, wantState WhitelistState, allowed bool) {
		t.Helper()
		st, ok := f.p.WhitelistStatus(entA, n)
		if wantState == 0 && ok || wantState != 0 && st != wantState {
			t.Errorf("%s: state %v %v, want %v", name, st, ok, wantState)
		}
		if f.p.Allowed(entA, n) != allowed {
			t.Errorf("%s: Allowed = %v", name, !allowed)
		}
		_, err := f.p.CheckRecipient(f.a, n)
		if allowed != (err == nil) || !allowed && !isReason(err, ReasonNotWhitelisted) {
			t.Errorf("%s: CheckRecipient %v", name, err)
		}
	}
	step("added", WhitelistPending, false)
	if _, err := f.p.Approve(f.aAdmin, entA, n); err != ErrForbidden {
		t.Errorf("enterprise admin approves: %v", err)
	}
	res2, err := f.p.Reject(op, entA, "not the enterprise's customer", n, "13800138000", "bad")
	if err != nil {
		t.Fatal(err)
	}
	if res2.Changed != 1 || !reflect.DeepEqual(res2.NotFound, []string{"+8613800138000"}) || len(res2.Errors) != 1 || res2.Errors[0].Row != 3 {
		t.Errorf("reject: %+v", res2)
	}
	step("rejected", WhitelistRejected, false)
	if res, _ := f.p.AddWhitelist(f.aAdmin, entA, []string{n}); res.Added != 1 {
		t.Errorf("re-submit after rejection: %+v", res)
	}
	step("re-submitted", WhitelistPending, false)
	if res, _ := f.p.Approve(op, entA, n, n); res.Changed != 1 || res.Unchanged != 0 {
		t.Errorf("approve: %+v", res)
	}
	step("approved", WhitelistApproved, true)
	if res, _ := f.p.Approve(op, entA, n); res.Unchanged != 1 {
		t.Errorf("approve twice: %+v", res)
	}
	if res, _ := f.p.AddWhitelist(f.aAdmin, entA, []string{n}); res.Duplicates != 1 {
		t.Errorf("enterprise re-adds an approved number: %+v (must stay approved)", res)
	}
	step("still approved", WhitelistApproved, true)
	if res, _ := f.p.RemoveWhitelist(f.aAdmin, entA, []string{n}); res.Changed != 1 {
		t.Errorf("remove: %+v", res)
	}
	step("removed", 0, false)
	// The operator's own additions are approved at once.
	if res, _ := f.p.AddWhitelist(op, entA, []string{n}); res.Added != 1 {
		t.Errorf("operator add: %+v", res)
	}
	step("operator added", WhitelistApproved, true)
	es, _, err := f.p.ListWhitelist(f.aUser, entA, 0, "", 0)
	if err != nil || len(es) != 1 || es[0].AddedBy != "manager-li" || es[0].DecidedBy != "manager-li" || es[0].DecidedAt.IsZero() {
		t.Errorf("entry audit fields: %+v %v", es, err)
	}
}

func TestDecideAllPendingAndList(t *testing.T) {
	f := newFixture(t)
	var nums []string
	for i := range 25 {
		nums = append(nums, fmt.Sprintf("137123456%02d", i))
	}
	if res, err := f.p.AddWhitelist(f.aAdmin, entA, nums); err != nil || res.Added != 25 {
		t.Fatal(res, err)
	}
	if _, err := f.p.Reject(op, entA, "unknown numbers", nums[:5]...); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.Approve(op, entA) // all pending
	if err != nil || res.Changed != 20 {
		t.Fatalf("approve all pending: %+v %v", res, err)
	}
	counts, _ := f.p.WhitelistCounts(f.aUser, entA)
	if counts[WhitelistApproved] != 20 || counts[WhitelistRejected] != 5 || counts[WhitelistPending] != 0 {
		t.Errorf("counts %v", counts)
	}
	// Page through approved entries, 7 at a time.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		es, next, err := f.p.ListWhitelist(f.aUser, entA, WhitelistApproved, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.State != WhitelistApproved {
				t.Errorf("state filter: %+v", e)
			}
			got = append(got, e.Number)
		}
		if next == "" {
			break
		}
		cursor = next
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != 20 || got[0] != "+8613712345605" || got[19] != "+8613712345624" {
		t.Errorf("listed %d: %v", len(got), got)
	}
	if es, _, _ := f.p.ListWhitelist(f.aUser, entB, 0, "", 0); es != nil {
		t.Error("unreachable")
	}
	if es, _, err := f.p.ListWhitelist(f.bAdmin, entB, 0, "", 0); err != nil || len(es) != 0 {
		t.Errorf("B's whitelist: %v %v", es, err)
	}
}

func TestImportCSV(t *testing.T) {
	f := newFixture(t)
	csv := "\ufeff号码,姓名\n" + // header (BOM as Excel writes it)
		"13712345678,张三\n" +
		"+86 138 0013 8000,李四\n" +
		",王五\n" + // row 4: empty number
		"\n" + // blank line: not a row
		"abc,x\n" + // row 6
		"13712345678,dup\n" + // row 7: repeated
		"\"139 1601 2345\"\n" + // quoted
		"02088888888\n" // row 9: landline
	res, err := f.p.ImportWhitelist(f.aAdmin, entA, strings.NewReader(csv), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	checkImport(t, res, ImportResult{Rows: 7, Added: 3, Duplicates: 1, HeaderRow: 1, Listed: []RowError{
		{Row: 7, Value: "13712345678", Reason: RowAlreadyListed, Detail: "+8613712345678: repeats row 2", DetailZH: "+8613712345678：与第 2 行重复"}}}, []int{4, 6, 9})

	// Without header, the first row is data.
	res, err = f.p.ImportWhitelist(f.aAdmin, entA, strings.NewReader("13712345600\r\n13712345601\r\n"), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	checkImport(t, res, ImportResult{Rows: 2, Added: 2}, nil)

	// Too many rows: nothing imported.
	db, _ := openDB(t)
	cfg := testConfig(newClock())
	cfg.MaxImportRows = 3
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateEnterprise(op, Enterprise{Code: "E", Name: "E", Package: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ImportWhitelist(op, "E", strings.NewReader("13712345600\n13712345601\n13712345602\n13712345603\n"), sheet.CSV); !errors.Is(err, ErrInvalid) {
		t.Errorf("too many rows: %v", err)
	}
	if c, _ := p.WhitelistCounts(op, "E"); len(c) != 0 {
		t.Errorf("partial import: %v", c)
	}
}

func checkImport(t *testing.T, got, want ImportResult, errRows []int) {
	t.Helper()
	var rows []int
	for _, e := range got.Errors {
		rows = append(rows, e.Row)
		if e.Reason != ReasonInvalidNumber.String() || e.Detail == "" {
			t.Errorf("row error %+v", e)
		}
	}
	if !reflect.DeepEqual(rows, errRows) {
		t.Errorf("error rows %v, want %v (%+v)", rows, errRows, got.Errors)
	}
	got.Errors = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("import %+v, want %+v", got, want)
	}
	if got.Rows != got.Added+got.Duplicates+len(rows) || len(got.Listed) != got.Duplicates {
		t.Errorf("rows do not add up: %+v", got)
	}
}

func TestImportXLSX(t *testing.T) {
	f := newFixture(t)
	x := excelize.NewFile()
	sh := x.GetSheetName(0)
	set := func(cell string, v any) {
		if err := x.SetCellValue(sh, cell, v); err != nil {
			t.Fatal(err)
		}
	}
	set("A1", "手机号码")
	set("B1", "备注")
	set("A2", 13712345678) // a number cell
	set("A3", "138-0013-8000")
	set("B4", "no number") // row 4: empty number
	// row 5 blank: not a row
	set("A6", 1.3916012345e10) // a float cell
	set("A7", "hello")         // row 7
	set("A8", 13712345678)     // duplicate
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.ImportWhitelist(f.aAdmin, entA, &buf, sheet.XLSX)
	if err != nil {
		t.Fatal(err)
	}
	checkImport(t, res, ImportResult{Rows: 6, Added: 3, Duplicates: 1, HeaderRow: 1, Listed: []RowError{
		{Row: 8, Value: "13712345678", Reason: RowAlreadyListed, Detail: "+8613712345678: repeats row 2", DetailZH: "+8613712345678：与第 2 行重复"}}}, []int{4, 7})
	for _, n := range []string{"+8613712345678", "+8613800138000", "+8613916012345"} {
		if st, ok := f.p.WhitelistStatus(entA, n); !ok || st != WhitelistPending {
			t.Errorf("%s: %v %v", n, st, ok)
		}
	}
	if _, err := f.p.ImportWhitelist(f.aAdmin, entA, strings.NewReader("not a zip"), sheet.XLSX); !errors.Is(err, ErrInvalid) {
		t.Errorf("garbage XLSX: %v", err)
	}
}

func TestWhitelistStateText(t *testing.T) {
	for st := WhitelistPending; st <= WhitelistRejected; st++ {
		b, _ := st.MarshalText()
		var back WhitelistState
		if err := back.UnmarshalText(b); err != nil || back != st {
			t.Errorf("%v", st)
		}
	}
}

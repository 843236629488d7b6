package policy

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestDefaultPackages(t *testing.T) {
	tbl := DefaultPackages()
	if err := tbl.Validate(); err != nil {
		t.Fatal(err)
	}
	// The FAQ's table, in yuan as printed there.
	want := []struct {
		fee, included, overage string
	}{
		{"20", "220", "0.1"}, {"50", "555", "0.1"}, {"150", "1700", "0.1"}, {"300", "3500", "0.09"},
		{"500", "6200", "0.09"}, {"1000", "13000", "0.08"}, {"1500", "20000", "0.08"}, {"3600", "50000", "0.08"},
		{"7200", "105000", "0.08"}, {"13000", "200000", "0.07"}, {"30000", "500000", "0.06"}, {"50000", "1000000", "0.05"},
	}
	if len(tbl) != len(want) {
		t.Fatalf("%d packages", len(tbl))
	}
	for i, w := range want {
		fee, _ := ParseYuan(w.fee)
		over, _ := ParseYuan(w.overage)
		if p := tbl[i]; p.ID != i+1 || p.FeeFen != fee || strconv.FormatInt(p.Included, 10) != w.included || p.OverageFen != over {
			t.Errorf("package %d: %+v, want %+v", i+1, p, w)
		}
	}
}

func TestLimit(t *testing.T) {
	tbl := DefaultPackages()
	for _, tc := range []struct {
		name string
		ent  Enterprise
		want int64
	}{
		{"package 1, no cap", Enterprise{Package: 1}, -1},
		{"package 1, no overage", Enterprise{Package: 1, NoOverage: true}, 220},
		{"package 1, cap 30 CNY", Enterprise{Package: 1, CapFen: 30_00}, 320},
		{"package 1, cap 30.05 CNY (floor)", Enterprise{Package: 1, CapFen: 30_05}, 320},
		{"package 1, cap 30.10 CNY", Enterprise{Package: 1, CapFen: 30_10}, 321},
		{"package 1, cap = fee", Enterprise{Package: 1, CapFen: 20_00}, 220},
		{"package 1, cap below fee", Enterprise{Package: 1, CapFen: 10_00}, 220},
		{"package 4, cap 400 CNY", Enterprise{Package: 4, CapFen: 400_00}, 3500 + 10000/9},
		{"package 12, cap 60000 CNY", Enterprise{Package: 12, CapFen: 60_000_00}, 1_000_000 + 200_000},
		{"no overage wins over cap", Enterprise{Package: 1, CapFen: 30_00, NoOverage: true}, 220},
		{"unknown package: fail closed", Enterprise{Package: 99}, 0},
	} {
		if got := Limit(&tc.ent, tbl); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	free := PackageTable{{ID: 1, FeeFen: 100, Included: 10, OverageFen: 0}}
	if got := Limit(&Enterprise{Package: 1, CapFen: 500}, free); got != -1 {
		t.Errorf("free overage with cap: %d", got)
	}
}

func TestComputeBill(t *testing.T) {
	p1, _ := DefaultPackages().Lookup(1)
	for _, tc := range []struct {
		delivered int64
		want      Bill
	}{
		{300, Bill{Month: "2024-03", Package: 1, FeeFen: 2000, Included: 220, Delivered: 300, Overage: 80, OverageFen: 800, TotalFen: 2800}},
		{0, Bill{Month: "2024-03", Package: 1, FeeFen: 2000, Included: 220, TotalFen: 2000}},
		{220, Bill{Month: "2024-03", Package: 1, FeeFen: 2000, Included: 220, Delivered: 220, TotalFen: 2000}},
		{221, Bill{Month: "2024-03", Package: 1, FeeFen: 2000, Included: 220, Delivered: 221, Overage: 1, OverageFen: 10, TotalFen: 2010}},
	} {
		if got := ComputeBill("2024-03", p1, tc.delivered); got != tc.want {
			t.Errorf("%d: %+v, want %+v", tc.delivered, got, tc.want)
		}
	}
	p12, _ := DefaultPackages().Lookup(12)
	if b := ComputeBill("2024-03", p12, 1_234_567); b.TotalFen != 50_000_00+234_567*5 || FormatFen(b.TotalFen) != "61728.35" {
		t.Errorf("package 12: %+v %s", b, FormatFen(b.TotalFen))
	}
}

func TestMonthOf(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2024, 1, 31, 15, 59, 59, 0, time.UTC), "2024-01"},
		{time.Date(2024, 1, 31, 16, 0, 0, 0, time.UTC), "2024-02"}, // 00:00 on Feb 1 in Shanghai
		{time.Date(2023, 12, 31, 16, 0, 0, 0, time.UTC), "2024-01"},
		{time.Date(2024, 3, 1, 0, 0, 0, 0, time.FixedZone("PST", -8*3600)), "2024-03"},
	} {
		if got := MonthOf(tc.t); got != tc.want {
			t.Errorf("MonthOf(%v) = %s, want %s", tc.t, got, tc.want)
		}
	}
	start := MonthStart(time.Date(2024, 1, 31, 16, 0, 0, 0, time.UTC))
	if !start.Equal(time.Date(2024, 1, 31, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("MonthStart %v", start)
	}
}

func TestParseYuan(t *testing.T) {
	for in, want := range map[string]int64{"20": 2000, "0.1": 10, "0.10": 10, "0.09": 9, "1,500": 150000, " 13000.5 ": 1300050, "0": 0} {
		if got, err := ParseYuan(in); err != nil || got != want {
			t.Errorf("ParseYuan(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0.085", "-1", "1e3", "abc", ".5", "1.2.3", "99999999999999999999"} {
		if _, err := ParseYuan(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseYuan(%q): %v", in, err)
		}
	}
	if FormatFen(-5) != "-0.05" || FormatFen(2800) != "28.00" {
		t.Error("FormatFen")
	}
}

func TestPackageTableValidate(t *testing.T) {
	for name, tbl := range map[string]PackageTable{
		"empty":     {},
		"id 0":      {{ID: 0}},
		"duplicate": {{ID: 1}, {ID: 1}},
		"negative":  {{ID: 1, FeeFen: -1}},
	} {
		if err := tbl.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A package change bills the month it is made in and every later month with
// the new package; earlier months keep theirs, across a reopen too.
func TestPackageHistory(t *testing.T) {
	f := newFixture(t) // A created 2024-03 with package 1
	set := func(pkg int) {
		t.Helper()
		if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Package = pkg; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	bill := func(p *Policy, month string) int {
		t.Helper()
		e, _ := p.Lookup(entA)
		b, err := p.Bill(e, month, 300)
		if err != nil {
			t.Fatal(err)
		}
		return b.Package
	}
	f.clk.Advance(40 * 24 * time.Hour) // 2024-04-24
	set(3)
	set(4)                             // same month: replaces 3
	f.clk.Advance(60 * 24 * time.Hour) // 2024-06-23
	set(1)
	set(1) // unchanged: no entry
	e, _ := f.p.Lookup(entA)
	want := []PackageChange{{"2024-03", 1}, {"2024-04", 4}, {"2024-06", 1}}
	if !reflect.DeepEqual(e.PackageHistory, want) {
		t.Fatalf("history %+v, want %+v", e.PackageHistory, want)
	}
	// Callers cannot rewrite the history.
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.PackageHistory = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	f.db.Close()
	p := newPolicy(t, reopenDB(t, f.path), f.clk)
	for month, pkg := range map[string]int{"2024-02": 1, "2024-03": 1, "2024-04": 4, "2024-05": 4, "2024-06": 1, "2025-01": 1} {
		if got := bill(p, month); got != pkg {
			t.Errorf("%s billed with package %d, want %d", month, got, pkg)
		}
	}
	// The 2024-04 bill is package 4's: 300 CNY fee, 3,500 included.
	e, _ = p.Lookup(entA)
	if b, _ := p.Bill(e, "2024-04", 3600); b.FeeFen != 300_00 || b.Overage != 100 || b.OverageFen != 900 {
		t.Errorf("2024-04 bill %+v", b)
	}
	// A record stored before histories were kept bills with its package.
	if got := (&Enterprise{Package: 7}).PackageIn("2020-01"); got != 7 {
		t.Errorf("no history: package %d", got)
	}
}

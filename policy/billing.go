package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Asia/Shanghai on machines without a zone database
)

// Package is one monthly tier. Money is integer fen (分, 0.01 CNY), never a float.
type Package struct {
	ID         int   `json:"id"`          // 1..N
	FeeFen     int64 `json:"fee_fen"`     // monthly fee
	Included   int64 `json:"included"`    // segments included in the fee
	OverageFen int64 `json:"overage_fen"` // price of each segment beyond Included
}

// PackageTable is the configured list of packages (prices vary by city, so it
// is configuration; DefaultPackages is the FAQ's table).
type PackageTable []Package

// DefaultPackages returns the 12 tiers of the FAQ (question 16).
func DefaultPackages() PackageTable {
	return PackageTable{
		{1, 20_00, 220, 10},
		{2, 50_00, 555, 10},
		{3, 150_00, 1_700, 10},
		{4, 300_00, 3_500, 9},
		{5, 500_00, 6_200, 9},
		{6, 1_000_00, 13_000, 8},
		{7, 1_500_00, 20_000, 8},
		{8, 3_600_00, 50_000, 8},
		{9, 7_200_00, 105_000, 8},
		{10, 13_000_00, 200_000, 7},
		{11, 30_000_00, 500_000, 6},
		{12, 50_000_00, 1_000_000, 5},
	}
}

// Validate checks that IDs are unique and ≥ 1 and that no amount is negative.
func (t PackageTable) Validate() error {
	if len(t) == 0 {
		return fmt.Errorf("%w: package table is empty", ErrInvalid)
	}
	seen := map[int]bool{}
	for _, p := range t {
		switch {
		case p.ID < 1:
			return fmt.Errorf("%w: package id %d: must be ≥ 1", ErrInvalid, p.ID)
		case seen[p.ID]:
			return fmt.Errorf("%w: package id %d listed twice", ErrInvalid, p.ID)
		case p.FeeFen < 0 || p.Included < 0 || p.OverageFen < 0:
			return fmt.Errorf("%w: package %d: negative amount", ErrInvalid, p.ID)
		}
		seen[p.ID] = true
	}
	return nil
}

// Lookup returns the package with the given ID.
func (t PackageTable) Lookup(id int) (Package, bool) {
	for _, p := range t {
		if p.ID == id {
			return p, true
		}
	}
	return Package{}, false
}

// Limit returns the maximum number of segments the enterprise may have
// charged (delivered) plus reserved (in flight) this month before submissions
// are refused with quota_exceeded; -1 means no limit.
//
//   - NoOverage: the included segments.
//   - CapFen > 0: the included segments plus as many overage segments as the
//     part of the cap above the monthly fee pays for, rounded down. The fee is
//     owed whatever happens, so a cap below the fee allows no overage at all:
//     the limit is then the included segments (as with NoOverage). A package
//     with free overage (OverageFen 0) cannot reach a cap: -1.
//   - otherwise: -1.
//
// An enterprise whose package is not in the table gets 0 (fail closed: the
// operator must fix the package before it can send).
func Limit(ent *Enterprise, table PackageTable) int64 {
	pkg, ok := table.Lookup(ent.Package)
	if !ok {
		return 0
	}
	switch {
	case ent.NoOverage:
		return pkg.Included
	case ent.CapFen > 0:
		if ent.CapFen <= pkg.FeeFen {
			return pkg.Included
		}
		if pkg.OverageFen == 0 {
			return -1
		}
		return pkg.Included + (ent.CapFen-pkg.FeeFen)/pkg.OverageFen
	}
	return -1
}

// Bill is one enterprise's monthly bill.
type Bill struct {
	Month      string `json:"month"` // "2006-01", Asia/Shanghai
	Package    int    `json:"package"`
	FeeFen     int64  `json:"fee_fen"`
	Included   int64  `json:"included"`
	Delivered  int64  `json:"delivered"` // delivered segments (DLR stat:DELIVRD)
	Overage    int64  `json:"overage"`   // max(0, Delivered-Included)
	OverageFen int64  `json:"overage_fen"`
	TotalFen   int64  `json:"total_fen"`
}

// ComputeBill bills delivered segments (only DELIVRD ones are billable) of a
// month under pkg. The fee is due even when nothing was delivered.
func ComputeBill(month string, pkg Package, delivered int64) Bill {
	b := Bill{Month: month, Package: pkg.ID, FeeFen: pkg.FeeFen, Included: pkg.Included, Delivered: delivered}
	if delivered > pkg.Included {
		b.Overage = delivered - pkg.Included
	}
	b.OverageFen = b.Overage * pkg.OverageFen
	b.TotalFen = b.FeeFen + b.OverageFen
	return b
}

var shanghai = mustLoadLocation("Asia/Shanghai")

func mustLoadLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // cannot happen: time/tzdata is embedded
	}
	return loc
}

// MonthOf returns the billing month of t, "2006-01" in Asia/Shanghai time.
func MonthOf(t time.Time) string { return t.In(shanghai).Format("2006-01") }

// MonthStart returns the first instant of the billing month containing t.
func MonthStart(t time.Time) time.Time {
	t = t.In(shanghai)
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, shanghai)
}

// ParseYuan parses a decimal CNY amount ("20", "0.10", "1,500") into fen
// without floating point. More than two decimals is an error.
func ParseYuan(s string) (int64, error) {
	orig := s
	s = strings.ReplaceAll(strings.TrimSpace(s), ",", "")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || !allDigits(whole) || !allDigits(frac) {
		return 0, invalidField("", "金额须为元，最多两位小数（如 1500 或 1500.00）", "amount %q: want yuan with at most 2 decimals", orig)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	y, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || y > (1<<62)/100 {
		return 0, invalidField("", "金额超出范围", "amount %q out of range", orig)
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	return y*100 + f, nil
}

// FormatFen formats fen as yuan with two decimals: 2800 → "28.00".
func FormatFen(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}

// Month returns the current billing month by the store's clock.
func (s *Store) Month() string { return MonthOf(s.opts.Now()) }

package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/sheet"
)

// boundedFixture is newFixture with whitelists of at most 6 entries, 3 of
// them pending.
func boundedFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, func(c *Config) { c.MaxWhitelist, c.MaxPendingWhitelist = 6, 3 })
}

// wantRefused checks that res refused exactly the given rows, each with
// reason, that its detail names the number and the bound, and that every
// row is accounted for.
func wantRefused(t *testing.T, what string, res ImportResult, reason string, bound int, rows ...int) {
	t.Helper()
	var got []int
	for _, e := range res.Errors {
		if e.Reason != reason || !strings.Contains(e.Detail, fmt.Sprint(bound)) || !strings.Contains(e.Detail, "+86") {
			t.Errorf("%s: refusal %+v, want %s naming the number and %d", what, e, reason, bound)
		}
		got = append(got, e.Row)
	}
	if fmt.Sprint(got) != fmt.Sprint(rows) {
		t.Errorf("%s: refused rows %v, want %v (%+v)", what, got, rows, res)
	}
	if res.Rows != res.Added+res.Duplicates+len(res.Errors) {
		t.Errorf("%s: rows do not add up: %+v", what, res)
	}
}

func (f *fixture) add(t *testing.T, a Actor, code string, numbers ...string) ImportResult {
	t.Helper()
	res, err := f.p.AddWhitelist(a, code, numbers)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wlNum(i int) string { return fmt.Sprintf("137000000%02d", i) }

// TestWhitelistBounds: an enterprise's plain user may add pending numbers
// up to the pending bound, anyone up to the whole bound; the numbers before
// the bound are added and each past it refused with its reason, another
// enterprise's whitelist is not concerned, and a decision or a removal
// makes room again.
func TestWhitelistBounds(t *testing.T) {
	f := boundedFixture(t)

	// 5 numbers asked for: 3 pending, the other 2 past the pending bound.
	res := f.add(t, f.aUser, entA, wlNum(1), wlNum(2), wlNum(3), wlNum(4), wlNum(5))
	if res.Added != 3 {
		t.Errorf("added %d, want 3", res.Added)
	}
	wantRefused(t, "pending bound", res, RowPendingLimit, 3, 4, 5)
	if _, ok := f.p.WhitelistStatus(entA, "+86"+wlNum(4)); ok {
		t.Error("a refused number is on the whitelist")
	}
	wantRefused(t, "one more", f.add(t, f.aAdmin, entA, wlNum(4)), RowPendingLimit, 3, 1)

	// Another enterprise has its own room.
	if res := f.add(t, f.bAdmin, entB, wlNum(1), wlNum(2), wlNum(3)); res.Added != 3 || len(res.Errors) != 0 {
		t.Errorf("B beside a full A: %+v", res)
	}

	// A decision frees pending room: 1 approved, 2 rejected.
	if _, err := f.p.Approve(op, entA, "+86"+wlNum(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Reject(op, entA, "not a customer", "+86"+wlNum(2)); err != nil {
		t.Fatal(err)
	}
	if res := f.add(t, f.aUser, entA, wlNum(4), wlNum(5)); res.Added != 2 || len(res.Errors) != 0 {
		t.Errorf("after decisions: %+v", res)
	}
	// A: 1 approved, 2 rejected, 3, 4, 5 pending (5 entries). The
	// operator's numbers are approved: only the whole bound holds them.
	res = f.add(t, op, entA, wlNum(6), wlNum(7), wlNum(8))
	if res.Added != 1 {
		t.Errorf("operator: added %d, want 1", res.Added)
	}
	wantRefused(t, "whole bound", res, RowWhitelistLimit, 6, 2, 3)

	// Full, with pending room once 3 is approved: a new number is
	// refused, a rejected one asked for again is no new entry.
	if _, err := f.p.Approve(op, entA, "+86"+wlNum(3)); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "new number, whitelist full", f.add(t, f.aUser, entA, wlNum(9)), RowWhitelistLimit, 6, 1)
	if res := f.add(t, f.aUser, entA, wlNum(2)); res.Added != 1 {
		t.Errorf("rejected number asked again: %+v", res)
	}
	// A removal frees room.
	if _, err := f.p.RemoveWhitelist(f.aAdmin, entA, []string{wlNum(6)}); err != nil {
		t.Fatal(err)
	}
	if res := f.add(t, f.aUser, entA, wlNum(9)); res.Added != 0 {
		t.Errorf("pending full again (2, 4, 5): %+v", res)
	}
	if res := f.add(t, op, entA, wlNum(9)); res.Added != 1 {
		t.Errorf("after a removal: %+v", res)
	}
	// A rejected number asked for again is pending again: it waits for
	// pending room like a new one (B: 1 rejected, 2, 3, 4 pending).
	if _, err := f.p.Reject(op, entB, "not a customer", "+86"+wlNum(1)); err != nil {
		t.Fatal(err)
	}
	if res := f.add(t, f.bAdmin, entB, wlNum(4)); res.Added != 1 {
		t.Errorf("B's fourth: %+v", res)
	}
	wantRefused(t, "rejected number asked again, pending full", f.add(t, f.bAdmin, entB, wlNum(1)), RowPendingLimit, 3, 1)

	counts, err := f.p.WhitelistCounts(op, entA)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[WhitelistState]int{WhitelistApproved: 3, WhitelistPending: 3}; !maps.Equal(counts, want) {
		t.Errorf("A's counts %v, want %v", counts, want)
	}
	checkSnapshotIsFile(t, f)
}

// TestWhitelistImportPastBounds: an import that crosses the bound adds its
// rows up to it and refuses each later new number with its row number,
// among the rows refused for other reasons, in row order.
func TestWhitelistImportPastBounds(t *testing.T) {
	f := boundedFixture(t)
	f.add(t, f.aUser, entA, wlNum(1))
	csv := "号码\n" + wlNum(2) + "\n12345\n" + wlNum(1) + "\n" + wlNum(3) + "\n" + wlNum(2) + "\n" + wlNum(4) + "\n\n" + wlNum(5) + "\nabc\n"
	res, err := f.p.ImportWhitelist(f.aUser, entA, strings.NewReader(csv), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	// Rows: 2 added, 3 invalid, 4 listed, 5 added (pending bound met),
	// 6 repeats row 2, 7 and 9 refused, 10 invalid.
	if res.Rows != 8 || res.Added != 2 || res.Duplicates != 2 || len(res.Errors) != 4 {
		t.Fatalf("import: %+v", res)
	}
	var got []string
	for _, e := range res.Errors {
		got = append(got, fmt.Sprint(e.Row, " ", e.Reason))
	}
	if want := []string{"3 invalid_number", "7 pending_limit", "9 pending_limit", "10 invalid_number"}; !slices.Equal(got, want) {
		t.Errorf("errors %v, want %v", got, want)
	}
	for _, n := range []int{4, 5} {
		if _, ok := f.p.WhitelistStatus(entA, "+86"+wlNum(n)); ok {
			t.Errorf("%s refused but listed", wlNum(n))
		}
	}
	checkSnapshotIsFile(t, f)
}

// TestWhitelistBoundsDefault: a Store without bounds configured has the
// documented ones.
func TestWhitelistBoundsDefault(t *testing.T) {
	f := newFixture(t)
	if f.p.opts.MaxWhitelist != DefaultMaxWhitelist || f.p.opts.MaxPendingWhitelist != DefaultMaxPendingWhitelist {
		t.Errorf("bounds %d, %d", f.p.opts.MaxWhitelist, f.p.opts.MaxPendingWhitelist)
	}
}

// TestWhitelistSnapshotPatched: after every kind of whitelist write, the
// whitelists in memory (patched entry by entry, patchWhitelist) are what
// a fresh read of the file gives: states, rejection reasons, pending
// entries and the oldest of them.
func TestWhitelistSnapshotPatched(t *testing.T) {
	f := newFixture(t)
	step := func(what string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		f.clk.Advance(1)
		checkSnapshotIsFile(t, f)
	}
	nums := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, wlNum(i))
		}
		return out
	}
	e := func(_ any, err error) error { return err }
	step("add", func() error { return e(f.p.AddWhitelist(f.aUser, entA, nums(1, 2, 3, 4, 5, 6))) })
	step("operator add", func() error { return e(f.p.AddWhitelist(op, entA, nums(5, 7))) })
	step("reject", func() error { return e(f.p.Reject(op, entA, "没有授权", nums(1, 2)...)) })
	step("approve the oldest", func() error { return e(f.p.Approve(op, entA, nums(3)...)) })
	step("ask again", func() error { return e(f.p.AddWhitelist(f.aAdmin, entA, nums(1))) })
	step("decide across enterprises", func() error {
		return e(f.p.DecideEntries(op, WhitelistRejected, "重复", []EntryRef{{entA, wlNum(4)}, {entB, wlNum(4)}}))
	})
	step("remove", func() error { return e(f.p.RemoveWhitelist(f.aAdmin, entA, nums(2, 7, 8))) })
	step("import", func() error {
		return e(f.p.ImportWhitelist(f.aUser, entA, strings.NewReader(wlNum(8)+"\n"+wlNum(9)+"\n"), sheet.CSV))
	})
	step("approve all pending", func() error { return e(f.p.Approve(op, entA)) })
	step("remove the rest", func() error { return e(f.p.RemoveWhitelist(f.aAdmin, entA, nums(1, 2, 3, 4, 5, 6, 7, 8, 9))) })
}

// checkSnapshotIsFile compares the whitelists in memory with those read
// again from the file.
func checkSnapshotIsFile(t *testing.T, f *fixture) {
	t.Helper()
	snap := f.p.snap.Load()
	err := f.db.View(func(tx *bolt.Tx) error {
		for code, es := range snap.ents {
			want, err := loadWhitelist(tx, code)
			if err != nil {
				return err
			}
			got := es.wlSnap
			if !maps.Equal(got.wl, want.wl) || !maps.Equal(got.why, want.why) || !maps.Equal(got.added, want.added) ||
				!got.oldest.Equal(want.oldest) {
				t.Errorf("%s in memory: %+v\nin the file: %+v", code, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

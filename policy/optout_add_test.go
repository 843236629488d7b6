package policy

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/sheet"
)

// TestAddOptOuts: any user of an enterprise puts numbers on its opt-out
// list by hand (a customer who called, the list of an earlier platform):
// invalid numbers and repeats reported per row, a number a reply put there
// keeps its entry, sends to the new ones are refused at once, another
// enterprise is not touched; a file imports the same way, its header
// skipped.
func TestAddOptOuts(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678", "13923412345"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.OptOut(entA, "13800138000", 9, f.clk.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := f.p.AddOptOuts(f.aUser, entA, []string{"137-1234-5678", "12345", "13712345678", "+8613800138000", "13923412345"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 5 || res.Added != 2 || res.Duplicates != 2 || len(res.Errors) != 1 || res.Errors[0].Row != 2 ||
		len(res.Listed) != 2 || res.Listed[0].Reason != RowOptedOut || !strings.Contains(res.Listed[0].Detail, "repeats row 1") ||
		!strings.Contains(res.Listed[1].Detail, "since") {
		t.Fatalf("add: %+v", res)
	}
	for _, n := range []string{"13712345678", "13923412345"} {
		if _, err := f.p.CheckRecipient(f.a, n); !isReason(err, ReasonOptedOut) {
			t.Errorf("send to %s added by hand: %v", n, err)
		}
		if !f.p.OptedOutNational(entA, n) {
			t.Errorf("%s not opted out in memory", n)
		}
	}
	if f.p.OptedOutNational(entB, "13712345678") {
		t.Error("B's list holds A's number")
	}
	e, err := f.p.FindOptOut(f.aAdmin, entA, "13712345678")
	if err != nil || e == nil || e.By != f.aUser.Name || e.MOID != 0 {
		t.Fatalf("entry added by hand: %+v %v", e, err)
	}
	if e, _ := f.p.FindOptOut(f.aAdmin, entA, "13800138000"); e == nil || e.By != "" || e.MOID != 9 {
		t.Errorf("the reply's entry after the add: %+v", e)
	}
	if _, err := f.p.AddOptOuts(f.bAdmin, entA, []string{"13712345679"}); err != ErrForbidden {
		t.Errorf("B adds to A's list: %v", err)
	}
	res, err = f.p.ImportOptOuts(f.aUser, entA, strings.NewReader("手机号码\n13712345679\n13712345678\n"), sheet.CSV)
	if err != nil || res.HeaderRow != 1 || res.Rows != 2 || res.Added != 1 || res.Duplicates != 1 {
		t.Fatalf("import: %+v %v", res, err)
	}
	if !f.p.OptedOutNational(entA, "13712345679") {
		t.Error("the imported number is not opted out")
	}
}

// TestOptOutsBound: past StoreOptions.MaxOptOuts numbers on a list the
// enterprise's own additions are refused per row (the rows before added),
// a reply of TD never is, and another enterprise has its own room.
func TestOptOutsBound(t *testing.T) {
	f := newFixtureWith(t, func(c *Config) { c.MaxOptOuts = 3 })
	res, err := f.p.AddOptOuts(f.aUser, entA, []string{"13700000001", "13700000002", "13700000003", "13700000004", "13700000005"})
	if err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "past the bound", res, RowOptOutLimit, 3, 4, 5)
	if added, err := f.p.OptOut(entA, "13700000009", 1, f.clk.Now()); err != nil || !added {
		t.Fatalf("a reply at the bound: %v %v", added, err)
	}
	res, err = f.p.AddOptOuts(f.bAdmin, entB, []string{"13700000004", "13700000005"})
	if err != nil || res.Added != 2 {
		t.Fatalf("B beside a full A: %+v %v", res, err)
	}
	if err := f.p.RemoveOptOut(f.aAdmin, entA, "13700000001"); err != nil {
		t.Fatal(err)
	}
	res, _ = f.p.AddOptOuts(f.aUser, entA, []string{"13700000004"})
	wantRefused(t, "4 on the list, one removed", res, RowOptOutLimit, 3, 1)
	if d := newFixture(t); d.p.opts.MaxOptOuts != DefaultMaxOptOuts {
		t.Errorf("default bound %d", d.p.opts.MaxOptOuts)
	}
}

// TestOptOutsSnapshotPatched: after every kind of opt-out write the lists
// in memory (patched number by number, patchOptOuts) are what a fresh
// read of the file gives.
func TestOptOutsSnapshotPatched(t *testing.T) {
	f := newFixture(t)
	check := func(what string) {
		t.Helper()
		snap := f.p.snap.Load()
		err := f.db.View(func(tx *bolt.Tx) error {
			want, err := loadAllOptOuts(tx)
			if err != nil {
				return err
			}
			same := func(a, b *optSet) bool {
				for i := range a.shards {
					if len(a.shards[i]) != len(b.shards[i]) || !maps.Equal(a.shards[i], b.shards[i]) {
						return false
					}
				}
				return a.n == b.n
			}
			if !maps.EqualFunc(snap.opt, want, same) {
				t.Errorf("%s: in memory %v, in the file %v", what, snap.opt, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e(f.p.OptOut(entA, "13700000001", 1, f.clk.Now()))
	check("a reply")
	e(f.p.AddOptOuts(f.aUser, entA, []string{"13700000002", "13700000003"}))
	e(f.p.AddOptOuts(f.bAdmin, entB, []string{"13700000002"}))
	check("added by hand")
	e(nil, f.p.RemoveOptOut(f.aAdmin, entA, "13700000002"))
	check("one removed")
	e(nil, f.p.RemoveOptOut(f.aAdmin, entA, "13700000001"))
	e(nil, f.p.RemoveOptOut(f.aAdmin, entA, "13700000003"))
	check("A's list emptied")
}

// BenchmarkOptOutAtBound: one reply of TD, and one import of 100,000
// numbers, beside a list of 500,000 (DefaultMaxOptOuts): the list in
// memory is patched, not read again from the file.
func BenchmarkOptOutAtBound(b *testing.B) {
	f := newFixture(b)
	const total = DefaultMaxOptOuts // written out for a comparison with builds without it
	numbers := make([]string, total)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("138%08d", i)
	}
	if _, err := f.p.AddOptOuts(op, entA, numbers); err != nil {
		b.Fatal(err)
	}
	b.Run("reply", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if added, err := f.p.OptOut(entA, fmt.Sprintf("139%08d", i), uint64(i), f.clk.Now()); err != nil || !added {
				b.Fatal(added, err)
			}
		}
	})
	b.Run("import-100k", func(b *testing.B) {
		f := newFixture(b)
		if _, err := f.p.AddOptOuts(op, entA, numbers[:total-100_000]); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := f.p.ImportOptOuts(f.aUser, entA, importCSV(total, 100_000), sheet.CSV); err != nil {
				b.Fatal(err)
			}
		}
	})
}

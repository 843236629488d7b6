package policy

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/qxtd/qxtd/sheet"
)

// heapMiB is the live heap after a collection.
func heapMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// importCSV is a file of n new numbers of the 139 block from the first'th.
func importCSV(first, n int) *bytes.Buffer {
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "139%08d\n", first+i)
	}
	return &buf
}

// BenchmarkWhitelistImportFlood: a plain user of an enterprise imports
// 100,000 new numbers an iteration, as anyone of the enterprise may; the
// heap and the entries held after them. `go test ./policy -run '^$' -bench
// WhitelistImportFlood -benchtime 10x` (more than 10 imports count the
// metadata of more numbers in the heap).
func BenchmarkWhitelistImportFlood(b *testing.B) {
	f := newFixture(b)
	// Load first the number metadata that classifying the numbers of 10
	// imports loads (some 14 MiB, lazily, block by block), so that the
	// heap counted is what the entries hold.
	for i := range 1_000_000 {
		if _, err := f.p.Classifier().Classify(fmt.Sprintf("139%08d", i)); err != nil {
			b.Fatal(err)
		}
	}
	base := heapMiB()
	n := 0
	for b.Loop() {
		start := time.Now()
		res, err := f.p.ImportWhitelist(f.aUser, entA, importCSV(n*100_000, 100_000), sheet.CSV)
		if err != nil {
			b.Fatal(err)
		}
		n++
		b.Logf("import %d: %d added in %v", n, res.Added, time.Since(start).Round(time.Millisecond))
	}
	b.StopTimer()
	counts, err := f.p.WhitelistCounts(op, entA)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(counts[WhitelistPending]+counts[WhitelistApproved]+counts[WhitelistRejected]), "entries")
	b.ReportMetric(heapMiB()-base, "heap-MiB")
}

// BenchmarkWhitelistAtBound: writes to an enterprise whitelist of
// DefaultMaxWhitelist entries, DefaultMaxPendingWhitelist of them pending:
// an approval of one number, and an import of 100,000 new numbers (all
// refused, whitelist_limit). The approvals go first: an import into a
// build without bounds would grow the whitelist under them. `go test ./policy -run '^$' -bench
// WhitelistAtBound -benchtime 20x`.
func BenchmarkWhitelistAtBound(b *testing.B) {
	f := newFixture(b)
	const total, pending = 200_000, 10_000 // the defaults, written out for a comparison with builds without them
	numbers := make([]string, total)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("138%08d", i)
	}
	if _, err := f.p.AddWhitelist(op, entA, numbers[pending:]); err != nil {
		b.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(f.aUser, entA, numbers[:pending]); err != nil {
		b.Fatal(err)
	}
	b.Run("approve-one", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if i == pending {
				b.Fatal("no pending number left")
			}
			if res, err := f.p.Approve(op, entA, numbers[i]); err != nil || res.Changed != 1 {
				b.Fatal(res, err)
			}
			i++
		}
	})
	b.Run("import-100k", func(b *testing.B) {
		n := 0
		for b.Loop() {
			n++
			if _, err := f.p.ImportWhitelist(f.aUser, entA, importCSV(n*100_000, 100_000), sheet.CSV); err != nil {
				b.Fatal(err)
			}
		}
	})
}

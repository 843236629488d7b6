package reminder

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/queue"
)

// BenchmarkMaterialise is one scheduler pass (Materialise, every Tick in
// production) over n stored series of mixed rules of which none has an
// occurrence due: daily ones 300 days old with a record for every day
// (some with a moved or deleted day), weekly ones, one-offs next week,
// and finished ones (a one-off sent, a daily series of 30 all sent), 1,000
// an enterprise. memo=off is the pass as it was before the memo, every
// head decoded (the baseline, measured in the same run); memo=on starts
// from the memo of one pass already made. Reports the process's CPU per
// pass beside ns/op, the heads decoded per pass, and the mean size of a
// stored series (what a pass hashes).
func BenchmarkMaterialise(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run("series="+strconv.Itoa(n), func(b *testing.B) {
			db := benchSeries(b, n)
			var stored int
			if err := db.View(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketSeries).ForEach(func(_, v []byte) error { stored += len(v); return nil })
			}); err != nil {
				b.Fatal(err)
			}
			for _, off := range []bool{true, false} {
				b.Run(map[bool]string{true: "memo=off", false: "memo=on"}[off], func(b *testing.B) {
					s, err := New(Config{DB: db, Now: func() time.Time { return benchNow }})
					if err != nil {
						b.Fatal(err)
					}
					s.memoOff = off
					ctx := context.Background()
					if err := s.Materialise(ctx); err != nil {
						b.Fatal(err)
					}
					cpu0, dec0 := cpuNow(b), s.decodes
					passes := 0
					for b.Loop() {
						if err := s.Materialise(ctx); err != nil {
							b.Fatal(err)
						}
						passes++
					}
					b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(passes), "cpu-µs/pass")
					b.ReportMetric(float64(s.decodes-dec0)/float64(passes), "decodes/pass")
					b.ReportMetric(float64(stored)/float64(n), "stored-B/series")
				})
			}
		})
	}
}

// benchNow is the bench's clock: a Tuesday morning in Asia/Shanghai.
var benchNow = time.Date(2026, 3, 10, 10, 0, 0, 0, Shanghai)

// benchSeries stores n series (none due at benchNow) in a fresh file.
// The Services over it cannot send (no gateway: a pass that found one due
// would fail the bench by panicking).
func benchSeries(b *testing.B, n int) *bolt.DB {
	b.Helper()
	db, err := queue.OpenDB(filepath.Join(b.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	s, err := New(Config{DB: db})
	if err != nil {
		b.Fatal(err)
	}
	day := func(d int, h, m int) time.Time {
		t := benchNow.AddDate(0, 0, d)
		return time.Date(t.Year(), t.Month(), t.Day(), h, m, 0, 0, Shanghai)
	}
	const batch = 1000
	for lo := 0; lo < n; lo += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				r := &Reminder{ID: uint64(i + 1), Enterprise: fmt.Sprintf("E%04d", i/1000), Account: fmt.Sprintf("u%05d", i/50),
					Text: "周一例会 9:30 三楼会议室，请带上周报和下周计划", To: []string{"13712345678", "13923412345"}}
				switch i % 5 {
				case 0: // daily for 300 days, a day moved and a day deleted
					r.Rule = Rule{Freq: Daily, Start: day(-300, 9, 0), Before: 15}
					r.Exceptions = map[string]Exception{
						day(3, 0, 0).Format(Date): {At: day(3, 11, 0), Text: "改到十一点"},
						day(5, 0, 0).Format(Date): {Deleted: true},
					}
				case 1: // weekly, Monday, Wednesday, Friday
					r.Rule = Rule{Freq: Weekly, Start: day(-120, 14, 30), Weekdays: []time.Weekday{time.Monday, time.Wednesday, time.Friday}}
				case 2: // a one-off next week
					r.Rule = Rule{Freq: Once, Start: day(3+i%7, 16, 0)}
				case 3: // a one-off, sent a month ago
					r.Rule = Rule{Freq: Once, Start: day(-30, 8, 0)}
				case 4: // 30 days, all sent
					r.Rule = Rule{Freq: Daily, Start: day(-90, 7, 45), Count: 30}
				}
				r.Created, r.Updated, r.From = r.Rule.Start.Add(-time.Hour), r.Rule.Start.Add(-time.Hour), r.Rule.Start.Add(-time.Hour)
				// What the scheduler did: everything due by now is recorded.
				r.Occ = map[string]OccState{}
				for _, o := range s.due(r, benchNow) {
					r.Occ[o.Date] = OccState{State: StateScheduled, SendAt: o.SendAt, IDs: []uint64{uint64(1e6 + i)}}
				}
				if err := putTx(tx, r, benchNow); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db
}

func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

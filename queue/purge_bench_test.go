package queue

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkPurgeOrphansBeside: a store keeping 200,000 orphans (none
// old enough to purge), and a writer recording receipts that match no
// part while PurgeOrphans looks for old ones: how long the writer's
// operations wait (max-op-ms, p99-op-ms), i.e. whether the purge's walk
// holds up the commit loop.
func BenchmarkPurgeOrphansBeside(b *testing.B) {
	const orphans = 200_000
	s, err := Open(filepath.Join(b.TempDir(), "q.db"), Options{NoSync: true, MaxOrphans: 2 * orphans})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	done := make(chan error, 1)
	for i := 0; i < orphans; i += 1000 {
		for j := range 1000 {
			go func() {
				_, err := s.ApplyDLR(ctx, DLR{Upstream: "up", SMSCID: fmt.Sprintf("o%07d", i+j), State: StateDelivered, DoneAt: time.Now()})
				done <- err
			}()
		}
		for range 1000 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		purged := make(chan error, 1)
		go func() {
			_, err := s.PurgeOrphans(ctx, time.Now().Add(-time.Hour), 10000)
			purged <- err
		}()
		for n := 0; ; n++ {
			start := time.Now()
			if _, err := s.ApplyDLR(ctx, DLR{Upstream: "w", SMSCID: fmt.Sprintf("w%d-%d", i, n), State: StateDelivered, DoneAt: time.Now()}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			select {
			case err := <-purged:
				if err != nil {
					b.Fatal(err)
				}
			default:
				continue
			}
			break
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-op-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-op-ms")
}

// BenchmarkOpenOrphans: what counting the kept orphans at open costs
// (store.max_orphans), on a store with none and one with 1,000,000 of
// one upstream (the default bound).
func BenchmarkOpenOrphans(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("orphans=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "q.db")
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
			db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for i := 0; i < n; i += 100_000 {
				err := db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket(bucketOrphan)
					for j := i; j < i+100_000; j++ {
						d := DLR{Upstream: "up", SMSCID: fmt.Sprintf("%016x", j), State: StateDelivered, DoneAt: now}
						if err := bk.Put(smscKey(d.Upstream, d.SMSCID), encodeOrphan(nil, &orphan{DLR: d, ReceivedAt: now})); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			db.Close()
			for b.Loop() {
				s, err := Open(path, Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				if got := s.OrphanCounts()["up"]; got != n {
					b.Fatalf("orphans %d, want %d", got, n)
				}
				s.Close()
			}
		})
	}
}

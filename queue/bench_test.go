package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchMsg is a typical one-segment message: 67 UCS-2 characters.
func benchMsg(i int) *Message {
	return &Message{
		Account: "acct" + strconv.Itoa(i%8), Enterprise: "G00" + strconv.Itoa(i%8),
		Source: "1065712345", Dest: "1371234" + strconv.Itoa(1000+i%9000), DataCoding: 8,
		RegisteredDelivery: 1, Upstream: "cmcc-gd", Text: "【某某公司】您的验证码是123456，五分钟内有效。",
		Parts: []Part{{Body: make([]byte, 134)}},
	}
}

// parallelism returns the SetParallelism factor that gives about n
// goroutines in RunParallel.
func parallelism(n int) int { return max(1, (n+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0)) }

// processCPU is the CPU (user and system) this process has used so far.
// The machines benchmarks run on are shared: CPU per message drifts less
// than time per message.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU per operation since cpu0.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func openBench(b *testing.B, opt Options) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "q.db"), opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkEnqueueParallel: durable (fsync on) Enqueue of one message from
// ~N concurrent writers through the group-commit loop. Compare msgs/s with
// BenchmarkBoltUpdatePerMessage.
func BenchmarkEnqueueParallel(b *testing.B) {
	for _, writers := range []int{128, 512} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := openBench(b, Options{})
			var n atomic.Int64
			b.SetParallelism(parallelism(writers))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Enqueue(context.Background(), benchMsg(int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportCPU(b, cpu0)
			st := s.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(st.Ops)/float64(max(st.Txns, 1)), "ops/txn")
		})
	}
}

// BenchmarkBoltUpdatePerMessage is the baseline: the same records (message,
// due key, usage counter) written with one db.Update — one fsync — per
// message, from 128 concurrent writers.
func BenchmarkBoltUpdatePerMessage(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "q.db"), 0o600, &bolt.Options{
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(parallelism(128))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := benchMsg(int(n.Add(1)))
			m.AcceptedAt = time.Now()
			err := db.Update(func(tx *bolt.Tx) error {
				mb := tx.Bucket(bucketMsg)
				id, err := mb.NextSequence()
				if err != nil {
					return err
				}
				m.ID = id
				m.Parts[0].State, m.Parts[0].DueAt = StateAccepted, m.AcceptedAt
				if err := mb.Put(msgKey(id), encodeMessage(nil, m)); err != nil {
					return err
				}
				if err := tx.Bucket(bucketDue).Put(timeKey(m.AcceptedAt, Key{id, 0}), nil); err != nil {
					return err
				}
				ub := tx.Bucket(bucketUsage)
				uk := []byte(usageKey(m.Enterprise, BillingMonth(m.AcceptedAt)))
				var u usage
				if v := ub.Get(uk); v != nil {
					if u, err = decodeUsage(v); err != nil {
						return err
					}
				}
				u.Reserved++
				return ub.Put(uk, encodeUsage(u))
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkLifecycleParallel: Enqueue, Submitted and ApplyDLR (three
// durable commits per message, fsync on) from ~128 concurrent writers:
// the store's share of a message with a delivery receipt.
func BenchmarkLifecycleParallel(b *testing.B) {
	s := openBench(b, Options{})
	var n atomic.Int64
	b.SetParallelism(parallelism(128))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := lifecycle(s, int(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU(b, cpu0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkLifecycleSerial: the same three commits per message from one
// writer, so that every operation commits alone, as at a low rate (a few
// hundred messages a second): what a commit costs besides its
// operations shows here, amortised away in the parallel benchmark.
func BenchmarkLifecycleSerial(b *testing.B) {
	s := openBench(b, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := range b.N {
		if err := lifecycle(s, i+1); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// lifecycle is the i-th message's Enqueue, Submitted and ApplyDLR.
func lifecycle(s *Store, i int) error {
	ctx := context.Background()
	m := benchMsg(i)
	if err := s.Enqueue(ctx, m); err != nil {
		return err
	}
	id := strconv.FormatInt(int64(i), 16)
	if err := s.Submitted(ctx, Key{m.ID, 0}, id, time.Now()); err != nil {
		return err
	}
	_, err := s.ApplyDLR(ctx, DLR{Upstream: m.Upstream, SMSCID: id, State: StateDelivered})
	return err
}

// BenchmarkDue: one Due call returning 100 jobs from a store holding 10,000
// due parts, with 1,000 of the earliest in flight (skipped).
func BenchmarkDue(b *testing.B) {
	s := openBench(b, Options{NoSync: true})
	t0 := time.Now().Add(-time.Hour)
	for i := 0; i < 10000; i += 1000 {
		msgs := make([]*Message, 1000)
		for j := range msgs {
			msgs[j] = benchMsg(i + j)
			msgs[j].AcceptedAt = t0.Add(time.Duration(i+j) * time.Millisecond)
		}
		if err := s.Enqueue(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	inflight := func(k Key) bool { return k.ID <= 1000 }
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		jobs, err := s.Due(now, 100, inflight)
		if err != nil || len(jobs) != 100 {
			b.Fatal(len(jobs), err)
		}
	}
}

// BenchmarkDueShared: the dispatcher's scan, one DueSharedAt call
// returning 100 jobs in turns (25 an enterprise) from a store holding
// 10,000 due parts of 8 enterprises, none sent with priority, with 1,000
// of the earliest in flight (skipped): with the priority pass (a seek in
// an empty index), as the dispatcher calls it, and without it (the
// baseline, what the scan was before priority was stored).
func BenchmarkDueShared(b *testing.B) {
	s := openBench(b, Options{NoSync: true})
	t0 := time.Now().Add(-time.Hour)
	for i := 0; i < 10000; i += 1000 {
		msgs := make([]*Message, 1000)
		for j := range msgs {
			msgs[j] = benchMsg(i + j)
			msgs[j].AcceptedAt = t0.Add(time.Duration(i+j) * time.Millisecond)
		}
		if err := s.Enqueue(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	inflight := func(k Key) bool { return k.ID <= 1000 }
	share := func(string) int { return 25 }
	now := time.Now()
	for _, bc := range []struct {
		name     string
		priority func(string) int
	}{{"priority pass", share}, {"baseline", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jobs, _, err := s.DueSharedAt(now, 100, bc.priority, share, inflight)
				if err != nil || len(jobs) != 100 {
					b.Fatal(len(jobs), err)
				}
			}
		})
	}
}

// BenchmarkDueForPassedBy is the dispatcher's scan while an upstream is
// down with a backlog of n parts due before the others' (its Room 0): the
// walk passes each by, decoding its message, to reach the 100 parts of
// the upstream that can send. Its cost per scan grows with the backlog.
func BenchmarkDueForPassedBy(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := openBench(b, Options{NoSync: true})
			t0 := time.Now().Add(-time.Hour)
			for i := 0; i < n+100; i += 1000 {
				msgs := make([]*Message, min(1000, n+100-i))
				for j := range msgs {
					msgs[j] = benchMsg(i + j)
					msgs[j].AcceptedAt = t0.Add(time.Duration(i+j) * time.Millisecond)
					if i+j >= n {
						msgs[j].Upstream = "cucc"
					}
				}
				if err := s.Enqueue(context.Background(), msgs...); err != nil {
					b.Fatal(err)
				}
			}
			q := DueQuery{Limit: 100, Share: func(string) int { return 25 }, Room: func(up string) int {
				if up == "cucc" {
					return 100
				}
				return 0
			}}
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				r, err := s.DueFor(now, q)
				if err != nil || len(r.Jobs) != 100 {
					b.Fatal(len(r.Jobs), err)
				}
			}
		})
	}
}

// BenchmarkOpenBuildsUDue is the first start of this release on a file of
// an earlier one with 100,000 parts queued: Open builds the upstream due
// keys from the due keys, reading each message once. The baseline is the
// same Open on a file that has them.
func BenchmarkOpenBuildsUDue(b *testing.B) {
	const queued = 100000
	path := filepath.Join(b.TempDir(), "q.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < queued; i += 1000 {
		msgs := make([]*Message, 1000)
		for j := range msgs {
			msgs[j] = benchMsg(i + j)
		}
		if err := s.Enqueue(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, build := range []bool{true, false} {
		b.Run(map[bool]string{true: "build", false: "baseline"}[build], func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				if build {
					db, err := bolt.Open(path, 0o600, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketUDue) }); err != nil {
						b.Fatal(err)
					}
					db.Close()
				}
				b.StartTimer()
				s, err := Open(path, Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCommitWriteback is the disk's side of a commit, without bbolt:
// the 30 pages a commit of a few messages writes (one pwrite each) and
// bbolt's two fdatasyncs, the pages scattered over a 64 MiB file, in 17
// runs within 300 pages (where a store's commits at 5,000 msg/s put them:
// strace of qxtd at that load), or contiguous; and what a write-ahead log
// in front of bbolt would do instead: one sequential write of those pages
// and one fdatasync. It reports the CPU per commit: the kernel's
// writeback is paid per run of pages more than per byte, which is why a
// commit's I/O costs what it does.
func BenchmarkCommitWriteback(b *testing.B) {
	const pages, window, fileBytes = 30, 300, 64 << 20
	page := make([]byte, 4096)
	for i := range page {
		page[i] = byte(i)
	}
	all := make([]byte, pages*len(page))
	// 30 pages in 17 runs over 300: 13 runs of two pages, 4 of one.
	var runs17 []int64
	for r := range 17 {
		runs17 = append(runs17, int64(r*17))
		if r < 13 {
			runs17 = append(runs17, int64(r*17+1))
		}
	}
	for _, c := range []struct {
		name string
		at   func(base int64, j int) int64 // page j of a commit at base
		wal  bool
	}{
		{"scattered", func(_ int64, j int) int64 { return int64(j*2654435761) % (fileBytes / 4096) }, false},
		{"17-runs-in-300", func(base int64, j int) int64 { return base + runs17[j] }, false},
		{"contiguous", func(base int64, j int) int64 { return base + int64(j) }, false},
		{"write-ahead", nil, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			zero := make([]byte, 1<<20)
			for off := int64(0); off < fileBytes; off += int64(len(zero)) {
				if _, err := f.WriteAt(zero, off); err != nil {
					b.Fatal(err)
				}
			}
			sync := func() {
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
			sync()
			var off int64
			b.ResetTimer()
			cpu0 := processCPU(b)
			for i := 0; i < b.N; i++ {
				if c.wal {
					if off+int64(len(all)) > fileBytes {
						off = 0
					}
					if _, err := f.WriteAt(all, off); err != nil {
						b.Fatal(err)
					}
					off += int64(len(all))
					sync()
					continue
				}
				base := int64(i*7919) % (fileBytes/4096 - window)
				for j := range pages {
					if _, err := f.WriteAt(page, c.at(base, j)*4096); err != nil {
						b.Fatal(err)
					}
				}
				sync()
				if _, err := f.WriteAt(page, 0); err != nil { // the meta page
					b.Fatal(err)
				}
				sync()
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/commit")
		})
	}
}

// BenchmarkListNumber: a page of the outbox narrowed to one number on a
// store of 100,000 messages of 8 enterprises (benchMsg: 9,000 numbers),
// walked to its end as a person paging on would: an enterprise's own
// (enterprise) and every enterprise's (the operator's trace, all), beside
// the same walk without the number (plain). Reported per message record
// read, the cost of a number search being the records it walks.
func BenchmarkListNumber(b *testing.B) {
	s := openBench(b, Options{NoSync: true})
	const n = 100_000
	ms := make([]*Message, 0, 1000)
	for i := range n {
		ms = append(ms, benchMsg(i))
		if len(ms) == cap(ms) {
			if err := s.Enqueue(context.Background(), ms...); err != nil {
				b.Fatal(err)
			}
			ms = ms[:0]
		}
	}
	number := benchMsg(4242).Dest
	for _, c := range []struct {
		name string
		f    ListFilter
	}{
		{"plain", ListFilter{Enterprise: "G002"}},
		{"enterprise", ListFilter{Enterprise: "G002", Number: number}},
		{"all", ListFilter{AllEnterprises: true, Number: number}},
	} {
		b.Run(c.name, func(b *testing.B) {
			found := 0
			cpu0 := processCPU(b)
			for b.Loop() {
				found = 0
				for after := uint64(0); ; {
					page, next, err := s.List(c.f, after, DefaultListLimit)
					if err != nil {
						b.Fatal(err)
					}
					found += len(page)
					if next == 0 || c.name == "plain" && found >= DefaultListLimit {
						break // plain: its first page, which fills
					}
					after = next
				}
			}
			if c.name != "plain" && found == 0 {
				b.Fatalf("%s: nothing to %s", c.name, number)
			}
			b.ReportMetric(float64(found), "found")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/walk")
		})
	}
}

// BenchmarkInboxNumber: a search of the replies by the handset's number,
// every page of it: one enterprise's inbox, and the operator's trace of
// every enterprise's, over 20,000 replies of 8 enterprises; cpu-µs/walk
// is the process's CPU a whole walk.
func BenchmarkInboxNumber(b *testing.B) {
	s := openBench(b, Options{NoSync: true})
	const n = 20_000
	t0 := time.Now().Add(-time.Hour)
	for i := range n {
		m := &MO{Enterprise: "G00" + strconv.Itoa(i%8), Source: "86137123" + strconv.Itoa(10000+i%900), Dest: "10657500112",
			Text: "收到，谢谢。明天上午十点见", Upstream: "sim", ReceivedAt: t0.Add(time.Duration(i) * time.Millisecond)}
		if err := s.StoreMO(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
	number := "13712310042"
	for _, c := range []struct {
		name, ent string
		f         InboxFilter
	}{
		{"enterprise", "G002", InboxFilter{Number: number}},
		{"all", "", InboxFilter{Number: number, AllEnterprises: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			found := 0
			cpu0 := processCPU(b)
			for b.Loop() {
				found = 0
				for before := uint64(0); ; {
					page, next, err := s.Inbox(c.ent, c.f, before, DefaultListLimit)
					if err != nil {
						b.Fatal(err)
					}
					found += len(page)
					if next == 0 {
						break
					}
					before = next
				}
			}
			if found == 0 {
				b.Fatalf("%s: nothing from %s", c.name, number)
			}
			b.ReportMetric(float64(found), "found")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/walk")
		})
	}
}

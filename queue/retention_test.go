package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestPurge(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	cutoff := nov.Add(10 * 24 * time.Hour)
	at := func(h int) time.Time { return nov.Add(time.Duration(h) * time.Hour) }

	noDLR := exportMsg("G1", "alice", at(1), 2) // final, no receipt requested
	noDLR.RegisteredDelivery = 0
	acked := exportMsg("G1", "alice", at(2), 1) // final, receipt forwarded
	unacked := exportMsg("G1", "alice", at(3), 1)
	inFlight := exportMsg("G1", "alice", at(4), 2)
	failed := exportMsg("G2", "bob", at(5), 1) // rejected before submission, receipt forwarded
	reused := exportMsg("G1", "alice", at(6), 1)
	young := exportMsg("G1", "alice", cutoff, 1)
	oldAfterYoung := exportMsg("G1", "alice", at(7), 1) // out of id order: left for a later run
	oldAfterYoung.RegisteredDelivery = 0
	newer := exportMsg("G1", "alice", cutoff.Add(time.Hour), 1)
	s.enqueue(noDLR, acked, unacked, inFlight, failed, reused, young, oldAfterYoung, newer)

	s.drive(noDLR, at(8), StateDelivered, StateUndeliverable)
	s.drive(acked, at(8), StateDelivered)
	s.drive(unacked, at(8), StateDelivered)
	s.drive(inFlight, at(8), StateDelivered, StateSubmitted)
	s.drive(failed, at(8), StateRejected)
	s.drive(young, at(8), StateDelivered)
	s.drive(oldAfterYoung, at(8), StateDelivered)
	// reused: accepted twice (a retried submit_sm answered twice), then
	// delivered; the SMSC later reuses its second id for the newer message.
	if err := s.Submitted(bg, Key{reused.ID, 0}, "r1", at(6)); err != nil {
		t.Fatal(err)
	}
	if err := s.Submitted(bg, Key{reused.ID, 0}, "r2", at(6)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: "r1", State: StateDelivered, DoneAt: at(8)}); err != nil {
		t.Fatal(err)
	}
	s.submitted(Key{newer.ID, 0}, "r2")
	for _, m := range []*Message{acked, failed, reused, young} {
		if err := s.AckDLR(bg, m.Account, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	nSMSC := s.bucketLen(bucketSMSC)
	counts := s.Counts()
	_, chargedG1 := s.Usage("G1", "2026-11")

	n, err := s.Purge(bg, cutoff, 1)
	if err != nil || n != 1 {
		t.Fatalf("purge with limit 1: %d %v", n, err)
	}
	n, err = s.Purge(bg, cutoff, 100)
	if err != nil || n != 3 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("check after purge: %v", err)
	}
	for _, m := range []*Message{noDLR, acked, failed, reused} {
		if _, err := s.Get(m.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("message %d still there: %v", m.ID, err)
		}
	}
	for _, m := range []*Message{unacked, inFlight, young, oldAfterYoung, newer} {
		s.get(m.ID)
	}
	// noDLR 2 keys, acked 1, reused 1 (r1; r2 now names the newer part).
	if got := s.bucketLen(bucketSMSC); got != nSMSC-4 {
		t.Errorf("smsc keys %d, want %d", got, nSMSC-4)
	}
	want := map[State]int{}
	for st, c := range counts {
		want[st] = c
	}
	want[StateDelivered] -= 3
	want[StateUndeliverable]--
	want[StateRejected]--
	s.wantCounts(want)
	if _, c := s.Usage("G1", "2026-11"); c != chargedG1 {
		t.Errorf("usage changed by purge: %d, was %d", c, chargedG1)
	}
	use, err := s.UsageByMonth("2026-11")
	if err != nil || len(use) != 1 || use[0].Enterprise != "G1" || use[0].PurgedCharged != 3 { // G2 has nothing billable
		t.Errorf("usage by month: %v %+v", err, use)
	}
	// The month's export now falls short of the bill by what was purged.
	var billed int64
	s.ExportParts(nov, nov.AddDate(0, 1, 0), "G1", func(r Row) error {
		if r.Billed {
			billed++
		}
		return nil
	})
	if billed+use[0].PurgedCharged != use[0].Charged {
		t.Errorf("export billed %d + purged %d != charged %d", billed, use[0].PurgedCharged, use[0].Charged)
	}

	// A DLR for a purged SMSC id is an orphan; the reused id still matches
	// the newer message.
	if r := s.dlr("up1", fmt.Sprintf("s%d-0", acked.ID), StateDelivered); r != Orphaned {
		t.Errorf("DLR for a purged id: %s", r)
	}
	if _, c := s.Usage("G1", "2026-11"); c != chargedG1 {
		t.Errorf("a DLR for a purged message changed usage: %d, was %d", c, chargedG1)
	}
	if r := s.dlr("up1", "r2", StateDelivered); r != Matched {
		t.Errorf("DLR for the reused id: %s", r)
	}
	if st := s.get(newer.ID).Parts[0].State; st != StateDelivered {
		t.Errorf("newer message: %s", st)
	}

	// Once its receipt is taken, the unacked message goes too; nothing is
	// purged twice.
	if err := s.AckDLR(bg, unacked.Account, unacked.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(bg, cutoff, 100); err != nil || n != 1 {
		t.Errorf("purge after ack: %d %v", n, err)
	}
	if n, err := s.Purge(bg, cutoff, 100); err != nil || n != 0 {
		t.Errorf("purge again: %d %v", n, err)
	}
	s.reopen()
	if _, err := s.Get(unacked.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("unacked after reopen: %v", err)
	}
	if use, _ := s.UsageByMonth("2026-11"); use[0].PurgedCharged != 4 {
		t.Errorf("purged after reopen: %+v", use)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.Purge(ctx, cutoff, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled purge: %v", err)
	}
}

// TestPurgeBatches: a large backlog is purged in operations of at most
// purgeBatch messages, interleaved with other writers.
func TestPurgeBatches(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, shanghai)
	var batch []*Message
	for i := range 1300 {
		m := exportMsg("G1", "a", base.Add(time.Duration(i)*time.Second), 1)
		m.RegisteredDelivery = 0
		batch = append(batch, m)
	}
	s.enqueue(batch...)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(batch); i += 8 {
				if err := s.Fail(bg, Key{batch[i].ID, 0}, StateExpired, "", base); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	before := s.Stats()
	done := make(chan struct{})
	go func() { // a writer that keeps going while the purge runs
		defer close(done)
		for range 50 {
			s.enqueue(exportMsg("G1", "a", time.Now(), 1))
		}
	}()
	n, err := s.Purge(bg, base.Add(time.Hour), 1200)
	<-done
	if err != nil || n != 1200 {
		t.Fatalf("purged %d %v", n, err)
	}
	st := s.Stats()
	if st.Txns-before.Txns < 3 {
		t.Errorf("purge of 1200 in %d transactions", st.Txns-before.Txns)
	}
	if n, err := s.Purge(bg, base.Add(time.Hour), 1000); err != nil || n != 100 {
		t.Errorf("second purge: %d %v", n, err)
	}
	if got := s.bucketLen(bucketMsg); got != 50 {
		t.Errorf("%d messages left", got)
	}
}

// steadyRound runs one round of synthetic traffic accepted at at: n
// messages of 1-2 parts; the parts of every smscEvery-th message are
// submitted and get a DLR (90 % delivered), the others fail before
// submission (cheaper: for a fast test); receipts requested are forwarded.
// Then it purges everything accepted before cutoff and returns how many
// messages that deleted.
func steadyRound(tb testing.TB, s *Store, at time.Time, n, smscEvery int, cutoff time.Time) int {
	tb.Helper()
	msgs := make([]*Message, n)
	for i := range msgs {
		m := &Message{
			Account: fmt.Sprintf("acct%d", i%8), Enterprise: fmt.Sprintf("G%d", i%8),
			Source: "1065712345", Dest: fmt.Sprintf("1371234%04d", i%9000), DataCoding: 8,
			RegisteredDelivery: uint8(i % 2), Upstream: "cmcc-gd", Text: "【某某公司】您的验证码是123456，五分钟内有效。",
			AcceptedAt: at.Add(time.Duration(i) * time.Millisecond),
		}
		for range 1 + i%2 {
			m.Parts = append(m.Parts, Part{Body: make([]byte, 134)})
		}
		msgs[i] = m
	}
	for i := 0; i < n; i += 1000 {
		if err := s.Enqueue(bg, msgs[i:min(i+1000, n)]...); err != nil {
			tb.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				m := msgs[i]
				for p := range m.Parts {
					if i%smscEvery != 0 {
						if err := s.Fail(bg, Key{m.ID, uint16(p)}, StateExpired, "", at); err != nil {
							tb.Error(err)
							return
						}
						continue
					}
					id := fmt.Sprintf("%x", m.ID<<8|uint64(p))
					if err := s.Submitted(bg, Key{m.ID, uint16(p)}, id, at); err != nil {
						tb.Error(err)
						return
					}
					st := StateDelivered
					if i%10 == 0 {
						st = StateUndeliverable
					}
					if _, err := s.ApplyDLR(bg, DLR{Upstream: m.Upstream, SMSCID: id, State: st, DoneAt: at}); err != nil {
						tb.Error(err)
						return
					}
				}
				if m.RegisteredDelivery != 0 {
					if err := s.AckDLR(bg, m.Account, m.ID); err != nil {
						tb.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	purged, err := s.Purge(bg, cutoff, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	return purged
}

// fileSizes returns the file's size and bbolt's high-water mark (pages in
// use or free, times the page size).
func fileSizes(tb testing.TB, s *Store) (file, hwm int64) {
	tb.Helper()
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		tb.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil })
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size(), hwm
}

// TestPurgeKeepsFileSizeSteady: under steady traffic with a purge after
// every round (keeping the last two rounds), the file stops growing once
// the retained window is full: freed pages are reused.
func TestPurgeKeepsFileSizeSteady(t *testing.T) {
	const rounds, perRound = 8, 600
	s := newStore(t, Options{NoSync: true})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, shanghai)
	var hwms []int64
	for r := range rounds {
		at := base.Add(time.Duration(r) * time.Hour)
		purged := steadyRound(t, s.Store, at, perRound, 4, at.Add(-time.Hour)) // keep this round and the previous one
		file, hwm := fileSizes(t, s.Store)
		hwms = append(hwms, hwm)
		t.Logf("round %2d: purged %5d, messages %5d, high-water mark %6d KiB, file %6d KiB",
			r, purged, s.bucketLenOf(bucketMsg), hwm>>10, file>>10)
	}
	// From round 3 on the store holds the same amount of data; the
	// high-water mark may creep by fragmentation but must not keep
	// growing with each round.
	settled, last := hwms[3], hwms[len(hwms)-1]
	if last > settled+settled/4 {
		t.Errorf("high-water mark grew from %d KiB (round 3) to %d KiB (round %d)", settled>>10, last>>10, len(hwms)-1)
	}
}

func (s *Store) bucketLenOf(name []byte) int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(name).Stats().KeyN; return nil })
	return n
}

// BenchmarkSteadyTrafficWithPurge reports the file size after many rounds
// of steady traffic with purges (see TestPurgeKeepsFileSizeSteady); b.N is
// ignored beyond running the scenario once per iteration.
func BenchmarkSteadyTrafficWithPurge(b *testing.B) {
	for b.Loop() {
		s := openBench(b, Options{NoSync: true})
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, shanghai)
		const rounds, perRound = 30, 20_000
		for r := range rounds {
			at := base.Add(time.Duration(r) * time.Hour)
			purged := steadyRound(b, s, at, perRound, 1, at.Add(-time.Hour))
			file, hwm := fileSizes(b, s)
			b.Logf("round %2d: purged %6d, high-water mark %7d KiB, file %7d KiB", r, purged, hwm>>10, file>>10)
			if r == rounds-1 {
				b.ReportMetric(float64(hwm)/(1<<20), "final-hwm-MiB")
			}
		}
	}
}

// BenchmarkPurge: messages/s deleted by Purge (fsync on, batches of
// purgeBatch) from a backlog of final, forwarded one-part messages.
func BenchmarkPurge(b *testing.B) {
	const backlog = 50_000
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, shanghai)
	for b.Loop() {
		b.StopTimer()
		s := openBench(b, Options{})
		for i := 0; i < backlog; i += 5000 {
			batch := make([]*Message, 5000)
			for j := range batch {
				batch[j] = benchMsgAt(i+j, base.Add(time.Duration(i+j)*time.Millisecond))
				batch[j].RegisteredDelivery = 0
			}
			if err := s.Enqueue(bg, batch...); err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			for w := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := w; j < len(batch); j += 64 {
						k := Key{batch[j].ID, 0}
						id := fmt.Sprintf("%x", batch[j].ID)
						if err := s.Submitted(bg, k, id, base); err != nil {
							b.Error(err)
							return
						}
						if _, err := s.ApplyDLR(bg, DLR{Upstream: batch[j].Upstream, SMSCID: id, State: StateDelivered, DoneAt: base}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		}
		before := s.Stats()
		b.StartTimer()
		n, err := s.Purge(bg, base.Add(time.Hour), backlog)
		b.StopTimer()
		if err != nil || n != backlog {
			b.Fatal(n, err)
		}
		b.ReportMetric(float64(s.Stats().Txns-before.Txns), "commits")
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(backlog*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestPurgeRandom mixes random traffic — SMSC ids reused across messages,
// parts accepted twice, receipts before responses, unacknowledged receipts,
// restarts — with purges at random cutoffs. Each purge deletes exactly the
// messages eligible at that moment, leaves usage alone, and Check passes.
// As in the daemon, parts are sent only within a validity period (20 min
// here), parts without a receipt are settled by ExpireSubmitted (after 30
// min), and the retention cutoff is older than both (an hour or more).
func TestPurgeRandom(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			s := newStore(t, Options{NoSync: true})
			base := time.Date(2026, 3, 1, 0, 0, 0, 0, shanghai)
			var ids []uint64
			accepted := map[uint64]time.Time{}
			gone := map[uint64]bool{}
			var used []string                                                 // ids given to Submitted, most DLRs name one of the last
			smsc := func() string { return fmt.Sprintf("z%d", rng.IntN(60)) } // a small pool: reuse
			var now time.Time
			pick := func() (*Message, bool) { // a message still within its validity
				i := len(ids) - 1 - rng.IntN(8)
				if i < 0 || now.Sub(accepted[ids[i]]) > 20*time.Minute {
					return nil, false
				}
				m, err := s.Get(ids[i])
				return m, err == nil
			}
			soft := func(err error) {
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrState) {
					t.Fatal(err)
				}
			}
			for step := range 600 {
				now = base.Add(time.Duration(step) * time.Minute)
				switch op := rng.IntN(100); {
				case op < 20:
					m := exportMsg(fmt.Sprintf("G%d", rng.IntN(2)), fmt.Sprintf("a%d", rng.IntN(2)), now, 1+rng.IntN(3))
					m.RegisteredDelivery = uint8(rng.IntN(3))
					s.enqueue(m)
					ids = append(ids, m.ID)
					accepted[m.ID] = now
				case op < 45:
					if m, ok := pick(); ok {
						id := smsc()
						used = append(used, id)
						soft(s.Submitted(bg, Key{m.ID, uint16(rng.IntN(len(m.Parts)))}, id, now))
					}
				case op < 70:
					st := []State{StateDelivered, StateDelivered, StateUndeliverable, StateExpired}[rng.IntN(4)]
					id := smsc()
					if n := len(used); n > 0 && rng.IntN(5) > 0 {
						id = used[n-1-rng.IntN(min(n, 6))]
					}
					_, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: id, State: st, DoneAt: now})
					soft(err)
				case op < 75:
					if m, ok := pick(); ok {
						soft(s.Fail(bg, Key{m.ID, uint16(rng.IntN(len(m.Parts)))}, StateRejected, "0x45", now))
					}
				case op < 88:
					acct := "a0" // a1 never takes its receipts (a transmitter-only ESME): kept for good
					if p, err := s.PendingDLRs(acct, 3, nil); err == nil {
						for _, m := range p {
							soft(s.AckDLR(bg, acct, m.ID))
						}
					}
				case op < 98:
					if _, err := s.ExpireSubmitted(bg, now.Add(-30*time.Minute), now, 1<<20); err != nil {
						t.Fatal(err)
					}
					jobs, err := s.Due(now.Add(-20*time.Minute), 0, nil) // past validity, never sent
					if err != nil {
						t.Fatal(err)
					}
					for _, j := range jobs {
						soft(s.Fail(bg, j.Key, StateExpired, "", now))
					}
					cutoff := now.Add(-time.Duration(60+rng.IntN(120)) * time.Minute)
					want := map[uint64]bool{}
					for _, id := range ids {
						if m, err := s.Get(id); err == nil && purgeable(m, cutoff) {
							want[id] = true
						}
					}
					use, _ := s.UsageByMonth("2026-03")
					n, err := s.Purge(bg, cutoff, 1<<20)
					if err != nil || n != len(want) {
						t.Fatalf("step %d: purged %d (%v), want %d", step, n, err, len(want))
					}
					for _, id := range ids {
						_, err := s.Get(id)
						if deleted := errors.Is(err, ErrNotFound); deleted != (want[id] || gone[id]) {
							t.Fatalf("step %d: message %d deleted=%v, eligible=%v", step, id, deleted, want[id])
						}
						if want[id] {
							gone[id] = true
						}
					}
					after, _ := s.UsageByMonth("2026-03")
					for i := range use {
						if i >= len(after) || use[i].Charged != after[i].Charged || use[i].Reserved != after[i].Reserved {
							t.Fatalf("step %d: usage %+v became %+v", step, use, after)
						}
					}
					if err := s.Check(); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				default:
					s.reopen()
				}
			}
			var purgedCharged, charged int64
			use, _ := s.UsageByMonth("2026-03")
			for _, u := range use {
				purgedCharged += u.PurgedCharged
				charged += u.Charged
			}
			var billed int64
			s.ExportParts(base, base.AddDate(0, 1, 0), "", func(r Row) error {
				if r.Billed {
					billed++
				}
				return nil
			})
			if billed+purgedCharged != charged {
				t.Errorf("export billed %d + purged %d != charged %d", billed, purgedCharged, charged)
			}
			t.Logf("%d messages, %d purged, charged %d (%d of them purged)", len(ids), len(gone), charged, purgedCharged)
		})
	}
}

// TestAppendBucketsFillPages: the buckets whose keys only grow (messages,
// due times, the final index) fill their pages to about appendFill, not
// bbolt's half: a store that keeps finished messages for months is
// mostly these pages.
func TestAppendBucketsFillPages(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, shanghai)
	steadyRound(t, s.Store, at, 3000, 1, at.Add(-time.Hour))
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsg, bucketFinal} {
			st := tx.Bucket(name).Stats()
			if st.LeafPageN < 10 {
				t.Fatalf("%s: %d leaf pages, too few to tell the fill", name, st.LeafPageN)
			}
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.8 {
				t.Errorf("%s: leaf pages %.0f %% full (%d pages), want about %.0f %%", name, 100*fill, st.LeafPageN, 100*appendFill)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

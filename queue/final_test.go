package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// poller is a billing job: it keeps a cursor and collects every row it is
// given, failing on a row given twice or a row not final.
type poller struct {
	t      testing.TB
	s      *testStore
	cursor Cursor
	seen   map[Key]Row
	order  []Key
}

func newPoller(t testing.TB, s *testStore) *poller {
	return &poller{t: t, s: s, seen: make(map[Key]Row)}
}

// poll exports from the cursor to the store's current end and moves the
// cursor there; it returns the rows and how many parts were purged unseen.
func (p *poller) poll() ([]Row, int64) {
	p.t.Helper()
	until, err := p.s.FinalCursor()
	if err != nil {
		p.t.Fatal(err)
	}
	var rows []Row
	purged, err := p.s.ExportFinal(p.cursor, until, "", func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		p.t.Fatalf("export after %s: %v", p.cursor, err)
	}
	for _, r := range rows {
		k := Key{r.ID, uint16(r.Part - 1)}
		if prev, dup := p.seen[k]; dup {
			p.t.Fatalf("part %s exported twice: %+v then %+v", k, prev, r)
		}
		if !r.State.Final() {
			p.t.Fatalf("part %s exported in state %s", k, r.State)
		}
		p.seen[k] = r
		p.order = append(p.order, k)
	}
	p.cursor = until
	return rows, purged
}

// finalParts lists the final parts of the messages ids, with their rows.
func finalParts(t testing.TB, s *testStore, ids []uint64) map[Key]Row {
	t.Helper()
	out := make(map[Key]Row)
	for _, id := range ids {
		m := s.get(id)
		for i, p := range m.Parts {
			if p.State.Final() {
				out[Key{id, uint16(i)}] = partRow(m, i)
			}
		}
	}
	return out
}

func (p *poller) wantExactly(want map[Key]Row) {
	p.t.Helper()
	if len(p.seen) != len(want) {
		p.t.Fatalf("exported %d parts, %d are final", len(p.seen), len(want))
	}
	for k, w := range want {
		got, ok := p.seen[k]
		if !ok {
			p.t.Fatalf("final part %s never exported", k)
		}
		if got.State != w.State || got.DoneAt != w.DoneAt || got.ErrCode != w.ErrCode {
			p.t.Fatalf("part %s exported as %+v, final as %+v", k, got, w)
		}
	}
}

// TestExportFinalConcurrent is a property test: writers drive random parts
// to random final states (by failing them, by receipts, by giving up on
// their receipt) in random order, concurrently with a billing job that
// polls with its cursor. Every final part is exported exactly once and
// nothing else is, through a reopen of the file, with parts becoming final
// after it.
func TestExportFinalConcurrent(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			s := newStore(t, Options{NoSync: true})
			now := time.Now()
			var msgs []*Message
			var ids []uint64
			var keys []Key
			for i := range 150 + rng.IntN(150) {
				m := msg("alice", fmt.Sprint(13800000000+i), 1+rng.IntN(3))
				m.Enterprise = []string{"G1", "G2"}[rng.IntN(2)]
				msgs = append(msgs, m)
			}
			s.enqueue(msgs...)
			for _, m := range msgs {
				ids = append(ids, m.ID)
				for i := range m.Parts {
					keys = append(keys, Key{m.ID, uint16(i)})
				}
			}
			rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })

			// Each writer takes every nWriters-th part: it fails it, or
			// submits it and applies a receipt, or submits it and leaves it
			// in flight (settled by ExpireSubmitted after the reopen).
			const nWriters = 4
			finals := []State{StateDelivered, StateUndeliverable, StateExpired, StateRejected, StateUnknown}
			plans := make([]int, len(keys))
			for i := range plans {
				plans[i] = rng.IntN(3)
			}
			var wg sync.WaitGroup
			errc := make(chan error, nWriters)
			progress := make(chan struct{}, 1) // a write committed since the last poll
			for w := range nWriters {
				wrng := rand.New(rand.NewPCG(seed, uint64(w)))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < len(keys); i += nWriters {
						k := keys[i]
						sid := fmt.Sprintf("x%d-%d", k.ID, k.Part)
						var err error
						switch plans[i] {
						case 0:
							err = s.Fail(bg, k, StateRejected, "0x00000045", now)
						case 1:
							if err = s.Submitted(bg, k, sid, now); err == nil {
								st := finals[wrng.IntN(len(finals))]
								_, err = s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: sid, State: st, ErrCode: "000", DoneAt: now})
							}
						case 2:
							err = s.Submitted(bg, k, sid, now)
						}
						if err != nil {
							errc <- fmt.Errorf("part %s: %w", k, err)
							return
						}
						select {
						case progress <- struct{}{}:
						default:
						}
					}
				}()
			}
			writersDone := make(chan struct{})
			go func() { wg.Wait(); close(writersDone) }()

			p := newPoller(t, s)
			polls := 0
		poll:
			for {
				select {
				case <-writersDone:
					break poll
				case <-progress:
				}
				if _, purged := p.poll(); purged != 0 {
					t.Fatalf("%d parts purged, none should be", purged)
				}
				polls++
			}
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			p.poll() // what became final after the last poll in the loop
			p.wantExactly(finalParts(t, s, ids))
			t.Logf("%d parts, %d final, %d polls", len(keys), len(p.seen), polls)

			// The cursor is kept as text across a restart.
			saved := p.cursor.String()
			s.reopen()
			c, err := ParseCursor(saved)
			if err != nil || c != p.cursor {
				t.Fatalf("cursor %q parsed as %d (%v), want %d", saved, c, err, p.cursor)
			}
			if rows, _ := p.poll(); len(rows) != 0 {
				t.Fatalf("after reopen, %d rows again: %+v", len(rows), rows)
			}
			if _, err := s.ExpireSubmitted(bg, now.Add(time.Second), now.Add(time.Hour), 1<<20); err != nil {
				t.Fatal(err)
			}
			rows, _ := p.poll()
			for _, r := range rows {
				if r.State != StateUnknown {
					t.Errorf("after expiry, row %d/%d is %s", r.ID, r.Part, r.State)
				}
			}
			all := finalParts(t, s, ids)
			if len(all) != len(keys) {
				t.Fatalf("%d of %d parts final after expiry", len(all), len(keys))
			}
			p.wantExactly(all)
		})
	}
}

// TestExportFinalChunksAndFilter: a range longer than one chunk comes
// whole and in the order the parts became final; an enterprise filter
// gives that enterprise's parts only, and the cursors of the unfiltered
// and the filtered export are the same.
func TestExportFinalChunksAndFilter(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	n := exportChunkRows + 300
	var msgs []*Message
	for i := range n {
		m := msg("alice", fmt.Sprint(13800000000+i), 1)
		m.Enterprise = []string{"G1", "G2", "G3"}[i%3]
		msgs = append(msgs, m)
	}
	s.enqueue(msgs...)
	now := time.Now()
	// Final in reverse id order (as Fail does it, all in one commit): the
	// export follows that order, not ids.
	err := s.exec(bg, func(t *txn) error {
		for i := n - 1; i >= 0; i-- {
			m, err := t.getMsg(msgs[i].ID)
			if err != nil {
				return err
			}
			if err := t.setFinal(m, 0, StateRejected, now, ""); err != nil {
				return err
			}
			if err := t.putMsg(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	until, err := s.FinalCursor()
	if err != nil || until != Cursor(n) {
		t.Fatalf("final cursor %d %v, want %d", until, err, n)
	}
	var got []uint64
	purged, err := s.ExportFinal(0, until, "", func(r Row) error { got = append(got, r.ID); return nil })
	if err != nil || purged != 0 || len(got) != n {
		t.Fatalf("export: %d rows, purged %d, %v", len(got), purged, err)
	}
	for i, id := range got {
		if want := msgs[n-1-i].ID; id != want {
			t.Fatalf("row %d is message %d, want %d", i, id, want)
		}
	}
	var g2 int
	_, err = s.ExportFinal(0, until, "G2", func(r Row) error {
		if r.Enterprise != "G2" {
			t.Fatalf("enterprise filter let %q through", r.Enterprise)
		}
		g2++
		return nil
	})
	if err != nil || g2 != n/3 {
		t.Fatalf("G2 export: %d rows (%v), want %d", g2, err, n/3)
	}
	// A part split across the middle: the second half of a range.
	var tail int
	if _, err := s.ExportFinal(until-10, until, "", func(Row) error { tail++; return nil }); err != nil || tail != 10 {
		t.Fatalf("last 10: %d rows, %v", tail, err)
	}
}

// TestExportFinalUpgrade: a file written before the final index gets it at
// open, in message id order, and Check passes.
func TestExportFinalUpgrade(t *testing.T) {
	s := newStore(t, Options{})
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, shanghai)
	a, b, c := exportMsg("G1", "alice", at, 2), exportMsg("G1", "alice", at, 1), exportMsg("G2", "bob", at, 1)
	s.enqueue(a, b, c)
	s.drive(c, at.Add(time.Minute), StateDelivered)
	s.drive(a, at.Add(time.Minute), StateDelivered, StateSubmitted)
	s.drive(b, at.Add(time.Minute), StateRejected)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Make it a file from before: no final index.
	db, err := bolt.Open(s.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketFinal, bucketFinalPart} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err2 := db.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyBackup(s.path); err != nil {
		t.Fatalf("a file from before the index is a good backup: %v", err)
	}
	s.open()
	if err := s.Check(); err != nil {
		t.Fatalf("check after upgrade: %v", err)
	}
	p := newPoller(t, s)
	p.poll()
	want := []Key{{a.ID, 0}, {b.ID, 0}, {c.ID, 0}} // id order
	if fmt.Sprint(p.order) != fmt.Sprint(want) {
		t.Fatalf("upgraded index gives %v, want %v", p.order, want)
	}
	// New finals come after the built ones.
	if _, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: fmt.Sprintf("s%d-1", a.ID), State: StateDelivered, DoneAt: at}); err != nil {
		t.Fatal(err)
	}
	if rows, _ := p.poll(); len(rows) != 1 || rows[0].ID != a.ID || rows[0].Part != 2 {
		t.Fatalf("after the upgrade: %+v", rows)
	}
}

// TestExportFinalPurge: Purge takes parts out of the index; a range that
// reaches back over them says how many it lost; a message accepted before
// the cutoff but done after it is kept for the export.
func TestExportFinalPurge(t *testing.T) {
	s := newStore(t, Options{})
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	cutoff := nov.Add(24 * time.Hour)
	old := exportMsg("G1", "alice", nov, 2)
	old.RegisteredDelivery = 0
	late := exportMsg("G1", "alice", nov, 1) // scheduled, say: done after the cutoff
	late.RegisteredDelivery = 0
	s.enqueue(old, late)
	s.drive(old, nov.Add(time.Hour), StateDelivered, StateUndeliverable)
	s.drive(late, cutoff.Add(time.Hour), StateDelivered)

	if n, err := s.Purge(bg, cutoff, 100); err != nil || n != 1 {
		t.Fatalf("purge: %d %v, want 1", n, err)
	}
	s.get(late.ID)
	p := newPoller(t, s)
	rows, purged := p.poll()
	if purged != 2 || len(rows) != 1 || rows[0].ID != late.ID {
		t.Fatalf("after purge: %d rows %+v, purged %d; want the late one, 2 purged", len(rows), rows, purged)
	}
	if _, purged := p.poll(); purged != 0 {
		t.Fatalf("the next range: purged %d", purged)
	}
}

func TestCursor(t *testing.T) {
	for _, c := range []Cursor{0, 1, 31, 32, 1 << 40, ^Cursor(0)} {
		s := c.String()
		got, err := ParseCursor(s)
		if err != nil || got != c {
			t.Errorf("ParseCursor(%q) = %d, %v; want %d", s, got, err, c)
		}
	}
	if c, err := ParseCursor(""); err != nil || c != 0 {
		t.Errorf(`ParseCursor("") = %d, %v; want the start`, c, err)
	}
	for _, bad := range []string{"x", "AAAAAAAAAAAAB", "AAAAAAAAAAAA", "aaaaaaaaaaaac", "AAAAAAAAAAAAC=", "12"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseCursor(%q): %v, want ErrInvalid", bad, err)
		}
	}
	s := newStore(t, Options{})
	m := msg("alice", "13800138000", 1)
	s.enqueue(m)
	if err := s.Fail(bg, Key{m.ID, 0}, StateRejected, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	// A cursor beyond the store (another store's, or from before a restore
	// from an older backup) is refused, not taken for "nothing new".
	if _, err := s.ExportFinal(0, 2, "", func(Row) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("export up to a cursor beyond the store: %v, want ErrInvalid", err)
	}
	if _, err := s.ExportFinal(1, 0, "", func(Row) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("export of a backward range: %v, want ErrInvalid", err)
	}
}

package queue

import (
	"os"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Opening a store reads the state counts its commits kept, not the
// messages; a file without them is counted once and keeps the result.
func TestCountsPersisted(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	a, b, c := exportMsg("G1", "alice", at, 2), exportMsg("G1", "alice", at, 1), exportMsg("G1", "alice", at, 1)
	s.enqueue(a, b, c)
	s.drive(a, at, StateDelivered, StateSubmitted)
	s.drive(b, at, StateUndeliverable)
	want := map[State]int{StateDelivered: 1, StateSubmitted: 1, StateUndeliverable: 1, StateAccepted: 1}
	s.wantCounts(want)
	s.reopen() // checks stored counts = records, before and after
	s.wantCounts(want)

	// The counts come from the key: a planted value is what opening
	// reads (and Check reports it).
	s.Close()
	rewrite(t, s.path, func(meta *bolt.Bucket) error {
		var planted [stateEnd]int
		planted[StateAccepted] = 42
		return meta.Put(keyCounts, encodeCounts(planted))
	})
	s.open()
	if got := s.Counts()[StateAccepted]; got != 42 {
		t.Fatalf("accepted count after open = %d, want the stored 42", got)
	}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "stored state counts") {
		t.Fatalf("Check with planted counts: %v, want a stored-counts mismatch", err)
	}

	// Without the key (an older file), opening counts the messages and
	// writes the key.
	s.Close()
	rewrite(t, s.path, func(meta *bolt.Bucket) error { return meta.Delete(keyCounts) })
	s.open()
	s.wantCounts(want)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rewrite(t, s.path, func(meta *bolt.Bucket) error {
		if meta.Get(keyCounts) == nil {
			t.Error("the counts key was not written after counting")
		}
		return nil
	})
	s.open()
}

func rewrite(t *testing.T, path string, f func(meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return f(tx.Bucket(bucketMeta)) }); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeCountsRefusesGarbage(t *testing.T) {
	var c [stateEnd]int
	c[StateDelivered] = 7
	if got, err := decodeCounts(encodeCounts(c)); err != nil || got != c {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, b := range [][]byte{nil, {9}, {countsVersion}, append(encodeCounts(c), 1), {countsVersion, 0xff}} {
		if _, err := decodeCounts(b); err == nil {
			t.Errorf("decodeCounts(%x) accepted", b)
		}
	}
}

func FuzzDecodeCounts(f *testing.F) {
	var c [stateEnd]int
	c[StateAccepted], c[StateDelivered] = 3, 1<<40
	f.Add(encodeCounts(c))
	f.Add([]byte{countsVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeCounts(b)
		if err != nil {
			return
		}
		if again, err := decodeCounts(encodeCounts(got)); err != nil || again != got {
			t.Fatalf("round trip of %v: %v %v", got, again, err)
		}
	})
}

// BenchmarkOpen opens a store of 100,000 queued messages: with the stored
// counts (the baseline of the same run: the file as this version leaves
// it) and counted by scan (a file without the key, as before).
func BenchmarkOpen(b *testing.B) {
	path := b.TempDir() + "/q.db"
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now()
	const n, batch = 100_000, 1000
	for i := 0; i < n; i += batch {
		ms := make([]*Message, batch)
		for j := range ms {
			ms[j] = exportMsg("G1", "alice", at, 1)
		}
		if err := s.Enqueue(bg, ms...); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	if fi, err := os.Stat(path); err == nil {
		// The store's size per queued single-part message (issue 14's
		// target: ≤ 350 B), reported beside each open's time.
		b.Logf("store: %d B for %d queued messages = %d B/msg", fi.Size(), n, fi.Size()/n)
	}
	open := func(b *testing.B) {
		for b.Loop() {
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			if got := s.Counts()[StateAccepted]; got != n {
				b.Fatalf("accepted %d, want %d", got, n)
			}
			s.Close()
		}
	}
	b.Run("stored-counts", open)
	b.Run("scan", func(b *testing.B) {
		// Each open writes the key again: delete it before every one.
		for b.Loop() {
			b.StopTimer()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				b.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCounts) })
			db.Close()
			b.StartTimer()
			s, err := Open(path, Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}

package queue

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// noFreelist is bbolt's meta value for "no free-page list written"
// (common.PgidNoFreelist).
const noFreelist = ^uint64(0)

// lastFreelist reads, from the file's two meta pages, the free-page list
// page of the one with the higher transaction id. The layout is bbolt's
// file format (version 2): a 16-byte page header, then magic, version,
// page size and flags (4 bytes each), the root bucket (16), the freelist
// page id (8), the high-water page id (8) and the transaction id (8).
func lastFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[24:]))
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off:]
		if binary.LittleEndian.Uint32(m[16:]) != 0xED0CDAED {
			t.Fatalf("no bbolt meta page at %d", off)
		}
		if id := binary.LittleEndian.Uint64(m[64:]); id >= txid {
			txid, freelist = id, binary.LittleEndian.Uint64(m[48:])
		}
	}
	return freelist
}

// checkPages runs bbolt's own consistency check: no page both reachable
// and free, none missing from both.
func checkPages(t *testing.T, db *bolt.DB) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// fillStore enqueues n batches of 100 single-part messages.
func fillStore(t *testing.T, s *Store, n int) {
	t.Helper()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	for range n {
		ms := make([]*Message, 100)
		for i := range ms {
			ms[i] = exportMsg("G1", "alice", at, 1)
		}
		if err := s.Enqueue(bg, ms...); err != nil {
			t.Fatal(err)
		}
	}
}

// freeManyPages leaves the file with more free pages than a commit writes
// the list of (maxSyncedFreePages), as a purge does: a scratch bucket of
// 2.5 MB written, then deleted.
func freeManyPages(t *testing.T, db *bolt.DB) {
	t.Helper()
	name := []byte("scratch")
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		v := make([]byte, 1000)
		for i := range 2500 {
			if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(name) }); err != nil {
		t.Fatal(err)
	}
	if st := db.Stats(); st.FreePageN+st.PendingPageN <= maxSyncedFreePages {
		t.Fatalf("%d free and %d pending pages: not enough for the test", st.FreePageN, st.PendingPageN)
	}
}

// openShared opens path as the daemon does: OpenDB, then New.
func openShared(t *testing.T, path string) (*bolt.DB, *Store) {
	t.Helper()
	db, err := OpenDB(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

// closePlain closes s and its file without CloseDB, leaving the file as a
// crash after the last commit would.
func closePlain(t *testing.T, db *bolt.DB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// Commits write the list of free pages while it is short, so that a
// crash leaves a file whose next open reads it instead of walking every
// page; after a purge-like burst of free pages they leave it out, until
// writes have reused them; CloseDB writes it whatever its length. Every
// change of mode leaves the pages consistent (bbolt's own check), and the
// store's (Check).
func TestFreePageList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	db, s := openShared(t, path)
	fillStore(t, s, 20)
	if got := lastFreelist(t, path); got == noFreelist {
		t.Fatal("a commit with few free pages left no free-page list: a crash now means a walk")
	}
	freeManyPages(t, db)
	fillStore(t, s, 1)
	if got := lastFreelist(t, path); got != noFreelist {
		t.Fatalf("a commit with %d free pages wrote their list (page %d)", db.Stats().FreePageN, got)
	}
	checkPages(t, db)
	closePlain(t, db, s) // as a crash leaves it: walked at the next open
	if got := lastFreelist(t, path); got != noFreelist {
		t.Fatalf("after a plain close with many free pages the meta names list page %d", got)
	}

	// CloseDB (Store.Close of an Open store) writes even a long list.
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	checkPages(t, s.db)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := lastFreelist(t, path); got == noFreelist {
		t.Fatal("after CloseDB the meta names no free-page list")
	}

	// Opened and crashed before the queue's first commit: the commits at
	// start (New's) keep the list, so the next open reads it.
	db, s = openShared(t, path)
	closePlain(t, db, s)
	if got := lastFreelist(t, path); got == noFreelist {
		t.Fatal("a start without a queue commit dropped the free-page list")
	}

	// Read at this open; dropped while long; written again once writes
	// have reused the pages.
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkPages(t, s.db)
	fillStore(t, s, 1)
	if got := lastFreelist(t, path); got != noFreelist {
		t.Errorf("after a commit with many free pages the meta still names list page %d", got)
	}
	n := 21
	for st := s.db.Stats(); st.FreePageN+st.PendingPageN > maxSyncedFreePages; st = s.db.Stats() {
		if n > 400 {
			t.Fatalf("%d free and %d pending pages after %d batches", st.FreePageN, st.PendingPageN, n)
		}
		fillStore(t, s, 10)
		n += 10
	}
	fillStore(t, s, 1)
	n++
	if got := lastFreelist(t, path); got == noFreelist {
		t.Error("once the free pages were reused, commits did not write their list again")
	}
	checkPages(t, s.db)
	if got := s.Counts()[StateAccepted]; got != (n+1)*100 {
		t.Errorf("%d messages accepted, want %d", got, (n+1)*100)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// A file whose pages are damaged fails to open with ErrCorrupt naming the
// page, instead of bbolt's panic ending the process: one left without a
// free-page list (a crash after a purge; the open walks every page) and
// one with the list (the open reads it).
func TestOpenDamagedPages(t *testing.T) {
	for _, c := range []struct {
		name     string
		longList bool
		want     string
	}{
		{"walked", true, "has unexpected type/flags: 77"},
		{"list read", false, "invalid freelist page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.db")
			db, s := openShared(t, path)
			fillStore(t, s, 10)
			if c.longList {
				freeManyPages(t, db)
				fillStore(t, s, 1)
			}
			closePlain(t, db, s)
			if got := lastFreelist(t, path); (got == noFreelist) != c.longList {
				t.Fatalf("free-page list page %d", got)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pageSize := int(binary.LittleEndian.Uint32(b[24:]))
			for off := 2 * pageSize; off+pageSize <= len(b); off += pageSize {
				binary.LittleEndian.PutUint16(b[off+8:], 0x77) // the page header's flags: no page type
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err = OpenDB(path, Options{NoSync: true})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "damaged page") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("open of a damaged file: %v, %v; want ErrCorrupt with %q", db, err, c.want)
			}
		})
	}
}

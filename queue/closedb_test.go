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

// A store closed by CloseDB leaves the list of free pages in the file,
// so the next open reads it instead of walking every page; the first
// commit after that open drops it again, and the pages stay consistent
// through the change of mode. A file closed without CloseDB (as a crash
// leaves it) has no list.
func TestCloseDBWritesFreePages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	fill := func(s *Store, n int) {
		t.Helper()
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

	// Closed as a crash would leave it: the file's meta says no list.
	db, err := OpenDB(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fill(s, 20)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := lastFreelist(t, path); got != noFreelist {
		t.Fatalf("after a plain close the meta names free-page list page %d, want none", got)
	}

	// Walked at this open; closed by CloseDB (Store.Close of an Open store).
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fill(s, 20)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := lastFreelist(t, path); got == noFreelist {
		t.Fatal("after CloseDB the meta names no free-page list")
	}

	// Read at this open (bbolt's check finds every page either reachable
	// or in the list read, none both), then dropped at a commit.
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.db.Stats().FreePageN == 0 {
		t.Error("no free pages read back")
	}
	checkPages(t, s.db)
	fill(s, 20)
	if got := lastFreelist(t, path); got != noFreelist {
		t.Errorf("after a commit the meta still names free-page list page %d", got)
	}
	checkPages(t, s.db)
	if n := s.Counts()[StateAccepted]; n != 6000 {
		t.Errorf("%d messages accepted, want 6000", n)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// A file whose pages are damaged, left without a free-page list (as after
// a crash), fails to open with ErrCorrupt naming the page, instead of
// bbolt's panic ending the process.
func TestOpenDamagedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	db, err := OpenDB(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, shanghai)
	for range 10 {
		ms := make([]*Message, 100)
		for i := range ms {
			ms[i] = exportMsg("G1", "alice", at, 1)
		}
		if err := s.Enqueue(bg, ms...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // no list: the next open walks
		t.Fatal(err)
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
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "unexpected type/flags: 77") {
		t.Fatalf("open of a damaged file: %v, %v; want ErrCorrupt naming the page", db, err)
	}
}

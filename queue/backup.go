package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Backup writes a consistent copy of the whole bbolt file to w while the
// store keeps running, and returns the bytes written. The copy is the
// state of one read-only transaction: every write committed before Backup
// started is in it (every message acknowledged by then), nothing of the
// writes that commit while it runs. It holds every bucket of the file,
// including those of sibling stores (the policy package's policy_*). The
// copy is a bbolt file that Open opens as it is: to restore, put it in
// place of the store's file before the daemon starts.
//
// The read transaction stays open until w has taken the last byte, so w
// should be fast (a local file): while it is open, pages freed by later
// commits cannot be reused (the file grows by what is written meanwhile),
// and a commit that must grow the file past bbolt's memory map (1 GiB
// mapped at open, then 1 GiB more at a time) waits for the backup to end.
// Do not hand it a slow network peer; spool to a file first (as the HTTP
// API does).
//
// Where the file system allows it (Linux, not tmpfs before 6.6), the copy
// reads the store with direct I/O, past the page cache: a backup then
// neither evicts the pages the gateway works on nor leaves the file cached
// as readahead reads it, in large folios (Linux 6.x), where every later
// 4 KiB page a commit writes dirties the whole folio: up to 2 MiB counted
// in the process's write_bytes for each (what iotop and pidstat show)
// until the cache lets them go, though the disk writes 4 KiB (see
// directReads).
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	direct := directReads(s.db.Path())
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if direct {
			tx.WriteFlag = oDirect
			w = alignedCopy{w}
		}
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("queue: backup: %w", err)
	}
	return n, nil
}

// VerifyBackup checks, without changing it, that the file at path is a
// whole, consistent store as Backup writes it, before it is trusted as a
// backup. It opens the file read-only and checks that the file is not
// shorter than its pages say (a cut-short copy), runs bbolt's consistency
// check over every page, checks that every bucket of the queue is there,
// and verifies the store's invariants as Check does (without the
// in-memory counters, which a file does not have). The buckets of peer
// stores (policy_*) are covered by bbolt's page check only.
//
// It returns nil, or an error wrapping ErrNotStore (not a bbolt file, or
// a bbolt file without the queue's buckets) or ErrCorrupt (truncated, bad
// pages, broken invariants: every violation found, up to 50, joined). The
// file must not be held by a running daemon: the open waits a second for
// its lock and then fails.
func VerifyBackup(path string) error {
	fail := func(err error) error { return fmt.Errorf("queue: verify %s: %w", path, err) }
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("queue: verify: %w", err) // names the path
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fail(fmt.Errorf("%w: %w", ErrLocked, err))
	case err != nil:
		return fail(fmt.Errorf("%w: not a bbolt file: %w", ErrNotStore, err))
	}
	defer db.Close()
	var errs violations
	err = db.View(func(tx *bolt.Tx) error {
		// Pages past the end of the file would fault when read: check the
		// length before anything but the meta pages is touched.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: truncated: %d bytes, its pages need %d", ErrCorrupt, fi.Size(), tx.Size())
		}
		for err := range tx.Check() {
			errs.add("page check: %v", err)
		}
		if len(errs) > 0 {
			return nil // the invariant checks would read broken pages
		}
		for _, name := range allBuckets {
			if builtAtOpen(name) {
				continue // a backup older than the index: Open builds it
			}
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: no %q bucket", ErrNotStore, name)
			}
		}
		counts, _, err := checkTx(tx, errs.add)
		if err != nil {
			return err
		}
		if tx.Bucket(bucketUDue) == nil {
			return nil // a backup older than the upstream due keys: Open builds them, and their counts
		}
		_, err = checkStoredCounts(tx, counts, errs.add)
		return err
	})
	if err != nil {
		return fail(err)
	}
	if len(errs) > 0 {
		return fail(errors.Join(errs...))
	}
	return nil
}

// alignedCopy passes writes to w, and copies from a reader through a
// buffer aligned for direct I/O: bbolt's WriteTo copies the file's pages
// with io.CopyN, which hands them to a ReaderFrom, and the kernel refuses
// a direct read into memory not aligned to the file system's block (Go
// does not promise the alignment of io.Copy's own buffer).
type alignedCopy struct{ w io.Writer }

func (a alignedCopy) Write(p []byte) (int, error) { return a.w.Write(p) }

// directChunk is what one direct read asks for: large reads, since none
// is helped by readahead.
const directChunk = 1 << 20

func (a alignedCopy) ReadFrom(r io.Reader) (int64, error) {
	// Both sides hidden behind plain interfaces, so that io.CopyBuffer
	// uses buf: neither a WriterTo nor a ReaderFrom (an *os.File) with a
	// buffer of its own.
	return io.CopyBuffer(struct{ io.Writer }{a.w}, struct{ io.Reader }{r}, alignedBuffer(directChunk))
}

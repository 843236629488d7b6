package queue

// A disk that fails a commit's last sync: bbolt wrote the commit's meta
// page and fdatasync answered an I/O error. Every later read sees that
// commit (bbolt reads its meta from the mapped file) while the disk may
// hold only the state before it, whose pages bbolt would reuse at once.
// So no write transaction writes a page until an empty one has synced
// again (resync, syncMeta), the operations of such a commit wait for it
// (held, Options.SyncWait), and the file's other writers go through
// Update, which takes part in the same guard (fileMu).

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// next waits for the next operation. While operations wait for the disk
// to confirm their commit (held), it tries the empty commit that does
// every syncRetry meanwhile, and fails those whose wait is over.
// retryAt is when to try next: operations arriving faster than
// syncRetry do not put it off.
func (s *Store) next(retry *time.Timer, retryAt *time.Time) (*op, bool) {
	for s.heldN.Load() > 0 {
		if wait := time.Until(*retryAt); wait > 0 {
			retry.Reset(wait)
			select {
			case o, ok := <-s.ops:
				retry.Stop()
				return o, ok
			case <-retry.C:
			}
		}
		s.retryHeld(false)
		*retryAt = time.Now().Add(syncRetry)
	}
	o, ok := <-s.ops
	return o, ok
}

// syncMeta commits a transaction that writes nothing but its meta page:
// no page of the tree, no list of free pages (the next open walks the
// file for it instead). Once its sync succeeds, the disk's newest meta
// names the state every read sees, whatever the failed sync before it
// lost; until then a power cut leaves the state before that failed
// commit, whose pages nothing has written since. Not covered: a power
// cut that tears this very meta page's write (bbolt takes a meta page's
// write as whole, as disks of 4 KiB sectors make it) would leave the
// meta before that state, whose pages the failed commit may have reused.
func (s *Store) syncMeta() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		tx.DB().NoFreelistSync = true // reset by the next commit (syncFreelistIfShort)
		return nil
	})
	if err == nil && s.opt.SyncFault != nil {
		err = s.opt.SyncFault()
	}
	return err
}

// Update runs fn in a read-write transaction of the store's file, for
// the file's other writers (the policy, reminders, a cluster's copy of
// etcd's data: queue.OpenDB's peers), and returns fn's error or the
// commit's. It takes part in the commit loop's guard of a failed sync:
// after a commit whose sync failed, bbolt reuses at once the pages that
// the state on disk may still need, so no writer may write a page until
// an empty commit has synced again. Update runs that commit first (and
// fails with ErrWrite, writing nothing, while it fails), and a commit of
// fn's that is written but not synced seals the file the same way; it
// then returns ErrNotSynced, fn's writes visible to every read from then
// on. A commit that fails before bbolt wrote it returns ErrWrite.
func (s *Store) Update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if err := s.resync(); err != nil {
		s.stats.failedCommits.Add(1)
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	var txid int
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		txid = tx.ID()
		fnErr = fn(tx)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err == nil && s.opt.SyncFault != nil {
		err = s.opt.SyncFault()
	}
	switch {
	case err == nil:
		s.stats.lastFailed.Store(false)
		return nil
	case s.visible(txid):
		s.unsynced = true
		s.stats.lastFailed.Store(true)
		s.stats.failedCommits.Add(1)
		s.log.Error("queue: a write of the file's other writers written but not synced: it waits for the disk to confirm it", "wait", s.opt.SyncWait, "err", err)
		if s.awaitSync(ctx) {
			return nil
		}
		return fmt.Errorf("commit: %w: %w", ErrNotSynced, err)
	default:
		s.stats.lastFailed.Store(true)
		s.stats.failedCommits.Add(1)
		return fmt.Errorf("%w: commit: %w", ErrWrite, err)
	}
}

// awaitSync, with fileMu held after a commit of Update's that was
// written but not synced, waits up to SyncWait (or ctx's end) for an
// empty commit that makes it durable, trying one every syncRetry; it
// lets the other writers in between. true: confirmed.
func (s *Store) awaitSync(ctx context.Context) bool {
	if s.opt.SyncWait <= 0 {
		return false
	}
	mark := s.synced
	deadline := time.NewTimer(s.opt.SyncWait)
	defer deadline.Stop()
	tick := time.NewTicker(syncRetry)
	defer tick.Stop()
	for {
		s.fileMu.Unlock()
		select {
		case <-tick.C:
		case <-deadline.C:
			s.fileMu.Lock()
			return s.synced != mark || s.resync() == nil
		case <-ctx.Done():
			s.fileMu.Lock()
			return s.synced != mark
		}
		s.fileMu.Lock()
		if s.synced != mark || s.resync() == nil {
			return true
		}
		s.stats.failedCommits.Add(1)
	}
}

// resync, with fileMu held, runs the empty commit that syncs the meta
// page again if the last commit was written but not synced: no write
// transaction may write a page before it succeeds (see unsynced). Its
// success makes the commits before it durable (their pages were synced
// before their meta page was written, see ErrNotSynced), so the held
// operations succeed.
func (s *Store) resync() error {
	if !s.unsynced {
		return nil
	}
	if err := s.syncMeta(); err != nil {
		return fmt.Errorf("commit: waiting for the disk to confirm the last commit: %w", err)
	}
	s.unsynced = false
	s.synced++
	s.stats.lastFailed.Store(false)
	s.log.Info("queue: a commit synced again: the state the failed sync left is on disk", "confirmed", len(s.held))
	for _, h := range s.held {
		h.o.done <- nil
	}
	s.held = s.held[:0]
	s.heldN.Store(0)
	return nil
}

// heldOp is an operation of a commit written but not synced (held).
type heldOp struct {
	o     *op
	until time.Time // when it fails with err if the disk has not confirmed it
	err   error
}

// syncRetry is how often the commit loop tries the empty commit while
// operations wait for it (held).
const syncRetry = 50 * time.Millisecond

// DefaultSyncWait is Options.SyncWait's default.
const DefaultSyncWait = time.Second

// retryHeld tries the empty commit for the held operations, and fails
// those whose wait is over (all of them when final: the store closes).
func (s *Store) retryHeld(final bool) {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	if s.resync() == nil {
		return
	}
	s.stats.failedCommits.Add(1)
	now := time.Now()
	kept := s.held[:0]
	for _, h := range s.held {
		if final || !now.Before(h.until) {
			h.o.done <- h.err
			continue
		}
		kept = append(kept, h)
	}
	clear(s.held[len(kept):])
	s.held = kept
	s.heldN.Store(int32(len(kept)))
}

// visible reports whether the write transaction txid is what a read
// sees now: committed in this process, whatever its commit returned.
func (s *Store) visible(txid int) bool {
	if txid == 0 {
		return false
	}
	seen := 0
	if err := s.db.View(func(tx *bolt.Tx) error { seen = tx.ID(); return nil }); err != nil {
		return false
	}
	return seen >= txid
}

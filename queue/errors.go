package queue

import (
	"errors"
	"fmt"
)

// Errors returned by the Store, grouped by when they occur. Every error the
// Store returns wraps one of these (or a context error, or an I/O error from
// the database) with %w; test them with errors.Is.
var (
	// ErrClosed: the Store was closed before the operation was accepted.
	ErrClosed = errors.New("store closed")

	// ErrInvalid: an argument is unusable (a message without parts, a
	// separator byte in a key field, a non-final state where a final one is
	// required, an empty SMSC id). Nothing was written.
	ErrInvalid = errors.New("invalid argument")

	// ErrNotFound: no such message or part (or it belongs to another
	// account). Nothing was written.
	ErrNotFound = errors.New("not found")

	// ErrState: the part is not in a state that allows the transition, e.g.
	// Retry of a part the SMSC has already accepted. Nothing was written.
	ErrState = errors.New("part not in the required state")

	// ErrQuota: accepting the message would take its enterprise's monthly
	// reserved+charged segments past the limit. Nothing was written for it.
	ErrQuota = errors.New("monthly quota exceeded")

	// ErrOrphansFull: the receipt matched no part, and its upstream
	// already has Options.MaxOrphans such receipts kept: it was not kept.
	// Nothing was written. (The SMSC should send it again later.)
	ErrOrphansFull = errors.New("too many unmatched receipts kept for the upstream")

	// ErrCorrupt: a stored record cannot be decoded, or a check (Check,
	// VerifyBackup) found the file inconsistent.
	ErrCorrupt = errors.New("corrupt record")

	// ErrNotStore: VerifyBackup was given a file that is not a store: not
	// a bbolt file, or one without the queue's buckets.
	ErrNotStore = errors.New("not a qxtd store")

	// ErrLocked: another process holds the file (another qxtd serving
	// it, or a command run on it while the daemon does): Open and OpenDB
	// waited Options.OpenTimeout for its lock. Nothing was read.
	ErrLocked = errors.New("the file is held by another process (is qxtd already running on it?)")

	// ErrNotSynced: the commit was written but its last sync failed (an
	// I/O error: a failing disk), and the disk did not confirm it within
	// Options.SyncWait either. What it wrote is in the store, and the
	// next commit that syncs makes it durable (bbolt synced its pages
	// before it wrote the meta page whose sync failed), but the
	// operation is not known durable, so it is reported failed: a caller
	// that tries it again may then do it twice (a message sent twice),
	// never lose it.
	ErrNotSynced = errors.New("written, but the disk did not confirm it")

	// ErrWrite: a write of the file's other writers (Store.Update) was
	// not taken: its commit failed before bbolt wrote it, or the store
	// refused it while the disk has not confirmed a commit since one
	// whose sync failed. Nothing of it was written; it may be tried
	// again.
	ErrWrite = errors.New("the state file cannot be written now")

	// ErrPanic: an operation panicked inside the commit loop; it was rolled
	// back and the other operations of its batch were retried without it.
	ErrPanic = errors.New("operation panicked")
)

// QuotaError is an ErrQuota refusal (errors.Is) with the figures it was
// refused on, read in the transaction that refused it, so that the
// sender can be told how much of the month is left (the gateway's
// quota_exceeded detail) without reading the counters again.
type QuotaError struct {
	Enterprise, Month string
	Reserved, Charged int64 // the month's segments in flight and delivered
	Need              int64 // the message's segments (More: its growth)
	Limit             int64 // the limit checked (a cluster node's claim there)
	More              bool  // a rescheduled text: Need is how many segments it adds
}

func (e *QuotaError) Error() string {
	more := ""
	if e.More {
		more = " more"
	}
	return fmt.Sprintf("%v: enterprise %q %s: %d reserved + %d charged + %d%s > limit %d",
		ErrQuota, e.Enterprise, e.Month, e.Reserved, e.Charged, e.Need, more, e.Limit)
}

// Unwrap makes errors.Is(err, ErrQuota) hold.
func (e *QuotaError) Unwrap() error { return ErrQuota }

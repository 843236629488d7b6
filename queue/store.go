package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// MaxBatch is the most operations committed in one transaction, and the
	// capacity of the channel into the commit loop. Default 1024.
	MaxBatch int

	// NoSync skips fsync on commit. Only for tests of logic: a crash loses
	// acknowledged writes.
	NoSync bool

	// Logger receives warnings (reused SMSC ids, stale orphans, failed
	// commits). Default: discard.
	Logger *slog.Logger

	// OnDLRReady is called from the commit goroutine, after the commit that
	// queued a final DLR for account, once per account per commit, with
	// the messages whose DLRs that commit queued, as committed, and the
	// commit's snapshot (a PendingDLRsAt at or past it saw them). It must
	// not block and must not wait for a Store write (that would deadlock the
	// commit loop): signal a channel or a condition and return.
	//
	// The messages are handed over, not copied: the receiver must not
	// modify them. They are a hint that spares the receiver a PendingDLRs
	// scan; the store still lists them there until AckDLR, so a receiver
	// that drops them (it is full, or not running) finds them again.
	OnDLRReady func(account string, ready []*Message, at Snapshot)

	// OnHookReady is called from the commit goroutine after a commit
	// that queued receipt webhooks (hooks.go), with their enterprises,
	// each once; the same rules as OnDLRReady. Set it with
	// SetHookCallback.
	OnHookReady func(enterprises []string)

	// OnReplyReady is OnHookReady for the reply webhooks a commit queued
	// (StoreMO of an MO with a ReplyURL; moreplies.go). Set it with
	// SetReplyCallback.
	OnReplyReady func(enterprises []string)

	// OrphanMaxAge bounds how long before a submit_sm_resp a stored orphan
	// DLR may have arrived and still be applied to it by Submitted; older
	// orphans are for an earlier message that reused the id and are
	// dropped. Default 1h.
	OrphanMaxAge time.Duration

	// MaxOrphans bounds the receipts kept per upstream that matched no
	// part (orphans): past it, ApplyDLR keeps no new one (ErrOrphansFull)
	// until some are matched or purged, so an SMSC that sends receipts
	// for messages that are not ours cannot fill the disk. Receipts that
	// match are taken whatever the count. Default 1,000,000 (about 200 MB
	// of store).
	MaxOrphans int

	// OnCommit is told the duration (fsync included) and the number of
	// operations of every successful commit, for metrics. It runs on the
	// commit goroutine: it must be quick and must not call the Store.
	OnCommit func(d time.Duration, ops int)

	// CommitDelay, when positive, lets a commit of patient operations
	// (Patient: their callers' senders have room to send more meanwhile)
	// wait for more to join it, until it has commitFill operations or its
	// oldest was queued CommitDelay ago. At a moderate steady rate the
	// commit loop otherwise commits every few messages, and a commit's
	// cost is mostly per commit (two fdatasyncs and a write per dirty
	// page, a dozen to thirty pages), so CPU and disk writes per message
	// are highest there. The price is bounded per operation: none is held
	// back for company more than CommitDelay after it was queued, and one
	// that waited that long for the previous commit is not held at all.
	// An operation that is not patient is committed at once, with
	// whatever waits: a writer that waits for each answer before its next
	// operation (a client with a window of 1, or one whose window is
	// full) would gain the delay on every round trip with nothing joining
	// its commits meanwhile, so its rate would fall. Default 0: commit at
	// once.
	CommitDelay time.Duration

	// RecordDelay, when positive, lets a commit of records (Record: the
	// writes no ESME's answer waits on, whose sender can go on meanwhile:
	// the record of an SMSC's submit_sm_resp or of an ESME's
	// deliver_sm_resp, a receipt or reply from an SMSC with room in its
	// window) wait for company until the first of them was queued
	// RecordDelay ago. At a low rate each of them is otherwise a commit
	// of its own: a message costs three or four commits, each about the
	// same CPU and disk writes whatever it carries. Held, they ride along
	// with the next operation that commits at once (an ESME's submit,
	// which this never holds), so the wait usually ends at the next
	// submit, well before the delay. The price is in a crash: the records
	// of answers held then are lost, so their segments are sent to the
	// SMSC again and their receipts to the ESME again (a receipt or reply
	// from an SMSC held then was not answered yet: the SMSC sends it
	// again, and the ESME gets it once). CommitDelay, if longer, holds
	// records as long. Default 0: commit at once.
	RecordDelay time.Duration

	// OpenTimeout bounds the wait for the file lock held by another process.
	// Default 1s.
	OpenTimeout time.Duration

	// CommitFault, if set, is called in every write transaction after its
	// operations ran; a non-nil error fails that commit as a failed write
	// would (disk full, I/O error): every operation of the batch fails and
	// Writable turns false. For fault-injection tests; leave it nil.
	CommitFault func() error

	// SyncFault, if set, is called after every commit that succeeded; a
	// non-nil error is reported as bbolt reports a meta page whose
	// fdatasync failed: the commit is visible to every later transaction,
	// whether or not the disk has it. For fault-injection tests; leave it
	// nil.
	SyncFault func() error

	// SyncWait is how long an operation whose commit was written but not
	// synced waits for the disk to confirm it before it fails with
	// ErrNotSynced: the store tries the empty commit that makes it
	// durable (syncMeta) every syncRetry meanwhile, and an operation it
	// confirms succeeds, as if its commit had synced at once. Default
	// 1s (DefaultSyncWait); negative: no wait.
	SyncWait time.Duration

	// NodeID, in cluster mode, is this node's id (1..65535): every new
	// message id (part ids of client-split messages included) and MO id
	// is then in [NodeID<<48, (NodeID+1)<<48), so ids of different nodes
	// never collide and NodeOf names the node that owns one. Open raises
	// the sequences to NodeID<<48 if they are below; ids given before
	// cluster mode keep their values (NodeOf says 0 for them). 0 (single
	// node) leaves the ids as they always were.
	NodeID uint16
}

// NodeOf returns the cluster node whose store gave id (Options.NodeID): its
// top 16 bits. 0 for an id of a single-node store or given before cluster
// mode.
func NodeOf(id uint64) uint16 { return uint16(id >> nodeShift) }

// nodeShift places the node id in the top 16 bits of a message id.
const nodeShift = 48

// Store is the durable message store and send queue. All methods are safe
// for concurrent use.
type Store struct {
	db       *bolt.DB
	ownDB    bool // opened by Open: Close closes it
	pageSize int  // the file's, read at New (bbolt's Info is gone after Close)
	opt      Options
	log      *slog.Logger
	// damaged is the set of damaged records already logged (damaged.go).
	damaged damaged

	ops  chan *op      // into the commit loop; closed by Close
	done chan struct{} // closed when the commit loop has returned
	// opPool keeps the ops (each with its done channel) whose outcome
	// exec has received: every message passes exec three times, and an op
	// and its channel are two allocations each time. An op whose caller
	// gave up (its ctx ended) is not returned: the loop may still hold it.
	opPool sync.Pool

	closeMu sync.RWMutex // held for reading while sending on ops
	closed  bool

	memMu  sync.RWMutex // guards the in-memory mirrors below
	usage  map[string]usage
	counts [stateEnd]int
	// orphanN counts the orphans kept per upstream (MaxOrphans); written
	// only by the commit goroutine, after a commit (apply).
	orphanN map[string]int
	// dueN counts the parts due per upstream (their udue keys); written
	// only by the commit goroutine, after a commit (apply).
	dueN map[string]int

	// fileMu is held around every write transaction of the file (the
	// commit loop's, Update's) together with the check of unsynced
	// before it and the test of its visibility after it: no other
	// writer's commit comes between a failed commit and that test (it
	// compares transaction ids), nor between that test and the next
	// write.
	fileMu sync.Mutex
	// held are the operations of commits written but not synced, waiting
	// (until their deadline, SyncWait) for the empty commit that makes
	// them durable; heldN mirrors len(held) for the commit loop's wait.
	// Only while unsynced is an operation held: one whose commit an
	// empty commit confirmed before it was held succeeds at once.
	// Guarded by fileMu.
	held  []heldOp
	heldN atomic.Int32
	// synced counts the empty commits that synced again (resync): a
	// writer that waits for its own unsynced commit sees it confirmed
	// when it moves. Guarded by fileMu.
	synced uint64
	// unsynced: the last commit was written but its meta page's sync
	// failed, so the disk may hold only the state before it while bbolt
	// builds on it (and reuses the pages it freed, which that state
	// still needs). Until an empty commit syncs a meta page again
	// (syncMeta), no commit writes a page. Guarded by fileMu.
	unsynced bool

	// gathering, when set (by tests), is told each time a commit starts
	// to wait for company (gather).
	gathering func()

	// onDue is the hand-over of parts due at once (SetDueCallback).
	onDue atomic.Pointer[func(jobs []Job, at Snapshot)]

	stats struct {
		txns, ops, rollbacks, failedCommits, maxBatch atomic.Uint64
		// lastFailed is whether the most recent commit failed: the
		// store is not writable (disk full, I/O error) until one succeeds.
		lastFailed atomic.Bool
	}
}

// Stats are counters of the commit loop since Open.
type Stats struct {
	Txns          uint64 // committed write transactions (one fsync each)
	Ops           uint64 // operations those transactions carried
	Rollbacks     uint64 // transactions rolled back because one operation failed hard (the others were retried)
	FailedCommits uint64 // transactions whose commit failed (every operation in it failed)
	MaxBatch      uint64 // most operations seen in one transaction
	// Written is the bytes of pages the file's write transactions wrote
	// since it was opened: the pages each allocated (bbolt copies every
	// changed page, and the branch pages above it up to the root of its
	// bucket, at every commit) and the commit loop's meta page a commit.
	// Written / Txns is what one commit costs a disk whatever it carries.
	Written uint64
}

// op is one write operation queued for the commit loop.
type op struct {
	ctx  context.Context
	fn   func(*txn) error
	done chan error // buffered: the commit loop never blocks on it
	// queued is when the op was queued, with CommitDelay or RecordDelay
	// set only: no operation is held back for company longer than its
	// hold after it.
	queued time.Time
	// hold is how long the op may wait for company: CommitDelay for a
	// Patient one, RecordDelay for a Record, 0 for the others.
	hold time.Duration
}

type patienceKey struct{}

// Patient returns a context whose write operations may be held up to
// Options.CommitDelay for others to share their commit. Give it only
// where the wait costs the sender latency but no throughput: its window
// has room for more meanwhile. Operations from other contexts commit at
// once and take any held ones with them. Without a CommitDelay it returns
// ctx itself: nothing is held, and the context it would wrap is an
// allocation on every write.
func (s *Store) Patient(ctx context.Context) context.Context {
	if s.opt.CommitDelay <= 0 {
		return ctx
	}
	return context.WithValue(ctx, patienceKey{}, s.opt.CommitDelay)
}

// Record returns a context whose write operations may be held up to
// Options.RecordDelay (or CommitDelay if longer) for others to share
// their commit. Give it only to writes that no ESME's answer waits on and
// whose sender can go on meanwhile. Without either delay it returns ctx
// itself.
func (s *Store) Record(ctx context.Context) context.Context {
	d := max(s.opt.RecordDelay, s.opt.CommitDelay)
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, patienceKey{}, d)
}

// holdOf is how long an operation of ctx may wait for company.
func holdOf(ctx context.Context) time.Duration {
	d, _ := ctx.Value(patienceKey{}).(time.Duration)
	return d
}

// softError marks an operation's own failure (not found, wrong state,
// invalid): the operation wrote nothing and the batch commits without it.
// Any other error returned by an op is hard: the transaction is rolled back.
type softError struct{ err error }

func (e softError) Error() string { return e.err.Error() }
func (e softError) Unwrap() error { return e.err }

func soft(err error) error { return softError{err} }

// Open opens (creating if needed) the file at path and a Store on it that
// owns the file: Close closes it. At most one process may hold the file; a
// second Open fails after Options.OpenTimeout. A daemon that keeps other
// packages' buckets in the same file uses OpenDB and New instead.
func Open(path string, opt Options) (*Store, error) {
	db, err := OpenDB(path, opt)
	if err != nil {
		return nil, err
	}
	s, err := New(db, opt)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.ownDB = true
	return s, nil
}

// OpenDB opens (creating if needed) the bbolt file at path with the settings
// the store needs (Options.NoSync and OpenTimeout; the other options are
// New's), for a daemon that keeps several stores in one file, so that one
// file is the whole state and one Backup takes all of it. Hand the file to
// New and to each peer store (policy.New); each creates and owns its own
// buckets (doc.go, Caveats) and leaves the others' alone. The caller closes
// the file after every store on it is closed. At most one process may hold
// the file; a second OpenDB fails after Options.OpenTimeout.
//
// A file whose pages are damaged (not a record: the page structure) can
// fail here with ErrCorrupt: the open reads the free-page list, or when
// the last commit left it out every page (syncFreelistIfShort), and bbolt
// panics at the first page whose header is not what it expects (or at
// whatever else it asserts while opening: the error says "damaged page"). That panic is turned into the error, so the daemon says which
// file and page instead of crashing; the remedy is the last backup. (Other
// damage bbolt finds in that walk panics on a goroutine of its own, which
// no caller can recover: the process ends with bbolt's message.)
//
// bbolt v1.5.0 moved the whole walk onto such a goroutine
// (etcd-io/bbolt#1153), so that any damaged page found in it ends the
// process: TestOpenDamagedPages fails there. That is why go.mod keeps
// v1.4.3, though v1.5.0 also ends the five allocations a message that
// v1.4.3's page checks cost.
func OpenDB(path string, opt Options) (db *bolt.DB, err error) {
	opt = opt.withDefaults()
	defer func() {
		if r := recover(); r != nil {
			// The half-opened file (its descriptor, lock and map) is
			// left to the process's exit: bbolt gives no handle to it.
			db, err = nil, fmt.Errorf("queue: open %s: damaged page: %v (%w; restore the last backup)", path, r, ErrCorrupt)
		}
	}()
	if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
		// bbolt creates the file with one 16 KiB write of its first four
		// pages; closed and opened again, the file's first pages can be
		// cached one by one (smallMetaPages).
		fresh, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opt.OpenTimeout, NoSync: opt.NoSync})
		if err != nil {
			return nil, openError(path, err, opt.OpenTimeout)
		}
		if err := fresh.Close(); err != nil {
			return nil, fmt.Errorf("queue: open %s: %w", path, err)
		}
		// bbolt synced the new file's pages, not its name (durable.go).
		if !opt.NoSync {
			if err := SyncDir(filepath.Dir(path)); err != nil {
				return nil, fmt.Errorf("queue: open %s: its directory: %w", path, err)
			}
		}
	}
	smallMetaPages(path)
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opt.OpenTimeout,
		NoSync:  opt.NoSync,
		// Written until the queue's first commit decides by its length
		// (syncFreelistIfShort): the commits at start (New's, policy's)
		// keep the list a clean stop left, so that a crash before the
		// queue's first commit is not walked, and a file that was walked
		// gets its list written by bbolt at once.
		NoFreelistSync: false,
		FreelistType:   bolt.FreelistMapType,
		// Address space, not memory: while the file stays under it,
		// bbolt never remaps, and a remap waits for every open read
		// transaction and holds up the commit loop meanwhile (each
		// doubling of a young file was a latency spike).
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		return nil, openError(path, err, opt.OpenTimeout)
	}
	return db, nil
}

// openError is bbolt.Open's err for path. Its lock timeout ("timeout"
// alone, which said nothing of why) becomes ErrLocked.
func openError(path string, err error, waited time.Duration) error {
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("queue: open %s: %w (waited %s for its lock)", path, ErrLocked, waited)
	}
	return fmt.Errorf("queue: open %s: %w", path, err)
}

// maxSyncedFreePages is the longest free-page list (free and pending
// pages) that a commit writes: about two pages of list.
const maxSyncedFreePages = 1000

// syncFreelistIfShort makes the commit of tx write the file's list of
// free pages while that list is short, and leave it out when it is long.
// Written, it costs a page or two per commit, and a crash leaves a file
// whose next open reads it instead of walking every page (about 0.25 s per
// million messages stored, before anything is served). After a purge the
// list can run to thousands of pages, and bbolt writes the whole list at
// every commit: then commits leave it out (NoFreelistSync), a restart
// after a crash walks the file, and once writes have reused the pages the
// list is written again. bbolt reads the flag only when it commits, under
// the writer lock that tx holds, so setting it here races no other
// writer; every commit, with the list or without it, leaves the file in
// one of the two states an open knows.
func syncFreelistIfShort(tx *bolt.Tx) {
	st := tx.DB().Stats()
	tx.DB().NoFreelistSync = st.FreePageN+st.PendingPageN > maxSyncedFreePages
}

// CloseDB closes a file OpenDB opened, once every store on it is closed,
// after one last commit that writes the file's list of free pages however
// long it is (the store's commits leave a long one out: see
// syncFreelistIfShort), so that the next open reads it instead of walking
// every page: a planned restart (an upgrade, a move) is as quick after a
// purge as before it. The next commit keeps or drops the list by its
// length again (bbolt frees the written one's pages either way).
//
// If that commit fails (a full disk), the file is closed all the same and
// log gets a warning: nothing is lost, the next open walks the file.
func CloseDB(db *bolt.DB, log *slog.Logger) error {
	if !db.IsReadOnly() {
		// Set under the writer lock, where bbolt reads it: a peer
		// store's write still committing does not race it.
		if err := db.Update(func(tx *bolt.Tx) error {
			tx.DB().NoFreelistSync = false
			return nil
		}); err != nil && log != nil {
			log.Warn("queue: free-page list not written: the next start walks the whole file first", "err", err)
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	return nil
}

// New creates the store's buckets in db if needed (db as OpenDB returns it),
// loads the in-memory mirrors and starts the commit goroutine. The Store
// does not own db: Close stops the store and leaves db open for the caller
// to close. Writes of peer stores on the same file wait for the commit
// loop's transaction like any other bbolt writer.
func New(db *bolt.DB, opt Options) (*Store, error) {
	opt = opt.withDefaults()
	s := &Store{
		db:       db,
		pageSize: db.Info().PageSize,
		opt:      opt,
		log:      opt.Logger,
		ops:      make(chan *op, opt.MaxBatch),
		done:     make(chan struct{}),
		usage:    make(map[string]usage),
		orphanN:  make(map[string]int),
		dueN:     make(map[string]int),
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", db.Path(), err)
	}
	if err := s.nodeSequences(); err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", db.Path(), err)
	}
	go s.loop()
	return s, nil
}

// DefaultMaxOrphans is Options.MaxOrphans's default.
const DefaultMaxOrphans = 1_000_000

// initialMmapSize is 1 GiB: beyond it bbolt grows the map by 1 GiB at a
// time anyway.
const initialMmapSize = 1 << 30

func (opt Options) withDefaults() Options {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 1024
	}
	if opt.OrphanMaxAge <= 0 {
		opt.OrphanMaxAge = time.Hour
	}
	if opt.MaxOrphans <= 0 {
		opt.MaxOrphans = DefaultMaxOrphans
	}
	if opt.OpenTimeout <= 0 {
		opt.OpenTimeout = time.Second
	}
	if opt.SyncWait == 0 {
		opt.SyncWait = DefaultSyncWait
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return opt
}

// load creates the buckets and fills the in-memory mirrors.
func (s *Store) load() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		// An edue bucket beside udue means an earlier release ran on the
		// file since this one built udue (it builds edue again, and keeps
		// only that): udue is stale, built again from the due keys. So
		// is a udue whose ends disagree with the due keys
		// (udueLooksCurrent): a release from before edue ran on it.
		hadUDue := tx.Bucket(bucketUDue) != nil && tx.Bucket(legacyEDue) == nil && udueLooksCurrent(tx)
		if !hadUDue {
			for _, name := range [][]byte{bucketUDue, bucketUPDue} {
				if tx.Bucket(name) == nil {
					continue
				}
				if err := tx.DeleteBucket(name); err != nil {
					return fmt.Errorf("bucket %s: %w", name, err)
				}
			}
		}
		hadFinal := tx.Bucket(bucketFinal) != nil
		for _, name := range append(allBuckets[:len(allBuckets):len(allBuckets)], append(moBuckets, bucketMeta, bucketIdem, bucketJobs, bucketJobChunks)...) {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		if !hadFinal {
			if err := buildFinal(tx); err != nil {
				return fmt.Errorf("final index: %w", err)
			}
		}
		if !hadUDue {
			if err := tx.Bucket(bucketMeta).Delete(keyDueCounts); err != nil {
				return err
			}
			return buildUDue(tx)
		}
		return nil
	})
	if err != nil {
		return err
	}
	counted, dueCounted := false, false
	err = s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketUsage).ForEach(func(k, v []byte) error {
			u, err := decodeUsage(v)
			if err != nil {
				return fmt.Errorf("usage %q: %w", k, err)
			}
			s.usage[string(k)] = u
			return nil
		})
		if err != nil {
			return err
		}
		// Orphans are counted, not stored counted: they are few, and at
		// most MaxOrphans per upstream.
		err = tx.Bucket(bucketOrphan).ForEach(func(k, _ []byte) error {
			s.orphanN[orphanUpstream(k)]++
			return nil
		})
		if err != nil {
			return err
		}
		if v := tx.Bucket(bucketMeta).Get(keyDueCounts); v != nil {
			if s.dueN, err = decodeDueCounts(v); err != nil {
				return err
			}
		} else if s.dueN, err = countUDue(tx); err != nil {
			return err
		} else {
			dueCounted = true
		}
		if c, ok, err := storedCounts(tx); ok {
			s.counts, counted = c, true
			return nil
		} else if err != nil {
			s.log.Warn("queue: stored state counts unreadable: counting the messages", "err", err)
		}
		return tx.Bucket(bucketMsg).ForEach(func(k, v []byte) error {
			m, err := DecodeMessage(v)
			if err != nil {
				return fmt.Errorf("message %x: %w", k, err)
			}
			for _, p := range m.Parts {
				s.counts[p.State]++
			}
			return nil
		})
	})
	if err != nil || counted && !dueCounted {
		return err
	}
	// Counted by scan: keep the result, so the next open reads it.
	return s.db.Update(func(tx *bolt.Tx) error {
		if dueCounted {
			if err := tx.Bucket(bucketMeta).Put(keyDueCounts, encodeDueCounts(s.dueN)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyCounts, encodeCounts(s.counts))
	})
}

// nodeSequences, for a cluster node (Options.NodeID > 0), raises the
// sequences that give message and MO ids to the start of the node's id
// range. A sequence in another node's range (above or below) means the
// file was that node's: refused, as its messages' ids name that node and
// the cluster would route them there. A file of a single node (below
// 1<<48) joins with its old ids kept.
func (s *Store) nodeSequences() error {
	n := uint64(s.opt.NodeID)
	if n == 0 {
		return nil
	}
	lo, hi := n<<nodeShift, (n+1)<<nodeShift
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMsg, bucketMO} {
			b := tx.Bucket(name)
			switch seq := b.Sequence(); {
			case seq >= hi-1 || seq >= 1<<nodeShift && seq < lo:
				return fmt.Errorf("%w: %s sequence %d is outside node %d's id range (another node's file?)",
					ErrInvalid, name, seq, n)
			case seq < lo:
				if err := b.SetSequence(lo); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// udueProbe is how many keys at each end udueLooksCurrent reads.
const udueProbe = 64

// udueLooksCurrent samples the upstream due keys against the due keys:
// the first and last udueProbe due keys must have theirs, and the first
// udueProbe upstream due keys must name parts waiting at that time. A
// release from before 2026-12-02 keeps neither edue nor udue, so one that
// ran on the file since this one leaves no other trace: what it queued is
// due last and what it sent was due first. About 200 messages decoded at
// Open; a file that fails is given its keys again (buildUDue).
func udueLooksCurrent(tx *bolt.Tx) bool {
	msgB, dueB, udueB := tx.Bucket(bucketMsg), tx.Bucket(bucketDue), tx.Bucket(bucketUDue)
	if dueB == nil || udueB == nil {
		return false
	}
	// waiting is part k of its message, if it is Accepted and due at ts.
	waiting := func(ts int64, k Key) (*Message, bool) {
		v := msgB.Get(msgKey(k.ID))
		if v == nil {
			return nil, false
		}
		m, err := DecodeMessage(v)
		if err != nil || int(k.Part) >= len(m.Parts) {
			return nil, false
		}
		p := m.Parts[k.Part]
		return m, p.State == StateAccepted && timeNanos(p.DueAt) == ts
	}
	hasUDue := func(kb []byte) bool {
		ts, k, ok := parseTimeKey(kb)
		if !ok {
			return true // Check reports it
		}
		m, ok := waiting(ts, k)
		return !ok || udueB.Get(udueKey(m.Upstream, m.Enterprise, time.Unix(0, ts), k)) != nil
	}
	c := dueB.Cursor()
	n := 0
	for kb, _ := c.First(); kb != nil && n < udueProbe; kb, _ = c.Next() {
		if !hasUDue(kb) {
			return false
		}
		n++
	}
	n = 0
	for kb, _ := c.Last(); kb != nil && n < udueProbe; kb, _ = c.Prev() {
		if !hasUDue(kb) {
			return false
		}
		n++
	}
	n = 0
	uc := udueB.Cursor()
	for kb, _ := uc.First(); kb != nil && n < udueProbe; kb, _ = uc.Next() {
		_, _, ts, k, ok := splitUdueKey(kb)
		if !ok {
			return false
		}
		if _, ok := waiting(ts, k); !ok {
			return false
		}
		n++
	}
	return true
}

// buildUDue fills the upstream and enterprise due indexes (udue, updue)
// of a file written before they existed, from the due keys, and deletes
// the per-enterprise ones they replace (edue, pdue) if it has them. The
// keys are put in their order: bbolt splits a node only at the commit,
// and a million keys put at random into one would shift its entries a
// million times each.
func buildUDue(tx *bolt.Tx) error {
	msgB, udue, updue := tx.Bucket(bucketMsg), tx.Bucket(bucketUDue), tx.Bucket(bucketUPDue)
	var keys, pkeys [][]byte
	c := tx.Bucket(bucketDue).Cursor()
	for kb, _ := c.First(); kb != nil; kb, _ = c.Next() {
		ts, k, ok := parseTimeKey(kb)
		if !ok {
			return fmt.Errorf("%w: due key %x", ErrCorrupt, kb)
		}
		v := msgB.Get(msgKey(k.ID))
		if v == nil {
			continue // Check reports it
		}
		m, err := DecodeMessage(v)
		if err != nil {
			return fmt.Errorf("message %d: %w", k.ID, err)
		}
		uk := udueKey(m.Upstream, m.Enterprise, time.Unix(0, ts), k)
		keys = append(keys, uk)
		if m.Priority {
			pkeys = append(pkeys, uk)
		}
	}
	for _, b := range []struct {
		bucket *bolt.Bucket
		keys   [][]byte
	}{{udue, keys}, {updue, pkeys}} {
		slices.SortFunc(b.keys, bytes.Compare)
		b.bucket.FillPercent = 1 // in order: full pages
		for _, k := range b.keys {
			if err := b.bucket.Put(k, nil); err != nil {
				return err
			}
		}
	}
	for _, name := range [][]byte{legacyEDue, legacyPDue} {
		if tx.Bucket(name) == nil {
			continue
		}
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

// Close stops accepting operations, commits those already queued, stops the
// commit goroutine and, for a Store made by Open, closes the file (waiting
// for read transactions in progress). Operations after Close, reads
// included, fail with ErrClosed. Calling Close again returns nil.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ops)
	s.closeMu.Unlock()
	<-s.done
	if !s.ownDB {
		return nil
	}
	return CloseDB(s.db, s.log)
}

// Stats returns the commit loop's counters.
func (s *Store) Stats() Stats {
	txns := s.stats.txns.Load()
	db := s.db.Stats()
	return Stats{
		Txns:          txns,
		Ops:           s.stats.ops.Load(),
		Rollbacks:     s.stats.rollbacks.Load(),
		FailedCommits: s.stats.failedCommits.Load(),
		MaxBatch:      s.stats.maxBatch.Load(),
		Written:       uint64(db.TxStats.GetPageAlloc()) + txns*uint64(s.pageSize),
	}
}

// exec queues fn for the commit loop and waits for its outcome. When ctx
// ends first it returns ctx.Err(); the operation may still commit later (an
// operation whose ctx has ended by the time its batch starts is skipped).
func (s *Store) exec(ctx context.Context, fn func(*txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o, _ := s.opPool.Get().(*op)
	if o == nil {
		o = &op{done: make(chan error, 1)}
	}
	o.ctx, o.fn = ctx, fn
	if s.opt.CommitDelay > 0 || s.opt.RecordDelay > 0 {
		o.queued, o.hold = time.Now(), holdOf(ctx)
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	done := ctx.Done()
	if done == nil {
		// A context that cannot end (the senders' context.WithoutCancel,
		// the common case): plain channel operations, not two selects —
		// every message passes here three times.
		s.ops <- o
		s.closeMu.RUnlock()
		return s.outcome(o)
	}
	select {
	case s.ops <- o: // room in the queue: no select over ctx's Done channel
		s.closeMu.RUnlock()
	default:
		select {
		case s.ops <- o:
			s.closeMu.RUnlock()
		case <-done:
			s.closeMu.RUnlock()
			return ctx.Err()
		}
	}
	var err error
	select {
	case err = <-o.done:
	case <-ctx.Done():
		select {
		case err = <-o.done: // decided already: report the outcome
		default:
			return ctx.Err() // o stays with the loop, out of the pool
		}
	}
	s.recycle(o)
	return err
}

// outcome waits for o's result and recycles o.
func (s *Store) outcome(o *op) error {
	err := <-o.done
	s.recycle(o)
	return err
}

// recycle returns o, whose result its caller has received, to the pool:
// the commit loop sends the result last and touches o no more.
func (s *Store) recycle(o *op) {
	o.ctx, o.fn = nil, nil
	s.opPool.Put(o)
}

// loop is the only writer: it drains whatever operations are queued (up to
// MaxBatch) and commits them in one transaction, so one fsync serves every
// writer that arrived while the previous commit was in progress. An idle
// loop commits a lone operation at once, unless it may wait (Patient with
// CommitDelay set, Record with RecordDelay or CommitDelay set).
func (s *Store) loop() {
	defer close(s.done)
	batch := make([]*op, 0, s.opt.MaxBatch)
	delay := time.NewTimer(time.Hour)
	delay.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	var retryAt time.Time
	for {
		o, ok := s.next(retry, &retryAt)
		if !ok {
			if s.heldN.Load() > 0 {
				s.retryHeld(true)
			}
			return
		}
		batch = append(batch[:0], o)
		// Take what is queued; then yield and take what came meanwhile,
		// again while each yield brings more (at most three): under load,
		// producers that are runnable now join this commit instead of
		// paying for one of their own (a commit's cost is mostly per
		// commit, not per operation: ~0.5 ms of CPU, two fdatasyncs).
		// A yield that brings nothing ends it, so a lone operation is not
		// held up.
		for yields := 0; ; yields++ {
			n := len(batch)
			closed := s.drain(&batch)
			if closed || len(batch) >= s.opt.MaxBatch || yields > 0 && (len(batch) == n || yields >= 3) {
				break
			}
			runtime.Gosched()
		}
		if (s.opt.CommitDelay > 0 || s.opt.RecordDelay > 0) && len(batch) < min(commitFill, s.opt.MaxBatch) && allPatient(batch) {
			s.gather(&batch, delay)
		}
		s.commit(batch)
		clear(batch) // drop references to finished ops
	}
}

// commitFill is the batch at which a commit stops waiting for more
// (CommitDelay). Under full load most batches are larger (about 100
// operations on average with one client at window 100), so it seldom
// waits there, and briefly when it does: operations arrive quickly.
const commitFill = 64

// allPatient reports whether every operation of batch may wait (Patient
// or Record).
func allPatient(batch []*op) bool {
	for _, o := range batch {
		if o.hold <= 0 {
			return false
		}
	}
	return true
}

// gather appends operations as they arrive, until the batch has
// commitFill, or an operation that may not wait joins it, or one of its
// operations has been queued as long as it may wait (its hold: a record
// held up to RecordDelay commits early with a patient operation whose
// CommitDelay ends first), or the queue is closed (then the loop commits
// what it has and ends). Counting from each operation's queueing, not
// from the gather's start, bounds what the wait adds to any operation:
// one that waited for the commit before does not wait again.
func (s *Store) gather(batch *[]*op, delay *time.Timer) {
	limit := min(commitFill, s.opt.MaxBatch)
	due := (*batch)[0].queued.Add((*batch)[0].hold)
	for _, o := range (*batch)[1:] {
		if d := o.queued.Add(o.hold); d.Before(due) {
			due = d
		}
	}
	wait := time.Until(due)
	if wait <= 0 {
		return // one has waited its hold already (for the last commit)
	}
	delay.Reset(wait)
	defer delay.Stop()
	if s.gathering != nil {
		s.gathering()
	}
	for len(*batch) < limit {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return
			}
			*batch = append(*batch, o)
			if o.hold <= 0 {
				return // someone waits on it: commit now
			}
			if d := o.queued.Add(o.hold); d.Before(due) {
				due = d
				delay.Reset(time.Until(due))
			}
		case <-delay.C:
			return
		}
	}
}

// drain appends queued operations to batch, up to MaxBatch, without
// waiting; true if the queue is closed.
func (s *Store) drain(batch *[]*op) bool {
	for len(*batch) < s.opt.MaxBatch {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return true
			}
			*batch = append(*batch, o)
		default:
			return false
		}
	}
	return false
}

// commit runs batch in one transaction and reports each op's result.
func (s *Store) commit(batch []*op) {
	live := make([]*op, 0, len(batch))
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	results := make([]error, len(live))
	for len(live) > 0 {
		t := &txn{s: s}
		bad, badErr := -1, error(nil)
		began := time.Now()
		var txid int
		s.fileMu.Lock()
		if err := s.resync(); err != nil {
			s.fileMu.Unlock()
			s.stats.failedCommits.Add(1)
			for _, o := range live {
				o.done <- err
			}
			return
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			txid = tx.ID()
			t.bind(tx)
			for i, o := range live {
				cp := t.checkpoint()
				err := runOp(o, t)
				if err == nil {
					results[i] = nil
					continue
				}
				// Declared here, not before the test: errors.As takes
				// its address, which puts it on the heap, once per
				// failure instead of once per operation.
				var se softError
				if !errors.As(err, &se) {
					bad, badErr = i, err
					return err
				}
				t.restore(cp)
				results[i] = se.err
			}
			if err := t.putUsage(); err != nil {
				return err
			}
			if t.counts != ([stateEnd]int{}) {
				if err := t.putCounts(); err != nil {
					return fmt.Errorf("counts: %w", err)
				}
			}
			if len(t.dueDelta) > 0 {
				if err := t.putDueCounts(); err != nil {
					return fmt.Errorf("due counts: %w", err)
				}
			}
			if s.opt.CommitFault != nil {
				return s.opt.CommitFault()
			}
			syncFreelistIfShort(tx)
			return nil
		})
		if err == nil && s.opt.SyncFault != nil {
			err = s.opt.SyncFault()
		}
		written := err != nil && bad < 0 && s.visible(txid)
		mark := s.synced // moves when an empty commit confirms this one
		if written {
			s.unsynced = true
			s.stats.lastFailed.Store(true) // under fileMu: before any resync that clears it
		}
		s.fileMu.Unlock()
		if written {
			// bbolt wrote the meta page and its fdatasync failed (a
			// failing disk): every later transaction reads what this
			// one wrote, since bbolt reads its meta from the mapped
			// file, and the next commit that syncs makes it durable.
			// So the mirrors, the counts the next commit writes from
			// them and the hand-offs take it as committed; no caller
			// is told it is durable.
			s.apply(t)
			if len(t.hookEnts) > 0 && s.opt.OnHookReady != nil {
				s.opt.OnHookReady(t.hookEnterprises())
			}
			if len(t.replyEnts) > 0 && s.opt.OnReplyReady != nil {
				s.opt.OnReplyReady(t.replyEnterprises())
			}
			s.notify(t.ready, t.snapshot)
			s.handDue(t)
			s.stats.failedCommits.Add(1)
			s.log.Error("queue: commit written but not synced: its operations wait for the disk to confirm it", "ops", len(live), "wait", s.opt.SyncWait, "err", err)
			notSynced := fmt.Errorf("commit: %w: %w", ErrNotSynced, err)
			until := time.Now().Add(s.opt.SyncWait)
			s.fileMu.Lock()
			for i, o := range live {
				switch {
				case results[i] != nil:
					o.done <- results[i] // refused, nothing written: as true now as it would have been
				case s.synced != mark:
					o.done <- nil // another writer's empty commit confirmed it meanwhile
				case s.opt.SyncWait <= 0:
					o.done <- notSynced
				default:
					s.held = append(s.held, heldOp{o: o, until: until, err: notSynced})
				}
			}
			s.heldN.Store(int32(len(s.held)))
			s.fileMu.Unlock()
			return
		}
		if err == nil {
			if s.opt.OnCommit != nil {
				s.opt.OnCommit(time.Since(began), len(live))
			}
			s.apply(t)
			n := uint64(len(live))
			s.stats.lastFailed.Store(false)
			s.stats.txns.Add(1)
			s.stats.ops.Add(n)
			if n > s.stats.maxBatch.Load() {
				s.stats.maxBatch.Store(n) // only this goroutine stores
			}
			if len(t.hookEnts) > 0 && s.opt.OnHookReady != nil {
				s.opt.OnHookReady(t.hookEnterprises())
			}
			if len(t.replyEnts) > 0 && s.opt.OnReplyReady != nil {
				s.opt.OnReplyReady(t.replyEnterprises())
			}
			s.notify(t.ready, t.snapshot) // before the results: a caller that hears of its DLR's commit finds the callback done
			s.handDue(t)
			for i, o := range live {
				o.done <- results[i]
			}
			return
		}
		if bad < 0 {
			s.stats.lastFailed.Store(true)
			s.stats.failedCommits.Add(1)
			s.log.Error("queue: commit failed", "ops", len(live), "err", err)
			for _, o := range live {
				o.done <- fmt.Errorf("commit: %w", err)
			}
			return
		}
		// One operation failed hard: it alone fails, the others run again
		// in a fresh transaction (their closures are re-run from scratch).
		s.stats.rollbacks.Add(1)
		s.log.Error("queue: operation failed, batch retried without it", "err", badErr)
		live[bad].done <- badErr
		live = slices.Delete(live, bad, bad+1)
		results = results[:len(live)]
	}
}

func runOp(o *op, t *txn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
		}
	}()
	return o.fn(t)
}

// apply folds a committed transaction's deltas into the in-memory mirrors.
func (s *Store) apply(t *txn) {
	if len(t.usageNow) == 0 && t.counts == [stateEnd]int{} && len(t.orphanDelta) == 0 && len(t.dueDelta) == 0 {
		return
	}
	s.memMu.Lock()
	defer s.memMu.Unlock()
	for _, d := range t.orphanDelta {
		if s.orphanN[d.upstream] += d.n; s.orphanN[d.upstream] <= 0 {
			delete(s.orphanN, d.upstream)
		}
	}
	for _, d := range t.dueDelta {
		if s.dueN[d.upstream] += d.n; s.dueN[d.upstream] <= 0 {
			delete(s.dueN, d.upstream)
		}
	}
	for key, e := range t.usageNow {
		if e.now != e.stored {
			s.usage[key] = e.now // as putUsage wrote it
		}
	}
	for st, n := range t.counts {
		s.counts[st] += n
	}
}

// handDue hands the parts a transaction stored due at once to the
// OnDue callback, each message a copy of its own. The copy shares the
// part bodies and aliases with the stored message (and with Enqueue's
// caller): nothing writes into those after the commit.
func (s *Store) handDue(t *txn) {
	fn := s.onDue.Load()
	if fn == nil || len(t.fresh) == 0 {
		return
	}
	now := time.Now()
	var jobs []Job
	for _, m := range t.fresh {
		var c *Message
		for j := range m.Parts {
			if m.Parts[j].DueAt.After(now) {
				continue
			}
			if c == nil {
				cp := *m
				cp.Parts = slices.Clone(m.Parts)
				c = &cp
			}
			jobs = append(jobs, Job{Key: Key{m.ID, uint16(j)}, Msg: c, Part: c.Parts[j]})
		}
	}
	if len(jobs) > 0 {
		(*fn)(jobs, t.snapshot)
	}
}

// notify calls OnDLRReady once per account with the messages whose
// receipts the commit queued, in the order they were queued.
func (s *Store) notify(ready []*Message, at Snapshot) {
	if s.opt.OnDLRReady == nil || len(ready) == 0 {
		return
	}
	if len(ready) == 1 {
		s.opt.OnDLRReady(ready[0].Account, ready, at)
		return
	}
	byAccount := make(map[string][]*Message)
	var accounts []string
	for _, m := range ready {
		if byAccount[m.Account] == nil {
			accounts = append(accounts, m.Account)
		}
		byAccount[m.Account] = append(byAccount[m.Account], m)
	}
	slices.Sort(accounts)
	for _, a := range accounts {
		s.opt.OnDLRReady(a, byAccount[a], at)
	}
}

// Usage returns the segment counters of enterprise for month ("2006-01",
// see BillingMonth): reserved = accepted with no final outcome yet, charged
// = delivered (billable). It reads the in-memory mirror of the committed
// state: no disk access.
func (s *Store) Usage(enterprise, month string) (reserved, charged int64) {
	s.memMu.RLock()
	u := s.usage[usageKey(enterprise, month)]
	s.memMu.RUnlock()
	return u.Reserved, u.Charged
}

// DueUpstreams names the upstreams that have parts due (DueOf > 0), in
// no order: those of the configuration, and any a message was routed to
// before it left the configuration.
func (s *Store) DueUpstreams() []string {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	var out []string
	for up, n := range s.dueN {
		if n > 0 {
			out = append(out, up)
		}
	}
	return out
}

// DueOf is the number of parts due (waiting for the SMSC to accept
// them, now or later) routed to upstream, from in-memory counters kept
// with each commit.
func (s *Store) DueOf(upstream string) int {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	return s.dueN[upstream]
}

// Counts returns the number of parts in each state, from in-memory counters
// kept with each commit. Every valid state is present.
func (s *Store) Counts() map[State]int {
	out := make(map[State]int, len(States))
	s.memMu.RLock()
	for _, st := range States {
		out[st] = s.counts[st]
	}
	s.memMu.RUnlock()
	return out
}

// OrphanCounts returns how many receipts that matched no part are kept,
// per upstream (Options.MaxOrphans bounds each).
func (s *Store) OrphanCounts() map[string]int {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	return maps.Clone(s.orphanN)
}

// view runs a read-only transaction, mapping a closed store or database to
// ErrClosed.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// NodeID is Options.NodeID: the cluster node whose ids this store gives
// (0: a single node).
func (s *Store) NodeID() uint16 { return s.opt.NodeID }

// Path is the path of the store's bbolt file.
func (s *Store) Path() string { return s.db.Path() }

// Writable reports whether the last commit succeeded (true before the
// first): /readyz turns false while the disk refuses writes, and the
// sender holds back new submissions (their outcomes could not be
// recorded). Only a commit makes it true again: see Probe.
func (s *Store) Writable() bool { return !s.stats.lastFailed.Load() }

// Probe commits a write transaction that changes nothing, through the
// commit loop like any write, so that Writable turns true again once the
// disk takes writes even when nothing else is written. It returns the
// commit's error. bbolt still writes its meta page: an empty commit can
// succeed on a disk too full for a real change, so a caller that resumes
// on it must expect its next writes to fail again.
func (s *Store) Probe(ctx context.Context) error {
	return s.exec(ctx, func(*txn) error { return nil })
}

package policy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names: everything of this package lives under "policy_" buckets of
// the daemon's bbolt file.
var (
	bucketMeta        = []byte("policy_meta")
	bucketEnterprises = []byte("policy_enterprises") // code → JSON Enterprise
	bucketUsers       = []byte("policy_users")       // system_id → JSON userRec
	bucketWhitelist   = []byte("policy_whitelist")   // code → bucket: E.164 → state byte + JSON wlMeta
	bucketOverrides   = []byte("policy_overrides")   // prefix → JSON Override
	keySchema         = []byte("schema")
)

const schemaVersion = 1

// StoreOptions configure a Store. The zero value is production-ready.
type StoreOptions struct {
	Classifier      *Classifier  // nil: NewClassifier()
	Packages        PackageTable // valid Enterprise.Package values; nil: DefaultPackages()
	BcryptCost      int          // 0: DefaultBcryptCost; tests use bcrypt.MinCost (4)
	AuthConcurrency int          // concurrent bcrypt operations; 0: max(1, GOMAXPROCS/2)
	MaxImportRows   int          // 0: 100,000 rows per whitelist import
	// MaxWhitelist bounds an enterprise's whitelist entries in any state,
	// MaxPendingWhitelist its pending ones (0: DefaultMaxWhitelist,
	// DefaultMaxPendingWhitelist): see AddWhitelist.
	MaxWhitelist        int
	MaxPendingWhitelist int
	// MaxOptOuts bounds the numbers an enterprise puts on its opt-out
	// list itself (0: DefaultMaxOptOuts): see AddOptOuts. Replies of TD
	// are never refused.
	MaxOptOuts int
	Now        func() time.Time // nil: time.Now
	Rand       io.Reader        // nil: crypto/rand.Reader
	// Shared, when set, makes the policy buckets shared state of a
	// cluster (cluster.Replica implements it): every write runs through
	// Shared.Update instead of db.Update, and the snapshot is rebuilt by
	// the OnChange hook from what was applied to the local file, whichever
	// node wrote it. nil: single node, plain db.Update (see Committer).
	Shared Committer
	// Write, if set, runs every write to the local file without Shared
	// instead of db.Update: the daemon's is the queue's
	// (queue.Store.Update), which the writers of the one state file go
	// through so that none writes a page after a commit whose sync
	// failed before the disk has confirmed one again. A write it fails
	// after fn succeeded may still be what the file shows (written, not
	// synced): the snapshot is then reloaded from the file.
	Write func(ctx context.Context, fn func(tx *bolt.Tx) error) error
}

// Committer sends writes of the policy buckets elsewhere before they
// reach the local file (cluster mode; cluster.Replica implements it).
//
// Update runs fn in a read-write transaction of the file, publishes what
// it changed and returns once the local file — and the OnChange hooks —
// reflect the write (read-your-writes). fn may run more than once and must
// be idempotent; an error of fn is returned as is and nothing is written.
//
// OnChange registers a hook called after every change applied to the
// local file, this node's writes included, with a read transaction of the
// applied state and the changed paths: each a bucket path from the top
// level followed by the key put or deleted (or the bucket path alone for a
// bucket created, deleted or resequenced); nil means anything may have
// changed. Hooks run one at a time, never inside Update's fn.
type Committer interface {
	Update(ctx context.Context, fn func(tx *bolt.Tx) error) error
	OnChange(fn func(tx *bolt.Tx, changed [][][]byte))
}

// local runs fn in a read-write transaction of the local file: through
// opts.Write if set, else db.Update. fnFailed reports that the error is
// fn's own (nothing written); any other error may leave fn's writes in
// the file (see StoreOptions.Write).
func (s *Store) local(fn func(tx *bolt.Tx) error) (fnFailed bool, err error) {
	wrapped := func(tx *bolt.Tx) error {
		err := fn(tx)
		fnFailed = err != nil
		return err
	}
	if s.opts.Write == nil {
		err = s.db.Update(wrapped) // before fnFailed is read: it sets it
		return fnFailed, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	err = s.opts.Write(ctx, wrapped)
	if err != nil && !fnFailed {
		err = fmt.Errorf("policy: %w", err)
	}
	return fnFailed, err
}

// sharedTimeout bounds one write through StoreOptions.Shared (the
// cluster's etcd unreachable: the admin call fails rather than hang).
const sharedTimeout = 30 * time.Second

// Store holds enterprises, users, whitelists and number overrides in bbolt.
// Writes are rare admin operations, one db.Update each. Reads used on the
// sending path (Lookup, Allowed, Authenticate, AuthenticateAPIKey) never touch
// the file: they read an immutable in-memory snapshot, replaced atomically
// after every committed write (copy-on-write: the enterprises and whitelists a
// write did not touch are shared between snapshots).
type Store struct {
	db    *bolt.DB
	cls   *Classifier
	opts  StoreOptions
	mu    sync.Mutex // serialises writes and the publication of their snapshot
	pubMu sync.Mutex // with opts.Shared: serialises the publications of the hook and of OpenStore
	snap  atomic.Pointer[snapshot]
	// classChanged is when what reads a number into its enterprise's
	// scope last changed here (Unix ns): the number overrides, or the
	// start, which may bring another home province (policy.home_province)
	// or number table. A message accepted before it has its number
	// classified again when its turn comes (StopReason): a number ported
	// (携号转网) meanwhile, or of the old home province, may be out of its
	// enterprise's scope now.
	classChanged atomic.Int64
	dummy        []byte // bcrypt hash compared against for unknown system_ids
	sem          chan struct{}
}

// OpenStore opens (creating the buckets if needed) the policy data in db and
// loads the in-memory snapshot. The caller owns db.
func OpenStore(db *bolt.DB, opts StoreOptions) (*Store, error) {
	if opts.Packages == nil {
		opts.Packages = DefaultPackages()
	}
	if err := opts.Packages.Validate(); err != nil {
		return nil, err
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = DefaultBcryptCost
	}
	if opts.BcryptCost < MinBcryptCost || opts.BcryptCost > MaxBcryptCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d: %d–%d", ErrInvalid, opts.BcryptCost, MinBcryptCost, MaxBcryptCost)
	}
	if opts.AuthConcurrency <= 0 {
		opts.AuthConcurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opts.MaxImportRows <= 0 {
		opts.MaxImportRows = 100_000
	}
	if opts.MaxWhitelist <= 0 {
		opts.MaxWhitelist = DefaultMaxWhitelist
	}
	if opts.MaxPendingWhitelist <= 0 {
		opts.MaxPendingWhitelist = DefaultMaxPendingWhitelist
	}
	if opts.MaxOptOuts <= 0 {
		opts.MaxOptOuts = DefaultMaxOptOuts
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Classifier == nil {
		c, err := NewClassifier()
		if err != nil {
			return nil, err
		}
		opts.Classifier = c
	}
	s := &Store{db: db, cls: opts.Classifier, opts: opts, sem: make(chan struct{}, opts.AuthConcurrency)}
	dummy, err := dummyHash(opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	s.dummy = dummy

	if opts.Shared != nil {
		opts.Shared.OnChange(s.applyShared) // before anything is loaded: see applyShared
	}
	err = s.write(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 1 || v[0] > schemaVersion {
				return fmt.Errorf("policy: data schema %v is newer than this binary (%d)", v, schemaVersion)
			}
		} else if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketEnterprises, bucketUsers, bucketWhitelist, bucketOverrides,
			bucketSignatures, bucketOptOuts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return createApplicationBuckets(tx)
	})
	if err != nil {
		return nil, dbErr(err)
	}
	// The hook may run from now on: it publishes nothing until the first
	// snapshot is stored, and a change it skipped is in what View reads.
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if err := s.reload(); err != nil {
		return nil, dbErr(err)
	}
	return s, nil
}

// write runs fn in a read-write transaction: db.Update, or through
// opts.Shared in cluster mode (where fn may run more than once).
func (s *Store) write(fn func(tx *bolt.Tx) error) error {
	if s.opts.Shared == nil {
		_, err := s.local(fn)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return s.opts.Shared.Update(ctx, fn)
}

// Classifier returns the store's classifier.
func (s *Store) Classifier() *Classifier { return s.cls }

// Packages returns the package table enterprises are validated against.
func (s *Store) Packages() PackageTable { return s.opts.Packages }

func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Truncate(time.Second) }

// pageLimit is a page size asked for, bounded: DefaultPageSize for none,
// at most MaxPageSize.
func pageLimit(limit int) int {
	if limit <= 0 {
		return DefaultPageSize
	}
	return min(limit, MaxPageSize)
}

// seekAfter positions c at the first key after the key after, or at the
// first key when after is "" (paging by the last key of the page before).
func seekAfter(c *bolt.Cursor, after string) (k, v []byte) {
	if after == "" {
		return c.First()
	}
	k, v = c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	return k, v
}

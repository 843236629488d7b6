package policy

import (
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
	"golang.org/x/crypto/bcrypt"
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
	Classifier      *Classifier      // nil: NewClassifier()
	Packages        PackageTable     // valid Enterprise.Package values; nil: DefaultPackages()
	BcryptCost      int              // 0: DefaultBcryptCost; tests use bcrypt.MinCost (4)
	AuthConcurrency int              // concurrent bcrypt operations; 0: max(1, GOMAXPROCS/2)
	MaxImportRows   int              // 0: 100,000 rows per whitelist import
	Now             func() time.Time // nil: time.Now
	Rand            io.Reader        // nil: crypto/rand.Reader
}

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
	snap  atomic.Pointer[snapshot]
	dummy []byte // bcrypt hash compared against for unknown system_ids
	sem   chan struct{}
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
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d", ErrInvalid, opts.BcryptCost)
	}
	if opts.AuthConcurrency <= 0 {
		opts.AuthConcurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opts.MaxImportRows <= 0 {
		opts.MaxImportRows = 100_000
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
	dummy, err := bcrypt.GenerateFromPassword([]byte("dummy-password"), opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	s.dummy = dummy

	var snap *snapshot
	var ovs []Override
	err = db.Update(func(tx *bolt.Tx) error {
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
		if err := createApplicationBuckets(tx); err != nil {
			return err
		}
		snap, err = loadAll(tx)
		if err != nil {
			return err
		}
		ovs, err = loadOverrides(tx)
		return err
	})
	if err != nil {
		return nil, dbErr(err)
	}
	if err := s.cls.SetOverrides(ovs); err != nil {
		return nil, fmt.Errorf("policy: stored overrides: %w", err)
	}
	s.snap.Store(snap)
	return s, nil
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

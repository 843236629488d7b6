package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSharedFile runs a Store made by New on a file from OpenDB beside a
// peer store that keeps its own bucket in the same file, as the daemon does
// with the policy package: their writes interleave, the Store's Close leaves
// the file open for the peer (the Store itself then answers ErrClosed), and
// the file holds both after a reopen.
func TestSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qxtd.db")
	db, s := openShared(t, path)
	peer := []byte("policy_peer")
	var wg sync.WaitGroup
	var ids [50]uint64
	wg.Go(func() {
		for i := range ids {
			m := msg("alice", "13800138000", 1)
			if err := s.Enqueue(bg, m); err != nil {
				t.Error(err)
				return
			}
			ids[i] = m.ID
		}
	})
	wg.Go(func() {
		for i := range 50 {
			err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(peer)
				if err != nil {
					return err
				}
				return b.Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ids[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(peer).Put([]byte("after"), []byte("v")) }); err != nil {
		t.Fatalf("the peer cannot write after the store's Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r := openStoreAt(t, path, Options{NoSync: true})
	for _, id := range ids {
		if _, err := r.Get(id); err != nil {
			t.Fatalf("message %d after reopen: %v", id, err)
		}
	}
	err := r.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(peer).Stats().KeyN; n != 51 {
			return fmt.Errorf("peer bucket: %d keys, want 51", n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestVerifyBackup: a backup of a store with traffic passes; a cut-short
// copy, bytes that are not bbolt, a bbolt file of something else, a copy
// with a broken invariant and a file held by a running store all fail, each
// with an error that says which.
func TestVerifyBackup(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	if err := s.db.Update(func(tx *bolt.Tx) error { // a peer's bucket: part of the backup
		b, err := tx.CreateBucketIfNotExists([]byte("policy_test"))
		if err != nil {
			return err
		}
		return b.Put([]byte("G1"), []byte(`{"code":"G1"}`))
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		m := msg("alice", fmt.Sprintf("138%08d", i), 1+i%3)
		s.enqueue(m)
		if i%2 == 0 {
			id := fmt.Sprintf("smsc-%d", i)
			s.submitted(Key{m.ID, 0}, id)
			if i%4 == 0 {
				s.dlr(m.Upstream, id, StateDelivered)
			}
		}
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	f, err := os.Create(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := VerifyBackup(good); err != nil {
		t.Fatalf("good backup: %v", err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	write := func(b []byte) func(string) error {
		return func(path string) error { return os.WriteFile(path, b, 0o600) }
	}
	withBolt := func(src []byte, fn func(*bolt.Tx) error) func(string) error {
		return func(path string) error {
			if src != nil {
				if err := os.WriteFile(path, src, 0o600); err != nil {
					return err
				}
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				return err
			}
			if err := db.Update(fn); err != nil {
				db.Close()
				return err
			}
			return db.Close()
		}
	}
	for _, tc := range []struct {
		name string
		make func(path string) error // nil: no file
		want error
	}{
		{"truncated", write(data[:len(data)/2]), ErrCorrupt},
		{"garbage", write([]byte(strings.Repeat("not a database ", 4096))), ErrNotStore},
		{"shorter than two pages", write([]byte("qxtd")), ErrNotStore},
		{"unrelated bbolt file", withBolt(nil, func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("msgs"))
			return err
		}), ErrNotStore},
		{"broken invariant", withBolt(data, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketDue).Put(timeKey(time.Unix(1, 0), Key{1 << 40, 0}), nil)
		}), ErrCorrupt},
		// The counts Open trusts, off from the records (a commit whose
		// sync failed, before 2026-12-06): caught before a restore.
		{"stored state counts off", withBolt(data, func(tx *bolt.Tx) error {
			c, _, err := storedCounts(tx)
			if err != nil {
				return err
			}
			c[StateAccepted]++
			return tx.Bucket(bucketMeta).Put(keyCounts, encodeCounts(c))
		}), ErrCorrupt},
		{"stored due counts off", withBolt(data, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyDueCounts, encodeDueCounts(map[string]int{"nowhere": 3}))
		}), ErrCorrupt},
		{"missing", nil, fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "backup.db")
			if tc.make != nil {
				if err := tc.make(path); err != nil {
					t.Fatal(err)
				}
			}
			err := VerifyBackup(path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}

	// A file a store holds is refused (after OpenTimeout), not read.
	if err := VerifyBackup(s.Path()); !errors.Is(err, ErrLocked) {
		t.Errorf("file of a running store: %v, want ErrLocked", err)
	}
}

// TestOpenLocked: a store file another process (here another open of it)
// holds is refused after OpenTimeout with ErrLocked, which says why,
// where bbolt said "timeout".
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{OpenTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second open: %v, want ErrLocked naming %s", err, path)
	}
	t.Log(err)
}

package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSharedFile runs a Store made by New on a file from OpenDB beside a
// peer store that keeps its own bucket in the same file, as the daemon does
// with the policy package: their writes interleave, the Store's Close leaves
// the file open for the peer (the Store itself then answers ErrClosed), and
// the file holds both after a reopen.
func TestSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qxtd.db")
	db, err := OpenDB(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
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
	err = r.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(peer).Stats().KeyN; n != 51 {
			return fmt.Errorf("peer bucket: %d keys, want 51", n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

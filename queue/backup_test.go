package queue

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBackupDuringWrites takes a backup while writers keep committing: the
// copy opens as a store, passes Check, holds every message acknowledged
// before the backup started, and the sibling buckets of the same file.
func TestBackupDuringWrites(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("policy_test"))
		if err != nil {
			return err
		}
		return b.Put([]byte("G1"), []byte(`{"code":"G1"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   []uint64 // ids whose Enqueue returned, in return order
		stop    atomic.Bool
		wg      sync.WaitGroup
		running = make(chan struct{}) // closed at the 200th acknowledgement
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				m := exportMsg("G1", "alice", time.Now(), 1+i%3)
				if err := s.Enqueue(bg, m); err != nil {
					t.Error(err)
					return
				}
				if i%4 == 0 { // some traffic past Enqueue too
					id := fmt.Sprintf("w%d-%d", w, i)
					if err := s.Submitted(bg, Key{m.ID, 0}, id, time.Now()); err != nil {
						t.Error(err)
						return
					}
					if _, err := s.ApplyDLR(bg, DLR{Upstream: m.Upstream, SMSCID: id, State: StateDelivered}); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				acked = append(acked, m.ID)
				if len(acked) == 200 {
					close(running)
				}
				mu.Unlock()
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()
	select { // back up while the writers run
	case <-running:
	case <-writersDone:
		t.Fatal("writers stopped before the backup")
	}
	mu.Lock()
	before := append([]uint64(nil), acked...)
	mu.Unlock()
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	n, err := s.Backup(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	<-writersDone
	if fi, _ := os.Stat(path); fi.Size() != n || n == 0 {
		t.Errorf("backup wrote %d bytes, file has %d", n, fi.Size())
	}

	if err := VerifyBackup(path); err != nil {
		t.Fatalf("verify the backup: %v", err)
	}
	c, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(); err != nil {
		t.Fatalf("check of the backup: %v", err)
	}
	for _, id := range before {
		if _, err := c.Get(id); err != nil {
			t.Fatalf("message %d acknowledged before the backup is missing: %v", id, err)
		}
	}
	err = c.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("policy_test")); b == nil || string(b.Get([]byte("G1"))) != `{"code":"G1"}` {
			return errors.New("policy_test bucket missing from the backup")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("backup of %d bytes holds %d messages acknowledged before it started", n, len(before))
}

func TestBackupClosed(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "q.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Backup(discard{}); !errors.Is(err, ErrClosed) {
		t.Errorf("backup of a closed store: %v", err)
	}
}

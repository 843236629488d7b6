package queue

import (
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
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
// and a commit that must grow the file past bbolt's memory map waits for
// the backup to end. Do not hand it a slow network peer; spool to a file
// first (as the HTTP API does).
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("queue: backup: %w", err)
	}
	return n, nil
}

package queue

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Persisted state counts. The store keeps the number of parts in each
// state in memory (Counts, qxtd_queue_segments); the meta bucket keeps
// them too, written in the same transaction as every change of them. So
// opening a store reads one key instead of decoding every message (a
// million queued messages took about 1.5 s to count). A file without the
// key — written before it existed, or restored from such a backup — is
// counted once by a scan, and the key written then. Check compares the
// key with the records.
//
// A file written by an older qxtd, which does not maintain the key, after
// this one wrote it would be read with stale counts; Check reports the
// mismatch, and deleting the key makes the next open count again.

var (
	bucketMeta = []byte("meta")
	keyCounts  = []byte("counts")
)

const countsVersion = 1

func encodeCounts(c [stateEnd]int) []byte {
	b := make([]byte, 1, 1+int(stateEnd)*binary.MaxVarintLen64)
	b[0] = countsVersion
	for _, n := range c {
		b = binary.AppendUvarint(b, uint64(n))
	}
	return b
}

func decodeCounts(b []byte) ([stateEnd]int, error) {
	var c [stateEnd]int
	if len(b) == 0 || b[0] != countsVersion {
		return c, fmt.Errorf("%w: counts: unknown version", ErrCorrupt)
	}
	b = b[1:]
	for i := range c {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 1<<62 {
			return c, fmt.Errorf("%w: counts: bad value", ErrCorrupt)
		}
		c[i] = int(n)
		b = b[k:]
	}
	if len(b) != 0 {
		return c, fmt.Errorf("%w: counts: trailing bytes", ErrCorrupt)
	}
	return c, nil
}

// putCounts writes the counts as they are once t commits: the store's
// (the commit goroutine is their only writer) plus t's changes.
func (t *txn) putCounts() error {
	c := t.s.counts
	for st, n := range t.counts {
		c[st] += n
	}
	return t.tx.Bucket(bucketMeta).Put(keyCounts, encodeCounts(c))
}

// storedCounts reads the persisted counts of tx; ok is false when there
// are none.
func storedCounts(tx *bolt.Tx) (c [stateEnd]int, ok bool, err error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return c, false, nil
	}
	v := b.Get(keyCounts)
	if v == nil {
		return c, false, nil
	}
	c, err = decodeCounts(v)
	return c, err == nil, err
}

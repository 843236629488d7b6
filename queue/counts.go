package queue

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

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

// Persisted counts of the parts due per upstream (DueByUpstream,
// qxtd_upstream_queued_segments): the udue keys under each upstream,
// kept like the state counts, in the same transaction as every change of
// them. A file without the key, or whose udue keys Open builds again, is
// counted once from the udue keys and the key written then.
var keyDueCounts = []byte("duecounts")

const dueCountsVersion = 1

// encodeDueCounts is the upstreams of c, in name order, each with its
// count; those at 0 or below are left out.
func encodeDueCounts(c map[string]int) []byte {
	b := []byte{dueCountsVersion}
	for _, up := range slices.Sorted(maps.Keys(c)) {
		if c[up] <= 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(up)))
		b = append(b, up...)
		b = binary.AppendUvarint(b, uint64(c[up]))
	}
	return b
}

func decodeDueCounts(b []byte) (map[string]int, error) {
	if len(b) == 0 || b[0] != dueCountsVersion {
		return nil, fmt.Errorf("%w: due counts: unknown version", ErrCorrupt)
	}
	c := map[string]int{}
	for b = b[1:]; len(b) > 0; {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > maxField || uint64(len(b)-k) < l {
			return nil, fmt.Errorf("%w: due counts: bad name", ErrCorrupt)
		}
		up := string(b[k : k+int(l)])
		b = b[k+int(l):]
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > 1<<62 {
			return nil, fmt.Errorf("%w: due counts: bad value", ErrCorrupt)
		}
		c[up] = int(n)
		b = b[k:]
	}
	return c, nil
}

// putDueCounts writes the due counts as they are once t commits.
func (t *txn) putDueCounts() error {
	t.s.memMu.RLock()
	c := maps.Clone(t.s.dueN)
	t.s.memMu.RUnlock()
	if c == nil {
		c = map[string]int{}
	}
	for _, d := range t.dueDelta {
		c[d.upstream] += d.n
	}
	return t.tx.Bucket(bucketMeta).Put(keyDueCounts, encodeDueCounts(c))
}

// countUDue counts the udue keys of tx per upstream.
func countUDue(tx *bolt.Tx) (map[string]int, error) {
	c := map[string]int{}
	cur := tx.Bucket(bucketUDue).Cursor()
	for kb, _ := cur.First(); kb != nil; kb, _ = cur.Next() {
		up, _, _, _, ok := splitUdueKey(kb)
		if !ok {
			return nil, fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
		}
		c[string(up)]++
	}
	return c, nil
}

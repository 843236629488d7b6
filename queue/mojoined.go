package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Replies joined lately. The SMSC sends a part again when our answer to
// it was lost (a dropped connection, a crash after the commit). Sent
// again after its reply was joined, the last part would start a new
// group and, at the timeout, become a reply of its own: the fragment the
// enterprise already has, again. StoreJoinedMO therefore leaves a marker
// of the group it joined, in its commit, naming each part by a hash of
// its data; a part of that group with the same data is taken as sent
// again (ErrMOPartJoined: answer OK, store nothing). A marker lives as
// long as the group could have waited (the gateway purges those older
// than its reassembly timeout); a part with other data (a new reply that
// reuses the reference) is stored as usual.
//
//	mojoined  upstream 0x00 source 0x00 dest 0x00 ref (2 BE) total (1) 0x00
//	          → version | joined at (Unix ns, 8 BE) | per part 1..total: FNV-64a of its data (8 BE; 0: the part never came)

var bucketMOJoined = []byte("mojoined")

const moJoinedVersion = 1

// ErrMOPartJoined: the part is one of a reply joined lately, with the
// same data: the SMSC sent it again. Nothing was written.
var ErrMOPartJoined = errors.New("reply part already joined into its reply")

func partHash(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1 // 0 names a part that never came
}

// putJoined writes the marker of g, joined at at from parts.
func (t *txn) putJoined(g MOPartGroup, parts []*MOPart, at time.Time) error {
	v := make([]byte, 9+8*int(g.Total))
	v[0] = moJoinedVersion
	binary.BigEndian.PutUint64(v[1:], uint64(at.UnixNano()))
	for _, p := range parts {
		binary.BigEndian.PutUint64(v[9+8*(int(p.Seq)-1):], partHash(p.Data))
	}
	return t.tx.Bucket(bucketMOJoined).Put(moPartGroupPrefix(g), v)
}

// joinedAgain reports whether p is a part, with the same data, of a
// reply whose marker is in b.
func joinedAgain(b *bolt.Bucket, p *MOPart) bool {
	v := b.Get(moPartGroupPrefix(p.MOPartGroup))
	at := 9 + 8*(int(p.Seq)-1)
	if len(v) != 9+8*int(p.Total) || v[0] != moJoinedVersion || at+8 > len(v) {
		return false
	}
	return binary.BigEndian.Uint64(v[at:]) == partHash(p.Data)
}

// PurgeJoinedMOParts deletes up to limit markers of replies joined before
// cutoff and returns how many it deleted.
func (s *Store) PurgeJoinedMOParts(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	n := 0
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		b := t.tx.Bucket(bucketMOJoined)
		var dead [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(dead) < limit; k, v = c.Next() {
			if len(v) < 9 || int64(binary.BigEndian.Uint64(v[1:])) < cutoff.UnixNano() {
				dead = append(dead, append([]byte(nil), k...))
			}
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge joined mo parts: %w", err)
	}
	return n, nil
}

package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Orphans in cluster mode. Nodes share the carrier binds, so an SMSC
// sends a receipt on any node's bind; one whose SMSC id was recorded by
// another node is stored here as an orphan (ApplyDLR) like one that beat
// its submit_sm_resp. The gateway lists them (Orphans), offers them to the
// other nodes, which match them with ApplyDLRIfKnown (never orphaning
// them again), and deletes those a node took (DeleteOrphans). A local
// Submitted still takes a local orphan first (takeOrphan), as on a single
// node; PurgeOrphans still drops what nobody claimed.

// OrphanDLR is a stored orphan receipt, as Orphans lists it.
type OrphanDLR struct {
	// Key names the orphan (upstream 0x00 canonical SMSC id); pass the
	// OrphanDLR back to DeleteOrphans.
	Key        []byte
	DLR        DLR
	ReceivedAt time.Time
}

// PeerClockSlack is how much later than a peer's receipt (DLR.DoneAt, by
// the peer's clock) ApplyDLRIfKnown still takes a part to have been
// submitted: the nodes' clocks may differ by this much.
const PeerClockSlack = time.Minute

// ApplyDLRIfKnown is ApplyDLRSubmitted for a receipt that another node
// received and still keeps as its orphan: a receipt no part here has the
// id of is Unmatched and nothing is stored. Matched and Duplicate are as
// for ApplyDLR. A part submitted more than PeerClockSlack after d.DoneAt
// does not match: the receipt is for an earlier message whose id the SMSC
// reused (what Options.OrphanMaxAge guards against for local orphans).
func (s *Store) ApplyDLRIfKnown(ctx context.Context, d DLR) (Result, time.Time, error) {
	return s.applyDLR(ctx, d, false)
}

// Orphans lists up to limit stored orphan receipts with a key after after
// (nil: from the first), in key order, and the key to pass as after for
// the next page (nil when there is none). One read-only transaction per
// call; the result is copied out of it.
func (s *Store) Orphans(ctx context.Context, after []byte, limit int) ([]OrphanDLR, []byte, error) {
	if limit <= 0 {
		return nil, nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var out []OrphanDLR
	var next []byte
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOrphan).Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = bytes.Clone(out[len(out)-1].Key)
				break
			}
			o, err := decodeOrphan(v)
			if err != nil {
				continue // Check reports it; PurgeOrphans drops it
			}
			out = append(out, OrphanDLR{Key: bytes.Clone(k), DLR: o.DLR, ReceivedAt: o.ReceivedAt})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: orphans: %w", err)
	}
	return out, next, nil
}

// DeleteOrphans deletes the listed orphans that another node matched,
// and returns how many it deleted. One stored again since it was listed
// (the SMSC repeated the receipt: a newer ReceivedAt) or already taken by
// a local Submitted is left as it is. Idempotent.
func (s *Store) DeleteOrphans(ctx context.Context, os []OrphanDLR) (int, error) {
	var n int
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		for _, o := range os {
			v := t.orphan.Get(o.Key)
			if v == nil {
				continue
			}
			if cur, err := decodeOrphan(v); err == nil && !cur.ReceivedAt.Equal(o.ReceivedAt) {
				continue
			}
			if err := t.orphan.Delete(o.Key); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: delete orphans: %w", err)
	}
	return n, nil
}

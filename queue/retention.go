package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention batching: Purge reads candidates in read-only transactions of
// at most purgeScan messages and deletes at most purgeBatch messages per
// operation of the commit loop, so neither a long scan nor a long write
// holds up the hot path.
const (
	purgeBatch = 512
	purgeScan  = 4096
)

// purged counts, per enterprise and billing month, what Purge deleted:
// parts, and of them Delivered ones. Usage keeps those segments charged;
// Check adds Delivered to the records' count when it verifies usage.
type purged struct {
	Parts     int64
	Delivered int64
}

const (
	purgedVersion = 1
	purgedLen     = 1 + 8 + 8
)

func encodePurged(p purged) []byte {
	b := make([]byte, 0, purgedLen)
	b = append(b, purgedVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Parts))
	return binary.BigEndian.AppendUint64(b, uint64(p.Delivered))
}

func decodePurged(b []byte) (purged, error) {
	if len(b) != purgedLen || b[0] != purgedVersion {
		return purged{}, fmt.Errorf("%w: purged record of %d bytes", ErrCorrupt, len(b))
	}
	return purged{
		Parts:     int64(binary.BigEndian.Uint64(b[1:])),
		Delivered: int64(binary.BigEndian.Uint64(b[9:])),
	}, nil
}

// purgeable reports whether retention may delete m: every part final, its
// receipt forwarded to the ESME (or none requested), accepted before cutoff,
// and every part done before cutoff too (a message that became final
// recently, e.g. one scheduled long after its acceptance, stays for the
// incremental export: ExportFinal).
func purgeable(m *Message, cutoff time.Time) bool {
	if !m.Final() || !m.DLRForwarded || (m.ReceiptURL != "" && !m.ReceiptDone) || !m.AcceptedAt.Before(cutoff) {
		return false
	}
	for i := range m.Parts {
		if !m.Parts[i].DoneAt.Before(cutoff) {
			return false
		}
	}
	return true
}

// Purge deletes up to limit messages (limit <= 0: none) accepted before
// cutoff whose every part is final, with a DoneAt before cutoff too, and
// whose receipt was forwarded to the ESME (AckDLR) or not requested, with
// the final index keys and the SMSC id index keys of all their parts (SMSCID and DupSMSCIDs, where the index still names that part: an
// id the SMSC reused for a newer message keeps indexing the newer one). It
// returns how many messages it deleted.
//
// It walks the messages from the oldest id and stops at the first one
// accepted at or after cutoff (ids grow with acceptance time); older
// messages not yet purgeable (in flight, or their receipt not yet taken by
// the ESME) are skipped and purged by a later call. Deletions are
// committed in batches of at most 512 messages, each one operation of the
// commit loop; candidates are found in short read-only transactions and
// checked again inside the operation.
//
// Usage counters are not touched: the bill of a month stays right after
// its messages are gone. The purged bucket counts, per enterprise and
// month, the parts deleted and the delivered ones among them
// (UsageByMonth.PurgedCharged: how far the month's export now falls short
// of its bill). Counts drop by the parts deleted. A DLR that arrives later
// for a deleted SMSC id is stored as an orphan (and PurgeOrphans drops it);
// Get of a deleted id is ErrNotFound. The ref bucket (last concatenation
// reference per destination) is kept: it is one small key per recipient.
//
// Freed pages are reused by later writes, so under steady traffic with
// periodic purges the file stops growing (bbolt never shrinks the file).
// Call it from a background loop, e.g. hourly, with cutoff = now - the
// retention period; keep the period longer than the billing cycle and the
// time within which exports of a month are taken, and far longer than the
// validity plus receipt grace that ExpireSubmitted uses (so no part of a
// message accepted before cutoff still waits for its receipt).
//
// An SMSC id reused for a newer message indexes the newer one; when Purge
// deletes that newer message the key goes with it, so an older message
// still kept (e.g. its receipt never collected) no longer has its id
// indexed: a late DLR for the id is an orphan (it could not reach the
// older message before either). Check allows exactly that.
func (s *Store) Purge(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	total := 0
	var next uint64 // 0: from the oldest message
	for total < limit {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		ids, stop, err := s.purgeCandidates(&next, cutoff, min(purgeBatch, limit-total))
		if err != nil {
			return total, fmt.Errorf("queue: purge: %w", err)
		}
		if len(ids) > 0 {
			n, err := s.purgeIDs(ctx, ids, cutoff)
			total += n
			if err != nil {
				return total, fmt.Errorf("queue: purge: %w", err)
			}
		}
		if stop {
			break
		}
	}
	return total, nil
}

// purgeCandidates reads up to purgeScan messages from *next on and returns
// the ids of up to want purgeable ones, advancing *next past what it read.
// stop is true at the end of the bucket or at a message accepted at or
// after cutoff.
func (s *Store) purgeCandidates(next *uint64, cutoff time.Time, want int) (ids []uint64, stop bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMsg).Cursor()
		scanned := 0
		for k, v := c.Seek(msgKey(*next)); k != nil; k, v = c.Next() {
			if scanned >= purgeScan || len(ids) >= want {
				return nil
			}
			scanned++
			if len(k) != 8 {
				return fmt.Errorf("%w: message key %x", ErrCorrupt, k)
			}
			id := binary.BigEndian.Uint64(k)
			*next = id + 1
			m, err := DecodeMessage(v)
			if err != nil {
				s.log.Error("queue: purge skips a corrupt message (run Check)", "id", id, "err", err)
				continue
			}
			if !m.AcceptedAt.Before(cutoff) {
				stop = true
				return nil
			}
			if purgeable(m, cutoff) {
				ids = append(ids, id)
			}
		}
		stop = true
		return nil
	})
	return ids, stop, err
}

// purgeIDs deletes the messages ids that are still purgeable, in one
// operation of the commit loop.
func (s *Store) purgeIDs(ctx context.Context, ids []uint64, cutoff time.Time) (int, error) {
	var n int
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		pb := t.tx.Bucket(bucketPurged)
		add := make(map[string]purged)
		for _, id := range ids {
			key := msgKey(id)
			v := t.msg.Get(key)
			if v == nil {
				continue // purged meanwhile
			}
			m, err := DecodeMessage(v)
			if err != nil || !purgeable(m, cutoff) || t.dlrout().Get(dlroutKey(m.Account, m.ID)) != nil {
				continue
			}
			var p purged
			for i := range m.Parts {
				part := &m.Parts[i]
				ref := partRef(Key{m.ID, uint16(i)})
				for _, sid := range append([]string{part.SMSCID}, part.DupSMSCIDs...) {
					if validSMSCID(sid) != nil {
						continue // never indexed
					}
					sk := smscKey(m.Upstream, CanonicalSMSCID(sid))
					if bytes.Equal(t.smsc().Get(sk), ref) {
						if err := t.smsc().Delete(sk); err != nil {
							return err
						}
					}
				}
				if err := delFinal(t.tx, Key{m.ID, uint16(i)}); err != nil {
					return err
				}
				t.counts[part.State]--
				p.Parts++
				if part.State == StateDelivered {
					p.Delivered += m.PartWeight()
				}
			}
			if err := t.msg.Delete(key); err != nil {
				return err
			}
			// The part ids of a reassembled message go with it.
			ab := t.tx.Bucket(bucketAlias)
			for _, a := range m.Aliases {
				if bytes.Equal(ab.Get(msgKey(a)), key) {
					if err := ab.Delete(msgKey(a)); err != nil {
						return err
					}
				}
			}
			uk := usageKey(m.Enterprise, BillingMonth(m.AcceptedAt))
			a := add[uk]
			a.Parts += p.Parts
			a.Delivered += p.Delivered
			add[uk] = a
			n++
		}
		for uk, a := range add {
			var cur purged
			if v := pb.Get([]byte(uk)); v != nil {
				var err error
				if cur, err = decodePurged(v); err != nil {
					return fmt.Errorf("purged %q: %w", uk, err)
				}
			}
			cur.Parts += a.Parts
			cur.Delivered += a.Delivered
			if err := pb.Put([]byte(uk), encodePurged(cur)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

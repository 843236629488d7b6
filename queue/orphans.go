package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Orphans are receipts that matched no part when they came: they beat
// their submit_sm_resp (Submitted takes them), carry the id in another
// base than the submit_sm_resp did (MatchOrphans), or in cluster mode
// came to a node that did not submit their part (below).
//
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
// With convert the id's forms in the other bases are looked up too (see
// MatchOrphans): the node that keeps the orphan says when it is old
// enough for that.
func (s *Store) ApplyDLRIfKnown(ctx context.Context, d DLR, convert bool) (Result, time.Time, error) {
	return s.applyDLR(ctx, d, false, convert)
}

// MatchOrphans applies each of the listed orphans (as Orphans lists them)
// to the part whose SMSC id is the orphan's in another base — the decimal
// value of a hex id or the hex value of a decimal one, as smscCandidates
// orders them — and deletes it. It returns, per orphan, Matched, Duplicate
// (the part was already final) or Unmatched (no such part, or the orphan
// is gone or was stored again since it was listed: left as it is).
//
// ApplyDLR and Submitted match the id's own form only, because a receipt
// that beats its submit_sm_resp would otherwise be taken for an earlier
// message whose id is the same digits in the other base. So call this
// only for orphans old enough that the acceptance they could have beaten
// would be recorded by now (the gateway waits the upstream's resp_timeout).
// A part submitted more than Options.OrphanMaxAge after the receipt came
// does not match (the SMSC reused the id).
func (s *Store) MatchOrphans(ctx context.Context, os []OrphanDLR) ([]Result, error) {
	res := make([]Result, len(os))
	for i := range res {
		res[i] = Unmatched
	}
	cands := make([][]string, len(os)) // outside the commit loop, the one serial stage
	for i, o := range os {
		if c := smscCandidates(o.DLR.SMSCID); len(c) > 1 {
			cands[i] = c[1:]
		}
	}
	// A read first: an orphan none of whose converted forms is indexed
	// (in cluster mode, one another node may take) costs no commit.
	some := false
	err := s.view(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketSMSC)
		for i, o := range os {
			known := false
			for _, c := range cands[i] {
				if idx.Get(smscKey(o.DLR.Upstream, c)) != nil {
					known = true
					break
				}
			}
			if !known {
				cands[i] = nil
			}
			some = some || known
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: match orphans: %w", err)
	}
	if !some {
		return res, nil
	}
	err = s.exec(ctx, func(t *txn) error {
		for i, o := range os {
			res[i] = Unmatched
			if len(cands[i]) == 0 {
				continue
			}
			v := t.get(t.orphan(), o.Key)
			if v == nil {
				continue
			}
			if cur, err := decodeOrphan(v); err != nil || !cur.ReceivedAt.Equal(o.ReceivedAt) {
				continue
			}
			r, err := t.matchConverted(o, cands[i])
			if err != nil {
				return err
			}
			if res[i] = r; r == Unmatched {
				continue
			}
			if err := t.dropOrphan(o.Key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: match orphans: %w", err)
	}
	return res, nil
}

// matchConverted applies orphan o to the first part indexed under one of
// cands (its id in the other bases).
func (t *txn) matchConverted(o OrphanDLR, cands []string) (Result, error) {
	for _, c := range cands {
		v := t.get(t.smsc(), smscKey(o.DLR.Upstream, c))
		if v == nil {
			continue
		}
		k, ok := parsePartRef(v)
		if !ok {
			return 0, fmt.Errorf("%w: smsc index %q: bad value", ErrCorrupt, c)
		}
		m, p, err := t.getPart(k)
		if err != nil {
			return 0, fmt.Errorf("smsc index %q points to a missing part: %w", c, err)
		}
		if p.SubmittedAt.After(o.ReceivedAt.Add(t.s.opt.OrphanMaxAge)) {
			continue // a later message under a reused id
		}
		if p.State.Final() {
			return Duplicate, nil
		}
		if err := t.setFinal(m, k.Part, o.DLR.State, o.DLR.DoneAt, o.DLR.ErrCode); err != nil {
			return 0, err
		}
		return Matched, t.putMsg(m)
	}
	return Unmatched, nil
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
			v := t.orphan().Get(o.Key)
			if v == nil {
				continue
			}
			if cur, err := decodeOrphan(v); err == nil && !cur.ReceivedAt.Equal(o.ReceivedAt) {
				continue
			}
			if err := t.dropOrphan(o.Key); err != nil {
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

package queue

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Settling a complete or expired group of parts: the message and the
// deletion of its parts in one transaction (fragments.go has the model).

// takeGroup checks that the pending parts of g are exactly ids (in
// sequence order) — and all of them when complete — and deletes them,
// their fragid keys and their counts (account, enterprise, totals). It
// returns the parts. A group that differs is a soft ErrFragmentsGone,
// with nothing written.
func (t *txn) takeGroup(g FragmentGroup, ids []uint64, complete bool) ([]*Fragment, error) {
	fb := t.tx.Bucket(bucketFrag)
	frags, err := readGroup(fb, g)
	if err != nil {
		return nil, err
	}
	same := len(frags) == len(ids) && len(ids) > 0 && (!complete || len(frags) == int(g.Total))
	for i := 0; same && i < len(frags); i++ {
		same = frags[i].ID == ids[i]
	}
	if !same {
		return nil, soft(fmt.Errorf("%w: %s", ErrFragmentsGone, g))
	}
	if err := t.upgradeFragN(); err != nil {
		return nil, err
	}
	groups := int64(-1)
	for _, f := range frags {
		if err := fb.Delete(fragKey(g, f.Seq)); err != nil {
			return nil, err
		}
		if err := t.tx.Bucket(bucketFragID).Delete(msgKey(f.ID)); err != nil {
			return nil, err
		}
		// Per part: each counts against the enterprise it arrived under.
		if err := t.addFragCount(g.Account, f.Enterprise, groups, -int64(len(f.Data))); err != nil {
			return nil, err
		}
		groups = 0
	}
	return frags, nil
}

// partsDLR is the registered_delivery of a message joined from frags,
// and of each of its aliases when the parts asked differently
// (combineDLR): every part keeps the receipt it asked for, no more.
func partsDLR(frags []*Fragment) (uint8, []uint8) {
	masks := make([]uint8, len(frags))
	for i, f := range frags {
		masks[i] = f.RegisteredDelivery
	}
	return combineDLR(masks)
}

// putAliases maps each of m's Aliases to m.
func (t *txn) putAliases(m *Message) error {
	if len(m.Aliases) == 0 {
		return nil
	}
	b := t.tx.Bucket(bucketAlias)
	for _, a := range m.Aliases {
		if err := b.Put(msgKey(a), msgKey(m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// EnqueueAssembled stores m, the message joined from the complete group
// g, and deletes g's parts, in one transaction. m.Aliases must be the ids
// of g's parts in sequence order, as the caller read them (Fragments);
// if g no longer holds exactly those parts — another call assembled or
// rejected it, or the group was reused — nothing is written and the
// error wraps ErrFragmentsGone: the message exists already, or the parts
// are settled otherwise. So a crash or a race can neither lose the
// message nor store it twice.
//
// m's RegisteredDelivery and AliasDLR are set from the parts' own
// registered_delivery (partsDLR), whatever the caller put there.
//
// Otherwise it is Enqueue of one message under EnqueueLimit's quota: a
// refusal wraps ErrQuota and leaves the group pending (settle it with
// RejectFragments). On success m has its ID, Ref and times set, and each
// alias resolves to it (AliasOf).
func (s *Store) EnqueueAssembled(ctx context.Context, limit int64, g FragmentGroup, m *Message) error {
	if err := validate(m); err != nil {
		return fmt.Errorf("queue: enqueue assembled %s: %w", g, err)
	}
	if len(m.Aliases) != int(g.Total) || m.Account != g.Account {
		return fmt.Errorf("queue: enqueue assembled %s: %w: %d aliases, account %q", g, ErrInvalid, len(m.Aliases), m.Account)
	}
	work := prepareNew(m, time.Now())
	group := work.Group
	err := s.exec(ctx, func(t *txn) error {
		work.Group = group // a rerun of the batch (storeNew replaced GroupWithFirst)
		q, err := t.checkQuota(work, limit)
		if err != nil {
			return err
		}
		if q != nil {
			return soft(q)
		}
		frags, err := t.takeGroup(g, work.Aliases, true)
		if err != nil {
			return err
		}
		work.RegisteredDelivery, work.AliasDLR = partsDLR(frags)
		var first uint64
		return t.storeNew(work, &first)
	})
	if err != nil {
		return fmt.Errorf("queue: enqueue assembled %s: %w", g, err)
	}
	*m = *work
	return nil
}

// RejectFragments settles the parts ids of group g (exactly those
// pending, in sequence order; else ErrFragmentsGone and nothing written)
// without sending anything: they were acknowledged to the client, so
// they become a message that is final at once, every part Rejected with
// errCode (e.g. "incomplete", "too_long"), with the ids as its Aliases,
// text as its Text. Its receipt is queued like any other (one per alias
// at the gateway). Nothing is reserved or billed. It returns the
// message's id.
func (s *Store) RejectFragments(ctx context.Context, g FragmentGroup, ids []uint64, errCode, text string) (uint64, error) {
	if len(ids) == 0 || len(ids) > int(g.Total) {
		return 0, fmt.Errorf("queue: reject fragments %s: %w: %d ids", g, ErrInvalid, len(ids))
	}
	var id uint64
	err := s.exec(ctx, func(t *txn) error {
		id = 0
		frags, err := t.takeGroup(g, ids, false)
		if err != nil {
			return err
		}
		first, now := frags[0], time.Now()
		m := &Message{
			Account: g.Account, Enterprise: first.Enterprise,
			Source: g.Source, Dest: g.Dest,
			SourceTON: first.SourceTON, SourceNPI: first.SourceNPI, DestTON: first.DestTON, DestNPI: first.DestNPI,
			ClientCoding: first.ClientCoding,
			Text:         text, AcceptedAt: first.ArrivedAt,
			Aliases: slices.Clone(ids),
		}
		m.RegisteredDelivery, m.AliasDLR = partsDLR(frags)
		for _, f := range frags {
			if f.ArrivedAt.Before(m.AcceptedAt) {
				m.AcceptedAt = f.ArrivedAt
			}
			m.Parts = append(m.Parts, Part{State: StateRejected, DoneAt: now, ErrCode: errCode})
		}
		if m.ID, err = t.msg.NextSequence(); err != nil {
			return err
		}
		id = m.ID
		t.counts[StateRejected] += len(m.Parts)
		if err := t.putHook(m, now); err != nil {
			return err
		}
		for i := range m.Parts {
			if err := t.indexFinal(Key{m.ID, uint16(i)}); err != nil {
				return err
			}
		}
		if m.wantsDLR() {
			if err := t.dlrout().Put(dlroutKey(m.Account, m.ID), nil); err != nil {
				return err
			}
			t.ready = append(t.ready, m)
		} else {
			m.DLRForwarded = true
		}
		if err := t.putMsg(m); err != nil {
			return err
		}
		return t.putAliases(m)
	})
	if err != nil {
		return 0, fmt.Errorf("queue: reject fragments %s: %w", g, err)
	}
	return id, nil
}

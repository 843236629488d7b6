package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// GroupWithFirst, as a Message's Group for Enqueue, is replaced by the
// ID of the first message of the same call that was stored: the messages
// of one submit_multi share the id its client was given.
const GroupWithFirst = ^uint64(0)

// NoLimit passed to EnqueueLimit disables the quota check.
const NoLimit int64 = -1

// Enqueue stores msgs durably, all or nothing, in one transaction shared
// with other writers (group commit). When it returns nil every message is
// on disk and has its ID, Ref (for more than one part), Enterprise
// (Account if empty) and AcceptedAt (now if zero) set, every part is
// Accepted and due at max(AcceptedAt, SendAt). Caller-set part states, ids
// and times are ignored. On error the messages are unchanged.
//
// If ctx ends while waiting for the commit Enqueue returns ctx.Err(); the
// messages may still have been stored (without the caller learning their
// IDs), so a client retry may duplicate them.
func (s *Store) Enqueue(ctx context.Context, msgs ...*Message) error {
	_, err := s.enqueue(ctx, NoLimit, msgs)
	return err
}

// EnqueueLimit is Enqueue with a monthly quota: each message is refused,
// with nothing written for it, when its enterprise's reserved + charged
// segments for the billing month plus len(Parts) would exceed limit
// (NoLimit = no check). The check runs per message inside the commit
// transaction, so concurrent callers cannot overshoot together, and later
// messages of one call see the reservations of earlier ones.
//
// errs[i] is nil when msgs[i] was stored and wraps ErrQuota when it was
// refused; err is non-nil when nothing was stored (invalid message, closed
// store, context, I/O), and then errs is nil.
func (s *Store) EnqueueLimit(ctx context.Context, limit int64, msgs ...*Message) (errs []error, err error) {
	return s.enqueue(ctx, limit, msgs)
}

func (s *Store) enqueue(ctx context.Context, limit int64, msgs []*Message) ([]error, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	now := time.Now()
	work := make([]*Message, len(msgs))
	for i, m := range msgs {
		if err := validate(m); err != nil {
			return nil, fmt.Errorf("queue: enqueue message %d of %d: %w", i+1, len(msgs), err)
		}
		if len(m.Aliases) > 0 {
			return nil, fmt.Errorf("queue: enqueue message %d of %d: %w: aliases are set by EnqueueAssembled only", i+1, len(msgs), ErrInvalid)
		}
		work[i] = prepareNew(m, now)
	}
	errs := make([]error, len(msgs))
	groups := make([]uint64, len(work))
	for i, m := range work {
		groups[i] = m.Group
	}
	err := s.exec(ctx, func(t *txn) error {
		var first uint64 // the first id stored in this call, for GroupWithFirst
		for i, m := range work {
			errs[i] = nil
			m.Group = groups[i] // a rerun of the batch (storeNew replaced GroupWithFirst)
			q, err := t.checkQuota(m, limit)
			if err != nil {
				return err
			}
			if q != nil {
				errs[i] = q
				continue
			}
			if err := t.storeNew(m, &first); err != nil {
				return err
			}
		}
		return t.putAnswer(ctx, work, errs)
	})
	if err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	for i, m := range msgs {
		if errs[i] == nil {
			*m = *work[i]
		}
	}
	return errs, nil
}

// prepareNew is the copy of m that Enqueue stores: Enterprise and
// AcceptedAt defaulted, ids cleared, every part Accepted and due at
// max(AcceptedAt, SendAt).
func prepareNew(m *Message, now time.Time) *Message {
	c := m.Clone()
	if c.Enterprise == "" {
		c.Enterprise = c.Account
	}
	if c.AcceptedAt.IsZero() {
		c.AcceptedAt = now
	}
	c.ID, c.Ref, c.DLRForwarded, c.ReceiptDone = 0, 0, false, false
	due := c.AcceptedAt
	if c.SendAt.After(due) {
		due = c.SendAt
	}
	for j := range c.Parts {
		c.Parts[j] = Part{Body: c.Parts[j].Body, State: StateAccepted, DueAt: due}
	}
	return c
}

// checkQuota returns a *QuotaError (ErrQuota; not an operation failure:
// nothing is written) when storing m would take its enterprise past limit
// this month; NoLimit never refuses. The second result is a hard error.
func (t *txn) checkQuota(m *Message, limit int64) (refused, err error) {
	if limit < 0 {
		return nil, nil
	}
	n := m.Segments()
	u, err := t.getUsage(t.usageKeyOf(m))
	if err != nil {
		return nil, err
	}
	if u.Reserved+u.Charged+n > limit {
		return &QuotaError{Enterprise: m.Enterprise, Month: BillingMonth(m.AcceptedAt),
			Reserved: u.Reserved, Charged: u.Charged, Need: n, Limit: limit}, nil
	}
	return nil, nil
}

// storeNew stores m (prepared by prepareNew) as a new message: id,
// concatenation reference, due keys, usage reservation, counts, and the
// alias keys of its Aliases. first is the first id stored by the calling
// operation, for GroupWithFirst.
func (t *txn) storeNew(m *Message, first *uint64) error {
	n := m.Segments()
	id, err := t.msg.NextSequence()
	if err != nil {
		return err
	}
	m.ID, m.Ref = id, 0
	if m.Group == GroupWithFirst {
		if *first == 0 {
			*first = id
		}
		m.Group = *first
	}
	if n > 1 {
		if m.Ref, err = t.nextRef(m.Dest); err != nil {
			return err
		}
	}
	if err := t.putMsg(m); err != nil {
		return err
	}
	if err := t.putAliases(m); err != nil {
		return err
	}
	for j := range m.Parts {
		if err := t.putDue(m, m.Parts[j].DueAt, Key{id, uint16(j)}); err != nil {
			return err
		}
	}
	if err := t.addUsage(m, n, 0); err != nil {
		return err
	}
	t.counts[StateAccepted] += len(m.Parts) // counts are parts; usage is segments
	t.fresh = append(t.fresh, m)
	return nil
}

func validate(m *Message) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalid)
	}
	if n := len(m.Parts); n == 0 || n > maxParts {
		return fmt.Errorf("%w: %d parts (1 to %d)", ErrInvalid, n, maxParts)
	}
	if err := checkKeyFields(keyField{"account", m.Account, true}, keyField{"enterprise", m.Enterprise, false},
		keyField{"upstream", m.Upstream, false}, keyField{"dest", m.Dest, true}); err != nil {
		return err
	}
	if len(m.ReceiptURL) > maxReceiptURL {
		return fmt.Errorf("%w: receipt_url of %d bytes (at most %d)", ErrInvalid, len(m.ReceiptURL), maxReceiptURL)
	}
	if len(m.AliasDLR) != 0 && len(m.AliasDLR) != len(m.Aliases) {
		return fmt.Errorf("%w: %d alias registered_delivery for %d aliases", ErrInvalid, len(m.AliasDLR), len(m.Aliases))
	}
	return nil
}

func validSMSCID(id string) error {
	c := CanonicalSMSCID(id)
	if c == "" {
		return fmt.Errorf("%w: empty SMSC id", ErrInvalid)
	}
	if len(c) > maxSMSCID {
		return fmt.Errorf("%w: SMSC id longer than %d bytes", ErrInvalid, maxSMSCID)
	}
	return nil
}

// Submitted records that the SMSC accepted part k (submit_sm_resp OK) under
// smscID at time at: the part leaves the due index, becomes Submitted, and
// smscID is indexed under the message's Upstream for DLR matching. A DLR
// that arrived earlier (orphan) is applied in the same transaction.
//
// Idempotent: recording the same id again changes nothing. A different id
// for a part already Submitted or final means the part was accepted twice
// (a retry after a lost response): the extra id is indexed too and kept in
// DupSMSCIDs, the part's state and billing are unchanged, and whichever DLR
// comes first settles the part.
//
// A part that Fail already ended keeps its final state when a late
// acceptance arrives (its id is recorded so the DLR is a Duplicate): a
// segment failed by the sender is not billed even if the SMSC delivers it.
//
// An SMSC that accepts with an empty (or absurdly long) message_id still
// accepted the part: it becomes Submitted, so it is not sent again, but no
// DLR can match it; ExpireSubmitted settles it as Unknown in the end.
func (s *Store) Submitted(ctx context.Context, k Key, smscID string, at time.Time) error {
	canon := CanonicalSMSCID(smscID)
	indexable := validSMSCID(smscID) == nil
	if at.IsZero() {
		at = time.Now()
	}
	// An orphan is taken under the id's own form only: one stored under
	// another base's form may be for a later message whose acceptance is
	// not recorded yet (MatchOrphans converts, once that is ruled out).
	var cands []string
	if indexable {
		cands = []string{canon}
	}
	err := s.exec(ctx, func(t *txn) error {
		m, p, err := t.getPart(k)
		if err != nil {
			return err
		}
		if p.State != StateAccepted {
			if !indexable || CanonicalSMSCID(p.SMSCID) == canon {
				return nil
			}
			for _, id := range p.DupSMSCIDs {
				if CanonicalSMSCID(id) == canon {
					return nil
				}
			}
			if p.SMSCID == "" {
				// Failed by the sender (e.g. validity) before this late
				// acceptance came: keep the id so its DLR is a Duplicate.
				t.s.log.Warn("queue: SMSC accepted a part already failed", "key", k.String(),
					"state", p.State.String(), "smsc_id", smscID)
				p.SMSCID = smscID
			} else {
				t.s.log.Warn("queue: part accepted twice by the SMSC", "key", k.String(),
					"smsc_id", p.SMSCID, "dup_smsc_id", smscID)
				p.DupSMSCIDs = append(p.DupSMSCIDs, smscID)
			}
		} else {
			if err := t.delDue(m, p.DueAt, k); err != nil {
				return err
			}
			t.counts[StateAccepted]--
			t.counts[StateSubmitted]++
			p.State, p.SMSCID, p.SubmittedAt = StateSubmitted, smscID, at
			p.Attempts++
			if err := t.wait().Put(t.timeKey(at, k), nil); err != nil {
				return err
			}
		}
		if !indexable {
			t.s.log.Warn("queue: SMSC accepted a part without a usable id: its DLR cannot be matched",
				"key", k.String(), "smsc_id", smscID)
			return t.putMsg(m)
		}
		if err := t.indexSMSC(m, k, smscID); err != nil {
			return err
		}
		o, err := t.takeOrphan(m.Upstream, cands, at)
		if err != nil {
			return err
		}
		if o != nil && p.State == StateSubmitted {
			if err := t.setFinal(m, k.Part, o.State, o.DoneAt, o.ErrCode); err != nil {
				return err
			}
		}
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: submitted %s: %w", k, err)
	}
	return nil
}

// Retry moves part k, still waiting for SMSC acceptance, to be due again at
// at, counting an attempt and recording errCode (e.g. a throttling status
// "0x00000058"). It fails with ErrState once the part has left Accepted
// (a late response was recorded meanwhile): the caller must not resend.
// Not idempotent in Attempts: a repeated call counts twice.
func (s *Store) Retry(ctx context.Context, k Key, at time.Time, errCode string) error {
	err := s.exec(ctx, func(t *txn) error {
		m, p, err := t.getPart(k)
		if err != nil {
			return err
		}
		if p.State != StateAccepted {
			return soft(fmt.Errorf("%w: part is %s", ErrState, p.State))
		}
		if err := t.delDue(m, p.DueAt, k); err != nil {
			return err
		}
		p.DueAt, p.ErrCode = at, errCode
		p.Attempts++
		if err := t.putDue(m, at, k); err != nil {
			return err
		}
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: retry %s: %w", k, err)
	}
	return nil
}

// Fail ends part k before SMSC acceptance with a final state other than
// Delivered: a permanent submit_sm_resp error (Rejected, errCode the status
// as "0x%08x"), validity ran out (Expired), cancelled (Unknown). Its
// reservation is released. Idempotent: failing a part already in that
// state returns nil; any other state after Accepted is ErrState.
func (s *Store) Fail(ctx context.Context, k Key, state State, errCode string, at time.Time) error {
	if !state.Final() || state == StateDelivered {
		return fmt.Errorf("queue: fail %s: %w: state %s", k, ErrInvalid, state)
	}
	err := s.exec(ctx, func(t *txn) error {
		m, p, err := t.getPart(k)
		if err != nil {
			return err
		}
		if p.State == state {
			return nil
		}
		if p.State != StateAccepted {
			return soft(fmt.Errorf("%w: part is %s", ErrState, p.State))
		}
		if err := t.setFinal(m, k.Part, state, at, errCode); err != nil {
			return err
		}
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: fail %s: %w", k, err)
	}
	return nil
}

// ApplyDLR records a delivery receipt. It finds the part by (Upstream,
// SMSCID), the id in canonical form. Matched: the part moved to d.State
// (usage: a delivered segment moves from reserved to charged, any other
// outcome releases it). Duplicate: the part was already final; nothing
// changed (a receipt applied twice is counted once). Orphaned: no part has
// that id yet; it is stored, and either Submitted applies it (the receipt
// beat the submit_sm_resp) or, for an SMSC that gives the id in another
// base in its receipts, MatchOrphans does once the acceptance it might
// have beaten is ruled out (see "Matching DLRs" in doc.go).
//
// When the last part of a message becomes final and its registered_delivery
// asks for a receipt, the message is queued for PendingDLRs and
// Options.OnDLRReady is called after the commit.
func (s *Store) ApplyDLR(ctx context.Context, d DLR) (Result, error) {
	res, _, err := s.ApplyDLRSubmitted(ctx, d)
	return res, err
}

// ApplyDLRSubmitted is ApplyDLR that also returns, for a Matched receipt,
// when its part was submitted (the receipt delay is DoneAt minus that).
func (s *Store) ApplyDLRSubmitted(ctx context.Context, d DLR) (Result, time.Time, error) {
	return s.applyDLR(ctx, d, true, false)
}

// applyDLR is ApplyDLRSubmitted; without keepOrphan, a receipt no part has the
// id of is Unmatched and nothing is stored (ApplyDLRIfKnown: orphans.go).
// Without convert only the id's own form is looked up: a receipt that
// comes before its part's acceptance is recorded must not be taken for an
// earlier part whose id is the same number in the other base (SMSCs that
// number their messages give out both "5c" and, 54 messages later, "92").
func (s *Store) applyDLR(ctx context.Context, d DLR, keepOrphan, convert bool) (Result, time.Time, error) {
	if !d.State.Final() {
		return 0, time.Time{}, fmt.Errorf("queue: dlr: %w: state %s is not final", ErrInvalid, d.State)
	}
	if err := validSMSCID(d.SMSCID); err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: dlr: %w", err)
	}
	if len(d.Upstream) > maxField || strings.IndexByte(d.Upstream, sep) >= 0 {
		return 0, time.Time{}, fmt.Errorf("queue: dlr: %w: bad upstream", ErrInvalid)
	}
	if d.DoneAt.IsZero() {
		d.DoneAt = time.Now()
	}
	var res Result
	var submitted time.Time
	// Outside the commit loop, the one serial stage.
	var cands []string
	if convert {
		cands = smscCandidates(d.SMSCID)
	} else if c := CanonicalSMSCID(d.SMSCID); c != "" {
		cands = []string{c}
	}
	keys := make([][]byte, len(cands))
	for i, c := range cands {
		keys[i] = smscKey(d.Upstream, c)
	}
	err := s.exec(ctx, func(t *txn) error {
		res, submitted = 0, time.Time{}
		for i, c := range cands {
			v := t.get(t.smsc(), keys[i])
			if v == nil {
				continue
			}
			k, ok := parsePartRef(v)
			if !ok {
				return fmt.Errorf("%w: smsc index %q: bad value", ErrCorrupt, c)
			}
			m, p, err := t.getPart(k)
			if err != nil {
				return fmt.Errorf("smsc index %q points to a missing part: %w", c, err)
			}
			if !keepOrphan && p.SubmittedAt.After(d.DoneAt.Add(PeerClockSlack)) {
				// ApplyDLRIfKnown: the peer got the receipt before we
				// submitted this part: it is for an earlier message whose
				// id the SMSC reused.
				continue
			}
			if p.State.Final() {
				res = Duplicate
				return nil
			}
			submitted = p.SubmittedAt
			if err := t.setFinal(m, k.Part, d.State, d.DoneAt, d.ErrCode); err != nil {
				return err
			}
			res = Matched
			return t.putMsg(m)
		}
		if !keepOrphan { // ApplyDLRIfKnown: a peer's receipt, kept by the peer
			res = Unmatched
			return nil
		}
		if err := t.keepOrphan(smscKey(d.Upstream, CanonicalSMSCID(d.SMSCID)), &orphan{DLR: d, ReceivedAt: time.Now()}); err != nil {
			return err
		}
		res = Orphaned
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: dlr %s/%s: %w", d.Upstream, d.SMSCID, err)
	}
	return res, submitted, nil
}

// AckDLR records that the final DLR of message id was delivered to account
// (deliver_sm_resp OK): it leaves PendingDLRs for good. Idempotent: acking
// again returns nil. ErrNotFound if the message does not exist or belongs
// to another account; ErrState if it has no final DLR yet.
func (s *Store) AckDLR(ctx context.Context, account string, id uint64) error {
	err := s.exec(ctx, func(t *txn) error {
		m, err := t.getMsg(id)
		if err != nil {
			return err
		}
		if m.Account != account {
			return soft(fmt.Errorf("%w: message %d of account %q", ErrNotFound, id, account))
		}
		key := t.dlroutKey(account, id)
		if !t.has(t.dlrout(), key) {
			if m.DLRForwarded {
				return nil
			}
			return soft(fmt.Errorf("%w: message %d has no final DLR pending", ErrState, id))
		}
		if err := t.del(t.dlrout(), key); err != nil {
			return err
		}
		m.DLRForwarded = true
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: ack dlr %d: %w", id, err)
	}
	return nil
}

// AckDLRs is AckDLR for many messages of one account in one commit (the
// receipt forwarder acknowledges in batches). An id that is unknown, of
// another account, or has no final DLR pending is skipped; the others
// leave PendingDLRs.
func (s *Store) AckDLRs(ctx context.Context, account string, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.exec(ctx, func(t *txn) error {
		for _, id := range ids {
			key := t.dlroutKey(account, id)
			if !t.has(t.dlrout(), key) {
				continue // acknowledged already, or never pending
			}
			m, err := t.getMsg(id)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					continue
				}
				return err
			}
			if m.Account != account {
				continue
			}
			if err := t.del(t.dlrout(), key); err != nil {
				return err
			}
			m.DLRForwarded = true
			if err := t.putMsg(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: ack %d dlrs: %w", len(ids), err)
	}
	return nil
}

// ExpireSubmitted gives up waiting for the DLR of parts submitted before
// cutoff: up to limit of them (oldest first) become Unknown at time at, their
// reservation is released and their message's DLR queued as usual. A DLR
// arriving later is a Duplicate (so a segment delivered after that is not
// billed). Call it periodically with cutoff = now - (validity + grace).
// It returns how many parts it expired.
func (s *Store) ExpireSubmitted(ctx context.Context, cutoff, at time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	until := timeNanos(cutoff)
	var n int
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		var keys []Key
		c := t.wait().Cursor()
		for kb, _ := c.First(); kb != nil && len(keys) < limit; kb, _ = c.Next() {
			ts, k, ok := parseTimeKey(kb)
			if !ok {
				return fmt.Errorf("%w: wait key %x", ErrCorrupt, kb)
			}
			if ts >= until {
				break
			}
			keys = append(keys, k)
		}
		msgs := make(map[uint64]*Message)
		for _, k := range keys {
			m := msgs[k.ID]
			if m == nil {
				var err error
				if m, err = t.getMsg(k.ID); err != nil {
					return fmt.Errorf("wait key %s: %w", k, err)
				}
				msgs[k.ID] = m
			}
			if int(k.Part) >= len(m.Parts) || m.Parts[k.Part].State != StateSubmitted {
				return fmt.Errorf("%w: wait key %s for a part not submitted", ErrCorrupt, k)
			}
			if err := t.setFinal(m, k.Part, StateUnknown, at, m.Parts[k.Part].ErrCode); err != nil {
				return err
			}
			n++
		}
		for _, m := range msgs {
			if err := t.putMsg(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: expire submitted: %w", err)
	}
	return n, nil
}

// PurgeOrphans deletes up to limit orphan DLRs received before cutoff. An
// orphan that old will never be matched: its submit_sm_resp was lost (the
// process died between the SMSC accepting a part and Submitted committing,
// and the part was sent again under a new id), or it belongs to traffic
// that is not ours. Call it periodically, e.g. hourly with cutoff = now -
// 24h. It scans the orphan bucket, which normally holds only the few DLRs
// racing their responses.
func (s *Store) PurgeOrphans(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	// The scan is a read beside the commit loop, not in it: the bucket
	// may hold up to MaxOrphans per upstream, and a commit must not wait
	// for a walk of them all. The write deletes only what is unchanged
	// since (not stored again by a repeated receipt).
	type old struct{ k, v []byte }
	var olds []old
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOrphan).Cursor()
		for k, v := c.First(); k != nil && len(olds) < limit; k, v = c.Next() {
			if o, err := decodeOrphan(v); err != nil || o.ReceivedAt.Before(cutoff) {
				olds = append(olds, old{bytes.Clone(k), bytes.Clone(v)})
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge orphans: %w", err)
	}
	if len(olds) == 0 {
		return 0, nil
	}
	var n int
	err = s.exec(ctx, func(t *txn) error {
		n = 0
		for _, o := range olds {
			if v := t.get(t.orphan(), o.k); v == nil || !bytes.Equal(v, o.v) {
				continue
			}
			if err := t.dropOrphan(o.k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge orphans: %w", err)
	}
	return n, nil
}

// FailHeld ends parts of enterprise's messages accepted before before
// that wait to be sent (Accepted, due now or later, on any upstream), as
// state with errCode at time at: the operator dropped what a disabled
// enterprise held (the scans pass its parts by: DueQuery.Hold). Each part
// becomes final as Fail makes it (its reservation released, its message's
// receipt queued once every part is final). A part of a message accepted
// at or after before is left as it is. It looks at up to limit of the
// enterprise's due keys, those after after (nil: from the first), and
// returns how many parts it ended and the after of the next call (nil:
// it reached the last).
func (s *Store) FailHeld(ctx context.Context, enterprise string, after []byte, before, at time.Time, state State, errCode string, limit int) (n int, next []byte, err error) {
	if !state.Final() || state == StateDelivered {
		return 0, nil, fmt.Errorf("queue: fail held: %w: state %s", ErrInvalid, state)
	}
	return s.endHeld(ctx, "fail held", enterprise, after, limit, func(m *Message) (State, string, bool) {
		return state, errCode, m.AcceptedAt.Before(before)
	}, at)
}

// ExpireHeld ends, expired with the error "validity" as a worker would
// (upstream.send), the waiting parts of enterprise's messages whose
// validity ended before at: a disabled enterprise's parts wait unsent
// (DueQuery.Hold), so no worker takes them to find them expired, and
// their receipts, and the quota they reserve, would wait for the
// enterprise to be enabled. It looks at up to limit of the enterprise's
// due keys after after (nil: from the first), as FailHeld does.
func (s *Store) ExpireHeld(ctx context.Context, enterprise string, after []byte, at time.Time, limit int) (n int, next []byte, err error) {
	return s.endHeld(ctx, "expire held", enterprise, after, limit, func(m *Message) (State, string, bool) {
		return StateExpired, "validity", !m.ValidUntil.IsZero() && at.After(m.ValidUntil)
	}, at)
}

// endHeld is FailHeld and ExpireHeld: end tells whether a waiting part's
// message ends, and how.
func (s *Store) endHeld(ctx context.Context, what, enterprise string, after []byte, limit int, end func(*Message) (State, string, bool), at time.Time) (n int, next []byte, err error) {
	if limit <= 0 {
		return 0, nil, fmt.Errorf("queue: %s: %w: limit %d", what, ErrInvalid, limit)
	}
	// Read first: housekeeping asks of every disabled enterprise each
	// run, most find nothing to end, and a write, even one that changes
	// nothing, is a commit and a sync.
	found := false
	err = s.view(func(tx *bolt.Tx) error {
		due, msgs := tx.Bucket(bucketUDue), tx.Bucket(bucketMsg)
		if due == nil || msgs == nil {
			return nil
		}
		keys, last, err := heldKeys(due.Cursor(), enterprise, after, limit)
		if err != nil {
			return err
		}
		next = last
		for _, k := range keys {
			v := msgs.Get(appendMsgKey(nil, k.ID))
			if v == nil {
				continue // ended meanwhile
			}
			m, err := DecodeMessage(v)
			if err != nil {
				return fmt.Errorf("message %d: %w", k.ID, err)
			}
			if _, _, ok := endsPart(m, k.Part, end); ok {
				found = true
				return nil
			}
		}
		return nil
	})
	if err != nil || !found {
		if err != nil {
			return 0, nil, fmt.Errorf("queue: %s of %s: %w", what, enterprise, err)
		}
		return 0, next, nil
	}
	err = s.exec(ctx, func(t *txn) error {
		// The keys first, then the changes: setFinal deletes due keys.
		keys, last, err := heldKeys(t.udue().Cursor(), enterprise, after, limit)
		if err != nil {
			return err
		}
		n, next = 0, last
		msgs, changed := make(map[uint64]*Message), make(map[uint64]bool)
		for _, k := range keys {
			m := msgs[k.ID]
			if m == nil {
				var err error
				if m, err = t.getMsg(k.ID); err != nil {
					return fmt.Errorf("due key %s: %w", k, err)
				}
				msgs[k.ID] = m
			}
			state, code, ok := endsPart(m, k.Part, end)
			if !ok {
				continue
			}
			if err := t.setFinal(m, k.Part, state, at, code); err != nil {
				return err
			}
			changed[m.ID] = true
			n++
		}
		for id := range changed {
			if err := t.putMsg(msgs[id]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("queue: %s of %s: %w", what, enterprise, err)
	}
	return n, next, nil
}

// endsPart is whether part of m, which a due key named, still waits and
// ends by end (the same test for endHeld's read and its write).
func endsPart(m *Message, part uint16, end func(*Message) (State, string, bool)) (State, string, bool) {
	if int(part) >= len(m.Parts) || m.Parts[part].State != StateAccepted {
		return 0, "", false
	}
	return end(m)
}

// heldKeys collects up to limit due keys of enterprise's parts, on every
// upstream (the due index is upstream, enterprise, due time, key), in key
// order, from the first after after (nil: from the start). last is the
// raw due key of the last one collected, for the next call's after, or
// nil once the walk reached the end.
func heldKeys(c *bolt.Cursor, enterprise string, after []byte, limit int) (keys []Key, last []byte, err error) {
	var kb []byte
	if after == nil {
		kb, _ = c.First()
	} else if kb, _ = c.Seek(after); bytes.Equal(kb, after) {
		kb, _ = c.Next()
	}
	for kb != nil && len(keys) < limit {
		i := bytes.IndexByte(kb, sep)
		if i < 0 {
			return nil, nil, fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
		}
		prefix := append(append(append(append([]byte(nil), kb[:i]...), sep), enterprise...), sep)
		switch {
		case bytes.HasPrefix(kb, prefix):
			_, k, ok := parseTimeKey(kb[len(prefix):])
			if !ok {
				return nil, nil, fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
			}
			keys, last = append(keys, k), append(last[:0], kb...)
			kb, _ = c.Next()
		case bytes.Compare(kb, prefix) < 0:
			// Another enterprise's, before this one's on this upstream.
			kb, _ = c.Seek(prefix)
		default:
			// Past this one's on this upstream: the next upstream.
			kb, _ = c.Seek(append(append([]byte(nil), kb[:i]...), sep+1))
		}
	}
	if kb == nil {
		last = nil
	}
	return keys, last, nil
}

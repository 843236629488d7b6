package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
)

// The outbox as an enterprise sees it: one of its messages, and its
// scheduled messages changed or cancelled before they are sent (HTTP; SMPP
// replace_sm / cancel_sm can use the same methods). Messages belong to the
// enterprise: any of its users sees and changes them, and another
// enterprise's id is answered exactly like an unknown one
// (queue.ErrNotFound), so ids cannot be probed.
//
// Errors: queue.ErrNotFound, queue.ErrNotScheduled (sent, being sent, or
// due within queue.ScheduleMargin), a *Refusal (the new text: too long,
// account disabled, rate limited, quota), or one wrapping ErrStore. A
// refused edit leaves the message as it was and is not counted in
// qxtd_messages_refused_total (no message was refused).

// Message returns message id if it belongs to acct's enterprise. The id
// of one part of a message the ESME split itself finds the whole message.
func (g *Gateway) Message(acct *Account, id uint64) (*queue.Message, error) {
	m, err := g.store.Get(id)
	if errors.Is(err, queue.ErrNotFound) {
		if mid, aerr := g.store.AliasOf(id); aerr == nil {
			m, err = g.store.Get(mid)
		}
	}
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	case m.Enterprise != acct.Enterprise:
		return nil, fmt.Errorf("queue: get: %w: message %d", queue.ErrNotFound, id)
	}
	return m, nil
}

// Cancel cancels a scheduled message of acct's enterprise: it will never
// be sent, its reservation is released, and its receipt (if one was
// asked for) reports it as deleted.
// In cluster mode another node's id is cancelled at that node (owners.go).
func (g *Gateway) Cancel(ctx context.Context, acct *Account, id uint64) error {
	err := g.cancelHere(ctx, acct, id)
	if owner, ok := g.remoteOwner(id); ok && errors.Is(err, queue.ErrNotFound) {
		return g.owners.OwnerCancel(ctx, owner, acct, id)
	}
	return err
}

func (g *Gateway) cancelHere(ctx context.Context, acct *Account, id uint64) error {
	return storeErr(g.store.Cancel(ctx, id, acct.Enterprise))
}

// Reschedule changes the send time (zero: unchanged; in the past: at
// once) and/or the text ("" = unchanged) of a scheduled message of acct's
// enterprise. A new text is signed with the enterprise signature as it is
// now and acct's user signature (pass the sender's account, not an
// editing admin's, to keep the sender's), and encoded for the message's
// upstream exactly as Send does (with its stored concatenation mode); a
// change in
// its number of segments is checked against the enterprise's quota. The
// validity window moves with the send time. In cluster mode another
// node's id is changed at that node (owners.go).
func (g *Gateway) Reschedule(ctx context.Context, acct *Account, id uint64, sendAt time.Time, text string) error {
	err := g.rescheduleHere(ctx, acct, id, sendAt, text)
	if owner, ok := g.remoteOwner(id); ok && errors.Is(err, queue.ErrNotFound) {
		return g.owners.OwnerReschedule(ctx, owner, acct, id, sendAt, text)
	}
	return err
}

func (g *Gateway) rescheduleHere(ctx context.Context, acct *Account, id uint64, sendAt time.Time, text string) error {
	if text == "" {
		err := storeErr(g.store.Reschedule(ctx, id, acct.Enterprise, sendAt, "", nil, 0, queue.NoLimit))
		if err == nil {
			g.notify()
		}
		return err
	}
	m, err := g.Message(acct, id)
	if err != nil {
		return err
	}
	if !m.Scheduled(time.Now()) {
		return fmt.Errorf("%w: message %d", queue.ErrNotScheduled, id) // the store checks again, in the commit
	}
	a, limit, err := g.prepare(acct)
	if err != nil {
		return err
	}
	up := g.byName[m.Upstream]
	if up == nil {
		return policy.NewRefusal(policy.ReasonNoRoute, "upstream "+m.Upstream+" is no longer configured")
	}
	opt := up.cfg.Segment
	opt.Concat = segment.Concat(m.Concat) // framed later with the mode stored with the message
	signed := segment.Sign(text, a.Signature, a.UserSignature)
	plan, err := encode(signed, opt)
	if err != nil {
		return err
	}
	err = g.store.RescheduleWeighted(ctx, id, acct.Enterprise, sendAt, signed, plan.Parts, plan.DataCoding, weightOf(plan), limit)
	if errors.Is(err, queue.ErrQuota) {
		return g.quotaRefusal(err, limit)
	}
	if err = storeErr(err); err == nil {
		g.notify()
	}
	return err
}

// storeErr passes the outbox's own outcomes through and marks anything
// else as a store failure.
func storeErr(err error) error {
	switch {
	case err == nil, errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrNotScheduled),
		errors.Is(err, queue.ErrInvalid), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %w", ErrStore, err)
}

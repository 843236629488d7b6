package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// Messages the ESME split itself.
//
// Kannel, Jasmin and most SMPP libraries split long text themselves: N
// submit_sm, each with a concatenation UDH (IEI 0x00, 8-bit reference, or
// 0x08, 16-bit) or SAR TLVs, each expecting its own message_id. qxtd
// reassembles them and sends the whole text, signed and re-segmented for
// the upstream, like any other message:
//
//  1. Each part is checked as far as a part can be — its text decodes,
//     the account may send (disabled, rate limit: one token per PDU), the
//     recipient is admitted, the monthly quota is not already used up —
//     and refused on its own submit_sm_resp otherwise. Then it is stored
//     durably (queue.StoreFragment, grouped by account, source,
//     destination, reference and total) and answered with its own id. A
//     retried identical part gets its first id again; a different part
//     under the same sequence number is refused (ESME_RSUBMITFAIL,
//     reason part_conflict); a part beyond the caps on pending messages
//     (Config.ReassemblyMaxGroups per account, ReassemblyMaxBytes in all)
//     is refused with ESME_RMSGQFUL (reason reassembly_full).
//  2. The part that completes its group triggers assembly at once: the
//     parts' data joined in sequence order (so a surrogate or GSM escape
//     pair split across parts is whole again) and decoded, then built
//     like any other message (Send's builder) and stored by
//     storeAssembled: the message is stored and the parts deleted in one
//     transaction, so a crash or a second assembly can neither lose nor
//     duplicate it. Its Aliases are the part ids. It is sent with
//     priority if any part's submit_sm had a priority_flag (stored with
//     each part, so after a restart too).
//  3. Each part id whose submit_sm asked for a receipt gets its own,
//     with the message's state (Kannel asks on the first part only,
//     some clients on the last: none gets a receipt it did not ask for,
//     none misses one it did); the message counts as forwarded once all
//     were acknowledged. query_sm
//     on a part id answers the message's state (ENROUTE while parts are
//     missing). cancel_sm and replace_sm take message ids only: on a part
//     id they fail (ESME_RCANCELFAIL / ESME_RREPLACEFAIL), since a part
//     cannot be cancelled or replaced alone.
//  4. A message refused as a whole (longer than 500 characters with the
//     signature, quota, a policy change since the parts came, undecodable
//     text) cannot be refused on the parts' responses any more: it
//     becomes a message rejected at once, its error code the reason, and
//     each part id that asked for a receipt gets a REJECTD one. Nothing
//     is sent or billed.
//  5. Housekeeping (maintain.go) rejects groups still incomplete
//     Config.ReassemblyTimeout after their first part the same way (error
//     code "incomplete"), and assembles complete groups that a crash left
//     behind.
//
// submit_multi parts with concatenation headers are still refused
// (ESME_RINVESMCLASS, presplit_unsupported).

// submitPart checks and stores one part of a message the ESME split
// itself and returns the part's id. If it completes its message, the
// message is assembled before the answer goes back (a failure there is
// logged: housekeeping assembles it later, the part is safe either way).
func (g *Gateway) submitPart(ctx context.Context, acct *Account, p pdu.Body, frag segment.Fragment) (string, error) {
	id, group, complete, err := g.storePart(ctx, acct, p, frag)
	if err != nil {
		if errors.Is(err, ErrStore) {
			return "", fmt.Errorf("%w: %w", err, smpp.StatusSystemError)
		}
		g.metrics.refused(err)
		return "", err
	}
	if complete {
		// Not bound to the ESME's connection: once started, finish.
		if err := g.assemble(context.WithoutCancel(ctx), group); err != nil {
			g.log.Error("assemble split message (housekeeping retries)", "group", group.String(), "err", err)
		}
	}
	return FormatID(id), nil
}

func (g *Gateway) storePart(ctx context.Context, acct *Account, p pdu.Body, frag segment.Fragment) (uint64, queue.FragmentGroup, bool, error) {
	var group queue.FragmentGroup
	req, err := requestWith(p, "")
	if err != nil {
		return 0, group, false, err
	}
	a, limit, err := g.prepare(acct)
	if err != nil {
		return 0, group, false, err
	}
	// The source is settled per part, so that the parts of one message
	// group under the source it goes out with.
	if req.Source, err = policy.Source(a.ServiceNumber, a.ExtLen, a.Extension, req.Source); err != nil {
		return 0, group, false, err
	}
	rcpt, err := g.policy.Admit(a, smpp.Str(p, pdufield.DestinationAddr))
	if err != nil {
		return 0, group, false, err
	}
	dest := rcpt.Number
	if limit >= 0 {
		// The message's segments are known only once it is whole (and
		// checked then, in the store); a quota already used up is known now.
		month := queue.BillingMonth(time.Now())
		if r, c := g.store.Usage(a.Enterprise, month); r+c >= limit {
			return 0, group, false, g.quotaRefusal(&queue.QuotaError{Enterprise: a.Enterprise, Month: month, Reserved: r, Charged: c, Limit: limit}, limit)
		}
	}
	group = queue.FragmentGroup{Account: a.SystemID, Source: req.Source, Dest: dest, Ref: frag.Info.Ref, Total: frag.Info.Total}
	f := &queue.Fragment{
		FragmentGroup: group, Seq: frag.Info.Seq,
		Enterprise: a.Enterprise,
		Coding:     uint8(frag.Coding), Data: frag.Data,
		ClientCoding: req.ClientCoding, RegisteredDelivery: req.RegisteredDelivery,
		SourceTON: req.SourceTON, SourceNPI: req.SourceNPI, DestTON: req.DestTON, DestNPI: req.DestNPI,
		SendAt: req.SendAt, ValidUntil: req.ValidUntil,
		Signature: a.Signature, UserSignature: a.UserSignature,
		// Stored with the part, so that the message goes with priority
		// however it is assembled (assemble).
		Priority: smpp.Byte(p, pdufield.PriorityFlag) > 0,
	}
	res, err := g.store.StoreFragment(ctx, f, queue.FragmentLimits{
		MaxGroups: g.cfg.ReassemblyMaxGroups, MaxBytes: g.cfg.ReassemblyMaxBytes, MaxEnterpriseBytes: g.cfg.ReassemblyMaxBytesPerEnterprise,
	})
	switch {
	case errors.Is(err, queue.ErrFragmentConflict):
		return 0, group, false, policy.NewRefusal(policy.ReasonPartConflict, err.Error())
	case errors.Is(err, queue.ErrFragmentsFull):
		return 0, group, false, policy.NewRefusal(policy.ReasonReassemblyFull, err.Error())
	case errors.Is(err, queue.ErrInvalid):
		return 0, group, false, policy.NewRefusal(policy.ReasonBadText, err.Error())
	case err != nil:
		g.log.Error("store part", "account", a.SystemID, "err", err)
		g.metrics.refusedTotal.WithLabelValues(policy.ReasonStoreError.String()).Inc()
		return 0, group, false, fmt.Errorf("%w: %w", ErrStore, err)
	}
	return res.ID, group, res.Complete, nil
}

// assemble joins the complete group g and stores its message, or rejects
// the parts when the message is refused as a whole. Nothing happens if g
// is not complete or was assembled already. An error means it may be
// tried again (store failure).
//
// The message is sent with priority (ahead of its enterprise's backlog:
// queue.Message.Priority) if any of its parts' submit_sm asked for it
// (queue.GroupPriority: priority_flag is per submit_sm, SMPP §5.2.14), as
// stored with the parts: the same whether the part that completes the
// group assembles it at once or housekeeping does after a restart.
func (g *Gateway) assemble(ctx context.Context, group queue.FragmentGroup) error {
	frags, err := g.store.Fragments(group)
	if err != nil {
		return err
	}
	if len(frags) != int(group.Total) {
		return nil // consumed meanwhile (or not complete)
	}
	first := frags[0]
	ids := make([]uint64, len(frags))
	for i, f := range frags {
		ids[i] = f.ID
	}
	acct := &Account{SystemID: group.Account, Enterprise: first.Enterprise, Signature: first.Signature, UserSignature: first.UserSignature}
	text, err := joinParts(frags)
	if err != nil {
		refusal := policy.NewRefusal(policy.ReasonBadText, err.Error())
		g.metrics.refused(refusal)
		return g.rejectParts(ctx, group, ids, refusal, "")
	}
	err = g.storeAssembled(ctx, acct, group, ids, SendRequest{
		Ingress: "smpp", Source: group.Source, Dests: []string{group.Dest}, Text: text,
		SourceTON: first.SourceTON, SourceNPI: first.SourceNPI, DestTON: first.DestTON, DestNPI: first.DestNPI,
		SendAt: first.SendAt, ValidUntil: first.ValidUntil,
		RegisteredDelivery: first.RegisteredDelivery, ClientCoding: first.ClientCoding,
		Priority: queue.GroupPriority(frags),
	})
	if err == nil || errors.Is(err, queue.ErrFragmentsGone) {
		return nil // stored, or assembled (or rejected) by another call
	}
	var ref *policy.Refusal
	if !errors.As(err, &ref) {
		return err // the store, or the context: try again later
	}
	// Refused as a whole after its parts were acknowledged (counted
	// already): every part id that asked for a receipt gets a REJECTD one.
	return g.rejectParts(ctx, group, ids, err, segment.Sign(text, acct.Signature, acct.UserSignature))
}

// rejectParts settles the parts ids of group as a message rejected at
// once, with the reason of refusal as its error code.
func (g *Gateway) rejectParts(ctx context.Context, group queue.FragmentGroup, ids []uint64, refusal error, text string) error {
	code := "rejected"
	var ref *policy.Refusal
	if errors.As(refusal, &ref) {
		code = ref.Reason.String()
	}
	id, err := g.store.RejectFragments(ctx, group, ids, code, text)
	switch {
	case errors.Is(err, queue.ErrFragmentsGone):
		return nil
	case err != nil:
		return err
	}
	g.log.Info("split message rejected after its parts were acknowledged", "group", group.String(),
		"parts", len(ids), "reason", code, "id", id)
	return nil
}

// joinParts decodes the stored parts of a message (in sequence order).
func joinParts(frags []*queue.Fragment) (string, error) {
	parts := make([]*segment.Fragment, len(frags))
	for i, f := range frags {
		parts[i] = &segment.Fragment{Coding: segment.Coding(f.Coding), Data: f.Data}
	}
	return segment.JoinText(parts)
}

// reassemblyHousekeeping assembles complete groups that were never
// assembled (a crash after the last part's ack) and rejects groups still
// incomplete ReassemblyTimeout after their first part arrived.
func (g *Gateway) reassemblyHousekeeping(ctx context.Context, now time.Time) {
	groups, err := g.store.FragmentGroups()
	if err != nil {
		g.log.Error("pending split messages", "err", err)
		return
	}
	for _, gi := range groups {
		if ctx.Err() != nil {
			return
		}
		switch {
		case gi.Complete:
			if err := g.assemble(ctx, gi.Group); err != nil {
				g.log.Error("assemble split message", "group", gi.Group.String(), "err", err)
			}
		case now.Sub(gi.Started) >= g.cfg.ReassemblyTimeout:
			refusal := policy.NewRefusal(policy.ReasonIncomplete, fmt.Sprintf("%d of %d parts in %v", len(gi.IDs), gi.Group.Total, g.cfg.ReassemblyTimeout))
			// A part arriving meanwhile changes the group: RejectFragments
			// then refuses, and the next run looks again.
			if err := g.rejectParts(ctx, gi.Group, gi.IDs, refusal, ""); err != nil {
				g.log.Error("expire split message", "group", gi.Group.String(), "err", err)
				continue
			}
			g.metrics.refused(refusal)
		}
	}
}

// partMessage resolves the id of one part of a message the ESME split
// itself: the message it was assembled into, or, while the part waits for
// the rest, a stand-in with the part's owner and no final state.
func (g *Gateway) partMessage(id uint64) (*queue.Message, error) {
	if mid, err := g.store.AliasOf(id); err == nil {
		return g.store.Get(mid)
	} else if !errors.Is(err, queue.ErrNotFound) {
		return nil, err
	}
	f, err := g.store.FragmentByID(id)
	if err != nil {
		return nil, err
	}
	return &queue.Message{ID: id, Account: f.Account, Enterprise: f.Enterprise, Source: f.Source, Dest: f.Dest,
		AcceptedAt: f.ArrivedAt, Parts: []queue.Part{{State: queue.StateAccepted}}}, nil
}

// storeAssembled stores the message joined from the complete group of
// parts (req has its one recipient) and deletes the parts in the same
// transaction, so that a crash or a second assembly can neither lose nor
// duplicate it; the part ids become its aliases, each gets a receipt. The
// account is checked as it is now, but no rate-limit token is taken: each
// part paid one, and a message refused for the rate at this point could
// not be retried by the ESME (its parts were acknowledged). It returns a
// *policy.Refusal when the message is refused as a whole, an error
// wrapping queue.ErrFragmentsGone when the group was assembled already,
// or an ErrStore.
func (g *Gateway) storeAssembled(ctx context.Context, acct *Account, group queue.FragmentGroup, ids []uint64, req SendRequest) error {
	acct, limit, err := g.policy.Prepare(acct)
	if err != nil {
		g.metrics.refused(err)
		return err
	}
	b, err := g.build(acct, req, time.Now())
	if err == nil && b.results[0].Err != nil {
		err = b.results[0].Err
	}
	if err != nil {
		g.metrics.refused(err)
		return err
	}
	m := b.msgs[0]
	m.Aliases = ids
	err = g.store.EnqueueAssembled(ctx, g.nodeLimit(acct.Enterprise, limit), group, m)
	if errors.Is(err, queue.ErrQuota) {
		if claim, ok := g.growQuota(ctx, acct.Enterprise, limit, m.Segments()); ok {
			err = g.store.EnqueueAssembled(ctx, claim, group, m) // cluster.go: this node's claim grew
		}
	}
	switch {
	case errors.Is(err, queue.ErrFragmentsGone):
		return err
	case errors.Is(err, queue.ErrQuota):
		err = g.quotaRefusal(err, limit)
		g.metrics.refused(err)
		return err
	case err != nil:
		return g.storeFailed(acct, err)
	}
	// No kick: the store hands the dispatcher what it stored (Start).
	g.count(acct, req.Ingress, b.results)
	return nil
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// SendRequest is one text for one or more recipients, from any ingress
// (submit_sm, submit_multi, HTTP). Text is already decoded.
type SendRequest struct {
	Ingress                                string // metrics label: smpp | http | batch
	Source                                 string
	SourceTON, SourceNPI, DestTON, DestNPI uint8
	Dests                                  []string
	Text                                   string
	// SendAt schedules the message (zero: at once); ValidUntil ends its
	// tries (zero: the configured validity after SendAt).
	SendAt, ValidUntil time.Time
	// RegisteredDelivery is SMPP's registered_delivery: 1 asks for a final
	// receipt, 2 for a receipt on failure only, 0 for none.
	RegisteredDelivery uint8
	// Multi gives every message of the request one id, the first's, as
	// submit_multi does; their receipts carry it.
	Multi bool
	// ClientCoding is the data_coding the text came in (SMPP), kept for
	// replace_sm.
	ClientCoding uint8
	// ConsumeFragments, for a message the ESME split itself and qxtd
	// reassembled (presplit.go): the stored group of parts it was joined
	// from. The message (exactly one recipient) is stored and the parts
	// deleted in one transaction, or nothing is stored if the parts are
	// gone (assembled already): the result's Err then wraps
	// queue.ErrFragmentsGone. The rate limit is not applied again (each
	// part paid it). Aliases are the part ids the ESME was given, in
	// sequence order; each gets a receipt.
	ConsumeFragments *queue.FragmentGroup
	Aliases          []uint64
}

// SendResult is the outcome for one recipient: an id, or a refusal.
type SendResult struct {
	Dest string
	ID   uint64 // 0 when refused
	Err  error  // a *Refusal, or an internal error
}

// ErrStore means the store failed: nothing of the request was accepted.
var ErrStore = errors.New("gateway: store unavailable")

// Send checks, signs, encodes and durably stores one message per
// recipient. Refusals are per recipient; the others are stored in one
// group commit. A non-nil error means nothing was stored (account-level
// refusal such as rate limit or disabled account, or the store failed).
func (g *Gateway) Send(ctx context.Context, acct *Account, req SendRequest) ([]SendResult, error) {
	prepare := g.policy.Prepare
	if req.ConsumeFragments != nil {
		prepare = g.prepareAssembled
	}
	acct, limit, err := prepare(acct)
	if err != nil {
		g.metrics.refused(err)
		return nil, err
	}
	if len(req.Dests) == 0 {
		err := &Refusal{Status: smpp.StatusInvalidDstAddr, Reason: "invalid_number", Detail: "no recipient"}
		g.metrics.refused(err)
		return nil, err
	}
	now := time.Now()
	if req.SendAt.Before(now) {
		req.SendAt = time.Time{} // in the past: at once
	}
	start := now
	if !req.SendAt.IsZero() {
		start = req.SendAt
	}
	if req.ValidUntil.IsZero() || !req.ValidUntil.After(start) {
		req.ValidUntil = start.Add(g.cfg.Validity)
	}
	signed := segment.Sign(req.Text, acct.Signature, acct.UserSignature)
	results := make([]SendResult, len(req.Dests))
	var msgs []*queue.Message
	var slots []int // results index of each message
	plans := map[string]*segment.Plan{}
	for i, raw := range req.Dests {
		results[i].Dest = raw
		rcpt, err := g.policy.Admit(acct, raw)
		if err != nil {
			results[i].Err = err
			continue
		}
		dest := rcpt.Number
		up := g.route(rcpt.Carrier)
		if up == nil {
			results[i].Err = &Refusal{Status: smpp.StatusInvalidDstAddr, Reason: "no_route",
				Detail: "no upstream serves carrier " + rcpt.Carrier}
			continue
		}
		plan, ok := plans[up.cfg.Name]
		if !ok {
			// One text, one encoding per upstream's options.
			plan, err = encode(signed, up.cfg.Segment)
			if err != nil {
				g.metrics.refused(err) // the whole request: one text for every recipient
				return nil, err
			}
			plans[up.cfg.Name] = plan
		}
		m := &queue.Message{
			Account:            acct.SystemID,
			Enterprise:         acct.Enterprise,
			Source:             req.Source,
			Dest:               dest,
			SourceTON:          req.SourceTON,
			SourceNPI:          req.SourceNPI,
			DestTON:            req.DestTON,
			DestNPI:            req.DestNPI,
			DataCoding:         plan.DataCoding,
			Concat:             uint8(up.cfg.Segment.Concat),
			RegisteredDelivery: req.RegisteredDelivery,
			Upstream:           up.cfg.Name,
			Text:               signed,
			AcceptedAt:         now,
			SendAt:             req.SendAt,
			ValidUntil:         req.ValidUntil,
		}
		if req.Multi {
			m.Group = queue.GroupWithFirst
		}
		m.Weight = weightOf(plan)
		m.ClientCoding = req.ClientCoding
		m.Aliases = req.Aliases
		for _, body := range plan.Parts {
			m.Parts = append(m.Parts, queue.Part{Body: body})
		}
		msgs = append(msgs, m)
		slots = append(slots, i)
	}
	if len(msgs) > 0 {
		var errs []error
		if req.ConsumeFragments != nil {
			errs, err = g.enqueueAssembled(ctx, limit, *req.ConsumeFragments, msgs)
		} else {
			errs, err = g.store.EnqueueLimit(ctx, limit, msgs...)
		}
		if err != nil {
			g.log.Error("enqueue", "account", acct.SystemID, "err", err)
			g.metrics.refusedTotal.WithLabelValues("store_error").Inc()
			return nil, fmt.Errorf("%w: %w", ErrStore, err)
		}
		for k, m := range msgs {
			i := slots[k]
			if errors.Is(errs[k], queue.ErrFragmentsGone) {
				results[i].Err = errs[k] // assembled before: nothing refused
				continue
			}
			if errs[k] != nil {
				results[i].Err = refuseQuota()
				continue
			}
			results[i].ID = m.ID
		}
		g.notify()
	}
	for _, r := range results {
		if errors.Is(r.Err, queue.ErrFragmentsGone) {
			continue
		}
		if r.Err != nil {
			g.metrics.refused(r.Err)
		} else {
			g.metrics.accepted.WithLabelValues(req.Ingress).Inc()
		}
	}
	return results, nil
}

// encode splits a signed text for an upstream's options; what cannot be
// encoded is a refusal of the whole text.
func encode(signed string, opt segment.Options) (*segment.Plan, error) {
	plan, err := segment.Encode(signed, opt)
	switch {
	case errors.Is(err, segment.ErrTooLong):
		return nil, refuseTooLong(err.Error())
	case err != nil:
		return nil, &Refusal{Status: smpp.StatusInvalidMsgLen, Reason: "bad_text", Detail: err.Error()}
	}
	return plan, nil
}

// weightOf is the billable segments each stored part stands for: with
// message_payload one part goes to the SMSC, which splits it into
// plan.Segments() on the air; quota and bill count those.
func weightOf(plan *segment.Plan) uint16 {
	if n := len(plan.Parts); n == 1 && plan.Segments() > 1 {
		return uint16(plan.Segments())
	}
	return 0
}

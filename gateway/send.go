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
	// ReceiptURL is where the final receipt of each message is POSTed
	// (package webhook). Empty: the account's ReceiptURL for HTTP and
	// batch sends; none for SMPP (its receipts are deliver_sm).
	ReceiptURL string
	// Priority sends the messages ahead of the enterprise's backlog
	// (queue.Message.Priority; SMPP's priority_flag 1–3).
	Priority bool
	// Once sends one text to a number once however often Dests names it,
	// and however it is written (13800138000, +86 138-0013-8000: the
	// policy's form of the number): a group send (HTTP, the console,
	// submit_multi, a reminder's recipients), where the same person twice
	// in a pasted list or two address-book groups is a mistake that would
	// reach the handset, and be billed, twice. A batch file's rows are
	// each an SMS of their own (FAQ 5) and are sent without it.
	Once bool
}

// SendResult is the outcome for one recipient: an id, or a refusal.
type SendResult struct {
	Dest string
	ID   uint64 // 0 when refused
	Err  error  // a *policy.Refusal, or an internal error
	// Duplicate: the number was named before in the request (Once); ID
	// and Err are the earlier one's, no message of its own was stored.
	Duplicate bool
}

// ErrStore means the store failed: nothing of the request was
// acknowledged. Nothing was stored either, but in one case: a commit the
// disk took and did not confirm (queue.ErrNotSynced), whose messages go
// out all the same; a retry with the same Idempotency-Key, or a job's
// chunk, finds their answer stored and does not send them again.
var ErrStore = errors.New("gateway: store unavailable")

// Send checks, signs, encodes and durably stores one message per
// recipient. Refusals are per recipient; the others are stored in one
// group commit. A non-nil error means nothing was stored (account-level
// refusal such as rate limit or disabled account, or the store failed).
func (g *Gateway) Send(ctx context.Context, acct *Account, req SendRequest) ([]SendResult, error) {
	acct, limit, err := g.prepare(acct)
	if err != nil {
		g.metrics.refused(err)
		return nil, err
	}
	b, err := g.build(acct, req, time.Now())
	if err != nil {
		g.metrics.refused(err)
		return nil, err
	}
	if err := g.enqueue(ctx, acct, limit, b); err != nil {
		return nil, err
	}
	g.count(acct, req.Ingress, b.results)
	return b.results, nil
}

// SendEach is Send for several requests at once, each with its own text
// (a personalized send: a code or a name for each number): one
// submission of the rate limit, every message stored in one group commit,
// and a result for each recipient of each request, in order. A request
// that Send would refuse as a whole (a text that cannot be encoded, a bad
// source) is a refusal of its own recipients only. A non-nil error means
// nothing was stored.
func (g *Gateway) SendEach(ctx context.Context, acct *Account, ingress string, reqs []SendRequest) ([]SendResult, error) {
	acct, limit, err := g.prepare(acct)
	if err != nil {
		g.metrics.refused(err)
		return nil, err
	}
	now := time.Now()
	all := &outgoing{}
	for _, req := range reqs {
		req.Ingress = ingress
		b, err := g.build(acct, req, now)
		if err != nil {
			for _, d := range req.Dests {
				all.results = append(all.results, SendResult{Dest: d, Err: err})
			}
			continue
		}
		base := len(all.results)
		all.results = append(all.results, b.results...)
		all.msgs = append(all.msgs, b.msgs...)
		for _, k := range b.slots {
			all.slots = append(all.slots, base+k)
		}
		for _, d := range b.dups {
			all.dups = append(all.dups, [2]int{base + d[0], base + d[1]})
		}
	}
	if err := g.enqueue(ctx, acct, limit, all); err != nil {
		return nil, err
	}
	g.count(acct, ingress, all.results)
	return all.results, nil
}

// enqueue stores b's messages in one group commit within the enterprise's
// quota (limit), and sets each one's result: its id, or a quota refusal.
// An error is ErrStore: nothing was stored.
func (g *Gateway) enqueue(ctx context.Context, acct *Account, limit int64, b *outgoing) error {
	if len(b.msgs) == 0 {
		b.settleDups()
		return nil
	}
	ans := takeAnswer(ctx)
	if ans != nil {
		// The answer is stored with the messages: the enqueue must not
		// return before its transaction did (queue.WithAnswer).
		ctx = context.WithoutCancel(ctx)
	}
	errs, stored, err := g.enqueueLimited(ctx, acct.Enterprise, limit, b.msgs, ans.render(b, g, limit))
	if err != nil {
		return g.storeFailed(acct, err)
	}
	for k, m := range b.msgs {
		g.settle(&b.results[b.slots[k]], errs[k], m.ID, limit)
	}
	b.settleDups()
	if stored != nil {
		ans.stored = stored.Body
	}
	// No kick: the store hands the dispatcher what it stored (Start,
	// queue.Store.SetDueCallback).
	return nil
}

// prepare is the account-level check of every new submission: the
// account as it is now (Policy.Prepare) and one token of its rate limit.
func (g *Gateway) prepare(acct *Account) (*Account, int64, error) {
	a, limit, err := g.policy.Prepare(acct)
	if err != nil {
		return nil, 0, err
	}
	if err := g.policy.Allow(a); err != nil {
		return nil, 0, err
	}
	return a, limit, nil
}

// outgoing is what Send and the assembly of split messages store: one
// message per admitted recipient, and a result for every recipient.
type outgoing struct {
	results []SendResult
	msgs    []*queue.Message
	slots   []int    // results index of each message
	dups    [][2]int // results index of a duplicate (Once), of its first
}

// settleDups gives each duplicate its first's outcome.
func (b *outgoing) settleDups() { settleDups(b.results, b.dups) }

// settleDups gives each duplicate of results (dups: its index, its
// first's) its first's outcome.
func settleDups(results []SendResult, dups [][2]int) {
	for _, d := range dups {
		r, first := &results[d[0]], results[d[1]]
		r.ID, r.Err = first.ID, first.Err
	}
}

// build admits each recipient, routes it, signs and encodes the text
// (once per upstream's options) and builds the messages to store. A
// recipient's refusal is its result's Err; an error refuses the whole
// request (no recipient, a text that cannot be encoded).
func (g *Gateway) build(acct *Account, req SendRequest, now time.Time) (*outgoing, error) {
	if len(req.Dests) == 0 {
		return nil, policy.NewRefusalZH(policy.ReasonInvalidNumber, "no recipient", "没有收件人")
	}
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
	src, err := policy.Source(acct.ServiceNumber, acct.ExtLen, acct.Extension, req.Source)
	if err != nil {
		return nil, err // one source for every recipient
	}
	req.Source = src
	signed := segment.Sign(req.Text, acct.Signature, acct.UserSignature)
	receiptURL := req.ReceiptURL
	if receiptURL == "" && req.Ingress != "smpp" {
		receiptURL = acct.ReceiptURL
	}
	b := &outgoing{results: make([]SendResult, len(req.Dests))}
	plans := map[string]*segment.Plan{}
	var first map[string]int // Once: the number's first result
	if req.Once && len(req.Dests) > 1 {
		first = make(map[string]int, len(req.Dests))
	}
	for i, raw := range req.Dests {
		b.results[i].Dest = raw
		rcpt, err := g.policy.Admit(acct, raw)
		if err != nil {
			b.results[i].Err = err
			continue
		}
		if first != nil {
			if f, ok := first[rcpt.Number]; ok {
				b.results[i].Duplicate = true
				b.dups = append(b.dups, [2]int{i, f})
				continue
			}
			first[rcpt.Number] = i
		}
		up := g.route(rcpt.Carrier)
		if up == nil {
			b.results[i].Err = noRoute(rcpt.Carrier)
			continue
		}
		plan, ok := plans[up.cfg.Name]
		if !ok {
			// One text, one encoding per upstream's options.
			plan, err = encode(signed, up.cfg.Segment)
			if err != nil {
				return nil, err // one text for every recipient
			}
			plans[up.cfg.Name] = plan
		}
		m := &queue.Message{
			ReceiptURL:         receiptURL,
			Account:            acct.SystemID,
			Enterprise:         acct.Enterprise,
			Source:             req.Source,
			Dest:               rcpt.Number,
			SourceTON:          req.SourceTON,
			SourceNPI:          req.SourceNPI,
			DestTON:            req.DestTON,
			DestNPI:            req.DestNPI,
			DataCoding:         plan.DataCoding,
			Concat:             uint8(up.cfg.Segment.Concat),
			RegisteredDelivery: req.RegisteredDelivery,
			ClientCoding:       req.ClientCoding,
			Upstream:           up.cfg.Name,
			Text:               signed,
			AcceptedAt:         now,
			SendAt:             req.SendAt,
			ValidUntil:         req.ValidUntil,
			Weight:             weightOf(plan),
			Priority:           req.Priority,
		}
		if req.Multi {
			m.Group = queue.GroupWithFirst
		}
		for _, body := range plan.Parts {
			m.Parts = append(m.Parts, queue.Part{Body: body})
		}
		b.msgs = append(b.msgs, m)
		b.slots = append(b.slots, i)
	}
	return b, nil
}

// storeFailed logs and counts a failed store commit and returns ErrStore.
// A request whose context ended (the ESME disconnected, the HTTP client
// went away) is no store failure: logged at debug, not counted.
func (g *Gateway) storeFailed(acct *Account, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		g.log.Debug("enqueue abandoned", "account", acct.SystemID, "err", err)
		return fmt.Errorf("gateway: enqueue abandoned: %w", err)
	}
	g.log.Error("enqueue", "account", acct.SystemID, "err", err)
	g.metrics.refusedTotal.WithLabelValues(policy.ReasonStoreError.String()).Inc()
	return fmt.Errorf("%w: %w", ErrStore, err)
}

// count records the outcome of each recipient in the metrics, and the
// accepted ones as acct's enterprise's.
func (g *Gateway) count(acct *Account, ingress string, results []SendResult) {
	var ok uint64
	for _, r := range results {
		if r.Duplicate {
			continue // counted as its first
		}
		if r.Err != nil {
			g.metrics.refused(r.Err)
		} else {
			ok++
		}
	}
	g.metrics.accepted.WithLabelValues(ingress).Add(float64(ok))
	g.senders.add(acct.Enterprise, ok)
}

// encode splits a signed text for an upstream's options; what cannot be
// encoded is a refusal of the whole text.
func encode(signed string, opt segment.Options) (*segment.Plan, error) {
	plan, err := segment.Encode(signed, opt)
	if err != nil {
		return nil, textRefusal(err)
	}
	return plan, nil
}

// textRefusal is the refusal of a text to send that segment cannot
// encode, with its detail in Chinese where its sender may read it in a
// console (the counts of one too long, an empty text).
func textRefusal(err error) error {
	var le *segment.LengthError
	switch {
	case errors.As(err, &le) && le.Segments > 0:
		return policy.NewRefusalZH(policy.ReasonTooLong, err.Error(),
			fmt.Sprintf("共 %d 个字，需要 %d 条短信，一条长短信最多 %d 条", le.Chars, le.Segments, le.MaxSegments))
	case errors.As(err, &le):
		return policy.NewRefusalZH(policy.ReasonTooLong, err.Error(), fmt.Sprintf("共 %d 个字（含签名），最多 %d 个字", le.Chars, le.Limit))
	case errors.Is(err, segment.ErrTooLong):
		return policy.NewRefusal(policy.ReasonTooLong, err.Error())
	case errors.Is(err, segment.ErrEmpty):
		return policy.NewRefusalZH(policy.ReasonBadText, err.Error(), "短信内容为空")
	case errors.Is(err, segment.ErrNotUTF8):
		return policy.NewRefusalZH(policy.ReasonBadText, err.Error(), "内容含有无效的字符（不是 UTF-8 文本）")
	}
	return policy.NewRefusal(policy.ReasonBadText, err.Error())
}

// noRoute is the refusal of a recipient whose carrier no upstream serves.
func noRoute(carrier string) error {
	c, _ := policy.ParseCarrier(carrier)
	return policy.NewRefusalZH(policy.ReasonNoRoute, "no upstream serves carrier "+carrier, "没有通道发往"+c.ZH()+"号码")
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

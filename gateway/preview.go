package gateway

import (
	"errors"
	"math"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
)

// Preview is what sending a text would put on the air for an account: the
// text signed as Send signs it, and what Send would count. The console's
// live character counter asks for it on every keystroke.
type Preview struct {
	Signed   string // the text with the enterprise and user signatures
	Chars    int    // code points of Signed, the figure checked against MaxChars
	Segments int    // the billing count (segment.Plan.Segments)
	// SegmentsMax is the most segments the text counts through any
	// configured upstream: more than Segments when an upstream making
	// its parts another way counts more (a preview without a recipient
	// cannot know where it goes). Segments with a recipient.
	SegmentsMax int
	Coding      segment.Coding // segment.GSM7 or segment.UCS2
	MaxChars    int            // the most characters Send takes (signatures included)
	// Refusal is why Send would refuse the text (too_long, bad_text); nil
	// if it would take it. The counts are still those that can be made:
	// a text too long is counted whole.
	Refusal *policy.Refusal
}

// Preview signs and counts text for acct as Send does: the account as it
// is now (Policy.Prepare: signatures may have changed since the bind),
// segment.Sign, and the encoding of the segment.Options of the upstream
// a message to to would go to now (route, without counting a failover).
// Upstreams configured with other options can count differently, so an
// empty to — a preview with no recipient yet, the console's counter
// before a number is typed — counts with the first configured upstream's.
// A to the send would refuse (an invalid number, out of scope, opted
// out, not whitelisted, no upstream for its carrier) is the Refusal,
// after any refusal of the text itself, which refuses every recipient.
// It takes no token of the rate limit and reads nothing but what Prepare
// and Admit read. An error is an account-level refusal (disabled, no
// signature), as Send would answer.
//
// An empty text is previewed as the signatures alone (Send refuses an
// empty text before it gets here; a console shows what the signature
// costs before the first keystroke), with no Refusal.
func (g *Gateway) Preview(acct *Account, text, to string) (Preview, error) {
	acct, _, err := g.policy.Prepare(acct)
	if err != nil {
		return Preview{}, err
	}
	up := g.ups[0] // New refuses a gateway without upstreams
	var refused error
	if to != "" {
		if rcpt, err := g.policy.Admit(acct, to); err != nil {
			refused = err
		} else if _, v := g.pick(rcpt.Carrier); v != nil {
			up = v
		} else {
			refused = noRoute(rcpt.Carrier)
		}
	}
	p, err := countText(acct, text, up.cfg.Segment)
	if err != nil {
		return p, err
	}
	p.SegmentsMax = p.Segments
	if to == "" && p.Refusal == nil && p.Signed != "" {
		for _, u := range g.ups[1:] {
			if sameParts(u.cfg.Segment, up.cfg.Segment) {
				continue
			}
			opt := u.cfg.Segment
			opt.MaxChars = math.MaxInt32 // the first's limit is the one checked
			if plan, err := encode(p.Signed, opt); err == nil {
				p.SegmentsMax = max(p.SegmentsMax, plan.Segments())
			}
		}
	}
	if p.Refusal != nil || refused == nil {
		return p, nil
	}
	if !errors.As(refused, &p.Refusal) {
		return Preview{}, refused
	}
	return p, nil
}

// countText is Preview's signing and counting with one upstream's options.
func countText(acct *Account, text string, opt segment.Options) (Preview, error) {
	p := Preview{Signed: segment.Sign(text, acct.Signature, acct.UserSignature), MaxChars: opt.MaxChars}
	if p.MaxChars == 0 {
		p.MaxChars = segment.DefaultMaxChars
	}
	if p.Signed == "" { // no text, no signature: nothing on the air
		return p, nil
	}
	plan, err := encode(p.Signed, opt) // the very check and split of Send
	if err == nil {
		p.Chars, p.Segments, p.Coding = plan.Chars, plan.Segments(), plan.Coding
		return p, nil
	}
	if !errors.As(err, &p.Refusal) {
		return Preview{}, err
	}
	// Refused: count what can be counted (a text too long, in full).
	m, _ := segment.MeasureText(p.Signed, opt)
	p.Chars, p.Segments, p.Coding = m.Chars, m.Segments, m.Coding
	return p, nil
}

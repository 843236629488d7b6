package queue

import (
	"fmt"
	"slices"
	"time"
)

// State is the life-cycle state of one part (one segment on the air).
type State uint8

// Part states. Accepted and Submitted are transient; every other state is
// final and never changes again.
const (
	StateAccepted      State = 1 + iota // stored, not yet accepted by the SMSC
	StateSubmitted                      // SMSC answered submit_sm_resp OK with its id
	StateDelivered                      // DLR stat DELIVRD
	StateUndeliverable                  // DLR stat UNDELIV
	StateExpired                        // DLR stat EXPIRED, or validity ran out before submission
	StateRejected                       // DLR stat REJECTD, or a permanent submit_sm_resp error
	StateUnknown                        // DLR stat UNKNOWN / ACCEPTD-final / DELETED, or no DLR in time
	StateCancelled                      // scheduled, cancelled before it was sent (Cancel); last, so stored values keep their meaning
	stateEnd                            // first invalid value
)

var stateNames = [...]string{
	StateAccepted:      "accepted",
	StateSubmitted:     "submitted",
	StateDelivered:     "delivered",
	StateUndeliverable: "undeliverable",
	StateExpired:       "expired",
	StateRejected:      "rejected",
	StateUnknown:       "unknown",
	StateCancelled:     "cancelled",
}

// States lists every valid state in order, e.g. to pre-create metric series.
var States = []State{StateAccepted, StateSubmitted, StateDelivered, StateUndeliverable, StateExpired, StateRejected, StateUnknown, StateCancelled}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return s >= StateAccepted && s < stateEnd }

// Final reports whether s is a final state (no further transition).
func (s State) Final() bool { return s >= StateDelivered && s < stateEnd }

// String returns the lowercase name of s ("delivered"), suitable as a metric
// label value.
func (s State) String() string {
	if s.Valid() {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Message is one message as an ESME submitted it: one destination, one or
// more parts. The Store returns copies; changing them changes nothing stored.
type Message struct {
	ID         uint64 // assigned by Enqueue: monotonic, durable, never reused
	Account    string // SMPP system_id / user that submitted it; owner, DLR routing
	Enterprise string // billing owner (group code); Enqueue sets it to Account if empty

	Source, Dest                           string
	SourceTON, SourceNPI, DestTON, DestNPI uint8
	DataCoding                             uint8
	Concat                                 uint8  // opaque to queue (segment mode)
	Ref                                    uint16 // concatenation reference, assigned by Enqueue when len(Parts) > 1, else 0
	RegisteredDelivery                     uint8  // SMPP registered_delivery as submitted
	Upstream                               string // route chosen at acceptance; SMSC ids are indexed under it
	Text                                   string // the signed text, for lookups / the DLR text field

	AcceptedAt time.Time // set by Enqueue if zero; its month (Asia/Shanghai) is the billing month
	SendAt     time.Time // scheduled send: parts are not due before it (zero = at once)
	ValidUntil time.Time // zero = the upstream's default validity

	Parts        []Part
	DLRForwarded bool // the final DLR was delivered to the ESME (or none was requested)
	// Priority sends the message ahead of its enterprise's backlog (an
	// OTP behind a campaign). It is stored while a part of the message
	// waits to be sent, with a priority due key for each such part (the
	// pdue bucket), so it holds whichever way the part reaches the
	// dispatcher: handed over by the commit that stored it, or read back
	// from the store (DueSharedAt takes such parts first) after a
	// restart, a retry, at a scheduled time, or when the hand-over was
	// full. Once no part waits it is cleared, and the record is the one
	// a release before it reads (see codec.go).
	Priority bool
	// Group is the id the client was given when it is not ID: one
	// submit_multi gets one message_id for all its recipients, and their
	// receipts must carry it. 0 = ID. See GroupWithFirst.
	Group uint64
	// ClientCoding is the data_coding the client sent the text in (0: GSM
	// default). replace_sm carries no data_coding: its new text is read
	// in this one.
	ClientCoding uint8
	// Weight is how many segments on the air each part stands for: more
	// than 1 when the SMSC splits the part itself (message_payload), so
	// that quota and bill count what the handset receives. 0 means 1.
	Weight uint16
	// Aliases are the ids the client was given for the parts of a
	// message it split itself (one submit_sm per part, reassembled here;
	// see StoreFragment), in sequence order. Each gets its own receipt
	// (if its part asked: AliasDLR), and each resolves to this message
	// (AliasOf). nil for other messages.
	Aliases []uint64
	// AliasDLR is each alias's own registered_delivery, in Aliases order,
	// when the parts asked differently (Kannel asks on the first part
	// only; some clients on the last): each alias gets a receipt as its
	// own part asked, and RegisteredDelivery is then the most any part
	// asked (combineDLR). nil: every alias asked as RegisteredDelivery
	// says (and every record stored before this field).
	AliasDLR []uint8
	// ReceiptURL is where the message's final receipt is POSTed (an HTTP
	// sender's receipt_url, or its enterprise's): when the message becomes
	// final a receipt webhook is queued (hooks.go). Empty: none.
	ReceiptURL string
	// ReceiptDone is set once the receipt webhook was delivered or given
	// up (AckHook). Retention keeps the message until then.
	ReceiptDone bool
}

// Part is one segment of a Message.
type Part struct {
	Body        []byte // encoded segment body (opaque)
	State       State
	SMSCID      string    // as returned by the SMSC in submit_sm_resp
	DueAt       time.Time // while Accepted: when the part is next due for submission
	SubmittedAt time.Time
	DoneAt      time.Time
	ErrCode     string // SMSC error: DLR err: field, or submit_sm_resp status as "0x%08x"
	Attempts    int    // submissions that ended (Retry or Submitted)

	// DupSMSCIDs holds the ids of further SMSC acceptances of this same part
	// (a submit_sm answered after its retry was sent too). Each is indexed so
	// that whichever DLR comes first settles the part and the rest are
	// duplicates.
	DupSMSCIDs []string
}

// Key names one part of one message.
type Key struct {
	ID   uint64
	Part uint16 // index into Message.Parts
}

func (k Key) String() string { return fmt.Sprintf("%d/%d", k.ID, k.Part) }

// Job is one part due for submission, as returned by Due.
type Job struct {
	Key  Key
	Msg  *Message // a copy; jobs for parts of the same message in one Due call share it: treat as read-only
	Part Part     // a copy of Msg.Parts[Key.Part]
}

// DLR is a delivery receipt from an upstream SMSC, already parsed.
type DLR struct {
	Upstream string // the upstream (bind) it came from: SMSC ids are unique per upstream only
	SMSCID   string // id: field or receipted_message_id, raw
	State    State  // must be final
	ErrCode  string // err: field
	DoneAt   time.Time
}

// Result says what ApplyDLR did with a receipt.
type Result uint8

// Results of ApplyDLR.
const (
	Matched   Result = 1 + iota // the part moved to its final state
	Duplicate                   // the part was already final: nothing changed
	Orphaned                    // no part known under that id yet: stored until Submitted records it
	Unmatched                   // ApplyDLRIfKnown only: no part known under that id; nothing stored
)

func (r Result) String() string {
	switch r {
	case Matched:
		return "matched"
	case Duplicate:
		return "duplicate"
	case Orphaned:
		return "orphaned"
	case Unmatched:
		return "unmatched"
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Clone returns a deep copy of m.
// PartWeight is the number of billable segments each part stands for.
func (m *Message) PartWeight() int64 {
	if m.Weight == 0 {
		return 1
	}
	return int64(m.Weight)
}

// Segments is the number of billable segments of the message.
func (m *Message) Segments() int64 { return int64(len(m.Parts)) * m.PartWeight() }

func (m *Message) Clone() *Message {
	if m == nil {
		return nil
	}
	c := *m
	c.Aliases = slices.Clone(m.Aliases)
	c.AliasDLR = slices.Clone(m.AliasDLR)
	c.Parts = make([]Part, len(m.Parts))
	for i, p := range m.Parts {
		c.Parts[i] = p.clone()
	}
	return &c
}

func (p Part) clone() Part {
	p.Body = slices.Clone(p.Body)
	p.DupSMSCIDs = slices.Clone(p.DupSMSCIDs)
	return p
}

// waiting reports whether a part of m waits to be sent (is Accepted).
func (m *Message) waiting() bool {
	for i := range m.Parts {
		if m.Parts[i].State == StateAccepted {
			return true
		}
	}
	return false
}

// Final reports whether every part of m is in a final state.
func (m *Message) Final() bool {
	for i := range m.Parts {
		if !m.Parts[i].State.Final() {
			return false
		}
	}
	return len(m.Parts) > 0
}

// State summarises the parts as one state, the one an ESME sees for the
// whole message: while any part is transient, the least advanced transient
// state (Accepted before Submitted); once all are final, Delivered if every
// part was delivered, else the final state of the first part that was not.
func (m *Message) State() State {
	var transient State
	for _, p := range m.Parts {
		if !p.State.Final() && (transient == 0 || p.State < transient) {
			transient = p.State
		}
	}
	if transient != 0 {
		return transient
	}
	for _, p := range m.Parts {
		if p.State != StateDelivered {
			return p.State
		}
	}
	return StateDelivered
}

// wantsDLR reports whether a final message needs a receipt forwarded to its
// ESME, from registered_delivery bits 0-1 (SMPP 3.4 §5.2.17): 1 = on success
// or failure, 2 = on failure only, 3 (reserved) is treated as 1.
func (m *Message) wantsDLR() bool {
	return wantsReceipt(m.RegisteredDelivery, m.State())
}

// AliasWantsDLR reports whether the part the client was given Aliases[i]
// for asked for a receipt in the final message's state: as its own
// registered_delivery says (AliasDLR), else as the message's does.
func (m *Message) AliasWantsDLR(i int) bool {
	if i < len(m.AliasDLR) {
		return wantsReceipt(m.AliasDLR[i], m.State())
	}
	return m.wantsDLR()
}

func wantsReceipt(registeredDelivery uint8, st State) bool {
	switch registeredDelivery & 0x03 {
	case 0:
		return false
	case 2:
		return st != StateDelivered
	}
	return true
}

// combineDLR is the registered_delivery of a message joined from parts
// that asked for receipts as each of masks says, and the per-alias list
// to keep (nil when every part asked the same): bits 0-1 the most any
// part asked (a receipt always, else on failure, else none), the other
// bits as any part set them. So the message wants a receipt exactly when
// some alias does.
func combineDLR(masks []uint8) (uint8, []uint8) {
	if len(masks) == 0 {
		return 0, nil
	}
	var high, low uint8
	same := true
	for _, r := range masks {
		same = same && r == masks[0]
		high |= r &^ 0x03
		switch r & 0x03 {
		case 1, 3:
			low = 1
		case 2:
			if low == 0 {
				low = 2
			}
		}
	}
	if same {
		return masks[0], nil
	}
	return high | low, slices.Clone(masks)
}

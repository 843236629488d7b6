package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbox: an enterprise's messages listed newest first, and the
// scheduled ones changed (Reschedule) or cancelled (Cancel) before they are
// sent.
//
// A scheduled message is one whose SendAt is in the future and none of
// whose parts has left Accepted (Message.Scheduled). Its parts are due at
// SendAt, so the dispatcher does not see them before then. Cancel and
// Reschedule act only while SendAt is at least ScheduleMargin ahead, judged
// inside the commit: a part that the dispatcher may already hold (due now,
// read by Due, on its way to the SMSC) is never changed under it.

// ErrNotScheduled: Cancel or Reschedule of a message that is not waiting
// for its send time (any more): sent, being sent, due within
// ScheduleMargin, or over. Nothing was written.
var ErrNotScheduled = errors.New("message is not scheduled")

// ScheduleMargin is how far ahead a scheduled message's send time must
// still be for Cancel and Reschedule to change it. The dispatcher reads
// parts only once they are due, so a margin of seconds (far above a commit
// and a Due scan) means it cannot hold a part that is being changed.
const ScheduleMargin = 2 * time.Second

// MaxListScan is the most message records one List call reads. List walks
// the msg bucket newest first and filters as it goes (there is no index per
// enterprise yet: that is future work), so a call on a large store whose
// enterprise sent little recently can stop before it fills its page; it
// then returns what it found and a next cursor to page on from.
const MaxListScan = 20_000

// DefaultListLimit is List's page size when limit <= 0.
const DefaultListLimit = 100

// listScan is MaxListScan; tests lower it.
var listScan = MaxListScan

// ListFilter selects messages for List. Enterprise is required; every
// other field is optional (its zero value does not filter).
type ListFilter struct {
	Enterprise string    // only this enterprise's messages (required, unless AllEnterprises)
	Account    string    // only this account's (user's) messages
	State      State     // only messages whose Message.State is this
	States     []State   // only messages whose Message.State is one of these (nil: any)
	From, To   time.Time // AcceptedAt at or after From, and before To
	Scheduled  bool      // only messages waiting for their send time (the scheduled outbox)
	Sent       bool      // only the others: sent, being sent, or over (the sent outbox)
	Now        time.Time // the "now" of Scheduled and Sent; zero = time.Now()

	// SendAt at or after SendFrom, and before SendTo: the scheduled
	// outbox by the time its messages go out, which is what someone
	// looking for tomorrow's messages means, not when they were written.
	SendFrom, SendTo time.Time

	// Number: only messages to this number, compared as digits as
	// InboxFilter.Number compares a reply's source ("13712345678" finds
	// "+8613712345678"), or to a number ending in these digits; "" any.
	// "Did my message to this customer arrive?" is the question most
	// asked of an outbox.
	Number string

	// AllEnterprises lists every enterprise's messages to Number (which
	// it requires; Enterprise must be ""): the operator's trace of a
	// number, as when its owner complains of a message and the sender
	// is to be found. Said explicitly, so that a filter whose enterprise
	// was left out by mistake lists nothing instead of everyone's.
	AllEnterprises bool
}

// Scheduled reports whether m is waiting for its send time at now: SendAt
// is after now and every part is still Accepted. Once its time comes (or
// it is cancelled) it leaves the scheduled outbox for the sent one.
func (m *Message) Scheduled(now time.Time) bool {
	if !m.SendAt.After(now) || len(m.Parts) == 0 {
		return false
	}
	for i := range m.Parts {
		if m.Parts[i].State != StateAccepted {
			return false
		}
	}
	return true
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, bool) {
	for _, st := range States {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// List returns up to limit messages of f.Enterprise that match f, newest
// (highest id) first, starting below after (0 = from the newest). next is
// the cursor for the following page (pass it as after), 0 when the oldest
// message has been read. List reads at most MaxListScan records per call:
// a page can therefore hold fewer than limit messages (even none) with a
// non-zero next — keep paging until next is 0. Each message is a copy.
//
// Another enterprise's messages are skipped without being decoded.
func (s *Store) List(f ListFilter, after uint64, limit int) ([]*Message, uint64, error) {
	switch {
	case f.AllEnterprises && (f.Enterprise != "" || f.Number == ""):
		return nil, 0, fmt.Errorf("queue: list: %w: every enterprise's messages are listed to a number, with no enterprise", ErrInvalid)
	case f.Enterprise == "" && !f.AllEnterprises:
		return nil, 0, fmt.Errorf("queue: list: %w: enterprise is required", ErrInvalid)
	}
	if f.Scheduled && f.Sent {
		return nil, 0, fmt.Errorf("queue: list: %w: scheduled and sent exclude each other", ErrInvalid)
	}
	if f.State != 0 && !f.State.Valid() {
		return nil, 0, fmt.Errorf("queue: list: %w: state %d", ErrInvalid, uint8(f.State))
	}
	for _, st := range f.States {
		if !st.Valid() {
			return nil, 0, fmt.Errorf("queue: list: %w: state %d", ErrInvalid, uint8(st))
		}
	}
	digits := onlyDigits(f.Number)
	if f.Number != "" && digits == "" {
		return nil, 0, fmt.Errorf("queue: list: %w: number %q has no digit", ErrInvalid, f.Number)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	ent, acct := []byte(f.Enterprise), []byte(f.Account)
	var out []*Message
	var next uint64
	err := s.view(func(tx *bolt.Tx) error {
		out, next = nil, 0
		c := tx.Bucket(bucketMsg).Cursor()
		var k, v []byte
		if after == 0 {
			k, v = c.Last()
		} else if k, _ = c.Seek(msgKey(after)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		var last uint64 // the last record read
		for scanned := 0; k != nil; k, v = c.Prev() {
			if scanned == listScan {
				next = last // the caller resumes below it
				return nil
			}
			// A damaged record is skipped (logged once), not the whole
			// page: one record a disk error garbled must not take every
			// enterprise's outbox with it. Whose it was cannot be told.
			if len(k) != 8 {
				s.reportDamaged(fmt.Sprintf("listkey/%x", k), "queue: outbox skips a malformed message key (restore from a backup)", "key", fmt.Sprintf("%x", k))
				continue
			}
			id := binary.BigEndian.Uint64(k)
			scanned, last = scanned+1, id
			a, e, d, ok := peekHead(v)
			if !ok {
				s.reportDamaged(damagedKey("list", id), "queue: outbox skips a message that does not decode (restore from a backup)", "id", id, "err", "bad header")
				continue
			}
			if !f.AllEnterprises && !bytes.Equal(e, ent) || len(acct) > 0 && !bytes.Equal(a, acct) ||
				digits != "" && !sameDigits(d, digits) {
				continue
			}
			m, err := DecodeMessage(v)
			if err != nil {
				s.reportDamaged(damagedKey("list", id), "queue: outbox skips a message that does not decode (restore from a backup)", "id", id, "enterprise", f.Enterprise, "err", err)
				continue
			}
			if !f.match(m, now, digits) {
				continue
			}
			out = append(out, m)
			if len(out) == limit {
				if pk, _ := c.Prev(); pk != nil {
					next = id
				}
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: list: %w", err)
	}
	return out, next, nil
}

// match reports whether m is one of f's; digits are f.Number's.
func (f *ListFilter) match(m *Message, now time.Time, digits string) bool {
	switch {
	case digits != "" && !sameNumber(onlyDigits(m.Dest), digits):
		return false
	case f.State != 0 && m.State() != f.State:
		return false
	case f.States != nil && !slices.Contains(f.States, m.State()):
		return false
	case !f.From.IsZero() && m.AcceptedAt.Before(f.From):
		return false
	case !f.To.IsZero() && !m.AcceptedAt.Before(f.To):
		return false
	case !f.SendFrom.IsZero() && m.SendAt.Before(f.SendFrom):
		return false
	case !f.SendTo.IsZero() && !m.SendAt.Before(f.SendTo):
		return false
	case f.Scheduled && !m.Scheduled(now):
		return false
	case f.Sent && m.Scheduled(now):
		return false
	}
	return true
}

// peekHead reads the Account, Enterprise and Dest of an encoded message
// without decoding the rest (see encodeMessage: version, id, account,
// enterprise, source, dest; the extended version's second flags byte
// comes later): the lists pass over another enterprise's messages, and a
// search by number over those to other numbers, without decoding them.
// The slices alias v.
func peekHead(v []byte) (account, enterprise, dest []byte, ok bool) {
	if len(v) < 1 || v[0] != msgVersion && v[0] != msgVersionExt {
		return nil, nil, nil, false
	}
	b := v[1:]
	_, n := binary.Uvarint(b) // id
	if n <= 0 {
		return nil, nil, nil, false
	}
	b = b[n:]
	str := func() ([]byte, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, false
		}
		s := b[n : n+int(l)]
		b = b[n+int(l):]
		return s, true
	}
	if account, ok = str(); !ok {
		return nil, nil, nil, false
	}
	if enterprise, ok = str(); !ok {
		return nil, nil, nil, false
	}
	if _, ok = str(); !ok { // source
		return nil, nil, nil, false
	}
	if dest, ok = str(); !ok {
		return nil, nil, nil, false
	}
	return account, enterprise, dest, true
}

// sameDigits is sameNumber(onlyDigits(number), digits) without making
// the string: number's digits end with digits, or (seven or more of
// them) digits end with them.
func sameDigits(number []byte, digits string) bool {
	common, nd := 0, 0 // the digits number and digits end with alike; number's digits
	for i := len(number) - 1; i >= 0; i-- {
		c := number[i]
		if c < '0' || c > '9' {
			continue
		}
		if common == nd && nd < len(digits) && digits[len(digits)-1-nd] == c {
			common++
		}
		nd++
	}
	return common == len(digits) || nd >= 7 && common == nd
}

// checkScheduled is the precondition of Cancel and Reschedule, inside the
// commit: the message belongs to enterprise (else ErrNotFound, as if it did
// not exist) and waits for a send time at least ScheduleMargin ahead, with
// every part Accepted, never tried, and due no sooner.
func checkScheduled(m *Message, enterprise string, now time.Time) error {
	if m.Enterprise != enterprise {
		return soft(fmt.Errorf("%w: message %d", ErrNotFound, m.ID))
	}
	limit := now.Add(ScheduleMargin)
	if !m.Scheduled(limit) {
		return soft(fmt.Errorf("%w: message %d is %s, send time %v", ErrNotScheduled, m.ID, m.State(), m.SendAt))
	}
	for i := range m.Parts {
		if p := &m.Parts[i]; p.Attempts > 0 || !p.DueAt.After(limit) {
			return soft(fmt.Errorf("%w: message %d: part %d due at %v", ErrNotScheduled, m.ID, i, p.DueAt))
		}
	}
	return nil
}

// Cancel cancels a scheduled message of enterprise before it is sent:
// every part becomes Cancelled (final), leaves the due index and releases
// its usage reservation; the message's receipt, if it asked for one, is
// queued for its account as for any other final state. ErrNotFound if the
// message does not exist or belongs to another enterprise (the two are not
// told apart); ErrNotScheduled if it is not scheduled, or its send time is
// less than ScheduleMargin away. Idempotent: cancelling a cancelled message
// returns nil.
func (s *Store) Cancel(ctx context.Context, id uint64, enterprise string) error {
	err := s.exec(ctx, func(t *txn) error {
		m, err := t.getMsg(id)
		if err != nil {
			return err
		}
		if m.Enterprise == enterprise && m.cancelled() {
			return nil
		}
		now := time.Now()
		if err := checkScheduled(m, enterprise, now); err != nil {
			return err
		}
		for i := range m.Parts {
			if err := t.setFinal(m, uint16(i), StateCancelled, now, ""); err != nil {
				return err
			}
		}
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: cancel %d: %w", id, err)
	}
	return nil
}

func (m *Message) cancelled() bool {
	for i := range m.Parts {
		if m.Parts[i].State != StateCancelled {
			return false
		}
	}
	return len(m.Parts) > 0
}

// Reschedule changes the send time and/or the text of a scheduled message
// of enterprise, under the same conditions as Cancel (ErrNotFound,
// ErrNotScheduled).
//
// A zero sendAt keeps the send time; one before now sends at once. The
// validity window keeps its length: ValidUntil moves by as much as the send
// time does.
//
// parts == nil keeps the text and parts (text and dataCoding are then
// ignored). Otherwise text (the signed text, as Message.Text), parts (the
// encoded segment bodies, 1 to 255) and dataCoding replace the message's;
// every part starts afresh (Accepted, due at the send time). When the
// number of parts changes, the enterprise's reservation for the message's
// billing month changes by the difference in the same transaction, and a
// growth that would take reserved + charged past limit is refused with
// ErrQuota (NoLimit: no check). A message that becomes multi-part gets a
// new concatenation reference; one that becomes single-part gets Ref 0.
func (s *Store) Reschedule(ctx context.Context, id uint64, enterprise string, sendAt time.Time, text string, parts [][]byte, dataCoding uint8, limit int64) error {
	return s.RescheduleWeighted(ctx, id, enterprise, sendAt, text, parts, dataCoding, 0, limit)
}

// RescheduleWeighted is Reschedule for a new text whose parts each stand
// for weight segments on the air (Message.Weight; 0 or 1: one each).
func (s *Store) RescheduleWeighted(ctx context.Context, id uint64, enterprise string, sendAt time.Time, text string, parts [][]byte, dataCoding uint8, weight uint16, limit int64) error {
	if parts != nil {
		if n := len(parts); n == 0 || n > maxParts {
			return fmt.Errorf("queue: reschedule %d: %w: %d parts (1 to %d)", id, ErrInvalid, n, maxParts)
		}
	}
	err := s.exec(ctx, func(t *txn) error {
		m, err := t.getMsg(id)
		if err != nil {
			return err
		}
		now := time.Now()
		if err := checkScheduled(m, enterprise, now); err != nil {
			return err
		}
		diff := int64(0) // in billable segments
		if parts != nil {
			diff = int64(len(parts))*max(int64(weight), 1) - m.Segments()
		}
		if diff > 0 && limit >= 0 {
			month := BillingMonth(m.AcceptedAt)
			u, err := t.getUsage(usageKey(m.Enterprise, month))
			if err != nil {
				return err
			}
			if u.Reserved+u.Charged+diff > limit {
				return soft(&QuotaError{Enterprise: m.Enterprise, Month: month,
					Reserved: u.Reserved, Charged: u.Charged, Need: diff, Limit: limit, More: true})
			}
		}
		// Preconditions hold: from here on the operation writes.
		for i := range m.Parts {
			if err := t.delDue(m, m.Parts[i].DueAt, Key{id, uint16(i)}); err != nil {
				return err
			}
		}
		due := m.SendAt
		if !sendAt.IsZero() {
			due = sendAt
		}
		if due.Before(now) {
			due = now
		}
		if !m.ValidUntil.IsZero() {
			m.ValidUntil = m.ValidUntil.Add(due.Sub(m.SendAt))
		}
		m.SendAt = due
		if parts != nil {
			oldParts := len(m.Parts)
			m.Text, m.DataCoding = text, dataCoding
			m.Weight = 0
			if weight > 1 {
				m.Weight = weight
			}
			m.Parts = make([]Part, len(parts))
			for i, b := range parts {
				m.Parts[i] = Part{Body: append([]byte(nil), b...), State: StateAccepted}
			}
			switch {
			case len(parts) == 1:
				m.Ref = 0
			case m.Ref == 0:
				if m.Ref, err = t.nextRef(m.Dest); err != nil {
					return err
				}
			}
			if diff != 0 {
				if err := t.addUsage(m, diff, 0); err != nil {
					return err
				}
			}
			t.counts[StateAccepted] += len(parts) - oldParts
		}
		for i := range m.Parts {
			m.Parts[i].DueAt = due
			if err := t.putDue(m, due, Key{id, uint16(i)}); err != nil {
				return err
			}
		}
		return t.putMsg(m)
	})
	if err != nil {
		return fmt.Errorf("queue: reschedule %d: %w", id, err)
	}
	return nil
}

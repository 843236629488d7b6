package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Mobile-originated messages (MO, replies to an enterprise's service
// number). The gateway resolves the owner (enterprise, account) before it
// stores one; the queue keeps it, the index of those still to forward to
// the ESMEs, and the inbox index.
var (
	bucketMO    = []byte("mo")    // id (8 BE) → version | JSON record
	bucketMOOut = []byte("moout") // enterprise 0x00 id → empty: still to forward
	bucketMOIn  = []byte("moin")  // enterprise 0x00 id → empty: the inbox, id order
	// bucketMOOptOut: id (8 BE) → empty: an opt-out reply whose opt-out
	// is not yet recorded (MO.OptOutPending).
	bucketMOOptOut = []byte("mooptout")

	// moBuckets are created at Open; a backup older than MOs lacks them.
	moBuckets = [][]byte{bucketMO, bucketMOOut, bucketMOIn, bucketMOHook, bucketMOOptOut, bucketMOParts, bucketMOPartN, bucketMOJoined}
)

const moVersion = 1

// MO is one mobile-originated message as stored. Enterprise "" is an MO
// no enterprise owns (kept, listed under "", never forwarded); Account ""
// an MO of the enterprise as a whole (no user has its extension).
type MO struct {
	ID         uint64 `json:"-"`
	Enterprise string `json:"enterprise"`
	Account    string `json:"account,omitempty"`
	Extension  string `json:"extension,omitempty"`
	Source     string `json:"source"` // the handset
	Dest       string `json:"dest"`   // service number + extension, as the SMSC gave it
	SourceTON  uint8  `json:"source_ton,omitempty"`
	SourceNPI  uint8  `json:"source_npi,omitempty"`
	Text       string `json:"text"`
	// Binary: the reply was not text (a binary data_coding, a WAP port,
	// a coding qxtd cannot read): its octets as the handset sent them (a
	// long reply's parts joined), Text empty. DataCoding and UDH (UDHL
	// octet first, without concatenation IEs; nil when none) are the
	// SMSC's, passed on with the octets.
	Binary     []byte `json:"binary,omitempty"`
	DataCoding uint8  `json:"data_coding,omitempty"`
	UDH        []byte `json:"udh,omitempty"`
	// SourcePort and DestPort are a binary reply's source_port and
	// destination_port TLVs (nil: absent), passed on as TLVs; ports the
	// SMSC put in the UDH stay there.
	SourcePort *uint16   `json:"source_port,omitempty"`
	DestPort   *uint16   `json:"destination_port,omitempty"`
	Upstream   string    `json:"upstream"`
	ReceivedAt time.Time `json:"received_at"`
	// ForwardedAt is when an ESME acknowledged it (zero: not yet, or
	// never for an MO without enterprise).
	ForwardedAt time.Time `json:"forwarded_at,omitzero"`
	// Refused: the ESME answered it with a permanent refusal
	// (ESME_RX_P_APPN or ESME_RX_R_APPN) at ForwardedAt: answered, so
	// not sent again, but not taken.
	Refused bool `json:"refused,omitempty"`
	// ReplyURL is the enterprise's reply webhook when the MO was stored
	// ("" = none): an MO with one has a mohook key (moreplies.go) until
	// its POST is answered 2xx (PostedAt set) or given up (ReplyGaveUp).
	ReplyURL    string    `json:"reply_url,omitempty"`
	PostedAt    time.Time `json:"posted_at,omitzero"`
	ReplyGaveUp bool      `json:"reply_gave_up,omitempty"`
	// OptOutPending: the reply is an opt-out (回复TD) of an enterprise
	// whose recording on the opt-out list is still to be done. Stored
	// with the reply, in its commit, and cleared by OptOutsRecorded: the
	// SMSC is answered once the reply is stored, and an opt-out that
	// could not be recorded then (the disk, a cluster's etcd away) is
	// recorded later, not lost (PendingOptOuts).
	OptOutPending bool `json:"optout_pending,omitempty"`
	// OptOut: the reply is an opt-out keyword of an enterprise (回复TD),
	// for good: what the inbox, its export and the reply webhook say of
	// it, after OptOutPending is cleared. Replies stored by a release
	// before 2026-12-07 lack it.
	OptOut bool `json:"optout,omitempty"`
	// PartsMissing: the reply was sent in parts (a concatenation UDH or
	// SAR TLVs) and this many of them never came within the reassembly
	// timeout; Text is the parts that came, joined in order (moparts.go).
	PartsMissing int `json:"parts_missing,omitempty"`
}

// Bounds of a binary reply: 255 parts of a whole message_payload each
// (far above what a handset sends), and a UDH (its length is one octet).
const (
	maxMOBinary = 255 * maxFragmentData
	maxUDH      = 256
)

func moIndexKey(enterprise string, id uint64) []byte {
	return prefixKey(enterprise, msgKey(id))
}

func decodeMO(k, v []byte) (*MO, error) {
	if len(v) < 1 || v[0] != moVersion || len(k) != 8 {
		return nil, fmt.Errorf("%w: mo record %x", ErrCorrupt, k)
	}
	m := &MO{}
	if err := json.Unmarshal(v[1:], m); err != nil {
		return nil, fmt.Errorf("%w: mo %x: %v", ErrCorrupt, k, err)
	}
	m.ID = binary.BigEndian.Uint64(k)
	return m, nil
}

func putMO(tx *bolt.Tx, m *MO) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMO).Put(msgKey(m.ID), append([]byte{moVersion}, data...))
}

// StoreMO stores an MO (m.ID is set) and, when it has an enterprise, queues
// it for forwarding, and with a ReplyURL too for its reply webhook, in the
// same commit. It returns once committed: the caller may then answer the
// SMSC. An SMSC that repeats an MO (its deliver_sm_resp lost) gets two.
func (s *Store) StoreMO(ctx context.Context, m *MO) error {
	if err := validateMO(m); err != nil {
		return fmt.Errorf("queue: store mo: %w", err)
	}
	var id uint64
	err := s.exec(ctx, func(t *txn) error {
		var err error
		id, err = t.storeMO(m)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: store mo: %w", err)
	}
	m.ID = id
	return nil
}

// validateMO checks what StoreMO and StoreJoinedMO store, and sets a
// zero ReceivedAt to now.
func validateMO(m *MO) error {
	if len(m.Enterprise) > maxField || len(m.Account) > maxField || bytes.IndexByte([]byte(m.Enterprise), sep) >= 0 {
		return fmt.Errorf("%w: enterprise or account", ErrInvalid)
	}
	if len(m.ReplyURL) > maxReceiptURL {
		return fmt.Errorf("%w: reply url longer than %d bytes", ErrInvalid, maxReceiptURL)
	}
	if m.OptOutPending && m.Enterprise == "" {
		return fmt.Errorf("%w: an opt-out names no enterprise", ErrInvalid)
	}
	if len(m.Binary) > maxMOBinary || len(m.UDH) > maxUDH || m.Binary == nil && (m.DataCoding != 0 || m.UDH != nil || m.SourcePort != nil || m.DestPort != nil) {
		return fmt.Errorf("%w: %d octets of binary content, %d of UDH", ErrInvalid, len(m.Binary), len(m.UDH))
	}
	if m.PartsMissing < 0 || m.PartsMissing > 254 {
		return fmt.Errorf("%w: %d parts missing", ErrInvalid, m.PartsMissing)
	}
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = time.Now()
	}
	return nil
}

// storeMO writes a copy of m (validated) with a fresh id and its keys:
// the inbox's, the forwarding's and the reply webhook's of an enterprise's,
// the opt-out's of one pending. It returns the id.
func (t *txn) storeMO(m *MO) (uint64, error) {
	// A rerun of the batch takes a fresh id: nothing was written.
	n, err := t.tx.Bucket(bucketMO).NextSequence()
	if err != nil {
		return 0, err
	}
	rec := *m
	rec.ID, rec.ForwardedAt, rec.Refused, rec.PostedAt, rec.ReplyGaveUp = n, time.Time{}, false, time.Time{}, false
	if err := putMO(t.tx, &rec); err != nil {
		return 0, err
	}
	if err := t.putReply(&rec); err != nil {
		return 0, err
	}
	if err := t.tx.Bucket(bucketMOIn).Put(moIndexKey(rec.Enterprise, n), nil); err != nil {
		return 0, err
	}
	if rec.Enterprise != "" {
		if err := t.tx.Bucket(bucketMOOut).Put(moIndexKey(rec.Enterprise, n), nil); err != nil {
			return 0, err
		}
	}
	if rec.OptOutPending {
		if err := t.tx.Bucket(bucketMOOptOut).Put(msgKey(n), nil); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// PendingMOs returns up to limit MOs of an enterprise still to forward,
// oldest first, leaving out those skip names (in flight), and past the
// first at most maxDueReplyBytes of content: fewer than limit does not
// say that none is left.
func (s *Store) PendingMOs(enterprise string, limit int, skip func(id uint64) bool) ([]*MO, error) {
	return s.PendingMOsAfter(enterprise, 0, limit, skip)
}

// PendingMOsAfter is PendingMOs from the first id after after (0: from
// the first): a reader that goes on from the last id it read reads each
// pending MO once a pass, however many it skips.
func (s *Store) PendingMOsAfter(enterprise string, after uint64, limit int, skip func(id uint64) bool) ([]*MO, error) {
	var out []*MO
	prefix := prefixKey(enterprise, nil)
	from := prefix
	if after > 0 {
		if after == math.MaxUint64 {
			return nil, nil
		}
		from = moIndexKey(enterprise, after+1)
	}
	err := s.view(func(tx *bolt.Tx) error {
		moB := tx.Bucket(bucketMO)
		c := tx.Bucket(bucketMOOut).Cursor()
		size := 0
		for k, _ := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			rest := k[len(prefix):]
			if len(rest) != 8 {
				continue
			}
			if skip != nil && skip(binary.BigEndian.Uint64(rest)) {
				continue
			}
			m, err := decodeMO(rest, moB.Get(rest))
			if err != nil {
				return err
			}
			out = append(out, m)
			size += len(m.Text) + len(m.Binary) + len(m.UDH)
			if limit > 0 && len(out) >= limit || size >= maxDueReplyBytes {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: pending mos: %w", err)
	}
	return out, nil
}

// AckMO records that an ESME answered an MO: it is no longer pending.
// refused says the answer was a permanent refusal (MO.Refused).
// Idempotent: a second answer changes nothing.
func (s *Store) AckMO(ctx context.Context, enterprise string, id uint64, at time.Time, refused bool) error {
	err := s.exec(ctx, func(t *txn) error {
		key := moIndexKey(enterprise, id)
		out := t.tx.Bucket(bucketMOOut)
		if out.Get(key) == nil {
			return nil
		}
		v := t.tx.Bucket(bucketMO).Get(msgKey(id))
		m, err := decodeMO(msgKey(id), v)
		if err != nil {
			return err
		}
		if err := out.Delete(key); err != nil {
			return err
		}
		m.ForwardedAt, m.Refused = at, refused
		return putMO(t.tx, m)
	})
	if err != nil {
		return fmt.Errorf("queue: ack mo %d: %w", id, err)
	}
	return nil
}

// PendingOptOuts returns up to limit stored opt-out replies whose opt-out
// is not yet recorded (MO.OptOutPending), oldest first, from the one
// after id after (0: from the first).
func (s *Store) PendingOptOuts(after uint64, limit int) ([]*MO, error) {
	var out []*MO
	err := s.view(func(tx *bolt.Tx) error {
		moB := tx.Bucket(bucketMO)
		c := tx.Bucket(bucketMOOptOut).Cursor()
		for k, _ := c.Seek(msgKey(after + 1)); k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Next() {
			m, err := decodeMO(k, moB.Get(k))
			if err != nil {
				s.reportDamaged(damagedKey("mooptout", binary.BigEndian.Uint64(k)), "queue: opt-out reply that does not read (run Check)", "err", err)
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: pending opt-outs: %w", err)
	}
	return out, nil
}

// OptOutsRecorded records that the opt-outs of these replies are done
// with (on the list, or never to be: no mobile number, the enterprise
// gone): they are no longer pending. Idempotent; an id that is not
// pending, or gone, is skipped.
func (s *Store) OptOutsRecorded(ctx context.Context, ids []uint64) error {
	err := s.exec(ctx, func(t *txn) error {
		optB, moB := t.tx.Bucket(bucketMOOptOut), t.tx.Bucket(bucketMO)
		for _, id := range ids {
			k := msgKey(id)
			if optB.Get(k) == nil {
				continue
			}
			if err := optB.Delete(k); err != nil {
				return err
			}
			m, err := decodeMO(k, moB.Get(k))
			if err != nil {
				continue // PendingOptOuts reported it; Check will
			}
			m.OptOutPending = false
			if err := putMO(t.tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: opt-outs recorded: %w", err)
	}
	return nil
}

// InboxFilter narrows Inbox. The zero value lists every MO.
type InboxFilter struct {
	Account string // only this account's (the user with the extension); "" any
	// Number: only MOs from this number, compared as digits
	// ("13712345678" and "+86 137 1234 5678" find "8613712345678" and
	// "13712345678"), or from a number ending in these digits; "" any.
	Number   string
	From, To time.Time // ReceivedAt at or after From, and before To (zero: unbounded)
	// AllEnterprises: every enterprise's MOs, and those no enterprise
	// owns (the operator's trace of a handset's replies). Number is then
	// required, and Inbox's enterprise must be "": a filter that left the
	// enterprise out by mistake lists nothing rather than everyone's.
	AllEnterprises bool
}

func (f InboxFilter) match(m *MO, digits string) bool {
	switch {
	case f.Account != "" && m.Account != f.Account:
	case !f.From.IsZero() && m.ReceivedAt.Before(f.From):
	case !f.To.IsZero() && !m.ReceivedAt.Before(f.To):
	case digits != "" && !sameNumber(onlyDigits(m.Source), digits):
	default:
		return true
	}
	return false
}

// sameNumber reports whether a source's digits src are the number asked
// as digits: src ends with them (the number in any form, or its last
// digits), or they end with src, a source written without the country
// code the question has ("13800138000" for "+8613800138000"), of seven
// digits or more so that a short code does not match every number.
func sameNumber(src, digits string) bool {
	return strings.HasSuffix(src, digits) || len(src) >= 7 && strings.HasSuffix(digits, src)
}

// SameNumber reports whether number is the number asked (asked: a
// number in any form, or its last digits), compared as digits the way
// the inbox's and the outbox's Number filters compare them.
func SameNumber(number, asked string) bool {
	digits := onlyDigits(asked)
	return digits != "" && sameNumber(onlyDigits(number), digits)
}

// onlyDigits is s without what is not an ASCII digit.
func onlyDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// Inbox lists an enterprise's MOs that match f, newest first: those with
// an id below before (0: from the newest), at most limit (an enterprise ""
// lists the MOs no enterprise owns). next is the before of the following
// page, 0 at the end. A call reads at most MaxListScan MOs of the
// enterprise, as List does: a filtered page can therefore hold fewer than
// limit (even none) with a non-zero next; keep paging until next is 0.
// So can a page whose replies hold maxDueReplyBytes of content (a page of
// long ones would hold that much per request).
func (s *Store) Inbox(enterprise string, f InboxFilter, before uint64, limit int) ([]*MO, uint64, error) {
	prefix := prefixKey(enterprise, nil)
	digits := onlyDigits(f.Number)
	switch {
	case f.Number != "" && digits == "":
		return nil, 0, fmt.Errorf("queue: inbox: %w: number %q has no digit", ErrInvalid, f.Number)
	case f.AllEnterprises && (digits == "" || enterprise != ""):
		return nil, 0, fmt.Errorf("queue: inbox: %w: every enterprise's replies are listed by number only", ErrInvalid)
	case f.AllEnterprises:
		return s.inboxAll(f, digits, before, limit)
	}
	pg := inboxPage{f: f, digits: digits, limit: limit}
	err := s.view(func(tx *bolt.Tx) error {
		moB := tx.Bucket(bucketMO)
		c := tx.Bucket(bucketMOIn).Cursor()
		var k []byte
		if before == 0 {
			k, _ = c.Seek(prefixKey(enterprise+"\x01", nil)) // past the enterprise's keys
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		} else {
			k, _ = c.Seek(moIndexKey(enterprise, before))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			rest := k[len(prefix):]
			if len(rest) != 8 {
				continue
			}
			if pg.full() {
				return nil
			}
			v := moB.Get(rest)
			if pg.passes(rest, v) {
				continue
			}
			m, err := decodeMO(rest, v)
			if err != nil {
				return err
			}
			pg.add(m)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: inbox: %w", err)
	}
	return pg.list, pg.next, nil
}

// inboxPage gathers a page of the inbox as its MOs are read, newest
// first: those f matches (digits: f.Number's), at most limit of them and
// maxDueReplyBytes of their content, from at most listScan read.
type inboxPage struct {
	f          InboxFilter
	digits     string
	limit      int
	list       []*MO
	next, last uint64 // the page's next; the last MO read
	size, read int
}

// full reports whether the page ends before the MO to be read next,
// setting its next: below its last MO, or below the last read (the
// caller resumes there).
func (p *inboxPage) full() bool {
	switch {
	case len(p.list) >= p.limit || p.size >= maxDueReplyBytes:
		p.next = p.list[len(p.list)-1].ID
	case p.read == listScan:
		p.next = p.last
	default:
		return false
	}
	return true
}

// add reads m into the page.
func (p *inboxPage) add(m *MO) {
	p.read, p.last = p.read+1, m.ID
	if p.f.match(m, p.digits) {
		p.list = append(p.list, m)
		p.size += len(m.Text) + len(m.Binary) + len(m.UDH)
	}
}

// passes reads over the MO of key k and record v without decoding it
// when the page searches a number and the record's source is another:
// its JSON is read up to the source only. A record it cannot peek at is
// left to the decoder (which reports a damaged one).
func (p *inboxPage) passes(k, v []byte) bool {
	if p.digits == "" || len(k) != 8 {
		return false
	}
	src, ok := peekMOSource(v)
	if !ok || sameDigits(src, p.digits) {
		return false
	}
	p.read, p.last = p.read+1, binary.BigEndian.Uint64(k)
	return true
}

// moSourceField opens an MO record's source in its JSON (putMO: the
// fields in MO's order, "source" after "enterprise", "account" and
// "extension"). Inside a JSON string a quote is escaped, so the first
// occurrence is the field's.
var moSourceField = []byte(`,"source":"`)

// peekMOSource is the source of an MO record as its JSON spells it, if
// it needs no unescaping (a backslash: ok false, the decoder reads it).
func peekMOSource(v []byte) ([]byte, bool) {
	if len(v) < 1 || v[0] != moVersion {
		return nil, false
	}
	i := bytes.Index(v, moSourceField)
	if i < 0 {
		return nil, false
	}
	rest := v[i+len(moSourceField):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return nil, false
	}
	return rest[:end], true
}

// inboxAll is Inbox of every enterprise's MOs from a number (f.Number's
// digits): the MOs themselves, newest first, by id, with Inbox's bounds.
func (s *Store) inboxAll(f InboxFilter, digits string, before uint64, limit int) ([]*MO, uint64, error) {
	pg := inboxPage{f: f, digits: digits, limit: limit}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMO).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else if k, _ = c.Seek(msgKey(before)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil; k, v = c.Prev() {
			if len(k) != 8 {
				continue
			}
			if pg.full() {
				return nil
			}
			if pg.passes(k, v) {
				continue
			}
			m, err := decodeMO(k, v)
			if err != nil {
				return err
			}
			pg.add(m)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: inbox: %w", err)
	}
	return pg.list, pg.next, nil
}

// checkMOs verifies the MO indexes: every MO has its inbox key under its
// enterprise; a forward key iff it has an enterprise and no ForwardedAt.
func checkMOs(tx *bolt.Tx, bad func(format string, args ...any)) error {
	moB, outB, inB := tx.Bucket(bucketMO), tx.Bucket(bucketMOOut), tx.Bucket(bucketMOIn)
	if moB == nil {
		return nil // a backup older than MOs
	}
	optB := tx.Bucket(bucketMOOptOut) // nil in a backup older than it
	n := 0
	err := moB.ForEach(func(k, v []byte) error {
		m, err := decodeMO(k, v)
		if err != nil {
			bad("%v", err)
			return nil
		}
		n++
		key := moIndexKey(m.Enterprise, m.ID)
		if inB.Get(key) == nil {
			bad("mo %d: no inbox key", m.ID)
		}
		if want := m.Enterprise != "" && m.ForwardedAt.IsZero(); (outB.Get(key) != nil) != want {
			bad("mo %d: forward key %v, want %v", m.ID, !want, want)
		}
		if optB != nil && (optB.Get(msgKey(m.ID)) != nil) != m.OptOutPending {
			bad("mo %d: opt-out key %v, want %v", m.ID, !m.OptOutPending, m.OptOutPending)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if optB != nil {
		if err := optB.ForEach(func(k, _ []byte) error {
			if moB.Get(k) == nil {
				bad("opt-out key %x names no mo", k)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if in := inB.Stats().KeyN; in != n {
		bad("%d inbox keys for %d mos", in, n)
	}
	return outB.ForEach(func(k, _ []byte) error {
		if i := bytes.IndexByte(k, sep); i < 0 || len(k)-i-1 != 8 || moB.Get(k[i+1:]) == nil {
			bad("forward key %x names no mo", k)
		}
		return nil
	})
}

// PurgeMOs deletes up to limit MOs received before cutoff, oldest first
// (ids follow arrival; the scan ends at the first one received at or
// after cutoff), with their keys: the inbox's, and the forwarding's or
// the reply webhook's of one still waiting. It returns how many it
// deleted, and how many of those no one had taken: an enterprise's MO
// that no ESME acknowledged and no reply webhook delivered.
//
// Retention ends every MO, taken or not: an enterprise without receiver
// binds or reply_url (one that reads GET /v1/inbox) takes none, and
// skipping those left them for every later scan to decode again, inside
// the commit loop, until the store held nothing else.
func (s *Store) PurgeMOs(ctx context.Context, cutoff time.Time, limit int) (purged, untaken int, err error) {
	err = s.exec(ctx, func(t *txn) error {
		purged, untaken = 0, 0
		moB, inB, outB, hookB := t.tx.Bucket(bucketMO), t.tx.Bucket(bucketMOIn), t.tx.Bucket(bucketMOOut), t.tx.Bucket(bucketMOHook)
		var dead [][]byte
		var hooks []*MO // purged MOs whose reply webhook waits
		c := moB.Cursor()
		for k, v := c.First(); k != nil && len(dead) < limit; k, v = c.Next() {
			m, err := decodeMO(k, v)
			if err != nil {
				return err
			}
			if !m.ReceivedAt.Before(cutoff) {
				break
			}
			dead = append(dead, bytes.Clone(k))
			key := moIndexKey(m.Enterprise, m.ID)
			if err := inB.Delete(key); err != nil {
				return err
			}
			if m.Enterprise != "" && m.ForwardedAt.IsZero() {
				if err := outB.Delete(key); err != nil {
					return err
				}
				if m.PostedAt.IsZero() {
					untaken++
				}
			}
			if m.wantsReply() {
				hooks = append(hooks, m)
			}
			if m.OptOutPending {
				// Past retention unrecorded: the opt-out loop logged it
				// failing all along; the reply goes, and its key.
				if err := t.tx.Bucket(bucketMOOptOut).Delete(msgKey(m.ID)); err != nil {
					return err
				}
			}
		}
		if err := deleteReplyKeys(hookB, hooks); err != nil {
			return err
		}
		for _, k := range dead {
			if err := moB.Delete(k); err != nil {
				return err
			}
		}
		purged = len(dead)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue: purge mos: %w", err)
	}
	return purged, untaken, nil
}

// recentMOsSlack: RecentMOs goes on past this many MOs in a row older
// than its window before it stops. Ids follow the commits, not the
// arrivals: a reply joined from its parts, or one that waited for a slow
// commit, has an id newer than its ReceivedAt says.
const recentMOsSlack = 256

// RecentMOs returns the MOs received at most window before the newest
// one (by ReceivedAt), newest id first, at most max of them; none for a
// store without MOs. A restart reads them to know the SMSC's resends of
// the replies stored just before the previous run ended, whose answers
// that end may have lost (gateway/moagain.go). It reads the newest ids
// only: the scan stops recentMOsSlack MOs past the window's start. A
// record that does not decode is reported (for Check) and skipped.
func (s *Store) RecentMOs(window time.Duration, max int) ([]*MO, error) {
	var list []*MO
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMO).Cursor()
		var newest time.Time
		older := 0
		for k, v := c.Last(); k != nil && len(list) < max && older < recentMOsSlack; k, v = c.Prev() {
			m, err := decodeMO(k, v)
			if err != nil {
				// One damaged record costs its own resend's check, not
				// every other's.
				s.reportDamaged(fmt.Sprintf("mo/%x", k), "queue: mo that does not read (run Check)", "err", err)
				continue
			}
			if newest.IsZero() {
				newest = m.ReceivedAt
			}
			if m.ReceivedAt.After(newest) {
				// Out of id order (above): the window's end moves up,
				// and what it left is dropped.
				newest = m.ReceivedAt
				list = slices.DeleteFunc(list, func(x *MO) bool { return x.ReceivedAt.Before(newest.Add(-window)) })
			}
			if m.ReceivedAt.Before(newest.Add(-window)) {
				older++
				continue
			}
			older = 0
			list = append(list, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: recent mos: %w", err)
	}
	return list, nil
}

// keyRepliesAnswered (meta): the time of MarkRepliesAnswered, until the
// next start takes it.
var keyRepliesAnswered = []byte("replies_answered")

// MarkRepliesAnswered records that every reply stored up to at was
// answered to the SMSC: a stop whose sessions with the SMSC all ended
// with an unbind answered. The next start takes it (TakeRepliesAnswered)
// and need not wait for resends of the last replies.
func (s *Store) MarkRepliesAnswered(ctx context.Context, at time.Time) error {
	err := s.exec(ctx, func(t *txn) error {
		return t.tx.Bucket(bucketMeta).Put(keyRepliesAnswered, binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
	})
	if err != nil {
		return fmt.Errorf("queue: mark replies answered: %w", err)
	}
	return nil
}

// TakeRepliesAnswered returns the time MarkRepliesAnswered recorded in the
// last run (ok false: none, the run ended otherwise) and removes it, so
// that it says nothing of this run's end. An error leaves it unknown.
func (s *Store) TakeRepliesAnswered(ctx context.Context) (at time.Time, ok bool, err error) {
	err = s.exec(ctx, func(t *txn) error {
		b := t.tx.Bucket(bucketMeta)
		v := b.Get(keyRepliesAnswered)
		if v == nil {
			return nil
		}
		if len(v) == 8 {
			at, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
		}
		return b.Delete(keyRepliesAnswered)
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue: take replies answered: %w", err)
	}
	return at, ok, nil
}

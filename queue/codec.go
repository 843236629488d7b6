package queue

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Record encodings. Each record starts with a version byte; version 1 is a
// sequence of fields in a fixed order: unsigned integers as uvarints, signed
// ones as zig-zag varints, strings and byte slices as a uvarint length then
// the bytes, times as the varint of their Unix nanoseconds (0 = zero time).
// Decoders check every length against the bytes left, reject unknown
// versions, invalid states and trailing bytes, and never panic.
//
// A message record is version 1 unless a flag of its second flags byte
// (the ext constants) is set: then it is version 2, version 1 with that
// byte after the first. The first byte's eight flags were all taken, and a release
// before version 2 refuses a flag it does not know; so a record with
// nothing for the second byte stays version 1, byte for byte what those
// releases read.

const (
	msgVersion    = 1
	msgVersionExt = 2 // msgVersion with the second flags byte
	orphanVersion = 1
	usageVersion  = 1

	usageLen = 1 + 8 + 8

	// Bounds checked by the decoder; the encoder's inputs are validated by
	// Enqueue against the same limits.
	maxParts = 255 // a UDH concatenation counter is one byte
)

type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)       { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) time(t time.Time) { e.varint(timeNanos(t)) }

// timeNanos maps t to Unix nanoseconds, 0 for the zero time, clamped to the
// representable range (years 1678-2262).
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if t.Before(minTime) {
		return math.MinInt64
	}
	if t.After(maxTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads fields from b at pos. Strings are substrings of s, one copy
// of the whole record made up front, so decoding a record costs one string
// allocation plus one per non-empty byte slice.
type decoder struct {
	b   []byte
	s   string
	pos int
	err error
}

func newDecoder(b []byte) *decoder { return &decoder{b: b, s: string(b)} }

func (d *decoder) left() int { return len(d.b) - d.pos }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (d *decoder) u8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if d.left() < 1 {
		d.fail("%s: truncated", field)
		return 0
	}
	v := d.b[d.pos]
	d.pos++
	return v
}

func (d *decoder) u16(field string) uint16 {
	if d.err != nil {
		return 0
	}
	if d.left() < 2 {
		d.fail("%s: truncated", field)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.pos:])
	d.pos += 2
	return v
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.pos:])
	if n <= 0 {
		d.fail("%s: bad uvarint", field)
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.pos:])
	if n <= 0 {
		d.fail("%s: bad varint", field)
		return 0
	}
	d.pos += n
	return v
}

// span returns the bounds of the next length-prefixed field.
func (d *decoder) span(field string) (int, int) {
	n := d.uvarint(field)
	if d.err != nil {
		return 0, 0
	}
	if n > uint64(d.left()) {
		d.fail("%s: length %d exceeds the %d bytes left", field, n, d.left())
		return 0, 0
	}
	start := d.pos
	d.pos += int(n)
	return start, d.pos
}

// bytes returns a copy (nil when empty): decoded records never alias the
// database's memory.
func (d *decoder) bytes(field string) []byte {
	i, j := d.span(field)
	if i == j {
		return nil
	}
	return append([]byte(nil), d.b[i:j]...)
}

func (d *decoder) str(field string) string {
	i, j := d.span(field)
	return d.s[i:j]
}

func (d *decoder) time(field string) time.Time { return nanosTime(d.varint(field)) }

func (d *decoder) state(field string) State {
	s := State(d.u8(field))
	if d.err == nil && !s.Valid() {
		d.fail("%s: invalid state %d", field, uint8(s))
	}
	return s
}

func (d *decoder) version(want uint8, what string) {
	// Not d.u8(what + " version"): that concatenation would be an
	// allocation for every record read.
	if d.err != nil {
		return
	}
	if d.left() < 1 {
		d.fail("%s version: truncated", what)
		return
	}
	v := d.b[d.pos]
	d.pos++
	if v != want {
		d.fail("%s: unknown version %d", what, v)
	}
}

// messageVersion reads a message record's version byte: ext is true for
// version 2 (a second flags byte follows the first).
func (d *decoder) messageVersion() (ext bool) {
	if d.err != nil {
		return false
	}
	if d.left() < 1 {
		d.fail("message version: truncated")
		return false
	}
	v := d.b[d.pos]
	d.pos++
	switch v {
	case msgVersion:
		return false
	case msgVersionExt:
		return true
	}
	d.fail("message: unknown version %d", v)
	return false
}

func (d *decoder) end(what string) {
	if d.err == nil && d.left() != 0 {
		d.fail("%s: %d trailing bytes", what, d.left())
	}
}

const (
	flagDLRForwarded = 1 << 0
	flagGroup        = 1 << 1 // a group id follows the parts (added after version 1 shipped: absent in older records)
	flagClientCoding = 1 << 2 // the client's data_coding follows (idem)
	flagAliases      = 1 << 3 // the part ids of a reassembled message follow: count, then each id (idem)
	flagWeight       = 1 << 4 // the part weight follows (idem)
	flagReceiptURL   = 1 << 5 // the receipt webhook URL follows (idem)
	flagReceiptDone  = 1 << 6 // the receipt webhook was delivered or given up
	flagAliasDLR     = 1 << 7 // each alias's registered_delivery follows the aliases (added after flagAliases)
	allFlags         = flagDLRForwarded | flagGroup | flagClientCoding | flagAliases | flagWeight | flagReceiptURL | flagReceiptDone | flagAliasDLR
)

// The second flags byte (version 2 records). Its low four bits are hints:
// flags with no field of their own that a reader may drop without the
// message meaning anything else to it (so an unknown one is ignored, and
// a release that knows only some of them reads a later one's records);
// its high four bits are refused when unknown, as the first byte's are.
const (
	extPriority = 1 << 0 // Message.Priority (a hint: without it the message waits in due order)
	extHints    = 0x0f
	extKnown    = extPriority
)

// encodeMessage appends the record of m to b.
func encodeMessage(b []byte, m *Message) []byte {
	if b == nil {
		b = make([]byte, 0, encodedSizeHint(m))
	}
	e := encoder{b}
	var ext uint8
	if m.Priority {
		ext |= extPriority
	}
	if ext == 0 {
		e.u8(msgVersion)
	} else {
		e.u8(msgVersionExt)
	}
	e.uvarint(m.ID)
	e.str(m.Account)
	e.str(m.Enterprise)
	e.str(m.Source)
	e.str(m.Dest)
	e.u8(m.SourceTON)
	e.u8(m.SourceNPI)
	e.u8(m.DestTON)
	e.u8(m.DestNPI)
	e.u8(m.DataCoding)
	e.u8(m.Concat)
	e.u8(m.RegisteredDelivery)
	e.u16(m.Ref)
	e.str(m.Upstream)
	e.str(m.Text)
	e.time(m.AcceptedAt)
	e.time(m.SendAt)
	e.time(m.ValidUntil)
	var flags uint8
	if m.DLRForwarded {
		flags |= flagDLRForwarded
	}
	if m.Group != 0 {
		flags |= flagGroup
	}
	if m.ClientCoding != 0 {
		flags |= flagClientCoding
	}
	if len(m.Aliases) > 0 {
		flags |= flagAliases
	}
	if m.Weight > 1 {
		flags |= flagWeight
	}
	if m.ReceiptURL != "" {
		flags |= flagReceiptURL
	}
	if m.ReceiptDone {
		flags |= flagReceiptDone
	}
	if len(m.Aliases) > 0 && len(m.AliasDLR) > 0 {
		flags |= flagAliasDLR
	}
	e.u8(flags)
	if ext != 0 {
		e.u8(ext)
	}
	e.uvarint(uint64(len(m.Parts)))
	for i := range m.Parts {
		p := &m.Parts[i]
		e.bytes(p.Body)
		e.u8(uint8(p.State))
		e.str(p.SMSCID)
		e.time(p.DueAt)
		e.time(p.SubmittedAt)
		e.time(p.DoneAt)
		e.str(p.ErrCode)
		e.uvarint(uint64(max(p.Attempts, 0)))
		e.uvarint(uint64(len(p.DupSMSCIDs)))
		for _, id := range p.DupSMSCIDs {
			e.str(id)
		}
	}
	if m.Group != 0 {
		e.uvarint(m.Group)
	}
	if m.ClientCoding != 0 {
		e.u8(m.ClientCoding)
	}
	if len(m.Aliases) > 0 {
		e.uvarint(uint64(len(m.Aliases)))
		for _, a := range m.Aliases {
			e.uvarint(a)
		}
		if len(m.AliasDLR) > 0 {
			for i := range m.Aliases {
				var r uint8
				if i < len(m.AliasDLR) {
					r = m.AliasDLR[i]
				}
				e.u8(r)
			}
		}
	}
	if m.Weight > 1 {
		e.u16(m.Weight)
	}
	if m.ReceiptURL != "" {
		e.str(m.ReceiptURL)
	}
	return e.b
}

// encodedSizeHint is a little above the encoded size of m.
func encodedSizeHint(m *Message) int {
	n := 64 + len(m.Account) + len(m.Enterprise) + len(m.Source) + len(m.Dest) + len(m.Upstream) + len(m.Text) + len(m.ReceiptURL) + 10*len(m.Aliases)
	for i := range m.Parts {
		p := &m.Parts[i]
		n += 64 + len(p.Body) + len(p.SMSCID) + len(p.ErrCode)
		for _, id := range p.DupSMSCIDs {
			n += 2 + len(id)
		}
	}
	return n
}

// minPartLen is the fewest bytes an encoded part can take.
const minPartLen = 1 + 1 + 1 + 3 + 1 + 1 + 1

// DecodeMessage decodes a message record. It copies everything it keeps, so
// b may be reused afterwards. Errors wrap ErrCorrupt.
func DecodeMessage(b []byte) (*Message, error) {
	d := newDecoder(b)
	ext := d.messageVersion()
	m := &Message{
		ID:                 d.uvarint("id"),
		Account:            d.str("account"),
		Enterprise:         d.str("enterprise"),
		Source:             d.str("source"),
		Dest:               d.str("dest"),
		SourceTON:          d.u8("source_ton"),
		SourceNPI:          d.u8("source_npi"),
		DestTON:            d.u8("dest_ton"),
		DestNPI:            d.u8("dest_npi"),
		DataCoding:         d.u8("data_coding"),
		Concat:             d.u8("concat"),
		RegisteredDelivery: d.u8("registered_delivery"),
		Ref:                d.u16("ref"),
		Upstream:           d.str("upstream"),
		Text:               d.str("text"),
		AcceptedAt:         d.time("accepted_at"),
		SendAt:             d.time("send_at"),
		ValidUntil:         d.time("valid_until"),
	}
	flags := d.u8("flags")
	if d.err == nil && flags&^allFlags != 0 {
		d.fail("unknown flags %#x", flags)
	}
	if ext {
		x := d.u8("extended flags")
		switch {
		case d.err != nil:
		case x == 0:
			d.fail("version %d without extended flags", msgVersionExt)
		case x&^(extKnown|extHints) != 0:
			d.fail("unknown extended flags %#x", x)
		}
		m.Priority = x&extPriority != 0
	}
	m.DLRForwarded = flags&flagDLRForwarded != 0
	m.ReceiptDone = flags&flagReceiptDone != 0
	n := d.uvarint("parts")
	if d.err == nil && (n == 0 || n > maxParts || n > uint64(d.left()/minPartLen)) {
		d.fail("parts: bad count %d", n)
	}
	if d.err != nil {
		return nil, d.err
	}
	m.Parts = make([]Part, n)
	for i := range m.Parts {
		p := &m.Parts[i]
		p.Body = d.bytes("body")
		p.State = d.state("state")
		p.SMSCID = d.str("smsc_id")
		p.DueAt = d.time("due_at")
		p.SubmittedAt = d.time("submitted_at")
		p.DoneAt = d.time("done_at")
		p.ErrCode = d.str("err_code")
		a := d.uvarint("attempts")
		if d.err == nil && a > math.MaxInt32 {
			d.fail("attempts: %d out of range", a)
		}
		p.Attempts = int(a)
		nd := d.uvarint("dup_smsc_ids")
		if d.err == nil && nd > uint64(d.left()) {
			d.fail("dup_smsc_ids: bad count %d", nd)
		}
		if d.err != nil {
			return nil, d.err
		}
		for j := uint64(0); j < nd; j++ {
			p.DupSMSCIDs = append(p.DupSMSCIDs, d.str("dup_smsc_id"))
		}
	}
	if flags&flagGroup != 0 {
		m.Group = d.uvarint("group")
	}
	if flags&flagClientCoding != 0 {
		m.ClientCoding = d.u8("client_coding")
	}
	if flags&flagAliases != 0 {
		na := d.uvarint("aliases")
		if d.err == nil && (na == 0 || na > maxParts || na > uint64(d.left())) {
			d.fail("aliases: bad count %d", na)
		}
		for j := uint64(0); d.err == nil && j < na; j++ {
			m.Aliases = append(m.Aliases, d.uvarint("alias"))
		}
		if flags&flagAliasDLR != 0 {
			if d.err == nil && na > uint64(d.left()) {
				d.fail("alias registered_delivery: %d aliases, %d bytes left", na, d.left())
			}
			for j := uint64(0); d.err == nil && j < na; j++ {
				m.AliasDLR = append(m.AliasDLR, d.u8("alias registered_delivery"))
			}
		}
	} else if flags&flagAliasDLR != 0 {
		d.fail("alias registered_delivery without aliases")
	}
	if flags&flagWeight != 0 {
		m.Weight = d.u16("weight")
		if d.err == nil && m.Weight < 2 {
			d.fail("weight: %d", m.Weight)
		}
	}
	if flags&flagReceiptURL != 0 {
		m.ReceiptURL = d.str("receipt_url")
	}
	d.end("message")
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// orphan is a DLR stored before the submit_sm_resp that names its id.
type orphan struct {
	DLR
	ReceivedAt time.Time
}

func encodeOrphan(b []byte, o *orphan) []byte {
	e := encoder{b}
	e.u8(orphanVersion)
	e.str(o.Upstream)
	e.str(o.SMSCID)
	e.u8(uint8(o.State))
	e.str(o.ErrCode)
	e.time(o.DoneAt)
	e.time(o.ReceivedAt)
	return e.b
}

func decodeOrphan(b []byte) (*orphan, error) {
	d := newDecoder(b)
	d.version(orphanVersion, "orphan")
	o := &orphan{DLR: DLR{
		Upstream: d.str("upstream"),
		SMSCID:   d.str("smsc_id"),
		State:    d.state("state"),
		ErrCode:  d.str("err_code"),
		DoneAt:   d.time("done_at"),
	}}
	o.ReceivedAt = d.time("received_at")
	d.end("orphan")
	if d.err == nil && !o.State.Final() {
		d.fail("orphan: state %s is not final", o.State)
	}
	if d.err != nil {
		return nil, d.err
	}
	return o, nil
}

// usage is one enterprise's segment counters for one month.
type usage struct {
	Reserved int64 // accepted, outcome not yet known
	Charged  int64 // delivered: billable
}

func encodeUsage(u usage) []byte {
	b := make([]byte, 0, usageLen)
	b = append(b, usageVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(u.Reserved))
	b = binary.BigEndian.AppendUint64(b, uint64(u.Charged))
	return b
}

func decodeUsage(b []byte) (usage, error) {
	if len(b) != usageLen || b[0] != usageVersion {
		return usage{}, fmt.Errorf("%w: usage record of %d bytes", ErrCorrupt, len(b))
	}
	return usage{
		Reserved: int64(binary.BigEndian.Uint64(b[1:])),
		Charged:  int64(binary.BigEndian.Uint64(b[9:])),
	}, nil
}

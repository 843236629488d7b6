package smpp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/segment"
)

// MessageState is the message_state TLV (SMPP 3.4 §5.2.28).
type MessageState uint8

// Message states.
const (
	StateEnroute       MessageState = 1
	StateDelivered     MessageState = 2
	StateExpired       MessageState = 3
	StateDeleted       MessageState = 4
	StateUndeliverable MessageState = 5
	StateAccepted      MessageState = 6
	StateUnknown       MessageState = 7
	StateRejected      MessageState = 8
)

var statWords = map[MessageState]string{
	StateEnroute: "ENROUTE", StateDelivered: "DELIVRD", StateExpired: "EXPIRED",
	StateDeleted: "DELETED", StateUndeliverable: "UNDELIV", StateAccepted: "ACCEPTD",
	StateUnknown: "UNKNOWN", StateRejected: "REJECTD",
}

// Stat is the 7-letter word of the receipt text (SMPP 3.4 Appendix B).
func (s MessageState) Stat() string {
	if w, ok := statWords[s]; ok {
		return w
	}
	return "UNKNOWN"
}

// Final reports whether no further receipt can follow.
func (s MessageState) Final() bool {
	return s != StateEnroute && s != StateAccepted && s != 0
}

func stateFromStat(w string) MessageState {
	w = strings.ToUpper(strings.TrimSpace(w))
	for s, word := range statWords {
		if word == w {
			return s
		}
	}
	switch w { // spellings seen in the wild
	case "DELIVERED":
		return StateDelivered
	case "UNDELIVERABLE":
		return StateUndeliverable
	case "REJECTED":
		return StateRejected
	}
	return StateUnknown
}

// Receipt is a delivery receipt (esm_class 0x04) in either direction.
type Receipt struct {
	ID         string // message id the receipt is about
	Sub, Dlvrd int
	SubmitDate time.Time
	DoneDate   time.Time
	State      MessageState
	Err        string // network error code, three digits in the text form
	Text       string // first 20 characters of the original text
}

// ErrNotReceipt is returned by ParseReceipt for a deliver_sm that is not
// a delivery receipt (a mobile-originated message).
var ErrNotReceipt = errors.New("smpp: not a delivery receipt")

// ErrUnreadableReceipt is returned by ParseReceipt for a deliver_sm (or
// data_sm) whose esm_class says it is no plain message (a receipt, an
// SME delivery or user acknowledgement, an intermediate notification:
// §5.2.12), or that has a receipted_message_id, but whose message id and
// state cannot be read. It is no reply from a handset either.
var ErrUnreadableReceipt = errors.New("smpp: a receipt or acknowledgement whose id and state cannot be read")

const receiptDate = "0601021504"

// Format renders the receipt text of SMPP 3.4 Appendix B.
//
// The receipt goes out with data_coding 0, so the text: field keeps only
// the printable ASCII of the first 20 characters: a Chinese original would
// otherwise put UTF-8 octets where the peer reads GSM 7-bit (Kannel logs
// "Could not convert GSM" for every one of them).
func (r Receipt) Format() string { return string(r.AppendFormat(nil)) }

// AppendFormat appends Format's text to b. It runs once per receipt sent
// to an ESME, so it appends digits itself instead of going through fmt and
// time.Format (TestReceiptAppendFormat and FuzzReceiptFormat hold it to
// the same text as fmt's %03d and time.Format's layout 0601021504).
func (r Receipt) AppendFormat(b []byte) []byte {
	b = append(b, "id:"...)
	b = append(b, r.ID...)
	b = append(b, " sub:"...)
	b = append3d(b, r.Sub)
	b = append(b, " dlvrd:"...)
	b = append3d(b, r.Dlvrd)
	b = append(b, " submit date:"...)
	b = appendReceiptDate(b, r.SubmitDate)
	b = append(b, " done date:"...)
	b = appendReceiptDate(b, r.DoneDate)
	b = append(b, " stat:"...)
	b = append(b, r.State.Stat()...)
	b = append(b, " err:"...)
	if r.Err == "" {
		b = append(b, "000"...)
	} else {
		b = append(b, r.Err...)
	}
	b = append(b, " text:"...)
	n := 0
	for _, c := range r.Text { // the first 20 characters, as []rune counts them
		if n == 20 {
			break
		}
		n++
		if asciiAsGSM(c) {
			b = append(b, byte(c))
		}
	}
	return b
}

// asciiAsGSM reports whether c is printable ASCII that the GSM 7-bit
// default alphabet writes with the same code. A receipt's text goes under
// data_coding 0x00, which receivers read as GSM: '$', '@', '[', '\', ']',
// '^', '_', '`', '{', '|', '}' and '~' would show there as '¤', '¡', 'Ä',
// 'Ö', 'Ñ', 'Ü', '§', '¿', 'ä', 'ö', 'ñ' and 'ü', so they are left out, as
// everything outside ASCII is.
func asciiAsGSM(c rune) bool {
	switch {
	case c < 0x20 || c > 0x7E:
		return false
	case c == '$' || c == '@' || c == '`':
		return false
	case c >= '[' && c <= '_', c >= '{' && c <= '~':
		return false
	}
	return true
}

// append3d appends n as fmt's %03d does.
func append3d(b []byte, n int) []byte {
	if n < 0 || n > 999 {
		return fmt.Appendf(b, "%03d", n)
	}
	return append(b, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10))
}

// appendReceiptDate appends t as t.Format(receiptDate) does (yyMMddhhmm,
// in t's location).
func appendReceiptDate(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 {
		return t.AppendFormat(b, receiptDate)
	}
	hour, minute, _ := t.Clock()
	for _, v := range [...]int{year % 100, int(month), day, hour, minute} {
		b = append(b, byte('0'+v/10), byte('0'+v%10))
	}
	return b
}

// receiptKeys in the order of Appendix B; values run up to the next key.
var receiptKeys = [...]string{"id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:"}

// Indexes into receiptKeys.
const (
	keyID = iota
	keySub
	keyDlvrd
	keySubmitDate
	keyDoneDate
	keyStat
	keyErr
	keyText
)

// ParseReceiptText parses the Appendix B text. Keys are matched without
// regard to case; missing keys leave fields empty; only id and stat are
// required. Dates accept yyMMddhhmm and yyMMddhhmmss.
func ParseReceiptText(s string) (Receipt, error) {
	var r Receipt
	lower := asciiLower(s) // same byte offsets as s, whatever the bytes
	// at[k] is where key k starts in s (-1: absent); keys are looked for
	// in order, each after the previous one found. Fixed arrays, not a
	// map: this runs once per receipt from the SMSC.
	var at [len(receiptKeys)]int
	from := 0
	for k, key := range receiptKeys {
		at[k] = -1
		i := strings.Index(lower[from:], key)
		if i < 0 {
			continue
		}
		at[k] = from + i
		from += i + len(key)
	}
	val := func(k int) (string, bool) {
		if at[k] < 0 {
			return "", false
		}
		end := len(s)
		for j := k + 1; j < len(at); j++ {
			if at[j] >= 0 {
				end = at[j]
				break
			}
		}
		v := s[at[k]+len(receiptKeys[k]) : end]
		if receiptKeys[k] != "text:" {
			v = strings.TrimSpace(v)
		}
		return v, true
	}
	id, okID := val(keyID)
	stat, okStat := val(keyStat)
	if !okID || !okStat || id == "" {
		return r, fmt.Errorf("%w: no id/stat in %q", ErrNotReceipt, truncate(s, 64))
	}
	r.ID = id
	r.State = stateFromStat(stat)
	v, _ := val(keySub)
	r.Sub, _ = strconv.Atoi(v)
	v, _ = val(keyDlvrd)
	r.Dlvrd, _ = strconv.Atoi(v)
	v, _ = val(keySubmitDate)
	r.SubmitDate = parseReceiptDate(v)
	v, _ = val(keyDoneDate)
	r.DoneDate = parseReceiptDate(v)
	r.Err, _ = val(keyErr)
	r.Text, _ = val(keyText)
	return r, nil
}

// asciiLower lower-cases A–Z only. strings.ToLower may change the length
// (invalid UTF-8 becomes U+FFFD, U+212A K becomes k), which would make
// offsets found in the lower-cased copy point elsewhere in s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// parseReceiptDate reads YYMMDDhhmm or YYMMDDhhmmss in local time (the
// SMSC's), as time.ParseInLocation would with those layouts, but by hand:
// it runs twice per receipt. Anything else is the zero time.
func parseReceiptDate(v string) time.Time {
	if len(v) != 10 && len(v) != 12 {
		return time.Time{}
	}
	var n [6]int
	for i := 0; i < len(v)/2; i++ {
		a, b := v[2*i], v[2*i+1]
		if a < '0' || a > '9' || b < '0' || b > '9' {
			return time.Time{}
		}
		n[i] = int(a-'0')*10 + int(b-'0')
	}
	yy, mo, dd, hh, mi, ss := n[0], n[1], n[2], n[3], n[4], n[5]
	// time.Parse's two-digit years: 69–99 are 19xx, 00–68 are 20xx.
	year := 2000 + yy
	if yy >= 69 {
		year = 1900 + yy
	}
	if mo < 1 || mo > 12 || dd < 1 || dd > daysIn(time.Month(mo), year) || hh > 23 || mi > 59 || ss > 59 {
		return time.Time{}
	}
	return time.Date(year, time.Month(mo), dd, hh, mi, ss, 0, time.Local)
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ParseReceipt reads a deliver_sm (or data_sm) receipt. TLVs
// receipted_message_id and message_state win over the text where both are
// present, since SMSCs fill them from the same record the id came from.
func ParseReceipt(p pdu.Body) (Receipt, error) {
	if Byte(p, pdufield.ESMClass)&0x3C == 0 && TLV(p, pdutlv.TagReceiptedMessageID) == nil {
		return Receipt{}, ErrNotReceipt
	}
	dc := Byte(p, pdufield.DataCoding)
	r, err := parseReceiptData(Bytes(p, pdufield.ShortMessage), dc)
	if err != nil {
		if pl := TLV(p, pdutlv.TagMessagePayload); pl != nil {
			r, err = parseReceiptData(pl, dc)
		}
	}
	if id := TLV(p, pdutlv.TagReceiptedMessageID); len(id) > 0 {
		r.ID = strings.TrimRight(string(id), "\x00")
		err = nil
	}
	if st := TLV(p, tagMessageState); len(st) == 1 {
		r.State = MessageState(st[0])
	} else if r.State == 0 && err == nil {
		r.State = StateUnknown
	}
	if ne := TLV(p, pdutlv.TagNetworkErrorCode); len(ne) == 3 && r.Err == "" {
		r.Err = fmt.Sprintf("%03d", uint16(ne[1])<<8|uint16(ne[2]))
	}
	if err != nil {
		// Not ErrNotReceipt: its esm_class (or TLV) says it is no reply,
		// whatever its text.
		return Receipt{}, fmt.Errorf("%w (esm_class 0x%02x): %s", ErrUnreadableReceipt, Byte(p, pdufield.ESMClass), err.Error())
	}
	return r, nil
}

// parseReceiptData reads a receipt's text as it came, else decoded by
// the PDU's data_coding: an SMSC may send the whole receipt in UCS-2
// (0x08), as node-smpp does when its text: field copies a Chinese
// original, where its ASCII words are two octets each. The first error
// is kept when the decoded text is no receipt either.
func parseReceiptData(b []byte, dc byte) (Receipt, error) {
	r, err := ParseReceiptText(string(b))
	if err == nil || len(b) == 0 {
		return r, err
	}
	text, _, derr := segment.DecodeIncoming(dc, 0, b, nil, false)
	if derr != nil || text == string(b) {
		return r, err
	}
	if dr, derr := ParseReceiptText(text); derr == nil {
		return dr, nil
	}
	return r, err
}

// tagMessageState is message_state (0x0427); go-smpp calls it
// TagMessageStateOption.
const tagMessageState = pdutlv.TagMessageStateOption

// NewReceiptPDU builds the deliver_sm carrying r from src (the original
// recipient) to dst (the original sender). NewDeliverSM writes it without
// go-smpp's spurious UDH length octet (#73).
func NewReceiptPDU(r Receipt, src, dst string, srcTON, srcNPI, dstTON, dstNPI uint8) pdu.Body {
	return NewDeliverSM(SM{
		SourceAddrTON: srcTON, SourceAddrNPI: srcNPI, SourceAddr: src,
		DestAddrTON: dstTON, DestAddrNPI: dstNPI, DestinationAddr: dst,
		ESMClass:     0x04,
		ShortMessage: r.AppendFormat(make([]byte, 0, 128)),
		TLVs: []TLVField{
			{Tag: pdutlv.TagReceiptedMessageID, Value: append([]byte(r.ID), 0)}, // a C-octet string
			{Tag: tagMessageState, Value: []byte{byte(r.State)}},
		},
	})
}

// NewTextPDU builds a deliver_sm carrying a text (esm_class 0, a
// mobile-originated message) from src to dst, as SMSCs deliver one: in the
// GSM 7-bit default alphabet, one septet per octet (data_coding 0x00), when
// it has a GSM code for every character, else UCS-2 (0x08)
// (segment.TextBody); a body longer than short_message's 254 octets goes
// in message_payload. Before 2026-12-06 ASCII text went as its ASCII
// octets under 0x00, which a GSM reader shows with '¡' for '@', '§' for
// '_' and '¤' for '$' (gateway: TestInteropNodeSMPPUpstream).
func NewTextPDU(text, src, dst string, srcTON, srcNPI uint8) pdu.Body {
	coding, body := segment.TextBody(text)
	m := SM{SourceAddrTON: srcTON, SourceAddrNPI: srcNPI, SourceAddr: src, DestinationAddr: dst, DataCoding: coding}
	if len(body) > 254 {
		m.TLVs = []TLVField{{Tag: pdutlv.TagMessagePayload, Value: body}}
	} else {
		m.ShortMessage = body
	}
	return NewDeliverSM(m)
}

// Octets is a reply that is not text (binary, to an application port,
// or in a coding qxtd does not read) as the handset sent it: the octets,
// the SMSC's data_coding, the UDH (UDHL octet first; nil for none) and
// the source_port and destination_port TLVs (nil: absent).
type Octets struct {
	Data                 []byte
	DataCoding           uint8
	UDH                  []byte
	SourcePort, DestPort *uint16
}

// NewOctetsPDU builds a deliver_sm carrying o: data_coding o.DataCoding,
// esm_class UDHI when there is a UDH, the UDH before the octets, and the
// port TLVs o has. User data longer than short_message's 254 octets goes
// in message_payload, UDH included, as SMPP 3.4 §5.3.2.32 allows.
func NewOctetsPDU(o Octets, src, dst string, srcTON, srcNPI uint8) pdu.Body {
	m := SM{SourceAddrTON: srcTON, SourceAddrNPI: srcNPI, SourceAddr: src, DestinationAddr: dst, DataCoding: o.DataCoding}
	body := make([]byte, 0, len(o.UDH)+len(o.Data))
	body = append(append(body, o.UDH...), o.Data...)
	if len(o.UDH) > 0 {
		m.ESMClass = 0x40
	}
	if len(body) > 254 {
		m.TLVs = []TLVField{{Tag: pdutlv.TagMessagePayload, Value: body}}
	} else {
		m.ShortMessage = body
	}
	m.TLVs = appendPorts(m.TLVs, o.SourcePort, o.DestPort)
	return NewDeliverSM(m)
}

// NewFramePDU builds the deliver_sm of one frame of a reply that goes in
// parts (segment.TextFrames, segment.OctetFrames): its esm_class,
// data_coding, short_message and TLVs (the SAR ones, by tag), and the
// port TLVs of the reply (nil: absent) in every part, as a UDH port IE is.
func NewFramePDU(f segment.Frame, src, dst string, srcTON, srcNPI uint8, srcPort, dstPort *uint16) pdu.Body {
	m := SM{SourceAddrTON: srcTON, SourceAddrNPI: srcNPI, SourceAddr: src, DestinationAddr: dst,
		ESMClass: f.ESMClass, DataCoding: f.DataCoding, ShortMessage: f.ShortMessage}
	for _, tag := range []uint16{segment.TagSARMsgRefNum, segment.TagSARTotalSegments, segment.TagSARSegmentSeqnum} {
		if v, ok := f.TLVs[tag]; ok {
			m.TLVs = append(m.TLVs, TLVField{Tag: pdutlv.Tag(tag), Value: v})
		}
	}
	m.TLVs = appendPorts(m.TLVs, srcPort, dstPort)
	return NewDeliverSM(m)
}

// appendPorts appends the source_port and destination_port TLVs of the
// ports given (nil: absent).
func appendPorts(tlvs []TLVField, src, dst *uint16) []TLVField {
	for _, t := range []struct {
		tag  pdutlv.Tag
		port *uint16
	}{{pdutlv.TagSourcePort, src}, {pdutlv.TagDestinationPort, dst}} {
		if t.port != nil {
			tlvs = append(tlvs, TLVField{Tag: t.tag, Value: binary.BigEndian.AppendUint16(nil, *t.port)})
		}
	}
	return tlvs
}

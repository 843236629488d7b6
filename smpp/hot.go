package smpp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// The four PDUs every message causes — submit_sm, deliver_sm and their
// responses — are decoded here rather than by go-smpp, whose decoder
// builds two maps, a value per field and a copy of every C-octet string
// (about 40 allocations for a submit_sm). A hot PDU keeps the frame and
// where each field is in it; Str, Byte, Bytes and TLV read the frame, and
// go-smpp's maps are built only when someone asks for Fields or
// TLVFields — by go-smpp's own decoder, over the same bytes, so that they
// are exactly the maps pdu.Decode would have returned. From then on the
// maps are the PDU (a caller may change them) and everything reads them.
// FuzzDecodeHot holds the two decoders to the same results.

// Field lists (SMPP 3.4 §4.4.1, §4.6.1, §4.4.2, §4.6.2) in go-smpp's
// order and spelling: FieldList returns them as go-smpp's PDUs do. They
// are shared: like the lists of the extra PDUs, not for changing.
var (
	submitSMList = pdufield.List{
		pdufield.ServiceType,
		pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr,
		pdufield.ESMClass, pdufield.ProtocolID, pdufield.PriorityFlag,
		pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod,
		pdufield.RegisteredDelivery, pdufield.ReplaceIfPresentFlag, pdufield.DataCoding,
		pdufield.SMDefaultMsgID, pdufield.SMLength, pdufield.ShortMessage,
	}
	// go-smpp's deliver_sm has the UDH between sm_length and
	// short_message; it decodes them only with esm_class UDHI.
	deliverSMList = pdufield.List{
		pdufield.ServiceType,
		pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr,
		pdufield.ESMClass, pdufield.ProtocolID, pdufield.PriorityFlag,
		pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod,
		pdufield.RegisteredDelivery, pdufield.ReplaceIfPresentFlag, pdufield.DataCoding,
		pdufield.SMDefaultMsgID, pdufield.SMLength, pdufield.UDHLength, pdufield.GSMUserData,
		pdufield.ShortMessage,
	}
	respList = pdufield.List{pdufield.MessageID}
)

// Indexes of a hot submit_sm's C-octet strings (hotSM.str) and octets
// (hotSM.oct), in wire order.
const (
	strServiceType = iota
	strSourceAddr
	strDestinationAddr
	strScheduleDeliveryTime
	strValidityPeriod
	nStr
)

const (
	octSourceAddrTON = iota
	octSourceAddrNPI
	octDestAddrTON
	octDestAddrNPI
	octESMClass
	octProtocolID
	octPriorityFlag
	octRegisteredDelivery
	octReplaceIfPresentFlag
	octDataCoding
	octSMDefaultMsgID
	octSMLength // as on the wire
	nOct
)

// smLayout is a submit_sm or deliver_sm up to sm_length: each field's
// name (for errors) and where it goes.
var smLayout = [...]struct {
	name pdufield.Name
	str  bool
	i    int
}{
	{pdufield.ServiceType, true, strServiceType},
	{pdufield.SourceAddrTON, false, octSourceAddrTON},
	{pdufield.SourceAddrNPI, false, octSourceAddrNPI},
	{pdufield.SourceAddr, true, strSourceAddr},
	{pdufield.DestAddrTON, false, octDestAddrTON},
	{pdufield.DestAddrNPI, false, octDestAddrNPI},
	{pdufield.DestinationAddr, true, strDestinationAddr},
	{pdufield.ESMClass, false, octESMClass},
	{pdufield.ProtocolID, false, octProtocolID},
	{pdufield.PriorityFlag, false, octPriorityFlag},
	{pdufield.ScheduleDeliveryTime, true, strScheduleDeliveryTime},
	{pdufield.ValidityPeriod, true, strValidityPeriod},
	{pdufield.RegisteredDelivery, false, octRegisteredDelivery},
	{pdufield.ReplaceIfPresentFlag, false, octReplaceIfPresentFlag},
	{pdufield.DataCoding, false, octDataCoding},
	{pdufield.SMDefaultMsgID, false, octSMDefaultMsgID},
	{pdufield.SMLength, false, octSMLength},
}

// span is where a field is in a hot PDU's body.
type span struct{ off, n int }

// in returns the field's octets, capped: appending to them copies rather
// than overwrite the next field.
func (s span) in(b []byte) []byte { return b[s.off : s.off+s.n : s.off+s.n] }

// fieldKind is how go-smpp holds a field, which decides what Str, Byte and
// Bytes return for it.
type fieldKind uint8

const (
	fieldAbsent   fieldKind = iota // not in the map
	fieldVariable                  // *pdufield.Variable; b is its Bytes(): the value and its NUL
	fieldFixed                     // *pdufield.Fixed; o is its value
	fieldSM                        // *pdufield.SM; b is its Data
)

type rawField struct {
	kind fieldKind
	b    []byte
	o    uint8
}

// str, octet and bytes are what go-smpp's field values would return to
// Str, Byte and Bytes.
func (f rawField) str() string {
	switch f.kind {
	case fieldVariable: // String(): the value without one trailing NUL
		return string(f.b[:len(f.b)-1])
	case fieldFixed:
		return strconv.Itoa(int(f.o))
	case fieldSM:
		return string(f.b)
	}
	return ""
}

func (f rawField) octet() uint8 {
	switch f.kind {
	case fieldVariable, fieldSM:
		if len(f.b) > 0 {
			return f.b[0]
		}
	case fieldFixed:
		return f.o
	}
	return 0
}

func (f rawField) bytes() []byte {
	switch f.kind {
	case fieldVariable, fieldSM:
		return f.b
	case fieldFixed:
		return []byte{f.o}
	}
	return nil
}

// fastPDU is a PDU decoded or built here. field and tlvValue answer without
// go-smpp's maps; ok is false once the maps exist (they are then the PDU)
// or for a field only the maps hold (a deliver_sm's UDH).
type fastPDU interface {
	field(k pdufield.Name) (f rawField, ok bool)
	tlvValue(t pdutlv.Tag) (v []byte, ok bool)
}

// rawEncoder is a PDU that writes its own frame while its maps do not
// exist; ok false: encode it from its maps.
type rawEncoder interface {
	rawFrame() (frame []byte, ok bool)
}

// lazyMaps are a hot PDU's go-smpp maps, built once on first use: a PDU
// may be read from several goroutines (a request and its late response).
type lazyMaps struct {
	once  sync.Once
	built atomic.Bool
	f     pdufield.Map
	t     pdutlv.Map
}

// get returns the maps, built by build the first time.
func (m *lazyMaps) get(build func() (pdufield.Map, pdutlv.Map)) (pdufield.Map, pdutlv.Map) {
	if !m.built.Load() { // built is set after f and t: they are there
		m.once.Do(func() {
			m.f, m.t = build()
			m.built.Store(true)
		})
	}
	return m.f, m.t
}

// decodeMaps runs go-smpp's decoder over body, as pdu.Decode would.
// Decode accepted body, which go-smpp's decoder accepts too
// (FuzzDecodeHot holds them to it). Were they ever to disagree, the maps
// hold what go-smpp could read (nothing, if it panicked) rather than
// crash the daemon from wherever Fields was first called: a missing
// field reads as empty, and the request is refused for it.
func decodeMaps(l pdufield.List, body []byte) (f pdufield.Map, t pdutlv.Map) {
	defer func() {
		if recover() != nil {
			f, t = nil, nil
		}
		if f == nil {
			f = pdufield.Map{}
		}
		if t == nil {
			t = pdutlv.Map{}
		}
	}()
	r := bytes.NewBuffer(body)
	f, err := l.Decode(r)
	if err != nil {
		return f, nil
	}
	t, _ = pdutlv.DecodeTLV(r)
	return f, t
}

// hotSM is a submit_sm or deliver_sm, decoded from a frame or built by
// NewSubmitSM / NewDeliverSM. It implements pdu.Body like go-smpp's.
type hotSM struct {
	h       pdu.Header
	body    []byte     // decoded: the frame after the header; built: the body to send
	str     [nStr]span // each with its terminating NUL
	nul     uint8      // built: bit i set when str[i]'s value was given with its NUL
	oct     [nOct]uint8
	smLen   uint8 // sm_length as go-smpp's map has it: less the UDH of a deliver_sm with UDHI
	sm      span
	tlv     int  // where the TLVs start in body
	end     int  // and end: go-smpp ignores up to 3 trailing octets
	deliver bool // deliver_sm (go-smpp's field list has the UDH)
	udh     bool // decoded deliver_sm with UDHI: only the maps hold its UDH
	udhAt   int  // and where its short_message (UDH first) starts in body
	// udhPayload: decoded deliver_sm with UDHI and sm_length 0, its UDH
	// message_payload's (udhInPayload): no UDH fields, zero octets each.
	udhPayload bool
	built      bool
	m          lazyMaps
}

var (
	_ pdu.Body   = (*hotSM)(nil)
	_ fastPDU    = (*hotSM)(nil)
	_ rawEncoder = (*hotSM)(nil)
)

// bodyReader reads a body as go-smpp's field decoder does.
type bodyReader struct {
	b   []byte
	pos int
}

// cstr reads a C-octet string up to and with its NUL; false when there
// is no NUL (go-smpp then stops decoding, the rest of the body unread).
func (r *bodyReader) cstr() (span, bool) {
	i := bytes.IndexByte(r.b[r.pos:], 0)
	if i < 0 {
		return span{}, false
	}
	s := span{r.pos, i + 1}
	r.pos += i + 1
	return s, true
}

func (r *bodyReader) octet() (uint8, bool) {
	if r.pos >= len(r.b) {
		return 0, false
	}
	r.pos++
	return r.b[r.pos-1], true
}

func (r *bodyReader) left() int { return len(r.b) - r.pos }

func bodyEnds(k pdufield.Name) error { return fmt.Errorf("body ends before %s", k) }

// decodeSM decodes a submit_sm or deliver_sm frame. Its errors are those
// of decodeCodec: a field missing where go-smpp's decoder would stop
// early, a short_message or TLV longer than the body, a UDH longer than
// sm_length. The PDU keeps frame: nobody may change it after.
func decodeSM(h pdu.Header, frame []byte) (*hotSM, error) {
	p := &hotSM{h: h, body: frame[pdu.HeaderLen:], deliver: h.ID == pdu.DeliverSMID}
	r := bodyReader{b: p.body}
	for _, f := range smLayout {
		var ok bool
		if f.str {
			p.str[f.i], ok = r.cstr()
		} else {
			p.oct[f.i], ok = r.octet()
		}
		if !ok {
			return nil, bodyEnds(f.name)
		}
	}
	smLen := int(p.oct[octSMLength])
	// With sm_length 0 the UDH is message_payload's (SMPP 3.4 §5.2.12,
	// §5.3.2.32), not read here: go-smpp would take the TLVs' first
	// octet for a UDH length (udhInPayload).
	udhi := p.deliver && p.oct[octESMClass]&0x40 != 0
	p.udhPayload = udhi && smLen == 0
	if udhi && smLen > 0 {
		// go-smpp reads the UDH as information elements, udh_length
		// counting down by each one's length + 2 (it may overshoot), and
		// takes udh_length + 1 off sm_length.
		p.udhAt = r.pos
		udhLen, ok := r.octet()
		if !ok {
			return nil, bodyEnds(pdufield.ShortMessage)
		}
		for i := int(udhLen); i > 0; {
			_, ok1 := r.octet()
			l, ok2 := r.octet()
			if !ok1 || !ok2 || r.left() < int(l) {
				return nil, bodyEnds(pdufield.ShortMessage)
			}
			r.pos += int(l)
			i -= int(l) + 2
		}
		if udhLen > 0 {
			if smLen-int(udhLen)-1 < 0 {
				return nil, fmt.Errorf("smLength is lesser than udhLength+1: have %d and %d", smLen, udhLen)
			}
			smLen -= int(udhLen) + 1
		}
		p.udh = true
	}
	if r.left() < smLen {
		return nil, fmt.Errorf("short read for smlength: want %d, have %d", smLen, r.left())
	}
	p.smLen = uint8(smLen)
	p.sm = span{r.pos, smLen}
	p.tlv = r.pos + smLen
	n, err := scanTLVs(p.body[p.tlv:])
	if err != nil {
		return nil, err
	}
	p.end = p.tlv + n
	return p, nil
}

// scanTLVs checks the TLVs as go-smpp's decoder reads them and returns
// how many octets they take: it stops with fewer than 4 octets left.
func scanTLVs(b []byte) (int, error) {
	pos := 0
	for len(b)-pos >= 4 {
		tag := pdutlv.Tag(binary.BigEndian.Uint16(b[pos:]))
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		if len(b)-pos-4 < n {
			return 0, fmt.Errorf("not enough data for tag %s: want %d, have %d", tag.Hex(), n, len(b)-pos-4)
		}
		pos += 4 + n
	}
	return pos, nil
}

// findTLV returns the value of the last TLV tagged t in b (go-smpp's map
// keeps the last), nil when there is none. b holds whole TLVs.
func findTLV(b []byte, t pdutlv.Tag) []byte {
	var v []byte
	for pos := 0; len(b)-pos >= 4; {
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		if pdutlv.Tag(binary.BigEndian.Uint16(b[pos:])) == t {
			v = b[pos+4 : pos+4+n : pos+4+n]
		}
		pos += 4 + n
	}
	return v
}

// uniqueTLVs reports whether no tag repeats in b (whole TLVs): then
// go-smpp's map holds them all and b is what it would write, in some
// order. A long list is not checked (false): it takes the slow way.
func uniqueTLVs(b []byte) bool {
	var tags [8]uint16
	n := 0
	for pos := 0; len(b)-pos >= 4; pos += 4 + int(binary.BigEndian.Uint16(b[pos+2:])) {
		if n == len(tags) {
			return false
		}
		tag := binary.BigEndian.Uint16(b[pos:])
		for _, t := range tags[:n] {
			if t == tag {
				return false
			}
		}
		tags[n] = tag
		n++
	}
	return true
}

func (p *hotSM) Header() *pdu.Header { return &p.h }

func (p *hotSM) FieldList() pdufield.List {
	if p.deliver {
		return deliverSMList
	}
	return submitSMList
}

func (p *hotSM) Fields() pdufield.Map {
	f, _ := p.m.get(p.maps)
	return f
}

func (p *hotSM) TLVFields() pdutlv.Map {
	_, t := p.m.get(p.maps)
	return t
}

// maps builds what go-smpp would hold: for a decoded PDU what its decoder
// makes of the body; for a built one what pdu.NewSubmitSM (NewDeliverSM)
// and a Set of every field would, short_message last.
func (p *hotSM) maps() (pdufield.Map, pdutlv.Map) {
	if !p.built {
		if esm, ok := udhInPayload(p.h.ID, p.body); ok {
			// As decode does: go-smpp would read the UDH from the TLVs.
			c := bytes.Clone(p.body)
			c[esm] &^= 0x40
			f, t := decodeMaps(p.FieldList(), c)
			withUDHInPayload(f, p.body[esm])
			return f, t
		}
		return decodeMaps(p.FieldList(), p.body)
	}
	f := make(pdufield.Map, len(p.FieldList()))
	for _, l := range smLayout {
		if l.str {
			v := p.str[l.i].in(p.body)
			if p.nul&(1<<l.i) == 0 {
				v = v[: len(v)-1 : len(v)-1] // Set(k, "abc") keeps "abc"; Bytes() adds the NUL
			}
			f[l.name] = &pdufield.Variable{Data: v}
		} else {
			f[l.name] = &pdufield.Fixed{Data: p.oct[l.i]}
		}
	}
	f[pdufield.ShortMessage] = &pdufield.SM{Data: p.sm.in(p.body)}
	if p.deliver {
		// Zero octets, not go-smpp's default UDH length octet (#73).
		f[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
		f[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
	}
	return f, tlvMap(p.body[p.tlv:p.end])
}

// tlvMap is what TLVFields().Set(tag, value) of each TLV in b makes.
func tlvMap(b []byte) pdutlv.Map {
	t := make(pdutlv.Map)
	for pos := 0; len(b)-pos >= 4; {
		tag := pdutlv.Tag(binary.BigEndian.Uint16(b[pos:]))
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		t[tag] = &pdutlv.Field{Tag: tag, Data: b[pos+4 : pos+4+n : pos+4+n]}
		pos += 4 + n
	}
	return t
}

func (p *hotSM) field(k pdufield.Name) (rawField, bool) {
	if p.m.built.Load() {
		return rawField{}, false
	}
	switch k {
	case pdufield.ServiceType:
		return p.strField(strServiceType), true
	case pdufield.SourceAddr:
		return p.strField(strSourceAddr), true
	case pdufield.DestinationAddr:
		return p.strField(strDestinationAddr), true
	case pdufield.ScheduleDeliveryTime:
		return p.strField(strScheduleDeliveryTime), true
	case pdufield.ValidityPeriod:
		return p.strField(strValidityPeriod), true
	case pdufield.SourceAddrTON:
		return p.octField(octSourceAddrTON), true
	case pdufield.SourceAddrNPI:
		return p.octField(octSourceAddrNPI), true
	case pdufield.DestAddrTON:
		return p.octField(octDestAddrTON), true
	case pdufield.DestAddrNPI:
		return p.octField(octDestAddrNPI), true
	case pdufield.ESMClass:
		return p.octField(octESMClass), true
	case pdufield.ProtocolID:
		return p.octField(octProtocolID), true
	case pdufield.PriorityFlag:
		return p.octField(octPriorityFlag), true
	case pdufield.RegisteredDelivery:
		return p.octField(octRegisteredDelivery), true
	case pdufield.ReplaceIfPresentFlag:
		return p.octField(octReplaceIfPresentFlag), true
	case pdufield.DataCoding:
		return p.octField(octDataCoding), true
	case pdufield.SMDefaultMsgID:
		return p.octField(octSMDefaultMsgID), true
	case pdufield.SMLength:
		return rawField{kind: fieldFixed, o: p.smLen}, true
	case pdufield.ShortMessage:
		return rawField{kind: fieldSM, b: p.sm.in(p.body)}, true
	case pdufield.UDHLength, pdufield.GSMUserData:
		switch {
		case !p.deliver:
		case p.built, p.udhPayload: // the #73 work-around: empty SM values
			return rawField{kind: fieldSM, b: []byte{}}, true
		case p.udh:
			return rawField{}, false // a UDHList: the maps have it
		}
	}
	return rawField{}, true
}

func (p *hotSM) strField(i int) rawField {
	return rawField{kind: fieldVariable, b: p.str[i].in(p.body)}
}

func (p *hotSM) octField(i int) rawField { return rawField{kind: fieldFixed, o: p.oct[i]} }

func (p *hotSM) tlvValue(t pdutlv.Tag) ([]byte, bool) {
	if p.m.built.Load() {
		return nil, false
	}
	return findTLV(p.body[p.tlv:p.end], t), true
}

// raw reports whether body[:end] is what go-smpp would write for the PDU
// (TLVs aside, which it writes in map order): not once the maps exist,
// which may have been changed; not for a decoded deliver_sm, which
// go-smpp writes with a UDH length octet (#73) or its UDH mangled.
func (p *hotSM) raw() bool {
	if p.m.built.Load() {
		return false
	}
	return p.built || (!p.deliver && uniqueTLVs(p.body[p.tlv:p.end]))
}

// Len is go-smpp's: the header and every field and TLV in the maps.
func (p *hotSM) Len() int {
	if p.raw() {
		return pdu.HeaderLen + p.end
	}
	f, t := p.m.get(p.maps)
	return mapsLen(f, t)
}

func (p *hotSM) rawFrame() ([]byte, bool) {
	if !p.raw() {
		return nil, false
	}
	return frameOf(&p.h, p.body[:p.end]), true
}

// SerializeTo writes what go-smpp's codec would: the body as it is while
// that is the codec's (raw), else from the maps by the codec's steps.
func (p *hotSM) SerializeTo(w io.Writer) error {
	if frame, ok := p.rawFrame(); ok {
		_, err := w.Write(frame)
		return err
	}
	f, t := p.m.get(p.maps)
	return serializeCodec(&p.h, p.FieldList(), f, t, w)
}

// hotResp is a submit_sm_resp or deliver_sm_resp, decoded from a frame or
// built by NewSubmitSMResp / NewDeliverSMResp.
type hotResp struct {
	h     pdu.Header
	body  []byte
	id    span // message_id with its NUL, when hasID
	hasID bool
	nul   bool // built: the id was given with its NUL
	tlv   int
	end   int
	built bool
	m     lazyMaps
}

var (
	_ pdu.Body   = (*hotResp)(nil)
	_ fastPDU    = (*hotResp)(nil)
	_ rawEncoder = (*hotResp)(nil)
)

// decodeResp decodes a submit_sm_resp or deliver_sm_resp frame: a
// message_id, absent when the body is empty or has no NUL (go-smpp then
// reads no TLVs either), and TLVs.
func decodeResp(h pdu.Header, frame []byte) (*hotResp, error) {
	p := &hotResp{h: h, body: frame[pdu.HeaderLen:]}
	r := bodyReader{b: p.body}
	if p.id, p.hasID = r.cstr(); !p.hasID {
		p.tlv, p.end = len(p.body), len(p.body)
		return p, nil
	}
	n, err := scanTLVs(p.body[r.pos:])
	if err != nil {
		return nil, err
	}
	p.tlv, p.end = r.pos, r.pos+n
	return p, nil
}

func (p *hotResp) Header() *pdu.Header      { return &p.h }
func (p *hotResp) FieldList() pdufield.List { return respList }

func (p *hotResp) Fields() pdufield.Map {
	f, _ := p.m.get(p.maps)
	return f
}

func (p *hotResp) TLVFields() pdutlv.Map {
	_, t := p.m.get(p.maps)
	return t
}

func (p *hotResp) maps() (pdufield.Map, pdutlv.Map) {
	if !p.built {
		return decodeMaps(respList, p.body)
	}
	f := make(pdufield.Map, 1)
	if p.hasID {
		v := p.id.in(p.body)
		if !p.nul {
			v = v[: len(v)-1 : len(v)-1]
		}
		f[pdufield.MessageID] = &pdufield.Variable{Data: v}
	}
	return f, make(pdutlv.Map)
}

func (p *hotResp) field(k pdufield.Name) (rawField, bool) {
	if p.m.built.Load() {
		return rawField{}, false
	}
	if k == pdufield.MessageID && p.hasID {
		return rawField{kind: fieldVariable, b: p.id.in(p.body)}, true
	}
	return rawField{}, true
}

func (p *hotResp) tlvValue(t pdutlv.Tag) ([]byte, bool) {
	if p.m.built.Load() {
		return nil, false
	}
	return findTLV(p.body[p.tlv:p.end], t), true
}

func (p *hotResp) Len() int {
	if !p.m.built.Load() && p.tlv == p.end {
		if p.hasID {
			return pdu.HeaderLen + p.id.n
		}
		return pdu.HeaderLen
	}
	f, t := p.m.get(p.maps)
	return mapsLen(f, t)
}

// rawFrame writes a built response (a decoded one is not sent again: its
// maps do it). go-smpp writes an unset message_id as an empty string.
func (p *hotResp) rawFrame() ([]byte, bool) {
	if !p.built || p.m.built.Load() {
		return nil, false
	}
	if !p.hasID {
		return frameOf(&p.h, []byte{0}), true
	}
	return frameOf(&p.h, p.body), true
}

// SerializeTo writes what go-smpp's codec would. Without a message_id it
// goes through the maps, where go-smpp adds the empty one it writes.
func (p *hotResp) SerializeTo(w io.Writer) error {
	if frame, ok := p.rawFrame(); ok && p.hasID {
		_, err := w.Write(frame)
		return err
	}
	f, t := p.m.get(p.maps)
	return serializeCodec(&p.h, respList, f, t, w)
}

// frameOf is the frame of h and body, in one allocation; it sets h.Len as
// go-smpp's SerializeTo does.
func frameOf(h *pdu.Header, body []byte) []byte {
	n := pdu.HeaderLen + len(body)
	frame := make([]byte, n)
	h.Len = uint32(n)
	putHeader(frame, h)
	copy(frame[pdu.HeaderLen:], body)
	return frame
}

func putHeader(frame []byte, h *pdu.Header) {
	binary.BigEndian.PutUint32(frame[0:4], h.Len)
	binary.BigEndian.PutUint32(frame[4:8], uint32(h.ID))
	binary.BigEndian.PutUint32(frame[8:12], uint32(h.Status))
	binary.BigEndian.PutUint32(frame[12:16], h.Seq)
}

// mapsLen is go-smpp's Len: every field and TLV in the maps, whether in
// the field list or not.
func mapsLen(f pdufield.Map, t pdutlv.Map) int {
	n := pdu.HeaderLen
	for _, v := range f {
		n += v.Len()
	}
	for _, v := range t {
		n += v.Len()
	}
	return n
}

// serializeCodec is go-smpp's codec.SerializeTo, step for step, quirks
// and all: a field missing from the map is added with its default value
// (which for deliver_sm's UDH length is the spurious octet of #73), TLVs
// go out in map order, command_length counts every field in the map.
func serializeCodec(h *pdu.Header, l pdufield.List, f pdufield.Map, t pdutlv.Map, w io.Writer) error {
	var b bytes.Buffer
	for _, k := range l {
		v, ok := f[k]
		if !ok {
			_ = f.Set(k, nil)
			v = f[k]
		}
		if err := v.SerializeTo(&b); err != nil {
			return err
		}
	}
	for _, v := range t {
		if err := v.SerializeTo(&b); err != nil {
			return err
		}
	}
	h.Len = uint32(mapsLen(f, t))
	if err := h.SerializeTo(w); err != nil {
		return err
	}
	_, err := io.Copy(w, &b)
	return err
}

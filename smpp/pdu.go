package smpp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// Command status values used by qxtd (SMPP 3.4 §5.1.3).
const (
	StatusOK                 pdu.Status = 0x00000000
	StatusInvalidMsgLen      pdu.Status = 0x00000001
	StatusInvalidCommandLen  pdu.Status = 0x00000002
	StatusInvalidCommandID   pdu.Status = 0x00000003
	StatusInvalidBindStatus  pdu.Status = 0x00000004
	StatusAlreadyBound       pdu.Status = 0x00000005
	StatusSystemError        pdu.Status = 0x00000008
	StatusInvalidSrcAddr     pdu.Status = 0x0000000A
	StatusInvalidDstAddr     pdu.Status = 0x0000000B
	StatusInvalidMsgID       pdu.Status = 0x0000000C
	StatusBindFailed         pdu.Status = 0x0000000D
	StatusInvalidPassword    pdu.Status = 0x0000000E
	StatusInvalidSystemID    pdu.Status = 0x0000000F
	StatusCancelFailed       pdu.Status = 0x00000011
	StatusReplaceFailed      pdu.Status = 0x00000013
	StatusMsgQueueFull       pdu.Status = 0x00000014
	StatusInvalidServiceType pdu.Status = 0x00000015
	StatusInvalidNumDests    pdu.Status = 0x00000033 // ESME_RINVNUMDESTS: submit_multi's number_of_dests 0 or over MaxDests
	StatusInvalidESMClass    pdu.Status = 0x00000043
	StatusSubmitFailed       pdu.Status = 0x00000045
	StatusThrottled          pdu.Status = 0x00000058
	StatusInvalidSchedule    pdu.Status = 0x00000061
	StatusInvalidExpiry      pdu.Status = 0x00000062
	StatusRxTApp             pdu.Status = 0x00000064 // ESME_RX_T_APPN: a deliver_sm the ESME cannot take now; the SMSC sends it again later
	StatusRxPApp             pdu.Status = 0x00000065 // ESME_RX_P_APPN: a deliver_sm the ESME will never take (permanent error)
	StatusRxRApp             pdu.Status = 0x00000066 // ESME_RX_R_APPN: a deliver_sm the ESME rejects
	StatusQueryFailed        pdu.Status = 0x00000067
	StatusInvalidOptional    pdu.Status = 0x000000C0
	StatusUnknownError       pdu.Status = 0x000000FF
)

// Command ids go-smpp defines but cannot decode.
const (
	CancelSMID          = pdu.CancelSMID
	CancelSMRespID      = pdu.CancelSMRespID
	ReplaceSMID         = pdu.ReplaceSMID
	ReplaceSMRespID     = pdu.ReplaceSMRespID
	DataSMID            = pdu.DataSMID
	DataSMRespID        = pdu.DataSMRespID
	OutbindID           = pdu.OutbindID
	AlertNotificationID = pdu.AlertNotificationID
)

// UnknownCommandError is returned by Decode for a command_id that SMPP 3.4
// does not define: the peer gets generic_nack ESME_RINVCMDID.
type UnknownCommandError struct{ ID pdu.ID }

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("smpp: unknown command_id %#08x", uint32(e.ID))
}

// body is a PDU that go-smpp's pdu.Decode does not know (cancel_sm,
// replace_sm, data_sm, outbind, alert_notification and their responses).
// It implements pdu.Body with go-smpp's field and TLV codecs, so the rest
// of qxtd handles every PDU alike.
type body struct {
	h *pdu.Header
	l pdufield.List
	f pdufield.Map
	t pdutlv.Map
}

func (b *body) Header() *pdu.Header           { return b.h }
func (b *body) FieldList() pdufield.List      { return b.l }
func (b *body) Fields() pdufield.Map          { return b.f }
func (b *body) TLVFields() pdutlv.Map         { return b.t }
func (b *body) SerializeTo(w io.Writer) error { return serialize(b, w) }

func (b *body) Len() int {
	n := pdu.HeaderLen
	for _, k := range b.l {
		if f, ok := b.f[k]; ok {
			n += f.Len()
		} else {
			n += pdufield.New(k, nil).Len()
		}
	}
	for _, t := range b.t {
		n += t.Len()
	}
	return n
}

var _ pdu.Body = (*body)(nil)

func serialize(b *body, w io.Writer) error {
	var buf bytes.Buffer
	for _, k := range b.l {
		f, ok := b.f[k]
		if !ok {
			f = pdufield.New(k, nil)
		}
		if err := f.SerializeTo(&buf); err != nil {
			return err
		}
	}
	for _, t := range b.t {
		if err := t.SerializeTo(&buf); err != nil {
			return err
		}
	}
	b.h.Len = uint32(pdu.HeaderLen + buf.Len())
	if err := b.h.SerializeTo(w); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Field lists from SMPP 3.4 §4.
var extraLists = map[pdu.ID]pdufield.List{
	pdu.CancelSMID: {
		pdufield.ServiceType, pdufield.MessageID,
		pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr,
	},
	pdu.CancelSMRespID: {},
	pdu.ReplaceSMID: {
		pdufield.MessageID, pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod, pdufield.RegisteredDelivery,
		pdufield.SMDefaultMsgID, pdufield.SMLength, pdufield.ShortMessage,
	},
	pdu.ReplaceSMRespID: {},
	pdu.DataSMID: {
		pdufield.ServiceType, pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr,
		pdufield.ESMClass, pdufield.RegisteredDelivery, pdufield.DataCoding,
	},
	pdu.DataSMRespID: {pdufield.MessageID},
	pdu.OutbindID:    {pdufield.SystemID, pdufield.Password},
	pdu.AlertNotificationID: {
		pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.AddrTON, pdufield.AddrNPI, pdufield.AddressRange, // esme_addr, same layout
	},
}

// NewPDU returns an empty PDU of one of the commands go-smpp lacks.
func NewPDU(id pdu.ID) pdu.Body {
	l, ok := extraLists[id]
	if !ok {
		panic(fmt.Sprintf("smpp: NewPDU(%#x): not one of the extra commands", uint32(id)))
	}
	return &body{h: &pdu.Header{ID: id}, l: l, f: make(pdufield.Map), t: make(pdutlv.Map)}
}

// knownIDs are the SMPP 3.4 command ids; anything else is unknown.
func known(id pdu.ID) bool {
	if _, ok := extraLists[id]; ok {
		return true
	}
	return id.String() != ""
}

// Decode decodes one whole frame (as returned by ReadFrame). It never
// panics on bad input: go-smpp's decoder is guarded, and its result is
// checked for fields the caller relies on.
//
// submit_sm, deliver_sm and their responses are decoded by the hot
// decoder (hot.go), whose PDUs keep frame: the caller must not change
// frame after. Every other PDU is go-smpp's or decoded by go-smpp's field
// codec.
func Decode(frame []byte) (pdu.Body, error) { return decode(frame, true) }

// decode is Decode; hot false decodes every PDU with go-smpp's codec, the
// reference the hot decoder is held to (FuzzDecodeHot).
func decode(frame []byte, hot bool) (p pdu.Body, err error) {
	if len(frame) < pdu.HeaderLen || int(binary.BigEndian.Uint32(frame[0:4])) != len(frame) {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrFrameLength, len(frame))
	}
	h := headerOf(frame)
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("smpp: decode %s: %v", h.ID, r)
		}
	}()
	// A frame past go-smpp's limit is left to go-smpp, which refuses it.
	if hot && len(frame) <= pdu.MaxSize {
		switch h.ID {
		case pdu.SubmitSMID, pdu.DeliverSMID:
			sm, err := decodeSM(h, frame)
			if err != nil {
				return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
			}
			return sm, nil
		case pdu.SubmitSMRespID, pdu.DeliverSMRespID:
			r, err := decodeResp(h, frame)
			if err != nil {
				return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
			}
			return r, nil
		}
	}
	if !known(h.ID) {
		return nil, &UnknownCommandError{ID: h.ID}
	}
	switch h.ID {
	case pdu.SubmitMultiID:
		if p, err = decodeSubmitMulti(h, frame[pdu.HeaderLen:]); err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
		return p, nil
	case pdu.SubmitMultiRespID:
		if p, err = decodeSubmitMultiResp(h, frame[pdu.HeaderLen:]); err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
		return p, nil
	}
	if l, ok := extraLists[h.ID]; ok {
		r := bytes.NewBuffer(frame[pdu.HeaderLen:])
		f, err := l.Decode(r)
		if err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
		t, err := pdutlv.DecodeTLV(r)
		if err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
		hh := h
		p = &body{h: &hh, l: l, f: f, t: t}
	} else if esm, ok := udhInPayload(h.ID, frame[pdu.HeaderLen:]); ok {
		// go-smpp reads a deliver_sm's UDH after sm_length even when
		// sm_length is 0 and the UDH is message_payload's: it takes the
		// TLVs' first octet for the UDH's length and refuses the PDU (a
		// reply of more than 254 octets with application ports, which
		// qxtd itself sends: smpp.NewOctetsPDU). Decoded without UDHI,
		// the esm_class then put back.
		c := bytes.Clone(frame)
		c[pdu.HeaderLen+esm] &^= 0x40
		if p, err = pdu.Decode(bytes.NewReader(c)); err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
		withUDHInPayload(p.Fields(), frame[pdu.HeaderLen+esm])
	} else {
		p, err = pdu.Decode(bytes.NewReader(frame))
		if err != nil {
			return nil, fmt.Errorf("smpp: decode %s: %w", h.ID, err)
		}
	}
	// go-smpp stops without an error where a body ends early, leaving
	// the remaining fields out of the map: a request must carry every
	// mandatory field. Responses may lack their body (§4: not returned
	// with a non-zero command_status; deliver_sm_resp often empty).
	if h.ID&0x80000000 == 0 {
		for _, k := range p.FieldList() {
			if k == pdufield.UDHLength || k == pdufield.GSMUserData {
				continue // present only with UDHI, handled by go-smpp
			}
			if _, ok := p.Fields()[k]; !ok {
				return nil, fmt.Errorf("smpp: decode %s: body ends before %s", h.ID, k)
			}
		}
	}
	return p, nil
}

// withUDHInPayload puts back into f, decoded without UDHI, the esm_class
// esm; and zero octets for the UDH fields, not go-smpp's default UDH
// length octet (#73, as built PDUs have), so that the PDU serializes
// back to its frame.
func withUDHInPayload(f pdufield.Map, esm byte) {
	f[pdufield.ESMClass] = &pdufield.Fixed{Data: esm}
	f[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
	f[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
}

// udhInPayload reports whether body is a deliver_sm's (id) with esm_class
// UDHI and sm_length 0, and where in body its esm_class is.
func udhInPayload(id pdu.ID, body []byte) (esm int, ok bool) {
	if id != pdu.DeliverSMID {
		return 0, false
	}
	r := bodyReader{b: body}
	for _, f := range smLayout {
		if f.str {
			if _, ok := r.cstr(); !ok {
				return 0, false
			}
			continue
		}
		at := r.pos
		v, ok := r.octet()
		if !ok {
			return 0, false
		}
		switch f.i {
		case octESMClass:
			if v&0x40 == 0 {
				return 0, false
			}
			esm = at
		case octSMLength:
			return esm, v == 0
		}
	}
	return 0, false
}

// Str returns a C-octet string field, "" when absent (go-smpp leaves
// fields out of the map when a body is short). The hot PDUs answer from
// their frame, without building go-smpp's maps.
func Str(p pdu.Body, k pdufield.Name) string {
	if fp, ok := p.(fastPDU); ok {
		if f, ok := fp.field(k); ok {
			return f.str()
		}
	}
	if f, ok := p.Fields()[k]; ok && f != nil {
		return f.String()
	}
	return ""
}

// Byte returns a one-octet field, 0 when absent.
func Byte(p pdu.Body, k pdufield.Name) uint8 {
	if fp, ok := p.(fastPDU); ok {
		if f, ok := fp.field(k); ok {
			return f.octet()
		}
	}
	if f, ok := p.Fields()[k]; ok && f != nil {
		if b := f.Bytes(); len(b) > 0 {
			return b[0]
		}
	}
	return 0
}

// Bytes returns a field's raw bytes (short_message), nil when absent.
func Bytes(p pdu.Body, k pdufield.Name) []byte {
	if fp, ok := p.(fastPDU); ok {
		if f, ok := fp.field(k); ok {
			return f.bytes()
		}
	}
	if f, ok := p.Fields()[k]; ok && f != nil {
		if sm, ok := f.(*pdufield.SM); ok {
			return sm.Data
		}
		return f.Bytes()
	}
	return nil
}

// UserData returns the short_message of a submit_sm or deliver_sm whole,
// its UDH included. Bytes(p, ShortMessage) leaves the UDH out of a
// deliver_sm with UDHI read from the wire, as go-smpp's maps do (they
// hold it as UDHLength and GSMUserData): a reader that parses the UDH
// itself (segment.ParseIncoming, which the esm_class tells to) needs it.
func UserData(p pdu.Body) []byte {
	if sm, ok := p.(*hotSM); ok && sm.udh {
		end := min(sm.udhAt+int(sm.oct[octSMLength]), len(sm.body))
		return sm.body[sm.udhAt:end:end]
	}
	return Bytes(p, pdufield.ShortMessage)
}

// TLV returns a TLV's value, nil when absent.
func TLV(p pdu.Body, t pdutlv.Tag) []byte {
	if fp, ok := p.(fastPDU); ok {
		if v, ok := fp.tlvValue(t); ok {
			return v
		}
	}
	if f, ok := p.TLVFields()[t]; ok && f != nil {
		return f.Bytes()
	}
	return nil
}

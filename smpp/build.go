package smpp

import (
	"bytes"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// SM is a submit_sm (SMPP 3.4 §4.4.1) or deliver_sm (§4.6.1) for
// NewSubmitSM and NewDeliverSM: the mandatory fields in wire order, less
// sm_length, which is len(ShortMessage) (as go-smpp's Set makes it), and
// the TLVs. Strings go out as C-octet strings: with a NUL added unless
// they end in one.
type SM struct {
	ServiceType          string
	SourceAddrTON        uint8
	SourceAddrNPI        uint8
	SourceAddr           string
	DestAddrTON          uint8
	DestAddrNPI          uint8
	DestinationAddr      string
	ESMClass             uint8
	ProtocolID           uint8
	PriorityFlag         uint8
	ScheduleDeliveryTime string
	ValidityPeriod       string
	RegisteredDelivery   uint8
	ReplaceIfPresentFlag uint8
	DataCoding           uint8
	SMDefaultMsgID       uint8
	ShortMessage         []byte
	// TLVs go out in this order. A tag given twice counts once, with
	// its last value, as with TLVFields().Set.
	TLVs []TLVField
}

// TLVField is one TLV of an SM.
type TLVField struct {
	Tag   pdutlv.Tag
	Value []byte
}

// NewSubmitSM builds the submit_sm of m: what pdu.NewSubmitSM and a
// Fields().Set of every field (short_message last) and TLVFields().Set of
// every TLV make, in two allocations rather than about thirty; Conn
// encodes it in one more. Its fields read as go-smpp's would (Str, Byte,
// Bytes, TLV read them without go-smpp's maps), and Fields and TLVFields
// return maps a caller may change, as with go-smpp's PDUs. Unlike
// go-smpp's constructor it leaves the sequence number 0: Conn sets it.
// The values are copied: m may be reused.
func NewSubmitSM(m SM) pdu.Body { return newSM(pdu.SubmitSMID, &m) }

// NewDeliverSM is NewSubmitSM for a deliver_sm. A UDH goes in
// ShortMessage (esm_class UDHI), as for a submit_sm; the PDU is written
// without the spurious UDH length octet of go-smpp's NewDeliverSM (#73).
func NewDeliverSM(m SM) pdu.Body { return newSM(pdu.DeliverSMID, &m) }

func newSM(id pdu.ID, m *SM) pdu.Body {
	strs := [nStr]string{
		strServiceType:          m.ServiceType,
		strSourceAddr:           m.SourceAddr,
		strDestinationAddr:      m.DestinationAddr,
		strScheduleDeliveryTime: m.ScheduleDeliveryTime,
		strValidityPeriod:       m.ValidityPeriod,
	}
	size := nOct + len(m.ShortMessage)
	for _, s := range strs {
		size += len(s) + 1
	}
	last := lastOfTags(m.TLVs)
	for i, t := range m.TLVs {
		if len(t.Value) > 0xFFFF {
			// Its length does not fit the TLV's: the hot PDU could not
			// read its own body back. go-smpp writes it anyway.
			return codecSM(id, m)
		}
		if last(i) {
			size += 4 + len(t.Value)
		}
	}
	p := &hotSM{
		h:       pdu.Header{ID: id},
		deliver: id == pdu.DeliverSMID,
		built:   true,
		oct: [nOct]uint8{
			octSourceAddrTON:        m.SourceAddrTON,
			octSourceAddrNPI:        m.SourceAddrNPI,
			octDestAddrTON:          m.DestAddrTON,
			octDestAddrNPI:          m.DestAddrNPI,
			octESMClass:             m.ESMClass,
			octProtocolID:           m.ProtocolID,
			octPriorityFlag:         m.PriorityFlag,
			octRegisteredDelivery:   m.RegisteredDelivery,
			octReplaceIfPresentFlag: m.ReplaceIfPresentFlag,
			octDataCoding:           m.DataCoding,
			octSMDefaultMsgID:       m.SMDefaultMsgID,
			octSMLength:             uint8(len(m.ShortMessage)), // truncated, as Set does
		},
	}
	p.smLen = p.oct[octSMLength]
	b := make([]byte, 0, size)
	for _, l := range smLayout {
		if !l.str {
			b = append(b, p.oct[l.i])
			continue
		}
		s, start := strs[l.i], len(b)
		b = append(b, s...)
		if len(s) > 0 && s[len(s)-1] == 0 {
			p.nul |= 1 << l.i
		} else {
			b = append(b, 0)
		}
		p.str[l.i] = span{start, len(b) - start}
	}
	p.sm = span{len(b), len(m.ShortMessage)}
	b = append(b, m.ShortMessage...)
	p.tlv = len(b)
	for i, t := range m.TLVs {
		if last(i) {
			b = append(b, byte(t.Tag>>8), byte(t.Tag), byte(len(t.Value)>>8), byte(len(t.Value)))
			b = append(b, t.Value...)
		}
	}
	p.end = len(b)
	p.body = b
	return p
}

// lastOfTags returns whether the i-th TLV is the last with its tag: the
// one go-smpp's map would keep. A few TLVs are compared with each other;
// a long list (no caller of ours has one) goes through a map.
func lastOfTags(tlvs []TLVField) func(i int) bool {
	if len(tlvs) <= 16 {
		return func(i int) bool {
			for _, t := range tlvs[i+1:] {
				if t.Tag == tlvs[i].Tag {
					return false
				}
			}
			return true
		}
	}
	last := make(map[pdutlv.Tag]int, len(tlvs))
	for i, t := range tlvs {
		last[t.Tag] = i
	}
	return func(i int) bool { return last[tlvs[i].Tag] == i }
}

// codecSM builds m with go-smpp, for what the hot PDU cannot hold.
func codecSM(id pdu.ID, m *SM) pdu.Body {
	var p pdu.Body
	if id == pdu.DeliverSMID {
		p = pdu.NewDeliverSM()
	} else {
		p = pdu.NewSubmitSM(nil)
	}
	f := p.Fields()
	_ = f.Set(pdufield.ServiceType, m.ServiceType)
	_ = f.Set(pdufield.SourceAddrTON, m.SourceAddrTON)
	_ = f.Set(pdufield.SourceAddrNPI, m.SourceAddrNPI)
	_ = f.Set(pdufield.SourceAddr, m.SourceAddr)
	_ = f.Set(pdufield.DestAddrTON, m.DestAddrTON)
	_ = f.Set(pdufield.DestAddrNPI, m.DestAddrNPI)
	_ = f.Set(pdufield.DestinationAddr, m.DestinationAddr)
	_ = f.Set(pdufield.ESMClass, m.ESMClass)
	_ = f.Set(pdufield.ProtocolID, m.ProtocolID)
	_ = f.Set(pdufield.PriorityFlag, m.PriorityFlag)
	_ = f.Set(pdufield.ScheduleDeliveryTime, m.ScheduleDeliveryTime)
	_ = f.Set(pdufield.ValidityPeriod, m.ValidityPeriod)
	_ = f.Set(pdufield.RegisteredDelivery, m.RegisteredDelivery)
	_ = f.Set(pdufield.ReplaceIfPresentFlag, m.ReplaceIfPresentFlag)
	_ = f.Set(pdufield.DataCoding, m.DataCoding)
	_ = f.Set(pdufield.SMDefaultMsgID, m.SMDefaultMsgID)
	_ = f.Set(pdufield.ShortMessage, bytes.Clone(m.ShortMessage))
	if id == pdu.DeliverSMID { // #73
		f[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
		f[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
	}
	for _, t := range m.TLVs {
		_ = p.TLVFields().Set(t.Tag, bytes.Clone(t.Value))
	}
	p.Header().Seq = 0 // as the hot PDUs: Conn numbers it
	return p
}

// respBuf holds a built response's message_id without another
// allocation: ours are decimal uint64s, the SMSC's up to 65 octets.
const respBuf = 24

// builtResp is a hot response with its message_id's buffer.
type builtResp struct {
	hotResp
	buf [respBuf]byte
}

// NewSubmitSMResp builds the submit_sm_resp carrying messageID: what
// pdu.NewSubmitSMResp and Fields().Set(pdufield.MessageID, messageID)
// make, in one allocation rather than six (sequence number 0: Conn sets
// it).
func NewSubmitSMResp(messageID string) pdu.Body {
	p := &builtResp{hotResp: hotResp{h: pdu.Header{ID: pdu.SubmitSMRespID}, built: true, hasID: true}}
	n := len(messageID)
	if p.nul = n > 0 && messageID[n-1] == 0; !p.nul {
		n++
	}
	if n <= respBuf {
		p.body = p.buf[:0:n]
	} else {
		p.body = make([]byte, 0, n)
	}
	p.body = append(p.body, messageID...)
	if !p.nul {
		p.body = append(p.body, 0)
	}
	p.id = span{0, n}
	p.tlv, p.end = n, n
	return &p.hotResp
}

// NewDeliverSMResp builds a deliver_sm_resp (message_id unset, written
// empty as §4.6.2 has it): what pdu.NewDeliverSMResp makes, in one
// allocation.
func NewDeliverSMResp() pdu.Body { return newResp(pdu.DeliverSMRespID) }

// newResp is a submit_sm_resp or deliver_sm_resp with message_id unset,
// as go-smpp's constructors make them (an error response).
func newResp(id pdu.ID) *hotResp {
	return &hotResp{h: pdu.Header{ID: id}, built: true}
}

package smpp

import (
	"encoding/binary"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// encodeResponse encodes the responses that every message causes —
// submit_sm_resp and deliver_sm_resp (a message_id, nothing else) and the
// header-only enquire_link_resp and generic_nack — in one allocation,
// where go-smpp's codec serialises field by field through two buffers and
// a map. The bytes are the codec's own: FuzzEncodeResponse holds them
// equal. Anything else (a TLV, another field) is left to the codec: ok is
// false.
func encodeResponse(p pdu.Body) (frame []byte, ok bool) {
	h := p.Header()
	var id []byte
	switch h.ID {
	case pdu.SubmitSMRespID, pdu.DeliverSMRespID:
		f := p.Fields()
		if len(p.TLVFields()) != 0 || len(f) > 1 {
			return nil, false
		}
		id = []byte{0} // an unset message_id is an empty C-Octet String
		if len(f) == 1 {
			v, isVar := f[pdufield.MessageID].(*pdufield.Variable)
			if !isVar {
				return nil, false
			}
			id = v.Bytes()
		}
	case pdu.EnquireLinkRespID, pdu.GenericNACKID:
		if len(p.Fields()) != 0 || len(p.TLVFields()) != 0 {
			return nil, false
		}
	default:
		return nil, false
	}
	n := pdu.HeaderLen + len(id)
	frame = make([]byte, n)
	binary.BigEndian.PutUint32(frame[0:4], uint32(n))
	binary.BigEndian.PutUint32(frame[4:8], uint32(h.ID))
	binary.BigEndian.PutUint32(frame[8:12], uint32(h.Status))
	binary.BigEndian.PutUint32(frame[12:16], h.Seq)
	copy(frame[pdu.HeaderLen:], id)
	h.Len = uint32(n) // as the codec leaves it
	return frame, true
}

// encodeSM encodes a submit_sm or deliver_sm from its go-smpp maps — one
// built with pdu.NewSubmitSM / NewDeliverSM and Fields().Set, or a hot PDU
// whose maps someone asked for — in one allocation, where go-smpp's codec
// serialises field by field through two buffers (about 30 allocations).
// The bytes are the codec's own, TLVs aside: the codec writes them in map
// order, which changes from run to run; here they go out by tag.
// FuzzEncodeHot holds them equal. Anything the codec would write
// differently from the field values alone is left to it (ok false): a
// field outside the field list (counted in command_length, not written),
// a value of another type, a UDH of information elements.
//
// A field missing from the map is written with go-smpp's default value,
// as the codec does; unlike the codec, encodeSM does not add it to the map.
func encodeSM(p pdu.Body) (frame []byte, ok bool) {
	h := p.Header()
	if h.ID != pdu.SubmitSMID && h.ID != pdu.DeliverSMID {
		return nil, false
	}
	l, f, t := p.FieldList(), p.Fields(), p.TLVFields()
	var vals [24]pdufield.Body // the list's values; nil: missing
	if len(l) > len(vals) {
		return nil, false
	}
	n, present := pdu.HeaderLen, 0
	for i, k := range l {
		v, ok := f[k]
		if ok {
			if v == nil {
				return nil, false // the codec panics on it
			}
			present++
			vals[i] = v
		}
		size, ok := fieldSize(k, v)
		if !ok {
			return nil, false
		}
		n += size
	}
	if present != len(f) {
		return nil, false
	}
	// Sorted by insertion: a few TLVs, on the stack up to 8.
	tlvs := make([]*pdutlv.Field, 0, 8)
	for _, v := range t {
		tf, ok := v.(*pdutlv.Field)
		if !ok || tf == nil {
			return nil, false
		}
		tlvs = append(tlvs, tf)
		for i := len(tlvs) - 1; i > 0 && tlvs[i-1].Tag > tf.Tag; i-- {
			tlvs[i], tlvs[i-1] = tlvs[i-1], tlvs[i]
		}
		n += 4 + len(tf.Data)
	}
	frame = make([]byte, n)
	h.Len = uint32(n) // as the codec leaves it
	putHeader(frame, h)
	w := frame[pdu.HeaderLen:pdu.HeaderLen]
	for i := range l {
		switch v := vals[i].(type) {
		case nil: // a default: one zero octet (Fixed, empty Variable) or none
			if s, _ := fieldSize(l[i], nil); s == 1 {
				w = append(w, 0)
			}
		case *pdufield.Fixed:
			w = append(w, v.Data)
		case *pdufield.Variable:
			w = append(w, v.Data...)
			if len(v.Data) == 0 || v.Data[len(v.Data)-1] != 0 {
				w = append(w, 0)
			}
		case *pdufield.SM:
			w = append(w, v.Data...)
		}
		// *pdufield.UDHList: fieldSize let only an empty one through.
	}
	for _, tf := range tlvs {
		w = binary.BigEndian.AppendUint16(w, uint16(tf.Tag))
		w = binary.BigEndian.AppendUint16(w, uint16(len(tf.Data))) // truncated, as the codec does
		w = append(w, tf.Data...)
	}
	return frame, true
}

// fieldSize is how many octets the codec writes for field k holding v
// (nil: missing, written as pdufield.New(k, nil) would be); false for a
// value it does not write from the value alone.
func fieldSize(k pdufield.Name, v pdufield.Body) (int, bool) {
	switch v := v.(type) {
	case nil:
		switch k {
		case pdufield.ShortMessage, pdufield.GSMUserData:
			return 0, true
		case pdufield.ServiceType, pdufield.SourceAddr, pdufield.DestinationAddr,
			pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod,
			pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.DestAddrTON, pdufield.DestAddrNPI,
			pdufield.ESMClass, pdufield.ProtocolID, pdufield.PriorityFlag,
			pdufield.RegisteredDelivery, pdufield.ReplaceIfPresentFlag, pdufield.DataCoding,
			pdufield.SMDefaultMsgID, pdufield.SMLength, pdufield.UDHLength:
			return 1, true
		}
	case *pdufield.Fixed:
		if v != nil {
			return 1, true
		}
	case *pdufield.Variable:
		if v != nil { // Len() is len(Bytes()), which may append to Data
			if len(v.Data) > 0 && v.Data[len(v.Data)-1] == 0 {
				return len(v.Data), true
			}
			return len(v.Data) + 1, true
		}
	case *pdufield.SM:
		if v != nil {
			return len(v.Data), true
		}
	case *pdufield.UDHList:
		// Its information elements' Bytes() may write into the buffer
		// they were decoded from: the codec's business.
		if v != nil && len(v.Data) == 0 {
			return 0, true
		}
	}
	return 0, false
}

package smpp

import (
	"encoding/binary"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
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

package segment

import (
	"fmt"
	"math"
)

// A reply (MO) goes to the enterprise's ESME whole, in one deliver_sm:
// in short_message, or in message_payload past its 254 octets. An ESME
// that reads short_message only (many client libraries leave the TLVs to
// the application) takes a long one in parts instead, as a carrier SMSC
// delivers it: TextFrames and OctetFrames frame a reply that way.

// maxReplyChars lets Encode take a reply of any length that 255 parts
// hold (segmentCount refuses more with ErrTooLong); the operator's
// DefaultMaxChars is a limit on what enterprises send, not on replies.
const maxReplyChars = maxSegments * gsmSingle

// TextFrames frames a text reply for a deliver_sm each, joined by c
// (ConcatUDH8, ConcatUDH16 or ConcatSAR) with reference ref: one frame
// without a header when it fits one SMS (160 GSM septets, 70 UCS-2
// units), else its parts of 153 / 67 (8-bit reference) or 152 / 66
// (16-bit) with a UDH, or of 153 / 67 with the SAR TLVs (the UDH the SMSC
// would add). GSM goes as one septet per octet (data_coding 0x00), as
// SMSCs deliver it. ErrTooLong: more than 255 parts.
func TextFrames(text string, c Concat, ref uint16) ([]Frame, error) {
	if c >= ConcatPayload {
		return nil, fmt.Errorf("%w: concat mode %v for parts", ErrBadOptions, c)
	}
	opt := Options{Concat: c, MaxChars: maxReplyChars}
	p, err := Encode(text, opt)
	if err != nil {
		return nil, err
	}
	return BuildFrames(p.DataCoding, p.Parts, ref, opt)
}

// OctetFrames frames a reply kept as octets (segment.Octets: data, its
// data_coding, and udh, its UDH without concatenation IEs, UDHL octet
// first, or nil) as TextFrames does a text. Every part carries udh's IEs
// (an application port is in each part of a long message, TS 23.040
// §9.2.3.24.3) and, with ConcatUDH8 or ConcatUDH16, the concatenation IE
// after them. A GSM data_coding (septets, one per octet) is counted in
// septets with its fill bits and never split after an escape; UCS-2 in
// octet pairs; any other in octets. One frame when udh and data fit one
// SMS. ErrTooLong: more than 255 parts; ErrBadUDH: udh is not a UDH.
func OctetFrames(data []byte, dataCoding byte, udh []byte, c Concat, ref uint16) ([]Frame, error) {
	if c >= ConcatPayload {
		return nil, fmt.Errorf("%w: concat mode %v for parts", ErrBadOptions, c)
	}
	if len(udh) > 0 {
		if int(udh[0]) != len(udh)-1 {
			return nil, fmt.Errorf("%w: UDHL %d of a %d-octet UDH", ErrBadUDH, udh[0], len(udh))
		}
		udh = withoutConcat(udh)
	}
	septets := false
	if cd, err := codingOf(dataCoding); err == nil && cd == GSM7 {
		septets = check7bit(data, "") == nil
	}
	unit := 1
	if cd, err := codingOf(dataCoding); err == nil && cd == UCS2 && len(data)%2 == 0 {
		unit = 2
	}
	// room is how many octets of data fit one SMS beside a UDH of udhLen
	// octets (0: none).
	room := func(udhLen int) int {
		if septets {
			return (8*maxUserData - 8*udhLen - packFill(udhLen)) / 7
		}
		return (maxUserData - udhLen) / unit * unit
	}
	if len(data) <= room(len(udh)) {
		return []Frame{octetFrame(data, dataCoding, udh, nil)}, nil
	}
	// The concatenation IE; its last two octets are total and seq. With
	// SAR the SMSC adds the 8-bit one on the air: a part leaves it room.
	ie := []byte{0x00, 0x03, byte(ref), 0, 0}
	if c == ConcatUDH16 {
		ie = []byte{0x08, 0x04, byte(ref >> 8), byte(ref), 0, 0}
	}
	hdr := len(ie) + max(len(udh), 1) // udh's IEs, or the UDHL octet alone
	if hdr > math.MaxUint8 || room(hdr) < 2 {
		return nil, fmt.Errorf("%w: a %d-octet UDH leaves no room for data", ErrBadUDH, hdr)
	}
	var parts [][]byte
	for rest, n := data, room(hdr); len(rest) > 0; {
		k := min(n, len(rest))
		if septets && k < len(rest) && rest[k-1] == 0x1B {
			k-- // not between an escape and its character
		}
		parts, rest = append(parts, rest[:k]), rest[k:]
	}
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("%w: %d parts, limit %d", ErrTooLong, len(parts), maxSegments)
	}
	frames := make([]Frame, len(parts))
	for i, p := range parts {
		total, seq := byte(len(parts)), byte(i+1)
		var h []byte
		var tlvs map[uint16][]byte
		switch c {
		case ConcatSAR:
			h = udh
			tlvs = map[uint16][]byte{
				TagSARMsgRefNum:     {byte(ref >> 8), byte(ref)},
				TagSARTotalSegments: {total},
				TagSARSegmentSeqnum: {seq},
			}
		default:
			h = make([]byte, 0, hdr)
			h = append(h, byte(hdr-1))
			if len(udh) > 0 {
				h = append(h, udh[1:]...)
			}
			h = append(h, ie[:len(ie)-2]...)
			h = append(h, total, seq)
		}
		frames[i] = octetFrame(p, dataCoding, h, tlvs)
	}
	return frames, nil
}

// octetFrame is one deliver_sm's frame: udh (nil: none) before data.
func octetFrame(data []byte, dataCoding byte, udh []byte, tlvs map[uint16][]byte) Frame {
	f := Frame{DataCoding: dataCoding, TLVs: tlvs}
	f.ShortMessage = append(append(make([]byte, 0, len(udh)+len(data)), udh...), data...)
	if len(udh) > 0 {
		f.ESMClass = ESMClassUDHI
	}
	return f
}

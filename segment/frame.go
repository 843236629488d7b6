package segment

import "fmt"

// SMPP 3.4 §5.3.2 TLV tags used here. Plain constants, so that this package
// does not depend on go-smpp; they equal pdutlv.TagSarMsgRefNum etc.
const (
	TagDestinationPort  uint16 = 0x020B // 2 octets
	TagSARMsgRefNum     uint16 = 0x020C // 2 octets
	TagSARTotalSegments uint16 = 0x020E // 1 octet
	TagSARSegmentSeqnum uint16 = 0x020F // 1 octet
	TagMessagePayload   uint16 = 0x0424 // variable
)

// ESMClassUDHI is the esm_class bit saying short_message starts with a UDH.
const ESMClassUDHI byte = 0x40

// maxUserData is the octets of TP-User-Data in one SMS on the air.
const maxUserData = 140

// Frame is the message part of one submit_sm: esm_class, data_coding,
// short_message and TLVs. The caller ORs its own esm_class bits (messaging
// mode) into ESMClass and sets every other field of the PDU. TLVs values are
// the exact octets to send (go-smpp: pass them as []byte, never as ints).
type Frame struct {
	ESMClass     byte
	DataCoding   byte
	ShortMessage []byte
	TLVs         map[uint16][]byte
}

// BuildFrames frames stored Plan parts for submit_sm, applying the
// reference number chosen by the store. The same inputs always give the
// same frames.
//
//   - One part, any mode but ConcatPayload: one frame, no UDH, no SAR.
//   - ConcatUDH8 / ConcatUDH16: esm_class 0x40 and a UDH per frame; 8-bit
//     mode uses byte(ref).
//   - ConcatSAR: the three sar_* TLVs per frame, the full 16-bit ref.
//   - ConcatPayload: one frame, empty short_message, message_payload holding
//     all parts joined (normally there is one).
//
// For data_coding 0x00 the parts are unpacked septets; with GSMPacked they
// are packed here, with the fill bits their UDH requires, and for an SMSC
// whose default alphabet is not GSM (Options.Alphabet) written in it.
func BuildFrames(dataCoding byte, parts [][]byte, ref uint16, opt Options) ([]Frame, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no parts", ErrBadOptions)
	}
	if len(parts) > maxSegments {
		return nil, fmt.Errorf("%w: %d parts, limit %d", ErrBadOptions, len(parts), maxSegments)
	}
	if opt.Concat > ConcatPayload {
		return nil, fmt.Errorf("%w: concat mode %d", ErrBadOptions, opt.Concat)
	}
	packed := opt.GSMPacked && dataCoding == DataCodingGSM7 && opt.Alphabet == AlphabetGSM
	alpha := dataCoding == DataCodingGSM7 && opt.Alphabet != AlphabetGSM
	body := func(dst, part []byte, udhLen int) []byte {
		switch {
		case packed:
			return packSeptets(dst, part, packFill(udhLen))
		case alpha:
			// The SMSC's own default alphabet, one octet a character; it
			// converts to GSM for the air, so the part still fits.
			return opt.Alphabet.fromSeptets(dst, part)
		}
		return append(dst, part...)
	}

	if opt.Concat == ConcatPayload {
		var all []byte
		for _, p := range parts {
			all = append(all, p...)
		}
		return []Frame{{
			DataCoding:   dataCoding,
			ShortMessage: []byte{},
			TLVs:         map[uint16][]byte{TagMessagePayload: body(nil, all, 0)},
		}}, nil
	}
	if len(parts) == 1 {
		if err := checkFits(dataCoding, 0, parts[0], 1); err != nil {
			return nil, err
		}
		return []Frame{{DataCoding: dataCoding, ShortMessage: body(nil, parts[0], 0)}}, nil
	}

	total := byte(len(parts))
	frames := make([]Frame, len(parts))
	for i, p := range parts {
		seq := byte(i + 1)
		udhLen := 0
		if opt.Concat == ConcatUDH8 {
			udhLen = 6
		} else if opt.Concat == ConcatUDH16 {
			udhLen = 7
		}
		if err := checkFits(dataCoding, udhLen, p, i+1); err != nil {
			return nil, err
		}
		f := Frame{DataCoding: dataCoding}
		switch opt.Concat {
		case ConcatUDH8:
			f.ESMClass = ESMClassUDHI
			udh := []byte{0x05, 0x00, 0x03, byte(ref), total, seq}
			f.ShortMessage = body(udh, p, len(udh))
		case ConcatUDH16:
			f.ESMClass = ESMClassUDHI
			udh := []byte{0x06, 0x08, 0x04, byte(ref >> 8), byte(ref), total, seq}
			f.ShortMessage = body(udh, p, len(udh))
		case ConcatSAR:
			f.ShortMessage = body(nil, p, 0)
			f.TLVs = map[uint16][]byte{
				TagSARMsgRefNum:     {byte(ref >> 8), byte(ref)},
				TagSARTotalSegments: {total},
				TagSARSegmentSeqnum: {seq},
			}
		}
		frames[i] = f
	}
	return frames, nil
}

// checkFits refuses a part that would not fit one SMS with its UDH: GSM
// counted in septets as the SMSC packs them (fill bits included), other
// codings in octets. Parts from Encode always fit when BuildFrames gets
// the same Options; stored parts framed with other options might not.
func checkFits(dataCoding byte, udhLen int, part []byte, seq int) error {
	bits := 8 * (udhLen + len(part))
	if dataCoding == DataCodingGSM7 {
		bits = 8*udhLen + packFill(udhLen) + 7*len(part)
	}
	if bits > 8*maxUserData {
		return fmt.Errorf("%w: part %d needs %d bits of user data, an SMS holds %d", ErrBadOptions, seq, bits, 8*maxUserData)
	}
	return nil
}

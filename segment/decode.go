package segment

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/text/encoding/charmap"
)

// UDHInfo is what a user data header (or the SAR TLVs) says about a part.
type UDHInfo struct {
	Len int // octets of the UDH, UDHL octet included; 0 when from SAR TLVs

	Concat bool   // concatenation IE 0x00 / 0x08 present, or SAR TLVs
	Ref    uint16 // concatenation reference
	Ref16  bool   // the reference is 16-bit (IEI 0x08 or SAR)
	Total  uint8  // number of parts, ≥ 1
	Seq    uint8  // this part, 1..Total

	Ports    bool   // application port addressing IE 0x04 or 0x05 present
	DestPort uint16 // destination port
	SrcPort  uint16 // originator port
}

// ParseUDH parses the UDH at the start of b (the user data of a part with
// esm_class UDHI set) and returns the rest of b after it. It never panics.
// Per TS 23.040 §9.2.3.24 unknown IEs are skipped and, when an IE repeats,
// the last one counts. Impossible concatenation values (total 0, seq 0,
// seq > total) are errors rather than ignored, so the ESME learns of them.
func ParseUDH(b []byte) (UDHInfo, []byte, error) {
	var u UDHInfo
	if len(b) == 0 {
		return u, nil, fmt.Errorf("%w: no UDHL octet", ErrBadUDH)
	}
	udhl := int(b[0])
	if udhl+1 > len(b) {
		return u, nil, fmt.Errorf("%w: UDHL %d exceeds %d octets of user data", ErrBadUDH, udhl, len(b)-1)
	}
	u.Len = udhl + 1
	ies := b[1:u.Len]
	for len(ies) > 0 {
		if len(ies) < 2 {
			return u, nil, fmt.Errorf("%w: truncated IE header", ErrBadUDH)
		}
		iei, iel := ies[0], int(ies[1])
		if 2+iel > len(ies) {
			return u, nil, fmt.Errorf("%w: IE 0x%02x length %d exceeds header", ErrBadUDH, iei, iel)
		}
		d := ies[2 : 2+iel]
		ies = ies[2+iel:]
		want := -1
		switch iei {
		case 0x00: // concatenated SMS, 8-bit reference
			if want = 3; iel == want {
				u.Concat, u.Ref16 = true, false
				u.Ref, u.Total, u.Seq = uint16(d[0]), d[1], d[2]
			}
		case 0x08: // concatenated SMS, 16-bit reference
			if want = 4; iel == want {
				u.Concat, u.Ref16 = true, true
				u.Ref, u.Total, u.Seq = uint16(d[0])<<8|uint16(d[1]), d[2], d[3]
			}
		case 0x04: // application port addressing, 8-bit
			if want = 2; iel == want {
				u.Ports = true
				u.DestPort, u.SrcPort = uint16(d[0]), uint16(d[1])
			}
		case 0x05: // application port addressing, 16-bit
			if want = 4; iel == want {
				u.Ports = true
				u.DestPort, u.SrcPort = uint16(d[0])<<8|uint16(d[1]), uint16(d[2])<<8|uint16(d[3])
			}
		}
		if want >= 0 && iel != want {
			return u, nil, fmt.Errorf("%w: IE 0x%02x has length %d, want %d", ErrBadUDH, iei, iel, want)
		}
	}
	if u.Concat && (u.Total == 0 || u.Seq == 0 || u.Seq > u.Total) {
		return u, nil, fmt.Errorf("%w: concatenation part %d of %d", ErrBadUDH, u.Seq, u.Total)
	}
	return u, b[u.Len:], nil
}

// withoutConcat is udh (a whole UDH, UDHL first, that ParseUDH read)
// without its concatenation IEs (0x00, 0x08), in a new slice; nil when
// no other IE is left.
func withoutConcat(udh []byte) []byte {
	if len(udh) == 0 {
		return nil
	}
	out := []byte{0}
	for ies := udh[1:]; len(ies) >= 2 && 2+int(ies[1]) <= len(ies); {
		n := 2 + int(ies[1])
		if ies[0] != 0x00 && ies[0] != 0x08 {
			out = append(out, ies[:n]...)
		}
		ies = ies[n:]
	}
	if len(out) == 1 {
		return nil
	}
	out[0] = byte(len(out) - 1)
	return out
}

// ParseSAR reads the values of the sar_msg_ref_num (2 octets),
// sar_total_segments (1) and sar_segment_seqnum (1) TLVs into the same
// shape as a UDH concatenation IE. All three must be present.
func ParseSAR(ref, total, seq []byte) (UDHInfo, error) {
	if len(ref) != 2 || len(total) != 1 || len(seq) != 1 {
		return UDHInfo{}, fmt.Errorf("%w: lengths %d/%d/%d, want 2/1/1", ErrBadSAR, len(ref), len(total), len(seq))
	}
	u := UDHInfo{Concat: true, Ref16: true, Ref: uint16(ref[0])<<8 | uint16(ref[1]), Total: total[0], Seq: seq[0]}
	if u.Total == 0 || u.Seq == 0 || u.Seq > u.Total {
		return UDHInfo{}, fmt.Errorf("%w: part %d of %d", ErrBadSAR, u.Seq, u.Total)
	}
	return u, nil
}

// wapPort reports the ports of WAP push and the WAP connectionless and
// session services (WAP-259 WDP): content for them is binary.
func wapPort(p uint16) bool {
	return p == 2948 || p == 2949 || (p >= 9200 && p <= 9203)
}

// codingOf interprets data_coding: SMPP 3.4 §5.2.19 for 0x00–0x0F, and
// for the values SMPP leaves reserved the TS 23.038 §4 coding groups that
// SMSCs pass through (e.g. 0x18, a flash UCS-2 message).
func codingOf(dc byte) (Coding, error) {
	switch {
	case dc == 0x00:
		return GSM7, nil
	case dc == 0x01:
		return IA5, nil
	case dc == 0x02 || dc == 0x04:
		return 0, fmt.Errorf("%w: data_coding 0x%02x (octet unspecified)", ErrBinary, dc)
	case dc == 0x03:
		return Latin1, nil
	case dc == 0x08:
		return UCS2, nil
	case dc < 0x10:
		// 0x05 JIS, 0x06 Cyrillic, 0x07 Hebrew, 0x09 pictogram, 0x0A ISO-2022-JP,
		// 0x0D extended kanji, 0x0E KS C 5601, others reserved.
		return 0, fmt.Errorf("%w: 0x%02x", ErrUnsupportedCoding, dc)
	case dc < 0x80: // TS 23.038 general data coding groups 00xx and 01xx
		if dc&0x20 != 0 {
			return 0, fmt.Errorf("%w: 0x%02x (compressed)", ErrUnsupportedCoding, dc)
		}
		switch dc >> 2 & 0x03 {
		case 0:
			return GSM7, nil
		case 1:
			return 0, fmt.Errorf("%w: data_coding 0x%02x (8-bit data)", ErrBinary, dc)
		case 2:
			return UCS2, nil
		}
		return 0, fmt.Errorf("%w: 0x%02x (reserved alphabet)", ErrUnsupportedCoding, dc)
	case dc >= 0xF0 && dc <= 0xF7: // data coding / message class group
		if dc&0x04 != 0 {
			return 0, fmt.Errorf("%w: data_coding 0x%02x (8-bit data, message class %d)", ErrBinary, dc, dc&0x03)
		}
		return GSM7, nil
	}
	// 0x80–0xBF reserved; 0xC0–0xEF message waiting indication, which we
	// cannot relay as such; 0xF8–0xFF reserved.
	return 0, fmt.Errorf("%w: 0x%02x", ErrUnsupportedCoding, dc)
}

// Incoming is the message content of a submit_sm (or data_sm, deliver_sm)
// as received. TLV fields are nil when the TLV is absent.
type Incoming struct {
	DataCoding   byte
	ESMClass     byte
	ShortMessage []byte
	Payload      []byte // message_payload
	SARRef       []byte // sar_msg_ref_num
	SARTotal     []byte // sar_total_segments
	SARSeq       []byte // sar_segment_seqnum
	DestPort     []byte // destination_port
	// KeepOctets: content that is not text (ErrBinary,
	// ErrUnsupportedCoding, octets the coding forbids) or is addressed
	// to an application port (any, in the UDH or destination_port) is
	// returned as a Fragment of Coding Octets, not refused. Replies take it: the
	// enterprise gets what the handset sent (SIM applications, binary
	// smart messages), never an empty text.
	KeepOctets bool
}

// Fragment is one received part in a form that can be joined to the other
// parts before decoding: a surrogate pair or an escape pair split across
// parts by the sender (go-smpp's SubmitLongMsg does this) is whole again
// once the Data of consecutive parts are joined.
type Fragment struct {
	Coding Coding
	// Data is unpacked septets for GSM7 (one per octet, padding CR
	// removed), UTF-16BE for UCS2 (possibly odd inside a concatenation),
	// octets for IA5 and Latin1.
	Data []byte
	// Info is the UDH content or the SAR values; nil when there was
	// neither. Info.Concat says whether this is one part of several.
	Info *UDHInfo
	// UDH is, for Octets only, the part's UDH (its UDHL octet first)
	// without the concatenation IEs: what the octets need to be read
	// (application ports and the like); nil when nothing else was there.
	UDH []byte
}

// ParseIncoming checks and unpacks one received message part. packedGSM
// says whether data_coding 0x00 arrives packed (per-ESME option).
// Binary codings and WAP push ports fail with ErrBinary; a UDH
// concatenation IE takes precedence over SAR TLVs.
func ParseIncoming(in Incoming, packedGSM bool) (Fragment, error) {
	var f Fragment
	c, err := codingOf(in.DataCoding)
	switch {
	case err != nil && in.KeepOctets && (errors.Is(err, ErrBinary) || errors.Is(err, ErrUnsupportedCoding)):
		c = Octets
	case err != nil:
		return f, err
	}
	f.Coding = c
	// An application port (a TLV here, a UDH IE below) says the content
	// is for an application on the handset, not a person: WAP push is
	// refused from an ESME; a reply to any port is kept as octets, for
	// the enterprise's application reads them, not qxtd.
	if len(in.DestPort) == 2 {
		if !in.KeepOctets && wapPort(uint16(in.DestPort[0])<<8|uint16(in.DestPort[1])) {
			return f, fmt.Errorf("%w: destination_port TLV is a WAP port", ErrBinary)
		}
		if in.KeepOctets {
			c, f.Coding = Octets, Octets
		}
	}
	body := in.ShortMessage
	switch {
	case len(in.ShortMessage) > 0 && len(in.Payload) > 0:
		return f, fmt.Errorf("%w: both short_message and message_payload are set", ErrMalformed)
	case len(in.ShortMessage) == 0 && len(in.Payload) == 0:
		return f, ErrEmpty
	case len(in.ShortMessage) == 0:
		body = in.Payload
	}
	udhLen := 0
	if in.ESMClass&ESMClassUDHI != 0 {
		u, rest, err := ParseUDH(body)
		if err != nil {
			return f, err
		}
		if u.Ports && !in.KeepOctets && wapPort(u.DestPort) {
			return f, fmt.Errorf("%w: UDH destination port %d", ErrBinary, u.DestPort)
		}
		if u.Ports && in.KeepOctets {
			c, f.Coding = Octets, Octets
		}
		f.Info, f.UDH, body, udhLen = &u, body[:u.Len], rest, u.Len
	}
	if in.SARRef != nil || in.SARTotal != nil || in.SARSeq != nil {
		s, err := ParseSAR(in.SARRef, in.SARTotal, in.SARSeq)
		if err != nil {
			return f, err
		}
		if f.Info == nil {
			f.Info = &s
		} else if !f.Info.Concat {
			f.Info.Concat, f.Info.Ref16 = true, true
			f.Info.Ref, f.Info.Total, f.Info.Seq = s.Ref, s.Total, s.Seq
		}
	}
	switch c {
	case GSM7:
		if packedGSM {
			f.Data = unpackSeptets(body, packFill(udhLen))
			break
		}
		if err := check7bit(body, "unpacked GSM"); err != nil && !in.KeepOctets {
			return f, err
		} else if err != nil {
			f.Coding = Octets
		}
		f.Data = bytes.Clone(body)
	case IA5:
		if err := check7bit(body, "IA5"); err != nil && !in.KeepOctets {
			return f, err
		} else if err != nil {
			f.Coding = Octets
		}
		f.Data = bytes.Clone(body)
	default:
		f.Data = bytes.Clone(body)
	}
	if f.Coding == Octets {
		f.UDH = withoutConcat(f.UDH)
	} else {
		f.UDH = nil
	}
	if f.Data == nil {
		f.Data = []byte{}
	}
	return f, nil
}

// gsmUnderIA5 reports whether a data_coding 0x01 text is the GSM 7-bit
// default alphabet, one septet per octet, rather than the IA5 (ASCII) that
// SMPP 3.4 §5.2.19 names. Several ESME libraries send GSM under 0x01
// (node-smpp's "ASCII" is GSM 03.38: its users' '@' arrives as 0x00, '$'
// as 0x02, '_' as 0x11, and '{', '€' and the rest of the extension table
// behind the escape 0x1B). Read as IA5 those are control characters, which
// a text has no use for and a handset cannot show: a text holding any octet
// of 0x00–0x1F but TAB, LF and CR, or 0x7F, is read as GSM instead. Any
// other text is read as IA5; letters, digits, space, LF, CR and most
// punctuation are the same octets in both.
func gsmUnderIA5(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F {
			return true
		}
	}
	return false
}

func check7bit(b []byte, what string) error {
	for i, c := range b {
		if c > 0x7F {
			return fmt.Errorf("%w: octet 0x%02x at %d in %s text", ErrMalformed, c, i, what)
		}
	}
	return nil
}

// Text decodes the fragment alone.
func (f Fragment) Text() (string, error) {
	return decodeData(f.Coding, f.Data)
}

func decodeData(c Coding, data []byte) (string, error) {
	switch c {
	case GSM7:
		return gsmDecode(data), nil
	case IA5:
		if gsmUnderIA5(data) {
			return gsmDecode(data), nil
		}
		return string(data), nil
	case Latin1:
		s, err := charmap.ISO8859_1.NewDecoder().Bytes(data)
		return string(s), err
	case UCS2:
		if len(data)%2 != 0 {
			return "", fmt.Errorf("%w: odd UCS-2 length %d", ErrMalformed, len(data))
		}
		// Lone surrogates become U+FFFD; a BOM is kept as a character.
		s, err := utf16BE.NewDecoder().Bytes(data)
		return string(s), err
	case Octets:
		return "", fmt.Errorf("%w: kept as octets", ErrBinary)
	}
	return "", fmt.Errorf("%w: coding %v", ErrUnsupportedCoding, c)
}

// JoinText decodes the parts of one message, given in sequence order,
// joining the Data of neighbours that share a coding before decoding, so
// that a character a sender split across parts (a UTF-16 surrogate pair,
// a GSM escape and its character, even one UTF-16 unit's two octets) is
// whole again. The gateway stores ESME-split parts on disk and calls it
// once every part has arrived.
func JoinText(frags []*Fragment) (string, error) {
	var out strings.Builder
	for i := 0; i < len(frags); {
		j := i + 1
		for j < len(frags) && frags[j].Coding == frags[i].Coding {
			j++
		}
		data := frags[i].Data
		if j > i+1 {
			data = nil
			for _, f := range frags[i:j] {
				data = append(data, f.Data...)
			}
		}
		s, err := decodeData(frags[i].Coding, data)
		if err != nil {
			return "", err
		}
		out.WriteString(s)
		i = j
	}
	return out.String(), nil
}

// DecodeIncoming decodes one received part on its own; udh is nil when
// there was no UDH. For a part of a concatenated message, collect the
// Fragments from ParseIncoming and decode them together with JoinText.
func DecodeIncoming(dataCoding, esmClass byte, shortMessage, payload []byte, packedGSM bool) (text string, udh *UDHInfo, err error) {
	f, err := ParseIncoming(Incoming{
		DataCoding: dataCoding, ESMClass: esmClass, ShortMessage: shortMessage, Payload: payload,
	}, packedGSM)
	if err != nil {
		return "", nil, err
	}
	text, err = f.Text()
	if err != nil {
		return "", nil, err
	}
	return text, f.Info, nil
}

// Reassemble decodes frames the way a handset would: it parses each
// frame's UDH or SAR TLVs, orders by sequence number, unpacks and decodes
// GSM (packed per opt.GSMPacked) or UCS-2, and joins. It shares no code
// with the encoder beyond the character tables, so tests use it to check
// BuildFrames, and the gateway's end-to-end test to read what the SMSC
// simulator received. Only opt.GSMPacked is used.
func Reassemble(frames []Frame, opt Options) (string, error) {
	if len(frames) == 0 {
		return "", ErrEmpty
	}
	frags := make([]*Fragment, len(frames))
	for i, fr := range frames {
		in := Incoming{
			DataCoding: fr.DataCoding, ESMClass: fr.ESMClass, ShortMessage: fr.ShortMessage,
			Payload: fr.TLVs[TagMessagePayload], SARRef: fr.TLVs[TagSARMsgRefNum],
			SARTotal: fr.TLVs[TagSARTotalSegments], SARSeq: fr.TLVs[TagSARSegmentSeqnum],
		}
		f, err := ParseIncoming(in, opt.GSMPacked)
		if err != nil {
			return "", fmt.Errorf("frame %d: %w", i, err)
		}
		frags[i] = &f
	}
	if len(frames) == 1 && (frags[0].Info == nil || !frags[0].Info.Concat) {
		return frags[0].Text()
	}
	first := frags[0].Info
	for i, f := range frags {
		switch {
		case f.Info == nil || !f.Info.Concat:
			return "", fmt.Errorf("%w: frame %d of %d has no concatenation info", ErrBadConcat, i, len(frames))
		case f.Info.Ref != first.Ref || f.Info.Total != first.Total:
			return "", fmt.Errorf("%w: frame %d has ref %d total %d, frame 0 ref %d total %d",
				ErrBadConcat, i, f.Info.Ref, f.Info.Total, first.Ref, first.Total)
		}
	}
	if int(first.Total) != len(frames) {
		return "", fmt.Errorf("%w: %d frames for a total of %d", ErrBadConcat, len(frames), first.Total)
	}
	sort.SliceStable(frags, func(a, b int) bool { return frags[a].Info.Seq < frags[b].Info.Seq })
	for i, f := range frags {
		if int(f.Info.Seq) != i+1 {
			return "", fmt.Errorf("%w: sequence number %d missing or repeated", ErrBadConcat, i+1)
		}
	}
	return JoinText(frags)
}

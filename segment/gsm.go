package segment

import "strings"

// The GSM 7-bit default alphabet and its extension table, 3GPP TS 23.038
// §6.2.1 and §6.2.1.1. Written out here rather than taken from go-smpp: its
// pdutext encoders return the input unchanged on error, and we need to know
// per character whether (and in how many septets) it is representable.

const (
	gsmEscape = 0x1B // prefix of an extension-table character (2 septets)
	gsmCR     = 0x0D // carriage return; padding septet in packed mode
)

// gsmBasic maps a septet to its character. 0x1B is the escape, never a
// character of its own.
var gsmBasic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', -1, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsmExtension lists the extension table: the septet after the escape and
// its character. Other codes after an escape are undefined (see gsmDecode).
var gsmExtension = [...]struct {
	code byte
	r    rune
}{
	{0x0A, '\f'}, {0x14, '^'}, {0x28, '{'}, {0x29, '}'}, {0x2F, '\\'},
	{0x3C, '['}, {0x3D, '~'}, {0x3E, ']'}, {0x40, '|'}, {0x65, '€'},
}

// Encoding lookups, built once from the tables above so there is a single
// source of truth. A value v in gsmLatin is 0 for "not representable",
// 1+code for a basic character, gsmExtFlag|code for an escaped one.
const gsmExtFlag = 0x100

var (
	gsmLatin [256]uint16     // characters U+0000–U+00FF
	gsmOther map[rune]uint16 // Greek capitals and the euro sign
	gsmExt   [128]rune       // septet after escape → character, 0 if undefined
)

func init() {
	gsmOther = make(map[rune]uint16)
	set := func(r rune, v uint16) {
		if r < 256 {
			gsmLatin[r] = v
		} else {
			gsmOther[r] = v
		}
	}
	for code, r := range gsmBasic {
		if r >= 0 {
			set(r, uint16(1+code))
		}
	}
	for _, e := range gsmExtension {
		set(e.r, gsmExtFlag|uint16(e.code))
		gsmExt[e.code] = e.r
	}
}

// gsmLookup reports how r is written in GSM 7-bit: its septet code, whether
// it needs the escape prefix, and whether it is representable at all.
func gsmLookup(r rune) (code byte, escaped, ok bool) {
	var v uint16
	if r >= 0 && r < 256 {
		v = gsmLatin[r]
	} else {
		v = gsmOther[r]
	}
	switch {
	case v == 0:
		return 0, false, false
	case v&gsmExtFlag != 0:
		return byte(v), true, true
	default:
		return byte(v - 1), false, true
	}
}

// gsmSeptets appends the unpacked septets of s (known representable) to dst.
func gsmSeptets(dst []byte, s string) []byte {
	for _, r := range s {
		code, esc, _ := gsmLookup(r)
		if esc {
			dst = append(dst, gsmEscape)
		}
		dst = append(dst, code)
	}
	return dst
}

// gsmDecode turns unpacked septets into text. Per TS 23.038 §6.2.1.1 an
// escape followed by a code the extension table does not define shows the
// basic-table character of that code; escape-escape (reserved for a second
// extension table) shows a space; a lone escape at the end shows nothing.
// Values above 0x7F are masked: callers validate before when it matters.
func gsmDecode(septets []byte) string {
	var b strings.Builder
	b.Grow(len(septets))
	for i := 0; i < len(septets); i++ {
		c := septets[i] & 0x7F
		if c != gsmEscape {
			b.WriteRune(gsmBasic[c])
			continue
		}
		if i+1 == len(septets) {
			break
		}
		i++
		e := septets[i] & 0x7F
		switch {
		case e == gsmEscape:
			b.WriteByte(' ')
		case gsmExt[e] != 0:
			b.WriteRune(gsmExt[e])
		default:
			b.WriteRune(gsmBasic[e])
		}
	}
	return b.String()
}

// packFill returns the number of fill bits that follow a UDH of udhLen
// octets (UDHL octet included) so that the first septet of text starts on a
// septet boundary of the whole user data (TS 23.040 §9.2.3.24).
func packFill(udhLen int) int {
	return (7 - udhLen*8%7) % 7
}

// packSeptets appends septets to dst packed LSB first (TS 23.038 §6.1.2.1.1),
// after fill zero bits. When the last octet would end with 7 spare bits a
// receiver counting septets from octets would see one septet too many ('@'
// from zero bits); TS 23.038 §6.1.2.3.1 says to pad with CR instead, which
// receivers then drop (see unpackSeptets).
func packSeptets(dst []byte, septets []byte, fill int) []byte {
	n := len(septets)
	if (fill+7*n)%8 == 1 { // 7 spare bits
		n++
	}
	start := len(dst)
	octets := (fill + 7*n + 7) / 8
	for range octets {
		dst = append(dst, 0)
	}
	out := dst[start:]
	bit := fill
	for i := range n {
		s := byte(gsmCR)
		if i < len(septets) {
			s = septets[i] & 0x7F
		}
		idx, off := bit/8, bit%8
		out[idx] |= s << off
		if off > 1 {
			out[idx+1] |= s >> (8 - off)
		}
		bit += 7
	}
	return dst
}

// unpackSeptets is the inverse of packSeptets: it reads every whole septet
// after fill bits and drops a final CR that exactly fills the last octet,
// which by TS 23.038 §6.1.2.3.1 is padding. (A real CR in that position is
// indistinguishable — SMPP carries octet counts, not septet counts — so the
// encoder never puts one there except at the very end of a message; see
// doc.go, "Packed GSM".)
func unpackSeptets(b []byte, fill int) []byte {
	nbits := 8*len(b) - fill
	if nbits < 7 {
		return nil
	}
	m := nbits / 7
	out := make([]byte, m)
	for i := range m {
		bit := fill + 7*i
		idx, off := bit/8, bit%8
		v := b[idx] >> off
		if off > 1 {
			v |= b[idx+1] << (8 - off)
		}
		out[i] = v & 0x7F
	}
	if nbits%7 == 0 && out[m-1] == gsmCR {
		out = out[:m-1]
	}
	return out
}

// TextBody is text as the body of one deliver_sm, the way SMSCs deliver a
// handset's message: the GSM 7-bit default alphabet, one septet per octet
// (data_coding 0x00, the SMSC default alphabet), when every character has
// a GSM code (the basic table, or the extension table behind the escape),
// else UCS-2 (0x08). ASCII is not GSM: '@', '$', '_', the brackets and
// braces, '\', '^', '~' and '|' have other codes (GSM has no '`'), and a
// receiver reading data_coding 0x00 as GSM (as qxtd reads it) would show
// '¡' for an ASCII '@'. Octets that are not UTF-8 go as U+FFFD in UCS-2.
func TextBody(text string) (dataCoding byte, body []byte) {
	for _, r := range text {
		if _, _, ok := gsmLookup(r); !ok {
			return 0x08, appendUTF16BE(make([]byte, 0, 2*len(text)), text)
		}
	}
	return 0x00, gsmSeptets(make([]byte, 0, len(text)), text)
}

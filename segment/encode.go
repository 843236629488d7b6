package segment

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding/unicode"
)

// Coding is the character encoding of a message body.
type Coding uint8

const (
	GSM7   Coding = iota // GSM 03.38 default alphabet with extension table (data_coding 0x00)
	UCS2                 // UTF-16BE, surrogate pairs allowed (data_coding 0x08)
	IA5                  // IA5 / ASCII, one character per octet (data_coding 0x01); incoming only
	Latin1               // ISO-8859-1 (data_coding 0x03); incoming only
	// Octets: content not read as text, kept as received (incoming
	// only, with Incoming.KeepOctets): a binary data_coding, a WAP
	// port, a coding qxtd cannot read, or octets its coding forbids.
	Octets
)

func (c Coding) String() string {
	switch c {
	case GSM7:
		return "gsm7"
	case UCS2:
		return "ucs2"
	case IA5:
		return "ia5"
	case Latin1:
		return "latin1"
	case Octets:
		return "octets"
	}
	return fmt.Sprintf("coding(%d)", uint8(c))
}

// data_coding values we send (SMPP 3.4 §5.2.19).
const (
	DataCodingGSM7 byte = 0x00 // SMSC default alphabet, which we take to be GSM 03.38
	DataCodingUCS2 byte = 0x08
)

// Concat selects how a long message is joined on the handset; it is
// per-upstream configuration because SMSCs differ in what they accept.
type Concat uint8

const (
	// ConcatUDH8: user data header, IEI 0x00, 8-bit reference:
	// 05 00 03 ref total seq (TS 23.040 §9.2.3.24.1).
	ConcatUDH8 Concat = iota
	// ConcatUDH16: user data header, IEI 0x08, 16-bit reference:
	// 06 08 04 refHi refLo total seq (TS 23.040 §9.2.3.24.8).
	ConcatUDH16
	// ConcatSAR: sar_msg_ref_num / sar_total_segments / sar_segment_seqnum
	// TLVs (SMPP 3.4 §5.3.2.22–24); the SMSC builds the header.
	ConcatSAR
	// ConcatPayload: the whole text, unsplit, in one message_payload TLV
	// (SMPP 3.4 §5.3.2.32); the SMSC splits it.
	ConcatPayload
)

var concatNames = [...]string{"udh8", "udh16", "sar", "payload"}

func (c Concat) String() string {
	if int(c) < len(concatNames) {
		return concatNames[c]
	}
	return fmt.Sprintf("concat(%d)", uint8(c))
}

// ParseConcat is the inverse of Concat.String, for configuration files.
func ParseConcat(s string) (Concat, error) {
	for i, n := range concatNames {
		if strings.EqualFold(s, n) {
			return Concat(i), nil
		}
	}
	return 0, fmt.Errorf("%w: concat mode %q (want udh8, udh16, sar or payload)", ErrBadOptions, s)
}

// Options are the per-upstream encoding choices.
type Options struct {
	Concat    Concat
	GSMPacked bool // pack GSM septets into octets; default one septet per octet
	// Alphabet is the SMSC's data_coding 0x00 (alphabet.go); GSMPacked
	// applies to AlphabetGSM only.
	Alphabet Alphabet
	MaxChars int // limit in Unicode code points, signature included; 0 → DefaultMaxChars
}

// DefaultMaxChars is the operator's limit for one long message: 500 characters, signatures included.
const DefaultMaxChars = 500

// Segment capacities, in septets (GSM) or UTF-16 code units (UCS-2): one
// segment carries 140 octets of user data, minus the UDH when there is one.
const (
	gsmSingle   = 160 // 140*8/7
	gsmUDH8     = 153 // (140-6)*8/7, 6-octet UDH + 1 fill bit
	gsmUDH16    = 152 // (140-7)*8/7
	ucs2Single  = 70  // 140/2
	ucs2UDH8    = 67  // (140-6)/2
	ucs2UDH16   = 66  // (140-7)/2, rounded down
	maxSegments = 255 // total is one octet in the UDH and in sar_total_segments
)

// Plan is a message encoded and split, ready to be stored. Parts are plain
// bytes so the store can persist them and BuildFrames can rebuild the exact
// same frames later, once the reference number is known.
type Plan struct {
	Coding     Coding
	DataCoding byte // DataCodingGSM7 or DataCodingUCS2
	// Parts are the segment bodies without UDH. GSM parts are always
	// UNPACKED septets (one per octet, an escape as 0x1B xx) even when
	// Options.GSMPacked: packing depends on the UDH length (fill bits), so
	// BuildFrames packs. UCS-2 parts are UTF-16BE. No part ends inside an
	// escape pair or a surrogate pair. With ConcatPayload there is one part.
	Parts [][]byte
	Chars int // Unicode code points, the figure checked against MaxChars
	Units int // septets (escapes count 2) or UTF-16 code units of the whole text

	segments int
}

// Segments is the billing count: the number of segments on the air. With
// ConcatPayload it is the count the SMSC's own split (with an 8-bit
// reference UDH) produces, though Parts holds one part.
func (p *Plan) Segments() int { return p.segments }

// Sign returns the text as it goes on the air: the enterprise signature
// first (Chinese convention, 【某某公司】 at the front), then the text, then the
// optional user signature appended verbatim (include any separator in it).
// Both count toward the length. A signature the text already carries at
// its place is not added a second time, so an ESME that signs its own
// messages is not double-signed.
func Sign(text, enterpriseSig, userSig string) string {
	if enterpriseSig != "" && strings.HasPrefix(text, enterpriseSig) {
		enterpriseSig = ""
	}
	if userSig != "" && strings.HasSuffix(text, userSig) {
		userSig = ""
	}
	return enterpriseSig + text + userSig
}

// textInfo is what one pass over the text tells us.
type textInfo struct {
	chars int  // code points
	gsm   bool // every code point is in the GSM alphabet or extension
	units int  // septets if gsm, else UTF-16 code units
	// simple: every character is one unit and there is no CR, so the split
	// is plain arithmetic (see segmentCount).
	simple bool
}

// inspect validates the text against opt and measures it, without allocating.
func inspect(text string, opt Options) (textInfo, error) {
	var ti textInfo
	if opt.Concat > ConcatPayload {
		return ti, fmt.Errorf("%w: concat mode %d", ErrBadOptions, opt.Concat)
	}
	if opt.MaxChars < 0 {
		return ti, fmt.Errorf("%w: MaxChars %d", ErrBadOptions, opt.MaxChars)
	}
	if text == "" {
		return ti, ErrEmpty
	}
	limit := opt.MaxChars
	if limit == 0 {
		limit = DefaultMaxChars
	}
	ti.gsm = true
	septets, utf16 := 0, 0
	pairs, escapes, crs := false, false, false
	for i, r := range text {
		// range yields U+FFFD for an invalid byte; tell it from a real
		// U+FFFD by its width, saving a separate utf8.ValidString pass.
		if r == utf8.RuneError {
			if _, w := utf8.DecodeRuneInString(text[i:]); w == 1 {
				return ti, ErrNotUTF8
			}
		}
		ti.chars++
		if r >= 0x10000 {
			utf16 += 2
			pairs = true
		} else {
			utf16++
		}
		crs = crs || r == '\r'
		if ti.gsm {
			if _, esc, ok := gsmLookup(r); !ok || !opt.Alphabet.has(r) {
				ti.gsm = false
			} else if esc {
				septets += 2
				escapes = true
			} else {
				septets++
			}
		}
	}
	if ti.chars > limit {
		return ti, &LengthError{Chars: ti.chars, Limit: limit}
	}
	ti.units, ti.simple = utf16, !pairs
	if ti.gsm {
		ti.units, ti.simple = septets, !escapes && !crs
	}
	return ti, nil
}

// splitter describes how one coding and concat mode fill segments.
type splitter struct {
	gsm      bool
	capacity int  // units per segment of a multi-part message
	fill     int  // fill bits before the first septet (packed GSM only)
	packed   bool // avoid a CR that packing would make ambiguous
}

func newSplitter(gsm bool, c Concat, packed bool) splitter {
	s := splitter{gsm: gsm, packed: packed && gsm}
	switch {
	case gsm && c == ConcatUDH16:
		s.capacity = gsmUDH16
	case gsm:
		s.capacity = gsmUDH8
	case c == ConcatUDH16:
		s.capacity = ucs2UDH16
	default:
		s.capacity = ucs2UDH8
	}
	if s.packed && c == ConcatUDH8 {
		s.fill = packFill(6)
	}
	return s
}

// split walks the text (already known to be valid and of the splitter's
// coding) and reports the size in units of each segment to emit, returning
// the number of segments. Greedy, except that a character never straddles
// two segments (an escape pair, a surrogate pair) and, in packed GSM, a
// segment that is not the last never ends with a CR that exactly fills its
// last octet: receivers take such a CR for padding and drop it, so it is
// moved to the next segment.
func (s splitter) split(text string, emit func(units int)) int {
	n, cur := 0, 0
	lastCR := false
	for _, r := range text {
		size := 1
		if s.gsm {
			if _, esc, _ := gsmLookup(r); esc {
				size = 2
			}
		} else if r >= 0x10000 {
			size = 2
		}
		if cur+size > s.capacity {
			carry := 0
			if s.packed && lastCR && (s.fill+7*cur)%8 == 0 {
				carry = 1
			}
			if emit != nil {
				emit(cur - carry)
			}
			n++
			cur = carry
		}
		cur += size
		lastCR = r == '\r'
	}
	if emit != nil {
		emit(cur)
	}
	return n + 1
}

// segmentCount returns the billing count and checks the 255-segment limit.
func segmentCount(text string, ti textInfo, opt Options) (int, error) {
	single := ucs2Single
	if ti.gsm {
		single = gsmSingle
	}
	n := 1
	if ti.units > single {
		packed := opt.GSMPacked && opt.Concat != ConcatPayload
		sp := newSplitter(ti.gsm, opt.Concat, packed)
		if ti.simple {
			// Nothing to keep together and no CR to move: the greedy split
			// is a division. Saves Count a second pass over the text; the
			// tests check it agrees with the walk Encode does.
			n = (ti.units + sp.capacity - 1) / sp.capacity
		} else {
			n = sp.split(text, nil)
		}
	}
	if n > maxSegments {
		return n, &LengthError{Chars: ti.chars, Segments: n, MaxSegments: maxSegments}
	}
	return n, nil
}

// Count returns the billing count (Plan.Segments) of text, without
// allocating: what Encode would produce, for quotas and price checks.
func Count(text string, opt Options) (segments int, err error) {
	ti, err := inspect(text, opt)
	if err != nil {
		return 0, err
	}
	return segmentCount(text, ti, opt)
}

var utf16BE = unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)

// appendUTF16BE appends text in UTF-16BE, a surrogate pair for a code point
// above U+FFFF: the octets of x/text's encoder (utf16BE) for valid UTF-8,
// which inspect has checked, without its transformer and the copies in and
// out of it (four allocations a message, on the path of every text with a
// Chinese signature; FuzzUTF16BE holds the two equal).
func appendUTF16BE(dst []byte, text string) []byte {
	for _, r := range text {
		if r >= 0x10000 {
			hi, lo := utf16.EncodeRune(r)
			dst = append(dst, byte(hi>>8), byte(hi), byte(lo>>8), byte(lo))
			continue
		}
		dst = append(dst, byte(r>>8), byte(r))
	}
	return dst
}

// Encode chooses the coding of text (already signed, see Sign), checks its
// length and splits it into segment bodies. It is deterministic; the
// reference number is applied later by BuildFrames.
func Encode(text string, opt Options) (*Plan, error) {
	ti, err := inspect(text, opt)
	if err != nil {
		return nil, err
	}
	segs, err := segmentCount(text, ti, opt)
	if err != nil {
		return nil, err
	}
	p := &Plan{Chars: ti.chars, Units: ti.units, segments: segs}
	var body []byte
	unit := 1 // octets per unit in body
	if ti.gsm {
		p.Coding, p.DataCoding = GSM7, DataCodingGSM7
		body = gsmSeptets(make([]byte, 0, ti.units), text)
	} else {
		p.Coding, p.DataCoding = UCS2, DataCodingUCS2
		unit = 2
		body = appendUTF16BE(make([]byte, 0, 2*ti.units), text)
	}
	if segs == 1 || opt.Concat == ConcatPayload {
		p.Parts = [][]byte{body}
		return p, nil
	}
	p.Parts = make([][]byte, 0, segs)
	off := 0
	newSplitter(ti.gsm, opt.Concat, opt.GSMPacked).split(text, func(units int) {
		end := off + units*unit
		p.Parts = append(p.Parts, body[off:end:end]) // full slice: parts never share capacity
		off = end
	})
	return p, nil
}

// Measure is what Encode counts of a text: its coding, code points and
// segments.
type Measure struct {
	Coding   Coding
	Chars    int // code points, the figure checked against MaxChars
	Segments int // the billing count, as Plan.Segments
}

// MeasureText counts text as Encode would, and goes on counting a text that
// is too long (more than MaxChars, or more than 255 segments): it then
// returns the whole count with the ErrTooLong error, so that a live
// character counter can show how far over the limit a text is. Other
// errors (empty text, invalid UTF-8, bad options) return a zero Measure.
func MeasureText(text string, opt Options) (Measure, error) {
	limit := opt.MaxChars
	if limit == 0 {
		limit = DefaultMaxChars
	}
	unlimited := opt
	if opt.MaxChars >= 0 {
		unlimited.MaxChars = int(^uint(0) >> 1)
	}
	ti, err := inspect(text, unlimited)
	if err != nil {
		return Measure{}, err
	}
	m := Measure{Coding: UCS2, Chars: ti.chars}
	if ti.gsm {
		m.Coding = GSM7
	}
	m.Segments, err = segmentCount(text, ti, opt)
	if err == nil && ti.chars > limit {
		err = &LengthError{Chars: ti.chars, Limit: limit}
	}
	return m, err
}

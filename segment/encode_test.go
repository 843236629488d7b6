package segment

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	han   = "汉" // one BMP character, one UTF-16 unit
	emoji = "😀" // one code point, a surrogate pair
	sig   = "【某某公司】"
)

func rep(s string, n int) string { return strings.Repeat(s, n) }

func TestCount(t *testing.T) {
	udh8, udh16, sar, payload := Options{Concat: ConcatUDH8}, Options{Concat: ConcatUDH16}, Options{Concat: ConcatSAR}, Options{Concat: ConcatPayload}
	packed8 := Options{Concat: ConcatUDH8, GSMPacked: true}
	packed16 := Options{Concat: ConcatUDH16, GSMPacked: true}
	tests := []struct {
		name string
		text string
		opt  Options
		want int
	}{
		{"70 han", rep(han, 70), udh8, 1},
		{"71 han", rep(han, 71), udh8, 2},
		{"134 han", rep(han, 134), udh8, 2},
		{"135 han", rep(han, 135), udh8, 3},
		{"70 with signature", sig + rep(han, 64), udh8, 1},
		{"71 with signature", sig + rep(han, 65), udh8, 2},
		{"132 han udh16", rep(han, 132), udh16, 2},
		{"133 han udh16", rep(han, 133), udh16, 3},
		{"135 han sar", rep(han, 135), sar, 3},
		{"135 han payload bills as udh8", rep(han, 135), payload, 3},
		{"500 han", rep(han, 500), udh8, 8},
		{"160 gsm", rep("a", 160), udh8, 1},
		{"161 gsm", rep("a", 161), udh8, 2},
		{"306 gsm", rep("a", 306), udh8, 2},
		{"307 gsm", rep("a", 307), udh8, 3},
		{"304 gsm udh16", rep("a", 304), udh16, 2},
		{"305 gsm udh16", rep("a", 305), udh16, 3},
		{"307 gsm payload", rep("a", 307), payload, 3},
		{"500 gsm", rep("a", 500), udh8, 4},
		{"80 euro = 160 septets", rep("€", 80), udh8, 1},
		{"81 euro", rep("€", 81), udh8, 2},
		{"500 euro, 76 per segment", rep("€", 500), udh8, 7},
		// 152 + € would be septets 153 and 154: the € moves, so what
		// would naively fit 306 septets needs three segments.
		{"152 gsm + euro at boundary", rep("a", 152) + "€" + rep("b", 10), udh8, 2},
		{"152 gsm + euro + 151", rep("a", 152) + "€" + rep("b", 151), udh8, 2},
		{"152 gsm + euro + 152", rep("a", 152) + "€" + rep("b", 152), udh8, 3},
		{"151 gsm + euro fits udh16", rep("a", 150) + "€" + rep("b", 152), udh16, 2},
		// An emoji starting at unit 67 would straddle the 67/68 boundary.
		{"emoji at 67", rep(han, 66) + emoji + rep(han, 10), udh8, 2},
		{"emoji at 67 overflows", rep(han, 66) + emoji + rep(han, 66), udh8, 3},
		{"emoji at 66 fits udh8", rep(han, 65) + emoji + rep(han, 67), udh8, 2},
		{"emoji at 66 overflows udh16", rep(han, 65) + emoji + rep(han, 65), udh16, 3},
		{"35 emoji = 70 units", rep(emoji, 35), udh8, 1},
		{"36 emoji", rep(emoji, 36), udh8, 2},
		{"500 emoji, 33 per segment", rep(emoji, 500), udh8, 16},
		// Packed GSM: a CR that would exactly fill a segment's last octet
		// moves to the next segment (see doc.go).
		{"cr at 153 unpacked", rep("a", 152) + "\r" + rep("b", 153), udh8, 2},
		{"cr at 153 packed", rep("a", 152) + "\r" + rep("b", 153), packed8, 3},
		{"cr at 152 packed udh16", rep("a", 151) + "\r" + rep("b", 152), packed16, 3},
		{"cr at 152 packed udh8 harmless", rep("a", 151) + "\r" + rep("b", 154), packed8, 2},
		{"payload ignores packing for billing", rep("a", 152) + "\r" + rep("b", 153), Options{Concat: ConcatPayload, GSMPacked: true}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Count(tt.text, tt.opt)
			if err != nil || got != tt.want {
				t.Fatalf("Count = %d, %v; want %d", got, err, tt.want)
			}
			roundTrip(t, tt.text, tt.opt, 0x1234)
		})
	}
}

func TestCountErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		opt  Options
		want error
	}{
		{"empty", "", Options{}, ErrEmpty},
		{"501 han", rep(han, 501), Options{}, ErrTooLong},
		{"501 gsm", rep("a", 501), Options{}, ErrTooLong},
		{"501 with signature", sig + rep(han, 495), Options{}, ErrTooLong},
		{"501 emoji", rep(emoji, 501), Options{}, ErrTooLong},
		{"custom limit", rep("a", 71), Options{MaxChars: 70}, ErrTooLong},
		{"over 255 segments", rep(han, 67*255+1), Options{MaxChars: 1 << 20}, ErrTooLong},
		{"invalid utf8", "ab\xffc", Options{}, ErrNotUTF8},
		{"lone surrogate in utf8", "a\xed\xa0\x80", Options{}, ErrNotUTF8},
		{"bad concat", "a", Options{Concat: 9}, ErrBadOptions},
		{"negative limit", "a", Options{MaxChars: -1}, ErrBadOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Count(tt.text, tt.opt); !errors.Is(err, tt.want) {
				t.Errorf("Count: %v, want %v", err, tt.want)
			}
			if _, err := Encode(tt.text, tt.opt); !errors.Is(err, tt.want) {
				t.Errorf("Encode: %v, want %v", err, tt.want)
			}
		})
	}
	// The limit is inclusive, and 255 segments are allowed.
	if n, err := Count(rep(han, 67*255), Options{MaxChars: 1 << 20}); n != 255 || err != nil {
		t.Errorf("255 segments: %d, %v", n, err)
	}
	if n, err := Count(sig+rep(han, 494), Options{}); n != 8 || err != nil {
		t.Errorf("500 with signature: %d, %v", n, err)
	}
}

// TestLengthError: a text too long says its counts to errors.As (the
// consoles' Chinese detail), in characters or in segments, and its
// message as before.
func TestLengthError(t *testing.T) {
	for _, tc := range []struct {
		text string
		opt  Options
		want LengthError
		msg  string
	}{
		{rep(han, 501), Options{}, LengthError{Chars: 501, Limit: 500}, "segment: message too long: 501 characters, limit 500"},
		{rep("a", 71), Options{MaxChars: 70}, LengthError{Chars: 71, Limit: 70}, "segment: message too long: 71 characters, limit 70"},
		{rep(han, 67*255+1), Options{MaxChars: 1 << 20}, LengthError{Chars: 67*255 + 1, Segments: 256, MaxSegments: 255}, "segment: message too long: 256 segments, limit 255"},
	} {
		_, err := Encode(tc.text, tc.opt)
		var le *LengthError
		if !errors.As(err, &le) || *le != tc.want || err.Error() != tc.msg {
			t.Errorf("%d characters: %v (%+v), want %+v %q", len([]rune(tc.text)), err, le, tc.want, tc.msg)
		}
		if _, err := MeasureText(tc.text, tc.opt); !errors.As(err, &le) || le.Chars != tc.want.Chars {
			t.Errorf("MeasureText of %d characters: %v", len([]rune(tc.text)), err)
		}
	}
}

func TestChooseCoding(t *testing.T) {
	tests := []struct {
		text  string
		want  Coding
		units int
	}{
		{"hello", GSM7, 5},
		{"@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà", GSM7, 65},
		{"^{}\\[~]|€\f", GSM7, 20},
		{"ç", UCS2, 1},        // only capital Ç is in the table
		{"`", UCS2, 1},        // grave accent is not GSM
		{"\u2126", UCS2, 1},   // OHM SIGN U+2126, not GREEK CAPITAL OMEGA
		{"a\u00a0b", UCS2, 3}, // no-break space
		{"中文", UCS2, 2},
		{"a" + emoji, UCS2, 3},
		{"\x00", UCS2, 1}, // NUL is not '@'
	}
	for _, tt := range tests {
		p, err := Encode(tt.text, Options{})
		if err != nil {
			t.Fatalf("%q: %v", tt.text, err)
		}
		if p.Coding != tt.want || p.Units != tt.units {
			t.Errorf("%q: coding %v units %d, want %v %d", tt.text, p.Coding, p.Units, tt.want, tt.units)
		}
		wantDC := DataCodingGSM7
		if tt.want == UCS2 {
			wantDC = DataCodingUCS2
		}
		if p.DataCoding != wantDC {
			t.Errorf("%q: data_coding 0x%02x", tt.text, p.DataCoding)
		}
		for _, o := range allOptions() {
			roundTrip(t, tt.text, o, 7)
		}
	}
}

func TestGSMTableIsConsistent(t *testing.T) {
	seen := map[rune]bool{}
	for code, r := range gsmBasic {
		if r < 0 {
			continue
		}
		if seen[r] {
			t.Errorf("%q twice in basic table", r)
		}
		seen[r] = true
		c, esc, ok := gsmLookup(r)
		if !ok || esc || int(c) != code {
			t.Errorf("%q: lookup %d %v %v, want %d", r, c, esc, ok, code)
		}
		if got := gsmDecode([]byte{byte(code)}); got != string(r) {
			t.Errorf("decode 0x%02x = %q", code, got)
		}
	}
	for _, e := range gsmExtension {
		c, esc, ok := gsmLookup(e.r)
		if !ok || !esc || c != e.code {
			t.Errorf("%q: lookup %d %v %v", e.r, c, esc, ok)
		}
		if got := gsmDecode([]byte{gsmEscape, e.code}); got != string(e.r) {
			t.Errorf("decode ESC 0x%02x = %q", e.code, got)
		}
	}
	if len(seen)+len(gsmExtension) != 127+10 {
		t.Errorf("%d characters", len(seen)+len(gsmExtension))
	}
	// Undefined escapes fall back to the basic table; ESC ESC is a space.
	if got := gsmDecode([]byte{gsmEscape, 0x41, gsmEscape, gsmEscape, 0x42, gsmEscape}); got != "A B" {
		t.Errorf("fallbacks: %q", got)
	}
}

func TestPacking(t *testing.T) {
	// The classic example: "hellohello" → E8329BFD4697D9EC37.
	sept := gsmSeptets(nil, "hellohello")
	if got := packSeptets(nil, sept, 0); !bytes.Equal(got, []byte{0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37}) {
		t.Errorf("pack hellohello = % X", got)
	}
	// 7 septets leave 7 spare bits: padded with CR (0x0D<<1 = 0x1A in the top bits).
	got := packSeptets(nil, gsmSeptets(nil, "1234567"), 0)
	if want := []byte{0x31, 0xD9, 0x8C, 0x56, 0xB3, 0xDD, 0x1A}; !bytes.Equal(got, want) {
		t.Errorf("pack 1234567 = % X, want % X", got, want)
	}
	if s := gsmDecode(unpackSeptets(got, 0)); s != "1234567" {
		t.Errorf("unpack = %q", s)
	}
	// After a 6-octet UDH, 1 fill bit: the first septet starts at bit 1.
	if got := packSeptets(nil, []byte{0x7F}, 1); !bytes.Equal(got, []byte{0xFE}) {
		t.Errorf("fill 1: % X", got)
	}
	for fill := 0; fill < 7; fill++ {
		for n := 0; n < 20; n++ {
			s := make([]byte, n)
			for i := range s {
				s[i] = byte(i*37+fill) & 0x7F
				if s[i] == gsmCR {
					s[i] = 0
				}
			}
			if got := unpackSeptets(packSeptets(nil, s, fill), fill); !bytes.Equal(got, s) && !(n == 0 && len(got) == 0) {
				t.Errorf("fill %d n %d: % X → % X", fill, n, s, got)
			}
		}
	}
	for udh, want := range map[int]int{6: 1, 7: 0, 5: 2, 12: 2} {
		if got := packFill(udh); got != want {
			t.Errorf("packFill(%d) = %d, want %d", udh, got, want)
		}
	}
}

func TestSign(t *testing.T) {
	tests := []struct{ text, ent, user, want string }{
		{"您好", "【某某公司】", "", "【某某公司】您好"},
		{"您好", "【某某公司】", "—张三", "【某某公司】您好—张三"},
		{"【某某公司】您好", "【某某公司】", "", "【某某公司】您好"},
		{"您好—张三", "", "—张三", "您好—张三"},
		{"您好", "", "", "您好"},
		{"", "【某某公司】", "", "【某某公司】"},
	}
	for _, tt := range tests {
		if got := Sign(tt.text, tt.ent, tt.user); got != tt.want {
			t.Errorf("Sign(%q, %q, %q) = %q, want %q", tt.text, tt.ent, tt.user, got, tt.want)
		}
	}
}

func TestParseConcat(t *testing.T) {
	for c := ConcatUDH8; c <= ConcatPayload; c++ {
		got, err := ParseConcat(c.String())
		if err != nil || got != c {
			t.Errorf("%v: %v %v", c, got, err)
		}
	}
	if _, err := ParseConcat("udh"); !errors.Is(err, ErrBadOptions) {
		t.Errorf("udh: %v", err)
	}
}

func TestPartsAreIndependent(t *testing.T) {
	p, _ := roundTrip(t, rep(han, 200), Options{}, 1)
	// Appending to one part must not overwrite the next (full slice expressions).
	before := bytes.Clone(p.Parts[1])
	_ = append(p.Parts[0], 0xFF, 0xFF)
	if !bytes.Equal(p.Parts[1], before) {
		t.Fatal("parts share capacity")
	}
}

func TestBuildFramesErrors(t *testing.T) {
	if _, err := BuildFrames(0, nil, 1, Options{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("no parts: %v", err)
	}
	if _, err := BuildFrames(0, make([][]byte, 256), 1, Options{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("256 parts: %v", err)
	}
	if _, err := BuildFrames(0, [][]byte{make([]byte, 161)}, 1, Options{}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("oversized part: %v", err)
	}
	// Parts split for UDH8 do not fit UDH16 frames.
	p, err := Encode(rep("a", 400), Options{Concat: ConcatUDH8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildFrames(p.DataCoding, p.Parts, 1, Options{Concat: ConcatUDH16}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("udh8 parts as udh16: %v", err)
	}
	p, err = Encode(rep(han, 400), Options{Concat: ConcatUDH8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BuildFrames(p.DataCoding, p.Parts, 1, Options{Concat: ConcatUDH16}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("ucs2 udh8 parts as udh16: %v", err)
	}
	if _, err := BuildFrames(0, [][]byte{{1}}, 1, Options{Concat: 4}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("bad concat: %v", err)
	}
}

// Rebuilding frames from stored parts gives identical frames.
func TestBuildFramesDeterministic(t *testing.T) {
	text := sig + rep("a€", 120)
	for _, o := range allOptions() {
		p, frames := roundTrip(t, text, o, 0xBEEF)
		stored := make([][]byte, len(p.Parts))
		for i, part := range p.Parts {
			stored[i] = bytes.Clone(part)
		}
		again, err := BuildFrames(p.DataCoding, stored, 0xBEEF, o)
		if err != nil {
			t.Fatal(err)
		}
		if frameHex(again) != frameHex(frames) {
			t.Errorf("%s: frames differ", optName(o))
		}
	}
}

// TestBoundarySweep puts each awkward character at every position around
// the segment boundaries, in every mode, and round-trips the text.
func TestBoundarySweep(t *testing.T) {
	specials := []struct {
		fill, x string
	}{
		{"a", "€"}, {"a", "\r"}, {"a", "\r\r"}, {"a", "€\r"}, {"a", "\r€"}, {"a", "@"},
		{han, emoji}, {han, emoji + emoji}, {"a", emoji},
	}
	for _, s := range specials {
		for _, pos := range []int{60, 64, 65, 66, 67, 68, 69, 70, 71, 130, 131, 132, 133, 134, 135, 136,
			150, 151, 152, 153, 154, 155, 158, 159, 160, 161, 302, 303, 304, 305, 306, 307} {
			for _, tail := range []int{0, 1, 2, 10, 150} {
				text := rep(s.fill, pos-1) + s.x + rep(s.fill, tail)
				if len([]rune(text)) > DefaultMaxChars {
					continue
				}
				for _, o := range allOptions() {
					roundTrip(t, text, o, uint16(pos))
				}
			}
		}
	}
}

// The one documented loss: in packed GSM a final CR that exactly fills the
// last octet is indistinguishable from CR padding, and decoders drop it.
func TestPackedTrailingCR(t *testing.T) {
	opt := Options{GSMPacked: true}
	text := rep("a", 159) + "\r" // 160 septets = 140 octets exactly
	p, frames := roundTrip(t, text, opt, 1)
	got, err := Reassemble(frames, opt)
	if err != nil || got != text[:159] || !lostTrailingCR(p, frames, opt, text, got) {
		t.Fatalf("got %q, %v", got, err)
	}
	// Unpacked, or one septet earlier, nothing is lost.
	for _, tc := range []struct {
		text string
		opt  Options
	}{{text, Options{}}, {rep("a", 158) + "\r", opt}, {rep("a", 150) + "\r", opt}} {
		_, frames := roundTrip(t, tc.text, tc.opt, 1)
		if got, _ := Reassemble(frames, tc.opt); got != tc.text {
			t.Errorf("%q lost its CR", tc.text)
		}
	}
}

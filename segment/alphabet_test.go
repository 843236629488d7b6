package segment

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
)

// An SMSC whose default alphabet is Latin-1 or ASCII gets data_coding
// 0x00 texts written in it, one octet a character, and only texts both
// GSM and its alphabet hold; the rest go in UCS-2. Splitting is in GSM
// septets as for any SMSC (it puts the text on the air as GSM 7-bit).
func TestAlphabets(t *testing.T) {
	latin1 := func(s string) []byte {
		b, err := charmap.ISO8859_1.NewEncoder().Bytes([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		text     string
		alphabet Alphabet
		gsm      bool   // data_coding 0x00, else UCS-2
		want     []byte // short_message of the single frame, when gsm
	}{
		{"latin1: GSM's Latin letters and its extension", "Grüße [x] à {y} ~ \\ ^ | ¿Ñ? @$_", AlphabetLatin1, true, latin1("Grüße [x] à {y} ~ \\ ^ | ¿Ñ? @$_")},
		{"latin1: the euro sign, GSM's and not Latin-1's", "5 €", AlphabetLatin1, false, nil},
		{"latin1: a Greek capital, GSM's and not Latin-1's", "Δ 5", AlphabetLatin1, false, nil},
		{"latin1: é, Latin-1's and GSM's", "café", AlphabetLatin1, true, latin1("café")},
		{"latin1: â, Latin-1's and not GSM's", "pâte", AlphabetLatin1, false, nil},
		{"ascii: plain", "order #42 @ 5$ [ok]", AlphabetASCII, true, []byte("order #42 @ 5$ [ok]")},
		{"ascii: é, GSM's and not ASCII's", "café", AlphabetASCII, false, nil},
		{"gsm: the euro sign", "5 €", AlphabetGSM, true, []byte{'5', ' ', 0x1B, 0x65}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := Options{Concat: ConcatUDH8, Alphabet: tc.alphabet}
			p, err := Encode(tc.text, opt)
			if err != nil {
				t.Fatal(err)
			}
			if gsm := p.DataCoding == DataCodingGSM7; gsm != tc.gsm {
				t.Fatalf("data_coding 0x%02x, want GSM %v", p.DataCoding, tc.gsm)
			}
			frames, err := BuildFrames(p.DataCoding, p.Parts, 7, opt)
			if err != nil {
				t.Fatal(err)
			}
			if tc.gsm && !bytes.Equal(frames[0].ShortMessage, tc.want) {
				t.Fatalf("short_message % x, want % x", frames[0].ShortMessage, tc.want)
			}
			// Read back as the SMSC's alphabet says.
			text, _, err := DecodeIncoming(tc.alphabet.DataCoding(), 0, frames[0].ShortMessage, nil, false)
			if p.DataCoding == DataCodingUCS2 {
				text, _, err = DecodeIncoming(DataCodingUCS2, 0, frames[0].ShortMessage, nil, false)
			}
			if err != nil || text != tc.text {
				t.Fatalf("read back %q (%v), want %q", text, err, tc.text)
			}
		})
	}
}

// A Latin-1 SMSC's parts are split in septets: 160 characters are one
// segment, 161 are two of at most 153, and each part is written in
// Latin-1 behind its UDH; a part stored with a character the alphabet
// lacks (split when the upstream took GSM) goes with '?' for it.
func TestAlphabetSplitAndStored(t *testing.T) {
	opt := Options{Concat: ConcatUDH8, Alphabet: AlphabetLatin1}
	for _, n := range []int{160, 161} {
		text := strings.Repeat("ü", n)
		p, err := Encode(text, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if n > 160 {
			want = 2
		}
		if p.Segments() != want {
			t.Fatalf("%d characters: %d segments, want %d", n, p.Segments(), want)
		}
		frames, err := BuildFrames(p.DataCoding, p.Parts, 9, opt)
		if err != nil {
			t.Fatal(err)
		}
		var joined []byte
		for _, f := range frames {
			body := f.ShortMessage
			if f.ESMClass&ESMClassUDHI != 0 {
				body = body[6:]
			}
			if len(body) > 153 && len(frames) > 1 {
				t.Errorf("a part of %d octets", len(body))
			}
			joined = append(joined, body...)
		}
		if !bytes.Equal(joined, bytes.Repeat([]byte{0xFC}, n)) {
			t.Fatalf("%d characters: the parts hold % x…, want 0xfc each", n, joined[:8])
		}
	}
	gsmPlan, err := Encode("Δ=5", Options{Concat: ConcatUDH8})
	if err != nil {
		t.Fatal(err)
	}
	frames, err := BuildFrames(gsmPlan.DataCoding, gsmPlan.Parts, 1, opt)
	if err != nil || string(frames[0].ShortMessage) != "?=5" {
		t.Fatalf("a stored GSM part to a Latin-1 SMSC: %q (%v), want \"?=5\"", frames[0].ShortMessage, err)
	}
}

func TestParseAlphabet(t *testing.T) {
	for _, a := range []Alphabet{AlphabetGSM, AlphabetLatin1, AlphabetASCII} {
		if got, err := ParseAlphabet(strings.ToUpper(a.String())); err != nil || got != a {
			t.Errorf("ParseAlphabet(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := ParseAlphabet("utf8"); err == nil {
		t.Error("ParseAlphabet(utf8): no error")
	}
}

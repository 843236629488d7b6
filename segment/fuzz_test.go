package segment

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRoundTrip: any valid UTF-8 text within the limit survives
// Encode → BuildFrames → Reassemble (and ParseIncoming + JoinText) in every concat
// mode, packed or not, and Count agrees with Encode.
func FuzzRoundTrip(f *testing.F) {
	f.Add("Hello, world!", byte(0), byte(0), false, uint16(1))
	f.Add(rep("a", 152)+"€"+rep("b", 152), byte(0), byte(1), true, uint16(0xFFFF))
	f.Add(rep(han, 66)+emoji+rep(han, 66), byte(0), byte(2), false, uint16(0))
	f.Add(rep("a", 152)+"\r"+rep("b", 153), byte(0), byte(0), true, uint16(7))
	f.Add("1234567\r", byte(0), byte(3), true, uint16(7))
	f.Add("a€\r", byte(60), byte(0), true, uint16(7))
	// times repeats text, so that short inputs the fuzzer finds reach the
	// segment boundaries where escapes, surrogates and CRs matter.
	f.Fuzz(func(t *testing.T, text string, times, mode byte, packed bool, ref uint16) {
		if k := 1 + int(times); len(text)*k <= 4*DefaultMaxChars*4 {
			text = strings.Repeat(text, k)
		}
		opt := Options{Concat: Concat(mode % 4), GSMPacked: packed}
		p, err := Encode(text, opt)
		n, cerr := Count(text, opt)
		if fmt.Sprint(err) != fmt.Sprint(cerr) {
			t.Fatalf("Encode err %v, Count err %v", err, cerr)
		}
		if err != nil {
			if !utf8.ValidString(text) || text == "" || utf8.RuneCountInString(text) > DefaultMaxChars {
				return
			}
			t.Fatalf("Encode(%q): %v", text, err)
		}
		if n != p.Segments() {
			t.Fatalf("Count %d, Segments %d", n, p.Segments())
		}
		if err := checkPlan(text, opt, ref, p); err != nil {
			t.Fatal(err)
		}
		frames, err := BuildFrames(p.DataCoding, p.Parts, ref, opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkFrames(text, opt, p, frames); err != nil {
			t.Fatal(err)
		}
		// The gateway's ingress path: parse each frame as a submit_sm
		// (last part first, as a sender may), put the parts in sequence
		// order by their headers, and join them with JoinText.
		parts := make([]*Fragment, len(frames))
		for i := len(frames) - 1; i >= 0; i-- {
			fr := frames[i]
			frag, err := ParseIncoming(Incoming{
				DataCoding: fr.DataCoding, ESMClass: fr.ESMClass, ShortMessage: fr.ShortMessage,
				Payload: fr.TLVs[TagMessagePayload], SARRef: fr.TLVs[TagSARMsgRefNum],
				SARTotal: fr.TLVs[TagSARTotalSegments], SARSeq: fr.TLVs[TagSARSegmentSeqnum],
			}, packed)
			if err != nil {
				t.Fatal(err)
			}
			seq := 1
			if frag.Info != nil && frag.Info.Concat {
				seq = int(frag.Info.Seq)
				if int(frag.Info.Total) != len(frames) {
					t.Fatalf("part %d announces %d parts, %d built", i, frag.Info.Total, len(frames))
				}
			}
			if seq < 1 || seq > len(frames) || parts[seq-1] != nil {
				t.Fatalf("part %d: sequence number %d", i, seq)
			}
			parts[seq-1] = &frag
		}
		got, err := JoinText(parts)
		if err != nil {
			t.Fatal(err)
		}
		if got != text && !lostTrailingCR(p, frames, opt, text, got) {
			t.Fatalf("JoinText = %q, want %q", got, text)
		}
	})
}

// FuzzParseUDH: never panics; on success the rest is a suffix of the input
// and the concatenation values are possible.
func FuzzParseUDH(f *testing.F) {
	f.Add([]byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 'h', 'i'})
	f.Add([]byte{0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x02})
	f.Add([]byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0})
	f.Add([]byte{0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, rest, err := ParseUDH(b)
		if err != nil {
			if !errors.Is(err, ErrBadUDH) {
				t.Fatalf("error %v is not ErrBadUDH", err)
			}
			return
		}
		if !bytes.HasSuffix(b, rest) || u.Len+len(rest) != len(b) {
			t.Fatalf("rest %x of %x, Len %d", rest, b, u.Len)
		}
		if u.Concat && (u.Total == 0 || u.Seq == 0 || u.Seq > u.Total) {
			t.Fatalf("impossible concat %+v", u)
		}
	})
}

// FuzzDecodeIncoming: never panics on arbitrary PDU content, and every
// error is one of the documented sentinels.
func FuzzDecodeIncoming(f *testing.F) {
	f.Add(byte(0x00), byte(0x00), []byte("Hello"), []byte(nil), false)
	f.Add(byte(0x08), byte(0x40), []byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 0x4F, 0x60}, []byte(nil), false)
	f.Add(byte(0x00), byte(0x40), []byte{0x05, 0x00, 0x03, 0x01, 0x01, 0x01, 0x90, 0x65, 0x36, 0xFB, 0x0D}, []byte(nil), true)
	f.Add(byte(0xF5), byte(0x40), []byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x01}, []byte(nil), false)
	f.Add(byte(0x03), byte(0x00), []byte(nil), []byte{0xE9, 0x41}, false)
	f.Add(byte(0x01), byte(0x00), []byte("me\x00home\x11\x1b\x65"), []byte(nil), false)                                                     // GSM under IA5
	f.Add(byte(0x04), byte(0x40), []byte{0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x2A, 0x02, 0x01, 0xFF}, []byte(nil), false) // binary reply part
	f.Fuzz(func(t *testing.T, dc, esm byte, sm, payload []byte, packed bool) {
		text, _, err := DecodeIncoming(dc, esm, sm, payload, packed)
		if err != nil {
			for _, e := range []error{ErrBinary, ErrUnsupportedCoding, ErrMalformed, ErrBadUDH, ErrEmpty} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("undocumented error %v", err)
		}
		if !utf8.ValidString(text) {
			t.Fatalf("invalid UTF-8 %q", text)
		}
		keepOctets(t, dc, esm, sm, payload, packed)
	})
}

// keepOctets: as a reply, the same content is never refused as binary
// or of an unknown coding, and the UDH kept with octets reads as a UDH
// without concatenation.
func keepOctets(t *testing.T, dc, esm byte, sm, payload []byte, packed bool) {
	f, err := ParseIncoming(Incoming{DataCoding: dc, ESMClass: esm, ShortMessage: sm, Payload: payload, KeepOctets: true}, packed)
	if errors.Is(err, ErrBinary) || errors.Is(err, ErrUnsupportedCoding) {
		t.Fatalf("KeepOctets refused it: %v", err)
	}
	if err != nil || f.UDH == nil {
		return
	}
	if f.Coding != Octets {
		t.Fatalf("a UDH kept with %v", f.Coding)
	}
	u, rest, err := ParseUDH(f.UDH)
	if err != nil || len(rest) != 0 || u.Concat {
		t.Fatalf("kept UDH % x: %+v, %d left, %v", f.UDH, u, len(rest), err)
	}
}

// FuzzUTF16BE: for valid UTF-8, appendUTF16BE gives the octets of x/text's
// encoder, which it replaced on the send path; Encode's UCS-2 bodies are
// those octets.
func FuzzUTF16BE(f *testing.F) {
	f.Add("Hello")
	f.Add("【签名】您的验证码是 123456")
	f.Add(emoji + han + "\uFFFD\uFEFF\u0000\uFFFF" + "\U0010FFFF")
	f.Fuzz(func(t *testing.T, text string) {
		if !utf8.ValidString(text) {
			return
		}
		want, err := utf16BE.NewEncoder().Bytes([]byte(text))
		if err != nil {
			t.Fatalf("x/text: %v", err)
		}
		if got := appendUTF16BE(nil, text); !bytes.Equal(got, want) {
			t.Fatalf("appendUTF16BE(%q) = %x, x/text %x", text, got, want)
		}
		p, err := Encode(text, Options{Concat: ConcatPayload, MaxChars: 1 << 20})
		if err != nil || p.Coding != UCS2 {
			return // GSM text, or too long
		}
		if !bytes.Equal(p.Parts[0], want) {
			t.Fatalf("Encode(%q) body %x, x/text %x", text, p.Parts[0], want)
		}
	})
}

// FuzzTextBody: a reply's text as one deliver_sm body (TextBody) reads
// back as the same text, GSM or UCS-2, for any valid UTF-8.
func FuzzTextBody(f *testing.F) {
	f.Add("me@home_$5 {x} [y] ~|^\\ €")
	f.Add("café Ñandú ΔΦΓ")
	f.Add("a`b " + han + emoji)
	f.Fuzz(func(t *testing.T, text string) {
		if !utf8.ValidString(text) || text == "" {
			return
		}
		dc, body := TextBody(text)
		got, _, err := DecodeIncoming(dc, 0, body, nil, false)
		if err != nil || got != text {
			t.Fatalf("TextBody(%q) = 0x%02x % x, read back as %q, %v", text, dc, body, got, err)
		}
	})
}

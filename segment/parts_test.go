package segment

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// readFrames reads frames back as a receiver does: each through
// ParseIncoming (replies: KeepOctets), checking that every part is one
// SMS on the air and that the parts are one message, in order, with the
// reference ref. It returns the fragments.
func readFrames(t *testing.T, frames []Frame, c Concat, ref uint16) []*Fragment {
	t.Helper()
	var frags []*Fragment
	for i, fr := range frames {
		in := Incoming{DataCoding: fr.DataCoding, ESMClass: fr.ESMClass, ShortMessage: fr.ShortMessage, KeepOctets: true,
			SARRef: fr.TLVs[TagSARMsgRefNum], SARTotal: fr.TLVs[TagSARTotalSegments], SARSeq: fr.TLVs[TagSARSegmentSeqnum]}
		f, err := ParseIncoming(in, false)
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		// On the air: the UDH (with SAR, the 6 octets the SMSC adds) and
		// the data, GSM in septets after the fill bits.
		udhLen := 0
		if f.Info != nil && f.Info.Len > 0 {
			udhLen = f.Info.Len
		}
		if c == ConcatSAR && len(frames) > 1 {
			udhLen = max(udhLen, 1) + 5
		}
		bits := 8 * (udhLen + len(f.Data))
		if cd, err := codingOf(fr.DataCoding); err == nil && cd == GSM7 && check7bit(f.Data, "") == nil {
			bits = 8*udhLen + packFill(udhLen) + 7*len(f.Data)
		}
		if bits > 8*maxUserData {
			t.Errorf("frame %d: %d bits of user data on the air, an SMS holds %d", i+1, bits, 8*maxUserData)
		}
		if len(fr.ShortMessage) > 254 {
			t.Errorf("frame %d: short_message of %d octets", i+1, len(fr.ShortMessage))
		}
		switch {
		case len(frames) == 1:
			if f.Info != nil && f.Info.Concat {
				t.Errorf("one frame with a concatenation: %+v", f.Info)
			}
		case f.Info == nil || !f.Info.Concat:
			t.Fatalf("frame %d of %d without a concatenation", i+1, len(frames))
		default:
			wantRef := ref
			if c == ConcatUDH8 {
				wantRef = ref & 0xFF
			}
			if f.Info.Ref != wantRef || int(f.Info.Total) != len(frames) || int(f.Info.Seq) != i+1 || f.Info.Ref16 != (c != ConcatUDH8) {
				t.Errorf("frame %d: %+v, want ref %d, %d of %d", i+1, f.Info, wantRef, i+1, len(frames))
			}
		}
		frags = append(frags, &f)
	}
	return frags
}

func TestTextFrames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		text   string
		c      Concat
		frames int
		coding byte
	}{
		{"GSM that fits one SMS", strings.Repeat("a", 160), ConcatUDH8, 1, 0x00},
		{"GSM 161 in two, 8-bit reference", strings.Repeat("a", 161), ConcatUDH8, 2, 0x00},
		{"GSM 161 in two, 16-bit reference", strings.Repeat("b", 161), ConcatUDH16, 2, 0x00},
		{"GSM 161 in two, SAR", strings.Repeat("c", 161), ConcatSAR, 2, 0x00},
		{"GSM 306 in two (153 a part)", strings.Repeat("d", 306), ConcatUDH8, 2, 0x00},
		{"GSM 305 in three (152 a part)", strings.Repeat("e", 305), ConcatUDH16, 3, 0x00},
		{"escapes never split", strings.Repeat("€", 81), ConcatUDH8, 2, 0x00},
		{"UCS-2 that fits one SMS", strings.Repeat("中", 70), ConcatUDH8, 1, 0x08},
		{"UCS-2 71 in two", strings.Repeat("中", 71), ConcatUDH8, 2, 0x08},
		{"UCS-2 surrogates never split", strings.Repeat("😀", 40), ConcatUDH16, 2, 0x08},
		{"longer than the operator's 500", strings.Repeat("长", 1000), ConcatSAR, 15, 0x08},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames, err := TextFrames(tc.text, tc.c, 0x1234)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != tc.frames {
				t.Fatalf("%d frames, want %d", len(frames), tc.frames)
			}
			frags := readFrames(t, frames, tc.c, 0x1234)
			for _, f := range frags {
				if f.Coding == Octets {
					t.Fatalf("a part read as octets")
				}
				if frames[0].DataCoding != tc.coding {
					t.Fatalf("data_coding 0x%02x, want 0x%02x", frames[0].DataCoding, tc.coding)
				}
			}
			got, err := JoinText(frags)
			if err != nil || got != tc.text {
				t.Fatalf("joined %q, %v; want the text", got, err)
			}
			// Each part decodes alone: no character split across two.
			for i, f := range frags {
				if s, err := f.Text(); err != nil || strings.ContainsRune(s, '\uFFFD') {
					t.Errorf("part %d alone: %q %v", i+1, s, err)
				}
			}
		})
	}
	if _, err := TextFrames(strings.Repeat("中", 67*255+1), ConcatUDH8, 1); !errors.Is(err, ErrTooLong) {
		t.Errorf("256 parts: %v, want ErrTooLong", err)
	}
	if _, err := TextFrames("hi", ConcatPayload, 1); !errors.Is(err, ErrBadOptions) {
		t.Errorf("payload: %v, want ErrBadOptions", err)
	}
}

func TestOctetFrames(t *testing.T) {
	port := []byte{0x06, 0x05, 0x04, 0x23, 0xF4, 0x00, 0x00} // destination port 9204
	seq := func(n int, mod byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i) % mod
		}
		return b
	}
	esc := bytes.Repeat([]byte{0x1B, 0x65}, 100) // '€', escape first
	for _, tc := range []struct {
		name   string
		data   []byte
		coding byte
		udh    []byte
		c      Concat
		sizes  []int // octets of data in each frame
	}{
		{"8-bit fits with its port", seq(133, 255), 0x04, port, ConcatUDH8, []int{133}},
		{"8-bit 134 with its port in two", seq(134, 255), 0x04, port, ConcatUDH8, []int{128, 6}},
		{"8-bit 300 with its port, 8-bit reference", seq(300, 255), 0x04, port, ConcatUDH8, []int{128, 128, 44}},
		{"8-bit 300 with its port, 16-bit reference", seq(300, 255), 0x04, port, ConcatUDH16, []int{127, 127, 46}},
		{"8-bit 300 with its port, SAR", seq(300, 255), 0x04, port, ConcatSAR, []int{128, 128, 44}},
		{"8-bit without a UDH", seq(141, 255), 0xF5, nil, ConcatUDH8, []int{134, 7}},
		{"8-bit fits without a UDH", seq(140, 255), 0xF5, nil, ConcatUDH8, []int{140}},
		{"a coding qxtd does not read, in octets", seq(200, 255), 0x05, nil, ConcatUDH16, []int{133, 67}},
		{"UCS-2 by pairs", seq(301, 255)[:300], 0x08, port, ConcatUDH8, []int{128, 128, 44}},
		{"UCS-2 by pairs, odd room", seq(200, 255), 0x08, nil, ConcatUDH16, []int{132, 68}},
		{"GSM septets with a port", seq(200, 0x1B), 0x00, port, ConcatUDH8, []int{146, 54}},
		{"GSM septets never split after an escape", esc, 0x00, nil, ConcatUDH8, []int{152, 48}},
		{"GSM coding with octets over 0x7F, in octets", seq(200, 255), 0x00, nil, ConcatUDH8, []int{134, 66}},
		{"a concatenation IE in the stored UDH is left out", seq(300, 255), 0x04,
			[]byte{0x0B, 0x05, 0x04, 0x23, 0xF4, 0x00, 0x00, 0x00, 0x03, 0x99, 0x02, 0x01}, ConcatUDH8, []int{128, 128, 44}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames, err := OctetFrames(tc.data, tc.coding, tc.udh, tc.c, 0xABCD)
			if err != nil {
				t.Fatal(err)
			}
			frags := readFrames(t, frames, tc.c, 0xABCD)
			var joined []byte
			var sizes []int
			for i, f := range frags {
				if frames[i].DataCoding != tc.coding {
					t.Fatalf("frame %d: data_coding 0x%02x, want 0x%02x", i+1, frames[i].DataCoding, tc.coding)
				}
				// Each part carries the reply's own IEs (its port), the
				// concatenation IE aside.
				if want := withoutConcat(tc.udh); !bytes.Equal(withoutConcat(f.UDH), want) && f.Coding == Octets {
					t.Errorf("frame %d: UDH % x, want % x beside the concatenation", i+1, f.UDH, want)
				}
				joined = append(joined, f.Data...)
				sizes = append(sizes, len(f.Data))
			}
			if !bytes.Equal(joined, tc.data) {
				t.Fatalf("joined % x\nwant % x", joined, tc.data)
			}
			if !equalInts(sizes, tc.sizes) {
				t.Errorf("parts of %v octets, want %v", sizes, tc.sizes)
			}
		})
	}
	if _, err := OctetFrames(seq(140*255, 255), 0x04, nil, ConcatUDH8, 1); !errors.Is(err, ErrTooLong) {
		t.Errorf("256 parts: %v, want ErrTooLong", err)
	}
	if _, err := OctetFrames(seq(10, 255), 0x04, []byte{0x09, 0x05}, ConcatUDH8, 1); !errors.Is(err, ErrBadUDH) {
		t.Errorf("a UDHL past its UDH: %v, want ErrBadUDH", err)
	}
	if _, err := OctetFrames(seq(10, 255), 0x04, nil, ConcatPayload, 1); !errors.Is(err, ErrBadOptions) {
		t.Errorf("payload: %v, want ErrBadOptions", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzOctetFrames holds OctetFrames to its promise for any reply: parts
// that are each one SMS, that a receiver joins back to the octets, each
// with the reply's own IEs, or a clear error.
func FuzzOctetFrames(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x1B}, 300), byte(0x00), []byte{0x06, 0x05, 0x04, 0x23, 0xF4, 0x00, 0x00}, uint8(0), uint16(7))
	f.Add(bytes.Repeat([]byte{0xFF}, 401), byte(0x08), []byte(nil), uint8(1), uint16(0xFFFF))
	f.Add([]byte{1, 2, 3}, byte(0x04), []byte{0x03, 0x00, 0x01, 0x00}, uint8(2), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, coding byte, udh []byte, c uint8, ref uint16) {
		cc := Concat(c % 3)
		if len(data) == 0 {
			return // replies kept as octets hold at least one
		}
		if len(udh) > 0 {
			if _, _, err := ParseUDH(udh); err != nil {
				return // stored UDHs come from ParseUDH
			}
			u, _, _ := ParseUDH(udh)
			udh = udh[:u.Len]
		}
		frames, err := OctetFrames(data, coding, udh, cc, ref)
		if err != nil {
			if !errors.Is(err, ErrTooLong) && !errors.Is(err, ErrBadUDH) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		var joined []byte
		for _, g := range readFrames(t, frames, cc, ref) {
			joined = append(joined, g.Data...)
		}
		// A GSM-coded text with a padding CR at its end may lose it as a
		// receiver reads it; the octets are otherwise those given.
		if !bytes.Equal(joined, data) && !(bytes.Equal(append(joined, '\r'), data)) {
			t.Fatalf("joined % x, want % x", joined, data)
		}
	})
}

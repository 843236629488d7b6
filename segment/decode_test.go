package segment

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeIncoming(t *testing.T) {
	hello := []byte("Hello")
	tests := []struct {
		name    string
		dc, esm byte
		sm, pl  []byte
		packed  bool
		want    string
		wantErr error
		udh     *UDHInfo
	}{
		{name: "gsm unpacked", dc: 0x00, sm: []byte{0x48, 0x1B, 0x65, 0x00}, want: "H€@"},
		{name: "gsm packed", dc: 0x00, sm: []byte{0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37}, packed: true, want: "hellohello"},
		{name: "gsm unpacked high octet", dc: 0x00, sm: []byte{0x48, 0xC8}, wantErr: ErrMalformed},
		{name: "ia5", dc: 0x01, sm: hello, want: "Hello"},
		{name: "ia5 high octet", dc: 0x01, sm: []byte{0x48, 0xE9}, wantErr: ErrMalformed},
		// IA5 as SMPP names it: ASCII's $ @ [ ] _ { } and TAB, LF, CR.
		{name: "ia5 ascii", dc: 0x01, sm: []byte("$5 @home [x] a_b {y}\tok\r\n"), want: "$5 @home [x] a_b {y}\tok\r\n"},
		// GSM 03.38 sent under 0x01 (node-smpp): its control octets say so.
		{name: "ia5 holding gsm at", dc: 0x01, sm: []byte("user\x00example.com"), want: "user@example.com"},
		{name: "ia5 holding gsm dollar underscore", dc: 0x01, sm: []byte("\x0210 data\x11sm"), want: "$10 data_sm"},
		{name: "ia5 holding gsm escape", dc: 0x01, sm: []byte("5\x1b\x65 \x1b\x28x\x1b\x29"), want: "5€ {x}"},
		{name: "ia5 holding gsm del", dc: 0x01, sm: []byte("voil\x7f"), want: "voilà"},
		{name: "latin1", dc: 0x03, sm: []byte{0x63, 0x61, 0x66, 0xE9}, want: "café"},
		{name: "ucs2", dc: 0x08, sm: []byte{0x4F, 0x60, 0x59, 0x7D, 0xD8, 0x3D, 0xDE, 0x00}, want: "你好😀"},
		{name: "ucs2 odd", dc: 0x08, sm: []byte{0x4F, 0x60, 0x59}, wantErr: ErrMalformed},
		{name: "ucs2 keeps bom", dc: 0x08, sm: []byte{0xFE, 0xFF, 0x00, 0x41}, want: "\uFEFFA"},
		{name: "ucs2 flash 0x18", dc: 0x18, sm: []byte{0x00, 0x41}, want: "A"},
		{name: "gsm class 1 0xF1", dc: 0xF1, sm: hello, want: "Hello"},
		{name: "payload", dc: 0x00, pl: hello, want: "Hello"},
		{name: "both bodies", dc: 0x00, sm: hello, pl: hello, wantErr: ErrMalformed},
		{name: "empty", dc: 0x00, wantErr: ErrEmpty},
		{name: "binary 0x02", dc: 0x02, sm: hello, wantErr: ErrBinary},
		{name: "binary 0x04", dc: 0x04, sm: hello, wantErr: ErrBinary},
		{name: "binary 0xF5", dc: 0xF5, sm: hello, wantErr: ErrBinary},
		{name: "binary 0xF4", dc: 0xF4, sm: hello, wantErr: ErrBinary},
		{name: "binary 0x15 class 1 8-bit", dc: 0x15, sm: hello, wantErr: ErrBinary},
		{name: "jis", dc: 0x05, sm: hello, wantErr: ErrUnsupportedCoding},
		{name: "ksc5601", dc: 0x0E, sm: hello, wantErr: ErrUnsupportedCoding},
		{name: "compressed", dc: 0x20, sm: hello, wantErr: ErrUnsupportedCoding},
		{name: "reserved 0x80", dc: 0x80, sm: hello, wantErr: ErrUnsupportedCoding},
		{name: "mwi 0xC8", dc: 0xC8, sm: hello, wantErr: ErrUnsupportedCoding},
		{name: "reserved 0xF8", dc: 0xF8, sm: hello, wantErr: ErrUnsupportedCoding},
		{
			name: "udh concat 8", dc: 0x00, esm: 0x40, sm: append([]byte{0x05, 0x00, 0x03, 0x2A, 0x02, 0x01}, hello...),
			want: "Hello", udh: &UDHInfo{Len: 6, Concat: true, Ref: 0x2A, Total: 2, Seq: 1},
		},
		{
			name: "udh concat 16 in payload", dc: 0x08, esm: 0x40, pl: []byte{0x06, 0x08, 0x04, 0x12, 0x34, 0x03, 0x03, 0x00, 0x41},
			want: "A", udh: &UDHInfo{Len: 7, Concat: true, Ref: 0x1234, Ref16: true, Total: 3, Seq: 3},
		},
		{
			// Packed after a 6-octet UDH: 1 fill bit, 'H' = 0x48 → 0x90.
			name: "udh concat packed fill", dc: 0x00, esm: 0xC0, packed: true,
			sm:   []byte{0x05, 0x00, 0x03, 0x01, 0x01, 0x01, 0x90, 0x65, 0x36, 0xFB, 0x0D},
			want: "Hello", udh: &UDHInfo{Len: 6, Concat: true, Ref: 1, Total: 1, Seq: 1},
		},
		{
			name: "udh unknown IE skipped", dc: 0x00, esm: 0x40, sm: append([]byte{0x04, 0x24, 0x02, 0x01, 0x02}, hello...),
			want: "Hello", udh: &UDHInfo{Len: 5},
		},
		{
			name: "wap push port 2948", dc: 0x00, esm: 0x40,
			sm: append([]byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0}, hello...), wantErr: ErrBinary,
		},
		{
			name: "wap port 9200", dc: 0x00, esm: 0x40,
			sm: append([]byte{0x06, 0x05, 0x04, 0x23, 0xF0, 0x00, 0x00}, hello...), wantErr: ErrBinary,
		},
		{
			name: "other port is text", dc: 0x00, esm: 0x40, sm: append([]byte{0x06, 0x05, 0x04, 0x15, 0x81, 0x00, 0x00}, hello...),
			want: "Hello", udh: &UDHInfo{Len: 7, Ports: true, DestPort: 0x1581},
		},
		{name: "udh truncated", dc: 0x00, esm: 0x40, sm: []byte{0x05, 0x00, 0x03}, wantErr: ErrBadUDH},
		{name: "udh concat seq 0", dc: 0x00, esm: 0x40, sm: []byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x00, 0x41}, wantErr: ErrBadUDH},
		{name: "udh concat seq > total", dc: 0x00, esm: 0x40, sm: []byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x03, 0x41}, wantErr: ErrBadUDH},
		{name: "udh concat wrong length", dc: 0x00, esm: 0x40, sm: []byte{0x05, 0x00, 0x02, 0x01, 0x02, 0x41}, wantErr: ErrBadUDH},
		// UDHI clear: the same octets are text, not a header.
		// Text, not a header (its control octets read as GSM: gsmUnderIA5).
		{name: "no udhi", dc: 0x01, sm: []byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x01}, want: "é@¥£$£"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, udh, err := DecodeIncoming(tt.dc, tt.esm, tt.sm, tt.pl, tt.packed)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
			if (udh == nil) != (tt.udh == nil) || (udh != nil && *udh != *tt.udh) {
				t.Errorf("udh = %+v, want %+v", udh, tt.udh)
			}
		})
	}
}

func TestParseIncomingSAR(t *testing.T) {
	in := Incoming{DataCoding: 0x00, ShortMessage: []byte("Hi"), SARRef: []byte{0x01, 0x02}, SARTotal: []byte{3}, SARSeq: []byte{2}}
	f, err := ParseIncoming(in, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := (UDHInfo{Concat: true, Ref16: true, Ref: 0x0102, Total: 3, Seq: 2}); f.Info == nil || *f.Info != want {
		t.Errorf("info = %+v", f.Info)
	}
	for _, bad := range []Incoming{
		{ShortMessage: []byte("Hi"), SARRef: []byte{1}, SARTotal: []byte{3}, SARSeq: []byte{2}},
		{ShortMessage: []byte("Hi"), SARRef: []byte{0, 1}, SARTotal: []byte{3}},
		{ShortMessage: []byte("Hi"), SARRef: []byte{0, 1}, SARTotal: []byte{0}, SARSeq: []byte{0}},
		{ShortMessage: []byte("Hi"), SARRef: []byte{0, 1}, SARTotal: []byte{2}, SARSeq: []byte{3}},
	} {
		if _, err := ParseIncoming(bad, false); !errors.Is(err, ErrBadSAR) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	wap := Incoming{ShortMessage: []byte("Hi"), DestPort: []byte{0x0B, 0x84}}
	if _, err := ParseIncoming(wap, false); !errors.Is(err, ErrBinary) {
		t.Errorf("destination_port 2948: %v", err)
	}
}

func TestParseUDHRest(t *testing.T) {
	b := []byte{0x05, 0x00, 0x03, 0x09, 0x02, 0x02, 'x', 'y'}
	u, rest, err := ParseUDH(b)
	if err != nil || !bytes.Equal(rest, []byte("xy")) || u.Ref != 9 || u.Seq != 2 {
		t.Fatalf("%+v %q %v", u, rest, err)
	}
	// A repeated IE: the last one counts (TS 23.040 §9.2.3.24).
	b = []byte{0x0A, 0x00, 0x03, 0x01, 0x02, 0x01, 0x00, 0x03, 0x07, 0x03, 0x03}
	if u, _, err := ParseUDH(b); err != nil || u.Ref != 7 || u.Total != 3 || u.Seq != 3 {
		t.Fatalf("repeated IE: %+v %v", u, err)
	}
	for _, bad := range [][]byte{nil, {0x01}, {0x02, 0x00}, {0x03, 0x00, 0x05, 0x00}} {
		if _, _, err := ParseUDH(bad); !errors.Is(err, ErrBadUDH) {
			t.Errorf("% X: %v", bad, err)
		}
	}
	// An empty UDH is legal.
	if _, rest, err := ParseUDH([]byte{0x00, 'a'}); err != nil || string(rest) != "a" {
		t.Errorf("empty UDH: %q %v", rest, err)
	}
}

func TestReassembleErrors(t *testing.T) {
	_, frames := roundTrip(t, rep(han, 200), Options{}, 5)
	tests := []struct {
		name   string
		frames []Frame
	}{
		{"missing part", frames[:2]},
		{"repeated part", []Frame{frames[0], frames[0], frames[2]}},
		{"mixed single", []Frame{frames[0], {DataCoding: 8, ShortMessage: []byte{0, 0x41}}, frames[2]}},
	}
	for _, tt := range tests {
		if _, err := Reassemble(tt.frames, Options{}); !errors.Is(err, ErrBadConcat) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	_, other := roundTrip(t, rep(han, 200), Options{}, 6)
	if _, err := Reassemble([]Frame{frames[0], other[1], frames[2]}, Options{}); !errors.Is(err, ErrBadConcat) {
		t.Errorf("mixed refs: %v", err)
	}
	// Out of order is fine.
	if got, err := Reassemble([]Frame{frames[2], frames[0], frames[1]}, Options{}); err != nil || got != rep(han, 200) {
		t.Errorf("out of order: %v", err)
	}
	if _, err := Reassemble(nil, Options{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("no frames: %v", err)
	}
}

// JoinText restores a character that the sender split across parts.
func TestJoinTextSplitCharacters(t *testing.T) {
	ucs := []byte{0x00, 0x41, 0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x42} // "A😀B"
	gsm := []byte{0x41, 0x1B, 0x65, 0x42}                         // "A€B"
	tests := []struct {
		name  string
		dc    byte
		parts [][]byte
		want  string
	}{
		{"surrogate pair", 0x08, [][]byte{ucs[:4], ucs[4:]}, "A😀B"},
		{"odd split", 0x08, [][]byte{ucs[:3], ucs[3:]}, "A😀B"},
		{"escape", 0x00, [][]byte{gsm[:2], gsm[2:]}, "A€B"},
		// GSM under IA5: the escape alone at a part's end decides the
		// whole text's reading, since neighbours of a coding are joined.
		{"escape under ia5", 0x01, [][]byte{[]byte("a\x11b\x00c A\x1b"), []byte("\x65B")}, "a_b@c A€B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var frags []*Fragment
			for i, p := range tt.parts {
				sm := append([]byte{0x05, 0x00, 0x03, 0x77, byte(len(tt.parts)), byte(i + 1)}, p...)
				f, err := ParseIncoming(Incoming{DataCoding: tt.dc, ESMClass: 0x40, ShortMessage: sm}, false)
				if err != nil {
					t.Fatal(err)
				}
				frags = append(frags, &f)
			}
			got, err := JoinText(frags)
			if err != nil || got != tt.want {
				t.Errorf("JoinText = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestTextBody: a text as one deliver_sm's body is GSM 7-bit, one septet
// per octet, whenever GSM has every character (ASCII's '@', '$', '_' and
// the extension table's characters with their GSM codes, not ASCII's),
// else UCS-2; either way DecodeIncoming gives the text back.
func TestTextBody(t *testing.T) {
	tests := []struct {
		text string
		dc   byte
		body []byte
	}{
		{"me@home_$5", 0x00, []byte{'m', 'e', 0x00, 'h', 'o', 'm', 'e', 0x11, 0x02, '5'}},
		{"{€}[~]", 0x00, []byte{0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29, 0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E}},
		{"café Ñ", 0x00, []byte{'c', 'a', 'f', 0x05, ' ', 0x5D}},
		{"a`b", 0x08, []byte{0, 'a', 0, '`', 0, 'b'}}, // GSM has no backtick
		{"好😀", 0x08, []byte{0x59, 0x7D, 0xD8, 0x3D, 0xDE, 0x00}},
	}
	for _, tt := range tests {
		dc, body := TextBody(tt.text)
		if dc != tt.dc || !bytes.Equal(body, tt.body) {
			t.Errorf("TextBody(%q) = 0x%02x % x; want 0x%02x % x", tt.text, dc, body, tt.dc, tt.body)
		}
		if got, _, err := DecodeIncoming(dc, 0, body, nil, false); err != nil || got != tt.text {
			t.Errorf("TextBody(%q) decodes to %q, %v", tt.text, got, err)
		}
	}
}

// Replies keep what is not text as octets (Incoming.KeepOctets): the
// coding that says so, the UDH without its concatenation IEs, the octets
// after it as received; text codings read as before.
func TestParseIncomingKeepOctets(t *testing.T) {
	ports := []byte{0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0} // IE 0x05: ports 2948 ← 9200
	concat := []byte{0x00, 0x03, 0x2A, 0x02, 0x01}
	vcard := []byte{0x04, 0x02, 0xE4, 0xE4} // IE 0x04: 8-bit ports 228 ← 228, not WAP
	udh := func(ies ...[]byte) []byte {
		b := []byte{0}
		for _, ie := range ies {
			b = append(b, ie...)
		}
		b[0] = byte(len(b) - 1)
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	bin := []byte{0x00, 0x01, 0xFF, 0x80, 0x1B}
	for _, c := range []struct {
		name      string
		in        Incoming
		coding    Coding
		data, udh []byte
		concat    bool
		refused   error // without KeepOctets
	}{
		{name: "8-bit data", in: Incoming{DataCoding: 0x04, ShortMessage: bin}, coding: Octets, data: bin, refused: ErrBinary},
		{name: "class 1 8-bit data, part 1 of 2 with ports", in: Incoming{DataCoding: 0xF5, ESMClass: 0x40, ShortMessage: cat(udh(ports, concat), bin)},
			coding: Octets, data: bin, udh: udh(ports), concat: true, refused: ErrBinary},
		{name: "concatenation alone leaves no UDH", in: Incoming{DataCoding: 0x04, ESMClass: 0x40, ShortMessage: cat(udh(concat), bin)},
			coding: Octets, data: bin, concat: true, refused: ErrBinary},
		{name: "text to a WAP port", in: Incoming{DataCoding: 0x00, ESMClass: 0x40, ShortMessage: cat(udh(concat, ports), []byte("wap"))},
			coding: Octets, data: []byte("wap"), udh: udh(ports), concat: true, refused: ErrBinary},
		{name: "WAP port in the TLV", in: Incoming{DataCoding: 0x00, ShortMessage: []byte("wap"), DestPort: []byte{0x0B, 0x84}},
			coding: Octets, data: []byte("wap"), refused: ErrBinary},
		{name: "text to another port (UDH)", in: Incoming{DataCoding: 0x00, ESMClass: 0x40, ShortMessage: cat(udh(vcard), []byte("BEGIN:VCARD"))},
			coding: Octets, data: []byte("BEGIN:VCARD"), udh: udh(vcard)},
		{name: "UCS-2 to another port (TLV)", in: Incoming{DataCoding: 0x08, ShortMessage: []byte{0x4F, 0x60}, DestPort: []byte{0x23, 0xF4}},
			coding: Octets, data: []byte{0x4F, 0x60}},
		{name: "Cyrillic", in: Incoming{DataCoding: 0x06, ShortMessage: []byte{0xC0, 0xC1}}, coding: Octets, data: []byte{0xC0, 0xC1}, refused: ErrUnsupportedCoding},
		{name: "octets GSM forbids", in: Incoming{DataCoding: 0x00, ShortMessage: []byte{0x41, 0x80}}, coding: Octets, data: []byte{0x41, 0x80}, refused: ErrMalformed},
		{name: "octets IA5 forbids", in: Incoming{DataCoding: 0x01, Payload: []byte{0xE9}}, coding: Octets, data: []byte{0xE9}, refused: ErrMalformed},
		{name: "UCS-2 stays text", in: Incoming{DataCoding: 0x08, ESMClass: 0x40, ShortMessage: cat(udh(concat, ports[:0]), []byte{0x4F, 0x60})},
			coding: UCS2, data: []byte{0x4F, 0x60}, concat: true},
		{name: "GSM stays text", in: Incoming{DataCoding: 0x00, ShortMessage: []byte("hi@")}, coding: GSM7, data: []byte("hi@")},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			_, err := ParseIncoming(in, false)
			if c.refused != nil && !errors.Is(err, c.refused) || c.refused == nil && err != nil {
				t.Fatalf("without KeepOctets: err %v, want %v", err, c.refused)
			}
			in.KeepOctets = true
			f, err := ParseIncoming(in, false)
			if err != nil {
				t.Fatal(err)
			}
			if f.Coding != c.coding || !bytes.Equal(f.Data, c.data) || !bytes.Equal(f.UDH, c.udh) {
				t.Fatalf("got %v % x udh % x, want %v % x udh % x", f.Coding, f.Data, f.UDH, c.coding, c.data, c.udh)
			}
			if got := f.Info != nil && f.Info.Concat; got != c.concat {
				t.Fatalf("concatenated %v, want %v", got, c.concat)
			}
			if _, err := f.Text(); c.coding == Octets && !errors.Is(err, ErrBinary) {
				t.Fatalf("Text of octets: %v, want ErrBinary", err)
			}
		})
	}
}

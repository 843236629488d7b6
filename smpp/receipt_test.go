package smpp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/smpp"
)

func localTime(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.Local)
}

func TestParseReceiptText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want smpp.Receipt
	}{
		{
			"appendix B",
			"id:0123456789 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:Hello world",
			smpp.Receipt{ID: "0123456789", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 0),
				DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateDelivered, Err: "000", Text: "Hello world"},
		},
		{
			"upper-case keys",
			"ID:ABC SUB:001 DLVRD:000 SUBMIT DATE:2511251430 DONE DATE:2511251431 STAT:UNDELIV ERR:001 TEXT:x",
			smpp.Receipt{ID: "ABC", Sub: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 0),
				DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateUndeliverable, Err: "001", Text: "x"},
		},
		{
			"mixed case, lower-case stat",
			"Id:7f sub:1 dlvrd:1 Submit Date:2511251430 Done Date:2511251431 Stat:delivrd Err:0 Text:",
			smpp.Receipt{ID: "7f", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 0),
				DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateDelivered, Err: "0"},
		},
		{
			"seconds in dates",
			"id:1 sub:001 dlvrd:001 submit date:251125143059 done date:251125143100 stat:DELIVRD err:000 text:",
			smpp.Receipt{ID: "1", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 59),
				DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateDelivered, Err: "000"},
		},
		{"only id and stat", "id:42 stat:EXPIRED", smpp.Receipt{ID: "42", State: smpp.StateExpired}},
		{"missing dates and err", "id:42 sub:001 dlvrd:000 stat:REJECTD text:abc",
			smpp.Receipt{ID: "42", Sub: 1, State: smpp.StateRejected, Text: "abc"}},
		{"bad date ignored", "id:42 submit date:25112514 stat:DELIVRD", smpp.Receipt{ID: "42", State: smpp.StateDelivered}},
		{
			"text with spaces and colons",
			"id:9 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:meet at 10:30 stat:no id:no",
			smpp.Receipt{ID: "9", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 0),
				DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateDelivered, Err: "000", Text: "meet at 10:30 stat:no id:no"},
		},
		{"text keeps its spaces", "id:9 stat:DELIVRD text: two  spaces ", smpp.Receipt{ID: "9", State: smpp.StateDelivered, Text: " two  spaces "}},
		{"long spellings", "id:9 stat:DELIVERED", smpp.Receipt{ID: "9", State: smpp.StateDelivered}},
		{"unknown stat word", "id:9 stat:WHATEVER", smpp.Receipt{ID: "9", State: smpp.StateUnknown}},
		{"every stat word", "id:9 stat:ACCEPTD", smpp.Receipt{ID: "9", State: smpp.StateAccepted}},
		{"non-ASCII before the keys", "\xff\xfe\u212aid:5 stat:DELIVRD", smpp.Receipt{ID: "5", State: smpp.StateDelivered}},
		{"non-ASCII text", "id:5 stat:DELIVRD text:\u212a\xff你好", smpp.Receipt{ID: "5", State: smpp.StateDelivered, Text: "\u212a\xff你好"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := smpp.ParseReceiptText(tc.in)
			if err != nil {
				t.Fatalf("ParseReceiptText(%q): %v", tc.in, err)
			}
			if !receiptEqual(got, tc.want) {
				t.Fatalf("ParseReceiptText(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
	for _, in := range []string{
		"", "hello", "Your code is 1234", "id: stat:DELIVRD", "stat:DELIVRD", "id:1 sub:001",
		"stat:DELIVRD id:1", // keys out of order: stat would be the text of id
		"\xff\xff\xff\xff", strings.Repeat("id:", 100),
	} {
		if r, err := smpp.ParseReceiptText(in); !errors.Is(err, smpp.ErrNotReceipt) {
			t.Errorf("ParseReceiptText(%q) = %+v, %v; want ErrNotReceipt", in, r, err)
		}
	}
}

func receiptEqual(a, b smpp.Receipt) bool {
	return a.ID == b.ID && a.Sub == b.Sub && a.Dlvrd == b.Dlvrd && a.SubmitDate.Equal(b.SubmitDate) &&
		a.DoneDate.Equal(b.DoneDate) && a.State == b.State && a.Err == b.Err && a.Text == b.Text
}

func TestReceiptFormatRoundTrip(t *testing.T) {
	for _, r := range []smpp.Receipt{
		{ID: "0a1b2c", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 1, 2, 3, 4, 0), DoneDate: localTime(2025, 1, 2, 3, 5, 0),
			State: smpp.StateDelivered, Err: "000", Text: "hello"},
		{ID: "123456789012", Sub: 3, Dlvrd: 0, SubmitDate: localTime(2024, 12, 31, 23, 59, 0), DoneDate: localTime(2025, 1, 1, 0, 0, 0),
			State: smpp.StateUndeliverable, Err: "001", Text: "code 1234"},
		{ID: "x", State: smpp.StateExpired, Err: "002", SubmitDate: localTime(2025, 6, 1, 0, 0, 0), DoneDate: localTime(2025, 6, 2, 0, 0, 0)},
		{ID: "r", State: smpp.StateRejected, Err: "000", Text: "at 10:30 id:x stat:y", SubmitDate: localTime(2025, 6, 1, 0, 0, 0), DoneDate: localTime(2025, 6, 1, 0, 0, 0)},
	} {
		s := r.Format()
		got, err := smpp.ParseReceiptText(s)
		if err != nil {
			t.Fatalf("ParseReceiptText(%q): %v", s, err)
		}
		if !receiptEqual(got, r) {
			t.Errorf("round trip of %q\n got %+v\nwant %+v", s, got, r)
		}
	}
	r := smpp.Receipt{ID: "1", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 59), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
		State: smpp.StateDelivered, Text: "一二三四五六七八九十一二三四五六七八九十overflow"}
	// The receipt is sent as GSM 7-bit: only the printable ASCII of the
	// first 20 characters stays (here: none).
	if got, want := r.Format(), "id:1 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:"; got != want {
		t.Errorf("Format() =\n%q\nwant\n%q", got, want)
	}
	r.Text = "【某某公司】验证码 1234 is your code"
	if got, want := r.Format(), "id:1 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text: 1234 is yo"; got != want {
		t.Errorf("Format() =\n%q\nwant\n%q", got, want)
	}
	// Nor the ASCII that GSM writes with other codes ('@' would read '¡',
	// '_' '§', '$' '¤', '{' 'ä'): the rest of the 20 stays.
	r.Text = "pay $5 to me@x_y {ok} [now]"
	if got, want := r.Format(), "id:1 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:pay 5 to mexy ok"; got != want {
		t.Errorf("Format() =\n%q\nwant\n%q", got, want)
	}
	if !smpp.StateDelivered.Final() || smpp.StateEnroute.Final() || smpp.StateAccepted.Final() || !smpp.StateRejected.Final() {
		t.Error("Final() wrong")
	}
	if smpp.MessageState(99).Stat() != "UNKNOWN" {
		t.Error("Stat() of an unknown state")
	}
}

func deliverSM(esm uint8, text string, tlvs map[pdutlv.Tag][]byte) pdu.Body {
	p := pdu.NewDeliverSM()
	_ = p.Fields().Set(pdufield.ESMClass, esm)
	_ = p.Fields().Set(pdufield.ShortMessage, []byte(text))
	// go-smpp #73: without these NewDeliverSM writes a UDH length octet.
	p.Fields()[pdufield.UDHLength] = &pdufield.SM{Data: []byte{}}
	p.Fields()[pdufield.GSMUserData] = &pdufield.SM{Data: []byte{}}
	for tag, v := range tlvs {
		_ = p.TLVFields().Set(tag, v)
	}
	return p
}

func withCoding(p pdu.Body, dc uint8) pdu.Body {
	_ = p.Fields().Set(pdufield.DataCoding, dc)
	return p
}

// ucs2BE is s in UTF-16BE (every character here in the BMP).
func ucs2BE(s string) string {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>8), byte(r))
	}
	return string(b)
}

func TestParseReceipt(t *testing.T) {
	const text = "id:abc sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:hi"
	const ucs2Text = "id:abc sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:【乙公司】你好"
	for _, tc := range []struct {
		name string
		p    pdu.Body
		want smpp.Receipt
		err  error
	}{
		{"text only", deliverSM(0x04, text, nil), smpp.Receipt{ID: "abc", Sub: 1, Dlvrd: 1,
			SubmitDate: localTime(2025, 11, 25, 14, 30, 0), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
			State: smpp.StateDelivered, Err: "000", Text: "hi"}, nil},
		{"TLVs only", deliverSM(0x04, "", map[pdutlv.Tag][]byte{
			pdutlv.TagReceiptedMessageID: []byte("abc\x00"), pdutlv.TagMessageStateOption: {5},
			pdutlv.TagNetworkErrorCode: {3, 0x01, 0x02}}),
			smpp.Receipt{ID: "abc", State: smpp.StateUndeliverable, Err: "258"}, nil},
		{"TLV id without state", deliverSM(0x04, "", map[pdutlv.Tag][]byte{pdutlv.TagReceiptedMessageID: []byte("abc")}),
			smpp.Receipt{ID: "abc", State: smpp.StateUnknown}, nil},
		{"TLVs win over the text", deliverSM(0x04, text, map[pdutlv.Tag][]byte{
			pdutlv.TagReceiptedMessageID: []byte("2748\x00"), pdutlv.TagMessageStateOption: {8}}),
			smpp.Receipt{ID: "2748", Sub: 1, Dlvrd: 1,
				SubmitDate: localTime(2025, 11, 25, 14, 30, 0), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
				State: smpp.StateRejected, Err: "000", Text: "hi"}, nil},
		{"text in message_payload", deliverSM(0x04, "", map[pdutlv.Tag][]byte{pdutlv.TagMessagePayload: []byte(text)}),
			smpp.Receipt{ID: "abc", Sub: 1, Dlvrd: 1,
				SubmitDate: localTime(2025, 11, 25, 14, 30, 0), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
				State: smpp.StateDelivered, Err: "000", Text: "hi"}, nil},
		// In UCS-2, as an SMSC sends it when its text: copies a Chinese
		// original (node-smpp picks data_coding 0x08 for the whole text):
		// before, ErrUnreadableReceipt, and the receipt was dropped.
		{"text in UCS-2", withCoding(deliverSM(0x04, ucs2BE(ucs2Text), nil), 0x08), smpp.Receipt{ID: "abc", Sub: 1, Dlvrd: 1,
			SubmitDate: localTime(2025, 11, 25, 14, 30, 0), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
			State: smpp.StateDelivered, Err: "000", Text: "【乙公司】你好"}, nil},
		{"message_payload in UCS-2", withCoding(deliverSM(0x04, "", map[pdutlv.Tag][]byte{pdutlv.TagMessagePayload: []byte(ucs2BE(ucs2Text))}), 0x08),
			smpp.Receipt{ID: "abc", Sub: 1, Dlvrd: 1,
				SubmitDate: localTime(2025, 11, 25, 14, 30, 0), DoneDate: localTime(2025, 11, 25, 14, 31, 0),
				State: smpp.StateDelivered, Err: "000", Text: "【乙公司】你好"}, nil},
		{"UCS-2 garbage", withCoding(deliverSM(0x04, ucs2BE("not a receipt"), nil), 0x08), smpp.Receipt{}, smpp.ErrUnreadableReceipt},
		{"mobile originated", deliverSM(0x00, "id:abc stat:DELIVRD", nil), smpp.Receipt{}, smpp.ErrNotReceipt},
		// A receipt's or an acknowledgement's esm_class (§5.2.12) is no
		// reply from a handset, whatever its text: before, these were
		// ErrNotReceipt, and the gateway stored them as replies.
		{"receipt flag, garbage text", deliverSM(0x04, "not a receipt", nil), smpp.Receipt{}, smpp.ErrUnreadableReceipt},
		{"SME delivery acknowledgement", deliverSM(0x08, "ack", nil), smpp.Receipt{}, smpp.ErrUnreadableReceipt},
		{"SME manual/user acknowledgement", deliverSM(0x10, "好的", nil), smpp.Receipt{}, smpp.ErrUnreadableReceipt},
		{"intermediate notification, no text", deliverSM(0x20, "", nil), smpp.Receipt{}, smpp.ErrUnreadableReceipt},
		{"a reply with UDH and reply path", deliverSM(0xC0, "\x05\x00\x03\x01\x02\x01hi", nil), smpp.Receipt{}, smpp.ErrNotReceipt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Through the wire, as the gateway sees it.
			p, err := smpp.Decode(encodePDU(t, tc.p, 1))
			if err != nil {
				t.Fatal(err)
			}
			got, err := smpp.ParseReceipt(p)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == smpp.ErrUnreadableReceipt && errors.Is(err, smpp.ErrNotReceipt) {
				t.Fatalf("err = %v: also ErrNotReceipt, which the gateway takes for a reply", err)
			}
			if !receiptEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// NewReceiptPDU must not write go-smpp's spurious UDH length octet (#73):
// walk the serialized deliver_sm field by field (SMPP 3.4 §4.6.1).
func TestNewReceiptPDUBytes(t *testing.T) {
	r := smpp.Receipt{ID: "1f2e3d", Sub: 1, Dlvrd: 1, SubmitDate: localTime(2025, 11, 25, 14, 30, 0),
		DoneDate: localTime(2025, 11, 25, 14, 31, 0), State: smpp.StateDelivered, Err: "000", Text: "hello"}
	p := smpp.NewReceiptPDU(r, "13712345678", "10086", 1, 1, 2, 8)
	f := encodePDU(t, p, 0x1234)
	b := f
	take := func(n int) []byte {
		t.Helper()
		if n > len(b) {
			t.Fatalf("frame ends early: want %d more bytes of % x", n, b)
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	cstr := func() string {
		t.Helper()
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			t.Fatalf("no NUL in % x", b)
		}
		return string(take(i + 1)[:i])
	}
	if h := hdr(take(16)); h.Len != uint32(len(f)) || h.ID != pdu.DeliverSMID || h.Status != 0 || h.Seq != 0x1234 {
		t.Fatalf("header %+v for %d bytes", h, len(f))
	}
	if s := cstr(); s != "" {
		t.Errorf("service_type %q", s)
	}
	if ton := take(2); ton[0] != 1 || ton[1] != 1 {
		t.Errorf("source ton/npi % x", ton)
	}
	if s := cstr(); s != "13712345678" {
		t.Errorf("source_addr %q", s)
	}
	if ton := take(2); ton[0] != 2 || ton[1] != 8 {
		t.Errorf("dest ton/npi % x", ton)
	}
	if s := cstr(); s != "10086" {
		t.Errorf("destination_addr %q", s)
	}
	if v := take(3); v[0] != 0x04 || v[1] != 0 || v[2] != 0 {
		t.Errorf("esm_class, protocol_id, priority_flag % x", v)
	}
	if s, v := cstr(), cstr(); s != "" || v != "" {
		t.Errorf("schedule %q, validity %q", s, v)
	}
	if v := take(4); !bytes.Equal(v, []byte{0, 0, 0, 0}) {
		t.Errorf("registered_delivery, replace_if_present, data_coding, sm_default_msg_id % x", v)
	}
	smLen := int(take(1)[0])
	sm := string(take(smLen))
	if sm != r.Format() || !strings.HasPrefix(sm, "id:1f2e3d ") {
		t.Fatalf("short_message %q (sm_length %d), want %q", sm, smLen, r.Format())
	}
	tlvs := map[uint16][]byte{}
	for len(b) > 0 {
		h := take(4)
		tag, n := binary.BigEndian.Uint16(h[0:2]), int(binary.BigEndian.Uint16(h[2:4]))
		tlvs[tag] = take(n)
	}
	if len(tlvs) != 2 || string(tlvs[0x001E]) != "1f2e3d\x00" || !bytes.Equal(tlvs[0x0427], []byte{2}) {
		t.Errorf("TLVs %x", tlvs)
	}
	// And it parses back.
	dp, err := smpp.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := smpp.ParseReceipt(dp)
	if err != nil || got.ID != r.ID || got.State != r.State || got.Text != "hello" {
		t.Fatalf("ParseReceipt: %+v %v", got, err)
	}
}

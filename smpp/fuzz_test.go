package smpp_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus in testdata/fuzz")

// seedFrames are real PDUs: the fuzzers start from well-formed input.
func seedFrames(t testing.TB) map[string][]byte {
	receiptText := smpp.Receipt{ID: "1f2e3d", Sub: 1, Dlvrd: 1, State: smpp.StateDelivered, Err: "000", Text: "hello"}.Format()
	receipt := bytes.Join([][]byte{ // as NewReceiptPDU writes it, TLVs in a fixed order
		cs(""), {1, 1}, cs("13712345678"), {1, 1}, cs("10086"),
		{0x04, 0, 0}, cs(""), cs(""), {0, 0, 0, 0},
		{byte(len(receiptText))}, []byte(receiptText),
		tlv(0x001E, cs("1f2e3d")), tlv(0x0427, []byte{2}),
	}, nil)
	udhBody := bytes.Join([][]byte{
		cs(""), {1, 1}, cs("13712345678"), {1, 1}, cs("10086"),
		{0x40, 0, 0}, cs(""), cs(""), {0, 0, 8, 0},
		{10}, {5, 0, 3, 0x2A, 2, 1}, {0x4F, 0x60, 0x59, 0x7D}, // UDH concat 8-bit ref 42, part 1 of 2
	}, nil)
	submitMulti := bytes.Join([][]byte{
		cs(""), {1, 1}, cs("10086"), {2},
		{1, 1, 1}, cs("13712345678"), {2}, cs("group"),
		{0, 0, 0}, cs(""), cs(""), {1, 0, 0, 0}, {2}, []byte("hi"),
	}, nil)
	seeds := map[string][]byte{
		"submit_sm":            frame(pdu.SubmitSMID, 0, 1, submitSMBody("10086", "13712345678", "hello", 1)),
		"submit_sm_sar":        frame(pdu.SubmitSMID, 0, 2, submitSMBody("10086", "13712345678", "part", 1), tlv(0x020C, []byte{0, 7}), tlv(0x020E, []byte{2}), tlv(0x020F, []byte{1})),
		"submit_sm_payload":    frame(pdu.SubmitSMID, 0, 3, submitSMBody("10086", "13712345678", "", 0), tlv(0x0424, []byte("message payload"))),
		"submit_sm_resp":       frame(pdu.SubmitSMRespID, 0, 1, cs("1f2e3d")),
		"submit_sm_resp_error": frame(pdu.SubmitSMRespID, smpp.StatusThrottled, 1),
		"deliver_sm_receipt":   frame(pdu.DeliverSMID, 0, 4, receipt),
		"deliver_sm_udh":       frame(pdu.DeliverSMID, 0, 5, udhBody),
		"deliver_sm_resp":      frame(pdu.DeliverSMRespID, 0, 5, cs("")),
		"bind_transmitter":     encodePDU(t, bindPDU(pdu.BindTransmitterID, "ent1", "secret"), 6),
		"bind_transceiver":     encodePDU(t, bindPDU(pdu.BindTransceiverID, "ent1", "secret"), 7),
		"bind_receiver_resp":   frame(pdu.BindReceiverRespID, 0, 8, cs("qxtd")),
		"submit_multi":         frame(pdu.SubmitMultiID, 0, 9, submitMulti),
		"submit_multi_resp":    frame(pdu.SubmitMultiRespID, 0, 9, cs("abc"), []byte{1, 1, 1}, cs("13712345678"), []byte{0, 0, 0, 0x0B}),
		"query_sm":             frame(pdu.QuerySMID, 0, 10, cs("abc"), []byte{1, 1}, cs("10086")),
		"query_sm_resp":        frame(pdu.QuerySMRespID, 0, 10, cs("abc"), cs(""), []byte{2, 0}),
		"enquire_link":         frame(pdu.EnquireLinkID, 0, 11),
		"unbind":               frame(pdu.UnbindID, 0, 12),
		"generic_nack":         frame(pdu.GenericNACKID, smpp.StatusInvalidCommandID, 13),
		"truncated_submit_sm":  frame(pdu.SubmitSMID, 0, 14, submitSMBody("10086", "13712345678", "hello", 1)[:12]),
		"tlv_past_end":         frame(pdu.SubmitSMID, 0, 15, submitSMBody("1", "2", "x", 0), []byte{0x04, 0x24, 0, 9, 1}),
		"unknown_command":      frame(0x00000099, 0, 16),
		// Fields longer than SMPP 3.4 gives them (FuzzCheckRequest).
		"submit_sm_long_dest":   frame(pdu.SubmitSMID, 0, 17, submitSMBody("10086", strings.Repeat("1", 21), "hello", 1)),
		"submit_sm_sm_len_255":  frame(pdu.SubmitSMID, 0, 18, submitSMBody("10086", "13712345678", strings.Repeat("a", 255), 1)),
		"submit_multi_long_dl":  frame(pdu.SubmitMultiID, 0, 19, bytes.Replace(submitMulti, cs("group"), cs(strings.Repeat("g", 21)), 1)),
		"bind_long_system_type": frame(pdu.BindTransceiverID, 0, 20, cs("ent1"), cs("secret"), cs(strings.Repeat("t", 13)), []byte{0x34, 0, 0}, cs("")),
		"query_sm_long_id":      frame(pdu.QuerySMID, 0, 21, cs(strings.Repeat("9", 65)), []byte{1, 1}, cs("10086")),
		"data_sm_long_source":   frame(smpp.DataSMID, 0, 22, cs(""), []byte{1, 1}, cs(strings.Repeat("1", 65)), []byte{1, 1}, cs("2"), []byte{0, 0, 0}),
	}
	for i, e := range extraPDUs() {
		name := strings.NewReplacer(" ", "_", "§", "s").Replace(e.name)
		seeds[fmt.Sprintf("extra%d_%s", i, name)] = e.frame
	}
	return seeds
}

var seedReceiptTexts = map[string]string{
	"appendix_b":   "id:0123456789 sub:001 dlvrd:001 submit date:2511251430 done date:2511251431 stat:DELIVRD err:000 text:Hello world",
	"upper_case":   "ID:ABC SUB:001 DLVRD:000 SUBMIT DATE:251125143000 DONE DATE:251125143100 STAT:UNDELIV ERR:001 TEXT:x",
	"minimal":      "id:42 stat:EXPIRED",
	"colons":       "id:9 stat:DELIVRD text:meet at 10:30 stat:no",
	"not_receipt":  "Your code is 1234",
	"non_ascii":    "\xff\u212aid:5 stat:DELIVRD text:你好",
	"out_of_order": "stat:DELIVRD id:1",
}

// seedFile is a corpus file of the fuzz arguments vs.
func seedFile(vs ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, v := range vs {
		switch v := v.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case string:
			b = fmt.Appendf(b, "string(%q)\n", v)
		case uint8:
			b = fmt.Appendf(b, "uint8(%d)\n", v)
		case uint32:
			b = fmt.Appendf(b, "uint32(%d)\n", v)
		default:
			panic("seed type")
		}
	}
	return b
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with the seeds above;
// go test -run TestFuzzSeedCorpus -update-seeds ./smpp/ rewrites it.
// Crashers the fuzzers found live there too, under their hash names.
func TestFuzzSeedCorpus(t *testing.T) {
	files := map[string][]byte{}
	for name, f := range seedFrames(t) {
		files[filepath.Join("FuzzDecode", "seed_"+name)] = seedFile(f)
		files[filepath.Join("FuzzReadFrame", "seed_"+name)] = seedFile(f)
	}
	all := bytes.Join([][]byte{seedFrames(t)["bind_transmitter"], seedFrames(t)["submit_sm"], seedFrames(t)["unbind"]}, nil)
	files[filepath.Join("FuzzReadFrame", "seed_stream")] = seedFile(all)
	files[filepath.Join("FuzzReadFrame", "seed_bad_length")] = seedFile(badLength(4097))
	for name, s := range seedReceiptTexts {
		files[filepath.Join("FuzzParseReceiptText", "seed_"+name)] = seedFile(s)
	}
	for name, f := range hotSeedFrames(t) {
		files[filepath.Join("FuzzDecodeHot", "seed_"+name)] = seedFile(f)
	}
	for name, s := range encodeSeeds {
		files[filepath.Join("FuzzEncodeHot", "seed_"+name)] = seedFile(s.args()...)
	}
	for name, want := range files {
		path := filepath.Join("testdata", "fuzz", name)
		if *updateSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): run with -update-seeds", path, err)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts is consistent: the
// header is the frame's, and the PDUs decoded here (not by go-smpp)
// encode back to a frame that decodes to the same fields.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := smpp.Decode(b)
		if err != nil {
			if p != nil {
				t.Fatalf("Decode returned a PDU and %v", err)
			}
			return
		}
		if len(b) < 16 || int(hdr(b).Len) != len(b) {
			t.Fatalf("Decode accepted a frame of %d bytes with command_length %d", len(b), hdr(b).Len)
		}
		if *p.Header() != hdr(b) {
			t.Fatalf("header %+v, frame says %+v", *p.Header(), hdr(b))
		}
		if hdr(b).ID&0x80000000 == 0 {
			for _, k := range p.FieldList() {
				if _, ok := p.Fields()[k]; !ok && k != pdufield.UDHLength && k != pdufield.GSMUserData {
					t.Fatalf("request accepted without %s", k)
				}
			}
		}
		var buf bytes.Buffer
		if err := p.SerializeTo(&buf); err != nil {
			return
		}
		switch p.Header().ID {
		case smpp.CancelSMID, smpp.CancelSMRespID, smpp.ReplaceSMID, smpp.ReplaceSMRespID,
			smpp.DataSMID, smpp.DataSMRespID, smpp.OutbindID, smpp.AlertNotificationID:
		default:
			return // go-smpp's own encoding (e.g. #73 in deliver_sm) is not ours to check
		}
		q, err := smpp.Decode(buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded % x does not decode: %v", buf.Bytes(), err)
		}
		for k, v := range p.Fields() {
			if w, ok := q.Fields()[k]; !ok || !bytes.Equal(v.Bytes(), w.Bytes()) {
				t.Fatalf("field %s: % x after a round trip, was % x", k, w, v.Bytes())
			}
		}
		for tag, v := range p.TLVFields() {
			if !bytes.Equal(v.Bytes(), smpp.TLV(q, tag)) {
				t.Fatalf("TLV %#04x changed in a round trip", uint16(tag))
			}
		}
	})
}

// FuzzReadFrame: any byte stream splits into frames of 16..4096 bytes
// that reproduce the stream, or ends in a classified error.
func FuzzReadFrame(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var got []byte
		for {
			fr, err := smpp.ReadFrame(r)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					if !bytes.Equal(got, b) {
						t.Fatalf("clean EOF after %d of %d bytes", len(got), len(b))
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, smpp.ErrFrameLength):
				default:
					t.Fatalf("unclassified error %v", err)
				}
				return
			}
			if n := len(fr); n < 16 || n > smpp.MaxFrame || int(hdr(fr).Len) != n {
				t.Fatalf("frame of %d bytes, command_length %d", n, hdr(fr).Len)
			}
			got = append(got, fr...)
			if !bytes.HasPrefix(b, got) {
				t.Fatal("frames do not reproduce the stream")
			}
			if _, err := smpp.Decode(fr); errors.Is(err, smpp.ErrFrameLength) {
				t.Fatalf("Decode rejects the length of a frame ReadFrame accepted: %v", err)
			}
		}
	})
}

// FuzzParseReceiptText: no panic; an accepted text has an id and a known
// state, and formatting it again keeps its id, counts and state.
func FuzzParseReceiptText(f *testing.F) {
	for _, s := range seedReceiptTexts {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := smpp.ParseReceiptText(s)
		if err != nil {
			if !errors.Is(err, smpp.ErrNotReceipt) {
				t.Fatalf("error %v is not ErrNotReceipt", err)
			}
			return
		}
		if r.ID == "" || r.State < smpp.StateEnroute || r.State > smpp.StateRejected {
			t.Fatalf("accepted %q as %+v", s, r)
		}
		r2, err := smpp.ParseReceiptText(r.Format())
		if err != nil {
			t.Fatalf("Format() of %+v = %q does not parse: %v", r, r.Format(), err)
		}
		if r2.ID != r.ID || r2.State != r.State || r2.Sub != r.Sub || r2.Dlvrd != r.Dlvrd {
			t.Fatalf("round trip of %q: %+v became %+v", s, r, r2)
		}
	})
}

package smpp_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/smpp"
)

// extraPDU is one PDU go-smpp cannot decode, written by hand from SMPP
// 3.4 §4, with the fields it must decode to.
type extraPDU struct {
	name   string
	frame  []byte
	fields map[pdufield.Name]any // string for C-strings, uint8, []byte for short_message
	tlvs   map[pdutlv.Tag][]byte
}

var ucs2Hello = []byte{0x4F, 0x60, 0x59, 0x7D} // 你好

func extraPDUs() []extraPDU {
	return []extraPDU{
		{
			name: "cancel_sm §4.9.1",
			frame: frame(smpp.CancelSMID, 0, 0x11, cs(""), cs("ab12"),
				[]byte{1, 1}, cs("10086"), []byte{1, 1}, cs("13712345678")),
			fields: map[pdufield.Name]any{
				pdufield.ServiceType: "", pdufield.MessageID: "ab12",
				pdufield.SourceAddrTON: uint8(1), pdufield.SourceAddrNPI: uint8(1), pdufield.SourceAddr: "10086",
				pdufield.DestAddrTON: uint8(1), pdufield.DestAddrNPI: uint8(1), pdufield.DestinationAddr: "13712345678",
			},
		},
		{name: "cancel_sm_resp §4.9.2", frame: frame(smpp.CancelSMRespID, 0, 0x12)},
		{name: "cancel_sm_resp with status", frame: frame(smpp.CancelSMRespID, smpp.StatusCancelFailed, 0x13)},
		{
			name: "replace_sm §4.10.1",
			frame: frame(smpp.ReplaceSMID, 0, 0x21, cs("ab12"), []byte{1, 1}, cs("10086"),
				cs("251126120000000+"), cs(""), []byte{1, 0}, []byte{5}, []byte("hello")),
			fields: map[pdufield.Name]any{
				pdufield.MessageID: "ab12", pdufield.SourceAddrTON: uint8(1), pdufield.SourceAddrNPI: uint8(1),
				pdufield.SourceAddr: "10086", pdufield.ScheduleDeliveryTime: "251126120000000+", pdufield.ValidityPeriod: "",
				pdufield.RegisteredDelivery: uint8(1), pdufield.SMDefaultMsgID: uint8(0), pdufield.SMLength: uint8(5),
				pdufield.ShortMessage: []byte("hello"),
			},
		},
		{name: "replace_sm_resp §4.10.2", frame: frame(smpp.ReplaceSMRespID, 0, 0x22)},
		{
			name: "data_sm §4.7.1",
			frame: frame(smpp.DataSMID, 0, 0x31, cs("WAP"), []byte{1, 1}, cs("10086"), []byte{1, 1}, cs("13712345678"),
				[]byte{0x00, 0x01, 0x08}, tlv(0x0424, ucs2Hello)),
			fields: map[pdufield.Name]any{
				pdufield.ServiceType: "WAP", pdufield.SourceAddrTON: uint8(1), pdufield.SourceAddrNPI: uint8(1),
				pdufield.SourceAddr: "10086", pdufield.DestAddrTON: uint8(1), pdufield.DestAddrNPI: uint8(1),
				pdufield.DestinationAddr: "13712345678", pdufield.ESMClass: uint8(0), pdufield.RegisteredDelivery: uint8(1),
				pdufield.DataCoding: uint8(8),
			},
			tlvs: map[pdutlv.Tag][]byte{pdutlv.TagMessagePayload: ucs2Hello},
		},
		{
			name:   "data_sm_resp §4.7.2",
			frame:  frame(smpp.DataSMRespID, 0, 0x32, cs("ab12"), tlv(0x0425, []byte{2})),
			fields: map[pdufield.Name]any{pdufield.MessageID: "ab12"},
			tlvs:   map[pdutlv.Tag][]byte{pdutlv.TagDeliveryFailureReason: {2}},
		},
		{
			name:   "outbind §4.1.7",
			frame:  frame(smpp.OutbindID, 0, 0x41, cs("smsc"), cs("pw")),
			fields: map[pdufield.Name]any{pdufield.SystemID: "smsc", pdufield.Password: "pw"},
		},
		{
			name: "alert_notification §4.12.1",
			frame: frame(smpp.AlertNotificationID, 0, 0x51, []byte{1, 1}, cs("13712345678"), []byte{2, 1}, cs("10086"),
				tlv(0x0422, []byte{0})),
			fields: map[pdufield.Name]any{
				pdufield.SourceAddrTON: uint8(1), pdufield.SourceAddrNPI: uint8(1), pdufield.SourceAddr: "13712345678",
				pdufield.AddrTON: uint8(2), pdufield.AddrNPI: uint8(1), pdufield.AddressRange: "10086",
			},
			tlvs: map[pdutlv.Tag][]byte{pdutlv.TagMsAvailabilityStatus: {0}},
		},
	}
}

func TestDecodeExtraPDUs(t *testing.T) {
	for _, tc := range extraPDUs() {
		t.Run(tc.name, func(t *testing.T) {
			want := hdr(tc.frame)
			p, err := smpp.Decode(tc.frame)
			if err != nil {
				t.Fatalf("Decode(% x): %v", tc.frame, err)
			}
			if h := *p.Header(); h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			checkFields(t, p, tc.fields, tc.tlvs)
			// Decoded, it serializes to the same bytes.
			if got := encodePDU(t, p, want.Seq); !bytes.Equal(got, tc.frame) {
				t.Fatalf("re-encoded\n% x\nwant\n% x", got, tc.frame)
			}
			// Built with NewPDU, it serializes to the hand-written bytes.
			b := smpp.NewPDU(want.ID)
			b.Header().Status = want.Status
			for k, v := range tc.fields {
				if err := b.Fields().Set(k, v); err != nil {
					t.Fatal(err)
				}
			}
			for tag, v := range tc.tlvs {
				_ = b.TLVFields().Set(tag, v)
			}
			if got := encodePDU(t, b, want.Seq); !bytes.Equal(got, tc.frame) {
				t.Fatalf("NewPDU encoded\n% x\nwant\n% x", got, tc.frame)
			}
			if b.Len() != len(tc.frame) {
				t.Errorf("Len() = %d, frame is %d bytes", b.Len(), len(tc.frame))
			}
		})
	}
}

func checkFields(t *testing.T, p pdu.Body, fields map[pdufield.Name]any, tlvs map[pdutlv.Tag][]byte) {
	t.Helper()
	for k, v := range fields {
		switch v := v.(type) {
		case string:
			if got := smpp.Str(p, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		case uint8:
			if _, ok := p.Fields()[k]; !ok {
				t.Errorf("%s missing", k)
			}
			if got := smpp.Byte(p, k); got != v {
				t.Errorf("%s = %d, want %d", k, got, v)
			}
		case []byte:
			if got := smpp.Bytes(p, k); !bytes.Equal(got, v) {
				t.Errorf("%s = % x, want % x", k, got, v)
			}
		}
	}
	if len(p.Fields()) != len(fields) {
		t.Errorf("%d fields decoded, want %d: %v", len(p.Fields()), len(fields), p.Fields())
	}
	for tag, v := range tlvs {
		if got := smpp.TLV(p, tag); !bytes.Equal(got, v) {
			t.Errorf("TLV %#04x = % x, want % x", uint16(tag), got, v)
		}
	}
	if len(p.TLVFields()) != len(tlvs) {
		t.Errorf("%d TLVs decoded, want %d", len(p.TLVFields()), len(tlvs))
	}
}

// The PDUs go-smpp does decode go through unchanged.
func TestDecodeGoSMPPPDUs(t *testing.T) {
	submit := frame(pdu.SubmitSMID, 0, 7, submitSMBody("10086", "13712345678", "hello", 1), tlv(0x020C, []byte{0, 42}))
	p, err := smpp.Decode(submit)
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, p, map[pdufield.Name]any{
		pdufield.ServiceType: "", pdufield.SourceAddrTON: uint8(1), pdufield.SourceAddrNPI: uint8(1), pdufield.SourceAddr: "10086",
		pdufield.DestAddrTON: uint8(1), pdufield.DestAddrNPI: uint8(1), pdufield.DestinationAddr: "13712345678",
		pdufield.ESMClass: uint8(0), pdufield.ProtocolID: uint8(0), pdufield.PriorityFlag: uint8(0),
		pdufield.ScheduleDeliveryTime: "", pdufield.ValidityPeriod: "", pdufield.RegisteredDelivery: uint8(1),
		pdufield.ReplaceIfPresentFlag: uint8(0), pdufield.DataCoding: uint8(0), pdufield.SMDefaultMsgID: uint8(0),
		pdufield.SMLength: uint8(5), pdufield.ShortMessage: []byte("hello"),
	}, map[pdutlv.Tag][]byte{pdutlv.TagSarMsgRefNum: {0, 42}})
	if got := encodePDU(t, p, 7); !bytes.Equal(got, submit) {
		t.Fatalf("re-encoded\n% x\nwant\n% x", got, submit)
	}
	for _, f := range [][]byte{
		frame(pdu.DeliverSMRespID, 0, 1),                           // empty body: common in the wild
		frame(pdu.SubmitSMRespID, smpp.StatusThrottled, 2),         // §4.4.2: no body with an error
		frame(pdu.BindTransmitterRespID, smpp.StatusBindFailed, 3), // idem
		frame(pdu.EnquireLinkID, 0, 4),
		frame(pdu.UnbindRespID, 0, 5),
		frame(pdu.GenericNACKID, smpp.StatusInvalidCommandID, 6),
	} {
		if p, err := smpp.Decode(f); err != nil || p.Header().ID != hdr(f).ID {
			t.Errorf("Decode(% x) = %v, %v", f, p, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	long := frame(pdu.EnquireLinkID, 0, 1)
	long[3] = 17 // says 17, is 16
	for _, tc := range []struct {
		name    string
		frame   []byte
		length  bool
		unknown pdu.ID
	}{
		{"empty", nil, true, 0},
		{"short header", []byte{0, 0, 0, 16, 0, 0, 0, 0x15}, true, 0},
		{"length mismatch", long, true, 0},
		{"length mismatch, long buffer", append(frame(pdu.EnquireLinkID, 0, 1), 0), true, 0},
		{"unknown command", frame(0x00000099, 0, 1), false, 0x99},
		{"unknown response", frame(0x80000099, 0, 1), false, 0x80000099},
		{"truncated cancel_sm", frame(smpp.CancelSMID, 0, 1, cs(""), cs("id")), false, 0},
		{"truncated outbind", frame(smpp.OutbindID, 0, 1, cs("smsc")), false, 0},
		{"TLV past the end", frame(smpp.DataSMRespID, 0, 1, cs("x"), []byte{0x04, 0x25, 0, 2, 1}), false, 0},
		{"submit_sm sm_length past the end", frame(pdu.SubmitSMID, 0, 1, submitSMBody("1", "2", "hello", 0)[:20]), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := smpp.Decode(tc.frame)
			if err == nil {
				t.Fatalf("Decode(% x) = %v, want an error", tc.frame, p.Fields())
			}
			if got := errors.Is(err, smpp.ErrFrameLength); got != tc.length {
				t.Errorf("errors.Is(%v, ErrFrameLength) = %v", err, got)
			}
			var unk *smpp.UnknownCommandError
			if got := errors.As(err, &unk); got != (tc.unknown != 0) || (got && unk.ID != tc.unknown) {
				t.Errorf("err %v: UnknownCommandError %v", err, unk)
			}
		})
	}
}

func TestNewPDUPanicsOnOtherCommands(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewPDU(submit_sm) did not panic")
		}
	}()
	smpp.NewPDU(pdu.SubmitSMID)
}

func TestErrorResponse(t *testing.T) {
	for _, tc := range []struct {
		req  pdu.Body
		want pdu.ID
	}{
		{pdu.NewSubmitSM(nil), pdu.SubmitSMRespID},
		{pdu.NewSubmitMulti(nil), pdu.SubmitMultiRespID},
		{pdu.NewDeliverSM(), pdu.DeliverSMRespID},
		{pdu.NewQuerySM(), pdu.QuerySMRespID},
		{smpp.NewPDU(smpp.CancelSMID), smpp.CancelSMRespID},
		{smpp.NewPDU(smpp.ReplaceSMID), smpp.ReplaceSMRespID},
		{smpp.NewPDU(smpp.DataSMID), smpp.DataSMRespID},
		{smpp.NewPDU(smpp.OutbindID), pdu.GenericNACKID},
		{pdu.NewEnquireLink(), pdu.GenericNACKID},
	} {
		r := smpp.ErrorResponse(tc.req, smpp.StatusInvalidDstAddr)
		if r.Header().ID != tc.want || r.Header().Status != smpp.StatusInvalidDstAddr {
			t.Errorf("ErrorResponse(%s) = %s status %#x", tc.req.Header().ID, r.Header().ID, uint32(r.Header().Status))
		}
		f := encodePDU(t, r, 9)
		if _, err := smpp.Decode(f); err != nil {
			t.Errorf("ErrorResponse(%s) encodes to % x: %v", tc.req.Header().ID, f, err)
		}
	}
}

func TestFieldHelpersOnAbsentFields(t *testing.T) {
	p := smpp.NewPDU(smpp.CancelSMID)
	if smpp.Str(p, pdufield.MessageID) != "" || smpp.Byte(p, pdufield.ESMClass) != 0 ||
		smpp.Bytes(p, pdufield.ShortMessage) != nil || smpp.TLV(p, pdutlv.TagMessagePayload) != nil {
		t.Fatal("absent fields are not zero")
	}
}

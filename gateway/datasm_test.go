package gateway_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/smpp"
)

// dataSM is a data_sm (§4.7) with text in message_payload, as the ESMEs
// that use data_sm for everything send it.
func dataSM(dst string, coding uint8, payload []byte) pdu.Body {
	p := smpp.NewPDU(smpp.DataSMID)
	f := p.Fields()
	_ = f.Set(pdufield.ServiceType, "")
	_ = f.Set(pdufield.SourceAddr, "1069")
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.ESMClass, uint8(0))
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.DataCoding, coding)
	if payload != nil {
		_ = p.TLVFields().Set(pdutlv.TagMessagePayload, payload)
	}
	return p
}

// TestDataSM: an ESME that submits with data_sm gets a data_sm_resp with
// our message id, the text goes out signed like a submit_sm's (GSM and
// UCS-2), its receipt comes back as deliver_sm, qos_time_to_live is its
// validity, a part split with the SAR TLVs is joined, and a refusal is a
// data_sm_resp with the refusal's command_status. A receiver bind may
// not send it.
func TestDataSM(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	request := func(p pdu.Body) (string, error) {
		t.Helper()
		resp, err := e.conn.Request(ctx, p)
		if resp != nil && resp.Header().ID != smpp.DataSMRespID {
			t.Fatalf("data_sm answered with %s", resp.Header().ID)
		}
		if err != nil {
			return "", err
		}
		return smpp.Str(resp, pdufield.MessageID), nil
	}

	gsm, err := request(dataSM("13700000001", 0x00, []byte("hello by data sm")))
	if err != nil {
		t.Fatal(err)
	}
	ucs2, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte("数据短信"))
	if err != nil {
		t.Fatal(err)
	}
	wide, err := request(dataSM("13700000002", 0x08, ucs2))
	if err != nil {
		t.Fatal(err)
	}
	ttl := dataSM("13700000003", 0x00, []byte("an hour to live"))
	var sec [4]byte
	binary.BigEndian.PutUint32(sec[:], 3600)
	_ = ttl.TLVFields().Set(pdutlv.TagQosTimeToLive, sec[:])
	before := time.Now()
	lived, err := request(ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Two parts split with the SAR TLVs: one message, joined.
	var part []string
	for i, text := range []string{"first half, ", "second half"} {
		p := dataSM("13700000004", 0x00, []byte(text))
		_ = p.TLVFields().Set(pdutlv.TagSarMsgRefNum, []byte{0, 7})
		_ = p.TLVFields().Set(pdutlv.TagSarTotalSegments, []byte{2})
		_ = p.TLVFields().Set(pdutlv.TagSarSegmentSeqnum, []byte{byte(i + 1)})
		id, err := request(p)
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		part = append(part, id)
	}

	got := e.waitReceipts(t, 5, 15*time.Second)
	for _, id := range append([]string{gsm, wide, lived}, part...) {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v (found %v), want DELIVRD", id, rc, ok)
		}
	}
	for dst, want := range map[string]string{"13700000001": "【测试】hello by data sm", "13700000002": "【测试】数据短信",
		"13700000004": "【测试】first half, second half"} {
		if text, _ := simText(t, r, dst); text != want {
			t.Errorf("the SMSC got %q for %s, want %q", text, dst, want)
		}
	}
	id, err := strconv.ParseUint(lived, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.ValidUntil.Sub(before); d < time.Hour || d > time.Hour+10*time.Second {
		t.Errorf("qos_time_to_live 3600: valid until %v, %v after the request; want an hour", m.ValidUntil, d)
	}

	// Refused: no text at all, and a qos_time_to_live not 4 octets.
	var st pdu.Status
	if _, err := request(dataSM("13700000005", 0x00, nil)); !errors.As(err, &st) || st == 0 {
		t.Errorf("a data_sm without text: %v, want a refusal in data_sm_resp", err)
	}
	bad := dataSM("13700000006", 0x00, []byte("x"))
	_ = bad.TLVFields().Set(pdutlv.TagQosTimeToLive, []byte{1})
	if _, err := request(bad); !errors.As(err, &st) || st != smpp.StatusInvalidExpiry {
		t.Errorf("qos_time_to_live of one octet: %v, want ESME_RINVEXPIRY", err)
	}

	rx, err := r.bind("esme", "pw", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rx.conn.Request(ctx, dataSM("13700000007", 0x00, []byte("x"))); !errors.As(err, &st) || st != smpp.StatusInvalidBindStatus {
		t.Errorf("data_sm on a receiver bind: %v, want ESME_RINVBNDSTS", err)
	}
}

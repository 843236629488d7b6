package smpp

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// TestSubmitMultiDistributionList: an SME address after a distribution
// list entry decodes correctly (go-smpp's decoder would read the DL name
// as ton, npi and address and shift every later field).
func TestSubmitMultiDistributionList(t *testing.T) {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 7}) // header, length patched below
	b.WriteString("\x00")                                              // service_type
	b.Write([]byte{1, 1})                                              // source ton, npi
	b.WriteString("1069\x00")                                          // source_addr
	b.WriteByte(2)                                                     // number_of_dests
	b.WriteString("\x02sales\x00")                                     // a distribution list
	b.WriteString("\x01\x01\x0113800138000\x00")                       // an SME address
	b.Write([]byte{0, 0, 0})                                           // esm_class, protocol_id, priority
	b.WriteString("\x00\x00")                                          // schedule, validity
	b.Write([]byte{1, 0, 8, 0})                                        // registered_delivery, replace, data_coding, default id
	b.Write([]byte{4, 0x4f, 0x60, 0x59, 0x7d})                         // sm_length, "你好" in UCS-2
	frame := b.Bytes()
	frame[3] = byte(len(frame))
	p, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	want := DestList{{DL: true, Addr: "sales"}, {TON: 1, NPI: 1, Addr: "13800138000"}}
	got := Dests(p)
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("dests %+v, want %+v", got, want)
	}
	if dc := Byte(p, pdufield.DataCoding); dc != 8 {
		t.Fatalf("data_coding %d after the list, want 8", dc)
	}
	if sm := Bytes(p, pdufield.ShortMessage); !bytes.Equal(sm, []byte{0x4f, 0x60, 0x59, 0x7d}) {
		t.Fatalf("short_message % x", sm)
	}
	// Re-encoding gives the same bytes.
	var out bytes.Buffer
	p.Header().Seq = 7
	if err := p.SerializeTo(&out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), frame) {
		t.Fatalf("re-encoded\n%s\nwant\n%s", hex.Dump(out.Bytes()), hex.Dump(frame))
	}
}

// TestSubmitMultiRespStatusBytes: error_status_code is 4 octets, with no
// NUL after it (go-smpp's UnSme adds one when the last octet is not 0).
func TestSubmitMultiRespStatusBytes(t *testing.T) {
	p := NewSubmitMultiResp("42", UnsuccessList{{TON: 1, NPI: 1, Addr: "13800138009", Status: StatusThrottled}, {Addr: "1", Status: 0x400}})
	p.Header().Seq = 3
	var out bytes.Buffer
	if err := p.SerializeTo(&out); err != nil {
		t.Fatal(err)
	}
	body := out.Bytes()[pdu.HeaderLen:]
	want := []byte("42\x00\x02\x01\x0113800138009\x00\x00\x00\x00\x58\x00\x001\x00\x00\x00\x04\x00")
	if !bytes.Equal(body, want) {
		t.Fatalf("body\n%s\nwant\n%s", hex.Dump(body), hex.Dump(want))
	}
	back, err := Decode(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseUnsuccess(back)
	if err != nil || len(l) != 2 || l[0].Status != StatusThrottled || l[1].Status != 0x400 || l[0].Addr != "13800138009" {
		t.Fatalf("decoded %+v, %v", l, err)
	}
}

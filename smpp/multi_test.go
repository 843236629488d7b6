package smpp

import (
	"bytes"
	"encoding/hex"
	"fmt"
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

// TestSubmitMultiRespFits: unsuccess_sme is cut to what a response can
// carry, 255 entries and MaxFrame bytes: 254 refusals of 20-digit numbers
// would be some 7 KB, which a peer reading frames of at most MaxFrame
// drops the connection over. What is kept decodes whole.
func TestSubmitMultiRespFits(t *testing.T) {
	for _, c := range []struct {
		n, addr int
	}{{254, 20}, {300, 1}, {254, 11}, {3, 20}} {
		var failed UnsuccessList
		for i := range c.n {
			addr := fmt.Sprintf("%0*d", c.addr, i%10)
			failed = append(failed, Unsuccess{TON: 1, NPI: 1, Addr: addr, Status: 0x400})
		}
		p := NewSubmitMultiResp("18446744073709551615", failed)
		var out bytes.Buffer
		if err := p.SerializeTo(&out); err != nil {
			t.Fatal(err)
		}
		back, err := Decode(out.Bytes())
		if err != nil {
			t.Fatalf("%d refusals of %d digits: %v", c.n, c.addr, err)
		}
		l, _ := ParseUnsuccess(back)
		if out.Len() > MaxFrame || len(l) > 255 || len(l) == 0 {
			t.Errorf("%d refusals of %d digits: %d bytes, %d entries; want at most %d and 255", c.n, c.addr, out.Len(), len(l), MaxFrame)
		}
		// Cut only where the next would not fit.
		if each := 2 + c.addr + 1 + 4; len(l) < c.n && len(l) < 255 && out.Len()+each <= MaxFrame {
			t.Errorf("%d refusals of %d digits: cut at %d entries, %d bytes, where one more fits", c.n, c.addr, len(l), out.Len())
		}
		if c.n == 3 && len(l) != 3 {
			t.Errorf("three refusals: %d kept", len(l))
		}
	}
}

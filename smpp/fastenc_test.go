package smpp

import (
	"bytes"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// encodeResponse must write exactly what go-smpp's codec writes, for every
// response it takes, and leave the others to the codec.
func FuzzEncodeResponse(f *testing.F) {
	f.Add(uint8(0), []byte("12345"), uint32(0), uint32(1), false, false)
	f.Add(uint8(1), []byte(""), uint32(0x45), uint32(0x7fffffff), false, false)
	f.Add(uint8(0), []byte("abc\x00"), uint32(0), uint32(2), true, false)
	f.Add(uint8(2), []byte(nil), uint32(0), uint32(3), false, false)
	f.Add(uint8(3), []byte(nil), uint32(3), uint32(4), false, false)
	f.Add(uint8(0), []byte("9"), uint32(0), uint32(5), false, true)
	f.Fuzz(func(t *testing.T, kind uint8, id []byte, status, seq uint32, unset, tlv bool) {
		var p pdu.Body
		switch kind % 4 {
		case 0:
			p = pdu.NewSubmitSMResp()
		case 1:
			p = pdu.NewDeliverSMResp()
		case 2:
			p = pdu.NewEnquireLinkResp()
		case 3:
			p = pdu.NewGenericNACK()
		}
		if kind%4 < 2 && !unset {
			if err := p.Fields().Set(pdufield.MessageID, id); err != nil {
				t.Skip() // not a value the codec takes either
			}
		}
		if tlv {
			p.TLVFields().Set(pdutlv.TagReceiptedMessageID, id)
		}
		p.Header().Status = pdu.Status(status)
		p.Header().Seq = seq
		fast, ok := encodeResponse(p)
		var want bytes.Buffer
		if err := p.SerializeTo(&want); err != nil {
			t.Fatal(err)
		}
		if tlv {
			if ok {
				t.Fatal("a response with a TLV took the fast path")
			}
			return
		}
		if !ok {
			t.Fatalf("%s not taken by the fast path", p.Header().ID)
		}
		if !bytes.Equal(fast, want.Bytes()) {
			t.Fatalf("%s: fast %x, codec %x", p.Header().ID, fast, want.Bytes())
		}
	})
}

func BenchmarkEncodeSubmitSMResp(b *testing.B) {
	p := pdu.NewSubmitSMResp()
	_ = p.Fields().Set(pdufield.MessageID, "1234567")
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := encodeResponse(p); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w bytes.Buffer
			if err := p.SerializeTo(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package smpp_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/smpp"
)

// BenchmarkConnRequest: submit_sm round trips over loopback TCP between
// two Conns, window 100, many goroutines. One op is one submit_sm
// answered: two encodes, two decodes, a handler goroutine, and a share of
// the batched writes.
func BenchmarkConnRequest(b *testing.B) {
	a, z := tcpPair(b)
	srv := smpp.NewConn(z, smpp.HandlerFunc(func(context.Context, *smpp.Conn, pdu.Body) pdu.Body {
		return submitResp("0123456789abcdef")
	}), smpp.ConnOptions{InboundWindow: 128})
	cli := smpp.NewConn(a, nil, smpp.ConnOptions{Window: 100})
	b.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	ctx := context.Background()
	b.SetParallelism(64) // 128 goroutines on 2 cores: the window stays full
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cli.Request(ctx, newSubmitSM("10086", "13712345678", "hello, this is a benchmark", 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkCodecEncodeDecode is the baseline: go-smpp encode + decode of
// the same submit_sm, no network, one goroutine.
func BenchmarkCodecEncodeDecode(b *testing.B) {
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		p := newSubmitSM("10086", "13712345678", "hello, this is a benchmark", 1)
		buf.Reset()
		if err := p.SerializeTo(&buf); err != nil {
			b.Fatal(err)
		}
		if _, err := pdu.Decode(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// The hot codec (hot.go, build.go, fastenc.go) against go-smpp's, each
// pair in one run: go test -run '^$' -bench Hot -benchmem -count 5 ./smpp

// typicalSubmitSM is a Chinese text as an ESME sends it: UCS-2, 134
// octets of short_message (67 characters), no UDH, no TLVs.
func typicalSubmitSM() smpp.SM {
	return smpp.SM{
		SourceAddrTON: 1, SourceAddrNPI: 1, SourceAddr: "10690000123",
		DestAddrTON: 1, DestAddrNPI: 1, DestinationAddr: "13712345678",
		RegisteredDelivery: 1, DataCoding: 8,
		ShortMessage: bytes.Repeat([]byte{0x4F, 0x60, 0x59, 0x7D}, 34)[:134],
	}
}

// codecSubmitSM is typicalSubmitSM built as gateway's buildPDU did.
func codecSubmitSM(m smpp.SM) pdu.Body {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddrTON, m.SourceAddrTON)
	_ = f.Set(pdufield.SourceAddrNPI, m.SourceAddrNPI)
	_ = f.Set(pdufield.SourceAddr, m.SourceAddr)
	_ = f.Set(pdufield.DestAddrTON, m.DestAddrTON)
	_ = f.Set(pdufield.DestAddrNPI, m.DestAddrNPI)
	_ = f.Set(pdufield.DestinationAddr, m.DestinationAddr)
	_ = f.Set(pdufield.ESMClass, m.ESMClass)
	_ = f.Set(pdufield.DataCoding, m.DataCoding)
	_ = f.Set(pdufield.RegisteredDelivery, m.RegisteredDelivery)
	_ = f.Set(pdufield.ShortMessage, m.ShortMessage)
	return p
}

func mustEncode(b *testing.B, p pdu.Body) []byte {
	f, err := smpp.Encode(p)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// readSubmit reads what gateway's ingress reads of a submit_sm.
func readSubmit(p pdu.Body) int {
	n := len(smpp.Str(p, pdufield.SourceAddr)) + len(smpp.Str(p, pdufield.DestinationAddr)) +
		len(smpp.Str(p, pdufield.ScheduleDeliveryTime)) + len(smpp.Str(p, pdufield.ValidityPeriod))
	for _, k := range []pdufield.Name{pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.DestAddrTON,
		pdufield.DestAddrNPI, pdufield.RegisteredDelivery, pdufield.DataCoding, pdufield.ESMClass} {
		n += int(smpp.Byte(p, k))
	}
	n += len(smpp.Bytes(p, pdufield.ShortMessage))
	for _, t := range []pdutlv.Tag{pdutlv.TagMessagePayload, pdutlv.TagSarMsgRefNum, pdutlv.TagSarTotalSegments,
		pdutlv.TagSarSegmentSeqnum, pdutlv.TagDestinationPort} {
		n += len(smpp.TLV(p, t))
	}
	return n
}

// BenchmarkHotDecodeSubmitSM: Decode of the typical submit_sm against
// go-smpp's pdu.Decode; +read also reads the fields ingress reads.
func BenchmarkHotDecodeSubmitSM(b *testing.B) {
	fr := mustEncode(b, smpp.NewSubmitSM(typicalSubmitSM()))
	decodePair(b, fr, readSubmit)
}

// BenchmarkHotDecodeReceipt: Decode of an SMSC's receipt (Appendix B
// text, receipted_message_id and message_state TLVs); +read is
// ParseReceipt, as the upstream handler does.
func BenchmarkHotDecodeReceipt(b *testing.B) {
	r := smpp.Receipt{ID: "5f3a9c0012", Sub: 1, Dlvrd: 1, SubmitDate: time.Date(2025, 11, 25, 14, 30, 0, 0, time.Local),
		DoneDate: time.Date(2025, 11, 25, 14, 31, 0, 0, time.Local), State: smpp.StateDelivered, Err: "000", Text: "hello"}
	fr := mustEncode(b, smpp.NewReceiptPDU(r, "13712345678", "10690000123", 1, 1, 1, 1))
	decodePair(b, fr, func(p pdu.Body) int {
		rc, err := smpp.ParseReceipt(p)
		if err != nil {
			b.Fatal(err)
		}
		return len(rc.ID)
	})
}

// BenchmarkHotDecodeSubmitSMResp: an SMSC's submit_sm_resp, and reading
// its message_id.
func BenchmarkHotDecodeSubmitSMResp(b *testing.B) {
	fr := mustEncode(b, smpp.NewSubmitSMResp("5f3a9c0012"))
	decodePair(b, fr, func(p pdu.Body) int { return len(smpp.Str(p, pdufield.MessageID)) })
}

func decodePair(b *testing.B, fr []byte, read func(pdu.Body) int) {
	for _, read := range []func(pdu.Body) int{nil, read} {
		suffix := ""
		if read != nil {
			suffix = "+read"
		}
		b.Run("hot"+suffix, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := smpp.Decode(fr)
				if err != nil {
					b.Fatal(err)
				}
				if read != nil {
					read(p)
				}
			}
		})
		b.Run("gosmpp"+suffix, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := pdu.Decode(bytes.NewReader(fr))
				if err != nil {
					b.Fatal(err)
				}
				if read != nil {
					read(p)
				}
			}
		})
	}
}

// BenchmarkHotEncodeSubmitSM: the typical submit_sm built and encoded —
// hot: NewSubmitSM and Conn's encode; gosmpp: pdu.NewSubmitSM, Sets and
// SerializeTo, as before; gosmpp-maps: go-smpp's PDU written by
// encodeSM. The encode-only pair encodes one go-smpp PDU over and over.
func BenchmarkHotEncodeSubmitSM(b *testing.B) {
	m := typicalSubmitSM()
	b.Run("build+encode/hot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mustEncode(b, smpp.NewSubmitSM(m))
		}
	})
	b.Run("build+encode/gosmpp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w bytes.Buffer
			if err := codecSubmitSM(m).SerializeTo(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
	p := codecSubmitSM(m)
	b.Run("encode/gosmpp-maps", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := smpp.EncodeMaps(p); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encode/gosmpp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w bytes.Buffer
			if err := p.SerializeTo(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHotEncodeSubmitSMResp: our answer to a submit_sm built and
// encoded, hot against pdu.NewSubmitSMResp and Set (encodeResponse).
func BenchmarkHotEncodeSubmitSMResp(b *testing.B) {
	b.Run("hot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mustEncode(b, smpp.NewSubmitSMResp("1234567890"))
		}
	})
	b.Run("gosmpp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := pdu.NewSubmitSMResp()
			_ = p.Fields().Set(pdufield.MessageID, "1234567890")
			mustEncode(b, p)
		}
	})
}

package smpp_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"

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

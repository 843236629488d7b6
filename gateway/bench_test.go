package gateway_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// BenchmarkGatewaySubmit measures durable acknowledgements: an ESME with
// 128 requests in flight submits through the gateway (fsync'd group
// commit) while the gateway relays to the simulator. Compare with
// BenchmarkDirectToSimulator, the same client and window against the
// simulator itself (no store), measured in the same run.
func BenchmarkGatewaySubmit(b *testing.B) {
	r := newRig(b, rigOpts{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		b.Fatal(err)
	}
	runSubmits(b, e)
}

// BenchmarkDirectToSimulator is the baseline: the ESME binds to the
// simulator directly.
func BenchmarkDirectToSimulator(b *testing.B) {
	sim := smpp.NewSimulator(smpp.SimOptions{DLRDelay: 10 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = sim.Serve(l) }()
	defer sim.Close()
	r := &rig{t: b, addr: l.Addr().String()}
	e, err := r.bind("any", "any", smpp.BindTransceiver)
	if err != nil {
		b.Fatal(err)
	}
	runSubmits(b, e)
}

func runSubmits(b *testing.B, e *esme) {
	var n atomic.Int64
	ctx := context.Background()
	b.SetParallelism(64) // 128 in flight on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := e.submit(ctx, submitSM("1069", fmt.Sprintf("138%08d", i), "benchmark text")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

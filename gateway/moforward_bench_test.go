package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReplyForward measures how fast stored replies reach an ESME's
// receiver: b.N replies are stored while no receiver is bound, then the
// receiver binds and the clock runs until it has taken them all. The
// ESME answers each deliver_sm after rtt, as one across a WAN would.
// window-1 is the forwarder as it was before delivery.mo_window (one
// reply at a time), the baseline of the same run. Reports replies a
// second and the process's CPU a reply (the simulator and the ESME
// included).
func BenchmarkReplyForward(b *testing.B) {
	for _, c := range []struct {
		window int
		rtt    time.Duration
	}{{1, 0}, {gateway.DefaultMOWindow, 0}, {1, 10 * time.Millisecond}, {gateway.DefaultMOWindow, 10 * time.Millisecond}} {
		window, rtt := c.window, c.rtt
		b.Run(fmt.Sprintf("window-%d/esme-rtt-%v", window, rtt), func(b *testing.B) {
			r, _ := twoWayRig(b, rigOpts{gwcfg: func(c *gateway.Config) { c.MOWindow = window }})
			waitReady(b, r)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := range b.N {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if err := r.sim.InjectMO(fmt.Sprintf("137%08d", i), "10657500112", "reply"); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			var got atomic.Int64
			done := make(chan struct{})
			b.ResetTimer()
			cpu0 := cpuNow(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			conn, err := smpp.Dial(ctx, smpp.ClientOptions{
				Addr: r.addr, SystemID: "alice", Password: "secret1", Kind: smpp.BindReceiver,
				Conn: smpp.ConnOptions{Window: 256, RespTimeout: 30 * time.Second},
				Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
					if rtt > 0 {
						time.Sleep(rtt) // the ESME's round trip, not synchronisation
					}
					if got.Add(1) == int64(b.N) {
						close(done)
					}
					return pdu.NewDeliverSMResp()
				}),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("the ESME took %d of %d replies", got.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/reply")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
		})
	}
}

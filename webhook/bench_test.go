package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/queue"
)

// BenchmarkSenderBesideIdleEnterprises delivers receipts of one enterprise
// to a fast endpoint while other enterprises each hold a receipt due an
// hour later (their endpoints failed: a retry waits out its backoff), as
// many as idle says. Before the sender read every enterprise's due
// receipts in a read transaction of its own at every pass, and it passes
// at every POST that ends: the cost of a receipt grew with the number of
// enterprises that had any receipt pending. Reports the process's CPU per
// receipt.
func BenchmarkSenderBesideIdleEnterprises(b *testing.B) {
	for _, idle := range []int{0, 1000} {
		b.Run("idle="+strconv.Itoa(idle), func(b *testing.B) {
			ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
			defer ok.Close()
			// The idle receipts are stored before the sender starts, so
			// that it never POSTs them.
			path := filepath.Join(b.TempDir(), "q.db")
			s, err := queue.Open(path, queue.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			later := time.Now().Add(time.Hour)
			for i := range idle {
				m := finalMessage(b, s, "idle"+strconv.Itoa(i), "http://127.0.0.1:9/", queue.StateDelivered)
				hs, err := s.DueHooks(m.Enterprise, time.Now().Add(time.Minute), 1, nil)
				if err != nil || len(hs) != 1 {
					b.Fatalf("idle hook: %v %v", hs, err)
				}
				if err := s.RetryHook(ctx, hs[0], later); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			r := start(b, path, Config{Workers: 64, PerEnterprise: 16})
			b.ResetTimer()
			cpu0 := cpuNow(b)
			for range b.N {
				finalMessage(b, r.store, "live", ok.URL, queue.StateDelivered)
			}
			deadline := time.Now().Add(time.Minute)
			for testutil.ToFloat64(r.snd.total.WithLabelValues("delivered")) < float64(b.N) {
				if time.Now().After(deadline) {
					b.Fatalf("%v of %d delivered", testutil.ToFloat64(r.snd.total.WithLabelValues("delivered")), b.N)
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/receipt")
		})
	}
}

func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReplies delivers one enterprise's replies to an endpoint that
// takes 20 ms to answer (a real one across a network), one a POST and
// in batches of up to 100 (reply_batch), with the default bounds (64
// workers, 16 an enterprise). The replies are stored as fast as one
// goroutine stores them; the time is until the last is delivered.
// Reports the process's CPU per reply and replies delivered a second.
func BenchmarkReplies(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				time.Sleep(20 * time.Millisecond) // the endpoint's latency, not synchronisation
			}))
			defer slow.Close()
			r := start(b, filepath.Join(b.TempDir(), "q.db"), Config{ReplyBatch: func(string) int { return batch }})
			b.ResetTimer()
			cpu0, t0 := cpuNow(b), time.Now()
			for range b.N {
				storeMO(b, r.store, "ent1", slow.URL)
			}
			deadline := time.Now().Add(5 * time.Minute)
			for testutil.ToFloat64(r.snd.replies.total.WithLabelValues("delivered")) < float64(b.N) {
				if time.Now().After(deadline) {
					b.Fatalf("%v of %d delivered", testutil.ToFloat64(r.snd.replies.total.WithLabelValues("delivered")), b.N)
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuNow(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/reply")
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "replies/s")
		})
	}
}

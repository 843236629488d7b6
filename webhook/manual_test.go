package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/queue"
)

// TestTestReceipt: a test receipt is one signed sample POST, a Batch of
// one for an enterprise that takes batches, reported with the endpoint's
// status; an error status and an unsigned enterprise are reported as
// such; nothing is stored.
func TestTestReceipt(t *testing.T) {
	batch := map[string]int{"BATCH": 50}
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{
		Secret: func(e string) string {
			if e == "UNSIGNED" {
				return ""
			}
			return "s3cret"
		},
		Batch: func(e string) int { return batch[e] },
	})
	rcv := newReceiver(t)
	ctx := context.Background()

	res, err := r.snd.Test(ctx, "ONE", rcv.URL)
	if err != nil || res.Err != nil || res.Status != 200 || !res.Signed || res.Batched || res.Duration <= 0 {
		t.Fatalf("Test = %+v, %v", res, err)
	}
	p := rcv.next(t)
	if !Verify("s3cret", p.ts, p.body, p.sig) {
		t.Errorf("signature %q does not verify", p.sig)
	}
	var rc Receipt
	if err := json.Unmarshal(p.body, &rc); err != nil || rc.ID != TestReceiptID || rc.State != "delivered" || rc.Delivered != 1 {
		t.Errorf("body %s: %+v, %v", p.body, rc, err)
	}

	if res, err = r.snd.Test(ctx, "BATCH", rcv.URL); err != nil || !res.Batched || res.Status != 200 {
		t.Fatalf("batched Test = %+v, %v", res, err)
	}
	var b Batch
	if p := rcv.next(t); json.Unmarshal(p.body, &b) != nil || len(b.Receipts) != 1 || b.Receipts[0].ID != TestReceiptID {
		t.Errorf("batched body %s", p.body)
	}

	if res, err = r.snd.Test(ctx, "UNSIGNED", rcv.URL); err != nil || res.Signed {
		t.Fatalf("unsigned Test = %+v, %v", res, err)
	}
	if p := rcv.next(t); p.sig != "" {
		t.Errorf("an enterprise without a secret got signature %q", p.sig)
	}

	rcv.mu.Lock()
	rcv.fail = []int{401}
	rcv.mu.Unlock()
	res, err = r.snd.Test(ctx, "ONE", rcv.URL)
	var st errStatus
	if err != nil || res.Status != 401 || !errors.As(res.Err, &st) {
		t.Fatalf("refused Test = %+v, %v", res, err)
	}
	rcv.next(t)
	if n, err := r.store.HookPending(); err != nil || n != 0 {
		t.Errorf("a test receipt was stored: %d pending, %v", n, err)
	}
}

// TestTestReceiptLimits: an enterprise gets testsPerMinute test receipts a
// minute and one at a time; testsInFlight are in flight over all
// enterprises; a refused one posts nothing. The refused address check
// applies to test receipts as to receipts.
func TestTestReceiptLimits(t *testing.T) {
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Timeout: 5 * time.Second})
	rcv := newReceiver(t)
	ctx := context.Background()
	for i := range testsPerMinute {
		if _, err := r.snd.Test(ctx, "A", rcv.URL); err != nil {
			t.Fatalf("test %d: %v", i+1, err)
		}
		rcv.next(t)
	}
	if _, err := r.snd.Test(ctx, "A", rcv.URL); !errors.Is(err, ErrTestBusy) {
		t.Fatalf("test %d in a minute: %v, want ErrTestBusy", testsPerMinute+1, err)
	}
	// A minute later the enterprise may test again.
	r.snd.manual.mu.Lock()
	for i := range r.snd.manual.recent["A"] {
		r.snd.manual.recent["A"][i] = r.snd.manual.recent["A"][i].Add(-time.Minute)
	}
	r.snd.manual.mu.Unlock()
	if _, err := r.snd.Test(ctx, "A", rcv.URL); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	rcv.next(t)

	// Endpoints that hold their answer: one test at a time an enterprise,
	// testsInFlight over all.
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // runs before slow.Close: handlers return
	type out struct {
		res TestResult
		err error
	}
	results := make(chan out, testsInFlight)
	for i := range testsInFlight {
		go func() {
			res, err := r.snd.Test(ctx, string(rune('B'+i)), slow.URL)
			results <- out{res, err}
		}()
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatalf("test %d did not reach the endpoint", i+1)
		}
	}
	if _, err := r.snd.Test(ctx, "B", slow.URL); !errors.Is(err, ErrTestBusy) {
		t.Errorf("a second test of an enterprise in flight: %v, want ErrTestBusy", err)
	}
	if _, err := r.snd.Test(ctx, "Z", rcv.URL); !errors.Is(err, ErrTestBusy) {
		t.Errorf("a test beyond %d in flight: %v, want ErrTestBusy", testsInFlight, err)
	}
	select {
	case <-arrived:
		t.Error("a refused test reached the endpoint")
	default:
	}
	for range testsInFlight {
		release <- struct{}{}
	}
	for range testsInFlight {
		if o := <-results; o.err != nil || o.res.Status != 200 {
			t.Errorf("held test: %+v, %v", o.res, o.err)
		}
	}
	if _, err := r.snd.Test(ctx, "B", rcv.URL); err != nil {
		t.Errorf("after the held tests ended: %v", err)
	}
	rcv.next(t)

	// A fresh endpoint, so that the POST dials (the check is at dial
	// time) instead of reusing a connection kept alive.
	r.snd.cfg.AllowPrivate = false
	res, err := r.snd.Test(ctx, "C", newReceiver(t).URL)
	if err != nil || !errors.Is(res.Err, ErrRefusedAddress) || res.Status != 0 {
		t.Errorf("loopback without allow_private: %+v, %v", res, err)
	}
}

// TestLastOutcome: Last tells how an enterprise's last POST of receipts
// ended, a failure with its error, then the delivery that followed; test
// receipts do not count, and an enterprise without receipts has none.
func TestLastOutcome(t *testing.T) {
	rcv := newReceiver(t, 503)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: time.Second, Poll: 10 * time.Millisecond})
	finalMessage(t, r.store, "ent1", rcv.URL+"/r", queue.StateDelivered)
	rcv.next(t)
	waitFor(t, func() (bool, string) {
		o, ok := lastPost(r.snd, "ent1")
		return ok && !o.Delivered && strings.Contains(o.Err, "503") && o.URL == rcv.URL+"/r" && o.Receipts == 1,
			fmt.Sprintf("after the 503: %+v, %v", o, ok)
	})
	rcv.next(t) // the retry, a second later
	waitFor(t, func() (bool, string) {
		o, ok := lastPost(r.snd, "ent1")
		return ok && o.Delivered && o.Err == "", fmt.Sprintf("after the retry: %+v, %v", o, ok)
	})
	if _, err := r.snd.Test(context.Background(), "ent2", rcv.URL); err != nil {
		t.Fatal(err)
	}
	rcv.next(t)
	if o, ok := lastPost(r.snd, "ent2"); ok {
		t.Errorf("a test receipt counted as the last POST: %+v", o)
	}
}

// lastPost is how enterprise's last POST by s ended; false if none.
func lastPost(s *Sender, enterprise string) (Outcome, bool) {
	rs := s.posts.recent(enterprise, false)
	if len(rs) == 0 {
		return Outcome{}, false
	}
	return rs[0], true
}

// TestFailingSince: an enterprise whose POSTs fail has a
// qxtd_receipt_webhook_failing_since_seconds series from its first failure
// in a row, kept through the next failure, gone once a POST is delivered;
// an enterprise whose POSTs are delivered has none.
func TestFailingSince(t *testing.T) {
	rcv := newReceiver(t, 503, 502)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 100 * time.Millisecond, Poll: 10 * time.Millisecond})
	finalMessage(t, r.store, "ent1", rcv.URL+"/r", queue.StateDelivered)
	since := func() map[string]float64 { return gauges(t, r.reg, "qxtd_receipt_webhook_failing_since_seconds") }
	first := rcv.next(t) // the 503
	var o Outcome
	waitFor(t, func() (bool, string) {
		o, _ = lastPost(r.snd, "ent1")
		return !o.Delivered && o.Err != "", fmt.Sprintf("after the 503: %+v", o)
	})
	want := float64(o.FailingSince.UnixNano()) / 1e9
	if got := since(); len(got) != 1 || got["ent1"] != want || o.FailingSince.Before(first.at.Add(-time.Second)) {
		t.Fatalf("after the first failure: %v, want ent1 %v", got, want)
	}
	rcv.next(t) // the 502
	waitFor(t, func() (bool, string) {
		o, _ = lastPost(r.snd, "ent1")
		return strings.Contains(o.Err, "502"), fmt.Sprintf("after the 502: %+v", o)
	})
	if got := since(); got["ent1"] != want || !o.At.After(o.FailingSince) {
		t.Fatalf("after the second failure: %v, want ent1 still %v (%+v)", got, want, o)
	}
	rcv.next(t) // delivered
	finalMessage(t, r.store, "ent2", rcv.URL+"/r", queue.StateDelivered)
	rcv.next(t)
	waitFor(t, func() (bool, string) {
		o1, _ := lastPost(r.snd, "ent1")
		o2, _ := lastPost(r.snd, "ent2")
		return o1.Delivered && o2.Delivered, fmt.Sprintf("after the deliveries: %+v %+v", o1, o2)
	})
	if got := since(); len(got) != 0 {
		t.Errorf("after the deliveries: %v, want no series", got)
	}
}

// gauges is the values of the gauge name in reg, by the value of its one
// label.
func gauges(t *testing.T, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestRetryNow: a receipt waiting out an hour's backoff is posted at once
// after RetryNow, without waiting for it; a second call within the minute
// is refused, another enterprise's is not.
func TestRetryNow(t *testing.T) {
	rcv := newReceiver(t, 503)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: time.Hour, Poll: 10 * time.Millisecond})
	finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("first POST answered %d", p.status)
	}
	waitFor(t, func() (bool, string) {
		sum, err := r.store.HookSummary("ent1", 10)
		return err == nil && sum.Retrying == 1 && sum.FirstDue.After(time.Now().Add(30*time.Minute)), fmt.Sprintf("retry not recorded: %+v, %v", sum, err)
	})
	moved, more, err := r.snd.RetryNow(context.Background(), "ent1")
	if err != nil || moved != 1 || more {
		t.Fatalf("RetryNow: %d, %v, %v", moved, more, err)
	}
	if p := rcv.next(t); p.status != 200 {
		t.Fatalf("the retry answered %d", p.status)
	}
	waitPending(t, r, 0)
	if _, _, err := r.snd.RetryNow(context.Background(), "ent1"); !errors.Is(err, ErrRetryBusy) {
		t.Errorf("a second call within the minute: %v, want ErrRetryBusy", err)
	}
	if moved, _, err := r.snd.RetryNow(context.Background(), "ent2"); err != nil || moved != 0 {
		t.Errorf("another enterprise: %d, %v", moved, err)
	}
}

// TestRetryNowChunked: RetryNow moves many receipts in store operations of
// retryNowChunk, so that no commit of it holds up the others' answers for
// long: one receipt more than a chunk takes two operations.
func TestRetryNowChunked(t *testing.T) {
	s, snd := retryingHooks(t, retryNowChunk+1)
	const n = retryNowChunk + 1
	ctx := context.Background()
	before := s.Stats().Ops
	moved, more, err := snd.RetryNow(ctx, "E")
	if err != nil || moved != n || more {
		t.Fatalf("RetryNow: %d, %v, %v; want %d and no more", moved, more, err, n)
	}
	if ops := s.Stats().Ops - before; ops != 2 {
		t.Errorf("%d receipts moved in %d store operations, want 2 of at most %d", n, ops, retryNowChunk)
	}
	if hs, _ := s.DueHooks("E", time.Now(), 0, nil); len(hs) != n {
		t.Errorf("%d due after RetryNow, want %d", len(hs), n)
	}
}

// TestRetryNowCap: one RetryNow moves at most retryNowMax receipts and
// says more wait; the rest keep their backoff.
func TestRetryNowCap(t *testing.T) {
	const n = retryNowMax + 1
	s, snd := retryingHooks(t, n)
	moved, more, err := snd.RetryNow(context.Background(), "E")
	if err != nil || moved != retryNowMax || !more {
		t.Fatalf("RetryNow: %d, %v, %v; want %d and more", moved, more, err, retryNowMax)
	}
	if hs, _ := s.DueHooks("E", time.Now(), 0, nil); len(hs) != retryNowMax {
		t.Errorf("%d due after RetryNow, want %d", len(hs), retryNowMax)
	}
	if sum, err := s.HookSummary("E", n+1); err != nil || sum.Pending != n || sum.Retrying != n {
		t.Errorf("summary %+v, %v; want all %d pending and retrying", sum, err, n)
	}
}

// retryingHooks is a store with n receipts of enterprise E waiting an hour
// for their retry, and a sender over it that is not run (nothing is
// posted).
func retryingHooks(t *testing.T, n int) (*queue.Store, *Sender) {
	t.Helper()
	s, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	snd, err := New(Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ms := make([]*queue.Message, n)
	for i := range ms {
		ms[i] = &queue.Message{Account: "u", Enterprise: "E", Dest: "13712345678", Upstream: "up",
			ReceiptURL: "https://example.com/r", Parts: []queue.Part{{Body: []byte("hi")}}}
	}
	if err := s.Enqueue(ctx, ms...); err != nil {
		t.Fatal(err)
	}
	// Failed from 16 goroutines, so that the store commits them in groups.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				if err := s.Fail(ctx, queue.Key{ID: ms[i].ID}, queue.StateRejected, "test", time.Now()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hs, err := s.DueHooks("E", time.Now(), 0, nil)
	if err != nil || len(hs) != n {
		t.Fatalf("due: %d, %v", len(hs), err)
	}
	later := make([]time.Time, n)
	for i := range later {
		later[i] = time.Now().Add(time.Hour)
	}
	if err := s.RetryHooks(ctx, hs, later); err != nil {
		t.Fatal(err)
	}
	return s, snd
}

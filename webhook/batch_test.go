package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/queue"
)

// dueBeforeStart stores n final messages of enterprise for each of urls
// (interleaved) before a sender runs, so that every receipt is due at
// the sender's first pass, and returns their ids.
func dueBeforeStart(t *testing.T, path, enterprise string, n int, urls ...string) []uint64 {
	t.Helper()
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for range n {
		for _, u := range urls {
			ids = append(ids, finalMessage(t, s, enterprise, u, queue.StateDelivered).ID)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// batchOf reads a batched POST's receipts' ids, checking its signature
// and that each is a whole receipt.
func batchOf(t *testing.T, p posted) []string {
	t.Helper()
	if !Verify("s3cret", p.ts, p.body, p.sig) {
		t.Fatalf("signature %q does not verify over %s", p.sig, p.body)
	}
	var b Batch
	if err := json.Unmarshal(p.body, &b); err != nil || len(b.Receipts) == 0 {
		t.Fatalf("body %s: not a batch of receipts (%v)", p.body, err)
	}
	var ids []string
	for _, rc := range b.Receipts {
		if rc.State == "" || rc.Recipient == "" || rc.Segments != 1 || rc.DoneAt.IsZero() {
			t.Errorf("receipt %+v", rc)
		}
		ids = append(ids, rc.ID)
	}
	return ids
}

// An enterprise with receipt_batch 10 gets the receipts due at once in
// POSTs of at most 10, those of one URL together, each receipt once.
func TestBatchedReceipts(t *testing.T) {
	a, b := newReceiver(t), newReceiver(t)
	path := filepath.Join(t.TempDir(), "q.db")
	ids := dueBeforeStart(t, path, "ent1", 12, a.URL+"/dlr", b.URL+"/dlr") // 12 each
	r := start(t, path, Config{Batch: func(e string) int {
		if e != "ent1" {
			t.Errorf("batch asked for %q", e)
		}
		return 10
	}})
	got := map[string]int{}
	for _, rcv := range []*receiver{a, b} {
		var sizes []int
		for n := 0; n < 12; {
			p := rcv.next(t)
			batch := batchOf(t, p)
			sizes = append(sizes, len(batch))
			for _, id := range batch {
				got[id]++
			}
			n += len(batch)
		}
		slices.Sort(sizes)
		if !slices.Equal(sizes, []int{2, 10}) {
			t.Errorf("%s got POSTs of %v receipts, want 10 and 2", rcv.URL, sizes)
		}
	}
	for _, id := range ids {
		if n := got[strconv.FormatUint(id, 10)]; n != 1 {
			t.Errorf("message %d: in %d POSTs, want 1", id, n)
		}
	}
	waitPending(t, r, 0)
	waitDelivered(t, r, float64(len(ids)))
	r.stop()
	for _, rcv := range []*receiver{a, b} {
		if n := len(rcv.got); n != 2 {
			t.Errorf("%s: %d POSTs, want 2", rcv.URL, n)
		}
	}
}

// A batch whose POST fails is retried receipt by receipt's backoff, and
// each receipt is still delivered once in the end; a receipt that
// becomes final alone goes in a batch of one (the body's form is the
// enterprise's, not the moment's).
func TestBatchedReceiptsRetried(t *testing.T) {
	rcv := newReceiver(t, 500)
	path := filepath.Join(t.TempDir(), "q.db")
	ids := dueBeforeStart(t, path, "ent1", 5, rcv.URL)
	r := start(t, path, Config{Batch: func(string) int { return 100 }, Backoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	first, second := rcv.next(t), rcv.next(t)
	if first.status != 500 || len(batchOf(t, first)) != 5 {
		t.Fatalf("first POST: status %d, %s; want 500 with all 5", first.status, first.body)
	}
	if second.status != 200 || len(batchOf(t, second)) != 5 || second.at.Sub(first.at) < 50*time.Millisecond {
		t.Fatalf("second POST after %v: status %d, %s; want 200 with all 5 after the backoff", second.at.Sub(first.at), second.status, second.body)
	}
	waitPending(t, r, 0)
	waitDelivered(t, r, float64(len(ids)))
	if n := testutil.ToFloat64(r.snd.total.WithLabelValues("failed")); n != 5 {
		t.Errorf("failed %v, want 5 (each receipt of the failed POST)", n)
	}
	// The store opened for this sender: one operation moved the failed
	// batch's five receipts to their retry, one recorded their delivery.
	if ops := r.store.Stats().Ops; ops != 2 {
		t.Errorf("%d store operations for a batch failed once and then delivered, want 2", ops)
	}
	m := finalMessage(t, r.store, "ent1", rcv.URL, queue.StateUndeliverable)
	p := rcv.next(t)
	if got := batchOf(t, p); !slices.Equal(got, []string{strconv.FormatUint(m.ID, 10)}) {
		t.Fatalf("a lone receipt went as %s, want a batch of it alone", p.body)
	}
	waitPending(t, r, 0)
}

// Receipts for as many URLs as messages (a receipt_url per send) go a
// POST each however large the batch, each once, within the enterprise's
// share of the workers.
func TestBatchedReceiptsManyURLs(t *testing.T) {
	rcv := newReceiver(t)
	path := filepath.Join(t.TempDir(), "q.db")
	var urls []string
	for i := range 30 {
		urls = append(urls, rcv.URL+"/dlr?i="+strconv.Itoa(i))
	}
	ids := dueBeforeStart(t, path, "ent1", 1, urls...)
	r := start(t, path, Config{Batch: func(string) int { return 100 }, Workers: 8, PerEnterprise: 2})
	got := map[string]int{}
	for range ids {
		for _, id := range batchOf(t, rcv.next(t)) {
			got[id]++
		}
	}
	for _, id := range ids {
		if n := got[strconv.FormatUint(id, 10)]; n != 1 {
			t.Errorf("message %d: %d times, want once", id, n)
		}
	}
	waitPending(t, r, 0)
	waitDelivered(t, r, float64(len(ids)))
}

// A backlog of receipts for an enterprise with the largest batch, to a
// slow endpoint: at most its share of the workers' POSTs of receipts
// (PerEnterprise × batch) are held at once (each a copy of its message),
// however many are due and however often the sender passes over them;
// then each is delivered once.
func TestBatchedReceiptsBoundedRead(t *testing.T) {
	const n, share = 10_000, 2
	release := make(chan struct{})
	var arrived, posts, receipts atomic.Int64
	seen := make(map[string]int)
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		arrived.Add(1)
		<-release // a slow endpoint: every worker's POST waits here
		var b Batch
		body, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("body %.100s: %v", body, err)
		}
		mu.Lock()
		for _, rc := range b.Receipts {
			seen[rc.ID]++
		}
		mu.Unlock()
		posts.Add(1)
		receipts.Add(int64(len(b.Receipts)))
	}))
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msgs := make([]*queue.Message, n)
	for i := range msgs {
		msgs[i] = &queue.Message{Account: "ent1-u", Enterprise: "ent1", Dest: "13712345678", Upstream: "up",
			ReceiptURL: srv.URL, SendAt: time.Now().Add(time.Hour), Parts: []queue.Part{{Body: []byte("hi")}}}
	}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := s.Cancel(ctx, m.ID, "ent1"); err != nil { // scheduled, then cancelled: final, its receipt due
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := start(t, path, Config{Batch: func(string) int { return MaxBatch }, Workers: 64, PerEnterprise: share, Poll: 5 * time.Millisecond})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before the sender's stop, which waits for its POSTs
	// Both POSTs the enterprise may have are waiting on the endpoint, and
	// the sender has passed over its receipts many times since.
	waitFor(t, func() (bool, string) {
		return arrived.Load() == share, fmt.Sprintf("%d POSTs arrived", arrived.Load())
	})
	passes := r.snd.passes.Load()
	waitFor(t, func() (bool, string) {
		return r.snd.passes.Load() >= passes+20, "the sender stopped passing"
	})
	if held := r.snd.maxHeld.Load(); held > share*MaxBatch {
		t.Errorf("%d receipts held at once, want at most %d (%d POSTs of %d)", held, share*MaxBatch, share, MaxBatch)
	}
	free()
	waitPending(t, r, 0)
	if got := receipts.Load(); got != n {
		t.Errorf("%d receipts POSTed, want %d", got, n)
	}
	mu.Lock()
	for _, m := range msgs {
		if c := seen[strconv.FormatUint(m.ID, 10)]; c != 1 {
			t.Errorf("message %d: %d times", m.ID, c)
			break
		}
	}
	mu.Unlock()
	// Once the endpoint answers, answered POSTs' receipts wait for the
	// acker's commit beside the next POSTs': more are held, still a
	// bounded number of POSTs' worth.
	t.Logf("%d receipts in %d POSTs; at most %d held at once over the run", n, posts.Load(), r.snd.maxHeld.Load())
}

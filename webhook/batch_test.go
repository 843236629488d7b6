package webhook

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
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

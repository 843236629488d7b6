package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/queue"
)

// storeMO stores a reply of enterprise to url ("" = no reply webhook),
// received at once.
func storeMO(t testing.TB, s *queue.Store, enterprise, url string) *queue.MO {
	t.Helper()
	m := &queue.MO{Enterprise: enterprise, Account: "demo", Extension: "12", Source: "13712345678", Dest: "10657500000112",
		Text: "收到", Upstream: "up", ReceivedAt: time.Now(), ReplyURL: url}
	if err := s.StoreMO(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitReplies waits until the store holds n reply webhooks.
func waitReplies(t *testing.T, r *rig, n int) {
	t.Helper()
	waitFor(t, func() (bool, string) {
		got, err := r.store.ReplyPending()
		return err == nil && got == n, fmt.Sprintf("replies pending %d (%v), want %d", got, err, n)
	})
}

func waitReplyCount(t *testing.T, r *rig, outcome string, n float64) {
	t.Helper()
	waitFor(t, func() (bool, string) {
		got := testutil.ToFloat64(r.snd.replies.total.WithLabelValues(outcome))
		return got == n, fmt.Sprintf("replies %s %v, want %v", outcome, got, n)
	})
}

func decodeReply(t *testing.T, p posted) Reply {
	t.Helper()
	var rp Reply
	if err := json.Unmarshal(p.body, &rp); err != nil {
		t.Fatalf("body %q: %v", p.body, err)
	}
	return rp
}

// TestReplySignedOnce: a reply stored with a reply_url is POSTed once, its
// body the Reply of the MO, signed under the enterprise's secret; the MO
// is then marked posted and nothing waits. A receipt goes beside it.
func TestReplySignedOnce(t *testing.T) {
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{})
	m := storeMO(t, r.store, "ent1", rcv.URL+"/mo")
	p := rcv.next(t)
	if !Verify("s3cret", p.ts, p.body, p.sig) {
		t.Fatalf("signature %q does not verify over %q", p.sig, p.body)
	}
	if p.event != EventReply {
		t.Errorf("%s: %q, want %q", EventHeader, p.event, EventReply)
	}
	want := Reply{ID: strconv.FormatUint(m.ID, 10), From: "13712345678", To: "10657500000112", Extension: "12",
		Account: "demo", Text: "收到", ReceivedAt: m.ReceivedAt}
	if got := decodeReply(t, p); got.ID != want.ID || got.From != want.From || got.To != want.To || got.Extension != want.Extension ||
		got.Account != want.Account || got.Text != want.Text || !got.ReceivedAt.Equal(want.ReceivedAt) {
		t.Fatalf("reply %+v, want %+v", got, want)
	}
	if bytes.Contains(p.body, []byte(`"optout"`)) {
		t.Errorf("a reply that is no opt-out says optout: %s", p.body)
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "delivered", 1)
	list, _, err := r.store.Inbox("ent1", queue.InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 || list[0].PostedAt.IsZero() {
		t.Fatalf("inbox %+v, %v: want the reply marked posted", list, err)
	}
	// The next POST is a receipt, not the reply again.
	fm := finalMessage(t, r.store, "ent1", rcv.URL+"/dlr", queue.StateDelivered)
	if p := rcv.next(t); p.receiptID != strconv.FormatUint(fm.ID, 10) || p.event != EventReceipt {
		t.Fatalf("second POST %q (%s %q), want the receipt of %d (%q)", p.body, EventHeader, p.event, fm.ID, EventReceipt)
	}
}

// TestReplyOptOutMarked: an opt-out reply (回复TD) says so in its POST,
// for the enterprise's system to mark the customer unsubscribed.
func TestReplyOptOutMarked(t *testing.T) {
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{})
	m := &queue.MO{Enterprise: "ent1", Source: "13712345678", Dest: "10657500000", Text: "TD", Upstream: "up",
		ReceivedAt: time.Now(), ReplyURL: rcv.URL + "/mo", OptOut: true}
	if err := r.store.StoreMO(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	p := rcv.next(t)
	if got := decodeReply(t, p); got.ID != strconv.FormatUint(m.ID, 10) || !got.OptOut || !bytes.Contains(p.body, []byte(`"optout":true`)) {
		t.Fatalf("the opt-out reply's POST: %s", p.body)
	}
}

// TestReplyRetryWithBackoff: a receiver answering 500 gets the reply again
// after the backoff, and the 200 delivers it.
func TestReplyRetryWithBackoff(t *testing.T) {
	rcv := newReceiver(t, 500)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	m := storeMO(t, r.store, "ent1", rcv.URL)
	a, b := rcv.next(t), rcv.next(t)
	if a.status != 500 || b.status != 200 {
		t.Fatalf("statuses %d %d", a.status, b.status)
	}
	if d := b.at.Sub(a.at); d < 50*time.Millisecond {
		t.Errorf("retried after %v, want ≥ 50ms", d)
	}
	if decodeReply(t, b).ID != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("retry %q", b.body)
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "delivered", 1)
	if n := testutil.ToFloat64(r.snd.replies.total.WithLabelValues("failed")); n != 1 {
		t.Errorf("failed %v, want 1", n)
	}
}

// TestReplyDurableAcrossRestart: a reply whose POST failed is posted after
// the store and the sender start again.
func TestReplyDurableAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503)
	r := start(t, path, Config{Backoff: 200 * time.Millisecond, Poll: 10 * time.Millisecond})
	m := storeMO(t, r.store, "ent1", rcv.URL)
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("first status %d", p.status)
	}
	waitFor(t, func() (bool, string) {
		rs, _, _ := r.store.DueReplies("ent1", time.Now().Add(time.Hour), 0, nil)
		return len(rs) == 1 && rs[0].Attempts == 1, "retry not recorded"
	})
	r.stop()
	r2 := start(t, path, Config{Poll: 10 * time.Millisecond})
	p := rcv.next(t)
	if p.status != 200 || decodeReply(t, p).ID != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("after restart: %+v", p)
	}
	waitReplies(t, r2, 0)
}

// TestReplyGiveUp: past MaxAge a failing reply is given up and counted;
// one whose enterprise removed its reply_url (Config.ReplyURL "") too,
// without a POST. The current reply_url is where a reply goes.
func TestReplyGiveUp(t *testing.T) {
	rcv := newReceiver(t, 500, 500, 500, 500, 500, 500, 500, 500)
	moved := newReceiver(t)
	urls := map[string]string{"ent1": rcv.URL, "ent3": moved.URL}
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 10 * time.Millisecond, MaxAge: 30 * time.Millisecond,
		Poll: 5 * time.Millisecond, ReplyURL: func(e string) string { return urls[e] }})
	storeMO(t, r.store, "ent1", rcv.URL)
	storeMO(t, r.store, "ent2", "http://198.51.100.1/gone") // ent2 has none now
	m3 := storeMO(t, r.store, "ent3", "http://198.51.100.1/old")
	if p := moved.next(t); decodeReply(t, p).ID != strconv.FormatUint(m3.ID, 10) {
		t.Fatalf("moved: %q", p.body)
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "gave_up", 2)
	waitReplyCount(t, r, "delivered", 1)
}

// TestReplyDeadEndpointIsolated: replies to a dead endpoint take at most
// PerEnterprise workers: another enterprise's reply still goes at once.
func TestReplyDeadEndpointIsolated(t *testing.T) {
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-hang:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(hang) })
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Workers: 4, PerEnterprise: 2, Timeout: 5 * time.Second, Poll: 10 * time.Millisecond})
	for range 20 {
		storeMO(t, r.store, "deadco", dead.URL)
	}
	began := time.Now()
	m := storeMO(t, r.store, "liveco", rcv.URL)
	if p := rcv.next(t); decodeReply(t, p).ID != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("got %q", p.body)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("live enterprise waited %v behind a dead endpoint", d)
	}
	r.snd.mu.Lock()
	n := r.snd.perEnt["deadco"]
	r.snd.mu.Unlock()
	if n > 2 {
		t.Errorf("%d POSTs in flight to the dead endpoint, want at most 2", n)
	}
}

// TestReplyPrivateAddressRefused: a reply to a loopback address is refused
// at dial time unless AllowPrivate, as a receipt is: retried, not posted.
func TestReplyPrivateAddressRefused(t *testing.T) {
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: time.Hour, Poll: 10 * time.Millisecond})
	r.snd.cfg.AllowPrivate = false
	storeMO(t, r.store, "ent1", rcv.URL)
	waitReplyCount(t, r, "failed", 1)
	select {
	case p := <-rcv.ch:
		t.Fatalf("posted to a loopback address: %q", p.body)
	default:
	}
	if _, err := r.snd.client.Post(rcv.URL, "application/json", nil); !errors.Is(err, ErrRefusedAddress) {
		t.Fatalf("direct POST: %v, want ErrRefusedAddress", err)
	}
}

// TestReplyOutcomes: each POST of a reply is recorded as a receipt POST
// is, apart from them: ReplyStatus has the 503 and then the delivery,
// newest first, the failure with since when; the receipts' status and the
// failing list (receipts only) have none of it; both come back after a
// restart.
func TestReplyOutcomes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503)
	r := start(t, path, Config{Backoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	storeMO(t, r.store, "ent1", rcv.URL+"/mo")
	if a, b := rcv.next(t), rcv.next(t); a.status != 503 || b.status != 200 {
		t.Fatalf("statuses %d %d", a.status, b.status)
	}
	waitReplies(t, r, 0)
	var st Status
	waitFor(t, func() (bool, string) {
		var err error
		st, err = r.snd.ReplyStatus("ent1")
		return err == nil && len(st.Recent) == 2, fmt.Sprintf("reply status %+v, %v", st, err)
	})
	check := func(when string, st Status) {
		t.Helper()
		last, first := st.Recent[0], st.Recent[1]
		if !last.Reply || !last.Delivered || last.Status != 200 || last.URL != rcv.URL+"/mo" || last.Err != "" || !last.FailingSince.IsZero() ||
			!first.Reply || first.Delivered || first.Status != 503 || first.Err == "" || !first.FailingSince.Equal(first.At) ||
			first.At.After(last.At) || first.Duration <= 0 || st.Pending != 0 {
			t.Errorf("%s: reply POSTs %+v", when, st.Recent)
		}
	}
	check("running", st)
	if rst, err := r.snd.Status("ent1"); err != nil || len(rst.Recent) != 0 {
		t.Errorf("receipts' status: %+v, %v", rst, err)
	}
	r.stop()
	r2 := start(t, path, Config{Poll: 10 * time.Millisecond})
	st, err := r2.snd.ReplyStatus("ent1")
	if err != nil || len(st.Recent) != 2 {
		t.Fatalf("after a restart: %+v, %v", st, err)
	}
	check("after a restart", st)
}

// repliesBeforeStart stores n replies of enterprise to url before a
// sender runs, so that every one is due at its first pass, and returns
// their ids.
func repliesBeforeStart(t *testing.T, path, enterprise, url string, n int) []string {
	t.Helper()
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range n {
		ids = append(ids, strconv.FormatUint(storeMO(t, s, enterprise, url).ID, 10))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// replyBatchOf reads a batched reply POST's ids, checking its signature,
// its event and that each entry is a whole reply.
func replyBatchOf(t *testing.T, p posted) []string {
	t.Helper()
	if !Verify("s3cret", p.ts, p.body, p.sig) || p.event != EventReply {
		t.Fatalf("POST %s: signature %q, %s %q", p.body, p.sig, EventHeader, p.event)
	}
	var b ReplyBatch
	if err := json.Unmarshal(p.body, &b); err != nil || len(b.Replies) == 0 {
		t.Fatalf("body %s: not a batch of replies (%v)", p.body, err)
	}
	var ids []string
	for _, rp := range b.Replies {
		if rp.From != "13712345678" || rp.Text != "收到" || rp.ReceivedAt.IsZero() {
			t.Errorf("reply %+v", rp)
		}
		ids = append(ids, rp.ID)
	}
	return ids
}

// TestBatchedReplies: an enterprise with reply_batch 10 gets the replies
// due at once in POSTs of at most 10, {"replies": [...]}, each reply
// once, and a POST takes one worker however many it carries; the status
// counts the replies a POST carried.
func TestBatchedReplies(t *testing.T) {
	rcv := newReceiver(t)
	path := filepath.Join(t.TempDir(), "q.db")
	ids := repliesBeforeStart(t, path, "ent1", rcv.URL+"/mo", 23)
	r := start(t, path, Config{Workers: 1, ReplyBatch: func(e string) int {
		if e != "ent1" {
			t.Errorf("reply batch asked for %q", e)
		}
		return 10
	}})
	got := map[string]int{}
	var sizes []int
	for n := 0; n < len(ids); {
		batch := replyBatchOf(t, rcv.next(t))
		sizes = append(sizes, len(batch))
		for _, id := range batch {
			got[id]++
		}
		n += len(batch)
	}
	if !slices.Equal(sizes, []int{10, 10, 3}) {
		t.Errorf("POSTs of %v replies, want 10, 10, 3", sizes)
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("reply %s: in %d POSTs, want 1", id, got[id])
		}
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "delivered", float64(len(ids)))
	if rs := r.snd.posts.recent("ent1", true); len(rs) != 3 || rs[0].Receipts != 3 || rs[2].Receipts != 10 {
		t.Errorf("recent reply POSTs %+v, want 3 of 3, 10, 10 replies (newest first)", rs)
	}
	// One that comes alone goes alone, in the enterprise's form.
	m := storeMO(t, r.store, "ent1", rcv.URL+"/mo")
	if batch := replyBatchOf(t, rcv.next(t)); len(batch) != 1 || batch[0] != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("a lone reply went as %v", batch)
	}
}

// TestBatchedRepliesRetried: a batch whose POST fails is retried on each
// reply's own backoff, counted per reply, and each reply is delivered
// once in the end.
func TestBatchedRepliesRetried(t *testing.T) {
	rcv := newReceiver(t, 500)
	path := filepath.Join(t.TempDir(), "q.db")
	ids := repliesBeforeStart(t, path, "ent1", rcv.URL, 5)
	r := start(t, path, Config{ReplyBatch: func(string) int { return 100 }, Backoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	first, second := rcv.next(t), rcv.next(t)
	if a, b := replyBatchOf(t, first), replyBatchOf(t, second); first.status != 500 || len(a) != 5 || second.status != 200 || !slices.Equal(a, b) {
		t.Fatalf("POSTs %d %v then %d %v; want 500 then 200, both with all 5 (%v)", first.status, a, second.status, b, ids)
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "delivered", 5)
	if n := testutil.ToFloat64(r.snd.replies.total.WithLabelValues("failed")); n != 5 {
		t.Errorf("failed %v, want 5 (one a reply)", n)
	}
}

// TestRetryRepliesNow: a reply waiting out an hour's backoff is posted at
// once after RetryRepliesNow. The limits are a kind's: the receipts'
// retry-now just before neither moves the reply nor blocks the replies',
// and a second replies' one within the minute is refused, another
// enterprise's is not.
func TestRetryRepliesNow(t *testing.T) {
	replies, receipts := newReceiver(t, 503), newReceiver(t, 503)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: time.Hour, Poll: 10 * time.Millisecond})
	storeMO(t, r.store, "ent1", replies.URL)
	finalMessage(t, r.store, "ent1", receipts.URL, queue.StateDelivered)
	if a, b := replies.next(t), receipts.next(t); a.status != 503 || b.status != 503 {
		t.Fatalf("first POSTs answered %d, %d", a.status, b.status)
	}
	waitingAnHour := func(sum queue.HookSummary, err error) bool {
		return err == nil && sum.Retrying == 1 && sum.FirstDue.After(time.Now().Add(30*time.Minute))
	}
	waitFor(t, func() (bool, string) {
		rs, rerr := r.store.ReplySummary("ent1", 10)
		hs, herr := r.store.HookSummary("ent1", 10)
		return waitingAnHour(rs, rerr) && waitingAnHour(hs, herr), fmt.Sprintf("retries not recorded: replies %+v, receipts %+v", rs, hs)
	})
	ctx := context.Background()
	if moved, _, err := r.snd.RetryNow(ctx, "ent1"); err != nil || moved != 1 {
		t.Fatalf("RetryNow of the receipts: %d, %v", moved, err)
	}
	if p := receipts.next(t); p.status != 200 {
		t.Fatalf("the receipt's retry answered %d", p.status)
	}
	if sum, err := r.store.ReplySummary("ent1", 10); !waitingAnHour(sum, err) {
		t.Fatalf("the receipts' retry-now moved the reply: %+v, %v", sum, err)
	}
	moved, more, err := r.snd.RetryRepliesNow(ctx, "ent1")
	if err != nil || moved != 1 || more {
		t.Fatalf("RetryRepliesNow right after the receipts': %d, %v, %v", moved, more, err)
	}
	if p := replies.next(t); p.status != 200 || p.event != EventReply {
		t.Fatalf("the reply's retry answered %d (%s)", p.status, p.event)
	}
	waitReplies(t, r, 0)
	if _, _, err := r.snd.RetryRepliesNow(ctx, "ent1"); !errors.Is(err, ErrRetryBusy) {
		t.Errorf("a second call within the minute: %v, want ErrRetryBusy", err)
	}
	if moved, _, err := r.snd.RetryRepliesNow(ctx, "ent2"); err != nil || moved != 0 {
		t.Errorf("another enterprise: %d, %v", moved, err)
	}
}

// TestReplyFailingSince: an enterprise whose reply POSTs fail has a
// qxtd_reply_webhook_failing_since_seconds series from its first failure
// in a row, kept through the next failure, and is in FailingReplies; not
// in the receipts' metric nor in Failing. A delivery ends both.
func TestReplyFailingSince(t *testing.T) {
	rcv := newReceiver(t, 503, 502)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 100 * time.Millisecond, Poll: 10 * time.Millisecond})
	storeMO(t, r.store, "ent1", rcv.URL)
	since := func() map[string]float64 { return gauges(t, r.reg, "qxtd_reply_webhook_failing_since_seconds") }
	rcv.next(t) // the 503
	var fs []Failing
	waitFor(t, func() (bool, string) {
		fs = r.snd.FailingReplies(10)
		return len(fs) == 1 && fs[0].Enterprise == "ent1" && fs[0].Last.Status == 503, fmt.Sprintf("after the 503: %+v", fs)
	})
	first := fs[0].Last.FailingSince
	want := float64(first.UnixNano()) / 1e9
	if got := since(); len(got) != 1 || got["ent1"] != want || !fs[0].Last.Reply {
		t.Fatalf("after the first failure: %v, want ent1 %v (%+v)", got, want, fs)
	}
	if got := gauges(t, r.reg, "qxtd_receipt_webhook_failing_since_seconds"); len(got) != 0 {
		t.Errorf("a failing reply endpoint in the receipts' metric: %v", got)
	}
	if fs := r.snd.Failing(10); len(fs) != 0 {
		t.Errorf("a failing reply endpoint in the receipts' failing list: %+v", fs)
	}
	rcv.next(t) // the 502
	waitFor(t, func() (bool, string) {
		fs = r.snd.FailingReplies(10)
		return len(fs) == 1 && fs[0].Last.Status == 502, fmt.Sprintf("after the 502: %+v", fs)
	})
	if got := since(); got["ent1"] != want || !fs[0].Last.FailingSince.Equal(first) {
		t.Fatalf("after the second failure: %v, want ent1 still %v (%+v)", got, want, fs)
	}
	rcv.next(t) // delivered
	waitFor(t, func() (bool, string) {
		fs = r.snd.FailingReplies(10)
		return len(fs) == 0, fmt.Sprintf("after the delivery: %+v", fs)
	})
	if got := since(); len(got) != 0 {
		t.Errorf("after the delivery: %v, want no series", got)
	}
}

// TestReplyFailingKeptAcrossRestart: a reply endpoint's failures are kept
// across a restart as a receipt endpoint's are: after it, with the reply's
// next POST an hour away, FailingReplies and the metric name the
// enterprise with the same start, and the failure after a retry-now
// carries the streak on.
func TestReplyFailingKeptAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503, 503)
	r := start(t, path, Config{Backoff: time.Hour, Poll: 10 * time.Millisecond, SaveEvery: 20 * time.Millisecond})
	storeMO(t, r.store, "ent1", rcv.URL)
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("status %d", p.status)
	}
	waitFor(t, func() (bool, string) {
		kept, err := r.store.HookPosts()
		return err == nil && len(kept["ent1"]) == 1 && kept["ent1"][0].Reply, fmt.Sprintf("kept %+v (%v)", kept, err)
	})
	fs := r.snd.FailingReplies(10)
	r.stop()
	if len(fs) != 1 {
		t.Fatalf("before the restart: %+v", fs)
	}
	since := fs[0].Last.FailingSince

	r2 := start(t, path, Config{Backoff: time.Hour, Poll: 10 * time.Millisecond})
	if fs := r2.snd.FailingReplies(10); len(fs) != 1 || fs[0].Enterprise != "ent1" || !fs[0].Last.FailingSince.Equal(since) {
		t.Fatalf("failing replies after the restart: %+v", fs)
	}
	if got := gauges(t, r2.reg, "qxtd_reply_webhook_failing_since_seconds"); len(got) != 1 || got["ent1"] != float64(since.UnixNano())/1e9 {
		t.Fatalf("the metric after the restart: %v, want ent1 since %v", got, since)
	}
	if moved, _, err := r2.snd.RetryRepliesNow(context.Background(), "ent1"); err != nil || moved != 1 {
		t.Fatalf("RetryRepliesNow: %d, %v", moved, err)
	}
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("status %d", p.status)
	}
	waitFor(t, func() (bool, string) {
		rs := r2.snd.posts.recent("ent1", true)
		return len(rs) == 2, fmt.Sprintf("%d recent, want 2", len(rs))
	})
	if fs := r2.snd.FailingReplies(10); len(fs) != 1 || !fs[0].Last.FailingSince.Equal(since) {
		t.Errorf("a failure after the restart: %+v, want failing since %v", fs, since)
	}
}

// TestReplyPostsBounded: replies are cut into POSTs of at most the batch,
// and of at most maxReplyBody bytes of text past a POST's first reply,
// whatever the batch: 1,000 replies of 4 KiB make POSTs of 64, not one of
// 4 MiB; a reply longer than the bound goes alone.
func TestReplyPostsBounded(t *testing.T) {
	of := func(n, size int) []queue.Reply {
		rs := make([]queue.Reply, n)
		for i := range rs {
			rs[i].MO = &queue.MO{ID: uint64(i + 1), Text: strings.Repeat("x", size)}
		}
		return rs
	}
	sizes := func(posts [][]queue.Reply) []int {
		var out []int
		for _, p := range posts {
			out = append(out, len(p))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		rs    []queue.Reply
		batch int
		want  []int
	}{
		{"one a POST", of(3, 10), 1, []int{1, 1, 1}},
		{"by the batch", of(23, 10), 10, []int{10, 10, 3}},
		{"by the bytes", of(130, 4096), 1000, []int{64, 64, 2}},
		{"a reply over the bound goes alone", of(2, maxReplyBody+1), 1000, []int{1, 1}},
		{"none", nil, 10, nil},
	} {
		posts := replyPosts(tc.rs, tc.batch)
		if got := sizes(posts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: POSTs of %v, want %v", tc.name, got, tc.want)
		}
		var ids []uint64
		for _, p := range posts {
			for _, rp := range p {
				ids = append(ids, rp.MO.ID)
			}
		}
		for i, id := range ids {
			if id != uint64(i+1) {
				t.Fatalf("%s: replies out of order or lost: %v", tc.name, ids)
			}
		}
	}
}

// TestBatchedRepliesBoundedBytes: long replies with reply_batch 1000 go
// in POSTs of at most maxReplyBody bytes of text, the read's rest left
// due for the next pass rather than posted beyond the enterprise's room;
// each reply once.
func TestBatchedRepliesBoundedBytes(t *testing.T) {
	rcv := newReceiver(t)
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 130
	long := strings.Repeat("长", 1365) // 4,095 bytes of UTF-8: as long as an MO gets
	for range n {
		m := &queue.MO{Enterprise: "ent1", Source: "13712345678", Dest: "10657500000112", Text: long,
			Upstream: "up", ReceivedAt: time.Now(), ReplyURL: rcv.URL}
		if err := s.StoreMO(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Two workers, one an enterprise: the POSTs the bytes' cut makes
	// beyond that room wait for the next pass, never two at once.
	var inflight, most atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if now := inflight.Add(1); now > most.Load() {
			most.Store(now)
		}
		defer inflight.Add(-1)
		time.Sleep(20 * time.Millisecond) // the endpoint's latency, not synchronisation
		rcv.Config.Handler.ServeHTTP(w, req)
	}))
	t.Cleanup(slow.Close)
	r := start(t, path, Config{Workers: 2, PerEnterprise: 1, ReplyBatch: func(string) int { return 1000 },
		ReplyURL: func(string) string { return slow.URL }})
	got := map[string]int{}
	var sizes []int
	for total := 0; total < n; {
		p := rcv.next(t)
		var b ReplyBatch
		if err := json.Unmarshal(p.body, &b); err != nil || len(b.Replies) == 0 {
			t.Fatalf("body of %d bytes: not a batch (%v)", len(p.body), err)
		}
		if len(p.body) > maxReplyBody+64<<10 {
			t.Errorf("a POST of %d bytes", len(p.body))
		}
		for _, rp := range b.Replies {
			got[rp.ID]++
		}
		sizes = append(sizes, len(b.Replies))
		total += len(b.Replies)
	}
	if !slices.Equal(sizes, []int{64, 64, 2}) || len(got) != n {
		t.Errorf("POSTs of %v replies, %d distinct; want 64, 64, 2 and %d", sizes, len(got), n)
	}
	waitReplies(t, r, 0)
	waitReplyCount(t, r, "delivered", n)
	if m := most.Load(); m != 1 {
		t.Errorf("%d POSTs of the enterprise at once, want 1 (webhooks.per_enterprise)", m)
	}
}

package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/webhook"
)

// TestReplyURLSelfService: an enterprise's admin sets and removes its
// reply_url over PATCH /v1/receipt-webhook, every member reads it, the
// receipt settings stay as they were; a URL that is not http(s) is refused
// 400 invalid as a receipt_url is; a plain user changes nothing; the
// operator sets it over the admin API too.
func TestReplyURLSelfService(t *testing.T) {
	r := newUserRig(t)
	alice, amy := r.keys["alice"], r.keys["amy"]
	recURL, repURL := "https://crm.example.com/receipts", "https://crm.example.com/replies"
	var rw ReceiptWebhook
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReceiptURL: &recURL}, &rw)
	r.wantError(http.StatusForbidden, "forbidden", "PATCH", "/v1/receipt-webhook", alice, ReceiptWebhookPatch{ReplyURL: &repURL})
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyURL: &repURL}, &rw)
	if rw.ReplyURL != repURL || rw.ReceiptURL != recURL {
		t.Fatalf("after PATCH reply_url: %+v", rw)
	}
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if rw.ReplyURL != repURL {
		t.Fatalf("a member reads %+v", rw)
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.ReplyURL != repURL || e.Receipt.URL != recURL {
		t.Fatalf("stored %+v", e.Receipt)
	}
	for _, bad := range []string{"ftp://example.com/", "https://u:p@example.com/", "not a url"} {
		r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyURL: &bad})
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.ReplyURL != repURL {
		t.Fatalf("a refused reply_url was stored: %+v", e.Receipt)
	}
	empty := ""
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyURL: &empty}, &rw)
	if rw.ReplyURL != "" || rw.ReceiptURL != recURL {
		t.Fatalf("after removing reply_url: %+v", rw)
	}
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["bob"], nil, &rw)
	if rw.ReplyURL != "" {
		t.Fatalf("B reads %+v", rw)
	}

	// The operator, over the admin API.
	r.srv.cfg.AdminToken = adminToken
	var e Enterprise
	r.must(http.StatusOK, "PATCH", "/admin/v1/enterprises/A", adminToken, EnterprisePatch{ReplyURL: &repURL}, &e)
	if e.ReplyURL != repURL {
		t.Fatalf("admin PATCH: %+v", e)
	}
	bad := "gopher://x/"
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/admin/v1/enterprises/A", adminToken, EnterprisePatch{ReplyURL: &bad})
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if rw.ReplyURL != repURL {
		t.Fatalf("after the operator's PATCH a member reads %+v", rw)
	}
}

// TestReplyBatchSelfService: reply_batch is set by the enterprise's admins
// (PATCH /v1/receipt-webhook) and by the operator, read back by members
// and the operator, 0 or 1 is one a POST, and outside 0–1000 refused.
func TestReplyBatchSelfService(t *testing.T) {
	r := newUserRig(t)
	alice, amy := r.keys["alice"], r.keys["amy"]
	n := 50
	r.wantError(http.StatusForbidden, "forbidden", "PATCH", "/v1/receipt-webhook", alice, ReceiptWebhookPatch{ReplyBatch: &n})
	var rw ReceiptWebhook
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyBatch: &n}, &rw)
	if rw.ReplyBatch != 50 || rw.ReceiptBatch != 0 {
		t.Fatalf("after PATCH reply_batch: %+v", rw)
	}
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if e, _ := r.pol.Lookup("A"); rw.ReplyBatch != 50 || e.Receipt.ReplyBatch != 50 || e.Receipt.Batch != 0 {
		t.Fatalf("a member reads %+v; stored %+v", rw, e.Receipt)
	}
	for _, bad := range []int{-1, 1001} {
		r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyBatch: &bad})
	}
	r.srv.cfg.AdminToken = adminToken
	var d EnterpriseDetail
	r.must(http.StatusOK, "GET", "/admin/v1/enterprises/A", adminToken, nil, &d)
	if d.Enterprise.ReplyBatch != 50 || d.Enterprise.ReceiptBatch != 1 {
		t.Fatalf("the operator reads %+v", d.Enterprise)
	}
	var e Enterprise
	zero := 0
	r.must(http.StatusOK, "PATCH", "/admin/v1/enterprises/A", adminToken, EnterprisePatch{ReplyBatch: &zero}, &e)
	if e.ReplyBatch != 1 {
		t.Fatalf("after the operator's reply_batch 0: %+v, want 1 (one a POST)", e)
	}
	big := 1001
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/admin/v1/enterprises/A", adminToken, EnterprisePatch{ReplyBatch: &big})
}

// TestReplyBodyIsInboxEntry: the body of a reply webhook has the fields
// of the reply's inbox entry, with the same values, "forwarded" aside.
func TestReplyBodyIsInboxEntry(t *testing.T) {
	m := &queue.MO{ID: 7, Enterprise: "A", Account: "demo", Extension: "12", Source: "13712345678", Dest: "10657500000112",
		Text: "收到", ReceivedAt: time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC), ForwardedAt: time.Now()}
	fields := func(v any) map[string]any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	inbox, hook := fields(inboxItem(m)), fields(webhook.ReplyOf(m))
	delete(inbox, "forwarded")
	if len(inbox) != len(hook) {
		t.Fatalf("inbox entry %v, reply body %v", inbox, hook)
	}
	for k, v := range inbox {
		if hook[k] != v {
			t.Errorf("%s: inbox %v, reply body %v", k, v, hook[k])
		}
	}
}

// storeReplies stores n replies of enterprise ent with a reply webhook,
// received from at on, one a second.
func storeReplies(t *testing.T, st *queue.Store, ent string, n int, at time.Time) {
	t.Helper()
	for i := range n {
		m := &queue.MO{Enterprise: ent, Source: "13712345678", Dest: "10657500000112", Text: "收到",
			ReceivedAt: at.Add(time.Duration(i) * time.Second), ReplyURL: "https://crm.example.com/mo"}
		if err := st.StoreMO(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplyStatus: GET /v1/receipt-webhook's reply_status counts the
// enterprise's replies waiting for their POST in the store (the ones
// that failed, the earliest due), not its receipts' nor another
// enterprise's replies; with a sender as without.
func TestReplyStatus(t *testing.T) {
	r := newUserRig(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	storeReplies(t, r.store, "A", 3, t0)
	storeReplies(t, r.store, "B", 2, t0.Add(-time.Hour))
	rs, _, err := r.store.DueReplies("A", time.Now(), 1, nil)
	if err != nil || len(rs) != 1 {
		t.Fatalf("due: %v, %v", rs, err)
	}
	if err := r.store.RetryReplies(t.Context(), rs, []time.Time{time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	check := func(name string) {
		t.Helper()
		var rw ReceiptWebhook
		r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["alice"], nil, &rw)
		st := rw.ReplyStatus
		if st.Pending != 3 || st.PendingMore || st.Retrying != 1 || st.FirstDueAt == nil || !st.FirstDueAt.Equal(t0.Add(time.Second)) || st.Partial {
			t.Errorf("%s: reply_status %+v, want 3 pending, 1 retrying, the first due at %v", name, st, t0.Add(time.Second))
		}
		if rw.Status.Pending != 0 {
			t.Errorf("%s: receipts' status %+v, want none pending", name, rw.Status)
		}
	}
	check("the store alone")
	hookSender(t, r, time.Hour) // not running: the replies wait
	check("with a sender")
}

// TestReplyStatusLastPost: reply_status tells a member how the last POSTs
// of replies ended: a 502, the reply retrying, then the delivery, and
// nothing pending; the receipts' status has none of them.
func TestReplyStatusLastPost(t *testing.T) {
	r := newUserRig(t)
	rcv, fail, posted := flakyEndpoint(t, http.StatusBadGateway)
	snd := hookSender(t, r, 100*time.Millisecond)
	url := rcv.URL + "/mo"
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", r.keys["amy"], ReceiptWebhookPatch{ReplyURL: &url}, nil)
	m := &queue.MO{Enterprise: "A", Source: "13712345678", Dest: "10657500000112", Text: "收到", ReceivedAt: time.Now(), ReplyURL: url}
	if err := r.store.StoreMO(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	get := func() (ReceiptWebhook, string) {
		var rw ReceiptWebhook
		b := r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["alice"], nil, &rw)
		return rw, string(b)
	}
	runSender(t, snd)
	<-posted
	waitUntil(t, func() (bool, string) {
		rw, b := get()
		st := rw.ReplyStatus
		return st.Pending == 1 && st.Retrying == 1 && st.Last != nil && !st.Last.Delivered && st.Last.Status == http.StatusBadGateway &&
			strings.Contains(st.Last.Error, "502") && st.Last.URL == url && st.Last.FailingSince != nil, "after the 502: " + b
	})
	fail.Store(false)
	<-posted
	waitUntil(t, func() (bool, string) {
		rw, b := get()
		st := rw.ReplyStatus
		return st.Pending == 0 && st.Last != nil && st.Last.Delivered && st.Last.FailingSince == nil && len(st.Recent) == 2, "after the delivery: " + b
	})
	rw, b := get()
	if rw.Status.Last != nil || len(rw.Status.Recent) != 0 || strings.Contains(b, `"receipts":`) {
		t.Errorf("the receipts' status, or a reply's POST with a receipts count: %s", b)
	}
}

// TestReplyWebhookRetryNow: a reply whose POST failed waits out its
// backoff (an hour here); POST /v1/receipt-webhook/retry with "kind":
// "reply" makes it due at once and it is delivered. Without a kind (or
// "receipt") the receipts' retry is done as before and the reply keeps
// waiting; it does not hold up the replies' one just after. A second
// replies' retry within the minute is refused, on the operator's route
// too; another kind is invalid; a plain user may not.
func TestReplyWebhookRetryNow(t *testing.T) {
	r := newUserRig(t)
	r.srv.cfg.AdminToken = adminToken
	rcv, fail, posted := flakyEndpoint(t, http.StatusServiceUnavailable)
	runSender(t, hookSender(t, r, time.Hour))
	url := rcv.URL + "/mo"
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", r.keys["amy"], ReceiptWebhookPatch{ReplyURL: &url}, nil)
	m := &queue.MO{Enterprise: "A", Source: "13712345678", Dest: "10657500000112", Text: "收到", ReceivedAt: time.Now(), ReplyURL: url}
	if err := r.store.StoreMO(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	<-posted
	replies := func() ReceiptStatus {
		var rw ReceiptWebhook
		r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["amy"], nil, &rw)
		return rw.ReplyStatus
	}
	waitingAnHour := func(st ReceiptStatus) bool {
		return st.Retrying == 1 && st.FirstDueAt != nil && st.FirstDueAt.After(time.Now().Add(30*time.Minute))
	}
	waitUntil(t, func() (bool, string) {
		st := replies()
		return waitingAnHour(st), fmt.Sprintf("waiting an hour: %+v", st)
	})
	fail.Store(false)
	reply := ReceiptWebhookRetryIn{Kind: "reply"}
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/receipt-webhook/retry", r.keys["alice"], reply)
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/receipt-webhook/retry", r.keys["amy"], ReceiptWebhookRetryIn{Kind: "mo"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/enterprises/A/receipt-retry", adminToken, ReceiptWebhookRetryIn{Kind: "replies"})

	// The receipts' retry, as an old client asks it (no body): the reply is left waiting.
	var rr ReceiptWebhookRetry
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/retry", r.keys["amy"], nil, &rr)
	if rr.Kind != "receipt" || rr.Rescheduled != 0 {
		t.Fatalf("receipts' retry: %+v", rr)
	}
	if st := replies(); !waitingAnHour(st) {
		t.Fatalf("the receipts' retry moved the reply: %+v", st)
	}
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/v1/receipt-webhook/retry", r.keys["amy"], ReceiptWebhookRetryIn{Kind: "receipt"})

	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/retry", r.keys["amy"], reply, &rr)
	if rr.Kind != "reply" || rr.Rescheduled != 1 || rr.More || rr.Partial {
		t.Fatalf("replies' retry: %+v", rr)
	}
	select {
	case <-posted:
	case <-time.After(10 * time.Second):
		t.Fatal("the reply was not posted again at once")
	}
	waitUntil(t, func() (bool, string) {
		st := replies()
		return st.Pending == 0 && st.Last != nil && st.Last.Delivered, fmt.Sprintf("after the retry: %+v", st)
	})
	e := r.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/v1/receipt-webhook/retry", r.keys["amy"], reply)
	if !strings.Contains(e.Error.Message, "replies") {
		t.Errorf("the refusal says %q: name the replies", e.Error.Message)
	}
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/admin/v1/enterprises/A/receipt-retry", adminToken, reply)
}

// TestStatusReplyWebhooksFailing: GET /admin/v1/status lists an enterprise
// whose reply endpoint fails in reply_webhooks_failing (its last POST, since
// when), not in receipt_webhooks_failing, and drops it once a reply is
// delivered.
func TestStatusReplyWebhooksFailing(t *testing.T) {
	r := newUserRig(t)
	r.srv.cfg.AdminToken = adminToken
	rcv, fail, posted := flakyEndpoint(t, http.StatusBadGateway)
	runSender(t, hookSender(t, r, 50*time.Millisecond))
	url := rcv.URL + "/mo"
	m := &queue.MO{Enterprise: "A", Source: "13712345678", Dest: "10657500000112", Text: "收到", ReceivedAt: time.Now(), ReplyURL: url}
	if err := r.store.StoreMO(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	<-posted
	var st SystemStatus
	waitUntil(t, func() (bool, string) {
		b := r.must(http.StatusOK, "GET", "/admin/v1/status", adminToken, nil, &st)
		return len(st.ReplyWebhooksFailing) == 1, "reply_webhooks_failing: " + string(b)
	})
	f := st.ReplyWebhooksFailing[0]
	if f.Enterprise != "A" || f.Last.Status != http.StatusBadGateway || f.Last.FailingSince == nil || f.Last.URL != url || f.Last.Receipts != 0 ||
		len(st.ReceiptWebhooksFailing) != 0 {
		t.Fatalf("status: %+v", st)
	}
	fail.Store(false)
	waitUntil(t, func() (bool, string) {
		b := r.must(http.StatusOK, "GET", "/admin/v1/status", adminToken, nil, &st)
		return len(st.ReplyWebhooksFailing) == 0, "after the delivery: " + string(b)
	})
}

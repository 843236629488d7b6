package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/webhook"
)

// TestReceiptWebhookSelfService: every member reads the enterprise's
// receipt webhook; its admins set the URL and batch, generate a secret
// (shown once, then only "signed") and send a test receipt that arrives
// signed with that secret, as a batch of one when the batch is above 1;
// the policy's rules refuse a bad URL or batch; a plain user changes
// nothing.
func TestReceiptWebhookSelfService(t *testing.T) {
	r := newUserRig(t)
	snd, err := webhook.New(webhook.Config{Store: r.store, AllowPrivate: true,
		Secret: func(code string) string {
			e, _ := r.pol.Lookup(code)
			return e.Receipt.Secret
		},
		Previous: func(code string) string {
			e, _ := r.pol.Lookup(code)
			return e.Receipt.PreviousSecret(time.Now())
		},
		Batch: func(code string) int {
			e, _ := r.pol.Lookup(code)
			return e.Receipt.Batch
		},
		ReplyBatch: func(code string) int {
			e, _ := r.pol.Lookup(code)
			return e.Receipt.ReplyBatch
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.cfg.Webhooks = snd
	type got struct {
		body                 []byte
		ts, sig, prev, event string
	}
	posts := make(chan got, 4)
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		posts <- got{body: b, ts: req.Header.Get("X-Qxtd-Timestamp"), sig: req.Header.Get("X-Qxtd-Signature"),
			prev: req.Header.Get("X-Qxtd-Signature-Previous"), event: req.Header.Get(webhook.EventHeader)}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(rcv.Close)
	alice, amy := r.keys["alice"], r.keys["amy"]

	var rw ReceiptWebhook
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if !reflect.DeepEqual(rw, ReceiptWebhook{}) {
		t.Fatalf("fresh enterprise: %+v", rw)
	}
	url := rcv.URL + "/receipts"
	r.wantError(http.StatusForbidden, "forbidden", "PATCH", "/v1/receipt-webhook", alice, ReceiptWebhookPatch{ReceiptURL: &url})
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/receipt-webhook/secret", alice, nil)
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/receipt-webhook/test", alice, ReceiptWebhookTestIn{URL: url})

	batch := 20
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReceiptURL: &url, ReceiptBatch: &batch}, &rw)
	if rw.ReceiptURL != url || rw.ReceiptBatch != 20 || rw.Signed {
		t.Fatalf("after PATCH: %+v", rw)
	}
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if rw.ReceiptURL != url || rw.ReceiptBatch != 20 {
		t.Fatalf("a member reads %+v", rw)
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.URL != url || e.Receipt.Batch != 20 {
		t.Fatalf("stored %+v", e.Receipt)
	}
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{})
	ftp, big := "ftp://example.com/", 1001
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReceiptURL: &ftp})
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReceiptBatch: &big})

	var sec ReceiptWebhookSecret
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/secret", amy, nil, &sec)
	if !strings.HasPrefix(sec.Secret, "whsec_") {
		t.Fatalf("secret %q", sec.Secret)
	}
	b := r.must(http.StatusOK, "GET", "/v1/receipt-webhook", amy, nil, &rw)
	if !rw.Signed || strings.Contains(string(b), sec.Secret) || sec.PreviousUntil != nil || rw.PreviousUntil != nil {
		t.Fatalf("after the first secret: %+v, %s", sec, b)
	}
	// A rotation: the new secret signs X-Qxtd-Signature, the replaced one
	// X-Qxtd-Signature-Previous for a day.
	old := sec.Secret
	before := time.Now()
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/secret", amy, nil, &sec)
	day := func(u *time.Time) bool {
		return u != nil && !u.Before(before.Add(policy.ReceiptSecretOverlap-time.Second)) && !u.After(time.Now().Add(policy.ReceiptSecretOverlap))
	}
	b = r.must(http.StatusOK, "GET", "/v1/receipt-webhook", alice, nil, &rw)
	if sec.Secret == old || !day(sec.PreviousUntil) || !day(rw.PreviousUntil) || strings.Contains(string(b), old) {
		t.Fatalf("after a rotation: %+v, %s", sec, b)
	}

	// The test receipt: to the enterprise's URL, signed, a batch of one.
	var tr ReceiptWebhookTest
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/test", amy, nil, &tr)
	if !tr.Delivered || tr.Status != http.StatusNoContent || !tr.Signed || !tr.SignedPrevious || !tr.Batched || tr.URL != url || tr.Error != "" {
		t.Fatalf("test: %+v", tr)
	}
	p := <-posts
	if !webhook.Verify(sec.Secret, p.ts, p.body, p.sig) {
		t.Errorf("the test receipt's signature does not verify with the secret shown: %s", p.sig)
	}
	if !webhook.Verify(old, p.ts, p.body, p.prev) || webhook.Verify(old, p.ts, p.body, p.sig) {
		t.Errorf("X-Qxtd-Signature-Previous %q does not verify with the replaced secret, or the new one's does", p.prev)
	}
	var bt webhook.Batch
	if err := json.Unmarshal(p.body, &bt); err != nil || len(bt.Receipts) != 1 || bt.Receipts[0].ID != webhook.TestReceiptID {
		t.Errorf("test body %s", p.body)
	}

	if p.event != webhook.EventReceipt || tr.Kind != "receipt" {
		t.Errorf("test receipt: %s %q, kind %q", webhook.EventHeader, p.event, tr.Kind)
	}

	// A test reply: to the URL named (no reply_url is set), signed, the
	// reply webhook's body and event; a kind that is neither is refused.
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{Kind: "reply"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{URL: rcv.URL + "/mo", Kind: "mo"})
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{URL: rcv.URL + "/mo", Kind: "reply"}, &tr)
	if !tr.Delivered || tr.Kind != "reply" || !tr.Signed || tr.Batched {
		t.Fatalf("test reply: %+v", tr)
	}
	p = <-posts
	var reply webhook.Reply
	if err := json.Unmarshal(p.body, &reply); err != nil || reply.ID != webhook.TestReceiptID || reply.Text == "" || p.event != webhook.EventReply ||
		!webhook.Verify(sec.Secret, p.ts, p.body, p.sig) {
		t.Errorf("test reply: %s %q, body %s", webhook.EventHeader, p.event, p.body)
	}
	// With a reply_batch, the test reply is shaped as the replies are: a
	// batch of one.
	ten := 10
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReplyBatch: &ten}, &rw)
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{URL: rcv.URL + "/mo", Kind: "reply"}, &tr)
	if !tr.Delivered || tr.Kind != "reply" || !tr.Batched {
		t.Fatalf("test reply with reply_batch 10: %+v", tr)
	}
	p = <-posts
	var replies webhook.ReplyBatch
	if err := json.Unmarshal(p.body, &replies); err != nil || len(replies.Replies) != 1 || replies.Replies[0].ID != webhook.TestReceiptID ||
		p.event != webhook.EventReply {
		t.Errorf("test reply with reply_batch 10: %s %q, body %s", webhook.EventHeader, p.event, p.body)
	}

	// An endpoint that refuses: reported, not an API error.
	status.Store(http.StatusUnauthorized)
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{URL: rcv.URL + "/other"}, &tr)
	if tr.Delivered || tr.Status != http.StatusUnauthorized || tr.Error == "" {
		t.Fatalf("refused test: %+v", tr)
	}
	<-posts
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/receipt-webhook/test", amy, ReceiptWebhookTestIn{URL: "gopher://x/"})

	// Removing the URL keeps the batch and the secret; a test then needs one named.
	empty := ""
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", amy, ReceiptWebhookPatch{ReceiptURL: &empty}, &rw)
	if rw.ReceiptURL != "" || rw.ReceiptBatch != 20 || !rw.Signed {
		t.Fatalf("after removing the URL: %+v", rw)
	}
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/receipt-webhook/test", amy, nil)

	// Another enterprise's admin sees and changes only its own.
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["bob"], nil, &rw)
	if rw.Signed || rw.ReceiptBatch != 0 {
		t.Fatalf("B reads A's settings: %+v", rw)
	}

	// The operator's webhooks.secret_overlap: a week, from both routes.
	week := 7 * 24 * time.Hour
	r.srv.cfg.ReceiptSecretOverlap, r.srv.cfg.AdminToken = week, adminToken
	inWeek := func(u *time.Time, from time.Time) bool {
		return u != nil && !u.Before(from.Add(week-time.Second)) && !u.After(time.Now().Add(week))
	}
	before = time.Now()
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/secret", amy, nil, &sec)
	if !inWeek(sec.PreviousUntil, before) {
		t.Errorf("a rotation with a week's overlap: previous until %v", sec.PreviousUntil)
	}
	var as ReceiptSecret
	before = time.Now()
	r.must(http.StatusOK, "POST", "/admin/v1/enterprises/A/receipt-secret", adminToken, nil, &as)
	if !inWeek(as.PreviousUntil, before) {
		t.Errorf("the operator's rotation with a week's overlap: previous until %v", as.PreviousUntil)
	}
}

// TestReceiptWebhookStatus: GET /v1/receipt-webhook tells a member what
// waits and how the last POST ended: a receipt pending from when it was
// due, then failing (retrying, with the endpoint's error), then
// delivered.
func TestReceiptWebhookStatus(t *testing.T) {
	r := newUserRig(t)
	rcv, fail, posted := flakyEndpoint(t, http.StatusBadGateway)
	snd := hookSender(t, r, 100*time.Millisecond)
	url := rcv.URL + "/st"
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", r.keys["amy"], ReceiptWebhookPatch{ReceiptURL: &url}, nil)
	status := func() ReceiptStatus {
		var rw ReceiptWebhook
		r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["alice"], nil, &rw)
		return rw.Status
	}
	if st := status(); st.Pending != 0 || st.Last != nil || st.FirstDueAt != nil {
		t.Fatalf("before any send: %+v", st)
	}
	before := time.Now()
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "回执状态"})
	waitUntil(t, func() (bool, string) {
		st := status()
		return st.Pending == 1 && st.Retrying == 0 && st.FirstDueAt != nil && !st.FirstDueAt.Before(before.Truncate(time.Second)),
			fmt.Sprintf("the final receipt, not sent yet: %+v", st)
	})

	runSender(t, snd)
	<-posted
	waitUntil(t, func() (bool, string) {
		st := status()
		return st.Pending == 1 && st.Retrying == 1 && st.Last != nil && !st.Last.Delivered && strings.Contains(st.Last.Error, "502") && st.Last.URL == url &&
				st.Last.FailingSince != nil && !st.Last.FailingSince.After(st.Last.At),
			fmt.Sprintf("after the 502: %+v %+v", st, st.Last)
	})
	fail.Store(false)
	<-posted
	waitUntil(t, func() (bool, string) {
		st := status()
		return st.Pending == 0 && st.Last != nil && st.Last.Delivered && st.Last.Receipts == 1 && st.Last.FailingSince == nil,
			fmt.Sprintf("after the delivery: %+v %+v", st, st.Last)
	})
	// The last POSTs, newest first: the delivery, then the 502.
	st := status()
	if len(st.Recent) != 2 || !st.Recent[0].Delivered || st.Recent[0].Status != http.StatusNoContent && st.Recent[0].Status != http.StatusOK ||
		st.Recent[1].Delivered || st.Recent[1].Status != http.StatusBadGateway || st.Recent[1].FailingSince == nil ||
		st.Recent[0].At.Before(st.Recent[1].At) || st.Recent[1].DurationMS <= 0 {
		t.Errorf("recent POSTs: %+v", st.Recent)
	}
}

// waitUntil polls cond (an HTTP answer: there is no event to wait on)
// until it holds, for at most 10 s.
func waitUntil(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReceiptWebhookRetryNow: after a failed POST a receipt waits out its
// backoff (an hour here); an admin's POST /v1/receipt-webhook/retry makes
// it due at once and it is delivered; a second call within the minute is
// refused, and a plain user may not.
func TestReceiptWebhookRetryNow(t *testing.T) {
	r := newUserRig(t)
	rcv, fail, posted := flakyEndpoint(t, http.StatusServiceUnavailable)
	runSender(t, hookSender(t, r, time.Hour))
	url := rcv.URL + "/later"
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", r.keys["amy"], ReceiptWebhookPatch{ReceiptURL: &url}, nil)
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "稍后重试"})
	<-posted
	status := func() ReceiptStatus {
		var rw ReceiptWebhook
		r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["amy"], nil, &rw)
		return rw.Status
	}
	waitUntil(t, func() (bool, string) {
		st := status()
		return st.Retrying == 1 && st.FirstDueAt != nil && st.FirstDueAt.After(time.Now().Add(30*time.Minute)), fmt.Sprintf("waiting an hour: %+v", st)
	})
	fail.Store(false)
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/receipt-webhook/retry", r.keys["alice"], nil)
	var rr ReceiptWebhookRetry
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/retry", r.keys["amy"], nil, &rr)
	if rr.Rescheduled != 1 || rr.More {
		t.Fatalf("retry: %+v", rr)
	}
	select {
	case <-posted:
	case <-time.After(10 * time.Second):
		t.Fatal("the receipt was not posted again at once")
	}
	waitUntil(t, func() (bool, string) {
		st := status()
		return st.Pending == 0 && st.Last != nil && st.Last.Delivered, fmt.Sprintf("after the retry: %+v", st)
	})
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/v1/receipt-webhook/retry", r.keys["amy"], nil)
}

// flakyEndpoint is a receipt endpoint on loopback that answers status
// while fail holds (from the start), 200 after; each POST is signalled on
// posted, up to 4 unread (one more is not: a test that failed and stopped
// reading does not hold the server's Close for ever).
func flakyEndpoint(t *testing.T, status int) (srv *httptest.Server, fail *atomic.Bool, posted chan struct{}) {
	t.Helper()
	fail, posted = new(atomic.Bool), make(chan struct{}, 4)
	fail.Store(true)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(status)
		}
		select {
		case posted <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	return srv, fail, posted
}

// hookSender is the rig's receipt webhook sender (loopback allowed), its
// first retry backoff after a failed POST, not yet running.
func hookSender(t *testing.T, r *userRig, backoff time.Duration) *webhook.Sender {
	t.Helper()
	snd, err := webhook.New(webhook.Config{Store: r.store, AllowPrivate: true, Backoff: backoff, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.srv.cfg.Webhooks = snd
	r.hooks.Store(snd)
	return snd
}

// runSender runs snd until the test ends.
func runSender(t *testing.T, snd *webhook.Sender) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); snd.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

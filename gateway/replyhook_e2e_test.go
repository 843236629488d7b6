package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// hookPost is one POST a reply receiver got.
type hookPost struct {
	body    []byte
	ts, sig string
}

// replyReceiver gives E1 a reply_url (signed with secret) served by an
// endpoint whose POSTs come out of the channel, and runs the webhook
// sender over the rig's store until the test ends.
func replyReceiver(t *testing.T, r *rig, pol *policy.Policy, secret string) <-chan hookPost {
	t.Helper()
	posts := make(chan hookPost, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		posts <- hookPost{body: b, ts: req.Header.Get("X-Qxtd-Timestamp"), sig: req.Header.Get(webhook.SignatureHeader)}
	}))
	t.Cleanup(rcv.Close)
	amy := policy.Actor{Enterprise: "E1", Admin: true, Name: "amy"}
	if _, err := pol.SetReceiptHook(amy, "E1", func(h *policy.ReceiptHook) error {
		h.ReplyURL, h.Secret = rcv.URL+"/mo", secret
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	snd, err := webhook.New(webhook.Config{Store: r.store, AllowPrivate: true, Poll: 10 * time.Millisecond,
		Registerer: prometheus.NewRegistry(),
		Secret: func(code string) string {
			e, _ := pol.Lookup(code)
			return e.Receipt.Secret
		},
		ReplyURL: func(code string) string {
			e, _ := pol.Lookup(code)
			return e.Receipt.ReplyURL
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.store.SetReplyCallback(snd.RepliesReady)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); snd.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return posts
}

// TestReplyWebhookThroughGateway: a handset's reply to E1, which has a
// reply_url, comes in from the SMSC through the real gateway, is POSTed
// once to the enterprise's endpoint with the reply's fields and a valid
// signature, and still reaches alice's SMPP receiver and the inbox; a
// reply to E2, which has none, is forwarded and listed as before with
// nothing queued for a POST.
func TestReplyWebhookThroughGateway(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	const secret = "whsec_replies"
	posts := replyReceiver(t, r, pol, secret)

	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := r.bind("bob", "secret2", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	if err := r.sim.InjectMO("13712345678", "10657500112", "收到"); err != nil {
		t.Fatal(err) // acknowledged to the SMSC: stored, with its key
	}
	if err := r.sim.InjectMO("13923412345", "106575002", "to bob"); err != nil {
		t.Fatal(err)
	}

	var p hookPost
	select {
	case p = <-posts:
	case <-time.After(10 * time.Second):
		t.Fatal("no reply POSTed within 10s")
	}
	if !webhook.Verify(secret, p.ts, p.body, p.sig) {
		t.Fatalf("signature %q does not verify over %q", p.sig, p.body)
	}
	var got webhook.Reply
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatal(err)
	}
	list, _, err := r.store.Inbox("E1", queue.InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("E1 inbox %+v, %v", list, err)
	}
	if got.ID != strconv.FormatUint(list[0].ID, 10) || got.From != "13712345678" || got.To != "10657500112" ||
		got.Extension != "12" || got.Account != "alice" || got.Text != "收到" || got.ReceivedAt.IsZero() {
		t.Fatalf("posted %+v", got)
	}
	// SMPP forwarding goes on beside it.
	if m := alice.waitMOs(t, 1)[0]; m.Dest != "10657500112" || moText(t, m) != "收到" {
		t.Fatalf("alice got %+v", m)
	}
	if m := bob.waitMOs(t, 1)[0]; moText(t, m) != "to bob" {
		t.Fatalf("bob got %+v", m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, _, err = r.store.Inbox("E1", queue.InboxFilter{}, 0, 10)
		if err == nil && len(list) == 1 && !list[0].PostedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("E1's reply not marked posted: %+v, %v", list, err)
		}
		waitABit(context.Background())
	}
	// E2 has no reply_url: its reply is listed, nothing waits for a POST,
	// and the endpoint got E1's reply alone.
	list, _, err = r.store.Inbox("E2", queue.InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 || list[0].ReplyURL != "" {
		t.Fatalf("E2 inbox %+v, %v", list, err)
	}
	if n, err := r.store.ReplyPending(); err != nil || n != 0 {
		t.Fatalf("%d replies pending (%v), want 0", n, err)
	}
	select {
	case p := <-posts:
		t.Fatalf("a second POST: %q", p.body)
	default:
	}
}

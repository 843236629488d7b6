package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/webhook"
)

// receiptEndpoint is an enterprise's receipt receiver on loopback: each
// POST's body and signature headers arrive on the channel.
type receiptPost struct {
	body          []byte
	ts, sig, prev string // prev: X-Qxtd-Signature-Previous
}

func receiptEndpoint(t *testing.T) (*httptest.Server, <-chan receiptPost) {
	t.Helper()
	ch := make(chan receiptPost, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- receiptPost{body: b, ts: r.Header.Get("X-Qxtd-Timestamp"), sig: r.Header.Get("X-Qxtd-Signature"),
			prev: r.Header.Get("X-Qxtd-Signature-Previous")}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

var secretRE = regexp.MustCompile(`<code class="secret">(whsec_[0-9a-f]+)</code>`)

// 回执推送: amy (admin) sets the URL and batch, is refused a bad URL or
// batch next to its field, generates a secret shown once, and sends a
// test receipt that arrives signed with that secret; alice (user) reads
// the settings and changes nothing.
func TestReceiptsPage(t *testing.T) {
	r := newRig(t)
	ep, posts := receiptEndpoint(t)
	amy := r.client()
	amy.login("amy")
	if a := amy.get("/enterprise/receipts"); strings.Contains(a.Body, `id="reply-pending"`) {
		t.Error("no reply_url and no reply: the replies' rows are shown")
	}
	amy.get("/enterprise/receipts").wantPage(t, "回执推送", `href="/enterprise/receipts" class="on"`, "未设置", `id="receipt-form"`)

	a := amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"receipt_url": {ep.URL + "/sms"}, "reply_url": {ep.URL + "/mo"},
		"receipt_batch": {"5"}, "reply_batch": {"20"}})
	if a.Status != http.StatusSeeOther || a.Location != "/enterprise/receipts" {
		t.Fatalf("save: %d %s %s", a.Status, a.Location, a.Body)
	}
	amy.get("/enterprise/receipts").wantPage(t, "回执推送设置已保存", "<code>"+ep.URL+"/sms</code>", "最多 5 条", "未设置密钥",
		`id="receipt-pending">0 条`, `id="receipt-last">尚无`, `id="reply-url"><code>`+ep.URL+"/mo</code>",
		`id="reply-batch">最多 20 条（批量格式）`, `name="reply_batch" type="number" min="1" max="1000" value="20"`,
		`id="reply-pending">0 条</dd>`, `id="reply-last">尚无`)
	if e, _ := r.pol.Lookup("A"); e.Receipt.URL != ep.URL+"/sms" || e.Receipt.Batch != 5 || e.Receipt.ReplyURL != ep.URL+"/mo" || e.Receipt.ReplyBatch != 20 {
		t.Fatalf("stored %+v", e.Receipt)
	}
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"receipt_url": {ep.URL + "/sms"}, "reply_url": {ep.URL + "/mo"},
		"receipt_batch": {"5"}, "reply_batch": {"1001"}})
	if a.Status != http.StatusBadRequest || !regexp.MustCompile(`(?s)name="reply_batch".*每次推送回复条数须为 1 到 1000 的整数`).MatchString(a.Body) ||
		!strings.Contains(a.Body, `name="reply_batch" type="number" min="1" max="1000" value="1001"`) {
		t.Fatalf("reply batch 1001: %d, no error next to its field or not kept\n%s", a.Status, a.Body)
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.ReplyBatch != 20 {
		t.Fatalf("a refused reply_batch changed the stored one: %+v", e.Receipt)
	}
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"receipt_url": {ep.URL + "/sms"}, "reply_url": {"mailto:x@example.com"}, "receipt_batch": {"5"}})
	if a.Status != http.StatusBadRequest || !regexp.MustCompile(`(?s)name="reply_url".*<span class="ferr"`).MatchString(a.Body) || !strings.Contains(a.Body, `value="mailto:x@example.com"`) {
		t.Fatalf("bad reply URL: %d, no error next to its field or not kept\n%s", a.Status, a.Body)
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.ReplyURL != ep.URL+"/mo" {
		t.Fatalf("a refused reply_url changed the stored one: %+v", e.Receipt)
	}

	a = amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"receipt_url": {"ftp://example.com/"}, "receipt_batch": {"5"}})
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `class="ferr"`) || !strings.Contains(a.Body, "输入有误（回执推送地址须以 http:// 或 https:// 开头）") {
		t.Fatalf("bad URL: %d\n%s", a.Status, a.Body)
	}
	if !strings.Contains(a.Body, `value="ftp://example.com/"`) {
		t.Error("the refused URL is not kept in the form")
	}
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"receipt_url": {ep.URL}, "receipt_batch": {"0"}})
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "每次推送条数须为 1 到 1000 的整数") {
		t.Fatalf("batch 0: %d\n%s", a.Status, a.Body)
	}

	a = amy.submit("/enterprise/receipts", "/enterprise/receipts/secret", url.Values{})
	m := secretRE.FindStringSubmatch(a.Body)
	if a.Status != http.StatusOK || m == nil || !strings.Contains(a.Body, "只显示这一次") {
		t.Fatalf("new secret: %d\n%s", a.Status, a.Body)
	}
	secret := m[1]
	if e, _ := r.pol.Lookup("A"); e.Receipt.Secret != secret {
		t.Fatal("the secret shown is not the one stored")
	}
	if p := amy.get("/enterprise/receipts"); strings.Contains(p.Body, secret) || !strings.Contains(p.Body, "已设置密钥") {
		t.Fatalf("the secret is shown again, or not marked set:\n%s", p.Body)
	}

	a = amy.submit("/enterprise/receipts", "/enterprise/receipts/test", url.Values{"url": {""}})
	a.wantPage(t, `id="test-result"`, "推送成功", "204", "批量", "已签名")
	p := <-posts
	if !webhook.Verify(secret, p.ts, p.body, p.sig) {
		t.Errorf("the test receipt does not verify with the secret shown")
	}
	var b webhook.Batch
	if err := json.Unmarshal(p.body, &b); err != nil || len(b.Receipts) != 1 || b.Receipts[0].ID != webhook.TestReceiptID {
		t.Errorf("test receipt body %s", p.body)
	}
	if strings.Contains(a.Body, "含旧密钥签名") || p.prev != "" {
		t.Errorf("the first secret: a previous signature %q", p.prev)
	}
	// A test reply goes to the reply URL, in the reply webhook's body.
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts/test", url.Values{"url": {""}, "kind": {"reply"}})
	a.wantPage(t, `id="test-result"`, "推送成功", "<code>"+ep.URL+"/mo</code>", "用户回复（X-Qxtd-Event: reply）", `<option value="reply" selected>`)
	p = <-posts
	var reply webhook.Reply
	if err := json.Unmarshal(p.body, &reply); err != nil || reply.ID != webhook.TestReceiptID || !webhook.Verify(secret, p.ts, p.body, p.sig) {
		t.Errorf("test reply body %s", p.body)
	}

	// 更换密钥: the new one is shown once; the replaced one signs
	// X-Qxtd-Signature-Previous for a day, which the page says.
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts/secret", url.Values{})
	if m = secretRE.FindStringSubmatch(a.Body); m == nil || m[1] == secret {
		t.Fatalf("rotated secret: %d\n%s", a.Status, a.Body)
	}
	a.wantPage(t, "旧密钥在 ", "X-Qxtd-Signature-Previous", `id="receipt-previous">旧密钥同时签名至 `)
	a = amy.submit("/enterprise/receipts", "/enterprise/receipts/test", url.Values{"url": {""}})
	a.wantPage(t, "已签名（含旧密钥签名）")
	p = <-posts
	if !webhook.Verify(m[1], p.ts, p.body, p.sig) || !webhook.Verify(secret, p.ts, p.body, p.prev) {
		t.Errorf("after the rotation: signature %q, previous %q", p.sig, p.prev)
	}

	alice := r.client()
	alice.login("alice")
	page := alice.get("/enterprise/receipts")
	page.wantPage(t, "<code>"+ep.URL+"/sms</code>", "推送设置由本企业的管理员修改")
	if strings.Contains(page.Body, `id="receipt-form"`) || strings.Contains(page.Body, `id="test-form"`) {
		t.Error("a plain user is shown the admin's forms")
	}
	empty := url.Values{"receipt_url": {""}, "receipt_batch": {"1"}}
	if a := alice.submit("/enterprise/receipts", "/enterprise/receipts", empty); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "企业管理仅限企业管理员使用") {
		t.Fatalf("a user's save: %d\n%s", a.Status, a.Body)
	}
	if e, _ := r.pol.Lookup("A"); e.Receipt.URL == "" {
		t.Fatal("a plain user removed the URL")
	}
}

// The account manager sees an enterprise's receipt webhook on its desk
// page and tests the endpoint from there.
func TestDeskReceiptTest(t *testing.T) {
	r := newRig(t)
	ep, posts := receiptEndpoint(t)
	c := r.client()
	c.opsLogin()
	c.get("/ops/enterprises/A").wantPage(t, `id="ent-receipts">未设置`)
	if _, err := r.pol.UpdateEnterprise(policy.OperatorActor("t"), "A", func(e *policy.Enterprise) error {
		e.Receipt = policy.ReceiptHook{URL: ep.URL + "/desk", Batch: 10}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c.get("/ops/enterprises/A").wantPage(t, "<code>"+ep.URL+"/desk</code>，每次最多 10 条", "未签名", `id="ent-receipt-test"`)
	a := c.submit("/ops/enterprises/A", "/ops/enterprises/A/receipt-test", url.Values{})
	a.wantPage(t, `id="test-result"`, "推送成功", "HTTP 204")
	if p := <-posts; !strings.Contains(string(p.body), `"receipts":[{"id":"0"`) {
		t.Errorf("the desk's test receipt: %s", p.body)
	}
}

// A receipt that the endpoint refuses shows on 回执推送 as pending and
// retrying, with the endpoint's error as the last POST's outcome, and on
// the desk's enterprise page.
func TestReceiptsPageFailing(t *testing.T) {
	r := newRig(t)
	posted := make(chan struct{}, 64)
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		select { // never blocks: a retry after the test's reads must not hold its handler
		case posted <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(ep.Close)
	ctx := context.Background()
	for _, e := range []struct{ account, ent string }{{"alice", "A"}, {"bob", "B"}} {
		// Scheduled an hour ahead, so that the rig's gateway does not
		// send it to the simulator before it is failed here.
		m := &queue.Message{Account: e.account, Enterprise: e.ent, Dest: numA1, Upstream: "sim", ReceiptURL: ep.URL + "/bad",
			SendAt: time.Now().Add(time.Hour), Parts: []queue.Part{{Body: []byte("hi")}}}
		if err := r.store.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := r.store.Fail(ctx, queue.Key{ID: m.ID}, queue.StateRejected, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r.runHooks()
	waitPosted(t, posted, "A's first POST")
	waitPosted(t, posted, "B's first POST")
	amy := r.client()
	amy.login("amy")
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := amy.get("/enterprise/receipts")
		if strings.Contains(a.Body, "其中 1 条推送失败，等待重试") {
			a.wantPage(t, `id="receipt-pending">1 条`, `id="receipt-last"><span class="badge fail">失败</span>`, "起连续失败", "HTTP status 502", ep.URL+"/bad", `id="retry-form"`,
				`id="receipt-recent"`, `<td data-label="HTTP 状态">502</td>`)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failure never showed:\n%s", a.Body)
		}
		time.Sleep(10 * time.Millisecond) // the retry is recorded after the POST: no event to wait on
	}
	ops := r.client()
	ops.opsLogin()
	// The desk's home names A among the enterprises whose endpoint fails.
	home := ops.get("/ops/")
	home.wantPage(t, `id="failing-webhooks"`, `<a href="/ops/enterprises/A">A</a>`, "HTTP status 502")
	if strings.Contains(home.Body, "各企业最近一次回执推送和回复推送都已成功") {
		t.Error("the desk says every endpoint took its last POST")
	}
	ops.get("/ops/enterprises/A").wantPage(t, `id="ent-receipts-pending">1 条（1 条重试中）；最近一次失败`, "起连续失败", "HTTP status 502", `id="ent-receipt-retry"`)

	// 立即重试: the receipt is posted again at once, and not again within the minute.
	a := amy.submit("/enterprise/receipts", "/enterprise/receipts/retry", url.Values{})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("retry: %d\n%s", a.Status, a.Body)
	}
	amy.get("/enterprise/receipts").wantPage(t, "已将 1 条等待重试的回执改为立即推送")
	waitPosted(t, posted, "立即重试")
	if a := amy.submit("/enterprise/receipts", "/enterprise/receipts/retry", url.Values{}); a.Status != http.StatusTooManyRequests || !strings.Contains(a.Body, "一分钟内已重试过") {
		t.Fatalf("a second retry within the minute: %d\n%s", a.Status, a.Body)
	}
	// The desk's 立即重试: B's receipt at once; A's within the minute of
	// amy's is refused, the API's refusal shown on the page.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(ops.get("/ops/enterprises/B").Body, `id="ent-receipt-retry"`) {
		if time.Now().After(deadline) {
			t.Fatal("B's failed receipt never showed on the desk")
		}
		time.Sleep(10 * time.Millisecond) // as above
	}
	if a := ops.submit("/ops/enterprises/B", "/ops/enterprises/B/receipt-retry", url.Values{}); a.Status != http.StatusSeeOther {
		t.Fatalf("the desk's retry: %d\n%s", a.Status, a.Body)
	}
	ops.get("/ops/enterprises/B").wantPage(t, "已将 1 条等待重试的回执改为立即推送")
	waitPosted(t, posted, "the desk's 立即重试")
	if a := ops.submit("/ops/enterprises/A", "/ops/enterprises/A/receipt-retry", url.Values{}); a.Status != http.StatusTooManyRequests || !strings.Contains(a.Body, `class="error"`) {
		t.Fatalf("the desk's retry within the minute: %d\n%s", a.Status, a.Body)
	}
}

// runHooks runs the rig's webhook sender until the test ends.
func (r *rig) runHooks() {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.hooks.Run(ctx) }()
	r.t.Cleanup(func() { stop(); <-done })
}

// waitPostedAtOnce waits for the endpoint's next POST, after what was
// clicked, for 5 s: a reply's first backoff is 10 s, so one that comes
// by then was made due by what, not by its backoff ending.
func waitPostedAtOnce(t *testing.T, posted <-chan struct{}, what string) {
	t.Helper()
	waitPostedWithin(t, posted, 5*time.Second, what)
}

// waitPosted waits up to 10 s for the endpoint's next POST, after what.
func waitPosted(t *testing.T, posted <-chan struct{}, what string) {
	t.Helper()
	waitPostedWithin(t, posted, 10*time.Second, what)
}

func waitPostedWithin(t *testing.T, posted <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-posted:
	case <-time.After(d):
		t.Fatalf("%s: nothing POSTed within %v", what, d)
	}
}

// otherNodes is api.PeerHooks with fixed answers: this rig as node 1 of a
// cluster whose node 2 has receipts of A waiting and node 4 is down.
type otherNodes struct {
	status []api.NodeReceiptStatus
	retry  []api.NodeReceiptRetry
}

func (o otherNodes) Self() uint16 { return 1 }
func (o otherNodes) PeerHookStatus(context.Context, string) ([]api.NodeReceiptStatus, []uint16, error) {
	return o.status, []uint16{4}, nil
}
func (o otherNodes) PeerHookRetry(context.Context, string, bool) ([]api.NodeReceiptRetry, []uint16, error) {
	return o.retry, []uint16{4}, nil
}

// In a cluster, 回执推送 and the desk's enterprise page count every node's
// waiting receipts, say which node could not be asked, and the desk shows
// each node's part; 立即重试 says what the nodes did.
func TestReceiptsPageCluster(t *testing.T) {
	at := time.Now().Add(-time.Minute)
	post := api.ReceiptPost{At: at, URL: "https://a.example/dlr", Receipts: 1, Error: "HTTP status 503"}
	peers := otherNodes{
		status: []api.NodeReceiptStatus{{Node: 2, ReceiptCounts: api.ReceiptCounts{Pending: 3, Retrying: 3, FirstDueAt: &at, Last: &post},
			Recent: []api.ReceiptPost{post}}},
		retry: []api.NodeReceiptRetry{{Node: 2, Rescheduled: 3}},
	}
	r := newRig(t, func(c *api.Config) { c.PeerHooks = peers })
	amy := r.client()
	amy.login("amy")
	amy.get("/enterprise/receipts").wantPage(t, `id="receipt-pending">3 条（其中 3 条推送失败，等待重试）`,
		`id="receipt-partial">部分节点暂时无法查询（节点 4）`, `id="retry-form"`, "HTTP status 503",
		`<th>节点</th>`, `<td data-label="节点">2</td>`)
	if a := amy.submit("/enterprise/receipts", "/enterprise/receipts/retry", url.Values{}); a.Status != http.StatusSeeOther {
		t.Fatalf("retry: %d\n%s", a.Status, a.Body)
	}
	amy.get("/enterprise/receipts").wantPage(t, "已将 3 条等待重试的回执改为立即推送。部分节点暂时无法联系（节点 4），其回执仍按退避时间重试。")

	ops := r.client()
	ops.opsLogin()
	ops.get("/ops/enterprises/A").wantPage(t, `id="ent-receipts-pending">3 条（3 条重试中）；最近一次失败`, "，节点 2）",
		`id="ent-receipts-partial">部分节点无法查询（节点 4）`, `id="ent-receipts-nodes">节点 1：0 条；节点 2：3 条（3 条重试中）`)
}

// A reply that its endpoint refuses shows under 回复推送地址 as pending and
// retrying, with the endpoint's answer as the last reply POST; the
// receipts' rows are not touched.
func TestReceiptsPageReplyFailing(t *testing.T) {
	r := newRig(t)
	posted := make(chan struct{}, 64)
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		select { // never blocks, as above
		case posted <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(ep.Close)
	amy := r.client()
	amy.login("amy")
	if a := amy.submit("/enterprise/receipts", "/enterprise/receipts", url.Values{"reply_url": {ep.URL + "/mo"}, "receipt_batch": {"1"}}); a.Status != http.StatusSeeOther {
		t.Fatalf("save: %d %s", a.Status, a.Body)
	}
	m := &queue.MO{Enterprise: "A", Source: "13712345678", Dest: "10657500000112", Text: "收到", ReceivedAt: time.Now(), ReplyURL: ep.URL + "/mo"}
	if err := r.store.StoreMO(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r.runHooks()
	waitPosted(t, posted, "the reply's first POST")
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := amy.get("/enterprise/receipts")
		if strings.Contains(a.Body, `id="reply-pending">1 条（其中 1 条推送失败，等待重试）`) {
			a.wantPage(t, `id="reply-last"><span class="badge fail">失败</span>`, "起连续失败，HTTP 502", "<code>"+ep.URL+"/mo</code>",
				`id="receipt-pending">0 条`, `id="receipt-last">尚无`)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reply's failure never showed:\n%s", a.Body)
		}
		time.Sleep(10 * time.Millisecond) // the retry is recorded after the POST: no event to wait on
	}
	// The account manager's page of the enterprise has it too, with its
	// button, and the desk's home lists A's reply endpoint as failing.
	ops := r.client()
	ops.opsLogin()
	ops.get("/ops/enterprises/A").wantPage(t, `id="ent-replies-pending">1 条（1 条重试中）；最近一次失败`, "HTTP status 502", `id="ent-reply-retry"`)
	ops.get("/ops/").wantPage(t, `<tr class="failing-reply"><td data-label="企业"><a href="/ops/enterprises/A">A</a></td><td data-label="推送内容">用户回复</td>`,
		"HTTP status 502")

	// 立即重试回复: the reply is posted again at once (its backoff is 10 s),
	// not again within the minute; the receipts' retry is not held up.
	amy.get("/enterprise/receipts").wantPage(t, `id="reply-retry-form"`, `<input type="hidden" name="kind" value="reply">`)
	if a := amy.submit("/enterprise/receipts", "/enterprise/receipts/retry", url.Values{"kind": {"reply"}}); a.Status != http.StatusSeeOther {
		t.Fatalf("retry the replies: %d\n%s", a.Status, a.Body)
	}
	amy.get("/enterprise/receipts").wantPage(t, "已将 1 条等待重试的回复改为立即推送。")
	waitPostedAtOnce(t, posted, "立即重试回复")
	if a := amy.submit("/enterprise/receipts", "/enterprise/receipts/retry", url.Values{"kind": {"reply"}}); a.Status != http.StatusTooManyRequests ||
		!strings.Contains(a.Body, "一分钟内已重试过回复") {
		t.Fatalf("a second replies' retry within the minute: %d\n%s", a.Status, a.Body)
	}
	if a := ops.submit("/ops/enterprises/A", "/ops/enterprises/A/receipt-retry", url.Values{"kind": {"reply"}}); a.Status != http.StatusTooManyRequests ||
		!strings.Contains(a.Body, `class="error"`) {
		t.Fatalf("the desk's replies' retry within the minute: %d\n%s", a.Status, a.Body)
	}
	if a := ops.submit("/ops/enterprises/A", "/ops/enterprises/A/receipt-retry", url.Values{}); a.Status != http.StatusSeeOther {
		t.Fatalf("the desk's receipts' retry after the replies': %d\n%s", a.Status, a.Body)
	}
	ops.get("/ops/enterprises/A").wantPage(t, "已将 0 条等待重试的回执改为立即推送。")
}

// failingReplies stores a reply of each enterprise in ents to an endpoint
// that answers 503 until mended is set (then 204), runs the rig's sender,
// and waits until each reply waits out its backoff (10 s) after its first
// POST failed. Every POST is signalled on posted (never blocking).
func failingReplies(t *testing.T, r *rig, ents ...string) (mended *atomic.Bool, posted <-chan struct{}) {
	t.Helper()
	mended = new(atomic.Bool)
	ch := make(chan struct{}, 64)
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if mended.Load() {
			w.WriteHeader(http.StatusNoContent)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(ep.Close)
	for _, e := range ents {
		m := &queue.MO{Enterprise: e, Source: "13712345678", Dest: "10657500000112", Text: "收到", ReceivedAt: time.Now(), ReplyURL: ep.URL + "/mo"}
		if err := r.store.StoreMO(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	r.runHooks()
	for _, e := range ents {
		waitCondition(t, e+"'s reply waiting for its retry", func() bool {
			sum, err := r.store.ReplySummary(e, 10)
			return err == nil && sum.Retrying == 1 &&
				slices.ContainsFunc(r.hooks.FailingReplies(10), func(f webhook.Failing) bool { return f.Enterprise == e })
		})
	}
	return mended, ch
}

// waitCondition polls cond for up to 10 s.
func waitCondition(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not yet after 10 s: %s", what)
		}
		<-tick.C
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

type hookPost struct {
	body          []byte
	ts, sig, prev string // prev: X-Qxtd-Signature-Previous
}

// TestReceiptWebhookEndToEnd runs the real daemon with the simulator as
// the SMSC: a message sent over HTTP with a receipt_url gets exactly one
// signed POST when its receipt comes back; a receipt_url that is not
// http(s) is refused; and an endpoint that never answers does not slow
// sending (the receipts wait in the store, not in the send path).
func TestReceiptWebhookEndToEnd(t *testing.T) {
	d, base := hookDaemon(t)
	good, posts := hookReceiver(t)
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers while the test runs
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer dead.Close()
	defer close(hang)

	secret, token := hookSecretAndLogin(t, base)
	send := func(to, url string) (int, string, time.Duration) {
		start := time.Now()
		code, body := postJSON(t, "POST", base+"/v1/messages", token,
			`{"to":["`+to+`"],"text":"回执测试","receipt_url":"`+url+`"}`)
		return code, body, time.Since(start)
	}

	code, body, _ := send("13800138000", "ftp://example.com/dlr")
	if code != http.StatusBadRequest || !strings.Contains(body, "receipt_url") {
		t.Fatalf("a receipt_url that is not http(s): %d %s", code, body)
	}

	code, body, _ = send("13800138000", good.URL+"/dlr")
	var res struct {
		Results []struct{ ID string }
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != 1 || res.Results[0].ID == "" {
		t.Fatalf("send: %d %s", code, body)
	}
	var p hookPost
	select {
	case p = <-posts:
	case <-time.After(20 * time.Second):
		t.Fatalf("no receipt POST:\n%s", d.log())
	}
	var rc webhook.Receipt
	if err := json.Unmarshal(p.body, &rc); err != nil || rc.ID != res.Results[0].ID || rc.State != "delivered" {
		t.Fatalf("receipt %s (%v), want id %s delivered", p.body, err, res.Results[0].ID)
	}
	if !webhook.Verify(secret, p.ts, p.body, p.sig) {
		t.Errorf("signature %q of %s at %s does not verify", p.sig, p.body, p.ts)
	}
	if webhook.Verify("another secret", p.ts, p.body, p.sig) {
		t.Error("signature verifies under another secret")
	}

	// A dead endpoint: sending is as fast as with none.
	lat := func(url string) time.Duration {
		var ds []time.Duration
		for range 15 {
			code, body, d := send("13800138001", url)
			if code != http.StatusOK {
				t.Fatalf("send: %d %s", code, body)
			}
			ds = append(ds, d)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	withDead := lat(dead.URL + "/dlr")
	withGood := lat(good.URL + "/dlr")
	t.Logf("send latency p50: %v with a dead receipt endpoint, %v with a live one", withDead, withGood)
	if withDead > 3*withGood+100*time.Millisecond {
		t.Errorf("a dead receipt endpoint slows sending: p50 %v against %v", withDead, withGood)
	}
	// Exactly one POST for the first message: no second one came for it.
	seen := map[string]int{rc.ID: 1}
	deadline := time.After(3 * time.Second)
	for done := false; !done; {
		select {
		case p := <-posts:
			var r webhook.Receipt
			_ = json.Unmarshal(p.body, &r)
			seen[r.ID]++
		case <-deadline:
			done = true
		}
	}
	if seen[rc.ID] != 1 {
		t.Errorf("%d POSTs for message %s, want 1", seen[rc.ID], rc.ID)
	}
}

// TestReceiptWebhookBatchedEndToEnd: an enterprise set to take receipts
// in batches (receipt_batch, through the admin API) gets the receipts of
// a group send as {"receipts": [...]} bodies, each receipt once, signed;
// a receipt_batch over the bound is refused with its name.
func TestReceiptWebhookBatchedEndToEnd(t *testing.T) {
	d, base := hookDaemon(t)
	rcv, posts := hookReceiver(t)

	code, body := postJSON(t, "PATCH", base+"/admin/v1/enterprises/T1", "test-token", `{"receipt_batch": 1001}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "receipt_batch") {
		t.Fatalf("receipt_batch 1001: %d %s", code, body)
	}
	code, body = postJSON(t, "PATCH", base+"/admin/v1/enterprises/T1", "test-token", `{"receipt_batch": 50}`)
	if code != http.StatusOK || !strings.Contains(body, `"receipt_batch":50`) {
		t.Fatalf("receipt_batch 50: %d %s", code, body)
	}
	secret, token := hookSecretAndLogin(t, base)
	const n = 20
	to := make([]string, n)
	for i := range to {
		to[i] = `"1380013` + strconv.Itoa(8000+i) + `"`
	}
	code, body = postJSON(t, "POST", base+"/v1/messages", token,
		`{"to":[`+strings.Join(to, ",")+`],"text":"批量回执","receipt_url":"`+rcv.URL+`/dlr"}`)
	var res struct {
		Accepted int
		Results  []struct{ ID string }
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Accepted != n {
		t.Fatalf("send: %d %s", code, body)
	}
	seen := map[string]int{}
	nposts := 0
	for got := 0; got < n; {
		var p hookPost
		select {
		case p = <-posts:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d receipts came:\n%s", got, n, d.log())
		}
		nposts++
		if !webhook.Verify(secret, p.ts, p.body, p.sig) {
			t.Errorf("signature %q of %s does not verify", p.sig, p.body)
		}
		var b webhook.Batch
		if err := json.Unmarshal(p.body, &b); err != nil || len(b.Receipts) == 0 || len(b.Receipts) > 50 {
			t.Fatalf("POST body %s: not a batch of 1–50 receipts (%v)", p.body, err)
		}
		for _, rc := range b.Receipts {
			if rc.State != "delivered" {
				t.Errorf("receipt %+v", rc)
			}
			seen[rc.ID]++
		}
		got += len(b.Receipts)
	}
	for _, r := range res.Results {
		if seen[r.ID] != 1 {
			t.Errorf("message %s: %d receipts, want 1", r.ID, seen[r.ID])
		}
	}
	t.Logf("%d receipts in %d POSTs", n, nposts)
}

// hookDaemon is the real daemon with the simulator as its SMSC (receipts
// 20 ms after each submit), receipts allowed to loopback, and its HTTP
// base URL.
func hookDaemon(t *testing.T) (*proc, string) {
	t.Helper()
	_, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 20 * time.Millisecond})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, "webhooks: { allow_private: true }\n"))
	return d, "http://" + d.httpAddr
}

// hookReceiver is a receipt endpoint on loopback that answers 200 and
// hands on every POST.
func hookReceiver(t *testing.T) (*httptest.Server, <-chan hookPost) {
	t.Helper()
	posts := make(chan hookPost, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts <- hookPost{body: b, ts: r.Header.Get("X-Qxtd-Timestamp"), sig: r.Header.Get("X-Qxtd-Signature"),
			prev: r.Header.Get("X-Qxtd-Signature-Previous")}
	}))
	t.Cleanup(srv.Close)
	return srv, posts
}

// hookSecretAndLogin generates enterprise T1's receipt secret and logs
// its user esme in: the secret and the session token.
func hookSecretAndLogin(t *testing.T, base string) (secret, token string) {
	t.Helper()
	code, body := postJSON(t, "POST", base+"/admin/v1/enterprises/T1/receipt-secret", "test-token", "")
	var sec struct{ Secret string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &sec) != nil || sec.Secret == "" {
		t.Fatalf("receipt secret: %d %s", code, body)
	}
	code, body = postJSON(t, "POST", base+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
	var login struct{ Token string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &login) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	return sec.Secret, login.Token
}

// TestReceiptWebhookSelfServiceEndToEnd: the daemon wires the webhook
// sender to the self-service routes. An enterprise admin sets the URL
// over /v1, generates a secret and sends a test receipt, which reaches
// the endpoint signed with that secret; a real send's receipt then goes
// to the URL the admin set, signed the same.
func TestReceiptWebhookSelfServiceEndToEnd(t *testing.T) {
	_, base := hookDaemon(t)
	rcv, posts := hookReceiver(t)
	if code, body := postJSON(t, "PATCH", base+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin: %d %s", code, body)
	}
	code, body := postJSON(t, "POST", base+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
	var login struct{ Token string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &login) != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body = postJSON(t, "PATCH", base+"/v1/receipt-webhook", login.Token, `{"receipt_url":"`+rcv.URL+`/self"}`); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	code, body = postJSON(t, "POST", base+"/v1/receipt-webhook/secret", login.Token, "")
	var sec struct{ Secret string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &sec) != nil || sec.Secret == "" {
		t.Fatalf("secret: %d %s", code, body)
	}
	code, body = postJSON(t, "POST", base+"/v1/receipt-webhook/test", login.Token, "")
	if code != http.StatusOK || !strings.Contains(body, `"delivered":true`) || !strings.Contains(body, `"signed":true`) {
		t.Fatalf("test: %d %s", code, body)
	}
	p := nextHookPost(t, posts)
	if !webhook.Verify(sec.Secret, p.ts, p.body, p.sig) || !strings.Contains(string(p.body), `"id":"0"`) {
		t.Fatalf("test receipt %s, signature %s", p.body, p.sig)
	}
	code, body = postJSON(t, "POST", base+"/v1/messages", login.Token, `{"to":["13800138000"],"text":"自助设置的回执"}`)
	if code != http.StatusOK {
		t.Fatalf("send: %d %s", code, body)
	}
	p = nextHookPost(t, posts)
	var rc webhook.Receipt
	if json.Unmarshal(p.body, &rc) != nil || rc.ID == webhook.TestReceiptID || rc.Recipient != "13800138000" || !webhook.Verify(sec.Secret, p.ts, p.body, p.sig) {
		t.Fatalf("the send's receipt %s, signature %s", p.body, p.sig)
	}

	// The account manager tests the same endpoint from the command line;
	// an endpoint that refuses makes the command fail.
	admin := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", base, "--token", "test-token"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, out, errOut := admin("enterprise", "receipt-test", "T1"); code != 0 || !strings.Contains(out, rcv.URL+"/self: delivered, HTTP 200") || !strings.Contains(out, "signed") {
		t.Fatalf("receipt-test: exit %d\n%s%s", code, out, errOut)
	}
	if p := nextHookPost(t, posts); !strings.Contains(string(p.body), `"id":"0"`) {
		t.Fatalf("the operator's test receipt: %s", p.body)
	}
	// And a test reply to a URL named (T1 has no reply_url): the reply
	// webhook's body.
	if code, out, errOut := admin("enterprise", "receipt-test", "T1", "--reply", "--url", rcv.URL+"/mo"); code != 0 || !strings.Contains(out, rcv.URL+"/mo: delivered, HTTP 200") {
		t.Fatalf("receipt-test --reply: exit %d\n%s%s", code, out, errOut)
	}
	if p := nextHookPost(t, posts); !strings.Contains(string(p.body), `"from":"13800138000"`) || !strings.Contains(string(p.body), `"text":"收到"`) {
		t.Fatalf("the operator's test reply: %s", p.body)
	}
	// The delivery is recorded after the POST's answer: poll for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ := admin("enterprise", "show", "T1")
		if strings.Contains(out, "receipts") && strings.Contains(out, "0 pending, 0 retrying; last POST") && strings.Contains(out, "(1 receipt) delivered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enterprise show never told the delivery:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out, errOut := admin("enterprise", "receipt-retry", "T1"); code != 0 || !strings.Contains(out, "0 receipts due now") {
		t.Fatalf("receipt-retry with nothing waiting: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := admin("enterprise", "receipt-retry", "T1"); code != 1 || !strings.Contains(errOut, "too_many_requests") {
		t.Fatalf("receipt-retry again within the minute: exit %d\n%s", code, errOut)
	}
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(refusing.Close)
	if code, out, errOut := admin("enterprise", "receipt-test", "T1", "--url", refusing.URL); code != 1 || !strings.Contains(errOut, "not delivered (HTTP 403") {
		t.Fatalf("receipt-test of a refusing endpoint: exit %d\n%s%s", code, out, errOut)
	}

	// The operator rotates the secret: a real send's receipt is signed
	// with the new one, and with the replaced one in
	// X-Qxtd-Signature-Previous, so the receiver can switch at its pace.
	if p.prev != "" {
		t.Fatalf("a receipt before any rotation carries X-Qxtd-Signature-Previous %q", p.prev)
	}
	code, out, errOut := admin("enterprise", "receipt-secret", "T1")
	newSecret := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(newSecret, "whsec_") || newSecret == sec.Secret || !strings.Contains(errOut, "signs X-Qxtd-Signature-Previous until") {
		t.Fatalf("receipt-secret: exit %d\n%s%s", code, out, errOut)
	}
	if code, body = postJSON(t, "POST", base+"/v1/messages", login.Token, `{"to":["13800138001"],"text":"换密钥后的回执"}`); code != http.StatusOK {
		t.Fatalf("send: %d %s", code, body)
	}
	p = nextHookPost(t, posts)
	if !webhook.Verify(newSecret, p.ts, p.body, p.sig) || !webhook.Verify(sec.Secret, p.ts, p.body, p.prev) {
		t.Fatalf("the receipt after the rotation %s: signature %q, previous %q", p.body, p.sig, p.prev)
	}
}

func nextHookPost(t *testing.T, posts <-chan hookPost) hookPost {
	t.Helper()
	select {
	case p := <-posts:
		return p
	case <-time.After(20 * time.Second):
		t.Fatal("no receipt POST within 20 s")
	}
	return hookPost{}
}

// TestReceiptWebhookFailuresAcrossRestart: an endpoint that refuses
// receipts is still shown failing, since the same time, after the daemon
// is killed (-9) and started again: in the enterprise's status, on the
// desk's list and in the metric an alert names the enterprise by, without
// waiting for the next POST. What a kill can lose is the POSTs since the
// last periodic save (webhook.SaveEvery); the test kills after one.
func TestReceiptWebhookFailuresAcrossRestart(t *testing.T) {
	_, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 20 * time.Millisecond})
	cfg := writeConfig(t, t.TempDir(), simAddr, "webhooks: { allow_private: true }\nlog: { level: debug }\n")
	d := startDaemon(t, cfg)
	base := "http://" + d.httpAddr
	refused := make(chan struct{}, 64)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		refused <- struct{}{}
	}))
	t.Cleanup(refusing.Close)
	_, token := hookSecretAndLogin(t, base)
	if code, body := postJSON(t, "POST", base+"/v1/messages", token,
		`{"to":["13800138000"],"text":"回执测试","receipt_url":"`+refusing.URL+`/dlr"}`); code != http.StatusOK {
		t.Fatalf("send: %d %s", code, body)
	}
	select {
	case <-refused:
	case <-time.After(20 * time.Second):
		t.Fatalf("no receipt POST:\n%s", d.log())
	}
	type post struct {
		At           time.Time  `json:"at"`
		Status       int        `json:"status"`
		FailingSince *time.Time `json:"failing_since"`
	}
	status := func(base string) (last post, recent []post) {
		t.Helper()
		code, body := postJSON(t, "GET", base+"/v1/receipt-webhook", token, "")
		var wh struct {
			Status struct {
				Last   *post  `json:"last"`
				Recent []post `json:"recent"`
			} `json:"status"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &wh) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		if wh.Status.Last != nil {
			last = *wh.Status.Last
		}
		return last, wh.Status.Recent
	}
	// The failure is recorded after the POST's answer: poll for it.
	var before post
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if before, _ = status(base); before.FailingSince != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failure never showed: %+v", before)
		}
	}
	d.waitLog(t, "receipt webhook: last POSTs saved", 0, 2*webhook.SaveEvery)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited

	d = startDaemon(t, cfg)
	base = "http://" + d.httpAddr
	_, token = hookSecretAndLogin(t, base) // a new session: the old one ended with the process
	last, recent := status(base)
	if last.Status != http.StatusServiceUnavailable || last.FailingSince == nil || !last.FailingSince.Equal(*before.FailingSince) ||
		len(recent) == 0 || !recent[len(recent)-1].At.Equal(before.At) {
		t.Fatalf("after the restart: last %+v, recent %+v; before %+v", last, recent, before)
	}
	code, body := postJSON(t, "GET", base+"/admin/v1/status", "test-token", "")
	var ds struct {
		Failing []struct {
			Enterprise string `json:"enterprise"`
			Last       post   `json:"last"`
		} `json:"receipt_webhooks_failing"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ds) != nil || len(ds.Failing) != 1 || ds.Failing[0].Enterprise != "T1" ||
		!ds.Failing[0].Last.FailingSince.Equal(*before.FailingSince) {
		t.Fatalf("desk status after the restart: %d %s", code, body)
	}
	code, body = postJSON(t, "GET", base+"/metrics", "test-token", "")
	if want := `qxtd_receipt_webhook_failing_since_seconds{enterprise="T1"}`; code != http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("metrics after the restart: %d, no %s", code, want)
	}
}

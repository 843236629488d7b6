package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// writeReplyConfig is writeConfig (with extra) whose enterprise T1 has
// service number 1065901 with 2 extension digits and replyURL as its
// reply_url.
func writeReplyConfig(t *testing.T, simAddr, replyURL, extra string) string {
	t.Helper()
	path := writeConfig(t, t.TempDir(), simAddr, extra)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "    tps: 100000\n",
		"    tps: 100000\n    service_number: \"1065901\"\n    ext_len: 2\n    reply_url: "+replyURL+"\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReplyWebhookEndToEnd runs the real daemon with the simulator as the
// SMSC and enterprise T1 seeded from the file with a service number and a
// reply_url and a reply_batch (enterprises[].reply_url, reply_batch): a
// handset's reply to the number is POSTed once to the reply_url, in a batch
// of one, signed with the enterprise's secret, and listed in the inbox;
// GET /v1/receipt-webhook shows the reply_url and the batch; the reply
// webhooks' metrics count it.
func TestReplyWebhookEndToEnd(t *testing.T) {
	sim, simAddr := startSim(t, smpp.SimOptions{})
	rcv, posts := hookReceiver(t)
	// The reply_url line is followed by reply_batch, in the same mapping.
	path := writeReplyConfig(t, simAddr, rcv.URL+"/mo\n    reply_batch: 5", "webhooks: { allow_private: true }\n")
	d := startDaemon(t, path)
	base := "http://" + d.httpAddr
	if code, body := postJSON(t, "PATCH", base+"/admin/v1/users/esme", "test-token", `{"role":"admin"}`); code != http.StatusOK {
		t.Fatalf("make esme an admin (it reads every reply): %d %s", code, body)
	}
	secret, token := hookSecretAndLogin(t, base)

	code, body := postJSON(t, "GET", base+"/v1/receipt-webhook", token, "")
	if code != http.StatusOK || !strings.Contains(body, `"reply_url":"`+rcv.URL+`/mo"`) || !strings.Contains(body, `"reply_batch":5`) {
		t.Fatalf("GET /v1/receipt-webhook: %d %s", code, body)
	}
	// The daemon's upstream binds come up after the start: inject once
	// one receives.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := sim.InjectMO("13712345678", "106590112", "收到")
		if err == nil {
			break
		}
		if !errors.Is(err, smpp.ErrNoReceiver) || time.Now().After(deadline) {
			t.Fatalf("inject: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // no event to wait on: the bind is in the simulator
	}
	p := nextHookPost(t, posts)
	if !webhook.Verify(secret, p.ts, p.body, p.sig) {
		t.Fatalf("signature %q over %s does not verify", p.sig, p.body)
	}
	// reply_batch 5 from the YAML: a batch, of the one reply there was.
	var batch webhook.ReplyBatch
	if err := json.Unmarshal(p.body, &batch); err != nil || len(batch.Replies) != 1 {
		t.Fatalf("POST %s (%v): want a batch of one reply", p.body, err)
	}
	rp := batch.Replies[0]
	if rp.From != "13712345678" || rp.To != "106590112" || rp.Extension != "12" || rp.Text != "收到" || rp.ID == "" {
		t.Fatalf("reply %+v", rp)
	}
	code, body = postJSON(t, "GET", base+"/v1/inbox", token, "")
	if code != http.StatusOK || !strings.Contains(body, `"id":"`+rp.ID+`"`) {
		t.Fatalf("inbox: %d %s", code, body)
	}
	waitCond(t, 10*time.Second, "the delivery counted", func() bool {
		return metricSum(t, d, `qxtd_reply_webhooks_total{outcome="delivered"}`) == 1
	})
	select {
	case p := <-posts:
		t.Fatalf("a second POST: %s", p.body)
	default:
	}
}

// TestReplyWebhookOperationsEndToEnd: a reply endpoint that refuses is
// operated as a receipt endpoint is. The real daemon shows it failing in
// `qxtd admin daemon status` (the desk's list, reply_webhooks_failing) and
// in qxtd_reply_webhook_failing_since_seconds; after a kill -9 and a start
// it still does, since the same time; once the endpoint is mended,
// `qxtd admin enterprise receipt-retry T1 --reply` posts the reply at once
// (not after its backoff), a second one within the minute is refused, and
// the receipts' retry is not held up by it.
func TestReplyWebhookOperationsEndToEnd(t *testing.T) {
	sim, simAddr := startSim(t, smpp.SimOptions{})
	var refuse atomic.Bool
	refuse.Store(true)
	posted := make(chan int, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		code := http.StatusNoContent
		if refuse.Load() {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		posted <- code
	}))
	t.Cleanup(rcv.Close)
	path := writeReplyConfig(t, simAddr, rcv.URL+"/mo", "webhooks: { allow_private: true }\nlog: { level: debug }\n")
	d := startDaemon(t, path)
	base := "http://" + d.httpAddr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) { // the bind is in the simulator: no event to wait on
		err := sim.InjectMO("13712345678", "106590112", "收到")
		if err == nil {
			break
		}
		if !errors.Is(err, smpp.ErrNoReceiver) || time.Now().After(deadline) {
			t.Fatalf("inject: %v", err)
		}
	}
	waitPost := func(want int) {
		t.Helper()
		select {
		case got := <-posted:
			if got != want {
				t.Fatalf("the reply's POST answered %d, want %d", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no reply POST within 20 s:\n%s", d.log())
		}
	}
	waitPost(http.StatusServiceUnavailable)
	admin := func(base string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", base, "--token", "test-token"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	type failing struct {
		Enterprise string `json:"enterprise"`
		Last       struct {
			Status       int        `json:"status"`
			FailingSince *time.Time `json:"failing_since"`
		} `json:"last"`
	}
	deskList := func(base string) (receipts, replies []failing) {
		t.Helper()
		code, body := postJSON(t, "GET", base+"/admin/v1/status", "test-token", "")
		var st struct {
			Receipts []failing `json:"receipt_webhooks_failing"`
			Replies  []failing `json:"reply_webhooks_failing"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		return st.Receipts, st.Replies
	}
	var before []failing
	waitCond(t, 10*time.Second, "T1 on the desk's list of failing reply endpoints", func() bool {
		_, before = deskList(base)
		return len(before) == 1 && before[0].Enterprise == "T1" && before[0].Last.FailingSince != nil
	})
	since := *before[0].Last.FailingSince
	if code, out, errOut := admin(base, "daemon", "status"); code != 0 ||
		!regexp.MustCompile(`reply webhook failing T1\s+since \S+: webhook: HTTP status 503`).MatchString(out) || strings.Contains(out, "receipt webhook failing") {
		t.Errorf("daemon status: exit %d\n%s%s", code, out, errOut)
	}
	if code, body := postJSON(t, "GET", base+"/metrics", "test-token", ""); code != http.StatusOK ||
		!strings.Contains(body, `qxtd_reply_webhook_failing_since_seconds{enterprise="T1"}`) ||
		strings.Contains(body, `qxtd_receipt_webhook_failing_since_seconds{`) {
		t.Errorf("metrics: %d, want T1's reply series and no receipts' one", code)
	}

	// Killed after the periodic save: the list and the metric come back.
	d.waitLog(t, "receipt webhook: last POSTs saved", 0, 2*webhook.SaveEvery)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	d = startDaemon(t, path)
	base = "http://" + d.httpAddr
	if receipts, replies := deskList(base); len(receipts) != 0 || len(replies) != 1 || replies[0].Enterprise != "T1" ||
		replies[0].Last.FailingSince == nil || !replies[0].Last.FailingSince.Equal(since) {
		t.Fatalf("after the restart: receipts %+v, replies %+v; want T1's replies failing since %v", receipts, replies, since)
	}
	if code, body := postJSON(t, "GET", base+"/metrics", "test-token", ""); code != http.StatusOK ||
		!strings.Contains(body, `qxtd_reply_webhook_failing_since_seconds{enterprise="T1"}`) {
		t.Errorf("metrics after the restart: %d, no T1 series", code)
	}

	// Mended: the receipts' retry, then the replies', at once.
	refuse.Store(false)
	if code, out, errOut := admin(base, "enterprise", "receipt-retry", "T1"); code != 0 || !strings.Contains(out, "0 receipts due now") {
		t.Fatalf("receipt-retry: exit %d\n%s%s", code, out, errOut)
	}
	asked := time.Now()
	code, out, errOut := admin(base, "enterprise", "receipt-retry", "T1", "--reply")
	switch {
	case code == 0 && strings.Contains(out, "1 replies due now"):
		waitPost(http.StatusNoContent)
		if d := time.Since(asked); d > 5*time.Second {
			t.Errorf("the reply went %v after the retry-now, want at once", d)
		}
	case code == 0 && strings.Contains(out, "0 replies due now") && time.Since(since) > 10*time.Second:
		// Its backoff (10 s) ended during a slow restart: due already,
		// it goes by itself.
		waitPost(http.StatusNoContent)
	default:
		t.Fatalf("receipt-retry --reply: exit %d\n%s%s", code, out, errOut)
	}
	waitCond(t, 10*time.Second, "T1 off the list once its reply is delivered", func() bool {
		_, replies := deskList(base)
		return len(replies) == 0
	})
	if code, _, errOut := admin(base, "enterprise", "receipt-retry", "T1", "--reply"); code != 1 || !strings.Contains(errOut, "too_many_requests") {
		t.Errorf("receipt-retry --reply again within the minute: exit %d\n%s", code, errOut)
	}
}

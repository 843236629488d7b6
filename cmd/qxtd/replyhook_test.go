package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

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
	path := writeConfig(t, t.TempDir(), simAddr, "webhooks: { allow_private: true }\n")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "    tps: 100000\n",
		"    tps: 100000\n    service_number: \"1065901\"\n    ext_len: 2\n    reply_url: "+rcv.URL+"/mo\n    reply_batch: 5\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
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

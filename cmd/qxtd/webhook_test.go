package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

type hookPost struct {
	body    []byte
	ts, sig string
}

// TestReceiptWebhookEndToEnd runs the real daemon with the simulator as
// the SMSC: a message sent over HTTP with a receipt_url gets exactly one
// signed POST when its receipt comes back; a receipt_url that is not
// http(s) is refused; and an endpoint that never answers does not slow
// sending (the receipts wait in the store, not in the send path).
func TestReceiptWebhookEndToEnd(t *testing.T) {
	dir := t.TempDir()
	_, simAddr := startSim(t, smpp.SimOptions{DLRDelay: 20 * time.Millisecond})
	cfg := writeConfig(t, dir, simAddr, "webhooks: { allow_private: true }\n")
	d := startDaemon(t, cfg)
	base := "http://" + d.httpAddr

	posts := make(chan hookPost, 16)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts <- hookPost{body: b, ts: r.Header.Get("X-Qxtd-Timestamp"), sig: r.Header.Get("X-Qxtd-Signature")}
	}))
	defer good.Close()
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers while the test runs
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer dead.Close()
	defer close(hang)

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
	send := func(to, url string) (int, string, time.Duration) {
		start := time.Now()
		code, body := postJSON(t, "POST", base+"/v1/messages", login.Token,
			`{"to":["`+to+`"],"text":"回执测试","receipt_url":"`+url+`"}`)
		return code, body, time.Since(start)
	}

	code, body, _ = send("13800138000", "ftp://example.com/dlr")
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
	if !webhook.Verify(sec.Secret, p.ts, p.body, p.sig) {
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

package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sendPersonalized posts msgs and returns the answer (200 expected).
func (r *userRig) sendPersonalized(token string, req PersonalizedRequest) SendResponse {
	r.t.Helper()
	var out SendResponse
	r.must(http.StatusOK, "POST", "/v1/messages/personalized", token, req, &out)
	if len(out.Results) != len(req.Messages) {
		r.t.Fatalf("%d results for %d messages", len(out.Results), len(req.Messages))
	}
	return out
}

// TestSendPersonalized: each message of one request goes to its own
// number with its own text, signed; each is answered on its own, in
// order: a malformed number, a number not on the whitelist and a text too
// long refuse their own message only. The messages are like any other:
// in the outbox with their state and text.
func TestSendPersonalized(t *testing.T) {
	r := newUserRig(t)
	alice := r.keys["alice"]
	out := r.sendPersonalized(alice, PersonalizedRequest{Messages: []PersonalMessage{
		{To: uNumA1, Text: "张三您好，验证码 384921"},
		{To: "12", Text: "坏号码"},
		{To: uNumA3, Text: "李四您好，验证码 551007"},
		{To: uNumA2, Text: strings.Repeat("长", 501)},
		{To: "13500000001", Text: "不在白名单"},
	}})
	want := []struct{ to, status, reason string }{
		{uNumA1, "accepted", ""}, {"12", "refused", "invalid_number"}, {uNumA3, "accepted", ""},
		{uNumA2, "refused", "too_long"}, {"13500000001", "refused", "not_whitelisted"},
	}
	for i, w := range want {
		if g := out.Results[i]; g.To != w.to || g.Status != w.status || g.Reason != w.reason || (g.Status == "accepted") != (g.ID != "") {
			t.Errorf("result %d: %+v, want %s %s %s", i, g, w.to, w.status, w.reason)
		}
	}
	if out.Accepted != 2 || out.Refused != 3 {
		t.Errorf("accepted %d, refused %d; want 2 and 3", out.Accepted, out.Refused)
	}
	r.waitReceived(uNumA1, "【甲公司】张三您好，验证码 384921", 10*time.Second)
	r.waitReceived(uNumA3, "【甲公司】李四您好，验证码 551007", 10*time.Second)
	if got := r.received(uNumA2); len(got) != 0 {
		t.Errorf("the refused text reached the SMSC: %q", got)
	}
	m := r.waitState(alice, out.Results[2].ID, "delivered", 10*time.Second)
	if m.Text != "【甲公司】李四您好，验证码 551007" || m.To != uNumA3 {
		t.Errorf("the outbox's message: %+v", m)
	}
}

// TestSendPersonalizedBounds: the request's own checks (400 naming the
// message), its single token of the rate limit (as a group send), the
// quota message by message, and a retried Idempotency-Key.
func TestSendPersonalizedBounds(t *testing.T) {
	r := newUserRig(t)
	alice := r.keys["alice"]
	many := make([]PersonalMessage, MaxRecipients+1)
	for i := range many {
		many[i] = PersonalMessage{To: uNumA1, Text: "x"}
	}
	for _, tc := range []struct {
		body PersonalizedRequest
		msg  string
	}{
		{PersonalizedRequest{}, "messages: 1 to 1000, got 0"},
		{PersonalizedRequest{Messages: many}, "messages: 1 to 1000, got 1001"},
		{PersonalizedRequest{Messages: []PersonalMessage{{To: uNumA1, Text: "a"}, {To: uNumA3}}}, "messages[1].text is required"},
		{PersonalizedRequest{Messages: []PersonalMessage{{Text: "a"}}}, "messages[0].to is required"},
		{PersonalizedRequest{Messages: []PersonalMessage{{To: uNumA1, Text: "a"}}, Source: "12a"}, "source: up to 20 digits"},
		{PersonalizedRequest{Messages: []PersonalMessage{{To: uNumA1, Text: "a"}}, ValidUntil: "2020-01-01T00:00:00Z"}, "valid_until: must be in the future"},
	} {
		e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages/personalized", alice, tc.body)
		if e.Error.Message != tc.msg {
			t.Errorf("error %q, want %q", e.Error.Message, tc.msg)
		}
	}
	// C may submit once a second: three messages are one submission, a
	// second request at once is 429 with nothing sent.
	carl := r.keys["carl"]
	if out := r.sendPersonalized(carl, PersonalizedRequest{Messages: []PersonalMessage{{To: uNumA1, Text: "一"}, {To: uNumA1, Text: "二"}, {To: uNumA1, Text: "三"}}}); out.Accepted != 3 {
		t.Fatalf("C's three messages in one request: %+v", out)
	}
	code, b := r.call("POST", "/v1/messages/personalized", carl, PersonalizedRequest{Messages: []PersonalMessage{{To: uNumA1, Text: "四"}}}, nil)
	if code != http.StatusTooManyRequests || !bytes.Contains(b, []byte(`"reason":"rate_limited"`)) {
		t.Errorf("C's second request at once: %d %s", code, b)
	}
	// D has 3 segments a month and no overage: the fourth and fifth of
	// one request are refused, the first three go.
	msgs := make([]PersonalMessage, 5)
	for i := range msgs {
		msgs[i] = PersonalMessage{To: uNumA1, Text: "丁" + strings.Repeat("!", i)}
	}
	out := r.sendPersonalized(r.keys["dave"], PersonalizedRequest{Messages: msgs})
	for i, res := range out.Results {
		if want := map[bool]string{true: "accepted", false: "refused"}[i < 3]; res.Status != want || (i >= 3 && res.Reason != "quota_exceeded") {
			t.Errorf("D's message %d: %+v, want %s", i, res, want)
		}
		// A refusal for the quota tells what is left of the month and what
		// the message needs, as the store counted them when it refused.
		if i >= 3 && (res.DetailZH != "本月可发 3 条，剩余 0 条，本条需 1 条" ||
			res.Message != "monthly package or spending cap exhausted: 3 segments this month, 0 left; the message needs 1") {
			t.Errorf("D's message %d: detail %q / %q", i, res.DetailZH, res.Message)
		}
	}
	// A retry with the same key gets the first answer; nothing more is sent.
	first := postPersonalKeyed(t, r, alice, "pk-1")
	again := postPersonalKeyed(t, r, alice, "pk-1")
	if !bytes.Equal(first, again) {
		t.Errorf("the retry's answer %s, want the first's %s", again, first)
	}
	// The same key on POST /v1/messages is another request: it sends.
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/messages", strings.NewReader(`{"to":["`+uNumA2+`"],"text":"另一个"}`))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Idempotency-Key", "pk-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sent SendResponse
	err = json.NewDecoder(resp.Body).Decode(&sent)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "" || sent.Accepted != 1 || sent.Results[0].To != uNumA2 {
		t.Errorf("the key of a personalized send on /v1/messages: %d replayed %q %+v %v; want a send of its own",
			resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), sent, err)
	}
}

func postPersonalKeyed(t *testing.T, r *userRig, token, key string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/messages/personalized",
		strings.NewReader(`{"messages":[{"to":"`+uNumA1+`","text":"一次"},{"to":"`+uNumA3+`","text":"只一次"}]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("keyed personalized send: %d %s", resp.StatusCode, b.Bytes())
	}
	return b.Bytes()
}

package api

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

func TestUserSendPerRecipientAndStatus(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	out := r.send(key, SendRequest{To: []string{uNumA1, uNumPending, uNumA2}, Text: "会议改到三点"})
	if out.Accepted != 2 || out.Refused != 1 {
		t.Fatalf("accepted %d refused %d: %+v", out.Accepted, out.Refused, out.Results)
	}
	ok1, bad, ok2 := out.Results[0], out.Results[1], out.Results[2]
	if ok1.To != uNumA1 || ok1.Status != "accepted" || ok1.ID == "" || ok2.To != uNumA2 || ok2.Status != "accepted" || ok2.ID == "" {
		t.Fatalf("accepted results %+v %+v", ok1, ok2)
	}
	if bad.To != uNumPending || bad.Status != "refused" || bad.ID != "" || bad.Reason != "not_whitelisted" ||
		bad.Code != "0x00000400" || !strings.Contains(bad.Message, "whitelist") {
		t.Fatalf("refused result %+v", bad)
	}
	// The SMSC gets the signed text, for the accepted numbers only.
	const signed = "【甲公司】会议改到三点"
	r.waitReceived(uNumA1, signed, 10*time.Second)
	r.waitReceived(uNumA2, signed, 10*time.Second)
	if got := r.received(uNumPending); len(got) != 0 {
		t.Fatalf("refused number reached the SMSC: %q", got)
	}
	// "Why wasn't it received?": the status after the receipt.
	m := r.waitState(key, ok1.ID, "delivered", 10*time.Second)
	if m.ID != ok1.ID || m.To != uNumA1 || m.Text != signed || m.Account != "alice" || m.StateZH != "接收成功" ||
		m.Scheduled || m.Segments != 1 || m.ErrorCode != "" || m.Receipt {
		t.Fatalf("message %+v", m)
	}
	if len(m.Parts) != 1 {
		t.Fatalf("parts %+v", m.Parts)
	}
	p := m.Parts[0]
	if p.State != "delivered" || p.SMSCID == "" || p.ErrorCode != "000" || p.Attempts != 1 || !p.DueAt.IsZero() ||
		p.SubmittedAt.Before(m.AcceptedAt) || p.DoneAt.Before(p.SubmittedAt) || !m.SubmittedAt.Equal(p.SubmittedAt) || !m.DoneAt.Equal(p.DoneAt) {
		t.Fatalf("part %+v of %+v", p, m)
	}
	// The wire form: ids are strings, zero times are absent.
	_, raw := r.call("GET", "/v1/messages/"+ok1.ID, key, nil, nil)
	if !bytes.Contains(raw, []byte(`"id":"`+ok1.ID+`"`)) || bytes.Contains(raw, []byte(`"send_at"`)) || bytes.Contains(raw, []byte(`"due_at"`)) {
		t.Errorf("wire form %s", raw)
	}

	// With priority (ahead of a backlog: gateway's
	// TestPrioritySkipsTheBacklog): taken and sent like any other.
	out = r.send(key, SendRequest{To: []string{uNumA2}, Text: "验证码 384921", Priority: true})
	if out.Accepted != 1 {
		t.Fatalf("a send with priority: %+v", out.Results)
	}
	r.waitReceived(uNumA2, "【甲公司】验证码 384921", 10*time.Second)
	// A scheduled one with priority is listed while it waits, marked so
	// (before 2026-12-07 a waiting priority message's record was left out
	// of every list: 定时发件箱 never showed one).
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	sched := r.send(key, SendRequest{To: []string{uNumA1}, Text: "明天的验证码", Priority: true, SendAt: at.Format(time.RFC3339)})
	var waiting MessagePage
	r.must(http.StatusOK, "GET", "/v1/scheduled", key, nil, &waiting)
	if len(waiting.Messages) != 1 || waiting.Messages[0].ID != sched.Results[0].ID || !waiting.Messages[0].Priority {
		t.Fatalf("the scheduled outbox: %+v, want the priority message, marked", waiting.Messages)
	}

	// A failed delivery shows the SMSC's error code.
	r.sim.SetFaults(smpp.Faults{Undeliv: 1})
	out = r.send(key, SendRequest{To: []string{uNumA3}, Text: "fail me"})
	m = r.waitState(key, out.Results[0].ID, "undeliverable", 10*time.Second)
	if m.ErrorCode != "001" || m.Parts[0].ErrorCode != "001" || m.StateZH != "接收失败" {
		t.Fatalf("undelivered %+v", m)
	}
}

// TestUserSendOnceANumber: a group send names a number twice, however
// written (a pasted list with a repeat): the number gets one message and
// is billed once; the repeat's result is "duplicate" with that message's
// id. A repeat of a refused number is refused as it was. A personalized
// send is a message per entry and sends each.
func TestUserSendOnceANumber(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	out := r.send(key, SendRequest{Text: "只发一次",
		To: []string{uNumA1, "+86 137-1234-5678", uNumPending, uNumPending, uNumA2, "86" + uNumA1}})
	want := []struct{ to, status, reason string }{
		{uNumA1, "accepted", ""}, {"+86 137-1234-5678", "duplicate", ""},
		{uNumPending, "refused", "not_whitelisted"}, {uNumPending, "refused", "not_whitelisted"},
		{uNumA2, "accepted", ""}, {"86" + uNumA1, "duplicate", ""},
	}
	for i, w := range want {
		if g := out.Results[i]; g.To != w.to || g.Status != w.status || g.Reason != w.reason {
			t.Errorf("result %d: %+v, want %s %s %s", i, g, w.to, w.status, w.reason)
		}
	}
	if id := out.Results[0].ID; id == "" || out.Results[1].ID != id || out.Results[5].ID != id {
		t.Errorf("the repeats' ids: %+v, want the first's", out.Results)
	}
	if out.Accepted != 2 || out.Refused != 2 || out.Duplicates != 2 {
		t.Errorf("accepted %d refused %d duplicates %d, want 2 2 2", out.Accepted, out.Refused, out.Duplicates)
	}
	r.waitReceived(uNumA1, "【甲公司】只发一次", 10*time.Second)
	r.waitState(key, out.Results[4].ID, "delivered", 10*time.Second)
	r.waitState(key, out.Results[0].ID, "delivered", 10*time.Second)
	if got := r.received(uNumA1); len(got) != 1 {
		t.Errorf("%s got %d messages: %q", uNumA1, len(got), got)
	}

	// Personalized: two texts for one number are two messages.
	pout := r.sendPersonalized(key, PersonalizedRequest{Messages: []PersonalMessage{
		{To: uNumA3, Text: "第一条"}, {To: "+86" + uNumA3, Text: "第二条"}}})
	if pout.Accepted != 2 || pout.Duplicates != 0 {
		t.Errorf("personalized to one number twice: %+v", pout)
	}
	r.waitReceived(uNumA3, "【甲公司】第二条", 10*time.Second)
}

func TestUserSendErrors(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/messages", "", SendRequest{To: []string{uNumA1}, Text: "x"})
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/messages", "qxtd_wrong", SendRequest{To: []string{uNumA1}, Text: "x"})
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", "qxs_unknown", nil)
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{Text: "x"})
	many := make([]string, MaxRecipients+1)
	for i := range many {
		many[i] = uNumA1
	}
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{To: many, Text: "x"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{To: []string{uNumA1}})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, map[string]any{"to": []string{uNumA1}, "text": "x", "sendat": "typo"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{To: []string{uNumA1}, Text: "x", SendAt: "tomorrow"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{To: []string{uNumA1}, Text: "x", SendAt: time.Now().AddDate(2, 0, 0).Format(time.RFC3339)})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", key, SendRequest{To: []string{uNumA1}, Text: "x", Source: "10657abc"})
	e := r.wantError(http.StatusUnprocessableEntity, "too_long", "POST", "/v1/messages", key, SendRequest{To: []string{uNumA1}, Text: strings.Repeat("长", 600)})
	if e.Error.Code != "0x00000406" || e.Error.DetailZH != "共 605 个字（含签名），最多 500 个字" {
		t.Errorf("too_long code %q, detail_zh %q", e.Error.Code, e.Error.DetailZH)
	}
	// An empty number is refused for itself, never dropped.
	out := r.send(key, SendRequest{To: []string{"", uNumA1}, Text: "x"})
	if out.Results[0].Reason != "invalid_number" || out.Results[1].Status != "accepted" {
		t.Fatalf("empty number: %+v", out.Results)
	}

	// C may submit once per second: the second request at once is 429.
	carl := r.keys["carl"]
	r.send(carl, SendRequest{To: []string{uNumA1}, Text: "one"})
	code, b := r.call("POST", "/v1/messages", carl, SendRequest{To: []string{uNumA1}, Text: "two"}, nil)
	if code != http.StatusTooManyRequests || !bytes.Contains(b, []byte(`"reason":"rate_limited"`)) || !bytes.Contains(b, []byte(`"code":"0x00000058"`)) ||
		!bytes.Contains(b, []byte(`"detail_zh":"本企业每秒最多提交 1 次"`)) || !bytes.Contains(b, []byte(`retry later: the enterprise's limit: 1 a second`)) {
		t.Fatalf("rate limit: %d %s", code, b)
	}

	// A disabled enterprise: every call is 403 account_disabled.
	if _, err := r.pol.UpdateEnterprise(policy.OperatorActor("test"), "C", func(e *policy.Enterprise) error {
		e.Disabled = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e = r.wantError(http.StatusForbidden, "account_disabled", "POST", "/v1/messages", carl, SendRequest{To: []string{uNumA1}, Text: "x"})
	if e.Error.Code != "0x00000408" {
		t.Errorf("account_disabled code %q", e.Error.Code)
	}
	r.wantError(http.StatusForbidden, "account_disabled", "POST", "/v1/login", "", LoginRequest{SystemID: "carl", Password: "secret3"})

	// Unknown routes and methods answer in JSON.
	r.wantError(http.StatusNotFound, "unknown_route", "GET", "/v1/nope", key, nil)
	code, b = r.call("PUT", "/v1/messages", key, nil, nil)
	if code != http.StatusMethodNotAllowed || !bytes.Contains(b, []byte("method_not_allowed")) {
		t.Fatalf("PUT /v1/messages: %d %s", code, b)
	}
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/messages/abc", key, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/messages/0", key, nil)
}

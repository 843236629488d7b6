package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// userRig is the whole daemon in-process: the SMSC simulator on loopback,
// the store, the policy on the store's file, the gateway with its upstream
// binds, and the API on an httptest server.
type userRig struct {
	t     *testing.T
	sim   *smpp.Simulator
	store *queue.Store
	pol   *policy.Policy
	gw    *gateway.Gateway
	srv   *Server
	url   string

	keys map[string]string // system_id → API key
}

// Enterprise A: alice (user), al2 (user), amy (admin); B: bob; C: carl
// (1 submission per second); D: dave (3 segments a month).
const (
	uNumA1      = "13712345678"
	uNumA2      = "13923412345"
	uNumA3      = "13800138000"
	uNumPending = "13712345679" // added by the enterprise, not approved
)

func newUserRig(t *testing.T) *userRig {
	t.Helper()
	return newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
}

// call sends a JSON request with a bearer token ("" = none) and decodes a
// 2xx answer into out (if not nil). It returns the status and the body.
func (r *userRig) call(method, path, token string, body, out any) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b
}

// must is call that fails the test unless the status is want.
func (r *userRig) must(want int, method, path, token string, body, out any) []byte {
	r.t.Helper()
	code, b := r.call(method, path, token, body, out)
	if code != want {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// wantError checks an error answer's status and reason; it returns the
// decoded error.
func (r *userRig) wantError(want int, reason, method, path, token string, body any) refusalBody {
	r.t.Helper()
	code, b := r.call(method, path, token, body, nil)
	var e refusalBody
	if err := json.Unmarshal(b, &e); err != nil {
		r.t.Fatalf("%s %s: %d, not a JSON error: %q", method, path, code, b)
	}
	if code != want || e.Error.Reason != reason {
		r.t.Fatalf("%s %s: %d %s, want %d %s", method, path, code, b, want, reason)
	}
	return e
}

func (r *userRig) send(token string, req SendRequest) SendResponse {
	r.t.Helper()
	var out SendResponse
	r.must(http.StatusOK, "POST", "/v1/messages", token, req, &out)
	if len(out.Results) != len(req.To) {
		r.t.Fatalf("%d results for %d recipients", len(out.Results), len(req.To))
	}
	return out
}

func (r *userRig) message(token, id string) Message {
	r.t.Helper()
	var m Message
	r.must(http.StatusOK, "GET", "/v1/messages/"+id, token, nil, &m)
	return m
}

// waitState polls a message's status until it is in state, or fails the
// test at the deadline.
func (r *userRig) waitState(token, id, state string, d time.Duration) Message {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m := r.message(token, id)
		if m.State == state {
			return m
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("message %s is %s after %v, want %s", id, m.State, d, state)
		}
	}
}

// received is what the simulator got for dest: the texts, each
// concatenated message joined from its parts (complete ones only).
func (r *userRig) received(dest string) []string {
	r.t.Helper()
	var out []string
	type frag struct {
		seq  uint8
		text string
	}
	groups := map[uint16][]frag{}
	for _, m := range r.sim.Received() {
		if m.Dest != dest {
			continue
		}
		text, udh, err := segment.DecodeIncoming(m.DataCoding, m.ESMClass, m.ShortMessage, nil, false)
		if err != nil {
			r.t.Fatalf("simulator message to %s: %v", dest, err)
		}
		if udh == nil || !udh.Concat {
			out = append(out, text)
			continue
		}
		g := append(groups[udh.Ref], frag{udh.Seq, text})
		groups[udh.Ref] = g
		if len(g) == int(udh.Total) {
			slices.SortFunc(g, func(a, b frag) int { return int(a.seq) - int(b.seq) })
			var sb strings.Builder
			for _, f := range g {
				sb.WriteString(f.text)
			}
			out = append(out, sb.String())
		}
	}
	return out
}

// waitReceived waits until the simulator got text for dest.
func (r *userRig) waitReceived(dest, text string, d time.Duration) {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !slices.Contains(r.received(dest), text) {
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("the SMSC did not receive %q for %s in %v; it has %q", text, dest, d, r.received(dest))
		}
	}
}

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

	// A failed delivery shows the SMSC's error code.
	r.sim.SetFaults(smpp.Faults{Undeliv: 1})
	out = r.send(key, SendRequest{To: []string{uNumA3}, Text: "fail me"})
	m = r.waitState(key, out.Results[0].ID, "undeliverable", 10*time.Second)
	if m.ErrorCode != "001" || m.Parts[0].ErrorCode != "001" || m.StateZH != "接收失败" {
		t.Fatalf("undelivered %+v", m)
	}
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
	if e.Error.Code != "0x00000406" {
		t.Errorf("too_long code %q", e.Error.Code)
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
	if code != http.StatusTooManyRequests || !bytes.Contains(b, []byte(`"reason":"rate_limited"`)) || !bytes.Contains(b, []byte(`"code":"0x00000058"`)) {
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

// TestUserScheduled: a scheduled message whose text and time are changed
// goes out with the new text at the new time; one that is changed and
// then cancelled never reaches the SMSC; neither can be changed once due.
func TestUserScheduled(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	t0 := time.Now()
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }

	m1 := r.send(key, SendRequest{To: []string{uNumA1}, Text: "原文一", SendAt: at(5 * time.Second)}).Results[0]
	m2 := r.send(key, SendRequest{To: []string{uNumA2}, Text: "原文二", SendAt: at(5 * time.Second), Receipt: true}).Results[0]
	if m1.Status != "accepted" || m2.Status != "accepted" {
		t.Fatalf("%+v %+v", m1, m2)
	}
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/scheduled", key, nil, &page)
	if len(page.Messages) != 2 || page.Messages[0].ID != m2.ID || page.Messages[1].ID != m1.ID ||
		!page.Messages[0].Scheduled || page.Messages[0].State != "accepted" || page.Messages[0].StateZH != "定时待发" || page.Messages[0].Parts != nil {
		t.Fatalf("scheduled outbox %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/messages", key, nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("scheduled messages in the sent outbox: %+v", page)
	}

	// m1: new text, sooner (1.5 s ahead).
	var got Message
	newAt := t0.Add(1500 * time.Millisecond)
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+m1.ID, key, map[string]string{"text": "改后一", "send_at": newAt.Format(time.RFC3339Nano)}, &got)
	if got.Text != "【甲公司】改后一" || !got.SendAt.Equal(newAt) || !got.Scheduled || got.Parts[0].DueAt.IsZero() {
		t.Fatalf("patched %+v", got)
	}
	// m2: new text and time, then cancelled.
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+m2.ID, key, map[string]string{"text": "改后二", "send_at": at(3 * time.Second)}, nil)
	r.must(http.StatusOK, "DELETE", "/v1/messages/"+m2.ID, key, nil, &got)
	if got.State != "cancelled" || got.Scheduled || got.StateZH != "已取消" || got.Parts[0].State != "cancelled" {
		t.Fatalf("cancelled %+v", got)
	}
	r.must(http.StatusOK, "DELETE", "/v1/messages/"+m2.ID, key, nil, nil) // again: the same
	r.wantError(http.StatusConflict, "not_scheduled", "PATCH", "/v1/messages/"+m2.ID, key, map[string]string{"text": "again"})
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/messages/"+m1.ID, key, map[string]string{})
	r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/messages/"+m1.ID, key, map[string]string{"text": ""})
	r.wantError(http.StatusUnprocessableEntity, "too_long", "PATCH", "/v1/messages/"+m1.ID, key, map[string]string{"text": strings.Repeat("长", 600)})
	// A witness scheduled after m2's time: once it is sent, m2 would have been.
	m3 := r.send(key, SendRequest{To: []string{uNumA3}, Text: "见证", SendAt: at(3500 * time.Millisecond)}).Results[0]

	r.waitReceived(uNumA1, "【甲公司】改后一", 10*time.Second)
	sent := r.waitState(key, m1.ID, "delivered", 10*time.Second)
	if sent.Parts[0].SubmittedAt.Before(newAt) || !sent.Parts[0].SubmittedAt.Before(t0.Add(5*time.Second)) {
		t.Fatalf("sent at %v, scheduled for %v", sent.Parts[0].SubmittedAt, newAt)
	}
	// Sent: no longer scheduled, cannot be changed.
	r.wantError(http.StatusConflict, "not_scheduled", "DELETE", "/v1/messages/"+m1.ID, key, nil)
	r.wantError(http.StatusConflict, "not_scheduled", "PATCH", "/v1/messages/"+m1.ID, key, map[string]string{"send_at": at(time.Hour)})

	r.waitReceived(uNumA3, "【甲公司】见证", 10*time.Second)
	r.waitState(key, m3.ID, "delivered", 10*time.Second)
	if got := append(r.received(uNumA2), r.received(uNumA1)...); len(got) != 1 {
		t.Fatalf("the SMSC received %q", got)
	}
	r.must(http.StatusOK, "GET", "/v1/scheduled", key, nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("scheduled outbox after everything: %+v", page)
	}
	r.must(http.StatusOK, "GET", "/v1/messages?state=cancelled", key, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != m2.ID || page.Messages[0].Text != "【甲公司】改后二" {
		t.Fatalf("cancelled in the sent outbox: %+v", page)
	}
	// Billing: the two delivered segments, nothing reserved for the cancelled one.
	r.waitUsage("A", 0, 2)
}

// waitUsage waits until the enterprise's usage this month is as given (the
// counters follow a commit a moment after the message can be read).
func (r *userRig) waitUsage(ent string, reserved, charged int64) {
	r.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		res, ch := r.store.Usage(ent, queue.BillingMonth(time.Now()))
		if res == reserved && ch == charged {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			r.t.Fatalf("usage of %s: reserved %d charged %d, want %d %d", ent, res, ch, reserved, charged)
		}
	}
}

func TestUserOutboxPaging(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	before := time.Now().Add(-time.Second)
	var to []string
	for range 4 {
		to = append(to, uNumA1, uNumA2, uNumA3)
	}
	out := r.send(key, SendRequest{To: to, Text: "分页"})
	sched := r.send(key, SendRequest{To: []string{uNumA1}, Text: "later", SendAt: time.Now().Add(time.Hour).Format(time.RFC3339)})
	var want []string
	for _, res := range out.Results {
		want = append(want, res.ID)
	}
	slices.Reverse(want)

	var got []string
	after, pages := "", 0
	for {
		var page MessagePage
		path := "/v1/messages?limit=5"
		if after != "" {
			path += "&after=" + after
		}
		r.must(http.StatusOK, "GET", path, key, nil, &page)
		pages++
		for _, m := range page.Messages {
			got = append(got, m.ID)
			if m.Parts != nil || m.To == "" || m.Text != "【甲公司】分页" {
				t.Fatalf("listed %+v", m)
			}
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("%d pages %v, want %v", pages, got, want)
	}
	if slices.Contains(got, sched.Results[0].ID) {
		t.Fatal("a scheduled message in the sent outbox")
	}

	var page MessagePage
	q := "/v1/messages?from=" + before.UTC().Format(time.RFC3339) + "&to=" + time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	r.must(http.StatusOK, "GET", q, key, nil, &page)
	if len(page.Messages) != 12 {
		t.Fatalf("from/to: %d", len(page.Messages))
	}
	r.must(http.StatusOK, "GET", "/v1/messages?from="+time.Now().Add(time.Minute).UTC().Format(time.RFC3339), key, nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("from the future: %d", len(page.Messages))
	}
	// Wait for the receipts, then filter by state.
	r.waitState(key, want[0], "delivered", 10*time.Second)
	for _, id := range want {
		r.waitState(key, id, "delivered", 10*time.Second)
	}
	r.must(http.StatusOK, "GET", "/v1/messages?state=delivered&limit=1000", key, nil, &page)
	if len(page.Messages) != 12 || page.Next != "" {
		t.Fatalf("delivered: %d next %q", len(page.Messages), page.Next)
	}
	r.must(http.StatusOK, "GET", "/v1/messages?state=rejected", key, nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("rejected: %d", len(page.Messages))
	}
	for _, bad := range []string{"state=bogus", "limit=0", "limit=1001", "limit=x", "after=-1", "from=yesterday"} {
		r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/messages?"+bad, key, nil)
	}
}

// uClock is a settable clock for the session table.
type uClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *uClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *uClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestUserConsoleSession(t *testing.T) {
	r := newUserRig(t)
	clock := &uClock{now: time.Now()}
	r.srv.user.sessions.now = clock.Now

	start := time.Now()
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "wrong"})
	if d := time.Since(start); d < loginDelayMin {
		t.Errorf("a failed login answered after %v", d)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/login", "", LoginRequest{SystemID: "nobody", Password: "secret1"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/login", "", "not an object")

	var lr LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	if !strings.HasPrefix(lr.Token, sessionPrefix) || lr.ExpiresIn != 1800 {
		t.Fatalf("login %+v", lr)
	}
	var me Me
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, &me)
	if me.SystemID != "alice" || me.Enterprise != "A" || !me.Session || me.Role != "user" || me.Signature != "【甲公司】" {
		t.Fatalf("me %+v", me)
	}
	// The console token sends like an API key.
	out := r.send(lr.Token, SendRequest{To: []string{uNumA1}, Text: "from the console"})
	if out.Accepted != 1 {
		t.Fatalf("%+v", out)
	}
	// Each request slides the expiry: 29 minutes idle, twice, is fine.
	clock.Add(29 * time.Minute)
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, nil)
	clock.Add(29 * time.Minute)
	r.must(http.StatusOK, "GET", "/v1/messages/"+out.Results[0].ID, lr.Token, nil, nil)
	// 30 minutes without a request ends it.
	clock.Add(30 * time.Minute)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	clock.Add(-time.Hour) // and it stays ended
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)

	// Logout ends a session at once; an API key cannot log out.
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	r.must(http.StatusNoContent, "POST", "/v1/logout", lr.Token, nil, nil)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/logout", r.keys["alice"], nil)
	r.must(http.StatusOK, "GET", "/v1/me", r.keys["alice"], nil, &me)
	if me.Session {
		t.Error("API key reported as a session")
	}

	// A deleted user's session ends with it.
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "al2", Password: "secret1"}, &lr)
	if err := r.pol.DeleteUser(policy.OperatorActor("test"), "al2"); err != nil {
		t.Fatal(err)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	if n := r.srv.user.sessions.len(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestUserSessionTable(t *testing.T) {
	clock := &uClock{now: time.Now()}
	s := newSessionStore(3, SessionIdle, clock.Now)
	var toks []string
	for i := range 3 {
		tok, err := s.create(fmt.Sprint("u", i), "E")
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		clock.Add(time.Minute)
	}
	if len(toks[0]) != len(sessionPrefix)+43 || toks[0] == toks[1] {
		t.Fatalf("tokens %q", toks)
	}
	// u0 is used again: u1 is now the least recently used and goes first.
	if se, ok := s.touch(toks[0]); !ok || se.systemID != "u0" || se.enterprise != "E" {
		t.Fatalf("touch %+v %v", se, ok)
	}
	t4, _ := s.create("u3", "E")
	if _, ok := s.touch(toks[1]); ok {
		t.Fatal("the least recently used session was not evicted")
	}
	for _, tok := range []string{toks[0], toks[2], t4} {
		if _, ok := s.touch(tok); !ok {
			t.Fatalf("session %q lost", tok)
		}
	}
	if s.len() != 3 {
		t.Fatalf("%d sessions", s.len())
	}
	// Idle expiry: exactly SessionIdle after the last use.
	clock.Add(SessionIdle - time.Nanosecond)
	if s.len() != 3 {
		t.Fatal("expired early")
	}
	clock.Add(time.Nanosecond)
	if s.len() != 0 {
		t.Fatal("not expired")
	}
	s.end("qxs_unknown") // harmless

	// The login throttle doubles up to its cap and forgets on success.
	l := loginThrottle{now: clock.Now}
	var ds []time.Duration
	for range 8 {
		ds = append(ds, l.failed("1.2.3.4"))
	}
	if ds[0] != loginDelayMin || ds[1] != 2*loginDelayMin || ds[7] != loginDelayMax {
		t.Fatalf("delays %v", ds)
	}
	l.succeeded("1.2.3.4")
	if d := l.failed("1.2.3.4"); d != loginDelayMin {
		t.Fatalf("after success: %v", d)
	}
}

// TestUserIsolation: another enterprise cannot see, change, cancel or
// list a message; the answers are those for an id that does not exist.
// Within an enterprise, a user sees its own messages and the admin all.
func TestUserIsolation(t *testing.T) {
	r := newUserRig(t)
	alice, al2, amy, bob := r.keys["alice"], r.keys["al2"], r.keys["amy"], r.keys["bob"]
	now := r.send(alice, SendRequest{To: []string{uNumA1}, Text: "A 的消息"}).Results[0].ID
	later := r.send(alice, SendRequest{To: []string{uNumA1}, Text: "A 的定时消息", SendAt: time.Now().Add(time.Hour).Format(time.RFC3339)}).Results[0].ID
	bobs := r.send(bob, SendRequest{To: []string{uNumA1}, Text: "B 的消息"}).Results[0].ID

	_, unknown := r.call("GET", "/v1/messages/987654321", bob, nil, nil)
	for _, id := range []string{now, later} {
		for _, c := range []struct {
			method string
			body   any
		}{{"GET", nil}, {"PATCH", map[string]string{"text": "hacked"}}, {"DELETE", nil}} {
			code, b := r.call(c.method, "/v1/messages/"+id, bob, c.body, nil)
			if code != http.StatusNotFound || !bytes.Equal(b, unknown) {
				t.Fatalf("B %s A's %s: %d %s (unknown id: %s)", c.method, id, code, b, unknown)
			}
			// A user of A does not see a colleague's message either.
			code, b = r.call(c.method, "/v1/messages/"+id, al2, c.body, nil)
			if code != http.StatusNotFound || !bytes.Equal(b, unknown) {
				t.Fatalf("al2 %s alice's %s: %d %s", c.method, id, code, b)
			}
		}
	}
	for _, path := range []string{"/v1/messages", "/v1/scheduled", "/v1/messages?account=alice", "/v1/messages?state=accepted"} {
		var page MessagePage
		r.must(http.StatusOK, "GET", path, bob, nil, &page)
		for _, m := range page.Messages {
			if m.ID == now || m.ID == later {
				t.Fatalf("B's %s lists A's %s", path, m.ID)
			}
		}
		r.must(http.StatusOK, "GET", path, al2, nil, &page)
		if len(page.Messages) != 0 {
			t.Fatalf("al2's %s lists %+v", path, page.Messages)
		}
	}
	// A's scheduled message is untouched; A's admin sees and edits it.
	m := r.message(alice, later)
	if !m.Scheduled || m.Text != "【甲公司】A 的定时消息" {
		t.Fatalf("after B's attempts: %+v", m)
	}
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/scheduled", amy, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != later {
		t.Fatalf("admin's scheduled outbox %+v", page)
	}
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+later, amy, map[string]string{"text": "管理员改"}, &m)
	if m.Text != "【甲公司】管理员改" || m.Account != "alice" {
		t.Fatalf("admin edit %+v", m)
	}
	r.must(http.StatusOK, "DELETE", "/v1/messages/"+later, amy, nil, nil)
	// An edit keeps the sender's user signature, whoever makes it.
	own := r.send(al2, SendRequest{To: []string{uNumA1}, Text: "原文", SendAt: time.Now().Add(time.Hour).Format(time.RFC3339)}).Results[0].ID
	if m = r.message(al2, own); m.Text != "【甲公司】原文——甲二" {
		t.Fatalf("al2's text %q", m.Text)
	}
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+own, amy, map[string]string{"text": "改"}, &m)
	if m.Text != "【甲公司】改——甲二" || m.Account != "al2" {
		t.Fatalf("admin edit of al2's message: %+v", m)
	}
	r.must(http.StatusOK, "GET", "/v1/messages/"+bobs, bob, nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/messages/"+bobs, amy, nil)
}

// TestUserRescheduleSegments: a new text is signed and encoded again; a
// change in its number of segments moves the quota reservation, and one
// past the enterprise's limit is refused with nothing changed.
func TestUserRescheduleSegments(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["dave"]
	id := r.send(key, SendRequest{To: []string{uNumA1}, Text: "短", SendAt: time.Now().Add(time.Hour).Format(time.RFC3339)}).Results[0].ID
	wantUsage := func(reserved, charged int64) { t.Helper(); r.waitUsage("D", reserved, charged) }
	wantUsage(1, 0)

	long := strings.Repeat("长", 100) // 105 characters signed: 2 UCS-2 segments
	var m Message
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+id, key, map[string]string{"text": long}, &m)
	if m.Segments != 2 || len(m.Parts) != 2 || m.Text != "【丁公司】"+long {
		t.Fatalf("patched %+v", m)
	}
	wantUsage(2, 0)

	// 4 segments would take D past its 3.
	e := r.wantError(http.StatusUnprocessableEntity, "quota_exceeded", "PATCH", "/v1/messages/"+id, key, map[string]string{"text": strings.Repeat("多", 200)})
	if e.Error.Code != "0x00000404" {
		t.Errorf("quota code %q", e.Error.Code)
	}
	wantUsage(2, 0)
	if m = r.message(key, id); m.Segments != 2 || m.Text != "【丁公司】"+long {
		t.Fatalf("changed by a refused edit: %+v", m)
	}

	// A send time in the past: at once.
	r.must(http.StatusOK, "PATCH", "/v1/messages/"+id, key, map[string]string{"send_at": time.Now().Add(-time.Minute).Format(time.RFC3339)}, &m)
	r.waitReceived(uNumA1, "【丁公司】"+long, 10*time.Second)
	r.waitState(key, id, "delivered", 10*time.Second)
	wantUsage(0, 2)
}

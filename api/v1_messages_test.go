package api

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

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

// TestUserScheduledSendRange: send_from and send_to narrow the scheduled
// outbox by the time its messages go out, not by when they were accepted
// (all were accepted now): the middle of three Beijing days is the two
// sent that day, 00:00 included and the next 00:00 not; a bad time and a
// range that ends before it begins are 400 invalid, naming the parameter.
func TestUserScheduledSendRange(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	now := time.Now().In(shanghai)
	d1 := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, shanghai)
	d2, d3 := d1.AddDate(0, 0, 1), d1.AddDate(0, 0, 2)
	for text, at := range map[string]time.Time{"第一天中午": d1.Add(12 * time.Hour), "第二天零点": d2,
		"第二天下午": d2.Add(15 * time.Hour), "第三天零点": d3} {
		r.send(key, SendRequest{To: []string{uNumA1}, Text: text, SendAt: at.Format(time.RFC3339)})
	}
	list := func(q url.Values) []string {
		t.Helper()
		var page MessagePage
		r.must(http.StatusOK, "GET", "/v1/scheduled?"+q.Encode(), key, nil, &page)
		var got []string
		for _, m := range page.Messages {
			got = append(got, strings.TrimPrefix(m.Text, "【甲公司】"))
		}
		slices.Sort(got)
		return got
	}
	day := func(t time.Time) string { return t.Format(time.RFC3339) }
	for _, c := range []struct {
		q    url.Values
		want []string
	}{
		{url.Values{"send_from": {day(d2)}, "send_to": {day(d3)}}, []string{"第二天下午", "第二天零点"}},
		{url.Values{"send_from": {day(d2)}}, []string{"第三天零点", "第二天下午", "第二天零点"}},
		{url.Values{"send_to": {day(d2)}}, []string{"第一天中午"}},
		// The same instant in UTC: a range of instants, not of dates.
		{url.Values{"send_from": {d2.UTC().Format(time.RFC3339)}, "send_to": {d3.UTC().Format(time.RFC3339)}}, []string{"第二天下午", "第二天零点"}},
		// from= and to= stay the accepted time: all were accepted now.
		{url.Values{"from": {day(now.Add(-time.Hour))}, "send_from": {day(d2)}, "send_to": {day(d3)}}, []string{"第二天下午", "第二天零点"}},
		{url.Values{"to": {day(now.Add(-time.Hour))}, "send_from": {day(d2)}, "send_to": {day(d3)}}, nil},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.q.Encode(), got, c.want)
		}
	}
	for q, want := range map[string]string{
		"send_from=tomorrow":                  "send_from: not an RFC 3339 time",
		"send_to=" + d2.Format(time.DateOnly): "send_to: not an RFC 3339 time",
		"send_from=" + url.QueryEscape(day(d3)) + "&send_to=" + url.QueryEscape(day(d2)): "send_to is before send_from",
	} {
		if e := r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/scheduled?"+q, key, nil); e.Error.Message != want {
			t.Errorf("%s: %q, want %q", q, e.Error.Message, want)
		}
	}
}

func TestUserOutboxPaging(t *testing.T) {
	r := newUserRig(t)
	key := r.keys["alice"]
	before := time.Now().Add(-time.Second)
	// Twelve messages to three numbers (a group send names a number once).
	var msgs []PersonalMessage
	for range 4 {
		for _, n := range []string{uNumA1, uNumA2, uNumA3} {
			msgs = append(msgs, PersonalMessage{To: n, Text: "分页"})
		}
	}
	out := r.sendPersonalized(key, PersonalizedRequest{Messages: msgs})
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
	// By the recipient, in any form: 4 each.
	for _, n := range []string{uNumA2, "+86 139-2341-2345", "2345"} {
		r.must(http.StatusOK, "GET", "/v1/messages?number="+url.QueryEscape(n), key, nil, &page)
		if len(page.Messages) != 4 {
			t.Fatalf("number %q: %d messages", n, len(page.Messages))
		}
		for _, m := range page.Messages {
			if m.To != uNumA2 {
				t.Fatalf("number %q: listed one to %s", n, m.To)
			}
		}
	}
	r.must(http.StatusOK, "GET", "/v1/scheduled?number="+uNumA1, key, nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != sched.Results[0].ID {
		t.Fatalf("scheduled to %s: %+v", uNumA1, page.Messages)
	}
	r.must(http.StatusOK, "GET", "/v1/scheduled?number="+uNumA2, key, nil, &page)
	if len(page.Messages) != 0 {
		t.Fatalf("scheduled to %s: %+v", uNumA2, page.Messages)
	}
	for _, bad := range []string{"state=bogus", "limit=0", "limit=1001", "limit=x", "after=-1", "from=yesterday",
		"number=%2B-", "number=" + strings.Repeat("1", 33)} {
		r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/messages?"+bad, key, nil)
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
	if want := "本月可发 3 条，剩余 1 条，改后的内容多需 2 条"; e.Error.DetailZH != want {
		t.Errorf("quota detail_zh %q, want %q", e.Error.DetailZH, want)
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

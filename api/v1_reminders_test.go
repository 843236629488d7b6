package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/smpp"
)

func TestOpenAPIReminderSchemas(t *testing.T) {
	checkSchemas(t, loadOpenAPI(t), map[string]any{
		"ReminderRequest":    ReminderRequest{},
		"Reminder":           Reminder{},
		"ReminderWeek":       ReminderWeek{},
		"ReminderOccurrence": ReminderOccurrence{},
		"OccurrenceRequest":  OccurrenceRequest{},
	})
}

// waitSMSC waits until the SMSC simulator has a message whose text
// contains want, or fails the test at the deadline.
func (r *userRig) waitSMSC(want string, d time.Duration) smpp.SimMessage {
	r.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, m := range r.sim.Received() {
			if strings.Contains(ucs2(m.ShortMessage), want) {
				return m
			}
		}
		select {
		case <-deadline.C:
			r.t.Fatalf("after %v the SMSC has no message with %q", d, want)
		case <-tick.C:
		}
	}
}

func ucs2(b []byte) string {
	var rs []rune
	for i := 0; i+1 < len(b); i += 2 {
		rs = append(rs, rune(b[i])<<8|rune(b[i+1]))
	}
	return string(rs)
}

func TestRemindersOverHTTP(t *testing.T) {
	r := newUserRig(t)
	alice, bob, al2, amy := r.keys["alice"], r.keys["bob"], r.keys["al2"], r.keys["amy"]
	mobile := uNumA1
	if _, err := r.pol.UpdateUser(policy.OperatorActor("test"), "alice", policy.UserUpdate{Mobile: &mobile}); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	now := time.Now()

	// Refused with the reason.
	for _, tc := range []struct {
		req  ReminderRequest
		want string
	}{
		{ReminderRequest{Text: str("x"), Freq: str("weekly"), Start: str(now.Add(time.Hour).Format(time.RFC3339))}, "weekly: no weekday chosen"},
		{ReminderRequest{Text: str("x"), Freq: str("once"), Start: str(now.Add(-time.Minute).Format(time.RFC3339))}, "the reminder is in the past"},
		{ReminderRequest{Text: str("x"), Freq: str("monthly"), Start: str("2027-02-01T09:00:00+08:00"), MonthDay: new(31), Until: str("2027-02-28")}, "the rule never fires"},
		{ReminderRequest{Text: str("x"), Freq: str("weekly"), Weekdays: &[]string{"moon"}, Start: str(now.Add(time.Hour).Format(time.RFC3339))}, `weekdays: "moon"`},
		{ReminderRequest{Freq: str("once"), Start: str(now.Add(time.Hour).Format(time.RFC3339))}, "text: required"},
		{ReminderRequest{Text: str("x"), Freq: str("once"), Start: str(now.Add(time.Hour).Format(time.RFC3339)), Groups: &[]string{"无此部门"}}, "无此部门"},
	} {
		e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/reminders", alice, tc.req)
		if !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.req, e.Error.Message, tc.want)
		}
	}

	// A one-off two seconds ahead, to the user's own mobile: at the SMSC at
	// its time, listed in its week with its message, in the outbox.
	at := now.Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	var rem Reminder
	r.must(http.StatusCreated, "POST", "/v1/reminders", alice, ReminderRequest{
		Text: str("周会提醒"), Freq: str("once"), Start: str(at.Format(time.RFC3339)),
	}, &rem)
	m := r.waitSMSC("周会提醒", 15*time.Second)
	if time.Now().Before(at) {
		t.Errorf("at the SMSC before its time %v", at)
	}
	if m.Dest != uNumA1 {
		t.Errorf("sent to %s, want alice's mobile", m.Dest)
	}
	week := reminder.WeekOf(at).String()
	var wk ReminderWeek
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+week, alice, nil, &wk)
	if wk.Week != week || len(wk.Occurrences) != 1 || wk.Occurrences[0].State != reminder.StateScheduled || len(wk.Occurrences[0].MessageIDs) != 1 {
		t.Fatalf("week %+v", wk)
	}
	msg := r.message(alice, wk.Occurrences[0].MessageIDs[0])
	if msg.Account != "alice" || msg.Text != "【甲公司】周会提醒" {
		t.Errorf("the occurrence's message %+v", msg)
	}
	// The default week is the current one.
	var cur ReminderWeek
	r.must(http.StatusOK, "GET", "/v1/reminders", alice, nil, &cur)
	if cur.Week != reminder.WeekOf(time.Now()).String() {
		t.Errorf("default week %s", cur.Week)
	}

	// Nobody else sees it: another enterprise, another user; the admin does.
	for _, key := range []string{bob, al2} {
		r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/reminders/"+rem.ID, key, nil)
		r.wantError(http.StatusNotFound, "not_found", "PATCH", "/v1/reminders/"+rem.ID, key, ReminderRequest{Text: str("改")})
		r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/reminders/"+rem.ID, key, nil)
		r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/reminders/"+rem.ID+"/occurrences/"+at.In(reminder.Shanghai).Format(reminder.Date), key, nil)
		var other ReminderWeek
		r.must(http.StatusOK, "GET", "/v1/reminders?week="+week, key, nil, &other)
		if len(other.Occurrences) != 0 {
			t.Errorf("another's listing %+v", other)
		}
	}
	r.must(http.StatusOK, "GET", "/v1/reminders/"+rem.ID, amy, nil, nil)

	// Weekly on Monday and Thursday next week: listed in that week, not
	// in this one (FAQ 11); one occurrence deleted, one moved.
	next, _ := reminder.ParseWeek(cur.Next)
	mon := next.Start().Add(9 * time.Hour)
	var wkly Reminder
	r.must(http.StatusCreated, "POST", "/v1/reminders", alice, ReminderRequest{
		Text: str("例会"), To: &[]string{uNumA2}, Freq: str("weekly"), Weekdays: &[]string{"mon", "thu"},
		Start: str(mon.Format(time.RFC3339)), Count: new(4), Before: new(15),
	}, &wkly)
	if wkly.Freq != "weekly" || strings.Join(wkly.Weekdays, ",") != "mon,thu" || wkly.Before != 15 {
		t.Errorf("stored %+v", wkly)
	}
	if !wkly.Next.Equal(mon) {
		t.Errorf("next %v, want the first Monday %v", wkly.Next, mon)
	}
	var nw ReminderWeek
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+cur.Next, alice, nil, &nw)
	if len(nw.Occurrences) != 2 || !nw.Occurrences[0].At.Equal(mon) || !nw.Occurrences[0].SendAt.Equal(mon.Add(-15*time.Minute)) {
		t.Fatalf("next week %+v", nw)
	}
	for _, o := range cur.Occurrences {
		if o.Reminder == wkly.ID {
			t.Errorf("next week's reminder listed this week: %+v", o)
		}
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/reminders/"+wkly.ID+"/occurrences/"+nw.Occurrences[0].Date, alice, nil, nil)
	thu := nw.Occurrences[1]
	r.must(http.StatusNoContent, "PATCH", "/v1/reminders/"+wkly.ID+"/occurrences/"+thu.Date, alice,
		OccurrenceRequest{At: thu.At.Add(time.Hour).Format(time.RFC3339), Text: "例会改到十点"}, nil)
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+cur.Next, alice, nil, &nw)
	if len(nw.Occurrences) != 1 || nw.Occurrences[0].Text != "例会改到十点" || !nw.Occurrences[0].At.Equal(thu.At.Add(time.Hour)) || !nw.Occurrences[0].Edited {
		t.Fatalf("after the changes %+v", nw)
	}
	// The week after: the other two events (count 4).
	var nn ReminderWeek
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+nw.Next, alice, nil, &nn)
	if len(nn.Occurrences) != 2 || nn.Prev != cur.Next {
		t.Fatalf("the week after %+v", nn)
	}

	// The series changed, then deleted.
	var changed Reminder
	r.must(http.StatusOK, "PATCH", "/v1/reminders/"+wkly.ID, alice, ReminderRequest{Text: str("例会（新）")}, &changed)
	if changed.Text != "例会（新）" || changed.Freq != "weekly" {
		t.Errorf("changed %+v", changed)
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/reminders/"+wkly.ID, alice, nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/reminders/"+wkly.ID, alice, nil)

	r.wantError(http.StatusBadRequest, "invalid", "GET", "/v1/reminders?week=2027-W53", alice, nil)
}

// A reminder's text is a message's (500 characters with the signature),
// refused 400 naming the field at create, change and an occurrence's
// change; a user keeps at most 100 reminders (422 reminders_limit), and
// the ones it keeps still work after a refusal.
func TestReminderLimitsOverHTTP(t *testing.T) {
	r := newUserRig(t)
	alice, al2 := r.keys["alice"], r.keys["al2"]
	str := func(s string) *string { return &s }
	later := func(text string) ReminderRequest {
		return ReminderRequest{Text: &text, To: &[]string{uNumA2}, Freq: str("daily"), Start: str(time.Now().Add(72 * time.Hour).Format(time.RFC3339))}
	}
	// 【甲公司】 is 5 characters: 495 of text make a message of 500.
	var rem Reminder
	r.must(http.StatusCreated, "POST", "/v1/reminders", alice, later(strings.Repeat("提", 495)), &rem)
	for _, tc := range []struct{ text, want string }{
		{strings.Repeat("x", 1<<19), "text: 524288 characters, at most 500 including the signature"},
		{strings.Repeat("提", 501), "text: 501 characters, at most 500 including the signature"},
		{strings.Repeat("提", 496), "text: 501 characters with the signature (496 without), at most 500"},
	} {
		e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/reminders", alice, later(tc.text))
		if e.Error.Message != tc.want {
			t.Errorf("POST, %d characters: %q, want %q", len([]rune(tc.text)), e.Error.Message, tc.want)
		}
		e = r.wantError(http.StatusBadRequest, "invalid", "PATCH", "/v1/reminders/"+rem.ID, alice, ReminderRequest{Text: &tc.text})
		if e.Error.Message != tc.want {
			t.Errorf("PATCH, %d characters: %q, want %q", len([]rune(tc.text)), e.Error.Message, tc.want)
		}
	}
	// al2 signs with its name too (——甲二): the same text is too long for it.
	e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/reminders", al2, later(strings.Repeat("提", 495)))
	if e.Error.Message != "text: 504 characters with the signature (495 without), at most 500" {
		t.Errorf("al2's: %q", e.Error.Message)
	}
	var wk ReminderWeek
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+reminder.WeekOf(rem.Next).String(), alice, nil, &wk)
	if len(wk.Occurrences) == 0 {
		t.Fatalf("no occurrence in the week of %v", rem.Next)
	}
	occ := "/v1/reminders/" + rem.ID + "/occurrences/" + wk.Occurrences[0].Date
	e = r.wantError(http.StatusBadRequest, "invalid", "PATCH", occ, alice, OccurrenceRequest{Text: strings.Repeat("提", 496)})
	if !strings.HasPrefix(e.Error.Message, "text: 501 characters with the signature") {
		t.Errorf("an occurrence's text: %q", e.Error.Message)
	}
	// Other fields a series keeps: a number that is none, a weekday twice.
	bad := later("x")
	bad.To = &[]string{strings.Repeat("1", 100)}
	if e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/reminders", alice, bad); !strings.HasPrefix(e.Error.Message, "to: ") {
		t.Errorf("a 100-digit number: %q", e.Error.Message)
	}
	bad = later("x")
	bad.Freq, bad.Weekdays = str("weekly"), &[]string{"mon", "mon"}
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/reminders", alice, bad)

	// alice's 100 reminders, then one more.
	for i := 1; i < reminder.DefaultMaxPerUser; i++ {
		r.must(http.StatusCreated, "POST", "/v1/reminders", alice, later(fmt.Sprint("提醒", i)), nil)
	}
	e = r.wantError(http.StatusUnprocessableEntity, "reminders_limit", "POST", "/v1/reminders", alice, later("第101个"))
	if e.Error.Message != "alice has 100 reminders, at most 100 a user: delete one first" {
		t.Errorf("the 101st: %q", e.Error.Message)
	}
	// Another user of the enterprise is not at its limit.
	short := later("x")
	r.must(http.StatusCreated, "POST", "/v1/reminders", al2, short, nil)

	// The first one is as it was, and still changes; its occurrence too.
	var got Reminder
	r.must(http.StatusOK, "GET", "/v1/reminders/"+rem.ID, alice, nil, &got)
	if got.Text != strings.Repeat("提", 495) {
		t.Errorf("the refused changes changed it: %d characters", len([]rune(got.Text)))
	}
	r.must(http.StatusOK, "PATCH", "/v1/reminders/"+rem.ID, alice, ReminderRequest{Text: str("改过")}, &got)
	r.must(http.StatusNoContent, "PATCH", occ, alice, OccurrenceRequest{Text: "这一次改过"}, nil)
	r.must(http.StatusOK, "GET", "/v1/reminders?week="+reminder.WeekOf(rem.Next).String(), alice, nil, &wk)
	if wk.Occurrences[0].Text != "这一次改过" || !wk.Occurrences[0].Edited {
		t.Errorf("the occurrence after its change: %+v", wk.Occurrences[0])
	}
	r.must(http.StatusNoContent, "DELETE", "/v1/reminders/"+rem.ID, alice, nil, nil)
	r.must(http.StatusCreated, "POST", "/v1/reminders", alice, later("删了一个再加"), nil)
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/reminder"
)

// Reminders (日程提醒, FAQ 11): POST /v1/reminders, GET /v1/reminders
// (the occurrences of one ISO week), GET, PATCH and DELETE
// /v1/reminders/{id} (the series), PATCH and DELETE
// /v1/reminders/{id}/occurrences/{date} (one occurrence). Package reminder
// keeps them and sends each occurrence as a scheduled message. A user sees
// its own reminders, an enterprise admin the enterprise's; anything else
// is 404 not_found. A text longer than a message may be is 400 invalid
// ("text: …"); past reminder.Config's series per user or enterprise, or a
// series' reminder.MaxExceptions changed occurrences, 422 reminders_limit.

// ReminderRequest is the body of POST /v1/reminders and, every field
// optional, of PATCH /v1/reminders/{id}.
type ReminderRequest struct {
	Text     *string   `json:"text,omitempty"`
	To       *[]string `json:"to,omitempty"`     // numbers; none and no groups: the user's registered mobile
	Groups   *[]string `json:"groups,omitempty"` // address-book groups, expanded when each occurrence is sent
	Book     *string   `json:"book,omitempty"`   // personal (default) | enterprise
	Source   *string   `json:"source,omitempty"` // sender extension, digits
	Freq     *string   `json:"freq,omitempty"`   // once | daily | workdays | weekly | monthly
	Start    *string   `json:"start,omitempty"`  // RFC 3339: the first event; its Asia/Shanghai clock time is every event's
	Weekdays *[]string `json:"weekdays,omitempty"`
	MonthDay *int      `json:"month_day,omitempty"`
	Until    *string   `json:"until,omitempty"` // 2006-01-02, inclusive
	Count    *int      `json:"count,omitempty"`
	Before   *int      `json:"before,omitempty"` // minutes before the event
}

// Reminder is a series as the API shows it.
type Reminder struct {
	ID       string    `json:"id"`
	Account  string    `json:"account"`
	Text     string    `json:"text"`
	To       []string  `json:"to,omitempty"`
	Groups   []string  `json:"groups,omitempty"`
	Book     string    `json:"book,omitempty"`
	Source   string    `json:"source,omitempty"`
	Freq     string    `json:"freq"`
	Start    time.Time `json:"start"`
	Weekdays []string  `json:"weekdays,omitempty"`
	MonthDay int       `json:"month_day,omitempty"`
	Until    string    `json:"until,omitempty"`
	Count    int       `json:"count,omitempty"`
	Before   int       `json:"before,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// Next is the event of the first occurrence still to be sent (absent
	// when none is left): its week is where the reminder shows next.
	Next time.Time `json:"next,omitzero"`
}

// ReminderWeek is the answer of GET /v1/reminders: one ISO week.
type ReminderWeek struct {
	Week        string               `json:"week"` // 2026-W49
	From        time.Time            `json:"from"` // Monday 00:00 Asia/Shanghai
	To          time.Time            `json:"to"`   // the next Monday
	Prev        string               `json:"prev"`
	Next        string               `json:"next"`
	Occurrences []ReminderOccurrence `json:"occurrences"`
}

// ReminderOccurrence is one occurrence in a week.
type ReminderOccurrence struct {
	Reminder   string    `json:"reminder"`
	Account    string    `json:"account"`
	Date       string    `json:"date"` // its key: /v1/reminders/{id}/occurrences/{date}
	At         time.Time `json:"at"`
	SendAt     time.Time `json:"send_at"`
	Text       string    `json:"text"`
	State      string    `json:"state"` // pending | scheduled | missed | refused
	MessageIDs []string  `json:"message_ids,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Edited     bool      `json:"edited,omitempty"`
}

// OccurrenceRequest is the body of PATCH /v1/reminders/{id}/occurrences/{date}.
type OccurrenceRequest struct {
	At   string `json:"at,omitempty"` // RFC 3339, within 7 days of the occurrence's day
	Text string `json:"text,omitempty"`
}

var weekdayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func (s *Server) reminders(w http.ResponseWriter) (*reminder.Service, bool) {
	if s.cfg.Reminders == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "reminders are not configured")
		return nil, false
	}
	return s.cfg.Reminders, true
}

func viewer(c *caller) reminder.Viewer {
	if c.admin() {
		return reminder.Viewer{Enterprise: c.ent.Code}
	}
	return reminder.Viewer{Enterprise: c.ent.Code, Account: c.user.SystemID}
}

func (s *Server) createReminder(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	var req ReminderRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var sp reminder.Spec
	if err := req.merge(&sp); err != nil {
		writeReminderErr(w, err)
		return
	}
	rem, err := svc.Create(c.user, sp)
	if err != nil {
		writeReminderErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, reminderOut(rem))
}

// merge sets the fields req names on sp.
func (req *ReminderRequest) merge(sp *reminder.Spec) error {
	if req.Text != nil {
		sp.Text = *req.Text
	}
	if req.To != nil {
		sp.To = *req.To
		if len(sp.To) > MaxRecipients {
			return invalid("to", fmt.Sprintf("最多 %d 个号码", MaxRecipients), "to: at most %d numbers", MaxRecipients)
		}
	}
	if req.Groups != nil {
		sp.Groups = *req.Groups
		if len(sp.Groups) > maxGroupsPerSend {
			return invalid("groups", fmt.Sprintf("最多 %d 个分组", maxGroupsPerSend), "groups: at most %d", maxGroupsPerSend)
		}
	}
	if req.Book != nil {
		sp.Book = *req.Book
	}
	if req.Source != nil {
		if err := checkSource(*req.Source); err != nil {
			return invalid("source", fmt.Sprintf("发送号码须为最多 %d 位数字", maxSourceLen), "%v", err)
		}
		sp.Source = *req.Source
	}
	if req.Freq != nil {
		sp.Rule.Freq = reminder.Freq(*req.Freq)
	}
	if req.Start != nil {
		t, err := time.Parse(time.RFC3339, *req.Start)
		if err != nil {
			return invalid("start", "开始时间格式有误", "start: not an RFC 3339 time (2026-12-07T09:00:00+08:00)")
		}
		if t.After(time.Now().Add(maxScheduleSpan)) {
			return invalid("start", "开始时间最多在一年之内", "start: more than a year ahead")
		}
		sp.Rule.Start = t
	}
	if req.Weekdays != nil {
		sp.Rule.Weekdays = nil
		for _, d := range *req.Weekdays {
			i := indexOf(weekdayNames, strings.ToLower(d))
			if i < 0 {
				return invalid("weekdays", "星期有误", "weekdays: %q: one of mon, tue, wed, thu, fri, sat, sun", d)
			}
			sp.Rule.Weekdays = append(sp.Rule.Weekdays, time.Weekday(i))
		}
	}
	if req.MonthDay != nil {
		sp.Rule.MonthDay = *req.MonthDay
	}
	if req.Until != nil {
		sp.Rule.Until = *req.Until
	}
	if req.Count != nil {
		sp.Rule.Count = *req.Count
	}
	if req.Before != nil {
		sp.Rule.Before = *req.Before
	}
	return nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// invalid is a request's field a reminder cannot take (reminder.ErrInvalid),
// with its rule in Chinese.
func invalid(field, zh, format string, a ...any) error {
	return policy.NewFieldError(reminder.ErrInvalid, field, zh, fmt.Sprintf(format, a...))
}

func reminderOut(r *reminder.Reminder) Reminder {
	out := Reminder{ID: strconv.FormatUint(r.ID, 10), Account: r.Account, Text: r.Text, To: r.To, Groups: r.Groups,
		Book: r.Book, Source: r.Source, Freq: string(r.Rule.Freq), Start: r.Rule.Start.In(reminder.Shanghai),
		MonthDay: r.Rule.MonthDay, Until: r.Rule.Until, Count: r.Rule.Count, Before: r.Rule.Before,
		Created: r.Created, Updated: r.Updated}
	if o, ok := r.Next(time.Now()); ok {
		out.Next = o.At.In(reminder.Shanghai)
	}
	for _, d := range r.Rule.Weekdays {
		out.Weekdays = append(out.Weekdays, weekdayNames[d])
	}
	return out
}

func (s *Server) listReminders(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	wk := reminder.WeekOf(time.Now())
	if v := r.URL.Query().Get("week"); v != "" {
		var err error
		if wk, err = reminder.ParseWeek(v); err != nil {
			writeReminderErr(w, err)
			return
		}
	}
	occ, err := svc.Week(viewer(c), wk)
	if err != nil {
		writeReminderErr(w, err)
		return
	}
	out := ReminderWeek{Week: wk.String(), From: wk.Start(), To: wk.Next().Start(), Prev: wk.Prev().String(), Next: wk.Next().String(),
		Occurrences: make([]ReminderOccurrence, 0, len(occ))}
	for _, o := range occ {
		ro := ReminderOccurrence{Reminder: strconv.FormatUint(o.Reminder, 10), Account: o.Account, Date: o.Date,
			At: o.At, SendAt: o.SendAt, Text: o.Text, State: o.State, Reason: o.Reason, Edited: o.Edited}
		for _, id := range o.MessageIDs {
			ro.MessageIDs = append(ro.MessageIDs, gateway.FormatID(id))
		}
		out.Occurrences = append(out.Occurrences, ro)
	}
	w.Header().Add("Link", `</v1/reminders?week=`+out.Prev+`>; rel="prev"`)
	w.Header().Add("Link", `</v1/reminders?week=`+out.Next+`>; rel="next"`)
	writeJSON(w, http.StatusOK, out)
}

// reminderID parses {id}; it writes the 404 itself.
func reminderID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such reminder")
		return 0, false
	}
	return id, true
}

func (s *Server) showReminder(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	id, ok := reminderID(w, r)
	if !ok {
		return
	}
	rem, err := svc.Get(viewer(c), id)
	if err != nil {
		writeReminderErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reminderOut(rem))
}

func (s *Server) editReminder(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	id, ok := reminderID(w, r)
	if !ok {
		return
	}
	var req ReminderRequest
	if !decodeBody(w, r, &req) {
		return
	}
	v := viewer(c)
	rem, err := svc.Get(v, id)
	if err != nil {
		writeReminderErr(w, err)
		return
	}
	sp := reminder.Spec{Text: rem.Text, To: rem.To, Groups: rem.Groups, Book: rem.Book, Source: rem.Source, Rule: rem.Rule}
	if err := req.merge(&sp); err != nil {
		writeReminderErr(w, err)
		return
	}
	if rem, err = svc.Update(r.Context(), v, id, sp); err != nil {
		writeReminderErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reminderOut(rem))
}

func (s *Server) deleteReminder(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	id, ok := reminderID(w, r)
	if !ok {
		return
	}
	if err := svc.Delete(r.Context(), viewer(c), id); err != nil {
		writeReminderErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) editOccurrence(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	id, ok := reminderID(w, r)
	if !ok {
		return
	}
	var req OccurrenceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var e reminder.OccurrenceEdit
	e.Text = req.Text
	if req.At != "" {
		t, err := time.Parse(time.RFC3339, req.At)
		if err != nil {
			writeInvalid(w, "at", "发送时间格式有误（如 2026-12-07T09:00:00+08:00）", "at: not an RFC 3339 time")
			return
		}
		e.At = t
	}
	if e.At.IsZero() && e.Text == "" {
		writeInvalid(w, "", "请填写发送时间或短信内容（至少一项）", "at or text: one is required")
		return
	}
	if err := svc.EditOccurrence(r.Context(), viewer(c), id, r.PathValue("date"), e); err != nil {
		writeReminderErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteOccurrence(c *caller, w http.ResponseWriter, r *http.Request) {
	svc, ok := s.reminders(w)
	if !ok {
		return
	}
	id, ok := reminderID(w, r)
	if !ok {
		return
	}
	if err := svc.DeleteOccurrence(r.Context(), viewer(c), id, r.PathValue("date")); err != nil {
		writeReminderErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeReminderErr answers the reminders' errors; the rest as writeErr.
func writeReminderErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, reminder.ErrInvalid):
		writeInvalid(w, policy.FieldOf(err), policy.DetailZH(err), strings.TrimPrefix(err.Error(), reminder.ErrInvalid.Error()+": "))
	case errors.Is(err, reminder.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, reminder.ErrSent):
		writeError(w, http.StatusConflict, "not_scheduled", err.Error())
	case errors.Is(err, reminder.ErrLimit):
		// As a full address book (contacts_limit): the request is sound,
		// the store of the user or enterprise is full.
		writeError(w, http.StatusUnprocessableEntity, "reminders_limit", strings.TrimPrefix(err.Error(), reminder.ErrLimit.Error()+": "))
	default:
		writeErr(w, err)
	}
}

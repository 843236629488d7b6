package console

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/reminder"
)

// 日程安排 (FAQ 11): the week view of the reminders (Monday to Sunday,
// Asia/Shanghai, ISO weeks), adding, changing and deleting a series or one
// occurrence. The rules (what a repeat means, which week an occurrence is
// in, what may still change) are the API's (package reminder).

var reminderRoutes = []route{
	{"GET /reminders", (*Server).reminders},
	{"GET /reminders/new", (*Server).reminderNew},
	{"POST /reminders/new", (*Server).reminderCreate},
	{"GET /reminders/{id}", (*Server).reminderEdit},
	{"POST /reminders/{id}", (*Server).reminderSave},
	{"POST /reminders/{id}/delete", (*Server).reminderDelete},
	{"GET /reminders/{id}/occurrences/{date}", (*Server).occurrenceEdit},
	{"POST /reminders/{id}/occurrences/{date}", (*Server).occurrenceSave},
	{"POST /reminders/{id}/occurrences/{date}/delete", (*Server).occurrenceDelete},
}

var weekdayZH = [...]string{"周日", "周一", "周二", "周三", "周四", "周五", "周六"}

// weekData is the week view.
type weekData struct {
	Week    api.ReminderWeek
	Title   string // 2026 年第 50 周（12月7日 – 12月13日）
	Current bool   // the week of today
	Days    []dayCol
}

type dayCol struct {
	Label string // 周一 12月7日
	Today bool
	Items []occView
}

// occView is one occurrence as the week shows it.
type occView struct {
	api.ReminderOccurrence
	Time, StateZH, Class string
}

var occStateZH = map[string][2]string{
	reminder.StatePending:   {"待发送", "wait"},
	reminder.StateScheduled: {"已排入定时发件箱", "ok"},
	reminder.StateMissed:    {"已错过", "fail"},
	reminder.StateRefused:   {"发送被拒", "fail"},
}

func occOut(o api.ReminderOccurrence) occView {
	st := occStateZH[o.State]
	if st[0] == "" {
		st = [2]string{o.State, "muted"}
	}
	return occView{ReminderOccurrence: o, Time: o.At.In(reminder.Shanghai).Format("15:04"), StateZH: st[0], Class: st[1]}
}

// weekTitle names an ISO week in Chinese with its Monday and Sunday.
func weekTitle(w reminder.Week) string {
	mon := w.Start()
	sun := mon.AddDate(0, 0, 6)
	return strconv.Itoa(w.Year) + " 年第 " + strconv.Itoa(w.Week) + " 周（" + monthDay(mon) + " – " + monthDay(sun) + "）"
}

func monthDay(t time.Time) string {
	t = t.In(reminder.Shanghai)
	return strconv.Itoa(int(t.Month())) + "月" + strconv.Itoa(t.Day()) + "日"
}

func (s *Server) reminders(q *req) {
	path := "/v1/reminders"
	if w := strings.TrimSpace(q.r.URL.Query().Get("week")); w != "" {
		path += "?" + url.Values{"week": {w}}.Encode()
	}
	var wk api.ReminderWeek
	if err := s.call(q.r, http.MethodGet, path, nil, &wk); err != nil {
		q.fail(err)
		return
	}
	w, err := reminder.ParseWeek(wk.Week)
	if err != nil {
		q.fail(err)
		return
	}
	now := time.Now().In(reminder.Shanghai)
	d := weekData{Week: wk, Title: weekTitle(w), Current: reminder.WeekOf(now) == w}
	today := now.Format(reminder.Date)
	for i := range 7 {
		day := w.Start().AddDate(0, 0, i)
		col := dayCol{Label: weekdayZH[day.Weekday()] + " " + monthDay(day), Today: day.Format(reminder.Date) == today}
		for _, o := range wk.Occurrences {
			if o.At.In(reminder.Shanghai).Format(reminder.Date) == day.Format(reminder.Date) {
				col.Items = append(col.Items, occOut(o))
			}
		}
		d.Days = append(d.Days, col)
	}
	q.render(http.StatusOK, "reminders", q.view(d))
}

// reminderFormData is the add and change form of a series.
type reminderFormData struct {
	ID       string // "" = a new series
	Next     time.Time
	Account  string
	Freqs    []option
	Weekdays []option
	Books    []option
}

type option struct {
	Value, Label string
	On           bool
}

var freqOptions = [][2]string{
	{string(reminder.Once), "不重复（一次）"},
	{string(reminder.Daily), "每天"},
	{string(reminder.Workdays), "每个工作日（周一至周五）"},
	{string(reminder.Weekly), "每周（选择星期几）"},
	{string(reminder.Monthly), "每月（选择日期）"},
}

var weekdayOptions = [][2]string{
	{"mon", "周一"}, {"tue", "周二"}, {"wed", "周三"}, {"thu", "周四"}, {"fri", "周五"}, {"sat", "周六"}, {"sun", "周日"},
}

// reminderForm renders the series form with p.Form's values.
func (s *Server) reminderForm(q *req, code int, p *page, d reminderFormData) {
	opts := func(list [][2]string, on func(string) bool) []option {
		out := make([]option, len(list))
		for i, o := range list {
			out[i] = option{Value: o[0], Label: o[1], On: on(o[0])}
		}
		return out
	}
	freq := p.Form.Get("freq")
	if freq == "" {
		freq = string(reminder.Once)
	}
	d.Freqs = opts(freqOptions, func(v string) bool { return v == freq })
	d.Weekdays = opts(weekdayOptions, func(v string) bool { return slices.Contains(p.Form["weekdays"], v) })
	d.Books = opts([][2]string{{"personal", "个人通讯录"}, {"enterprise", "企业通讯录"}},
		func(v string) bool { return v == p.Form.Get("book") || v == "personal" && p.Form.Get("book") == "" })
	p.D = d
	q.render(code, "reminder_form", p)
}

var reminderFormFields = []string{"text", "date", "time", "freq", "weekdays", "month_day", "until", "count", "before", "to", "groups", "book"}

// reminderFields places the API's reminder refusals next to their field.
var reminderFields = [][2]string{
	{"text", "text"}, {"until", "until"}, {"count", "count"}, {"before", "before"},
	{"weekday", "weekdays"}, {"month_day", "month_day"}, {"monthly", "month_day"},
	{"start", "start"}, {"past", "start"}, {"never fires", "freq"}, {"freq", "freq"},
	{"mobile", "to"}, {"to:", "to"}, {"group", "groups"}, {"book", "groups"},
}

func (s *Server) reminderNew(q *req) {
	p := q.view(nil)
	// A suggestion: tomorrow at 09:00.
	t := time.Now().In(reminder.Shanghai).AddDate(0, 0, 1)
	p.Form.Set("date", t.Format(reminder.Date))
	p.Form.Set("time", "09:00")
	s.reminderForm(q, http.StatusOK, p, reminderFormData{})
}

// formValues copies the series form's fields into p.Form.
func formValues(q *req, p *page) {
	for _, k := range reminderFormFields {
		if vs := q.r.PostForm[k]; len(vs) > 0 {
			p.Form[k] = vs
		}
	}
}

// reminderRequest is the API's body for the series form's values; a
// field that is no number is refused here (the browser's number inputs
// normally prevent it).
func reminderRequest(f url.Values, errs map[string]string) api.ReminderRequest {
	text := f.Get("text")
	freq := f.Get("freq")
	weekdays := f["weekdays"]
	if weekdays == nil {
		weekdays = []string{}
	}
	until := strings.TrimSpace(f.Get("until"))
	num := func(k string) *int {
		v := strings.TrimSpace(f.Get(k))
		n := 0
		if v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				errs[k] = "请输入数字"
			}
		}
		return &n
	}
	to := splitList(f.Get("to"))
	groups := splitList(f.Get("groups"))
	bk := ""
	if len(groups) > 0 {
		bk = f.Get("book")
	}
	req := api.ReminderRequest{Text: &text, Freq: &freq, Weekdays: &weekdays, Until: &until,
		MonthDay: num("month_day"), Count: num("count"), Before: num("before"),
		To: &to, Groups: &groups, Book: &bk}
	date, clock := strings.TrimSpace(f.Get("date")), strings.TrimSpace(f.Get("time"))
	if date != "" || clock != "" {
		if len(clock) == 5 { // 09:00 from <input type=time>
			clock += ":00"
		}
		start := date + "T" + clock + "+08:00" // Asia/Shanghai has no DST
		req.Start = &start
	}
	return req
}

// weekNotice is where a series shows next, and the notice saying so.
func weekNotice(what string, r api.Reminder) (to, notice string) {
	if r.Next.IsZero() {
		return "/reminders", what + "没有待发送的提醒了。"
	}
	w := reminder.WeekOf(r.Next)
	at := r.Next.In(reminder.Shanghai)
	return "/reminders?week=" + w.String(), what + "下一次提醒：" + at.Format("2006年1月2日") + " " + weekdayZH[at.Weekday()] + " " +
		at.Format("15:04") + "，在 " + weekTitle(w) + "，已为您打开这一周。"
}

func (s *Server) reminderCreate(q *req) {
	p := q.view(nil)
	formValues(q, p)
	body := reminderRequest(p.Form, p.Errors)
	if len(p.Errors) > 0 {
		s.reminderForm(q, http.StatusUnprocessableEntity, p, reminderFormData{})
		return
	}
	var out api.Reminder
	if err := s.call(q.r, http.MethodPost, "/v1/reminders", body, &out); err != nil {
		code, ok := q.formErrorBy(p, err, reminderFields)
		if !ok {
			return
		}
		s.reminderForm(q, code, p, reminderFormData{})
		return
	}
	q.redirect(weekNotice("日程提醒已添加。", out))
}

func (s *Server) reminderEdit(q *req) {
	var r api.Reminder
	if err := s.call(q.r, http.MethodGet, "/v1/reminders/"+pathSeg(q.r.PathValue("id")), nil, &r); err != nil {
		q.fail(err)
		return
	}
	p := q.view(nil)
	start := r.Start.In(reminder.Shanghai)
	f := p.Form
	f.Set("text", r.Text)
	f.Set("date", start.Format(reminder.Date))
	f.Set("time", start.Format("15:04"))
	f.Set("freq", r.Freq)
	f["weekdays"] = r.Weekdays
	setNum := func(k string, n int) {
		if n != 0 {
			f.Set(k, strconv.Itoa(n))
		}
	}
	setNum("month_day", r.MonthDay)
	setNum("count", r.Count)
	setNum("before", r.Before)
	f.Set("until", r.Until)
	f.Set("to", strings.Join(r.To, "\n"))
	f.Set("groups", strings.Join(r.Groups, "，"))
	f.Set("book", r.Book)
	s.reminderForm(q, http.StatusOK, p, reminderFormData{ID: r.ID, Next: r.Next, Account: r.Account})
}

func (s *Server) reminderSave(q *req) {
	id := q.r.PathValue("id")
	var cur api.Reminder
	if err := s.call(q.r, http.MethodGet, "/v1/reminders/"+pathSeg(id), nil, &cur); err != nil {
		q.fail(err)
		return
	}
	d := reminderFormData{ID: cur.ID, Next: cur.Next, Account: cur.Account}
	p := q.view(nil)
	formValues(q, p)
	body := reminderRequest(p.Form, p.Errors)
	if len(p.Errors) > 0 {
		s.reminderForm(q, http.StatusUnprocessableEntity, p, d)
		return
	}
	var out api.Reminder
	if err := s.call(q.r, http.MethodPatch, "/v1/reminders/"+pathSeg(id), body, &out); err != nil {
		code, ok := q.formErrorBy(p, err, reminderFields)
		if !ok {
			return
		}
		s.reminderForm(q, code, p, d)
		return
	}
	q.redirect(weekNotice("日程提醒已修改。", out))
}

func (s *Server) reminderDelete(q *req) {
	if err := s.call(q.r, http.MethodDelete, "/v1/reminders/"+pathSeg(q.r.PathValue("id")), nil, nil); err != nil {
		q.fail(err)
		return
	}
	q.redirect(weekPath(q.r.PostFormValue("week")), "日程提醒已删除（包括它以后的每一次提醒）。")
}

// weekPath is the week view of week w ("" or no week: this week).
func weekPath(w string) string {
	if _, err := reminder.ParseWeek(w); err != nil {
		return "/reminders"
	}
	return "/reminders?week=" + w
}

// occurrenceData is the form of one occurrence.
type occurrenceData struct {
	Occ  occView
	Week string // the week it is listed in
}

// findOccurrence is occurrence date of series id as the week listing
// shows it (an occurrence may have been moved up to a week away).
func (s *Server) findOccurrence(q *req, id, date string) (*occurrenceData, error) {
	d, err := time.ParseInLocation(reminder.Date, date, reminder.Shanghai)
	if err != nil {
		return nil, &api.APIError{Status: http.StatusNotFound, Reason: "not_found"}
	}
	w := reminder.WeekOf(d)
	for _, wk := range []reminder.Week{w, w.Next(), w.Prev()} {
		var list api.ReminderWeek
		if err := s.call(q.r, http.MethodGet, "/v1/reminders?week="+wk.String(), nil, &list); err != nil {
			return nil, err
		}
		for _, o := range list.Occurrences {
			if o.Reminder == id && o.Date == date {
				return &occurrenceData{Occ: occOut(o), Week: wk.String()}, nil
			}
		}
	}
	return nil, &api.APIError{Status: http.StatusNotFound, Reason: "not_found"}
}

func (s *Server) occurrenceEdit(q *req) {
	id, date := q.r.PathValue("id"), q.r.PathValue("date")
	d, err := s.findOccurrence(q, id, date)
	if err != nil {
		q.fail(err)
		return
	}
	p := q.view(d)
	at := d.Occ.At.In(reminder.Shanghai)
	p.Form.Set("date", at.Format(reminder.Date))
	p.Form.Set("time", at.Format("15:04"))
	p.Form.Set("text", d.Occ.Text)
	q.render(http.StatusOK, "occurrence", p)
}

func (s *Server) occurrenceSave(q *req) {
	id, date := q.r.PathValue("id"), q.r.PathValue("date")
	d, err := s.findOccurrence(q, id, date)
	if err != nil {
		q.fail(err)
		return
	}
	p := q.view(d)
	for _, k := range []string{"date", "time", "text"} {
		p.Form.Set(k, q.r.PostFormValue(k))
	}
	body := api.OccurrenceRequest{Text: strings.TrimSpace(p.Form.Get("text"))}
	if day, clock := strings.TrimSpace(p.Form.Get("date")), strings.TrimSpace(p.Form.Get("time")); day != "" || clock != "" {
		if len(clock) == 5 {
			clock += ":00"
		}
		body.At = day + "T" + clock + "+08:00"
	}
	if body.Text == d.Occ.Text {
		body.Text = "" // unchanged: the series' text stays this occurrence's
	}
	if err := s.call(q.r, http.MethodPatch, "/v1/reminders/"+pathSeg(id)+"/occurrences/"+pathSeg(date), body, nil); err != nil {
		code, ok := q.formError(p, err, "at", "text")
		if !ok {
			return
		}
		q.render(code, "occurrence", p)
		return
	}
	to := "/reminders?week=" + d.Week
	if t, err := time.Parse(time.RFC3339, body.At); err == nil {
		to = "/reminders?week=" + reminder.WeekOf(t).String()
	}
	q.redirect(to, "已修改 "+date+" 这一次提醒，其他日期不变。")
}

func (s *Server) occurrenceDelete(q *req) {
	id, date := q.r.PathValue("id"), q.r.PathValue("date")
	if err := s.call(q.r, http.MethodDelete, "/v1/reminders/"+pathSeg(id)+"/occurrences/"+pathSeg(date), nil, nil); err != nil {
		q.fail(err)
		return
	}
	q.redirect(weekPath(q.r.PostFormValue("week")), "已删除 "+date+" 这一次提醒，其他日期不变。")
}

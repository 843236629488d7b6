package console

import (
	"cmp"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/reminder"
)

// 收发记录: 发件箱 (sent messages and their outcome, FAQ 17), a message's
// detail ("为什么没有收到？", FAQ 6), 定时发件箱 (FAQ 8, 9), 收件箱
// (replies), 费用 (FAQ 16, 18), and the home page.

var recordRoutes = []route{
	{"GET /{$}", (*Server).home},
	{"GET /outbox", (*Server).outbox},
	{"GET /outbox/export.csv", (*Server).outboxExport},
	{"GET /scheduled/export.csv", (*Server).scheduledExport},
	{"GET /inbox/export.csv", (*Server).inboxExport},
	{"GET /outbox/{id}", (*Server).message},
	{"GET /scheduled", (*Server).scheduled},
	{"GET /scheduled/{id}", (*Server).scheduledEdit},
	{"POST /scheduled/{id}", (*Server).scheduledSave},
	{"POST /scheduled/{id}/delete", (*Server).scheduledDelete},
	{"GET /inbox", (*Server).inbox},
	{"GET /conversation", (*Server).conversation},
	{"POST /conversation", (*Server).conversationSend},
	{"GET /billing", (*Server).billing},
}

// pageSize is how many rows a list page asks the API for.
const pageSize = 50

// usageView is the month's usage as the home page and 费用 show it.
type usageView struct {
	U   api.MonthUsage
	Pct int // delivered (charged) segments in % of the package's included ones, at most 100
}

func newUsageView(u api.MonthUsage) usageView {
	v := usageView{U: u}
	if u.Included > 0 {
		v.Pct = int(min(100, u.Delivered*100/u.Included))
	}
	return v
}

// homeData is the home page: the month against the package, the last
// messages sent, and the common tasks.
type homeData struct {
	Usage    usageView
	Messages []api.Message
}

func (s *Server) home(q *req) {
	var u api.MonthUsage
	if err := s.call(q.r, http.MethodGet, "/v1/usage", nil, &u); err != nil {
		q.fail(err)
		return
	}
	var pg api.MessagePage
	if err := s.call(q.r, http.MethodGet, "/v1/messages?limit=5", nil, &pg); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "home", q.view(homeData{Usage: newUsageView(u), Messages: pg.Messages}))
}

// outboxTabs are the 发件箱's tabs: the API's outcome groups (GET
// /v1/messages?outcome=), "" for all.
var outboxTabs = []outboxTab{
	{Outcome: "", Label: "全部"},
	{Outcome: "received", Label: "接收成功"},
	{Outcome: "failed", Label: "接收失败"},
	{Outcome: "pending", Label: "发送中"},
}

// outboxTab is one tab; URL keeps the page's dates.
type outboxTab struct{ Outcome, Label, URL string }

// outboxData is the 发件箱 page.
type outboxData struct {
	Tabs     []outboxTab
	Messages []api.Message
	Outcome  string      // the tab shown
	Next     string      // the cursor of the next page ("" at the end)
	Paged    bool        // not the first page
	Missing  api.Missing // cluster mode: the nodes not asked (notice 部分节点暂时无法查询)
	Days     dayRange    // 开始日期, 结束日期
	// Number narrows the list to the messages to one number (number= of
	// GET /v1/messages); BadNumber says why it was not taken. RepliesURL,
	// ThreadURL and SendURL are that number's replies (收件箱), its 往来记录
	// and a message to it.
	Number, BadNumber              string
	RepliesURL, ThreadURL, SendURL string
	// The links, with the tab, the number and the dates: the first page,
	// the next page, and the tab without the number and the dates (显示全部).
	FirstURL, NextURL, AllURL string
	// ExportURL is 导出: the tab, number and dates, every page, as a CSV.
	ExportURL string
}

func (s *Server) outbox(q *req) {
	in := q.r.URL.Query()
	d := outboxData{Outcome: in.Get("outcome"), Paged: in.Get("after") != "", Days: readDayRange(in)}
	d.Number, d.BadNumber = readNumber(in)
	keep := url.Values{}
	if d.Outcome != "" {
		keep.Set("outcome", d.Outcome)
	}
	d.AllURL = link("/outbox", keep)
	if d.Number != "" {
		keep.Set("number", d.Number)
		d.RepliesURL = link("/inbox", url.Values{"number": {d.Number}})
		d.ThreadURL = link("/conversation", url.Values{"number": {d.Number}})
		d.SendURL = link("/send/group", url.Values{"to": {d.Number}})
	}
	d.Days.keep(keep)
	d.FirstURL = link("/outbox", keep)
	for _, t := range outboxTabs {
		k := url.Values{}
		if t.Outcome != "" {
			k.Set("outcome", t.Outcome)
		}
		if d.Number != "" {
			k.Set("number", d.Number)
		}
		d.Days.keep(k)
		t.URL = link("/outbox", k)
		d.Tabs = append(d.Tabs, t)
	}
	if d.Days.Bad != "" || d.BadNumber != "" {
		q.render(http.StatusBadRequest, "outbox", q.view(d))
		return
	}
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for _, k := range []string{"outcome", "after"} {
		if x := in.Get(k); x != "" {
			v.Set(k, x)
		}
	}
	if d.Number != "" {
		v.Set("number", d.Number)
	}
	d.Days.apiQuery(v)
	pg, err := walkList(s.userCall(q), "/v1/messages", v, "after", messageRows)
	if err != nil {
		q.fail(err)
		return
	}
	d.Messages, d.Next, d.Missing = pg.Messages, pg.Next, pg.Missing
	if d.Next != "" {
		d.NextURL = link("/outbox", with(keep, "after", d.Next))
	}
	d.ExportURL = link("/outbox/export.csv", keep)
	q.render(http.StatusOK, "outbox", q.view(d))
}

// outboxExport is 发件箱's 导出: its tab (outcome), number and dates,
// every page, as a CSV for Excel (GET /v1/messages/export with lang=zh).
func (s *Server) outboxExport(q *req) {
	s.listExport(q, "/outbox", nil, "/v1/messages/export", false, "outcome", "number")
}

// listExport is the 导出 of the list page at page (with the query fixed,
// such as the desk's box): the query parameters params of the page (the
// tab's outcome, the number) and its dates — of
// the send time with sendTime (定时发件箱) — every page, as a CSV for Excel:
// the API's export at apiPath with lang=zh, streamed to the browser as the
// API writes it. A refusal, which the API answers before any row (too
// many exports at once, a node of the cluster that cannot be asked),
// comes back to the page with the reason in Chinese.
func (s *Server) listExport(q *req, page string, fixed url.Values, apiPath string, sendTime bool, params ...string) {
	in := q.r.URL.Query()
	days := readDayRange(in)
	keep, v := maps.Clone(fixed), url.Values{"format": {"csv"}, "lang": {"zh"}}
	if keep == nil {
		keep = url.Values{}
	}
	for _, param := range params {
		if x := strings.TrimSpace(in.Get(param)); x != "" {
			keep.Set(param, x)
			v.Set(param, x)
		}
	}
	days.keep(keep)
	if days.Bad != "" {
		q.redirect(link(page, keep), days.Bad)
		return
	}
	if sendTime {
		days.apiQueryAs(v, "send_from", "send_to")
	} else {
		days.apiQuery(v)
	}
	s.export(q, apiPath, link(page, keep), v)
}

// export streams the API's export at apiPath (v: its query) to the
// browser as the API writes it (never whole in the console). A refusal,
// which the API answers before any row, goes back to the page back with
// the reason in Chinese.
func (s *Server) export(q *req, apiPath, back string, v url.Values) {
	cw := &catchError{w: q.w}
	s.proxy(cw, q.r, q.token, apiPath, v)
	if cw.code < 400 {
		return
	}
	q.redirect(back, "导出失败："+zhError(cw.refusal()))
}

// dayRange is the 开始日期 and 结束日期 of 发件箱, 收件箱 and 定时发件箱: Beijing
// dates (YYYY-MM-DD, as an <input type="date"> sends them), the list
// narrowed to what came from 00:00 of the first to the end of the last,
// either left open. The API's range is of instants, from= at or after and
// to= before, so the last day ends at the next day's 00:00.
type dayRange struct {
	From, To string // as given ("" = open), shown again in the form
	Bad      string // why they were not taken ("" = taken)
	from, to time.Time
}

// readDayRange reads the from= and to= of a list page.
func readDayRange(in url.Values) dayRange {
	d := dayRange{From: strings.TrimSpace(in.Get("from")), To: strings.TrimSpace(in.Get("to"))}
	if d.From != "" {
		t, err := time.ParseInLocation(time.DateOnly, d.From, reminder.Shanghai)
		if err != nil {
			d.Bad = "开始日期无效：请选择日期，或按“年-月-日”填写，如 2026-03-05。"
			return d
		}
		d.from = t
	}
	if d.To != "" {
		t, err := time.ParseInLocation(time.DateOnly, d.To, reminder.Shanghai)
		if err != nil {
			d.Bad = "结束日期无效：请选择日期，或按“年-月-日”填写，如 2026-03-05。"
			return d
		}
		d.to = t.AddDate(0, 0, 1)
	}
	if !d.from.IsZero() && !d.to.IsZero() && !d.from.Before(d.to) {
		d.Bad = "结束日期不能早于开始日期。"
	}
	return d
}

// Any reports whether the range narrows the list.
func (d dayRange) Any() bool { return d.From != "" || d.To != "" }

// apiQuery adds the range to a query of the API (RFC 3339).
func (d dayRange) apiQuery(v url.Values) { d.apiQueryAs(v, "from", "to") }

// apiQueryAs adds the range to a query of the API as the parameters
// fromKey and toKey: 定时发件箱's dates are of the send time, which GET
// /v1/scheduled takes as send_from and send_to (its from and to are the
// time the messages were written).
func (d dayRange) apiQueryAs(v url.Values, fromKey, toKey string) {
	if !d.from.IsZero() {
		v.Set(fromKey, d.from.Format(time.RFC3339))
	}
	if !d.to.IsZero() {
		v.Set(toKey, d.to.Format(time.RFC3339))
	}
}

// keep adds the range, as given, to the query of a link of the page.
func (d dayRange) keep(v url.Values) {
	if d.From != "" {
		v.Set("from", d.From)
	}
	if d.To != "" {
		v.Set("to", d.To)
	}
}

// link is path with the query q (path alone for none).
func link(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// with is a copy of q with k set to v.
func with(q url.Values, k, v string) url.Values {
	c := maps.Clone(q)
	if c == nil {
		c = url.Values{}
	}
	c.Set(k, v)
	return c
}

// messageData is a message's detail page (the enterprise's, and the
// desk's): Back is the list it came from.
type messageData struct {
	M      api.Message
	Why    whyAnswer
	Codes  []string // the Chinese of each part's error code ("" = none)
	States []string // the Chinese of each part's state
	Back   string
	Ent    string // the desk's: the enterprise's code
}

func newMessageData(m api.Message, back string) messageData {
	d := messageData{M: m, Why: whyFor(m), Back: back}
	for _, p := range m.Parts {
		d.Codes = append(d.Codes, codeZH(p.ErrorCode))
		st := cmp.Or(partStateZH[p.State], p.State)
		if m.Held != "" && p.State == "accepted" {
			st = "暂停发送" // as the message is: it does not go while held
		}
		d.States = append(d.States, st)
	}
	return d
}

func (s *Server) message(q *req) {
	var m api.Message
	if err := s.call(q.r, http.MethodGet, "/v1/messages/"+pathSeg(q.r.PathValue("id")), nil, &m); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "message", q.view(newMessageData(m, "/outbox")))
}

// scheduledData is the 定时发件箱.
type scheduledData struct {
	Messages []api.Message
	Next     string
	Paged    bool
	Missing  api.Missing
	Days     dayRange // 开始日期, 结束日期 of the send time
	// Number narrows the list to the messages to one number;
	// BadNumber says why it was not taken.
	Number, BadNumber string
	// The links, with the number and the dates: the first page, the
	// next, and 导出 (every page as a CSV).
	FirstURL, NextURL, ExportURL string
}

func (s *Server) scheduled(q *req) {
	in := q.r.URL.Query()
	d := scheduledData{Paged: in.Get("after") != "", Days: readDayRange(in)}
	d.Number, d.BadNumber = readNumber(in)
	if d.Days.Bad != "" || d.BadNumber != "" {
		q.render(http.StatusBadRequest, "scheduled", q.view(d))
		return
	}
	keep := url.Values{}
	if d.Number != "" {
		keep.Set("number", d.Number)
	}
	d.Days.keep(keep)
	d.FirstURL = link("/scheduled", keep)
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if x := in.Get("after"); x != "" {
		v.Set("after", x)
	}
	if d.Number != "" {
		v.Set("number", d.Number)
	}
	// By when the messages go out: what one looks for here is "what is
	// sent on the 5th", not when it was written.
	d.Days.apiQueryAs(v, "send_from", "send_to")
	pg, err := walkList(s.userCall(q), "/v1/scheduled", v, "after", messageRows)
	if err != nil {
		q.fail(err)
		return
	}
	d.Messages, d.Next, d.Missing = pg.Messages, pg.Next, pg.Missing
	if d.Next != "" {
		d.NextURL = link("/scheduled", with(keep, "after", d.Next))
	}
	d.ExportURL = link("/scheduled/export.csv", keep)
	q.render(http.StatusOK, "scheduled", q.view(d))
}

// scheduledExport is 定时发件箱's 导出: the days its messages go out, every
// page, as a CSV for Excel (GET /v1/scheduled/export with lang=zh).
func (s *Server) scheduledExport(q *req) {
	s.listExport(q, "/scheduled", nil, "/v1/scheduled/export", true, "number")
}

// scheduledEditData is the form that changes a scheduled message.
type scheduledEditData struct {
	M   api.Message
	Sig string // the enterprise signature the API puts before the text
}

// localLayout is the value format of a datetime-local input.
const localLayout = "2006-01-02T15:04"

func (s *Server) scheduledEdit(q *req) {
	id := q.r.PathValue("id")
	var m api.Message
	if err := s.call(q.r, http.MethodGet, "/v1/messages/"+pathSeg(id), nil, &m); err != nil {
		q.fail(err)
		return
	}
	if !m.Scheduled {
		q.redirect("/outbox/"+m.ID, notScheduledZH)
		return
	}
	p := q.view(scheduledEditData{M: m, Sig: q.me.Signature})
	p.Form.Set("send_at", fmtTime(m.SendAt, localLayout))
	p.Form.Set("text", unsign(m.Text, q.me))
	q.render(http.StatusOK, "scheduled_edit", p)
}

// notScheduledZH answers a change of a message that is no longer waiting
// for its send time (FAQ 9).
const notScheduledZH = "这条定时短信已经发出（或即将发出），不能再修改或删除；已发出的短信可在“发件箱”中查看。"

func (s *Server) scheduledSave(q *req) {
	id := q.r.PathValue("id")
	sendAt, text := strings.TrimSpace(q.r.PostFormValue("send_at")), q.r.PostFormValue("text")
	at := sendAt
	if t, err := time.ParseInLocation(localLayout, sendAt, reminder.Shanghai); err == nil {
		at = t.Format(time.RFC3339)
	}
	var m api.Message
	err := s.call(q.r, http.MethodPatch, "/v1/messages/"+pathSeg(id), api.MessagePatch{SendAt: &at, Text: &text}, &m)
	if err == nil {
		q.redirect("/scheduled", "定时短信已修改，将于 "+fmtTime(m.SendAt, "2006-01-02 15:04")+" 发送。")
		return
	}
	if isReason(err, "not_scheduled") {
		q.redirect("/outbox/"+pathSeg(id), notScheduledZH)
		return
	}
	var cur api.Message
	if gerr := s.call(q.r, http.MethodGet, "/v1/messages/"+pathSeg(id), nil, &cur); gerr != nil {
		q.fail(gerr)
		return
	}
	p := q.view(scheduledEditData{M: cur, Sig: q.me.Signature})
	p.Form.Set("send_at", sendAt)
	p.Form.Set("text", text)
	status, ok := q.formError(p, err, "send_at", "text")
	if !ok {
		return
	}
	if e, any := p.Errors[""]; any && status == http.StatusUnprocessableEntity {
		// A refusal (too long, over the quota) is the text's: the time
		// alone changes neither.
		delete(p.Errors, "")
		p.Errors["text"] = e
	}
	q.render(status, "scheduled_edit", p)
}

func (s *Server) scheduledDelete(q *req) {
	id := q.r.PathValue("id")
	err := s.call(q.r, http.MethodDelete, "/v1/messages/"+pathSeg(id), nil, nil)
	switch {
	case err == nil:
		q.redirect("/scheduled", "定时短信已删除，不会发送，也不收费。")
	case isReason(err, "not_scheduled"):
		q.redirect("/outbox/"+pathSeg(id), notScheduledZH)
	default:
		q.fail(err)
	}
}

// unsign is a message's text without the enterprise and user signatures
// the API adds again when it is changed (signing twice adds nothing, so
// this only spares the user the sight of them in the form).
func unsign(text string, me *api.Me) string {
	if me.Signature != "" {
		text = strings.TrimPrefix(text, me.Signature)
	}
	if me.UserSignature != "" {
		text = strings.TrimSuffix(text, me.UserSignature)
	}
	return text
}

// inboxData is the 收件箱.
type inboxData struct {
	Replies []api.InboxItem
	Next    string
	Paged   bool
	Missing api.Missing
	// Number narrows the list to one handset's replies (number= of GET
	// /v1/inbox); BadNumber says why it was not taken.
	Number, BadNumber string
	Days              dayRange // 开始日期, 结束日期
	// The links, with the number and the dates: the first page, the
	// next, and 导出 (every page as a CSV).
	FirstURL, NextURL, ExportURL string
}

// maxNumber is the API's bound on number= (characters).
const maxNumber = 32

// readNumber reads the number= of 发件箱, 定时发件箱 and 收件箱: a number in
// any form, or its last digits; bad says why it is not one.
func readNumber(in url.Values) (number, bad string) {
	number = strings.TrimSpace(in.Get("number"))
	if number != "" && (len(number) > maxNumber || !strings.ContainsAny(number, "0123456789")) {
		bad = "请输入手机号码，或号码末尾的几位数字（最多 32 个字符）。"
	}
	return number, bad
}

func (s *Server) inbox(q *req) {
	in := q.r.URL.Query()
	d := inboxData{Paged: in.Get("before") != "", Days: readDayRange(in)}
	d.Number, d.BadNumber = readNumber(in)
	if d.BadNumber != "" || d.Days.Bad != "" {
		q.render(http.StatusBadRequest, "inbox", q.view(d))
		return
	}
	keep := url.Values{}
	if d.Number != "" {
		keep.Set("number", d.Number)
	}
	d.Days.keep(keep)
	d.FirstURL = link("/inbox", keep)
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for _, k := range []string{"number", "before"} {
		if x := strings.TrimSpace(in.Get(k)); x != "" {
			v.Set(k, x)
		}
	}
	d.Days.apiQuery(v)
	pg, err := walkList(s.userCall(q), "/v1/inbox", v, "before", replyRows)
	if err != nil {
		q.fail(err)
		return
	}
	d.Replies, d.Next, d.Missing = pg.Replies, pg.Next, pg.Missing
	if d.Next != "" {
		d.NextURL = link("/inbox", with(keep, "before", d.Next))
	}
	d.ExportURL = link("/inbox/export.csv", keep)
	q.render(http.StatusOK, "inbox", q.view(d))
}

// inboxExport is 收件箱's 导出: the number and dates shown, every page, as
// a CSV for Excel (GET /v1/inbox/export with lang=zh).
func (s *Server) inboxExport(q *req) {
	s.listExport(q, "/inbox", nil, "/v1/inbox/export", false, "number")
}

// billingData is 费用: the month so far and the past bills (enterprise
// admins only, as the API decides: Bills is nil and NoBills set otherwise).
type billingData struct {
	Usage   usageView
	Bills   []api.BillLine
	NoBills bool
}

func (s *Server) billing(q *req) {
	var u api.MonthUsage
	if err := s.call(q.r, http.MethodGet, "/v1/usage", nil, &u); err != nil {
		q.fail(err)
		return
	}
	d := billingData{Usage: newUsageView(u)}
	var bl api.BillList
	switch err := s.call(q.r, http.MethodGet, "/v1/bills", nil, &bl); {
	case err == nil:
		d.Bills = bl.Bills
	case isStatus(err, http.StatusForbidden):
		d.NoBills = true
	default:
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "billing", q.view(d))
}

// isReason reports whether err is an API answer with this reason.
func isReason(err error, reason string) bool {
	var ae *api.APIError
	return errors.As(err, &ae) && ae.Reason == reason
}

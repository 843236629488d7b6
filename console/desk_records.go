package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// 收发查询 on the desk: an enterprise's sent messages and the replies to
// it, narrowed to a number and Beijing dates, and a message's detail with
// the enterprise's own "为什么没有收到？", from the admin API (GET
// /admin/v1/enterprises/{code}/messages, …/{id}, …/inbox). A customer
// who calls about a message to 138… or a reply that never reached them
// is answered from here, without a login as the enterprise.

// opsRecordsData is the page: Box "sent" (发出的短信), "inbox" (收到的回复)
// or "thread" (往来记录: one number's messages and replies, as the
// enterprise's own 往来记录 shows them).
type opsRecordsData struct {
	Code              string
	Box               string
	Outcome           string      // the sent box's tab (outboxTabs)
	Tabs              []outboxTab // its tabs, with the number and the dates
	Number, BadNumber string
	Days              dayRange
	Messages          []api.Message
	Replies           []api.InboxItem
	Thread            []convItem // box "thread" (往来记录): one number's, oldest first
	// ThreadOlderURL is the thread's page of earlier items ("": none).
	ThreadOlderURL string
	Missing        api.Missing
	Paged          bool
	// The links, with the box, the number and the dates: each box, the
	// first page and the next; AllURL the box and the tab alone (显示全部);
	// ExportURL 导出 (the sent box, with its tab, and the replies).
	SentURL, InboxURL, ThreadURL, FirstURL, NextURL, AllURL, ExportURL string
}

func (s *Server) opsRecords(q *req) {
	in := q.r.URL.Query()
	code := q.r.PathValue("code")
	d := &opsRecordsData{Code: code, Box: "sent", Days: readDayRange(in)}
	if b := in.Get("box"); b == "inbox" || b == "thread" {
		d.Box = b
	}
	d.Number, d.BadNumber = readNumber(in)
	if d.Box == "sent" {
		d.Outcome = in.Get("outcome")
	}
	cursor := "after"
	if d.Box == "inbox" {
		cursor = "before"
	}
	d.Paged = in.Get(cursor) != ""
	base := "/ops/enterprises/" + url.PathEscape(code) + "/records"
	d.AllURL = base // the box and the tab alone
	switch {
	case d.Box != "sent":
		d.AllURL = link(base, url.Values{"box": {d.Box}})
	case d.Outcome != "":
		d.AllURL = link(base, url.Values{"outcome": {d.Outcome}})
	}
	keep := url.Values{}
	if d.Number != "" {
		keep.Set("number", d.Number)
	}
	d.Days.keep(keep)
	d.SentURL, d.InboxURL, d.ThreadURL = link(base, keep), link(base, with(keep, "box", "inbox")), link(base, with(keep, "box", "thread"))
	if d.Box != "sent" {
		keep.Set("box", d.Box)
	} else {
		for _, t := range outboxTabs {
			t.URL = d.SentURL
			if t.Outcome != "" {
				t.URL = link(base, with(keep, "outcome", t.Outcome))
			}
			d.Tabs = append(d.Tabs, t)
		}
		if d.Outcome != "" {
			keep.Set("outcome", d.Outcome)
		}
	}
	d.FirstURL = link(base, keep)
	if d.Box != "thread" {
		d.ExportURL = link(base+"/export.csv", keep)
	}
	p := q.view(d)
	if d.BadNumber != "" || d.Days.Bad != "" {
		q.render(http.StatusBadRequest, "ops_records", p)
		return
	}
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if d.Number != "" {
		v.Set("number", d.Number)
	}
	if x := in.Get(cursor); x != "" && d.Box != "thread" {
		v.Set(cursor, x)
	}
	if d.Outcome != "" {
		v.Set("outcome", d.Outcome)
	}
	d.Days.apiQuery(v)
	api0 := "/admin/v1/enterprises/" + pathSeg(code)
	var next string
	var err error
	switch {
	case d.Box == "thread" && d.Number == "":
		// The thread is of one number: the form asks for it.
	case d.Box == "thread":
		pos := readThreadPos(in)
		d.Paged = pos != (threadPos{})
		var older *threadPos
		if d.Thread, older, d.Missing, err = threadOf(s.opsCallOf(q), api0, base, v, pos); older != nil {
			d.ThreadOlderURL = link(base, older.values(keep))
		}
	case d.Box == "inbox":
		var pg *api.InboxPage
		if pg, err = walkList(s.opsCallOf(q), api0+"/inbox", v, cursor, replyRows); err == nil {
			d.Replies, next, d.Missing = pg.Replies, pg.Next, pg.Missing
		}
	default:
		var pg *api.MessagePage
		if pg, err = walkList(s.opsCallOf(q), api0+"/messages", v, cursor, messageRows); err == nil {
			d.Messages, next, d.Missing = pg.Messages, pg.Next, pg.Missing
		}
	}
	if err != nil && isStatus(err, http.StatusNotFound) {
		q.fail(err) // no such enterprise
		return
	}
	if err != nil {
		code, ok := q.deskErr(p, err, "number")
		if !ok {
			return
		}
		q.render(code, "ops_records", p)
		return
	}
	if next != "" {
		d.NextURL = link(base, with(keep, cursor, next))
	}
	q.render(http.StatusOK, "ops_records", p)
}

// opsRecordsExport is 收发查询's 导出: the sent box (its tab) or the
// replies, narrowed by number and dates as shown, every page, as a CSV for
// Excel (the admin API's exports with lang=zh), in the enterprise's own
// export slots. A refusal comes back to the box with the reason.
func (s *Server) opsRecordsExport(q *req) {
	code := q.r.PathValue("code")
	base, api0 := "/ops/enterprises/"+url.PathEscape(code)+"/records", "/admin/v1/enterprises/"+pathSeg(code)
	if q.r.URL.Query().Get("box") == "inbox" {
		s.listExport(q, base, url.Values{"box": {"inbox"}}, api0+"/inbox/export", false, "number")
		return
	}
	s.listExport(q, base, nil, api0+"/messages/export", false, "outcome", "number")
}

// opsRecord is one message's detail: each part's SMSC id, error and
// times, and the enterprise's own answer to 为什么没有收到.
func (s *Server) opsRecord(q *req) {
	code := q.r.PathValue("code")
	var m api.Message
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(code)+"/messages/"+pathSeg(q.r.PathValue("id")), nil, &m); err != nil {
		q.fail(err)
		return
	}
	d := newMessageData(m, "/ops/enterprises/"+url.PathEscape(code)+"/records")
	d.Ent = code
	q.render(http.StatusOK, "ops_message", q.view(d))
}

// opsTraceData is 号码查询: every enterprise's messages to one number
// (Box "sent") or its replies to any of them (Box "replies"), and the
// enterprises whose opt-out list holds it.
type opsTraceData struct {
	Number, BadNumber string
	Box               string
	Days              dayRange
	Messages          []api.Message
	Replies           []api.InboxItem
	Missing           api.Missing
	Paged             bool
	// OptOuts are the number's entries on the enterprises' opt-out lists;
	// OptOutsKnown false: not asked (last digits name no entry).
	OptOuts      []policy.OptOutEntry
	OptOutsKnown bool
	// The links, with the number and the dates: each box, the first page
	// and the next.
	SentURL, RepliesURL, FirstURL, NextURL string
}

// opsTraceOptOut is 号码查询's 加入该企业的退订名单: a handset owner who
// complains about an enterprise's messages is put on its opt-out list
// (POST /admin/v1/enterprises/{code}/optouts), back to the number's
// replies, which show its opt-outs.
func (s *Server) opsTraceOptOut(q *req) {
	number := strings.TrimSpace(q.r.PostFormValue("number"))
	ent := strings.TrimSpace(q.r.PostFormValue("enterprise"))
	back := link("/ops/trace", url.Values{"number": {number}, "box": {"replies"}})
	if ent == "" {
		q.redirect(back, "未加入：请填写企业代码。")
		return
	}
	var res policy.ImportResult
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(ent)+"/optouts", api.Numbers{Numbers: []string{number}}, &res); err != nil {
		if isStatus(err, http.StatusUnauthorized) {
			q.fail(err)
			return
		}
		q.redirect(back, "未加入："+zhError(err))
		return
	}
	switch {
	case len(res.Errors) > 0:
		q.redirect(back, "未加入："+policy.RowReasonZH(res.Errors[0].Reason)+"。")
	case res.Added == 0:
		q.redirect(back, number+" 已在 "+ent+" 的退订名单中。")
	default:
		q.redirect(back, "已将 "+number+" 加入 "+ent+" 的退订名单：该企业发给它的短信会被拒绝，尚未发出的也不再发出。")
	}
}

// opsTrace is 号码查询 (/ops/trace?number=): who sent what to a number,
// across the enterprises, for its owner's complaint, each message
// linking to its detail in its enterprise's 收发查询; or (box=replies) what
// the number replied to them, with its opt-outs: "I replied TD and still
// get messages".
func (s *Server) opsTrace(q *req) {
	in := q.r.URL.Query()
	d := &opsTraceData{Box: "sent", Days: readDayRange(in)}
	if in.Get("box") == "replies" {
		d.Box = "replies"
	}
	cursor, list := "after", "/admin/v1/messages"
	if d.Box == "replies" {
		cursor, list = "before", "/admin/v1/inbox"
	}
	d.Paged = in.Get(cursor) != ""
	d.Number, d.BadNumber = readNumber(in)
	p := q.view(d)
	if d.Number == "" && d.BadNumber == "" && !d.Days.Any() {
		q.render(http.StatusOK, "ops_trace", p) // the empty form
		return
	}
	if d.Number == "" && d.BadNumber == "" {
		d.BadNumber = "请输入手机号码，或号码末尾的几位数字（最多 32 个字符）。"
	}
	if d.BadNumber != "" || d.Days.Bad != "" {
		q.render(http.StatusBadRequest, "ops_trace", p)
		return
	}
	keep := url.Values{"number": {d.Number}}
	d.Days.keep(keep)
	d.SentURL, d.RepliesURL = link("/ops/trace", keep), link("/ops/trace", with(keep, "box", "replies"))
	if d.Box == "replies" {
		keep.Set("box", "replies")
	}
	d.FirstURL = link("/ops/trace", keep)
	v := url.Values{"number": {d.Number}, "limit": {strconv.Itoa(pageSize)}}
	if x := in.Get(cursor); x != "" {
		v.Set(cursor, x)
	}
	d.Days.apiQuery(v)
	var next string
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/optouts?"+url.Values{"number": {d.Number}}.Encode(), nil, &d.OptOuts)
	switch {
	case err == nil:
		d.OptOutsKnown = true
	case isStatus(err, http.StatusUnprocessableEntity):
		err = nil // last digits: no list's entry to ask for
	}
	if err == nil && d.Box == "replies" {
		var pg *api.InboxPage
		if pg, err = walkList(s.opsCallOf(q), list, v, cursor, replyRows); err == nil {
			d.Replies, next, d.Missing = pg.Replies, pg.Next, pg.Missing
		}
	} else if err == nil {
		var pg *api.MessagePage
		if pg, err = walkList(s.opsCallOf(q), list, v, cursor, messageRows); err == nil {
			d.Messages, next, d.Missing = pg.Messages, pg.Next, pg.Missing
		}
	}
	if err != nil {
		code, ok := q.deskErr(p, err, "number")
		if !ok {
			return
		}
		q.render(code, "ops_trace", p)
		return
	}
	if next != "" {
		d.NextURL = link("/ops/trace", with(keep, cursor, next))
	}
	q.render(http.StatusOK, "ops_trace", p)
}

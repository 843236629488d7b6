package console

import (
	"cmp"
	"errors"
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
	{"GET /outbox/{id}", (*Server).message},
	{"GET /scheduled", (*Server).scheduled},
	{"GET /scheduled/{id}", (*Server).scheduledEdit},
	{"POST /scheduled/{id}", (*Server).scheduledSave},
	{"POST /scheduled/{id}/delete", (*Server).scheduledDelete},
	{"GET /inbox", (*Server).inbox},
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
	{"", "全部"},
	{"received", "接收成功"},
	{"failed", "接收失败"},
	{"pending", "发送中"},
}

type outboxTab struct{ Outcome, Label string }

// outboxData is the 发件箱 page.
type outboxData struct {
	Tabs     []outboxTab
	Messages []api.Message
	Outcome  string      // the tab shown
	Next     string      // the cursor of the next page ("" at the end)
	Paged    bool        // not the first page
	Missing  api.Missing // cluster mode: the nodes not asked (notice 部分节点暂时无法查询)
}

func (s *Server) outbox(q *req) {
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for _, k := range []string{"outcome", "after"} {
		if x := q.r.URL.Query().Get(k); x != "" {
			v.Set(k, x)
		}
	}
	var pg api.MessagePage
	if err := s.call(q.r, http.MethodGet, "/v1/messages?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "outbox", q.view(outboxData{Tabs: outboxTabs, Messages: pg.Messages,
		Outcome: v.Get("outcome"), Next: pg.Next, Paged: v.Get("after") != "", Missing: pg.Missing}))
}

// messageData is a message's detail page.
type messageData struct {
	M      api.Message
	Why    whyAnswer
	Codes  []string // the Chinese of each part's error code ("" = none)
	States []string // the Chinese of each part's state
}

func (s *Server) message(q *req) {
	var m api.Message
	if err := s.call(q.r, http.MethodGet, "/v1/messages/"+pathSeg(q.r.PathValue("id")), nil, &m); err != nil {
		q.fail(err)
		return
	}
	d := messageData{M: m, Why: whyFor(m)}
	for _, p := range m.Parts {
		d.Codes = append(d.Codes, codeZH(p.ErrorCode))
		d.States = append(d.States, cmp.Or(partStateZH[p.State], p.State))
	}
	q.render(http.StatusOK, "message", q.view(d))
}

// scheduledData is the 定时发件箱.
type scheduledData struct {
	Messages []api.Message
	Next     string
	Paged    bool
	Missing  api.Missing
}

func (s *Server) scheduled(q *req) {
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if x := q.r.URL.Query().Get("after"); x != "" {
		v.Set("after", x)
	}
	var pg api.MessagePage
	if err := s.call(q.r, http.MethodGet, "/v1/scheduled?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	q.render(http.StatusOK, "scheduled", q.view(scheduledData{Messages: pg.Messages, Next: pg.Next, Paged: v.Get("after") != "", Missing: pg.Missing}))
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
}

// maxInboxNumber is the API's bound on number= (characters).
const maxInboxNumber = 32

func (s *Server) inbox(q *req) {
	v := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if x := q.r.URL.Query().Get("before"); x != "" {
		v.Set("before", x)
	}
	d := inboxData{Paged: v.Get("before") != "", Number: strings.TrimSpace(q.r.URL.Query().Get("number"))}
	if d.Number != "" {
		if len(d.Number) > maxInboxNumber || !strings.ContainsAny(d.Number, "0123456789") {
			d.BadNumber = "请输入手机号码，或号码末尾的几位数字（最多 32 个字符）。"
			q.render(http.StatusBadRequest, "inbox", q.view(d))
			return
		}
		v.Set("number", d.Number)
	}
	var pg api.InboxPage
	if err := s.call(q.r, http.MethodGet, "/v1/inbox?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	d.Replies, d.Next, d.Missing = pg.Replies, pg.Next, pg.Missing
	q.render(http.StatusOK, "inbox", q.view(d))
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

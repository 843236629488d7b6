package console

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/queue"
)

// 往来记录: the messages sent to one number and the replies from it, in
// one thread, oldest first, as a phone shows a conversation: what a
// customer-service desk answering replies reads before it answers. Made
// of the outbox's and the inbox's pages for the number (GET
// /v1/messages?number=, GET /v1/inbox?number=), the caller's own (an
// admin's: the enterprise's).

// conversationPage is how many of each list the thread reads.
const conversationPage = 100

// convItem is one message of the thread: Sent (by the enterprise) or
// Reply (from the number).
type convItem struct {
	At    time.Time
	Sent  *api.Message
	Reply *api.InboxItem
}

// conversationData is the 往来记录 page.
type conversationData struct {
	Number, BadNumber string
	Items             []convItem // oldest first
	// Older: earlier messages or replies exist than the first shown (in
	// 发件箱 and 收件箱, by OutboxURL and InboxURL).
	Older                        bool
	Missing                      api.Missing
	OutboxURL, InboxURL, SendURL string
	// Numbers are the distinct numbers of the thread when more than one
	// matched (last digits typed): the thread is then several, and the
	// form, which answers one, is not shown.
	Numbers []string
}

func (s *Server) conversation(q *req) {
	s.conversationPage(q, q.r.URL.Query(), http.StatusOK, q.view(nil))
}

// conversationSend answers the number from its thread: the text as one
// message to it (POST /v1/messages, once per form: its Idempotency-Key),
// then the thread again, the message in it; a refusal is shown under the
// text, the text kept.
func (s *Server) conversationSend(q *req) {
	number, text := strings.TrimSpace(q.r.PostFormValue("number")), q.r.PostFormValue("text")
	in := url.Values{"number": {number}}
	p := q.view(nil)
	p.Form.Set("text", text)
	var res api.SendResponse
	_, err := s.callOnce(q.r, http.MethodPost, "/v1/messages", api.SendRequest{To: []string{number}, Text: text}, &res)
	if err != nil {
		code, ok := q.sendError(p, err, groupReasons, "text")
		if !ok {
			return
		}
		p.Errors["text"] = cmp.Or(p.Errors["text"], p.Errors["send"], p.Errors[""])
		s.conversationPage(q, in, code, p)
		return
	}
	if len(res.Results) == 1 && res.Results[0].Status == "refused" {
		r := res.Results[0]
		p.Errors["text"] = "未发送：" + rowZH(r.Reason) + "（" + r.Message + "）"
		s.conversationPage(q, in, http.StatusUnprocessableEntity, p)
		return
	}
	q.redirect(link("/conversation", in), "已提交，正在发送")
}

// conversationPage renders the thread with the number in query (the
// page's, or the reply form's) as code, p holding the reply form's values and errors.
func (s *Server) conversationPage(q *req, query url.Values, code int, p *page) {
	d := conversationData{}
	p.D = &d
	d.Number, d.BadNumber = readNumber(query)
	if d.Number == "" && d.BadNumber == "" {
		d.BadNumber = "请输入手机号码，或号码末尾的几位数字（最多 32 个字符）。"
	}
	if d.BadNumber != "" {
		q.render(http.StatusBadRequest, "conversation", p)
		return
	}
	num := url.Values{"number": {d.Number}}
	d.OutboxURL, d.InboxURL = link("/outbox", num), link("/inbox", num)
	d.SendURL = link("/send/group", url.Values{"to": {d.Number}})
	var err error
	d.Items, d.Older, d.Missing, err = threadOf(s.userCall(q), "/v1", url.Values{"number": {d.Number}})
	if err != nil {
		q.fail(err)
		return
	}
	if ns := threadNumbers(d.Items); len(ns) > 1 {
		d.Numbers = ns
	}
	q.render(code, "conversation", p)
}

// threadOf reads the last conversationPage messages sent to a number
// and its replies (v: number= and any other filter) from the lists
// under base (/v1, the user's; /admin/v1/enterprises/{code}, the
// operator's, through call) and merges them (thread).
func threadOf(call func(string, any) error, base string, v url.Values) ([]convItem, bool, api.Missing, error) {
	v.Set("limit", strconv.Itoa(conversationPage))
	var sent api.MessagePage
	if err := call(base+"/messages?"+v.Encode(), &sent); err != nil {
		return nil, false, api.Missing{}, err
	}
	var in api.InboxPage
	if err := call(base+"/inbox?"+v.Encode(), &in); err != nil {
		return nil, false, api.Missing{}, err
	}
	items, older, missing := thread(&sent, &in)
	return items, older, missing, nil
}

// thread merges a number's sent messages and replies (each list newest
// first, as the API pages them) into one thread, oldest first. Where one
// list was cut (it has more), the other's items older than its oldest
// are left out: the thread would otherwise show them without the cut
// list's messages between them. older: there are earlier items than
// the thread shows.
func thread(sent *api.MessagePage, in *api.InboxPage) (items []convItem, older bool, missing api.Missing) {
	missing = api.Missing{Partial: sent.Partial || in.Partial}
	for _, n := range slices.Concat(sent.MissingNodes, in.MissingNodes) {
		if !slices.Contains(missing.MissingNodes, n) {
			missing.MissingNodes = append(missing.MissingNodes, n)
		}
	}
	var since time.Time
	if sent.Next != "" && len(sent.Messages) > 0 {
		since = sent.Messages[len(sent.Messages)-1].AcceptedAt
	}
	if in.Next != "" && len(in.Replies) > 0 {
		if at := in.Replies[len(in.Replies)-1].ReceivedAt; at.After(since) {
			since = at
		}
	}
	for i := range sent.Messages {
		if m := &sent.Messages[i]; !m.AcceptedAt.Before(since) {
			items = append(items, convItem{At: m.AcceptedAt, Sent: m})
		}
	}
	for i := range in.Replies {
		if m := &in.Replies[i]; !m.ReceivedAt.Before(since) {
			items = append(items, convItem{At: m.ReceivedAt, Reply: m})
		}
	}
	slices.SortStableFunc(items, func(a, b convItem) int { return a.At.Compare(b.At) })
	return items, sent.Next != "" || in.Next != "", missing
}

// threadNumbers are the distinct numbers of a thread's items (as the
// first of each was written), in the order they first come: one number in
// any form (86 first or not) is one, as queue.SameNumber compares them.
func threadNumbers(items []convItem) []string {
	var out []string
	for _, it := range items {
		var n string
		if it.Sent != nil {
			n = it.Sent.To
		} else {
			n = it.Reply.From
		}
		if !slices.ContainsFunc(out, func(o string) bool { return queue.SameNumber(n, o) || queue.SameNumber(o, n) }) {
			out = append(out, n)
		}
	}
	return out
}

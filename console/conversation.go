package console

import (
	"cmp"
	"maps"
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
	Link  string // a sent message's detail page
}

// conversationData is the 往来记录 page.
type conversationData struct {
	Number, BadNumber string
	Items             []convItem // oldest first
	// OlderURL is the page of the earlier messages and replies ("": none);
	// LatestURL the first page, on a page of earlier ones.
	OlderURL, LatestURL          string
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
	pos := readThreadPos(query)
	if pos != (threadPos{}) {
		d.LatestURL = link("/conversation", num)
	}
	items, older, missing, err := threadOf(s.userCall(q), "/v1", "/outbox", num, pos)
	if err != nil {
		q.fail(err)
		return
	}
	d.Items, d.Missing = items, missing
	if older != nil {
		d.OlderURL = link("/conversation", older.values(num))
	}
	if ns := threadNumbers(d.Items); len(ns) > 1 {
		d.Numbers = ns
	}
	q.render(code, "conversation", p)
}

// threadPos is where a page of a thread starts, in each of its two lists:
// the list's cursor (the API's after= of the outbox, before= of the
// inbox; "" its start) and the time its items are before (zero: any), or
// done, the list read to its end. The next page's is made by thread from
// what the page shows: a list whose every item was shown goes on from
// its next; one whose older items were left out (the other list was cut
// at a later time) reads its page again from the same cursor, before the
// time of the cut. Nothing is shown twice or left out, ties at the cut
// included, and each list is read through its own cursor, never walked
// again from its newest to reach a time.
type threadPos struct {
	Sent, In listPos
}

type listPos struct {
	Cursor string
	Before time.Time
	Done   bool
}

// values are p's query parameters on a page's link (none for the first
// page): sent, sent_before, in, in_before; "-" a list done.
func (p threadPos) values(v url.Values) url.Values {
	v = maps.Clone(v)
	for _, l := range []struct {
		name string
		pos  listPos
	}{{"sent", p.Sent}, {"in", p.In}} {
		switch {
		case l.pos.Done:
			v.Set(l.name, "-")
		case l.pos.Cursor != "":
			v.Set(l.name, l.pos.Cursor)
		}
		if !l.pos.Before.IsZero() && !l.pos.Done {
			v.Set(l.name+"_before", l.pos.Before.UTC().Format(time.RFC3339Nano))
		}
	}
	return v
}

// readThreadPos is the threadPos of a page's query; a time that does not
// parse is no bound (the page then shows what its cursor reads).
func readThreadPos(q url.Values) (p threadPos) {
	for _, l := range []struct {
		name string
		pos  *listPos
	}{{"sent", &p.Sent}, {"in", &p.In}} {
		c := q.Get(l.name)
		l.pos.Done = c == "-"
		if !l.pos.Done {
			l.pos.Cursor = c
		}
		if t, err := time.Parse(time.RFC3339Nano, q.Get(l.name+"_before")); err == nil {
			l.pos.Before = t
		}
	}
	return p
}

// threadOf reads a page of a thread, at pos, up to conversationPage
// messages sent to a number and as many of its replies (v: number= and
// any other filter), from the lists under base (/v1, the user's;
// /admin/v1/enterprises/{code}, the operator's, through call), each
// walked on past empty pages (walkList), and merges them (thread), each
// sent message linking to its detail under detail. next is the position
// of the page before it, nil at the thread's start.
func threadOf(call func(string, any) error, base, detail string, v url.Values, pos threadPos) (items []convItem, next *threadPos, missing api.Missing, err error) {
	v = maps.Clone(v)
	v.Set("limit", strconv.Itoa(conversationPage))
	read := func(l listPos, cursor string) url.Values {
		q := maps.Clone(v)
		if l.Cursor != "" {
			q.Set(cursor, l.Cursor)
		}
		// Before the cut, and before the range's own end (the desk's
		// dates), whichever comes first.
		end, err := time.Parse(time.RFC3339Nano, q.Get("to"))
		if !l.Before.IsZero() && (err != nil || l.Before.Before(end)) {
			q.Set("to", l.Before.UTC().Format(time.RFC3339Nano))
		}
		return q
	}
	sent, in := &api.MessagePage{}, &api.InboxPage{}
	sv, iv := read(pos.Sent, "after"), read(pos.In, "before")
	if !pos.Sent.Done {
		if sent, err = walkList(call, base+"/messages", sv, "after", messageRows); err != nil {
			return nil, nil, missing, err
		}
	}
	if !pos.In.Done {
		if in, err = walkList(call, base+"/inbox", iv, "before", replyRows); err != nil {
			return nil, nil, missing, err
		}
	}
	// The cursors the pages read were at (walkList moves them on).
	pos.Sent.Cursor, pos.In.Cursor = sv.Get("after"), iv.Get("before")
	items, next, missing = thread(sent, in, pos)
	for i := range items {
		if m := items[i].Sent; m != nil {
			items[i].Link = detail + "/" + url.PathEscape(m.ID)
		}
	}
	return items, next, missing, nil
}

// thread merges a page of a number's sent messages and one of its
// replies (each newest first, as the API pages them; read at pos) into
// one thread, oldest first. Where one list was cut (it has more), the
// other's items older than its oldest are left out: the thread would
// otherwise show them without the cut list's messages between them; they
// come on the next page (next; nil when neither list has more). A list
// cut with no item (its messages past the store's read bound of a
// request) shows nothing of the other list: the next page reads on.
func thread(sent *api.MessagePage, in *api.InboxPage, pos threadPos) (items []convItem, next *threadPos, missing api.Missing) {
	missing = api.Missing{Partial: sent.Partial || in.Partial}
	for _, n := range slices.Concat(sent.MissingNodes, in.MissingNodes) {
		if !slices.Contains(missing.MissingNodes, n) {
			missing.MissingNodes = append(missing.MissingNodes, n)
		}
	}
	sentAt := make([]time.Time, len(sent.Messages))
	for i, m := range sent.Messages {
		sentAt[i] = m.AcceptedAt
	}
	inAt := make([]time.Time, len(in.Replies))
	for i, m := range in.Replies {
		inAt[i] = m.ReceivedAt
	}
	// since: the items shown are at or after it (zero: all); blind: a
	// list was cut with nothing in it.
	var since time.Time
	blind := false
	for _, l := range []struct {
		at   []time.Time
		next string
	}{{sentAt, sent.Next}, {inAt, in.Next}} {
		switch {
		case l.next == "":
		case len(l.at) == 0:
			blind = true
		case l.at[len(l.at)-1].After(since):
			since = l.at[len(l.at)-1]
		}
	}
	if !blind {
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
	}
	// Each list's position on the next page.
	np := pos
	for _, l := range []struct {
		pos  *listPos
		at   []time.Time
		next string
	}{{&np.Sent, sentAt, sent.Next}, {&np.In, inAt, in.Next}} {
		switch {
		case l.pos.Done:
		case blind && len(l.at) > 0:
			// Shown nothing: read again, as it was.
		case len(l.at) > 0 && l.at[len(l.at)-1].Before(since):
			// Items left out: the same page again, before the cut.
			l.pos.Before = since
		case l.next != "":
			l.pos.Cursor = l.next
		default:
			l.pos.Done = true
		}
	}
	if np.Sent.Done && np.In.Done {
		return items, nil, missing
	}
	return items, &np, missing
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

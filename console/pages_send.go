package console

import (
	"cmp"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/reminder"
)

// 短信发送 (FAQ 5, 10): 短信群发 (one text to numbers and address-book
// groups, now or at a send time), 批量发送 (a file: column A the number,
// column B the text), 定制发送 (a file with a header, the text composed
// from its columns, in steps: upload, compose and preview, send), the
// live character counter under the text boxes (FAQ 7, 20: the API
// counts), and 发送任务 (a file's job: progress, row errors, cancel).

var sendRoutes = []route{
	{"GET /send/group", (*Server).sendGroupPage},
	{"POST /send/group", (*Server).sendGroup},
	{"POST /send/count", (*Server).sendCount},
	{"GET /send/batch", (*Server).sendBatchPage},
	{"POST /send/batch", (*Server).sendBatch},
	{"GET /send/batch/template.csv", (*Server).sendBatchTemplate},
	{"GET /send/batch/template.xlsx", (*Server).sendBatchTemplate},
	{"GET /send/custom", (*Server).sendCustomPage},
	{"POST /send/custom", (*Server).sendCustomUpload},
	{"GET /send/custom/{upload}", (*Server).sendCompose},
	{"POST /send/custom/{upload}", (*Server).sendCustom},
	{"POST /send/custom/{upload}/preview", (*Server).sendCustomPreview},
	{"POST /send/custom/{upload}/delete", (*Server).sendCustomDelete},
	{"GET /jobs", (*Server).jobs},
	{"GET /jobs/{id}", (*Server).job},
	{"GET /jobs/{id}/progress", (*Server).jobProgress},
	{"GET /jobs/{id}/errors.csv", (*Server).jobErrorsCSV},
	{"POST /jobs/{id}/cancel", (*Server).jobCancel},
}

// --- the counter ---

// countView is the counter under a text box: the API's preview of the
// text as it would be sent (signed, counted), or why it cannot be.
type countView struct {
	Chars, Segments, MaxChars int
	SegmentsMax               int    // the most any upstream counts (the API's segments_max)
	Encoding                  string // in Chinese
	Sig                       string // the signatures the API adds, as shown
	Refusal                   string // why the text would be refused (Chinese)
}

// encodingZH names the API's encodings.
var encodingZH = map[string]string{"gsm7": "GSM 7 位编码（纯英文）", "ucs2": "UCS-2 编码（含中文）"}

// count asks the API how text would be sent (POST /v1/messages/preview).
func (s *Server) count(q *req, text string) countView {
	var p api.PreviewResponse
	v := countView{Sig: sigOf(q.me)}
	if err := s.call(q.r, http.MethodPost, "/v1/messages/preview", api.PreviewRequest{Text: text}, &p); err != nil {
		v.Refusal = zhError(err)
		return v
	}
	v.Chars, v.Segments, v.MaxChars, v.SegmentsMax = p.Chars, p.Segments, p.MaxChars, p.SegmentsMax
	v.Encoding = cmp.Or(encodingZH[p.Encoding], p.Encoding)
	if p.Refusal != nil {
		v.Refusal = cmp.Or(p.Refusal.MessageZH, reasonZH(p.Refusal.Reason))
		if d := p.Refusal.DetailZH; d != "" {
			v.Refusal += "（" + d + "）"
		}
	}
	return v
}

// sigOf is the signatures the API puts around a text, as the counter
// names them: 「【甲公司】」, and the user's after it if shown.
func sigOf(me *api.Me) string {
	if me == nil {
		return ""
	}
	var b strings.Builder
	for _, s := range []string{me.Signature, me.UserSignature} {
		if s != "" {
			b.WriteString("「" + s + "」")
		}
	}
	return b.String()
}

// sendCount answers the counter's htmx request with its fragment.
func (s *Server) sendCount(q *req) {
	text := q.r.PostFormValue("text")
	q.fragment("send_group", "countFragment", q.view(s.count(q, text)))
}

// --- 短信群发 ---

// groupData is the 短信群发 page.
type groupData struct {
	Book     string // personal | enterprise: whose groups are offered
	Groups   []api.ContactGroup
	Picked   map[string]bool
	Count    countView
	MaxTo    int
	Result   *api.SendResponse
	Refused  []refusedView
	Schedule string // the send time of a scheduled send, as shown
	Replayed bool   // the form was posted before: this is that answer, nothing sent now
}

// refusedView is one refused recipient with its reason in Chinese.
type refusedView struct {
	To, Reason, Detail string
	// OptedOut: refused because the number replied 退订: the row links
	// to its entry on 退订名单 (where an admin can take it off).
	OptedOut bool
}

func (s *Server) sendGroupPage(q *req) {
	p := q.view(nil)
	f := q.r.URL.Query()
	for _, k := range []string{"to", "text", "send_at"} {
		p.Form.Set(k, f.Get(k))
	}
	p.Form.Set("book", cmp.Or(f.Get("switch"), f.Get("book")))
	s.groupPage(q, http.StatusOK, p)
}

// groupPage renders the 短信群发 form with p's values and errors.
func (s *Server) groupPage(q *req, code int, p *page) {
	d := groupData{Book: bookName(p.Form.Get("book")), Picked: map[string]bool{}, MaxTo: api.MaxRecipients}
	for _, g := range p.Form["groups"] {
		d.Picked[g] = true
	}
	path := personalBook.API
	if d.Book == "enterprise" {
		path = enterpriseBook.API
	}
	var list api.ContactList
	if err := s.call(q.r, http.MethodGet, path, nil, &list); err != nil {
		q.fail(err)
		return
	}
	d.Groups = list.Groups
	d.Count = s.count(q, p.Form.Get("text"))
	p.D = d
	q.render(code, "send_group", p)
}

func bookName(b string) string {
	if b == "enterprise" {
		return b
	}
	return "personal"
}

// groupFields places the whole-request refusals of a send: a reason's
// field first, then the field its message names.
var groupReasons = map[string]string{
	"too_long": "text", "bad_text": "text", "no_signature": "text",
	"quota_exceeded": "send", "account_disabled": "send", "rate_limited": "send",
	"store_error": "send", "bad_source": "send",
}

func (s *Server) sendGroup(q *req) {
	p := q.view(nil)
	for _, k := range []string{"to", "text", "send_at", "book", "priority"} {
		p.Form.Set(k, q.r.PostFormValue(k))
	}
	p.Form["groups"] = q.r.PostForm["groups"]
	in := api.SendRequest{To: splitNumbers(p.Form.Get("to")), Text: p.Form.Get("text"), Groups: p.Form["groups"],
		Priority: p.Form.Get("priority") != ""}
	if len(in.Groups) > 0 {
		in.Book = bookName(p.Form.Get("book"))
	}
	if in.To == nil {
		in.To = []string{}
	}
	in.SendAt = localToRFC3339(p.Form.Get("send_at"))
	var res api.SendResponse
	replayed, err := s.callOnce(q.r, http.MethodPost, "/v1/messages", in, &res)
	if err != nil {
		code, ok := q.sendError(p, err, groupReasons, "to", "text", "send_at", "groups", "book")
		if !ok {
			return
		}
		if e := cmp.Or(p.Errors["book"], p.Errors[""]); e != "" && (p.Errors["book"] != "" || strings.Contains(e, "group")) {
			delete(p.Errors, "book")
			delete(p.Errors, "")
			p.Errors["groups"] = e
		}
		s.groupPage(q, code, p)
		return
	}
	d := groupData{Result: &res, Count: s.count(q, in.Text), Replayed: replayed}
	for _, r := range res.Results {
		if r.Status == "refused" {
			d.Refused = append(d.Refused, refusedView{To: r.To, Reason: rowZH(r.Reason), Detail: refusalDetail(r.Reason, r.Message, r.DetailZH), OptedOut: r.Reason == "opted_out"})
		}
	}
	if in.SendAt != "" {
		if t, err := time.Parse(time.RFC3339, in.SendAt); err == nil && t.After(time.Now()) {
			d.Schedule = fmtTime(t, "2006-01-02 15:04")
		}
	}
	p.D = d
	q.render(http.StatusOK, "send_result", p)
}

// sendError places a refusal of a send: by its reason (reasons), else by
// the field its message names, else on the form.
func (q *req) sendError(p *page, err error, reasons map[string]string, fields ...string) (int, bool) {
	code, ok := q.formError(p, err, fields...)
	if !ok {
		return 0, false
	}
	var ae *api.APIError
	if msg, has := p.Errors[""]; has && errors.As(err, &ae) {
		if f := reasons[ae.Reason]; f != "" {
			delete(p.Errors, "")
			p.Errors[f] = msg
		}
	}
	return code, true
}

// splitNumbers splits typed or pasted numbers: one a line, or separated
// by commas, semicolons, 、, tabs or spaces — but "137 1234 5678" (digits
// grouped by spaces) stays one number.
func splitNumbers(s string) []string {
	var out []string
	for _, f := range splitList(s) {
		words := strings.Fields(f)
		whole := len(words) > 1
		for _, w := range words {
			if digits(w) < 11 {
				whole = false
			}
		}
		if whole {
			out = append(out, words...)
		} else {
			out = append(out, f)
		}
	}
	return out
}

func digits(s string) int {
	n := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n++
		}
	}
	return n
}

// localToRFC3339 turns a datetime-local value (Asia/Shanghai) into the
// API's RFC 3339 time; "" stays "" (at once), anything else is passed on
// for the API to refuse.
func localToRFC3339(v string) string {
	v = strings.TrimSpace(v)
	for _, layout := range []string{localLayout, localLayout + ":05"} {
		if t, err := time.ParseInLocation(layout, v, reminder.Shanghai); err == nil {
			return t.Format(time.RFC3339)
		}
	}
	return v
}

// rowZH is the Chinese of a recipient's or a row's refusal reason:
// policy's (its reasons' and row reasons' tables, the words the API's
// previews use too), else the console's words of the API's other reasons.
func rowZH(reason string) string { return cmp.Or(reasonZH(reason), reason) }

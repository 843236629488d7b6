package console

import (
	"cmp"
	"encoding/csv"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
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
	v.Chars, v.Segments, v.MaxChars = p.Chars, p.Segments, p.MaxChars
	v.Encoding = cmp.Or(encodingZH[p.Encoding], p.Encoding)
	if p.Refusal != nil {
		v.Refusal = cmp.Or(p.Refusal.MessageZH, reasonZH(p.Refusal.Reason))
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
}

// refusedView is one refused recipient with its reason in Chinese.
type refusedView struct {
	To, Reason, Detail string
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
	for _, k := range []string{"to", "text", "send_at", "book"} {
		p.Form.Set(k, q.r.PostFormValue(k))
	}
	p.Form["groups"] = q.r.PostForm["groups"]
	in := api.SendRequest{To: splitNumbers(p.Form.Get("to")), Text: p.Form.Get("text"), Groups: p.Form["groups"]}
	if len(in.Groups) > 0 {
		in.Book = bookName(p.Form.Get("book"))
	}
	if in.To == nil {
		in.To = []string{}
	}
	in.SendAt = localToRFC3339(p.Form.Get("send_at"))
	var res api.SendResponse
	if err := s.call(q.r, http.MethodPost, "/v1/messages", in, &res); err != nil {
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
	d := groupData{Result: &res, Count: s.count(q, in.Text)}
	for _, r := range res.Results {
		if r.Status != "accepted" {
			d.Refused = append(d.Refused, refusedView{To: r.To, Reason: rowZH(r.Reason), Detail: r.Message})
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
func rowZH(reason string) string {
	if r, ok := policy.ParseReason(reason); ok {
		return r.MessageZH()
	}
	if zh := policy.RowReasonZH(reason); zh != policy.RowReasonZH("") {
		return zh
	}
	return cmp.Or(reasonZH(reason), reason)
}

// --- 批量发送 ---

func (s *Server) sendBatchPage(q *req) { q.render(http.StatusOK, "send_batch", q.view(nil)) }

func (s *Server) sendBatchTemplate(q *req) {
	s.proxy(q.w, q.r, q.token, "/v1/batches/"+pathpart(q.r.URL.Path), nil)
}

// batchFields places the refusals of a batch upload.
var batchReasons = map[string]string{"too_many_jobs": "file", "unsupported_media_type": "file", "too_large": "file", "file_limit": "file"}

// sendBatch passes the browser's multipart body on to POST /v1/batches as
// it arrives; only the send time (a datetime-local field, Asia/Shanghai)
// is rewritten as the API's RFC 3339 on the way (relayMultipart).
func (s *Server) sendBatch(q *req) {
	ct, body, done, err := relayMultipart(q.r, map[string]func(string) string{"send_at": localToRFC3339})
	p := q.view(nil)
	if err != nil {
		p.Errors["file"] = "请选择要上传的文件（CSV 或 XLSX）。"
		q.render(http.StatusBadRequest, "send_batch", p)
		return
	}
	var out api.BatchCreated
	err = s.upload(q.r, q.token, http.MethodPost, "/v1/batches", ct, body, &out)
	done()
	if err != nil {
		code, ok := q.sendError(p, err, batchReasons, "send_at", "file")
		if !ok {
			return
		}
		if e, has := p.Errors[""]; has {
			delete(p.Errors, "")
			p.Errors["file"] = e
		}
		q.render(code, "send_batch", p)
		return
	}
	q.redirect("/jobs/"+pathSeg(out.JobID), "批量发送任务已开始：文件中的短信正在逐行发送。")
}

// maxRelayField bounds a multipart field other than a file (the API's
// bound is the same).
const maxRelayField = 16 << 10

// relayMultipart re-encodes r's multipart body part by part into a pipe,
// file parts copied through as they arrive (nothing is buffered whole),
// the fields in conv rewritten, a "csrf" field dropped. done must be
// called once the reader is no longer read: it ends the copy and waits for
// it.
func relayMultipart(r *http.Request, conv map[string]func(string) string) (ct string, body io.Reader, done func(), err error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return "", nil, nil, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		err := copyParts(mr, mw, conv)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	done = func() {
		pr.CloseWithError(errors.New("console: upload ended"))
		<-finished
	}
	return mw.FormDataContentType(), pr, done, nil
}

func copyParts(mr *multipart.Reader, mw *multipart.Writer, conv map[string]func(string) string) error {
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := part.FormName()
		if part.FileName() != "" || name == "file" {
			w, err := mw.CreatePart(part.Header)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, part); err != nil {
				return err
			}
			continue
		}
		v, err := io.ReadAll(io.LimitReader(part, maxRelayField+1))
		if err != nil {
			return err
		}
		if name == csrfField {
			continue
		}
		val := string(v)
		if f := conv[name]; f != nil && len(v) <= maxRelayField {
			if val = f(val); val == "" {
				continue // an empty option is no option
			}
		}
		if err := mw.WriteField(name, val); err != nil {
			return err
		}
	}
}

// --- 定制发送 ---

func (s *Server) sendCustomPage(q *req) { q.render(http.StatusOK, "send_custom", q.view(nil)) }

// sendCustomUpload passes the file on to POST /v1/uploads unread and
// opens the page that composes the text from its columns.
func (s *Server) sendCustomUpload(q *req) {
	var up api.Upload
	err := s.upload(q.r, q.token, http.MethodPost, "/v1/uploads", q.r.Header.Get("Content-Type"), q.r.Body, &up)
	if err != nil {
		p := q.view(nil)
		code, ok := q.formError(p, err, "file")
		if !ok {
			return
		}
		q.render(code, "send_custom", p)
		return
	}
	q.redirect("/send/custom/"+pathSeg(up.ID), "文件已上传：请选择手机号码所在的列，并编写短信内容。")
}

// composeData is the page that composes a templated send.
type composeData struct {
	Up      api.Upload
	Preview *api.UploadPreview
	Err     string // the preview's refusal (htmx fragment)
}

// customReasons places the refusals of a templated send.
var customReasons = map[string]string{"unknown_field": "template", "too_many_jobs": "send", "file_limit": "send"}

func (s *Server) sendCompose(q *req) {
	p := q.view(nil)
	s.composePage(q, http.StatusOK, p, nil)
}

// composePage renders the compose page of the upload in the path; an
// upload that is gone (sent, deleted, expired, or not the user's) is the
// page that asks for a new upload.
func (s *Server) composePage(q *req, code int, p *page, pv *api.UploadPreview) {
	var up api.Upload
	if err := s.call(q.r, http.MethodGet, "/v1/uploads/"+pathSeg(q.r.PathValue("upload")), nil, &up); err != nil {
		if isStatus(err, http.StatusNotFound) {
			q.render(http.StatusNotFound, "send_gone", q.view(nil))
			return
		}
		q.fail(err)
		return
	}
	p.D = composeData{Up: up, Preview: pv}
	q.render(code, "send_compose", p)
}

// composeForm reads the compose form's fields into p.Form.
func composeForm(q *req, p *page) {
	for _, k := range []string{"template", "number_column", "send_at"} {
		p.Form.Set(k, q.r.PostFormValue(k))
	}
}

// previewUpload asks the API for the first rows filled (GET
// /v1/uploads/{id}/preview).
func (s *Server) previewUpload(q *req, p *page) (*api.UploadPreview, error) {
	v := url.Values{"template": {p.Form.Get("template")}}
	if nc := p.Form.Get("number_column"); nc != "" {
		v.Set("number_column", nc)
	}
	var pv api.UploadPreview
	err := s.call(q.r, http.MethodGet, "/v1/uploads/"+pathSeg(q.r.PathValue("upload"))+"/preview?"+v.Encode(), nil, &pv)
	if err != nil {
		return nil, err
	}
	return &pv, nil
}

// sendCustomPreview shows the first rows filled: the fragment to htmx
// (the 预览 button and typing in the text box), the whole page otherwise.
func (s *Server) sendCustomPreview(q *req) {
	p := q.view(nil)
	composeForm(q, p)
	htmx := q.r.Header.Get("HX-Request") != ""
	if htmx && strings.TrimSpace(p.Form.Get("template")) == "" {
		q.fragment("send_compose", "preview", q.view(composeData{}))
		return
	}
	pv, err := s.previewUpload(q, p)
	if err != nil {
		if isStatus(err, http.StatusNotFound) && htmx {
			q.w.Header().Set("HX-Redirect", q.r.URL.Path[:strings.LastIndex(q.r.URL.Path, "/")])
			q.w.WriteHeader(http.StatusNoContent)
			return
		}
		if isStatus(err, http.StatusNotFound) {
			q.render(http.StatusNotFound, "send_gone", q.view(nil))
			return
		}
		if htmx {
			q.fragment("send_compose", "preview", q.view(composeData{Err: zhError(err)}))
			return
		}
		code, ok := q.sendError(p, err, customReasons, "template", "number_column")
		if !ok {
			return
		}
		s.composePage(q, code, p, nil)
		return
	}
	if htmx {
		q.fragment("send_compose", "preview", q.view(composeData{Preview: pv}))
		return
	}
	s.composePage(q, http.StatusOK, p, pv)
}

// sendCustom starts the templated send of the staged upload.
func (s *Server) sendCustom(q *req) {
	p := q.view(nil)
	composeForm(q, p)
	in := api.StagedBatchRequest{Upload: q.r.PathValue("upload"), Template: p.Form.Get("template"),
		NumberColumn: p.Form.Get("number_column"), SendAt: localToRFC3339(p.Form.Get("send_at"))}
	var out api.BatchCreated
	if err := s.call(q.r, http.MethodPost, "/v1/batches", in, &out); err != nil {
		if isStatus(err, http.StatusNotFound) {
			q.render(http.StatusNotFound, "send_gone", q.view(nil))
			return
		}
		code, ok := q.sendError(p, err, customReasons, "template", "number_column", "send_at")
		if !ok {
			return
		}
		if e, has := p.Errors[""]; has {
			delete(p.Errors, "")
			p.Errors["send"] = e
		}
		s.composePage(q, code, p, nil)
		return
	}
	q.redirect("/jobs/"+pathSeg(out.JobID), "定制发送任务已开始：文件中的短信正在逐行发送。")
}

func (s *Server) sendCustomDelete(q *req) {
	if err := s.call(q.r, http.MethodDelete, "/v1/uploads/"+pathSeg(q.r.PathValue("upload")), nil, nil); err != nil {
		if isStatus(err, http.StatusNotFound) {
			q.render(http.StatusNotFound, "send_gone", q.view(nil))
			return
		}
		q.fail(err)
		return
	}
	q.redirect("/send/custom", "已删除上传的文件。")
}

// --- 发送任务 ---

// jobStates are a job's states in Chinese and their colour.
var jobStates = map[string][2]string{
	api.JobRunning:   {"发送中", "wait"},
	api.JobDone:      {"已完成", "ok"},
	api.JobCancelled: {"已取消", "muted"},
	api.JobFailed:    {"已中止", "fail"},
}

// jobKinds names a job's kind.
var jobKinds = map[string]string{"batch": "批量发送", "template": "定制发送"}

// jobView is a job as the pages show it.
type jobView struct {
	api.BatchJob
	StateZH, Class, KindZH, FailZH string
	Running                        bool
	Rows                           []jobRowView
	More                           int // row errors not listed (past the API's list)
}

type jobRowView struct {
	api.RowError
	ReasonZH string
}

func newJobView(j api.BatchJob) jobView {
	st := jobStates[j.State]
	v := jobView{BatchJob: j, StateZH: cmp.Or(st[0], j.State), Class: cmp.Or(st[1], "wait"),
		KindZH: cmp.Or(jobKinds[j.Kind], j.Kind), Running: j.State == api.JobRunning}
	if j.Reason != "" {
		v.FailZH = rowZH(j.Reason)
	}
	for _, e := range j.Errors {
		v.Rows = append(v.Rows, jobRowView{RowError: e, ReasonZH: rowZH(e.Reason)})
	}
	v.More = max(0, j.ErrorCount-len(j.Errors))
	return v
}

func (s *Server) jobs(q *req) {
	var l api.BatchJobList
	if err := s.call(q.r, http.MethodGet, "/v1/batches", nil, &l); err != nil {
		q.fail(err)
		return
	}
	var jobs []jobView
	for _, j := range l.Jobs {
		jobs = append(jobs, newJobView(j))
	}
	q.render(http.StatusOK, "jobs", q.view(jobs))
}

func (s *Server) getJob(q *req) (*jobView, bool) {
	var j api.BatchJob
	if err := s.call(q.r, http.MethodGet, "/v1/batches/"+pathSeg(q.r.PathValue("id")), nil, &j); err != nil {
		q.fail(err)
		return nil, false
	}
	v := newJobView(j)
	return &v, true
}

func (s *Server) job(q *req) {
	if v, ok := s.getJob(q); ok {
		q.render(http.StatusOK, "job", q.view(v))
	}
}

// jobProgress is the job's progress fragment: it polls itself every
// second while the job runs and stops once it is over.
func (s *Server) jobProgress(q *req) {
	if v, ok := s.getJob(q); ok {
		q.fragment("job", "progress", q.view(v))
	}
}

// jobErrorsCSV writes the job's row errors as a CSV file that Excel opens
// (UTF-8 with a byte order mark): 行号, 号码, 原因, 说明.
func (s *Server) jobErrorsCSV(q *req) {
	v, ok := s.getJob(q)
	if !ok {
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="errors-`+url.PathEscape(v.ID)+`.csv"`)
	_, _ = io.WriteString(q.w, "\ufeff")
	w := csv.NewWriter(q.w)
	_ = w.Write([]string{"行号", "号码", "原因", "说明"})
	for _, e := range v.Rows {
		_ = w.Write([]string{strconv.Itoa(e.Row), e.Number, e.ReasonZH, e.Message})
	}
	w.Flush()
}

func (s *Server) jobCancel(q *req) {
	id := q.r.PathValue("id")
	var j api.BatchJob
	err := s.call(q.r, http.MethodDelete, "/v1/batches/"+pathSeg(id), nil, &j)
	switch {
	case err == nil:
		q.redirect("/jobs/"+pathSeg(id), "任务已取消：已发出的短信不受影响，其余行不再发送。")
	case isReason(err, "finished"):
		q.redirect("/jobs/"+pathSeg(id), "任务已结束，无需取消。")
	default:
		q.fail(err)
	}
}

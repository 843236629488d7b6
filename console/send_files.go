package console

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/qxtd/qxtd/api"
)

// 批量发送 and 定制发送: sends from an uploaded sheet. The file passes to
// the API as it comes (relayMultipart re-encodes the form part by part,
// never holding the file).

// --- 批量发送 ---

func (s *Server) sendBatchPage(q *req) { q.render(http.StatusOK, "send_batch", q.view(nil)) }

func (s *Server) sendBatchTemplate(q *req) {
	s.proxy(q.w, q.r, q.token, "/v1/batches/"+pathpart(q.r.URL.Path), nil)
}

// submittedBefore is the notice of a send form posted again (callOnce).
const submittedBefore = "这份表单已经提交过：下面是第一次提交的发送任务，没有再次发送。"

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
	replayed, err := s.uploadOnce(q.r, q.token, http.MethodPost, "/v1/batches", ct, body, &out)
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
	if replayed {
		q.redirect("/jobs/"+pathSeg(out.JobID), submittedBefore)
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
	Gone    bool   // the upload is gone (htmx fragment): sent, deleted, expired
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
			// Said in the preview, not by leaving the page: a preview
			// the typing delayed can be answered after 发送 took the
			// upload, and a redirect then would take the user from the
			// job's page to one saying the file is gone.
			q.fragment("send_compose", "preview", q.view(composeData{Gone: true}))
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
	replayed, err := s.callOnce(q.r, http.MethodPost, "/v1/batches", in, &out)
	if err != nil {
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
	if replayed {
		q.redirect("/jobs/"+pathSeg(out.JobID), submittedBefore)
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

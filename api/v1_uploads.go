package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/batch"
)

// Staged uploads of templated sends (staged.go keeps them):
// POST /v1/uploads, GET /v1/uploads/{id}/preview, DELETE /v1/uploads/{id};
// POST /v1/batches {"upload": …} (jobs.go) sends one. Visibility is the
// batches': an enterprise admin sees every upload of its enterprise, a user
// its own; anything else is 404 not_found.

// Upload is the answer of POST /v1/uploads (201).
type Upload struct {
	ID      string     `json:"id"`      // "upl_…"
	File    string     `json:"file"`    // the uploaded file's name ("" for a raw body)
	Columns []string   `json:"columns"` // the header row, cells trimmed ("" for a column without a header)
	Rows    [][]string `json:"rows"`    // the first 5 data rows, as Excel shows them, one cell per column
	// Cut: a cell was cut to batch.HeadCellBytes, or data rows were left
	// out to keep the answer within batch.HeadMaxBytes.
	Cut bool `json:"truncated,omitempty"`
}

// answer is the Upload of POST /v1/uploads and GET /v1/uploads/{id}.
func (su *stagedUpload) answer() Upload {
	return Upload{ID: su.id, File: su.up.name, Columns: nonNil(su.columns), Rows: nonNil(su.rows), Cut: su.cut}
}

// UploadPreview is the answer of GET /v1/uploads/{id}/preview.
type UploadPreview struct {
	Rows []UploadPreviewRow `json:"rows"`
}

// UploadPreviewRow is one data row of the file as the templated send
// would send it.
type UploadPreviewRow struct {
	Row      int    `json:"row"`      // the row of the sheet (line of a CSV file)
	Number   string `json:"number"`   // as in the file (not checked against the whitelist or scope)
	Text     string `json:"text"`     // the filled template, signed; "" when the row is refused before that
	Chars    int    `json:"chars"`    // characters of text
	Segments int    `json:"segments"` // the billing count of text
	// Refusal: why the row would be refused — a row reason (empty_field,
	// number_truncated, invalid_number for an empty number) or the text's
	// (too_long, bad_text); null if it would be sent.
	Refusal *PreviewRefusal `json:"refusal"`
}

// visibleTo is the visibility rule of staged uploads for c.
func visibleTo(c *caller) func(*stagedUpload) bool {
	return func(su *stagedUpload) bool {
		return su.ent == c.ent.Code && (c.admin() || su.owner == c.user.SystemID)
	}
}

func writeUploadNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no such upload (it was sent, deleted, or expired 30 minutes after the upload)")
}

// stageUpload: POST /v1/uploads.
func (s *Server) stageUpload(c *caller, w http.ResponseWriter, r *http.Request) {
	if s.cfg.Gateway == nil || s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return
	}
	for name := range r.URL.Query() {
		if name != "format" {
			writeInvalid(w, name, "不支持的参数 "+strconv.Quote(name), "unknown parameter "+strconv.Quote(name))
			return
		}
	}
	st := &s.jobs.staged
	if !st.reserve(c.ent.Code) {
		writeError(w, http.StatusTooManyRequests, "too_many_uploads", fmt.Sprintf(
			"too many staged uploads (at most %d of an enterprise, %d in all): send or delete one, or wait until one expires",
			MaxStagedPerEnterprise, MaxStaged))
		return
	}
	staged := false
	defer func() {
		if !staged {
			st.unreserve(c.ent.Code)
		}
	}()
	var opts batchOptions
	up, ok := s.spoolUpload(w, r, MaxBatchBody, &opts)
	if !ok {
		return
	}
	if opts != (batchOptions{}) {
		_ = os.Remove(up.path)
		writeInvalid(w, "", "上传只需文件，不带其他参数（模板在预览或发送时填写）", "an upload takes only the file (the template comes with the preview or the send)")
		return
	}
	release, ok := s.importSlot(w, c.ent.Code)
	if !ok {
		_ = os.Remove(up.path)
		return
	}
	f, err := os.Open(up.path)
	if err != nil {
		release()
		_ = os.Remove(up.path)
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	// The file is read as a templated send reads it: the header row names
	// the columns.
	columns, rows, cut, err := batch.Head(f, batch.RowsOptions{Format: up.format, MaxBytes: MaxBatchBody, TempDir: s.jobs.tmpDir}, stagedHeadRows)
	release()
	if err != nil {
		_ = os.Remove(up.path)
		if !writeSheetErr(w, err) {
			writeInvalid(w, "file", fileErrZH(err), err.Error())
		}
		return
	}
	su := &stagedUpload{ent: c.ent.Code, owner: c.user.SystemID, up: up, columns: columns, rows: rows, cut: cut}
	if err := st.add(su); err != nil {
		staged = true // add gave the reservation back
		_ = os.Remove(up.path)
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	staged = true
	w.Header().Set("Location", "/v1/uploads/"+su.id)
	writeJSON(w, http.StatusCreated, su.answer())
}

// previewUpload: GET /v1/uploads/{id}/preview?template=…&number_column=…:
// the first rows filled by package batch's templated send (batch.OpenRows,
// Rows.Next) and signed and counted by gateway.Preview.
func (s *Server) previewUpload(c *caller, w http.ResponseWriter, r *http.Request) {
	su := s.jobs.staged.get(r.PathValue("id"), visibleTo(c))
	if su == nil {
		writeUploadNotFound(w)
		return
	}
	q := r.URL.Query()
	for name := range q {
		if name != "template" && name != "number_column" {
			writeInvalid(w, name, "不支持的参数 "+strconv.Quote(name), "unknown parameter "+strconv.Quote(name))
			return
		}
	}
	tmpl := q.Get("template")
	switch {
	case tmpl == "":
		writeInvalid(w, "template", "请填写短信模板", "template: required")
		return
	case utf8Len(tmpl) > maxTemplateLen:
		writeInvalid(w, "template", fmt.Sprintf("短信模板最多 %d 个字", maxTemplateLen), fmt.Sprintf("template: at most %d characters", maxTemplateLen))
		return
	case s.cfg.Gateway == nil:
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return
	}
	release, ok := s.importSlot(w, c.ent.Code)
	if !ok {
		return
	}
	f, err := os.Open(su.up.path)
	if err != nil { // sent or deleted meanwhile
		release()
		writeUploadNotFound(w)
		return
	}
	rows, err := batch.OpenRows(f, batch.RowsOptions{Format: su.up.format, Template: tmpl,
		NumberColumn: q.Get("number_column"), MaxBytes: MaxBatchBody, TempDir: s.jobs.tmpDir})
	release()
	if err != nil {
		writeRowsError(w, err)
		return
	}
	defer rows.Close()
	out := UploadPreview{Rows: []UploadPreviewRow{}}
	for len(out.Rows) < stagedHeadRows {
		row, err := rows.Next()
		if err != nil {
			break // io.EOF, or a row that cannot be read: the send reports it
		}
		pr := UploadPreviewRow{Row: row.N, Number: row.Number}
		if row.Reason != "" {
			pr.Refusal = rowRefusal(row.Reason, row.Message)
		} else {
			p, err := s.preview(c, row.Text, row.Number)
			if err != nil {
				writeRefusal(w, err)
				return
			}
			pr.Text, pr.Chars, pr.Segments, pr.Refusal = p.Signed, p.Chars, p.Segments, p.Refusal
		}
		out.Rows = append(out.Rows, pr)
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteUpload: DELETE /v1/uploads/{id}.
func (s *Server) deleteUpload(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.jobs.staged.remove(r.PathValue("id"), visibleTo(c)) {
		writeUploadNotFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fileErrZH is the Chinese of a batch file that cannot be read (package
// batch's errors other than a sheet's, which writeSheetErr answers).
func fileErrZH(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no data row below its header"):
		return "文件在标题行下面没有数据"
	case strings.Contains(msg, "has no header row"):
		return "文件没有标题行"
	case strings.Contains(msg, "has no rows"):
		return "文件是空的：没有任何行"
	}
	return "文件无法读取：请用 Excel 另存为 .xlsx 或 .csv 文件后再上传"
}

// templateErrZH is the field and the Chinese of a template (or number
// column) that package batch refuses as invalid (batch.FieldError), by
// its English.
func templateErrZH(msg string) (field, zh string) {
	switch {
	case strings.HasPrefix(msg, "number_column is required"):
		return "number_column", "找不到号码列：没有标题为“号码”或“手机号”的列，请指定号码列（number_column）"
	case strings.HasSuffix(msg, "two columns have that header"):
		return "template", "模板字段对应的列标题重复：请让各列标题不同"
	case strings.HasPrefix(msg, "template: not UTF-8"):
		return "template", "短信模板须为 UTF-8 文本"
	case strings.HasPrefix(msg, "template: {"):
		return "template", "短信模板中的 { 没有闭合（大括号本身请写成 {{）"
	case strings.HasPrefix(msg, "template: }"):
		return "template", "短信模板中的 } 前面没有 {（大括号本身请写成 }}）"
	case strings.HasPrefix(msg, "template: empty or malformed field"):
		return "template", "短信模板中有空的或格式有误的 {列名}"
	case strings.HasPrefix(msg, "template: no {column} field"):
		return "template", "短信模板中没有 {列名}（所有号码发同样内容请用批量文件或分组发送）"
	}
	return "template", "短信模板有误"
}

// writeRowsError answers an error of batch.OpenRows: a template or number
// column that does not fit the header (400 unknown_field / invalid), a
// sheet limit (422 file_limit), or a file that cannot be read (400).
func writeRowsError(w http.ResponseWriter, err error) {
	var fe *batch.FieldError
	switch {
	case errors.As(err, &fe) && fe.Reason == "invalid":
		field, zh := templateErrZH(fe.Msg)
		writeInvalid(w, field, zh, fe.Msg)
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, fe.Reason, fe.Msg)
	case writeSheetErr(w, err):
	default:
		writeInvalid(w, "file", fileErrZH(err), err.Error())
	}
}

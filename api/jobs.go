package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/sheet"
)

// Batch and templated sends (批量发送, 定制发送): the HTTP side of package batch.
// POST /v1/batches takes a CSV or XLSX file — a multipart upload (field
// "file") or the raw body — and answers 202 with a job id at once; the rows
// are sent by a job in the background, whose progress GET /v1/batches/{id}
// shows and DELETE cancels.
//
//   - Batch send: column A the number, column B the text, one SMS per row.
//     A first row whose column A has no digit is a header.
//   - Templated send (template=…): the first row is a header naming the
//     columns; number_column names the number's column and each {column} of
//     the template is filled from the row. A field that names no column is
//     refused (400 unknown_field) before anything is sent.
//
// What a job accounts for, how it paces itself and what it keeps is
// package batch's (see its doc). At most batch.MaxJobsPerEnterprise jobs of
// an enterprise and batch.MaxJobs in all run at once: past that, 429
// too_many_jobs. Files are spooled to temporary files and removed when the
// job ends; XLS is refused (415), a zip archive is read as XLSX whatever its
// name.
//
// Visibility: as messages — an enterprise admin sees every job of its
// enterprise, a user its own; anything else is 404 not_found.

// Limits of batch requests.
const (
	MaxBatchBody   = 50 << 20 // an uploaded batch file
	maxTemplateLen = 2000     // characters of a template
	maxFormField   = 16 << 10 // bytes of a multipart field other than the file
	cancelWait     = 10 * time.Second
)

// Job states (package batch's).
const (
	JobRunning   = batch.JobRunning
	JobDone      = batch.JobDone
	JobCancelled = batch.JobCancelled
	JobFailed    = batch.JobFailed
)

// BatchCreated is the answer of POST /v1/batches (202).
type BatchCreated struct {
	JobID string `json:"job_id"`
}

// BatchJob is a job's progress (GET /v1/batches/{id}) and an item of
// GET /v1/batches (without errors).
type BatchJob = batch.Progress

// BatchJobList is the answer of GET /v1/batches.
type BatchJobList struct {
	Jobs []BatchJob `json:"jobs"`
}

// RowError is a refused row of a batch file or a contact import.
type RowError = batch.RowError

// RowRange is a range of a job's rows (its unsent_rows).
type RowRange = batch.RowRange

// jobState is the batch jobs of a Server (a field of Server): a
// batch.Runner made at first use.
type jobState struct {
	once   sync.Once
	runner *batch.Runner
	tmpDir string // spooled uploads and unpacked sheets; "" = os.TempDir()
	// imports: the files being read, of every upload (uploads.go).
	imports importLimiter
	// staged: the templated sends' files uploaded ahead (staged.go).
	staged stagedStore
}

// batches is the Server's job runner.
func (s *Server) batches() *batch.Runner {
	s.jobs.once.Do(func() {
		cfg := batch.Config{Gateway: s.cfg.Gateway, Policy: s.cfg.Policy, MaxRunning: s.cfg.MaxBatchJobs,
			Now: s.cfg.Clock, Logger: s.log, Registerer: s.cfg.Registerer}
		if s.cfg.Store != nil {
			cfg.Store = s.cfg.Store
		}
		s.jobs.runner = batch.New(cfg)
	})
	return s.jobs.runner
}

// ResumeBatches lists the batch jobs kept in the store and resumes those
// a restart stopped, each as its user (who must still be there and
// enabled); it also removes the spool directory's files no running job
// reads: uploads cut off by the restart, staged uploads (which a restart
// forgets), XLSX copies a crash left behind. The daemon calls it once,
// when its gateway can send (in a cluster: the node a member), before the
// API serves; without it no stored job is listed or resumed.
func (s *Server) ResumeBatches() {
	if s.cfg.Store == nil || s.cfg.Gateway == nil || s.cfg.Policy == nil {
		return
	}
	pol := s.cfg.Policy
	account := func(enterprise, owner string) (*gateway.Account, error) {
		u, err := pol.User(policy.Actor{Enterprise: enterprise, Name: owner}, owner)
		if err != nil {
			return nil, err
		}
		ent, ok := pol.Lookup(enterprise)
		switch {
		case !ok || u.Enterprise != enterprise:
			return nil, fmt.Errorf("user %s of %s: gone", owner, enterprise)
		case ent.Disabled || u.Disabled:
			return nil, fmt.Errorf("user %s of %s: disabled", owner, enterprise)
		}
		return gateway.AccountFor(u, ent), nil
	}
	// The system's temporary directory ("") is not ours to sweep.
	sweep := s.jobs.tmpDir != ""
	if sweep {
		// A restored backup carries the files of the jobs that ran then
		// (qxtd backup): back into the spool before the jobs resume.
		written, err := s.cfg.Store.RestoreJobFiles(context.Background(), s.jobs.tmpDir)
		if err != nil {
			s.log.Error("batch jobs: the files a restored backup carried could not all be written back (those jobs end failed, file_gone)", "err", err)
		}
		if len(written) > 0 {
			s.log.Info("batch jobs: files written back from a restored backup", "files", len(written), "dir", s.jobs.tmpDir)
		}
		// Before the jobs resume: a resumed XLSX job makes its own.
		sheets, _ := filepath.Glob(filepath.Join(s.jobs.tmpDir, "qxtd-sheet-*"))
		for _, f := range sheets {
			_ = os.RemoveAll(f)
		}
	}
	files, err := s.batches().Resume(account, batch.RowsOptions{MaxBytes: MaxBatchBody, TempDir: s.jobs.tmpDir})
	if err != nil {
		s.log.Error("batch jobs: some kept jobs could not be resumed or read", "err", err)
	}
	if !sweep {
		return
	}
	keep := map[string]bool{}
	for _, f := range files {
		keep[f] = true
	}
	left, _ := filepath.Glob(filepath.Join(s.jobs.tmpDir, "qxtd-batch-*"))
	for _, f := range left {
		if !keep[f] {
			_ = os.RemoveAll(f)
		}
	}
}

// Close cancels the running batch jobs and waits until they stop (the
// gateway calls in flight are answered first, so every row is accounted
// for). Call it before stopping the gateway; the API takes no new job after.
func (s *Server) Close() {
	s.batches().Close()
	s.jobs.staged.close()   // staged uploads no batch took
	s.selfService().close() // password resets answered, still writing or sending
}

// visibleJob is job id if the caller may see it.
func (s *Server) visibleJob(c *caller, id string) *batch.Job {
	j := s.batches().Get(id)
	if j == nil || j.Enterprise() != c.ent.Code || !c.admin() && j.Owner() != c.user.SystemID {
		return nil
	}
	return j
}

func writeJobNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no such batch job")
}

// --- handlers ---

// batchOptions are a batch request's parameters (query or multipart fields).
type batchOptions struct {
	template, numberColumn string
	sendAt, source         string
	receipt                string
	upload                 string // a staged upload's id (staged.go) instead of a file
}

func (o *batchOptions) set(name, v string) bool {
	switch name {
	case "template":
		o.template = v
	case "number_column":
		o.numberColumn = v
	case "send_at":
		o.sendAt = v
	case "source":
		o.source = v
	case "receipt":
		o.receipt = v
	case "upload":
		o.upload = v
	default:
		return false
	}
	return true
}

// StagedBatchRequest is the JSON body of POST /v1/batches that starts the
// templated send of a staged upload (POST /v1/uploads).
type StagedBatchRequest struct {
	Upload       string `json:"upload"`                  // "upl_…"
	Template     string `json:"template"`                // required
	NumberColumn string `json:"number_column,omitempty"` // "": the column headed 号码, 手机号 …
	SendAt       string `json:"send_at,omitempty"`       // RFC 3339; absent = at once
	Source       string `json:"source,omitempty"`        // sender extension, digits
	Receipt      bool   `json:"receipt,omitempty"`
}

// set applies the request's fields over the query's.
func (b *StagedBatchRequest) set(o *batchOptions) {
	for _, f := range [][2]string{{"upload", b.Upload}, {"template", b.Template}, {"number_column", b.NumberColumn},
		{"send_at", b.SendAt}, {"source", b.Source}} {
		if f[1] != "" {
			o.set(f[0], f[1])
		}
	}
	if b.Receipt {
		o.receipt = "true"
	}
}

// upload is a batch file spooled to a temporary file.
type upload struct {
	path   string
	name   string
	format sheet.Format // a hint from the name or type: the content decides
}

func (s *Server) createBatch(c *caller, w http.ResponseWriter, r *http.Request) {
	if s.cfg.Gateway == nil || s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return
	}
	slot, err := s.batches().Reserve(c.ent.Code)
	if err != nil {
		if !errors.Is(err, batch.ErrTooManyJobs) {
			writeError(w, http.StatusServiceUnavailable, "unavailable", strings.TrimPrefix(err.Error(), "batch: "))
			return
		}
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "too_many_jobs", strings.TrimPrefix(err.Error(), batch.ErrTooManyJobs.Error()+": "))
		return
	}
	started := false
	defer func() {
		if !started {
			slot.Release()
		}
	}()

	var opts batchOptions
	for name, vs := range r.URL.Query() {
		if len(vs) > 0 && !opts.set(name, vs[0]) && name != "format" {
			writeInvalid(w, name, "不支持的参数 "+strconv.Quote(name), "unknown parameter "+strconv.Quote(name))
			return
		}
	}
	// The file: uploaded with the request (multipart or raw body), or
	// staged before (a JSON body or a multipart field "upload").
	var up *upload
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var req StagedBatchRequest
		if !decodeBody(w, r, &req) {
			return
		}
		req.set(&opts)
		if opts.upload == "" {
			// As before staged uploads: JSON is no file format.
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
				`a JSON body sends a staged upload ({"upload": "upl_…", "template": …}); a file is sent as multipart/form-data, text/csv or `+XLSXContentType)
			return
		}
	} else {
		var ok bool
		if up, ok = s.spoolUpload(w, r, MaxBatchBody, &opts); !ok {
			return
		}
		if opts.upload != "" && up.path != "" {
			_ = os.Remove(up.path)
			writeInvalid(w, "upload", "上传文件和已暂存的文件（upload）只能二选一", "upload: give a file or a staged upload, not both")
			return
		}
	}
	if opts.upload != "" {
		if opts.template == "" {
			writeInvalid(w, "template", "使用已暂存的文件时须填写短信模板（这是模板发送）", "template: required with a staged upload (it is a templated send)")
			return
		}
		su := s.jobs.staged.take(opts.upload, visibleTo(c)) // consumed: a second use is 404
		if su == nil {
			writeUploadNotFound(w)
			return
		}
		up = su.up
		defer func() {
			if !started { // the request failed: the upload stays staged, to be sent corrected
				s.jobs.staged.restore(su)
			}
		}()
	} else {
		defer func() {
			if !started {
				_ = os.Remove(up.path)
			}
		}()
	}

	now := time.Now()
	req := gateway.SendRequest{Ingress: "batch", Source: opts.source}
	switch {
	case checkSource(opts.source) != nil:
		writeInvalid(w, "source", fmt.Sprintf("发送号码须为最多 %d 位数字", maxSourceLen), checkSource(opts.source).Error())
		return
	case opts.receipt != "" && opts.receipt != "true" && opts.receipt != "false":
		writeInvalid(w, "receipt", "状态报告（receipt）须为 true 或 false", "receipt: true or false")
		return
	case utf8Len(opts.template) > maxTemplateLen:
		writeInvalid(w, "template", fmt.Sprintf("短信模板最多 %d 个字", maxTemplateLen), fmt.Sprintf("template: at most %d characters", maxTemplateLen))
		return
	case opts.template == "" && opts.numberColumn != "":
		writeInvalid(w, "number_column", "号码列（number_column）只用于模板发送", "number_column: only with a template")
		return
	}
	if opts.receipt == "true" {
		req.RegisteredDelivery = 1
	}
	sendAt, ok := parseTimeField(w, "send_at", opts.sendAt, now)
	if !ok {
		return
	}
	req.SendAt = sendAt

	release, ok := s.importSlot(w, c.ent.Code)
	if !ok {
		return
	}
	f, err := os.Open(up.path)
	if err != nil {
		release()
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	rows, err := batch.OpenRows(f, batch.RowsOptions{Format: up.format, Template: opts.template,
		NumberColumn: opts.numberColumn, MaxBytes: MaxBatchBody, TempDir: s.jobs.tmpDir})
	release() // an XLSX file is unpacked and checked; a CSV file streams
	if err != nil {
		writeRowsError(w, err)
		return
	}
	kind := batch.KindBatch
	if opts.template != "" {
		kind = batch.KindTemplate
	}
	path := up.path
	if s.cfg.Store != nil {
		// The job resumes after a restart from this file: durable before
		// the job's record says so.
		if err := syncFile(path); err != nil {
			rows.Close()
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the upload could not be stored: "+err.Error())
			return
		}
	}
	started = true // the slot and the file are the job's, whatever Start says
	j, err := slot.Start(batch.JobSpec{Owner: c.user.SystemID, Account: c.acct, Kind: kind, File: up.name, Request: req,
		Path: path, Rows: batch.RowsOptions{Format: up.format, Template: opts.template, NumberColumn: opts.numberColumn},
		Finally: func() { _ = os.Remove(path) }}, rows)
	if err != nil {
		_ = os.Remove(path)
		writeError(w, http.StatusServiceUnavailable, "unavailable", strings.TrimPrefix(err.Error(), "batch: "))
		return
	}
	w.Header().Set("Location", "/v1/batches/"+j.ID())
	writeJSON(w, http.StatusAccepted, BatchCreated{JobID: j.ID()})
}

func utf8Len(s string) int { return len([]rune(s)) }

// spoolUpload copies the uploaded file to a temporary file: a multipart
// upload's "file" part (its other fields are options), or the raw body. It
// writes the error answer itself.
func (s *Server) spoolUpload(w http.ResponseWriter, r *http.Request, limit int64, opts *batchOptions) (*upload, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	up := &upload{}
	fail := func(code int, reason, msg string) (*upload, bool) {
		if up.path != "" {
			_ = os.Remove(up.path)
		}
		writeError(w, code, reason, msg)
		return nil, false
	}
	// invalid: 400 invalid about field, with its rule in Chinese.
	invalid := func(field, zh, msg string) (*upload, bool) {
		if up.path != "" {
			_ = os.Remove(up.path)
		}
		writeInvalid(w, field, zh, msg)
		return nil, false
	}
	// noFile: the form's file is missing or empty, as a person leaves it
	// (a file input left empty sends an empty part), said in Chinese too.
	noFile := func(zh, msg string) (*upload, bool) { return invalid("file", zh, msg) }
	readFail := func(what string, err error) (*upload, bool) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fail(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		}
		field := ""
		if what == "upload" {
			field = "file"
		}
		return invalid(field, "上传的内容不完整或无法读取：请重新上传", what+": "+err.Error())
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr, err := r.MultipartReader()
		if err != nil {
			return invalid("", "请求内容不是有效的 multipart/form-data 表单", "multipart body: "+err.Error())
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return readFail("multipart body", err)
			}
			name := p.FormName()
			if name == "file" || p.FileName() != "" {
				if up.path != "" {
					return noFile("一次只能上传一个文件", "one file per batch")
				}
				// Kept by the job or the staged upload and shown on every
				// read: Go takes names of megabytes.
				up.name = batch.Clip(p.FileName(), batch.MaxFileName)
				if err := s.spoolTo(up, p); err != nil {
					return readFail("upload", err)
				}
				if f, ok := sheet.FormatOf(up.name); ok && f != sheet.XLS {
					up.format = f
				} else if f, ok := sheet.FormatOfType(p.Header.Get("Content-Type")); ok {
					up.format = f
				}
				continue
			}
			v, err := io.ReadAll(io.LimitReader(p, maxFormField+1))
			if err != nil {
				return readFail("multipart body", err)
			}
			if len(v) > maxFormField {
				return invalid(name, fmt.Sprintf("表单字段 %s 太长（最多 %d 字节）", name, maxFormField), "field "+name+": too long")
			}
			if !opts.set(name, string(v)) {
				return invalid(name, "不支持的表单字段 "+strconv.Quote(name), "unknown field "+strconv.Quote(name))
			}
		}
		if up.path == "" && opts.upload != "" {
			return up, true // a staged upload instead of a file (createBatch)
		}
		if up.path == "" {
			return noFile("请选择文件", `no file: send it as the multipart field "file"`)
		}
	} else {
		switch f := r.URL.Query().Get("format"); {
		case f != "":
			switch strings.ToLower(f) {
			case "csv":
				up.format = sheet.CSV
			case "xlsx":
				up.format = sheet.XLSX
			default:
				return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("format %q: want csv or xlsx", f))
			}
		case mt == "application/octet-stream":
		default:
			f, ok := sheet.FormatOfType(ct)
			if !ok {
				return fail(http.StatusUnsupportedMediaType, "unsupported_media_type",
					fmt.Sprintf("Content-Type %q: want text/csv, %s or multipart/form-data (or ?format=csv|xlsx)", ct, XLSXContentType))
			}
			up.format = f
		}
		if err := s.spoolTo(up, r.Body); err != nil {
			return readFail("upload", err)
		}
	}
	// Refuse the old XLS format whatever the name and type say (a zip
	// archive, sheet reads as XLSX whatever they say).
	head := make([]byte, 8)
	if f, err := os.Open(up.path); err == nil {
		n, _ := io.ReadFull(f, head)
		head = head[:n]
		_ = f.Close()
	}
	switch {
	case len(head) == 0:
		return noFile("没有选择文件，或文件是空的", "the file is empty")
	case sheet.Sniff(head) == sheet.XLS:
		return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", "XLS (Excel 97–2003) files are not supported: save the sheet as .xlsx or .csv")
	}
	return up, true
}

// syncFile makes the file at path and its name durable.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if e := f.Close(); err == nil {
		err = e
	}
	if err != nil {
		return err
	}
	return queue.SyncDir(filepath.Dir(path))
}

// spoolTo copies r to a new temporary file and records its path in up.
func (s *Server) spoolTo(up *upload, r io.Reader) error {
	f, err := os.CreateTemp(s.jobs.tmpDir, "qxtd-batch-*")
	if err != nil {
		return err
	}
	up.path = f.Name()
	_, err = io.Copy(f, r)
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

func (s *Server) showBatch(c *caller, w http.ResponseWriter, r *http.Request) {
	j := s.visibleJob(c, r.PathValue("id"))
	if j == nil {
		writeJobNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, j.Progress(true))
}

func (s *Server) listBatches(c *caller, w http.ResponseWriter, _ *http.Request) {
	out := BatchJobList{Jobs: []BatchJob{}}
	all := s.batches().List()
	for i := len(all) - 1; i >= 0; i-- { // newest first
		j := all[i]
		if j.Enterprise() == c.ent.Code && (c.admin() || j.Owner() == c.user.SystemID) {
			out.Jobs = append(out.Jobs, j.Progress(false))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) cancelBatch(c *caller, w http.ResponseWriter, r *http.Request) {
	j := s.visibleJob(c, r.PathValue("id"))
	if j == nil {
		writeJobNotFound(w)
		return
	}
	st, err := j.Cancel()
	if err != nil {
		// Not stored: a restart would resume the job, so it is not
		// cancelled, and the answer says so.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(),
			"the cancel could not be stored (the disk failed): the job runs on; try again")
		return
	}
	switch st {
	case JobDone, JobFailed:
		writeError(w, http.StatusConflict, "finished", "the job has already finished ("+st+")")
		return
	case JobRunning:
		t := time.NewTimer(cancelWait)
		select {
		case <-j.Done():
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	writeJSON(w, http.StatusOK, j.Progress(true))
}

// --- downloadable templates ---

// templateFile is a downloadable template: a header and example rows.
type templateFile struct {
	name   string // file name without the extension
	sheet  string
	header []string
	rows   [][]string
	widths []float64
}

var batchTemplate = templateFile{
	name:   "batch",
	sheet:  "批量发送",
	header: []string{"号码", "内容"},
	rows: [][]string{
		{"13800138000", "张先生您好，您的快递已到公司前台，请凭取件码 1234 领取。"},
		{"13800138001", "李女士您好，明天上午九点的会议改到三楼会议室。"},
	},
	widths: []float64{16, 60},
}

func (t templateFile) writeCSV(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.name+`.csv"`)
	var b strings.Builder
	b.WriteString("\ufeff") // so that Excel reads it as UTF-8
	for _, rec := range append([][]string{t.header}, t.rows...) {
		for i, v := range rec {
			if i > 0 {
				b.WriteByte(',')
			}
			if strings.ContainsAny(v, ",\"\r\n") {
				v = `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
			}
			b.WriteString(v)
		}
		b.WriteString("\r\n")
	}
	_, _ = io.WriteString(w, b.String())
}

func (t templateFile) writeXLSX(w http.ResponseWriter) {
	f := excelize.NewFile()
	defer f.Close()
	sheet := f.GetSheetName(0)
	if err := f.SetSheetName(sheet, t.sheet); err == nil {
		sheet = t.sheet
	}
	// Text cells: numbers must not turn into 1.38E+10.
	style, _ := f.NewStyle(&excelize.Style{NumFmt: 49})
	for i, wd := range t.widths {
		col, _ := excelize.ColumnNumberToName(i + 1)
		_ = f.SetColWidth(sheet, col, col, wd)
		_ = f.SetColStyle(sheet, col, style)
	}
	for r, rec := range append([][]string{t.header}, t.rows...) {
		for c, v := range rec {
			cell, _ := excelize.CoordinatesToCellName(c+1, r+1)
			_ = f.SetCellStr(sheet, cell, v)
		}
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", XLSXContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.name+`.xlsx"`)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) batchTemplateCSV(_ *caller, w http.ResponseWriter, _ *http.Request) {
	batchTemplate.writeCSV(w)
}

func (s *Server) batchTemplateXLSX(_ *caller, w http.ResponseWriter, _ *http.Request) {
	batchTemplate.writeXLSX(w)
}

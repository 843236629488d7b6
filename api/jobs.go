package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xuri/excelize/v2"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// Batch and templated sends (FAQ 5, 10). POST /v1/batches takes a CSV or
// XLSX file — a multipart upload (field "file") or the raw body — and
// answers 202 with a job id at once; the rows are sent by a job in the
// background, whose progress GET /v1/batches/{id} shows and DELETE cancels.
//
//   - Batch send: column A the number, column B the text, one SMS per row.
//     A first row whose column A has no digit is a header.
//   - Templated send (template=…): the first row is a header naming the
//     columns; number_column names the number's column and each {column} of
//     the template is filled from the row. A field that names no column is
//     refused (400 unknown_field) before anything is sent.
//
// Every data row is accounted for: accepted (stored durably, listed in the
// outbox like any message, with its id), refused with its row number and
// reason (an empty number, an empty text or field, or the gateway's
// per-recipient refusal: not_whitelisted, scope_*, invalid_number,
// quota_exceeded, too_long …), or — when the job was cancelled or failed —
// unsent. Rows with no content at all are not rows.
//
// Rows stream through in bounded memory: CSV is read record by record, XLSX
// through excelize's row iterator (its sheets unpacked to temporary files);
// at most batchInFlight rows are handed to the gateway and not yet answered.
// Consecutive rows with the same text go to the gateway in one call (up to
// batchChunk recipients); other rows one call each, many calls in flight so
// that the store's group commit takes them together. Each call is one
// submission for the enterprise's rate limit (TPS), as a submit_sm is: jobs
// pace themselves at the enterprise's rate, shared by its jobs.
//
// Job records live in memory: a restart loses them (and a running job stops
// where it was). What a job accepted is durable and is listed in the sent or
// scheduled outbox (GET /v1/messages). Finished jobs are kept for jobKeep, at
// most jobsKeptPerEnterprise per enterprise and jobsKept in all (each lists
// at most MaxJobErrors row errors: memory stays bounded).
//
// Visibility: as messages — an enterprise admin sees every job of its
// enterprise, a user its own; anything else is 404 not_found.

// Limits of batch jobs.
const (
	MaxBatchBody          = 50 << 20 // an uploaded batch file
	MaxJobsPerEnterprise  = 2        // running jobs of one enterprise
	MaxJobs               = 8        // running jobs in all
	MaxJobErrors          = 1000     // row errors listed in a job's progress (error_count counts all)
	maxTemplateLen        = 2000     // characters of a template
	maxFormField          = 16 << 10 // bytes of a multipart field other than the file
	jobsKeptPerEnterprise = 20       // finished jobs kept per enterprise
	jobsKept              = 1000     // finished jobs kept in all
	jobKeep               = 24 * time.Hour
	batchInFlight         = 1024 // rows handed to the gateway and not yet answered, per job
	batchChunk            = 64   // most recipients of one gateway call (rows with the same text)
	cancelWait            = 10 * time.Second
	rateBackoffMin        = 20 * time.Millisecond
	rateBackoffMax        = time.Second
)

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"
	JobCancelled = "cancelled"
	JobFailed    = "failed"
)

// Row error reasons of batch jobs besides the gateway's refusals.
const (
	reasonEmptyText  = "empty_text"
	reasonEmptyField = "empty_field"
)

// BatchCreated is the answer of POST /v1/batches (202).
type BatchCreated struct {
	JobID string `json:"job_id"`
}

// BatchJob is a job's progress (GET /v1/batches/{id}) and an item of
// GET /v1/batches (without errors).
type BatchJob struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`    // batch | template
	Account    string     `json:"account"` // the user who started it
	File       string     `json:"file,omitempty"`
	State      string     `json:"state"` // running | done | cancelled | failed
	RowsRead   int        `json:"rows_read"`
	Accepted   int        `json:"accepted"`
	Refused    int        `json:"refused"`
	Unsent     int        `json:"unsent"` // read but not sent: the job was cancelled or failed first
	ErrorCount int        `json:"error_count"`
	Errors     []RowError `json:"errors,omitempty"` // the first MaxJobErrors, by row
	Reason     string     `json:"reason,omitempty"` // why a job failed
	Message    string     `json:"message,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
}

// BatchJobList is the answer of GET /v1/batches.
type BatchJobList struct {
	Jobs []BatchJob `json:"jobs"`
}

// RowError is a refused row of a batch file or a contact import.
type RowError struct {
	Row     int    `json:"row"`    // the line of a CSV file, the row of a sheet
	Number  string `json:"number"` // as in the file
	Reason  string `json:"reason"`
	Code    string `json:"code,omitempty"` // the SMPP command_status of a gateway refusal
	Message string `json:"message"`
}

// jobState is the batch jobs of a Server (a field of Server).
type jobState struct {
	mu      sync.Mutex
	byID    map[string]*job
	all     []*job // in creation order
	running int
	perEnt  map[string]int
	pacers  map[string]*rate.Limiter
	closed  bool
	ctx     context.Context // cancelled by Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
	tmpDir  string // "" = os.TempDir()
	maxEnt  int
	maxAll  int
}

func (js *jobState) initLocked() {
	if js.byID == nil {
		js.byID = map[string]*job{}
		js.perEnt = map[string]int{}
		js.pacers = map[string]*rate.Limiter{}
		js.ctx, js.stop = context.WithCancel(context.Background())
		if js.maxEnt == 0 {
			js.maxEnt = MaxJobsPerEnterprise
		}
		if js.maxAll == 0 {
			js.maxAll = MaxJobs
		}
	}
}

var errTooManyJobs = errors.New("too many jobs")

// reserve takes a running slot for a job of ent.
func (js *jobState) reserve(ent string) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.initLocked()
	switch {
	case js.closed:
		return errors.New("the daemon is stopping")
	case js.perEnt[ent] >= js.maxEnt:
		return fmt.Errorf("%w: %d batch jobs of the enterprise are running (at most %d); wait for one to finish", errTooManyJobs, js.perEnt[ent], js.maxEnt)
	case js.running >= js.maxAll:
		return fmt.Errorf("%w: %d batch jobs are running (at most %d); retry later", errTooManyJobs, js.running, js.maxAll)
	}
	js.perEnt[ent]++
	js.running++
	js.wg.Add(1)
	return nil
}

func (js *jobState) release(ent string) {
	js.mu.Lock()
	js.perEnt[ent]--
	if js.perEnt[ent] <= 0 {
		delete(js.perEnt, ent)
	}
	js.running--
	js.mu.Unlock()
	js.wg.Done()
}

// add registers a new job and forgets old finished ones.
func (js *jobState) add(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.byID[j.id] = j
	js.all = append(js.all, j)
	now := time.Now()
	kept := map[string]int{}
	for i := len(js.all) - 1; i >= 0; i-- {
		o := js.all[i]
		if !o.finished() {
			continue
		}
		kept[o.ent]++
		if kept[o.ent] > jobsKeptPerEnterprise || now.Sub(o.finishedAt()) > jobKeep {
			delete(js.byID, o.id)
			js.all[i] = nil
		}
	}
	js.all = slices.DeleteFunc(js.all, func(o *job) bool { return o == nil })
	for i := 0; len(js.all) > jobsKept && i < len(js.all); {
		if o := js.all[i]; o.finished() {
			delete(js.byID, o.id)
			js.all = slices.Delete(js.all, i, i+1)
			continue
		}
		i++
	}
}

func (js *jobState) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.byID[id]
}

func (js *jobState) list() []*job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return slices.Clone(js.all)
}

// pacer is the enterprise's submission pace for its jobs.
func (js *jobState) pacer(ent string, tps int) *rate.Limiter {
	tps = max(tps, 1)
	js.mu.Lock()
	defer js.mu.Unlock()
	l := js.pacers[ent]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(tps), max(1, tps/10))
		js.pacers[ent] = l
	} else if l.Limit() != rate.Limit(tps) {
		l.SetLimit(rate.Limit(tps))
		l.SetBurst(max(1, tps/10))
	}
	return l
}

// Close cancels the running batch jobs and waits until they stop (the
// gateway calls in flight are answered first, so every row is accounted
// for). Call it before stopping the gateway; the API takes no new job after.
func (s *Server) Close() {
	js := &s.jobs
	js.mu.Lock()
	js.initLocked()
	js.closed = true
	js.stop()
	js.mu.Unlock()
	js.wg.Wait()
}

// --- a job ---

type job struct {
	id, ent, owner, kind, file string
	created                    time.Time
	cancel                     context.CancelFunc
	done                       chan struct{}

	mu         sync.Mutex
	state      string
	ended      time.Time
	rowsRead   int
	accepted   int
	refused    int
	unsent     int
	errCount   int
	errs       []RowError
	failReason string
	failMsg    string
	userCancel bool
}

func (j *job) finished() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state != JobRunning
}

func (j *job) finishedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

func (j *job) read() {
	j.mu.Lock()
	j.rowsRead++
	j.mu.Unlock()
}

func (j *job) ok(n int) {
	j.mu.Lock()
	j.accepted += n
	j.mu.Unlock()
}

func (j *job) notSent(n int) {
	j.mu.Lock()
	j.unsent += n
	j.mu.Unlock()
}

func (j *job) rowError(e RowError) {
	j.mu.Lock()
	j.refused++
	j.errCount++
	if len(j.errs) < MaxJobErrors {
		j.errs = append(j.errs, e)
	}
	j.mu.Unlock()
}

// fail records the first fatal error and stops the job.
func (j *job) fail(reason, msg string) {
	j.mu.Lock()
	if j.failReason == "" {
		j.failReason, j.failMsg = reason, msg
	}
	j.mu.Unlock()
	j.cancel()
}

func (j *job) out(withErrors bool) BatchJob {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := BatchJob{ID: j.id, Kind: j.kind, Account: j.owner, File: j.file, State: j.state,
		RowsRead: j.rowsRead, Accepted: j.accepted, Refused: j.refused, Unsent: j.unsent,
		ErrorCount: j.errCount, Reason: j.failReason, Message: j.failMsg,
		CreatedAt: j.created, FinishedAt: j.ended}
	if withErrors && len(j.errs) > 0 {
		b.Errors = slices.Clone(j.errs)
		slices.SortStableFunc(b.Errors, func(x, y RowError) int { return cmp.Compare(x.Row, y.Row) })
	}
	return b
}

// visibleJob is job id if the caller may see it.
func (s *Server) visibleJob(c *caller, id string) *job {
	j := s.jobs.get(id)
	if j == nil || j.ent != c.ent.Code || !c.admin() && j.owner != c.user.SystemID {
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
	default:
		return false
	}
	return true
}

// upload is a batch file spooled to a temporary file.
type upload struct {
	path   string
	name   string
	format policy.ImportFormat
}

func (s *Server) createBatch(c *caller, w http.ResponseWriter, r *http.Request) {
	if s.cfg.Gateway == nil || s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return
	}
	if err := s.jobs.reserve(c.ent.Code); err != nil {
		if !errors.Is(err, errTooManyJobs) {
			writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, "too_many_jobs", err.Error())
		return
	}
	started := false
	defer func() {
		if !started {
			s.jobs.release(c.ent.Code)
		}
	}()

	var opts batchOptions
	for name, vs := range r.URL.Query() {
		if len(vs) > 0 && !opts.set(name, vs[0]) && name != "format" {
			writeError(w, http.StatusBadRequest, "invalid", "unknown parameter "+strconv.Quote(name))
			return
		}
	}
	up, ok := s.spoolUpload(w, r, MaxBatchBody, &opts)
	if !ok {
		return
	}
	defer func() {
		if !started {
			_ = os.Remove(up.path)
		}
	}()

	now := time.Now()
	req := gateway.SendRequest{Ingress: "batch", Source: opts.source}
	switch {
	case len(opts.source) > maxSourceLen || strings.Trim(opts.source, "0123456789") != "":
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("source: up to %d digits", maxSourceLen))
		return
	case opts.receipt != "" && opts.receipt != "true" && opts.receipt != "false":
		writeError(w, http.StatusBadRequest, "invalid", "receipt: true or false")
		return
	case utf8Len(opts.template) > maxTemplateLen:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("template: at most %d characters", maxTemplateLen))
		return
	case opts.template == "" && opts.numberColumn != "":
		writeError(w, http.StatusBadRequest, "invalid", "number_column: only with a template")
		return
	}
	if opts.receipt == "true" {
		req.RegisteredDelivery = 1
	}
	if req.SendAt, ok = parseTimeField(w, "send_at", opts.sendAt, now); !ok {
		return
	}

	f, err := os.Open(up.path)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	sr, err := sheet.Open(f, sheet.Options{Format: up.format, Limits: sheet.Limits{MaxBytes: MaxBatchBody}, TempDir: s.jobs.tmpDir})
	if err != nil {
		_ = f.Close()
		writeError(w, http.StatusBadRequest, "invalid", "the file cannot be read: "+err.Error())
		return
	}
	src := &rowSource{sr: sr, file: f}
	if sr.Format() == sheet.XLSX { // read whole by Open
		_ = f.Close()
		src.file = nil
	}
	var rs rowSpec
	if opts.template != "" {
		rs, err = src.templateSpec(opts.template, opts.numberColumn)
	} else {
		rs, err = src.batchSpec()
	}
	if err != nil {
		src.close()
		var fe *fieldError
		if errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, fe.reason, fe.msg)
		} else {
			writeError(w, http.StatusBadRequest, "invalid", err.Error())
		}
		return
	}

	ctx, cancel := context.WithCancel(s.jobs.ctx)
	j := &job{id: newJobID(), ent: c.ent.Code, owner: c.user.SystemID, kind: "batch", file: up.name,
		created: now.UTC(), cancel: cancel, done: make(chan struct{}), state: JobRunning}
	if opts.template != "" {
		j.kind = "template"
	}
	s.jobs.add(j)
	started = true
	go func() {
		defer s.jobs.release(c.ent.Code)
		defer os.Remove(up.path)
		defer src.close()
		s.runJob(ctx, j, c.acct, req, src, rs)
	}()
	w.Header().Set("Location", "/v1/batches/"+j.id)
	writeJSON(w, http.StatusAccepted, BatchCreated{JobID: j.id})
}

func utf8Len(s string) int { return len([]rune(s)) }

func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>1|1<<40, 10)
}

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
	readFail := func(what string, err error) (*upload, bool) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fail(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		}
		return fail(http.StatusBadRequest, "invalid", what+": "+err.Error())
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr, err := r.MultipartReader()
		if err != nil {
			return fail(http.StatusBadRequest, "invalid", "multipart body: "+err.Error())
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
					return fail(http.StatusBadRequest, "invalid", "one file per batch")
				}
				up.name = p.FileName()
				if err := s.spoolTo(up, p); err != nil {
					return readFail("upload", err)
				}
				if f, ok := policy.FormatOf(up.name); ok {
					up.format = f
				} else if f, ok := formatOfType(p.Header.Get("Content-Type")); ok {
					up.format = f
				}
				continue
			}
			v, err := io.ReadAll(io.LimitReader(p, maxFormField+1))
			if err != nil {
				return readFail("multipart body", err)
			}
			if len(v) > maxFormField {
				return fail(http.StatusBadRequest, "invalid", "field "+name+": too long")
			}
			if !opts.set(name, string(v)) {
				return fail(http.StatusBadRequest, "invalid", "unknown field "+strconv.Quote(name))
			}
		}
		if up.path == "" {
			return fail(http.StatusBadRequest, "invalid", `no file: send it as the multipart field "file"`)
		}
	} else {
		switch f := r.URL.Query().Get("format"); {
		case f != "":
			switch strings.ToLower(f) {
			case "csv":
				up.format = policy.FormatCSV
			case "xlsx":
				up.format = policy.FormatXLSX
			default:
				return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("format %q: want csv or xlsx", f))
			}
		case mt == "application/octet-stream":
		default:
			f, ok := formatOfType(ct)
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
	// Sniff what the name and type did not tell; refuse the old XLS format.
	head := make([]byte, 8)
	if f, err := os.Open(up.path); err == nil {
		n, _ := io.ReadFull(f, head)
		head = head[:n]
		_ = f.Close()
	}
	switch {
	case len(head) == 0:
		return fail(http.StatusBadRequest, "invalid", "the file is empty")
	case bytes.HasPrefix(head, []byte{0xD0, 0xCF, 0x11, 0xE0}):
		return fail(http.StatusUnsupportedMediaType, "unsupported_media_type", "XLS (Excel 97–2003) files are not supported: save the sheet as .xlsx or .csv")
	case bytes.HasPrefix(head, []byte("PK\x03\x04")): // a zip archive is never CSV, whatever its name
		up.format = policy.FormatXLSX
	case up.format == 0:
		up.format = policy.FormatCSV
	}
	return up, true
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

func formatOfType(ct string) (policy.ImportFormat, bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "text/csv", "text/plain", "application/csv", "text/comma-separated-values":
		return policy.FormatCSV, true
	case XLSXContentType:
		return policy.FormatXLSX, true
	}
	return 0, false
}

func (s *Server) showBatch(c *caller, w http.ResponseWriter, r *http.Request) {
	j := s.visibleJob(c, r.PathValue("id"))
	if j == nil {
		writeJobNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, j.out(true))
}

func (s *Server) listBatches(c *caller, w http.ResponseWriter, _ *http.Request) {
	out := BatchJobList{Jobs: []BatchJob{}}
	all := s.jobs.list()
	for i := len(all) - 1; i >= 0; i-- { // newest first
		j := all[i]
		if j.ent == c.ent.Code && (c.admin() || j.owner == c.user.SystemID) {
			out.Jobs = append(out.Jobs, j.out(false))
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
	j.mu.Lock()
	st := j.state
	if st == JobRunning {
		j.userCancel = true
	}
	j.mu.Unlock()
	switch st {
	case JobDone, JobFailed:
		writeError(w, http.StatusConflict, "finished", "the job has already finished ("+st+")")
		return
	case JobRunning:
		j.cancel()
		t := time.NewTimer(cancelWait)
		select {
		case <-j.done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	writeJSON(w, http.StatusOK, j.out(true))
}

// --- reading rows ---

// rowSource is an open batch file.
type rowSource struct {
	sr      *sheet.Reader
	file    *os.File // CSV: the spooled file being read
	pending *pendingRow
}

type pendingRow struct {
	n     int
	cells []string
}

func (rs *rowSource) close() {
	_ = rs.sr.Close()
	if rs.file != nil {
		_ = rs.file.Close()
	}
}

// readAhead reads the first data row (to be returned by next), or fails
// with msg when there is none.
func (rs *rowSource) readAhead(msg string) error {
	row, err := rs.sr.Next()
	if err == io.EOF {
		return errors.New(msg)
	}
	if err != nil {
		return err
	}
	rs.pending = &pendingRow{row.N, slices.Clone(row.Cells)}
	return nil
}

// next returns the next row, first the one read ahead by the spec.
func (rs *rowSource) next() (int, []string, error) {
	if p := rs.pending; p != nil {
		rs.pending = nil
		return p.n, p.cells, nil
	}
	row, err := rs.sr.Next()
	return row.N, row.Cells, err
}

// rowSpec turns a row's cells into a number and a text, or a row error.
type rowSpec func(cells []string) (number, text, reason, msg string)

func cellAt(cells []string, i int) string {
	if i < len(cells) {
		return cells[i]
	}
	return ""
}

// fieldError is a request error found in the file's header (400).
type fieldError struct{ reason, msg string }

func (e *fieldError) Error() string { return e.msg }

// batchSpec: column A the number, column B the text; a first row whose
// column A has no digit is a header.
func (rs *rowSource) batchSpec() (rowSpec, error) {
	row, err := rs.sr.Next()
	n, cells := row.N, row.Cells
	if err == io.EOF {
		return nil, errors.New("the file has no rows")
	}
	if err != nil {
		return nil, err
	}
	if a := strings.TrimSpace(cellAt(cells, 0)); a != "" && !strings.ContainsAny(a, "0123456789") {
		if err := rs.readAhead("the file has no data row below its header"); err != nil {
			return nil, err
		}
	} else {
		rs.pending = &pendingRow{n, slices.Clone(cells)}
	}
	return func(cells []string) (string, string, string, string) {
		number := sheet.NumericCell(strings.TrimSpace(cellAt(cells, 0)))
		text := strings.TrimSpace(cellAt(cells, 1))
		switch {
		case number == "":
			return "", "", policy.ReasonInvalidNumber.String(), "empty number (column A)"
		case text == "":
			return number, "", reasonEmptyText, "empty text (column B)"
		}
		return number, text, "", ""
	}, nil
}

// numberHeaders are the header names taken as the number column when the
// request names none.
var numberHeaders = []string{"号码", "手机号", "手机号码", "手机", "电话", "number", "mobile", "phone"}

// templateSpec reads the header row and compiles the template against it.
func (rs *rowSource) templateSpec(tmpl, numberColumn string) (rowSpec, error) {
	row, err := rs.sr.Next()
	cells := row.Cells
	if err == io.EOF {
		return nil, errors.New("the file has no header row")
	}
	if err != nil {
		return nil, err
	}
	cols := map[string]int{}
	dup := map[string]bool{}
	var names []string
	for i, h := range cells {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, ok := cols[h]; ok {
			dup[h] = true
			continue
		}
		cols[h] = i
		names = append(names, h)
	}
	known := func() string { return "the header has " + strings.Join(names, ", ") }
	numCol := -1
	if numberColumn != "" {
		i, ok := cols[strings.TrimSpace(numberColumn)]
		if !ok {
			return nil, &fieldError{"unknown_field", fmt.Sprintf("number_column %q is not a column: %s", numberColumn, known())}
		}
		numCol = i
	} else {
		for _, h := range names {
			if slices.ContainsFunc(numberHeaders, func(n string) bool { return strings.EqualFold(n, h) }) {
				numCol = cols[h]
				break
			}
		}
		if numCol < 0 {
			return nil, &fieldError{"invalid", "number_column is required: no column is headed 号码 or 手机号; " + known()}
		}
	}
	parts, err := compileTemplate(tmpl)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if !p.field {
			continue
		}
		c, ok := cols[p.text]
		if !ok {
			return nil, &fieldError{"unknown_field", fmt.Sprintf("template field {%s} is not a column: %s", p.text, known())}
		}
		if dup[p.text] {
			return nil, &fieldError{"invalid", fmt.Sprintf("template field {%s}: two columns have that header", p.text)}
		}
		parts[i].col = c
	}
	numName := cellAt(cells, numCol)
	if err := rs.readAhead("the file has no data row below its header"); err != nil {
		return nil, err
	}
	return func(cells []string) (string, string, string, string) {
		number := sheet.NumericCell(strings.TrimSpace(cellAt(cells, numCol)))
		if number == "" {
			return "", "", policy.ReasonInvalidNumber.String(), "empty number (column " + strings.TrimSpace(numName) + ")"
		}
		var b strings.Builder
		for _, p := range parts {
			if !p.field {
				b.WriteString(p.text)
				continue
			}
			v := strings.TrimSpace(cellAt(cells, p.col))
			if v == "" {
				return number, "", reasonEmptyField, "empty field {" + p.text + "}"
			}
			b.WriteString(v)
		}
		return number, b.String(), "", ""
	}, nil
}

type tmplPart struct {
	field bool
	text  string // literal text, or the field's column name
	col   int
}

// compileTemplate splits a template into literal text and {column} fields;
// "{{" and "}}" stand for literal braces.
func compileTemplate(t string) ([]tmplPart, error) {
	var parts []tmplPart
	var lit strings.Builder
	fields := 0
	for i := 0; i < len(t); {
		switch {
		case strings.HasPrefix(t[i:], "{{"):
			lit.WriteByte('{')
			i += 2
		case strings.HasPrefix(t[i:], "}}"):
			lit.WriteByte('}')
			i += 2
		case t[i] == '{':
			end := strings.IndexByte(t[i+1:], '}')
			if end < 0 {
				return nil, &fieldError{"invalid", fmt.Sprintf("template: { at byte %d is not closed (write {{ for a brace)", i)}
			}
			name := strings.TrimSpace(t[i+1 : i+1+end])
			if name == "" || strings.ContainsRune(name, '{') {
				return nil, &fieldError{"invalid", fmt.Sprintf("template: empty or malformed field at byte %d", i)}
			}
			if lit.Len() > 0 {
				parts = append(parts, tmplPart{text: lit.String()})
				lit.Reset()
			}
			parts = append(parts, tmplPart{field: true, text: name})
			fields++
			i += end + 2
		case t[i] == '}':
			return nil, &fieldError{"invalid", fmt.Sprintf("template: } at byte %d without { (write }} for a brace)", i)}
		default:
			lit.WriteByte(t[i])
			i++
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{text: lit.String()})
	}
	if fields == 0 {
		return nil, &fieldError{"invalid", "template: no {column} field (for one text to every row, use a batch file or a group send)"}
	}
	return parts, nil
}

// --- running a job ---

type chunkRow struct {
	row    int
	number string
}

type chunk struct {
	text string
	rows []chunkRow
}

func (s *Server) runJob(ctx context.Context, j *job, acct *gateway.Account, req gateway.SendRequest, src *rowSource, spec rowSpec) {
	sem := make(chan struct{}, batchInFlight)
	var wg sync.WaitGroup
	var cur chunk
	flush := func() {
		n := len(cur.rows)
		if n == 0 {
			return
		}
		c := cur
		cur = chunk{}
		for i := range n {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for range i {
					<-sem
				}
				j.notSent(n)
				return
			}
		}
		// Paced here, in file order: calls start in the order of the rows.
		if err := s.jobs.pacer(j.ent, s.cfg.Policy.SubmitTPS(j.ent)).Wait(ctx); err != nil {
			for range n {
				<-sem
			}
			j.notSent(n)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sendChunk(ctx, j, acct, req, c)
			for range n {
				<-sem
			}
		}()
	}
	for ctx.Err() == nil {
		n, cells, err := src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			j.fail("invalid", "the file cannot be read further: "+err.Error())
			break
		}
		j.read()
		number, text, reason, msg := spec(cells)
		if reason != "" {
			j.rowError(RowError{Row: n, Number: number, Reason: reason, Message: msg})
			continue
		}
		if len(cur.rows) > 0 && (cur.text != text || len(cur.rows) == batchChunk) {
			flush()
		}
		cur.text = text
		cur.rows = append(cur.rows, chunkRow{n, number})
	}
	if ctx.Err() != nil {
		j.notSent(len(cur.rows))
		cur = chunk{}
	}
	flush()
	wg.Wait()

	j.mu.Lock()
	switch {
	case j.failReason != "":
		j.state = JobFailed
	case j.userCancel:
		j.state = JobCancelled
	case ctx.Err() != nil:
		j.state, j.failReason, j.failMsg = JobFailed, "shutdown", "the daemon stopped before the job ended"
	default:
		j.state = JobDone
	}
	j.ended = time.Now().UTC()
	j.mu.Unlock()
	j.cancel()
	close(j.done)
}

// sendChunk hands one chunk to the gateway and records its outcome per row.
// A cancelled job still finishes a call once it started: what the gateway
// accepted stays accepted.
func (s *Server) sendChunk(ctx context.Context, j *job, acct *gateway.Account, req gateway.SendRequest, c chunk) {
	req.Text = c.text
	req.Dests = make([]string, len(c.rows))
	for i, r := range c.rows {
		req.Dests[i] = r.number
	}
	backoff := rateBackoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 { // the first attempt was paced by the caller
			if err := s.jobs.pacer(j.ent, s.cfg.Policy.SubmitTPS(j.ent)).Wait(ctx); err != nil {
				j.notSent(len(c.rows))
				return
			}
		}
		res, err := s.cfg.Gateway.Send(context.WithoutCancel(ctx), acct, req)
		if err == nil {
			accepted := 0
			for i, rr := range res {
				if rr.Err == nil {
					accepted++
					continue
				}
				reason, code, msg := refusalOf(rr.Err)
				j.rowError(RowError{Row: c.rows[i].row, Number: c.rows[i].number, Reason: reason, Code: code, Message: msg})
			}
			j.ok(accepted)
			return
		}
		reason, code, msg := refusalOf(err)
		switch {
		case reason == policy.ReasonRateLimited.String():
			// Other traffic of the enterprise took the tokens: wait.
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				j.notSent(len(c.rows))
				return
			}
			backoff = min(2*backoff, rateBackoffMax)
			continue
		case errors.Is(err, gateway.ErrStore):
			j.notSent(len(c.rows))
			j.fail("store_error", "the message store failed: the rows not yet accepted were not sent")
		case reason == policy.ReasonAccountDisabled.String(), reason == policy.ReasonNoSignature.String(), reason == "internal":
			j.notSent(len(c.rows))
			j.fail(reason, msg)
		default: // the text: too_long, bad_text, binary_refused …
			for _, r := range c.rows {
				j.rowError(RowError{Row: r.row, Number: r.number, Reason: reason, Code: code, Message: msg})
			}
		}
		return
	}
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

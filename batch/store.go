package batch

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/sheet"
)

// Store keeps a Runner's jobs (queue.Store): with one, a job's record is
// stored before Start returns, every gateway call stores which rows it
// sent and their outcomes in the transaction of their messages
// (queue.AnswerJob), and an ended job's last record replaces them. A
// restart then resumes a running job after the last row stored (Resume),
// sending none twice, and shows the finished ones until JobKeep.
type Store interface {
	SaveJob(ctx context.Context, id string, record []byte) error
	FinishJob(ctx context.Context, id string, record []byte) error
	DeleteJobs(ctx context.Context, ids []string) error
	Jobs(fn func(id string, record []byte, chunks []*queue.Answer) error) error
	// JobChunk is the answer stored for one chunk, queue.ErrNotFound if
	// none: after a failed commit, whether its rows were taken.
	JobChunk(id string, chunk uint32) (*queue.Answer, error)
	// Probe commits nothing: nil once the store commits again.
	Probe(ctx context.Context) error
}

const jobRecordVersion = 1

// jobRecord is a job as stored: what Resume needs to start it again, and
// once it ended its last progress (Final).
type jobRecord struct {
	V          int                 `json:"v"`
	Enterprise string              `json:"enterprise"`
	Owner      string              `json:"owner"`
	Kind       string              `json:"kind"`
	File       string              `json:"file,omitempty"`
	Path       string              `json:"path,omitempty"` // the spooled file, read again at resume
	Rows       storedRows          `json:"rows"`
	Request    gateway.SendRequest `json:"request"`
	Created    time.Time           `json:"created"`
	// Cancelled: its user cancelled it, stored before the cancel was
	// answered; a restart before its end was stored ends it cancelled
	// rather than resuming it.
	Cancelled bool      `json:"cancelled,omitempty"`
	Final     *Progress `json:"final,omitempty"`
}

// storedRows is what of RowsOptions a job keeps: the file's own; the
// bounds and the unpacking directory are the daemon's at resume.
type storedRows struct {
	Format       sheet.Format `json:"format"` // a hint, as RowsOptions'
	Template     string       `json:"template,omitempty"`
	NumberColumn string       `json:"number_column,omitempty"`
}

// decodeJobRecord reads a stored job record: an error for anything
// jobRecord's encoding did not write.
func decodeJobRecord(b []byte) (*jobRecord, error) {
	var rec jobRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("job record: %w", err)
	}
	switch {
	case rec.V != jobRecordVersion:
		return nil, fmt.Errorf("job record: version %d", rec.V)
	case rec.Enterprise == "" || rec.Owner == "":
		return nil, errors.New("job record: no enterprise or owner")
	case rec.Kind != KindBatch && rec.Kind != KindTemplate:
		return nil, fmt.Errorf("job record: kind %q", rec.Kind)
	case rec.Final == nil && rec.Path == "":
		return nil, errors.New("job record: a running job without its file")
	case rec.Final != nil && !slices.Contains([]string{JobDone, JobCancelled, JobFailed}, rec.Final.State):
		return nil, fmt.Errorf("job record: final state %q", rec.Final.State)
	}
	return &rec, nil
}

// chunkAnswer is a gateway call's rows as stored with its messages.
type chunkAnswer struct {
	Rows     []int
	Accepted int
	Errors   []RowError // the refused rows, clipped as a job keeps them
}

// A chunk's answer is encoded in the store's commit loop, once per
// gateway call (a call a row when the rows' texts differ), so it is
// binary, not JSON (which took a third of what the answer cost there):
//
//	version | rows (uvarint) | first row (uvarint) | each next row − previous (uvarint) | accepted (uvarint) | errors (JSON, only if any)
const chunkVersion = 1

func (ca *chunkAnswer) encode() []byte {
	b := make([]byte, 0, 8+2*len(ca.Rows))
	b = append(b, chunkVersion)
	b = binary.AppendUvarint(b, uint64(len(ca.Rows)))
	prev := 0
	for _, n := range ca.Rows {
		b = binary.AppendUvarint(b, uint64(n-prev))
		prev = n
	}
	b = binary.AppendUvarint(b, uint64(ca.Accepted))
	if len(ca.Errors) > 0 {
		e, _ := json.Marshal(ca.Errors)
		b = append(b, e...)
	}
	return b
}

// decodeChunk reads what encode wrote: an error for anything else, or
// for an answer that does not add up (rows out of order, more accepted
// and refused than rows, a refused row not among them).
func decodeChunk(b []byte) (chunkAnswer, error) {
	var ca chunkAnswer
	fail := func(what string) (chunkAnswer, error) { return chunkAnswer{}, errors.New("chunk answer: " + what) }
	if len(b) == 0 || b[0] != chunkVersion {
		return fail("version")
	}
	b = b[1:]
	next := func() (int, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > math.MaxInt32 {
			return 0, false
		}
		b = b[n:]
		return int(v), true
	}
	rows, ok := next()
	if !ok || rows == 0 || rows > BatchChunk {
		return fail("row count")
	}
	prev := 0
	for i := range rows {
		d, ok := next()
		if !ok || i > 0 && d == 0 || prev+d > math.MaxInt32 {
			return fail("rows")
		}
		prev += d
		ca.Rows = append(ca.Rows, prev)
	}
	if ca.Accepted, ok = next(); !ok || ca.Accepted > rows {
		return fail("accepted")
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &ca.Errors); err != nil {
			return fail("errors: " + err.Error())
		}
	}
	if ca.Accepted+len(ca.Errors) != rows {
		return fail("accepted and refused are not its rows")
	}
	for _, e := range ca.Errors {
		if _, found := slices.BinarySearch(ca.Rows, e.Row); !found {
			return fail("a refused row not among its rows")
		}
	}
	return ca, nil
}

// outcome is a gateway call's results as the job counts them: rows
// accepted, and a RowError for each refused one.
func (c chunk) outcome(res []gateway.SendResult) (accepted int, refused []RowError) {
	for i, rr := range res {
		if rr.Err == nil {
			accepted++
			continue
		}
		reason, code, msg := policy.Describe(rr.Err)
		refused = append(refused, RowError{Row: c.rows[i].row, Number: c.rows[i].number, Reason: reason, Code: code, Message: msg,
			DetailZH: policy.DetailZH(rr.Err)})
	}
	return accepted, refused
}

// answer is the chunk's answer to store with its messages, nil without a
// store.
func (r *Runner) answer(j *Job, c chunk) *gateway.Answer {
	if r.cfg.Store == nil {
		return nil
	}
	return &gateway.Answer{Key: queue.JobChunkKey(j.id, uint32(c.rows[0].row)), Enterprise: j.ent, At: r.cfg.Now(),
		Book: queue.AnswerJob, Sum: func() []byte { return nil },
		Render: func(res []gateway.SendResult) []byte {
			ca := chunkAnswer{Rows: make([]int, 0, len(c.rows)+len(c.readErrs))}
			for _, cr := range c.rows {
				ca.Rows = append(ca.Rows, cr.row)
			}
			for _, e := range c.readErrs {
				ca.Rows = append(ca.Rows, e.Row)
			}
			slices.Sort(ca.Rows) // read since the chunk before: no row twice
			var refused []RowError
			ca.Accepted, refused = c.outcome(res)
			ca.Errors = append(slices.Clone(c.readErrs), refused...)
			for i := range ca.Errors { // kept as the job keeps them
				ca.Errors[i].clip()
			}
			return ca.encode()
		}}
}

// record is j's record; with its progress if it ended.
func (j *Job) record(final bool) []byte {
	rec := j.rec
	rec.V = jobRecordVersion
	if final {
		p := j.progress(true, true)
		rec.Final = &p
		rec.Path = ""
	}
	b, _ := json.Marshal(rec)
	return b
}

// save stores j's record as it starts; an error if it could not be.
func (r *Runner) save(j *Job) error {
	if r.cfg.Store == nil {
		return nil
	}
	return r.cfg.Store.SaveJob(context.Background(), j.id, j.record(false))
}

// finish stores j's last record (its chunks' answers go), then shows the
// state it ended in; false if the record could not be stored, and then
// the job resumes at the next start (ends there, if it was cancelled).
func (r *Runner) finish(j *Job) bool {
	if r.cfg.Store == nil {
		j.publish()
		r.ended(j, j.Progress(false))
		return true
	}
	// Shown under storeMu: a Cancel after the last record is stored sees
	// the job ended, and stores no cancel over that record.
	j.storeMu.Lock()
	defer j.storeMu.Unlock()
	defer j.publish()
	if err := r.cfg.Store.FinishJob(context.Background(), j.id, j.record(true)); err != nil {
		r.cfg.Logger.Error("batch: a job's end could not be stored (it resumes at the next start)", "job", j.id, "err", err)
		return false
	}
	r.ended(j, j.progress(false, true))
	return true
}

// ended counts and logs a job that ended for good, once. A failed job is
// a warning: its unsent rows are the enterprise's to send again, and the
// operator's alert (BatchJobsFailed) sends them here for which job and why.
func (r *Runner) ended(j *Job, p Progress) {
	r.m.jobEnded(p)
	attrs := []any{"job", p.ID, "enterprise", j.ent, "account", p.Account, "state", p.State,
		"accepted", p.Accepted, "refused", p.Refused, "unsent", p.Unsent}
	if p.State == JobFailed {
		r.cfg.Logger.Warn("batch: job failed", append(attrs, "reason", p.Reason, "message", p.Message)...)
		return
	}
	r.cfg.Logger.Info("batch: job ended", attrs...)
}

// saveCancel stores that j's user cancelled it (j.storeMu held). If it
// cannot be, the job is not cancelled (Cancel returns the error): before
// 2026-12-06 it was, all the same, and a crash before its end was stored
// resumed it, though its cancel had been answered.
func (r *Runner) saveCancel(j *Job) error {
	if r.cfg.Store == nil {
		return nil
	}
	j.rec.Cancelled = true
	if err := r.cfg.Store.SaveJob(context.Background(), j.id, j.record(false)); err != nil {
		j.rec.Cancelled = false
		r.cfg.Logger.Warn("batch: a job's cancel could not be stored: it runs on", "job", j.id, "err", err)
		return fmt.Errorf("batch: store the cancel: %w", err)
	}
	return nil
}

// Resume reads the stored jobs: the finished ones are listed again, and
// each running one — stopped by a restart or a crash — starts again after
// the rows its stored gateway calls sent, counting what they accepted and
// refused, with its sender as account gives it now and its file opened
// with opts (MaxBytes, TempDir; the file's own options are stored). A
// running job whose sender or file is gone ends failed. Running jobs take
// their running slots whatever the bounds. Call it once, before any
// Start; it returns the files the running jobs read (so that a caller
// sweeping its spool keeps them).
func (r *Runner) Resume(account func(enterprise, owner string) (*gateway.Account, error), opts RowsOptions) (files []string, err error) {
	if r.cfg.Store == nil {
		return nil, nil
	}
	type stored struct {
		id     string
		rec    *jobRecord
		chunks []chunkAnswer
	}
	var jobs []stored
	var bad []error
	err = r.cfg.Store.Jobs(func(id string, record []byte, chunks []*queue.Answer) error {
		rec, err := decodeJobRecord(record)
		if err != nil {
			bad = append(bad, fmt.Errorf("job %s: %w", id, err))
			return nil
		}
		s := stored{id: id, rec: rec}
		for _, a := range chunks {
			ca, err := decodeChunk(a.Body)
			if err != nil {
				bad = append(bad, fmt.Errorf("job %s: %w", id, err))
				continue
			}
			s.chunks = append(s.chunks, ca)
		}
		jobs = append(jobs, s)
		return nil
	})
	bad = append(bad, err)
	slices.SortStableFunc(jobs, func(a, b stored) int { return a.rec.Created.Compare(b.rec.Created) })
	for _, s := range jobs {
		j := r.restore(s.id, s.rec)
		if s.rec.Final != nil {
			continue
		}
		files = append(files, s.rec.Path)
		if opts.TempDir != "" { // or its copy there, restored from a backup (openJobFile)
			files = append(files, filepath.Join(opts.TempDir, filepath.Base(s.rec.Path)))
		}
		if err := r.resume(j, s.rec, s.chunks, account, opts); err != nil {
			bad = append(bad, fmt.Errorf("job %s: %w", s.id, err))
		}
	}
	return files, errors.Join(bad...)
}

// restore is the stored job as a Job, listed (ended if it had).
func (r *Runner) restore(id string, rec *jobRecord) *Job {
	j := &Job{id: id, ent: rec.Enterprise, owner: rec.Owner, kind: rec.Kind, file: rec.File, created: rec.Created,
		rec: *rec, done: make(chan struct{}), r: r, state: JobRunning, cancel: func() {}}
	if p := rec.Final; p != nil {
		j.state, j.final, j.ended = p.State, p.State, p.FinishedAt
		j.rowsRead, j.accepted, j.refused, j.unsent = p.RowsRead, p.Accepted, p.Refused, p.Unsent
		j.unsentRows, j.unsentCut = p.UnsentRows, p.UnsentRowsCut
		j.errCount, j.errs, j.errsCut = p.ErrorCount, p.Errors, p.ErrorsCut
		j.failReason, j.failMsg, j.failZH = p.Reason, p.Message, p.DetailZH
		j.rec.Final = nil
		close(j.done)
	}
	r.mu.Lock()
	r.byID[j.id] = j
	r.all = append(r.all, j)
	r.mu.Unlock()
	return j
}

// resume starts a stored running job again: its chunks counted, their
// rows skipped.
func (r *Runner) resume(j *Job, rec *jobRecord, chunks []chunkAnswer, account func(string, string) (*gateway.Account, error), opts RowsOptions) error {
	var sent sentRows
	for _, ca := range chunks {
		for _, n := range ca.Rows {
			sent.rows = append(sent.rows, int32(n))
		}
		j.ok(ca.Accepted)
		for _, e := range ca.Errors {
			j.rowError(e)
		}
	}
	// Its sent rows are read already: counted here, skipped by run,
	// so that the progress a restart shows never has fewer rows read
	// than accepted and refused.
	j.mu.Lock()
	j.rowsRead = len(sent.rows)
	j.mu.Unlock()
	r.mu.Lock()
	r.perEnt[j.ent]++
	r.running++
	r.wg.Add(1)
	r.mu.Unlock()
	slot := &Slot{r: r, ent: j.ent}
	ctx, cancel := context.WithCancel(r.ctx)
	j.cancel = cancel
	// stop ends the job without reading its file again: failed for
	// reason, or cancelled (no reason).
	stop := func(reason, msg, zh string, err error) error {
		r.unsentBefore(j, rec, sent.rows, opts)
		j.mu.Lock()
		j.rowsRead = j.accepted + j.refused + j.unsent // the rows it is known to have read
		j.userCancel = reason == ""
		j.mu.Unlock()
		if reason != "" {
			j.fail(reason, msg, zh)
		}
		j.end(nil, r.cfg.Now())
		if r.finish(j) {
			r.afterHolds(func() { // ended: nothing reads it again
				_ = os.Remove(rec.Path)
				if opts.TempDir != "" { // nor its copy a restore put there
					_ = os.Remove(filepath.Join(opts.TempDir, filepath.Base(rec.Path)))
				}
			})
		}
		slot.Release()
		close(j.done)
		return err
	}
	slices.Sort(sent.rows)
	if rec.Cancelled {
		// Cancelled, and stopped before its end was stored: what its
		// calls sent is counted, nothing more is.
		return stop("", "", "", nil)
	}
	acct, err := account(rec.Enterprise, rec.Owner)
	if err != nil {
		return stop(ReasonAccountGone, "the job's user or enterprise is gone or disabled: the rows not yet sent were not",
			"任务的用户或企业已停用或已删除：尚未发送的行没有发送", err)
	}
	f, err := openJobFile(rec.Path, opts.TempDir)
	if err != nil {
		return stop(ReasonFileGone, "the job's file could not be read again after a restart: the rows not yet sent were not",
			"服务重启后任务的文件无法再次打开：尚未发送的行没有发送", err)
	}
	opts.Format, opts.Template, opts.NumberColumn = rec.Rows.Format, rec.Rows.Template, rec.Rows.NumberColumn
	rows, err := OpenRows(f, opts)
	if err != nil {
		return stop(ReasonInvalid, "the job's file could not be read again after a restart: "+err.Error(),
			"服务重启后任务的文件无法再次读取：尚未发送的行没有发送", err)
	}
	path := f.Name() // where it is now: restored elsewhere, that copy goes at the end
	r.launch(ctx, slot, j, JobSpec{Account: acct, Request: rec.Request, Finally: func() { _ = os.Remove(path) }}, rows, &sent)
	r.m.jobResumed()
	return nil
}

// unsentBefore counts as unsent (Job.notSent) the rows of j's file, up to
// the last its stored calls sent, that none of them sent: a job ended at
// a restart (cancelled before its end was stored, or failed there) read
// them, since it reads in order and sent a later one, and its calls in
// flight at the stop ended in any order. Rows after the last sent are not
// known to have been read, and are not listed; nor is any row when the
// file cannot be read again (the job then fails file_gone or invalid).
// sent is sorted. It parses the file up to that row once, at the start.
func (r *Runner) unsentBefore(j *Job, rec *jobRecord, sent []int32, opts RowsOptions) {
	if len(sent) == 0 {
		return
	}
	last := int(sent[len(sent)-1])
	f, err := openJobFile(rec.Path, opts.TempDir)
	if err != nil {
		return
	}
	opts.Format, opts.Template, opts.NumberColumn = rec.Rows.Format, rec.Rows.Template, rec.Rows.NumberColumn
	rows, err := OpenRows(f, opts) // closes f
	if err != nil {
		return
	}
	defer rows.Close()
	was := &sentRows{rows: sent}
	var gap []chunkRow
	for {
		row, err := rows.Next()
		if err != nil || row.N > last {
			break
		}
		if !was.has(row.N) {
			gap = append(gap, chunkRow{row: row.N, number: row.Number})
		}
	}
	if len(gap) > 0 {
		j.notSent(gap)
		r.cfg.Logger.Info("batch: a job ended at the start lists the rows its last calls did not send", "job", j.id, "rows", len(gap))
	}
}

// sentRows are the rows a resumed job sent before (its chunks'), in
// order: 4 bytes a row where a set would take some 40, for files of
// millions of rows. The job reads its rows in order, so has walks on.
type sentRows struct {
	rows []int32
	i    int
}

// has says whether row n was sent; n never less than the last asked.
func (s *sentRows) has(n int) bool {
	if s == nil {
		return false
	}
	for s.i < len(s.rows) && int(s.rows[s.i]) < n {
		s.i++
	}
	return s.i < len(s.rows) && int(s.rows[s.i]) == n
}

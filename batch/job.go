package batch

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"
	JobCancelled = "cancelled"
	JobFailed    = "failed"
)

// Why a job ends failed, besides the policy's refusals of its sender
// (policy.Describe: account_disabled, no_signature, internal).
const (
	ReasonShutdown    = "shutdown"     // the daemon stopped it (with a Store it resumes)
	ReasonInvalid     = "invalid"      // its file could not be read further
	ReasonStoreError  = "store_error"  // the message store failed (jobs of releases before 2026-12-06: a job now waits for the store)
	ReasonAccountGone = "account_gone" // at resume, its user or enterprise was gone or disabled
	ReasonFileGone    = "file_gone"    // at resume, its file could not be opened
)

// FailReasons are the reasons above, for whoever names them to people.
func FailReasons() []string {
	return []string{ReasonShutdown, ReasonInvalid, ReasonStoreError, ReasonAccountGone, ReasonFileGone}
}

// RowError is a refused row of a batch file (or of a contact import).
type RowError struct {
	Row     int    `json:"row"`    // the line of a CSV file, the row of a sheet
	Number  string `json:"number"` // as in the file
	Reason  string `json:"reason"`
	Code    string `json:"code,omitempty"` // the SMPP command_status of a gateway refusal
	Message string `json:"message"`
	// DetailZH is the refusal's detail in Chinese, as the consoles show
	// it beside the reason's (policy.Refusal.DetailZH); "" where none
	// is written.
	DetailZH string `json:"detail_zh,omitempty"`
}

// Progress is a job as its owner sees it.
type Progress struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`    // batch | template
	Account  string `json:"account"` // the user who started it
	File     string `json:"file,omitempty"`
	State    string `json:"state"` // running | done | cancelled | failed
	RowsRead int    `json:"rows_read"`
	Accepted int    `json:"accepted"`
	Refused  int    `json:"refused"`
	Unsent   int    `json:"unsent"` // read but not sent: the job was cancelled or failed first
	// UnsentRows are the rows counted in Unsent, as ranges by row: not
	// always the last rows read (the calls in flight at a cancel end in
	// any order). At most MaxUnsentRanges; UnsentRowsCut past them.
	UnsentRows    []RowRange `json:"unsent_rows,omitempty"`
	UnsentRowsCut bool       `json:"unsent_rows_truncated,omitempty"`
	ErrorCount    int        `json:"error_count"`
	Errors        []RowError `json:"errors,omitempty"` // the first MaxJobErrors (or MaxJobErrorBytes), by row
	// ErrorsCut: refused rows were counted but not listed, past
	// MaxJobErrors or MaxJobErrorBytes.
	ErrorsCut bool   `json:"errors_truncated,omitempty"`
	Reason    string `json:"reason,omitempty"` // why a job failed
	Message   string `json:"message,omitempty"`
	// DetailZH is Message for the people who read the consoles, in
	// Chinese; "" where none is written.
	DetailZH   string    `json:"detail_zh,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// RowRange is the rows From to To of a job's file (row numbers as in
// RowError), both included.
type RowRange struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// MaxUnsentRanges bounds the ranges of unsent rows a job keeps.
const MaxUnsentRanges = 1000

// Job is one batch job.
type Job struct {
	id, ent, owner, kind, file string
	created                    time.Time
	cancel                     context.CancelFunc
	done                       chan struct{}
	r                          *Runner // whose Store keeps the job

	// storeMu orders the writes of the job's record: a cancel stored
	// after the job's end was would undo the end.
	storeMu sync.Mutex

	mu    sync.Mutex
	state string
	// final is the state the job ended in, shown (state) once its last
	// record is stored: whoever reads done knows a restart will not run
	// the job again.
	final    string
	ended    time.Time
	rowsRead int
	accepted int
	refused  int
	unsent   int
	// unsentRows are the rows counted in unsent, as each call gave them
	// (sorted and merged by progress); at most MaxUnsentRanges, past
	// which unsentCut.
	unsentRows []RowRange
	unsentCut  bool
	errCount   int
	errs       []RowError
	errBytes   int  // what errs keeps: rowErrorSize and the strings of each
	errsCut    bool // a row error was counted, not kept
	failReason string
	failMsg    string
	failZH     string
	userCancel bool
	// rec is what the Runner's Store keeps of the job (store.go).
	rec jobRecord
}

// ID is the job's id.
func (j *Job) ID() string { return j.id }

// Enterprise is the code of the job's enterprise.
func (j *Job) Enterprise() string { return j.ent }

// Owner is the system_id of the user who started the job.
func (j *Job) Owner() string { return j.owner }

// Done is closed when the job has ended and given back its running slot.
func (j *Job) Done() <-chan struct{} { return j.done }

// Cancel stops a running job (it ends cancelled once the gateway calls in
// flight are answered; wait on Done) and returns the state it was in.
// With a Store the cancel is stored first, so that a crash before the job
// ends does not resume it: a restart ends it cancelled instead. If it
// cannot be stored (the store failing), the job runs on and Cancel
// returns the store's error: a cancel answered is a cancel kept.
func (j *Job) Cancel() (was string, err error) {
	j.storeMu.Lock()
	j.mu.Lock()
	was = j.state
	first := was == JobRunning && !j.userCancel
	j.mu.Unlock()
	if first && j.r != nil {
		if err := j.r.saveCancel(j); err != nil {
			j.storeMu.Unlock()
			return was, err
		}
	}
	if was == JobRunning {
		j.mu.Lock()
		j.userCancel = true
		j.mu.Unlock()
	}
	j.storeMu.Unlock()
	if was == JobRunning {
		j.cancel()
	}
	return was, nil
}

// cancelled reports whether the job's user cancelled it (and the cancel
// is stored).
func (j *Job) cancelled() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.userCancel
}

func (j *Job) finished() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state != JobRunning
}

// stopped says the job ended only because its Runner closed (the daemon
// stopping): with a Store it is not over, and resumes at the next start.
func (j *Job) stopped() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.final == JobFailed && j.failReason == ReasonShutdown
}

// publish shows the state the job ended in (end), once its last record
// is stored or could not be.
func (j *Job) publish() {
	j.mu.Lock()
	j.state = j.final
	j.mu.Unlock()
}

func (j *Job) finishedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

func (j *Job) read() {
	j.mu.Lock()
	j.rowsRead++
	j.mu.Unlock()
}

func (j *Job) ok(n int) {
	j.mu.Lock()
	j.accepted += n
	j.mu.Unlock()
}

func (j *Job) notSent(rows []chunkRow) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.unsent += len(rows)
	for _, cr := range rows {
		if n := len(j.unsentRows); n > 0 && j.unsentRows[n-1].To == cr.row-1 {
			j.unsentRows[n-1].To = cr.row
			continue
		}
		if len(j.unsentRows) == MaxUnsentRanges {
			j.unsentCut = true
			continue
		}
		j.unsentRows = append(j.unsentRows, RowRange{cr.row, cr.row})
	}
}

// rowErrorSize is what a kept RowError costs besides its strings.
const rowErrorSize = int(unsafe.Sizeof(RowError{}))

// rowError counts a refused row and keeps it, as copies cut short (its
// number as read is a substring of its whole row), while the job keeps
// fewer than MaxJobErrors within MaxJobErrorBytes: a finished job is kept
// for a day, and a file of refused 1 MiB rows kept every one.
func (j *Job) rowError(e RowError) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.refused++
	j.errCount++
	if len(j.errs) >= MaxJobErrors || j.errsCut {
		j.errsCut = true
		return
	}
	e.clip()
	size := rowErrorSize + len(e.Number) + len(e.Reason) + len(e.Code) + len(e.Message) + len(e.DetailZH)
	if j.errBytes+size > MaxJobErrorBytes {
		j.errsCut = true // and no more after: the list is the first rows that fit
		return
	}
	j.errs = append(j.errs, e)
	j.errBytes += size
}

// clip cuts e's strings as a job keeps them.
func (e *RowError) clip() {
	e.Number = Clip(e.Number, maxKeptNumber)
	e.Reason = Clip(e.Reason, maxKeptReason)
	e.Code = Clip(e.Code, maxKeptReason)
	e.Message = Clip(e.Message, maxKeptMessage)
	e.DetailZH = Clip(e.DetailZH, maxKeptMessage)
}

// fail records the first fatal error (msg in English, zh in Chinese)
// and stops the job.
func (j *Job) fail(reason, msg, zh string) {
	j.mu.Lock()
	if j.failReason == "" {
		j.failReason, j.failMsg, j.failZH = reason, Clip(msg, maxFailMessage), Clip(zh, maxFailMessage) // msg may quote the file
	}
	j.mu.Unlock()
	j.cancel()
}

// end settles the final state, shown once the job's last record is
// stored (publish). Done is closed later still, once the job's file is
// closed and its running slot given back (Slot.Start), so that whoever
// waited on Done can start the next job at once.
func (j *Job) end(ctxErr error, now time.Time) {
	j.mu.Lock()
	switch {
	case j.failReason != "":
		j.final = JobFailed
	case j.userCancel:
		j.final = JobCancelled
	case ctxErr != nil:
		j.final, j.failReason, j.failMsg, j.failZH = JobFailed, ReasonShutdown, "the daemon stopped before the job ended", "服务在任务完成前停止：重启后任务继续"
	default:
		j.final = JobDone
	}
	j.ended = now.UTC()
	j.mu.Unlock()
	j.cancel()
}

// Progress is the job now; its row errors (sorted by row) if withErrors.
func (j *Job) Progress(withErrors bool) Progress { return j.progress(withErrors, false) }

// progress is Progress; as the job ended (end) if final, before that is
// shown.
func (j *Job) progress(withErrors, final bool) Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := Progress{ID: j.id, Kind: j.kind, Account: j.owner, File: j.file, State: j.state,
		RowsRead: j.rowsRead, Accepted: j.accepted, Refused: j.refused, Unsent: j.unsent,
		ErrorCount: j.errCount, ErrorsCut: j.errsCut, Reason: j.failReason, Message: j.failMsg, DetailZH: j.failZH,
		CreatedAt: j.created, FinishedAt: j.ended}
	switch {
	case final:
		p.State = j.final
	case p.State == JobRunning:
		p.FinishedAt = time.Time{} // ended, its record still being stored
	}
	p.UnsentRows, p.UnsentRowsCut = mergeRanges(j.unsentRows), j.unsentCut
	if withErrors && len(j.errs) > 0 {
		p.Errors = slices.Clone(j.errs)
		slices.SortStableFunc(p.Errors, func(x, y RowError) int { return cmp.Compare(x.Row, y.Row) })
	}
	return p
}

// mergeRanges is rs sorted, with adjacent ranges joined, in new memory.
func mergeRanges(rs []RowRange) []RowRange {
	if len(rs) == 0 {
		return nil
	}
	out := slices.Clone(rs)
	slices.SortFunc(out, func(x, y RowRange) int { return cmp.Compare(x.From, y.From) })
	n := 0
	for _, r := range out[1:] {
		if r.From <= out[n].To+1 {
			out[n].To = max(out[n].To, r.To)
			continue
		}
		n++
		out[n] = r
	}
	return out[:n+1]
}

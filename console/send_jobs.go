package console

import (
	"cmp"
	"encoding/csv"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/qxtd/qxtd/api"
)

// 发送任务: the progress of batch and templated sends, their row errors
// (also as CSV), cancelling.

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
		_ = w.Write([]string{strconv.Itoa(e.Row), e.Number, e.ReasonZH, refusalDetail(e.Reason, e.Message, e.DetailZH)})
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

package batch

import "github.com/prometheus/client_golang/prometheus"

// RowOutcomes are the outcomes of a job's rows as qxtd_batch_rows_total
// counts them.
var RowOutcomes = []string{"accepted", "refused", "unsent"}

// metrics are a Runner's series (nil without a Registerer):
//
//	qxtd_batch_jobs_running            jobs running now (resumed ones too)
//	qxtd_batch_jobs_ended_total{state} jobs ended: done, cancelled, failed
//	qxtd_batch_rows_total{outcome}     their rows: accepted, refused, unsent
//	qxtd_batch_jobs_resumed_total      jobs a start found running and went on with
//
// A job is counted once it ended for good: its last record stored (or
// without a Store). One whose end could not be stored is counted when the
// next start ends it, and one stopped by a shutdown when it ends after
// the restart, its rows from before the restart included: each row once.
type metrics struct {
	ended   *prometheus.CounterVec
	rows    *prometheus.CounterVec
	resumed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, r *Runner) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qxtd_batch_jobs_ended_total",
			Help: "Batch and templated send jobs ended, by state (done, cancelled, failed)."}, []string{"state"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qxtd_batch_rows_total",
			Help: "Rows of the ended batch jobs, by outcome (accepted, refused, unsent: read but not sent, the job cancelled or failed)."}, []string{"outcome"}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "qxtd_batch_jobs_resumed_total",
			Help: "Batch jobs a start found running (cut off by a restart or a crash) and went on with."}),
	}
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "qxtd_batch_jobs_running",
		Help: "Batch and templated send jobs running now, resumed ones included."}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		return float64(r.running)
	})
	reg.MustRegister(m.ended, m.rows, m.resumed, running)
	for _, st := range []string{JobDone, JobCancelled, JobFailed} {
		m.ended.WithLabelValues(st) // at 0 from the start
	}
	for _, o := range RowOutcomes {
		m.rows.WithLabelValues(o)
	}
	return m
}

// jobEnded counts a job that ended for good.
func (m *metrics) jobEnded(p Progress) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(p.State).Inc()
	m.rows.WithLabelValues("accepted").Add(float64(p.Accepted))
	m.rows.WithLabelValues("refused").Add(float64(p.Refused))
	m.rows.WithLabelValues("unsent").Add(float64(p.Unsent))
}

// jobResumed counts a job a start went on with.
func (m *metrics) jobResumed() {
	if m != nil {
		m.resumed.Inc()
	}
}

package batch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// Limits of batch jobs.
const (
	MaxJobsPerEnterprise  = 2    // running jobs of one enterprise
	MaxJobs               = 8    // running jobs in all
	MaxJobErrors          = 1000 // row errors listed in a job's progress (ErrorCount counts all)
	BatchInFlight         = 1024 // rows of a job handed to the gateway and not yet answered
	BatchChunk            = 64   // most recipients of one gateway call (rows with the same text)
	JobKeep               = 24 * time.Hour
	jobsKeptPerEnterprise = 20   // finished jobs kept per enterprise
	jobsKept              = 1000 // finished jobs kept in all
	rateBackoffMin        = 20 * time.Millisecond
	rateBackoffMax        = time.Second
	storeBackoffMax       = time.Second // a chunk's waits for a failing store
)

// MaxJobErrorBytes is what a job's listed row errors keep (rowErrorSize
// and the strings of each, cut short by Clip). Ours take 100 to 200
// bytes, so MaxJobErrors binds first; errors quoting long cells stop
// here, some 500 to 600 in. A finished job is kept for JobKeep: before
// this bound each kept error held its whole row (up to 1 MiB).
const MaxJobErrorBytes = 256 << 10

// Errors of Reserve.
var (
	ErrTooManyJobs = errors.New("batch: too many jobs")
	ErrClosed      = errors.New("batch: the daemon is stopping")
)

// Config is what a Runner needs.
type Config struct {
	Gateway *gateway.Gateway // accepts the rows
	Policy  *policy.Policy   // the enterprises' pace (SubmitTPS)
	// Running jobs at most per enterprise and in all (0: MaxJobsPerEnterprise, MaxJobs).
	MaxPerEnterprise, MaxRunning int
	// Now is the time of the jobs' start and end and of their expiry
	// after JobKeep (nil: time.Now), so that a test can move it a day on.
	Now func() time.Time
	// Store keeps the jobs across restarts (store.go); nil: in memory.
	Store  Store
	Logger *slog.Logger // nil: none
	// Registerer takes the jobs' series (metrics.go); nil: none.
	Registerer prometheus.Registerer
}

// Runner runs batch jobs and remembers them.
type Runner struct {
	cfg Config

	mu      sync.Mutex
	byID    map[string]*Job
	all     []*Job // in creation order
	running int
	perEnt  map[string]int
	pacers  map[string]*rate.Limiter
	closed  bool
	holds   int             // backups copying the running jobs' files (files.go)
	held    []func()        // the removals of ended jobs' files they hold
	m       *metrics        // nil without Config.Registerer
	ctx     context.Context // cancelled by Close
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// New returns a Runner; Close it before stopping the gateway.
func New(cfg Config) *Runner {
	if cfg.MaxPerEnterprise <= 0 {
		cfg.MaxPerEnterprise = MaxJobsPerEnterprise
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = MaxJobs
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, byID: map[string]*Job{}, perEnt: map[string]int{}, pacers: map[string]*rate.Limiter{}}
	r.m = newMetrics(cfg.Registerer, r)
	r.ctx, r.stop = context.WithCancel(context.Background())
	return r
}

// Slot is a running job's place, taken before its file is read.
type Slot struct {
	r    *Runner
	ent  string
	once sync.Once
}

// Reserve takes a running slot for a job of the enterprise: ErrTooManyJobs
// when it or everyone has as many running as allowed, ErrClosed after
// Close. Start the job in it, or Release it.
func (r *Runner) Reserve(enterprise string) (*Slot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return nil, ErrClosed
	case r.perEnt[enterprise] >= r.cfg.MaxPerEnterprise:
		return nil, fmt.Errorf("%w: %d batch jobs of the enterprise are running (at most %d); wait for one to finish",
			ErrTooManyJobs, r.perEnt[enterprise], r.cfg.MaxPerEnterprise)
	case r.running >= r.cfg.MaxRunning:
		return nil, fmt.Errorf("%w: %d batch jobs are running (at most %d); retry later", ErrTooManyJobs, r.running, r.cfg.MaxRunning)
	}
	r.perEnt[enterprise]++
	r.running++
	r.wg.Add(1)
	return &Slot{r: r, ent: enterprise}, nil
}

// Release gives back a slot no job was started in (again: nothing).
func (s *Slot) Release() {
	s.once.Do(func() {
		r := s.r
		r.mu.Lock()
		r.perEnt[s.ent]--
		if r.perEnt[s.ent] <= 0 {
			delete(r.perEnt, s.ent)
		}
		r.running--
		r.mu.Unlock()
		r.wg.Done()
	})
}

// JobSpec is what a job sends and for whom.
type JobSpec struct {
	Owner   string           // system_id of the user who started it
	Account *gateway.Account // the sender, as the gateway sees it
	Kind    string           // KindBatch or KindTemplate
	File    string           // the uploaded file's name (kept cut to MaxFileName bytes)
	Request gateway.SendRequest
	// Finally runs once the job ended (say, to remove the spooled file),
	// after any backup's HoldFiles is released; with a Store, not when
	// Close stopped it: it resumes at the next start, removing the file
	// itself when it ends.
	Finally func()
	// With a Store: the file, durable (synced) before Start, read again
	// at resume with Rows's Format, Template and NumberColumn.
	Path string
	Rows RowsOptions
}

// Job kinds.
const (
	KindBatch    = "batch"
	KindTemplate = "template"
)

// Start runs a job in the slot, in the background, and takes ownership of
// rows (closed when the job ends). With a Store the job is stored first:
// if it cannot be, rows are closed, the slot released and nothing runs.
func (s *Slot) Start(spec JobSpec, rows *Rows) (*Job, error) {
	r := s.r
	ctx, cancel := context.WithCancel(r.ctx)
	j := &Job{id: newJobID(), ent: s.ent, owner: spec.Owner, kind: spec.Kind, file: Clip(spec.File, MaxFileName),
		created: r.cfg.Now().UTC(), cancel: cancel, done: make(chan struct{}), r: r, state: JobRunning}
	j.rec = jobRecord{Enterprise: j.ent, Owner: j.owner, Kind: j.kind, File: j.file, Path: spec.Path, Request: spec.Request,
		Created: j.created, Rows: storedRows{Format: spec.Rows.Format, Template: spec.Rows.Template, NumberColumn: spec.Rows.NumberColumn}}
	if err := r.save(j); err != nil {
		cancel()
		rows.Close()
		s.Release()
		return nil, fmt.Errorf("batch: the job could not be stored: %w", err)
	}
	r.add(j)
	r.launch(ctx, s, j, spec, rows, nil)
	return j, nil
}

// launch runs j in the slot, skipping the rows sent (a resumed job's).
func (r *Runner) launch(ctx context.Context, s *Slot, j *Job, spec JobSpec, rows *Rows, sent *sentRows) {
	go func() {
		defer close(j.done) // last: the slot is free when Done says the job ended
		defer s.Release()
		defer rows.Close()
		r.run(ctx, j, spec.Account, spec.Request, rows, sent)
		if j.stopped() && r.cfg.Store != nil {
			j.publish()
			return // not ended: it resumes at the next start
		}
		if r.finish(j) {
			r.afterHolds(spec.Finally)
		}
	}()
}

func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>1|1<<40, 10)
}

// add registers a new job and forgets old finished ones.
func (r *Runner) add(j *Job) {
	r.mu.Lock()
	r.byID[j.id] = j
	r.all = append(r.all, j)
	gone := r.forget()
	r.mu.Unlock()
	r.drop(gone)
}

// drop deletes forgotten jobs from the Store.
func (r *Runner) drop(ids []string) {
	if r.cfg.Store == nil || len(ids) == 0 {
		return
	}
	if err := r.cfg.Store.DeleteJobs(context.Background(), ids); err != nil {
		r.cfg.Logger.Warn("batch: forgotten jobs could not be deleted from the store (they are shown again after a restart)", "jobs", len(ids), "err", err)
	}
}

// forget drops the finished jobs past JobKeep, past jobsKeptPerEnterprise
// of an enterprise (its oldest first) or past jobsKept in all (r.mu held).
// It runs when a job starts and on every read (Get, List), so that a day
// after a job ended nobody sees it even when no job started since.
func (r *Runner) forget() (gone []string) {
	now := r.cfg.Now()
	kept := map[string]int{}
	for i := len(r.all) - 1; i >= 0; i-- {
		o := r.all[i]
		if !o.finished() {
			continue
		}
		kept[o.ent]++
		if kept[o.ent] > jobsKeptPerEnterprise || now.Sub(o.finishedAt()) >= JobKeep {
			delete(r.byID, o.id)
			r.all[i] = nil
			gone = append(gone, o.id)
		}
	}
	r.all = slices.DeleteFunc(r.all, func(o *Job) bool { return o == nil })
	for i := 0; len(r.all) > jobsKept && i < len(r.all); {
		if o := r.all[i]; o.finished() {
			delete(r.byID, o.id)
			r.all = slices.Delete(r.all, i, i+1)
			gone = append(gone, o.id)
			continue
		}
		i++
	}
	return gone
}

// Get is the job id, nil if unknown (or forgotten).
func (r *Runner) Get(id string) *Job {
	r.mu.Lock()
	gone := r.forget()
	j := r.byID[id]
	r.mu.Unlock()
	r.drop(gone)
	return j
}

// List is every job remembered, in creation order.
func (r *Runner) List() []*Job {
	r.mu.Lock()
	gone := r.forget()
	all := slices.Clone(r.all)
	r.mu.Unlock()
	r.drop(gone)
	return all
}

// pacer is the enterprise's submission pace for its jobs.
func (r *Runner) pacer(ent string) *rate.Limiter {
	tps := max(r.cfg.Policy.SubmitTPS(ent), 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.pacers[ent]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(tps), max(1, tps/10))
		r.pacers[ent] = l
	} else if l.Limit() != rate.Limit(tps) {
		l.SetLimit(rate.Limit(tps))
		l.SetBurst(max(1, tps/10))
	}
	return l
}

// Close cancels the running jobs and waits until they stop (the gateway
// calls in flight are answered first, so every row is accounted for). No
// job starts after.
func (r *Runner) Close() {
	r.mu.Lock()
	r.closed = true
	r.stop()
	r.mu.Unlock()
	r.wg.Wait()
}

package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// storeRig is a real store, policy and gateway (not started: the
// messages wait in the store) for jobs of enterprise P, whose user pat sends 5 a
// second.
type storeRig struct {
	t     *testing.T
	store *queue.Store
	pol   *policy.Policy
	gw    *gateway.Gateway
	dir   string
}

func newStoreRig(t *testing.T) *storeRig {
	t.Helper()
	return newStoreRigWith(t, queue.Options{})
}

// newStoreRigWith is newStoreRig with the store's options (its faults).
func newStoreRigWith(t *testing.T, opt queue.Options) *storeRig {
	t.Helper()
	dir := t.TempDir()
	db, err := queue.OpenDB(filepath.Join(dir, "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := queue.New(db, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, DefaultTPS: 1000,
		Packages: policy.PackageTable{{ID: 1, FeeFen: 100, Included: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "P", Name: "派公司", Signature: "【派公司】", Package: 1, National: true, TPS: 5},
		Users:      []policy.NewUser{{Name: "派", SystemID: "pat", Password: "secret1"}},
		Whitelist:  []string{"13800138000"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{
		// Never started: the messages wait in the store.
		Upstreams: []gateway.UpstreamConfig{{Name: "none", Addr: "127.0.0.1:1", SystemID: "up", Password: "uppw", Binds: 1, Window: 1}},
	}, store, gateway.Rules{P: pol}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Stop)
	return &storeRig{t: t, store: store, pol: pol, gw: gw, dir: dir}
}

func (s *storeRig) account(enterprise, owner string) (*gateway.Account, error) {
	u, err := s.pol.User(policy.Actor{Enterprise: enterprise, Name: owner}, owner)
	if err != nil {
		return nil, err
	}
	ent, ok := s.pol.Lookup(enterprise)
	if !ok {
		return nil, errors.New("no enterprise " + enterprise)
	}
	return gateway.AccountFor(u, ent), nil
}

// runner is a Runner on the rig's store, seen through st (nil: the store).
func (s *storeRig) runner(st Store) *Runner {
	if st == nil {
		st = s.store
	}
	r := New(Config{Gateway: s.gw, Policy: s.pol, Store: st})
	s.t.Cleanup(r.Close)
	return r
}

// start starts a job of n rows, each its own text (a gateway call each),
// its file spooled in the rig's directory.
func (s *storeRig) start(r *Runner, n int) (*Job, string) {
	s.t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "13800138000,第%d条\n", i)
	}
	return s.startCSV(r, b.String())
}

// resumed is job id as a new runner on the rig's store has it after
// Resume: the daemon started again.
func (s *storeRig) resumed(id string) *Job {
	s.t.Helper()
	r := s.runner(nil)
	if _, err := r.Resume(s.account, RowsOptions{}); err != nil {
		s.t.Fatal(err)
	}
	j := r.Get(id)
	if j == nil {
		s.t.Fatal("the job is gone after the restart")
	}
	return j
}

// startCSV starts a job of the CSV file given, spooled in the rig's
// directory.
func (s *storeRig) startCSV(r *Runner, file string) (*Job, string) {
	s.t.Helper()
	path := filepath.Join(s.dir, fmt.Sprintf("job-%d.csv", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		s.t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		s.t.Fatal(err)
	}
	rows, err := OpenRows(f, RowsOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	acct, err := s.account("P", "pat")
	if err != nil {
		s.t.Fatal(err)
	}
	slot, err := r.Reserve("P")
	if err != nil {
		s.t.Fatal(err)
	}
	j, err := slot.Start(JobSpec{Owner: "pat", Account: acct, Kind: KindBatch, File: "名单.csv", Path: path,
		Request: gateway.SendRequest{Ingress: "batch"}, Finally: func() { _ = os.Remove(path) }}, rows)
	if err != nil {
		s.t.Fatal(err)
	}
	return j, path
}

// waitAccepted waits until j accepted at least n rows.
func waitAccepted(t *testing.T, j *Job, n int) Progress {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if p := j.Progress(false); p.Accepted >= n {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %d rows accepted in 20 s: %+v", n, j.Progress(false))
		}
	}
}

func waitDone(t *testing.T, j *Job) {
	t.Helper()
	select {
	case <-j.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("job not done in 20 s: %+v", j.Progress(false))
	}
}

// endless is the rig's store whose jobs' last records are lost, as if
// the daemon were killed between a job's end and its record; hold, if
// set, holds FinishJob until it is closed.
type endless struct {
	*queue.Store
	lose     atomic.Bool
	finishes chan string // a FinishJob called, if not nil
	hold     chan struct{}
}

var errKilled = errors.New("test: the daemon was killed before the job's end was stored")

func (e *endless) FinishJob(ctx context.Context, id string, record []byte) error {
	if e.finishes != nil {
		e.finishes <- id
	}
	if e.hold != nil {
		<-e.hold
	}
	if e.lose.Load() {
		return errKilled
	}
	return e.Store.FinishJob(ctx, id, record)
}

// TestCancelSurvivesACrash: a job cancelled, whose end the daemon did not
// store before it died, is not resumed by the restart: it ends cancelled
// there with what it had accepted, its file removed, nothing more sent.
func TestCancelSurvivesACrash(t *testing.T) {
	s := newStoreRig(t)
	st := &endless{Store: s.store}
	st.lose.Store(true)
	r1 := s.runner(st)
	j, path := s.start(r1, 40)
	waitAccepted(t, j, 2)
	if was, err := j.Cancel(); err != nil || was != JobRunning {
		t.Fatalf("Cancel: was %s (%v)", was, err)
	}
	waitDone(t, j)
	before := j.Progress(false)
	if before.State != JobCancelled || before.Accepted >= 40 {
		t.Fatalf("cancelled: %+v", before)
	}
	r1.Close()

	r2 := s.runner(nil)
	if _, err := r2.Resume(s.account, RowsOptions{}); err != nil {
		t.Fatal(err)
	}
	again := r2.Get(j.ID())
	if again == nil {
		t.Fatal("the job is gone after the restart")
	}
	select {
	case <-again.Done():
	default:
		t.Fatalf("the cancelled job runs again after the restart: %+v", again.Progress(false))
	}
	p := again.Progress(false)
	if p.State != JobCancelled || p.Accepted != before.Accepted || p.RowsRead != p.Accepted+p.Refused+p.Unsent || p.FinishedAt.IsZero() {
		t.Fatalf("after the restart: %+v; before it: %+v", p, before)
	}
	// The rows it lists unsent were unsent before it (the restart lists
	// those up to the last stored call, the job those it read).
	for _, rg := range p.UnsentRows {
		for row := rg.From; row <= rg.To; row++ {
			if !slices.ContainsFunc(before.UnsentRows, func(b RowRange) bool { return b.From <= row && row <= b.To }) {
				t.Errorf("row %d listed unsent after the restart, not before it (%v)", row, before.UnsentRows)
			}
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the cancelled job's file after the restart: %v", err)
	}
	// Its end is stored now: the next restart reads it as it is.
	r2.Close()
	r3 := s.runner(nil)
	if _, err := r3.Resume(s.account, RowsOptions{}); err != nil {
		t.Fatal(err)
	}
	if p3 := r3.Get(j.ID()).Progress(false); p3.State != JobCancelled || p3.Accepted != before.Accepted {
		t.Fatalf("after a second restart: %+v", p3)
	}
}

// TestJobDoneOnceStored: a job reads done only once its last record is
// stored, so that whoever saw done never sees a restart run it again;
// until then it reads running, with no finish time.
func TestJobDoneOnceStored(t *testing.T) {
	s := newStoreRig(t)
	st := &endless{Store: s.store, finishes: make(chan string, 1), hold: make(chan struct{})}
	release := sync.OnceFunc(func() { close(st.hold) })
	r := s.runner(st)
	t.Cleanup(release) // a failed check must not leave the job held: Close waits for it
	j, path := s.start(r, 3)
	select {
	case <-st.finishes:
	case <-time.After(20 * time.Second):
		t.Fatalf("the job did not end in 20 s: %+v", j.Progress(false))
	}
	if p := j.Progress(false); p.State != JobRunning || !p.FinishedAt.IsZero() || p.Accepted != 3 {
		t.Fatalf("while its end is being stored: %+v, want running, 3 accepted, no finish time", p)
	}
	// A cancel now waits for the record, then finds the job done: had
	// it stored its cancel over the last record, the restart below would
	// end the job cancelled.
	was := make(chan string, 1)
	go func() { w, _ := j.Cancel(); was <- w }()
	release()
	waitDone(t, j)
	if p := j.Progress(false); p.State != JobDone || p.FinishedAt.IsZero() {
		t.Fatalf("stored: %+v, want done", p)
	}
	if w := <-was; w != JobDone {
		t.Fatalf("Cancel as the job's end was stored: was %s, want done", w)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the job's file once done: %v", err)
	}
	r.Close()
	if p := s.resumed(j.ID()).Progress(false); p.State != JobDone || p.Accepted != 3 {
		t.Fatalf("after a restart: %+v, want done, as stored", p)
	}
}

// TestMetrics: the jobs' series count what ran and how each ended: a job
// running, then done with its rows accepted; one cancelled, its unsent
// rows counted; one whose end could not be stored is counted only when
// the next start ends it (there, as resumed), so each row once.
func TestMetrics(t *testing.T) {
	s := newStoreRig(t)
	reg := prometheus.NewRegistry()
	st := &endless{Store: s.store}
	r := New(Config{Gateway: s.gw, Policy: s.pol, Store: st, Registerer: reg})
	t.Cleanup(r.Close)
	ended := func(state string) float64 { return testutil.ToFloat64(r.m.ended.WithLabelValues(state)) }
	rows := func(o string) float64 { return testutil.ToFloat64(r.m.rows.WithLabelValues(o)) }
	for _, n := range []string{"qxtd_batch_jobs_running", "qxtd_batch_jobs_ended_total", "qxtd_batch_rows_total", "qxtd_batch_jobs_resumed_total"} {
		if c, err := testutil.GatherAndCount(reg, n); err != nil || c == 0 {
			t.Fatalf("%s: %d series (%v), want them from the start", n, c, err)
		}
	}

	j, _ := s.start(r, 3)
	if got := testutil.ToFloat64(r.m.resumed); got != 0 {
		t.Fatalf("resumed %v", got)
	}
	if c, _ := testutil.GatherAndCount(reg, "qxtd_batch_jobs_running"); c != 1 {
		t.Fatal("no running gauge")
	}
	waitDone(t, j)
	if ended(JobDone) != 1 || rows("accepted") != 3 || rows("refused") != 0 {
		t.Fatalf("after a job of 3 rows: done %v, accepted %v, refused %v", ended(JobDone), rows("accepted"), rows("refused"))
	}

	c, _ := s.start(r, 40)
	waitAccepted(t, c, 1)
	if _, err := c.Cancel(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	p := c.Progress(false)
	if ended(JobCancelled) != 1 || rows("accepted") != float64(3+p.Accepted) || rows("unsent") != float64(p.Unsent) {
		t.Fatalf("after a cancel (%+v): cancelled %v, accepted %v, unsent %v", p, ended(JobCancelled), rows("accepted"), rows("unsent"))
	}

	// A job whose end is lost (the daemon killed just then) is not
	// counted: the next start runs it again, sends nothing twice, and
	// counts it, as resumed.
	st.lose.Store(true)
	l, _ := s.start(r, 2)
	waitDone(t, l)
	if ended(JobDone) != 1 || rows("accepted") != float64(3+p.Accepted) {
		t.Fatalf("a job whose end was not stored was counted: done %v, accepted %v", ended(JobDone), rows("accepted"))
	}
	r.Close()
	reg2 := prometheus.NewRegistry()
	r2 := New(Config{Gateway: s.gw, Policy: s.pol, Store: s.store, Registerer: reg2})
	t.Cleanup(r2.Close)
	if _, err := r2.Resume(s.account, RowsOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r2.Get(l.ID()))
	if got := testutil.ToFloat64(r2.m.ended.WithLabelValues(JobDone)); got != 1 || testutil.ToFloat64(r2.m.resumed) != 1 ||
		testutil.ToFloat64(r2.m.rows.WithLabelValues("accepted")) != 2 {
		t.Fatalf("the next start: done %v, resumed %v, accepted %v; want 1, 1, 2", got, testutil.ToFloat64(r2.m.resumed),
			testutil.ToFloat64(r2.m.rows.WithLabelValues("accepted")))
	}
}

// A job that ends failed is logged at warning level with what the
// operator needs to find it (its alert, BatchJobsFailed, points here);
// one that ends well at info.
func TestJobEndLogged(t *testing.T) {
	s := newStoreRig(t)
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	st := &endless{Store: s.store}
	r := New(Config{Gateway: s.gw, Policy: s.pol, Store: st, Logger: logger})
	t.Cleanup(r.Close)
	j, _ := s.start(r, 2)
	waitDone(t, j)

	// Its end lost (the daemon killed then) and its file gone before the
	// next start: that start ends it failed.
	st.lose.Store(true)
	l, path := s.start(r, 2)
	waitDone(t, l)
	r.Close()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	r2 := New(Config{Gateway: s.gw, Policy: s.pol, Store: s.store, Logger: logger})
	t.Cleanup(r2.Close)
	if _, err := r2.Resume(s.account, RowsOptions{}); err == nil {
		t.Fatal("Resume: no error for a job whose file is gone")
	}
	waitDone(t, r2.Get(l.ID()))

	mu.Lock()
	defer mu.Unlock()
	var ended, failed []map[string]any
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch m["msg"] {
		case "batch: job ended":
			ended = append(ended, m)
		case "batch: job failed":
			failed = append(failed, m)
		}
	}
	if len(ended) != 1 || ended[0]["job"] != j.ID() || ended[0]["state"] != JobDone || ended[0]["level"] != "INFO" ||
		ended[0]["enterprise"] != "P" || ended[0]["account"] != "pat" || ended[0]["accepted"] != 2.0 {
		t.Errorf("jobs ended logged: %v; want the first job's, once, done with 2 accepted", ended)
	}
	if len(failed) != 1 || failed[0]["job"] != l.ID() || failed[0]["level"] != "WARN" || failed[0]["reason"] != ReasonFileGone ||
		failed[0]["enterprise"] != "P" || failed[0]["state"] != JobFailed {
		t.Errorf("jobs failed logged: %v; want the second job's, once, file_gone", failed)
	}
}

// lockedWriter is w behind mu: the runner's goroutines log while the
// test may read.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestHoldFiles: while a backup holds the jobs' files (from before its
// snapshot until it has copied them), a job that ends keeps its file; the
// release removes it.
func TestHoldFiles(t *testing.T) {
	s := newStoreRig(t)
	r := s.runner(nil)
	release := r.HoldFiles()
	j, path := s.start(r, 2)
	waitDone(t, j)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the ended job's file, held: %v", err)
	}
	again := r.HoldFiles() // a second backup overlapping
	release()
	release() // once only
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file, still held by a second hold: %v", err)
	}
	again()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file after the holds: %v, want it removed", err)
	}
	k, path := s.start(r, 1)
	waitDone(t, k)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) { // removed before Done
		t.Fatalf("the file of a job ended unheld: %v, want it removed", err)
	}
}

package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/sheet"
	"github.com/qxtd/qxtd/smpp"
)

// rigOptions vary the in-process daemon of the batch tests.
type rigOptions struct {
	sim    smpp.SimOptions
	window int
	clock  func() time.Time // Config.Clock (nil: time.Now)
	// Whitelist bounds of the policy (0: its defaults).
	maxWhitelist, maxPending int
	// noSync commits without fsync: the fuzz targets store thousands of
	// records a second, and what they test is the answers, not durability.
	noSync bool
	// maxJobs is Config.MaxBatchJobs.
	maxJobs int
	// syncFault is the store's Options.SyncFault (nil: none).
	syncFault func() error
}

// newBulkRig is the in-process daemon of the API tests (newUserRig is it
// with the default simulator): enterprises A–E with their users, E being
// "bulk" (no whitelist, national and off-net grants, 100,000 submissions
// per second) for erin's batches; the API's jobs close before the rest
// stops.
func newBulkRig(t testing.TB, o rigOptions) *userRig {
	t.Helper()
	tt, _ := t.(*testing.T)
	r := &userRig{t: tt, keys: map[string]string{}}
	o.sim.SystemID, o.sim.Password = "up", "uppw"
	r.sim = smpp.NewSimulator(o.sim)
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.sim.Serve(sl) }()
	var gwMu sync.Mutex
	var gw *gateway.Gateway
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: o.noSync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	r.store, err = queue.New(db, queue.Options{
		NoSync:    o.noSync,
		SyncFault: o.syncFault,
		OnDLRReady: func(a string, ready []*queue.Message, at queue.Snapshot) {
			gwMu.Lock()
			g := gw
			gwMu.Unlock()
			g.OnDLRReady(a, ready, at)
		},
		OnHookReady: func(ents []string) {
			if h := r.hooks.Load(); h != nil {
				h.HooksReady(ents)
			}
		},
		OnReplyReady: func(ents []string) {
			if h := r.hooks.Load(); h != nil {
				h.RepliesReady(ents)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	packages := policy.PackageTable{{ID: 1, FeeFen: 100, Included: 3, OverageFen: 10}}
	// The daemon's writers of the state file go through the store.
	r.pol, err = policy.New(db, policy.Config{BcryptCost: 4, DefaultTPS: 1000, Packages: packages,
		MaxWhitelist: o.maxWhitelist, MaxPendingWhitelist: o.maxPending, Write: r.store.Update})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
		{
			Enterprise: policy.Enterprise{Code: "A", Name: "甲公司", Signature: "【甲公司】", Package: 1, National: true},
			Users: []policy.NewUser{
				{Name: "甲", SystemID: "alice", Password: "secret1"},
				{Name: "甲二", SystemID: "al2", Password: "secret1", ShowSignature: true},
				{Name: "甲管", SystemID: "amy", Password: "secret1", Role: policy.RoleAdmin},
			},
			Whitelist: []string{uNumA1, uNumA2, uNumA3},
		},
		{
			Enterprise: policy.Enterprise{Code: "B", Name: "乙公司", Signature: "【乙公司】", Package: 1, National: true},
			Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret2", Role: policy.RoleAdmin}},
			Whitelist:  []string{uNumA1},
		},
		{
			Enterprise: policy.Enterprise{Code: "C", Name: "丙公司", Signature: "【丙公司】", Package: 1, National: true, TPS: 1},
			Users:      []policy.NewUser{{Name: "丙", SystemID: "carl", Password: "secret3"}},
			Whitelist:  []string{uNumA1},
		},
		{
			// Package 1 without a cap has no limit; D has no overage: 3 segments.
			Enterprise: policy.Enterprise{Code: "D", Name: "丁公司", Signature: "【丁公司】", Package: 1, National: true, NoOverage: true},
			Users:      []policy.NewUser{{Name: "丁", SystemID: "dave", Password: "secret4"}},
			Whitelist:  []string{uNumA1},
		},
		{
			Enterprise: policy.Enterprise{Code: "E", Name: "戊公司", Signature: "【戊公司】", Package: 1,
				National: true, OffNet: true, NoWhitelist: true, TPS: 100_000},
			Users: []policy.NewUser{{Name: "戊", SystemID: "erin", Password: "secret5"}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}, "A", []string{uNumPending}); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"alice", "al2", "amy", "bob", "carl", "dave", "erin"} {
		k, err := r.pol.IssueAPIKey(policy.OperatorActor("test"), sid)
		if err != nil {
			t.Fatal(err)
		}
		r.keys[sid] = k
	}
	window := cmp.Or(o.window, 10)
	g, err := gateway.New(gateway.Config{
		Upstreams: []gateway.UpstreamConfig{{
			Name: "sim", Addr: sl.Addr().String(), SystemID: "up", Password: "uppw",
			Binds: 1, Window: window, RespTimeout: 2 * time.Second,
			Segment: segment.Options{Concat: segment.ConcatUDH8},
		}},
		RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}, r.store, gateway.Rules{P: r.pol}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	gwMu.Lock()
	gw = g
	gwMu.Unlock()
	r.gw = g
	g.Start()
	r.rem, err = reminder.New(reminder.Config{DB: db, Gateway: g, Policy: r.pol, Tick: time.Hour, Write: r.store.Update})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = New(Config{Store: r.store, Policy: r.pol, Gateway: g, Reminders: r.rem, Clock: o.clock, MaxBatchJobs: o.maxJobs})
	r.srv.jobs.tmpDir = t.TempDir()
	hs := httptest.NewServer(r.srv.Handler())
	r.url = hs.URL
	t.Cleanup(func() {
		hs.Close()
		r.srv.Close()
		g.Stop()
		if err := r.store.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		_ = r.store.Close()
		_ = r.sim.Close()
		// Every spooled upload is removed once its job ended; a job the
		// stop cut short keeps its file, to resume at the next start.
		stopped := 0
		for _, j := range r.srv.batches().List() {
			if p := j.Progress(false); p.State == batch.JobFailed && p.Reason == "shutdown" {
				stopped++
			}
		}
		if left, _ := os.ReadDir(r.srv.jobs.tmpDir); len(left) != stopped {
			t.Errorf("temporary files left: %v; %d jobs stopped by the stop", left, stopped)
		}
	})
	// The reminders' scheduler, as the daemon runs it; stopped first.
	remCtx, remStop := context.WithCancel(context.Background())
	remDone := make(chan struct{})
	go func() { defer close(remDone); r.rem.Run(remCtx) }()
	t.Cleanup(func() { remStop(); <-remDone })
	return r
}

// client makes the batch tests' requests; it works for tests and
// benchmarks alike (userRig's helpers need a *testing.T).
type client struct {
	tb  testing.TB
	url string
}

func (r *userRig) c() client { return client{r.t, r.url} }

// upload sends a raw body; out is decoded from a 2xx answer.
func (c client) upload(method, path, token, contentType string, body []byte, out any) (int, []byte) {
	c.tb.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			c.tb.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, b
}

// multipartBody builds a multipart/form-data body with a file and fields.
func multipartBody(t testing.TB, fileName string, file []byte, fields map[string]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := mw.WriteField(k, fields[k]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", fileName)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(file)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

// startBatch uploads a file and returns the job id.
func (c client) startBatch(token, path, contentType string, body []byte) string {
	c.tb.Helper()
	var created BatchCreated
	code, b := c.upload("POST", path, token, contentType, body, &created)
	if code != http.StatusAccepted || created.JobID == "" {
		c.tb.Fatalf("POST %s: %d %s", path, code, b)
	}
	return created.JobID
}

func (c client) job(token, id string) BatchJob {
	c.tb.Helper()
	var j BatchJob
	if code, b := c.upload("GET", "/v1/batches/"+id, token, "", nil, &j); code != http.StatusOK {
		c.tb.Fatalf("GET /v1/batches/%s: %d %s", id, code, b)
	}
	return j
}

// waitJob polls a job until it is no longer running; seen gets every
// progress read while it ran.
func (c client) waitJob(token, id string, d time.Duration, seen func(BatchJob)) BatchJob {
	c.tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		j := c.job(token, id)
		if j.State != JobRunning {
			return j
		}
		if seen != nil {
			seen(j)
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			c.tb.Fatalf("job %s still running after %v: %+v", id, d, j)
		}
	}
}

func checkAccounted(t testing.TB, j BatchJob) {
	t.Helper()
	if j.RowsRead != j.Accepted+j.Refused+j.Unsent || j.ErrorCount != j.Refused {
		t.Errorf("rows not accounted for: %+v", j)
	}
}

func rowReasons(j BatchJob) map[int]string {
	m := map[int]string{}
	for _, e := range j.Errors {
		m[e.Row] = e.Reason
	}
	return m
}

// TestBatchCSV: a batch with planted bad rows reports each with its row
// number and reason; the good rows reach the SMSC signed; only the
// enterprise (and within it the owner or an admin) sees the job.
func TestBatchCSV(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
	key := r.keys["alice"]
	file := "号码,内容\n" +
		uNumA1 + ",第一条\n" + // 2
		",没有号码\n" + // 3: empty number
		uNumPending + ",待审批\n" + // 4: whitelist entry pending
		"12345,号码错\n" + // 5: not a number
		"\n" + // 6: blank: not a row
		uNumA2 + ",\n" + // 7: empty text
		uNumA2 + ",第二条\n" + // 8
		"+86 138-0013-8001,别的号\n" + // 9: not whitelisted either
		uNumA3 + ",第二条\n" + // 10: same text as row 8: one gateway call
		uNumA3 + "," + strings.Repeat("长", 600) + "\n" // 11: too long
	ct, body := multipartBody(t, "批量.csv", []byte(file), nil)
	id := r.c().startBatch(key, "/v1/batches", ct, body)
	j := r.c().waitJob(key, id, 20*time.Second, nil)
	if j.State != JobDone || j.Kind != "batch" || j.File != "批量.csv" || j.Account != "alice" ||
		j.RowsRead != 9 || j.Accepted != 3 || j.Refused != 6 || j.Unsent != 0 || j.FinishedAt.IsZero() {
		t.Fatalf("job %+v", j)
	}
	checkAccounted(t, j)
	want := map[int]string{3: "invalid_number", 4: "not_whitelisted", 5: "invalid_number", 7: "empty_text", 9: "not_whitelisted", 11: "too_long"}
	if got := rowReasons(j); !reflect.DeepEqual(got, want) {
		t.Fatalf("row errors %+v", j.Errors)
	}
	for _, e := range j.Errors {
		switch e.Row {
		case 4:
			if e.Number != uNumPending || e.Code != "0x00000400" || !strings.Contains(e.Message, "pending") {
				t.Errorf("row 4: %+v", e)
			}
		case 3:
			if e.Number != "" || e.Message == "" {
				t.Errorf("row 3: %+v", e)
			}
		}
	}
	if !slices.IsSortedFunc(j.Errors, func(a, b RowError) int { return a.Row - b.Row }) {
		t.Errorf("errors not by row: %+v", j.Errors)
	}
	r.waitReceived(uNumA1, "【甲公司】第一条", 10*time.Second)
	r.waitReceived(uNumA2, "【甲公司】第二条", 10*time.Second)
	r.waitReceived(uNumA3, "【甲公司】第二条", 10*time.Second)
	for _, n := range []string{uNumPending, "13800138001"} {
		if got := r.received(n); len(got) != 0 {
			t.Errorf("refused row reached the SMSC: %s %q", n, got)
		}
	}
	// The accepted rows are messages of the outbox like any other.
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/messages", key, nil, &page)
	if len(page.Messages) != 3 {
		t.Errorf("outbox: %d messages", len(page.Messages))
	}

	// Visibility: the owner and its admin; not another user, not another
	// enterprise (even its admin) — they cannot tell the job exists.
	r.must(http.StatusOK, "GET", "/v1/batches/"+id, r.keys["amy"], nil, nil)
	for _, other := range []string{"al2", "bob"} {
		r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/batches/"+id, r.keys[other], nil)
		r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/batches/"+id, r.keys[other], nil)
		var l BatchJobList
		r.must(http.StatusOK, "GET", "/v1/batches", r.keys[other], nil, &l)
		if len(l.Jobs) != 0 {
			t.Errorf("%s lists %+v", other, l.Jobs)
		}
	}
	var l BatchJobList
	r.must(http.StatusOK, "GET", "/v1/batches", r.keys["amy"], nil, &l)
	if len(l.Jobs) != 1 || l.Jobs[0].ID != id || l.Jobs[0].Errors != nil || l.Jobs[0].Accepted != 3 {
		t.Errorf("admin's list %+v", l.Jobs)
	}
	r.wantError(http.StatusConflict, "finished", "DELETE", "/v1/batches/"+id, key, nil)
	r.wantError(http.StatusNotFound, "not_found", "GET", "/v1/batches/12345", key, nil)
}

// xlsxFile writes rows to an XLSX workbook in memory.
func xlsxFile(t testing.TB, rows [][]any) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i, row := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBatchTemplate: a templated XLSX send fills each row's fields; a field
// naming no column is refused before anything is sent.
func TestBatchTemplate(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
	key := r.keys["al2"] // shows its user signature
	sheet := xlsxFile(t, [][]any{
		{"姓名", "手机号", "金额"},
		{"张三", 13712345678, 12.5}, // 2: the number as a number cell
		{"李四", uNumA2, ""},        // 3: empty field
		{"王五", uNumA3, 30},        // 4
		{"赵六", "", 1},             // 5: empty number
	})
	tmpl := "{姓名}您好，本月话费 {金额} 元{{不含优惠}}"
	ct, body := multipartBody(t, "bill.xlsx", sheet, map[string]string{"template": tmpl, "number_column": "手机号"})
	id := r.c().startBatch(key, "/v1/batches", ct, body)
	j := r.c().waitJob(key, id, 20*time.Second, nil)
	if j.State != JobDone || j.Kind != "template" || j.RowsRead != 4 || j.Accepted != 2 || j.Refused != 2 {
		t.Fatalf("job %+v", j)
	}
	checkAccounted(t, j)
	if got := rowReasons(j); !reflect.DeepEqual(got, map[int]string{3: "empty_field", 5: "invalid_number"}) {
		t.Fatalf("row errors %+v", j.Errors)
	}
	if !strings.Contains(j.Errors[0].Message, "{金额}") {
		t.Errorf("empty field message %q", j.Errors[0].Message)
	}
	r.waitReceived(uNumA1, "【甲公司】张三您好，本月话费 12.5 元{不含优惠}——甲二", 10*time.Second)
	r.waitReceived(uNumA3, "【甲公司】王五您好，本月话费 30 元{不含优惠}——甲二", 10*time.Second)
	if got := r.received(uNumA2); len(got) != 0 {
		t.Errorf("row with an empty field sent: %q", got)
	}

	// The raw body with query parameters, and the default number column.
	csvFile := "手机号码,姓名\n" + uNumA2 + ",李四\n"
	id = r.c().startBatch(key, "/v1/batches?template="+url.QueryEscape("{姓名}，明天开会"), "text/csv", []byte(csvFile))
	if j := r.c().waitJob(key, id, 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("raw CSV template job %+v", j)
	}
	r.waitReceived(uNumA2, "【甲公司】李四，明天开会——甲二", 10*time.Second)

	// Refused before anything is sent: unknown field or column, bad template.
	before := len(r.sim.Received())
	noNumber := xlsxFile(t, [][]any{{"名字", "电话号"}, {"张三", uNumA1}})
	for _, tc := range []struct {
		sheet  []byte
		fields map[string]string
		reason string
		msg    string
	}{
		{sheet, map[string]string{"template": "{姓名}，您的余额为{余额}", "number_column": "手机号"}, "unknown_field", "{余额}"},
		{sheet, map[string]string{"template": "{姓名}", "number_column": "手机"}, "unknown_field", "number_column"},
		{sheet, map[string]string{"template": "{姓名"}, "invalid", "not closed"},
		{sheet, map[string]string{"template": "没有字段"}, "invalid", "no {column}"},
		{noNumber, map[string]string{"template": "{名字}"}, "invalid", "number_column is required"},
		{sheet, map[string]string{"template": "x{姓名}", "colour": "red"}, "invalid", "unknown field"},
		{xlsxFile(t, [][]any{{"姓名", "手机号"}}), map[string]string{"template": "x{姓名}"}, "invalid", "no data row"},
	} {
		ct, body := multipartBody(t, "bill.xlsx", tc.sheet, tc.fields)
		code, b := r.c().upload("POST", "/v1/batches", key, ct, body, nil)
		var e errorBody
		_ = json.Unmarshal(b, &e)
		if code != http.StatusBadRequest || e.Error.Reason != tc.reason || !strings.Contains(e.Error.Message, tc.msg) {
			t.Errorf("%v: %d %s", tc.fields, code, b)
		}
	}
	var l BatchJobList
	r.must(http.StatusOK, "GET", "/v1/batches", key, nil, &l)
	if len(l.Jobs) != 2 {
		t.Errorf("refused requests made jobs: %+v", l.Jobs)
	}
	if n := len(r.sim.Received()); n != before {
		t.Errorf("refused requests sent %d messages", n-before)
	}
}

// TestBatchCancel: a running job stops at DELETE; what it accepted stays
// accepted and is sent. Also the per-enterprise bound on running jobs.
func TestBatchCancel(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
	key := r.keys["carl"] // C: one submission per second
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "%s,第%d条\n", uNumA1, i) // all texts differ: one submission per row
	}
	file := []byte(b.String())
	id := r.c().startBatch(key, "/v1/batches", "text/csv", file)

	// Wait until the job has accepted a row, then cancel it.
	deadline := time.Now().Add(20 * time.Second)
	for r.c().job(key, id).Accepted == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing accepted")
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	var j BatchJob
	r.must(http.StatusOK, "DELETE", "/v1/batches/"+id, key, nil, &j)
	if j.State != JobCancelled || j.Accepted == 0 || j.Accepted >= 200 || j.Unsent == 0 || j.RowsRead == 0 || j.Reason != "" {
		t.Fatalf("cancelled job %+v", j)
	}
	checkAccounted(t, j)
	// It stays so; cancelling again answers it again.
	var again BatchJob
	r.must(http.StatusOK, "DELETE", "/v1/batches/"+id, key, nil, &again)
	if again.State != JobCancelled || again.Accepted != j.Accepted || again.Unsent != j.Unsent || again.RowsRead != j.RowsRead {
		t.Fatalf("cancelled again %+v, was %+v", again, j)
	}
	// The accepted rows, and only they, are in the outbox; they reach the
	// SMSC (in file order: the job's submissions start in row order).
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/messages?limit=1000", key, nil, &page)
	if len(page.Messages) != j.Accepted {
		t.Errorf("outbox has %d messages, the job accepted %d", len(page.Messages), j.Accepted)
	}
	r.waitReceived(uNumA1, "【丙公司】第0条", 10*time.Second)

	// Two jobs of an enterprise at a time; another enterprise is not held up.
	id2 := r.c().startBatch(key, "/v1/batches", "text/csv", file)
	id3 := r.c().startBatch(key, "/v1/batches", "text/csv", file)
	e := r.wantError(http.StatusTooManyRequests, "too_many_jobs", "POST", "/v1/batches?format=csv", key, nil)
	if !strings.Contains(e.Error.Message, "at most 2") {
		t.Errorf("too many jobs: %+v", e)
	}
	idA := r.c().startBatch(r.keys["alice"], "/v1/batches", "text/csv", []byte(uNumA1+",x\n"))
	if j := r.c().waitJob(r.keys["alice"], idA, 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("A's job %+v", j)
	}
	for _, id := range []string{id2, id3} {
		r.must(http.StatusOK, "DELETE", "/v1/batches/"+id, key, nil, &j)
		if j.State != JobCancelled {
			t.Errorf("job %s: %+v", id, j)
		}
		checkAccounted(t, j)
	}
	// A slot is free again.
	id4 := r.c().startBatch(key, "/v1/batches", "text/csv", []byte(uNumA1+",最后\n"))
	if j := r.c().waitJob(key, id4, 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("job after the others: %+v", j)
	}
}

// TestBatchRequests: what is refused at the door, and the downloadable
// templates (which can be uploaded as they are).
func TestBatchRequests(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond}})
	key := r.keys["alice"]
	r.wantError(http.StatusUnsupportedMediaType, "unsupported_media_type", "POST", "/v1/batches", key, map[string]any{})
	code, b := r.c().upload("POST", "/v1/batches", key, "application/vnd.ms-excel", []byte("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"), nil)
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("XLS: %d %s", code, b)
	}
	code, b = r.c().upload("POST", "/v1/batches?format=xlsx", key, "application/octet-stream", []byte("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"), nil)
	if code != http.StatusUnsupportedMediaType || !strings.Contains(string(b), "XLS") {
		t.Errorf("XLS as octet-stream: %d %s", code, b)
	}
	for name, body := range map[string]string{"empty": "", "header only": "号码,内容\n", "blank": "\n,\n"} {
		code, b := r.c().upload("POST", "/v1/batches", key, "text/csv", []byte(body), nil)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, code, b)
		}
	}
	code, b = r.c().upload("POST", "/v1/batches", key, XLSXContentType, []byte("PK\x03\x04 not really"), nil)
	if code != http.StatusBadRequest || !strings.Contains(string(b), "cannot be read") {
		t.Errorf("broken XLSX: %d %s", code, b)
	}
	for _, q := range []string{"send_at=tomorrow", "source=abc", "receipt=maybe", "number_column=x", "colour=red"} {
		code, b := r.c().upload("POST", "/v1/batches?"+q, key, "text/csv", []byte(uNumA1+",x\n"), nil)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, code, b)
		}
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/batches", "", nil)

	// The templates.
	resp, err := http.Get(r.url + "/v1/batches/template.csv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("template without a key: %d", resp.StatusCode)
	}
	_, csvT := r.call("GET", "/v1/batches/template.csv", key, nil, nil)
	if !bytes.HasPrefix(csvT, []byte("\ufeff号码,内容\r\n13800138000,")) {
		t.Errorf("CSV template %q", csvT)
	}
	code, xlsxT := r.call("GET", "/v1/batches/template.xlsx", key, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("XLSX template: %d", code)
	}
	sr, err := sheet.Open(bytes.NewReader(xlsxT), sheet.Options{Format: sheet.XLSX})
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for {
		row, err := sr.Next()
		if err != nil {
			break
		}
		rows = append(rows, row.Cells)
	}
	sr.Close()
	if len(rows) != 3 || !slices.Equal(rows[0], []string{"号码", "内容"}) || rows[1][0] != "13800138000" {
		t.Errorf("XLSX template rows %q", rows)
	}
	for _, tmpl := range []struct {
		ct   string
		body []byte
	}{{"text/csv", csvT}, {XLSXContentType, xlsxT}} {
		id := r.c().startBatch(key, "/v1/batches", tmpl.ct, tmpl.body)
		j := r.c().waitJob(key, id, 20*time.Second, nil)
		// The examples: 13800138000 is on A's whitelist, 13800138001 is not.
		if j.RowsRead != 2 || j.Accepted != 1 || j.Refused != 1 || rowReasons(j)[3] != "not_whitelisted" {
			t.Errorf("template %s as a batch: %+v", tmpl.ct, j)
		}
	}
}

// bigXLSX writes a batch of n rows (distinct texts: one submission each,
// the worst case) with excelize's StreamWriter.
func bigXLSX(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.xlsx")
	f := excelize.NewFile()
	sw, err := f.NewStreamWriter("Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.SetRow("A1", []any{"号码", "内容"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		cell, _ := excelize.CoordinatesToCellName(1, i+2)
		num := fmt.Sprintf("138%08d", 130000+i) // China Mobile, 广东
		if err := sw.SetRow(cell, []any{num, fmt.Sprintf("您的验证码是 %06d，五分钟内有效。", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return path
}

// heapSampler records the peak live heap while it runs.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
	base uint64
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{}), base: ms.HeapAlloc}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
			select {
			case <-tick.C:
			case <-h.stop:
				return
			}
		}
	}()
	return h
}

func (h *heapSampler) end() (base, peak uint64) {
	close(h.stop)
	<-h.done
	return h.base, h.peak.Load()
}

// runBigBatch uploads an n-row XLSX batch for erin and waits for it; it
// checks that progress is visible while the job runs.
func runBigBatch(t testing.TB, r *userRig, path string, n int) (BatchJob, time.Duration, uint64, uint64) {
	t.Helper()
	c := client{t, r.url}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := r.keys["erin"]
	h := startHeapSampler()
	start := time.Now()
	id := c.startBatch(key, "/v1/batches", XLSXContentType, data)
	data = nil
	var progress []int
	j := c.waitJob(key, id, 10*time.Minute, func(j BatchJob) {
		if j.RowsRead > 0 && j.RowsRead < n && (len(progress) == 0 || j.RowsRead > progress[len(progress)-1]) {
			progress = append(progress, j.RowsRead)
		}
	})
	took := time.Since(start)
	base, peak := h.end()
	if j.State != JobDone || j.RowsRead != n || j.Accepted != n || j.Refused != 0 {
		t.Fatalf("job %+v", j)
	}
	if len(progress) < 2 {
		t.Errorf("progress seen while running: %v (want rows_read rising before done)", progress)
	}
	return j, took, base, peak
}

// TestBatchLarge: a 10,000-row XLSX completes in bounded memory with its
// progress visible (the 100,000-row case is BenchmarkBatch100k; set
// QXTD_BATCH_ROWS=100000 to run it here).
func TestBatchLarge(t *testing.T) {
	n := 10_000
	if v := os.Getenv("QXTD_BATCH_ROWS"); v != "" {
		fmt.Sscan(v, &n)
	}
	if testing.Short() {
		n = 2000
	}
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}, window: 100})
	path := bigXLSX(t, n)
	_, took, base, peak := runBigBatch(t, r, path, n)
	t.Logf("%d rows in %v (%.0f rows/s); heap: %.1f MiB before, peak %.1f MiB (+%.1f MiB)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(),
		float64(base)/(1<<20), float64(peak)/(1<<20), (float64(peak)-float64(base))/(1<<20))
}

// BenchmarkBatch100k: a 100,000-row XLSX batch through the whole daemon;
// reports its duration and the peak live heap (HeapAlloc sampled every 20
// ms) above the heap before the upload.
//
//	go test ./api -run '^$' -bench Batch100k -benchtime 1x
func BenchmarkBatch100k(b *testing.B) {
	const n = 100_000
	path := bigXLSX(b, n)
	for b.Loop() {
		r := newBulkRig(b, rigOptions{sim: smpp.SimOptions{}, window: 100})
		_, took, base, peak := runBigBatch(b, r, path, n)
		b.ReportMetric(took.Seconds(), "s/batch")
		b.ReportMetric(float64(n)/took.Seconds(), "rows/s")
		b.ReportMetric((float64(peak)-float64(base))/(1<<20), "peak-heap-MiB")
	}
}

// TestBatchSchemas: the OpenAPI schemas of the batch and contact types are
// their JSON fields.
func TestBatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	checkSchemas(t, doc, map[string]any{
		"BatchCreated":  BatchCreated{},
		"BatchJob":      BatchJob{},
		"BatchJobList":  BatchJobList{},
		"RowError":      RowError{},
		"ContactIn":     ContactIn{},
		"Contact":       Contact{},
		"ContactGroup":  ContactGroup{},
		"ContactList":   ContactList{},
		"ContactImport": ContactImport{},
	})
}

// TestBatchGlobalLimit: the bound on running jobs over all enterprises.
func TestBatchGlobalLimit(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}, maxJobs: 1})
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "%s,第%d条\n", uNumA1, i)
	}
	id := r.c().startBatch(r.keys["carl"], "/v1/batches", "text/csv", []byte(b.String())) // C: 1 a second
	e := r.wantError(http.StatusTooManyRequests, "too_many_jobs", "POST", "/v1/batches?format=csv", r.keys["alice"], nil)
	if !strings.Contains(e.Error.Message, "at most 1") {
		t.Errorf("global bound: %+v", e)
	}
	r.must(http.StatusOK, "DELETE", "/v1/batches/"+id, r.keys["carl"], nil, nil)
	id = r.c().startBatch(r.keys["alice"], "/v1/batches", "text/csv", []byte(uNumA1+",x\n"))
	if j := r.c().waitJob(r.keys["alice"], id, 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("job %+v", j)
	}
	// Close: running jobs stop (failed: shutdown) and no new one starts.
	id = r.c().startBatch(r.keys["carl"], "/v1/batches", "text/csv", []byte(b.String()))
	r.srv.Close()
	j := r.c().job(r.keys["carl"], id)
	if j.State != JobFailed || j.Reason != "shutdown" || j.DetailZH != "服务在任务完成前停止：重启后任务继续" {
		t.Errorf("job after Close: %+v", j)
	}
	checkAccounted(t, j)
	r.wantError(http.StatusServiceUnavailable, "unavailable", "POST", "/v1/batches?format=csv", r.keys["alice"], nil)
}

// TestBatchUnreadableRow: a CSV file whose third row cannot be read (it
// is past the sheet's row limit, 1 MiB): the job sends the two rows
// before it or counts them unsent, and fails invalid, saying from which
// row in Chinese too (detail_zh).
func TestBatchUnreadableRow(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{}})
	file := uNumA1 + ",一\n" + uNumA1 + ",二\n" + uNumA1 + "," + strings.Repeat("长", 400_000) + "\n" + uNumA1 + ",四\n"
	id := r.c().startBatch(r.keys["alice"], "/v1/batches", "text/csv", []byte(file))
	j := r.c().waitJob(r.keys["alice"], id, 20*time.Second, nil)
	if j.State != JobFailed || j.Reason != "invalid" || j.Accepted+j.Unsent != 2 || j.Refused != 0 {
		t.Fatalf("job %+v, want failed invalid with its 2 rows accepted or unsent", j)
	}
	if !strings.Contains(j.Message, "row 3") || !strings.HasPrefix(j.DetailZH, "文件第 3 行起无法读取") {
		t.Errorf("message %q, detail_zh %q: want row 3 in both", j.Message, j.DetailZH)
	}
}

package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

const opsToken = "ops-secret"

// opsEnv is a store, a policy on its file and the API over both.
type opsEnv struct {
	t     *testing.T
	store *queue.Store
	pol   *policy.Policy
	api   *Server
	srv   *httptest.Server
	clock *opsClock
	smsc  int
}

type opsClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *opsClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *opsClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// opsPackages: small tiers so overage shows with few messages.
var opsPackages = policy.PackageTable{
	{ID: 1, FeeFen: 20_00, Included: 5, OverageFen: 10},
	{ID: 2, FeeFen: 50_00, Included: 100, OverageFen: 9},
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	// One file, two stores on it, as the daemon has them.
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	st, err := queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	clk := &opsClock{now: time.Date(2026, 10, 15, 0, 0, 0, 0, shanghai)}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, Packages: opsPackages, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{AdminToken: opsToken, Store: st, Policy: pol})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := st.Check(); err != nil && !errors.Is(err, queue.ErrClosed) {
			t.Errorf("check: %v", err)
		}
		st.Close()
	})
	return &opsEnv{t: t, store: st, pol: pol, api: a, srv: srv, clock: clk}
}

func (e *opsEnv) enterprise(code, name string, pkg int) {
	e.t.Helper()
	_, err := e.pol.CreateEnterprise(policy.OperatorActor("test"), policy.Enterprise{
		Code: code, Name: name, Signature: "【" + name + "】", Package: pkg})
	if err != nil {
		e.t.Fatal(err)
	}
}

// send stores a message of ent accepted at at and drives its parts to
// states (Accepted: left; Rejected: failed before submission; others:
// submitted, then a DLR at doneAt).
func (e *opsEnv) send(ent string, at, doneAt time.Time, states ...queue.State) *queue.Message {
	e.t.Helper()
	ctx := context.Background()
	m := &queue.Message{Account: strings.ToLower(ent) + "-user", Enterprise: ent, Source: "10657", Dest: "13800138000",
		Upstream: "up1", Text: "【测试】hi", AcceptedAt: at}
	for range states {
		m.Parts = append(m.Parts, queue.Part{Body: []byte{1}})
	}
	if err := e.store.Enqueue(ctx, m); err != nil {
		e.t.Fatal(err)
	}
	for i, st := range states {
		k := queue.Key{ID: m.ID, Part: uint16(i)}
		switch st {
		case queue.StateAccepted:
		case queue.StateRejected:
			if err := e.store.Fail(ctx, k, st, "0x00000045", doneAt); err != nil {
				e.t.Fatal(err)
			}
		default:
			e.smsc++
			id := fmt.Sprintf("x%d", e.smsc)
			if err := e.store.Submitted(ctx, k, id, at); err != nil {
				e.t.Fatal(err)
			}
			if st == queue.StateSubmitted {
				continue
			}
			if _, err := e.store.ApplyDLR(ctx, queue.DLR{Upstream: "up1", SMSCID: id, State: st, DoneAt: doneAt}); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	return m
}

func (e *opsEnv) get(path string, q url.Values) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func opsBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestOpsNeedToken(t *testing.T) {
	e := newOpsEnv(t)
	for _, path := range []string{"/admin/v1/export/dlr?from=2026-11-01&to=2026-12-01", "/admin/v1/bill?month=2026-11", "/admin/v1/backup"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without token: %d", path, resp.StatusCode)
		}
	}
}

// TestOpsBillEqualsExport: for every enterprise, the bill's delivered
// segments equal the billed rows of the month's DLR export, over a mix of
// delivered, failed and pending parts, receipts arriving next month and
// messages on both sides of the month's boundaries; the amounts follow the
// package.
func TestOpsBillEqualsExport(t *testing.T) {
	e := newOpsEnv(t)
	e.enterprise("G1", "一号公司", 1)
	e.enterprise("G2", "二号公司", 2)
	e.enterprise("G3", "三号公司", 1) // no traffic: owes the fee
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	dec := nov.AddDate(0, 1, 0)
	D, U, R, A, S := queue.StateDelivered, queue.StateUndeliverable, queue.StateRejected, queue.StateAccepted, queue.StateSubmitted

	e.send("G1", nov.Add(-time.Second), nov, D, D)                   // October
	e.send("G1", nov, nov.Add(time.Minute), D, D, U)                 // first instant of November
	e.send("G1", nov.Add(time.Hour), nov.Add(2*time.Hour), D, R)     //
	e.send("G1", nov.Add(48*time.Hour), dec.Add(time.Hour), D, D, D) // receipt in December: November's
	e.send("G1", nov.Add(72*time.Hour), nov, A, S)                   // pending
	e.send("G2", nov.Add(5*time.Hour), nov.Add(6*time.Hour), D, U, queue.StateExpired)
	e.send("G2", dec.Add(-time.Nanosecond), dec, D)         // last instant of November
	e.send("G2", dec, dec.Add(time.Minute), D, D)           // December
	e.send("G9", nov.Add(time.Hour), nov.Add(time.Hour), D) // not configured
	// An enterprise created after November owes nothing for it.
	e.clock.Set(dec.Add(24 * time.Hour))
	e.enterprise("G4", "四号公司", 1)

	resp := e.get("/admin/v1/bill", url.Values{"month": {"2026-11"}})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("bill: %d %s", resp.StatusCode, opsBody(t, resp))
	}
	var bills []BillLine
	if err := json.NewDecoder(resp.Body).Decode(&bills); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bills {
		got = append(got, fmt.Sprintf("%s %d+%d=%s(%s) delivered %d pending %d %s", b.Enterprise, b.FeeFen, b.OverageFen,
			b.TotalYuan, strconv.FormatInt(b.TotalFen, 10), b.Delivered, b.Pending, b.Error))
	}
	want := []string{
		"G1 2000+10=20.10(2010) delivered 6 pending 2 ", // 6 delivered, 5 included, 1 × 0.10
		"G2 5000+0=50.00(5000) delivered 2 pending 0 ",
		"G3 2000+0=20.00(2000) delivered 0 pending 0 ",
		"G9 0+0=0.00(0) delivered 1 pending 0 enterprise not configured",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bills:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if g1 := bills[0]; g1.Name != "一号公司" || g1.Month != "2026-11" || g1.Package != 1 || g1.Included != 5 ||
		g1.Overage != 1 || g1.OverageRateFen != 10 || g1.FeeYuan != "20.00" || g1.OverageYuan != "0.10" {
		t.Errorf("G1 bill: %+v", g1)
	}

	// The month's export, both formats: billed rows per enterprise.
	for _, format := range []string{"csv", "jsonl"} {
		resp := e.get("/admin/v1/export/dlr", url.Values{"from": {"2026-11-01"}, "to": {"2026-12-01"}, "format": {format}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("export: %d %s", resp.StatusCode, opsBody(t, resp))
		}
		billed := map[string]int64{}
		rows := 0
		if format == "csv" {
			recs, err := csv.NewReader(resp.Body).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(recs[0], ",") != strings.Join(queue.ExportColumns, ",") {
				t.Errorf("CSV header %v", recs[0])
			}
			for _, r := range recs[1:] {
				rows++
				if r[14] == "true" {
					billed[r[3]]++
				}
			}
		} else {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var r struct {
					Enterprise string `json:"enterprise"`
					Billed     bool   `json:"billed"`
				}
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				rows++
				if r.Billed {
					billed[r.Enterprise]++
				}
			}
		}
		if tr := resp.Trailer.Get(RowsTrailer); tr != strconv.Itoa(rows) {
			t.Errorf("%s: trailer %q, read %d rows", format, tr, rows)
		}
		if rows != 15 { // G1 3+2+3+2, G2 3+1, G9 1
			t.Errorf("%s: %d rows in November, want 15", format, rows)
		}
		for _, b := range bills {
			if billed[b.Enterprise] != b.Delivered {
				t.Errorf("%s: %s export billed %d, bill delivered %d", format, b.Enterprise, billed[b.Enterprise], b.Delivered)
			}
		}
	}

	resp = e.get("/admin/v1/bill", url.Values{"month": {"2026-11"}, "enterprise": {"G2"}})
	bills = nil
	if err := json.NewDecoder(resp.Body).Decode(&bills); err != nil || len(bills) != 1 || bills[0].Delivered != 2 {
		t.Errorf("bill of G2: %v %+v", err, bills)
	}
	for q, code := range map[string]int{
		"month=2026-13":                http.StatusBadRequest,
		"month=2026-1":                 http.StatusBadRequest,
		"":                             http.StatusBadRequest,
		"month=2026-11&enterprise=G77": http.StatusNotFound,
		"month=2026-12&enterprise=G4":  http.StatusOK,
	} {
		v, _ := url.ParseQuery(q)
		if resp := e.get("/admin/v1/bill", v); resp.StatusCode != code {
			t.Errorf("bill?%s: %d, want %d", q, resp.StatusCode, code)
		}
	}
}

func TestOpsExportParams(t *testing.T) {
	e := newOpsEnv(t)
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	e.send("G1", nov.Add(time.Hour), nov.Add(2*time.Hour), queue.StateDelivered)
	e.send("G2", nov.Add(time.Hour), nov.Add(2*time.Hour), queue.StateDelivered, queue.StateUndeliverable)

	resp := e.get("/admin/v1/export/dlr", url.Values{"from": {"2026-11-01T00:00:00+08:00"}, "to": {"2026-11-02"},
		"enterprise": {"G2"}, "format": {"jsonl"}})
	body := opsBody(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), `filename="dlr-20261101T000000-20261102T000000.jsonl"`) {
		t.Errorf("jsonl export: %d %v", resp.StatusCode, resp.Header)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"enterprise":"G2","account":"g2-user"`) ||
		!strings.Contains(lines[0], `"accepted_at":"2026-11-01T01:00:00.000+08:00"`) || !strings.Contains(lines[1], `"billed":false`) {
		t.Errorf("jsonl body:\n%s", body)
	}
	resp = e.get("/admin/v1/export/dlr", url.Values{"from": {"2026-12-01"}, "to": {"2027-01-01"}})
	if body := opsBody(t, resp); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		body != strings.Join(queue.ExportColumns, ",")+"\n" || resp.Trailer.Get(RowsTrailer) != "0" {
		t.Errorf("empty CSV export: %d %q trailer %q", resp.StatusCode, body, resp.Trailer.Get(RowsTrailer))
	}
	resp = e.get("/admin/v1/export/dlr", url.Values{"from": {"2026-12-01"}, "to": {"2027-01-01"}, "format": {"jsonl"}})
	if body := opsBody(t, resp); resp.StatusCode != http.StatusOK || body != "" || resp.Trailer.Get(RowsTrailer) != "0" {
		t.Errorf("empty JSONL export: %d %q trailer %q", resp.StatusCode, body, resp.Trailer.Get(RowsTrailer))
	}
	for _, q := range []string{
		"to=2026-12-01", "from=2026-11-01", "from=yesterday&to=2026-12-01", "from=2026-12-01&to=2026-11-01",
		"from=2026-11-01&to=2026-12-01&format=xml",
	} {
		v, _ := url.ParseQuery(q)
		resp := e.get("/admin/v1/export/dlr", v)
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); resp.StatusCode != http.StatusBadRequest || err != nil || eb.Error.Reason != "invalid" {
			t.Errorf("export?%s: %d %v %+v", q, resp.StatusCode, err, eb)
		}
	}
}

// failAfter is a ResponseWriter whose body writes fail after n bytes.
type failAfter struct {
	httptest.ResponseRecorder
	n int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("client went away")
	}
	f.n -= len(p)
	return f.ResponseRecorder.Write(p)
}

// TestOpsExportCutShort: an export that fails after its first bytes aborts
// the response (no trailer: the client cannot take it for complete); one
// that fails before gets an error status.
func TestOpsExportCutShort(t *testing.T) {
	e := newOpsEnv(t)
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	var batch []*queue.Message
	for i := range 3000 {
		batch = append(batch, &queue.Message{Account: "a", Enterprise: "G1", Dest: "1", Upstream: "up1",
			AcceptedAt: nov.Add(time.Duration(i) * time.Second), Parts: []queue.Part{{Body: []byte{1}}}})
	}
	if err := e.store.Enqueue(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/v1/export/dlr?from=2026-11-01&to=2026-12-01", nil)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	w := &failAfter{ResponseRecorder: *httptest.NewRecorder(), n: 100 << 10}
	func() {
		defer func() {
			if r := recover(); r != http.ErrAbortHandler {
				t.Errorf("handler ended with %v, want http.ErrAbortHandler", r)
			}
		}()
		e.api.Handler().ServeHTTP(w, req)
	}()
	if w.Code != http.StatusOK || w.Header().Get(RowsTrailer) != "" {
		t.Errorf("cut short: %d, trailer %q", w.Code, w.Header().Get(RowsTrailer))
	}

	e.store.Close() // nothing can be read: an error status, not a truncated 200
	resp := e.get("/admin/v1/export/dlr", url.Values{"from": {"2026-11-01"}, "to": {"2026-12-01"}})
	if body := opsBody(t, resp); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "store closed") {
		t.Errorf("export of a closed store: %d %s", resp.StatusCode, body)
	}
}

// TestOpsBackup downloads a backup while messages are being accepted: the
// file opens as a store, passes Check, holds every message acknowledged
// before the request and the policy data of the same file.
func TestOpsBackup(t *testing.T) {
	e := newOpsEnv(t)
	e.enterprise("G1", "一号公司", 1)
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	var before []uint64
	for i := range 50 {
		before = append(before, e.send("G1", nov.Add(time.Duration(i)*time.Minute), nov.Add(time.Hour), queue.StateDelivered).ID)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // keep writing during the backup
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := &queue.Message{Account: "a", Enterprise: "G1", Dest: "1", Upstream: "up1", Parts: []queue.Part{{Body: []byte{1}}}}
			if err := e.store.Enqueue(context.Background(), m); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	resp := e.get("/admin/v1/backup", nil)
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, resp.Body)
	f.Close()
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		resp.ContentLength != n || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="qxtd-`) {
		t.Fatalf("backup: %d, %d bytes, %v", resp.StatusCode, n, resp.Header)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(e.store.Path()), ".qxtd-backup-*")); len(left) != 0 {
		t.Errorf("spool files left: %v", left)
	}

	if err := queue.VerifyBackup(path); err != nil {
		t.Fatal(err)
	}
	db, err := queue.OpenDB(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(); err != nil {
		t.Fatalf("check of the backup: %v", err)
	}
	for _, id := range before {
		if m, err := c.Get(id); err != nil || m.Parts[0].State != queue.StateDelivered {
			t.Fatalf("message %d in the backup: %v", id, err)
		}
	}
	if _, charged := c.Usage("G1", "2026-11"); charged != 50 {
		t.Errorf("usage in the backup: %d", charged)
	}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, Packages: opsPackages})
	if err != nil {
		t.Fatal(err)
	}
	if ents := pol.Enterprises(policy.OperatorActor("t")); len(ents) != 1 || ents[0].Code != "G1" {
		t.Errorf("policy data in the backup: %+v", ents)
	}
}

// TestOpsExportAfter: a billing job polling with the cursor over real HTTP
// gets disjoint rows whose union is every final part, CSV or JSON Lines;
// parts still in flight come in the poll after they become final.
func TestOpsExportAfter(t *testing.T) {
	e := newOpsEnv(t)
	ctx := context.Background()
	cl := &Client{Base: e.srv.URL, Token: opsToken, HTTP: e.srv.Client()}
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, shanghai)
	a := e.send("G1", nov, nov.Add(time.Hour), queue.StateDelivered, queue.StateSubmitted)
	e.send("G2", nov, nov.Add(time.Hour), queue.StateRejected)
	e.send("G1", nov, nov.Add(time.Hour), queue.StateAccepted)

	// csvParts reads a CSV export into its (id, part) keys.
	csvParts := func(body string) []queue.Key {
		t.Helper()
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil || len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(queue.ExportColumns, ",") {
			t.Fatalf("CSV export %q: %v", body, err)
		}
		var keys []queue.Key
		for _, r := range recs[1:] {
			id, _ := strconv.ParseUint(r[0], 10, 64)
			part, _ := strconv.Atoi(r[1])
			keys = append(keys, queue.Key{ID: id, Part: uint16(part - 1)})
		}
		return keys
	}
	var first strings.Builder
	res1, err := cl.ExportDLRAfter(ctx, "", ExportQuery{}, &first)
	if err != nil || res1.Rows != 2 || res1.Purged != 0 || res1.Next == "" {
		t.Fatalf("first poll: %+v %v", res1, err)
	}
	// Meanwhile: the in-flight part gets its receipt, a new message fails.
	if _, err := e.store.ApplyDLR(ctx, queue.DLR{Upstream: "up1", SMSCID: fmt.Sprintf("x%d", e.smsc), State: queue.StateUndeliverable, DoneAt: nov.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.send("G2", nov.Add(time.Hour), nov.Add(2*time.Hour), queue.StateRejected)
	var second strings.Builder
	res2, err := cl.ExportDLRAfter(ctx, res1.Next, ExportQuery{}, &second)
	if err != nil || res2.Rows != 2 || res2.Next == res1.Next {
		t.Fatalf("second poll: %+v %v", res2, err)
	}
	seen := map[queue.Key]int{}
	for _, k := range append(csvParts(first.String()), csvParts(second.String())...) {
		seen[k]++
	}
	var want int
	for id := a.ID; id <= a.ID+3; id++ {
		m, err := e.store.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Parts {
			k := queue.Key{ID: id, Part: uint16(i)}
			switch {
			case p.State.Final() && seen[k] != 1:
				t.Errorf("final part %v exported %d times", k, seen[k])
			case !p.State.Final() && seen[k] != 0:
				t.Errorf("part %v in flight exported", k)
			}
			if p.State.Final() {
				want++
			}
		}
	}
	if len(seen) != want {
		t.Errorf("exported %d parts, %d are final: %v", len(seen), want, seen)
	}
	// Nothing new: no rows, the same cursor.
	var third strings.Builder
	res3, err := cl.ExportDLRAfter(ctx, res2.Next, ExportQuery{Format: "jsonl"}, &third)
	if err != nil || res3.Rows != 0 || res3.Next != res2.Next || third.Len() != 0 {
		t.Fatalf("third poll: %+v %q %v", res3, third.String(), err)
	}
	// JSON Lines, one enterprise, from the start.
	resp := e.get("/admin/v1/export/dlr", url.Values{"after": {""}, "enterprise": {"G2"}, "format": {"jsonl"}})
	body := opsBody(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(NextCursorHeader) != res2.Next ||
		resp.Trailer.Get(RowsTrailer) != "2" || resp.Trailer.Get(PurgedTrailer) != "0" ||
		strings.Count(body, `"enterprise":"G2"`) != 2 || strings.Count(body, "\n") != 2 {
		t.Errorf("G2 jsonl: %d %v trailer %v\n%s", resp.StatusCode, resp.Header, resp.Trailer, body)
	}
	ahead := queue.Cursor(1 << 40).String()
	for _, q := range []url.Values{
		{"after": {"not-a-cursor"}},
		{"after": {ahead}},
		{"after": {""}, "from": {"2026-11-01"}, "to": {"2026-12-01"}},
		{"after": {""}, "format": {"xml"}},
	} {
		resp := e.get("/admin/v1/export/dlr", q)
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); resp.StatusCode != http.StatusBadRequest || err != nil || eb.Error.Reason != "invalid" ||
			resp.Header.Get(NextCursorHeader) != "" {
			t.Errorf("export?%s: %d %v %+v %v", q.Encode(), resp.StatusCode, err, eb, resp.Header)
		}
	}
}

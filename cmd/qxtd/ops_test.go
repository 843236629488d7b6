package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

const opsTestToken = "t0ken"

// opsServer is the admin API over a real store and policy, with traffic:
// G1 (package 1: 20 yuan, 220 included) has 3 delivered segments, 1 failed
// and 1 pending in November 2026; one delivered segment in October.
func opsServer(t *testing.T) (*httptest.Server, *queue.Store) {
	t.Helper()
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	st, err := queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4,
		Now: func() time.Time { return time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.CreateEnterprise(policy.OperatorActor("t"), policy.Enterprise{
		Code: "G1", Name: "演示企业", Signature: "【演示企业】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{AdminToken: opsTestToken, Store: st, Policy: pol}).Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := st.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		st.Close()
	})

	ctx := context.Background()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, sh)
	n := 0
	send := func(at time.Time, states ...queue.State) {
		m := &queue.Message{Account: "demo", Enterprise: "G1", Source: "10690001", Dest: "13800138000",
			Upstream: "up1", AcceptedAt: at}
		for range states {
			m.Parts = append(m.Parts, queue.Part{Body: []byte{1}})
		}
		if err := st.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
		for i, s := range states {
			if s == queue.StateAccepted {
				continue
			}
			n++
			id := fmt.Sprintf("%08X", n)
			if err := st.Submitted(ctx, queue.Key{ID: m.ID, Part: uint16(i)}, id, at); err != nil {
				t.Fatal(err)
			}
			if _, err := st.ApplyDLR(ctx, queue.DLR{Upstream: "up1", SMSCID: id, State: s, ErrCode: "000", DoneAt: at.Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(nov.Add(-time.Minute), queue.StateDelivered)
	send(nov.Add(time.Hour), queue.StateDelivered, queue.StateDelivered)
	send(nov.Add(2*time.Hour), queue.StateUndeliverable)
	send(nov.Add(3*time.Hour), queue.StateDelivered, queue.StateAccepted)
	return srv, st
}

// runOps runs the CLI and returns its exit status, stdout and stderr.
func runOps(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestOpsCLIExport(t *testing.T) {
	srv, _ := opsServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "nov.csv")
	code, out, errs := runOps("export", "dlr", "--api", srv.URL, "--token", opsTestToken,
		"--from", "2026-11-01", "--to", "2026-12-01", "--out", file)
	if code != 0 || out != "" || !strings.Contains(errs, "exported 5 rows") {
		t.Fatalf("export: %d %q %q", code, out, errs)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 6 || lines[0] != strings.Join(queue.ExportColumns, ",") ||
		!strings.Contains(lines[1], ",G1,demo,10690001,13800138000,up1,00000002,2026-11-01T01:00:00.000+08:00,") ||
		!strings.HasSuffix(lines[1], ",delivered,000,true,1,0") || !strings.HasSuffix(lines[5], ",accepted,,false,1,0") {
		t.Errorf("CSV:\n%s", b)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}

	// JSON Lines on stdout, one enterprise, token from the environment,
	// RFC 3339 bounds.
	t.Setenv("QXTD_ADMIN_TOKEN", opsTestToken)
	code, out, errs = runOps("export", "dlr", "--api", srv.URL, "--enterprise", "G1", "--format", "jsonl",
		"--from", "2026-11-01T02:00:00+08:00", "--to", "2026-11-01T03:00:00+08:00")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"state":"undeliverable","err_code":"000","billed":false,"segments":1,"node":0}`) {
		t.Errorf("jsonl export: %d %q %q", code, out, errs)
	}

	for _, args := range [][]string{
		{"export"},
		{"export", "dlr", "--to", "2026-12-01"},
		{"export", "dlr", "--from", "2026/11/01", "--to", "2026-12-01"},
		{"export", "dlr", "--from", "2026-11-01", "--to", "2026-12-01", "--format", "xml"},
		{"export", "dlr", "--from", "2026-11-01", "--to", "2026-12-01", "--bogus"},
	} {
		if code, _, errs := runOps(append(args, "--api", srv.URL)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
	code, _, errs = runOps("export", "dlr", "--api", srv.URL, "--token", "wrong", "--from", "2026-11-01", "--to", "2026-12-01")
	if code != 1 || !strings.Contains(errs, "unauthorized") {
		t.Errorf("wrong token: %d %q", code, errs)
	}
}

func TestOpsCLIBill(t *testing.T) {
	srv, st := opsServer(t)
	code, out, errs := runOps("bill", "--month", "2026-11", "--api", srv.URL, "--token", opsTestToken)
	if code != 0 {
		t.Fatalf("bill: %d %q", code, errs)
	}
	t.Logf("qxtd bill --month 2026-11:\n%s", out)
	got := squeezeBlanks(out)
	for _, want := range []string{
		"bill for 2026-11 (Asia/Shanghai), amounts in yuan",
		"ENTERPRISE PACKAGE FEE INCLUDED DELIVERED OVERAGE RATE OVERAGE AMT TOTAL PENDING NAME",
		"G1 1 20.00 220 3 0 0.10 0.00 20.00 1 演示企业",
		"TOTAL 3 20.00 1",
		"note: segments still in flight: 1;",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("bill table lacks %q:\n%s", want, out)
		}
	}
	if _, charged := st.Usage("G1", "2026-11"); charged != 3 {
		t.Errorf("usage %d", charged)
	}

	code, out, _ = runOps("bill", "2026-10", "--json", "--enterprise", "G1", "--api", srv.URL, "--token", opsTestToken)
	var bills []api.BillLine
	if err := json.Unmarshal([]byte(out), &bills); code != 0 || err != nil || len(bills) != 1 ||
		bills[0].Delivered != 1 || bills[0].TotalFen != 20_00 || bills[0].TotalYuan != "20.00" {
		t.Errorf("bill --json: %d %v %s", code, err, out)
	}
	if code, _, errs := runOps("bill", "--month", "November", "--api", srv.URL, "--token", opsTestToken); code != 2 || errs == "" {
		t.Errorf("bad month: %d %q", code, errs)
	}
	if code, _, errs := runOps("bill", "--month", "2026-11", "--enterprise", "NOPE", "--api", srv.URL, "--token", opsTestToken); code != 1 || !strings.Contains(errs, "not_found") {
		t.Errorf("unknown enterprise: %d %q", code, errs)
	}
}

func TestOpsCLIBackup(t *testing.T) {
	t.Setenv("QXTD_ADMIN_TOKEN", "")
	srv, st := opsServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "qxtd-backup.db")
	code, out, errs := runOps("backup", file, "--api", srv.URL, "--token", opsTestToken)
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("backup: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	// The backup is the store: open it as the daemon would, and compare.
	db, err := queue.OpenDB(file, queue.Options{NoSync: true})
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
		t.Fatal(err)
	}
	for id := uint64(1); id <= 4; id++ {
		a, err1 := st.Get(id)
		b, err2 := c.Get(id)
		if err1 != nil || err2 != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("message %d: %v %v", id, err1, err2)
		}
	}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pol.Lookup("G1"); !ok {
		t.Error("policy data missing from the backup")
	}

	// A truncated download is refused and leaves nothing behind.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "8192")
		w.Write(make([]byte, 100))
	}))
	defer cut.Close()
	bad := filepath.Join(dir, "cut.db")
	if code, _, errs := runOps("backup", bad, "--api", cut.URL, "--token", "x"); code != 1 || !strings.Contains(errs, "cut short") {
		t.Errorf("truncated backup: %d %q", code, errs)
	}
	// Bytes that are not a bbolt file are refused too.
	junk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("junk"), 4096))
	}))
	defer junk.Close()
	if code, _, errs := runOps("backup", bad, "--api", junk.URL, "--token", "x"); code != 1 || !strings.Contains(errs, "unusable") {
		t.Errorf("junk backup: %d %q", code, errs)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "cut.db*")); len(left) != 0 {
		t.Errorf("files left by failed backups: %v", left)
	}
	if code, _, _ := runOps("backup", "--api", srv.URL, "--token", opsTestToken); code != 2 {
		t.Errorf("backup without FILE: %d", code)
	}
	if code, _, errs := runOps("backup", file, "--api", srv.URL); code != 2 || !strings.Contains(errs, "no admin token") {
		t.Errorf("backup without token: %d %q", code, errs)
	}
}

// TestOpsCLIExportSaveCursor: a cron job with --save-cursor run twice, with
// segments becoming final in between, gets every final segment once; a
// failed run leaves the cursor as it was.
func TestOpsCLIExportSaveCursor(t *testing.T) {
	srv, st := opsServer(t)
	dir := t.TempDir()
	cur := filepath.Join(dir, "cursor")
	args := func(out string) []string {
		return []string{"export", "dlr", "--api", srv.URL, "--token", opsTestToken, "--save-cursor", cur, "--out", out}
	}
	rows := func(file string) []string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if lines[0] != strings.Join(queue.ExportColumns, ",") {
			t.Fatalf("%s: no header:\n%s", file, b)
		}
		return lines[1:]
	}
	code, out, errs := runOps(args(filepath.Join(dir, "1.csv"))...)
	if code != 0 || out != "" || !strings.Contains(errs, "exported 5 rows") || !strings.Contains(errs, "next cursor: ") {
		t.Fatalf("first run: %d %q %q", code, out, errs)
	}
	first := rows(filepath.Join(dir, "1.csv"))
	saved, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}

	// The pending segment fails; a run against a dead daemon changes nothing.
	jobs, err := st.Due(time.Now(), 0, nil)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("due: %v %v", jobs, err)
	}
	if err := st.Fail(context.Background(), jobs[0].Key, queue.StateExpired, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	dead := append(args(filepath.Join(dir, "x.csv")), "--api", "http://127.0.0.1:1")
	if code, _, _ := runOps(dead...); code != 1 {
		t.Fatalf("dead daemon: exit %d", code)
	}
	if b, _ := os.ReadFile(cur); string(b) != string(saved) {
		t.Fatalf("a failed run changed the cursor: %q → %q", saved, b)
	}

	code, _, errs = runOps(args(filepath.Join(dir, "2.csv"))...)
	if code != 0 || !strings.Contains(errs, "exported 1 rows") {
		t.Fatalf("second run: %d %q", code, errs)
	}
	second := rows(filepath.Join(dir, "2.csv"))
	if len(second) != 1 || !strings.Contains(second[0], ",expired,") {
		t.Errorf("second run: %q", second)
	}
	seen := map[string]bool{}
	for _, r := range append(first, second...) {
		key := strings.Join(strings.SplitN(r, ",", 3)[:2], ",") // id,part
		if seen[key] {
			t.Errorf("row %s exported twice", key)
		}
		seen[key] = true
	}
	if len(seen) != 6 {
		t.Errorf("%d segments exported, 6 are final", len(seen))
	}
	// A third run: nothing new, same cursor; --after on stdout.
	code, _, errs = runOps(args(filepath.Join(dir, "3.csv"))...)
	if code != 0 || len(rows(filepath.Join(dir, "3.csv"))) != 0 {
		t.Errorf("third run: %d %q", code, errs)
	}
	code, out, _ = runOps("export", "dlr", "--api", srv.URL, "--token", opsTestToken, "--after", "", "--format", "jsonl")
	if code != 0 || strings.Count(out, "\n") != 6 {
		t.Errorf("--after \"\": %d %q", code, out)
	}
	for _, bad := range [][]string{
		{"--after", "", "--from", "2026-11-01", "--to", "2026-12-01"},
		{"--save-cursor", cur, "--to", "2026-12-01"},
	} {
		if code, _, errs := runOps(append([]string{"export", "dlr", "--api", srv.URL, "--token", opsTestToken}, bad...)...); code != 2 {
			t.Errorf("%v: exit %d %q", bad, code, errs)
		}
	}
	if code, _, errs := runOps("export", "dlr", "--api", srv.URL, "--token", opsTestToken, "--after", "bogus"); code != 1 || !strings.Contains(errs, "invalid") {
		t.Errorf("--after bogus: exit %d %q", code, errs)
	}
}

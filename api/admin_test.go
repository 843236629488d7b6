package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/sheet"
)

const adminToken = "test-admin-token"

// adminLog is a log sink safe for the server's goroutines.
type adminLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *adminLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *adminLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type adminEnv struct {
	s    *Server
	url  string
	c    *Client // the operator, through the token
	pol  *policy.Policy
	q    *queue.Store
	logs *adminLog
}

// newAdminEnv runs the API on a real store (queue + policy in one bbolt file, as
// the daemon does) behind a real HTTP server on 127.0.0.1.
func newAdminEnv(t *testing.T, opts ...func(*Server)) *adminEnv {
	t.Helper()
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	q, err := queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	logs := &adminLog{}
	s := New(Config{AdminToken: adminToken, Store: q, Policy: pol,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for _, o := range opts {
		o(s) // before serving: no race with the handlers
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := q.Close(); err != nil {
			t.Error(err)
		}
	})
	return &adminEnv{s: s, url: ts.URL, c: &Client{Base: ts.URL, Token: adminToken, HTTP: ts.Client()}, pol: pol, q: q, logs: logs}
}

// asActor serves the admin handlers acting as a (no authentication): how
// enterprise-scoped routes (issue 5) will reach them.
func (e *adminEnv) asActor(t *testing.T, a policy.Actor) *Client {
	mux := http.NewServeMux()
	for _, rt := range e.s.adminRouteList() {
		h := rt.h
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { h(a, w, r) })
	}
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &Client{Base: ts.URL, HTTP: ts.Client()}
}

// adminRaw sends a request and returns the status, body and Content-Type.
func adminRaw(t *testing.T, method, url, auth, contentType string, body io.Reader) (int, []byte, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header.Get("Content-Type")
}

// wantAPIError asserts that err is an *APIError with that status and reason.
func wantAPIError(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want API error %d %s, got %v", status, reason, err)
	}
	if ae.Status != status || ae.Reason != reason {
		t.Fatalf("want API error %d %s, got %d %s: %s", status, reason, ae.Status, ae.Reason, ae.Message)
	}
}

// adminMust(f()).get(t) is f's value, failing t on f's error.
func adminMust[T any](v T, err error) adminResult[T] { return adminResult[T]{v, err} }

type adminResult[T any] struct {
	v   T
	err error
}

func (r adminResult[T]) get(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func adminPtr[T any](v T) *T { return &v }

var routeWildcard = regexp.MustCompile(`\{[a-z_]+\}`)

func TestAdminRoutesNeedToken(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	noToken := New(Config{Policy: e.pol, Store: e.q}) // admin API disabled
	ts := httptest.NewServer(noToken.Handler())
	defer ts.Close()

	routes := e.s.adminRouteList()
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		path := routeWildcard.ReplaceAllString(pattern, "x")
		for _, tc := range []struct{ name, base, auth string }{
			{"missing", e.url, ""},
			{"wrong", e.url, "Bearer wrong-token"},
			{"prefix of the token", e.url, "Bearer " + adminToken[:len(adminToken)-1]},
			{"token plus one", e.url, "Bearer " + adminToken + "x"},
			{"basic scheme", e.url, "Basic " + adminToken},
			{"no scheme", e.url, adminToken},
			{"empty configured token", ts.URL, "Bearer "},
			{"any token when disabled", ts.URL, "Bearer " + adminToken},
		} {
			code, body, ct := adminRaw(t, method, tc.base+path, tc.auth, "application/json", strings.NewReader(`{}`))
			var eb errorBody
			if code != http.StatusUnauthorized || json.Unmarshal(body, &eb) != nil || eb.Error.Reason != "unauthorized" ||
				!strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s, %s token: %d %s %s", method, path, tc.name, code, ct, body)
			}
		}
		// With the token the route is ours: a JSON answer (never the mux's
		// text 404 / 405), whatever the placeholder values make of it.
		code, body, ct := adminRaw(t, method, e.url+path, "Bearer "+adminToken, "application/json", strings.NewReader(`{}`))
		if !strings.HasPrefix(ct, "application/json") || code == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: %d %s %s", method, path, code, ct, body)
		}
	}
	// Nothing was created by any of the refused calls.
	if ents := e.pol.Enterprises(policy.OperatorActor("t")); len(ents) != 0 {
		t.Errorf("enterprises after refused calls: %v", ents)
	}
}

func TestAdminFlow(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	c := e.c
	ctx := context.Background()

	// Enterprises.
	ent := adminMust(c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "Acme 有限公司", Signature: "【阿克米】",
		Package: 3, CapYuan: "200", TPS: 50})).get(t)
	if ent.CapFen != 200_00 || ent.CapYuan != "200.00" || ent.National || ent.OffNet || ent.CreatedAt.IsZero() {
		t.Fatalf("created %+v", ent)
	}
	_, err := c.CreateEnterprise(NewEnterprise{Code: "ACME", Name: "again", Package: 1})
	wantAPIError(t, err, http.StatusConflict, "exists")
	_, err = c.CreateEnterprise(NewEnterprise{Code: "BAD", Name: "bad", Package: 99})
	wantAPIError(t, err, http.StatusBadRequest, "invalid")
	_, err = c.CreateEnterprise(NewEnterprise{Code: "BAD", Name: "bad", Package: 1, CapYuan: "1.234"})
	wantAPIError(t, err, http.StatusBadRequest, "invalid")
	adminMust(c.CreateEnterprise(NewEnterprise{Code: "OTHER", Name: "Other", Signature: "【其他】", Package: 1})).get(t)
	list := adminMust(c.Enterprises()).get(t)
	if len(list) != 2 || list[0].Code != "ACME" || list[1].Code != "OTHER" {
		t.Fatalf("list %+v", list)
	}
	_, err = c.Enterprise("NOPE", "")
	wantAPIError(t, err, http.StatusNotFound, "not_found")

	// Location of a created enterprise; unknown JSON fields are refused.
	code, body, _ := adminRaw(t, "POST", e.url+"/admin/v1/enterprises", "Bearer "+adminToken, "application/json",
		strings.NewReader(`{"code":"X1","name":"x","package":1,"nationl":true}`))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "nationl") {
		t.Fatalf("unknown field: %d %s", code, body)
	}

	// Users.
	adm := adminMust(c.CreateUser("ACME", NewUser{SystemID: "acme_adm", Password: "adm12345", Name: "管理员",
		Mobile: "137 1234 5678", Role: "admin"})).get(t)
	if adm.Role != "admin" || adm.Mobile != "+8613712345678" || adm.Enterprise != "ACME" {
		t.Fatalf("user %+v", adm)
	}
	if adm.LongReplies != "payload" {
		t.Fatalf("long_replies by default: %+v", adm)
	}
	u1 := adminMust(c.CreateUser("ACME", NewUser{SystemID: "acme_u1", Password: "usr12345", Name: "Alice", ShowSignature: true,
		LongReplies: "udh16"})).get(t)
	if u1.LongReplies != "udh16" {
		t.Fatalf("long_replies udh16: %+v", u1)
	}
	slash := adminMust(c.CreateUser("ACME", NewUser{SystemID: "a/b?c%d", Password: "usr12345", Name: "Zed"})).get(t)
	if got := adminMust(c.User(slash.SystemID)).get(t); got.Name != "Zed" {
		t.Fatalf("escaped system_id: %+v", got)
	}
	for _, tc := range []struct {
		code   string
		u      NewUser
		status int
		reason string
	}{
		{"ACME", NewUser{SystemID: "acme_u1", Password: "usr12345", Name: "Bob"}, 409, "exists"},
		{"ACME", NewUser{SystemID: "acme_u2", Password: "usr12345", Name: "Alice"}, 409, "exists"},
		{"ACME", NewUser{SystemID: "acme_u2", Password: "short", Name: "Bob"}, 400, "invalid"},
		{"ACME", NewUser{SystemID: "acme_u2", Password: "usr12345", Name: "Bob", Role: "root"}, 400, "invalid"},
		{"ACME", NewUser{SystemID: "acme_u2", Password: "usr12345", Name: "Bob", Mobile: "010-12345678"}, 400, "invalid"},
		{"ACME", NewUser{SystemID: "acme_u2", Password: "usr12345", Name: "Bob", LongReplies: "udh7"}, 400, "invalid"},
		{"NOPE", NewUser{SystemID: "acme_u2", Password: "usr12345", Name: "Bob"}, 404, "not_found"},
	} {
		_, err := c.CreateUser(tc.code, tc.u)
		wantAPIError(t, err, tc.status, tc.reason)
	}
	users := adminMust(c.Users("ACME")).get(t)
	if len(users) != 3 || users[0].Name != "Alice" || !users[0].ShowSignature || users[0].Role != "user" {
		t.Fatalf("users %+v", users)
	}

	// The enterprise admin adds and imports numbers: they are pending.
	admin := e.asActor(t, policy.ActorFor(&policy.User{Enterprise: "ACME", SystemID: "acme_adm", Role: policy.RoleAdmin}))
	res := adminMust(admin.AddWhitelist("ACME", []string{"13712345678", "+86 137-1234-5679", "", "12345", "13712345678"})).get(t)
	if res.Rows != 5 || res.Added != 2 || res.Duplicates != 1 || !slices.Equal(errorRows(res.Errors), []int{3, 4}) {
		t.Fatalf("add: %+v", res)
	}
	res = adminMust(admin.ImportWhitelist(ctx, "ACME", sheet.CSV, strings.NewReader(adminCSV))).get(t)
	if res.Rows != 5 || res.HeaderRow != 1 || res.Added != 2 || res.Duplicates != 1 || !slices.Equal(errorRows(res.Errors), []int{3, 4}) {
		t.Fatalf("CSV import: %+v", res)
	}
	res = adminMust(admin.ImportWhitelist(ctx, "ACME", sheet.XLSX, bytes.NewReader(adminXLSX(t)))).get(t)
	if res.Rows != 6 || res.HeaderRow != 1 || res.Added != 2 || res.Duplicates != 1 || !slices.Equal(errorRows(res.Errors), []int{3, 5, 6}) {
		t.Fatalf("XLSX import: %+v", res)
	}
	// … and may not decide, nor see another enterprise.
	_, err = admin.Approve("ACME", nil, true)
	wantAPIError(t, err, http.StatusForbidden, "forbidden")
	_, err = admin.Enterprise("OTHER", "")
	wantAPIError(t, err, http.StatusForbidden, "forbidden")
	_, err = admin.UpdateEnterprise("ACME", EnterprisePatch{National: adminPtr(true)})
	wantAPIError(t, err, http.StatusForbidden, "forbidden")

	// Uploads: format from ?format= over the Content-Type; unknown types refused.
	code, body, _ = adminRaw(t, "POST", e.url+"/admin/v1/enterprises/ACME/whitelist/import?format=csv", "Bearer "+adminToken,
		"application/octet-stream", strings.NewReader("13500135000\n"))
	if code != http.StatusOK || !strings.Contains(string(body), `"added":1`) {
		t.Fatalf("import ?format=csv: %d %s", code, body)
	}
	code, body, _ = adminRaw(t, "POST", e.url+"/admin/v1/enterprises/ACME/whitelist/import", "Bearer "+adminToken,
		"application/pdf", strings.NewReader("%PDF"))
	if code != http.StatusUnsupportedMediaType || !strings.Contains(string(body), "unsupported_media_type") {
		t.Fatalf("import pdf: %d %s", code, body)
	}
	code, body, _ = adminRaw(t, "POST", e.url+"/admin/v1/enterprises/ACME/whitelist/import", "Bearer "+adminToken,
		XLSXContentType, strings.NewReader("not a zip"))
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"file"`) || !strings.Contains(string(body), "文件无法读取") {
		t.Fatalf("broken xlsx: %d %s, want 400 invalid about the file, in Chinese too", code, body)
	}

	// The operator lists pending entries page by page.
	wantPending := []string{"+8613712345678", "+8613712345679", "+8613800138000", "+8613800138001", "+8613900139000", "+8613900139001"}
	p1 := adminMust(c.ListWhitelist("ACME", "pending", "", 4)).get(t)
	if p1.Next == "" {
		t.Fatalf("first page has no next: %+v", p1)
	}
	p2 := adminMust(c.ListWhitelist("ACME", "pending", p1.Next, 4)).get(t)
	if got := append(pageNumbers(p1), pageNumbers(p2)...); !slices.Equal(got, wantPending) || p2.Next != "" {
		t.Fatalf("pending pages: %v next %q", got, p2.Next)
	}
	if p1.Entries[0].AddedBy != "acme_adm" || p1.Entries[0].State != policy.WhitelistPending {
		t.Fatalf("entry %+v", p1.Entries[0])
	}
	// A "+" unescaped in a query string reads as a space: still the cursor.
	code, body, _ = adminRaw(t, "GET", e.url+"/admin/v1/enterprises/ACME/whitelist?state=pending&limit=4&after="+p1.Next,
		"Bearer "+adminToken, "", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "+8613900139001") || strings.Contains(string(body), "+8613712345678") {
		t.Fatalf("unescaped cursor: %d %s", code, body)
	}
	_, err = c.ListWhitelist("ACME", "maybe", "", 0)
	wantAPIError(t, err, http.StatusBadRequest, "invalid")
	_, err = c.ListWhitelist("NOPE", "", "", 0)
	wantAPIError(t, err, http.StatusNotFound, "not_found")

	// Decisions.
	br := adminMust(c.Approve("ACME", []string{"13712345678", "+8613712345679", "13600136000", "oops"}, false)).get(t)
	if br.Changed != 2 || br.Unchanged != 0 || !slices.Equal(br.NotFound, []string{"+8613600136000"}) || !slices.Equal(errorRows(br.Errors), []int{4}) {
		t.Fatalf("approve: %+v", br)
	}
	br = adminMust(c.Reject("ACME", "not a customer", []string{"13800138001"}, false)).get(t)
	if br.Changed != 1 {
		t.Fatalf("reject: %+v", br)
	}
	for _, d := range []Decision{{}, {Numbers: []string{}}, {Numbers: []string{"13800138000"}, AllPending: true}} {
		err := c.Do("POST", "/admin/v1/enterprises/ACME/whitelist/approve", d, nil)
		wantAPIError(t, err, http.StatusBadRequest, "invalid")
	}
	if n := adminMust(c.ListWhitelist("ACME", "pending", "", 0)).get(t); len(n.Entries) != 3 {
		t.Fatalf("pending left: %v", pageNumbers(n))
	}
	br = adminMust(c.Approve("ACME", nil, true)).get(t)
	if br.Changed != 3 || br.NotFound == nil || br.Errors == nil {
		t.Fatalf("approve all pending: %+v", br)
	}
	approved := adminMust(c.ListWhitelist("ACME", "approved", "", 0)).get(t)
	want := []string{"+8613500135000", "+8613712345678", "+8613712345679", "+8613800138000", "+8613900139000", "+8613900139001"}
	if !slices.Equal(pageNumbers(approved), want) || approved.Entries[0].DecidedBy != OperatorName {
		t.Fatalf("approved: %v (%+v)", pageNumbers(approved), approved.Entries[0])
	}
	if !e.pol.Allowed("ACME", "+8613712345678") || e.pol.Allowed("ACME", "+8613800138001") {
		t.Fatal("sending path does not see the decisions")
	}
	br = adminMust(c.RemoveWhitelist("ACME", []string{"13500135000"})).get(t)
	if br.Changed != 1 {
		t.Fatalf("remove: %+v", br)
	}
	_, err = c.RemoveWhitelist("ACME", nil)
	wantAPIError(t, err, http.StatusBadRequest, "invalid")

	// Grants, package, cap.
	ent = adminMust(c.UpdateEnterprise("ACME", EnterprisePatch{National: adminPtr(true), OffNet: adminPtr(true)})).get(t)
	if !ent.National || !ent.OffNet || ent.Package != 3 || ent.TPS != 50 {
		t.Fatalf("grants: %+v", ent)
	}
	ent = adminMust(c.UpdateEnterprise("ACME", EnterprisePatch{Package: adminPtr(5), CapYuan: adminPtr("600")})).get(t)
	if ent.Package != 5 || ent.CapFen != 600_00 || !ent.National {
		t.Fatalf("package: %+v", ent)
	}
	if got, _ := e.pol.Lookup("ACME"); got.Package != 5 || !got.OffNet {
		t.Fatalf("policy sees %+v", got)
	}
	for _, tc := range []struct {
		code   string
		patch  any
		status int
		reason string
	}{
		{"ACME", EnterprisePatch{}, 400, "invalid"},
		{"ACME", EnterprisePatch{Package: adminPtr(13)}, 400, "invalid"},
		{"ACME", EnterprisePatch{Signature: adminPtr("no brackets")}, 400, "invalid"},
		{"ACME", EnterprisePatch{CapYuan: adminPtr("-1")}, 400, "invalid"},
		{"ACME", map[string]any{"grant": "national"}, 400, "invalid"},
		{"NOPE", EnterprisePatch{National: adminPtr(true)}, 404, "not_found"},
	} {
		err := c.Do("PATCH", "/admin/v1/enterprises/"+tc.code, tc.patch, nil)
		wantAPIError(t, err, tc.status, tc.reason)
	}

	// Usage: a month of traffic in the queue (1 + 2 segments; 1 delivered).
	month := time.Date(2025, 6, 10, 12, 0, 0, 0, time.UTC)
	m1 := &queue.Message{Account: "acme_u1", Enterprise: "ACME", Dest: "+8613712345678", Upstream: "sim",
		AcceptedAt: month, Parts: []queue.Part{{Body: []byte("a")}}}
	m2 := &queue.Message{Account: "acme_u1", Enterprise: "ACME", Dest: "+8613712345679", Upstream: "sim",
		AcceptedAt: month, Parts: []queue.Part{{Body: []byte("b")}, {Body: []byte("c")}}}
	if err := e.q.Enqueue(ctx, m1, m2); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Submitted(ctx, queue.Key{ID: m1.ID}, "abc1", month); err != nil {
		t.Fatal(err)
	}
	if r, err := e.q.ApplyDLR(ctx, queue.DLR{Upstream: "sim", SMSCID: "abc1", State: queue.StateDelivered, DoneAt: month}); err != nil || r != queue.Matched {
		t.Fatal(r, err)
	}
	d := adminMust(c.Enterprise("ACME", "2025-06")).get(t)
	// package 5: fee 500.00, 6,200 included, 0.09 overage; cap 600.00 → 6,200 + 10,000/9.
	wantUsage := Usage{Month: "2025-06", Reserved: 2, Charged: 1, Limit: 6200 + 1111}
	if !reflect.DeepEqual(d.Usage, wantUsage) || d.Users != 3 || d.Whitelist != (WhitelistCounts{Approved: 5, Rejected: 1}) ||
		d.PackageInfo == nil || d.PackageInfo.Included != 6200 || d.Enterprise.Code != "ACME" || !d.Enterprise.National {
		t.Fatalf("show: %+v", d)
	}
	if d := adminMust(c.Enterprise("ACME", "")).get(t); d.Usage.Month != policy.MonthOf(time.Now()) && d.Usage.Month != policy.MonthOf(time.Now().Add(-time.Minute)) {
		t.Fatalf("default month %q", d.Usage.Month)
	}
	_, err = c.Enterprise("ACME", "2025-13")
	wantAPIError(t, err, http.StatusBadRequest, "invalid")
	ent = adminMust(c.UpdateEnterprise("ACME", EnterprisePatch{NoOverage: adminPtr(true), CapYuan: adminPtr("")})).get(t)
	if d := adminMust(c.Enterprise("ACME", "2025-06")).get(t); ent.CapFen != 0 || d.Usage.Limit != 6200 {
		t.Fatalf("no overage: %+v %+v", ent, d.Usage)
	}

	// Users: password, API key, changes, deletion.
	if err := c.SetPassword("acme_u1", "new12345"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.pol.Authenticate("acme_u1", "new12345"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	wantAPIError(t, c.SetPassword("acme_u1", "has space"), 400, "invalid")
	wantAPIError(t, c.SetPassword("nobody", "new12345"), 404, "not_found")
	key := adminMust(c.IssueAPIKey("acme_u1")).get(t)
	if key.SystemID != "acme_u1" || !strings.HasPrefix(key.APIKey, "qxtd_") {
		t.Fatalf("key %+v", key)
	}
	if u, _, err := e.pol.AuthenticateAPIKey(key.APIKey); err != nil || u.SystemID != "acme_u1" {
		t.Fatalf("API key: %v %v", u, err)
	}
	if u := adminMust(c.User("acme_u1")).get(t); !u.HasAPIKey {
		t.Fatalf("has_api_key: %+v", u)
	}
	if err := c.RevokeAPIKey("acme_u1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.pol.AuthenticateAPIKey(key.APIKey); !errors.Is(err, policy.ErrAuth) {
		t.Fatalf("revoked key: %v", err)
	}
	u := adminMust(c.UpdateUser("acme_u1", UserPatch{ShowSignature: adminPtr(false), Role: adminPtr("admin"), Mobile: adminPtr("13712345670")})).get(t)
	if u.ShowSignature || u.Role != "admin" || u.Mobile != "+8613712345670" || u.LongReplies != "udh16" {
		t.Fatalf("update user: %+v", u)
	}
	// long_replies alone is a change; what is stored is what the gateway
	// reads for its next reply.
	for _, tc := range []struct{ in, out, stored string }{{"SAR", "sar", "sar"}, {"udh8", "udh8", "udh8"}, {"payload", "payload", ""}} {
		u = adminMust(c.UpdateUser("acme_u1", UserPatch{LongReplies: adminPtr(tc.in)})).get(t)
		pu, err := e.pol.User(policy.OperatorActor("t"), "acme_u1")
		if u.LongReplies != tc.out || err != nil || pu.LongReplies != tc.stored {
			t.Fatalf("long_replies %q: %+v; stored %+v %v", tc.in, u, pu, err)
		}
	}
	_, err = c.UpdateUser("acme_u1", UserPatch{LongReplies: adminPtr("udh7")})
	wantAPIError(t, err, http.StatusBadRequest, "invalid")
	if ae := (*APIError)(nil); !errors.As(err, &ae) || !strings.Contains(ae.Message, `long_replies "udh7" (want payload, udh8, udh16 or sar)`) {
		t.Errorf("long_replies udh7: %v", err)
	}
	wantAPIError(t, c.Do("PATCH", "/admin/v1/users/acme_u1", UserPatch{}, nil), 400, "invalid")
	if err := c.DeleteUser("acme_u1"); err != nil {
		t.Fatal(err)
	}
	_, err = c.User("acme_u1")
	wantAPIError(t, err, http.StatusNotFound, "not_found")
	wantAPIError(t, c.DeleteUser("acme_u1"), http.StatusNotFound, "not_found")

	// Overrides.
	if err := c.SetOverride("137-1234-5678", OverrideSet{Carrier: "中国联通"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetOverride("1391", OverrideSet{Province: "Guangdong"}); err != nil {
		t.Fatal(err)
	}
	ovs := adminMust(c.Overrides()).get(t)
	if len(ovs) != 2 || ovs[0] != (policy.Override{Prefix: "13712345678", Carrier: policy.ChinaUnicom}) ||
		ovs[1] != (policy.Override{Prefix: "1391", Province: "广东省"}) {
		t.Fatalf("overrides %+v", ovs)
	}
	wantAPIError(t, c.SetOverride("13712345678", OverrideSet{Carrier: "vodafone"}), 400, "invalid")
	wantAPIError(t, c.SetOverride("13712345678", OverrideSet{}), 400, "invalid")
	wantAPIError(t, c.SetOverride("999", OverrideSet{Carrier: "cmcc"}), 400, "invalid")
	if err := c.RemoveOverride("13712345678"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.RemoveOverride("13712345678"), http.StatusNotFound, "not_found")
	if ovs := adminMust(c.Overrides()).get(t); len(ovs) != 1 {
		t.Fatalf("after remove: %+v", ovs)
	}

	// Every change is in the audit log, under the operator's name.
	for _, s := range []string{"enterprise created", "whitelist decided", "override set", "user deleted", "actor=" + OperatorName} {
		if !strings.Contains(e.logs.String(), s) {
			t.Errorf("log lacks %q", s)
		}
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	// Not one of our answers: the mux's text 404.
	err := e.c.Do("GET", "/admin/v1/nothing-here", nil, nil)
	wantAPIError(t, err, http.StatusNotFound, "not_found")
	// Wrong token.
	bad := &Client{Base: e.url, Token: "nope"}
	_, err = bad.Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
	if !strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("message %q", err)
	}
}

package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// BenchmarkOutboxPage renders GET /outbox (the first page of 50, and the
// 接收失败 tab, which reads the most records for an empty page) with
// 10,000 of alice's messages in the store: the console handler in-process
// with a logged-in session, the API behind it in-process, no network.
// The issue asks for less than 100 ms a page on the server.
func BenchmarkOutboxPage(b *testing.B) {
	store, pol := benchStores(b)
	if _, err := pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "A", Name: "甲公司", Signature: "【甲公司】", Package: 3, National: true},
		Users:      []policy.NewUser{{Name: "甲用户", SystemID: "alice", Password: password}},
	}}}); err != nil {
		b.Fatal(err)
	}
	// 10,000 messages, enqueued in batches of 1,000 (one commit each).
	const n, batch = 10_000, 1_000
	t0 := time.Now().Add(-time.Hour)
	for i := 0; i < n; i += batch {
		msgs := make([]*queue.Message, batch)
		for j := range msgs {
			msgs[j] = &queue.Message{Account: "alice", Enterprise: "A", Source: "106575000001", Dest: numA1,
				Text: "【甲公司】第" + strings.Repeat("条", 1+j%7) + "短信", AcceptedAt: t0.Add(time.Duration(i+j) * time.Millisecond),
				Parts: []queue.Part{{Body: []byte("x")}}}
		}
		if err := store.Enqueue(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	srv := api.New(api.Config{Store: store, Policy: pol})
	defer srv.Close()
	con, err := New(Config{API: srv.Handler()})
	if err != nil {
		b.Fatal(err)
	}
	h := con.Handler()
	var login api.LoginResponse
	c := &api.Client{Base: apiBase, HTTP: &http.Client{Transport: inproc{h: srv.Handler(), remote: "127.0.0.1:1"}}}
	if err := c.DoContext(context.Background(), http.MethodPost, "/v1/login", api.LoginRequest{SystemID: "alice", Password: password}, &login); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"all", "/outbox", "下一页"},
		{"failed", "/outbox?outcome=failed", "没有记录"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			get := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, tc.path, nil)
				req.AddCookie(&http.Cookie{Name: sessionCookie, Value: login.Token})
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				return w
			}
			benchPage(b, tc.path, tc.want, get)
		})
	}
}

// BenchmarkDeskPage renders the account manager's desk pages the way a
// browser asks for them (the console in-process with a logged-in
// manager's session, the API behind it in-process), beside its baseline:
// GET /admin/v1/session alone, the call every desk page makes first to
// learn whom its session acts as (console.req.opsWho). The ratio is that
// call's share of a page.
func BenchmarkDeskPage(b *testing.B) {
	store, pol := benchStores(b)
	var ents []policy.SeedEnterprise
	for _, code := range []string{"A", "B", "C"} {
		ents = append(ents, policy.SeedEnterprise{Enterprise: policy.Enterprise{Code: code, Name: code + "公司", Signature: "【" + code + "公司】", Package: 3}})
	}
	if _, err := pol.Seed(context.Background(), policy.SeedData{Enterprises: ents}); err != nil {
		b.Fatal(err)
	}
	const token = "zhang-bench-0123456789"
	srv := api.New(api.Config{Store: store, Policy: pol, AdminToken: "bench-admin-token-0123456789",
		Managers: []api.Manager{{Name: "张经理", Token: token, Enterprises: []string{"A", "B"}}}})
	defer srv.Close()
	con, err := New(Config{API: srv.Handler()})
	if err != nil {
		b.Fatal(err)
	}
	h, apiH := con.Handler(), srv.Handler()
	var login api.OperatorLoginResponse
	c := &api.Client{Base: apiBase, HTTP: &http.Client{Transport: inproc{h: apiH, remote: "127.0.0.1:1"}}}
	if err := c.DoContext(context.Background(), http.MethodPost, "/admin/v1/login", api.OperatorLoginRequest{Token: token}, &login); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		api              bool
	}{
		{"session", "/admin/v1/session", `"name":"张经理"`, true}, // the baseline: opsWho's call alone
		{"home", "/ops/", "张经理 · 负责 A、B", false},
		{"enterprises", "/ops/enterprises", "B公司", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			get := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, tc.path, nil)
				req.RemoteAddr = "127.0.0.1:1"
				target := h
				if tc.api {
					req.Header.Set("Authorization", "Bearer "+login.Token)
					target = apiH
				} else {
					req.AddCookie(&http.Cookie{Name: opsCookie, Value: login.Token})
				}
				w := httptest.NewRecorder()
				target.ServeHTTP(w, req)
				return w
			}
			benchPage(b, tc.path, tc.want, get)
		})
	}
}

// benchStores opens a store and a policy on a bbolt file of the
// benchmark's, closed when it ends.
func benchStores(b *testing.B) (*queue.Store, *policy.Policy) {
	b.Helper()
	db, err := queue.OpenDB(filepath.Join(b.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	store, err := queue.New(db, queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	pol, err := policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		b.Fatal(err)
	}
	return store, pol
}

// benchPage checks that get answers path with want, then times it.
func benchPage(b *testing.B, path, want string, get func() *httptest.ResponseRecorder) {
	b.Helper()
	if w := get(); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
		b.Fatalf("GET %s: %d\n%s", path, w.Code, w.Body.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		if w := get(); w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d", path, w.Code)
		}
	}
}

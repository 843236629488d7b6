package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/webhook"
)

// An account manager with a portfolio (Manager.Enterprises: A and C) is
// the operator of A and C only. Every admin route is tried with B in its
// path or with B's items: each is refused (403 forbidden, with detail_zh),
// as is every route that belongs to no one enterprise; the lists across
// enterprises hold A's and C's only; within A the manager decides as
// itself. A route added later without {code} and not in portfolioRoutes
// is refused to a portfolio until someone decides otherwise: this test
// goes over every registered route.
func TestAccountManagerPortfolio(t *testing.T) {
	r := newUserRig(t)
	const zhang = "zhang-0123456789abcdef"
	s := New(Config{AdminToken: adminToken, Store: r.store, Policy: r.pol, Gateway: r.gw,
		Managers: []Manager{{Name: "张经理", Token: zhang, Enterprises: []string{"A", "C"}}}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	call := func(tok, method, path string, body any) (int, errorBody, []byte) {
		t.Helper()
		return operatorCall(t, hs.URL, tok, method, path, body)
	}

	// B's things to point at: a pending entry, a signature request.
	const numA, numB = "+8613712340011", "+8613712340012"
	r.must(http.StatusCreated, "POST", "/v1/whitelist", r.keys["alice"], WhitelistAdd{Number: numA}, nil)
	r.must(http.StatusCreated, "POST", "/v1/whitelist", r.keys["bob"], WhitelistAdd{Number: numB}, nil)
	sigB, err := r.pol.RequestSignature(policy.Actor{Enterprise: "B", Admin: true, Name: "bob"}, "B", "【乙新】")
	if err != nil {
		t.Fatal(err)
	}

	subst := strings.NewReplacer("{code}", "B", "{system_id}", "bob", "{id}", sigB.ID,
		"{number}", "13912345678", "{prefix}", "1370000")
	// The portfolio's routes, with B's items where they take one: refused
	// by the policy store.
	itemOfB := map[string]any{
		"GET /admin/v1/users/{system_id}":                nil,
		"PATCH /admin/v1/users/{system_id}":              UserPatch{Name: new("乙二")},
		"DELETE /admin/v1/users/{system_id}":             nil,
		"PUT /admin/v1/users/{system_id}/password":       PasswordSet{Password: "newsecret9"},
		"POST /admin/v1/users/{system_id}/apikey":        nil,
		"DELETE /admin/v1/users/{system_id}/apikey":      nil,
		"POST /admin/v1/whitelist/approve":               EntryDecision{Entries: []policy.EntryRef{{Enterprise: "A", Number: numA}, {Enterprise: "B", Number: numB}}},
		"POST /admin/v1/whitelist/reject":                EntryDecision{Entries: []policy.EntryRef{{Enterprise: "B", Number: numB}}, Reason: "x"},
		"POST /admin/v1/signature-requests/{id}/approve": nil,
		"POST /admin/v1/signature-requests/{id}/reject":  SignatureDecision{Reason: "x"},
	}
	for _, pattern := range s.adminRoutePatterns() {
		method, path, _ := strings.Cut(pattern, " ")
		if path == "/admin/v1/login" || path == "/admin/v1/openapi.yaml" {
			continue
		}
		body, item := itemOfB[pattern]
		if portfolioRoutes[pattern] && !item || pattern == "GET /admin/v1/bill" || pattern == "GET /admin/v1/export/dlr" {
			continue // lists, reads of no enterprise, the operations: below
		}
		if body == nil && method != "GET" && method != "DELETE" {
			body = struct{}{}
		}
		status, e, raw := call(zhang, method, subst.Replace(path), body)
		if status != http.StatusForbidden || e.Error.Reason != "forbidden" {
			t.Errorf("%s as 张经理 (A, C) with B's: %d %s, want 403 forbidden", pattern, status, raw)
			continue
		}
		if !item && e.Error.DetailZH == "" {
			t.Errorf("%s: %s: no detail_zh", pattern, raw)
		}
	}
	// Nothing of B changed meanwhile.
	if got, _ := r.pol.SignatureRequests(policy.OperatorActor("t"), "B", policy.SignaturePending); len(got) != 1 {
		t.Errorf("B's signature request: %+v, want still pending", got)
	}
	if st, _ := r.pol.WhitelistStatus("B", numB); st != policy.WhitelistPending {
		t.Errorf("B's entry: %v, want pending", st)
	}
	if st, _ := r.pol.WhitelistStatus("A", numA); st != policy.WhitelistPending {
		t.Errorf("A's entry after a decision naming B too: %v, want pending (refused whole)", st)
	}
	if _, err := r.pol.User(policy.OperatorActor("t"), "bob"); err != nil {
		t.Errorf("bob: %v, want still there", err)
	}

	// The operations: B's or every enterprise's refused, A's given.
	for _, q := range []string{"/admin/v1/export/dlr?from=2026-01-01&to=2026-01-02",
		"/admin/v1/export/dlr?from=2026-01-01&to=2026-01-02&enterprise=B",
		"/admin/v1/export/dlr?after=0&enterprise=B",
		"/admin/v1/bill?month=2026-01&enterprise=B",
		"/admin/v1/optouts", "/admin/v1/optouts?enterprise=B", "/admin/v1/backup"} {
		if status, e, raw := call(zhang, "GET", q, nil); status != http.StatusForbidden || e.Error.Reason != "forbidden" {
			t.Errorf("GET %s as 张经理: %d %s, want 403 forbidden", q, status, raw)
		}
	}
	if status, _, raw := call(zhang, "GET", "/admin/v1/export/dlr?from=2026-01-01&to=2026-01-02&enterprise=A", nil); status != http.StatusOK {
		t.Errorf("A's receipts: %d %s", status, raw)
	}
	month := policy.MonthOf(time.Now())
	var bill []BillLine
	status, _, raw := call(zhang, "GET", "/admin/v1/bill?month="+month, nil)
	if err := json.Unmarshal(raw, &bill); status != http.StatusOK || err != nil {
		t.Fatalf("the bill: %d %s", status, raw)
	}
	var billed []string
	for _, l := range bill {
		billed = append(billed, l.Enterprise)
	}
	if !slices.Equal(billed, []string{"A", "C"}) {
		t.Errorf("张经理's bill: lines of %v, want A and C", billed)
	}
	// The daemon's own operations (PUT /admin/v1/log-level).
	own := httptest.NewServer(s.Operator(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(own.Close)
	for tok, want := range map[string]int{zhang: http.StatusForbidden, adminToken: http.StatusNoContent} {
		req, _ := http.NewRequest("PUT", own.URL+"/admin/v1/log-level", strings.NewReader("debug"))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("the daemon's own route with %.6s…: %d, want %d", tok, resp.StatusCode, want)
		}
	}

	// The lists hold A's and C's.
	zc := &Client{Base: hs.URL, Token: zhang}
	ents, err := zc.Enterprises()
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, e := range ents {
		codes = append(codes, e.Code)
	}
	if !slices.Equal(codes, []string{"A", "C"}) {
		t.Errorf("张经理's enterprises: %v, want A and C", codes)
	}
	pend, err := zc.ListPending("", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pend.Entries {
		if e.Enterprise != "A" && e.Enterprise != "C" {
			t.Errorf("张经理's pending entries hold %s %s", e.Enterprise, e.Number)
		}
	}
	if !slices.ContainsFunc(pend.Entries, func(e policy.PendingEntry) bool { return e.Number == numA }) {
		t.Errorf("张经理's pending entries %+v: A's %s missing", pend.Entries, numA)
	}
	if reqs, err := zc.SignatureRequests("", ""); err != nil || len(reqs) != 0 {
		t.Errorf("张经理's signature requests: %+v, %v, want none (B's only exists)", reqs, err)
	}
	// Within A: decided as 张经理.
	if _, err := zc.Approve("A", []string{numA}, false); err != nil {
		t.Fatal(err)
	}
	page, err := zc.ListWhitelist("A", "approved", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(page.Entries, func(e policy.WhitelistEntry) bool { return e.Number == numA && e.DecidedBy == "张经理" }) {
		t.Errorf("A's approved entries %+v: %s not decided by 张经理", page.Entries, numA)
	}
	// The traces of a number: A's and B's messages to it, a reply to
	// each; 张经理's trace holds A's.
	r.serviceNumbers()
	a1 := r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "甲的"}).Results[0].ID
	r.send(r.keys["bob"], SendRequest{To: []string{uNumA1}, Text: "乙的"})
	var trace MessagePage
	if status, _, raw = call(zhang, "GET", "/admin/v1/messages?number="+uNumA1, nil); status != http.StatusOK {
		t.Fatalf("张经理's trace: %d %s", status, raw)
	}
	if err := json.Unmarshal(raw, &trace); err != nil || len(trace.Messages) != 1 || trace.Messages[0].ID != a1 || trace.Messages[0].Enterprise != "A" {
		t.Errorf("张经理's trace of %s: %s, want A's %s only", uNumA1, raw, a1)
	}
	for _, dst := range []string{"106575001", "106575002"} { // A's, B's
		if err := r.sim.InjectMO(uNumA1, dst, "回复"+dst); err != nil {
			t.Fatal(err)
		}
	}
	var replies InboxPage
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, _, raw = call(adminToken, "GET", "/admin/v1/inbox?number="+uNumA1, nil)
		if err := json.Unmarshal(raw, &replies); err == nil && len(replies.Replies) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator's trace of %s's replies: %s, want 2", uNumA1, raw)
		}
		time.Sleep(20 * time.Millisecond) // poll: the MO is stored by the gateway, nothing to wait on here
	}
	_, _, raw = call(zhang, "GET", "/admin/v1/inbox?number="+uNumA1, nil)
	if err := json.Unmarshal(raw, &replies); err != nil || len(replies.Replies) != 1 || replies.Replies[0].Enterprise != "A" {
		t.Errorf("张经理's trace of %s's replies: %s, want A's only", uNumA1, raw)
	}

	// The login says whose the session is, and over what.
	lr, err := (&Client{Base: hs.URL}).OperatorLogin(zhang)
	if err != nil || lr.Name != "张经理" || !slices.Equal(lr.Enterprises, []string{"A", "C"}) {
		t.Errorf("张经理's login: %+v, %v", lr, err)
	}
	if _, err := (&Client{Base: hs.URL, Token: lr.Token}).Enterprise("B", ""); err == nil {
		t.Error("张经理's session reads B")
	}
	// The admin token is the operator of every enterprise.
	if status, _, raw := call(adminToken, "GET", "/admin/v1/enterprises/B", nil); status != http.StatusOK {
		t.Errorf("B with the admin token: %d %s", status, raw)
	}
}

// TestPortfolioStatus: GET /admin/v1/status tells a manager of its
// portfolio only where it names enterprises. The failing webhooks are kept
// to it before the list is cut: A's endpoint, failing since after 110
// others', is the one A's manager is told of; the admin token sees the
// list cut at its bound. The loads' top senders (this node's, each
// member's, the cluster's) are asked for among the manager's enterprises.
func TestPortfolioStatus(t *testing.T) {
	r := newUserRig(t)
	base := time.Now().Add(-time.Hour)
	kept := map[string][]queue.HookPost{}
	for i := range maxFailingWebhooks + 10 {
		kept[fmt.Sprintf("X%02d", i)] = []queue.HookPost{{At: base.Add(time.Duration(i) * time.Second), URL: "https://x.example/r", Err: "refused",
			FailingSince: base.Add(time.Duration(i) * time.Second)}}
	}
	kept["A"] = []queue.HookPost{{At: base.Add(time.Minute * 30), URL: "https://a.example/r", Err: "refused", FailingSince: base.Add(30 * time.Minute)}}
	if err := r.store.SaveHookPosts(t.Context(), kept); err != nil {
		t.Fatal(err)
	}
	snd, err := webhook.New(webhook.Config{Store: r.store})
	if err != nil {
		t.Fatal(err)
	}
	const zhang = "zhang-0123456789abcdef"
	// The daemon ranks the senders among those keep holds (cmd/qxtd's
	// TestLoadTopEnterprises): here, the three that sent, kept.
	senders := func(keep func(string) bool) []EnterpriseLoad {
		out := []EnterpriseLoad{}
		for _, e := range []string{"X00", "A", "B"} {
			if keep == nil || keep(e) {
				out = append(out, EnterpriseLoad{Enterprise: e, Accepted: 1})
			}
		}
		return out
	}
	s := New(Config{AdminToken: adminToken, Store: r.store, Policy: r.pol, Gateway: r.gw, Webhooks: snd,
		Managers: []Manager{{Name: "张经理", Token: zhang, Enterprises: []string{"A"}}},
		Load: func(keep func(string) bool) *LoadStatus {
			return &LoadStatus{Seconds: 60, TopEnterprises: senders(keep)}
		},
		ClusterStatus: func(_ context.Context, keep func(string) bool) *ClusterStatus {
			return &ClusterStatus{Node: 1, Members: []ClusterMember{{ID: 1, Load: &LoadStatus{Seconds: 60, TopEnterprises: senders(keep)}}},
				Load: &ClusterLoad{Members: 1, TopEnterprises: senders(keep)}}
		}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	for tok, want := range map[string][]string{zhang: {"A"}, adminToken: nil} {
		st, err := (&Client{Base: hs.URL, Token: tok}).Status()
		if err != nil {
			t.Fatal(err)
		}
		wantTop := []string{"X00", "A", "B"}
		if want != nil {
			wantTop = want
		}
		for what, top := range map[string][]EnterpriseLoad{"this node's": st.Load.TopEnterprises,
			"the member's": st.Cluster.Members[0].Load.TopEnterprises, "the cluster's": st.Cluster.Load.TopEnterprises} {
			var got []string
			for _, e := range top {
				got = append(got, e.Enterprise)
			}
			if !slices.Equal(got, wantTop) {
				t.Errorf("%s top senders to %s: %v, want %v", what, map[bool]string{true: "张经理", false: "the admin token"}[want != nil], got, wantTop)
			}
		}
		var got []string
		for _, f := range st.ReceiptWebhooksFailing {
			got = append(got, f.Enterprise)
		}
		switch {
		case want != nil && !slices.Equal(got, want):
			t.Errorf("张经理's failing webhooks: %v, want %v", got, want)
		case want == nil && (len(got) != maxFailingWebhooks || slices.Contains(got, "A")):
			t.Errorf("the admin token's failing webhooks: %d, A among them %v; want the %d failing longest", len(got), slices.Contains(got, "A"), maxFailingWebhooks)
		}
	}
}

// operatorCall sends an admin request with JSON body (nil: none) and
// token tok to the server at base: its status, its error's body decoded
// (when it is one) and the body.
func operatorCall(t *testing.T, base, tok, method, path string, body any) (int, errorBody, []byte) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e errorBody
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e, b
}

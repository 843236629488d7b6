package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/policy"
)

// TestAccountManagerReadOnly: a read-only account manager (客服, an
// auditor) is refused every registered admin route that is not a read,
// with the reason in Chinese, and nothing it tried changed; every read is
// given (none answers 403), the backup apart: it is the whole store. Its
// login says read_only, and it may log out. The routes are gone over as
// registered, so a route added later is covered without being named.
func TestAccountManagerReadOnly(t *testing.T) {
	r := newUserRig(t)
	const li = "li-readonly-0123456789"
	s := New(Config{AdminToken: adminToken, Store: r.store, Policy: r.pol, Gateway: r.gw,
		Managers: []Manager{{Name: "客服小李", Token: li, ReadOnly: true}}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })

	const num = "+8613712340021"
	r.must(http.StatusCreated, "POST", "/v1/whitelist", r.keys["alice"], WhitelistAdd{Number: num}, nil)
	sig, err := r.pol.RequestSignature(policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}, "A", "【甲新】")
	if err != nil {
		t.Fatal(err)
	}
	subst := strings.NewReplacer("{code}", "A", "{system_id}", "alice", "{id}", sig.ID,
		"{number}", "13912345678", "{prefix}", "1370000")
	// Bodies a manager that may change would have its change made with.
	bodies := map[string]any{
		"PATCH /admin/v1/enterprises/{code}":                  EnterprisePatch{Name: new("改名")},
		"PATCH /admin/v1/users/{system_id}":                   UserPatch{Name: new("改名")},
		"PUT /admin/v1/users/{system_id}/password":            PasswordSet{Password: "newsecret9"},
		"POST /admin/v1/enterprises/{code}/whitelist/approve": Decision{Numbers: []string{num}},
		"POST /admin/v1/whitelist/approve":                    EntryDecision{Entries: []policy.EntryRef{{Enterprise: "A", Number: num}}},
		"PUT /admin/v1/overrides/{prefix}":                    OverrideSet{Carrier: "china_unicom"},
	}
	for _, pattern := range s.adminRoutePatterns() {
		method, path, _ := strings.Cut(pattern, " ")
		if path == "/admin/v1/login" || path == "/admin/v1/openapi.yaml" || pattern == "POST /admin/v1/logout" {
			continue
		}
		body, ok := bodies[pattern]
		if !ok && method != "GET" && method != "DELETE" {
			body = struct{}{}
		}
		status, e, raw := operatorCall(t, hs.URL, li, method, subst.Replace(path), body)
		refused := status == http.StatusForbidden && e.Error.Reason == "forbidden" && strings.Contains(e.Error.DetailZH, "客服小李为只读账号")
		switch {
		case method == "GET" && pattern != "GET /admin/v1/backup" && status == http.StatusForbidden:
			t.Errorf("%s (a read) as 客服小李: %d %s, want given", pattern, status, raw)
		case (method != "GET" || pattern == "GET /admin/v1/backup") && !refused:
			t.Errorf("%s as 客服小李 (read-only): %d %s, want 403 forbidden with 只读账号", pattern, status, raw)
		}
	}
	// Nothing changed.
	op := policy.OperatorActor("t")
	if st, _ := r.pol.WhitelistStatus("A", num); st != policy.WhitelistPending {
		t.Errorf("A's entry: %v, want still pending", st)
	}
	if got, _ := r.pol.SignatureRequests(op, "A", policy.SignaturePending); len(got) != 1 {
		t.Errorf("A's signature request: %+v, want still pending", got)
	}
	if u, err := r.pol.User(op, "alice"); err != nil || u.Name == "改名" {
		t.Errorf("alice: %+v %v, want there and not renamed", u, err)
	}
	if e, err := r.pol.Enterprise(op, "A"); err != nil || e.Name == "改名" {
		t.Errorf("A: %+v %v, want not renamed", e, err)
	}
	if ovs, _ := r.pol.Overrides(op); len(ovs) != 0 {
		t.Errorf("overrides: %+v, want none", ovs)
	}
	r.must(http.StatusOK, "GET", "/v1/whitelist", r.keys["alice"], nil, nil) // her API key still works

	// The login says what the session may do; the session is refused as
	// the token is, and may end.
	var login OperatorLoginResponse
	if status, _, raw := operatorCall(t, hs.URL, "", "POST", "/admin/v1/login", OperatorLoginRequest{Token: li}); status != http.StatusOK {
		t.Fatalf("login: %d %s", status, raw)
	} else if err := json.Unmarshal(raw, &login); err != nil || !login.ReadOnly || login.Name != "客服小李" {
		t.Fatalf("login: %s, want read_only and the name", raw)
	}
	if status, _, raw := operatorCall(t, hs.URL, login.Token, "POST", "/admin/v1/whitelist/approve",
		EntryDecision{Entries: []policy.EntryRef{{Enterprise: "A", Number: num}}}); status != http.StatusForbidden {
		t.Errorf("an approval by the session: %d %s, want 403", status, raw)
	}
	if who, err := (&Client{Base: hs.URL, Token: login.Token}).OperatorSession(); err != nil || who.Name != "客服小李" || !who.ReadOnly || who.Enterprises != nil {
		t.Errorf("the session's GET /admin/v1/session: %+v %v, want 客服小李, read-only, every enterprise", who, err)
	}
	if status, _, raw := operatorCall(t, hs.URL, login.Token, "GET", "/admin/v1/whitelist/pending", nil); status != http.StatusOK || !strings.Contains(string(raw), num) {
		t.Errorf("the pending list to the session: %d %s", status, raw)
	}
	if status, _, raw := operatorCall(t, hs.URL, login.Token, "POST", "/admin/v1/logout", nil); status/100 != 2 {
		t.Errorf("logout: %d %s", status, raw)
	}
	// The admin token is not read-only.
	if status, _, raw := operatorCall(t, hs.URL, adminToken, "POST", "/admin/v1/whitelist/approve",
		EntryDecision{Entries: []policy.EntryRef{{Enterprise: "A", Number: num}}}); status != http.StatusOK {
		t.Errorf("the admin token's approval: %d %s", status, raw)
	}
}

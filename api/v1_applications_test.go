package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestOpenAPISelfServiceSchemas(t *testing.T) {
	checkSchemas(t, loadOpenAPI(t), map[string]any{
		"ApplicationRequest": ApplicationRequest{},
		"ApplicationStatus":  ApplicationStatus{},
		"PasswordChange":     PasswordChange{},
		"PasswordReset":      PasswordReset{},
	})
}

// selfCall sends a JSON request to the env's server with an optional bearer
// token and decodes a 2xx answer into out.
func (e *adminEnv) selfCall(t *testing.T, method, path, token string, body, out any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	code, b, _ := adminRaw(t, method, e.url+path, auth, "application/json", rd)
	if out != nil && code/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return code, b
}

// wantReason checks an error answer's status and reason.
func wantReason(t *testing.T, code int, body []byte, status int, reason string) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || code != status || eb.Error.Reason != reason {
		t.Fatalf("got %d %s, want %d %s", code, body, status, reason)
	}
	return eb.Error.Message
}

var firstPasswordRE = regexp.MustCompile(`初始密码：([^，。]+)。`)

// login logs in over POST /v1/login and returns the console token.
func (e *adminEnv) login(t *testing.T, systemID, password string) (string, int) {
	t.Helper()
	var lr LoginResponse
	code, _ := e.selfCall(t, "POST", "/v1/login", "", LoginRequest{SystemID: systemID, Password: password}, &lr)
	return lr.Token, code
}

func TestApplicationApproved(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	rec := &smsRecorder{}
	e.s.SetPasswordNotifier(rec.notify)
	req := ApplicationRequest{GroupCode: "GD0769001", Name: "东莞某某有限公司", ContactMobile: "137 1234 5678",
		Package: 3, Signature: "【某某公司】"}

	var st ApplicationStatus
	code, b := e.selfCall(t, "POST", "/v1/applications", "", req, &st)
	if code != http.StatusAccepted || st.State != "pending" || !strings.HasPrefix(st.Number, "app_") {
		t.Fatalf("apply: %d %s", code, b)
	}
	var again ApplicationStatus
	e.selfCall(t, "GET", "/v1/applications/"+st.Number, "", nil, &again)
	if again.State != "pending" || again.GroupCode != "GD0769001" || again.DecidedAt != nil {
		t.Fatalf("lookup %+v", again)
	}

	// The account manager: list pending, show, approve.
	list := adminMust(e.c.Applications("", 0)).get(t)
	if len(list) != 1 || list[0].Number != st.Number || list[0].ContactMobile != "+8613712345678" {
		t.Fatalf("pending %+v", list)
	}
	if got := adminMust(e.c.Application(st.Number)).get(t); got.Signature != "【某某公司】" {
		t.Fatalf("show %+v", got)
	}
	ok := adminMust(e.c.ApproveApplication(st.Number, "")).get(t)
	if !ok.PasswordSent || ok.Application.State != "approved" || ok.Application.AdminSystemID != "GD0769001" {
		t.Fatalf("approve %+v", ok)
	}
	sms := rec.take()
	if len(sms) != 1 || sms[0].mobile != "+8613712345678" {
		t.Fatalf("SMS %+v", sms)
	}
	m := firstPasswordRE.FindStringSubmatch(sms[0].text)
	if m == nil {
		t.Fatalf("no password in %q", sms[0].text)
	}
	if strings.Contains(e.logs.String(), m[1]) {
		t.Fatal("the first password is in the log")
	}
	if len(adminMust(e.c.Applications("", 0)).get(t)) != 0 {
		t.Fatal("still pending after approval")
	}
	wantAPIError(t, func() error { _, err := e.c.ApproveApplication(st.Number, ""); return err }(), http.StatusConflict, "already_decided")

	// The applicant sees it approved, with the admin's login.
	e.selfCall(t, "GET", "/v1/applications/"+st.Number, "", nil, &again)
	if again.State != "approved" || again.AdminSystemID != "GD0769001" || again.DecidedAt == nil {
		t.Fatalf("after approval %+v", again)
	}
	// The enterprise exists and its admin logs in with the SMS'd password.
	ent := adminMust(e.c.Enterprise("GD0769001", "")).get(t)
	if ent.Enterprise.Signature != "【某某公司】" || ent.Enterprise.Package != 3 || ent.Users != 1 {
		t.Fatalf("enterprise %+v", ent)
	}
	tok, code := e.login(t, "GD0769001", m[1])
	if code != http.StatusOK {
		t.Fatalf("login with the first password: %d", code)
	}
	var me Me
	e.selfCall(t, "GET", "/v1/me", tok, nil, &me)
	if me.Enterprise != "GD0769001" || me.Role != "admin" {
		t.Fatalf("me %+v", me)
	}

	// A second application for the same code is accepted like any other;
	// the account manager finds the code taken at approval.
	var dup ApplicationStatus
	if code, b := e.selfCall(t, "POST", "/v1/applications", "", req, &dup); code != http.StatusAccepted {
		t.Fatalf("second application: %d %s", code, b)
	}
	wantAPIError(t, func() error { _, err := e.c.ApproveApplication(dup.Number, "dup"); return err }(), http.StatusConflict, "exists")
	if len(rec.take()) != 0 {
		t.Fatal("SMS sent for a failed approval")
	}
	if _, err := e.c.User("dup"); err == nil {
		t.Fatal("a failed approval created its admin")
	}
}

func TestApplicationRejected(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	var st ApplicationStatus
	e.selfCall(t, "POST", "/v1/applications", "", ApplicationRequest{GroupCode: "GD0769002", Name: "某某",
		ContactMobile: "13712345678", Package: 1, Signature: "【某某】"}, &st)

	wantAPIError(t, func() error { _, err := e.c.RejectApplication(st.Number, ""); return err }(), http.StatusBadRequest, "invalid")
	// No notifier: an approval is refused before anything changes.
	wantAPIError(t, func() error { _, err := e.c.ApproveApplication(st.Number, ""); return err }(), http.StatusServiceUnavailable, "notifier_unavailable")
	got := adminMust(e.c.RejectApplication(st.Number, "签名与企业名称不符")).get(t)
	if got.State != "rejected" || got.Reason != "签名与企业名称不符" || got.DecidedBy != OperatorName {
		t.Fatalf("reject %+v", got)
	}
	var seen ApplicationStatus
	e.selfCall(t, "GET", "/v1/applications/"+st.Number, "", nil, &seen)
	if seen.State != "rejected" || seen.Reason != "签名与企业名称不符" {
		t.Fatalf("applicant sees %+v", seen)
	}
	if len(adminMust(e.c.Applications("rejected", 10)).get(t)) != 1 || len(adminMust(e.c.Applications("all", 0)).get(t)) != 1 {
		t.Fatal("rejected application not listed")
	}
	e.s.SetPasswordNotifier((&smsRecorder{}).notify)
	wantAPIError(t, func() error { _, err := e.c.ApproveApplication(st.Number, ""); return err }(), http.StatusConflict, "already_decided")
	if _, err := e.c.Enterprise("GD0769002", ""); err == nil {
		t.Fatal("a rejected application created its enterprise")
	}

	// Unknown and made-up numbers are not found, alike.
	for _, n := range []string{"app_aaaaaaaaaaaaaaaaaaaaaaaaaa", "GD0769002", "x"} {
		code, b := e.selfCall(t, "GET", "/v1/applications/"+n, "", nil, nil)
		if msg := wantReason(t, code, b, http.StatusNotFound, "not_found"); msg != "no such application" {
			t.Fatalf("%s: %q", n, msg)
		}
	}
	wantAPIError(t, func() error { _, err := e.c.Application("app_x"); return err }(), http.StatusNotFound, "not_found")
	wantAPIError(t, func() error { _, err := e.c.Applications("maybe", 0); return err }(), http.StatusBadRequest, "invalid")
	// The admin half needs the operator token.
	code, b := e.selfCall(t, "GET", "/admin/v1/applications", "", nil, nil)
	wantReason(t, code, b, http.StatusUnauthorized, "unauthorized")
}

func TestApplicationBadInput(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	good := ApplicationRequest{GroupCode: "G1", Name: "某某", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"}
	for _, tc := range []struct {
		name string
		edit func(*ApplicationRequest)
		want string // in the message
	}{
		{"missing group code", func(r *ApplicationRequest) { r.GroupCode = "" }, "group_code: required"},
		{"missing mobile", func(r *ApplicationRequest) { r.ContactMobile = "" }, "contact_mobile: required"},
		{"missing package", func(r *ApplicationRequest) { r.Package = 0 }, "package: required"},
		{"missing signature", func(r *ApplicationRequest) { r.Signature = "" }, "signature: required"},
		{"bad group code", func(r *ApplicationRequest) { r.GroupCode = "G 1" }, "group code"},
		{"bad mobile", func(r *ApplicationRequest) { r.ContactMobile = "010-88886666" }, "contact mobile"},
		{"unknown package", func(r *ApplicationRequest) { r.Package = 13 }, "package 13 is not in the package table"},
		{"signature malformed", func(r *ApplicationRequest) { r.Signature = "某某公司" }, "must be wrapped in 【】"},
		{"signature too long", func(r *ApplicationRequest) { r.Signature = "【" + strings.Repeat("长", 21) + "】" }, "2–20 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.edit(&in)
			code, b := e.selfCall(t, "POST", "/v1/applications", "", in, nil)
			if msg := wantReason(t, code, b, http.StatusBadRequest, "invalid"); !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q, want %q", msg, tc.want)
			}
		})
	}
	code, b := e.selfCall(t, "POST", "/v1/applications", "", map[string]any{"group_code": "G1", "extra": 1}, nil)
	wantReason(t, code, b, http.StatusBadRequest, "invalid")
	if len(adminMust(e.c.Applications("all", 0)).get(t)) != 0 {
		t.Fatal("bad input stored an application")
	}
}

func TestApplicationRateLimit(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	in := ApplicationRequest{GroupCode: "G1", Name: "某某", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"}
	for i := range applyBurst {
		if code, b := e.selfCall(t, "POST", "/v1/applications", "", in, nil); code != http.StatusAccepted {
			t.Fatalf("application %d: %d %s", i, code, b)
		}
	}
	code, b := e.selfCall(t, "POST", "/v1/applications", "", in, nil)
	wantReason(t, code, b, http.StatusTooManyRequests, "rate_limited")
	if n := len(adminMust(e.c.Applications("", 0)).get(t)); n != applyBurst {
		t.Fatalf("%d pending, want %d", n, applyBurst)
	}
}

// TestApplicationCodeNotLeaked: the answer for a taken group code is the
// answer for a free one, field for field but the number and time.
func TestApplicationCodeNotLeaked(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	adminMust(e.c.CreateEnterprise(NewEnterprise{Code: "TAKEN", Name: "已开户", Signature: "【已开户】", Package: 1})).get(t)
	answer := func(code string) (int, ApplicationStatus) {
		var st ApplicationStatus
		c, _ := e.selfCall(t, "POST", "/v1/applications", "", ApplicationRequest{GroupCode: code, Name: "某某",
			ContactMobile: "13712345678", Package: 1, Signature: "【某某】"}, &st)
		st.Number, st.CreatedAt, st.GroupCode = "", time.Time{}, ""
		return c, st
	}
	c1, taken := answer("TAKEN")
	c2, free := answer("FREE")
	if c1 != c2 || taken != free {
		t.Fatalf("taken %d %+v, free %d %+v", c1, taken, c2, free)
	}
}

// TestApplicationRateLimitIPv6: the public routes count an IPv6 source by
// its /64, so a host that sends each application from another of its
// 2^64 addresses is held back as one; the next /64 is another source.
func TestApplicationRateLimitIPv6(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	post := applyFrom(e.s.Handler())
	for i := range applyBurst {
		if code := post(fmt.Sprintf("[2001:db8:0:7::%x]:4%d", i+1, i)); code != http.StatusAccepted {
			t.Fatalf("application %d: %d", i, code)
		}
	}
	if code := post("[2001:db8:0:7:ffff::1]:5000"); code != http.StatusTooManyRequests {
		t.Errorf("another address of the same /64: %d, want 429", code)
	}
	if code := post("[2001:db8:0:8::1]:5000"); code != http.StatusAccepted {
		t.Errorf("the next /64: %d, want 202", code)
	}
}

// postFrom posts body as JSON to the env's path over a connection from the
// loopback address src (the whole 127.0.0.0/8 is loopback: a client at
// another address, in another /24 if the third byte differs).
func (e *adminEnv) postFrom(t *testing.T, src, path string, body any) (int, []byte, http.Header) {
	t.Helper()
	c := clientFrom(src)
	defer c.CloseIdleConnections()
	resp, err := c.Post(e.url+path, "application/json", bytes.NewReader(mustJSON(t, body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, buf.Bytes(), resp.Header
}

// TestApplicationRateLimitPrefix: applications from the addresses of one
// /24 together get prefixBurstTimes addresses' burst, over real
// connections from 127.0.1.x; an address refused by its own bucket takes
// nothing of its network's; another /24 is another network.
func TestApplicationRateLimitPrefix(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	in := ApplicationRequest{GroupCode: "G1", Name: "某某", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"}
	// 127.0.1.1 spends its burst, then is refused ten times.
	for i := range applyBurst + 10 {
		code, b, h := e.postFrom(t, "127.0.1.1", "/v1/applications", in)
		if i < applyBurst {
			if code != http.StatusAccepted {
				t.Fatalf("127.0.1.1's application %d: %d %s", i, code, b)
			}
			continue
		}
		wantReason(t, code, b, http.StatusTooManyRequests, "rate_limited")
		if h.Get("Retry-After") != "600" {
			t.Fatalf("Retry-After %q, want 600", h.Get("Retry-After"))
		}
	}
	// 29 more addresses of the /24, one each: the network's other
	// (prefixBurstTimes − 1) × applyBurst go, the rest are refused.
	netBurst := prefixBurstTimes * applyBurst
	for i := range 29 {
		src := fmt.Sprintf("127.0.1.%d", 2+i)
		code, b, h := e.postFrom(t, src, "/v1/applications", in)
		if applyBurst+i < netBurst {
			if code != http.StatusAccepted {
				t.Fatalf("%s (the network's application %d): %d %s", src, applyBurst+i, code, b)
			}
			continue
		}
		if msg := wantReason(t, code, b, http.StatusTooManyRequests, "rate_limited"); !strings.Contains(msg, "network") {
			t.Errorf("%s: message %q does not name the network", src, msg)
		}
		if h.Get("Retry-After") != "600" {
			t.Fatalf("Retry-After %q, want 600", h.Get("Retry-After"))
		}
	}
	if code, b, _ := e.postFrom(t, "127.0.2.1", "/v1/applications", in); code != http.StatusAccepted {
		t.Errorf("another /24: %d %s, want 202", code, b)
	}
	if n := len(adminMust(e.c.Applications("", 0)).get(t)); n != netBurst+1 {
		t.Errorf("%d pending, want %d", n, netBurst+1)
	}
}

// TestApplicationRateLimitIPv6Prefix: the /64s of one /48 together get
// prefixBurstTimes sources' burst; the next /48 is another network.
func TestApplicationRateLimitIPv6Prefix(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	post := applyFrom(e.s.Handler())
	accepted := 0
	for i := range 30 { // one from each of 30 /64s of 2001:db8:7::/48
		switch code := post(fmt.Sprintf("[2001:db8:7:%x::1]:4000", i+1)); code {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("application %d: %d", i, code)
		}
	}
	if want := prefixBurstTimes * applyBurst; accepted != want {
		t.Errorf("30 /64s of one /48: %d accepted, want %d", accepted, want)
	}
	if code := post("[2001:db8:8::1]:4000"); code != http.StatusAccepted {
		t.Errorf("the next /48: %d, want 202", code)
	}
}

// applyFrom posts one application (the same each time) to h as if from
// remote ("[ipv6]:port", which a loopback connection cannot be) and
// returns the status.
func applyFrom(h http.Handler) func(remote string) int {
	body, _ := json.Marshal(ApplicationRequest{GroupCode: "G6", Name: "某某", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"})
	return func(remote string) int {
		r := httptest.NewRequest(http.MethodPost, "/v1/applications", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
}

package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestLoginPageAndSecurityHeaders(t *testing.T) {
	r := newRig(t)
	c := r.client()
	a := c.get("/")
	if a.Status != http.StatusSeeOther || a.Location != "/login" {
		t.Fatalf("GET / without a session: %d → %q, want 303 → /login", a.Status, a.Location)
	}
	a = c.get("/login")
	a.wantPage(t, "用户登录", `name="csrf"`, `name="system_id"`)
	csp := a.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "default-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline script or eval: %q", csp)
	}
	if strings.Contains(a.Body, "<script>") || strings.Contains(a.Body, "onclick=") {
		t.Errorf("page has inline script")
	}
	// The pre-login cookie binds the form's token.
	var pre *http.Cookie
	for _, ck := range c.hc.Jar.Cookies(mustURL(t, r.url)) {
		if ck.Name == preCookie {
			pre = ck
		}
	}
	if pre == nil {
		t.Fatal("no pre-login cookie")
	}
}

func TestLoginSetsSessionCookieAndLogout(t *testing.T) {
	r := newRig(t)
	c := r.client()
	tok := c.csrf("/login")
	a := c.post("/login", url.Values{"csrf": {tok}, "system_id": {"alice"}, "password": {password}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("login: %d %s", a.Status, a.Body)
	}
	sc := a.Header.Values("Set-Cookie")
	if len(sc) == 0 || !strings.Contains(sc[0], sessionCookie+"=qxs_") || !strings.Contains(sc[0], "HttpOnly") || !strings.Contains(sc[0], "SameSite=Strict") {
		t.Errorf("session cookie %q: want qxs_ token, HttpOnly, SameSite=Strict", sc)
	}
	if strings.Contains(sc[0], "Secure") {
		t.Errorf("Secure cookie over plain HTTP: the browser would drop it")
	}
	c.get("/outbox").wantPage(t, "发件箱", "甲公司", "alice")

	// Logout needs its token; then the session is gone at the API too.
	a = c.post("/logout", url.Values{})
	if a.Status != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %d, want 403", a.Status)
	}
	a = c.submit("/outbox", "/logout", url.Values{})
	if a.Status != http.StatusSeeOther || a.Location != "/login" {
		t.Fatalf("logout: %d → %q", a.Status, a.Location)
	}
	a = c.get("/outbox")
	if a.Status != http.StatusSeeOther || !strings.HasPrefix(a.Location, "/login") {
		t.Errorf("after logout: %d → %q, want the login page", a.Status, a.Location)
	}
}

func TestLoginRefusals(t *testing.T) {
	r := newRig(t)
	c := r.client()
	// No token, a token of another cookie, a cross-site POST: refused
	// before the API sees a password.
	a := c.post("/login", url.Values{"system_id": {"alice"}, "password": {password}})
	if a.Status != http.StatusForbidden {
		t.Errorf("login without CSRF token: %d, want 403", a.Status)
	}
	other := r.client()
	a = c.post("/login", url.Values{"csrf": {other.csrf("/login")}, "system_id": {"alice"}, "password": {password}})
	if a.Status != http.StatusForbidden {
		t.Errorf("login with another browser's token: %d, want 403", a.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, r.url+"/login", strings.NewReader(url.Values{"csrf": {c.csrf("/login")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if a = c.do(req); a.Status != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", a.Status)
	}
	a = c.submit("/login", "/login", url.Values{"system_id": {"alice"}, "password": {"wrong"}})
	if a.Status != http.StatusUnauthorized || !strings.Contains(a.Body, "用户名或密码错误") {
		t.Errorf("wrong password: %d, want 401 with the reason in Chinese; body:\n%s", a.Status, a.Body)
	}
	if !strings.Contains(a.Body, `value="alice"`) {
		t.Errorf("the form does not keep the user name")
	}
}

func TestLoginNextIsLocalOnly(t *testing.T) {
	for next, want := range map[string]string{
		"/outbox?state=delivered": "/outbox?state=delivered",
		"//evil.example/x":        "/",
		"https://evil.example/":   "/",
		"/\\evil.example":         "/",
		"":                        "/",
	} {
		if got := localPath(next, "/"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A url-encoded form is read up to maxForm bytes: a bigger one is refused
// before any handler, without the console holding it.
func TestFormBodyIsBounded(t *testing.T) {
	r := newRig(t)
	c := r.client()
	tok := c.csrf("/login")
	a := c.post("/login", url.Values{"csrf": {tok}, "system_id": {"alice"}, "password": {strings.Repeat("x", maxForm)}})
	if a.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte form: status %d, want 413", maxForm, a.Status)
	}
	c.login("alice") // and the next normal form still works
}

package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
)

// Sessions and CSRF. The console keeps no session table of its own: a
// login is POST /v1/login (or POST /admin/v1/login at /ops/), and the
// session token the API answers is the cookie's value. The API slides its
// 30-minute idle expiry on every call, so the FAQ's "30 minutes unused,
// back to the login page" is the API's rule, seen here as a 401.
//
// Every state-changing request carries a CSRF token: an HMAC of the
// cookie it acts under (the session, or before login a random pre-login
// cookie) with a key made at start. A token is good for its session only,
// and a restart (which ends every session anyway) changes the key.

const (
	sessionCookie = "qxtd_session" // the enterprise console's session token (qxs_…)
	opsCookie     = "qxtd_ops"     // the account manager's session token (qxo_…), path /ops/
	preCookie     = "qxtd_pre"     // a random value that the login forms' CSRF token is bound to
	flashCookie   = "qxtd_flash"   // a notice shown once on the next page
	csrfField     = "csrf"         // the form field (or query parameter) of the token
	csrfHeader    = "X-CSRF-Token" // htmx sends the token as this header
)

// sessionToken is the enterprise session token of r ("" = none).
func sessionToken(r *http.Request) string { return cookieValue(r, sessionCookie) }

// opsToken is the operator session token of r ("" = none).
func opsToken(r *http.Request) string { return cookieValue(r, opsCookie) }

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// setCookie sets an HttpOnly, SameSite=Strict cookie, Secure when the
// browser came over TLS. maxAge < 0 deletes it; 0 makes it last as long as
// the browser session (the API ends the login itself).
func setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// csrfToken is the token of forms acting under the cookie value v.
func (s *Server) csrfToken(purpose, v string) string {
	m := hmac.New(sha256.New, s.csrfKey[:])
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// checkCSRF reports whether r carries the token of the cookie value v
// (header, query parameter or url-encoded form field; multipart forms put
// it in the action's query so that the body can be passed on unread).
func (s *Server) checkCSRF(r *http.Request, purpose, v string) bool {
	if v == "" {
		return false
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.URL.Query().Get(csrfField)
	}
	if got == "" && isURLEncoded(r) {
		got = r.PostFormValue(csrfField)
	}
	want := s.csrfToken(purpose, v)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func isURLEncoded(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "" || ct == "application/x-www-form-urlencoded" || len(ct) > 33 && ct[:33] == "application/x-www-form-urlencoded"
}

// preLogin returns the pre-login cookie value of r, setting a new one if
// there is none (the login forms' CSRF token is bound to it).
func preLogin(w http.ResponseWriter, r *http.Request) string {
	if v := cookieValue(r, preCookie); v != "" {
		return v
	}
	var b [18]byte
	_, _ = rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	setCookie(w, r, preCookie, v, "/", 0)
	return v
}

// setFlash leaves a notice for the next page the browser opens.
func setFlash(w http.ResponseWriter, r *http.Request, msg string) {
	setCookie(w, r, flashCookie, url.QueryEscape(msg), "/", 60)
}

// takeFlash returns the pending notice, if any, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	v := cookieValue(r, flashCookie)
	if v == "" {
		return ""
	}
	setCookie(w, r, flashCookie, "", "/", -1)
	msg, err := url.QueryUnescape(v)
	if err != nil {
		return ""
	}
	return msg
}

// idleNotice is shown on the login page after a session ended unused (FAQ 19).
const idleNotice = "您已超过 30 分钟未操作，系统已自动退出，请重新登录。"

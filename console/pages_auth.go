package console

import (
	"net/http"
	"strings"

	"github.com/qxtd/qxtd/api"
)

// Logging in and out: the enterprise console (/login) and the account
// manager's desk (/ops/login). The API does the checking and the
// throttling of failures (per source address), and owns the sessions.

func (s *Server) loginPage(q *req) {
	if sessionToken(q.r) != "" && q.r.URL.Query().Get("next") == "" {
		// Already logged in? The home page checks, and comes back here if not.
		q.redirect("/", "")
		return
	}
	p := q.view(nil)
	p.Form.Set("next", q.r.URL.Query().Get("next"))
	q.render(http.StatusOK, "login", p)
}

func (s *Server) login(q *req) {
	p := q.view(nil)
	sid := strings.TrimSpace(q.r.PostFormValue("system_id"))
	p.Form.Set("system_id", sid)
	p.Form.Set("next", q.r.PostFormValue("next"))
	var out api.LoginResponse
	err := s.client(q.r, "").DoContext(q.r.Context(), http.MethodPost, "/v1/login",
		api.LoginRequest{SystemID: sid, Password: q.r.PostFormValue("password")}, &out)
	if err != nil {
		p.Errors["password"] = zhError(err)
		q.render(statusOf(err), "login", p)
		return
	}
	setCookie(q.w, q.r, sessionCookie, out.Token, "/", 0)
	q.redirect(localPath(q.r.PostFormValue("next"), "/"), "")
}

func (s *Server) logout(q *req) {
	_ = s.call(q.r, http.MethodPost, "/v1/logout", nil, nil) // ended either way
	setCookie(q.w, q.r, sessionCookie, "", "/", -1)
	q.redirect("/login", "您已安全退出。")
}

func (s *Server) opsLoginPage(q *req) {
	p := q.view(nil)
	p.Form.Set("next", q.r.URL.Query().Get("next"))
	q.render(http.StatusOK, "ops_login", p)
}

func (s *Server) opsLogin(q *req) {
	p := q.view(nil)
	p.Form.Set("next", q.r.PostFormValue("next"))
	var out api.OperatorLoginResponse
	err := s.client(q.r, "").DoContext(q.r.Context(), http.MethodPost, "/admin/v1/login",
		map[string]string{"token": q.r.PostFormValue("token")}, &out)
	if err != nil {
		p.Errors["token"] = zhError(err)
		if isStatus(err, http.StatusUnauthorized) {
			p.Errors["token"] = "运营令牌错误"
		}
		q.render(statusOf(err), "ops_login", p)
		return
	}
	setCookie(q.w, q.r, opsCookie, out.Token, "/ops/", 0)
	q.redirect(localPath(q.r.PostFormValue("next"), "/ops/"), "")
}

func (s *Server) opsLogout(q *req) {
	_ = s.opsCall(q.r, http.MethodPost, "/admin/v1/logout", nil, nil)
	setCookie(q.w, q.r, opsCookie, "", "/ops/", -1)
	q.redirect("/ops/login", "您已安全退出。")
}

// localPath is next if it is a path of this site (never another host:
// "//evil" and "/\evil" are refused), else def.
func localPath(next, def string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return def
	}
	return next
}

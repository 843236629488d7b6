package console

import (
	"crypto/rand"
	"embed"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/qxtd/qxtd/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console needs.
type Config struct {
	// API is the HTTP API's handler (api.Server.Handler): every page is
	// made of its answers.
	API    http.Handler
	Logger *slog.Logger
}

// Server serves the console's pages.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux // both audiences: the demo's one port
	entMux  *http.ServeMux // the enterprise console alone
	deskMux *http.ServeMux // the account manager's desk alone
	pages   map[string]*pageTemplate
	csrfKey [32]byte
}

// New returns the console; mount Handler at "/" of the daemon's HTTP
// server (the API's /v1/ and /admin/ patterns are more specific and win).
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, errors.New("console: Config.API is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), entMux: http.NewServeMux(), deskMux: http.NewServeMux()}
	if _, err := rand.Read(s.csrfKey[:]); err != nil {
		return nil, err
	}
	var err error
	if s.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Handler is the console's root handler: pages, static files and the
// browser-side protections every answer carries.
func (s *Server) Handler() http.Handler { return protect(s.mux) }

// EnterpriseHandler serves the enterprise console alone (the pages at /,
// no /ops/): for the enterprise-facing listener when the desk has its own
// (the daemon's http.ops_listen). /ops/ answers 404 there.
func (s *Server) EnterpriseHandler() http.Handler { return protect(s.entMux) }

// DeskHandler serves the account manager's desk alone (/ops/ and the
// static files its pages load): for the operators' listener. Enterprise
// pages answer 404 there.
func (s *Server) DeskHandler() http.Handler { return protect(s.deskMux) }

func protect(mux *http.ServeMux) http.Handler {
	cop := http.NewCrossOriginProtection()
	return cop.Handler(securityHeaders(boundForms(mux)))
}

// maxForm bounds the body of a url-encoded form (the Go default is
// 10 MB). File uploads are multipart: they pass unread to the API, whose
// own limits bound them.
const maxForm = 256 << 10

// boundForms caps the body of every POST that is not a multipart upload.
func boundForms(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "表单内容过大或格式错误（form too large or malformed）", http.StatusRequestEntityTooLarge)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// csp allows scripts and styles from the console itself only: no inline
// script, no eval (htmx is configured without it), nothing from elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// route is one console page or action.
type route struct {
	pattern string
	h       func(*Server, *req)
}

// routes registers every page. Enterprise pages need a console session
// (else: the login page), /ops/ pages an operator session; every POST
// needs its CSRF token.
func (s *Server) routes() {
	s.register(s.mux, true, true)
	s.register(s.entMux, true, false)
	s.register(s.deskMux, false, true)
}

// register adds the enterprise pages, the desk's, or both to mux; both
// need the static files and the favicon.
func (s *Server) register(mux *http.ServeMux, enterprise, desk bool) {
	mux.Handle("GET /static/", http.FileServerFS(staticFS))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if enterprise {
		for _, rt := range publicRoutes {
			mux.HandleFunc(rt.pattern, s.public(rt.h))
		}
		for _, rt := range enterpriseRoutes {
			mux.HandleFunc(rt.pattern, s.enterprise(rt.h))
		}
	}
	if desk {
		for _, rt := range opsPublicRoutes {
			mux.HandleFunc(rt.pattern, s.opsPublic(rt.h))
		}
		for _, rt := range opsRoutes {
			mux.HandleFunc(rt.pattern, s.operator(rt.h))
		}
	}
}

// req is one browser request being answered: the writer, the request,
// and who asks (Me for enterprise pages, Ops at /ops/).
type req struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	me    *api.Me
	ops   bool
	token string               // the session token the API is called with
	csrf  string               // the token this page's forms carry
	who   *api.OperatorSession // the desk's: whom its session acts as (opsWho)
}

// opsWho is whom the desk's session acts as and what it may do, as the
// API says on this request (GET /admin/v1/session, asked once a
// request): the header's name and portfolio, and what the desk offers.
// Asked on every page, not kept from the login, so that a reload that
// gives a manager another portfolio or makes it read-only shows on its
// next page. What the session may do is the API's to decide; this only
// shapes the page. A failed call is an empty answer: the page's own calls
// report the session's end.
func (q *req) opsWho() api.OperatorSession {
	if q.who == nil {
		q.who = &api.OperatorSession{}
		if q.token != "" {
			_ = q.s.opsCall(q.r, http.MethodGet, "/admin/v1/session", nil, q.who)
		}
	}
	return *q.who
}

// public serves a page without a session (login, forgotten password);
// its forms are bound to the pre-login cookie.
func (s *Server) public(h func(*Server, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pre := preLogin(w, r)
		q := &req{s: s, w: w, r: r, csrf: s.csrfToken("pre", pre)}
		if r.Method == http.MethodPost && !s.checkCSRF(r, "pre", cookieValue(r, preCookie)) {
			q.forbidden()
			return
		}
		h(s, q)
	}
}

// enterprise serves a page of the enterprise console: the session is
// checked by the API (GET /v1/me, which also slides its idle expiry); an
// ended session lands on the login page with the idle notice.
func (s *Server) enterprise(h func(*Server, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := sessionToken(r)
		if tok == "" {
			s.toLogin(w, r, "/login", "")
			return
		}
		q := &req{s: s, w: w, r: r, token: tok, csrf: s.csrfToken("user", tok)}
		if r.Method == http.MethodPost && !s.checkCSRF(r, "user", tok) {
			q.forbidden()
			return
		}
		var me api.Me
		if err := s.call(r, http.MethodGet, "/v1/me", nil, &me); err != nil {
			if isStatus(err, http.StatusUnauthorized) {
				setCookie(w, r, sessionCookie, "", "/", -1)
				s.toLogin(w, r, "/login", idleNotice)
				return
			}
			q.fail(err)
			return
		}
		q.me = &me
		h(s, q)
	}
}

// opsPublic is public for the account manager's login page.
func (s *Server) opsPublic(h func(*Server, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pre := preLogin(w, r)
		q := &req{s: s, w: w, r: r, ops: true, csrf: s.csrfToken("pre", pre)}
		if r.Method == http.MethodPost && !s.checkCSRF(r, "pre", cookieValue(r, preCookie)) {
			q.forbidden()
			return
		}
		h(s, q)
	}
}

// operator serves a page of the account manager's desk. The operator
// session is checked by the first API call the page makes; a 401 from it
// lands on /ops/login (req.fail does that).
func (s *Server) operator(h func(*Server, *req)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := opsToken(r)
		if tok == "" {
			s.toLogin(w, r, "/ops/login", "")
			return
		}
		q := &req{s: s, w: w, r: r, ops: true, token: tok, csrf: s.csrfToken("ops", tok)}
		if r.Method == http.MethodPost && !s.checkCSRF(r, "ops", tok) {
			q.forbidden()
			return
		}
		h(s, q)
	}
}

// toLogin sends the browser to a login page (htmx requests are told to
// go there with HX-Redirect, since a fragment swap would not show it).
func (s *Server) toLogin(w http.ResponseWriter, r *http.Request, login, notice string) {
	if notice != "" {
		setFlash(w, r, notice)
	}
	to := login
	if r.Method == http.MethodGet && r.URL.Path != "/" && r.URL.Path != "/ops/" && r.Header.Get("HX-Request") == "" {
		to += "?next=" + urlQueryEscape(r.URL.RequestURI())
	}
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// isStatus reports whether err is an API answer with HTTP status code.
func isStatus(err error, code int) bool {
	var ae *api.APIError
	return errors.As(err, &ae) && ae.Status == code
}

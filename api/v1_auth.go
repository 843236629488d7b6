package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// Authentication of /v1: an API key issued by an admin, or a console token
// from POST /v1/login (session.go keeps the console sessions). The caller
// is looked up afresh on every request.

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	SystemID string `json:"system_id"`
	Password string `json:"password"`
}

// LoginResponse is the answer of POST /v1/login.
type LoginResponse struct {
	Token     string `json:"token"`      // send as "Authorization: Bearer <token>"
	ExpiresIn int    `json:"expires_in"` // seconds of inactivity until it ends
}

// Me is the answer of GET /v1/me.
type Me struct {
	SystemID       string `json:"system_id"`
	Name           string `json:"name"`
	Role           string `json:"role"`
	Enterprise     string `json:"enterprise"`
	EnterpriseName string `json:"enterprise_name"`
	Signature      string `json:"signature"`      // the enterprise signature
	UserSignature  string `json:"user_signature"` // appended to the text, "" = none
	Session        bool   `json:"session"`        // authenticated by a console token
}

// authenticated wraps a handler with the caller's authentication: an API
// key or a live console token (whose expiry the request slides). The user
// and enterprise are looked up afresh on every request, so a disabled
// enterprise or a deleted user stops at once.
func (s *Server) authenticated(h userHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qxtd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer <API key or console token> required")
			return
		}
		c, err := s.callerOf(tok)
		if err != nil {
			if errors.Is(err, policy.ErrAuth) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="qxtd", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "unknown API key, or console session ended (30 minutes without use, logout, or ended by newer logins of its user or enterprise)")
				return
			}
			writeRefusal(w, err)
			return
		}
		h(c, w, r)
	}
}

func (s *Server) callerOf(tok string) (*caller, error) {
	pol := s.cfg.Policy
	if pol == nil {
		return nil, policy.ErrAuth
	}
	if !isSessionToken(tok) {
		u, ent, err := pol.AuthenticateAPIKey(tok)
		if err != nil {
			return nil, err
		}
		return &caller{user: u, ent: ent, acct: gateway.AccountFor(u, ent)}, nil
	}
	se, ok := s.user.sessions.touch(tok)
	if !ok {
		return nil, policy.ErrAuth
	}
	u, err := pol.User(policy.Actor{Enterprise: se.enterprise, Name: se.systemID}, se.systemID)
	if err != nil || u.Enterprise != se.enterprise {
		s.user.sessions.end(tok) // the user was deleted or moved
		return nil, policy.ErrAuth
	}
	ent, ok := pol.Lookup(u.Enterprise)
	if !ok {
		s.user.sessions.end(tok)
		return nil, policy.ErrAuth
	}
	if ent.Disabled {
		return nil, policy.NewRefusalZH(policy.ReasonAccountDisabled, "enterprise "+ent.Code, "企业 "+ent.Code+" 已停用")
	}
	if u.Disabled {
		s.user.sessions.end(tok)
		return nil, policy.NewRefusalZH(policy.ReasonAccountDisabled, "user "+u.SystemID, "用户 "+u.SystemID+" 已停用")
	}
	return &caller{user: u, ent: ent, acct: gateway.AccountFor(u, ent), session: tok}, nil
}

// login: POST /v1/login. login.go says how logins are admitted to the
// password check.
func (s *Server) login(_ *caller, w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !s.accountStore(w) {
		return
	}
	ip := clientIP(r)
	// A cache of verified credentials would be consulted here, before the gate.
	l := &s.user.logins
	key, class := l.loginKey(ip, req.SystemID)
	prefix := "" // a known pair (its key is not the address) is not counted under its network (login.go)
	if key == ip {
		prefix = clientPrefix(r)
	}
	if !holdLogin(w, &l.gate, key, prefix) {
		return
	}
	defer l.gate.unhold(key, prefix) // after the failure delay below
	ctx := r.Context()
	if err := l.gate.wait(ctx, class); err != nil {
		if errors.Is(err, errLoginBusy) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, policy.ReasonRateLimited.String(), "too many logins waiting; retry later")
		}
		return // otherwise the client hung up: nobody to answer
	}
	if ctx.Err() != nil { // admitted after the client hung up: no bcrypt for nobody
		l.gate.done()
		return
	}
	u, ent, err := s.cfg.Policy.Authenticate(req.SystemID, req.Password)
	l.gate.done()
	if err != nil {
		if errors.Is(err, policy.ErrAuth) {
			t := time.NewTimer(l.failed(key, prefix))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", "wrong system_id or password")
			return
		}
		writeRefusal(w, err)
		return
	}
	l.loggedIn(key, ip, u.SystemID)
	tok, err := s.user.sessions.create(u.SystemID, ent.Code)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, LoginResponse{Token: tok, ExpiresIn: int(SessionIdle / time.Second)})
}

// holdLogin holds key and prefix for a login (loginGate.hold), else
// answers 429.
func holdLogin(w http.ResponseWriter, g *loginGate, key, prefix string) bool {
	err := g.hold(key, prefix)
	if err == nil {
		return true
	}
	msg := "a login from this address is already in progress; retry when it is answered"
	if errors.Is(err, errNetworkLogins) {
		msg = "too many logins from this address's network are in progress; retry when one is answered"
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, policy.ReasonRateLimited.String(), msg)
	return false
}

// clientIP is the request's source as the login throttles and the public
// routes' rate limits key it: the connection's address, an IPv6 one by its
// /64 (smpp.SourceKey: every listener counts a source alike).
// X-Forwarded-For is not read.
func clientIP(r *http.Request) string { return smpp.SourceKey(r.RemoteAddr) }

// clientPrefix is the network of the request's source, as the limits that
// hold a source spread over many addresses count it: an IPv4 /24, an IPv6
// /48 (smpp.SourcePrefix).
func clientPrefix(r *http.Request) string { return smpp.SourcePrefix(r.RemoteAddr) }

func (s *Server) logout(c *caller, w http.ResponseWriter, _ *http.Request) {
	if c.session == "" {
		writeInvalid(w, "", "退出登录只用于控制台的登录会话；API 密钥请由管理员吊销", "logout ends console sessions; an API key is revoked by an admin")
		return
	}
	s.user.sessions.end(c.session)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(c *caller, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Me{
		SystemID: c.user.SystemID, Name: c.user.Name, Role: c.user.Role.String(),
		Enterprise: c.ent.Code, EnterpriseName: c.ent.Name,
		Signature: c.acct.Signature, UserSignature: c.acct.UserSignature, Session: c.session != "",
	})
}

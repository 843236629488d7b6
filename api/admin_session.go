package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Operator sessions: POST /admin/v1/login exchanges the operator token of
// the configuration for a session token ("qxo_…") that the browser
// console keeps instead of the configured token, so that the long-lived
// secret is typed once and not stored in a browser. A session is like a
// console session of /v1 (session.go, the same table type and clock): in
// memory only, ended 30 minutes after its last request, at logout, or
// when the table is full and it is the least recently used. The table is
// its own (a cluster's store bounds the kind apart likewise), so no
// enterprise's logins can end an operator session. It acts as
// policy.OperatorActor like the token does. Wrong tokens are answered
// after the failure delay of POST /v1/login (loginThrottle, per source
// address) and one login per address is checked at a time, so guessing
// the token is as slow as guessing a password.

const (
	// MaxOperatorSessions bounds the operator session table (account
	// managers, a few browsers each). It has no per-user share: every
	// session is the one operator's.
	MaxOperatorSessions = 1000

	operatorPrefix = "qxo_" // tells operator sessions from the configured token
)

// OperatorLoginRequest is the body of POST /admin/v1/login.
type OperatorLoginRequest struct {
	Token string `json:"token"` // the operator token of the configuration
}

// OperatorLoginResponse is the answer of POST /admin/v1/login.
type OperatorLoginResponse struct {
	Token     string `json:"token"`      // "qxo_…": send as "Authorization: Bearer <token>"
	ExpiresIn int    `json:"expires_in"` // seconds of inactivity until it ends
	OperatorSession
}

// OperatorSession is whom an operator token or session acts as, and what
// it may do: the answer of GET /admin/v1/session, and part of the
// login's. A reload may change it for a session already open, so the
// desk asks on every page.
type OperatorSession struct {
	// Name is whom the session acts as: the account manager whose token
	// it was opened with, or "admin-api" for the admin token.
	Name string `json:"name"`
	// Enterprises are the group codes the account manager serves (its
	// portfolio, http.account_managers[].enterprises); absent: every
	// enterprise.
	Enterprises []string `json:"enterprises,omitempty"`
	// ReadOnly: the account manager may read and change nothing
	// (http.account_managers[].read_only).
	ReadOnly bool `json:"read_only,omitempty"`
}

// isOperatorSession tells an operator session token by its prefix.
func isOperatorSession(tok string) bool { return strings.HasPrefix(tok, operatorPrefix) }

// operatorToken compares tok with the configured operator token and
// each account manager's, every one in constant time (which one matched
// does not show in the time taken), and names whose it is: OperatorName
// for the admin token. An empty admin token matches nothing.
func (s *Server) operatorToken(tok string) (name string, ok bool) {
	if s.cfg.AdminToken == "" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) == 1 {
		name, ok = OperatorName, true
	}
	for _, m := range *s.admin.managers.Load() {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(m.Token)) == 1 && !ok {
			name, ok = m.Name, true
		}
	}
	return name, ok
}

// operatorOK reports whether tok authenticates the operator, and as
// whom: a configured token, or a live operator session (whose expiry it
// slides) under the name of the token it was opened with.
func (s *Server) operatorOK(tok string) (name string, ok bool) {
	if s.cfg.AdminToken == "" {
		return "", false // the admin API is disabled, sessions included
	}
	if isOperatorSession(tok) {
		se, ok := s.admin.sessions.touch(tok)
		if !ok {
			return "", false
		}
		cur, ok := s.operatorTokenOf(se.systemID)
		if !ok || subtle.ConstantTimeCompare([]byte(se.enterprise), []byte(operatorBinding(tok, cur))) != 1 {
			return "", false
		}
		return se.systemID, true
	}
	return s.operatorToken(tok)
}

// operatorTokenOf is the token the configuration now gives the operator
// named name (the admin token for OperatorName); false for a name it does
// not have (a manager taken out).
func (s *Server) operatorTokenOf(name string) (string, bool) {
	if name == OperatorName {
		return s.cfg.AdminToken, true
	}
	for _, m := range *s.admin.managers.Load() {
		if m.Name == name {
			return m.Token, true
		}
	}
	return "", false
}

// operatorBinding ties an operator session (session, its own token) to
// the configured token it was opened with: kept in the session's
// enterprise (an operator's is otherwise ""), it holds only while the
// configuration gives the operator that token still. So a token rotated
// or a manager taken out ends the sessions opened with the old one, by a
// reload or a restart, whichever node opened them (in a cluster the
// sessions live in etcd and outlive a node's restart): without it, a
// session opened with an admin token that leaked went on after the token
// was changed. Salted with the session's own token, which is never
// stored, so what etcd or a backup holds tells nothing of the configured
// token. A session of an earlier release (no binding) is refused: its
// operator logs in again.
func operatorBinding(session, configured string) string {
	h := sha256.New()
	h.Write([]byte("qxtd operator session\x00"))
	h.Write([]byte(session))
	h.Write([]byte{0})
	h.Write([]byte(configured))
	return "t1." + hex.EncodeToString(h.Sum(nil)[:16])
}

// operatorActor is the actor the operator named name acts as: the
// admin token's (OperatorName), or a configured manager's, with its
// portfolio; false for a name the configuration does not have.
func (s *Server) operatorActor(name string) (policy.Actor, bool) {
	if name == OperatorName {
		return policy.OperatorActor(name), true
	}
	for _, m := range *s.admin.managers.Load() {
		if m.Name == name {
			a := policy.ManagerActor(name, m.Enterprises)
			a.ReadOnly = m.ReadOnly
			return a, true
		}
	}
	return policy.Actor{}, false
}

// operatorLogin: POST /admin/v1/login (no authentication).
func (s *Server) operatorLogin(w http.ResponseWriter, r *http.Request) {
	var req OperatorLoginRequest
	if !decodeJSON(w, r, &req, 4<<10) {
		return
	}
	ip, prefix := clientIP(r), clientPrefix(r)
	l := &s.admin.logins
	// One login per address at a time, and loginPrefixHolds per network:
	// parallel guesses would not wait out each other's failure delay.
	if !holdLogin(w, &l.gate, ip, prefix) {
		return
	}
	defer l.gate.unhold(ip, prefix) // after the failure delay below
	s.admin.loginMu.RLock()
	name, ok := s.operatorToken(req.Token)
	if !ok {
		s.admin.loginMu.RUnlock()
		t := time.NewTimer(l.failed(ip, prefix))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		writeError(w, http.StatusUnauthorized, "unauthorized", "wrong operator token (or the admin API is disabled)")
		return
	}
	l.succeeded(ip)
	tok, err := s.admin.sessions.createBound(name, func(session string) string { return operatorBinding(session, req.Token) })
	s.admin.loginMu.RUnlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	s.log.Info("admin: operator login", "addr", ip, "operator", name)
	a, _ := s.operatorActor(name)
	writeJSON(w, http.StatusOK, OperatorLoginResponse{Token: tok, ExpiresIn: int(SessionIdle / time.Second), OperatorSession: operatorSession(a)})
}

func operatorSession(a policy.Actor) OperatorSession {
	return OperatorSession{Name: a.Name, Enterprises: a.Scope, ReadOnly: a.ReadOnly}
}

// showOperatorSession: GET /admin/v1/session.
func (s *Server) showOperatorSession(a policy.Actor, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, operatorSession(a))
}

// operatorLogout: POST /admin/v1/logout ends the session of the token
// sent; the configured token cannot log out.
func (s *Server) operatorLogout(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	tok, _ := bearerToken(r)
	if !isOperatorSession(tok) {
		writeInvalid(w, "", "退出登录只用于运营人员的登录会话；配置的令牌请在配置文件中更换", "logout ends operator sessions; the configured token is changed in the configuration")
		return
	}
	s.admin.sessions.end(tok)
	w.WriteHeader(http.StatusNoContent)
}

// SetManagers replaces the account managers (a configuration reload):
// from the next request on, their tokens, names, portfolios and
// read-only are the new ones. The sessions of a manager taken out, or
// given another token, end on every node (a token that leaked is rotated
// by a reload, and what was opened with it goes too); those of a manager
// whose portfolio or read-only changed go on under the new rules, which
// each request reads.
func (s *Server) SetManagers(ms []Manager) {
	ms = slices.Clone(ms)
	s.admin.loginMu.Lock()
	defer s.admin.loginMu.Unlock()
	old := *s.admin.managers.Swap(&ms)
	for _, o := range old {
		if i := slices.IndexFunc(ms, func(m Manager) bool { return m.Name == o.Name }); i < 0 || ms[i].Token != o.Token {
			s.admin.sessions.endUser(o.Name, "")
		}
	}
}

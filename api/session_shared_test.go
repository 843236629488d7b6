package api

import (
	"net/http"
	"sync"
	"testing"
)

// mapSessions is a recording SessionStore, as a cluster's would be.
type mapSessions struct {
	mu sync.Mutex
	m  map[[32]byte][3]string // key → kind, system_id, enterprise
}

func (s *mapSessions) Create(key [32]byte, kind, systemID, enterprise string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[32]byte][3]string{}
	}
	s.m[key] = [3]string{kind, systemID, enterprise}
	return nil
}

func (s *mapSessions) Touch(key [32]byte) (kind, systemID, enterprise string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v[0], v[1], v[2], ok
}

func (s *mapSessions) End(key [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

func (s *mapSessions) EndUser(kind, systemID string, keep [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if v[0] == kind && v[1] == systemID && k != keep {
			delete(s.m, k)
		}
	}
}

func (s *mapSessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// TestSharedSessions: with Config.Sessions, console and operator sessions
// live in the store (a cluster's): login, use, logout, a password change.
func TestSharedSessions(t *testing.T) {
	r := newUserRig(t)
	shared := &mapSessions{}
	r.srv.user.sessions.shared, r.srv.user.sessions.kind = shared, SessionUser

	var lr LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	if shared.len() != 1 || r.srv.user.sessions.lru.Len() != 0 {
		t.Fatalf("the session is not in the shared store: %d there, %d in memory", shared.len(), r.srv.user.sessions.lru.Len())
	}
	var me Me
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, &me)
	if me.SystemID != "alice" || me.Enterprise != "A" || !me.Session {
		t.Fatalf("me %+v", me)
	}
	// Another node's server on the same store knows the token.
	other := newUserRig(t)
	other.srv.user.sessions.shared, other.srv.user.sessions.kind = shared, SessionUser
	other.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, &me)
	// A user token is no operator session, even in the same store.
	if _, ok := (&sessionStore{shared: shared, kind: SessionOperator}).touch(lr.Token); ok {
		t.Error("a console session authenticates as the operator")
	}
	other.must(http.StatusNoContent, "POST", "/v1/logout", lr.Token, nil, nil)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	if shared.len() != 0 {
		t.Errorf("%d sessions left", shared.len())
	}
}

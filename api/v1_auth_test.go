package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

func TestUserConsoleSession(t *testing.T) {
	r := newUserRig(t)
	clock := &uClock{now: time.Now()}
	r.srv.user.sessions.now = clock.Now

	start := time.Now()
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "wrong"})
	if d := time.Since(start); d < loginDelayMin {
		t.Errorf("a failed login answered after %v", d)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/v1/login", "", LoginRequest{SystemID: "nobody", Password: "secret1"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/login", "", "not an object")

	var lr LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	if !strings.HasPrefix(lr.Token, sessionPrefix) || lr.ExpiresIn != 1800 {
		t.Fatalf("login %+v", lr)
	}
	var me Me
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, &me)
	if me.SystemID != "alice" || me.Enterprise != "A" || !me.Session || me.Role != "user" || me.Signature != "【甲公司】" {
		t.Fatalf("me %+v", me)
	}
	// The console token sends like an API key.
	out := r.send(lr.Token, SendRequest{To: []string{uNumA1}, Text: "from the console"})
	if out.Accepted != 1 {
		t.Fatalf("%+v", out)
	}
	// Each request slides the expiry: 29 minutes idle, twice, is fine.
	clock.Add(29 * time.Minute)
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, nil)
	clock.Add(29 * time.Minute)
	r.must(http.StatusOK, "GET", "/v1/messages/"+out.Results[0].ID, lr.Token, nil, nil)
	// 30 minutes without a request ends it.
	clock.Add(30 * time.Minute)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	clock.Add(-time.Hour) // and it stays ended
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)

	// Logout ends a session at once; an API key cannot log out.
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	r.must(http.StatusNoContent, "POST", "/v1/logout", lr.Token, nil, nil)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/logout", r.keys["alice"], nil)
	r.must(http.StatusOK, "GET", "/v1/me", r.keys["alice"], nil, &me)
	if me.Session {
		t.Error("API key reported as a session")
	}

	// A deleted user's session ends with it.
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "al2", Password: "secret1"}, &lr)
	if err := r.pol.DeleteUser(policy.OperatorActor("test"), "al2"); err != nil {
		t.Fatal(err)
	}
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	if n := r.srv.user.sessions.len(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestUserSessionTable(t *testing.T) {
	clock := &uClock{now: time.Now()}
	s := newSessionStore(sessionLimits{all: 3}, SessionIdle, clock.Now)
	var toks []string
	for i := range 3 {
		tok, err := s.create(fmt.Sprint("u", i), "E")
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		clock.Add(time.Minute)
	}
	if len(toks[0]) != len(sessionPrefix)+43 || toks[0] == toks[1] {
		t.Fatalf("tokens %q", toks)
	}
	// u0 is used again: u1 is now the least recently used and goes first.
	if se, ok := s.touch(toks[0]); !ok || se.systemID != "u0" || se.enterprise != "E" {
		t.Fatalf("touch %+v %v", se, ok)
	}
	t4, _ := s.create("u3", "E")
	if _, ok := s.touch(toks[1]); ok {
		t.Fatal("the least recently used session was not evicted")
	}
	for _, tok := range []string{toks[0], toks[2], t4} {
		if _, ok := s.touch(tok); !ok {
			t.Fatalf("session %q lost", tok)
		}
	}
	if s.len() != 3 {
		t.Fatalf("%d sessions", s.len())
	}
	// Idle expiry: exactly SessionIdle after the last use.
	clock.Add(SessionIdle - time.Nanosecond)
	if s.len() != 3 {
		t.Fatal("expired early")
	}
	clock.Add(time.Nanosecond)
	if s.len() != 0 {
		t.Fatal("not expired")
	}
	s.end("qxs_unknown") // harmless

	// The login throttle doubles up to its cap and forgets on success.
	l := loginThrottle{now: clock.Now}
	var ds []time.Duration
	for range 8 {
		ds = append(ds, l.failed("1.2.3.4", ""))
	}
	if ds[0] != loginDelayMin || ds[1] != 2*loginDelayMin || ds[7] != loginDelayMax {
		t.Fatalf("delays %v", ds)
	}
	l.succeeded("1.2.3.4")
	if d := l.failed("1.2.3.4", ""); d != loginDelayMin {
		t.Fatalf("after success: %v", d)
	}
}

package api

import (
	"net/http"
	"testing"
	"time"
)

// TestSessionShares: a login makes room at its own user's expense, then
// its enterprise's, and a full table at the expense of the enterprise
// holding the most, each by least recent use; the counts stay exact.
func TestSessionShares(t *testing.T) {
	clock := &uClock{now: time.Now()}
	lim := sessionLimits{all: 6, enterprise: 3, user: 2}
	s := newSessionStore(lim, SessionIdle, clock.Now)
	login := func(sid, ent string) string {
		t.Helper()
		clock.Add(time.Second) // every use at its own instant: the order is by time
		tok, err := s.create(sid, ent)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// has looks a token up without using it: a touch would reorder.
	has := func(tok string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.byKey[tokenKey(tok)]
		return ok
	}
	want := func(what string, live, ended []string, per map[string]int) {
		t.Helper()
		for i, tok := range live {
			if !has(tok) {
				t.Errorf("%s: live[%d] ended", what, i)
			}
		}
		for i, tok := range ended {
			if has(tok) {
				t.Errorf("%s: ended[%d] still live", what, i)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		total, inEnts, inUsers := 0, 0, 0
		for ent, n := range per {
			total += n
			got := 0
			if l := s.ents[ent]; l != nil {
				got = l.Len()
			}
			if got != n {
				t.Errorf("%s: enterprise %s holds %d, want %d", what, ent, got, n)
			}
		}
		for ent, l := range s.ents {
			inEnts += l.Len()
			if l.Len() == 0 || l.Len() > lim.enterprise || per[ent] == 0 {
				t.Errorf("%s: enterprise %q holds %d (share %d)", what, ent, l.Len(), lim.enterprise)
			}
		}
		for u, l := range s.users {
			inUsers += l.Len()
			if l.Len() == 0 || l.Len() > lim.user {
				t.Errorf("%s: user %q holds %d (cap %d)", what, u, l.Len(), lim.user)
			}
		}
		if s.lru.Len() != total || len(s.byKey) != total || inEnts != total || inUsers != total {
			t.Errorf("%s: %d sessions, %d keys, %d in enterprises, %d in users; want %d", what, s.lru.Len(), len(s.byKey), inEnts, inUsers, total)
		}
	}

	b1, c1 := login("bob", "B"), login("carl", "C")
	a1, a2 := login("alice", "A"), login("alice", "A")
	clock.Add(time.Second)
	if _, ok := s.touch(a1); !ok { // a2 is now alice's least recently used
		t.Fatal("a1 ended")
	}
	a3 := login("alice", "A")
	want("alice past her cap", []string{b1, c1, a1, a3}, []string{a2}, map[string]int{"A": 2, "B": 1, "C": 1})

	x1 := login("al2", "A")
	m1 := login("amy", "A")
	// A was at its share: its least recently used (a1) went, not B's or
	// C's, though they were used longer ago.
	want("A past its share", []string{b1, c1, a3, x1, m1}, []string{a1}, map[string]int{"A": 3, "B": 1, "C": 1})

	// alice floods: she ends A's sessions, then only her own.
	var flood []string
	for range 20 {
		flood = append(flood, login("alice", "A"))
	}
	n := len(flood)
	want("alice's flood", []string{b1, c1, m1, flood[n-2], flood[n-1]}, append([]string{a3, x1}, flood[:n-2]...), map[string]int{"A": 3, "B": 1, "C": 1})

	// The table full, a login ends a session of the enterprise holding
	// the most (A's m1), not the least recently used of the table (b1).
	d1 := login("dave", "D")
	e1 := login("erin", "E")
	want("a full table", []string{b1, c1, d1, e1, flood[n-2], flood[n-1]}, []string{m1}, map[string]int{"A": 2, "B": 1, "C": 1, "D": 1, "E": 1})
	g1 := login("gus", "G")
	want("a full table, A the largest", []string{b1, c1, d1, e1, g1, flood[n-1]}, []string{flood[n-2]}, map[string]int{"A": 1, "B": 1, "C": 1, "D": 1, "E": 1, "G": 1})
	// All of a size: the least recently used of the table goes.
	h1 := login("hal", "H")
	want("a full table of equals", []string{c1, d1, e1, g1, h1, flood[n-1]}, []string{b1}, map[string]int{"A": 1, "C": 1, "D": 1, "E": 1, "G": 1, "H": 1})

	// Logout and expiry uncount too.
	s.end(h1)
	want("a logout", []string{c1}, []string{h1}, map[string]int{"A": 1, "C": 1, "D": 1, "E": 1, "G": 1})
	clock.Add(SessionIdle)
	if n := s.len(); n != 0 { // expires them, as any use of the table does
		t.Errorf("%d sessions past their idle time", n)
	}
	want("all expired", nil, []string{c1, d1, e1, g1, flood[n-1]}, nil)
}

// TestLoginFloodKeepsOthersSessions: an enterprise's users logging in
// again and again over HTTP end only their enterprise's sessions: another
// enterprise's console session and the operator's session stay, and an
// ended one is answered 401 (the console's way back to its login page).
func TestLoginFloodKeepsOthersSessions(t *testing.T) {
	r := newUserRig(t)
	s, url := operatorServer(t, r, adminToken, time.Now)
	srv := &userRig{t: t, url: url}
	// Small bounds, so that a flood is a few dozen logins; the operator's
	// table is as it is made (its own, MaxOperatorSessions).
	s.user.sessions.limits = sessionLimits{all: 8, enterprise: 4, user: 2}
	login := func(sid, pw string) string {
		t.Helper()
		var lr LoginResponse
		srv.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: sid, Password: pw}, &lr)
		return lr.Token
	}
	bob := login("bob", "secret2")
	op, err := (&Client{Base: url}).OperatorLogin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	// A's three users log in in turn, 30 times: twice A's share, and
	// more than the whole table.
	var flood []string
	for i := range 30 {
		flood = append(flood, login([]string{"alice", "al2", "amy"}[i%3], "secret1"))
	}
	srv.must(http.StatusOK, "GET", "/v1/me", bob, nil, nil)
	opc := &Client{Base: url, Token: op.Token}
	if _, err := opc.Enterprises(); err != nil {
		t.Errorf("the operator's session after A's flood: %v", err)
	}
	// A keeps its four latest; the others were ended, oldest first.
	for i, tok := range flood[:26] {
		if code, b := srv.call("GET", "/v1/me", tok, nil, nil); code != http.StatusUnauthorized {
			t.Fatalf("A's login %d of %d: %d %s, want 401", i+1, len(flood), code, b)
		}
	}
	srv.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", flood[0], nil)
	for _, tok := range flood[26:] {
		srv.must(http.StatusOK, "GET", "/v1/me", tok, nil, nil)
	}
	us := s.user.sessions
	us.mu.Lock()
	n, a := us.lru.Len(), us.ents["A"].Len()
	us.mu.Unlock()
	if n != 5 || a != 4 {
		t.Errorf("%d console sessions, %d of A's; want 5 and 4", n, a)
	}
	if n := s.admin.sessions.len(); n != 1 {
		t.Errorf("%d operator sessions", n)
	}
}

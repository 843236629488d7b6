package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster/clustertest"
)

func openSessions(t *testing.T, et *clustertest.Etcd, idle time.Duration) *Sessions {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := OpenSessions(ctx, newClient(t, et), testPrefix, idle, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSessionsShared: a session created on a is found on b; ended on b, it
// is gone on a; EndUser ends a user's other sessions everywhere.
func TestSessionsShared(t *testing.T) {
	et := clustertest.Start(t)
	a, b := openSessions(t, et, time.Minute), openSessions(t, et, time.Minute)
	k1, k2, k3 := sha256.Sum256([]byte("qxs_1")), sha256.Sum256([]byte("qxs_2")), sha256.Sum256([]byte("qxs_3"))
	if err := a.Create(k1, "user", "a_admin", "GD0755001"); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, time.Second, "session on b", func() bool { return b.Len() == 1 })
	t.Logf("a login on a reaches b's cache after %v", d)
	if kind, sid, ent, ok := b.Touch(k1); !ok || kind != "user" || sid != "a_admin" || ent != "GD0755001" {
		t.Errorf("b.Touch = %q %q %q %v", kind, sid, ent, ok)
	}
	b.End(k1)
	waitFor(t, time.Second, "session ended on a", func() bool { return a.Len() == 0 })
	if _, _, _, ok := a.Touch(k1); ok {
		t.Error("a still has the session b ended")
	}

	// A token b has not heard of yet is looked up in etcd.
	if err := a.Create(k2, "user", "a_admin", "GD0755001"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, ok := b.Touch(k2); !ok {
		t.Error("b does not find a session created on a an instant ago")
	}
	if err := b.Create(k3, "user", "a_admin", "GD0755001"); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(sha256.Sum256([]byte("qxo_1")), "operator", "a_admin", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "three sessions on a", func() bool { return a.Len() == 3 })
	a.EndUser("user", "a_admin", k3) // a password change through k3
	waitFor(t, time.Second, "k2 ended on b", func() bool { return b.Len() == 2 })
	if _, _, _, ok := b.Touch(k2); ok {
		t.Error("k2 survived EndUser")
	}
	if _, _, _, ok := b.Touch(k3); !ok {
		t.Error("EndUser ended the kept session")
	}
	if _, _, _, ok := b.Touch(sha256.Sum256([]byte("unknown"))); ok {
		t.Error("an unknown token is a session")
	}
}

// TestSessionsExpiry: an idle session ends on every node; one in use
// lives past idle.
func TestSessionsExpiry(t *testing.T) {
	et := clustertest.Start(t)
	const idle = 2 * time.Second
	a, b := openSessions(t, et, idle), openSessions(t, et, idle)
	idleKey, usedKey := sha256.Sum256([]byte("qxs_idle")), sha256.Sum256([]byte("qxs_used"))
	for _, k := range [][32]byte{idleKey, usedKey} {
		if err := a.Create(k, "user", "u", "E"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Second, "both on b", func() bool { return b.Len() == 2 })
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// Use usedKey on b, then on a, while idleKey expires.
	for b.Len() == 2 || a.Len() == 2 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the idle session did not expire")
		}
		s := b
		if time.Since(start) > idle/2 {
			s = a
		}
		if _, _, _, ok := s.Touch(usedKey); !ok {
			t.Fatalf("the session in use ended after %v", time.Since(start))
		}
		<-tick.C
	}
	t.Logf("idle session (idle %v) gone from both caches after %v", idle, time.Since(start))
	if _, _, _, ok := a.Touch(idleKey); ok {
		t.Error("the expired session is still live on a")
	}
	if time.Since(start) < idle-time.Second {
		t.Errorf("expired after %v, before idle %v", time.Since(start), idle)
	}
	// The used one lives past idle, then expires once left alone.
	if _, _, _, ok := b.Touch(usedKey); !ok {
		t.Error("the session in use expired")
	}
	waitFor(t, 10*time.Second, "used session expires once idle", func() bool { return a.Len() == 0 && b.Len() == 0 })
}

// The daemon passes Sessions as api.Config.Sessions.
var _ api.SessionStore = (*Sessions)(nil)

// The cluster's sessions are bounded: a login past the bound ends the
// session kept alive least recently, on every node; made-up tokens cost at
// most the fetch rate's reads of etcd.
func TestSessionsBounded(t *testing.T) {
	et := clustertest.Start(t)
	a, b := openSessions(t, et, time.Minute), openSessions(t, et, time.Minute)
	a.users.all = 3 // read by Create only, on this goroutine
	keys := make([][32]byte, 4)
	for i := range keys {
		keys[i] = sha256.Sum256(fmt.Appendf(nil, "qxs_%d", i))
		// Created in order: keys[0] is the one kept alive least recently.
		if err := a.Create(keys[i], "user", "u", "E"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Second, "three sessions on both nodes", func() bool { return a.Len() == 3 && b.Len() == 3 })
	if _, _, _, ok := b.Touch(keys[0]); ok {
		t.Error("the evicted session still works on the other node")
	}
	for _, k := range keys[1:] {
		if _, _, _, ok := b.Touch(k); !ok {
			t.Error("a session within the bound was ended")
		}
	}

	// Unknown tokens: past the fetch allowance they are refused without
	// a read, and the allowance comes back with time.
	b.fetches = rate.NewLimiter(0, 1) // read by Touch only, on this goroutine
	unknown := sha256.Sum256([]byte("qxs_made_up"))
	if err := a.Create(unknown, "user", "u", "E"); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	delete(b.cache, hex.EncodeToString(unknown[:])) // as if its watch had not brought it yet
	b.mu.Unlock()
	if _, _, _, ok := b.Touch(unknown); !ok {
		t.Fatal("the one allowed read did not find a live session")
	}
	b.mu.Lock()
	delete(b.cache, hex.EncodeToString(unknown[:]))
	b.mu.Unlock()
	if _, _, _, ok := b.Touch(unknown); ok {
		t.Error("a second unknown token was read from etcd past the allowance")
	}
}

// The cluster's bounds are api's of one node.
func TestSessionsBoundsAreAPIs(t *testing.T) {
	if MaxSessions != api.MaxSessions || MaxEnterpriseSessions != api.MaxEnterpriseSessions ||
		MaxUserSessions != api.MaxUserSessions || MaxOperatorSessions != api.MaxOperatorSessions || kindOperator != api.SessionOperator {
		t.Errorf("cluster %d/%d/%d/%d %q, api %d/%d/%d/%d %q", MaxSessions, MaxEnterpriseSessions, MaxUserSessions, MaxOperatorSessions, kindOperator,
			api.MaxSessions, api.MaxEnterpriseSessions, api.MaxUserSessions, api.MaxOperatorSessions, api.SessionOperator)
	}
}

// TestSessionsShares: logins on either node make room at their own
// user's expense, then their enterprise's, then (the table full) the
// largest holder's, each by least recent keepalive; operator sessions are
// bounded apart and no console login ends one; the counts in both caches
// and in etcd stay exact.
func TestSessionsShares(t *testing.T) {
	et := clustertest.Start(t)
	a, b := openSessions(t, et, time.Minute), openSessions(t, et, time.Minute)
	for _, s := range []*Sessions{a, b} { // read by Create and Touch only, on this goroutine
		s.users, s.operators = sessionLimits{all: 6, enterprise: 3, user: 2}, sessionLimits{all: 2}
	}
	a.slideEvery = 0 // every Touch on a is a keepalive: a's order is by use
	cli := newClient(t, et)
	key := func(name string) [32]byte { return sha256.Sum256([]byte(name)) }
	has := func(s *Sessions, name string) bool {
		k := key(name)
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.cache[hex.EncodeToString(k[:])]
		return ok
	}
	// create logs name in on node s and waits until both nodes agree
	// (each cache learns of each session apart: its order is by arrival).
	create := func(s *Sessions, name, kind, sid, ent string) {
		t.Helper()
		if err := s.Create(key(name), kind, sid, ent); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, name+" on both nodes", func() bool { return has(a, name) && has(b, name) && a.Len() == b.Len() })
	}
	user := func(s *Sessions, name, sid, ent string) { t.Helper(); create(s, name, "user", sid, ent) }
	want := func(what string, live, ended []string, per map[string]int) {
		t.Helper()
		total := 0
		for _, n := range per {
			total += n
		}
		for _, s := range []*Sessions{a, b} {
			for _, name := range live {
				if !has(s, name) {
					t.Errorf("%s: %s ended", what, name)
				}
			}
			for _, name := range ended {
				if has(s, name) {
					t.Errorf("%s: %s still live", what, name)
				}
			}
			got := map[string]int{}
			s.mu.Lock()
			for _, c := range s.cache {
				got[c.rec.Kind+" "+c.rec.Enterprise]++
			}
			s.mu.Unlock()
			if fmt.Sprint(got) != fmt.Sprint(per) {
				t.Errorf("%s: a cache holds %v, want %v", what, got, per)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, a.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != int64(total) {
			t.Errorf("%s: %d sessions in etcd, want %d", what, resp.Count, total)
		}
	}

	create(a, "op1", "operator", "admin-api", "")
	create(a, "op2", "operator", "admin-api", "")
	user(a, "b1", "bob", "B")
	user(a, "c1", "carl", "C")
	user(a, "a1", "alice", "A")
	user(a, "a2", "alice", "A")
	if _, _, _, ok := a.Touch(key("a1")); !ok { // a2 is now alice's kept alive least recently
		t.Fatal("a1 ended")
	}
	user(a, "a3", "alice", "A")
	want("alice past her cap", []string{"op1", "op2", "b1", "c1", "a1", "a3"}, []string{"a2"},
		map[string]int{"operator ": 2, "user A": 2, "user B": 1, "user C": 1})
	user(a, "x1", "al2", "A")
	user(a, "m1", "amy", "A")
	want("A past its share", []string{"op1", "op2", "b1", "c1", "a3", "x1", "m1"}, []string{"a1"},
		map[string]int{"operator ": 2, "user A": 3, "user B": 1, "user C": 1})

	// alice floods through both nodes: she ends A's sessions, then only
	// her own.
	var flood []string
	for i := range 10 {
		name := fmt.Sprint("f", i)
		user([]*Sessions{a, b}[i%2], name, "alice", "A")
		flood = append(flood, name)
	}
	want("alice's flood", []string{"op1", "op2", "b1", "c1", "m1", "f8", "f9"}, append([]string{"a3", "x1"}, flood[:8]...),
		map[string]int{"operator ": 2, "user A": 3, "user B": 1, "user C": 1})

	// The console table full, a login ends a session of the enterprise
	// holding the most, not the table's kept alive least recently (b1),
	// nor an operator's.
	user(a, "d1", "dave", "D")
	user(a, "e1", "erin", "E")
	want("a full table", []string{"op1", "op2", "b1", "c1", "d1", "e1", "f8", "f9"}, []string{"m1"},
		map[string]int{"operator ": 2, "user A": 2, "user B": 1, "user C": 1, "user D": 1, "user E": 1})
	user(b, "g1", "gus", "G")
	want("a full table, A the largest", []string{"op1", "op2", "b1", "c1", "d1", "e1", "g1", "f9"}, []string{"f8"},
		map[string]int{"operator ": 2, "user A": 1, "user B": 1, "user C": 1, "user D": 1, "user E": 1, "user G": 1})

	// An operator login past the operators' bound ends the operator
	// session kept alive least recently, and no console session.
	create(b, "op3", "operator", "admin-api", "")
	want("operators past their bound", []string{"op2", "op3", "b1", "c1", "d1", "e1", "g1", "f9"}, []string{"op1"},
		map[string]int{"operator ": 2, "user A": 1, "user B": 1, "user C": 1, "user D": 1, "user E": 1, "user G": 1})
}

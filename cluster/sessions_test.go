package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

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
	a.max = 3 // read by Create only, on this goroutine
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

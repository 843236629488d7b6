package api

import (
	"fmt"
	"testing"
	"time"
)

// TestLoginThrottleBounded: the failures and the known (address,
// system_id) pairs are bounded without forgetting everyone: full, what is
// stale anyway goes, and a new key is not remembered, so a flood from many
// addresses cannot wipe the delay of the address guessing a real user's
// password, nor the real users' known standing.
func TestLoginThrottleBounded(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	l := &loginThrottle{now: func() time.Time { return now }, maxKeys: 3}
	for _, want := range []time.Duration{100, 200, 400} {
		if d := l.failed("guesser", ""); d != want*time.Millisecond {
			t.Fatalf("guesser's delay %v, want %v ms", d, want)
		}
	}
	l.failed("flood-1", "")
	l.failed("flood-2", "")
	for i := range 50 { // the table is full: new keys are not kept
		if d := l.failed("flood-new-"+string(rune('a'+i%26))+string(rune('a'+i/26)), ""); d != loginDelayMin {
			t.Fatalf("a new key past the bound: delay %v, want %v", d, loginDelayMin)
		}
	}
	if len(l.fails) != 3 || !l.suspect("guesser") {
		t.Fatalf("after the flood: %d keys, guesser suspect %v; want 3 and true", len(l.fails), l.suspect("guesser"))
	}
	if d := l.failed("guesser", ""); d != 800*time.Millisecond {
		t.Errorf("guesser's next delay %v, want 800 ms (its failures kept)", d)
	}
	now = now.Add(loginForget + time.Second) // all quiet: a new key finds room
	l.failed("later", "")
	if _, ok := l.fails["later"]; !ok || len(l.fails) != 1 {
		t.Errorf("after a quiet %v: %d keys, later kept %v; want the stale ones gone", loginForget, len(l.fails), ok)
	}

	for _, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		l.loggedIn(ip, ip, "alice")
	}
	l.loggedIn("10.0.0.9", "10.0.0.9", "mallory") // the table of known pairs is full
	if _, class := l.loginKey("10.0.0.1", "alice"); class != classKnown {
		t.Error("a flood of good logins made alice's known address unknown")
	}
	if _, class := l.loginKey("10.0.0.9", "mallory"); class == classKnown {
		t.Error("a pair past the bound was remembered")
	}
	now = now.Add(loginRemember)
	l.loggedIn("10.0.0.9", "10.0.0.9", "mallory")
	if _, class := l.loginKey("10.0.0.9", "mallory"); class != classKnown || len(l.good) != 1 {
		t.Errorf("after %v: mallory known %v, %d pairs kept; want the old pairs gone", loginRemember, class == classKnown, len(l.good))
	}
}

// TestLoginDelayGrowsByNetwork: addresses of one network taking turns at
// wrong passwords wait as one address would after a quarter of their
// failures (13 addresses of a /24 failing once each: the 13th waits
// 800 ms); another network's first failure waits the first delay; an
// address's own failures still count when they are more; a success
// clears the address, not its network; a key that is not an address (a
// known pair: prefix "") counts no network; and the networks remembered
// are bounded as the keys are.
func TestLoginDelayGrowsByNetwork(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	l := &loginThrottle{now: func() time.Time { return now }}
	var d time.Duration
	for i := range 13 {
		d = l.failed(fmt.Sprint("192.0.2.", i+1), "192.0.2.0/24")
	}
	if d != 800*time.Millisecond {
		t.Fatalf("the 13th address of a /24: %v, want 800ms", d)
	}
	if d := l.failed("198.51.100.1", "198.51.100.0/24"); d != loginDelayMin {
		t.Fatalf("another network's first failure: %v, want %v", d, loginDelayMin)
	}
	for range 4 {
		d = l.failed("198.51.100.1", "198.51.100.0/24")
	}
	if d != 1600*time.Millisecond {
		t.Fatalf("one address's 5th failure: %v, want 1.6s (its own count)", d)
	}
	l.succeeded("192.0.2.1")
	if d := l.failed("192.0.2.1", "192.0.2.0/24"); d != 800*time.Millisecond {
		t.Fatalf("after a success of the address, its network's 14th failure: %v, want 800ms", d)
	}
	if d := l.failed("192.0.2.1\x00alice", ""); d != loginDelayMin {
		t.Fatalf("a known pair: %v, want %v (no network)", d, loginDelayMin)
	}
	now = now.Add(loginForget + time.Second)
	if d := l.failed("192.0.2.99", "192.0.2.0/24"); d != loginDelayMin {
		t.Fatalf("after a quiet %v: %v, want %v", loginForget, d, loginDelayMin)
	}

	b := &loginThrottle{now: func() time.Time { return now }, maxKeys: 3}
	for i := range 50 {
		b.failed(fmt.Sprint("10.", i, ".0.1"), fmt.Sprint("10.", i, ".0.0/24"))
	}
	if len(b.nets) != 3 || len(b.fails) != 3 {
		t.Fatalf("50 networks: %d networks and %d keys kept, want 3 and 3", len(b.nets), len(b.fails))
	}
}

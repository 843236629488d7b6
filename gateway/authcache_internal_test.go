package gateway

import (
	"fmt"
	"maps"
	"testing"
	"time"
)

// The addresses whose binds failed are bounded without forgetting the one
// guessing a password: full, a new address is not remembered rather than
// an arbitrary one dropped, so a flood of failures from many addresses
// does not put the guesser back in the queue ahead of real users; the
// addresses whose failure is older than FailureMemory make room.
func TestAuthCacheFailuresBounded(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	a := NewAuthCache(AuthOptions{MaxEntries: 3, Now: func() time.Time { return now }})
	failed := func() map[string]time.Time {
		a.mu.Lock()
		defer a.mu.Unlock()
		return maps.Clone(a.failed)
	}
	a.failure("192.0.2.1") // the guesser
	guessed := now
	a.failure("192.0.2.2")
	a.failure("192.0.2.3")
	for i := range 100 {
		now = now.Add(time.Millisecond)
		a.failure(fmt.Sprintf("198.51.100.%d", i))
	}
	got := failed()
	if len(got) != 3 || !got["192.0.2.1"].Equal(guessed) {
		t.Fatalf("after a flood from 100 addresses: %v; want 3 kept, the guesser's failure at %v", got, guessed)
	}

	now = now.Add(a.opt.FailureMemory + time.Second)
	a.failure("192.0.2.1")
	a.failure("203.0.113.9")
	got = failed()
	if len(got) != 2 || got["192.0.2.1"].IsZero() || got["203.0.113.9"].IsZero() {
		t.Fatalf("after the quiet ones' %v: %v; want the guesser and the new address", a.opt.FailureMemory, got)
	}
}

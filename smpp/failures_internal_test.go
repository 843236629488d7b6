package smpp

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"
)

// The failed binds remembered are bounded without forgetting the source
// guessing a password: full, a new source is not remembered rather than
// an arbitrary one dropped, so a flood from many addresses leaves its
// count, and with it its delay, as it was.
func TestBindFailuresBounded(t *testing.T) {
	s := NewServer(nil, ServerOptions{})
	s.maxFailures = 3
	done, cancel := context.WithCancel(context.Background())
	cancel() // the delay is not waited out: the counts are the point
	for range 4 {
		s.delayFailure(done, "192.0.2.1", "")
	}
	s.delayFailure(done, "192.0.2.2", "")
	s.delayFailure(done, "192.0.2.3", "")
	for i := range 100 {
		s.delayFailure(done, fmt.Sprintf("198.51.100.%d", i), "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) != 3 || s.failures["192.0.2.1"].n != 4 {
		t.Fatalf("after a flood from 100 addresses: %d sources kept, the guesser's count %d; want 3 and 4",
			len(s.failures), s.failures["192.0.2.1"].n)
	}
}

// Full, the sources quiet for failureForget make room for a new one; the
// one still failing keeps its count, and a source back after a quiet
// spell starts from the first delay again.
func TestBindFailuresStaleGo(t *testing.T) {
	s := NewServer(nil, ServerOptions{})
	s.maxFailures = 3
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		s.delayFailure(done, "192.0.2.1", "")
	}
	s.delayFailure(done, "192.0.2.2", "")
	s.delayFailure(done, "192.0.2.3", "")

	now = now.Add(failureForget + time.Second)
	s.delayFailure(done, "192.0.2.1", "") // still guessing: not stale
	s.delayFailure(done, "198.51.100.1", "")
	s.mu.Lock()
	got := maps.Clone(s.failures)
	s.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("after the quiet ones' time: %d sources kept, want 2 (the guesser and the new one): %v", len(got), got)
	}
	if _, ok := got["198.51.100.1"]; !ok {
		t.Fatalf("the new source was not kept once the quiet ones went: %v", got)
	}
	// The guesser's count restarted: its last failure was failureForget ago.
	if got["192.0.2.1"].n != 1 {
		t.Fatalf("a source back after %v quiet: count %d, want 1", failureForget, got["192.0.2.1"].n)
	}

	now = now.Add(time.Second)
	s.delayFailure(done, "192.0.2.1", "")
	s.mu.Lock()
	n := s.failures["192.0.2.1"].n
	s.mu.Unlock()
	if n != 2 {
		t.Fatalf("a second failure a second later: count %d, want 2", n)
	}
}

// TestBindFailuresByNetwork: addresses of one network taking turns at
// failing binds are delayed as the network's failures add up, PrefixTimes
// of them a doubling, not each from the first delay; another network's
// first failure waits the first delay, and an address's own count still
// rules when it is the larger.
func TestBindFailuresByNetwork(t *testing.T) {
	s := NewServer(nil, ServerOptions{FailDelay: 100 * time.Millisecond, MaxFailDelay: time.Hour})
	var last time.Duration
	for i := range 20 { // one failure from each of 20 addresses of a /24
		last = s.failureDelay(fmt.Sprintf("192.0.2.%d", i+1), "192.0.2.0/24")
	}
	if want := 100 * time.Millisecond << (19 / PrefixTimes); last != want {
		t.Fatalf("the 20th address of the network waits %v, want %v (before: 100ms, each address its first)", last, want)
	}
	if d := s.failureDelay("198.51.100.1", "198.51.100.0/24"); d != 100*time.Millisecond {
		t.Fatalf("another network's first failure waits %v, want 100ms", d)
	}
	for range 8 {
		last = s.failureDelay("203.0.113.7", "203.0.113.0/24")
	}
	if want := 100 * time.Millisecond << 7; last != want {
		t.Fatalf("one address's 8th failure waits %v, want %v", last, want)
	}
	// A good bind clears the address's count, not its network's.
	s.clearFailures("192.0.2.1")
	if d := s.failureDelay("192.0.2.1", "192.0.2.0/24"); d != 100*time.Millisecond<<(20/PrefixTimes) {
		t.Fatalf("after a good bind, the network's next failure waits %v", d)
	}
}

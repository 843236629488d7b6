package smpp

import (
	"context"
	"fmt"
	"testing"
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
		s.delayFailure(done, "192.0.2.1")
	}
	s.delayFailure(done, "192.0.2.2")
	s.delayFailure(done, "192.0.2.3")
	for i := range 100 {
		s.delayFailure(done, fmt.Sprintf("198.51.100.%d", i))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) != 3 || s.failures["192.0.2.1"].n != 4 {
		t.Fatalf("after a flood from 100 addresses: %d sources kept, the guesser's count %d; want 3 and 4",
			len(s.failures), s.failures["192.0.2.1"].n)
	}
}

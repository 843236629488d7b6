package api

import (
	"strings"
	"testing"
	"time"
)

// A key longer than maxKeyBytes (a reset's group code and user name, as
// long as its body allows) is kept as its hash: the same long key still
// meets its own bucket, another one another, and what the limiter keeps
// is bounded by its keys.
func TestKeyLimiterLongKeys(t *testing.T) {
	l := newKeyLimiter(time.Hour, 2, 10)
	long, other := strings.Repeat("x", 8<<10), strings.Repeat("x", 8<<10-1)+"y"
	burst := func(key string) [3]bool { return [3]bool{l.allow(key), l.allow(key), l.allow(key)} }
	if got := burst(long); got != [3]bool{true, true, false} {
		t.Errorf("a long key's burst of 2: %v, want 2 allowed, the third refused", got)
	}
	if !l.allow(other) {
		t.Error("another long key shares the first's bucket")
	}
	if got := burst("short"); got != [3]bool{true, true, false} {
		t.Errorf("a short key's burst of 2: %v", got)
	}
	for k := range l.m {
		if len(k) > maxKeyBytes {
			t.Errorf("a key of %d bytes kept", len(k))
		}
	}
	if len(l.m) != 3 {
		t.Errorf("%d keys kept, want 3", len(l.m))
	}
}

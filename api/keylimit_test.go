package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
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
	for k := range l.levels[0].m {
		if len(k) > maxKeyBytes {
			t.Errorf("a key of %d bytes kept", len(k))
		}
	}
	if len(l.levels[0].m) != 3 {
		t.Errorf("%d keys kept, want 3", len(l.levels[0].m))
	}
}

// limClock is a settable clock for a keyLimiter.
type limClock struct{ now time.Time }

func (c *limClock) Now() time.Time { return c.now }

func newTestSourceLimiter(every time.Duration, burst, maxKeys int) (*keyLimiter, *limClock) {
	c := &limClock{now: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)}
	l := newSourceLimiter(every, burst, maxKeys)
	l.now = c.Now
	return l, c
}

// allowFrom is allowSource for a remote address.
func (l *keyLimiter) allowFrom(remote string) bool {
	return l.allow(smpp.SourceKey(remote), smpp.SourcePrefix(remote))
}

// TestSourceLimiterPrefix: a network (an IPv4 /24, an IPv6 /48) gets
// prefixBurstTimes sources' burst however many addresses it sends from;
// the next network is another.
func TestSourceLimiterPrefix(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addr  func(i int) string // the i-th address of one network
		other string             // of another
	}{
		{"IPv4 /24", func(i int) string { return fmt.Sprintf("192.0.2.%d:4000", i+1) }, "192.0.3.1:4000"},
		{"IPv4-mapped", func(i int) string { return fmt.Sprintf("[::ffff:192.0.2.%d]:4000", i+1) }, "[::ffff:192.0.3.1]:4000"},
		{"IPv6 /48", func(i int) string { return fmt.Sprintf("[2001:db8:7:%x::1]:4000", i+1) }, "[2001:db8:8::1]:4000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTestSourceLimiter(time.Minute, 5, 1000)
			allowed := 0
			for i := range 30 {
				if l.allowFrom(tc.addr(i)) {
					allowed++
				} else if i < 20 {
					t.Fatalf("address %d of the network refused, want the first %d allowed", i, 4*5)
				}
			}
			if allowed != prefixBurstTimes*5 {
				t.Errorf("30 addresses of one network: %d allowed, want %d", allowed, prefixBurstTimes*5)
			}
			if !l.allowFrom(tc.other) {
				t.Error("another network refused")
			}
		})
	}
}

// TestSourceLimiterRefusalTakesNothing: a request refused by one level
// takes no token of the other, and keeps no new key.
func TestSourceLimiterRefusalTakesNothing(t *testing.T) {
	l, clock := newTestSourceLimiter(time.Minute, 5, 1000)
	const net = "192.0.2.0/24"
	tokens := func(level int, key string) float64 {
		b := l.levels[level].m[key]
		if b == nil {
			t.Fatalf("no bucket for %s", key)
		}
		return b.TokensAt(clock.now)
	}
	// An address past its burst, refused ten times by its own bucket:
	// its network's keeps the other 15.
	for i := range 15 {
		if got := l.allowFrom("192.0.2.1:1"); got != (i < 5) {
			t.Fatalf("request %d of one address: %v", i, got)
		}
	}
	if n := tokens(1, net); n != 15 {
		t.Fatalf("the network has %v tokens after its address was refused 10 times, want 15", n)
	}
	// One more address spends one, then the network's last go to others.
	if !l.allowFrom("192.0.2.2:1") {
		t.Fatal("192.0.2.2 refused")
	}
	for i := range 14 {
		if !l.allowFrom(fmt.Sprintf("192.0.2.%d:1", 10+i)) {
			t.Fatalf("the network's token %d refused", i)
		}
	}
	// The network is empty: 192.0.2.2 (4 tokens left) is refused and
	// keeps them; a new address is refused and not kept.
	keys := len(l.levels[0].m)
	for range 3 {
		if l.allowFrom("192.0.2.2:1") || l.allowFrom("192.0.2.99:1") {
			t.Fatal("allowed from an empty network")
		}
	}
	if n := tokens(0, "192.0.2.2"); n != 4 {
		t.Errorf("192.0.2.2 has %v tokens after 3 refusals by its network, want 4", n)
	}
	if len(l.levels[0].m) != keys {
		t.Errorf("refused new addresses kept: %d keys, want %d", len(l.levels[0].m), keys)
	}
	clock.now = clock.now.Add(time.Minute) // the network refills one
	if !l.allowFrom("192.0.2.2:1") {
		t.Fatal("192.0.2.2 refused after its network refilled")
	}
	if n := tokens(0, "192.0.2.2"); n != 4 {
		t.Errorf("192.0.2.2 has %v tokens, want 4 (5 after the refill, one taken)", n)
	}
}

// TestSourceLimiterNoisyNeighbour: one address of a network taking all it
// may, at any pace, leaves the others (prefixBurstTimes − 1) × burst.
func TestSourceLimiterNoisyNeighbour(t *testing.T) {
	l, clock := newTestSourceLimiter(time.Minute, 5, 1000)
	for range 100 {
		for l.allowFrom("192.0.2.1:1") {
		}
		clock.now = clock.now.Add(20 * time.Second)
	}
	allowed := 0
	for i := range 30 {
		if l.allowFrom(fmt.Sprintf("192.0.2.%d:1", 10+i)) {
			allowed++
		}
	}
	if want := (prefixBurstTimes - 1) * 5; allowed < want {
		t.Errorf("the neighbours of a noisy address got %d, want at least %d", allowed, want)
	}
}

// TestSourceLimiterBounded: each level keeps at most its max keys and a
// new key that finds no room in either level is refused (fail closed)
// until the kept ones are idle; a refused request keeps a new key in
// neither level, so a flood refused by its network fills nothing.
func TestSourceLimiterBounded(t *testing.T) {
	sizes := func(l *keyLimiter) [2]int { return [2]int{len(l.levels[0].m), len(l.levels[1].m)} }
	t.Run("flood of a spent network", func(t *testing.T) {
		l, _ := newTestSourceLimiter(time.Minute, 1, 1000)
		for i := range 4 {
			if !l.allowFrom(fmt.Sprintf("10.0.0.%d:1", i)) {
				t.Fatalf("10.0.0.%d refused", i)
			}
		}
		for i := range 200 {
			if l.allowFrom(fmt.Sprintf("10.0.0.%d:1", 10+i)) {
				t.Fatalf("10.0.0.%d allowed from a spent network", 10+i)
			}
		}
		if got := sizes(l); got != [2]int{4, 1} {
			t.Errorf("kept %v addresses and networks, want [4 1]", got)
		}
	})
	for _, full := range []int{0, 1} {
		t.Run(fmt.Sprintf("level %d full", full), func(t *testing.T) {
			l, clock := newTestSourceLimiter(time.Minute, 1, 1000)
			l.levels[full].max = 3
			for i := range 3 { // three networks of one address, each spent
				if !l.allowFrom(fmt.Sprintf("10.0.%d.1:1", i)) {
					t.Fatalf("10.0.%d.1 refused", i)
				}
			}
			for i := range 50 {
				if l.allowFrom(fmt.Sprintf("10.9.%d.1:1", i)) {
					t.Fatalf("a new source past the bound allowed (%d)", i)
				}
			}
			if got := sizes(l); got != [2]int{3, 3} {
				t.Fatalf("kept %v addresses and networks, want [3 3]", got)
			}
			clock.now = clock.now.Add(4 * time.Minute) // every bucket full again: idle
			if !l.allowFrom("10.9.0.1:1") {
				t.Fatal("a new source refused after the kept ones went idle")
			}
			if got := sizes(l)[full]; got != 1 {
				t.Errorf("level %d kept %d keys, want the idle ones gone", full, got)
			}
		})
	}
}

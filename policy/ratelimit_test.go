package policy

import (
	"sync"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	f := newFixture(t) // DefaultTPS 10 in tests
	if _, err := f.p.UpdateEnterprise(op, entB, func(e *Enterprise) error { e.TPS = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	take := func(code string) (n int) {
		for f.p.Allow(code) {
			n++
			if n > 1000 {
				t.Fatal("no limit")
			}
		}
		return n
	}
	if n := take(entA); n != 10 {
		t.Errorf("default TPS: burst %d, want 10", n)
	}
	if n := take(entB); n != 3 {
		t.Errorf("TPS 3: burst %d", n)
	}
	f.clk.Advance(time.Second / 10) // one token for A, 0.3 for B
	if n := take(entA); n != 1 {
		t.Errorf("A after 100ms: %d", n)
	}
	if n := take(entB); n != 0 {
		t.Errorf("B after 100ms: %d", n)
	}
	f.clk.Advance(time.Second)
	if !f.p.AllowN(entB, 3) || f.p.AllowN(entB, 1) {
		t.Error("AllowN")
	}
	// A TPS change takes effect at once, with a fresh bucket.
	if _, err := f.p.UpdateEnterprise(op, entB, func(e *Enterprise) error { e.TPS = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	if n := take(entB); n != 5 {
		t.Errorf("after TPS change: %d", n)
	}
	// TPS, which a refusal tells the sender: the enterprise's own, else
	// the default; nothing for an unknown one.
	if a, b, x := f.p.TPS(entA), f.p.TPS(entB), f.p.TPS("nope"); a != 10 || b != 5 || x != 0 {
		t.Errorf("TPS %d, %d, %d; want 10 (the default), 5 and 0", a, b, x)
	}
	// Unknown enterprises get nothing and no bucket.
	for i := range 100 {
		if f.p.Allow(string(rune('a' + i))) {
			t.Fatal("unknown enterprise allowed")
		}
	}
	if n := f.p.limiter.size(); n != 2 {
		t.Errorf("%d buckets for 2 enterprises", n)
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if f.p.Allow(entA) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 10 { // the clock does not move: exactly the burst
		t.Errorf("allowed %d, want 10", allowed)
	}
}

func TestRateLimitSharedAmongNodes(t *testing.T) {
	f := newFixture(t) // DefaultTPS 10 in tests
	take := func() (n int) {
		for f.p.Allow(entA) {
			n++
			if n > 1000 {
				t.Fatal("no limit")
			}
		}
		return n
	}
	if n := take(); n != 10 {
		t.Fatalf("one node: burst %d, want the whole TPS 10", n)
	}
	f.p.SetNodes(3)
	f.clk.Advance(time.Hour)
	if n := take(); n != 4 {
		t.Fatalf("three nodes: burst %d, want ceil(10/3) = 4", n)
	}
	f.p.SetNodes(1)
	f.clk.Advance(time.Hour)
	if n := take(); n != 10 {
		t.Fatalf("back to one node: burst %d, want 10", n)
	}
}

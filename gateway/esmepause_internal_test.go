package gateway

import (
	"errors"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestESMEPause: a throttle pauses for retry_min, doubling with each one
// in a row up to retry_max; an answer taken or refused for good ends the
// doubling; another error changes nothing.
func TestESMEPause(t *testing.T) {
	var p esmePause
	t0 := time.Now()
	lo, hi := 100*time.Millisecond, 350*time.Millisecond
	for i, want := range []time.Duration{100, 200, 350, 350} {
		if !p.answered(smpp.StatusThrottled, t0, lo, hi) {
			t.Fatalf("throttle %d not taken for one", i+1)
		}
		if got := p.until.Sub(t0); got != want*time.Millisecond {
			t.Errorf("throttle %d: paused %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
	if p.answered(smpp.StatusSystemError, t0, lo, hi) || p.backoff != hi {
		t.Errorf("a system error: backoff %v, want it left at %v", p.backoff, hi)
	}
	if p.answered(nil, t0, lo, hi) || p.backoff != 0 {
		t.Errorf("an answer taken: backoff %v, want 0", p.backoff)
	}
	if !p.answered(smpp.StatusMsgQueueFull, t0.Add(time.Second), lo, hi) || p.until != t0.Add(time.Second+lo) {
		t.Errorf("queue full after the doubling ended: until %v", p.until.Sub(t0))
	}
	if p.answered(smpp.StatusRxPApp, t0, lo, hi) || p.backoff != 0 {
		t.Errorf("refused for good: backoff %v, want 0", p.backoff)
	}
	if esmeThrottled(errors.New("timeout")) {
		t.Error("a timeout taken for a throttle")
	}
}

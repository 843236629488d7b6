package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
)

// esmePause slows the deliver_sm to an ESME (an account's receipts, an
// enterprise's replies) that answers one with ESME_RTHROTTLED or
// ESME_RMSGQFUL: it asks the sender to slow down (SMPP 3.4 §5.1.3), and a
// forwarder that went on at its window would answer it with the whole
// window again, and every retry delay with all that is pending. After
// such an answer nothing new goes for delivery.retry_min, doubling with
// each such answer in a row up to delivery.retry_max; an answer taken
// (or refused for good) ends the doubling. What is in flight goes on.
type esmePause struct {
	mu      sync.Mutex
	until   time.Time
	backoff time.Duration
}

// esmeThrottled reports whether err is an ESME's answer asking to slow
// down.
func esmeThrottled(err error) bool {
	var st pdu.Status
	return errors.As(err, &st) && flowControl(st)
}

// answered records an ESME's answer at now (err nil: taken), pausing
// after a throttle for between lo and hi; it reports whether the answer
// was one.
func (p *esmePause) answered(err error, now time.Time, lo, hi time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !esmeThrottled(err) {
		if err == nil || refusedForGood(err) {
			p.backoff = 0
		}
		return false
	}
	p.backoff = max(lo, min(2*p.backoff, hi))
	if u := now.Add(p.backoff); u.After(p.until) {
		p.until = u
	}
	return true
}

// paused reports whether a pause holds at now.
func (p *esmePause) paused(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.Before(p.until)
}

// wait waits until the pause ends; false once ctx ended.
func (p *esmePause) wait(ctx context.Context) bool {
	for {
		p.mu.Lock()
		d := time.Until(p.until)
		p.mu.Unlock()
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

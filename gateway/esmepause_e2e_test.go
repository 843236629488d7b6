package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// throttlingESME answers its first n deliver_sm ESME_RTHROTTLED and the
// others OK, each delay after it came (several at once), recording when
// each came and the texts it took.
type throttlingESME struct {
	mu    sync.Mutex
	n     int
	times []time.Time
	// throttled is when each ESME_RTHROTTLED answer was written: a
	// machine under load can run the throttled deliver_sm's handler
	// late, after other answers let more in.
	throttled []time.Time
	took      map[string]int
	wake      chan struct{}
}

func bindThrottlingESME(t *testing.T, r *rig, systemID, password string, kind smpp.BindKind, n int, delay time.Duration) (*throttlingESME, *smpp.Conn) {
	t.Helper()
	e := &throttlingESME{n: n, took: map[string]int{}, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn := r.dialAs(ctx, t, systemID, password, kind, 64, smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if p.Header().ID != pdu.DeliverSMID {
			return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
		}
		e.mu.Lock()
		e.times = append(e.times, time.Now())
		throttle := len(e.times) <= e.n
		e.mu.Unlock()
		time.Sleep(delay) // the ESME's own work (0: none)
		if throttle {
			e.mu.Lock()
			e.throttled = append(e.throttled, time.Now())
			e.mu.Unlock()
			return smpp.ErrorResponse(p, smpp.StatusThrottled)
		}
		e.mu.Lock()
		e.took[string(smpp.UserData(p))]++
		e.mu.Unlock()
		select {
		case e.wake <- struct{}{}:
		default:
		}
		return pdu.NewDeliverSMResp()
	}))
	return e, conn
}

// wait waits until the ESME took n distinct deliver_sm.
func (e *throttlingESME) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		got := len(e.took)
		e.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-e.wake:
		case <-deadline.C:
			t.Fatalf("the ESME took %d, want %d", got, n)
		}
	}
}

// pausedAfter is the time between the nth deliver_sm and the next.
func (e *throttlingESME) pausedAfter(n int) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.times[n].Sub(e.times[n-1])
}

// TestESMEThrottledReplies: an ESME that answers replies
// ESME_RTHROTTLED gets nothing more for delivery.retry_min (here 300 ms;
// the retry delay is 20 ms): before, the rest of the window went at once
// and every reply again each retry delay. Every reply then reaches it
// once, and the throttles are counted.
func TestESMEThrottledReplies(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) {
		c.MOWindow, c.RetryMin, c.RetryMax, c.DLRRetry = 1, 300*time.Millisecond, time.Second, 20*time.Millisecond
	}})
	waitReady(t, r)
	const n = 10
	for i := range n {
		if err := r.sim.InjectMO("13712345678", "10657500112", fmt.Sprintf("r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := bindThrottlingESME(t, r, "alice", "secret1", smpp.BindReceiver, 2, 0)
	e.wait(t, n)
	// Two throttles in a row: 300 ms, then 600.
	if d := e.pausedAfter(1); d < 290*time.Millisecond {
		t.Errorf("the next reply came %v after the first throttle, want at least retry_min", d)
	}
	if d := e.pausedAfter(2); d < 590*time.Millisecond {
		t.Errorf("the next reply came %v after the second throttle in a row, want twice retry_min", d)
	}
	for text, k := range e.took {
		if k != 1 {
			t.Errorf("%q taken %d times", text, k)
		}
	}
	waitFor(t, 5*time.Second, "throttles counted", func() bool {
		c := counters(t, r)
		return c["qxtd_mo_forwarded_total,outcome=throttled"] == 2 && c["qxtd_mo_forwarded_total,outcome=ok"] == n
	})
}

// TestESMEThrottledReceipts: the same for an account's receipts.
func TestESMEThrottledReceipts(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}, gwcfg: func(c *gateway.Config) {
		c.DLRWindow, c.RetryMin, c.RetryMax, c.DLRRetry = 1, 300*time.Millisecond, time.Second, 20*time.Millisecond
	}})
	e, conn := bindThrottlingESME(t, r, "esme", "pw", smpp.BindTransceiver, 1, 0)
	const n = 5
	for i := range n {
		p := submitSM("1069", fmt.Sprintf("1380000%04d", i), "m")
		p.Fields().Set("registered_delivery", 1)
		if _, err := conn.Request(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	e.wait(t, n)
	if d := e.pausedAfter(1); d < 290*time.Millisecond {
		t.Errorf("the next receipt came %v after the throttle, want at least retry_min", d)
	}
	waitFor(t, 5*time.Second, "throttles counted", func() bool {
		c := counters(t, r)
		return c["qxtd_dlrs_forwarded_total,outcome=throttled"] == 1 && c["qxtd_dlrs_forwarded_total,outcome=ok"] == n
	})
}

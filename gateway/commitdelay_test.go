package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// With store.commit_delay, an ESME that waits for each answer is never
// held; once it has had several submits out at once, a lone submit (its
// window has room) waits for company, up to the delay.
func TestCommitDelayHoldsOnlySubmitsOfESMEsWithRoom(t *testing.T) {
	const delay = time.Second // far above a commit, so the bounds below are not timing luck
	r := newRig(t, rigOpts{
		sim:   smpp.SimOptions{DLRDelay: time.Hour}, // no receipt during the test
		store: func(o *queue.Options) { o.CommitDelay = delay },
		// No housekeeping write (not patient) ends a wait early.
		gwcfg: func(c *gateway.Config) { c.MaintainInterval = time.Hour },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	timed := func(dst string) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := e.submit(ctx, submitSM("1069", dst, "held?")); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}

	// Stop and wait: one submit out at a time, the most it ever had.
	for i := range 3 {
		if took := timed(fmt.Sprintf("1380000%04d", i)); took >= delay {
			t.Errorf("submit %d of an ESME that waits for each answer took %v: held for company", i, took)
		}
	}

	// Three sent at once (the first is still being committed when the
	// second is read, at least), then one alone: its window has room, so
	// it waits for company. (Whether the third of the three waited
	// depends on when it was read: after the first two were answered, it
	// was alone too.)
	submitN(t, e, 3, "1380001")
	if took := timed("13800020000"); took < delay*3/4 || took > delay+5*time.Second {
		t.Errorf("a lone submit of an ESME that had three out took %v: want held about %v", took, delay)
	}
}

package gateway_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

var errDiskFull = errors.New("test: no space left on device")

// waitFor polls cond until it holds or d passes (the conditions are
// counters of other goroutines: there is no event to wait on).
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestStoreFailureHoldsAcceptedParts: while the store cannot commit, a
// segment the SMSC accepted stays in flight until its acceptance is
// recorded — it is not sent again — and nothing new goes out; once the
// store writes again everything is recorded and delivered, each message
// exactly once at the SMSC.
func TestStoreFailureHoldsAcceptedParts(t *testing.T) {
	const n, binds, window = 100, 2, 20
	var failing atomic.Bool
	r := newRig(t, rigOpts{
		// Answers come late, so that the first windows are out at the
		// SMSC when the disk fills.
		sim: smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{RespDelay: time.Second}},
		upstream: func(u *gateway.UpstreamConfig) {
			u.Binds, u.Window = binds, window
		},
		store: func(o *queue.Options) {
			o.CommitFault = func() error {
				if failing.Load() {
					return errDiskFull
				}
				return nil
			}
		},
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ids := submitN(t, e, n, "1380077")
	failing.Store(true)
	r.sim.SetFaults(smpp.Faults{})
	failedAt := r.store.Stats().FailedCommits

	// The windows' worth of segments reach the SMSC and are accepted;
	// their acceptance cannot be recorded. Let the gateway try for a
	// while (many failed commits) before the disk frees up.
	waitFor(t, 20*time.Second, "the first windows accepted", func() bool {
		acc, _ := r.sim.Stats()
		return acc >= binds*window
	})
	waitFor(t, 20*time.Second, "failed commits", func() bool {
		return r.store.Stats().FailedCommits >= failedAt+15
	})
	if r.gw.Health().StoreWritable {
		t.Error("Health says the store is writable while its commits fail")
	}
	acc, _ := r.sim.Stats()
	if acc > binds*window {
		t.Errorf("SMSC got %d submit_sm while the store could not write, want at most the windows (%d)", acc, binds*window)
	}
	failing.Store(false)

	got := e.waitReceipts(t, n, 30*time.Second)
	for _, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("message %s: receipt %+v present=%v", id, rc, ok)
		}
	}
	perDest := map[string]int{}
	for _, m := range r.sim.Received() {
		perDest[m.Dest]++
	}
	if len(perDest) != n {
		t.Errorf("SMSC got %d distinct messages, want %d", len(perDest), n)
	}
	for d, c := range perDest {
		if c != 1 {
			t.Errorf("%s reached the SMSC %d times, want once", d, c)
		}
	}
	if !r.gw.Health().StoreWritable {
		t.Error("Health says the store is not writable after commits succeed again")
	}
}

package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// TestReplyAnsweredLateSentAgain: a reply whose commit took longer than
// an SMSC may wait for its answer (a slow disk: 2.5 s here, qxtd's bound
// is 2 s) is sent again by the SMSC on the same connection, still up:
// that copy is answered and not stored. The handset's own repeat after
// it is stored. Before, the late answer's resend was a second reply.
func TestReplyAnsweredLateSentAgain(t *testing.T) {
	var slow atomic.Bool
	r := newRig(t, rigOpts{store: func(o *queue.Options) {
		o.CommitFault = func() error {
			if slow.Load() {
				time.Sleep(2500 * time.Millisecond) // the slow disk under test, not a wait for an event
			}
			return nil
		}
	}})
	waitReady(t, r)
	slow.Store(true)
	if err := r.sim.InjectMO("13900000000", "1069", "Y"); err != nil {
		t.Fatal(err)
	}
	slow.Store(false)
	for range 2 { // the SMSC's resend, then the handset's repeat
		if err := r.sim.InjectMO("13900000000", "1069", "Y"); err != nil {
			t.Fatal(err)
		}
	}
	list, _, err := r.store.Inbox("", queue.InboxFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := counters(t, r)["qxtd_mo_received_total,result=again"]; len(list) != 2 || got != 1 {
		t.Fatalf("%d replies stored, %v taken for resends; want 2 and 1", len(list), got)
	}
}

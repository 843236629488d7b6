package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// slowReplyTo makes the first reply's store take 2.5 s (its owner's
// lookup, on the reply's own path: a slow commit would hold up whatever
// else commits meanwhile too).
type slowReplyTo struct {
	gateway.Rules
	slow *atomic.Bool
}

func (s slowReplyTo) ReplyTo(dest string) (policy.ReplyOwner, bool) {
	if s.slow.CompareAndSwap(true, false) {
		time.Sleep(2500 * time.Millisecond) // the slowness under test, not a wait for an event
	}
	return s.Rules.ReplyTo(dest)
}

// TestReplyAnsweredLateSentAgain: a reply stored later than an SMSC may
// wait for its answer (2.5 s here; qxtd's bound is 2 s) is sent again by
// the SMSC on the same connection, still up: that copy is answered and
// not stored. The handset's own repeat after it is stored. Before, the
// late answer's resend was a second reply.
func TestReplyAnsweredLateSentAgain(t *testing.T) {
	var slow atomic.Bool
	r, _ := twoWayRig(t, rigOpts{wrapRules: func(rules gateway.Rules) gateway.Policy { return slowReplyTo{Rules: rules, slow: &slow} }})
	waitReady(t, r)
	slow.Store(true)
	for range 3 { // the reply, the SMSC's resend, the handset's repeat
		if err := r.sim.InjectMO("13712345678", "10657500112", "Y"); err != nil {
			t.Fatal(err)
		}
	}
	if got := counters(t, r)["qxtd_mo_received_total,result=again"]; len(inboxOf(t, r.store, "E1")) != 2 || got != 1 {
		t.Fatalf("%d replies stored, %v taken for resends; want 2 and 1", len(inboxOf(t, r.store, "E1")), got)
	}
}

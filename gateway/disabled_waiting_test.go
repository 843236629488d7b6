package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestDisabledEnterpriseHeld: the messages E1 had waiting when the
// operator disabled it (a one-part one, a long one, one sent with
// priority) are not sent while it is disabled, though they come due, and
// another enterprise's message sent after them goes; they stay accepted,
// and once E1 is enabled again every part of them goes.
func TestDisabledEnterpriseHeld(t *testing.T) {
	r, pol := twoWayRig(t, rigOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitReady(t, r)
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	// Scheduled an hour ahead, then moved to now once E1 is disabled.
	later := func(text string, priority bool) uint64 {
		return submitLater(ctx, t, alice, "13712345678", text, priority)
	}
	ids := []uint64{
		later("sale today", false),
		later(strings.Repeat("a long sale text ", 12), false), // 4 parts in UCS-2, signed
		later("your code is 1234", true),
	}
	setDisabled := func(on bool) {
		t.Helper()
		_, err := pol.UpdateEnterprise(policy.OperatorActor("ops"), "E1", func(e *policy.Enterprise) error {
			e.Disabled = on
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setDisabled(true)
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	parts := 0
	for _, id := range ids {
		if err := r.gw.Reschedule(ctx, acct, id, time.Now(), ""); err != nil {
			t.Fatalf("send %d now: %v", id, err)
		}
		m, err := r.gw.Message(acct, id)
		if err != nil {
			t.Fatal(err)
		}
		parts += len(m.Parts)
	}
	if parts != 6 {
		t.Fatalf("E1's messages have %d parts, want 6", parts)
	}

	// E2's message, due after E1's: sent once a scan has passed E1's by
	// (the reschedule asked for one before anything handed over goes).
	bob, err := r.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.submit(ctx, submitSM("", "13923412345", "hello")); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.waitReceived(t, 1) {
		if strings.HasSuffix(m.Dest, "13712345678") {
			t.Errorf("the SMSC got %q of disabled E1", m.ShortMessage)
		}
	}
	for _, id := range ids {
		m, err := r.gw.Message(acct, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Parts {
			if p.State != queue.StateAccepted {
				t.Errorf("message %d part %d is %s while E1 is disabled, want accepted", id, i, p.State)
			}
		}
	}

	setDisabled(false)
	got := r.waitReceived(t, 1+parts)
	n := 0
	for _, m := range got {
		if strings.HasSuffix(m.Dest, "13712345678") {
			n++
		}
	}
	if n != parts || len(got) != 1+parts {
		t.Errorf("after E1 was enabled the SMSC got %d of its %d parts (%d in all)", n, parts, len(got))
	}
}

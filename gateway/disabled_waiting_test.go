package gateway_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// setDisabled disables E1, or enables it, as the operator.
func setDisabled(t *testing.T, pol *policy.Policy, on bool) {
	t.Helper()
	_, err := pol.UpdateEnterprise(policy.OperatorActor("ops"), "E1", func(e *policy.Enterprise) error {
		e.Disabled = on
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sendNow moves alice's scheduled messages ids to now, and returns how
// many parts they have.
func sendNow(ctx context.Context, t *testing.T, r *rig, ids []uint64) int {
	t.Helper()
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
	return parts
}

// TestDisabledEnterpriseHeld: the messages E1 had waiting when the
// operator disabled it (a one-part one, a long one, one sent with
// priority) are not sent while it is disabled, though they come due, and
// another enterprise's message sent after them goes; they stay accepted,
// and once E1 is enabled again every part of them goes.
func TestDisabledEnterpriseHeld(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	// Scheduled an hour ahead, then moved to now once E1 is disabled.
	later := func(text string, priority bool) uint64 {
		return submitLater(ctx, t, alice, "13712345678", text, priority)
	}
	ids := []uint64{
		later("sale today", false),
		later(strings.Repeat("a long sale text ", 12), false), // 4 parts in UCS-2, signed
		later("your code is 1234", true),
	}
	setDisabled(t, pol, true)
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	parts := sendNow(ctx, t, r, ids)
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

	setDisabled(t, pol, false)
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

// TestDroppedHeld: the operator drops what disabled E1 holds: its
// waiting messages (a one-part one and every part of a long one) end
// rejected account_disabled, the ESME gets REJECTD receipts with
// err:account_disabled, qxtd_held_dropped_total counts the parts, and
// once E1 is enabled again none of them goes, while its new message
// does.
func TestDroppedHeld(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{gwcfg: func(c *gateway.Config) { c.MaintainInterval = 50 * time.Millisecond }})
	ids := []uint64{
		submitLater(ctx, t, alice, "13712345678", "sale today", false),
		submitLater(ctx, t, alice, "13712345678", strings.Repeat("a long sale text ", 12), false),
	}
	op := policy.OperatorActor("ops")
	if _, err := pol.DropHeld(op, "E1"); err == nil {
		t.Fatal("dropped the held messages of an enterprise not disabled")
	}
	setDisabled(t, pol, true)
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	parts := sendNow(ctx, t, r, ids)
	e, err := pol.DropHeld(op, "E1")
	if err != nil || e.HeldDropped.IsZero() {
		t.Fatalf("drop: %v %+v", err, e)
	}
	rcs := alice.waitReceipts(t, len(ids), 10*time.Second)
	for _, id := range ids {
		rc := rcs[strconv.FormatUint(id, 10)]
		if rc.State != smpp.StateRejected || rc.Err != "account_disabled" {
			t.Errorf("message %d: receipt %s err:%s, want REJECTD err:account_disabled", id, rc.State.Stat(), rc.Err)
		}
		m, err := r.gw.Message(acct, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range m.Parts {
			if p.State != queue.StateRejected || p.ErrCode != "account_disabled" {
				t.Errorf("message %d part %d: %s %q", id, i, p.State, p.ErrCode)
			}
		}
	}
	// Counted after the store call that ended the parts, which may be
	// after their receipts reached the ESME.
	waitFor(t, 5*time.Second, fmt.Sprintf("qxtd_held_dropped_total at %d", parts), func() bool {
		return counters(t, r)["qxtd_held_dropped_total"] == float64(parts)
	})
	setDisabled(t, pol, false)
	if e, _ := pol.Lookup("E1"); !e.HeldDropped.IsZero() {
		t.Error("enabling E1 left its drop in place")
	}
	if _, err := alice.submit(ctx, submitSM("", "13923412345", "back again")); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.waitReceived(t, 1) {
		if strings.HasSuffix(m.Dest, "13712345678") {
			t.Errorf("the SMSC got %q, dropped", m.ShortMessage)
		}
	}
}

// TestHeldExpires: a message a disabled enterprise holds whose validity
// ends while it is held is expired then, its receipt EXPIRED sent and its
// counter counted, without waiting for the enterprise to be enabled;
// one still valid stays held, and goes once E1 is enabled.
func TestHeldExpires(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{gwcfg: func(c *gateway.Config) { c.MaintainInterval = 50 * time.Millisecond }})
	// Scheduled an hour ahead, valid 2 s past it: once moved to now (the
	// validity moves along), it expires 2 s later.
	p := submitSM("", "13712345678", strings.Repeat("a long sale text ", 12)) // 4 parts
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000010000000R")
	_ = p.Fields().Set(pdufield.ValidityPeriod, "000000010002000R")
	sid, err := alice.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	short, err := strconv.ParseUint(sid, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	valid := submitLater(ctx, t, alice, "13923412345", "sale today", false)
	setDisabled(t, pol, true)
	parts := sendNow(ctx, t, r, []uint64{short})
	sendNow(ctx, t, r, []uint64{valid})
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}

	rc := alice.waitReceipts(t, 1, 15*time.Second)[sid]
	if rc.State != smpp.StateExpired {
		t.Fatalf("receipt %s err:%s, want EXPIRED", rc.State.Stat(), rc.Err)
	}
	m, err := r.gw.Message(acct, short)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Parts {
		if p.State != queue.StateExpired || p.ErrCode != "validity" {
			t.Errorf("part %d: %s %q, want expired validity", i, p.State, p.ErrCode)
		}
	}
	// Counted after the store call that ended the parts, which may be
	// after their receipts reached the ESME.
	waitFor(t, 5*time.Second, fmt.Sprintf("qxtd_held_expired_total at %d", parts), func() bool {
		return counters(t, r)["qxtd_held_expired_total"] == float64(parts)
	})
	if m, err := r.gw.Message(acct, valid); err != nil || m.State() != queue.StateAccepted {
		t.Fatalf("the message still valid: %v %v, want held (accepted)", m, err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Errorf("the SMSC got %d messages while E1 was disabled", n)
	}
	setDisabled(t, pol, false)
	if got := r.waitReceived(t, 1); len(got) != 1 || !strings.HasSuffix(got[0].Dest, "13923412345") {
		t.Errorf("after enabling, the SMSC got %+v, want the message still valid", got)
	}
}

package gateway_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// aliceBound is twoWayRig(t, o) ready, with E1's alice bound as a
// transceiver, and a context for the test (30 s).
func aliceBound(t *testing.T, o rigOpts) (*rig, *policy.Policy, context.Context, *esme) {
	t.Helper()
	r, pol := twoWayRig(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	waitReady(t, r)
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	return r, pol, ctx, alice
}

// submitLater submits text to dst over e, scheduled an hour ahead (with
// priority_flag 1 if priority), and returns the message's id: a test
// moves it to now (Gateway.Reschedule) once it has set the stage.
func submitLater(ctx context.Context, t *testing.T, e *esme, dst, text string, priority bool) uint64 {
	t.Helper()
	p := submitSM("", dst, text)
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000010000000R")
	if priority {
		_ = p.Fields().Set(pdufield.PriorityFlag, uint8(1))
	}
	id, err := e.submit(ctx, p)
	if err != nil {
		t.Fatalf("schedule %q to %s: %v", text, dst, err)
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOptOutStopsWaitingMessages: E1's messages accepted for a number
// before it replied TD, and not yet sent, are not sent once their turn
// comes: a single-part one and every part of a long one get REJECTD
// receipts with err:opted_out, and the SMSC sees none of them; a message
// to another number goes; once E1's admin takes the number off the list,
// a message still waiting for it goes too.
func TestOptOutStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	// Scheduled an hour ahead: each is sent when the test moves it to
	// now, after the opt-out, whatever the machine's pace.
	later := func(dst, text string) uint64 { return submitLater(ctx, t, alice, dst, text, false) }
	const optedOut, other = "13712345678", "13923412345"
	single := later(optedOut, "sale today")
	long := later(optedOut, strings.Repeat("a long sale text ", 12)) // 204 characters, signed in UCS-2: 4 parts
	toOther := later(other, "sale today")
	kept := later(optedOut, "sale tomorrow")

	if err := r.sim.InjectMO(optedOut, "10657500112", "TD"); err != nil {
		t.Fatal(err) // acknowledged once the opt-out is recorded
	}
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	sendNow(ctx, t, r, []uint64{single, long, toOther})
	rcs := alice.waitReceipts(t, 3, 10*time.Second)
	for _, id := range []uint64{single, long} {
		rc := rcs[strconv.FormatUint(id, 10)]
		if rc.State != smpp.StateRejected || rc.Err != "opted_out" {
			t.Errorf("message %d to the opted-out number: receipt %s err:%s, want REJECTD err:opted_out", id, rc.State.Stat(), rc.Err)
		}
	}
	if rc := rcs[strconv.FormatUint(toOther, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message to another number: receipt %s, want DELIVRD", rc.State.Stat())
	}
	for _, m := range r.sim.Received() {
		if strings.HasSuffix(m.Dest, optedOut) {
			t.Errorf("the SMSC got %q for the opted-out number", m.ShortMessage)
		}
	}
	m, err := r.gw.Message(acct, long)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) < 2 {
		t.Fatalf("the long message has %d parts", len(m.Parts))
	}
	c := counters(t, r)
	for _, name := range []string{"qxtd_optout_stopped_total", "qxtd_stopped_total,reason=opted_out"} {
		if got, want := c[name], float64(1+len(m.Parts)); got != want {
			t.Errorf("%s = %v, want %v (one part and the long message's)", name, got, want)
		}
	}
	for i, p := range m.Parts {
		if p.State.String() != "rejected" || p.ErrCode != "opted_out" {
			t.Errorf("long message's part %d: %s %q, want rejected opted_out", i, p.State, p.ErrCode)
		}
	}

	amy := policy.Actor{Enterprise: "E1", Admin: true, Name: "amy"}
	if err := pol.RemoveOptOut(amy, "E1", optedOut); err != nil {
		t.Fatal(err)
	}
	sendNow(ctx, t, r, []uint64{kept})
	rc := alice.waitReceipts(t, 4, 10*time.Second)[strconv.FormatUint(kept, 10)]
	if rc.State != smpp.StateDelivered {
		t.Errorf("message waiting while the number was taken off the list: receipt %s err:%s, want DELIVRD", rc.State.Stat(), rc.Err)
	}
}

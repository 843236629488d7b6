package gateway_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// TestDisabledUserStopsWaitingMessages: alice's scheduled messages that
// come due after her enterprise's admin disabled her are not sent: each
// is failed rejected account_disabled (a REJECTD receipt, counted in
// qxtd_stopped_total), as a new message of hers would be refused. One that
// comes due once she is enabled again goes.
func TestDisabledUserStopsWaitingMessages(t *testing.T) {
	r, pol, ctx, alice := aliceBound(t, rigOpts{})
	later := func(dst, text string) uint64 { return submitLater(ctx, t, alice, dst, text, false) }
	const number = "13923412345"
	single := later(number, "sale today")
	long := later(number, strings.Repeat("a long sale text ", 12)) // 4 parts
	kept := later(number, "sale tomorrow")

	amy := policy.Actor{Enterprise: "E1", Admin: true, Name: "amy"}
	setUser := func(disabled bool) {
		t.Helper()
		if _, err := pol.UpdateUser(amy, "alice", policy.UserUpdate{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
	}
	setUser(true)
	sendNow(ctx, t, r, []uint64{single, long})
	rcs := alice.waitReceipts(t, 2, 10*time.Second)
	for _, id := range []uint64{single, long} {
		rc := rcs[strconv.FormatUint(id, 10)]
		if rc.State != smpp.StateRejected || rc.Err != "account_disabled" {
			t.Errorf("message %d of the user disabled since: receipt %s err:%s, want REJECTD err:account_disabled", id, rc.State.Stat(), rc.Err)
		}
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Errorf("the SMSC got %d messages of the disabled user", n)
	}
	m, err := r.gw.Message(&gateway.Account{SystemID: "alice", Enterprise: "E1"}, long)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Parts {
		if p.State.String() != "rejected" || p.ErrCode != "account_disabled" {
			t.Errorf("long message's part %d: %s %q, want rejected account_disabled", i, p.State, p.ErrCode)
		}
	}
	if got, want := counters(t, r)["qxtd_stopped_total,reason=account_disabled"], float64(1+len(m.Parts)); got != want {
		t.Errorf("qxtd_stopped_total{reason=account_disabled} = %v, want %v", got, want)
	}

	// Enabled again: what still waits goes.
	setUser(false)
	sendNow(ctx, t, r, []uint64{kept})
	if rc := alice.waitReceipts(t, 3, 10*time.Second)[strconv.FormatUint(kept, 10)]; rc.State != smpp.StateDelivered {
		t.Errorf("message of the user enabled again: receipt %s err:%s, want DELIVRD", rc.State.Stat(), rc.Err)
	}
}

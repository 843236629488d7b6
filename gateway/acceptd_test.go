package gateway_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestAcceptedReceipt: a receipt with stat ACCEPTD (message_state 6) is
// an intermediate notification by default: the message still waits for
// its receipt and the ESME hears nothing yet. With AcceptedFinal it ends
// the message, unknown (not delivered, not billed), as SMPP 3.4 counts
// the state, and the ESME gets its final receipt.
func TestAcceptedReceipt(t *testing.T) {
	for _, final := range []bool{false, true} {
		t.Run(map[bool]string{false: "intermediate", true: "final"}[final], func(t *testing.T) {
			r := newRig(t, rigOpts{
				sim:      smpp.SimOptions{DLRDelay: time.Millisecond, Faults: smpp.Faults{AcceptedPrefix: "1380000"}},
				upstream: func(u *gateway.UpstreamConfig) { u.AcceptedFinal = final },
			})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			id, err := e.submit(ctx, submitSM("1069", "13800001234", "accepted"))
			if err != nil {
				t.Fatal(err)
			}
			// Answered by qxtd: the receipt was handled.
			waitFor(t, 10*time.Second, "the ACCEPTD receipt answered", func() bool { _, n := r.sim.Stats(); return n == 1 })
			n, _ := strconv.ParseUint(id, 10, 64)
			m, err := r.store.Get(n)
			if err != nil {
				t.Fatal(err)
			}
			if !final {
				if st := m.Parts[0].State; st != queue.StateSubmitted || len(e.receipts()) != 0 {
					t.Fatalf("intermediate: state %v, %d receipts at the ESME; want submitted, none", st, len(e.receipts()))
				}
				return
			}
			if st := m.Parts[0].State; st != queue.StateUnknown {
				t.Fatalf("final: state %v, want unknown", st)
			}
			if rc := e.waitReceipts(t, 1, 10*time.Second)[id]; rc.State.Final() == false || rc.State == smpp.StateDelivered {
				t.Fatalf("final: the ESME's receipt %+v; want a final one, not delivered", rc)
			}
		})
	}
}

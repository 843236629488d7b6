package gateway_test

import (
	"testing"
	"time"

	gosmpp "github.com/fiorix/go-smpp/smpp"
	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"

	"github.com/qxtd/qxtd/smpp"
)

// TestInteropGoSMPPClient binds with a standard third-party client
// library (go-smpp's Transceiver, its own session code, not ours),
// submits GSM and UCS-2 text and receives both receipts.
func TestInteropGoSMPPClient(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 5 * time.Millisecond}})
	receipts := make(chan pdu.Body, 4)
	tc := &gosmpp.Transceiver{
		Addr: r.addr, User: "esme", Passwd: "pw",
		RespTimeout: 5 * time.Second,
		Handler: func(p pdu.Body) {
			if p.Header().ID == pdu.DeliverSMID {
				receipts <- p
			}
		},
	}
	status := tc.Bind()
	select {
	case st := <-status:
		if st.Status() != gosmpp.Connected {
			t.Fatalf("go-smpp bind: %v %v", st.Status(), st.Error())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("go-smpp did not bind")
	}
	defer tc.Close()

	ids := map[string]bool{}
	for _, text := range []pdutext.Codec{pdutext.Raw("hello from go-smpp"), pdutext.UCS2("中文短信")} {
		sm, err := tc.Submit(&gosmpp.ShortMessage{
			Src: "10690001", Dst: "13800138000", Text: text, Register: pdufield.FinalDeliveryReceipt,
		})
		if err != nil {
			t.Fatalf("go-smpp submit: %v", err)
		}
		ids[sm.RespID()] = true
	}
	deadline := time.After(15 * time.Second)
	for len(ids) > 0 {
		select {
		case p := <-receipts:
			rc, err := smpp.ParseReceipt(p)
			if err != nil {
				t.Fatalf("receipt: %v", err)
			}
			if !ids[rc.ID] {
				t.Fatalf("receipt for unknown id %q", rc.ID)
			}
			if rc.State != smpp.StateDelivered {
				t.Fatalf("receipt state %s", rc.State.Stat())
			}
			// go-smpp decodes deliver_sm with the #73 layout in mind: the
			// text must still start where the receipt text starts.
			if sm := smpp.Bytes(p, pdufield.ShortMessage); len(sm) < 3 || string(sm[:3]) != "id:" {
				t.Fatalf("short_message %q does not start with id:", sm)
			}
			delete(ids, rc.ID)
		case <-deadline:
			t.Fatalf("receipts missing for %v", ids)
		}
	}
}

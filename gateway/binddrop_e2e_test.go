package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/smpp"
)

// dropAtFirst binds systemID as a receiver that drops its session at the
// first deliver_sm, answering none; it returns once the bind is up.
func dropAtFirst(t *testing.T, r *rig, systemID, password string) *smpp.Conn {
	t.Helper()
	var once sync.Once
	return r.dialAs(t.Context(), t, systemID, password, smpp.BindReceiver, 10, smpp.HandlerFunc(func(ctx context.Context, c *smpp.Conn, p pdu.Body) pdu.Body {
		once.Do(func() { go c.Close() })
		<-ctx.Done() // the session's: ended by the close
		return nil
	}))
}

// TestRepliesMoveToAnotherBind: replies sent on a bind that drops go at
// once on the user's other bind, each taken once, not at the retry delay
// (an hour here).
func TestRepliesMoveToAnotherBind(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.DLRRetry = time.Hour }})
	waitReady(t, r)
	dropper := dropAtFirst(t, r, "alice", "secret1")
	e := bindWindowESME(t, r, "alice", "secret1")
	const n = 20
	for i := range n {
		if err := r.sim.InjectMO("13712345678", "10657500112", fmt.Sprintf("r%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	<-dropper.Done()
	got := e.wait(t, n) // within 20 s, where the retry delay is an hour
	takenOnce(t, got, n)
}

// TestReceiptsMoveToAnotherBind: the same for an account's receipts.
func TestReceiptsMoveToAnotherBind(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}, gwcfg: func(c *gateway.Config) { c.DLRRetry = time.Hour }})
	dropper := dropAtFirst(t, r, "esme", "pw")
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := map[string]bool{}
	for i := range n {
		id, err := e.submit(t.Context(), submitSM("1069", fmt.Sprintf("1380000%04d", i), "m"))
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	<-dropper.Done()
	got := e.waitReceipts(t, n, 20*time.Second) // the retry delay is an hour
	for id := range ids {
		if _, ok := got[id]; !ok {
			t.Errorf("no receipt of %s", id)
		}
	}
}

package gateway_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestReplySentAgainAfterCut: the SMSC's resend of a reply stored just
// before its connection was cut (qxtd cannot know whether its answer got
// through) is answered and not stored again, once per reply stored; the
// same text on a connection still up, a reply sent once more than those
// stored, and another text are replies of their own. Before, each resend
// was stored: the enterprise saw the reply twice.
func TestReplySentAgainAfterCut(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{})
	alice, err := r.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, r)
	const from, to = "13712345678", "10657500112"
	inject := func(text string) {
		t.Helper()
		if err := r.sim.InjectMO(from, to, text); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
	}
	inject("Y")
	inject("Y") // the connection is up: the handset's own second Y
	inject("N")
	r.sim.DropConnections()
	// Sent again once the upstream is bound back (no bind yet, or a
	// dropped one the simulator still lists: again).
	waitFor(t, 10*time.Second, "the first resend taken", func() bool {
		err := r.sim.InjectMO(from, to, "N")
		if st := smpp.StatusOK; errors.As(err, &st) {
			t.Fatalf("resend answered %v", st)
		}
		return err == nil
	})
	inject("Y")
	inject("Y")
	inject("Y") // one more than were stored: the handset's
	inject("Z")
	want := []string{"Y", "Y", "N", "Y", "Z"}
	var got []string
	for _, m := range alice.waitMOs(t, len(want)) {
		got = append(got, moText(t, m))
	}
	var inbox []string
	for _, m := range inboxOf(t, r.store, "E1") {
		inbox = append(inbox, m.Text)
	}
	slices.Reverse(inbox)
	if !slices.Equal(got, want) || !slices.Equal(inbox, want) {
		t.Fatalf("alice got %q, the inbox has %q; want %q", got, inbox, want)
	}
	if n := counters(t, r)["qxtd_mo_received_total,result=again"]; n != 3 {
		t.Fatalf("%v resends counted, want 3", n)
	}
}

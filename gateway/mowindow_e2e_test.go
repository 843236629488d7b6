package gateway_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// windowESME is a receiver that answers each deliver_sm after a random
// 0–3 ms, several at once, recording the texts in the order they came on
// the wire (by sequence number: its handlers run side by side) and the
// most it held unanswered at once.
type windowESME struct {
	mu       sync.Mutex
	texts    map[uint32]string
	open     int
	maxOpen  int
	wake     chan struct{}
	answered int
}

func bindWindowESME(t *testing.T, r *rig, systemID, password string) *windowESME {
	t.Helper()
	e := &windowESME{texts: map[uint32]string{}, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.dialAs(ctx, t, systemID, password, smpp.BindReceiver, 10, smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		text, _, err := segment.DecodeIncoming(smpp.Byte(p, pdufield.DataCoding), smpp.Byte(p, pdufield.ESMClass), smpp.UserData(p), nil, false)
		if err != nil {
			t.Error(err)
		}
		e.mu.Lock()
		e.texts[p.Header().Seq] = text
		e.open++
		e.maxOpen = max(e.maxOpen, e.open)
		e.mu.Unlock()
		// The ESME's own work: answers come back out of order.
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		e.mu.Lock()
		e.open--
		e.answered++
		e.mu.Unlock()
		select {
		case e.wake <- struct{}{}:
		default:
		}
		return pdu.NewDeliverSMResp()
	}))
	return e
}

// wait waits until n deliver_sm were answered; the texts in the order
// they came.
func (e *windowESME) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		seqs := slices.Sorted(maps.Keys(e.texts))
		got := make([]string, len(seqs))
		for i, s := range seqs {
			got[i] = e.texts[s]
		}
		done := e.answered
		e.mu.Unlock()
		if done >= n {
			return got
		}
		select {
		case <-e.wake:
		case <-deadline.C:
			t.Fatalf("the ESME answered %d deliver_sm, want %d", done, n)
		}
	}
}

// TestRepliesWindowed: stored replies go to the ESME several at once
// (up to MOWindow unanswered), still in the order they came, each once,
// however its answers come back. Before, one at a time: a round trip and
// a commit each (534 a second on loopback, 71 to an ESME answering in
// 10 ms: BenchmarkReplyForward).
func TestRepliesWindowed(t *testing.T) {
	const window, n = 8, 200
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.MOWindow = window }})
	waitReady(t, r)
	var want []string
	for i := range n {
		text := fmt.Sprintf("r%03d", i)
		if err := r.sim.InjectMO("13712345678", "10657500112", text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	e := bindWindowESME(t, r, "alice", "secret1")
	got := e.wait(t, n)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the ESME got %v\nwant %v", got, want)
	}
	e.mu.Lock()
	maxOpen := e.maxOpen
	e.mu.Unlock()
	if maxOpen > window || maxOpen < 2 {
		t.Errorf("at most %d unanswered at once, want 2 to %d", maxOpen, window)
	}
	waitFor(t, 10*time.Second, "every reply acknowledged", func() bool { return counters(t, r)["qxtd_mo_forwarded_total,outcome=ok"] == n })
	pending, err := r.store.PendingMOs("E1", 0, nil)
	if err != nil || len(pending) != 0 {
		t.Errorf("%d replies still pending (%v)", len(pending), err)
	}
}

// TestRepliesForAnUnboundUserWait: replies to a user with no bind (alice,
// by her extension) do not hold up the enterprise's other replies, which
// its admin's bind takes; they go as soon as alice binds, not at the
// retry delay. Before, 64 of them at the head of the enterprise's
// replies were read again and again, and nothing behind them went.
func TestRepliesForAnUnboundUserWait(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.DLRRetry = time.Hour }})
	waitReady(t, r)
	for i := range 70 {
		if err := r.sim.InjectMO("13712345678", "10657500112", fmt.Sprintf("alice %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.sim.InjectMO("13712345678", "106575001", "to the enterprise"); err != nil {
		t.Fatal(err)
	}
	amy := bindWindowESME(t, r, "amy", "secret1")
	if got := amy.wait(t, 1); len(got) != 1 || got[0] != "to the enterprise" {
		t.Fatalf("amy got %q, want the enterprise's reply alone", got)
	}
	alice := bindWindowESME(t, r, "alice", "secret1")
	got := alice.wait(t, 70) // within 20 s, where the retry delay is an hour
	for i, text := range got {
		if want := fmt.Sprintf("alice %d", i); text != want {
			t.Fatalf("alice's reply %d: %q, want %q", i, text, want)
		}
	}
}

// TestRepliesAfterADrop: replies in flight when the ESME's bind drops
// go again as soon as it binds again, not at the retry delay (an hour
// here), each taken once. Another bind of the enterprise (amy's) stays
// up, so its forwarder, and what it holds back, goes on.
func TestRepliesAfterADrop(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{gwcfg: func(c *gateway.Config) { c.DLRRetry = time.Hour }})
	waitReady(t, r)
	bindWindowESME(t, r, "amy", "secret1")
	const n = 20
	for i := range n {
		if err := r.sim.InjectMO("13712345678", "10657500112", fmt.Sprintf("r%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The first bind drops at its first deliver_sm, answering none.
	var once sync.Once
	first := r.dialAs(t.Context(), t, "alice", "secret1", smpp.BindReceiver, 10, smpp.HandlerFunc(func(ctx context.Context, c *smpp.Conn, p pdu.Body) pdu.Body {
		once.Do(func() { go c.Close() })
		<-ctx.Done() // the session's: ended by the close
		return nil
	}))
	<-first.Done()
	waitFor(t, 10*time.Second, "the replies in flight failed", func() bool {
		return counters(t, r)["qxtd_mo_forwarded_total,outcome=error"] > 0
	})
	e := bindWindowESME(t, r, "alice", "secret1")
	got := e.wait(t, n) // within 20 s, where the retry delay is an hour
	takenOnce(t, got, n)
}

// takenOnce checks that the ESME took n distinct replies, none twice.
func takenOnce(t *testing.T, got []string, n int) {
	t.Helper()
	seen := map[string]bool{}
	for _, text := range got {
		if seen[text] {
			t.Errorf("%q taken twice", text)
		}
		seen[text] = true
	}
	if len(seen) != n {
		t.Errorf("took %d distinct replies, want %d", len(seen), n)
	}
}

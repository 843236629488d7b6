package gateway

import (
	"slices"
	"testing"

	"github.com/qxtd/qxtd/queue"
)

// A receipt the store handed over goes out once: not if a scan that saw
// its commit came first (it took it, found it in flight or acknowledged),
// and a hand-over that did not fit asks for a scan.
func TestForwarderHandOverOnce(t *testing.T) {
	f := &forwarder{inflight: make(map[uint64]struct{}), hand: newHandOver[*queue.Message](4)}
	msgs := func(ids ...uint64) []*queue.Message {
		var out []*queue.Message
		for _, id := range ids {
			out = append(out, &queue.Message{ID: id})
		}
		return out
	}
	idsOf := func(ms []*queue.Message) []uint64 {
		var out []uint64
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	f.scanned = 5
	f.hand.put(msgs(1), 5)
	f.hand.put(msgs(2, 3), 6)
	f.inflight[3] = struct{}{} // the scan at 7 found it
	f.scanned = 7
	f.hand.put(msgs(4), 8)
	f.pull()
	if got := idsOf(f.takeHanded(10)); !slices.Equal(got, []uint64{4}) {
		t.Errorf("taken %v, want [4]", got)
	}
	if f.rescan {
		t.Error("a scan asked for with nothing dropped")
	}
	f.hand.put(msgs(10, 11, 12, 13, 14, 15), 9)
	f.pull()
	if got := idsOf(f.takeHanded(2)); !slices.Equal(got, []uint64{10, 11}) || !f.rescan {
		t.Errorf("taken %v (want [10 11]), rescan %v (want true: 14 and 15 did not fit)", got, f.rescan)
	}
	if got := idsOf(f.takeHanded(10)); !slices.Equal(got, []uint64{12, 13}) {
		t.Errorf("then taken %v, want [12 13]", got)
	}
}

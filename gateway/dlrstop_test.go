package gateway

import (
	"context"
	"testing"

	"github.com/qxtd/qxtd/queue"
)

// A receipt the ESME has answered is handed to the acker even when the
// forwarder stops at that moment (its last bind went, or the gateway is
// stopping): dropped, it would stay pending and be sent again on the next
// bind. The delivery here stops the forwarder as the ESME answers, so
// that the worker finds both the stop and the acknowledgement to hand
// over; the worker used to pick either.
func TestWorkerHandsOverAnswersWhenStopping(t *testing.T) {
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		f := &forwarder{wake: make(chan struct{}, 1), inflight: map[uint64]struct{}{7: {}}, sending: 1}
		jobs := make(chan *queue.Message, 1)
		acks := make(chan ackedDLR, 1)
		jobs <- &queue.Message{ID: 7}
		answeredAsStopping := func(context.Context, *forwarder, *queue.Message) (int, bool, bool) {
			cancel()
			return 1, true, false
		}
		(&router{}).worker(ctx, f, jobs, acks, answeredAsStopping)
		select {
		case a := <-acks:
			if a.id != 7 || a.sent != 1 {
				t.Fatalf("round %d: handed over %+v, want message 7 with 1 receipt", i, a)
			}
		default:
			t.Fatalf("round %d: the answered receipt was not handed to the acker", i)
		}
		if f.sending != 0 {
			t.Fatalf("round %d: sending %d after the answer, want 0", i, f.sending)
		}
	}
}

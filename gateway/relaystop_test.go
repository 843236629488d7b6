package gateway_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// heldRelay is a SubmitRelay whose one segment is answered when the test
// says so, or given up when its context ends.
type heldRelay struct {
	out     chan struct{} // closed when the segment is with the other node
	release chan struct{}
}

func (h *heldRelay) RelaySubmit(ctx context.Context, _ string, _ []byte) (uint32, string, error) {
	close(h.out)
	select {
	case <-h.release:
		return uint32(smpp.StatusOK), "relayed-1", nil
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
}

// A segment out through another node (cluster mode, no bind here) when
// the gateway stops is still answered and recorded: taken for unanswered,
// it would be sent again after the restart.
func TestStopWaitsForRelayedSegment(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := l.Addr().String()
	_ = l.Close() // no bind of our own ever comes up
	relay := &heldRelay{out: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOpts{
		upstream: func(u *gateway.UpstreamConfig) { u.Addr = nowhere },
		gwcfg:    func(c *gateway.Config) { c.SubmitRelay = relay },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.submit(ctx, submitSM("1069", "13800138000", "relayed at the stop")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-relay.out:
	case <-ctx.Done():
		t.Fatal("the segment never went to the other node")
	}
	stopped := make(chan struct{})
	go func() {
		r.gw.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("the gateway stopped with a segment out at another node")
	case <-time.After(300 * time.Millisecond): // it waits: long enough to see it
	}
	close(relay.release)
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the gateway did not stop once the segment was answered")
	}
	if c := r.store.Counts(); c[queue.StateSubmitted] != 1 || c[queue.StateAccepted] != 0 {
		t.Fatalf("after the stop: %d submitted, %d still due; want the segment recorded as submitted", c[queue.StateSubmitted], c[queue.StateAccepted])
	}
}

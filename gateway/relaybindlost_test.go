package gateway_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// lostThenOKRelay is a SubmitRelay whose peer passes on its SMSC's
// ESME_RINVBNDSTS for the first segment (as a peer of an earlier release
// does when the SMSC lost its bind), then takes every segment.
type lostThenOKRelay struct{ calls atomic.Int64 }

func (r *lostThenOKRelay) RelaySubmit(context.Context, string, []byte) (uint32, string, error) {
	if r.calls.Add(1) == 1 {
		return uint32(smpp.StatusInvalidBindStatus), "", nil
	}
	return uint32(smpp.StatusOK), "relayed-2", nil
}

// A relayed segment answered ESME_RINVBNDSTS (the other node's SMSC lost
// its bind) is tried again and submitted, not rejected: the status says
// the bind was lost, nothing about the message.
func TestRelayedBindLostIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := l.Addr().String()
	_ = l.Close() // no bind of our own ever comes up: every segment is relayed
	relay := &lostThenOKRelay{}
	r := newRig(t, rigOpts{
		upstream: func(u *gateway.UpstreamConfig) { u.Addr = nowhere },
		gwcfg:    func(c *gateway.Config) { c.SubmitRelay = relay; c.RetryMin = 10 * time.Millisecond },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.submit(ctx, submitSM("1069", "13800138000", "relayed to a lost bind")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the segment submitted or rejected", func() bool {
		c := r.store.Counts()
		return c[queue.StateSubmitted]+c[queue.StateRejected] == 1
	})
	if c := r.store.Counts(); c[queue.StateSubmitted] != 1 {
		t.Fatalf("%d submitted, %d rejected after the peer's ESME_RINVBNDSTS; want it submitted on a retry", c[queue.StateSubmitted], c[queue.StateRejected])
	}
	if n := relay.calls.Load(); n != 2 {
		t.Errorf("relayed %d times, want 2 (refused, then taken)", n)
	}
}

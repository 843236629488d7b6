package smpp_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// An SMSC that closes every connection at once: the client keeps trying,
// and each session's reader, which fails immediately, must not race with
// the session still starting its other loops (under -race this was a
// WaitGroup reused while its Wait ran). Run returns when its context ends.
func TestClientRetriesPeerThatHangsUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	c := smpp.NewClient(smpp.ClientOptions{Addr: l.Addr().String(), SystemID: "a", Password: "b",
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n := accepted.Load(); n < 10 {
		t.Errorf("%d attempts in 1s with a 2ms backoff cap", n)
	}
	if c.Up() {
		t.Error("client reports a bind up")
	}
}

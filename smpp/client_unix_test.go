//go:build unix

package smpp_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Between the connection's end and Run noticing it (its handlers are
// still draining), Submit waits without burning a core.
func TestClientSubmitWaitsQuietlyWhileConnEnds(t *testing.T) {
	l := listen(t)
	entered := make(chan *smpp.Conn, 1)
	release := make(chan struct{})
	up := newRecorder[bool]()
	c, _, _ := runClient(t, smpp.ClientOptions{
		Addr: l.Addr().String(), SystemID: "gw", OnState: up.add,
		Handler: smpp.HandlerFunc(func(_ context.Context, conn *smpp.Conn, _ pdu.Body) pdu.Body {
			entered <- conn
			<-release // e.g. a slow store
			return pdu.NewDeliverSMResp()
		}),
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, nc)
	bind := p.nextPDU()
	p.send(frame(pdu.BindTransceiverRespID, 0, bind.Header().Seq, cs("smsc")))
	up.waitN(t, "bind up", 1)
	p.send(frame(pdu.DeliverSMID, 0, 1, submitSMBody("13712345678", "10086", "MO", 0)))
	conn := recvWithin(t, "handler", entered)
	_ = nc.Close() // the SMSC goes away while the handler runs
	waitDone(t, "client conn to end", conn.Context().Done())
	if got := up.all(); len(got) != 1 {
		t.Fatalf("bind state changes %v: Run noticed the end before the handler returned", got)
	}
	if c.Up() {
		t.Fatal("Up with its connection ended: callers would pick a bind that cannot send")
	}

	const wait = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	before := cpuTime(t)
	_, err = c.Submit(ctx, newSubmitSM("1", "2", "x", 0))
	used := cpuTime(t) - before
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit = %v", err)
	}
	if used > wait/3 {
		t.Fatalf("Submit used %s of CPU waiting %s: busy loop", used, wait)
	}
	t.Logf("Submit used %s of CPU in %s", used, wait)
}

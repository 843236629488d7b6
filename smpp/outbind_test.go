package smpp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// acceptOne accepts one connection on l within the test's deadline.
func acceptOne(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type res struct {
		nc  net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { nc, err := l.Accept(); ch <- res{nc, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.nc
	case <-testCtx(t).Done():
		t.Fatal("no connection")
		return nil
	}
}

// smscDialed is a listener of the ESME's and the SMSC's connection to it,
// both closed at the test's end.
func smscDialed(t *testing.T) (net.Listener, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	smsc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smsc.Close() })
	return l, smsc
}

// An SMSC with a receipt for an ESME connects to it and sends outbind;
// AcceptOutbind checks the SMSC's password, binds as a receiver on the
// same connection, and the receipt of a message sent on a transmitter
// arrives there.
func TestAcceptOutbind(t *testing.T) {
	sim, addr := startSim(t, smpp.SimOptions{SystemID: "gw", Password: "gwpw", DLRDelay: 10 * time.Millisecond, NoTransceiver: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := sim.Outbind(testCtx(t), l.Addr().String(), "smsc", "smscpw"); err != nil {
		t.Fatal(err)
	}
	got := newRecorder[pdu.Body]()
	conn, err := smpp.AcceptOutbind(testCtx(t), acceptOne(t, l), smpp.OutbindOptions{
		SMSCSystemID: "smsc", SMSCPassword: "smscpw", SystemID: "gw", Password: "gwpw",
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			got.add(p)
			return pdu.NewDeliverSMResp()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if now, _ := sim.BindsOfKind("gw", smpp.BindReceiver); now != 1 {
		t.Fatalf("the SMSC has %d receivers of gw after the outbind, want 1", now)
	}
	tx := dialESME(t, addr, "gw", "gwpw", smpp.BindTransmitter)
	id := tx.submit(t, "its receipt comes by outbind", 1)
	r, err := smpp.ParseReceipt(got.waitN(t, "the receipt", 1)[0])
	if err != nil || r.ID != id {
		t.Fatalf("receipt %+v (%v), want id %s", r, err, id)
	}
	if err := conn.Unbind(testCtx(t)); err != nil {
		t.Errorf("unbind: %v", err)
	}
}

// An outbind with the wrong password or system_id, a first PDU that is
// not an outbind, or nothing at all: the connection is closed unanswered
// and no bind is sent.
func TestAcceptOutbindRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		send    []byte
		refused bool // ErrOutbindRefused, else a read error
	}{
		{"wrong password", frame(smpp.OutbindID, 0, 1, cs("smsc"), cs("guess")), true},
		{"wrong system_id", frame(smpp.OutbindID, 0, 1, cs("other"), cs("smscpw")), true},
		{"a bind first", frame(pdu.BindTransmitterID, 0, 1, cs("smsc"), cs("smscpw"), cs(""), []byte{0x34, 0, 0}, cs("")), true},
		{"silence", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, smsc := smscDialed(t)
			if tc.send != nil {
				if _, err := smsc.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			_, err := smpp.AcceptOutbind(testCtx(t), acceptOne(t, l), smpp.OutbindOptions{
				SMSCSystemID: "smsc", SMSCPassword: "smscpw", SystemID: "gw", Password: "gwpw", Timeout: 200 * time.Millisecond,
			})
			if err == nil || errors.Is(err, smpp.ErrOutbindRefused) != tc.refused {
				t.Fatalf("AcceptOutbind: %v, want refused %v", err, tc.refused)
			}
			// Closed without a word: the SMSC reads EOF, no bind_receiver.
			_ = smsc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := smsc.Read(make([]byte, 64)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("the SMSC read %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// Without a password configured every outbind is refused, its own
// password empty too.
func TestAcceptOutbindNeedsPassword(t *testing.T) {
	l, smsc := smscDialed(t)
	if _, err := smsc.Write(frame(smpp.OutbindID, 0, 1, cs("smsc"), cs(""))); err != nil {
		t.Fatal(err)
	}
	if _, err := smpp.AcceptOutbind(testCtx(t), acceptOne(t, l), smpp.OutbindOptions{SystemID: "gw"}); !errors.Is(err, smpp.ErrOutbindRefused) {
		t.Fatalf("AcceptOutbind without a password: %v, want refused", err)
	}
}

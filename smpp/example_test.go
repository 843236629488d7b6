package smpp_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"

	"github.com/qxtd/qxtd/smpp"
)

// echoSession answers every submit_sm with a fixed message id.
type echoSession struct{}

func (echoSession) Handle(_ context.Context, p pdu.Body) (pdu.Body, error) {
	if p.Header().ID != pdu.SubmitSMID {
		return nil, smpp.StatusInvalidCommandID
	}
	resp := pdu.NewSubmitSMResp()
	_ = resp.Fields().Set(pdufield.MessageID, "42")
	return resp, nil
}

func (echoSession) Close() {}

// A Server accepts binds on a listener and hands each bound peer to the
// Session its Backend returns; a pdu.Status error from Bind refuses it.
// Dial binds as an ESME would.
func ExampleServer() {
	backend := smpp.BackendFunc(func(_ context.Context, req smpp.BindRequest) (smpp.Session, error) {
		if req.SystemID != "demo" || req.Password != "secret" {
			return nil, smpp.StatusBindFailed
		}
		return echoSession{}, nil
	})
	srv := smpp.NewServer(backend, smpp.ServerOptions{SystemID: "example"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: l.Addr().String(), SystemID: "demo", Password: "wrong"}); err != nil {
		fmt.Println("wrong password refused")
	}
	conn, err := smpp.Dial(ctx, smpp.ClientOptions{Addr: l.Addr().String(), SystemID: "demo", Password: "secret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	sm := pdu.NewSubmitSM(nil)
	f := sm.Fields()
	_ = f.Set(pdufield.DestinationAddr, "13800138000")
	_ = f.Set(pdufield.ShortMessage, pdutext.Raw("hello"))
	resp, err := conn.Request(ctx, sm)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("message_id:", smpp.Str(resp, pdufield.MessageID))
	if err := conn.Unbind(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// wrong password refused
	// message_id: 42
}

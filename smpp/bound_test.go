package smpp_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// boundSession sends a deliver_sm as soon as it is told it is bound, and
// returns from Bound only once that request is queued on the connection:
// whatever Bound sends is queued behind the bind_resp or ahead of it,
// never in a race.
type boundSession struct {
	recSession
	conn   *smpp.Conn
	bounds atomic.Int32
}

func (s *boundSession) Bound() {
	s.bounds.Add(1)
	queued := make(chan struct{})
	s.conn.AfterSend(func() { close(queued) })
	go func() { _, _ = s.conn.Request(context.Background(), pdu.NewDeliverSM()) }()
	<-queued
}

// TestBoundAfterBindResp: a session's Bound runs once its bind_resp is
// queued, so what it sends reaches the peer after the bind_resp (a
// forwarder of receipts started in Bind raced it, and a client waiting for
// its bind_resp dropped the deliver_sm that won); it runs once; a refused
// bind makes no session and tells none.
func TestBoundAfterBindResp(t *testing.T) {
	made := newRecorder[*boundSession]()
	b := smpp.BackendFunc(func(ctx context.Context, req smpp.BindRequest) (smpp.Session, error) {
		if req.Password != "secret" {
			return nil, smpp.StatusInvalidPassword
		}
		s := &boundSession{recSession: recSession{req: req, handled: newRecorder[pdu.Body](), closed: make(chan struct{})}, conn: req.Conn}
		made.add(s)
		return s, nil
	})
	_, addr := startServer(t, b, smpp.ServerOptions{})
	for _, id := range bindIDs {
		p := dialPeer(t, addr)
		p.bind(id, "ent1", "wrong", 1, smpp.StatusInvalidPassword)
		p.bind(id, "ent1", "secret", 2, smpp.StatusOK) // bind expects the bind_resp first
		if h, _ := p.next(); h.ID != pdu.DeliverSMID {
			t.Fatalf("%s: after the bind_resp came %s, want the session's deliver_sm", id, h.ID)
		}
		p.bind(id, "ent1", "secret", 3, smpp.StatusAlreadyBound)
	}
	all := made.waitN(t, "sessions", len(bindIDs))
	for i, s := range all {
		if n := s.bounds.Load(); n != 1 {
			t.Errorf("session %d: Bound ran %d times, want 1", i, n)
		}
	}
}

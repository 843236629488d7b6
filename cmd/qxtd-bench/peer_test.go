package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// A receipt the ESME never acknowledged is held when its connection
// ends and sent again on the next receiver or transceiver bind (not to a
// transmitter); once acknowledged it is not sent again.
func TestPeerHoldsUnacknowledgedReceipts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := startTestPeer(t, ctx, time.Millisecond)

	// next reads PDUs until one of id comes.
	next := func(c *conn, id pdu.ID) (pdu.Body, *pdu.Header) {
		t.Helper()
		for {
			p, h, err := c.read()
			if err != nil {
				t.Fatalf("waiting for %s: %v", id, err)
			}
			if h.ID == id && p != nil {
				return p, h
			}
		}
	}
	dial := func(b pdu.Body, respID pdu.ID) (*conn, context.CancelFunc) {
		t.Helper()
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", peer.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		cctx, ccancel := context.WithCancel(ctx)
		c := newConn(cctx, nc)
		b.Header().Seq = 1
		_ = b.Fields().Set(pdufield.SystemID, "esme")
		if err := c.send(ctx, b); err != nil {
			t.Fatal(err)
		}
		next(c, respID)
		return c, ccancel
	}
	receiptOf := func(p pdu.Body) string {
		if f := p.TLVFields()[pdutlv.TagReceiptedMessageID]; f != nil {
			return strings.TrimRight(string(f.Bytes()), "\x00")
		}
		return ""
	}

	c1, close1 := dial(pdu.NewBindTransceiver(), pdu.BindTransceiverRespID)
	sm := pdu.NewSubmitSM(nil)
	sm.Header().Seq = 2
	_ = sm.Fields().Set(pdufield.DestinationAddr, "13700000000")
	_ = sm.Fields().Set(pdufield.RegisteredDelivery, uint8(1))
	_ = sm.Fields().Set(pdufield.ShortMessage, "hello")
	if err := c1.send(ctx, sm); err != nil {
		t.Fatal(err)
	}
	resp, _ := next(c1, pdu.SubmitSMRespID)
	id := str(resp, pdufield.MessageID)
	if d, _ := next(c1, pdu.DeliverSMID); receiptOf(d) != id {
		t.Fatalf("receipt for %q, want %q", receiptOf(d), id)
	}
	close1() // without deliver_sm_resp
	deadline := time.Now().Add(10 * time.Second)
	waitEnded := func(n int64) {
		t.Helper()
		for peer.Ended.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections ended at the peer, want %d", peer.Ended.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitEnded(1)
	if n := peer.ReceiptsHeld.Load(); n != 1 {
		t.Fatalf("%d receipts held after the connection closed, want 1", n)
	}

	// A transmitter bind gets no receipts: the transceiver after it does.
	_, closeTx := dial(pdu.NewBindTransmitter(), pdu.BindTransmitterRespID)
	defer closeTx()
	c2, close2 := dial(pdu.NewBindTransceiver(), pdu.BindTransceiverRespID)
	defer close2()
	d, h := next(c2, pdu.DeliverSMID)
	if got := receiptOf(d); got != id {
		t.Fatalf("held receipt for %q, want %q", got, id)
	}
	ack := pdu.NewDeliverSMResp()
	ack.Header().Seq = h.Seq
	if err := c2.send(ctx, ack); err != nil {
		t.Fatal(err)
	}
	// Acknowledged: the connection's end holds nothing more.
	el := pdu.NewEnquireLink() // answered after the deliver_sm_resp was read
	el.Header().Seq = 2
	if err := c2.send(ctx, el); err != nil {
		t.Fatal(err)
	}
	next(c2, pdu.EnquireLinkRespID)
	close2()
	waitEnded(2)
	if n, acked := peer.ReceiptsHeld.Load(), peer.ReceiptsAcked.Load(); n != 1 || acked != 1 {
		t.Errorf("%d receipts held in all (want 1), %d acknowledged (want 1)", n, acked)
	}
}

// startTestPeer starts a peer (receipts after dlrDelay) that stops, and
// is waited for, at the test's end.
func startTestPeer(t *testing.T, ctx context.Context, dlrDelay time.Duration) *Peer {
	t.Helper()
	pctx, stop := context.WithCancel(ctx)
	peer, err := StartPeer(pctx, "127.0.0.1:0", dlrDelay)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); peer.Wait() })
	return peer
}

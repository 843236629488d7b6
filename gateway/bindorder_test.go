package gateway_test

import (
	"bufio"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/smpp"
)

// TestBindRespBeforeReceipts binds receivers, with receipts waiting for
// the account, from a raw client, and checks that each gets its
// bind_receiver_resp first and the waiting receipts right after it: the
// gateway starts forwarding once the bind_resp is queued
// (esmeSession.Bound). Forwarding from Bind itself raced the bind_resp,
// and a client waiting for its bind_resp drops what comes first (the
// crash test's client did: a window of receipts went unanswered and the
// account's receipts stopped for their 30 s timeout). That race is lost
// too seldom here to be caught every run; smpp's TestBoundAfterBindResp
// holds the ordering itself. The client never answers a receipt, so they
// stay pending for the next bind.
func TestBindRespBeforeReceipts(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	r.pendingReceipts(t, 5)
	for i := range 10 {
		first, second := rawReceiverBind(t, r.addr)
		if first != pdu.BindReceiverRespID {
			t.Fatalf("bind %d: the first PDU was %v, before the bind_receiver_resp", i, first)
		}
		if second != pdu.DeliverSMID {
			t.Fatalf("bind %d: after the bind_resp came %v, want the pending receipts (deliver_sm)", i, second)
		}
	}
}

// rawReceiverBind binds as a receiver on a new connection and returns the
// command ids of the first two PDUs it reads; it answers nothing and
// closes.
func rawReceiverBind(t *testing.T, addr string) (first, second pdu.ID) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	b := pdu.NewBindReceiver()
	b.Header().Seq = 1
	_ = b.Fields().Set(pdufield.SystemID, "esme")
	_ = b.Fields().Set(pdufield.Password, "pw")
	_ = b.Fields().Set(pdufield.InterfaceVersion, uint8(0x34))
	w := bufio.NewWriter(nc)
	if err := b.SerializeTo(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	var ids [2]pdu.ID
	for k := range ids {
		f, err := smpp.ReadFrame(br)
		if err != nil {
			t.Fatalf("read PDU %d: %v", k+1, err)
		}
		ids[k] = pdu.ID(binary.BigEndian.Uint32(f[4:8]))
	}
	return ids[0], ids[1]
}

package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestReceiverBindMayNotSend: SMPP 3.4 §2.3 (Table 2-1) allows submit_sm,
// submit_multi, query_sm, cancel_sm and replace_sm in bound_tx and
// bound_trx only: from a receiver each is answered with its own response
// PDU and ESME_RINVBNDSTS, and changes nothing (the scheduled message a
// receiver tried to cancel and replace is still there, as it was, for
// the transmitter to query and cancel). data_sm: TestDataSM.
func TestReceiverBindMayNotSend(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	tx, err := r.bind("esme", "pw", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := r.bind("esme", "pw", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	p := submitSM("1069", "13800138001", "scheduled")
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000001000000000R") // in a day
	id, err := tx.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}

	query := func() pdu.Body {
		q := pdu.NewQuerySM()
		_ = q.Fields().Set(pdufield.MessageID, id)
		return q
	}
	cancelSM := func() pdu.Body {
		c := smpp.NewPDU(smpp.CancelSMID)
		_ = c.Fields().Set(pdufield.MessageID, id)
		return c
	}
	replace := smpp.NewPDU(smpp.ReplaceSMID)
	_ = replace.Fields().Set(pdufield.MessageID, id)
	_ = replace.Fields().Set(pdufield.ShortMessage, []byte("replaced by a receiver"))
	multi := smpp.NewSubmitMulti(smpp.DestList{{TON: 1, NPI: 1, Addr: "13800138002"}})
	_ = multi.Fields().Set(pdufield.ShortMessage, []byte("to many"))
	for _, tc := range []struct {
		name string
		req  pdu.Body
		resp pdu.ID
	}{
		{"submit_sm", submitSM("1069", "13800138003", "x"), pdu.SubmitSMRespID},
		{"submit_multi", multi, pdu.SubmitMultiRespID},
		{"query_sm", query(), pdu.QuerySMRespID},
		{"cancel_sm", cancelSM(), smpp.CancelSMRespID},
		{"replace_sm", replace, smpp.ReplaceSMRespID},
	} {
		resp, err := rx.conn.Request(ctx, tc.req)
		var st pdu.Status
		if !asStatus(err, &st) || st != smpp.StatusInvalidBindStatus {
			t.Errorf("%s on a receiver bind: %v, want ESME_RINVBNDSTS", tc.name, err)
			continue
		}
		if resp.Header().ID != tc.resp {
			t.Errorf("%s on a receiver bind answered with %s, want %s", tc.name, resp.Header().ID, tc.resp)
		}
	}

	resp, err := tx.conn.Request(ctx, query())
	if err != nil {
		t.Fatalf("query_sm from the transmitter: %v", err)
	}
	if st := smpp.Byte(resp, pdufield.MessageState); smpp.MessageState(st) != smpp.StateEnroute {
		t.Errorf("query_sm from the transmitter: message_state %d, want ENROUTE (still scheduled)", st)
	}
	id64, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.store.Get(id64)
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "【测试】scheduled" {
		t.Errorf("stored text %q: the receiver's replace_sm changed it", m.Text)
	}
	if _, err := tx.conn.Request(ctx, cancelSM()); err != nil {
		t.Errorf("cancel_sm from the transmitter: %v (the receiver's cancelled it?)", err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Errorf("the SMSC got %d messages, want none", n)
	}
}

// TestReceiptRefusedByESME: an ESME's deliver_sm_resp status for a
// receipt means what SMPP 3.4 §5.1.3 says. ESME_RX_T_APPN (temporary) has
// the receipt sent again; ESME_RX_P_APPN (permanent) and ESME_RX_R_APPN
// (rejected) end it: it is acknowledged in the store and not sent again,
// where it was sent every DLRRetry for ever.
func TestReceiptRefusedByESME(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status pdu.Status
		sends  int // deliver_sm of the receipt until it is acknowledged
	}{
		{"ESME_RX_T_APPN", smpp.StatusRxTApp, 2},
		{"ESME_RX_P_APPN", smpp.StatusRxPApp, 1},
		{"ESME_RX_R_APPN", smpp.StatusRxRApp, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
			var mu sync.Mutex
			sends := 0
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			conn := r.dialHandler(ctx, t, func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
				resp := pdu.NewDeliverSMResp()
				if _, err := smpp.ParseReceipt(p); err != nil {
					return resp
				}
				mu.Lock()
				sends++
				if sends == 1 {
					resp.Header().Status = tc.status // the first answer only
				}
				mu.Unlock()
				return resp
			})
			resp, err := conn.Request(ctx, submitSM("1069", "13800138001", "receipt refused"))
			if err != nil {
				t.Fatal(err)
			}
			id, err := strconv.ParseUint(smpp.Str(resp, pdufield.MessageID), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the receipt acknowledged in the store", func() bool {
				m, err := r.store.Get(id)
				if err != nil || !m.Final() {
					return false
				}
				pending, err := r.store.PendingDLRs("esme", 10, nil)
				return err == nil && len(pending) == 0
			})
			mu.Lock()
			got := sends
			mu.Unlock()
			if got != tc.sends {
				t.Fatalf("the receipt was sent %d times, want %d", got, tc.sends)
			}
		})
	}
}

// rawSMSC is a carrier SMSC written PDU by PDU: the test says what it
// sends and reads what qxtd's upstream bind answers.
type rawSMSC struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// acceptBind accepts qxtd's next connection on l and answers its
// bind_transceiver with ESME_ROK.
func acceptBind(t *testing.T, l net.Listener) *rawSMSC {
	t.Helper()
	type accepted struct {
		nc  net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		nc, err := l.Accept()
		ch <- accepted{nc, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("qxtd did not connect to the SMSC")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { _ = a.nc.Close() })
	s := &rawSMSC{t: t, nc: a.nc, r: bufio.NewReader(a.nc)}
	h, _ := s.next()
	if h.ID != pdu.BindTransceiverID {
		t.Fatalf("qxtd sent %s, want bind_transceiver", h.ID)
	}
	resp := pdu.NewBindTransceiverResp()
	_ = resp.Fields().Set(pdufield.SystemID, "rawsmsc")
	s.send(resp, h.Seq)
	return s
}

func (s *rawSMSC) send(p pdu.Body, seq uint32) {
	s.t.Helper()
	p.Header().Seq = seq
	var b bytes.Buffer
	if err := p.SerializeTo(&b); err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.nc.Write(b.Bytes()); err != nil {
		s.t.Fatalf("SMSC write: %v", err)
	}
}

// next reads qxtd's next PDU, failing the test after 10 s.
func (s *rawSMSC) next() (pdu.Header, []byte) {
	s.t.Helper()
	_ = s.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := smpp.ReadFrame(s.r)
	if err != nil {
		s.t.Fatalf("SMSC read: %v", err)
	}
	return pdu.Header{
		Len:    binary.BigEndian.Uint32(f[0:4]),
		ID:     pdu.ID(binary.BigEndian.Uint32(f[4:8])),
		Status: pdu.Status(binary.BigEndian.Uint32(f[8:12])),
		Seq:    binary.BigEndian.Uint32(f[12:16]),
	}, f
}

// TestUpstreamSMSCRequests: what an SMSC may send on qxtd's bind besides
// receipts and replies. alert_notification has no response PDU (SMPP 3.4
// §4.12): qxtd sends none, where it answered generic_nack. enquire_link is
// answered. An unbind from the SMSC is answered with unbind_resp, and qxtd
// binds again.
func TestUpstreamSMSCRequests(t *testing.T) {
	l := listen(t)
	t.Cleanup(func() { _ = l.Close() })
	newRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = l.Addr().String(), 1
	}})
	s := acceptBind(t, l)

	alert := smpp.NewPDU(smpp.AlertNotificationID)
	_ = alert.Fields().Set(pdufield.SourceAddr, "13800138001")
	_ = alert.Fields().Set(pdufield.AddressRange, "1069") // esme_addr
	_ = alert.TLVFields().Set(pdutlv.TagMsAvailabilityStatus, []byte{0})
	s.send(alert, 7)
	s.send(pdu.NewEnquireLink(), 8)
	// An unbind is answered once every request before it has been (the
	// alert too, had it an answer): all qxtd sends for the alert comes
	// before the unbind_resp.
	s.send(pdu.NewUnbind(), 9)
	var enquired bool
	for {
		h, _ := s.next()
		switch {
		case h.Seq == 7:
			t.Fatalf("qxtd answered alert_notification with %s status %#x; it has no response (§4.12)", h.ID, uint32(h.Status))
		case h.ID == pdu.EnquireLinkRespID && h.Seq == 8:
			enquired = true
			continue
		case h.ID == pdu.UnbindRespID && h.Seq == 9 && h.Status == 0:
		case h.ID&0x80000000 == 0:
			continue // a request of qxtd's own (its enquire_link)
		default:
			t.Fatalf("qxtd sent %s seq %d status %#x", h.ID, h.Seq, uint32(h.Status))
		}
		break
	}
	if !enquired {
		t.Fatal("enquire_link not answered before unbind_resp")
	}
	_ = s.nc.Close()
	acceptBind(t, l) // bound again
}

// TestReplyRefusedByESME: a reply (MO) the ESME refuses for good
// (ESME_RX_P_APPN, ESME_RX_R_APPN) is taken as answered and not sent
// again, and the enterprise's later replies go on; one refused for now
// (ESME_RX_T_APPN) is sent again. Before, the refused reply was sent
// every dlr_retry for ever, and the replies going one at a time in
// order, no later reply of the enterprise reached the ESME.
func TestReplyRefusedByESME(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status pdu.Status
		sends  int  // deliver_sm of the first reply
		marked bool // the inbox says it was refused
	}{
		{"ESME_RX_T_APPN", smpp.StatusRxTApp, 2, false},
		{"ESME_RX_P_APPN", smpp.StatusRxPApp, 1, true},
		{"ESME_RX_R_APPN", smpp.StatusRxRApp, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := twoWayRig(t, rigOpts{}) // DLRRetry 200 ms
			waitReady(t, r)
			var mu sync.Mutex
			sends := map[string]int{}
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			conn, err := smpp.Dial(ctx, smpp.ClientOptions{
				Addr: r.addr, SystemID: "bob", Password: "secret2", Kind: smpp.BindReceiver,
				Conn: smpp.ConnOptions{Window: 50, RespTimeout: 5 * time.Second},
				Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
					resp := pdu.NewDeliverSMResp()
					text := string(smpp.Bytes(p, pdufield.ShortMessage))
					mu.Lock()
					sends[text]++
					if text == "first" && sends[text] == 1 {
						resp.Header().Status = tc.status
					}
					mu.Unlock()
					return resp
				}),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			for _, text := range []string{"first", "second"} {
				if err := r.sim.InjectMO("13923412345", "106575002", text); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, "the second reply delivered and both acknowledged", func() bool {
				mu.Lock()
				second := sends["second"]
				mu.Unlock()
				pending, err := r.store.PendingMOs("E2", 10, nil)
				return second >= 1 && err == nil && len(pending) == 0
			})
			mu.Lock()
			got := sends["first"]
			mu.Unlock()
			if got != tc.sends {
				t.Fatalf("the first reply was sent %d times, want %d", got, tc.sends)
			}
			inbox, _, err := r.store.Inbox("E2", queue.InboxFilter{}, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range inbox {
				if want := tc.marked && m.Text == "first"; m.Refused != want || m.ForwardedAt.IsZero() {
					t.Errorf("inbox %q: refused %v, answered at %v; want refused %v, answered", m.Text, m.Refused, m.ForwardedAt, want)
				}
			}
		})
	}
}

// TestUpstreamAcknowledgementsNotReplies: a deliver_sm whose esm_class
// says it is an SME delivery or user acknowledgement, or an intermediate
// notification (§5.2.12), with no receipt qxtd can read, is answered and
// dropped: before, it was stored and forwarded as a reply from the
// handset. A plain reply beside them is still one.
func TestUpstreamAcknowledgementsNotReplies(t *testing.T) {
	l := listen(t)
	t.Cleanup(func() { _ = l.Close() })
	r, _ := twoWayRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = l.Addr().String(), 1
	}})
	s := acceptBind(t, l)
	deliver := func(esm uint8, text string) pdu.Body {
		p := pdu.NewDeliverSM()
		f := p.Fields()
		_ = f.Set(pdufield.SourceAddr, "13712345678")
		_ = f.Set(pdufield.DestinationAddr, "10657500112")
		_ = f.Set(pdufield.ESMClass, esm)
		_ = f.Set(pdufield.ShortMessage, []byte(text))
		return p
	}
	for i, esm := range []uint8{0x08, 0x10, 0x20, 0x00} {
		s.send(deliver(esm, "好的"), uint32(10+i))
	}
	for answered := 0; answered < 4; {
		h, _ := s.next()
		switch {
		case h.ID == pdu.DeliverSMRespID && h.Seq >= 10 && h.Seq < 14 && h.Status == 0:
			answered++
		case h.ID&0x80000000 == 0:
			// a request of qxtd's own (its enquire_link)
		default:
			t.Fatalf("qxtd sent %s seq %d status %#x", h.ID, h.Seq, uint32(h.Status))
		}
	}
	// The plain reply is stored before it is answered: by now, the
	// inbox has it and nothing else.
	mos, err := r.store.PendingMOs("E1", 10, nil)
	if err != nil || len(mos) != 1 {
		t.Fatalf("E1's replies: %d (%v), want the plain one only", len(mos), err)
	}
	if got := counters(t, r)["qxtd_dlrs_received_total,result=unreadable,state=unknown"]; got != 3 {
		t.Errorf("unreadable receipts counted %v, want 3", got)
	}
}

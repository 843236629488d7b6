package gateway_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// oddCase is one odd but legal behaviour of the node-smpp SMSC
// (testdata/nodesmpp/smsc_odd.js, its mode): texts the ESME bob sends,
// the receipt state each must end with, and what else to check.
type oddCase struct {
	mode   string
	texts  []string
	states []smpp.MessageState
	// err, when set, is the err: every receipt must carry.
	err string
	// upstream, when set, changes the upstream's settings.
	upstream func(*gateway.UpstreamConfig)
	// check runs once the receipts came, before qxtd stops.
	check func(t *testing.T, c *oddRun)
	// after checks the SMSC's lines, up to its "unbound".
	after func(t *testing.T, lines []string)
}

type oddRun struct {
	r      *rig
	e      *esme
	smsc   *script
	ids    []string
	counts func() map[string]int
	// lines are the SMSC's lines read so far.
	lines []string
}

// waitLines reads the SMSC's lines until n of them start with prefix.
func (c *oddRun) waitLines(prefix string, n int) {
	for countPrefix(c.lines, prefix) < n {
		c.lines = append(c.lines, c.smsc.next())
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestInteropNodeSMSCOdd: qxtd's upstream bound to a node-smpp SMSC that
// behaves in one of the odd ways SMPP 3.4 allows and real SMSCs show;
// each message ends as the README promises, its receipt reaching the ESME
// once with the state the SMSC gave.
func TestInteropNodeSMSCOdd(t *testing.T) {
	needNodeSMPP(t)
	one := []string{"hello odd SMSC"}
	delivered := []smpp.MessageState{smpp.StateDelivered}
	count := countPrefix
	cases := []oddCase{
		{
			// The SMSC's own enquire_link every 200 ms: each answered.
			mode: "enquire", texts: one, states: delivered,
			check: func(t *testing.T, c *oddRun) {
				c.waitLines("link_resp", 5)
				if n := count(c.lines, "link_resp 0x00000000"); n != count(c.lines, "link_resp") {
					t.Errorf("the SMSC's enquire_link answered: %q", c.lines)
				}
			},
		},
		{
			// ESME_RTHROTTLED, then ESME_RMSGQFUL, both without a body:
			// retried, taken at the third try, delivered.
			mode: "throttle", texts: one, states: delivered,
			after: func(t *testing.T, lines []string) {
				want := []string{"refused 0x00000058", "refused 0x00000014"}
				var got []string
				for _, l := range lines {
					if strings.HasPrefix(l, "refused") {
						got = append(got, l)
					}
				}
				if !slices.Equal(got, want) || count(lines, "submit ") != 1 {
					t.Errorf("the SMSC: %q, want %q and one message taken", lines, want)
				}
			},
		},
		{
			// ESME_RINVDSTADR without a body: rejected, not tried again, a
			// REJECTD receipt to the ESME.
			mode: "invdst", texts: one, states: []smpp.MessageState{smpp.StateRejected}, err: "0x0000000b",
			after: func(t *testing.T, lines []string) {
				if count(lines, "refused 0x0000000b") != 1 || count(lines, "submit ") != 0 {
					t.Errorf("the SMSC: %q, want one submit_sm refused", lines)
				}
			},
		},
		{
			// ESME_RTHROTTLED 20 times, past the tries held on the bind
			// (16): waits in the store, then goes, delivered.
			mode: "throttlemany", texts: one, states: delivered,
			after: func(t *testing.T, lines []string) {
				if count(lines, "refused 0x00000058") != 20 || count(lines, "submit ") != 1 {
					t.Errorf("the SMSC: %q, want 20 refusals and one message taken", lines)
				}
			},
		},
		{
			// A message in 3 segments, the second refused for good:
			// REJECTD to the ESME with that status, the two others
			// delivered and billed.
			mode: "partreject", texts: []string{strings.Repeat("分段发送测试", 25)}, states: []smpp.MessageState{smpp.StateRejected}, err: "0x0000000b",
			after: func(t *testing.T, lines []string) {
				if count(lines, "submit ") != 2 || count(lines, "refused 0x0000000b") != 1 {
					t.Errorf("the SMSC: %q, want 2 segments taken, one refused", lines)
				}
			},
		},
		{
			// generic_nack ESME_RSYSERR for a submit_sm: a temporary error,
			// tried again and delivered.
			mode: "nack", texts: one, states: delivered,
			after: func(t *testing.T, lines []string) {
				if count(lines, "refused 0x00000008") != 1 || count(lines, "submit ") != 1 {
					t.Errorf("the SMSC: %q, want one generic_nack and one message taken", lines)
				}
			},
		},
		{mode: "datasm", texts: one, states: delivered},
		{
			// The first submit_sm_resp after resp_timeout (within 4 x):
			// its id recorded, the segment not sent again, delivered.
			mode: "late", texts: []string{"first", "second"}, states: delivered,
			upstream: func(u *gateway.UpstreamConfig) { u.RespTimeout = 300 * time.Millisecond },
			after: func(t *testing.T, lines []string) {
				if n := count(lines, "submit "); n != 2 {
					t.Errorf("the SMSC: %q, want 2 messages taken, once each", lines)
				}
			},
		},
		// Responses out of order: each odd submit_sm answered after the
		// next one's.
		{
			mode: "reorder", texts: []string{"one", "two", "three", "four"}, states: delivered,
			after: func(t *testing.T, lines []string) {
				var sent, answered []string
				for _, l := range lines {
					switch f := strings.Fields(l); f[0] {
					case "submit":
						sent = append(sent, f[1])
					case "resp":
						answered = append(answered, f[1])
					}
				}
				if len(sent) != 4 || len(answered) != 4 || slices.Equal(sent, answered) {
					t.Errorf("the SMSC took %q and answered %q: want 4, answered out of order", sent, answered)
				}
			},
		},
		{mode: "idcase", texts: []string{"first", "second", "third"}, states: []smpp.MessageState{smpp.StateDelivered, smpp.StateDelivered, smpp.StateDelivered}},
		{
			// The SMSC's state and err: reach the ESME; nothing billed.
			mode:   "states",
			texts:  []string{"this one UNDELIV", "this one EXPIRED", "this one REJECTD"},
			states: []smpp.MessageState{smpp.StateUndeliverable, smpp.StateExpired, smpp.StateRejected}, err: "001",
		},
		{
			// A message in 3 segments, the second UNDELIV: UNDELIV to the
			// ESME, two segments billed.
			mode: "partfail", texts: []string{strings.Repeat("分段发送测试", 25)}, states: []smpp.MessageState{smpp.StateUndeliverable},
			after: func(t *testing.T, lines []string) {
				if count(lines, "submit ") != 3 || count(lines, "submit n703489 5") != 1 {
					t.Errorf("the SMSC: %q, want 3 segments, the second UNDELIV", lines)
				}
			},
		},
		{
			// Every receipt sent twice: the ESME gets each once. Both
			// copies stored (answered) before the ESME's count is read.
			mode: "dup", texts: []string{"first", "second"}, states: delivered,
			check: func(t *testing.T, c *oddRun) {
				c.waitLines("receipt_resp", 4)
				if n := count(c.lines, "receipt_resp 0x00000000"); n != 4 {
					t.Errorf("the SMSC: %q, want its 4 receipts answered OK", c.lines)
				}
			},
		},
		{
			// The receipt before its submit_sm_resp: kept, then matched.
			mode: "early", texts: one, states: delivered,
			after: func(t *testing.T, lines []string) {
				if n := count(lines, "receipt_resp 0x00000000"); n != 1 {
					t.Errorf("the SMSC: %q, want its early receipt answered OK", lines)
				}
			},
		},
		{
			// Both: the early receipt's id upper case without the
			// leading zeros of the submit_sm_resp's.
			mode: "early,idcase", texts: []string{"first", "second"}, states: delivered,
		},
		// A reply in message_payload, short_message empty.
		{mode: "payload", texts: one, states: delivered, check: wantReply("好的，payload 里的回复")},
		// A reply in two parts joined by SAR TLVs: one reply, whole.
		{mode: "sar", texts: one, states: delivered, check: wantReply("第一部分：长回复，第二部分，完。")},
		// A reply as data_sm.
		{mode: "datamo", texts: one, states: delivered, check: wantReply("好的，data_sm 里的回复")},
		// Receipts in the text only, whose text: copies the Chinese
		// original, so that node-smpp sends them in UCS-2.
		{mode: "textcopy", texts: one, states: delivered},
		{
			// ESME_RBINDFAIL at the first bind: bound at the next try.
			mode: "bindfail", texts: one, states: delivered,
			after: func(t *testing.T, lines []string) {
				if got := count(lines, "bound up 0x0000000d"); got != 1 || count(lines, "bound up 0x00000000") != 1 {
					t.Errorf("the SMSC: %q, want one bind refused, then one taken", lines)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			// Each case has its own SMSC process and rig, and mostly
			// waits for node to start.
			t.Parallel()
			testInteropNodeSMSCOdd(t, tc)
		})
	}
}

func testInteropNodeSMSCOdd(t *testing.T, tc oddCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	smsc := startScript(t, ctx, nodeSMPP, "node", "smsc_odd.js", "up", "uppw", tc.mode)
	port := smsc.listening()
	r, _ := twoWayRig(t, rigOpts{upstream: func(u *gateway.UpstreamConfig) {
		u.Addr, u.Binds = "127.0.0.1:"+port, 1
		if tc.upstream != nil {
			tc.upstream(u)
		}
	}})
	e, counts := bindCounting(t, r, "bob", "secret2")
	c := &oddRun{r: r, e: e, smsc: smsc, counts: counts}
	for _, text := range tc.texts {
		p := submitSM("106575002", "13712345678", text)
		if len(text) > 140 { // in UCS-2, in message_payload
			p = payloadSM(t, "13712345678", text)
			_ = p.Fields().Set(pdufield.SourceAddr, "106575002")
		}
		id, err := e.submit(ctx, p)
		if err != nil {
			t.Fatalf("submit %q: %v", text, err)
		}
		c.ids = append(c.ids, id)
	}
	got := e.waitReceipts(t, len(c.ids), 15*time.Second)
	enterprise := ""
	for i, id := range c.ids {
		want := tc.states[min(i, len(tc.states)-1)]
		if rc := got[id]; rc.State != want || tc.err != "" && rc.Err != tc.err {
			t.Errorf("%q: the ESME's receipt %s err:%s (%+v), want %s err:%s", tc.texts[i], rc.State.Stat(), rc.Err, rc, want.Stat(), tc.err)
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.store.Get(n)
		if err != nil {
			t.Fatal(err)
		}
		enterprise = m.Enterprise
		if st := m.State(); st != storeState(want) {
			t.Errorf("%q: stored as %s, want %s", tc.texts[i], st, storeState(want))
		}
	}
	if tc.check != nil {
		tc.check(t, c)
	}
	// Every receipt acknowledged: none is pending to be sent again, and
	// the ESME got each once.
	r.waitNoPendingDLRs(ctx, t, "bob")
	for id, n := range counts() {
		if n != 1 {
			t.Errorf("the ESME got the receipt of %s %d times, want once", id, n)
		}
	}
	reserved, charged := r.store.Usage(enterprise, queue.BillingMonth(time.Now()))
	r.stop() // qxtd unbinds: the SMSC ends
	for l := smsc.next(); l != "unbound"; l = smsc.next() {
		c.lines = append(c.lines, l)
	}
	if tc.after != nil {
		tc.after(t, c.lines)
	}
	// Billed: the segments the SMSC said it delivered, once each.
	var delivered int64
	for _, l := range c.lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "submit" && f[2] == "2" {
			delivered++
		}
	}
	if reserved != 0 || charged != delivered {
		t.Errorf("usage of %s: %d reserved, %d charged; want 0 and the %d segments delivered", enterprise, reserved, charged, delivered)
	}
	if err := smsc.wait(); err != nil {
		t.Errorf("the node-smpp SMSC: %v", err)
	}
}

// storeState is the message's final state in the store for a receipt
// state.
func storeState(s smpp.MessageState) queue.State {
	switch s {
	case smpp.StateDelivered:
		return queue.StateDelivered
	case smpp.StateUndeliverable:
		return queue.StateUndeliverable
	case smpp.StateExpired:
		return queue.StateExpired
	case smpp.StateRejected:
		return queue.StateRejected
	}
	return queue.StateUnknown
}

// bindCounting binds an ESME as rig.bind does and also counts how often
// each receipt reached it.
func bindCounting(t *testing.T, r *rig, systemID, password string) (*esme, func() map[string]int) {
	t.Helper()
	e := &esme{dlrs: make(map[string]smpp.Receipt), byRecipient: make(map[string]string), got: make(chan struct{}, 1)}
	n := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: r.addr, SystemID: systemID, Password: password, Kind: smpp.BindTransceiver,
		Conn: smpp.ConnOptions{Window: 50, RespTimeout: 5 * time.Second},
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			if p.Header().ID != pdu.DeliverSMID {
				return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
			}
			rc, err := smpp.ParseReceipt(p)
			e.mu.Lock()
			switch {
			case errors.Is(err, smpp.ErrNotReceipt):
				e.addMO(p.Header().Seq, smpp.SimMessage{Source: smpp.Str(p, pdufield.SourceAddr), Dest: smpp.Str(p, pdufield.DestinationAddr),
					DataCoding: smpp.Byte(p, pdufield.DataCoding), ESMClass: smpp.Byte(p, pdufield.ESMClass), ShortMessage: smpp.Bytes(p, pdufield.ShortMessage),
					TLVs: map[uint16][]byte{segment.TagMessagePayload: smpp.TLV(p, pdutlv.TagMessagePayload)}})
			case err == nil:
				e.dlrs[rc.ID] = rc
				n[rc.ID]++
			default:
				t.Errorf("a deliver_sm the ESME cannot read: %v", err)
			}
			e.mu.Unlock()
			select {
			case e.got <- struct{}{}:
			default:
			}
			return pdu.NewDeliverSMResp()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	return e, func() map[string]int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return maps.Clone(n)
	}
}

// wantReply checks that the ESME got one reply from the handset, text.
func wantReply(text string) func(t *testing.T, c *oddRun) {
	return func(t *testing.T, c *oddRun) {
		t.Helper()
		mos := c.e.waitMOs(t, 1)
		if mos[0].Source != "13712345678" || mos[0].Dest != "106575002" {
			t.Errorf("the reply came from %s to %s, want 13712345678 to 106575002", mos[0].Source, mos[0].Dest)
		}
		if got := moText(t, mos[0]); got != text {
			t.Errorf("the reply reached the ESME as %q, want %q", got, text)
		}
	}
}

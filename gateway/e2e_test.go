package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/text/encoding/unicode"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// rig is a whole gateway on loopback: simulator, store, gateway, SMPP
// server. Everything is real; only the carrier is the simulator.
type rig struct {
	t     testing.TB
	sim   *smpp.Simulator
	store *queue.Store
	gw    *gateway.Gateway
	srv   *smpp.Server
	addr  string
	reg   *prometheus.Registry
	// stop shuts the whole rig down and closes its file (a daemon
	// stopped; newRig on the same dbPath starts it again).
	stop func()
}

type rigOpts struct {
	sim      smpp.SimOptions
	accounts gateway.StaticAccounts
	// rules, when set, builds the real policy on the store's file
	// instead of StaticAccounts.
	rules func(t testing.TB, db *bbolt.DB) gateway.Policy
	// wrapRules, when set, wraps twoWayRig's real policy (fault hooks).
	wrapRules func(gateway.Rules) gateway.Policy
	upstream  func(*gateway.UpstreamConfig)
	gwcfg     func(*gateway.Config)
	// store, when set, changes the store's options (fault hooks).
	store func(*queue.Options)
	// dbPath, when set, is the state file (a restart opens it again).
	dbPath string
	// log, when set, receives the gateway's log.
	log *slog.Logger
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func newRig(t testing.TB, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, reg: prometheus.NewRegistry()}
	o.sim.Record = true
	if o.sim.SystemID == "" {
		o.sim.SystemID, o.sim.Password = "up", "uppw"
	}
	r.sim = smpp.NewSimulator(o.sim)
	sl := listen(t)
	go func() { _ = r.sim.Serve(sl) }()
	t.Cleanup(func() { _ = r.sim.Close() })

	var gwp struct {
		sync.Mutex
		g *gateway.Gateway
	}
	if o.dbPath == "" {
		o.dbPath = filepath.Join(t.TempDir(), "q.db")
	}
	db, err := queue.OpenDB(o.dbPath, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	sopt := queue.Options{
		OnDLRReady: func(a string, ready []*queue.Message, at queue.Snapshot) {
			gwp.Lock()
			g := gwp.g
			gwp.Unlock()
			g.OnDLRReady(a, ready, at)
		},
		OnCommit: func(d time.Duration, ops int) {
			gwp.Lock()
			g := gwp.g
			gwp.Unlock()
			if g != nil {
				g.ObserveCommit(d, ops)
			}
		},
	}
	if o.store != nil {
		o.store(&sopt)
	}
	r.store, err = queue.New(db, sopt)
	if err != nil {
		t.Fatal(err)
	}
	up := gateway.UpstreamConfig{
		Name: "sim", Addr: sl.Addr().String(), SystemID: o.sim.SystemID, Password: o.sim.Password,
		Binds: 2, Window: 20, RespTimeout: 2 * time.Second,
		Segment: segment.Options{Concat: segment.ConcatUDH8},
	}
	if o.upstream != nil {
		o.upstream(&up)
	}
	cfg := gateway.Config{
		Upstreams: []gateway.UpstreamConfig{up},
		RetryMin:  50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		DLRRetry: 200 * time.Millisecond,
	}
	if o.gwcfg != nil {
		o.gwcfg(&cfg)
	}
	if o.accounts == nil {
		o.accounts = gateway.StaticAccounts{"esme": {Password: "pw", Account: gateway.Account{Signature: "【测试】"}}}
	}
	var pol gateway.Policy = o.accounts
	if o.rules != nil {
		pol = o.rules(t, db)
	}
	r.gw, err = gateway.New(cfg, r.store, pol, r.reg, o.log)
	if err != nil {
		t.Fatal(err)
	}
	gwp.Lock()
	gwp.g = r.gw
	gwp.Unlock()
	r.gw.Start()
	r.srv = smpp.NewServer(r.gw, smpp.ServerOptions{Conn: smpp.ConnOptions{Window: 64, InboundWindow: 64}})
	l := listen(t)
	r.addr = l.Addr().String()
	go func() { _ = r.srv.Serve(l) }()
	r.stop = sync.OnceFunc(func() {
		_ = r.srv.Close()
		r.gw.Stop()
		if err := r.store.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		_ = r.store.Close()
		_ = db.Close()
		_ = r.sim.Close()
	})
	t.Cleanup(r.stop)
	return r
}

// esme is an SMPP client bound to the rig that records receipts.
type esme struct {
	conn *smpp.Conn
	mu   sync.Mutex
	dlrs map[string]smpp.Receipt
	// byRecipient maps each receipt's source_addr (the original
	// recipient) to the id it carried.
	byRecipient map[string]string
	got         chan struct{}
	// mos are the replies (deliver_sm without the receipt bit) received,
	// moSeqs their sequence numbers: the handlers run side by side, so
	// the order they were appended in is not the order on the wire
	// (waitMOs sorts by these).
	mos    []smpp.SimMessage
	moSeqs []uint32
}

// addMO records a reply that came with sequence number seq; e.mu held.
func (e *esme) addMO(seq uint32, m smpp.SimMessage) {
	e.mos = append(e.mos, m)
	e.moSeqs = append(e.moSeqs, seq)
}

// dialHandler binds the account esme as a transceiver whose deliver_sm
// go to h; the bind is closed at the test's end.
func (r *rig) dialHandler(ctx context.Context, t *testing.T, h smpp.HandlerFunc) *smpp.Conn {
	t.Helper()
	return r.dialAs(ctx, t, "esme", "pw", smpp.BindTransceiver, 50, h)
}

// dialAs binds systemID as kind with a window of window requests, its
// deliver_sm going to h; the bind is closed at the test's end.
func (r *rig) dialAs(ctx context.Context, t *testing.T, systemID, password string, kind smpp.BindKind, window int, h smpp.HandlerFunc) *smpp.Conn {
	t.Helper()
	conn, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: r.addr, SystemID: systemID, Password: password, Kind: kind,
		Conn:    smpp.ConnOptions{Window: window, RespTimeout: 5 * time.Second},
		Handler: h,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (r *rig) bind(systemID, password string, kind smpp.BindKind) (*esme, error) {
	e := &esme{dlrs: make(map[string]smpp.Receipt), byRecipient: make(map[string]string), got: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: r.addr, SystemID: systemID, Password: password, Kind: kind,
		Conn: smpp.ConnOptions{Window: 50, RespTimeout: 5 * time.Second},
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			if p.Header().ID != pdu.DeliverSMID {
				return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
			}
			rc, err := smpp.ParseReceipt(p)
			if errors.Is(err, smpp.ErrNotReceipt) {
				tlvs := map[uint16][]byte{segment.TagMessagePayload: smpp.TLV(p, pdutlv.TagMessagePayload)}
				for _, tag := range []pdutlv.Tag{pdutlv.TagSourcePort, pdutlv.TagDestinationPort} {
					if v := smpp.TLV(p, tag); v != nil {
						tlvs[uint16(tag)] = v
					}
				}
				e.mu.Lock()
				e.addMO(p.Header().Seq, smpp.SimMessage{Source: smpp.Str(p, pdufield.SourceAddr), Dest: smpp.Str(p, pdufield.DestinationAddr),
					DataCoding: smpp.Byte(p, pdufield.DataCoding), ESMClass: smpp.Byte(p, pdufield.ESMClass), ShortMessage: smpp.UserData(p), // its UDH first
					TLVs: tlvs})
				e.mu.Unlock()
				select {
				case e.got <- struct{}{}:
				default:
				}
			}
			if err == nil {
				e.mu.Lock()
				e.dlrs[rc.ID] = rc
				e.byRecipient[smpp.Str(p, pdufield.SourceAddr)] = rc.ID
				e.mu.Unlock()
				select {
				case e.got <- struct{}{}:
				default:
				}
			}
			return pdu.NewDeliverSMResp()
		}),
	})
	if err != nil {
		return nil, err
	}
	e.conn = conn
	r.t.Cleanup(func() { _ = conn.Close() })
	return e, nil
}

func (e *esme) receipts() map[string]smpp.Receipt {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]smpp.Receipt, len(e.dlrs))
	for k, v := range e.dlrs {
		out[k] = v
	}
	return out
}

// waitReceipts waits until n receipts arrived or the deadline passes.
func (e *esme) waitReceipts(t *testing.T, n int, d time.Duration) map[string]smpp.Receipt {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		got := e.receipts()
		if len(got) >= n {
			return got
		}
		select {
		case <-e.got:
		case <-deadline.C:
			t.Fatalf("got %d receipts, want %d", len(got), n)
		}
	}
}

func submitSM(src, dst, text string) pdu.Body {
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddr, src)
	_ = f.Set(pdufield.DestinationAddr, dst)
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.DataCoding, uint8(0))
	_ = f.Set(pdufield.ShortMessage, []byte(text))
	return p
}

// payloadSM is a submit_sm carrying text in UCS-2 in message_payload, as
// clients send long text they do not split themselves.
func payloadSM(t testing.TB, dst, text string) pdu.Body {
	t.Helper()
	ucs2, err := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := submitSM("1069", dst, "")
	_ = p.Fields().Set(pdufield.DataCoding, uint8(0x08))
	_ = p.Fields().Set(pdufield.ShortMessage, []byte{})
	_ = p.TLVFields().Set(pdutlv.TagMessagePayload, ucs2)
	return p
}

func (e *esme) submit(ctx context.Context, p pdu.Body) (string, error) {
	resp, err := e.conn.Request(ctx, p)
	if err != nil {
		return "", err
	}
	return smpp.Str(resp, pdufield.MessageID), nil
}

// The simulator gives decimal ids in its receipts: with receipt_ids
// auto each is matched by conversion, and the gateway says once which
// receipt_ids to set.
func TestEndToEndWindowedSubmitAndReceipts(t *testing.T) {
	var logs lockedBuffer
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, ReceiptDecimal: true},
		log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	ids := submitN(t, e, n, "1380000")
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("message id %q empty or repeated", id)
		}
		seen[id] = true
	}
	got := e.waitReceipts(t, n, 30*time.Second)
	for _, id := range ids {
		rc, ok := got[id]
		if !ok {
			t.Fatalf("no receipt for %s", id)
		}
		if rc.State != smpp.StateDelivered {
			t.Errorf("receipt %s: state %s", id, rc.State.Stat())
		}
	}
	// The simulator got each message exactly once, signed.
	recv := r.sim.Received()
	if len(recv) != n {
		t.Fatalf("simulator received %d submit_sm, want %d", len(recv), n)
	}
	perDest := map[string]int{}
	for _, m := range recv {
		perDest[m.Dest]++
		if want := "【测试】hello "; len(m.ShortMessage) == 0 {
			t.Fatalf("empty short_message, want prefix %q", want)
		}
	}
	for d, c := range perDest {
		if c != 1 {
			t.Errorf("destination %s received %d times", d, c)
		}
	}
	if got := counters(t, r)["qxtd_dlrs_converted_total,result=matched"]; got != n {
		t.Errorf("qxtd_dlrs_converted_total{result=matched} %v, want %d", got, n)
	}
	if l := logs.String(); strings.Count(l, `"receipt_ids":"decimal"`) != 1 {
		t.Errorf("want one warning suggesting receipt_ids decimal, log:\n%s", l)
	}
}

// TestReceiptIDsDecimal: an SMSC that answers submit_sm in hex and gives
// the ids in decimal in its receipts, named as such (receipt_ids:
// decimal): each receipt is converted as it comes and matched at once,
// not after the resp_timeout (20 s here) that auto waits.
func TestReceiptIDsDecimal(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, ReceiptDecimal: true},
		upstream: func(u *gateway.UpstreamConfig) {
			u.RespTimeout = 20 * time.Second
			u.ReceiptIDs = gateway.ReceiptIDsDecimal
		}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	ids := submitN(t, e, n, "1380000")
	got := e.waitReceipts(t, n, 10*time.Second)
	for _, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Fatalf("receipt for %s: %+v, %v", id, rc, ok)
		}
	}
	if n := r.store.Counts()[queue.StateSubmitted]; n != 0 {
		t.Errorf("%d parts still submitted", n)
	}
}

func TestBindRefusedWithWrongPassword(t *testing.T) {
	r := newRig(t, rigOpts{})
	_, err := r.bind("esme", "wrong", smpp.BindTransmitter)
	if err == nil {
		t.Fatal("bind with a wrong password succeeded")
	}
	var st pdu.Status
	if !asStatus(err, &st) || st != smpp.StatusBindFailed {
		t.Fatalf("bind error %v, want ESME_RBINDFAIL", err)
	}
}

func asStatus(err error, st *pdu.Status) bool {
	for err != nil {
		if s, ok := err.(pdu.Status); ok {
			*st = s
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestReceiptsWaitForReceiverBind(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	ids := r.pendingReceipts(t, 5)
	rx, err := r.bind("esme", "pw", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	got := rx.waitReceipts(t, 5, 10*time.Second)
	for _, id := range ids {
		if _, ok := got[id]; !ok {
			t.Errorf("no receipt for %s", id)
		}
	}
}

// pendingReceipts submits n messages from a transmitter of "esme" (no
// receiver bound) and waits until the store holds their final receipts
// for the account; it returns their message ids.
func (r *rig) pendingReceipts(t *testing.T, n int) []string {
	t.Helper()
	tx, err := r.bind("esme", "pw", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for i := range n {
		id, err := tx.submit(ctx, submitSM("1069", fmt.Sprintf("139000%05d", i), "wait for me"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for {
		msgs, err := r.store.PendingDLRs("esme", n+1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == n {
			return ids
		}
		if ctx.Err() != nil {
			t.Fatalf("%d receipts pending, want %d", len(msgs), n)
		}
		waitABit(ctx)
	}
}

// waitABit yields for a poll interval; used only where the event has no
// signal of its own (a store scan), always inside a deadline loop.
func waitABit(ctx context.Context) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TestLongChineseSegmentsReassemble: a 100-character Chinese text with the
// enterprise signature reaches the SMSC as 2 UCS-2 segments (106 UTF-16
// units > 70, ≤ 134) sharing one reference, and a handset-style
// reassembly of what the SMSC got gives back exactly the signed text.
func TestLongChineseSegmentsReassemble(t *testing.T) {
	for _, concat := range []segment.Concat{segment.ConcatUDH8, segment.ConcatUDH16, segment.ConcatSAR} {
		t.Run(concat.String(), func(t *testing.T) {
			r := newRig(t, rigOpts{
				sim:      smpp.SimOptions{DLRDelay: time.Millisecond},
				upstream: func(u *gateway.UpstreamConfig) { u.Segment.Concat = concat },
			})
			e, err := r.bind("esme", "pw", smpp.BindTransceiver)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Repeat("企业短信测试内容十字", 10) // 100 characters
			p := payloadSM(t, "13800138000", text)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id, err := e.submit(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			rc := e.waitReceipts(t, 1, 10*time.Second)[id]
			if rc.State != smpp.StateDelivered {
				t.Fatalf("receipt %+v", rc)
			}
			recv := r.sim.Received()
			if len(recv) != 2 {
				t.Fatalf("simulator got %d segments, want 2", len(recv))
			}
			frames := make([]segment.Frame, len(recv))
			for i, m := range recv {
				frames[i] = segment.Frame{ESMClass: m.ESMClass, DataCoding: m.DataCoding, ShortMessage: m.ShortMessage, TLVs: m.TLVs}
				if m.DataCoding != 0x08 {
					t.Errorf("segment %d data_coding %#x, want 0x08", i, m.DataCoding)
				}
			}
			got, err := segment.Reassemble(frames, segment.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if want := "【测试】" + text; got != want {
				t.Fatalf("reassembled %q\nwant        %q", got, want)
			}
			msgID, _ := strconv.ParseUint(id, 10, 64)
			m, err := r.store.Get(msgID)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Parts) != 2 {
				t.Fatalf("store bills %d segments, want 2", len(m.Parts))
			}
		})
	}
}

// TestScheduledSubmitSM: schedule_delivery_time (relative form) keeps the
// message in the store until it is due; then it goes out and its receipt
// comes back.
func TestScheduledSubmitSM(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := submitSM("1069", "13800138000", "later")
	_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000000001000R") // in 1 s
	start := time.Now()
	id, err := e.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.sim.Received()); n != 0 {
		t.Fatalf("scheduled message reached the SMSC at once (%d)", n)
	}
	if n, err := r.store.Waiting(time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("waiting segments %d (%v), want the scheduled one", n, err)
	}
	rc := e.waitReceipts(t, 1, 10*time.Second)[id]
	if rc.State != smpp.StateDelivered {
		t.Fatalf("receipt %+v", rc)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("delivered after %v, before its schedule", waited)
	}
	// A malformed schedule is refused with ESME_RINVSCHED.
	bad := submitSM("1069", "13800138000", "x")
	_ = bad.Fields().Set(pdufield.ScheduleDeliveryTime, "not a time at all")
	_, err = e.submit(ctx, bad)
	var st pdu.Status
	if !asStatus(err, &st) || st != smpp.StatusInvalidSchedule {
		t.Fatalf("bad schedule: %v, want ESME_RINVSCHED", err)
	}
}

// TestReceiptRetriedUntilAcknowledged: an ESME that does not acknowledge
// a receipt (here: answers deliver_sm with an error) gets it again later;
// once acknowledged it leaves the store.
func TestReceiptRetriedUntilAcknowledged(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	var mu sync.Mutex
	attempts := 0
	acked := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn := r.dialHandler(ctx, t, func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			return smpp.ErrorResponse(p, smpp.StatusSystemError) // not acknowledged
		}
		if attempts == 2 {
			close(acked)
		}
		return pdu.NewDeliverSMResp()
	})
	if _, err := conn.Request(ctx, submitSM("1069", "13800138000", "retry me")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-acked:
	case <-ctx.Done():
		t.Fatalf("receipt not sent again after a failed deliver_sm (attempts %d)", attempts)
	}
	r.waitNoPendingDLRs(ctx, t, "esme")
}

// waitNoPendingDLRs waits until the store holds no receipt of account
// waiting for an acknowledgement, failing when ctx ends first.
func (r *rig) waitNoPendingDLRs(ctx context.Context, t *testing.T, account string) {
	t.Helper()
	for {
		msgs, err := r.store.PendingDLRs(account, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("acknowledged receipts still pending in the store")
		}
		waitABit(ctx)
	}
}

// TestReceiptsHandedOverExactlyOnce: receipts reach the ESME as the store
// hands them over at commit, and those it cannot take (its hand-over
// queue, four windows long, overflows here) are found by a scan of the
// store, not left for the periodic one: with DLRRetry a minute away every
// receipt still arrives within seconds, and each exactly once.
func TestReceiptsHandedOverExactlyOnce(t *testing.T) {
	r := newRig(t, rigOpts{
		sim: smpp.SimOptions{DLRDelay: time.Millisecond},
		gwcfg: func(c *gateway.Config) {
			c.DLRWindow = 2
			c.DLRRetry = time.Minute
		},
	})
	const n = 300
	var mu sync.Mutex
	count := map[string]int{}
	got := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := r.dialHandler(ctx, t, func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		rc, err := smpp.ParseReceipt(p)
		if err != nil {
			return smpp.ErrorResponse(p, smpp.StatusSystemError)
		}
		mu.Lock()
		count[rc.ID]++
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
		return pdu.NewDeliverSMResp()
	})
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := conn.Request(ctx, submitSM("1069", fmt.Sprintf("1390000%04d", i), "handed over"))
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			ids[i] = smpp.Str(resp, pdufield.MessageID)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for {
		mu.Lock()
		have := len(count)
		mu.Unlock()
		if have == n {
			break
		}
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("%d of %d receipts arrived", have, n)
		}
	}
	// Any duplicate would come within the acknowledgements' commit; wait
	// for the store to have none pending, then count.
	r.waitNoPendingDLRs(ctx, t, "esme")
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("receipt for %s arrived %d times", id, count[id])
		}
	}
}

// TestCancelAndReplaceSM: a scheduled message is replaced (new text, new
// time) with replace_sm and goes out with the new text; another is
// cancelled with cancel_sm, never reaches the SMSC and its receipt says
// DELETED; a message already sent cannot be cancelled.
func TestCancelAndReplaceSM(t *testing.T) {
	r := newRig(t, rigOpts{sim: smpp.SimOptions{DLRDelay: time.Millisecond}})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	scheduled := func(dst, text string) string {
		p := submitSM("1069", dst, text)
		_ = p.Fields().Set(pdufield.ScheduleDeliveryTime, "000000001000000R") // in 10 min
		id, err := e.submit(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	keep := scheduled("13800138001", "old text")
	drop := scheduled("13800138002", "never sent")

	rp := smpp.NewPDU(smpp.ReplaceSMID)
	_ = rp.Fields().Set(pdufield.MessageID, keep)
	_ = rp.Fields().Set(pdufield.ScheduleDeliveryTime, "000000000001000R") // in 1 s
	_ = rp.Fields().Set(pdufield.ShortMessage, []byte("new text"))
	if _, err := e.conn.Request(ctx, rp); err != nil {
		t.Fatalf("replace_sm: %v", err)
	}
	cp := smpp.NewPDU(smpp.CancelSMID)
	_ = cp.Fields().Set(pdufield.MessageID, drop)
	if _, err := e.conn.Request(ctx, cp); err != nil {
		t.Fatalf("cancel_sm: %v", err)
	}
	got := e.waitReceipts(t, 2, 10*time.Second)
	if got[keep].State != smpp.StateDelivered || got[drop].State != smpp.StateDeleted {
		t.Fatalf("receipts: replaced %s, cancelled %s", got[keep].State.Stat(), got[drop].State.Stat())
	}
	recv := r.sim.Received()
	if len(recv) != 1 || recv[0].Dest != "13800138001" {
		t.Fatalf("simulator received %+v, want only the replaced message", recv)
	}
	text, err := segment.Reassemble([]segment.Frame{{ESMClass: recv[0].ESMClass, DataCoding: recv[0].DataCoding, ShortMessage: recv[0].ShortMessage}}, segment.Options{})
	if err != nil || text != "【测试】new text" {
		t.Fatalf("simulator got %q (%v), want the replaced, signed text", text, err)
	}
	// Sent already: cancel_sm fails.
	cp2 := smpp.NewPDU(smpp.CancelSMID)
	_ = cp2.Fields().Set(pdufield.MessageID, keep)
	_, err = e.conn.Request(ctx, cp2)
	var st pdu.Status
	if !asStatus(err, &st) || st != smpp.StatusCancelFailed {
		t.Fatalf("cancel of a sent message: %v, want ESME_RCANCELFAIL", err)
	}
}

// TestPayloadModeBillsSegmentsOnAir: with concat: payload the SMSC gets
// one submit_sm carrying the whole text in message_payload and splits it
// itself; quota and bill still count the segments on the air (here 2).
func TestPayloadModeBillsSegmentsOnAir(t *testing.T) {
	r := newRig(t, rigOpts{
		sim:      smpp.SimOptions{DLRDelay: time.Millisecond},
		upstream: func(u *gateway.UpstreamConfig) { u.Segment.Concat = segment.ConcatPayload },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("企业短信测试内容十字", 10) // 100 characters + 4 of signature: 2 segments
	p := payloadSM(t, "13800138000", text)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := e.submit(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	month := queue.BillingMonth(time.Now())
	if res, ch := r.store.Usage("esme", month); res != 2 || ch != 0 {
		t.Fatalf("reserved %d charged %d after acceptance, want 2 and 0", res, ch)
	}
	if rc := e.waitReceipts(t, 1, 10*time.Second)[id]; rc.State != smpp.StateDelivered {
		t.Fatalf("receipt %+v", rc)
	}
	recv := r.sim.Received()
	if len(recv) != 1 || len(recv[0].ShortMessage) != 0 || len(recv[0].TLVs[uint16(pdutlv.TagMessagePayload)]) == 0 {
		t.Fatalf("simulator got %d submit_sm, want one with message_payload", len(recv))
	}
	if res, ch := r.store.Usage("esme", month); res != 0 || ch != 2 {
		t.Fatalf("reserved %d charged %d after delivery, want 0 and 2", res, ch)
	}
}

// TestReceiptDatesInReceiptZone: a receipt's submit date and done date
// (clock time, no zone in the text) and query_sm's final_date are in
// Config.ReceiptZone, not the server's zone: a server on UTC still
// writes the enterprises' time.
func TestReceiptDatesInReceiptZone(t *testing.T) {
	zone := time.FixedZone("UTC+5:45", 5*3600+45*60) // no machine's local zone, surely
	r := newRig(t, rigOpts{
		sim:   smpp.SimOptions{DLRDelay: time.Millisecond},
		gwcfg: func(c *gateway.Config) { c.ReceiptZone = zone },
	})
	e, err := r.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := time.Now()
	id, err := e.submit(ctx, submitSM("1069", "13800138000", "zone"))
	if err != nil {
		t.Fatal(err)
	}
	rc := e.waitReceipts(t, 1, 10*time.Second)[id]
	after := time.Now()
	// ParseReceipt reads the clock time as local: compare clock readings.
	clock := func(t time.Time) string { return t.Format("0601021504") }
	for name, got := range map[string]time.Time{"submit date": rc.SubmitDate, "done date": rc.DoneDate} {
		if c := clock(got); c != clock(before.In(zone)) && c != clock(after.In(zone)) {
			t.Errorf("%s %s, want the clock of %s (UTC+5:45)", name, c, clock(before.In(zone)))
		}
	}
	p := pdu.NewQuerySM()
	_ = p.Fields().Set(pdufield.MessageID, id)
	resp, err := e.conn.Request(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// SMPP's absolute time ends in the offset, in quarter hours: 23+.
	fd := smpp.Str(resp, pdufield.FinalDate)
	if !strings.HasSuffix(fd, "23+") || !strings.HasPrefix(fd, clock(after.In(zone))[:8]) && !strings.HasPrefix(fd, clock(before.In(zone))[:8]) {
		t.Errorf("final_date %q, want UTC+5:45's clock and offset 23+", fd)
	}
}

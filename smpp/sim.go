package smpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// Faults are what the simulator does wrong on purpose. Fractions are in
// [0,1] and drawn per submit_sm.
type Faults struct {
	Throttle   float64       // answer ESME_RTHROTTLED
	QueueFull  float64       // answer ESME_RMSGQFUL
	Reject     float64       // answer ESME_RSUBMITFAIL (permanent)
	Undeliv    float64       // accept, then DLR stat UNDELIV err 001
	Expire     float64       // accept, then DLR stat EXPIRED
	NoResponse float64       // never answer (the client must time out)
	RespDelay  time.Duration // answer every submit_sm this late
	DropAfter  int           // close the connection after this many submit_sm (0 = never)
	// Deterministic faults, for tests that count exactly: the first
	// ThrottleFirst submit_sm are throttled, and every message to a
	// destination starting with UndelivPrefix is undeliverable.
	ThrottleFirst int
	UndelivPrefix string
	// AcceptedPrefix: every message to a destination starting with it
	// gets ACCEPTD (message_state 6) as its receipt, which SMPP 3.4
	// counts final and many SMSCs send as "accepted, not yet delivered".
	AcceptedPrefix string
	// Hold, when set, holds every submit_sm's answer (after RespDelay)
	// until it is closed: for tests that need submits out at the SMSC
	// when something happens, however slowly the machine runs.
	Hold <-chan struct{}
}

// SimOptions configure the SMSC simulator.
type SimOptions struct {
	// SystemID and Password accepted at bind; empty Password accepts any.
	SystemID, Password string
	DLRDelay           time.Duration
	// IDFormat is "hex" (default) or "dec": SMSCs differ, and the gateway
	// must match receipts either way. With ReceiptDecimal the receipt
	// carries the id in decimal although submit_sm_resp gave it in hex.
	IDFormat       string
	ReceiptDecimal bool
	Faults         Faults
	// Record keeps every accepted submit_sm for Received (tests).
	Record bool
	// MaxBinds refuses a bind (ESME_RBINDFAIL) while this many binds of
	// the same system_id are open, as carriers cap binds per account
	// (0: no cap). Binds reports the count and its peak.
	MaxBinds int
	// NoTransceiver refuses bind_transceiver (ESME_RINVCMDID), as an SMSC
	// of SMPP 3.3, which has no transceivers, does: a client must bind a
	// transmitter to send and a receiver for the receipts and replies.
	NoTransceiver bool
	// Seed, if not zero, makes the random faults (and receipt outcomes) a
	// reproducible sequence; zero draws from the process's random source.
	Seed   uint64
	Logger *slog.Logger
}

// SimMessage is one submit_sm the simulator accepted.
type SimMessage struct {
	ID           string
	SystemID     string
	Source, Dest string
	DataCoding   uint8
	ESMClass     uint8
	ShortMessage []byte
	TLVs         map[uint16][]byte
	RegDelivery  uint8
	Priority     uint8     // priority_flag
	At           time.Time // when its submit_sm arrived (before any fault's delay)
	Bind         BindKind  // the kind of the bind it came on
}

type simDLR struct {
	due      time.Time
	systemID string
	msg      SimMessage
	state    MessageState
	err      string
	submit   time.Time
}

// Simulator is an SMSC for make run and the tests: it accepts binds,
// answers submit_sm, sends delivery receipts after DLRDelay and injects
// the configured faults. It runs on the same Server and Conn as qxtd.
type Simulator struct {
	opt    SimOptions
	srv    *Server
	log    *slog.Logger
	faults atomic.Pointer[Faults]
	nextID atomic.Uint64
	// answering counts the submit_sm being handled: read, not yet answered.
	answering atomic.Int64
	// throttled counts submit_sm against Faults.ThrottleFirst.
	throttled atomic.Int64
	// rng is the seeded source of SimOptions.Seed (nil: math/rand/v2's).
	rngMu sync.Mutex
	rng   *rand.Rand

	mu       sync.Mutex
	received []SimMessage
	arrived  map[string]int // submit_sm read per destination, answered or not (Record)
	accepted int
	dlrSent  int
	rx       map[string][]*Conn // receiver-capable binds per system_id
	bound    map[string]int     // open binds per system_id
	sessions map[*simSession]struct{}
	peak     map[string]int // the most bound at once per system_id
	// kinds counts the open binds per system_id and kind, kindPeak the
	// most at once (BindsOfKind).
	kinds    map[simKind]int
	kindPeak map[simKind]int
	dlrs     []simDLR // FIFO: a constant delay keeps it in due order
	wake     chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewSimulator returns a simulator; call Serve with a listener.
func NewSimulator(opt SimOptions) *Simulator {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Simulator{
		opt:      opt,
		log:      opt.Logger.With("component", "simulator"),
		rx:       make(map[string][]*Conn),
		arrived:  make(map[string]int),
		bound:    make(map[string]int),
		peak:     make(map[string]int),
		kinds:    make(map[simKind]int),
		kindPeak: make(map[simKind]int),
		sessions: make(map[*simSession]struct{}),
		wake:     make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
	}
	f := opt.Faults
	s.faults.Store(&f)
	if opt.Seed != 0 {
		s.rng = rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))
	}
	s.nextID.Store(uint64(time.Now().UnixNano()) & 0xFFFFFFFFFF) // ids differ across runs
	s.srv = NewServer(BackendFunc(s.bind), ServerOptions{
		SystemID: "qxtdsim",
		Conn:     ConnOptions{Window: 100, InboundWindow: 256, RespTimeout: 5 * time.Second},
		Logger:   s.log,
	})
	s.wg.Add(1)
	go s.dlrLoop()
	return s
}

// SetFaults changes the injected faults at once.
func (s *Simulator) SetFaults(f Faults) { s.faults.Store(&f) }

// Serve accepts binds on l.
func (s *Simulator) Serve(l net.Listener) error { return s.srv.Serve(l) }

// Close stops the simulator and drops its connections.
func (s *Simulator) Close() error {
	s.cancel()
	err := s.srv.Close()
	s.wg.Wait()
	return err
}

// Received returns a copy of the accepted messages (Record must be set).
func (s *Simulator) Received() []SimMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SimMessage(nil), s.received...)
}

// Arrived returns how many submit_sm the simulator has read for each
// destination, answered or not (Record must be set): a segment a client
// cut off while it was out and sent again counts twice here, once in
// Received.
func (s *Simulator) Arrived() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.arrived)
}

// Stats returns how many submit_sm were accepted and receipts delivered.
func (s *Simulator) Stats() (accepted, dlrsSent int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.dlrSent
}

// Answering returns how many submit_sm the simulator has read and not yet
// answered (Faults.RespDelay holds them): what a client has out with it.
func (s *Simulator) Answering() int { return int(s.answering.Load()) }

// Binds returns how many binds of systemID are open now, and the most
// that were open at once.
func (s *Simulator) Binds(systemID string) (now, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound[systemID], s.peak[systemID]
}

// simKind keys the binds of one system_id and kind.
type simKind struct {
	systemID string
	kind     BindKind
}

// BindsOfKind returns how many binds of systemID and kind are open now,
// and the most that were open at once.
func (s *Simulator) BindsOfKind(systemID string, kind BindKind) (now, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := simKind{systemID, kind}
	return s.kinds[k], s.kindPeak[k]
}

// DropConnections closes every bound connection (a network failure).
func (s *Simulator) DropConnections() {
	for _, c := range s.srv.connections() {
		c.closeWith(ErrClosed)
	}
}

func (s *Simulator) bind(_ context.Context, req BindRequest) (Session, error) {
	if s.opt.SystemID != "" && req.SystemID != s.opt.SystemID {
		return nil, StatusInvalidSystemID
	}
	if s.opt.Password != "" && req.Password != s.opt.Password {
		return nil, StatusInvalidPassword
	}
	if s.opt.NoTransceiver && req.Kind == BindTransceiver {
		return nil, StatusInvalidCommandID
	}
	ss := &simSession{s: s, systemID: req.SystemID, conn: req.Conn, kind: req.Kind}
	s.mu.Lock()
	if s.opt.MaxBinds > 0 && s.bound[req.SystemID] >= s.opt.MaxBinds {
		s.mu.Unlock()
		return nil, StatusBindFailed
	}
	s.bound[req.SystemID]++
	s.sessions[ss] = struct{}{}
	s.peak[req.SystemID] = max(s.peak[req.SystemID], s.bound[req.SystemID])
	k := simKind{req.SystemID, req.Kind}
	s.kinds[k]++
	s.kindPeak[k] = max(s.kindPeak[k], s.kinds[k])
	if req.Kind.CanReceive() {
		s.rx[req.SystemID] = append(s.rx[req.SystemID], req.Conn)
	}
	s.mu.Unlock()
	s.kick()
	return ss, nil
}

func (s *Simulator) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

type simSession struct {
	s        *Simulator
	systemID string
	conn     *Conn
	kind     BindKind
	submits  atomic.Int64
	// lost: the SMSC forgot this session (LoseBinds), the connection
	// staying up. Written under s.mu.
	lost atomic.Bool
}

func (ss *simSession) Close() {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return // lost: uncounted already
	}
	s.forget(ss)
}

// forget uncounts ss and takes it off the receivers; s.mu held.
func (s *Simulator) forget(ss *simSession) {
	delete(s.sessions, ss)
	s.bound[ss.systemID]--
	s.kinds[simKind{ss.systemID, ss.kind}]--
	list := s.rx[ss.systemID]
	for i, c := range list {
		if c == ss.conn {
			s.rx[ss.systemID] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
}

// LoseBinds makes the SMSC forget every session bound now while their
// TCP connections stay up, as a front end that restarted or failed over
// behind a proxy does: each answers every later submit_sm
// ESME_RINVBNDSTS until the client closes it, gets no more receipts or
// replies, and no longer counts against MaxBinds (the client may bind
// again at once). It returns how many sessions it forgot.
func (s *Simulator) LoseBinds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		ss.lost.Store(true)
		s.forget(ss)
		n++
	}
	return n
}

func (ss *simSession) Handle(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	switch p.Header().ID {
	case pdu.SubmitSMID:
		if !ss.kind.CanSend() || ss.lost.Load() {
			return nil, StatusInvalidBindStatus
		}
		return ss.submit(ctx, p)
	case pdu.DataSMID:
		return nil, StatusInvalidCommandID
	}
	return nil, StatusInvalidCommandID
}

func (ss *simSession) submit(ctx context.Context, p pdu.Body) (pdu.Body, error) {
	s := ss.s
	arrived := time.Now()
	s.answering.Add(1)
	defer s.answering.Add(-1)
	if s.opt.Record {
		s.mu.Lock()
		s.arrived[Str(p, pdufield.DestinationAddr)]++
		s.mu.Unlock()
	}
	f := s.faults.Load()
	n := ss.submits.Add(1)
	if f.DropAfter > 0 && n > int64(f.DropAfter) {
		ss.conn.closeWith(ErrClosed)
		return nil, nil
	}
	if f.RespDelay > 0 && !sleepCtx(ctx, f.RespDelay) {
		return nil, nil
	}
	if f.Hold != nil {
		select {
		case <-f.Hold:
		case <-ctx.Done():
			return nil, nil
		}
	}
	if f.ThrottleFirst > 0 && s.throttled.Add(1) <= int64(f.ThrottleFirst) {
		return nil, StatusThrottled
	}
	r := s.float64()
	switch {
	case r < f.NoResponse:
		return nil, nil
	case r < f.NoResponse+f.Throttle:
		return nil, StatusThrottled
	case r < f.NoResponse+f.Throttle+f.QueueFull:
		return nil, StatusMsgQueueFull
	case r < f.NoResponse+f.Throttle+f.QueueFull+f.Reject:
		return nil, StatusSubmitFailed
	}
	idn := s.nextID.Add(1)
	id := strconv.FormatUint(idn, 16)
	if s.opt.IDFormat == "dec" {
		id = strconv.FormatUint(idn, 10)
	}
	m := SimMessage{
		ID:           id,
		SystemID:     ss.systemID,
		Source:       Str(p, pdufield.SourceAddr),
		Dest:         Str(p, pdufield.DestinationAddr),
		DataCoding:   Byte(p, pdufield.DataCoding),
		ESMClass:     Byte(p, pdufield.ESMClass),
		ShortMessage: append([]byte(nil), Bytes(p, pdufield.ShortMessage)...),
		RegDelivery:  Byte(p, pdufield.RegisteredDelivery),
		Priority:     Byte(p, pdufield.PriorityFlag),
		At:           arrived,
		Bind:         ss.kind,
	}
	if t := p.TLVFields(); len(t) > 0 {
		m.TLVs = make(map[uint16][]byte, len(t))
		for tag, v := range t {
			m.TLVs[uint16(tag)] = append([]byte(nil), v.Bytes()...)
		}
	}
	state, errCode := StateDelivered, "000"
	r2 := s.float64()
	switch {
	case f.UndelivPrefix != "" && strings.HasPrefix(m.Dest, f.UndelivPrefix):
		state, errCode = StateUndeliverable, "001"
	case f.AcceptedPrefix != "" && strings.HasPrefix(m.Dest, f.AcceptedPrefix):
		state = StateAccepted
	case r2 < f.Undeliv:
		state, errCode = StateUndeliverable, "001"
	case r2 < f.Undeliv+f.Expire:
		state, errCode = StateExpired, "002"
	}
	s.mu.Lock()
	s.accepted++
	if s.opt.Record {
		s.received = append(s.received, m)
	}
	if m.RegDelivery&0x03 != 0 {
		s.dlrs = append(s.dlrs, simDLR{
			due: time.Now().Add(s.opt.DLRDelay), systemID: ss.systemID,
			msg: m, state: state, err: errCode, submit: time.Now(),
		})
	}
	s.mu.Unlock()
	s.kick()
	resp := pdu.NewSubmitSMResp()
	_ = resp.Fields().Set(pdufield.MessageID, id)
	return resp, nil
}

// float64 draws a fault: from the seeded source if there is one.
func (s *Simulator) float64() float64 {
	if s.rng == nil {
		return rand.Float64()
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}

// dlrLoop sends due receipts, at most 64 awaiting their deliver_sm_resp
// at once; a receipt that fails goes back to the queue.
func (s *Simulator) dlrLoop() {
	defer s.wg.Done()
	sem := make(chan struct{}, 64)
	var rr int
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var next time.Duration = -1
		var batch []simDLR
		now := time.Now()
		var keep []simDLR
		for i, d := range s.dlrs {
			if d.due.After(now) {
				if next < 0 {
					next = d.due.Sub(now)
				}
				keep = append(keep, s.dlrs[i:]...)
				break
			}
			if len(s.rx[d.systemID]) == 0 || len(batch) >= cap(sem) {
				keep = append(keep, d)
				continue
			}
			batch = append(batch, d)
		}
		s.dlrs = keep
		s.mu.Unlock()
		for _, d := range batch {
			select {
			case sem <- struct{}{}:
			case <-s.ctx.Done():
				return
			}
			rr++
			n := rr
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-sem }()
				s.sendDLR(d, n)
			}()
		}
		if len(batch) > 0 {
			continue
		}
		if next < 0 {
			next = time.Second // nothing due, or no receiver bound: look again
		}
		timer.Reset(next)
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

func (s *Simulator) sendDLR(d simDLR, rr int) {
	s.mu.Lock()
	list := s.rx[d.systemID]
	var c *Conn
	if len(list) > 0 {
		c = list[rr%len(list)]
	}
	s.mu.Unlock()
	requeue := func() {
		s.mu.Lock()
		d.due = time.Now().Add(time.Second)
		s.dlrs = append(s.dlrs, d)
		s.mu.Unlock()
	}
	if c == nil {
		requeue()
		return
	}
	id := d.msg.ID
	if s.opt.ReceiptDecimal && s.opt.IDFormat != "dec" {
		if v, err := strconv.ParseUint(id, 16, 64); err == nil {
			id = fmt.Sprintf("%d", v)
		}
	}
	text := ""
	if d.msg.DataCoding == 0 || d.msg.DataCoding == 1 {
		text = string(d.msg.ShortMessage)
	}
	r := Receipt{ID: id, Sub: 1, Dlvrd: 0, SubmitDate: d.submit, DoneDate: time.Now(), State: d.state, Err: d.err, Text: text}
	if d.state == StateDelivered {
		r.Dlvrd = 1
	}
	p := NewReceiptPDU(r, d.msg.Dest, d.msg.Source, 1, 1, 0, 0)
	// Some SMSCs send only the text; this one sends TLVs too, but with
	// the id in its own format.
	_ = p.TLVFields().Set(pdutlv.TagReceiptedMessageID, pdutlv.CString(id))
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, p); err != nil {
		if s.ctx.Err() == nil {
			requeue()
		}
		return
	}
	s.mu.Lock()
	s.dlrSent++
	s.mu.Unlock()
}

// InjectReceipt sends a delivery receipt (stat DELIVRD) for SMSC id,
// whether or not the simulator gave that id, from src to dest, as an
// SMSC with receipts for messages the client does not know sends them: on
// one receiver-capable bind. It returns what InjectMO does.
func (s *Simulator) InjectReceipt(id, src, dest string) error {
	c := s.anyReceiver()
	if c == nil {
		return ErrNoReceiver
	}
	now := time.Now()
	p := NewReceiptPDU(Receipt{ID: id, Sub: 1, Dlvrd: 1, SubmitDate: now, DoneDate: now, State: StateDelivered, Err: "000"}, src, dest, 1, 1, 0, 0)
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, p)
	return err
}

func (s *Simulator) anyReceiver() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range s.rx {
		if len(list) > 0 {
			return list[0]
		}
	}
	return nil
}

// InjectDeliverSM sends the deliver_sm of m (a UDH in ShortMessage with
// esm_class UDHI: a part of a long reply the SMSC split) on one
// receiver-capable bind, and returns what InjectMO does.
func (s *Simulator) InjectDeliverSM(m SM) error {
	c := s.anyReceiver()
	if c == nil {
		return ErrNoReceiver
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, NewDeliverSM(m))
	return err
}

// Receivers returns how many receiver-capable binds of systemID are up,
// in the order they bound: the binds InjectDeliverSMOn names 0 to n-1.
func (s *Simulator) Receivers(systemID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rx[systemID])
}

// InjectDeliverSMOn is InjectDeliverSM on one chosen bind: receiver-capable
// bind i of systemID (Receivers), as an SMSC spreads the parts of one
// reply over the binds of the account. It returns ErrNoReceiver when
// there is no bind i.
func (s *Simulator) InjectDeliverSMOn(systemID string, i int, m SM) error {
	s.mu.Lock()
	var c *Conn
	if list := s.rx[systemID]; i >= 0 && i < len(list) {
		c = list[i]
	}
	s.mu.Unlock()
	if c == nil {
		return ErrNoReceiver
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, NewDeliverSM(m))
	return err
}

// ErrNoReceiver: InjectMO found no receiver or transceiver bound.
var ErrNoReceiver = errors.New("smpp: simulator: no receiver bound")

// InjectMO sends a mobile-originated message, as a handset's reply
// reaches the SMSC: a deliver_sm (esm_class 0, the text in ASCII or
// UCS-2) from source to dest on one receiver-capable bind. It returns
// once the client answered: nil for deliver_sm_resp OK, the pdu.Status it
// answered otherwise, ErrNoReceiver when nobody is bound.
func (s *Simulator) InjectMO(source, dest, text string) error {
	c := s.anyReceiver()
	if c == nil {
		return ErrNoReceiver
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, NewTextPDU(text, source, dest, 1, 1))
	return err
}

// Outbind connects to an ESME listening at addr and sends it outbind with
// systemID and password, as an SMSC with messages for it does (SMPP 3.4
// §2.2.1); the ESME's bind_receiver on that connection is then served as
// any bind, and the session receives receipts and replies. It returns
// once the outbind is sent: the bind follows, or the ESME closes.
func (s *Simulator) Outbind(ctx context.Context, addr, systemID, password string) error {
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smpp: simulator: outbind to %s: %w", addr, err)
	}
	p := NewPDU(OutbindID)
	_ = p.Fields().Set(pdufield.SystemID, systemID)
	_ = p.Fields().Set(pdufield.Password, password)
	p.Header().Seq = 1
	frame, err := encode(p)
	if err == nil {
		_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = nc.Write(frame)
		_ = nc.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		_ = nc.Close()
		return fmt.Errorf("smpp: simulator: outbind to %s: %w", addr, err)
	}
	s.srv.startConn(nc)
	return nil
}

//go:build soak

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/smpp"
)

// What the bind-mode soak (TestSoakBindModes) and the upstream TLS soak
// (TestSoakUpstreamTLS) share: the daemons they run one after another
// and the receipts at their ESMEs (frontSoak), and the relay of their
// fronts, which sit between the daemon and the simulator and keep a
// ledger of every submit_sm (relayConn). Each soak adds its own faults:
// bmFront its bind kinds kept away and sessions lost, tlsFront its
// certificates, stalled handshakes and withheld answers.

// frontSoak is one run of a daemon restarted at its faults, behind a
// front, with two ESMEs asking receipts. The soaks embed it: its mu
// guards their own fields too.
type frontSoak struct {
	t     *testing.T
	x     *chaos
	cfg   string
	began time.Time

	mu       sync.Mutex
	d        *proc
	procs    []*proc
	gen      int
	killGen  map[int]time.Time // when the daemon of a generation was killed
	kills    []time.Time
	termTook []time.Duration
	events   []string
	rcpts    map[string][]bmRcpt // the receipts at the ESMEs, by message id
}

type bmRcpt struct {
	account string
	at      time.Time
	state   smpp.MessageState
}

func newFrontSoak(t *testing.T, began time.Time) frontSoak {
	return frontSoak{t: t, x: newChaos(t), began: began, killGen: map[int]time.Time{}, rcpts: map[string][]bmRcpt{}}
}

func (s *frontSoak) daemon() *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d
}

func (s *frontSoak) event(format string, args ...any) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *frontSoak) lastEvent() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[len(s.events)-1]
}

func (s *frontSoak) since(times ...time.Time) []time.Duration { return offsets(s.began, times...) }

// startNext runs the next daemon on the configuration. The front learns
// its generation first: the daemon binds before startDaemon
// returns, and its first submits are its own, not the one before's (a
// copy would otherwise be blamed on the kill before it).
func (s *frontSoak) startNext(front *relayFront) *proc {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	s.mu.Unlock()
	front.gen.Store(int64(gen))
	d := startDaemon(s.t, s.cfg)
	s.mu.Lock()
	s.d = d
	s.procs = append(s.procs, d)
	s.mu.Unlock()
	return d
}

// stopDaemon sends d a SIGTERM and checks that it exits 0 within 30 s;
// what names the signal in the messages ("SIGTERM", "the last
// SIGTERM"). It returns how long the exit took.
func stopDaemon(t *testing.T, d *proc, what string) time.Duration {
	t.Helper()
	stopped := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30 s after %s:\n%s", what, tail(d.log(), 100))
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after %s:\n%s", code, what, tail(d.log(), 100))
	}
	return time.Since(stopped)
}

// kill9 kills d, the daemon of now, and notes when: the copies and the
// receipts again that a kill explains. It returns when d was gone.
func (s *frontSoak) kill9(t *testing.T, d *proc) time.Time {
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	now := time.Now()
	s.mu.Lock()
	s.kills = append(s.kills, now)
	s.killGen[s.gen] = now
	s.mu.Unlock()
	return now
}

// receiptHandler is an ESME's: its receipts by id, when they came.
func (s *frontSoak) receiptHandler(account string) smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		rc, err := smpp.ParseReceipt(p)
		if err != nil {
			s.x.conflict("%s got a deliver_sm that is no receipt: %v", account, err)
			return pdu.NewDeliverSMResp()
		}
		s.mu.Lock()
		s.rcpts[rc.ID] = append(s.rcpts[rc.ID], bmRcpt{account: account, at: time.Now(), state: rc.State})
		s.mu.Unlock()
		return pdu.NewDeliverSMResp()
	})
}

func (s *frontSoak) rcptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.rcpts {
		n += len(r)
	}
	return n
}

// scanLogs checks that no daemon logged at error level but for allowed
// (by msg). It returns the warnings by msg; warn, if not nil, sees each
// with its err.
func (s *frontSoak) scanLogs(t *testing.T, allowed map[string]string, warn func(msg, err string)) map[string]int {
	s.mu.Lock()
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	warns := map[string]int{}
	for i, p := range procs {
		for line := range strings.Lines(p.log()) {
			var rec struct{ Level, Msg, Err string }
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			switch rec.Level {
			case "ERROR":
				if _, ok := allowed[rec.Msg]; !ok {
					t.Errorf("daemon %d logged at error level: %s", i+1, strings.TrimSpace(line))
				}
			case "WARN":
				warns[rec.Msg]++
				if warn != nil {
					warn(rec.Msg, rec.Err)
				}
			}
		}
	}
	return warns
}

// checkReceipts checks the receipts once every message is final: every
// one asked (acked) at its ESME with its message's state (got), again
// after an answer only across a kill -9, and in all no more again than
// the kills' receipt windows (dlrWindow an account) allow; none for a
// message the outbox lacks. It returns the receipts again and, of them,
// those no kill explains.
func (s *frontSoak) checkReceipts(t *testing.T, drain time.Duration, acked map[string]what, got map[string]chaosMessage, outbox []chaosMessage,
	dlrWindow int) (again, unexplainedN int) {
	t.Helper()
	stateOf := map[string]smpp.MessageState{"delivered": smpp.StateDelivered, "undeliverable": smpp.StateUndeliverable}
	waitCond(t, drain, "every receipt at its ESME", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for id, w := range acked {
			if w.receipt != "" && len(s.rcpts[id]) == 0 {
				return false
			}
		}
		return true
	})
	stored := map[string]bool{}
	for _, m := range outbox {
		stored[m.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, w := range acked {
		rs := s.rcpts[id]
		var times []time.Time
		for _, r := range rs {
			times = append(times, r.at)
			if r.account != w.receipt {
				t.Errorf("receipt of %s (%s's) reached %s", id, w.receipt, r.account)
			}
			if want, ok := stateOf[got[id].State]; ok && r.state != want {
				t.Errorf("receipt of %s: state %d, the message is %s", id, r.state, got[id].State)
			}
		}
		again += max(0, len(rs)-1)
		slices.SortFunc(times, time.Time.Compare)
		if n := unexplained(times, 1, s.kills); n > 0 {
			unexplainedN += n
			t.Errorf("receipt of %s at %s %d times, %d of them again after an answer with no kill -9 between (at %v; kills at %v)", id, w.receipt, len(rs), n,
				s.since(times...), s.since(s.kills...))
		}
	}
	for id := range s.rcpts {
		// A message whose acknowledgement a kill cut off: stored, its
		// receipt due all the same.
		if _, ok := acked[id]; !ok && !stored[id] {
			t.Errorf("a receipt for %s, which no stored message has", id)
		}
	}
	if again > len(s.kills)*2*dlrWindow {
		t.Errorf("%d receipts sent again over %d kills, more than the receipt windows allow", again, len(s.kills))
	}
	return again, unexplainedN
}

// explainCut is why the copy e, whose daemon no kill explains, was
// followed by another: its connection dropped (at one of drops) before
// the daemon could read the answer (README case 3), or its answer slower
// than respTimeout (case 2).
func explainCut(e *bmSubmit, drops []time.Time, respTimeout time.Duration) string {
	dropped := !e.connEnd.IsZero() && slices.ContainsFunc(drops, func(d time.Time) bool { return (e.connEnd.Sub(d)).Abs() < 200*time.Millisecond })
	if dropped && (e.relayed.IsZero() || e.connEnd.Sub(e.relayed) < 100*time.Millisecond) {
		return bmWhyCut
	}
	if !e.relayed.IsZero() && e.relayed.Sub(e.sent) > respTimeout-100*time.Millisecond {
		return bmWhyLate
	}
	return bmWhyUnexp
}

// bmSubmit is one submit_sm through the front and what became of its
// answer.
type bmSubmit struct {
	gen, conn int
	sent      time.Time // read from the daemon
	relayed   time.Time // its answer written to the daemon
	connEnd   time.Time
	smscID    string
}

// submitLedger is a soak front's ledger of every submit_sm it relayed
// and the fate of its answer (the bind-mode and TLS soaks' fronts embed
// it); its methods run under the front's lock.
type submitLedger struct {
	ledger []*bmSubmit
	byID   map[string]*bmSubmit // by the SMSC's id, lower case
}

// connLedger is one relayed connection's part of the ledger.
type connLedger struct {
	pending map[uint32]*bmSubmit // awaiting their answer, by sequence number
	mine    []*bmSubmit
}

// sent notes the submit_sm of seq that the daemon sent on connection c
// (conn, of the daemon of generation gen).
func (l *submitLedger) sent(c *connLedger, gen, conn int, seq uint32) {
	e := &bmSubmit{gen: gen, conn: conn, sent: time.Now()}
	l.ledger = append(l.ledger, e)
	c.mine = append(c.mine, e)
	if c.pending == nil {
		c.pending = map[uint32]*bmSubmit{}
	}
	c.pending[seq] = e
}

// answered notes the SMSC's submit_sm_resp fr on c and returns its
// submit (nil: none pending); it stays pending for the caller to take
// off once the answer is relayed or withheld.
func (l *submitLedger) answered(c *connLedger, fr []byte) *bmSubmit {
	e := c.pending[binary.BigEndian.Uint32(fr[12:])]
	if e != nil && binary.BigEndian.Uint32(fr[8:]) == 0 {
		smscID, _, _ := strings.Cut(string(fr[16:]), "\x00")
		e.smscID = strings.ToLower(smscID)
		if l.byID == nil {
			l.byID = map[string]*bmSubmit{}
		}
		l.byID[e.smscID] = e
	}
	return e
}

// ended notes that c ended now.
func (c *connLedger) ended(now time.Time) {
	for _, e := range c.mine {
		e.connEnd = now
	}
}

// relayFront is what the soaks' fronts (bmFront, tlsFront) embed: the
// listener the daemon's upstream dials, relaying to the simulator
// (target), and the ledger of every submit_sm relayed. Its mu is the
// front's lock.
type relayFront struct {
	addr, target string
	gen          atomic.Int64 // the daemon's of now (frontSoak.startNext)
	wg           sync.WaitGroup

	mu    sync.Mutex
	ln    net.Listener
	nconn int
	submitLedger
}

// listen opens the front at addr and hands each connection to handle,
// each in its own goroutine; at the test's end the listener closes,
// cleanup runs (it closes the connections) and every goroutine ends.
func (f *relayFront) listen(t *testing.T, target string, handle func(net.Conn), cleanup func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln, f.addr, f.target = ln, ln.Addr().String(), target
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		cleanup()
		f.wg.Wait()
	})
}

// relay is the next connection to relay, from the daemon's client to
// server, the simulator; f.mu is held.
func (f *relayFront) relay(client, server net.Conn, hooks relayHooks) *relayConn {
	f.nconn++
	return &relayConn{front: f, id: f.nconn, gen: int(f.gen.Load()), client: client, server: server, hooks: hooks}
}

// run relays c both ways until either side ends.
func (f *relayFront) run(c *relayConn) {
	f.wg.Go(c.fromDaemon)
	c.fromSMSC()
}

// checkCopies checks that every copy of a segment the SMSC took but the
// last (copies) has a cause in f's ledger by explain, and that the
// kills explain no more than their windows allow (binds × window a
// kill). It returns the copies by cause, the copies, the submit_sm
// relayed and the kills' bound.
func (f *relayFront) checkCopies(t *testing.T, s *frontSoak, copies map[upSegKey][]smpp.SimMessage, explain func(*bmSubmit) string,
	binds, window int) (why map[string]int, dups, submits, killBound int) {
	t.Helper()
	f.mu.Lock()
	byID := maps.Clone(f.byID)
	submits = len(f.ledger)
	f.mu.Unlock()
	why, unexplainedDups, dups := explainCopies(copies, byID, s.began, explain)
	s.mu.Lock()
	kills := len(s.kills)
	s.mu.Unlock()
	if len(unexplainedDups) > 0 {
		t.Errorf("%d segments sent again although their answer came in time on a connection no drop or kill ended: %v", len(unexplainedDups), unexplainedDups[:min(10, len(unexplainedDups))])
	}
	killBound = kills * binds * window
	if why[bmWhyKill] > killBound {
		t.Errorf("%d segments sent again after %d kills: more than the windows allow (%d)", why[bmWhyKill], kills, killBound)
	}
	return why, dups, submits, killBound
}

// relayConn is one connection a soak front relays frame by frame
// between the daemon (client) and the simulator (server), noting every
// submit_sm and its answer in the front's ledger. What the front
// injects on it goes through its hooks.
type relayConn struct {
	front          *relayFront
	id, gen        int
	client, server net.Conn
	hooks          relayHooks
	cw             sync.Mutex
	once           sync.Once
	connLedger     // under front.mu
}

// relayHooks are a front's faults on one connection; nil ones do nothing.
type relayHooks struct {
	// daemon sees each frame from the daemon but a submit_sm, under no
	// lock, and says what becomes of it.
	daemon func(id pdu.ID, seq uint32) relayVerdict
	// withhold, under the lock, is asked of each submit_sm_resp: true
	// keeps it from the daemon, still pending (for a drop to cut).
	withhold func() bool
	// bound, under the lock, notes a bind the SMSC answered OK (id is
	// its _resp's).
	bound func(id pdu.ID)
	// closed, under the lock, is the connection's end (its front
	// forgets it).
	closed func()
}

type relayVerdict int

const (
	relayOn    relayVerdict = iota // the frame goes to the SMSC
	relaySkip                      // the hook dealt with it: not relayed
	relayClose                     // the connection closed, the frame unanswered
)

func (c *relayConn) close() {
	c.once.Do(func() {
		_ = c.client.Close()
		_ = c.server.Close()
		c.front.mu.Lock()
		c.ended(time.Now())
		if c.hooks.closed != nil {
			c.hooks.closed()
		}
		c.front.mu.Unlock()
	})
}

func (c *relayConn) writeDaemon(frame []byte) bool {
	c.cw.Lock()
	defer c.cw.Unlock()
	if _, err := c.client.Write(frame); err != nil {
		c.close()
		return false
	}
	return true
}

// fromDaemon relays the daemon's frames to the SMSC, each submit_sm
// noted, the others through the daemon hook.
func (c *relayConn) fromDaemon() {
	defer c.close()
	br := bufio.NewReader(c.client)
	for {
		fr, err := readFrame(br)
		if err != nil {
			return
		}
		id := pdu.ID(binary.BigEndian.Uint32(fr[4:]))
		seq := binary.BigEndian.Uint32(fr[12:])
		if id == pdu.SubmitSMID {
			c.front.mu.Lock()
			c.front.sent(&c.connLedger, c.gen, c.id, seq)
			c.front.mu.Unlock()
		} else if c.hooks.daemon != nil {
			switch c.hooks.daemon(id, seq) {
			case relaySkip:
				continue
			case relayClose:
				return
			}
		}
		if _, err := c.server.Write(fr); err != nil {
			return
		}
	}
}

// fromSMSC relays the SMSC's frames to the daemon, each submit_sm_resp
// noted in the ledger (and withheld if the front says so) and the time
// it reached the daemon, each bind answered OK told to the front.
func (c *relayConn) fromSMSC() {
	defer c.close()
	br := bufio.NewReader(c.server)
	for {
		fr, err := readFrame(br)
		if err != nil {
			return
		}
		id := pdu.ID(binary.BigEndian.Uint32(fr[4:]))
		status := binary.BigEndian.Uint32(fr[8:])
		var e *bmSubmit
		switch id {
		case pdu.SubmitSMRespID:
			c.front.mu.Lock()
			e = c.front.answered(&c.connLedger, fr)
			if c.hooks.withhold != nil && c.hooks.withhold() {
				c.front.mu.Unlock()
				continue
			}
			delete(c.pending, binary.BigEndian.Uint32(fr[12:]))
			c.front.mu.Unlock()
		case pdu.BindTransmitterRespID, pdu.BindReceiverRespID, pdu.BindTransceiverRespID:
			if status == 0 && c.hooks.bound != nil {
				c.front.mu.Lock()
				c.hooks.bound(id)
				c.front.mu.Unlock()
			}
		}
		if !c.writeDaemon(fr) {
			return
		}
		if e != nil {
			c.front.mu.Lock()
			e.relayed = time.Now()
			c.front.mu.Unlock()
		}
	}
}

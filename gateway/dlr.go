package gateway

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// router forwards stored receipts to the ESMEs. Each account with at
// least one receiver or transceiver bound has one forwarder goroutine;
// it ends when the account's last such bind goes. Receipts stay in the
// store until an ESME acknowledged them with deliver_sm_resp.
type router struct {
	g   *Gateway
	set *forwarders[*forwarder]
}

type forwarder struct {
	account string
	wake    chan struct{}

	// connMu guards the binds apart from mu: attach and detach take it
	// under the forwarder set's lock, which the store's commit goroutine
	// takes to hand receipts over (offer), and mu is held across scans.
	connMu sync.Mutex
	conns  []*smpp.Conn
	rr     int

	mu       sync.Mutex
	inflight map[uint64]struct{}
	sending  int // handed to a worker and not yet answered
	// hand receives the messages the store hands over as it commits their
	// receipts (OnDLRReady); handed holds them, oldest first, for the next
	// turns to send without reading them back. rescan says the store may
	// hold pending receipts that are neither handed nor in flight, so the
	// next turn with room scans for them (PendingDLRsAt): set at the
	// start, when a hand-over did not fit, a delivery failed or an
	// acknowledgement could not be committed, and at least every DLRRetry
	// (lastScan), busy or not.
	hand     *handOver[*queue.Message]
	handed   []handed[*queue.Message]
	rescan   bool
	scanned  queue.Snapshot // what the latest scan saw
	lastScan time.Time
	// acked holds, per message with several receipts (Aliases), the
	// receipt ids the ESME acknowledged while another was not: a retry
	// sends only the rest. Dropped once the message is acknowledged.
	acked map[uint64]map[string]bool
	// pause: the ESME asked to slow down (esmePause).
	pause esmePause
}

func newRouter(g *Gateway) *router {
	return &router{g: g, set: newForwarders[*forwarder]()}
}

func (r *router) attach(account string, c *smpp.Conn) {
	r.set.attach(r.g.ctx, account,
		func(wake chan struct{}) *forwarder {
			return &forwarder{account: account, wake: wake, inflight: make(map[uint64]struct{}),
				acked: make(map[uint64]map[string]bool), rescan: true,
				hand: newHandOver[*queue.Message](receiptsHandedMax(r.g.cfg.DLRWindow))}
		},
		func(f *forwarder) {
			f.connMu.Lock()
			f.conns = append(f.conns, c)
			f.connMu.Unlock()
		},
		r.run)
}

func (r *router) detach(account string, c *smpp.Conn) {
	r.set.detach(account, func(f *forwarder) bool {
		f.connMu.Lock()
		defer f.connMu.Unlock()
		for i, x := range f.conns {
			if x == c {
				f.conns = append(f.conns[:i:i], f.conns[i+1:]...)
				break
			}
		}
		return len(f.conns) == 0
	})
}

// offer hands account's forwarder, if it runs, the messages whose
// receipts the store has just committed at at, and wakes it. On the
// commit goroutine: it takes no lock a scan holds.
func (r *router) offer(account string, ready []*queue.Message, at queue.Snapshot) {
	if f, ok := r.set.get(account); ok {
		f.hand.put(ready, at)
		f.kick()
	}
}

// receiptsHandedMax bounds a forwarder's handed-over receipts: a few windows'
// worth. Beyond it they are left to a scan of the store.
func receiptsHandedMax(window int) int { return 4 * window }

// pull moves what the store handed over into f.handed; if some did not
// fit, the store must be scanned for it. f.mu held.
func (f *forwarder) pull() {
	var dropped bool
	if f.handed, dropped = f.hand.drain(f.handed); dropped {
		f.rescan = true
	}
}

// takeHanded moves up to room handed-over messages into f.inflight and
// returns them, for when no scan is pending. A message a scan saw is
// dropped: the scan took it, found it in flight, or found it acknowledged
// already (a message is handed over once, at the commit that queued its
// receipt, so one no scan saw was neither sent nor acknowledged). f.mu
// held.
func (f *forwarder) takeHanded(room int) []*queue.Message {
	var out []*queue.Message
	n := 0
	for _, h := range f.handed {
		if len(out) == room {
			break
		}
		n++
		if _, busy := f.inflight[h.v.ID]; busy || h.at <= f.scanned {
			continue
		}
		f.inflight[h.v.ID] = struct{}{}
		out = append(out, h.v)
	}
	f.handed = slices.Delete(f.handed, 0, n)
	return out
}

func (r *router) stop() { r.set.stop() }

func (f *forwarder) kick() { wakeUp(f.wake) }

// conn picks one of the account's binds, round robin, passing over any
// that has ended and is not yet detached; nil when none is up.
func (f *forwarder) conn() *smpp.Conn {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	for range f.conns {
		f.rr++
		if c := f.conns[f.rr%len(f.conns)]; !connEnded(c) {
			return c
		}
	}
	return nil
}

// connEnded reports whether c's session has ended (or is ending: its
// context ends first, before its requests fail, and Done after them).
func connEnded(c *smpp.Conn) bool {
	return c.Context().Err() != nil
}

// run is one account's forwarder. The window bounds receipts sent and
// not yet answered (deliver_sm_resp); an answered receipt leaves the
// window at once, and its acknowledgement is committed to the store in a
// batch with others by the acker, off the window: a slot is busy for the
// ESME's round trip only, not for a commit too. A message stays in
// f.inflight — skipped by the scans — from the hand-over or scan that
// gave it until its acknowledgement is committed, or until DLRRetry after
// a failure.
func (r *router) run(ctx context.Context, f *forwarder) {
	g := r.g
	window := g.cfg.DLRWindow
	jobs := make(chan *queue.Message, window) // never full: at most window are sending
	acks := make(chan ackedDLR, window)
	// The acker outlives the workers: it commits every acknowledgement
	// they hand it, the last ones included, and ends when they have all
	// stopped and acks is closed.
	var workers sync.WaitGroup
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		r.acker(ctx, f, acks)
	}()
	defer func() {
		workers.Wait()
		close(acks)
		<-ackerDone
	}()
	for range window {
		workers.Go(func() { r.worker(ctx, f, jobs, acks, r.deliver) })
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if !g.store.Writable() {
			// The store cannot record an acknowledgement: a receipt sent
			// now would be pending again as soon as the ESME answered,
			// and sent again at the ESME's pace. Wait for a commit to
			// succeed (the dispatcher probes the store: waitWritable).
			if !waitWake(ctx, t, probeEvery, f.wake) {
				return
			}
			continue
		}
		msgs, err := r.next(f, window)
		if err != nil {
			g.log.Error("pending receipts", "account", f.account, "err", err)
		}
		for _, m := range msgs {
			jobs <- m
		}
		// Quiet for DLRRetry: next scans the store anyway (lastScan).
		if !waitWake(ctx, t, g.cfg.DLRRetry, f.wake) {
			return
		}
	}
}

// next puts the receipts to send now in flight and returns them: what the
// store handed over while it holds nothing else pending, else (once there
// is room worth a scan) what a scan of the store finds.
func (r *router) next(f *forwarder, window int) ([]*queue.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pull()
	room := window - f.sending
	if time.Since(f.lastScan) >= r.g.cfg.DLRRetry {
		// Whatever no hand-over or flag accounts for waits one DLRRetry
		// at most, under steady traffic as when idle.
		f.rescan = true
	}
	if !f.rescan {
		// Every pending receipt is handed over or in flight: send what
		// the store handed over, nothing to read back.
		msgs := f.takeHanded(room)
		f.sending += len(msgs)
		return msgs, nil
	}
	if room == 0 || room < refill(window) && f.sending > 0 {
		return nil, nil
	}
	// The store may hold receipts that were not handed over: scan, oldest
	// first, before sending anything handed over, which must not overtake
	// them. Only once a worthwhile share of the window is free (or all of
	// it): each scan skips the whole in-flight set.
	found, at, err := r.g.store.PendingDLRsAt(f.account, room, func(id uint64) bool {
		_, busy := f.inflight[id]
		return busy
	})
	if err != nil {
		return nil, err
	}
	f.scanned, f.lastScan = at, time.Now()
	// Short of room: every pending receipt is in flight now.
	f.rescan = len(found) == room
	for _, m := range found {
		f.inflight[m.ID] = struct{}{}
	}
	f.sending += len(found)
	return found, nil
}

// worker sends the receipts of the messages on jobs, one at a time. An
// answered one goes to the acker; one not answered stays in flight
// (skipped by the scans) until DLRRetry has passed, and then a scan finds
// it again.
func (r *router) worker(ctx context.Context, f *forwarder, jobs <-chan *queue.Message, acks chan<- ackedDLR, deliver deliverFunc) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-jobs:
			if !f.pause.wait(ctx) {
				return // stopping: m stays pending in the store
			}
			sent, ok, gone := deliver(ctx, f, m)
			f.mu.Lock()
			f.sending--
			if !ok && gone {
				// The bind it went to ended: another bind, or the next,
				// takes it now, not at DLRRetry.
				delete(f.inflight, m.ID)
				f.rescan = true
			}
			f.mu.Unlock()
			f.kick() // a slot is free
			if ok {
				// Even when the forwarder is stopping: the ESME has
				// answered, and a receipt whose acknowledgement is
				// dropped here is sent again on its next bind. The
				// acker reads acks until every worker has stopped.
				acks <- ackedDLR{id: m.ID, sent: sent}
				continue
			}
			if gone {
				continue
			}
			time.AfterFunc(r.g.cfg.DLRRetry, func() {
				f.mu.Lock()
				delete(f.inflight, m.ID)
				f.rescan = true
				f.mu.Unlock()
				f.kick()
			})
		}
	}
}

// deliverFunc sends a message's receipts to the ESME: router.deliver.
// gone: not answered because the bind it went to ended.
type deliverFunc func(ctx context.Context, f *forwarder, m *queue.Message) (sent int, answered, gone bool)

// ackedDLR is a message whose receipts the ESME answered: sent is how
// many receipts went out (for the metrics, counted once committed).
type ackedDLR struct {
	id   uint64
	sent int
}

// maxAckBatch bounds one commit of acknowledgements.
const maxAckBatch = 512

// acker commits the acknowledgements of answered receipts, as many as are
// waiting in one store operation, and then lets their messages leave
// f.inflight. A failed commit leaves them pending in the store: they are
// sent again (receipts are at-least-once). It ends when acks is closed
// (the workers have stopped), having committed every acknowledgement
// sent on it: those of a stopping forwarder too.
func (r *router) acker(ctx context.Context, f *forwarder, acks <-chan ackedDLR) {
	batch := make([]ackedDLR, 0, maxAckBatch)
	ids := make([]uint64, 0, maxAckBatch)
	for {
		a, ok := <-acks
		if !ok {
			return
		}
		batch = append(batch[:0], a)
	drain:
		for len(batch) < maxAckBatch {
			select {
			case a, ok := <-acks:
				if !ok {
					break drain // committed below; the next receive ends the loop
				}
				batch = append(batch, a)
			default:
				break drain
			}
		}
		ids = ids[:0]
		sent := 0
		for _, a := range batch {
			ids = append(ids, a.id)
			sent += a.sent
		}
		// A record: the acknowledgements are off the window, so holding
		// them for company in the store (store.record_delay, or
		// commit_delay if longer) slows no receipt; acks arriving
		// meanwhile wait in their channel.
		err := r.g.store.AckDLRs(r.g.store.Record(context.WithoutCancel(ctx)), f.account, ids)
		if err != nil {
			r.g.log.Error("ack receipts", "account", f.account, "n", len(ids), "err", err)
		} else {
			r.g.metrics.dlrForward.WithLabelValues("ok").Add(float64(sent))
		}
		f.mu.Lock()
		for _, id := range ids {
			delete(f.inflight, id)
			delete(f.acked, id)
		}
		if err != nil {
			// Still pending in the store, and neither handed over nor in
			// flight any more: only a scan finds them again.
			f.rescan = true
		}
		f.mu.Unlock()
		f.kick()
	}
}

// deliver sends a message's receipts — one, or one per alias for a
// message the ESME split itself — and reports how many went out and
// whether the ESME answered every one (then the acker records it). false
// means it must be tried again later; receipts already answered are not
// sent again by this forwarder (a restart or another bind may repeat
// them: receipts are at-least-once).
func (r *router) deliver(ctx context.Context, f *forwarder, m *queue.Message) (int, bool, bool) {
	c := f.conn()
	if c == nil {
		return 0, false, false
	}
	sent := 0
	for _, rc := range ReceiptsFor(m) {
		f.mu.Lock()
		done := f.acked[m.ID][rc.ID]
		f.mu.Unlock()
		if done {
			continue
		}
		p := smpp.NewReceiptPDU(r.g.inReceiptZone(rc), m.Dest, m.Source, m.DestTON, m.DestNPI, m.SourceTON, m.SourceNPI)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.Request(rctx, p)
		cancel()
		throttled := f.pause.answered(err, time.Now(), r.g.cfg.RetryMin, r.g.cfg.RetryMax)
		switch {
		case throttled:
			r.g.metrics.dlrForward.WithLabelValues(dlrForwardThrottled).Inc()
			return sent, false, false
		case refusedForGood(err):
			// Answered, and for good: SMPP 3.4 §5.1.3 has ESME_RX_P_APPN
			// (a permanent error) and ESME_RX_R_APPN (the ESME rejects
			// the message) beside ESME_RX_T_APPN (temporary: send it
			// again later). Sent again, it would get the same answer every
			// DLRRetry for ever; it is acknowledged instead, as answered,
			// and counted refused.
			r.g.metrics.dlrForward.WithLabelValues(dlrForwardRefused).Inc()
			r.g.log.Debug("receipt refused by the ESME", "account", f.account, "id", rc.ID, "err", err)
		case err != nil:
			r.g.metrics.dlrForward.WithLabelValues("error").Inc()
			return sent, false, connEnded(c)
		default:
			sent++
		}
		if len(m.Aliases) > 1 {
			f.mu.Lock()
			if f.acked[m.ID] == nil {
				f.acked[m.ID] = make(map[string]bool)
			}
			f.acked[m.ID][rc.ID] = true
			f.mu.Unlock()
		}
	}
	return sent, true, false
}

// dlrForwardRefused is the outcome of qxtd_dlrs_forwarded_total for a
// receipt the ESME refused for good (refusedForGood), dlrForwardThrottled
// for one it answered ESME_RTHROTTLED or ESME_RMSGQFUL (esmePause).
const (
	dlrForwardRefused   = "refused"
	dlrForwardThrottled = "throttled"
)

// refusedForGood reports whether err is an ESME's deliver_sm_resp saying
// it will never take the deliver_sm (§5.1.3): ESME_RX_P_APPN or
// ESME_RX_R_APPN. Any other error is worth another try: ESME_RX_T_APPN
// asks for one, and a timeout, a lost connection or another status
// (ESME_RSYSERR …) may pass.
func refusedForGood(err error) bool {
	var st pdu.Status
	return errors.As(err, &st) && (st == smpp.StatusRxPApp || st == smpp.StatusRxRApp)
}

// ReceiptsFor is every receipt an ESME gets for a message: ReceiptFor's,
// or for a message the ESME split itself one per part id it was given
// (Aliases) whose submit_sm asked for one (Kannel asks on the first part
// only, other clients on the last), each with the message's state.
func ReceiptsFor(m *queue.Message) []smpp.Receipt {
	rc := ReceiptFor(m)
	if len(m.Aliases) == 0 {
		return []smpp.Receipt{rc}
	}
	out := make([]smpp.Receipt, 0, len(m.Aliases))
	for i, a := range m.Aliases {
		if m.AliasWantsDLR(i) {
			rc.ID = FormatID(a)
			out = append(out, rc)
		}
	}
	return out
}

// inReceiptZone is rc with its dates in Config.ReceiptZone: the receipt
// text carries the clock time only, so the zone decides what it says.
func (g *Gateway) inReceiptZone(rc smpp.Receipt) smpp.Receipt {
	rc.SubmitDate, rc.DoneDate = g.inZone(rc.SubmitDate), g.inZone(rc.DoneDate)
	return rc
}

func (g *Gateway) inZone(t time.Time) time.Time {
	if g.cfg.ReceiptZone == nil || t.IsZero() {
		return t
	}
	return t.In(g.cfg.ReceiptZone)
}

// ReceiptFor is the receipt an ESME gets for a message: one per message
// (the id it got in submit_sm_resp), delivered only if every segment was.
func ReceiptFor(m *queue.Message) smpp.Receipt {
	id := m.ID
	if m.Group != 0 {
		id = m.Group // the submit_multi's id, which the client knows
	}
	rc := smpp.Receipt{
		ID:         FormatID(id),
		Sub:        1,
		SubmitDate: m.AcceptedAt,
		State:      smpp.StateDelivered,
		Err:        "000",
		Text:       m.Text,
	}
	for _, p := range m.Parts {
		if p.DoneAt.After(rc.DoneDate) {
			rc.DoneDate = p.DoneAt
		}
		if p.State != queue.StateDelivered && rc.State == smpp.StateDelivered {
			rc.State = wireState(p.State)
			if p.ErrCode != "" {
				rc.Err = p.ErrCode
			}
		}
	}
	if rc.State == smpp.StateDelivered {
		rc.Dlvrd = 1
	}
	if rc.DoneDate.IsZero() {
		rc.DoneDate = time.Now()
	}
	return rc
}

func wireState(s queue.State) smpp.MessageState {
	switch s {
	case queue.StateDelivered:
		return smpp.StateDelivered
	case queue.StateExpired:
		return smpp.StateExpired
	case queue.StateUndeliverable:
		return smpp.StateUndeliverable
	case queue.StateRejected:
		return smpp.StateRejected
	case queue.StateCancelled:
		return smpp.StateDeleted // cancel_sm / HTTP cancel (§5.2.28: DELETED)
	case queue.StateAccepted, queue.StateSubmitted:
		return smpp.StateEnroute
	}
	return smpp.StateUnknown
}

package gateway

import (
	"context"
	"sync"
	"time"

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
	conns   []*smpp.Conn
	wake    chan struct{}

	mu       sync.Mutex
	inflight map[uint64]struct{}
	rr       int
	// acked holds, per message with several receipts (Aliases), the
	// receipt ids the ESME acknowledged while another was not: a retry
	// sends only the rest. Dropped once the message is acknowledged.
	acked map[uint64]map[string]bool
}

func newRouter(g *Gateway) *router {
	return &router{g: g, set: newForwarders[*forwarder]()}
}

func (r *router) attach(account string, c *smpp.Conn) {
	r.set.attach(r.g.ctx, account,
		func(wake chan struct{}) *forwarder {
			return &forwarder{account: account, wake: wake, inflight: make(map[uint64]struct{}),
				acked: make(map[uint64]map[string]bool)}
		},
		func(f *forwarder) {
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
		},
		r.run)
}

func (r *router) detach(account string, c *smpp.Conn) {
	r.set.detach(account, func(f *forwarder) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, x := range f.conns {
			if x == c {
				f.conns = append(f.conns[:i:i], f.conns[i+1:]...)
				break
			}
		}
		return len(f.conns) == 0
	})
}

func (r *router) kick(account string) { r.set.kick(account) }

func (r *router) stop() { r.set.stop() }

func (f *forwarder) kick() { wakeUp(f.wake) }

func (f *forwarder) conn() *smpp.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.conns) == 0 {
		return nil
	}
	f.rr++
	return f.conns[f.rr%len(f.conns)]
}

func (r *router) run(ctx context.Context, f *forwarder) {
	g := r.g
	window := g.cfg.DLRWindow
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		room := window - len(sem)
		var msgs []*queue.Message
		if room > 0 {
			var err error
			f.mu.Lock()
			msgs, err = g.store.PendingDLRs(f.account, room, func(id uint64) bool {
				_, busy := f.inflight[id]
				return busy
			})
			for _, m := range msgs {
				f.inflight[m.ID] = struct{}{}
			}
			f.mu.Unlock()
			if err != nil {
				g.log.Error("pending receipts", "account", f.account, "err", err)
			}
		}
		for _, m := range msgs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ok := r.deliver(ctx, f, m)
				if !ok {
					// Not acknowledged: keep it in flight (so the scan
					// skips it) until the retry delay has passed.
					rt := time.NewTimer(g.cfg.DLRRetry)
					select {
					case <-rt.C:
					case <-ctx.Done():
						rt.Stop()
					}
				}
				f.mu.Lock()
				delete(f.inflight, m.ID)
				f.mu.Unlock()
				f.kick()
			}()
		}
		if !waitWake(ctx, t, g.cfg.DLRRetry, f.wake) {
			return
		}
	}
}

// deliver sends a message's receipts — one, or one per alias for a
// message the ESME split itself — and, once the ESME acknowledged every
// one, removes the message from the pending receipts. false means it must
// be tried again later; receipts already acknowledged are not sent again
// by this forwarder (a restart or another bind may repeat them: receipts
// are at-least-once).
func (r *router) deliver(ctx context.Context, f *forwarder, m *queue.Message) bool {
	c := f.conn()
	if c == nil {
		return false
	}
	sent := 0
	for _, rc := range ReceiptsFor(m) {
		f.mu.Lock()
		done := f.acked[m.ID][rc.ID]
		f.mu.Unlock()
		if done {
			continue
		}
		p := smpp.NewReceiptPDU(rc, m.Dest, m.Source, m.DestTON, m.DestNPI, m.SourceTON, m.SourceNPI)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.Request(rctx, p)
		cancel()
		if err != nil {
			r.g.metrics.dlrForward.WithLabelValues("error").Inc()
			return false
		}
		sent++
		if len(m.Aliases) > 1 {
			f.mu.Lock()
			if f.acked[m.ID] == nil {
				f.acked[m.ID] = make(map[string]bool)
			}
			f.acked[m.ID][rc.ID] = true
			f.mu.Unlock()
		}
	}
	if err := r.g.store.AckDLR(context.WithoutCancel(ctx), f.account, m.ID); err != nil {
		r.g.log.Error("ack receipt", "account", f.account, "id", m.ID, "err", err)
		return false
	}
	f.mu.Lock()
	delete(f.acked, m.ID)
	f.mu.Unlock()
	r.g.metrics.dlrForward.WithLabelValues("ok").Add(float64(sent))
	return true
}

// ReceiptsFor is every receipt an ESME gets for a message: ReceiptFor's,
// or for a message the ESME split itself one per part id it was given
// (Aliases), each with the message's state.
func ReceiptsFor(m *queue.Message) []smpp.Receipt {
	rc := ReceiptFor(m)
	if len(m.Aliases) == 0 {
		return []smpp.Receipt{rc}
	}
	out := make([]smpp.Receipt, len(m.Aliases))
	for i, a := range m.Aliases {
		out[i] = rc
		out[i].ID = FormatID(a)
	}
	return out
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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// upstream is one SMSC: N persistent binds, each with its own window,
// sharing one TPS cap and one throttle pause.
type upstream struct {
	g       *Gateway
	cfg     UpstreamConfig
	clients []*smpp.Client
	limiter *rate.Limiter // nil = no cap
	jobs    chan queue.Job
	up      atomic.Int32
	// pausedUntil (unix nanos) holds every bind back after the SMSC said
	// it is throttled or its queue is full.
	pausedUntil atomic.Int64

	lateMu sync.Mutex
	late   map[pdu.Body]lateReq // requests that timed out, for late answers
}

// Defaults of UpstreamConfig: a field left zero (or negative) takes
// these. cmd/qxtd's configuration defaults refer to them.
const (
	DefaultBinds       = 1
	DefaultWindow      = 10
	DefaultRespTimeout = 10 * time.Second
	DefaultEnquireLink = 30 * time.Second
)

func newUpstream(g *Gateway, cfg UpstreamConfig) *upstream {
	if cfg.Binds <= 0 {
		cfg.Binds = DefaultBinds
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.RespTimeout <= 0 {
		cfg.RespTimeout = DefaultRespTimeout
	}
	if cfg.EnquireLink <= 0 {
		cfg.EnquireLink = DefaultEnquireLink
	}
	u := &upstream{
		g:    g,
		cfg:  cfg,
		jobs: make(chan queue.Job, cfg.Binds*cfg.Window),
		late: make(map[pdu.Body]lateReq),
	}
	if cfg.TPS > 0 {
		u.limiter = rate.NewLimiter(rate.Limit(cfg.TPS), max(1, int(cfg.TPS/10)))
	}
	log := g.log.With("upstream", cfg.Name)
	for range cfg.Binds {
		u.clients = append(u.clients, smpp.NewClient(smpp.ClientOptions{
			Addr:       cfg.Addr,
			SystemID:   cfg.SystemID,
			Password:   cfg.Password,
			SystemType: cfg.SystemType,
			Kind:       smpp.BindTransceiver,
			Handler:    smpp.HandlerFunc(u.handleSMSC),
			Conn: smpp.ConnOptions{
				Window:         cfg.Window,
				RespTimeout:    cfg.RespTimeout,
				EnquireLink:    cfg.EnquireLink,
				OnLateResponse: u.lateResponse,
			},
			OnState: func(up bool) {
				if up {
					u.up.Add(1)
				} else {
					u.up.Add(-1)
					g.metrics.reconnects.WithLabelValues(cfg.Name).Inc()
				}
			},
			Logger: log,
		}))
	}
	return u
}

func (u *upstream) upCount() int { return int(u.up.Load()) }

// capacity is how many segments this upstream can take at once.
func (u *upstream) capacity() int { return u.cfg.Binds * u.cfg.Window }

func (u *upstream) start(ctx context.Context, wg *sync.WaitGroup) {
	for _, c := range u.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(ctx)
		}()
	}
	// One worker per window slot: each carries one segment from the
	// queue to its submit_sm_resp, on whichever bind is up.
	for i := range u.capacity() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.work(ctx, i)
		}()
	}
}

func (u *upstream) work(ctx context.Context, i int) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-u.jobs:
			u.send(ctx, u.pick(i), j)
		}
	}
}

// pick prefers a bind that is up, starting from the worker's own so the
// load spreads; with none up it returns the worker's own, whose Submit
// waits for the reconnect.
func (u *upstream) pick(i int) *smpp.Client {
	n := len(u.clients)
	for k := range n {
		if c := u.clients[(i+k)%n]; c.Up() {
			return c
		}
	}
	return u.clients[i%n]
}

// send submits one segment and records the outcome durably. Whatever
// happens, the job leaves the dispatcher's in-flight set.
func (u *upstream) send(ctx context.Context, c *smpp.Client, j queue.Job) {
	g := u.g
	defer g.disp.done(j.Key)
	now := time.Now()
	if !j.Msg.ValidUntil.IsZero() && now.After(j.Msg.ValidUntil) {
		u.record(g.store.Fail(ctx, j.Key, queue.StateExpired, "validity", now))
		return
	}
	if !u.waitTurn(ctx) {
		return // shutting down: the segment stays due in the store
	}
	p, err := u.buildPDU(j)
	if err != nil {
		// A stored message that cannot be framed will never be: fail it
		// rather than retry forever.
		g.log.Error("cannot frame stored message", "id", j.Key.String(), "err", err)
		u.record(g.store.Fail(context.WithoutCancel(ctx), j.Key, queue.StateRejected, "frame", time.Now()))
		return
	}
	start := time.Now()
	resp, err := c.Submit(ctx, p)
	g.metrics.submitLatency.WithLabelValues(u.cfg.Name).Observe(time.Since(start).Seconds())
	var st pdu.Status
	switch {
	case err == nil:
		id := smpp.Str(resp, pdufield.MessageID)
		g.metrics.relayed.WithLabelValues(u.cfg.Name).Inc()
		u.record(g.store.Submitted(context.WithoutCancel(ctx), j.Key, id, time.Now()))
	case errors.Is(err, smpp.ErrTimeout):
		// The SMSC may have the message: remember the request so a late
		// submit_sm_resp is still recorded, and try again only after a
		// grace period long enough for that answer to come.
		u.rememberLate(p, j.Key)
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "timeout").Inc()
		u.record(g.store.Retry(context.WithoutCancel(ctx), j.Key, time.Now().Add(3*u.cfg.RespTimeout), "timeout"))
	case errors.As(err, &st) && temporary(st):
		u.pause(st)
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, throttleLabel(st)).Inc()
		u.record(g.store.Retry(context.WithoutCancel(ctx), j.Key, time.Now().Add(u.backoff(j.Part.Attempts)), fmt.Sprintf("0x%08x", uint32(st))))
	case errors.As(err, &st):
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "rejected").Inc()
		u.record(g.store.Fail(context.WithoutCancel(ctx), j.Key, queue.StateRejected, fmt.Sprintf("0x%08x", uint32(st)), time.Now()))
	case ctx.Err() != nil:
		// Shutting down while the request was out: it stays due.
	default:
		// Connection lost with the request possibly written: retry.
		g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "connection").Inc()
		u.record(g.store.Retry(context.WithoutCancel(ctx), j.Key, time.Now().Add(u.g.cfg.RetryMin), "connection"))
	}
}

func (u *upstream) record(err error) {
	if err != nil && !errors.Is(err, queue.ErrClosed) {
		u.g.log.Error("store update", "upstream", u.cfg.Name, "err", err)
	}
}

// lateResponse records a submit_sm_resp that came after its timeout.
func (u *upstream) lateResponse(req, resp pdu.Body) {
	u.lateMu.Lock()
	lr, ok := u.late[req]
	key := lr.key
	delete(u.late, req)
	u.lateMu.Unlock()
	if !ok || req.Header().ID != pdu.SubmitSMID || resp.Header().Status != 0 {
		return
	}
	id := smpp.Str(resp, pdufield.MessageID)
	u.g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "late_ok").Inc()
	// Not on the reader goroutine: the store commit may take a while.
	u.g.wg.Add(1)
	go func() {
		defer u.g.wg.Done()
		u.record(u.g.store.Submitted(context.Background(), key, id, time.Now()))
	}()
}

type lateReq struct {
	key queue.Key
	at  time.Time
}

// rememberLate keeps a timed-out request for its late answer. Entries
// older than the retry grace period are useless (the segment was sent
// again) and are dropped here, which keeps the map bounded.
func (u *upstream) rememberLate(p pdu.Body, k queue.Key) {
	now := time.Now()
	u.lateMu.Lock()
	defer u.lateMu.Unlock()
	for req, lr := range u.late {
		if now.Sub(lr.at) > 3*u.cfg.RespTimeout {
			delete(u.late, req)
		}
	}
	u.late[p] = lateReq{key: k, at: now}
}

func temporary(st pdu.Status) bool {
	switch st {
	case smpp.StatusThrottled, smpp.StatusMsgQueueFull, smpp.StatusSystemError:
		return true
	}
	return false
}

func throttleLabel(st pdu.Status) string {
	switch st {
	case smpp.StatusThrottled:
		return "throttled"
	case smpp.StatusMsgQueueFull:
		return "queue_full"
	}
	return "system_error"
}

func (u *upstream) backoff(attempts int) time.Duration {
	d := u.g.cfg.RetryMin << min(attempts, 16)
	if d <= 0 || d > u.g.cfg.RetryMax {
		d = u.g.cfg.RetryMax
	}
	return d
}

// pause holds the whole upstream back for a moment after a throttle.
func (u *upstream) pause(pdu.Status) {
	until := time.Now().Add(u.g.cfg.RetryMin).UnixNano()
	for {
		cur := u.pausedUntil.Load()
		if cur >= until || u.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitTurn waits out a throttle pause and the TPS cap.
func (u *upstream) waitTurn(ctx context.Context) bool {
	if d := time.Until(time.Unix(0, u.pausedUntil.Load())); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	if u.limiter != nil {
		return u.limiter.Wait(ctx) == nil
	}
	return true
}

func (u *upstream) buildPDU(j queue.Job) (pdu.Body, error) {
	m := j.Msg
	parts := make([][]byte, len(m.Parts))
	for i := range m.Parts {
		parts[i] = m.Parts[i].Body
	}
	// The message was split for the options of its time; framing uses
	// the concatenation mode stored with it, not today's configuration.
	opt := u.cfg.Segment
	opt.Concat = segment.Concat(m.Concat)
	frames, err := segment.BuildFrames(m.DataCoding, parts, m.Ref, opt)
	if err != nil {
		return nil, err
	}
	if int(j.Key.Part) >= len(frames) {
		return nil, fmt.Errorf("part %d of %d frames", j.Key.Part, len(frames))
	}
	fr := frames[j.Key.Part]
	p := pdu.NewSubmitSM(nil)
	f := p.Fields()
	_ = f.Set(pdufield.SourceAddrTON, m.SourceTON)
	_ = f.Set(pdufield.SourceAddrNPI, m.SourceNPI)
	_ = f.Set(pdufield.SourceAddr, m.Source)
	_ = f.Set(pdufield.DestAddrTON, m.DestTON)
	_ = f.Set(pdufield.DestAddrNPI, m.DestNPI)
	_ = f.Set(pdufield.DestinationAddr, m.Dest)
	_ = f.Set(pdufield.ESMClass, fr.ESMClass)
	_ = f.Set(pdufield.DataCoding, fr.DataCoding)
	// Receipts are always requested upstream: billing needs them even
	// when the ESME asked for none.
	_ = f.Set(pdufield.RegisteredDelivery, uint8(1))
	_ = f.Set(pdufield.ShortMessage, fr.ShortMessage)
	for tag, v := range fr.TLVs {
		_ = p.TLVFields().Set(pdutlv.Tag(tag), v)
	}
	return p, nil
}

// handleSMSC answers what the SMSC sends us: receipts (deliver_sm or
// data_sm with a receipt esm_class). The response goes out only after the
// receipt is stored, so a crash makes the SMSC send it again.
func (u *upstream) handleSMSC(ctx context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
	var resp pdu.Body
	switch p.Header().ID {
	case pdu.DeliverSMID:
		resp = pdu.NewDeliverSMResp()
	case pdu.DataSMID:
		resp = smpp.NewPDU(pdu.DataSMRespID)
	default:
		return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
	}
	r, err := smpp.ParseReceipt(p)
	if errors.Is(err, smpp.ErrNotReceipt) {
		// Mobile-originated messages have no route to an ESME yet: say so
		// in the log and accept, so the SMSC does not retry forever.
		u.g.log.Warn("mobile-originated message dropped: MO routing not implemented",
			"upstream", u.cfg.Name, "from", smpp.Str(p, pdufield.SourceAddr))
		return resp
	}
	if err != nil {
		u.g.log.Warn("unreadable receipt", "upstream", u.cfg.Name, "err", err)
		return resp
	}
	state, final := receiptState(r.State)
	if !final {
		return resp // an intermediate notification changes nothing we bill
	}
	// DoneAt is our receipt time, not the SMSC's done date: the billing
	// month must follow a clock we trust, and the SMSC's has minutes only.
	now := time.Now()
	res, submitted, err := u.g.store.ApplyDLRSubmitted(ctx, queue.DLR{
		Upstream: u.cfg.Name, SMSCID: r.ID, State: state, ErrCode: r.Err, DoneAt: now,
	})
	if err != nil {
		u.g.log.Error("store receipt", "upstream", u.cfg.Name, "err", err)
		resp.Header().Status = smpp.StatusSystemError
		return resp
	}
	u.g.metrics.dlrs.WithLabelValues(state.String(), res.String()).Inc()
	if res == queue.Matched && !submitted.IsZero() {
		u.g.metrics.dlrDelay.WithLabelValues(u.cfg.Name).Observe(now.Sub(submitted).Seconds())
	}
	return resp
}

func receiptState(s smpp.MessageState) (queue.State, bool) {
	switch s {
	case smpp.StateDelivered:
		return queue.StateDelivered, true
	case smpp.StateExpired:
		return queue.StateExpired, true
	case smpp.StateUndeliverable:
		return queue.StateUndeliverable, true
	case smpp.StateRejected:
		return queue.StateRejected, true
	case smpp.StateDeleted, smpp.StateUnknown:
		return queue.StateUnknown, true
	}
	return 0, false
}

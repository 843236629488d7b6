package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// upstream is one SMSC: N persistent binds, each with its own window and
// its own adaptive pace (pace.go), sharing one TPS cap. The binds send
// and receive (transceivers), or send only (transmitters) beside
// receivers of their own (UpstreamConfig.Receivers) or the SMSC's
// outbinds (outbind.go).
type upstream struct {
	g       *Gateway
	cfg     UpstreamConfig
	clients []*smpp.Client // the binds that send
	paces   []*pace        // one per bind, same index as clients
	bound   []atomic.Bool  // one per bind, same index: up now
	// receivers are the binds that only receive (bind_receiver): none
	// when the binds are transceivers.
	receivers []*smpp.Client
	rxUp      atomic.Int32 // receivers up now
	outbound  atomic.Int32 // sessions bound after the SMSC's outbind now (outbind.go)
	// obSessions are those sessions, with when each bound.
	obMu       sync.Mutex
	obSessions map[*smpp.Conn]time.Time
	limiter    *rate.Limiter // nil = no cap
	jobs       chan queue.Job
	up         atomic.Int32
	busy       atomic.Int32 // workers carrying a segment (work)
	// orphansFull is set while this upstream's unmatched receipts are at
	// store.max_orphans: one warning when it begins, one line when it ends.
	orphansFull atomic.Bool
	// unreadable: a receipt or acknowledgement that could not be read came
	// from this upstream (warned once, then at debug level).
	unreadable atomic.Bool
	upMu       sync.Mutex
	upSig      chan struct{} // closed when a bind comes up (waitUp)
	// downSince is when the last bind went down (UnixNano; at start, when
	// the upstream was made), 0 while one is up: route's failover.
	downSince atomic.Int64
	// routedAround is set once a message was routed around it in this
	// outage (one log line when it begins, one when it ends).
	routedAround atomic.Bool
	// hasFailover: another upstream serves one of its carriers
	// (markFailovers); without one it is never routed around.
	hasFailover bool
	// nowhereSince is downSince for the whole cluster: since when no
	// node has had a bind of it up (UnixNano), 0 while one has
	// (failover.go keeps it; in cluster mode only).
	nowhereSince atomic.Int64

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
	// DefaultReconnectMax caps the wait between two attempts to bind
	// again, so every bind is back within about that long of the SMSC's
	// return.
	DefaultReconnectMax = 2 * time.Second
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
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	if cfg.ReceiptIDs == "" {
		cfg.ReceiptIDs = ReceiptIDsAuto
	}
	u := &upstream{
		g:     g,
		cfg:   cfg,
		jobs:  make(chan queue.Job, cfg.Binds*cfg.Window),
		upSig: make(chan struct{}),
		late:  make(map[pdu.Body]lateReq),

		obSessions: make(map[*smpp.Conn]time.Time),
	}
	u.downSince.Store(time.Now().UnixNano())
	if cfg.TPS > 0 {
		u.limiter = rate.NewLimiter(rate.Limit(cfg.TPS), max(1, int(cfg.TPS/10)))
	}
	log := g.log.With("upstream", cfg.Name)
	kind := smpp.BindTransceiver
	if cfg.Receivers > 0 || cfg.Transmitters {
		kind = smpp.BindTransmitter
	}
	u.bound = make([]atomic.Bool, cfg.Binds)
	for i := range cfg.Binds {
		u.paces = append(u.paces, newPace(cfg.TPS))
		u.clients = append(u.clients, u.newClient(kind, log, func(up bool) {
			u.bound[i].Store(up)
			if up {
				if u.up.Add(1) == 1 {
					u.downSince.Store(0)
					u.nowhereSince.Store(0)
					g.upChanged()
					if u.routedAround.Swap(false) {
						g.log.Info("upstream back: new messages for its carriers go to it again", "upstream", cfg.Name)
					}
				}
				u.upMu.Lock()
				close(u.upSig)
				u.upSig = make(chan struct{})
				u.upMu.Unlock()
			} else if u.up.Add(-1) == 0 {
				u.downSince.Store(time.Now().UnixNano())
				g.upChanged()
			}
		}))
	}
	for i := range cfg.Receivers {
		u.receivers = append(u.receivers, u.newClient(smpp.BindReceiver, log.With("receiver", i), func(up bool) {
			if up {
				u.rxUp.Add(1)
			} else {
				u.rxUp.Add(-1)
			}
		}))
	}
	return u
}

// newClient is one bind of the upstream, of kind. Every kind handles the
// SMSC's requests: a transmitter should get no receipt or reply (SMPP 3.4
// §2.2.1), but one that does is answered and its receipt kept all the
// same.
func (u *upstream) newClient(kind smpp.BindKind, log *slog.Logger, onState func(up bool)) *smpp.Client {
	cfg := u.cfg
	var onBindLost func(time.Time)
	if kind == smpp.BindTransmitter {
		onBindLost = u.rebindReceivers
	}
	return smpp.NewClient(smpp.ClientOptions{
		OnBindLost: onBindLost,
		MaxBackoff: cfg.ReconnectMax,
		Addr:       cfg.Addr,
		Dial:       cfg.Dial,
		SystemID:   cfg.SystemID,
		Password:   cfg.Password,
		SystemType: cfg.SystemType,
		Kind:       kind,
		Handler:    smpp.HandlerFunc(u.handleSMSC),
		Conn: smpp.ConnOptions{
			Window:         cfg.Window,
			RespTimeout:    cfg.RespTimeout,
			EnquireLink:    cfg.EnquireLink,
			OnLateResponse: u.lateResponse,
		},
		OnState: func(up bool) {
			onState(up)
			if !up {
				u.g.metrics.reconnects.WithLabelValues(cfg.Name).Inc()
			}
		},
		Logger: log,
	})
}

func (u *upstream) upCount() int { return int(u.up.Load()) }

// routedAroundAt reports whether, at now, u has had no bind up for
// FailoverAfter, so that route passes it by. In a cluster, no bind up on
// any node: a node holding none of its binds sends through those that
// do (failover.go).
func (u *upstream) routedAroundAt(now time.Time) bool {
	after := u.g.cfg.FailoverAfter
	if after <= 0 || !u.hasFailover {
		return false
	}
	since := u.downSince.Load()
	if u.g.cfg.Cluster != nil {
		since = u.nowhereSince.Load()
	}
	return since != 0 && now.Sub(time.Unix(0, since)) >= after
}

// rebindReceivers takes down the receivers, and the sessions of the
// SMSC's outbinds, that bound before at, when a transmitter found at that
// the SMSC had lost its bind: an SMSC that restarted or failed over
// behind connections that stayed up lost theirs too, and a receiver sends
// nothing that the SMSC could refuse (an SMSC may even answer its
// enquire_link OK), so its receipts and replies would wait at the SMSC
// while qxtd counted it up. Those bound since are left alone.
func (u *upstream) rebindReceivers(at time.Time) {
	for _, c := range u.receivers {
		c.Rebind(at)
	}
	u.endOutbindsBefore(at) // outbind.go
}

// unavailable reports whether u cannot send now: no bind of it is up
// here and, in a cluster that relays submits, none on any node either.
// The dispatcher hands such an upstream nothing (upRoom); a bind coming
// up kicks it (upChanged, watchUpstreams).
func (u *upstream) unavailable() bool {
	if u.upCount() > 0 {
		return false
	}
	if u.g.cfg.SubmitRelay == nil {
		return true
	}
	return u.nowhereSince.Load() != 0 // kept in cluster mode (watchUpstreams)
}

// waitUp waits until at least one bind is up; false when ctx ended.
func (u *upstream) waitUp(ctx context.Context) bool {
	for {
		u.upMu.Lock()
		sig := u.upSig
		u.upMu.Unlock()
		if u.upCount() > 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-sig:
		}
	}
}

func (u *upstream) paceSum() float64 {
	var sum float64
	for i, p := range u.paces {
		// Only the binds up send: one down (or, in a cluster, held by
		// another node) adds nothing to what this node can send now.
		if u.bound[i].Load() {
			sum += p.current()
		}
	}
	return sum
}

// capacity is how many segments this upstream has on the wire at once:
// its binds' windows (each smpp.Conn holds a request to its window).
func (u *upstream) capacity() int { return u.cfg.Binds * u.cfg.Window }

// workers is how many segments this upstream carries at once: its
// windows' worth on the wire, and UpstreamConfig.RecordingSlots more that
// the SMSC has answered and whose outcome waits for its commit. A worker
// keeps its segment until the outcome is recorded (send), so with no
// recording slots a window slot stands idle for a commit (a millisecond
// or more) after every answer: on a fast link with a small window the
// store, not the SMSC, sets the pace. The slots are not the default
// because each is one more segment a crash may send twice (queue/doc.go,
// What can duplicate).
func (u *upstream) workers() int { return u.capacity() + u.cfg.RecordingSlots }

func (u *upstream) start(ctx context.Context, wg *sync.WaitGroup) {
	// The binds outlive the workers: when ctx ends, a segment already on
	// the wire is still answered on its bind and its outcome recorded
	// (send), and only then are the binds unbound. Unbound with segments
	// out, the SMSC could take them while qxtd keeps them due: sent twice
	// after the restart.
	binds, unbind := context.WithCancel(context.WithoutCancel(ctx))
	run := func(receivers bool, i int, c *smpp.Client) {
		wg.Go(func() {
			if u.g.cfg.Cluster != nil {
				u.runShared(binds, receivers, i, c) // cluster.go: only while this node holds one of the binds
				return
			}
			c.Run(binds)
		})
	}
	for i, c := range u.clients {
		run(false, i, c)
	}
	for i, c := range u.receivers {
		run(true, i, c)
	}
	if u.cfg.Outbind != nil {
		wg.Go(func() { u.serveOutbinds(binds, u.cfg.Outbind) }) // outbind.go
	}
	// Each worker carries one segment from the queue to its recorded
	// outcome, on whichever bind is up; the binds' windows bound how many
	// are on the wire.
	var workers sync.WaitGroup
	for i := range u.workers() {
		workers.Go(func() { u.work(ctx, i) })
	}
	wg.Go(func() {
		workers.Wait()
		unbind()
	})
}

func (u *upstream) work(ctx context.Context, i int) {
	for {
		select {
		case j := <-u.jobs: // one waiting: taken without locking ctx's Done channel, which every worker shares
			u.carry(ctx, i, j)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return
		case j := <-u.jobs:
			u.carry(ctx, i, j)
		}
	}
}

// carry is send, counted in busy.
func (u *upstream) carry(ctx context.Context, worker int, j queue.Job) {
	u.busy.Add(1)
	defer u.busy.Add(-1)
	u.send(ctx, worker, j)
}

// pick prefers a bind that is up, starting from the worker's own so the
// load spreads; with none up it returns the worker's own, whose Submit
// waits for the reconnect.
func (u *upstream) pick(i int) int {
	n := len(u.clients)
	for k := range n {
		if b := (i + k) % n; u.clients[b].Up() {
			return b
		}
	}
	return i % n
}

// maxHeldThrottles is how many times in a row a segment the SMSC
// throttles is tried again at once (paced by its bind) before it goes
// back to the store with a backoff.
const maxHeldThrottles = 16

// maxHeldBindLosses is how many times in a row a segment refused with
// ESME_RINVBNDSTS (the SMSC lost the bind) is tried again at once, on a
// bind up or the next one bound, before it goes back to the store with a
// backoff.
const maxHeldBindLosses = 3

// disabled reports whether the operator disabled enterprise ent
// (Disabling): none of its parts goes to the SMSC until it is enabled.
func (g *Gateway) disabled(ent string) bool {
	dp, ok := g.policy.(Disabling)
	return ok && dp.Disabled(ent)
}

// stoppedSince says why j's part must not go, although its message was
// accepted (Stops): a scheduled campaign, a retry, a message queued
// behind a down upstream, whose number is out of the enterprise's scope,
// opted out or off its whitelist since. The part is failed rejected with
// that reason instead, as a new message to the number would be refused. A
// part of a message another part of which went to the SMSC goes all the
// same: the customer would get half a text. (The parts' copies in j.Msg
// may be a moment old: a part checked in the instant its number is
// stopped, while another part of its message is on its way to the SMSC,
// is stopped, and that half goes.)
func (g *Gateway) stoppedSince(j queue.Job) (policy.Reason, bool) {
	var why policy.Reason
	stop := false
	if us, ok := g.policy.(UserStops); ok && us.UserStopped(j.Msg.Enterprise, j.Msg.Account) {
		why, stop = policy.ReasonAccountDisabled, true
	} else if st, ok := g.policy.(Stops); ok {
		why, stop = st.StopReason(j.Msg.Enterprise, j.Msg.Dest, j.Msg.AcceptedAt)
	}
	if !stop {
		return 0, false
	}
	for i, p := range j.Msg.Parts {
		if i != int(j.Key.Part) && (p.SMSCID != "" || !p.SubmittedAt.IsZero()) {
			return 0, false
		}
	}
	return why, true
}

// send submits one segment and records the outcome durably. Whatever
// happens, the job leaves the dispatcher's in-flight set — but only once
// its outcome is recorded (persist), so a segment the SMSC accepted is
// never due again while its acceptance is not on disk.
func (u *upstream) send(ctx context.Context, worker int, j queue.Job) {
	g := u.g
	gaveBack := false
	defer func() {
		g.disp.done(j.Key)
		if gaveBack {
			// A bind may have come up since: look again.
			g.disp.kick()
		}
	}()
	for throttles, bindLosses := 0, 0; ; {
		now := time.Now()
		if !j.Msg.ValidUntil.IsZero() && now.After(j.Msg.ValidUntil) {
			u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
				return g.store.Fail(ctx, j.Key, queue.StateExpired, "validity", now)
			})
			return
		}
		if g.disabled(j.Msg.Enterprise) {
			// Disabled since the dispatcher took it: back to the store,
			// where it waits (dispatcher.unsendable), unsent, until the
			// enterprise is enabled again.
			return
		}
		if why, stop := g.stoppedSince(j); stop {
			g.metrics.stopped.WithLabelValues(why.String()).Inc()
			if why == policy.ReasonOptedOut {
				g.metrics.optOutStopped.Inc()
			}
			u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
				return g.store.Fail(ctx, j.Key, queue.StateRejected, why.String(), now)
			})
			return
		}
		b := u.pick(worker)
		if !u.clients[b].Up() {
			if u.unavailable() {
				// No bind up here, nor (in a cluster) on any node: back to
				// the store, where the part stays due and the dispatcher
				// leaves it until a bind is up again (upRoom), rather than
				// this worker holding it, and its slot, for the outage.
				gaveBack = true
				return
			}
			if u.upCount() == 0 {
				// In a cluster a node may hold none of the binds: another
				// node sends it (submitrelay.go), or it waits a moment.
				if g.cfg.SubmitRelay != nil && u.relay(ctx, j) {
					return
				}
				u.waitUpFor(ctx, relayPause)
				if ctx.Err() != nil {
					return // shutting down: the segment stays due in the store
				}
			}
			continue
		}
		if !u.waitTurn(ctx, b) {
			return // shutting down: the segment stays due in the store
		}
		p, err := u.buildPDU(j)
		if err != nil {
			// A stored message that cannot be framed will never be: fail it
			// rather than retry forever.
			g.log.Error("cannot frame stored message", "id", j.Key.String(), "err", err)
			u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
				return g.store.Fail(ctx, j.Key, queue.StateRejected, "frame", time.Now())
			})
			return
		}
		if ctx.Err() != nil {
			return // shutting down: the segment stays due in the store
		}
		start := time.Now()
		u.paces[b].sent(start)
		// Once on the wire, the segment's answer is awaited even if qxtd
		// is stopping (at most resp_timeout): taken for unanswered, a
		// segment the SMSC accepts is sent again after the restart.
		resp, err := u.clients[b].SubmitIfUp(context.WithoutCancel(ctx), p)
		if errors.Is(err, smpp.ErrNotBound) || errors.Is(err, smpp.ErrUnsent) {
			// It went down since pick, or while this segment waited for a
			// window slot: nothing reached the SMSC, pick again.
			continue
		}
		g.metrics.submitLatency.WithLabelValues(u.cfg.Name).Observe(time.Since(start).Seconds())
		var st pdu.Status
		switch {
		case err == nil:
			u.paces[b].ok(time.Now())
			id := smpp.Str(resp, pdufield.MessageID)
			g.metrics.relayed.WithLabelValues(u.cfg.Name).Inc()
			rctx := ctx
			if int(u.busy.Load()) < u.workers() {
				// Another worker is idle: this one waiting for company in
				// the store (store.record_delay, or commit_delay if
				// longer) holds up no segment.
				rctx = g.store.Record(ctx)
			}
			u.persist(rctx, j.Key, "submitted", func(ctx context.Context) error {
				return g.store.Submitted(ctx, j.Key, id, time.Now())
			})
		case errors.Is(err, smpp.ErrTimeout):
			// The SMSC may have the message: remember the request so a late
			// submit_sm_resp is still recorded, and try again only after a
			// grace period long enough for that answer to come.
			u.rememberLate(p, j.Key)
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "timeout").Inc()
			u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
				return g.store.Retry(ctx, j.Key, time.Now().Add(3*u.cfg.RespTimeout), "timeout")
			})
		case errors.As(err, &st) && st == smpp.StatusInvalidBindStatus:
			// The SMSC no longer has the bind bound (it restarted or failed
			// over behind a TCP connection that stayed up): the segment was
			// refused, not taken, and the client is binding again
			// (smpp.ErrBindLost). Not a verdict on the message: it is tried
			// again at once on a bind that is up, or the first one back, a
			// few times before it waits in the store.
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, kindBindLost).Inc()
			if bindLosses++; bindLosses < maxHeldBindLosses {
				continue
			}
			u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
				return g.store.Retry(ctx, j.Key, time.Now().Add(u.backoff(j.Part.Attempts)), fmt.Sprintf("0x%08x", uint32(st)))
			})
		case errors.As(err, &st) && flowControl(st):
			// The SMSC asks us to slow down: this bind's pace drops, and
			// the segment is tried again at that pace, without a store
			// write, a few times before it waits in the store.
			u.paces[b].throttled(time.Now())
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, throttleLabel(st)).Inc()
			if throttles++; throttles < maxHeldThrottles {
				continue
			}
			u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
				return g.store.Retry(ctx, j.Key, time.Now().Add(u.backoff(j.Part.Attempts)), fmt.Sprintf("0x%08x", uint32(st)))
			})
		case errors.As(err, &st) && temporary(st):
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, throttleLabel(st)).Inc()
			u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
				return g.store.Retry(ctx, j.Key, time.Now().Add(u.backoff(j.Part.Attempts)), fmt.Sprintf("0x%08x", uint32(st)))
			})
		case errors.As(err, &st):
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "rejected").Inc()
			u.persist(ctx, j.Key, "fail", func(ctx context.Context) error {
				return g.store.Fail(ctx, j.Key, queue.StateRejected, fmt.Sprintf("0x%08x", uint32(st)), time.Now())
			})
		case ctx.Err() != nil:
			// Shutting down, and the bind went with the request out (the
			// SMSC closed, or a second signal): it stays due.
		default:
			// Connection lost with the request possibly written: retry.
			g.metrics.submitErrors.WithLabelValues(u.cfg.Name, "connection").Inc()
			u.persist(ctx, j.Key, "retry", func(ctx context.Context) error {
				return g.store.Retry(ctx, j.Key, time.Now().Add(u.g.cfg.RetryMin), "connection")
			})
		}
		return
	}
}

// Backoff of persist between attempts to record an outcome.
const (
	persistMin = 10 * time.Millisecond
	persistMax = 2 * time.Second
)

// persist records an outcome, trying again with a backoff while the store
// fails to commit (disk full, I/O error), for as long as the gateway runs.
// The caller holds the segment's window slot and in-flight entry
// meanwhile, so what waits to be recorded is bounded by the windows and
// the dispatcher cannot hand the segment out again. An error that a retry
// cannot mend (the part is gone or in another state) is logged once. If
// the gateway stops first, the outcome is lost and the segment is due
// again at the next start (queue/doc.go, What can duplicate).
func (u *upstream) persist(ctx context.Context, k queue.Key, what string, write func(context.Context) error) {
	wait := persistMin
	for tries := 1; ; tries++ {
		err := write(context.WithoutCancel(ctx))
		switch {
		case err == nil, errors.Is(err, queue.ErrNotSynced):
			// Not synced: written all the same (the store reads it, the
			// next commit that syncs keeps it), and a record waits on
			// no one's answer; writing it again would find it done.
			if tries > 1 {
				u.g.log.Info("outcome recorded after store failures", "upstream", u.cfg.Name,
					"id", k.String(), "outcome", what, "tries", tries)
			}
			return
		case errors.Is(err, queue.ErrClosed):
			return
		case errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrState), errors.Is(err, queue.ErrInvalid):
			u.g.log.Error("store update", "id", k.String(), "outcome", what, "err", err)
			return
		}
		u.g.metrics.recordRetries.WithLabelValues(u.cfg.Name).Inc()
		if tries == 1 {
			u.g.log.Warn("cannot record outcome; the segment stays in flight until it is recorded",
				"upstream", u.cfg.Name, "id", k.String(), "outcome", what, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			u.g.log.Warn("outcome not recorded before shutdown; the segment is due again at the next start",
				"upstream", u.cfg.Name, "id", k.String(), "outcome", what)
			return
		}
		wait = min(2*wait, persistMax)
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
		u.persist(u.g.ctx, key, "submitted late", func(ctx context.Context) error {
			return u.g.store.Submitted(ctx, key, id, time.Now())
		})
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

// flowControl: the SMSC is alive and asks us to slow down.
func flowControl(st pdu.Status) bool {
	return st == smpp.StatusThrottled || st == smpp.StatusMsgQueueFull
}

// temporary: worth trying again later.
func temporary(st pdu.Status) bool {
	return flowControl(st) || st == smpp.StatusSystemError
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

// waitTurn waits for bind b's pace and the upstream's TPS cap.
func (u *upstream) waitTurn(ctx context.Context, b int) bool {
	if u.paces[b].wait(ctx) != nil {
		return false
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
	var tlvs []smpp.TLVField
	for tag, v := range fr.TLVs {
		tlvs = append(tlvs, smpp.TLVField{Tag: pdutlv.Tag(tag), Value: v})
	}
	// By tag: the same frame whatever the map's order.
	slices.SortFunc(tlvs, func(a, b smpp.TLVField) int { return cmp.Compare(a.Tag, b.Tag) })
	return smpp.NewSubmitSM(smpp.SM{
		SourceAddrTON: m.SourceTON, SourceAddrNPI: m.SourceNPI, SourceAddr: m.Source,
		DestAddrTON: m.DestTON, DestAddrNPI: m.DestNPI, DestinationAddr: m.Dest,
		ESMClass: fr.ESMClass, DataCoding: fr.DataCoding,
		// Receipts are always requested upstream: billing needs them
		// even when the ESME asked for none.
		RegisteredDelivery: 1,
		PriorityFlag:       u.priorityFlag(m),
		ShortMessage:       fr.ShortMessage,
		TLVs:               tlvs,
	}), nil
}

// priorityFlag is the priority_flag of m's submit_sm to the SMSC: 1 for
// a message sent with priority (queue.Message.Priority, stored with it
// while a part waits) when the upstream passes it on
// (UpstreamConfig.PassPriority), else 0, which every SMSC takes. §5.2.14
// gives 1 a meaning per network (GSM: priority); some carriers refuse or
// bill a non-zero flag, so it is the operator's choice per upstream.
func (u *upstream) priorityFlag(m *queue.Message) uint8 {
	if m.Priority && u.cfg.PassPriority {
		return 1
	}
	return 0
}

// handleSMSC answers what the SMSC sends us: receipts (deliver_sm or
// data_sm with a receipt esm_class) and replies (MO, the others). The
// response goes out only after the receipt or reply is stored, so a crash
// makes the SMSC send it again.
func (u *upstream) handleSMSC(ctx context.Context, conn *smpp.Conn, p pdu.Body) pdu.Body {
	if conn != nil && conn.PeerHasRoom() {
		// The SMSC can send more receipts while this one waits for
		// company in the store (store.record_delay, or commit_delay if
		// longer). A crash repeats none of those held: unanswered, the
		// SMSC sends them again.
		ctx = u.g.store.Record(ctx)
	}
	var resp pdu.Body
	switch p.Header().ID {
	case pdu.DeliverSMID:
		resp = smpp.NewDeliverSMResp()
	case pdu.DataSMID:
		resp = smpp.NewPDU(pdu.DataSMRespID)
	case pdu.AlertNotificationID:
		// SMPP 3.4 §4.12: alert_notification has no response PDU; a
		// generic_nack would answer a request the SMSC does not expect
		// answered. qxtd sets no delivery pending flag (set_dpf), so it
		// has nothing to do with one either.
		return nil
	default:
		return smpp.ErrorResponse(p, smpp.StatusInvalidCommandID)
	}
	r, err := smpp.ParseReceipt(p)
	if errors.Is(err, smpp.ErrNotReceipt) {
		return u.g.receiveMO(ctx, conn, u.cfg.Name, p, resp) // a reply (mo.go)
	}
	if err != nil {
		// An acknowledgement of the handset's (SME delivery or user
		// acknowledgement, §5.2.12), an intermediate notification, or a
		// receipt past reading: answered, so that the SMSC does not send
		// it again, and dropped. Once a warning an upstream, then debug:
		// an SMSC that sends one for every message would fill the log.
		level := slog.LevelDebug
		if !u.unreadable.Swap(true) {
			level = slog.LevelWarn
		}
		u.g.metrics.dlrs.WithLabelValues("unknown", dlrUnreadable).Inc()
		u.g.log.Log(ctx, level, "unreadable receipt or acknowledgement from the SMSC: answered and dropped (later ones at debug level; qxtd_dlrs_received_total{result=\"unreadable\"} counts them)",
			"upstream", u.cfg.Name, "err", err)
		return resp
	}
	state, final := receiptState(r.State, u.cfg.AcceptedFinal)
	if !final {
		return resp // an intermediate notification changes nothing we bill
	}
	// DoneAt is our receipt time, not the SMSC's done date: the billing
	// month must follow a clock we trust, and the SMSC's has minutes only.
	now := time.Now()
	res, submitted, err := u.g.store.ApplyDLRSubmitted(ctx, queue.DLR{
		Upstream: u.cfg.Name, SMSCID: u.cfg.ReceiptIDs.receiptID(r.ID), State: state, ErrCode: r.Err, DoneAt: now,
	})
	if errors.Is(err, queue.ErrOrphansFull) {
		// It matches nothing, and this upstream already has as many such
		// receipts kept as the store allows (store.max_orphans): not
		// kept, so answered "temporary error": the SMSC sends it again
		// later, when room may be made (matched, purged) or its message
		// known.
		u.g.metrics.dlrs.WithLabelValues(state.String(), dlrRefused).Inc()
		if !u.orphansFull.Swap(true) {
			u.g.log.Warn("receipts that match no message are refused for now (ESME_RX_T_APPN): the upstream's unmatched receipts are at store.max_orphans; qxtd_dlrs_received_total{result=\"refused\"} counts them",
				"upstream", u.cfg.Name, "smsc_id", r.ID)
		}
		resp.Header().Status = smpp.StatusRxTApp
		return resp
	}
	if err != nil && ctx.Err() != nil {
		// The connection ended while the receipt waited for its commit
		// (the SMSC dropped it, or qxtd stops): no answer can reach the
		// SMSC, which sends the receipt again on a bind (a copy stored
		// meanwhile is matched again without effect). Not a store
		// failure: "upstream connection lost" says what happened.
		u.g.log.Debug("receipt left unanswered: the connection to the SMSC ended before it was stored",
			"upstream", u.cfg.Name, "smsc_id", r.ID, "err", err)
		return nil
	}
	if err != nil {
		u.g.log.Error("store receipt", "upstream", u.cfg.Name, "err", err)
		resp.Header().Status = smpp.StatusSystemError
		return resp
	}
	u.g.metrics.dlrs.WithLabelValues(state.String(), res.String()).Inc()
	if res == queue.Orphaned {
		u.g.orphanStored() // cluster mode: offer it to the other nodes (peers.go)
		if u.orphansFull.Swap(false) {
			u.g.log.Info("receipts that match no message are kept again", "upstream", u.cfg.Name)
		}
	}
	if res == queue.Matched && !submitted.IsZero() {
		u.g.metrics.dlrDelay.WithLabelValues(u.cfg.Name).Observe(now.Sub(submitted).Seconds())
	}
	return resp
}

// receiptState is the state a receipt ends its message in, and false for
// an intermediate notification (ENROUTE; ACCEPTD unless acceptedFinal).
func receiptState(s smpp.MessageState, acceptedFinal bool) (queue.State, bool) {
	switch s {
	case smpp.StateAccepted:
		return queue.StateUnknown, acceptedFinal
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

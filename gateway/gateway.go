package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// UpstreamConfig is one carrier SMSC.
type UpstreamConfig struct {
	Name       string
	Addr       string
	SystemID   string
	Password   string
	SystemType string
	Binds      int // persistent binds that send
	// Receivers, when above 0, makes the Binds transmitters
	// (bind_transmitter) and adds this many receivers (bind_receiver) for
	// the SMSC's receipts and replies: for an SMSC that takes no
	// transceivers (SMPP 3.3 has none) or a carrier that grants the two
	// kinds apart. 0: every bind is a transceiver, unless Transmitters.
	Receivers int
	// Transmitters makes the Binds transmitters with no receivers: the
	// receipts and replies come by Outbind.
	Transmitters bool
	// Outbind, when set, takes the SMSC's outbinds on its listener (SMPP
	// 3.4 §2.2.1): each is answered with a bind_receiver on the same
	// connection, whose receipts and replies are handled as any bind's.
	Outbind     *OutbindConfig
	Window      int           // outstanding submit_sm per bind
	TPS         float64       // submit_sm per second over all binds; 0 = no cap
	RespTimeout time.Duration // submit_sm_resp wait before the request counts as late
	EnquireLink time.Duration
	// RecordingSlots is how many segments beyond the windows the SMSC may
	// have answered while their outcome waits for the store's commit
	// (upstream.workers): more throughput on a fast link with a small
	// window, and as many more segments a crash may send twice. 0: a
	// window slot is free again only once its outcome is recorded.
	RecordingSlots int
	// ReconnectMax caps the wait between attempts to bind again after a
	// bind is lost or refused (the wait doubles from 200 ms up to it).
	// Default DefaultReconnectMax.
	ReconnectMax time.Duration
	Segment      segment.Options // concatenation and GSM packing this SMSC wants
	// Carriers this upstream serves (policy carrier names); empty: any.
	// A destination goes to the first upstream listing its carrier, else
	// to the first listing none.
	Carriers []string
	// PassPriority sets priority_flag 1 on the submit_sm of a message sent
	// with priority (an ESME's priority_flag 1–3, HTTP "priority"), so that
	// an SMSC that queues by it sends that one first too. Off by default:
	// some carriers refuse or bill a non-zero flag.
	PassPriority bool
	// ReceiptIDs is how the SMSC's receipts give the id its
	// submit_sm_resp gave: ReceiptIDsAuto (the default, ""), ReceiptIDsSame,
	// ReceiptIDsDecimal or ReceiptIDsHex (convert.go).
	ReceiptIDs ReceiptIDs
	// AcceptedFinal takes a receipt with message_state ACCEPTED (6,
	// stat:ACCEPTD) for the message's end, as SMPP 3.4 counts the state
	// final ("read on behalf of the subscriber by customer service"): the
	// message ends unknown (not delivered, not billed). false, the
	// default: an intermediate notification ("accepted, not yet
	// delivered", as many SMSCs mean it and Kannel reads it), and a later
	// receipt settles the message.
	AcceptedFinal bool
	// MORespTimeout is how long this SMSC waits for qxtd's
	// deliver_sm_resp to a reply before it sends the reply again (its own
	// setting; 0: 2 s, moAgainLate). A reply answered later than this
	// (behind a slow disk) is taken as sent again: its next copy within
	// moAgainKeep is answered and not stored.
	MORespTimeout time.Duration
	// Dial opens the connections of its binds; nil is plain TCP (see
	// smpp.ClientOptions.Dial: cmd/qxtd passes a TLS dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// OutbindConfig is where and from whom an upstream takes outbinds.
type OutbindConfig struct {
	// Listener is where the SMSC connects; the gateway closes it when it
	// stops.
	Listener net.Listener
	// SystemID and Password are what the SMSC's outbind must carry (an
	// empty SystemID takes any).
	SystemID, Password string
	// Timeout bounds the wait for a connection's outbind, and then for the
	// bind_receiver_resp; 0 is 10 s.
	Timeout time.Duration
}

// Config is what the gateway needs; cmd/qxtd fills it from the YAML file.
type Config struct {
	Upstreams []UpstreamConfig
	// Validity is how long a message is tried when the ESME gives none.
	Validity time.Duration
	// RetryMin and RetryMax bound the delay before a temporary failure
	// (throttled, queue full, timeout, lost connection) is tried again.
	RetryMin, RetryMax time.Duration
	// DLRRetry is how long a receipt deliver_sm that the ESME did not
	// acknowledge waits before it is sent again.
	DLRRetry time.Duration
	// DLRWindow bounds receipts awaiting deliver_sm_resp per account. A
	// slot is busy for the ESME's round trip only (acknowledgements are
	// committed in batches off the window), so this many per round trip
	// is the most receipts per second one account can take.
	DLRWindow int
	// MOWindow bounds the replies (MO) sent to one enterprise's binds and
	// not yet answered: they go in the order they came, each once the
	// one before it is on the wire, and their answers are awaited
	// together. 1 sends one at a time.
	MOWindow int
	// ESMEIdle ends an ESME bind that sends nothing for this long.
	ESMEIdle time.Duration
	// MaxBindsPerAccount caps the ESME binds one account (system_id) holds
	// on this node at once, MaxBindsPerEnterprise those of all of one
	// enterprise's accounts (an enterprise can add accounts itself); a
	// bind beyond either is refused ESME_RBINDFAIL (bindcaps.go). Defaults
	// DefaultMaxBindsPerAccount and DefaultMaxBindsPerEnterprise; give the
	// enterprise cap well under the SMPP server's MaxConns, or one tenant
	// can still hold every connection.
	MaxBindsPerAccount, MaxBindsPerEnterprise int
	// ReceiptGrace is how long past its validity a submitted segment
	// waits for its receipt before it is settled as unknown.
	ReceiptGrace time.Duration
	// Retention is how long finished messages are kept (then purged in
	// the background); 0 keeps them forever.
	Retention time.Duration
	// ReceiptZone is the time zone of the dates an ESME reads: a
	// receipt's submit date and done date (YYMMDDhhmm, no zone of their
	// own) and query_sm's final_date. nil: the process's local zone.
	ReceiptZone *time.Location
	// ReassemblyTimeout is how long the parts of a message the ESME split
	// itself wait, from the first one's arrival, for the rest; then the
	// parts that came are rejected (presplit.go). Default 5 minutes.
	ReassemblyTimeout time.Duration
	// ReassemblyMaxGroups caps incomplete split messages per account,
	// ReassemblyMaxBytes the text they hold in all, and
	// ReassemblyMaxBytesPerEnterprise the text of one enterprise's (its
	// share: one tenant's flood of parts it never completes cannot fill
	// the buffer for the others); a part beyond any is refused with
	// ESME_RMSGQFUL. Defaults 10,000, 16 MiB and a quarter of
	// ReassemblyMaxBytes (queue.FragmentLimits).
	ReassemblyMaxGroups             int
	ReassemblyMaxBytes              int64
	ReassemblyMaxBytesPerEnterprise int64
	// MOReassemblyTimeout is how long the parts of a reply the SMSC split
	// wait, from the first one's arrival, for the rest; then the parts
	// that came are stored as one reply, joined in order, with
	// PartsMissing set (moparts.go). Default DefaultReassemblyTimeout.
	MOReassemblyTimeout time.Duration
	// MOReassemblyMaxParts and MOReassemblyMaxBytes cap the reply parts
	// one upstream keeps waiting for the rest of their reply, in number
	// and in text (queue.MOPartLimits); a part past either is stored as
	// a reply of its own at once. Defaults queue.DefaultMaxMOParts and
	// queue.DefaultMaxMOPartBytes.
	MOReassemblyMaxParts int
	MOReassemblyMaxBytes int64
	// MaintainInterval is how often housekeeping runs (maintain.go).
	// Default 1 minute.
	MaintainInterval time.Duration
	// TenantShare is the most of the upstreams' windows (in all) that one
	// enterprise's segments may hold while another enterprise has
	// segments due, in (0,1]; an enterprise alone may use every slot.
	// Default DefaultTenantShare.
	TenantShare float64
	// FailoverAfter is how long an upstream may have no bind up before
	// new messages for its carriers go to the next upstream that serves
	// them (route); 0 routes to the first whatever its state (messages
	// wait for it). Messages routed before stay with their upstream.
	// In a cluster, no bind up on any node (failover.go).
	FailoverAfter time.Duration
	// FailoverQueued moves the messages queued for an upstream that is
	// routed around (FailoverAfter) each where a new message to its
	// number would go (route, by its carrier: CarrierLookup), if that
	// upstream has a bind up. One that makes its parts another way
	// (Segment's Concat, GSMPacked, Alphabet) gets them made again from
	// the text, if they count as many segments there; a message that
	// would count other segments stays, and so does one with a part sent
	// already (failover.go: moveQueued). The messages of an upstream no
	// longer configured (renamed, removed) move the same way, their parts
	// always made again (FailoverAfter 0 too); without FailoverQueued
	// they fail no_route.
	FailoverQueued bool
	// OptOutKeywords are the replies that put their sender on the
	// enterprise's opt-out list (policy.IsOptOut); nil:
	// policy.DefaultOptOutKeywords.
	OptOutKeywords []string
	// SubmitRelay sends segments through another node when this one
	// holds none of the upstream's binds (submitrelay.go); nil: wait for
	// a bind here.
	SubmitRelay SubmitRelay
	// Cluster shares carrier binds and quotas with the other nodes of a
	// cluster (cluster.go); nil: this node is on its own.
	Cluster Cluster
	// OrphanTTL is how long a receipt that matched no message is kept
	// (for its submit_sm_resp, or in cluster mode for the node that owns
	// it: peers.go) before housekeeping drops it. Default
	// DefaultOrphanTTL.
	OrphanTTL time.Duration
	// Peers, in cluster mode, are the other nodes: receipts that match
	// nothing here are offered to them (peers.go). nil: a single node.
	Peers Peers
	// Owners, in cluster mode, reaches the node that owns a message this
	// one does not have (owners.go). nil: every id is this node's.
	Owners Owners
	// Relay, in cluster mode, hands receipts and replies to the node
	// where their ESME is bound (relay.go). nil: a single node.
	Relay Relay
	// MOPartPeers, in cluster mode, hands each part of a long reply to
	// the node that joins that reply (mojoin.go). nil: the parts are
	// joined on the node whose bind they came on.
	MOPartPeers MOPartPeers
}

// Defaults of Config: a field left zero (or negative) takes these.
// cmd/qxtd's configuration defaults refer to them.
const (
	DefaultValidity          = 48 * time.Hour
	DefaultRetryMin          = time.Second
	DefaultRetryMax          = time.Minute
	DefaultDLRRetry          = 30 * time.Second
	DefaultDLRWindow         = 128
	DefaultMOWindow          = 64
	DefaultMORespTimeout     = moAgainLate
	DefaultReceiptGrace      = 24 * time.Hour
	DefaultESMEIdle          = 30 * time.Minute
	DefaultReassemblyTimeout = 5 * time.Minute
	DefaultTenantShare       = 0.5
	// An ESME needs a handful of binds (a transmitter and a receiver, or a
	// transceiver, a few of each for throughput or redundancy); 16 leaves
	// room for that and holds one account to under 1 % of the server's
	// 2,000 connections.
	DefaultMaxBindsPerAccount = 16
	// A quarter of the SMPP server's connections, as an enterprise's share
	// of the other shared buffers: it takes four enterprises to fill them.
	DefaultMaxBindsPerEnterprise = smpp.DefaultMaxConns / 4
)

func (c *Config) defaults() {
	if c.Validity <= 0 {
		c.Validity = DefaultValidity
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.DLRRetry <= 0 {
		c.DLRRetry = DefaultDLRRetry
	}
	if c.DLRWindow <= 0 {
		c.DLRWindow = DefaultDLRWindow
	}
	if c.MOWindow <= 0 {
		c.MOWindow = DefaultMOWindow
	}
	if c.ReceiptGrace <= 0 {
		c.ReceiptGrace = DefaultReceiptGrace
	}
	if c.ESMEIdle <= 0 {
		c.ESMEIdle = DefaultESMEIdle
	}
	if c.ReassemblyTimeout <= 0 {
		c.ReassemblyTimeout = DefaultReassemblyTimeout
	}
	if c.MOReassemblyTimeout <= 0 {
		c.MOReassemblyTimeout = DefaultReassemblyTimeout
	}
	if c.MaintainInterval <= 0 {
		c.MaintainInterval = time.Minute
	}
	if c.TenantShare <= 0 {
		c.TenantShare = DefaultTenantShare
	}
	c.TenantShare = min(c.TenantShare, 1)
	if c.OrphanTTL <= 0 {
		c.OrphanTTL = DefaultOrphanTTL
	}
	if c.MaxBindsPerAccount <= 0 {
		c.MaxBindsPerAccount = DefaultMaxBindsPerAccount
	}
	if c.MaxBindsPerEnterprise <= 0 {
		c.MaxBindsPerEnterprise = DefaultMaxBindsPerEnterprise
	}
}

// Gateway joins the pieces: the SMPP ingress (it is the smpp.Backend),
// the durable store, the upstream binds and the receipt router.
type Gateway struct {
	cfg     Config
	store   *queue.Store
	policy  Policy
	log     *slog.Logger
	metrics *Metrics
	senders senders // accepted by enterprise (senders.go)

	ups    []*upstream
	byName map[string]*upstream

	disp   *dispatcher
	unhand func() // ends the store's hand-over to disp (Start, Stop)
	dlrs   *router
	mos    *moRouter
	// optOuts records opt-out replies' opt-outs (optout.go).
	optOuts *optOuts
	// pusher offers orphan receipts to the peers (cluster mode only).
	pusher *pusher
	// owners is Config.Owners (nil on a single node).
	owners Owners
	relay  *relay // cluster mode only
	// bindCaps counts the ESME binds up per account and enterprise.
	bindCaps bindCaps
	// moFull: the upstreams whose reply parts are at their cap, logged
	// once as they reach it (moparts.go).
	moFull moFull
	// moAgain: the replies stored lately, to know the SMSC's resends of
	// those whose answers a cut may have lost (moagain.go).
	moAgain moAgain
	// heldAfter: where expireHeld goes on in each disabled enterprise's
	// parts at its next run (queue.ExpireHeld's after); the maintain
	// goroutine's own.
	heldAfter map[string][]byte
	// moOwnersDown: the nodes (by id) that did not take the last reply
	// part handed to them, logged once as they fail (mojoin.go).
	moOwnersDown moFull
	// upSig wakes watchUpstreams: an upstream's first bind came up or
	// its last went down here (failover.go).
	upSig chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a gateway over an open store. Start it with Start.
func New(cfg Config, store *queue.Store, pol Policy, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	cfg.defaults()
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("gateway: no upstream configured")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:     cfg,
		store:   store,
		policy:  pol,
		log:     log,
		metrics: newMetrics(reg, store),
		byName:  make(map[string]*upstream),
		upSig:   make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
	}
	for _, uc := range cfg.Upstreams {
		if _, dup := g.byName[uc.Name]; dup {
			cancel()
			return nil, fmt.Errorf("gateway: upstream %q configured twice", uc.Name)
		}
		u := newUpstream(g, uc)
		g.ups = append(g.ups, u)
		g.byName[uc.Name] = u
		if uc.MORespTimeout > 0 {
			if g.moAgain.lateAfter == nil {
				g.moAgain.lateAfter = make(map[string]time.Duration)
			}
			g.moAgain.lateAfter[uc.Name] = uc.MORespTimeout
		}
	}
	markFailovers(g.ups)
	g.metrics.upstreamsUp(g.ups, store)
	g.disp = newDispatcher(g)
	for _, u := range g.ups {
		name := u.cfg.Name
		promauto.With(g.metrics.reg).NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_window_in_use", Help: "Segments handed to the upstream's workers and not yet recorded: on its binds' windows, or answered and waiting for the store to commit the outcome.",
			ConstLabels: prometheus.Labels{"upstream": name},
		}, func() float64 { return g.disp.inflightOf(name) })
		if store != nil {
			promauto.With(g.metrics.reg).NewGaugeFunc(prometheus.GaugeOpts{
				Name: "qxtd_upstream_queued_segments", Help: "Segments routed to the upstream and waiting for its SMSC to accept them (due now, or later: a retry, a scheduled send): its part of qxtd_queue_segments{state=\"accepted\"}. Grows while the upstream is down or slower than what comes in for it; the other upstreams' segments do not wait behind it.",
				ConstLabels: prometheus.Labels{"upstream": name},
			}, func() float64 { return float64(store.DueOf(name)) })
		}
	}
	g.dlrs = newRouter(g)
	g.mos = newMORouter(g)
	g.optOuts = newOptOuts(g)
	if cfg.Peers != nil {
		g.pusher = newPusher(g, cfg.Peers)
	}
	g.owners = cfg.Owners
	if cfg.Relay != nil {
		g.relay = newRelay(g, cfg.Relay)
	}
	return g, nil
}

// Start brings up the upstream binds, the dispatcher and the receipt
// router. Everything stops with Stop.
func (g *Gateway) Start() {
	if g.store != nil {
		// New messages due at once come to the dispatcher from the
		// commit that stored them, not from a scan of the store.
		g.unhand = g.store.SetDueCallback(g.disp.offer)
		// The replies stored just before the last run ended, whose
		// answers that end may have cut: their resends are known.
		g.moRestart()
	}
	for _, u := range g.ups {
		u.start(g.ctx, &g.wg)
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.disp.run(g.ctx)
	}()
	go func() {
		defer g.wg.Done()
		g.maintain(g.ctx)
	}()
	g.wg.Go(func() { newConverter(g).run(g.ctx) })
	if g.store != nil {
		g.wg.Go(func() { g.optOuts.run(g.ctx) })
	}
	if g.pusher != nil { // cluster mode
		g.wg.Go(func() { g.pusher.run(g.ctx) })
	}
	if g.relay != nil {
		g.wg.Go(func() { g.relay.run(g.ctx) })
	}
	if g.cfg.Cluster != nil {
		g.wg.Go(func() { g.watchUpstreams(g.ctx) })
	}
	if g.cfg.FailoverQueued && g.store != nil {
		// Also with failover off (FailoverAfter 0): the messages of an
		// upstream no longer configured move (and none is routed around).
		g.wg.Go(func() { g.moveQueued(g.ctx) })
	}
}

// Stop unbinds upstreams and stops every goroutine of the gateway. What
// is in flight stays in the store and is sent again at the next start.
func (g *Gateway) Stop() {
	if g.unhand != nil {
		g.unhand()
	}
	g.cancel()
	g.dlrs.stop()
	g.mos.stop()
	g.wg.Wait()
	g.moStopped()
}

// Ready reports whether at least one upstream bind is up.
func (g *Gateway) Ready() bool {
	for _, u := range g.ups {
		if u.upCount() > 0 {
			return true
		}
	}
	return false
}

// SetUpstreamTPS changes the TPS cap of the upstream named name at run
// time (a configuration reload); tps 0 lifts the cap. An upstream that
// started without a cap has no limiter to change: that needs a restart.
func (g *Gateway) SetUpstreamTPS(name string, tps float64) error {
	u, ok := g.byName[name]
	switch {
	case !ok:
		return fmt.Errorf("gateway: no upstream %q", name)
	case u.limiter == nil:
		return fmt.Errorf("gateway: upstream %q started without a tps cap: a restart sets one", name)
	case tps <= 0:
		u.limiter.SetLimit(rate.Inf)
	default:
		u.limiter.SetLimit(rate.Limit(tps))
		u.limiter.SetBurst(max(1, int(tps/10))) // as newUpstream sizes it
	}
	now := time.Now()
	for _, p := range u.paces {
		p.setCeil(now, tps)
	}
	return nil
}

// UpstreamHealth is one upstream's binds: how many are configured and how
// many are up now; its receivers likewise (0 configured: its binds are
// transceivers).
type UpstreamHealth struct {
	Name                string
	BindsConfigured     int
	BindsUp             int
	ReceiversConfigured int
	ReceiversUp         int
	// OutbindSessions are the sessions bound as a receiver after the
	// SMSC's outbind (UpstreamConfig.Outbind), now.
	OutbindSessions int
	// RoutedAround: it has had no bind up for Config.FailoverAfter, so
	// new messages for its carriers go to the next upstream serving them.
	RoutedAround bool
	// Queued is the segments routed to it waiting for its SMSC to accept
	// them (queue.Store.DueOf): in a cluster, this node's.
	Queued int
}

// Health is the state of every upstream, in configuration order.
type Health struct {
	Upstreams []UpstreamHealth
	// StoreWritable is false while the store's last commit failed: the
	// dispatcher holds back new submissions meanwhile.
	StoreWritable bool
}

// Degraded reports whether any configured bind is down or the store
// cannot write: /readyz answers 503 with the details.
func (h Health) Degraded() bool {
	if !h.StoreWritable {
		return true
	}
	for _, u := range h.Upstreams {
		if u.BindsUp < u.BindsConfigured || u.ReceiversUp < u.ReceiversConfigured {
			return true
		}
	}
	return false
}

// Health returns the binds up and configured per upstream and whether the
// store takes writes.
func (g *Gateway) Health() Health {
	h := Health{StoreWritable: g.store == nil || g.store.Writable()}
	now := time.Now()
	for _, u := range g.ups {
		h.Upstreams = append(h.Upstreams, UpstreamHealth{
			Name: u.cfg.Name, BindsConfigured: len(u.clients), BindsUp: u.upCount(),
			ReceiversConfigured: len(u.receivers), ReceiversUp: int(u.rxUp.Load()), OutbindSessions: int(u.outbound.Load()),
			RoutedAround: u.routedAroundAt(now),
		})
		if g.store != nil {
			h.Upstreams[len(h.Upstreams)-1].Queued = g.store.DueOf(u.cfg.Name)
		}
	}
	return h
}

// OnDLRReady is the store's callback: the receipts of ready (account's
// messages, as committed at at) can be forwarded. It must not block.
func (g *Gateway) OnDLRReady(account string, ready []*queue.Message, at queue.Snapshot) {
	if g != nil && g.dlrs != nil {
		g.dlrs.offer(account, ready, at)
		g.relayKick("r:" + account)
	}
}

// Notify wakes the dispatcher: new messages are due.
func (g *Gateway) notify() { g.disp.kick() }

var (
	_ smpp.Backend = (*Gateway)(nil)
	_ smpp.Bounder = (*esmeSession)(nil) // receipts start after the bind_resp
)

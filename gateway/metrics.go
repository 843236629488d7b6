package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Metrics are the gateway's Prometheus series. Labels come from closed
// sets only: ingress kind, refusal reason, upstream name, state.
type Metrics struct {
	accepted      *prometheus.CounterVec
	refusedTotal  *prometheus.CounterVec
	relayed       *prometheus.CounterVec
	relayedVia    *prometheus.CounterVec // submitrelay.go
	submitErrors  *prometheus.CounterVec
	submitLatency *prometheus.HistogramVec
	esmeSubmit    prometheus.Histogram // accepted submit_sm: handled → submit_sm_resp (the commit included)
	reconnects    *prometheus.CounterVec
	failedOver    *prometheus.CounterVec
	movedQueued   *prometheus.CounterVec
	outbinds      *prometheus.CounterVec
	recordRetries *prometheus.CounterVec
	dlrs          *prometheus.CounterVec
	dlrsConverted *prometheus.CounterVec
	dlrForward    *prometheus.CounterVec
	moReceived    *prometheus.CounterVec
	moUnmatched   prometheus.Counter
	moParts       *prometheus.CounterVec // moparts.go
	moJoined      *prometheus.CounterVec
	moUntaken     prometheus.Counter
	moForward     *prometheus.CounterVec
	optOuts       prometheus.Counter
	optOutErrors  prometheus.Counter
	optOutStopped prometheus.Counter
	// stopped: parts not sent because their number was out of scope,
	// opted out or off the whitelist when their turn came (Stops).
	stopped       *prometheus.CounterVec
	heldDropped   prometheus.Counter
	heldExpired   prometheus.Counter
	binds         *prometheus.CounterVec
	boundESMEs    *prometheus.GaugeVec
	dlrDelay      *prometheus.HistogramVec
	commitSeconds prometheus.Histogram
	commitOps     prometheus.Histogram
	reg           prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer, store *queue.Store) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &Metrics{
		reg: reg,
		accepted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_messages_accepted_total", Help: "Messages accepted and stored, by ingress.",
		}, []string{"ingress"}),
		refusedTotal: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_messages_refused_total", Help: "Submissions refused, by reason.",
		}, []string{"reason"}),
		relayed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_segments_relayed_total", Help: "Segments accepted by an upstream SMSC (submit_sm_resp OK).",
		}, []string{"upstream"}),
		relayedVia: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_cluster_segments_relayed_via_peer_total", Help: "Segments this node sent on another node's bind (it held none of the upstream's), counted in qxtd_segments_relayed_total too.",
		}, []string{"upstream"}),
		submitErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_submit_errors_total", Help: "submit_sm outcomes other than OK, by kind.",
		}, []string{"upstream", "kind"}),
		submitLatency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "qxtd_upstream_submit_seconds", Help: "submit_sm to submit_sm_resp latency.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"upstream"}),
		esmeSubmit: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "qxtd_esme_submit_seconds",
			Help:    "An ESME's accepted submit_sm, from a worker taking it to its submit_sm_resp: policy, encoding and the durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_disconnects_total", Help: "Upstream binds lost.",
		}, []string{"upstream"}),
		failedOver: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_failovers_total", Help: "Recipients routed to another upstream serving their carrier because this one (upstream) had no bind up for delivery.failover_after; to: the one they went to.",
		}, []string{"upstream", "to"}),
		movedQueued: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_moved_queued_total", Help: "Queued messages moved from an upstream routed around (upstream) to the one new messages for its carriers go to (to): delivery.failover_queued.",
		}, []string{"upstream", "to"}),
		outbinds: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_outbinds_total", Help: "Connections to an upstream's outbind listener, by result: bound (a receiver after the SMSC's outbind), refused (not an outbind, or wrong credentials), failed (silent, cut, or the bind_receiver refused), full (at the cap of connections).",
		}, []string{"upstream", "result"}),
		recordRetries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_upstream_record_retries_total",
			Help: "Failed attempts to record an SMSC's answer in the store (tried again; the segment stays in flight meanwhile).",
		}, []string{"upstream"}),
		dlrs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_dlrs_received_total", Help: "Final receipts from upstreams, by state and match result (unreadable, state unknown: a receipt or acknowledgement whose id and state cannot be read, answered and dropped).",
		}, []string{"state", "result"}),
		dlrsConverted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_dlrs_converted_total",
			Help: "Orphaned receipts matched later by their SMSC id in another base (decimal in the receipt, hex in submit_sm_resp, or the reverse), by result: matched or duplicate.",
		}, []string{"result"}),
		dlrForward: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_dlrs_forwarded_total", Help: "Receipts sent to ESMEs, by outcome: ok, error (sent again later), refused (answered ESME_RX_P_APPN or ESME_RX_R_APPN: not sent again), throttled (answered ESME_RTHROTTLED or ESME_RMSGQFUL: sent again later, the account's receipts paused).",
		}, []string{"outcome"}),
		moReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_mo_received_total", Help: "Mobile-originated messages (replies) from upstreams stored, by result: matched, unmatched (kept, no enterprise owns the number); a reply the SMSC split counts once, when joined; store_error: a deliver_sm or data_sm not acknowledged (the store failed); again: the SMSC's resend of a reply stored just before its connection was cut, answered and not stored again.",
		}, []string{"result"}),
		moUnmatched: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_mo_unmatched_total", Help: "Mobile-originated messages kept for no enterprise (their destination is no service number).",
		}),
		moParts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_mo_parts_total", Help: "Parts of replies the SMSC split (a concatenation UDH or SAR TLVs), by outcome: stored (kept until their reply is whole), alone (the upstream's parts waiting at smpp.mo_reassembly_max_parts or _max_bytes, or a part that cannot be kept: stored as a reply of its own), again (a part of a reply joined lately, with the same data: the SMSC sent it again after our answer was lost; answered, not stored); in a cluster forwarded (handed to the node that joins its reply, which stored it and counts it there) and forward_failed (that node could not take it: kept here, the reply then stored in fragments at the timeout).",
		}, []string{"outcome"}),
		moJoined: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_mo_joined_total", Help: "Replies joined from their parts, by how: complete (every part came), timeout (stored at smpp.mo_reassembly_timeout with the parts that came, parts_missing set).",
		}, []string{"how"}),
		moUntaken: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_mo_purged_untaken_total", Help: "Replies (MO) of an enterprise purged at store.retention that no ESME had acknowledged and no reply webhook delivered (it read them in GET /v1/inbox, or never).",
		}),
		moForward: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_mo_forwarded_total", Help: "Mobile-originated messages sent to ESMEs, by outcome: ok, error (sent again later), refused (answered ESME_RX_P_APPN or ESME_RX_R_APPN: not sent again), throttled (answered ESME_RTHROTTLED or ESME_RMSGQFUL: sent again later, the enterprise's replies paused).",
		}, []string{"outcome"}),
		optOuts: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_optouts_total", Help: "Numbers added to an enterprise's opt-out list by a reply of TD (退订); a repeated reply adds none.",
		}),
		optOutErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_optout_errors_total", Help: "Tries to record an opt-out reply's opt-out that failed (logged): the reply is stored, marked, and its opt-out tried again (1 s doubling to 30 s) until it is recorded.",
		}),
		optOutStopped: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_optout_stopped_total", Help: "Segments not sent because their number opted out (回复TD退订) of the enterprise's messages after the message was accepted (scheduled, retried, queued): failed rejected with error opted_out.",
		}),
		stopped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_stopped_total", Help: "Segments accepted and then not sent, because when their turn came a new message to their number would be refused, by reason: scope_national, scope_offnet (the operator withdrew the grant), opted_out (the number replied TD, or was put on the opt-out list), not_whitelisted (taken off the enterprise's whitelist, or its entry rejected), account_disabled (the user who sent it disabled, deleted or moved since): failed rejected with that error.",
		}, []string{"reason"}),
		heldExpired: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_held_expired_total", Help: "Segments of a disabled enterprise's waiting messages whose validity ended while they were held: failed expired (validity) by housekeeping, unsent.",
		}),
		heldDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "qxtd_held_dropped_total", Help: "Segments of a disabled enterprise's waiting messages the operator dropped (DropHeld): failed rejected with error account_disabled, unsent.",
		}),
		binds: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qxtd_esme_binds_total", Help: "ESME bind attempts, by kind and outcome: ok, refused (credentials, a disabled account), over_cap (the account or its enterprise at its most binds up).",
		}, []string{"kind", "outcome"}),
		boundESMEs: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "qxtd_esme_bound", Help: "ESME binds up now, by kind.",
		}, []string{"kind"}),
	}
	m.dlrDelay = f.NewHistogramVec(prometheus.HistogramOpts{
		Name: "qxtd_dlr_delay_seconds", Help: "From submit_sm_resp to the final receipt, per upstream.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 16), // 50 ms … ~27 min
	}, []string{"upstream"})
	m.commitSeconds = f.NewHistogram(prometheus.HistogramOpts{
		Name: "qxtd_store_commit_seconds", Help: "Duration of one group commit of the store, fsync included.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
	})
	m.commitOps = f.NewHistogram(prometheus.HistogramOpts{
		Name: "qxtd_store_commit_batch_ops", Help: "Operations carried by one group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	if store != nil {
		reg.MustRegister(quotaCollector{store: store, desc: prometheus.NewDesc("qxtd_quota_segments",
			"Segments of the current month (Asia/Shanghai) per enterprise: reserved (in flight) and charged (delivered).",
			[]string{"enterprise", "kind"}, nil)})
	}
	// Every series exists from the start (at zero), so rate() and alerts
	// see a refusal reason before its first occurrence.
	for _, in := range ingresses {
		m.accepted.WithLabelValues(in)
	}
	for _, r := range policy.Reasons() {
		m.refusedTotal.WithLabelValues(r.String())
	}
	m.refusedTotal.WithLabelValues(reasonOther)
	for _, st := range receiptStates {
		for _, r := range []queue.Result{queue.Matched, queue.Duplicate, queue.Orphaned} {
			m.dlrs.WithLabelValues(st.String(), r.String())
		}
		m.dlrs.WithLabelValues(st.String(), dlrRefused)
	}
	m.dlrs.WithLabelValues("unknown", dlrUnreadable)
	for _, r := range []queue.Result{queue.Matched, queue.Duplicate} {
		m.dlrsConverted.WithLabelValues(r.String())
	}
	for _, o := range []string{"ok", "error"} {
		m.dlrForward.WithLabelValues(o)
		m.moForward.WithLabelValues(o)
	}
	m.dlrForward.WithLabelValues(dlrForwardRefused)
	for _, r := range []policy.Reason{policy.ReasonScopeNational, policy.ReasonScopeOffNet, policy.ReasonOptedOut, policy.ReasonNotWhitelisted, policy.ReasonAccountDisabled} {
		m.stopped.WithLabelValues(r.String()) // Stops' and UserStops' reasons
	}
	m.moForward.WithLabelValues(moForwardRefused)
	m.dlrForward.WithLabelValues(dlrForwardThrottled)
	m.moForward.WithLabelValues(moForwardThrottled)
	for _, r := range []string{"matched", "unmatched", "store_error", moAgainResult} {
		m.moReceived.WithLabelValues(r)
	}
	for _, o := range []string{moPartStored, moPartAlone, moPartAgain, moPartForwarded, moPartForwardFailed} {
		m.moParts.WithLabelValues(o)
	}
	for _, h := range []string{moJoinedComplete, moJoinedTimeout} {
		m.moJoined.WithLabelValues(h)
	}
	for _, k := range []smpp.BindKind{smpp.BindTransmitter, smpp.BindReceiver, smpp.BindTransceiver} {
		m.boundESMEs.WithLabelValues(k.String())
		for _, o := range []string{"ok", "refused", bindOverCap} {
			m.binds.WithLabelValues(k.String(), o)
		}
	}
	if store != nil {
		f.NewCounterFunc(prometheus.CounterOpts{
			Name: "qxtd_store_commits_total", Help: "bbolt write transactions (each one fsync) of the store's commit loop.",
		}, func() float64 { return float64(store.Stats().Txns) })
		f.NewCounterFunc(prometheus.CounterOpts{
			Name: "qxtd_store_ops_total", Help: "Store operations committed; ops/commits is the group-commit batch size.",
		}, func() float64 { return float64(store.Stats().Ops) })
		f.NewCounterFunc(prometheus.CounterOpts{
			Name: "qxtd_store_written_bytes_total",
			Help: "Bytes of pages the store's commits wrote: every commit rewrites whole pages, from each changed record up to its bucket's root, so per commit it hardly depends on what the commit carries.",
		}, func() float64 { return float64(store.Stats().Written) })
		f.NewCounterFunc(prometheus.CounterOpts{
			Name: "qxtd_store_commit_failures_total", Help: "Store commits that failed (disk full, I/O error), the empty commits tried every 50 ms while a failed sync waits for the disk included.",
		}, func() float64 { return float64(store.Stats().FailedCommits) })
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_queue_waiting_segments",
			Help: "Segments due later: scheduled sends and retries waiting out their backoff (counted up to 1,000,000).",
		}, func() float64 {
			n, _ := store.Waiting(time.Now(), 1_000_000)
			return float64(n)
		})
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_queue_priority_segments",
			Help: "Segments of messages sent with priority still waiting to be sent, and parts of messages split by the ESME stored with priority waiting for the rest (stored in records a release before 2026-12-05 does not read: let them go out before going back to one).",
		}, func() float64 {
			n, _ := store.PriorityWaiting()
			return float64(n)
		})
		for _, st := range queue.States {
			f.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "qxtd_queue_segments", Help: "Segments in the store, by state.",
				ConstLabels: prometheus.Labels{"state": st.String()},
			}, func() float64 { return float64(store.Counts()[st]) })
		}
	}
	return m
}

// dlrRefused is qxtd_dlrs_received_total's result for a receipt not kept
// (store.max_orphans: queue.ErrOrphansFull).
const dlrRefused = "refused"

// dlrUnreadable is qxtd_dlrs_received_total's result (state "unknown")
// for a deliver_sm of a receipt's or acknowledgement's esm_class whose id
// and state cannot be read: answered and dropped.
const dlrUnreadable = "unreadable"

// submitErrorKinds are the kind labels of qxtd_upstream_submit_errors_total.
var submitErrorKinds = []string{"timeout", "throttled", "queue_full", "system_error", "rejected", "connection", "late_ok", kindBindLost}

// kindBindLost counts submit_sm answered ESME_RINVBNDSTS: the SMSC lost
// the bind, which is bound again (counted in
// qxtd_upstream_disconnects_total); the segment is tried again.
const kindBindLost = "bind_lost"

// upstreamsUp exports the binds configured and up per upstream, and
// starts every per-upstream series at zero.
func (m *Metrics) upstreamsUp(ups []*upstream, store *queue.Store) {
	f := promauto.With(m.reg)
	for _, u := range ups {
		if store != nil {
			name := u.cfg.Name
			f.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "qxtd_dlrs_orphans",
				Help:        "Receipts kept that matched no message (yet), per upstream; at store.max_orphans new ones are refused for the SMSC to send again.",
				ConstLabels: prometheus.Labels{"upstream": name},
			}, func() float64 { return float64(store.OrphanCounts()[name]) })
		}
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_binds_up", Help: "Upstream binds up now.",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 { return float64(u.upCount()) })
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_binds_configured", Help: "Upstream binds configured (binds down = configured - up).",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 { return float64(len(u.clients)) })
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_routed_around", Help: "1 while new messages for the upstream's carriers go to the next upstream serving them: no bind of it up (in a cluster: on any node) for delivery.failover_after; 0 otherwise, and always for one no other upstream could stand in for.",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 {
			if u.routedAroundAt(time.Now()) {
				return 1
			}
			return 0
		})
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_receivers_up", Help: "Upstream receiver binds up now (upstreams[].bind_mode transmitter_receiver).",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 { return float64(u.rxUp.Load()) })
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_receivers_configured", Help: "Upstream receiver binds configured (0: the binds are transceivers).",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 { return float64(len(u.receivers)) })
		// 0 without an outbind_listen, as the receivers without receivers.
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "qxtd_upstream_outbind_sessions", Help: "Sessions bound as a receiver after the upstream SMSC's outbind, now.",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, func() float64 { return float64(u.outbound.Load()) })
		if u.cfg.Outbind != nil {
			for _, r := range []string{outbindBound, outbindRefused, outbindFailed, outbindFull} {
				m.outbinds.WithLabelValues(u.cfg.Name, r)
			}
		}
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "qxtd_upstream_pace_per_second",
			Help:        "Sum over the upstream's binds up of their adaptive submit_sm rate limits after throttling (+Inf: not limited; 0: no bind up).",
			ConstLabels: prometheus.Labels{"upstream": u.cfg.Name},
		}, u.paceSum)
		for _, k := range submitErrorKinds {
			m.submitErrors.WithLabelValues(u.cfg.Name, k)
		}
		m.reconnects.WithLabelValues(u.cfg.Name)
		m.recordRetries.WithLabelValues(u.cfg.Name)
		m.relayed.WithLabelValues(u.cfg.Name)
		m.relayedVia.WithLabelValues(u.cfg.Name)
		m.submitLatency.WithLabelValues(u.cfg.Name)
		m.dlrDelay.WithLabelValues(u.cfg.Name)
	}
}

// receiptStates are the final states a receipt can report (receiptState):
// the state label of qxtd_dlrs_received_total.
var receiptStates = []queue.State{queue.StateDelivered, queue.StateExpired, queue.StateUndeliverable, queue.StateRejected, queue.StateUnknown}

// reasonOther labels a refusal that is none of policy.Reasons (it should
// not happen: an alert on it finds a bug).
const reasonOther = "other"

func (m *Metrics) refused(err error) {
	reason := reasonOther
	if r, ok := policy.ReasonOf(err); ok {
		reason = r.String()
	}
	m.refusedTotal.WithLabelValues(reason).Inc()
}

// ObserveCommit records one store commit; cmd/qxtd passes it to the
// store's OnCommit.
func (g *Gateway) ObserveCommit(d time.Duration, ops int) {
	g.metrics.commitSeconds.Observe(d.Seconds())
	g.metrics.commitOps.Observe(float64(ops))
}

// quotaCollector exports each enterprise's usage of the month at scrape
// time from the store's in-memory counters. Enterprises are a bounded set
// (configured by the operator), so the label is allowed.
type quotaCollector struct {
	store *queue.Store
	desc  *prometheus.Desc
}

func (c quotaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c quotaCollector) Collect(ch chan<- prometheus.Metric) {
	us, err := c.store.UsageByMonth(queue.BillingMonth(time.Now()))
	if err != nil {
		return
	}
	for _, u := range us {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(u.Reserved), u.Enterprise, "reserved")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(u.Charged), u.Enterprise, "charged")
	}
}

// RefusalCount is how many submissions were refused for one reason.
type RefusalCount struct {
	Reason string // a policy reason's string, or "other"
	Count  uint64
}

// ingresses are the ways a message is accepted (qxtd_messages_accepted_total's
// label).
var ingresses = []string{"smpp", "http", "batch"}

// Accepted is how many messages were accepted since the start, every
// ingress together (qxtd_messages_accepted_total: no second count is kept).
func (g *Gateway) Accepted() uint64 {
	var n uint64
	for _, in := range ingresses {
		var m dto.Metric
		if err := g.metrics.accepted.WithLabelValues(in).Write(&m); err == nil {
			n += uint64(m.GetCounter().GetValue())
		}
	}
	return n
}

// Refusals reads qxtd_messages_refused_total, the counters the metrics
// export (since the start), one per policy reason in the reason table's
// order, then "other" if it is not zero.
func (g *Gateway) Refusals() []RefusalCount {
	read := func(reason string) uint64 {
		var m dto.Metric
		if err := g.metrics.refusedTotal.WithLabelValues(reason).Write(&m); err != nil {
			return 0
		}
		return uint64(m.GetCounter().GetValue())
	}
	var out []RefusalCount
	for _, r := range policy.Reasons() {
		out = append(out, RefusalCount{Reason: r.String(), Count: read(r.String())})
	}
	if n := read(reasonOther); n > 0 {
		out = append(out, RefusalCount{Reason: reasonOther, Count: n})
	}
	return out
}

// UpstreamCount is an upstream's counters since the start (the metrics':
// no second count is kept) and its state now, for a load over a span:
// whether the carrier sets the pace.
type UpstreamCount struct {
	Name    string
	Relayed uint64 // segments the SMSC took (qxtd_segments_relayed_total)
	// Throttled are submit_sm the SMSC answered "throttled" or "queue
	// full": it asks for a slower pace, which qxtd then keeps.
	Throttled uint64
	// Failed are the other submit_sm that did not go: timeouts, system
	// errors, rejections, lost connections and binds (each retried or
	// given up as the README's retry rules say).
	Failed uint64
	// RespCount and RespSeconds are qxtd_upstream_submit_seconds' count
	// and sum: submit_sm to submit_sm_resp.
	RespCount   uint64
	RespSeconds float64
	// TPS is the cap over all binds now (upstreams[].tps, as last
	// reloaded; 0: none); Pace the limit it sends at now: the lower of TPS
	// and its binds' adaptive limits after throttling, of the binds up
	// (+Inf: not limited; 0: no bind up).
	TPS, Pace float64
	// InFlight are the segments on its binds' windows or waiting for
	// their outcome's commit, of Slots at most.
	InFlight, Slots int
}

// UpstreamCounts reads each upstream's counters, in configuration order.
func (g *Gateway) UpstreamCounts() []UpstreamCount {
	read := func(c prometheus.Metric) *dto.Metric {
		var m dto.Metric
		_ = c.Write(&m) // a counter or histogram of ours always writes
		return &m
	}
	out := make([]UpstreamCount, 0, len(g.ups))
	for _, u := range g.ups {
		name := u.cfg.Name
		c := UpstreamCount{Name: name, Pace: u.paceSum(), InFlight: int(g.disp.inflightOf(name)), Slots: u.workers()}
		if u.limiter != nil && u.limiter.Limit() != rate.Inf {
			c.TPS = float64(u.limiter.Limit())
			c.Pace = min(c.Pace, c.TPS) // each bind's pace starts at the whole cap
		}
		c.Relayed = uint64(read(g.metrics.relayed.WithLabelValues(name)).GetCounter().GetValue())
		for _, k := range submitErrorKinds {
			n := uint64(read(g.metrics.submitErrors.WithLabelValues(name, k)).GetCounter().GetValue())
			switch k {
			case "throttled", "queue_full":
				c.Throttled += n
			case "late_ok": // answered OK after its timeout: relayed, not failed
			default:
				c.Failed += n
			}
		}
		if h, ok := g.metrics.submitLatency.WithLabelValues(name).(prometheus.Metric); ok {
			hm := read(h).GetHistogram()
			c.RespCount, c.RespSeconds = hm.GetSampleCount(), hm.GetSampleSum()
		}
		out = append(out, c)
	}
	return out
}

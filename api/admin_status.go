package api

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/webhook"
)

// GET /admin/v1/status: the health summary of the account manager's desk,
// from what the daemon already keeps for /readyz and /metrics — the
// upstream binds (gateway.Health), whether the store takes writes, the
// store's in-memory segment counts by state, the segments waiting for a
// later time (one read of the due index, capped like the metric), and the
// refusals since the start (the qxtd_messages_refused_total counters,
// read through gateway.Refusals: no second count is kept).

// maxWaitingCount caps the count of waiting segments, as the metric does.
const maxWaitingCount = 1_000_000

// SystemStatus is the answer of GET /admin/v1/status.
type SystemStatus struct {
	Upstreams     []UpstreamStatus `json:"upstreams"`
	StoreWritable bool             `json:"store_writable"`
	// Queue is the store's segments by state (accepted, submitted,
	// delivered, …, as qxtd_queue_segments) and "waiting": segments due
	// later (scheduled sends and retries), at most 1,000,000.
	Queue    map[string]int  `json:"queue"`
	Refusals []RefusalStatus `json:"refusals"`
	// ReceiptWebhooksFailing are the enterprises whose last receipt
	// webhook POST by this node failed, the longest failing first (at most
	// 100): whom to call about their endpoint.
	ReceiptWebhooksFailing []FailingWebhook `json:"receipt_webhooks_failing"`
	// ReplyWebhooksFailing are the same of reply webhooks: the
	// enterprises whose last POST of a reply (MO) to their reply_url by
	// this node failed, the longest failing first (at most 100).
	ReplyWebhooksFailing []FailingWebhook `json:"reply_webhooks_failing"`
	// Load is how busy this node was over its last minute; absent when
	// not measured (Config.Load nil).
	Load *LoadStatus `json:"load,omitempty"`
	// Cluster is this node's view of its cluster; absent on a node of its
	// own (Config.ClusterStatus nil).
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// LoadStatus is how busy a node was over a span that ends now: its last
// minute, or less just after a start.
type LoadStatus struct {
	Seconds           float64 `json:"seconds"`             // the span
	Accepted          uint64  `json:"accepted"`            // messages accepted in it (SMPP, HTTP and batch)
	AcceptedPerSecond float64 `json:"accepted_per_second"` // the same a second
	CPUCores          float64 `json:"cpu_cores"`           // the process's CPU time a second
	// CPUMicrosPerMessage is the process's CPU time over the messages
	// accepted, in µs (everything it did in the span, receipts and the
	// console included); absent when none was accepted.
	CPUMicrosPerMessage   *float64 `json:"cpu_us_per_message,omitempty"`
	CommitsPerSecond      float64  `json:"store_commits_per_second"`       // the store's commits (each fsync'd)
	WrittenBytesPerSecond float64  `json:"store_written_bytes_per_second"` // what they wrote to the file
	// TopEnterprises are the enterprises that had the most messages
	// accepted in the span, the most first (at most 5, none that had
	// none): whom a busy node is busy for.
	TopEnterprises []EnterpriseLoad `json:"top_enterprises"`
	// Upstreams are the carriers' side of the span, one per upstream in
	// configuration order: whether the carrier sets the pace.
	Upstreams []UpstreamLoad `json:"upstreams"`
}

// UpstreamLoad is one upstream's part of a node's load.
type UpstreamLoad struct {
	Name             string  `json:"name"`
	Relayed          uint64  `json:"relayed"` // segments the SMSC took in the span
	RelayedPerSecond float64 `json:"relayed_per_second"`
	// Throttled are submit_sm it answered "throttled" or "message queue
	// full" in the span; Failed the others that did not go (timeouts,
	// system errors, rejections, lost connections).
	Throttled uint64 `json:"throttled"`
	Failed    uint64 `json:"failed"`
	// SubmitMeanMS is the mean submit_sm → submit_sm_resp in the span;
	// absent when none was answered.
	SubmitMeanMS *float64 `json:"submit_mean_ms,omitempty"`
	TPS          float64  `json:"tps"` // the cap over its binds (upstreams[].tps, as last reloaded); 0: none
	// PacePerSecond is the rate it sends at most now: TPS, or less once
	// throttling lowered its binds' limits, counting the binds up on this
	// node only (0 with none up); absent when not limited.
	PacePerSecond *float64 `json:"pace_per_second,omitempty"`
	// InFlight are its segments on the binds' windows or waiting for
	// their outcome's commit now, of Slots at most: all slots in use and
	// a backlog waiting means the windows set the pace.
	InFlight int `json:"in_flight"`
	Slots    int `json:"slots"`
}

// EnterpriseLoad is one enterprise's share of a node's load.
type EnterpriseLoad struct {
	Enterprise        string  `json:"enterprise"`
	Accepted          uint64  `json:"accepted"`
	AcceptedPerSecond float64 `json:"accepted_per_second"`
}

// ClusterStatus is a cluster node's view: which node answered, the live
// members and the leaderships it holds.
type ClusterStatus struct {
	Node    uint16          `json:"node"`
	Members []ClusterMember `json:"members"`
	// Leads lists the elections this node leads ("reminders": it runs
	// the reminders' scheduler).
	Leads []string `json:"leads"`
	// Load is the members' last minutes added up: the cluster's load and
	// whom it is for. Absent when no member's load is known.
	Load *ClusterLoad `json:"load,omitempty"`
	// ConfigDiffers names the parts of the configuration that each node
	// reads from its own file and that the members have unlike:
	// "account_managers" (a token rotated or a manager removed on some
	// nodes only, still taken on the others: reload every node with the
	// same file), "admin_token" (a token refused on some nodes),
	// "home_province" (nodes admit different numbers),
	// "packages" (nodes count other limits and bill other fees): restart
	// them with the same file. Absent when they agree.
	ConfigDiffers []string `json:"config_differs,omitempty"`
}

// ClusterLoad is the cluster's load: its members' last minutes added up.
type ClusterLoad struct {
	// Members is how many members' loads are in it, of the status's
	// members: one that did not answer within 2 s is left out.
	Members           int     `json:"members"`
	Accepted          uint64  `json:"accepted"`            // messages accepted on those members in their spans
	AcceptedPerSecond float64 `json:"accepted_per_second"` // their rates added up
	CPUCores          float64 `json:"cpu_cores"`           // their CPU time a second added up
	// TopEnterprises are the enterprises that had the most messages
	// accepted on all those members together, the most first (at most
	// 5): whom the cluster is busy for, which no member's own list says
	// when an enterprise sends through several nodes.
	TopEnterprises []EnterpriseLoad `json:"top_enterprises"`
	// TopPartial: a member had more enterprises sending than the 50 it
	// names, so an enterprise's count may leave out what it sent there
	// (the counts are then at least what they say, and an enterprise
	// could be missing from the list).
	TopPartial bool `json:"top_partial,omitempty"`
}

// ClusterMember is one live node.
type ClusterMember struct {
	ID      uint16    `json:"id"`
	Name    string    `json:"name"`
	PeerURL string    `json:"peer_url"`
	Started time.Time `json:"started"`
	// ConfigDigests are digests of the parts of the member's
	// configuration, as it runs, that the members compare (ConfigDiffers):
	// account_managers (names, tokens, portfolios, read-only: showing
	// nothing of them; absent for none), admin_token, home_province (the
	// province's name itself), packages (the
	// package table). Alike on members whose parts are alike; absent for
	// a member of an earlier release.
	ConfigDigests map[string]string `json:"config_digests,omitempty"`
	// Load is the member's last minute, as the answering node's own Load;
	// absent when it did not answer within 2 s (hung, unreachable, or
	// just started), which the status does not wait longer for.
	Load *LoadStatus `json:"load,omitempty"`
}

// UpstreamStatus is one upstream's binds, and its receivers (0
// configured: its binds are transceivers).
type UpstreamStatus struct {
	Name                string `json:"name"`
	BindsUp             int    `json:"binds_up"`
	BindsConfigured     int    `json:"binds_configured"`
	ReceiversUp         int    `json:"receivers_up"`
	ReceiversConfigured int    `json:"receivers_configured"`
	OutbindSessions     int    `json:"outbind_sessions"`
	// RoutedAround: no bind of it up (in a cluster: on any node) for
	// delivery.failover_after, so new messages for its carriers go to
	// the next upstream serving them.
	RoutedAround bool `json:"routed_around"`
	// Queued is the segments routed to it that wait for its SMSC to
	// accept them (in a cluster: this node's).
	Queued int `json:"queued"`
}

// FailingWebhook is an enterprise whose receipt (or reply) endpoint
// fails.
type FailingWebhook struct {
	Enterprise string      `json:"enterprise"`
	Last       ReceiptPost `json:"last"` // its last POST: failing_since says since when they fail
}

// maxFailingWebhooks bounds the list of GET /admin/v1/status.
const maxFailingWebhooks = 100

// failingWebhooks is what the API shows of a sender's failing list.
func failingWebhooks(fs []webhook.Failing) []FailingWebhook {
	out := make([]FailingWebhook, 0, len(fs))
	for _, f := range fs {
		out = append(out, FailingWebhook{Enterprise: f.Enterprise, Last: ReceiptPostOf(f.Last)})
	}
	return out
}

// RefusalStatus is how many submissions were refused for a reason since
// the daemon started.
type RefusalStatus struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

func (s *Server) status(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	out := SystemStatus{Upstreams: []UpstreamStatus{}, Queue: map[string]int{}, Refusals: []RefusalStatus{},
		ReceiptWebhooksFailing: []FailingWebhook{}, ReplyWebhooksFailing: []FailingWebhook{}}
	if h := s.cfg.Webhooks; h != nil {
		// An account manager with a portfolio is told of its own
		// enterprises' endpoints (whom it calls), kept to them before the
		// list is cut (the sender's list is one entry per enterprise, in
		// memory); the rest of the status is the daemon's.
		limit := maxFailingWebhooks
		if a.Scoped() {
			limit = math.MaxInt
		}
		served := func(fs []webhook.Failing) []FailingWebhook {
			kept := slices.DeleteFunc(failingWebhooks(fs), func(f FailingWebhook) bool { return !a.Serves(f.Enterprise) })
			return kept[:min(len(kept), maxFailingWebhooks)]
		}
		out.ReceiptWebhooksFailing = served(h.Failing(limit))
		out.ReplyWebhooksFailing = served(h.FailingReplies(limit))
	}
	if g := s.cfg.Gateway; g != nil {
		h := g.Health()
		out.StoreWritable = h.StoreWritable
		for _, u := range h.Upstreams {
			out.Upstreams = append(out.Upstreams, UpstreamStatus{Name: u.Name, BindsUp: u.BindsUp, BindsConfigured: u.BindsConfigured,
				ReceiversUp: u.ReceiversUp, ReceiversConfigured: u.ReceiversConfigured, OutbindSessions: u.OutbindSessions,
				RoutedAround: u.RoutedAround, Queued: u.Queued})
		}
		for _, rc := range g.Refusals() {
			out.Refusals = append(out.Refusals, RefusalStatus{Reason: rc.Reason, Count: rc.Count})
		}
	}
	if st := s.cfg.Store; st != nil {
		out.StoreWritable = st.Writable()
		for state, n := range st.Counts() {
			out.Queue[state.String()] = n
		}
		n, err := st.Waiting(time.Now(), maxWaitingCount)
		if err != nil {
			writeErr(w, err)
			return
		}
		out.Queue["waiting"] = n
	}
	// The enterprises that sent the most are, to a manager with a
	// portfolio, those of its own that did: ranked among them, not cut
	// from the daemon's five (which would name others' and hide its own).
	var keep func(string) bool
	if a.Scoped() {
		keep = a.Serves
	}
	if f := s.cfg.Load; f != nil {
		out.Load = f(keep)
	}
	if f := s.cfg.ClusterStatus; f != nil {
		out.Cluster = f(r.Context(), keep)
	}
	writeJSON(w, http.StatusOK, out)
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/webhook"
)

// Manager is an account manager's credential: the name what it does is
// recorded under, and its token; Enterprises, when given, are the group
// codes it serves (its portfolio): it is the operator of those and of no
// other, and what belongs to no one enterprise is not its to do.
type Manager struct {
	Name, Token string
	Enterprises []string
	// ReadOnly: the manager may read what its portfolio holds (records,
	// traces, bills, exports, the lists) and change nothing; the backup
	// too is refused to it.
	ReadOnly bool
}

// Config is what the API needs from the daemon.
type Config struct {
	// AdminToken authenticates the operator (acting as OperatorName);
	// empty disables the admin API (every call answers 401), Managers'
	// tokens included.
	AdminToken string
	// Managers are the account managers, each with a token of their
	// own: the admin token's powers, acting under their name (what they
	// decide records it), or over their own enterprises only. Replaced
	// at run time by SetManagers.
	Managers []Manager
	Store    *queue.Store
	Policy   *policy.Policy
	// Gateway accepts messages for the user API (/v1).
	Gateway *gateway.Gateway
	// Reminders keeps the reminders of /v1/reminders (nil: 503).
	Reminders *reminder.Service
	// Registerer takes the batch jobs' series (qxtd_batch_*); nil: none.
	Registerer prometheus.Registerer
	// WriteTimeout is the HTTP server's write timeout: a streaming answer
	// (DLR export, backup) moves its write deadline this far ahead as it
	// goes, so that a long download is not cut while a stalled one is.
	// 0: no deadline is set.
	WriteTimeout time.Duration
	Logger       *slog.Logger
	// MaxBatchJobs bounds the running batch jobs of all enterprises (0:
	// batch.MaxJobs).
	MaxBatchJobs int
	// Clock is the time of the console and operator sessions' idle
	// expiry, of the staged uploads' and of the batch jobs' (nil:
	// time.Now), so that a test can move it past 30 minutes or a day.
	Clock func() time.Time
	// Sessions, when set, keeps the console and operator sessions instead
	// of this process's memory, so that they are shared by the nodes of a
	// cluster (cluster.Sessions implements it; the daemon passes it in
	// cluster mode). nil: in memory, as session.go describes.
	Sessions SessionStore
	// PeerUsage, in a cluster, is the other nodes' usage: answers that show
	// usage or bills add it to this node's (usage_cluster.go). nil: this
	// node's store has all the usage.
	PeerUsage PeerUsage
	// ClusterStatus, in a cluster, is this node's view of it for GET
	// /admin/v1/status (admin_status.go), the members' loads included as
	// far as they answer while ctx lasts. keep, when not nil, holds the
	// enterprises the caller may see (an account manager's portfolio):
	// the loads' top enterprises are ranked among those only. nil: a node
	// of its own.
	ClusterStatus func(ctx context.Context, keep func(enterprise string) bool) *ClusterStatus
	// Load is how busy this node was over its last minute, for GET
	// /admin/v1/status (the daemon samples its counters: load.go). nil:
	// left out. keep is as ClusterStatus's.
	Load func(keep func(enterprise string) bool) *LoadStatus
	// Webhooks is this node's receipt webhook sender: the status of GET
	// /v1/receipt-webhook, its test receipts and retry-now (v1_receipts.go).
	// nil: those answer 503, and the status is left out.
	Webhooks *webhook.Sender
	// ReceiptSecretOverlap is how long a rotated-out receipt secret goes
	// on signing X-Qxtd-Signature-Previous (webhooks.secret_overlap).
	// Zero: policy.ReceiptSecretOverlap, a day.
	ReceiptSecretOverlap time.Duration
	// PeerHooks, in a cluster, is the other nodes' receipt webhooks: the
	// status sums them, and retry-now asks each node to do its own
	// (receipts_cluster.go). nil: this node's store has all the receipts.
	PeerHooks PeerHooks
	// PeerLists, in a cluster, is the other nodes' outboxes and inboxes:
	// GET /v1/messages, /v1/scheduled and /v1/inbox merge every node's
	// (lists_cluster.go). nil: this node's store has every message.
	PeerLists PeerLists
	// PeerAnswers, in a cluster, is what the other nodes know of an
	// Idempotency-Key: a keyed send asks them before it runs, so that a
	// retry that reaches another node is not sent twice (idempotency.go).
	// nil: this node has every key.
	PeerAnswers PeerAnswers
}

// Server serves the HTTP API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	admin adminState // admin.go
	user  userState  // v1.go
	jobs  jobState   // jobs.go
	self  selfState  // v1_applications.go, v1_password.go
}

// New returns the API; mount Handler on the daemon's HTTP server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.ReceiptSecretOverlap <= 0 {
		cfg.ReceiptSecretOverlap = policy.ReceiptSecretOverlap
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	ms := slices.Clone(cfg.Managers)
	s.admin.managers.Store(&ms)
	s.routes()
	return s
}

// Handler is the API's root handler.
func (s *Server) Handler() http.Handler { return s.mux }

// routes registers every endpoint. Each group lives in its own file and
// registers itself here.
func (s *Server) routes() {
	s.adminRoutes()
	s.opsRoutes()
	s.userRoutes()
}

// bearerToken is the token of the request's "Authorization: Bearer"
// header, as the admin API (operator) and /v1 (authenticated) read it.
func bearerToken(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON decodes the request body into v: at most limit bytes, one
// JSON value, no unknown fields (a misspelt field of a PATCH must not be
// silently ignored). It writes the error answer itself and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			err = errors.New("more than one JSON value")
		} else if _, e := dec.Token(); e != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
		case errors.Is(err, io.EOF):
			writeInvalid(w, "", "请求内容须为一个 JSON 对象", "request body: a JSON object is required")
		default:
			field, zh := jsonErrZH(err)
			writeInvalid(w, field, zh, "request body: "+err.Error())
		}
		return false
	}
	return true
}

// jsonErrZH is the field (as the body spells it; "" for the body as a
// whole) and the Chinese of a body decodeJSON cannot take.
func jsonErrZH(err error) (field, zh string) {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return te.Field, te.Field + " 的值类型有误"
	case errors.As(err, &te):
		return "", "请求内容须为一个 JSON 对象"
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return "", "请求内容不是有效的 JSON"
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, err := strconv.Unquote(name); err == nil {
			return f, "不支持的字段 " + name + "（请检查拼写）"
		}
	}
	return "", "请求内容须为一个 JSON 对象"
}

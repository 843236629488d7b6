package api

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/webhook"
)

// The enterprise's receipt webhook over /v1 (self-service): where the
// final receipts of its HTTP sends are POSTed, how many a POST, and the
// secret that signs them. Every member reads the settings (not the
// secret); an enterprise admin changes them, generates a new secret (shown
// once) and sends a test receipt to check an endpoint. The operator has
// the same over /admin/v1/enterprises (admin_enterprises.go,
// admin_receipts.go). A change applies to the next POST, retries
// included.

// ReceiptWebhook is the answer of GET and PATCH /v1/receipt-webhook.
type ReceiptWebhook struct {
	ReceiptURL string `json:"receipt_url"` // "" = none: a send's receipts are pushed only to a receipt_url it names
	// ReplyURL is where the enterprise's replies (MO) are POSTed, one a
	// POST (webhook.Reply) or up to ReplyBatch, signed with the same
	// secret; "" = none.
	ReplyURL     string `json:"reply_url"`
	ReceiptBatch int    `json:"receipt_batch"` // receipts a POST: 0 or 1, one (the body the receipt); more, {"receipts": [...]}
	ReplyBatch   int    `json:"reply_batch"`   // replies a POST: 0 or 1, one (the body the reply); more, {"replies": [...]}
	Signed       bool   `json:"signed"`        // a secret is set: POSTs carry X-Qxtd-Signature
	// PreviousUntil: a rotated-out secret still signs, into
	// X-Qxtd-Signature-Previous, until then.
	PreviousUntil *time.Time    `json:"previous_until,omitempty"`
	Status        ReceiptStatus `json:"status"`
	// ReplyStatus is how its pushed replies stand, in the same terms: the
	// replies waiting for their POST, and the last POSTs of replies.
	ReplyStatus ReceiptStatus `json:"reply_status"`
}

// ReceiptStatus is how the enterprise's pushed receipts stand: what
// waits, what fails, and how the last POST ended. It is what tells a slow
// or failing endpoint apart from receipts that have not come yet. In a
// cluster each node keeps and pushes the receipts of the messages it
// accepted: the counts are the sums over the nodes, Last the latest of
// their last POSTs, Nodes each node's part, and a node that could not be
// asked is named in missing_nodes (receipts_cluster.go).
type ReceiptStatus struct {
	ReceiptCounts
	// Recent are the last POSTs, newest first (at most 10; in a cluster,
	// of every node together, each with its node).
	Recent []ReceiptPost       `json:"recent,omitempty"`
	Nodes  []NodeReceiptStatus `json:"nodes,omitempty"` // in a cluster: each node's part, by node id
	Missing
}

// ReceiptCounts is what waits, and the last POST, on one node or summed
// over the nodes.
type ReceiptCounts struct {
	Pending     int          `json:"pending"`                // receipts not yet delivered or given up, counted up to 10,000 a node
	PendingMore bool         `json:"pending_more"`           // there are more than that
	Retrying    int          `json:"retrying"`               // of those, the ones whose POST failed at least once
	FirstDueAt  *time.Time   `json:"first_due_at,omitempty"` // the earliest due among them: a receipt waiting since then, if past
	Last        *ReceiptPost `json:"last,omitempty"`         // the last POST of receipts (kept across restarts)
}

// NodeReceiptStatus is one cluster node's part of a ReceiptStatus.
type NodeReceiptStatus struct {
	Node uint16 `json:"node"`
	ReceiptCounts
	Recent []ReceiptPost `json:"-"` // the node's last POSTs, newest first: merged into ReceiptStatus.Recent
	// Replies is the node's part of the replies' status, in the same
	// terms; nil if it could not be read (or the node is older than reply
	// webhooks): the node is then missing from the replies' status.
	Replies *NodeReceiptStatus `json:"-"`
}

// ReceiptPost is how one POST of receipts, or of a reply, ended.
type ReceiptPost struct {
	At       time.Time `json:"at"`
	URL      string    `json:"url"`
	Receipts int       `json:"receipts,omitempty"` // the receipts it carried; absent in a reply's POST
	// Replies is how many replies a reply's POST carried (more than one
	// with reply_batch); absent in a receipts' POST, and in a reply's
	// from before reply batches (one).
	Replies   int  `json:"replies,omitempty"`
	Delivered bool `json:"delivered"`
	// Status is the endpoint's HTTP status, absent if none came (a
	// timeout, a refused connection or address).
	Status     int     `json:"status,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
	// FailingSince, for a failed POST: when the POSTs began to fail in a
	// row (the first failure since the last delivery).
	FailingSince *time.Time `json:"failing_since,omitempty"`
	Node         uint16     `json:"node,omitempty"` // in a cluster, of the status as a whole: the node that POSTed
}

// timeOrNil is t, or nil for the zero time (left out of the JSON).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ReceiptPostOf is what the API shows of a POST's outcome.
func ReceiptPostOf(o webhook.Outcome) ReceiptPost {
	p := ReceiptPost{At: o.At, URL: o.URL, Receipts: o.Receipts, Delivered: o.Delivered, Status: o.Status,
		DurationMS: float64(o.Duration.Microseconds()) / 1000, Error: o.Err, FailingSince: timeOrNil(o.FailingSince)}
	if o.Reply {
		p.Receipts, p.Replies = 0, o.Receipts
	}
	return p
}

// localReceiptStatus is enterprise code's part of its ReceiptStatus on
// this node (Node unset), with its part of the replies' status in Replies
// (nil if that could not be read: logged). An error is the receipts'.
func (s *Server) localReceiptStatus(code string) (NodeReceiptStatus, error) {
	var st, replies webhook.Status
	var err, rerr error
	switch {
	case s.cfg.Webhooks != nil:
		st, err = s.cfg.Webhooks.Status(code)
		replies, rerr = s.cfg.Webhooks.ReplyStatus(code)
	case s.cfg.Store != nil: // no sender: what waits in the store, no POST
		st.HookSummary, err = s.cfg.Store.HookSummary(code, webhook.StatusLimit)
		replies.HookSummary, rerr = s.cfg.Store.ReplySummary(code, webhook.StatusLimit)
	default:
		return NodeReceiptStatus{Replies: &NodeReceiptStatus{}}, nil
	}
	n := nodeStatusOf(st) // zero if err
	if rerr != nil {
		s.log.Error("reply status", "enterprise", code, "err", rerr)
	} else {
		r := nodeStatusOf(replies)
		n.Replies = &r
	}
	return n, err
}

// nodeStatusOf is what the API shows of a node's webhook status.
func nodeStatusOf(st webhook.Status) NodeReceiptStatus {
	var n NodeReceiptStatus
	n.Pending, n.PendingMore, n.Retrying, n.FirstDueAt = st.Pending, st.More, st.Retrying, timeOrNil(st.FirstDue)
	for _, o := range st.Recent {
		n.Recent = append(n.Recent, ReceiptPostOf(o))
	}
	if len(n.Recent) > 0 {
		n.Last = &n.Recent[0]
	}
	return n
}

// ReceiptWebhookPatch is the body of PATCH /v1/receipt-webhook; a field
// left out is kept.
type ReceiptWebhookPatch struct {
	ReceiptURL   *string `json:"receipt_url,omitempty"` // "" removes it
	ReplyURL     *string `json:"reply_url,omitempty"`   // "" removes it
	ReceiptBatch *int    `json:"receipt_batch,omitempty"`
	ReplyBatch   *int    `json:"reply_batch,omitempty"`
}

// ReceiptWebhookSecret is the answer of POST /v1/receipt-webhook/secret:
// the new secret, shown this once. It signs X-Qxtd-Signature from now on;
// the one it replaced signs X-Qxtd-Signature-Previous for a day (or
// Config.ReceiptSecretOverlap), so that the receiver can switch without
// refusing receipts.
type ReceiptWebhookSecret struct {
	Secret        string     `json:"secret"`
	PreviousUntil *time.Time `json:"previous_until,omitempty"` // until when the replaced secret signs too; absent if none was set
}

// ReceiptWebhookTestIn is the optional body of POST
// /v1/receipt-webhook/test.
type ReceiptWebhookTestIn struct {
	URL string `json:"url,omitempty"` // default: the enterprise's receipt_url (reply_url for a reply)
	// Kind is what to send: "receipt" (the default), or "reply", a sample
	// reply (MO) as the reply webhook POSTs one.
	Kind string `json:"kind,omitempty"`
}

// ReceiptWebhookTest is the answer of POST /v1/receipt-webhook/test: what
// one sample receipt (id "0", delivered) met at the endpoint.
type ReceiptWebhookTest struct {
	URL        string  `json:"url"`
	Kind       string  `json:"kind"`      // receipt | reply: what was sent
	Delivered  bool    `json:"delivered"` // the endpoint answered 2xx
	Status     int     `json:"status"`    // its HTTP status; 0 if none came
	DurationMS float64 `json:"duration_ms"`
	Signed     bool    `json:"signed"` // the POST carried X-Qxtd-Signature
	// SignedPrevious: it carried X-Qxtd-Signature-Previous too (a
	// rotated-out secret still signs).
	SignedPrevious bool   `json:"signed_previous"`
	Batched        bool   `json:"batched"`         // the body was {"receipts": [one]} ({"replies": [one]} for a reply)
	Error          string `json:"error,omitempty"` // why it was not delivered
}

func (s *Server) receiptWebhookOf(ctx context.Context, e *policy.Enterprise) ReceiptWebhook {
	out := ReceiptWebhook{ReceiptURL: e.Receipt.URL, ReplyURL: e.Receipt.ReplyURL, ReceiptBatch: e.Receipt.Batch, ReplyBatch: e.Receipt.ReplyBatch, Signed: e.Receipt.Secret != "",
		PreviousUntil: e.Receipt.PreviousSigns(time.Now())}
	out.Status, out.ReplyStatus = s.hookStatus(ctx, e.Code)
	return out
}

// showReceiptWebhook: GET /v1/receipt-webhook (every member)
func (s *Server) showReceiptWebhook(c *caller, w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.receiptWebhookOf(r.Context(), c.ent))
}

// patchReceiptWebhook: PATCH /v1/receipt-webhook (admins)
func (s *Server) patchReceiptWebhook(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	var in ReceiptWebhookPatch
	if !decodeBody(w, r, &in) {
		return
	}
	if in.ReceiptURL == nil && in.ReplyURL == nil && in.ReceiptBatch == nil && in.ReplyBatch == nil {
		writeErr(w, invalidZH("", "没有要修改的内容：请填写 receipt_url、reply_url、receipt_batch 或 reply_batch",
			"nothing to change: give receipt_url, reply_url, receipt_batch or reply_batch"))
		return
	}
	e, err := s.cfg.Policy.SetReceiptHook(c.actor(), c.ent.Code, func(h *policy.ReceiptHook) error {
		if in.ReceiptURL != nil {
			h.URL = *in.ReceiptURL
		}
		if in.ReplyURL != nil {
			h.ReplyURL = *in.ReplyURL
		}
		if in.ReceiptBatch != nil {
			h.Batch = *in.ReceiptBatch
		}
		if in.ReplyBatch != nil {
			h.ReplyBatch = *in.ReplyBatch
		}
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("receipt webhook changed", "enterprise", e.Code, "by", c.user.SystemID,
		"receipt_url", e.Receipt.URL, "reply_url", e.Receipt.ReplyURL, "receipt_batch", e.Receipt.Batch, "reply_batch", e.Receipt.ReplyBatch)
	writeJSON(w, http.StatusOK, s.receiptWebhookOf(r.Context(), e))
}

// newReceiptSecret: POST /v1/receipt-webhook/secret (admins)
func (s *Server) newReceiptSecret(c *caller, w http.ResponseWriter, _ *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	secret, now := policy.NewReceiptSecret(), time.Now()
	e, err := s.cfg.Policy.SetReceiptHook(c.actor(), c.ent.Code, func(h *policy.ReceiptHook) error {
		h.SetSecret(secret, now, s.cfg.ReceiptSecretOverlap)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("receipt secret generated", "enterprise", e.Code, "by", c.user.SystemID)
	writeJSON(w, http.StatusOK, ReceiptWebhookSecret{Secret: secret, PreviousUntil: e.Receipt.PreviousSigns(now)})
}

// testReceiptWebhook: POST /v1/receipt-webhook/test (admins)
func (s *Server) testReceiptWebhook(c *caller, w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(c, w) {
		return
	}
	s.receiptTest(w, r, c.ent)
}

// adminReceiptTest: POST /admin/v1/enterprises/{code}/receipt-test, the
// account manager's check of an enterprise's endpoint (same limits).
func (s *Server) adminReceiptTest(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	e, err := s.cfg.Policy.Enterprise(a, r.PathValue("code"))
	if err != nil {
		writeErr(w, err)
		return
	}
	s.receiptTest(w, r, e)
}

// receiptTest sends enterprise e's test receipt to the body's url, or to
// e's receipt_url, and answers what the endpoint did.
func (s *Server) receiptTest(w http.ResponseWriter, r *http.Request, e *policy.Enterprise) {
	if s.cfg.Webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no receipt webhook sender")
		return
	}
	var in ReceiptWebhookTestIn
	if r.ContentLength != 0 && !decodeBody(w, r, &in) {
		return
	}
	reply, ok := webhookKind(w, in.Kind)
	if !ok {
		return
	}
	test, setURL, key := s.cfg.Webhooks.Test, e.Receipt.URL, "receipt_url"
	if reply {
		test, setURL, key = s.cfg.Webhooks.TestReply, e.Receipt.ReplyURL, "reply_url"
	}
	if in.URL == "" {
		in.URL = setURL
	}
	if in.URL == "" {
		writeInvalid(w, "url", "尚未设置"+hookURLZH[key]+"：请填写要测试的地址", "url: no "+key+" is set; name one to test")
		return
	}
	if err := policy.CheckReceiptURL("url", in.URL); err != nil {
		writeErr(w, err)
		return
	}
	res, err := test(r.Context(), e.Code, in.URL)
	if errors.Is(err, webhook.ErrTestBusy) {
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "one test receipt at a time, at most 10 a minute: try again shortly")
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	out := ReceiptWebhookTest{URL: in.URL, Kind: cmp.Or(in.Kind, "receipt"), Delivered: res.Err == nil, Status: res.Status,
		DurationMS: float64(res.Duration.Microseconds()) / 1000, Signed: res.Signed, SignedPrevious: res.SignedPrevious, Batched: res.Batched}
	if res.Err != nil {
		out.Error = res.Err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

// ReceiptWebhookRetryIn is the optional body of POST
// /v1/receipt-webhook/retry (and the operator's …/receipt-retry).
type ReceiptWebhookRetryIn struct {
	// Kind is what to post now: "receipt" (the default: no body, or no
	// kind, is the receipts' retry as before), or "reply", the replies
	// (MO) waiting for a retry of their POST to reply_url.
	Kind string `json:"kind,omitempty"`
}

// ReceiptWebhookRetry is the answer of POST /v1/receipt-webhook/retry:
// how many receipts (or replies) that waited for a later retry are due
// now. In a cluster every node is asked to do it for its own: the sums,
// each node's part, and the nodes that could not be asked.
type ReceiptWebhookRetry struct {
	Kind        string             `json:"kind"` // receipt | reply: what was made due
	Rescheduled int                `json:"rescheduled"`
	More        bool               `json:"more"`            // more still wait (10,000 a node a call): call again after a minute
	Nodes       []NodeReceiptRetry `json:"nodes,omitempty"` // in a cluster: each node's part, by node id
	Missing
}

// NodeReceiptRetry is one cluster node's part of a ReceiptWebhookRetry.
type NodeReceiptRetry struct {
	Node        uint16 `json:"node"`
	Rescheduled int    `json:"rescheduled"`
	More        bool   `json:"more"`
	// Busy: the node did it less than a minute ago (for a request made
	// to it directly), so did nothing now.
	Busy bool `json:"busy,omitempty"`
}

// retryReceiptWebhook: POST /v1/receipt-webhook/retry (admins)
func (s *Server) retryReceiptWebhook(c *caller, w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(c, w) {
		return
	}
	s.receiptRetry(w, r, c.ent.Code, c.user.SystemID)
}

// adminReceiptRetry: POST /admin/v1/enterprises/{code}/receipt-retry
func (s *Server) adminReceiptRetry(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	e, err := s.cfg.Policy.Enterprise(a, r.PathValue("code"))
	if err != nil {
		writeErr(w, err)
		return
	}
	s.receiptRetry(w, r, e.Code, a.Name)
}

// kindPlural is what a retry of the kind moves, in words.
func kindPlural(reply bool) string {
	if reply {
		return "replies"
	}
	return "receipts"
}

// hookURLZH names receiptTest's URL settings in Chinese.
var hookURLZH = map[string]string{"receipt_url": "回执推送地址", "reply_url": "回复推送地址"}

// webhookKind reads the kind a body names: "receipt" or none (reply
// false), "reply" (true); anything else is answered 400 invalid (ok
// false).
func webhookKind(w http.ResponseWriter, kind string) (reply, ok bool) {
	switch kind {
	case "", "receipt":
		return false, true
	case "reply":
		return true, true
	}
	writeInvalid(w, "kind", "类型须为 receipt（状态报告）或 reply（回复）", `kind: "receipt" or "reply"`)
	return false, false
}

// kindName is the kind of webhook, as the API names it.
func kindName(reply bool) string {
	if reply {
		return "reply"
	}
	return "receipt"
}

// receiptRetry makes enterprise code's receipts (or, with the body's
// "kind": "reply", its replies) that wait for a later retry due now (the
// endpoint is mended: no need to wait out the backoff).
func (s *Server) receiptRetry(w http.ResponseWriter, r *http.Request, code, by string) {
	if s.cfg.Webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no receipt webhook sender")
		return
	}
	var in ReceiptWebhookRetryIn
	if r.ContentLength != 0 && !decodeBody(w, r, &in) {
		return
	}
	reply, ok := webhookKind(w, in.Kind)
	if !ok {
		return
	}
	retry := s.cfg.Webhooks.RetryNow
	if reply {
		retry = s.cfg.Webhooks.RetryRepliesNow
	}
	what := kindPlural(reply)
	n, more, err := retry(r.Context(), code)
	if errors.Is(err, webhook.ErrRetryBusy) {
		writeError(w, http.StatusTooManyRequests, "too_many_requests", what+" were made due less than a minute ago: try again shortly")
		return
	}
	if err != nil {
		s.log.Error(what+" due now", "enterprise", code, "by", by, "moved", n, "err", err)
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(), policy.ReasonStoreError.Message())
		return
	}
	out := s.clusterRetry(r.Context(), code, reply, NodeReceiptRetry{Rescheduled: n, More: more}) // receipts_cluster.go
	s.log.Info(what+" made due now", "enterprise", code, "by", by, what, out.Rescheduled, "more", out.More,
		"missing_nodes", out.MissingNodes)
	writeJSON(w, http.StatusOK, out)
}

package cluster

// Receipt webhooks across nodes. Each node keeps and pushes the receipts
// of the messages it accepted, so an enterprise's waiting receipts are
// spread over the nodes' stores: the status an enterprise sees, and its
// "post the waiting receipts now", must ask every node. A node answers
//
//	GET  /peer/v1/receipt-hooks?enterprise=E
//	                              → PeerHookStatus: its receipts of E waiting, and its last POSTs;
//	                                in replies, the same of E's replies (absent from a node
//	                                older than reply webhooks)
//	POST /peer/v1/receipt-hooks/retry?enterprise=E
//	                              → PeerHookRetry: what it made due now of E's receipts
//	                                (busy: it did so less than a minute ago, for another
//	                                request)
//	POST /peer/v1/reply-hooks/retry?enterprise=E
//	                              → PeerHookRetry: the same of E's replies
//
// (404 if the backend is not a PeerHooksBackend). All are bounded on the
// answering node as its own API is: a status reads at most 10,000 keys, a
// retry moves at most 10,000 receipts (or replies) and once a minute an
// enterprise and a kind.
//
// The kind of a retry is in its path, not in a parameter: a node older
// than reply webhooks ignores parameters it does not know, and would have
// made receipts due for a question about replies. It has no reply-hooks
// route, so it answers 404 and the asking node names it missing: the
// replies it keeps, if any, wait out their backoff, and the answer says
// so.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// PeerHookStatus is how one enterprise's pushed receipts stand on one
// node.
type PeerHookStatus struct {
	Pending  int        `json:"pending"`  // waiting: not yet delivered or given up, counted up to a limit
	More     bool       `json:"more"`     // the count stopped at the limit
	Retrying int        `json:"retrying"` // of those, the ones whose POST failed at least once
	FirstDue *time.Time `json:"first_due,omitempty"`
	// Recent are its last POSTs (a few), newest first.
	Recent []PeerHookPost `json:"recent,omitempty"`
	// Replies is how the enterprise's pushed replies (MO) stand on the
	// node, in the same terms (its own Replies unset); nil if the node
	// could not read them, or is older than reply webhooks.
	Replies *PeerHookStatus `json:"replies,omitempty"`
}

// PeerHookPost is how one POST of receipts ended.
type PeerHookPost struct {
	At         time.Time `json:"at"`
	URL        string    `json:"url"`
	Receipts   int       `json:"receipts"`
	Replies    int       `json:"replies,omitempty"` // a reply's POST: the replies it carried (absent from an older node: one)
	Delivered  bool      `json:"delivered"`
	Status     int       `json:"status,omitempty"` // the endpoint's HTTP status, 0 if none came
	DurationMS float64   `json:"duration_ms"`
	Err        string    `json:"err,omitempty"`
	// FailingSince, for a failed POST: when the POSTs began to fail in a row.
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// PeerHookRetry is what one node did for a "post the waiting receipts
// (or replies) now".
type PeerHookRetry struct {
	Rescheduled int  `json:"rescheduled"` // receipts (or replies) made due now
	More        bool `json:"more"`        // more still wait for a later retry
	// Busy: the node did it less than a minute ago (a request to it, or
	// through another node) and did nothing now.
	Busy bool `json:"busy,omitempty"`
}

// PeerHooksBackend is the optional part of a PeerBackend that answers
// /peer/v1/receipt-hooks.
type PeerHooksBackend interface {
	// HookStatus returns enterprise's receipt webhooks on this node.
	HookStatus(ctx context.Context, enterprise string) (PeerHookStatus, error)
	// HookRetry makes enterprise's receipts (with reply, its replies) that
	// wait for a later retry due now, as the node's own API does.
	HookRetry(ctx context.Context, enterprise string, reply bool) (PeerHookRetry, error)
}

// hookRetryPath is the path of a retry of receipts, or with reply of
// replies.
func hookRetryPath(reply bool) string {
	if reply {
		return "/peer/v1/reply-hooks/retry"
	}
	return "/peer/v1/receipt-hooks/retry"
}

// hooksRoutes registers the receipt-hook endpoints if backend answers them.
func (s *peerServer) hooksRoutes() {
	hb, ok := s.backend.(PeerHooksBackend)
	if !ok {
		return
	}
	s.mux.HandleFunc("GET /peer/v1/receipt-hooks", func(w http.ResponseWriter, r *http.Request) {
		ent, ok := s.hookEnterprise(w, r)
		if !ok {
			return
		}
		st, err := hb.HookStatus(r.Context(), ent)
		if err != nil {
			s.log.Error("peer receipt-hook status", "node", PeerNode(r.Context()), "enterprise", ent, "err", err)
			http.Error(w, "status unavailable", http.StatusInternalServerError)
			return
		}
		writeJSON(w, st)
	})
	for _, reply := range []bool{false, true} {
		s.mux.HandleFunc("POST "+hookRetryPath(reply), func(w http.ResponseWriter, r *http.Request) {
			ent, ok := s.hookEnterprise(w, r)
			if !ok {
				return
			}
			res, err := hb.HookRetry(r.Context(), ent, reply)
			if err != nil {
				s.log.Error("peer receipt-hook retry", "node", PeerNode(r.Context()), "enterprise", ent, "replies", reply,
					"rescheduled", res.Rescheduled, "err", err)
				http.Error(w, "retry failed", http.StatusInternalServerError)
				return
			}
			writeJSON(w, res)
		})
	}
}

func (s *peerServer) hookEnterprise(w http.ResponseWriter, r *http.Request) (string, bool) {
	ent := r.URL.Query().Get("enterprise")
	if ent == "" {
		http.Error(w, "enterprise: required", http.StatusBadRequest)
		return "", false
	}
	return ent, true
}

// HookStatus asks the node at peerURL how enterprise's pushed receipts
// stand there. An error means they are unknown.
func (c *PeerClient) HookStatus(ctx context.Context, peerURL, enterprise string) (PeerHookStatus, error) {
	var st PeerHookStatus
	err := c.hooks(ctx, http.MethodGet, peerURL, "/peer/v1/receipt-hooks", enterprise, &st)
	return st, err
}

// HookRetry asks the node at peerURL to make enterprise's receipts (with
// reply, its replies) that wait for a later retry due now. An error means
// nothing is known of what it did (it may have done it: asking again
// within the minute answers busy); a node older than reply webhooks
// answers a question about replies 404, having done nothing.
func (c *PeerClient) HookRetry(ctx context.Context, peerURL, enterprise string, reply bool) (PeerHookRetry, error) {
	var res PeerHookRetry
	err := c.hooks(ctx, http.MethodPost, peerURL, hookRetryPath(reply), enterprise, &res)
	return res, err
}

func (c *PeerClient) hooks(ctx context.Context, method, peerURL, path, enterprise string, out any) error {
	data, err := c.do(ctx, method, peerURL, path+"?"+url.Values{"enterprise": {enterprise}}.Encode(), nil)
	if err != nil {
		return fmt.Errorf("cluster: %s of %s at %s: %w", path, enterprise, peerURL, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("cluster: %s of %s at %s: answer: %w", path, enterprise, peerURL, err)
	}
	return nil
}

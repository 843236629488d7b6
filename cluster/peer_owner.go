package cluster

// Operations routed to a message's owner: cancel and replace of a
// scheduled message that another node accepted (query_sm and GET
// /v1/messages/{id} use GET /peer/v1/messages/{id}).
//
//	POST /peer/v1/messages/{id}/cancel   {"account":PeerAccount}
//	                                     → PeerOutcome
//	POST /peer/v1/messages/{id}/replace  {"account":PeerAccount,"send_at":…,"text":…}
//	                                     → PeerOutcome
//
// The owner acts for the account as for a local request of it (another
// enterprise's message is not_found) and answers 200 with its outcome,
// refusals included, so that the caller answers its client exactly as
// the owner would have. A 5xx (the owner's store failed) or no answer
// leaves the outcome unknown: the caller reports a temporary failure.
// Both are idempotent for a replay: the owner cancels a cancelled message
// again without error, and a second replace sets the same values.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// PeerAccount is the account a routed operation acts for. Its fields are
// gateway.Account's: one converts to the other.
type PeerAccount struct {
	SystemID      string `json:"system_id"`
	Enterprise    string `json:"enterprise"`
	Signature     string `json:"signature,omitempty"`
	UserSignature string `json:"user_signature,omitempty"`
	ReceiptURL    string `json:"receipt_url,omitempty"`
	ServiceNumber string `json:"service_number,omitempty"`
	ExtLen        int    `json:"ext_len,omitempty"`
	Extension     string `json:"extension,omitempty"`
	LongReplies   string `json:"long_replies,omitempty"` // carried for the conversion only: replies do not go this way
}

// PeerReplace is a replace at the owner: a zero SendAt leaves the send
// time, an empty Text the text.
type PeerReplace struct {
	Account PeerAccount `json:"account"`
	SendAt  time.Time   `json:"send_at,omitzero"`
	Text    string      `json:"text,omitempty"`
}

type cancelRequest struct {
	Account PeerAccount `json:"account"`
}

// PeerOutcome is the owner's answer to a cancel or a replace. Its fields
// are gateway.OwnerAnswer's: one converts to the other.
type PeerOutcome struct {
	// Result is one of ok, not_found, not_scheduled, invalid, refused.
	Result string `json:"result"`
	// Reason is a refusal's policy reason name (refused only).
	Reason string `json:"reason,omitempty"`
	// Message is the owner's error text (refused: the refusal's detail).
	Message string `json:"message,omitempty"`
}

func (s *peerServer) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req cancelRequest
	if !decodeStrict(w, r, &req) {
		return
	}
	out, err := s.backend.Cancel(r.Context(), id, req.Account)
	s.answerOutcome(w, r, "cancel", id, out, err)
}

func (s *peerServer) replace(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req PeerReplace
	if !decodeStrict(w, r, &req) {
		return
	}
	out, err := s.backend.Replace(r.Context(), id, req)
	s.answerOutcome(w, r, "replace", id, out, err)
}

func (s *peerServer) answerOutcome(w http.ResponseWriter, r *http.Request, op string, id uint64, out PeerOutcome, err error) {
	if err == nil && out.Result == "" {
		err = fmt.Errorf("backend gave no result")
	}
	if err != nil {
		s.log.Error("peer "+op, "node", PeerNode(r.Context()), "id", id, "err", err)
		http.Error(w, op+" not done", http.StatusInternalServerError)
		return
	}
	writeJSON(w, out)
}

func pathID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "bad message id", http.StatusBadRequest)
		return 0, false
	}
	return id, true
}

func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// Cancel asks the node at peerURL (the one NodeOf(id) names) to cancel
// its scheduled message id for acct. The outcome is the owner's, refusals
// included; an error means the owner could not be asked or failed, and
// nothing is known.
func (c *PeerClient) Cancel(ctx context.Context, peerURL string, id uint64, acct PeerAccount) (PeerOutcome, error) {
	return c.change(ctx, peerURL, id, "cancel", cancelRequest{Account: acct})
}

// Replace asks the node at peerURL to change the send time and/or text of
// its scheduled message id, as Cancel does.
func (c *PeerClient) Replace(ctx context.Context, peerURL string, id uint64, req PeerReplace) (PeerOutcome, error) {
	return c.change(ctx, peerURL, id, "replace", req)
}

func (c *PeerClient) change(ctx context.Context, peerURL string, id uint64, op string, req any) (PeerOutcome, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return PeerOutcome{}, fmt.Errorf("cluster: %s %d: %w", op, id, err)
	}
	data, err := c.do(ctx, http.MethodPost, peerURL, "/peer/v1/messages/"+strconv.FormatUint(id, 10)+"/"+op, body)
	if err != nil {
		return PeerOutcome{}, fmt.Errorf("cluster: %s %d at %s: %w", op, id, peerURL, err)
	}
	var out PeerOutcome
	if err := json.Unmarshal(data, &out); err != nil || out.Result == "" {
		return PeerOutcome{}, fmt.Errorf("cluster: %s %d at %s: answer without a result: %q", op, id, peerURL, data)
	}
	return out, nil
}

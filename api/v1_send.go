package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// Sending: POST /v1/messages, one text to up to MaxRecipients numbers and
// address book groups, now or at a send time, with one result per
// recipient (idempotency.go answers a retried Idempotency-Key).

// SendRequest is the body of POST /v1/messages: one text to 1 to 1,000
// recipients, plus the members of address book groups.
type SendRequest struct {
	To         []string `json:"to"`
	Groups     []string `json:"groups,omitempty"` // address book groups (departments): their members are added to to, each number once
	Book       string   `json:"book,omitempty"`   // the book of groups: personal (default) | enterprise
	Text       string   `json:"text"`
	Source     string   `json:"source,omitempty"`      // sender extension, digits
	SendAt     string   `json:"send_at,omitempty"`     // RFC 3339; the past = at once
	ValidUntil string   `json:"valid_until,omitempty"` // RFC 3339; default: the daemon's validity after the send time
	Receipt    bool     `json:"receipt,omitempty"`     // forward the final receipt to the account's SMPP receiver bind
	ReceiptURL string   `json:"receipt_url,omitempty"` // POST the final receipt here (http/https); default: the enterprise's receipt_url
}

// SendResponse is the answer of POST /v1/messages: one result per
// recipient, in the order given.
type SendResponse struct {
	Results  []RecipientResult `json:"results"`
	Accepted int               `json:"accepted"`
	Refused  int               `json:"refused"`
}

// RecipientResult is one recipient's outcome: an id (status "accepted"),
// or a refusal (status "refused") with the reason string and SMPP
// command_status the same refusal gets over SMPP.
type RecipientResult struct {
	To      string `json:"to"`
	Status  string `json:"status"` // accepted | refused
	ID      string `json:"id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    string `json:"code,omitempty"` // "0x00000400"
	Message string `json:"message,omitempty"`
}

func (s *Server) sendMessages(c *caller, w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if s.cfg.Gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return
	}
	now := time.Now()
	switch {
	case len(req.To) == 0 && len(req.Groups) == 0:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("to: 1 to %d numbers (or groups), got none", MaxRecipients))
		return
	case len(req.To) > MaxRecipients:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("to: 1 to %d numbers, got %d", MaxRecipients, len(req.To)))
		return
	case req.Book != "" && len(req.Groups) == 0:
		writeError(w, http.StatusBadRequest, "invalid", "book: only with groups")
		return
	case req.Text == "":
		writeError(w, http.StatusBadRequest, "invalid", "text is required")
		return
	case checkSource(req.Source) != nil:
		writeError(w, http.StatusBadRequest, "invalid", checkSource(req.Source).Error())
		return
	}
	if req.ReceiptURL != "" {
		if err := policy.CheckReceiptURL("receipt_url", req.ReceiptURL); err != nil {
			writeErr(w, err)
			return
		}
	}
	sendAt, ok := parseTimeField(w, "send_at", req.SendAt, now)
	if !ok {
		return
	}
	validUntil, ok := parseTimeField(w, "valid_until", req.ValidUntil, now)
	if !ok {
		return
	}
	if !validUntil.IsZero() && !validUntil.After(now) {
		writeError(w, http.StatusBadRequest, "invalid", "valid_until: must be in the future")
		return
	}
	var reg uint8
	if req.Receipt {
		reg = 1
	}
	dests := req.To
	if len(req.Groups) > 0 {
		members, ok := s.expandGroups(c, w, req.To, req.Groups, req.Book)
		if !ok {
			return
		}
		dests = append(slices.Clip(req.To), members...)
	}
	res, err := s.cfg.Gateway.Send(r.Context(), c.acct, gateway.SendRequest{
		Ingress:            "http",
		Source:             req.Source,
		Dests:              dests,
		Text:               req.Text,
		SendAt:             sendAt,
		ValidUntil:         validUntil,
		RegisteredDelivery: reg,
		ReceiptURL:         req.ReceiptURL,
	})
	if err != nil {
		writeRefusal(w, err)
		return
	}
	out := SendResponse{Results: make([]RecipientResult, len(res))}
	for i, rr := range res {
		if rr.Err == nil {
			out.Results[i] = RecipientResult{To: rr.Dest, Status: "accepted", ID: gateway.FormatID(rr.ID)}
			out.Accepted++
			continue
		}
		reason, code, msg := policy.Describe(rr.Err)
		out.Results[i] = RecipientResult{To: rr.Dest, Status: "refused", Reason: reason, Code: code, Message: msg}
		out.Refused++
	}
	writeJSON(w, http.StatusOK, out)
}

// parseTimeField parses an optional RFC 3339 time no later than
// maxScheduleSpan from now; it writes the error answer itself.
func parseTimeField(w http.ResponseWriter, field, v string, now time.Time) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", field+": not an RFC 3339 time (2026-01-02T15:04:05+08:00)")
		return time.Time{}, false
	}
	if t.After(now.Add(maxScheduleSpan)) {
		writeError(w, http.StatusBadRequest, "invalid", field+": more than a year ahead")
		return time.Time{}, false
	}
	return t, true
}

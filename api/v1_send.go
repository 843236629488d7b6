package api

import (
	"bytes"
	"encoding/json"
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
	Priority   bool     `json:"priority,omitempty"`    // ahead of the enterprise's backlog (a verification code behind a campaign)
}

// SendResponse is the answer of POST /v1/messages: one result per
// recipient, in the order given.
type SendResponse struct {
	Results  []RecipientResult `json:"results"`
	Accepted int               `json:"accepted"`
	Refused  int               `json:"refused"`
	// Duplicates are the numbers named again in the request (however
	// written): the number gets the earlier entry's message, once.
	Duplicates int `json:"duplicates"`
}

// RecipientResult is one recipient's outcome: an id (status "accepted"),
// or a refusal (status "refused") with the reason string and SMPP
// command_status the same refusal gets over SMPP, or (status
// "duplicate") the id of the message an earlier entry of the same number
// gets. A duplicate of a refused number is refused as it was.
type RecipientResult struct {
	To      string `json:"to"`
	Status  string `json:"status"` // accepted | refused | duplicate
	ID      string `json:"id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    string `json:"code,omitempty"` // "0x00000400"
	Message string `json:"message,omitempty"`
	// DetailZH is the refusal's detail in Chinese, as the consoles show
	// it beside the reason's (message_zh of the reasons table).
	DetailZH string `json:"detail_zh,omitempty"`
}

func (s *Server) sendMessages(c *caller, w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if !s.decodeSend(w, r, &req) {
		return
	}
	now := time.Now()
	switch {
	case len(req.To) == 0 && len(req.Groups) == 0:
		writeInvalid(w, "to", "请填写接收号码", fmt.Sprintf("to: 1 to %d numbers (or groups), got none", MaxRecipients))
		return
	case len(req.To) > MaxRecipients:
		writeInvalid(w, "to", fmt.Sprintf("一次最多 %d 个号码，填了 %d 个", MaxRecipients, len(req.To)), fmt.Sprintf("to: 1 to %d numbers, got %d", MaxRecipients, len(req.To)))
		return
	case req.Book != "" && len(req.Groups) == 0:
		writeInvalid(w, "book", "只有按分组发送时才能选择通讯录（book）", "book: only with groups")
		return
	case req.Text == "":
		writeInvalid(w, "text", "请填写短信内容", "text is required")
		return
	}
	common, ok := sendOptions(w, req.Source, req.SendAt, req.ValidUntil, req.Receipt, req.ReceiptURL, now)
	if !ok {
		return
	}
	common.Priority = req.Priority
	dests := req.To
	if len(req.Groups) > 0 {
		members, ok := s.expandGroups(c, w, req.To, req.Groups, req.Book)
		if !ok {
			return
		}
		dests = append(slices.Clip(req.To), members...)
	}
	common.Dests, common.Text, common.Once = dests, req.Text, true
	res, err := s.cfg.Gateway.Send(r.Context(), c.acct, common)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sendResponse(res))
}

// renderSend is the body sendMessages and sendPersonalized write for res
// (writeJSON's), for the answer stored with the messages
// (idempotentSend).
func renderSend(res []gateway.SendResult) []byte {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(sendResponse(res))
	return b.Bytes()
}

// decodeSend decodes a send's body into v, and answers 503 when this
// server has no gateway to send with; it writes the error answer itself.
func (s *Server) decodeSend(w http.ResponseWriter, r *http.Request, v any) bool {
	if !decodeBody(w, r, v) {
		return false
	}
	if s.cfg.Gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "sending is not configured")
		return false
	}
	return true
}

// sendOptions checks the fields every message of a send shares and
// returns them as a gateway request (without numbers and text); it writes
// the error answer itself.
func sendOptions(w http.ResponseWriter, source, sendAtS, validUntilS string, receipt bool, receiptURL string, now time.Time) (gateway.SendRequest, bool) {
	if err := checkSource(source); err != nil {
		writeInvalid(w, "source", fmt.Sprintf("发送号码须为最多 %d 位数字", maxSourceLen), err.Error())
		return gateway.SendRequest{}, false
	}
	if receiptURL != "" {
		if err := policy.CheckReceiptURL("receipt_url", receiptURL); err != nil {
			writeErr(w, err)
			return gateway.SendRequest{}, false
		}
	}
	sendAt, ok := parseTimeField(w, "send_at", sendAtS, now)
	if !ok {
		return gateway.SendRequest{}, false
	}
	validUntil, ok := parseTimeField(w, "valid_until", validUntilS, now)
	if !ok {
		return gateway.SendRequest{}, false
	}
	if !validUntil.IsZero() && !validUntil.After(now) {
		writeInvalid(w, "valid_until", "有效期须晚于现在", "valid_until: must be in the future")
		return gateway.SendRequest{}, false
	}
	out := gateway.SendRequest{Ingress: "http", Source: source, SendAt: sendAt, ValidUntil: validUntil, ReceiptURL: receiptURL}
	if receipt {
		out.RegisteredDelivery = 1
	}
	return out, true
}

// sendResponse is the answer of a send: one result per recipient.
func sendResponse(res []gateway.SendResult) SendResponse {
	out := SendResponse{Results: make([]RecipientResult, len(res))}
	for i, rr := range res {
		if rr.Duplicate && rr.Err == nil {
			out.Results[i] = RecipientResult{To: rr.Dest, Status: "duplicate", ID: gateway.FormatID(rr.ID)}
			out.Duplicates++
			continue
		}
		if rr.Err == nil {
			out.Results[i] = RecipientResult{To: rr.Dest, Status: "accepted", ID: gateway.FormatID(rr.ID)}
			out.Accepted++
			continue
		}
		reason, code, msg := policy.Describe(rr.Err)
		out.Results[i] = RecipientResult{To: rr.Dest, Status: "refused", Reason: reason, Code: code, Message: msg, DetailZH: policy.DetailZH(rr.Err)}
		out.Refused++
	}
	return out
}

// PersonalizedRequest is the body of POST /v1/messages/personalized: 1 to
// 1,000 messages, each with its own number and text (a verification code,
// a name: 个性化短信), sharing the other fields of a send.
type PersonalizedRequest struct {
	Messages   []PersonalMessage `json:"messages"`
	Source     string            `json:"source,omitempty"`      // sender extension, digits
	SendAt     string            `json:"send_at,omitempty"`     // RFC 3339; the past = at once
	ValidUntil string            `json:"valid_until,omitempty"` // RFC 3339; default: the daemon's validity after the send time
	Receipt    bool              `json:"receipt,omitempty"`     // forward each final receipt to the account's SMPP receiver bind
	ReceiptURL string            `json:"receipt_url,omitempty"` // POST each final receipt here; default: the enterprise's receipt_url
	Priority   bool              `json:"priority,omitempty"`    // ahead of the enterprise's backlog
}

// PersonalMessage is one message of a personalized send.
type PersonalMessage struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// sendPersonalized is POST /v1/messages/personalized: as POST
// /v1/messages, but each number its own text, all in one request and one
// group commit (one request of the enterprise's rate limit), so that a
// client with many different texts does not pay an HTTP request for
// each. A text refused as a whole (too long, not encodable) refuses its
// own message only.
func (s *Server) sendPersonalized(c *caller, w http.ResponseWriter, r *http.Request) {
	var req PersonalizedRequest
	if !s.decodeSend(w, r, &req) {
		return
	}
	if n := len(req.Messages); n == 0 || n > MaxRecipients {
		writeInvalid(w, "messages", fmt.Sprintf("一次须发 1–%d 条，填了 %d 条", MaxRecipients, n), fmt.Sprintf("messages: 1 to %d, got %d", MaxRecipients, n))
		return
	}
	for i, m := range req.Messages {
		switch {
		case m.To == "":
			writeInvalid(w, fmt.Sprintf("messages[%d].to", i), fmt.Sprintf("第 %d 条（messages[%d]）请填写接收号码", i+1, i), fmt.Sprintf("messages[%d].to is required", i))
			return
		case m.Text == "":
			writeInvalid(w, fmt.Sprintf("messages[%d].text", i), fmt.Sprintf("第 %d 条（messages[%d]）请填写短信内容", i+1, i), fmt.Sprintf("messages[%d].text is required", i))
			return
		}
	}
	common, ok := sendOptions(w, req.Source, req.SendAt, req.ValidUntil, req.Receipt, req.ReceiptURL, time.Now())
	if !ok {
		return
	}
	common.Priority = req.Priority
	reqs := make([]gateway.SendRequest, len(req.Messages))
	for i, m := range req.Messages {
		reqs[i] = common
		reqs[i].Dests, reqs[i].Text = []string{m.To}, m.Text
	}
	res, err := s.cfg.Gateway.SendEach(r.Context(), c.acct, common.Ingress, reqs)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sendResponse(res))
}

// timeFieldZH names parseTimeField's fields in Chinese.
var timeFieldZH = map[string]string{"send_at": "发送时间", "valid_until": "有效期"}

// parseTimeField parses an optional RFC 3339 time no later than
// maxScheduleSpan from now; it writes the error answer itself.
func parseTimeField(w http.ResponseWriter, field, v string, now time.Time) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		writeInvalid(w, field, timeFieldZH[field]+"格式有误（如 2026-01-02 15:04）", field+": not an RFC 3339 time (2026-01-02T15:04:05+08:00)")
		return time.Time{}, false
	}
	if t.After(now.Add(maxScheduleSpan)) {
		writeInvalid(w, field, timeFieldZH[field]+"最多在一年之内", field+": more than a year ahead")
		return time.Time{}, false
	}
	return t, true
}

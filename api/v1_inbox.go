package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/webhook"
)

// GET /v1/inbox: the replies (MO) to the enterprise's service number,
// newest first. An enterprise admin sees them all; a user those to its
// extension.

// InboxItem is one reply as the API shows it.
type InboxItem struct {
	ID        string `json:"id"`
	From      string `json:"from"` // the handset
	To        string `json:"to"`   // service number + extension
	Extension string `json:"extension"`
	Account   string `json:"account"` // the user with that extension; "" = the enterprise
	// Enterprise owns the reply: in the operator's trace of a number's
	// replies only (GET /admin/v1/inbox), "" there for a reply to a
	// number no enterprise has.
	Enterprise string    `json:"enterprise,omitempty"`
	Text       string    `json:"text"`
	ReceivedAt time.Time `json:"received_at"`
	Forwarded  bool      `json:"forwarded"` // an SMPP receiver acknowledged it
	// Refused: the enterprise's SMPP receiver refused it for good
	// (ESME_RX_P_APPN or ESME_RX_R_APPN): it is not sent again.
	Refused bool `json:"refused,omitempty"`
	// PartsMissing: the handset sent it in parts and this many never came
	// within smpp.mo_reassembly_timeout; Text is the parts that came.
	PartsMissing int `json:"parts_missing,omitempty"`
	// OptOut: the text is an opt-out keyword (回复TD退订): the number went
	// on the enterprise's opt-out list (GET /v1/optouts). Replies stored
	// by a release before 2026-12-07 do not say it.
	OptOut bool `json:"optout,omitempty"`
	// Webhook is its POST to the enterprise's reply_url, for a reply
	// that came while the enterprise had one ("" = none): "pending" (not
	// yet answered 2xx; retried with back-off), "delivered" (answered 2xx
	// at WebhookAt), or "gave_up" (webhooks.max_age passed, or the
	// reply_url was removed, first). A reply may go both ways: Forwarded
	// is its SMPP side.
	Webhook   string    `json:"webhook,omitempty"`
	WebhookAt time.Time `json:"webhook_at,omitzero"`
	webhook.ReplyBinary
}

// The values of InboxItem.Webhook.
const (
	ReplyWebhookPending   = "pending"
	ReplyWebhookDelivered = "delivered"
	ReplyWebhookGaveUp    = "gave_up"
)

// replyWebhook is InboxItem.Webhook and WebhookAt of m.
func replyWebhook(m *queue.MO) (string, time.Time) {
	switch {
	case m.ReplyURL == "":
		return "", time.Time{}
	case m.ReplyGaveUp:
		return ReplyWebhookGaveUp, time.Time{}
	case !m.PostedAt.IsZero():
		return ReplyWebhookDelivered, m.PostedAt
	}
	return ReplyWebhookPending, time.Time{}
}

// InboxPage is the answer of GET /v1/inbox; Next is the before= of the
// following page ("" at the end).
type InboxPage struct {
	Replies []InboxItem `json:"replies"`
	Next    string      `json:"next,omitempty"`
	Missing             // cluster mode: the nodes whose replies are not in the page
}

// inboxItemOf is inboxItem, naming its enterprise in the operator's
// trace of every enterprise's (all).
func inboxItemOf(m *queue.MO, all bool) InboxItem {
	it := inboxItem(m)
	if all {
		it.Enterprise = m.Enterprise
	}
	return it
}

func inboxItem(m *queue.MO) InboxItem {
	it := InboxItem{ID: strconv.FormatUint(m.ID, 10), From: m.Source, To: m.Dest, Extension: m.Extension,
		Account: m.Account, Text: m.Text, ReceivedAt: m.ReceivedAt, Forwarded: !m.ForwardedAt.IsZero() && !m.Refused, Refused: m.Refused,
		PartsMissing: m.PartsMissing, OptOut: m.OptOut, ReplyBinary: webhook.ReplyBinaryOf(m)}
	it.Webhook, it.WebhookAt = replyWebhook(m)
	return it
}

// maxNumberQuery bounds the number= of the inbox and the outboxes
// (characters): a number in any form, "+86 137-1234-5678" included.
const maxNumberQuery = 32

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

// inboxFilter reads the filters of GET /v1/inbox and /v1/inbox/export:
// the caller's replies (an admin's: the enterprise's), number, from and
// to; !ok: a 400 was written.
func inboxFilter(c *caller, w http.ResponseWriter, q url.Values) (f queue.InboxFilter, ok bool) {
	f.Number = q.Get("number")
	if !c.admin() {
		f.Account = c.user.SystemID
	}
	if len(f.Number) > maxNumberQuery || f.Number != "" && strings.IndexFunc(f.Number, isDigit) < 0 {
		writeInvalid(w, "number", fmt.Sprintf("号码须为手机号码或其尾号（最多 %d 个字符）", maxNumberQuery),
			fmt.Sprintf("number: the handset's number or its last digits (at most %d characters)", maxNumberQuery))
		return f, false
	}
	return f, timeRange(w, q, &f.From, &f.To)
}

func (s *Server) listInbox(c *caller, w http.ResponseWriter, r *http.Request) {
	s.inboxList(c, w, r, false)
}

// inboxList answers GET /v1/inbox for c, or (all) the operator's trace of
// every enterprise's replies from a number (f.AllEnterprises).
func (s *Server) inboxList(c *caller, w http.ResponseWriter, r *http.Request, all bool) {
	if s.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			writeInvalid(w, "limit", fmt.Sprintf("每页条数须为 1–%d", MaxListLimit), "limit: 1–"+strconv.Itoa(MaxListLimit))
			return
		}
		limit = n
	}
	var before uint64
	if v := q.Get("before"); v != "" && s.cfg.PeerLists == nil { // a cluster's cursor is not a number (clusterInbox)
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeInvalid(w, "before", pageCursorZH, "before: an id from next")
			return
		}
		before = n
	}
	f, ok := inboxFilter(c, w, q)
	if !ok {
		return
	}
	f.AllEnterprises = all
	if s.cfg.PeerLists != nil {
		s.clusterInbox(r.Context(), w, c, f, q.Get("before"), limit)
		return
	}
	list, next, err := s.cfg.Store.Inbox(c.ent.Code, f, before, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := InboxPage{Replies: make([]InboxItem, 0, len(list))}
	for _, m := range list {
		if c.listed(m.Enterprise) {
			out.Replies = append(out.Replies, inboxItemOf(m, all))
		}
	}
	if next != 0 {
		out.Next = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// Messages: the status of one message (GET /v1/messages/{id}), the sent and
// scheduled outboxes (GET /v1/messages, GET /v1/scheduled), and changing or
// cancelling a message that waits for its send time (PATCH and DELETE
// /v1/messages/{id}).

// Message is a message as the user API shows it.
type Message struct {
	ID         string `json:"id"`
	Enterprise string `json:"enterprise,omitempty"` // in the operator's trace of a number only (GET /admin/v1/messages)
	Account    string `json:"account"`              // the user who sent it
	To         string `json:"to"`
	Source     string `json:"source,omitempty"`
	Text       string `json:"text"` // as on the air, signatures included
	State      string `json:"state"`
	StateZH    string `json:"state_zh"`
	Scheduled  bool   `json:"scheduled"` // waiting for its send time: can be changed or cancelled
	Segments   int    `json:"segments"`
	Receipt    bool   `json:"receipt"`
	// Priority: while it waits, it goes ahead of the enterprise's backlog
	// (the send's priority, or an SMPP priority_flag: a verification code
	// behind a campaign). The store drops the mark once it is sent.
	Priority  bool   `json:"priority,omitempty"`
	ErrorCode string `json:"error_code,omitempty"` // the SMSC's error of the first part not delivered
	// Held says why a message waiting to be sent does not go now:
	// account_disabled while the operator has its enterprise disabled.
	// It goes once the enterprise is enabled again (or expires, past
	// valid_until). Absent when it goes in its turn.
	Held        string    `json:"held,omitempty"`
	AcceptedAt  time.Time `json:"accepted_at"`
	SendAt      time.Time `json:"send_at,omitzero"`
	ValidUntil  time.Time `json:"valid_until,omitzero"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"` // first segment accepted by the SMSC
	DoneAt      time.Time `json:"done_at,omitzero"`      // last segment final
	Parts       []Part    `json:"parts,omitempty"`       // in GET /v1/messages/{id} only
}

// Part is one segment of a Message: each step's time and the SMSC's
// answer, to tell why a message was not received.
type Part struct {
	Index       int       `json:"index"`
	State       string    `json:"state"`
	SMSCID      string    `json:"smsc_id,omitempty"`
	ErrorCode   string    `json:"error_code,omitempty"` // DLR err: field, or a submit_sm_resp status "0x…"
	Attempts    int       `json:"attempts"`
	DueAt       time.Time `json:"due_at,omitzero"` // while waiting to be sent
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	DoneAt      time.Time `json:"done_at,omitzero"`
}

// MessagePage is the answer of GET /v1/messages and GET /v1/scheduled.
type MessagePage struct {
	Messages []Message `json:"messages"`
	Next     string    `json:"next,omitempty"` // pass as after= for the next page; absent at the end
	Missing            // cluster mode: the nodes whose messages are not in the page
}

// MessagePatch is the body of PATCH /v1/messages/{id}: only the fields
// present change.
type MessagePatch struct {
	SendAt *string `json:"send_at,omitempty"`
	Text   *string `json:"text,omitempty"`
}

// stateZH is how a state is shown to people (a delivered message is 接收成功, received).
var stateZH = map[queue.State]string{
	queue.StateAccepted:      "等待发送",
	queue.StateSubmitted:     "已发送，等待回执",
	queue.StateDelivered:     "接收成功",
	queue.StateUndeliverable: "接收失败",
	queue.StateExpired:       "已过期",
	queue.StateRejected:      "被拒绝",
	queue.StateUnknown:       "状态未知",
	queue.StateCancelled:     "已取消",
}

// outcomeStates are the groups of states that GET /v1/messages?outcome=
// lists, as the outbox's tabs show them: received (接收成功: the handset
// got it, the only billed outcome), failed (接收失败: every final state
// but delivered and cancelled) and pending (发送中: not final yet).
var outcomeStates = map[string][]queue.State{
	"received": {queue.StateDelivered},
	"failed":   {queue.StateUndeliverable, queue.StateExpired, queue.StateRejected, queue.StateUnknown},
	"pending":  {queue.StateAccepted, queue.StateSubmitted},
}

func messageOut(m *queue.Message, now time.Time, parts bool) Message {
	st := m.State()
	out := Message{
		ID:         gateway.FormatID(m.ID),
		Account:    m.Account,
		To:         m.Dest,
		Source:     m.Source,
		Text:       m.Text,
		State:      st.String(),
		StateZH:    stateZH[st],
		Scheduled:  m.Scheduled(now),
		Segments:   len(m.Parts),
		Receipt:    m.RegisteredDelivery&0x03 != 0,
		Priority:   m.Priority,
		AcceptedAt: m.AcceptedAt,
		SendAt:     m.SendAt,
		ValidUntil: m.ValidUntil,
	}
	if out.Scheduled {
		out.StateZH = "定时待发"
	}
	final := m.Final()
	for i, p := range m.Parts {
		if !p.SubmittedAt.IsZero() && (out.SubmittedAt.IsZero() || p.SubmittedAt.Before(out.SubmittedAt)) {
			out.SubmittedAt = p.SubmittedAt
		}
		if final && p.DoneAt.After(out.DoneAt) {
			out.DoneAt = p.DoneAt
		}
		if out.ErrorCode == "" && p.State.Final() && p.State != queue.StateDelivered {
			out.ErrorCode = p.ErrCode
		}
		if parts {
			op := Part{Index: i, State: p.State.String(), SMSCID: p.SMSCID, ErrorCode: p.ErrCode,
				Attempts: p.Attempts, SubmittedAt: p.SubmittedAt, DoneAt: p.DoneAt}
			if p.State == queue.StateAccepted {
				op.DueAt = p.DueAt
			}
			out.Parts = append(out.Parts, op)
		}
	}
	return out
}

// messageID parses the {id} of a path; a malformed id is as unknown as a
// missing one.
func messageID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeNotFound(w)
		return 0, false
	}
	return id, true
}

// writeNotFound is the one answer for an unknown id and another
// enterprise's: nothing tells them apart.
func writeNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no such message")
}

func (s *Server) showMessage(c *caller, w http.ResponseWriter, r *http.Request) {
	id, ok := messageID(w, r)
	if !ok {
		return
	}
	s.writeMessage(r.Context(), c, w, id)
}

func (s *Server) writeMessage(ctx context.Context, c *caller, w http.ResponseWriter, id uint64) {
	if m, ok := s.visible(ctx, c, w, id); ok {
		out := messageOut(m, time.Now(), true)
		s.markHeld(&out, m)
		writeJSON(w, http.StatusOK, out)
	}
}

// markHeld sets out.Held, from m, when m waits to be sent and does not
// go now, and then names its state 暂停发送 (unless it is scheduled: it
// stays 定时待发, and is held when its time comes).
func (s *Server) markHeld(out *Message, m *queue.Message) {
	if s.cfg.Policy == nil || !s.cfg.Policy.Disabled(m.Enterprise) {
		return
	}
	for _, p := range m.Parts {
		if p.State == queue.StateAccepted {
			out.Held = policy.ReasonAccountDisabled.String()
			if !out.Scheduled {
				out.StateZH = "暂停发送"
			}
			return
		}
	}
}

// visible returns message id if the caller may see it; otherwise it
// writes the answer (404 as for an unknown id, or the store failure). In
// cluster mode an id of another node is asked of that node
// (gateway.FindMessage), and its message renders as a local one.
func (s *Server) visible(ctx context.Context, c *caller, w http.ResponseWriter, id uint64) (*queue.Message, bool) {
	if s.cfg.Gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return nil, false
	}
	m, err := s.cfg.Gateway.FindMessage(ctx, c.acct, id)
	if err != nil {
		writeOutboxErr(w, err)
		return nil, false
	}
	if !c.sees(m) {
		writeNotFound(w)
		return nil, false
	}
	return m, true
}

func (s *Server) listSent(c *caller, w http.ResponseWriter, r *http.Request) {
	s.list(c, w, r, queue.ListFilter{Sent: true})
}

func (s *Server) listScheduled(c *caller, w http.ResponseWriter, r *http.Request) {
	s.list(c, w, r, queue.ListFilter{Scheduled: true})
}

func (s *Server) list(c *caller, w http.ResponseWriter, r *http.Request, f queue.ListFilter) {
	if s.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return
	}
	q := r.URL.Query()
	ok, none := listFilter(c, w, q, &f)
	switch {
	case !ok:
		return
	case none:
		writeJSON(w, http.StatusOK, MessagePage{Messages: []Message{}}) // another user's: none visible
		return
	}
	var after uint64
	if v := q.Get("after"); v != "" && s.cfg.PeerLists == nil { // a cluster's cursor is not a number (clusterList)
		var err error
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeInvalid(w, "after", pageCursorZH, "after: the next cursor of the previous page")
			return
		}
	}
	limit := queue.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			writeInvalid(w, "limit", fmt.Sprintf("每页条数须为 1–%d", MaxListLimit), fmt.Sprintf("limit: 1 to %d", MaxListLimit))
			return
		}
		limit = n
	}
	if s.cfg.PeerLists != nil {
		s.clusterList(r.Context(), w, c, f, q.Get("outcome"), q.Get("after"), limit)
		return
	}
	ms, next, err := s.cfg.Store.List(f, after, limit)
	if err != nil {
		s.log.Error("list messages", "enterprise", f.Enterprise, "err", err)
		writeOutboxErr(w, fmt.Errorf("%w: %w", gateway.ErrStore, err))
		return
	}
	page := MessagePage{Messages: make([]Message, 0, len(ms))}
	for _, m := range ms {
		if !c.listed(m.Enterprise) {
			continue
		}
		out := messageOut(m, f.Now, false)
		s.markHeld(&out, m)
		if f.AllEnterprises {
			out.Enterprise = m.Enterprise
		}
		page.Messages = append(page.Messages, out)
	}
	if next != 0 {
		page.Next = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) editMessage(c *caller, w http.ResponseWriter, r *http.Request) {
	id, ok := messageID(w, r)
	if !ok {
		return
	}
	var p MessagePatch
	if !decodeBody(w, r, &p) {
		return
	}
	if p.SendAt == nil && p.Text == nil {
		writeInvalid(w, "", "请填写发送时间或短信内容（至少一项）", "send_at or text is required")
		return
	}
	var sendAt time.Time
	if p.SendAt != nil {
		if *p.SendAt == "" {
			writeInvalid(w, "send_at", "请填写发送时间", "send_at: empty")
			return
		}
		if sendAt, ok = parseTimeField(w, "send_at", *p.SendAt, time.Now()); !ok {
			return
		}
	}
	text := ""
	if p.Text != nil {
		if *p.Text == "" {
			writeInvalid(w, "text", "请填写短信内容", "text: empty")
			return
		}
		text = *p.Text
	}
	m, ok := s.visible(r.Context(), c, w, id)
	if !ok {
		return
	}
	if err := s.cfg.Gateway.Reschedule(r.Context(), s.ownerAccount(c, m), id, sendAt, text); err != nil {
		writeOutboxErr(w, err)
		return
	}
	s.writeMessage(r.Context(), c, w, id)
}

// ownerAccount is the account a changed message is signed and sent as:
// its sender's, also when an admin edits it (the user signature stays the
// sender's). A sender deleted since signs with the enterprise signature
// only.
func (s *Server) ownerAccount(c *caller, m *queue.Message) *gateway.Account {
	if m.Account == c.user.SystemID {
		return c.acct
	}
	if u, err := s.cfg.Policy.User(policy.OperatorActor("user-api"), m.Account); err == nil && u.Enterprise == c.ent.Code {
		return gateway.AccountFor(u, c.ent)
	}
	return &gateway.Account{SystemID: m.Account, Enterprise: c.ent.Code, Signature: c.ent.Signature}
}

func (s *Server) cancelMessage(c *caller, w http.ResponseWriter, r *http.Request) {
	id, ok := messageID(w, r)
	if !ok {
		return
	}
	if _, ok := s.visible(r.Context(), c, w, id); !ok {
		return
	}
	if err := s.cfg.Gateway.Cancel(r.Context(), c.acct, id); err != nil {
		writeOutboxErr(w, err)
		return
	}
	s.writeMessage(r.Context(), c, w, id)
}

// writeOutboxErr answers an error of Message, Cancel or Reschedule. An
// owner node that cannot be asked (cluster mode) is a 503 to retry, never
// a 404.
func writeOutboxErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, gateway.ErrOwnerUnavailable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the node that holds this message cannot be reached: try again")
	case errors.Is(err, queue.ErrNotFound):
		writeNotFound(w)
	case errors.Is(err, queue.ErrNotScheduled):
		writeError(w, http.StatusConflict, "not_scheduled",
			fmt.Sprintf("the message is not waiting for its send time (already sent, being sent, or due within %v): it can no longer be changed or cancelled", queue.ScheduleMargin))
	case errors.Is(err, queue.ErrInvalid):
		// Only a new text makes one (Reschedule): more parts than
		// a concatenated message can have.
		writeInvalid(w, "text", "短信内容太长：拆分后的条数超出上限", err.Error())
	default:
		writeRefusal(w, err)
	}
}

// listFilter reads the filters of GET /v1/messages, /v1/scheduled and
// /v1/messages/export into f (its Sent or Scheduled set by the route): the
// caller's enterprise; its own messages, or an admin's pick of account;
// number, state, outcome, from and to (and send_from, send_to of the
// scheduled).
// !ok: a 400 was written. none: the caller asked for another user's
// messages, of which it sees none.
func listFilter(c *caller, w http.ResponseWriter, q url.Values, f *queue.ListFilter) (ok, none bool) {
	f.Enterprise = c.ent.Code
	f.Account = q.Get("account")
	f.Now = time.Now()
	if !c.admin() {
		if f.Account != "" && f.Account != c.user.SystemID {
			return true, true
		}
		f.Account = c.user.SystemID
	}
	f.Number = q.Get("number")
	if len(f.Number) > maxNumberQuery || f.Number != "" && strings.IndexFunc(f.Number, isDigit) < 0 {
		writeInvalid(w, "number", fmt.Sprintf("号码须为接收号码或其尾号（最多 %d 个字符）", maxNumberQuery),
			fmt.Sprintf("number: the recipient's number or its last digits (at most %d characters)", maxNumberQuery))
		return false, false
	}
	if v := q.Get("state"); v != "" {
		st, ok := queue.ParseState(v)
		if !ok {
			writeInvalid(w, "state", "状态须为 accepted、submitted、delivered、undeliverable、expired、rejected、unknown 或 cancelled",
				"state: one of accepted, submitted, delivered, undeliverable, expired, rejected, unknown, cancelled")
			return false, false
		}
		f.State = st
	}
	if v := q.Get("outcome"); v != "" {
		sts, ok := outcomeStates[v]
		if !ok {
			writeInvalid(w, "outcome", "结果须为 received（接收成功）、failed（接收失败）或 pending（发送中）", "outcome: one of received, failed, pending")
			return false, false
		}
		f.States = sts
	}
	if !timeRange(w, q, &f.From, &f.To) {
		return false, false
	}
	if f.Scheduled && !sendRange(w, q, f) {
		return false, false
	}
	return true, false
}

// timeRange reads the from= and to= of a list (RFC 3339; absent: zero,
// unbounded) into from and to, or answers 400 naming the one that is not
// a time.
func timeRange(w http.ResponseWriter, q url.Values, from, to *time.Time) bool {
	return namedRange(w, q, "from", "to", from, to)
}

// sendRange reads the send_from= and send_to= of GET /v1/scheduled: the
// messages' send_at, in the format and bounds of from= and to= (at or
// after send_from, before send_to). A range that ends before it begins is
// a 400: an empty page would read as "nothing scheduled".
func sendRange(w http.ResponseWriter, q url.Values, f *queue.ListFilter) bool {
	if !namedRange(w, q, "send_from", "send_to", &f.SendFrom, &f.SendTo) {
		return false
	}
	if !f.SendFrom.IsZero() && !f.SendTo.IsZero() && f.SendTo.Before(f.SendFrom) {
		writeInvalid(w, "send_to", "定时时间段的结束（send_to）早于开始（send_from）", "send_to is before send_from")
		return false
	}
	return true
}

// rangeZH names namedRange's parameters in Chinese.
var rangeZH = map[string]string{"from": "开始时间", "to": "结束时间", "send_from": "定时时间起点", "send_to": "定时时间终点"}

// namedRange reads the query parameters fromName and toName as RFC 3339
// times (absent: zero), or writes the 400 naming the one that is not.
func namedRange(w http.ResponseWriter, q url.Values, fromName, toName string, from, to *time.Time) bool {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{fromName, from}, {toName, to}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeInvalid(w, p.name, rangeZH[p.name]+"须为 RFC 3339 时间（如 2026-01-02T15:04:05+08:00）", p.name+": not an RFC 3339 time")
				return false
			}
			*p.dst = t
		}
	}
	return true
}

package api

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// The enterprises' user API under /v1: group sends (one text, up to 1,000
// recipients and address book groups, refusals per recipient), scheduled
// sends, message status ("why wasn't it received?"), the sent and scheduled
// outboxes, and changing or cancelling a scheduled message; batch and
// templated sends from files (jobs.go) and the address books (contacts.go).
// openapi.yaml (served at GET /v1/openapi.yaml) documents every route; a
// test keeps it and userRouteList equal.
//
// Authentication: "Authorization: Bearer <key>" with the user's API key
// (issued by an admin) or a console token from POST /v1/login.
//
// Visibility: an enterprise admin sees, changes and cancels every message
// of the enterprise; a user (policy.RoleUser: "sends, reads its own
// messages") only its own. Anything else — another user's message for a
// user, any message of another enterprise — is answered exactly like an id
// that does not exist (404 not_found), so ids cannot be probed. The
// enterprise boundary is also enforced below the API (gateway.Message,
// queue.Cancel / Reschedule take the enterprise).

// openAPIDoc is the OpenAPI 3.0 description of /v1.
//
//go:embed openapi.yaml
var openAPIDoc []byte

// Limits of the user API.
const (
	MaxRecipients   = 1000                 // numbers in one POST /v1/messages
	MaxListLimit    = 1000                 // messages in one outbox page
	maxUserBody     = 1 << 20              // a request body
	maxSourceLen    = 20                   // source address (sender extension), digits
	maxScheduleSpan = 366 * 24 * time.Hour // the latest send_at accepted, from now
)

// userState is the user API's own state (a field of Server).
type userState struct {
	sessions *sessionStore
	logins   loginThrottle
	idem     *idemStore
}

// caller is who makes an authenticated /v1 request, as it is now.
type caller struct {
	user    *policy.User
	ent     *policy.Enterprise
	acct    *gateway.Account
	session string // the console token, "" for an API key
}

// admin reports whether the caller sees the whole enterprise's messages.
func (c *caller) admin() bool { return c.user.Role == policy.RoleAdmin }

// sees reports whether the caller may see (and change) m, which is of its
// enterprise.
func (c *caller) sees(m *queue.Message) bool {
	return m.Enterprise == c.ent.Code && (c.admin() || m.Account == c.user.SystemID)
}

// userHandler is a /v1 handler; c is nil on routes without authentication.
type userHandler func(c *caller, w http.ResponseWriter, r *http.Request)

// userRoute is one /v1 route: registration and the OpenAPI test use the
// same table.
type userRoute struct {
	Method string
	Path   string // ServeMux path pattern, OpenAPI style {param}
	Auth   bool   // needs an API key or a console token
	h      userHandler
}

// userRouteList is every /v1 route (openapi.yaml documents each).
func (s *Server) userRouteList() []userRoute {
	return []userRoute{
		{"POST", "/v1/login", false, s.login},
		{"POST", "/v1/logout", true, s.logout},
		{"GET", "/v1/me", true, s.me},
		{"POST", "/v1/messages", true, s.idempotent(s.sendMessages)},
		{"GET", "/v1/messages", true, s.listSent},
		{"GET", "/v1/messages/{id}", true, s.showMessage},
		{"PATCH", "/v1/messages/{id}", true, s.editMessage},
		{"DELETE", "/v1/messages/{id}", true, s.cancelMessage},
		{"GET", "/v1/scheduled", true, s.listScheduled},
		{"POST", "/v1/batches", true, s.createBatch},
		{"GET", "/v1/batches", true, s.listBatches},
		{"GET", "/v1/batches/{id}", true, s.showBatch},
		{"DELETE", "/v1/batches/{id}", true, s.cancelBatch},
		{"GET", "/v1/batches/template.csv", true, s.batchTemplateCSV},
		{"GET", "/v1/batches/template.xlsx", true, s.batchTemplateXLSX},
		{"GET", "/v1/contacts", true, s.listContacts(bookPersonal)},
		{"POST", "/v1/contacts", true, s.addContact(bookPersonal)},
		{"DELETE", "/v1/contacts/{id}", true, s.deleteContact(bookPersonal)},
		{"POST", "/v1/contacts/import", true, s.importContacts(bookPersonal)},
		{"GET", "/v1/contacts/template.csv", true, s.contactsTemplateCSV},
		{"GET", "/v1/contacts/template.xlsx", true, s.contactsTemplateXLSX},
		{"GET", "/v1/enterprise-contacts", true, s.listContacts(bookEnterprise)},
		{"POST", "/v1/enterprise-contacts", true, s.addContact(bookEnterprise)},
		{"DELETE", "/v1/enterprise-contacts/{id}", true, s.deleteContact(bookEnterprise)},
		{"POST", "/v1/enterprise-contacts/import", true, s.importContacts(bookEnterprise)},
		{"GET", "/v1/enterprise-contacts/template.csv", true, s.contactsTemplateCSV},
		{"GET", "/v1/enterprise-contacts/template.xlsx", true, s.contactsTemplateXLSX},
		{"GET", "/v1/openapi.yaml", false, s.openAPI},
	}
}

// userRoutes registers the enterprises' user API under /v1.
func (s *Server) userRoutes() {
	s.user.sessions = newSessionStore(MaxSessions, SessionIdle, time.Now)
	s.user.idem = newIdemStore(time.Now)
	s.user.logins.now = time.Now
	routes := s.userRouteList()
	for _, rt := range routes {
		h := rt.h
		var hf http.HandlerFunc
		if rt.Auth {
			hf = s.authenticated(h)
		} else {
			hf = func(w http.ResponseWriter, r *http.Request) { h(nil, w, r) }
		}
		s.mux.HandleFunc(rt.Method+" "+rt.Path, hf)
	}
	// Anything else under /v1 answers in JSON too.
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, rt := range routes {
			if pathMatches(rt.Path, r.URL.Path) {
				allow = append(allow, rt.Method)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not served on "+r.URL.Path)
			return
		}
		writeError(w, http.StatusNotFound, "unknown_route", "no such endpoint: "+r.URL.Path)
	})
}

// pathMatches matches a path against a route pattern whose {name}
// segments match any one segment.
func pathMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if !(strings.HasPrefix(p, "{") && xs[i] != "") && p != xs[i] {
			return false
		}
	}
	return true
}

// --- wire types (stable snake_case JSON) ---

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	SystemID string `json:"system_id"`
	Password string `json:"password"`
}

// LoginResponse is the answer of POST /v1/login.
type LoginResponse struct {
	Token     string `json:"token"`      // send as "Authorization: Bearer <token>"
	ExpiresIn int    `json:"expires_in"` // seconds of inactivity until it ends
}

// Me is the answer of GET /v1/me.
type Me struct {
	SystemID       string `json:"system_id"`
	Name           string `json:"name"`
	Role           string `json:"role"`
	Enterprise     string `json:"enterprise"`
	EnterpriseName string `json:"enterprise_name"`
	Signature      string `json:"signature"`      // the enterprise signature
	UserSignature  string `json:"user_signature"` // appended to the text, "" = none
	Session        bool   `json:"session"`        // authenticated by a console token
}

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

// Message is a message as the user API shows it.
type Message struct {
	ID          string    `json:"id"`
	Account     string    `json:"account"` // the user who sent it
	To          string    `json:"to"`
	Source      string    `json:"source,omitempty"`
	Text        string    `json:"text"` // as on the air, signatures included
	State       string    `json:"state"`
	StateZH     string    `json:"state_zh"`
	Scheduled   bool      `json:"scheduled"` // waiting for its send time: can be changed or cancelled
	Segments    int       `json:"segments"`
	Receipt     bool      `json:"receipt"`
	ErrorCode   string    `json:"error_code,omitempty"` // the SMSC's error of the first part not delivered
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
}

// MessagePatch is the body of PATCH /v1/messages/{id}: only the fields
// present change.
type MessagePatch struct {
	SendAt *string `json:"send_at,omitempty"`
	Text   *string `json:"text,omitempty"`
}

// stateZH is how a state is shown to people (FAQ 17: 接收成功).
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

// --- authentication ---

// authenticated wraps a handler with the caller's authentication: an API
// key or a live console token (whose expiry the request slides). The user
// and enterprise are looked up afresh on every request, so a disabled
// enterprise or a deleted user stops at once.
func (s *Server) authenticated(h userHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qxtd"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer <API key or console token> required")
			return
		}
		c, err := s.callerOf(tok)
		if err != nil {
			if errors.Is(err, policy.ErrAuth) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="qxtd", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "unknown API key, or console session ended (30 minutes without use, or logout)")
				return
			}
			writeRefusal(w, err)
			return
		}
		h(c, w, r)
	}
}

func (s *Server) callerOf(tok string) (*caller, error) {
	pol := s.cfg.Policy
	if pol == nil {
		return nil, policy.ErrAuth
	}
	if !isSessionToken(tok) {
		u, ent, err := pol.AuthenticateAPIKey(tok)
		if err != nil {
			return nil, err
		}
		return &caller{user: u, ent: ent, acct: gateway.AccountFor(u, ent)}, nil
	}
	se, ok := s.user.sessions.touch(tok)
	if !ok {
		return nil, policy.ErrAuth
	}
	u, err := pol.User(policy.Actor{Enterprise: se.enterprise, Name: se.systemID}, se.systemID)
	if err != nil || u.Enterprise != se.enterprise {
		s.user.sessions.end(tok) // the user was deleted or moved
		return nil, policy.ErrAuth
	}
	ent, ok := pol.Lookup(u.Enterprise)
	if !ok {
		s.user.sessions.end(tok)
		return nil, policy.ErrAuth
	}
	if ent.Disabled {
		return nil, policy.NewRefusal(policy.ReasonAccountDisabled, "enterprise "+ent.Code)
	}
	return &caller{user: u, ent: ent, acct: gateway.AccountFor(u, ent), session: tok}, nil
}

func (s *Server) login(_ *caller, w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no account store")
		return
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	u, ent, err := s.cfg.Policy.Authenticate(req.SystemID, req.Password)
	if err != nil {
		if errors.Is(err, policy.ErrAuth) {
			d := s.user.logins.failed(ip)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", "wrong system_id or password")
			return
		}
		writeRefusal(w, err)
		return
	}
	s.user.logins.succeeded(ip)
	tok, err := s.user.sessions.create(u.SystemID, ent.Code)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, LoginResponse{Token: tok, ExpiresIn: int(SessionIdle / time.Second)})
}

func (s *Server) logout(c *caller, w http.ResponseWriter, _ *http.Request) {
	if c.session == "" {
		writeError(w, http.StatusBadRequest, "invalid", "logout ends console sessions; an API key is revoked by an admin")
		return
	}
	s.user.sessions.end(c.session)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(c *caller, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Me{
		SystemID: c.user.SystemID, Name: c.user.Name, Role: c.user.Role.String(),
		Enterprise: c.ent.Code, EnterpriseName: c.ent.Name,
		Signature: c.acct.Signature, UserSignature: c.acct.UserSignature, Session: c.session != "",
	})
}

func (s *Server) openAPI(_ *caller, w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openAPIDoc)
}

// --- sending ---

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
	case len(req.Source) > maxSourceLen || strings.Trim(req.Source, "0123456789") != "":
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("source: up to %d digits", maxSourceLen))
		return
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
		reason, code, msg := refusalOf(rr.Err)
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

// --- status and outbox ---

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
	s.writeMessage(c, w, id)
}

func (s *Server) writeMessage(c *caller, w http.ResponseWriter, id uint64) {
	if m, ok := s.visible(c, w, id); ok {
		writeJSON(w, http.StatusOK, messageOut(m, time.Now(), true))
	}
}

// visible returns message id if the caller may see it; otherwise it
// writes the answer (404 as for an unknown id, or the store failure).
func (s *Server) visible(c *caller, w http.ResponseWriter, id uint64) (*queue.Message, bool) {
	if s.cfg.Gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return nil, false
	}
	m, err := s.cfg.Gateway.Message(c.acct, id)
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
	f.Enterprise = c.ent.Code
	f.Account = q.Get("account")
	f.Now = time.Now()
	if !c.admin() {
		if f.Account != "" && f.Account != c.user.SystemID {
			writeJSON(w, http.StatusOK, MessagePage{Messages: []Message{}}) // another user's: none visible
			return
		}
		f.Account = c.user.SystemID
	}
	if v := q.Get("state"); v != "" {
		st, ok := queue.ParseState(v)
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid", "state: one of accepted, submitted, delivered, undeliverable, expired, rejected, unknown, cancelled")
			return
		}
		f.State = st
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid", p.name+": not an RFC 3339 time")
				return
			}
			*p.dst = t
		}
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		var err error
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "after: the next cursor of the previous page")
			return
		}
	}
	limit := queue.DefaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("limit: 1 to %d", MaxListLimit))
			return
		}
		limit = n
	}
	ms, next, err := s.cfg.Store.List(f, after, limit)
	if err != nil {
		s.log.Error("list messages", "enterprise", f.Enterprise, "err", err)
		writeOutboxErr(w, fmt.Errorf("%w: %w", gateway.ErrStore, err))
		return
	}
	page := MessagePage{Messages: make([]Message, len(ms))}
	for i, m := range ms {
		page.Messages[i] = messageOut(m, f.Now, false)
	}
	if next != 0 {
		page.Next = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, page)
}

// --- scheduled outbox edits ---

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
		writeError(w, http.StatusBadRequest, "invalid", "send_at or text is required")
		return
	}
	var sendAt time.Time
	if p.SendAt != nil {
		if *p.SendAt == "" {
			writeError(w, http.StatusBadRequest, "invalid", "send_at: empty")
			return
		}
		if sendAt, ok = parseTimeField(w, "send_at", *p.SendAt, time.Now()); !ok {
			return
		}
	}
	text := ""
	if p.Text != nil {
		if *p.Text == "" {
			writeError(w, http.StatusBadRequest, "invalid", "text: empty")
			return
		}
		text = *p.Text
	}
	m, ok := s.visible(c, w, id)
	if !ok {
		return
	}
	if err := s.cfg.Gateway.Reschedule(r.Context(), s.ownerAccount(c, m), id, sendAt, text); err != nil {
		writeOutboxErr(w, err)
		return
	}
	s.writeMessage(c, w, id)
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
	if _, ok := s.visible(c, w, id); !ok {
		return
	}
	if err := s.cfg.Gateway.Cancel(r.Context(), c.acct, id); err != nil {
		writeOutboxErr(w, err)
		return
	}
	s.writeMessage(c, w, id)
}

// --- errors ---

// refusalOf is a refusal's reason, SMPP command_status and message, as
// SMPP and the metrics name them.
func refusalOf(err error) (reason, code, msg string) {
	var ref *policy.Refusal
	if errors.As(err, &ref) && ref.Reason.Valid() {
		msg = ref.Reason.Message()
		if ref.Detail != "" {
			msg += ": " + ref.Detail
		}
		return ref.Reason.String(), fmt.Sprintf("0x%08x", ref.Status()), msg
	}
	return "internal", fmt.Sprintf("0x%08x", policy.StatusSystemError), err.Error()
}

// refusalStatus is the HTTP status of a request-level refusal.
func refusalStatus(reason string) int {
	switch reason {
	case policy.ReasonRateLimited.String():
		return http.StatusTooManyRequests
	case policy.ReasonAccountDisabled.String(), policy.ReasonNoSignature.String():
		return http.StatusForbidden
	case "internal":
		return http.StatusInternalServerError
	}
	return http.StatusUnprocessableEntity
}

// refusalBody is an error answer that carries the SMPP command_status of
// a refusal besides its reason (the error schema's optional "code").
type refusalBody struct {
	Error struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Code    string `json:"code,omitempty"`
	} `json:"error"`
}

// writeRefusal answers a request-level refusal (the whole request, not one
// recipient) or a store failure.
func writeRefusal(w http.ResponseWriter, err error) {
	if errors.Is(err, gateway.ErrStore) {
		writeError(w, http.StatusServiceUnavailable, policy.ReasonStoreError.String(), policy.ReasonStoreError.Message())
		return
	}
	var b refusalBody
	b.Error.Reason, b.Error.Code, b.Error.Message = refusalOf(err)
	if b.Error.Reason == "internal" {
		b.Error.Code = ""
	}
	code := refusalStatus(b.Error.Reason)
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, b)
}

// writeOutboxErr answers an error of Message, Cancel or Reschedule.
func writeOutboxErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		writeNotFound(w)
	case errors.Is(err, queue.ErrNotScheduled):
		writeError(w, http.StatusConflict, "not_scheduled",
			fmt.Sprintf("the message is not waiting for its send time (already sent, being sent, or due within %v): it can no longer be changed or cancelled", queue.ScheduleMargin))
	case errors.Is(err, queue.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		writeRefusal(w, err)
	}
}

// decodeBody decodes a JSON request body of at most maxUserBody bytes
// into v, refusing unknown fields and trailing data; it writes the error
// answer itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeJSON(w, r, v, maxUserBody)
}

package api

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
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
// test keeps it and userRouteList equal. The wire types (stable snake_case
// JSON) sit beside the handlers that use them: v1_auth.go, v1_send.go,
// v1_messages.go.
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
	// listWait is listPageWait (tests shorten it).
	listWait time.Duration
	// answersAlone counts the answers saved in a commit of their own
	// (saveAnswer), not with their send's messages: tests see which.
	answersAlone atomic.Int64
	// exports are the outbox exports running (v1_export.go); each reads
	// exportPage messages at a time (0: MaxListLimit; tests shrink it).
	exports    exportSlots
	exportPage int
	// exportMaxTime is MaxExportTime (0), shortened by tests.
	exportMaxTime time.Duration
}

// caller is who makes an authenticated /v1 request, as it is now.
type caller struct {
	user    *policy.User
	ent     *policy.Enterprise
	acct    *gateway.Account
	session string // the console token, "" for an API key
	// serves, of an account manager's trace across enterprises, is
	// which enterprises' records it lists (nil: every one's).
	serves func(code string) bool
}

// listed reports whether c's list across enterprises shows a record of
// enterprise code.
func (c *caller) listed(code string) bool { return c.serves == nil || c.serves(code) }

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
		{"POST", "/v1/messages", true, s.idempotentSend(s.sendMessages)},
		{"POST", "/v1/messages/personalized", true, s.idempotentSend(s.sendPersonalized)},
		{"POST", "/v1/messages/preview", true, s.previewMessage},
		{"GET", "/v1/messages", true, s.listSent},
		{"GET", "/v1/messages/export", true, s.exportMessages},
		{"GET", "/v1/messages/{id}", true, s.showMessage},
		{"PATCH", "/v1/messages/{id}", true, s.editMessage},
		{"DELETE", "/v1/messages/{id}", true, s.cancelMessage},
		{"GET", "/v1/scheduled", true, s.listScheduled},
		{"GET", "/v1/scheduled/export", true, s.exportScheduled},
		{"GET", "/v1/inbox", true, s.listInbox},
		{"GET", "/v1/inbox/export", true, s.exportInbox},
		{"POST", "/v1/batches", true, s.idempotent(s.createBatch)},
		{"GET", "/v1/batches", true, s.listBatches},
		{"GET", "/v1/batches/{id}", true, s.showBatch},
		{"DELETE", "/v1/batches/{id}", true, s.cancelBatch},
		{"GET", "/v1/batches/template.csv", true, s.batchTemplateCSV},
		// Staged uploads of templated sends (v1_uploads.go).
		{"POST", "/v1/uploads", true, s.stageUpload},
		{"GET", "/v1/uploads/{id}/preview", true, s.previewUpload},
		{"GET", "/v1/uploads/{id}", true, s.showUpload},
		{"DELETE", "/v1/uploads/{id}", true, s.deleteUpload},
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
		{"POST", "/v1/reminders", true, s.createReminder},
		{"GET", "/v1/reminders", true, s.listReminders},
		{"GET", "/v1/reminders/{id}", true, s.showReminder},
		{"PATCH", "/v1/reminders/{id}", true, s.editReminder},
		{"DELETE", "/v1/reminders/{id}", true, s.deleteReminder},
		{"PATCH", "/v1/reminders/{id}/occurrences/{date}", true, s.editOccurrence},
		{"DELETE", "/v1/reminders/{id}/occurrences/{date}", true, s.deleteOccurrence},
		// Usage and bills (v1_usage.go).
		{"GET", "/v1/usage", true, s.usage},
		{"GET", "/v1/bills", true, s.bills},
		// The enterprise signature (v1_signature.go).
		{"GET", "/v1/signature", true, s.showSignature},
		{"POST", "/v1/signature/requests", true, s.requestSignature},
		{"GET", "/v1/signature/requests", true, s.listSignatureRequests},
		// The receipt webhook (v1_receipts.go).
		{"GET", "/v1/receipt-webhook", true, s.showReceiptWebhook},
		{"PATCH", "/v1/receipt-webhook", true, s.patchReceiptWebhook},
		{"POST", "/v1/receipt-webhook/secret", true, s.newReceiptSecret},
		{"POST", "/v1/receipt-webhook/test", true, s.testReceiptWebhook},
		{"POST", "/v1/receipt-webhook/retry", true, s.retryReceiptWebhook},
		// The enterprise admin's users (v1_users.go).
		{"GET", "/v1/users", true, s.listEnterpriseUsers},
		{"POST", "/v1/users", true, s.addEnterpriseUser},
		{"PATCH", "/v1/users/{system_id}", true, s.patchEnterpriseUser},
		{"POST", "/v1/users/{system_id}/password-reset", true, s.resetEnterpriseUserPassword},
		// Opt-outs: numbers that replied TD (v1_optouts.go).
		{"GET", "/v1/optouts", true, s.listMyOptOuts},
		{"GET", "/v1/optouts/export", true, s.exportMyOptOuts},
		{"POST", "/v1/optouts", true, s.addMyOptOuts},
		{"POST", "/v1/optouts/import", true, s.importMyOptOuts},
		{"DELETE", "/v1/optouts/{id}", true, s.removeMyOptOut},
		{"GET", "/v1/whitelist", true, s.listMyWhitelist},
		{"POST", "/v1/whitelist", true, s.addMyWhitelist},
		{"DELETE", "/v1/whitelist/{id}", true, s.removeMyWhitelist},
		{"POST", "/v1/whitelist/import", true, s.importMyWhitelist},
		{"GET", "/v1/whitelist/template.csv", true, s.whitelistTemplateCSV},
		{"GET", "/v1/whitelist/template.xlsx", true, s.whitelistTemplateXLSX},

		{"POST", "/v1/applications", false, s.apply},
		{"GET", "/v1/applications/{number}", false, s.showApplication},
		{"PUT", "/v1/me/password", true, s.changePassword},
		{"POST", "/v1/password-reset", false, s.publicPasswordReset},
	}
}

// userRoutes registers the enterprises' user API under /v1.
func (s *Server) userRoutes() {
	s.user.sessions = newSessionStore(userSessionLimits, SessionIdle, s.cfg.Clock)
	s.user.sessions.shared, s.user.sessions.kind = s.cfg.Sessions, SessionUser
	s.jobs.staged.now = s.cfg.Clock
	s.user.idem = newIdemStore(time.Now)
	s.user.listWait = listPageWait
	if s.cfg.Store != nil {
		if err := s.user.idem.load(s.cfg.Store); err != nil {
			s.log.Error("idempotency keys: some kept answers cannot be read (their keys are forgotten)", "err", err)
		}
		s.deleteForgotten(context.Background())
		// Batch jobs' files are spooled beside the store, where they last
		// as long as the jobs that read them (ResumeBatches).
		dir := s.cfg.Store.Path() + ".batches"
		if err := queue.MkdirAll(dir, 0o700); err != nil {
			s.log.Error("batch jobs: no spool directory beside the store: uploads go to the system's temporary directory, and a job stopped by a restart cannot resume", "dir", dir, "err", err)
		} else {
			s.jobs.tmpDir = dir
		}
	}
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

// accountStore reports whether the daemon has an account store (users,
// enterprises, address books). Without one it writes the 503 answer.
func (s *Server) accountStore(w http.ResponseWriter) bool {
	if s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no account store")
		return false
	}
	return true
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

func (s *Server) openAPI(_ *caller, w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(openAPIDoc)
}

// decodeBody decodes a JSON request body of at most maxUserBody bytes
// into v, refusing unknown fields and trailing data; it writes the error
// answer itself.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeJSON(w, r, v, maxUserBody)
}

// checkSource validates a sender extension given over HTTP (a single send
// or a batch): at most maxSourceLen digits.
func checkSource(source string) error {
	if len(source) > maxSourceLen || strings.Trim(source, "0123456789") != "" {
		return fmt.Errorf("source: up to %d digits", maxSourceLen)
	}
	return nil
}

package api

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/policy"
)

// The administration API: enterprises, users, whitelists, scope grants,
// packages, number overrides and password resets, under /admin/v1.
// admin.openapi.yaml (served at GET /admin/v1/openapi.yaml) is the
// reference of every route; a test keeps it equal to adminRoutePatterns
// and to the wire types. ADMIN.md explains them in prose.
//
// Handlers take the acting policy.Actor as a parameter: the admin token's
// (OperatorActor(OperatorName)), or an account manager's, under its name
// and over its portfolio when it has one (policy.ManagerActor; the routes
// it may call: portfolioRoutes); the policy package enforces what each
// actor may do.
//
// Authentication: "Authorization: Bearer <token>" with the operator token of
// the configuration (Config.AdminToken), checked by operator. The wire
// types (stable snake_case JSON, also used by Client) sit beside the
// handlers that use them.

// OperatorName is the audit name of the operator actor of the admin
// token (Config.AdminToken); an account manager's token acts under the
// manager's name (Config.Managers).
const OperatorName = "admin-api"

// Request limits.
const (
	maxJSONBody   = 8 << 20  // a JSON request (a whitelist of 100,000 numbers is ≈ 2 MiB)
	maxImportBody = 20 << 20 // a whitelist file
	maxListItems  = 100_000  // numbers in one JSON whitelist request
)

// adminOpenAPIDoc is the OpenAPI 3.0 description of /admin/v1.
//
//go:embed admin.openapi.yaml
var adminOpenAPIDoc []byte

// adminState is the admin routes' own state (a field of Server).
type adminState struct {
	notify       atomic.Pointer[PasswordNotifier]
	resetLimiter *rate.Limiter
	maxJSON      int64         // maxJSONBody (tests lower these before serving)
	maxImport    int64         // maxImportBody
	sessions     *sessionStore // operator sessions (admin_session.go)
	logins       loginThrottle // failed operator logins, per address
	// managers is Config.Managers, then what SetManagers gave: read on
	// every request, replaced whole on a reload. loginMu orders a login's
	// token check and session against SetManagers' ending of the sessions
	// of a manager taken out or given another token.
	managers atomic.Pointer[[]Manager]
	loginMu  sync.RWMutex
}

// actorHandler is an admin handler; a is who acts.
type actorHandler func(a policy.Actor, w http.ResponseWriter, r *http.Request)

type adminRoute struct {
	pattern string // Go 1.22 ServeMux pattern: "METHOD /path"
	h       actorHandler
}

// adminRouteList is every admin route behind the operator check except the
// operations endpoints (opsRouteList); admin.openapi.yaml documents each.
func (s *Server) adminRouteList() []adminRoute {
	return []adminRoute{
		{"POST /admin/v1/enterprises", s.createEnterprise},
		{"GET /admin/v1/enterprises", s.listEnterprises},
		{"GET /admin/v1/enterprises/{code}", s.showEnterprise},
		{"PATCH /admin/v1/enterprises/{code}", s.updateEnterprise},
		{"POST /admin/v1/enterprises/{code}/receipt-secret", s.setReceiptSecret},
		{"POST /admin/v1/enterprises/{code}/receipt-test", s.adminReceiptTest},
		{"POST /admin/v1/enterprises/{code}/receipt-retry", s.adminReceiptRetry},
		{"GET /admin/v1/messages", s.adminTrace},
		// An enterprise's records, as its admins see them (admin_records.go).
		{"GET /admin/v1/enterprises/{code}/messages", s.asEnterpriseAdmin(s.listSent)},
		{"GET /admin/v1/enterprises/{code}/messages/{id}", s.asEnterpriseAdmin(s.showMessage)},
		{"GET /admin/v1/enterprises/{code}/inbox", s.asEnterpriseAdmin(s.listInbox)},
		{"GET /admin/v1/enterprises/{code}/messages/export", s.asEnterpriseAdmin(s.exportMessages)},
		{"GET /admin/v1/enterprises/{code}/inbox/export", s.asEnterpriseAdmin(s.exportInbox)},
		{"GET /admin/v1/inbox", s.adminTraceReplies},

		{"POST /admin/v1/enterprises/{code}/users", s.createUser},
		{"GET /admin/v1/enterprises/{code}/users", s.listUsers},
		{"GET /admin/v1/users/{system_id}", s.showUser},
		{"PATCH /admin/v1/users/{system_id}", s.updateUser},
		{"DELETE /admin/v1/users/{system_id}", s.deleteUser},
		{"PUT /admin/v1/users/{system_id}/password", s.setPassword},
		{"POST /admin/v1/users/{system_id}/apikey", s.issueAPIKey},
		{"DELETE /admin/v1/users/{system_id}/apikey", s.revokeAPIKey},

		{"POST /admin/v1/enterprises/{code}/whitelist", s.addWhitelist},
		{"POST /admin/v1/enterprises/{code}/whitelist/import", s.importWhitelist},
		{"GET /admin/v1/enterprises/{code}/whitelist", s.listWhitelist},
		{"POST /admin/v1/enterprises/{code}/whitelist/approve", s.decideWhitelist(policy.WhitelistApproved)},
		{"POST /admin/v1/enterprises/{code}/whitelist/reject", s.decideWhitelist(policy.WhitelistRejected)},
		{"POST /admin/v1/enterprises/{code}/whitelist/remove", s.removeWhitelist},
		{"GET /admin/v1/whitelist/pending", s.listPending},
		{"POST /admin/v1/whitelist/approve", s.decideEntries(policy.WhitelistApproved)},
		{"POST /admin/v1/whitelist/reject", s.decideEntries(policy.WhitelistRejected)},

		{"GET /admin/v1/optouts", s.exportOptOuts},
		{"POST /admin/v1/enterprises/{code}/optouts", s.addOptOuts},
		{"POST /admin/v1/enterprises/{code}/held/drop", s.dropHeld},

		{"POST /admin/v1/logout", s.operatorLogout},
		{"GET /admin/v1/session", s.showOperatorSession},
		{"GET /admin/v1/status", s.status},
		{"GET /admin/v1/packages", s.listPackages},

		{"GET /admin/v1/overrides", s.listOverrides},
		{"PUT /admin/v1/overrides/{prefix}", s.setOverride},
		{"DELETE /admin/v1/overrides/{prefix}", s.removeOverride},

		{"POST /admin/v1/password-reset", s.passwordReset},

		{"GET /admin/v1/signature-requests", s.adminSignatureRequests},
		{"POST /admin/v1/signature-requests/{id}/approve", s.decideSignature(true)},
		{"POST /admin/v1/signature-requests/{id}/reject", s.decideSignature(false)},
		{"GET /admin/v1/applications", s.listApplications},
		{"GET /admin/v1/applications/{number}", s.showAdminApplication},
		{"POST /admin/v1/applications/{number}/approve", s.approveApplication},
		{"POST /admin/v1/applications/{number}/reject", s.rejectApplication},
	}
}

// adminRoutes registers the operator's and enterprises' administration
// endpoints (enterprises, users, whitelist, scope, packages).
func (s *Server) adminRoutes() {
	// Resets are operator-only for now; the limiter bounds what a leaked
	// token or a runaway script can send. Checked before any lookup, so it
	// tells nothing about the details either.
	s.admin.resetLimiter = rate.NewLimiter(rate.Every(time.Second), 10)
	s.admin.maxJSON, s.admin.maxImport = maxJSONBody, maxImportBody
	s.admin.sessions = newSessionStore(sessionLimits{all: MaxOperatorSessions}, SessionIdle, s.cfg.Clock)
	s.admin.sessions.prefix = operatorPrefix
	s.admin.sessions.shared, s.admin.sessions.kind = s.cfg.Sessions, SessionOperator
	s.admin.logins.now = time.Now
	for _, rt := range s.adminOpenRouteList() {
		s.mux.HandleFunc(rt.pattern, rt.h)
	}
	for _, rt := range s.adminRouteList() {
		h, pattern := rt.h, rt.pattern
		inPath := strings.Contains(pattern, "{code}")
		s.mux.HandleFunc(pattern, s.operator(func(w http.ResponseWriter, r *http.Request) {
			a := s.actorOf(r.Context())
			switch {
			case !a.Scoped():
			case inPath:
				if code := r.PathValue("code"); !a.Serves(code) {
					writeNotServed(w, a, code)
					return
				}
			case !portfolioRoutes[pattern]:
				writeNotServed(w, a, "")
				return
			}
			h(a, w, r)
		}))
	}
}

// portfolioRoutes are the admin routes without {code} in their path that
// an account manager with a portfolio (Manager.Enterprises) may call: the
// policy store keeps each to the manager's enterprises (a list holds
// theirs only, another's item is refused), or it shows no enterprise's
// data (status, packages, overrides). A route with {code} is checked
// against the portfolio before its handler runs; any other is the
// operator of every enterprise's, refused to a portfolio: creating
// enterprises, the applications to open one, changing the overrides, the
// password reset by group code, and the daemon's own operations
// (Server.Operator).
var portfolioRoutes = map[string]bool{
	"GET /admin/v1/enterprises":                      true,
	"GET /admin/v1/messages":                         true, // traceCaller
	"GET /admin/v1/inbox":                            true,
	"GET /admin/v1/users/{system_id}":                true,
	"PATCH /admin/v1/users/{system_id}":              true,
	"DELETE /admin/v1/users/{system_id}":             true,
	"PUT /admin/v1/users/{system_id}/password":       true,
	"POST /admin/v1/users/{system_id}/apikey":        true,
	"DELETE /admin/v1/users/{system_id}/apikey":      true,
	"GET /admin/v1/whitelist/pending":                true,
	"POST /admin/v1/whitelist/approve":               true,
	"POST /admin/v1/whitelist/reject":                true,
	"GET /admin/v1/optouts":                          true,
	"POST /admin/v1/logout":                          true,
	"GET /admin/v1/session":                          true, // the manager's own name and portfolio
	"GET /admin/v1/status":                           true,
	"GET /admin/v1/packages":                         true,
	"GET /admin/v1/overrides":                        true,
	"GET /admin/v1/signature-requests":               true,
	"POST /admin/v1/signature-requests/{id}/approve": true,
	"POST /admin/v1/signature-requests/{id}/reject":  true,
}

// actorOf is the actor of a request the operator check let in, as it
// resolved it; outside that check, the zero actor, which may do nothing.
func (s *Server) actorOf(ctx context.Context) policy.Actor {
	a, _ := ctx.Value(operatorKey{}).(policy.Actor)
	return a
}

// writeNotServed answers 403 to an account manager with a portfolio: code
// is not one of its enterprises, or ("") the route is the operator of
// every enterprise's.
func writeNotServed(w http.ResponseWriter, a policy.Actor, code string) {
	var b errorBody
	b.Error.Reason = "forbidden"
	if code != "" {
		b.Error.Message = fmt.Sprintf("enterprise %s is not one of account manager %s's (http.account_managers[].enterprises)", code, a.Name)
		b.Error.DetailZH = fmt.Sprintf("企业 %s 不在客户经理%s负责的企业之中", code, a.Name)
	} else {
		b.Error.Message = fmt.Sprintf("account manager %s serves some enterprises only: this is for the operator of every enterprise (the admin token, or a manager without enterprises)", a.Name)
		b.Error.DetailZH = fmt.Sprintf("客户经理%s只负责部分企业，此操作须由负责全部企业的客户经理办理", a.Name)
	}
	writeJSON(w, http.StatusForbidden, b)
}

// plainRoute is an admin route whose handler takes no actor: the open
// routes, and the operations endpoints (wrapped with the operator check).
type plainRoute struct {
	pattern string
	h       http.HandlerFunc
}

// adminOpenRouteList is every admin route without the operator check: the
// login, and the API's description, which holds no secret (as
// GET /v1/openapi.yaml).
func (s *Server) adminOpenRouteList() []plainRoute {
	return []plainRoute{
		{"POST /admin/v1/login", s.operatorLogin},
		{"GET /admin/v1/openapi.yaml", serveAdminOpenAPI},
	}
}

// adminRoutePatterns is every route under /admin/v1 this package registers
// ("METHOD /path"): the open ones, adminRouteList and opsRouteList. The
// OpenAPI test compares admin.openapi.yaml with it.
func (s *Server) adminRoutePatterns() []string {
	var out []string
	for _, rt := range s.adminOpenRouteList() {
		out = append(out, rt.pattern)
	}
	for _, rt := range s.adminRouteList() {
		out = append(out, rt.pattern)
	}
	for _, rt := range s.opsRouteList() {
		out = append(out, rt.pattern)
	}
	return out
}

func serveAdminOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(adminOpenAPIDoc)
}

// AdminOpenAPI is the OpenAPI document of /admin/v1 (admin.openapi.yaml),
// for the daemon's tests of the admin routes it registers itself.
func AdminOpenAPI() []byte { return adminOpenAPIDoc }

// operatorRefused is the message of the operator check's 401.
const operatorRefused = "admin token missing or wrong, or operator session ended"

// operator wraps an admin handler with the bearer-token check: the
// operator token of the configuration or an operator session
// (admin_session.go).
func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		var a policy.Actor
		if ok {
			var name string
			if name, ok = s.operatorOK(tok); ok {
				// Resolved once: the handler acts as this actor even
				// if a reload (SetManagers) comes meanwhile.
				a, ok = s.operatorActor(name)
			}
		}
		if !ok {
			writeError(w, http.StatusUnauthorized, "unauthorized", operatorRefused)
			return
		}
		// A read-only manager is refused whatever is not a read here, the
		// one door of every operator route (the daemon's own included),
		// so that a route added later cannot forget it.
		if a.ReadOnly && !readOnlyAllowed(r) {
			writeReadOnly(w, a)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, a)))
	}
}

// readOnlyAllowed reports whether a read-only manager may make request r:
// a read (GET or HEAD; none of those changes anything), or its logout.
func readOnlyAllowed(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead || r.Pattern == "POST /admin/v1/logout"
}

// writeReadOnly answers 403 to a read-only account manager's change.
func writeReadOnly(w http.ResponseWriter, a policy.Actor) {
	var b errorBody
	b.Error.Reason = "forbidden"
	b.Error.Message = fmt.Sprintf("account manager %s is read-only (http.account_managers[].read_only): it may look, not change", a.Name)
	b.Error.DetailZH = fmt.Sprintf("客户经理%s为只读账号，只能查看，不能修改", a.Name)
	writeJSON(w, http.StatusForbidden, b)
}

// operatorKey holds the policy.Actor the operator check resolved.
type operatorKey struct{}

// Operator wraps a handler of the daemon's own (outside this package)
// with the operator check (token or operator session); an account
// manager with a portfolio is refused: the daemon's operations are the
// operator of every enterprise's.
func (s *Server) Operator(h http.HandlerFunc) http.HandlerFunc {
	return s.operator(s.everyEnterprise(h))
}

// Status is a plain acknowledgement.
type Status struct {
	Status string `json:"status"`
}

// readJSON decodes the request body into v: at most maxJSONBody bytes, one
// JSON value, no unknown fields (a misspelt field of a PATCH must not be
// silently ignored). It writes the error answer itself and returns false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeJSON(w, r, v, s.admin.maxJSON)
}

// invalidZH is a request's field that cannot take its value
// (policy.ErrInvalid, "policy: invalid: " then the English formatted as
// fmt.Sprintf(format, args...)), with the rule in Chinese: writeErr
// answers it 400 invalid with "field" and "detail_zh" (field "": the
// request's shape, not one field's value).
func invalidZH(field, zh, format string, args ...any) error {
	return policy.NewFieldError(policy.ErrInvalid, field, zh, fmt.Sprintf(format, args...))
}

func (s *Server) audit(a policy.Actor, action string, args ...any) {
	s.log.Info("admin: "+action, append([]any{"actor", a.Name}, args...)...)
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

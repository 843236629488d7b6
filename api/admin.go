package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/policy"
)

// The administration API: enterprises, users, whitelists, scope grants,
// packages, number overrides and password resets, under /admin/v1. Every
// route is documented in ADMIN.md.
//
// Handlers take the acting policy.Actor as a parameter: today every route is
// reached with the operator token and acts as OperatorActor("admin-api");
// enterprise admins and users (issue 5) will reach the same handlers through
// another authentication wrapper that passes policy.ActorFor(user), and the
// policy package enforces what each actor may do.

// operatorName is the audit name of the operator actor of the admin API.
const operatorName = "admin-api"

// Request limits.
const (
	maxJSONBody   = 8 << 20  // a JSON request (a whitelist of 100,000 numbers is ≈ 2 MiB)
	maxImportBody = 20 << 20 // a whitelist file
	maxListItems  = 100_000  // numbers in one JSON whitelist request
)

// XLSXContentType is the media type of an XLSX whitelist upload.
const XLSXContentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// PasswordResetAnswer is the one answer of POST /admin/v1/password-reset,
// whether or not the details matched.
const PasswordResetAnswer = "if the details match, a new password is sent by SMS"

// PasswordNotifier sends text by SMS to mobile (E.164).
type PasswordNotifier func(ctx context.Context, mobile, text string) error

// adminState is the admin routes' own state (a field of Server).
type adminState struct {
	notify       atomic.Pointer[PasswordNotifier]
	resetLimiter *rate.Limiter
	maxJSON      int64 // maxJSONBody (tests lower these before serving)
	maxImport    int64 // maxImportBody
}

// SetPasswordNotifier sets how password resets reach the user's registered
// mobile; nil removes it. Until it is set, POST /admin/v1/password-reset
// answers 503 notifier_unavailable without looking anything up.
//
// TODO(internal-submit): qxtd cannot send an SMS of its own yet. What is
// missing is an internal submit path: an operator-owned system account
// (exempt from the whitelist, with its own signature) whose messages the
// daemon enqueues through the gateway like any other, so that serve.go can
// pass a notifier here. Until then resets are refused with 503.
func (s *Server) SetPasswordNotifier(f func(ctx context.Context, mobile, text string) error) {
	if f == nil {
		s.admin.notify.Store(nil)
		return
	}
	n := PasswordNotifier(f)
	s.admin.notify.Store(&n)
}

// actorHandler is an admin handler; a is who acts.
type actorHandler func(a policy.Actor, w http.ResponseWriter, r *http.Request)

type adminRoute struct {
	pattern string // Go 1.22 ServeMux pattern: "METHOD /path"
	h       actorHandler
}

// adminRouteList is every admin route (ADMIN.md documents each).
func (s *Server) adminRouteList() []adminRoute {
	return []adminRoute{
		{"POST /admin/v1/enterprises", s.createEnterprise},
		{"GET /admin/v1/enterprises", s.listEnterprises},
		{"GET /admin/v1/enterprises/{code}", s.showEnterprise},
		{"PATCH /admin/v1/enterprises/{code}", s.updateEnterprise},

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

		{"GET /admin/v1/overrides", s.listOverrides},
		{"PUT /admin/v1/overrides/{prefix}", s.setOverride},
		{"DELETE /admin/v1/overrides/{prefix}", s.removeOverride},

		{"POST /admin/v1/password-reset", s.passwordReset},
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
	op := policy.OperatorActor(operatorName)
	for _, rt := range s.adminRouteList() {
		h := rt.h
		s.mux.HandleFunc(rt.pattern, s.operator(func(w http.ResponseWriter, r *http.Request) { h(op, w, r) }))
	}
}

// --- wire types (stable snake_case JSON; also used by Client) ---

// NewEnterprise is the body of POST /admin/v1/enterprises.
type NewEnterprise struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	Signature   string `json:"signature"`
	Package     int    `json:"package"`
	National    bool   `json:"national"`
	OffNet      bool   `json:"offnet"`
	CapYuan     string `json:"cap_yuan,omitempty"` // monthly spending cap, "1500.00"; "" or "0" = none
	NoOverage   bool   `json:"no_overage"`
	TPS         int    `json:"tps"`
	NoWhitelist bool   `json:"no_whitelist"`
}

// EnterprisePatch is the body of PATCH /admin/v1/enterprises/{code}: only
// the fields present change.
type EnterprisePatch struct {
	Name        *string `json:"name,omitempty"`
	Signature   *string `json:"signature,omitempty"`
	Package     *int    `json:"package,omitempty"`
	National    *bool   `json:"national,omitempty"`
	OffNet      *bool   `json:"offnet,omitempty"`
	CapYuan     *string `json:"cap_yuan,omitempty"` // "" or "0" removes the cap
	NoOverage   *bool   `json:"no_overage,omitempty"`
	TPS         *int    `json:"tps,omitempty"`
	Disabled    *bool   `json:"disabled,omitempty"`
	NoWhitelist *bool   `json:"no_whitelist,omitempty"`
}

func (p *EnterprisePatch) empty() bool {
	return p.Name == nil && p.Signature == nil && p.Package == nil && p.National == nil && p.OffNet == nil &&
		p.CapYuan == nil && p.NoOverage == nil && p.TPS == nil && p.Disabled == nil && p.NoWhitelist == nil
}

// Enterprise is an enterprise as the API shows it.
type Enterprise struct {
	Code        string    `json:"code"`
	Name        string    `json:"name"`
	Signature   string    `json:"signature"`
	Package     int       `json:"package"`
	National    bool      `json:"national"`
	OffNet      bool      `json:"offnet"`
	CapFen      int64     `json:"cap_fen"`  // 0 = no cap
	CapYuan     string    `json:"cap_yuan"` // the same, "1500.00"
	NoOverage   bool      `json:"no_overage"`
	TPS         int       `json:"tps"` // 0 = the daemon's default
	Disabled    bool      `json:"disabled"`
	NoWhitelist bool      `json:"no_whitelist"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func enterpriseOut(e *policy.Enterprise) Enterprise {
	return Enterprise{Code: e.Code, Name: e.Name, Signature: e.Signature, Package: e.Package,
		National: e.National, OffNet: e.OffNet, CapFen: e.CapFen, CapYuan: policy.FormatFen(e.CapFen),
		NoOverage: e.NoOverage, TPS: e.TPS, Disabled: e.Disabled, NoWhitelist: e.NoWhitelist,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

// EnterpriseList is the answer of GET /admin/v1/enterprises.
type EnterpriseList struct {
	Enterprises []Enterprise `json:"enterprises"`
}

// EnterpriseDetail is the answer of GET /admin/v1/enterprises/{code}.
type EnterpriseDetail struct {
	Enterprise  Enterprise      `json:"enterprise"`
	PackageInfo *policy.Package `json:"package_info"` // the package's tier; null if not in the table
	Users       int             `json:"users"`
	Whitelist   WhitelistCounts `json:"whitelist"`
	Usage       Usage           `json:"usage"`
}

// WhitelistCounts counts an enterprise's whitelist entries per state.
type WhitelistCounts struct {
	Pending  int `json:"pending"`
	Approved int `json:"approved"`
	Rejected int `json:"rejected"`
}

// Usage is an enterprise's segment usage in one billing month.
type Usage struct {
	Month    string `json:"month"`    // "2006-01", Asia/Shanghai
	Reserved int64  `json:"reserved"` // accepted, no final outcome yet
	Charged  int64  `json:"charged"`  // delivered (billable)
	Limit    int64  `json:"limit"`    // reserved + charged allowed per month under the current settings; -1 = no limit
}

// NewUser is the body of POST /admin/v1/enterprises/{code}/users.
type NewUser struct {
	SystemID      string `json:"system_id"`
	Password      string `json:"password"`
	Name          string `json:"name"`
	Mobile        string `json:"mobile,omitempty"`
	ShowSignature bool   `json:"show_signature"`
	Role          string `json:"role,omitempty"` // "user" (default) or "admin"
}

// UserPatch is the body of PATCH /admin/v1/users/{system_id}.
type UserPatch struct {
	Name          *string `json:"name,omitempty"`
	Mobile        *string `json:"mobile,omitempty"`
	ShowSignature *bool   `json:"show_signature,omitempty"`
	Role          *string `json:"role,omitempty"`
}

// User is a user as the API shows it (never a secret).
type User struct {
	SystemID      string    `json:"system_id"`
	Enterprise    string    `json:"enterprise"`
	Name          string    `json:"name"`
	Mobile        string    `json:"mobile"`
	ShowSignature bool      `json:"show_signature"`
	Role          string    `json:"role"`
	HasAPIKey     bool      `json:"has_api_key"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func userOut(u *policy.User) User {
	return User{SystemID: u.SystemID, Enterprise: u.Enterprise, Name: u.Name, Mobile: u.Mobile,
		ShowSignature: u.ShowSignature, Role: u.Role.String(), HasAPIKey: u.HasAPIKey,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// UserList is the answer of GET /admin/v1/enterprises/{code}/users.
type UserList struct {
	Users []User `json:"users"`
}

// PasswordSet is the body of PUT /admin/v1/users/{system_id}/password.
type PasswordSet struct {
	Password string `json:"password"`
}

// APIKey is the answer of POST /admin/v1/users/{system_id}/apikey: the key
// is shown this once.
type APIKey struct {
	SystemID string `json:"system_id"`
	APIKey   string `json:"api_key"`
}

// Numbers is the body of whitelist add and remove.
type Numbers struct {
	Numbers []string `json:"numbers"`
}

// Decision is the body of whitelist approve and reject: either numbers, or
// all_pending true.
type Decision struct {
	Numbers    []string `json:"numbers,omitempty"`
	AllPending bool     `json:"all_pending,omitempty"`
}

// WhitelistPage is the answer of GET /admin/v1/enterprises/{code}/whitelist.
type WhitelistPage struct {
	Entries []policy.WhitelistEntry `json:"entries"`
	Next    string                  `json:"next"` // pass as ?after= for the next page; "" at the end
}

// OverrideList is the answer of GET /admin/v1/overrides.
type OverrideList struct {
	Overrides []policy.Override `json:"overrides"`
}

// OverrideSet is the body of PUT /admin/v1/overrides/{prefix}.
type OverrideSet struct {
	Carrier  string `json:"carrier,omitempty"`  // china_mobile, china_unicom, china_telecom, china_broadnet (or 中国移动, cmcc, …); "" keeps the library's
	Province string `json:"province,omitempty"` // "广东省", "广东", "Guangdong"; "" keeps the library's
}

// PasswordReset is the body of POST /admin/v1/password-reset.
type PasswordReset struct {
	GroupCode string `json:"group_code"`
	UserName  string `json:"user_name"`
	Mobile    string `json:"mobile"`
}

// Status is a plain acknowledgement.
type Status struct {
	Status string `json:"status"`
}

// --- helpers ---

// readJSON decodes the request body into v: at most maxJSONBody bytes, one
// JSON value, no unknown fields (a misspelt field of a PATCH must not be
// silently ignored). It writes the error answer itself and returns false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeJSON(w, r, v, s.admin.maxJSON)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{policy.ErrInvalid}, args...)...)
}

func parseCap(s string) (int64, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	return policy.ParseYuan(s)
}

func parseRole(s string) (policy.Role, error) {
	if s == "" {
		return policy.RoleUser, nil
	}
	var r policy.Role
	if err := r.UnmarshalText([]byte(s)); err != nil {
		return 0, err
	}
	return r, nil
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

func importOut(res policy.ImportResult) policy.ImportResult {
	res.Errors = nonNil(res.Errors)
	return res
}

func bulkOut(res policy.BulkResult) policy.BulkResult {
	res.Errors = nonNil(res.Errors)
	res.NotFound = nonNil(res.NotFound)
	return res
}

// --- enterprises ---

func (s *Server) createEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in NewEnterprise
	if !s.readJSON(w, r, &in) {
		return
	}
	capFen, err := parseCap(in.CapYuan)
	if err != nil {
		writeErr(w, err)
		return
	}
	e, err := s.cfg.Policy.CreateEnterprise(a, policy.Enterprise{Code: in.Code, Name: in.Name,
		Signature: in.Signature, Package: in.Package, National: in.National, OffNet: in.OffNet,
		CapFen: capFen, NoOverage: in.NoOverage, TPS: in.TPS, NoWhitelist: in.NoWhitelist})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "enterprise created", "enterprise", e.Code)
	w.Header().Set("Location", "/admin/v1/enterprises/"+url.PathEscape(e.Code))
	writeJSON(w, http.StatusCreated, enterpriseOut(e))
}

func (s *Server) listEnterprises(a policy.Actor, w http.ResponseWriter, _ *http.Request) {
	out := EnterpriseList{Enterprises: []Enterprise{}}
	for _, e := range s.cfg.Policy.Enterprises(a) {
		out.Enterprises = append(out.Enterprises, enterpriseOut(&e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	month := r.URL.Query().Get("month")
	if month == "" {
		month = policy.MonthOf(time.Now())
	} else if _, err := time.Parse("2006-01", month); err != nil {
		writeErr(w, invalidf("month %q: want YYYY-MM", month))
		return
	}
	p := s.cfg.Policy
	e, err := p.Enterprise(a, code)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := EnterpriseDetail{Enterprise: enterpriseOut(e)}
	if pkg, ok := p.Packages().Lookup(e.Package); ok {
		out.PackageInfo = &pkg
	}
	// Users are listed to enterprise admins and the operator only; a plain
	// user's detail leaves the count at 0.
	if users, err := p.Users(a, code); err == nil {
		out.Users = len(users)
	} else if !errors.Is(err, policy.ErrForbidden) {
		writeErr(w, err)
		return
	}
	counts, err := p.WhitelistCounts(a, code)
	if err != nil {
		writeErr(w, err)
		return
	}
	out.Whitelist = WhitelistCounts{Pending: counts[policy.WhitelistPending],
		Approved: counts[policy.WhitelistApproved], Rejected: counts[policy.WhitelistRejected]}
	out.Usage = Usage{Month: month, Limit: p.Limit(e)}
	if s.cfg.Store != nil {
		out.Usage.Reserved, out.Usage.Charged = s.cfg.Store.Usage(code, month)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) updateEnterprise(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in EnterprisePatch
	if !s.readJSON(w, r, &in) {
		return
	}
	if in.empty() {
		writeErr(w, invalidf("nothing to change"))
		return
	}
	var capFen int64
	if in.CapYuan != nil {
		var err error
		if capFen, err = parseCap(*in.CapYuan); err != nil {
			writeErr(w, err)
			return
		}
	}
	e, err := s.cfg.Policy.UpdateEnterprise(a, r.PathValue("code"), func(e *policy.Enterprise) error {
		set(&e.Name, in.Name)
		set(&e.Signature, in.Signature)
		set(&e.Package, in.Package)
		set(&e.National, in.National)
		set(&e.OffNet, in.OffNet)
		if in.CapYuan != nil {
			e.CapFen = capFen
		}
		set(&e.NoOverage, in.NoOverage)
		set(&e.TPS, in.TPS)
		set(&e.Disabled, in.Disabled)
		set(&e.NoWhitelist, in.NoWhitelist)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "enterprise updated", "enterprise", e.Code, "fields", patchFields(&in))
	writeJSON(w, http.StatusOK, enterpriseOut(e))
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// patchFields names the fields of a patch, for the audit log.
func patchFields(p *EnterprisePatch) string {
	b, _ := json.Marshal(p)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// --- users ---

func (s *Server) createUser(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in NewUser
	if !s.readJSON(w, r, &in) {
		return
	}
	role, err := parseRole(in.Role)
	if err != nil {
		writeErr(w, err)
		return
	}
	u, err := s.cfg.Policy.CreateUser(a, policy.NewUser{Enterprise: r.PathValue("code"), Name: in.Name,
		Mobile: in.Mobile, SystemID: in.SystemID, Password: in.Password, ShowSignature: in.ShowSignature, Role: role})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "user created", "enterprise", u.Enterprise, "system_id", u.SystemID, "role", u.Role.String())
	w.Header().Set("Location", "/admin/v1/users/"+url.PathEscape(u.SystemID))
	writeJSON(w, http.StatusCreated, userOut(u))
}

func (s *Server) listUsers(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	users, err := s.cfg.Policy.Users(a, r.PathValue("code"))
	if err != nil {
		writeErr(w, err)
		return
	}
	out := UserList{Users: []User{}}
	for i := range users {
		out.Users = append(out.Users, userOut(&users[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showUser(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	u, err := s.cfg.Policy.User(a, r.PathValue("system_id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, userOut(u))
}

func (s *Server) updateUser(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in UserPatch
	if !s.readJSON(w, r, &in) {
		return
	}
	if in.Name == nil && in.Mobile == nil && in.ShowSignature == nil && in.Role == nil {
		writeErr(w, invalidf("nothing to change"))
		return
	}
	upd := policy.UserUpdate{Name: in.Name, Mobile: in.Mobile, ShowSignature: in.ShowSignature}
	if in.Role != nil {
		role, err := parseRole(*in.Role)
		if err != nil {
			writeErr(w, err)
			return
		}
		upd.Role = &role
	}
	u, err := s.cfg.Policy.UpdateUser(a, r.PathValue("system_id"), upd)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "user updated", "enterprise", u.Enterprise, "system_id", u.SystemID)
	writeJSON(w, http.StatusOK, userOut(u))
}

func (s *Server) deleteUser(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("system_id")
	if err := s.cfg.Policy.DeleteUser(a, sid); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "user deleted", "system_id", sid)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) setPassword(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in PasswordSet
	if !s.readJSON(w, r, &in) {
		return
	}
	sid := r.PathValue("system_id")
	if err := s.cfg.Policy.SetPassword(a, sid, in.Password); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "password set", "system_id", sid)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) issueAPIKey(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("system_id")
	key, err := s.cfg.Policy.IssueAPIKey(a, sid)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "API key issued", "system_id", sid)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, APIKey{SystemID: sid, APIKey: key})
}

func (s *Server) revokeAPIKey(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("system_id")
	if err := s.cfg.Policy.RevokeAPIKey(a, sid); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "API key revoked", "system_id", sid)
	w.WriteHeader(http.StatusNoContent)
}

// --- whitelist ---

func (s *Server) readNumbers(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var in Numbers
	if !s.readJSON(w, r, &in) {
		return nil, false
	}
	if err := checkList(in.Numbers); err != nil {
		writeErr(w, err)
		return nil, false
	}
	return in.Numbers, true
}

func checkList(numbers []string) error {
	switch {
	case len(numbers) == 0:
		return invalidf("numbers: at least one number is required")
	case len(numbers) > maxListItems:
		return invalidf("numbers: at most %d per request (import a file for more)", maxListItems)
	}
	return nil
}

func (s *Server) addWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	numbers, ok := s.readNumbers(w, r)
	if !ok {
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.AddWhitelist(a, code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "whitelist added", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

// importFormat picks the format of an uploaded whitelist file: ?format=
// first, else the Content-Type.
func importFormat(r *http.Request) (policy.ImportFormat, error) {
	if f := r.URL.Query().Get("format"); f != "" {
		switch strings.ToLower(f) {
		case "csv":
			return policy.FormatCSV, nil
		case "xlsx":
			return policy.FormatXLSX, nil
		}
		return 0, fmt.Errorf("format %q: want csv or xlsx", f)
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, fmt.Errorf("Content-Type %q: want text/csv or %s, or ?format=csv|xlsx", ct, XLSXContentType)
	}
	switch mt {
	case "text/csv", "text/plain", "application/csv":
		return policy.FormatCSV, nil
	case XLSXContentType:
		return policy.FormatXLSX, nil
	}
	return 0, fmt.Errorf("Content-Type %q: want text/csv or %s, or ?format=csv|xlsx", ct, XLSXContentType)
}

func (s *Server) importWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	f, err := importFormat(r)
	if err != nil {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.ImportWhitelist(a, code, http.MaxBytesReader(w, r.Body, s.admin.maxImport), f)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("file larger than %d bytes", mbe.Limit))
			return
		}
		writeErr(w, err)
		return
	}
	s.audit(a, "whitelist imported", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

func (s *Server) listWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var st policy.WhitelistState
	if v := q.Get("state"); v != "" && v != "all" {
		if err := st.UnmarshalText([]byte(v)); err != nil {
			writeErr(w, err)
			return
		}
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeErr(w, invalidf("limit %q: want a number from 1 to %d", v, policy.MaxPageSize))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if strings.HasPrefix(after, " ") { // an unescaped "+86…" in a query string reads as " 86…"
		after = "+" + after[1:]
	}
	entries, next, err := s.cfg.Policy.ListWhitelist(a, r.PathValue("code"), st, after, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, WhitelistPage{Entries: nonNil(entries), Next: next})
}

func (s *Server) decideWhitelist(st policy.WhitelistState) actorHandler {
	return func(a policy.Actor, w http.ResponseWriter, r *http.Request) {
		var in Decision
		if !s.readJSON(w, r, &in) {
			return
		}
		// policy decides every pending entry when numbers is nil: only an
		// explicit all_pending may ask for that.
		var numbers []string
		switch {
		case in.AllPending && len(in.Numbers) > 0:
			writeErr(w, invalidf("give either numbers or all_pending, not both"))
			return
		case !in.AllPending:
			if err := checkList(in.Numbers); err != nil {
				writeErr(w, err)
				return
			}
			numbers = in.Numbers
		}
		code := r.PathValue("code")
		res, err := s.cfg.Policy.DecideWhitelist(a, code, st, numbers)
		if err != nil {
			writeErr(w, err)
			return
		}
		s.audit(a, "whitelist decided", "enterprise", code, "state", st.String(), "all_pending", in.AllPending, "changed", res.Changed)
		writeJSON(w, http.StatusOK, bulkOut(res))
	}
}

func (s *Server) removeWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	numbers, ok := s.readNumbers(w, r)
	if !ok {
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.RemoveWhitelist(a, code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "whitelist removed", "enterprise", code, "changed", res.Changed)
	writeJSON(w, http.StatusOK, bulkOut(res))
}

// --- overrides ---

func (s *Server) listOverrides(a policy.Actor, w http.ResponseWriter, _ *http.Request) {
	ovs, err := s.cfg.Policy.Overrides(a)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, OverrideList{Overrides: nonNil(ovs)})
}

func (s *Server) setOverride(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in OverrideSet
	if !s.readJSON(w, r, &in) {
		return
	}
	o := policy.Override{Prefix: r.PathValue("prefix"), Province: in.Province}
	if in.Carrier != "" {
		if err := o.Carrier.UnmarshalText([]byte(in.Carrier)); err != nil {
			writeErr(w, err)
			return
		}
	}
	if err := s.cfg.Policy.SetOverride(a, o); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "override set", "prefix", o.Prefix, "carrier", o.Carrier.String(), "province", o.Province)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeOverride(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	prefix := r.PathValue("prefix")
	if err := s.cfg.Policy.RemoveOverride(a, prefix); err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "override removed", "prefix", prefix)
	w.WriteHeader(http.StatusNoContent)
}

// --- password reset ---

// resetText is the SMS carrying a new password.
func resetText(u *policy.User, pw string) string {
	return fmt.Sprintf("您的企信通账号 %s（%s）密码已重置，新密码：%s。请登录后尽快修改。", u.SystemID, u.Name, pw)
}

// passwordReset is the forgotten-password flow (FAQ 2). The answer is the
// same whether or not the details matched; the new password goes only to
// the user's registered mobile, never into the answer or a log.
func (s *Server) passwordReset(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	np := s.admin.notify.Load()
	if np == nil {
		writeError(w, http.StatusServiceUnavailable, "notifier_unavailable",
			"password resets need an SMS notifier, which this daemon does not have yet")
		return
	}
	var in PasswordReset
	if !s.readJSON(w, r, &in) {
		return
	}
	if !s.admin.resetLimiter.Allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, policy.ReasonRateLimited.String(), "too many password resets, retry later")
		return
	}
	pw, u, err := s.cfg.Policy.ResetPassword(in.GroupCode, in.UserName, in.Mobile)
	switch {
	case errors.Is(err, policy.ErrAuth):
		s.log.Info("password reset: details do not match", "group_code", in.GroupCode)
	case err != nil:
		writeErr(w, err)
		return
	default:
		s.log.Info("password reset", "enterprise", u.Enterprise, "system_id", u.SystemID)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		err := (*np)(ctx, u.Mobile, resetText(u, pw))
		cancel()
		if err != nil {
			// The password has changed but did not reach the user: the
			// operator sees it here and resets again. The answer stays the
			// same so that it never tells whether the details matched.
			s.log.Error("password reset: sending the new password failed", "enterprise", u.Enterprise,
				"system_id", u.SystemID, "err", err)
		}
	}
	writeJSON(w, http.StatusAccepted, Status{Status: PasswordResetAnswer})
}

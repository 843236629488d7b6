package api

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Opening an account (开户申请, FAQ 1 and 15), the applicant's half: POST
// /v1/applications and GET /v1/applications/{number}, both without
// authentication. The account manager's half is admin_applications.go.
//
// An application never tells whether its group code is taken: submitting
// does not read the enterprises (policy.SubmitApplication), so the answer
// and its timing are the same either way; a taken code is found when the
// account manager approves. Applications are rate-limited per source
// address and per its network (keyLimiter: a /24, a /48); the number that
// identifies one carries 128 random bits.

// Limits of the public self-service routes (this file and v1_password.go).
const (
	applyEvery      = 10 * time.Minute // one application per source address per applyEvery…
	applyBurst      = 5                // …after a burst of applyBurst; per network, after prefixBurstTimes × that
	maxPublicBody   = 8 << 10          // a public request's body
	maxLimiterKeys  = 10_000           // keys of each public rate limiter
	maxResetsQueued = 64               // password resets between their answer and their end
)

// selfState is the state of the public self-service routes (a field of
// Server), built on first use.
type selfState struct {
	once      sync.Once
	applyAddr *keyLimiter    // POST /v1/applications per source address and network
	resetAddr *keyLimiter    // POST /v1/password-reset per source address and network
	resetAcct *keyLimiter    // password resets per group code + user name (both routes)
	passAcct  *keyLimiter    // PUT /v1/me/password per user: old-password guesses
	resets    chan struct{}  // slots of resets in progress after their answer
	wg        sync.WaitGroup // those resets
	mu        sync.Mutex     // closed, and wg.Add against close's Wait
	closed    bool
}

func (s *Server) selfService() *selfState {
	st := &s.self
	st.once.Do(func() {
		st.applyAddr = newSourceLimiter(applyEvery, applyBurst, maxLimiterKeys)
		st.resetAddr = newSourceLimiter(resetAddrEvery, resetAddrBurst, maxLimiterKeys)
		st.resetAcct = newKeyLimiter(resetAcctEvery, resetAcctBurst, maxLimiterKeys)
		st.passAcct = newKeyLimiter(passwordEvery, passwordBurst, maxLimiterKeys)
		st.resets = make(chan struct{}, maxResetsQueued)
	})
	return st
}

// ApplicationRequest is the body of POST /v1/applications.
type ApplicationRequest struct {
	GroupCode     string `json:"group_code"`     // 集团编码
	Name          string `json:"name"`           // the enterprise's name
	ContactMobile string `json:"contact_mobile"` // the admin's first password goes there by SMS
	Package       int    `json:"package"`        // wanted package
	Signature     string `json:"signature"`      // requested enterprise signature, "【…】"
}

// ApplicationStatus is an application as its applicant sees it.
type ApplicationStatus struct {
	Number        string     `json:"number"`
	State         string     `json:"state"` // pending, approved, rejected
	Reason        string     `json:"reason,omitempty"`
	GroupCode     string     `json:"group_code"`
	Name          string     `json:"name"`
	Package       int        `json:"package"`
	Signature     string     `json:"signature"`
	AdminSystemID string     `json:"admin_system_id,omitempty"` // approved: the admin's login
	CreatedAt     time.Time  `json:"created_at"`
	DecidedAt     *time.Time `json:"decided_at,omitempty"`
}

func applicationStatus(a *policy.Application) ApplicationStatus {
	st := ApplicationStatus{Number: a.Number, State: a.State, Reason: a.Reason, GroupCode: a.GroupCode, Name: a.Name,
		Package: a.Package, Signature: a.Signature, AdminSystemID: a.AdminSystemID, CreatedAt: a.CreatedAt}
	if !a.DecidedAt.IsZero() {
		t := a.DecidedAt
		st.DecidedAt = &t
	}
	return st
}

// applyRequiredZH says in Chinese that apply's field is required.
var applyRequiredZH = map[string]string{
	"group_code":     "请填写集团编码",
	"name":           "请填写企业名称",
	"contact_mobile": "请填写联系人手机号码",
	"signature":      "请填写签名，例如【某某公司】",
}

// required names the first empty field of a request, "" if none.
func required(fields ...string) string {
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.TrimSpace(fields[i+1]) == "" {
			return fields[i]
		}
	}
	return ""
}

// apply: POST /v1/applications.
func (s *Server) apply(_ *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	var in ApplicationRequest
	if !decodeJSON(w, r, &in, maxPublicBody) {
		return
	}
	if f := required("group_code", in.GroupCode, "name", in.Name, "contact_mobile", in.ContactMobile,
		"signature", in.Signature); f != "" {
		writeInvalid(w, f, applyRequiredZH[f], f+": required")
		return
	}
	if in.Package == 0 {
		writeInvalid(w, "package", "请选择套餐（套餐表中的编号）", "package: required (a package number of the table)")
		return
	}
	na := policy.NewApplication{GroupCode: in.GroupCode, Name: in.Name, ContactMobile: in.ContactMobile,
		Package: in.Package, Signature: in.Signature}
	if err := s.cfg.Policy.CheckApplication(&na); err != nil {
		writeErr(w, err)
		return
	}
	// Only applications that would be stored count against the address
	// and its network.
	if !s.selfService().applyAddr.allowSource(r) {
		writeRateLimited(w, "600", "too many applications from this address or its network; retry later")
		return
	}
	app, err := s.cfg.Policy.SubmitApplication(na)
	if errors.Is(err, policy.ErrApplicationsFull) {
		w.Header().Set("Retry-After", "3600")
		writeError(w, http.StatusServiceUnavailable, "too_many_applications",
			"too many applications are waiting for an account manager; retry later")
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("application submitted", "number", app.Number, "group_code", app.GroupCode)
	w.Header().Set("Location", "/v1/applications/"+app.Number)
	writeJSON(w, http.StatusAccepted, applicationStatus(app))
}

// showApplication: GET /v1/applications/{number}.
func (s *Server) showApplication(_ *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	app, err := s.cfg.Policy.LookupApplication(r.PathValue("number"))
	if errors.Is(err, policy.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such application")
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applicationStatus(app))
}

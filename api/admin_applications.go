package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Opening an account, the account manager's half: list the pending
// applications, show one, approve it (the enterprise and its admin user are
// created; the admin's first password goes by SMS to the contact mobile) or
// reject it with a reason. The applicant's half is v1_applications.go.

// Listing bounds.
const (
	defaultApplicationList = 100
	maxApplicationList     = 1000
)

// Application is an application as the account manager sees it.
type Application struct {
	Number        string     `json:"number"`
	State         string     `json:"state"`
	Reason        string     `json:"reason,omitempty"`
	GroupCode     string     `json:"group_code"`
	Name          string     `json:"name"`
	ContactMobile string     `json:"contact_mobile"`
	Package       int        `json:"package"`
	Signature     string     `json:"signature"`
	AdminSystemID string     `json:"admin_system_id,omitempty"`
	DecidedBy     string     `json:"decided_by,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	DecidedAt     *time.Time `json:"decided_at,omitempty"`
}

func applicationOut(a *policy.Application) Application {
	out := Application{Number: a.Number, State: a.State, Reason: a.Reason, GroupCode: a.GroupCode, Name: a.Name,
		ContactMobile: a.ContactMobile, Package: a.Package, Signature: a.Signature, AdminSystemID: a.AdminSystemID,
		DecidedBy: a.DecidedBy, CreatedAt: a.CreatedAt}
	if !a.DecidedAt.IsZero() {
		t := a.DecidedAt
		out.DecidedAt = &t
	}
	return out
}

// ApplicationApproval is the body of POST /admin/v1/applications/{number}/approve.
type ApplicationApproval struct {
	SystemID string `json:"system_id,omitempty"` // the admin user's system_id; "" = the group code
}

// ApplicationApproved is the answer of an approval.
type ApplicationApproved struct {
	Application  Application `json:"application"`
	PasswordSent bool        `json:"password_sent"` // false: the SMS failed; reset the admin's password
}

// ApplicationRejection is the body of POST /admin/v1/applications/{number}/reject.
type ApplicationRejection struct {
	Reason string `json:"reason"` // shown to the applicant, 1–200 characters
}

// approvalText is the SMS carrying an approved enterprise's first password.
func approvalText(a *policy.Application, u *policy.User, pw string) string {
	return fmt.Sprintf("您的企信通开户申请（%s）已通过。管理员账号：%s，初始密码：%s。请登录后尽快修改。", a.Name, u.SystemID, pw)
}

// writeApplicationErr answers an application's error.
func writeApplicationErr(w http.ResponseWriter, err error) {
	if errors.Is(err, policy.ErrDecided) {
		writeError(w, http.StatusConflict, "already_decided", err.Error())
		return
	}
	writeErr(w, err)
}

// listApplications: GET /admin/v1/applications?state=&limit=.
func (s *Server) listApplications(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	switch state {
	case "":
		state = policy.ApplicationPending
	case "all":
		state = ""
	}
	limit := defaultApplicationList
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxApplicationList {
			writeInvalid(w, "limit", fmt.Sprintf("每页条数须为 1–%d", maxApplicationList), fmt.Sprintf("limit: 1–%d", maxApplicationList))
			return
		}
		limit = n
	}
	apps, err := s.cfg.Policy.Applications(a, state, limit)
	if err != nil {
		writeApplicationErr(w, err)
		return
	}
	out := make([]Application, len(apps))
	for i := range apps {
		out[i] = applicationOut(&apps[i])
	}
	writeJSON(w, http.StatusOK, map[string][]Application{"applications": out})
}

// showAdminApplication: GET /admin/v1/applications/{number}.
func (s *Server) showAdminApplication(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	app, err := s.cfg.Policy.LookupApplication(r.PathValue("number"))
	if err != nil {
		writeApplicationErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applicationOut(app))
}

// approveApplication: POST /admin/v1/applications/{number}/approve.
func (s *Server) approveApplication(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	np := s.admin.notify.Load()
	if np == nil {
		writeError(w, http.StatusServiceUnavailable, "notifier_unavailable",
			"an approval sends the admin's first password by SMS: this daemon has no SMS notifier (policy.notify_enterprise)")
		return
	}
	var in ApplicationApproval
	if r.ContentLength != 0 && !s.readJSON(w, r, &in) {
		return
	}
	number := r.PathValue("number")
	app, u, pw, err := s.cfg.Policy.ApproveApplication(a, number, in.SystemID)
	if err != nil {
		writeApplicationErr(w, err)
		return
	}
	s.audit(a, "application approved", "number", number, "enterprise", app.GroupCode, "system_id", u.SystemID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), resetSMSTime)
	err = (*np)(ctx, u.Mobile, approvalText(app, u, pw))
	cancel()
	if err != nil {
		s.log.Error("application approved: sending the first password failed", "enterprise", app.GroupCode,
			"system_id", u.SystemID, "err", err)
	}
	writeJSON(w, http.StatusOK, ApplicationApproved{Application: applicationOut(app), PasswordSent: err == nil})
}

// rejectApplication: POST /admin/v1/applications/{number}/reject.
func (s *Server) rejectApplication(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in ApplicationRejection
	if !s.readJSON(w, r, &in) {
		return
	}
	if in.Reason == "" {
		writeInvalid(w, "reason", "拒绝时须填写原因（申请人可以看到）", "reason: required (the applicant sees it)")
		return
	}
	app, err := s.cfg.Policy.RejectApplication(a, r.PathValue("number"), in.Reason)
	if err != nil {
		writeApplicationErr(w, err)
		return
	}
	s.audit(a, "application rejected", "number", app.Number, "group_code", app.GroupCode)
	writeJSON(w, http.StatusOK, applicationOut(app))
}

// Applications lists applications in state (pending, approved, rejected,
// all; "" = pending), oldest first.
func (c *Client) Applications(state string, limit int) ([]Application, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/admin/v1/applications"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Applications []Application `json:"applications"`
	}
	if err := c.Do("GET", path, nil, &out); err != nil {
		return nil, err
	}
	return out.Applications, nil
}

// Application shows one application.
func (c *Client) Application(number string) (*Application, error) {
	var out Application
	return &out, c.Do("GET", "/admin/v1/applications/"+url.PathEscape(number), nil, &out)
}

// ApproveApplication approves an application; systemID "" names the admin
// after the group code.
func (c *Client) ApproveApplication(number, systemID string) (*ApplicationApproved, error) {
	var out ApplicationApproved
	return &out, c.Do("POST", "/admin/v1/applications/"+url.PathEscape(number)+"/approve",
		ApplicationApproval{SystemID: systemID}, &out)
}

// RejectApplication rejects an application with a reason.
func (c *Client) RejectApplication(number, reason string) (*Application, error) {
	var out Application
	return &out, c.Do("POST", "/admin/v1/applications/"+url.PathEscape(number)+"/reject",
		ApplicationRejection{Reason: reason}, &out)
}

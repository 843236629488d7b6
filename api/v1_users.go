package api

import (
	"net/http"
	"net/url"

	"github.com/qxtd/qxtd/policy"
)

// The enterprise admin's users over /v1: list, add (within the enterprise's
// cap, policy.Enterprise.UserCap), change (name, mobile, role, user
// signature display, disabled, extension, long replies) and reset a
// password. A user (not an admin)
// gets 403 forbidden; another enterprise's system_id is not_found, like one
// that does not exist.

// UserPasswordReset is the answer of POST /v1/users/{system_id}/password-reset:
// the new password, shown this once (8 characters, SMPP's limit). The admin
// hands it to the user; it is never stored in clear nor logged.
type UserPasswordReset struct {
	SystemID string `json:"system_id"`
	Password string `json:"password"`
}

// listEnterpriseUsers: GET /v1/users
func (s *Server) listEnterpriseUsers(c *caller, w http.ResponseWriter, _ *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	users, err := s.cfg.Policy.Users(c.actor(), c.ent.Code)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeUsers(w, users)
}

// addEnterpriseUser: POST /v1/users
func (s *Server) addEnterpriseUser(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	var in NewUser
	if !decodeBody(w, r, &in) {
		return
	}
	role, err := parseRole(in.Role)
	if err != nil {
		writeErr(w, err)
		return
	}
	u, err := s.cfg.Policy.CreateUser(c.actor(), policy.NewUser{Enterprise: c.ent.Code, Name: in.Name,
		Mobile: in.Mobile, SystemID: in.SystemID, Password: in.Password, ShowSignature: in.ShowSignature, Role: role,
		Extension: in.Extension, LongReplies: in.LongReplies})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("user created", "enterprise", c.ent.Code, "by", c.user.SystemID, "system_id", u.SystemID)
	w.Header().Set("Location", "/v1/users/"+url.PathEscape(u.SystemID))
	writeJSON(w, http.StatusCreated, userOut(u))
}

// patchEnterpriseUser: PATCH /v1/users/{system_id}
func (s *Server) patchEnterpriseUser(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	var in UserPatch
	if !decodeBody(w, r, &in) {
		return
	}
	u, err := s.patchUser(c.actor(), r.PathValue("system_id"), in)
	if err != nil {
		notFoundIfForbidden(w, err)
		return
	}
	writeJSON(w, http.StatusOK, userOut(u))
}

// resetEnterpriseUserPassword: POST /v1/users/{system_id}/password-reset
func (s *Server) resetEnterpriseUserPassword(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	sid := r.PathValue("system_id")
	pw, err := s.cfg.Policy.ResetUserPassword(c.actor(), sid)
	if err != nil {
		notFoundIfForbidden(w, err)
		return
	}
	s.user.sessions.endUser(sid, "")
	s.log.Info("user password reset", "enterprise", c.ent.Code, "by", c.user.SystemID, "system_id", sid)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, UserPasswordReset{SystemID: sid, Password: pw})
}

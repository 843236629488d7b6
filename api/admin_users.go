package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Users of an enterprise: create, list, show, change and delete; set a
// password; issue and revoke the API key.

// NewUser is the body of POST /admin/v1/enterprises/{code}/users.
type NewUser struct {
	SystemID      string `json:"system_id"`
	Password      string `json:"password"`
	Name          string `json:"name"`
	Mobile        string `json:"mobile,omitempty"`
	ShowSignature bool   `json:"show_signature"`
	Role          string `json:"role,omitempty"`      // "user" (default) or "admin"
	Extension     string `json:"extension,omitempty"` // of the enterprise's service number
	// LongReplies is how a reply too long for one SMS reaches the user's
	// SMPP binds: "payload" (or "": whole, in message_payload), "udh8",
	// "udh16" or "sar" (in parts); read for each reply.
	LongReplies string `json:"long_replies,omitempty"`
}

// UserPatch is the body of PATCH /admin/v1/users/{system_id}.
type UserPatch struct {
	Name          *string `json:"name,omitempty"`
	Mobile        *string `json:"mobile,omitempty"`
	ShowSignature *bool   `json:"show_signature,omitempty"`
	Role          *string `json:"role,omitempty"`
	Disabled      *bool   `json:"disabled,omitempty"`
	Extension     *string `json:"extension,omitempty"` // "" removes it
	LongReplies   *string `json:"long_replies,omitempty"`
}

// User is a user as the API shows it (never a secret).
type User struct {
	SystemID      string    `json:"system_id"`
	Enterprise    string    `json:"enterprise"`
	Name          string    `json:"name"`
	Mobile        string    `json:"mobile"`
	ShowSignature bool      `json:"show_signature"`
	Role          string    `json:"role"`
	Disabled      bool      `json:"disabled"`
	HasAPIKey     bool      `json:"has_api_key"`
	Extension     string    `json:"extension"`    // of the service number; "" = none
	LongReplies   string    `json:"long_replies"` // payload (the default), udh8, udh16 or sar
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func userOut(u *policy.User) User {
	return User{SystemID: u.SystemID, Enterprise: u.Enterprise, Name: u.Name, Mobile: u.Mobile,
		ShowSignature: u.ShowSignature, Role: u.Role.String(), Disabled: u.Disabled, HasAPIKey: u.HasAPIKey,
		Extension: u.Extension, LongReplies: longRepliesOut(u.LongReplies), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// longRepliesOut is a user's long_replies as the API shows it: the
// default (stored "") by its name, payload.
func longRepliesOut(s string) string {
	if s == "" {
		return "payload"
	}
	return s
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

func parseRole(s string) (policy.Role, error) {
	if s == "" {
		return policy.RoleUser, nil
	}
	var r policy.Role
	if err := r.UnmarshalText([]byte(s)); err != nil {
		return 0, err // a FieldError: field role, its rule in Chinese
	}
	return r, nil
}

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
		Mobile: in.Mobile, SystemID: in.SystemID, Password: in.Password, ShowSignature: in.ShowSignature, Role: role,
		Extension: in.Extension, LongReplies: in.LongReplies})
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
	writeUsers(w, users)
}

// writeUsers answers a list of users (the operator's and the enterprise
// admin's listings).
func writeUsers(w http.ResponseWriter, users []policy.User) {
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
	u, err := s.patchUser(a, r.PathValue("system_id"), in)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, userOut(u))
}

// patchUser applies a UserPatch as a (PATCH /admin/v1/users/{system_id} and
// PATCH /v1/users/{system_id}).
func (s *Server) patchUser(a policy.Actor, sid string, in UserPatch) (*policy.User, error) {
	if in.Name == nil && in.Mobile == nil && in.ShowSignature == nil && in.Role == nil && in.Disabled == nil &&
		in.Extension == nil && in.LongReplies == nil {
		return nil, invalidZH("", "没有要修改的内容", "nothing to change")
	}
	upd := policy.UserUpdate{Name: in.Name, Mobile: in.Mobile, ShowSignature: in.ShowSignature, Disabled: in.Disabled,
		Extension: in.Extension, LongReplies: in.LongReplies}
	if in.Role != nil {
		role, err := parseRole(*in.Role)
		if err != nil {
			return nil, err
		}
		upd.Role = &role
	}
	u, err := s.cfg.Policy.UpdateUser(a, sid, upd)
	if err != nil {
		return nil, err
	}
	s.audit(a, "user updated", "enterprise", u.Enterprise, "system_id", u.SystemID)
	return u, nil
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
	s.user.sessions.endUser(sid, "")
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

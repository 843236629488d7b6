package api

import (
	"net/http"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// An enterprise's records as the operator sees them: its sent outbox, a
// message's detail and its inbox, with the filters and answers of the
// enterprise's own GET /v1/messages, /v1/messages/{id} and /v1/inbox, as
// one of its admins sees them (every user's). A customer who calls to
// say "my message to 138… did not arrive" or "my customers' replies do
// not reach us" is answered from the desk, not by a login as the
// enterprise: the account manager sees each part's SMSC id, error and
// receipt.

// enterpriseCaller is the caller of enterprise code's records for the
// operator a: an admin of the enterprise, with no user of its own. false:
// the answer (404 for an unknown enterprise) was written.
func (s *Server) enterpriseCaller(a policy.Actor, w http.ResponseWriter, r *http.Request) (*caller, bool) {
	e, err := s.cfg.Policy.Enterprise(a, r.PathValue("code"))
	if err != nil {
		writeErr(w, err)
		return nil, false
	}
	return &caller{user: &policy.User{Role: policy.RoleAdmin}, ent: e, acct: &gateway.Account{Enterprise: e.Code}}, true
}

// adminMessages is GET /admin/v1/enterprises/{code}/messages.
func (s *Server) adminMessages(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := s.enterpriseCaller(a, w, r); ok {
		s.list(c, w, r, queue.ListFilter{Sent: true})
	}
}

// adminMessage is GET /admin/v1/enterprises/{code}/messages/{id}.
func (s *Server) adminMessage(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := s.enterpriseCaller(a, w, r); ok {
		s.showMessage(c, w, r)
	}
}

// adminInbox is GET /admin/v1/enterprises/{code}/inbox.
func (s *Server) adminInbox(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := s.enterpriseCaller(a, w, r); ok {
		s.listInbox(c, w, r)
	}
}

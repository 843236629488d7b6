package api

import (
	"fmt"
	"net/http"
	"strings"

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

// adminExportMessages is GET /admin/v1/enterprises/{code}/messages/export:
// the sent outbox as GET /v1/messages/export writes it for an admin of
// the enterprise, in the enterprise's own export slots (an account
// manager's download cannot crowd out more than the enterprise's own).
func (s *Server) adminExportMessages(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := s.enterpriseCaller(a, w, r); ok {
		s.exportMessages(c, w, r)
	}
}

// adminExportInbox is GET /admin/v1/enterprises/{code}/inbox/export, as
// GET /v1/inbox/export for an admin of the enterprise.
func (s *Server) adminExportInbox(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := s.enterpriseCaller(a, w, r); ok {
		s.exportInbox(c, w, r)
	}
}

// adminTrace is GET /admin/v1/messages?number=: every enterprise's sent
// messages to a number, newest first, each naming its enterprise — the
// operator's trace of a number whose owner complains of a message (who
// sent it, when, with what signature). The number is required: the
// operator lists no enterprise's messages wholesale here.
func (s *Server) adminTrace(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	n := r.URL.Query().Get("number")
	if n == "" || len(n) > maxNumberQuery || strings.IndexFunc(n, isDigit) < 0 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("number: required, the recipient's number or its last digits (at most %d characters)", maxNumberQuery))
		return
	}
	c := &caller{user: &policy.User{Role: policy.RoleAdmin}, ent: &policy.Enterprise{}}
	s.list(c, w, r, queue.ListFilter{Sent: true, AllEnterprises: true})
}

// adminTraceReplies is GET /admin/v1/inbox?number=: every enterprise's
// replies from a handset, newest first, each naming its enterprise (""
// for a reply to a number no enterprise has) — with the number's
// opt-outs (GET /admin/v1/optouts?number=), the answer to "I replied TD
// and still get messages". The number is required, as the trace's.
func (s *Server) adminTraceReplies(_ policy.Actor, w http.ResponseWriter, r *http.Request) {
	n := r.URL.Query().Get("number")
	if n == "" || len(n) > maxNumberQuery || strings.IndexFunc(n, isDigit) < 0 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("number: required, the handset's number or its last digits (at most %d characters)", maxNumberQuery))
		return
	}
	c := &caller{user: &policy.User{Role: policy.RoleAdmin}, ent: &policy.Enterprise{}}
	s.inboxList(c, w, r, true)
}

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

// asEnterpriseAdmin answers the operator's request for enterprise
// {code}'s records with h, the enterprises' own handler, as for one of its
// admins (enterpriseCaller): its sent outbox (GET /v1/messages), a
// message, its inbox, their exports — the exports in the enterprise's own
// slots, so an account manager's download crowds out no more than the
// enterprise's own.
func (s *Server) asEnterpriseAdmin(h func(*caller, http.ResponseWriter, *http.Request)) actorHandler {
	return func(a policy.Actor, w http.ResponseWriter, r *http.Request) {
		if c, ok := s.enterpriseCaller(a, w, r); ok {
			h(c, w, r)
		}
	}
}

// adminTrace is GET /admin/v1/messages?number=: every enterprise's sent
// messages to a number, newest first, each naming its enterprise — the
// operator's trace of a number whose owner complains of a message (who
// sent it, when, with what signature).
func (s *Server) adminTrace(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := traceCaller(a, w, r, "recipient"); ok {
		s.list(c, w, r, queue.ListFilter{Sent: true, AllEnterprises: true})
	}
}

// adminTraceReplies is GET /admin/v1/inbox?number=: every enterprise's
// replies from a handset, newest first, each naming its enterprise (""
// for a reply to a number no enterprise has) — with the number's
// opt-outs (GET /admin/v1/optouts?number=), the answer to "I replied TD
// and still get messages".
func (s *Server) adminTraceReplies(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if c, ok := traceCaller(a, w, r, "handset"); ok {
		s.inboxList(c, w, r, true)
	}
}

// numberZH names traceCaller's whose in Chinese.
var numberZH = map[string]string{"recipient": "接收号码", "handset": "手机号码"}

// traceCaller is the caller of a trace across the enterprises (an admin
// of none), once its number (whose: the recipient's, the handset's) is
// there: the operator lists no enterprise's records wholesale here; an
// account manager with a portfolio lists its enterprises' only (a page
// may then hold fewer than its limit, and go on). false: the 400 was
// written.
func traceCaller(a policy.Actor, w http.ResponseWriter, r *http.Request, whose string) (*caller, bool) {
	n := r.URL.Query().Get("number")
	if n == "" || len(n) > maxNumberQuery || strings.IndexFunc(n, isDigit) < 0 {
		writeInvalid(w, "number", fmt.Sprintf("请填写%s或其尾号（最多 %d 个字符）", numberZH[whose], maxNumberQuery),
			fmt.Sprintf("number: required, the %s's number or its last digits (at most %d characters)", whose, maxNumberQuery))
		return nil, false
	}
	c := &caller{user: &policy.User{Role: policy.RoleAdmin}, ent: &policy.Enterprise{}}
	if a.Scoped() {
		c.serves = a.Serves
	}
	return c, true
}

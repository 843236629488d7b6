package api

import (
	"net/http"
	"net/url"

	"github.com/qxtd/qxtd/policy"
)

// Signature change requests, the account manager's side (FAQ 7):
// GET /admin/v1/signature-requests[?state=pending][&enterprise=CODE],
// POST /admin/v1/signature-requests/{id}/approve and .../reject (with a
// reason). Approval sets the enterprise's signature at once.

// SignatureDecision is the body of POST /admin/v1/signature-requests/{id}/reject
// (and, optionally empty, of approve).
type SignatureDecision struct {
	Reason string `json:"reason,omitempty"` // required to reject
}

func (s *Server) adminSignatureRequests(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	q := r.URL.Query()
	reqs, err := s.cfg.Policy.SignatureRequests(a, q.Get("enterprise"), q.Get("state"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SignatureRequestList{Requests: reqs})
}

func (s *Server) decideSignature(approve bool) actorHandler {
	return func(a policy.Actor, w http.ResponseWriter, r *http.Request) {
		if !s.accountStore(w) {
			return
		}
		var in SignatureDecision
		if r.ContentLength != 0 && !s.readJSON(w, r, &in) {
			return
		}
		req, err := s.cfg.Policy.DecideSignature(a, r.PathValue("id"), approve, in.Reason)
		if err != nil {
			writeErr(w, err)
			return
		}
		s.audit(a, "signature request "+req.State, "id", req.ID, "enterprise", req.Enterprise, "signature", req.Signature)
		writeJSON(w, http.StatusOK, req)
	}
}

// SignatureRequests lists signature requests (state "" = all, enterprise
// "" = every enterprise).
func (c *Client) SignatureRequests(state, enterprise string) ([]policy.SignatureRequest, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	if enterprise != "" {
		q.Set("enterprise", enterprise)
	}
	var out SignatureRequestList
	err := c.Do("GET", "/admin/v1/signature-requests?"+q.Encode(), nil, &out)
	return out.Requests, err
}

// DecideSignature approves or rejects (with a reason) a signature request.
func (c *Client) DecideSignature(id string, approve bool, reason string) (*policy.SignatureRequest, error) {
	verb := "reject"
	if approve {
		verb = "approve"
	}
	var out policy.SignatureRequest
	err := c.Do("POST", "/admin/v1/signature-requests/"+url.PathEscape(id)+"/"+verb, SignatureDecision{Reason: reason}, &out)
	return &out, err
}

package api

import (
	"errors"
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// The enterprise signature over /v1 (FAQ 7): every member reads it and the
// request waiting for the account manager; an enterprise admin asks for a
// change (policy.RequestSignature), which takes effect when the account
// manager approves it (admin_signatures.go). Until then the old signature
// stays on every message.

// SignatureState is the answer of GET /v1/signature.
type SignatureState struct {
	Signature string                   `json:"signature"` // in force, "" = none yet (sending refused no_signature)
	Pending   *policy.SignatureRequest `json:"pending"`   // the request awaiting approval, null = none
}

// SignatureRequestIn is the body of POST /v1/signature/requests.
type SignatureRequestIn struct {
	Signature string `json:"signature"` // "【某某公司】"
}

// SignatureRequestList lists signature requests, newest first.
type SignatureRequestList struct {
	Requests []policy.SignatureRequest `json:"requests"`
}

// actor is the policy actor of an authenticated /v1 caller.
func (c *caller) actor() policy.Actor { return policy.ActorFor(c.user) }

// requireAdmin answers 403 unless the caller is an enterprise admin.
func requireAdmin(c *caller, w http.ResponseWriter) bool {
	if !c.admin() {
		writeError(w, http.StatusForbidden, "forbidden", "enterprise admins only")
		return false
	}
	return true
}

// showSignature: GET /v1/signature
func (s *Server) showSignature(c *caller, w http.ResponseWriter, _ *http.Request) {
	if !s.accountStore(w) {
		return
	}
	out := SignatureState{Signature: c.ent.Signature}
	reqs, err := s.cfg.Policy.SignatureRequests(c.actor(), c.ent.Code, policy.SignaturePending)
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(reqs) > 0 {
		out.Pending = &reqs[0]
	}
	writeJSON(w, http.StatusOK, out)
}

// requestSignature: POST /v1/signature/requests
func (s *Server) requestSignature(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) || !requireAdmin(c, w) {
		return
	}
	var in SignatureRequestIn
	if !decodeBody(w, r, &in) {
		return
	}
	req, err := s.cfg.Policy.RequestSignature(c.actor(), c.ent.Code, in.Signature)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("signature change requested", "enterprise", c.ent.Code, "by", c.user.SystemID, "id", req.ID)
	writeJSON(w, http.StatusAccepted, req)
}

// listSignatureRequests: GET /v1/signature/requests[?state=] (every member)
func (s *Server) listSignatureRequests(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	reqs, err := s.cfg.Policy.SignatureRequests(c.actor(), c.ent.Code, r.URL.Query().Get("state"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SignatureRequestList{Requests: reqs})
}

// notFoundIfForbidden answers an enterprise actor's ErrForbidden (another
// enterprise's object, or none) as not_found, so that ids cannot be probed.
func notFoundIfForbidden(w http.ResponseWriter, err error) {
	if errors.Is(err, policy.ErrForbidden) {
		writeError(w, http.StatusNotFound, "not_found", "no such object")
		return
	}
	writeErr(w, err)
}

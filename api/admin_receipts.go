package api

import (
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// ReceiptSecretRequest is the optional body of POST
// /admin/v1/enterprises/{code}/receipt-secret: a secret to set; none (or
// an empty body) generates one.
type ReceiptSecretRequest struct {
	Secret string `json:"secret,omitempty"` // 16 to 128 bytes
}

// ReceiptSecret is its answer: the secret, shown this once.
type ReceiptSecret struct {
	Code   string `json:"code"`
	Secret string `json:"secret"`
}

// setReceiptSecret sets (or generates) the secret that signs an
// enterprise's receipt webhooks (package webhook). The old one stops
// signing at once.
func (s *Server) setReceiptSecret(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in ReceiptSecretRequest
	if r.ContentLength != 0 && !s.readJSON(w, r, &in) {
		return
	}
	if in.Secret == "" {
		in.Secret = policy.NewReceiptSecret()
	} else if n := len(in.Secret); n < 16 || n > 128 {
		writeErr(w, invalidf("secret: 16 to 128 bytes, got %d", n))
		return
	}
	e, err := s.cfg.Policy.UpdateEnterprise(a, r.PathValue("code"), func(e *policy.Enterprise) error {
		e.Receipt.Secret = in.Secret
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "receipt secret set", "enterprise", e.Code)
	writeJSON(w, http.StatusOK, ReceiptSecret{Code: e.Code, Secret: in.Secret})
}

package api

import (
	"fmt"
	"net/http"
	"time"

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
	Code          string     `json:"code"`
	Secret        string     `json:"secret"`
	PreviousUntil *time.Time `json:"previous_until,omitempty"` // until when the replaced secret signs too; absent if none was set
}

// setReceiptSecret sets (or generates) the secret that signs an
// enterprise's receipt webhooks (package webhook). The one it replaces
// signs X-Qxtd-Signature-Previous for Config.ReceiptSecretOverlap.
func (s *Server) setReceiptSecret(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	var in ReceiptSecretRequest
	if r.ContentLength != 0 && !s.readJSON(w, r, &in) {
		return
	}
	if in.Secret == "" {
		in.Secret = policy.NewReceiptSecret()
	} else if n := len(in.Secret); n < 16 || n > 128 {
		writeErr(w, invalidZH("secret", fmt.Sprintf("签名密钥须为 16–128 字节，填了 %d 字节", n), "secret: 16 to 128 bytes, got %d", n))
		return
	}
	now := time.Now()
	e, err := s.cfg.Policy.UpdateEnterprise(a, r.PathValue("code"), func(e *policy.Enterprise) error {
		e.Receipt.SetSecret(in.Secret, now, s.cfg.ReceiptSecretOverlap)
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "receipt secret set", "enterprise", e.Code)
	writeJSON(w, http.StatusOK, ReceiptSecret{Code: e.Code, Secret: in.Secret, PreviousUntil: e.Receipt.PreviousSigns(now)})
}

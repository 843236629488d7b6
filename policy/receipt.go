package policy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"
)

// ReceiptHook is an enterprise's receipt webhook: the URL its HTTP sends'
// final receipts are POSTed to unless a send names its own, and the
// secret that signs them (HMAC-SHA256; package webhook). Empty URL: none.
type ReceiptHook struct {
	URL string `json:"url,omitempty"`
	// ReplyURL is where the enterprise's replies (MO) are POSTed, one a
	// POST or ReplyBatch a POST, signed with the same secret (reply_url;
	// package webhook).
	// Empty: replies are not pushed (SMPP receivers and GET /v1/inbox).
	ReplyURL string `json:"reply_url,omitempty"`
	Secret   string `json:"secret,omitempty"` // never shown after it was generated
	// Batch is how many receipts one POST may carry (receipt_batch): 0
	// or 1, one a POST (the body one receipt); more, up to
	// MaxReceiptBatch, a {"receipts": [...]} of those due at once for the
	// same URL.
	Batch int `json:"batch,omitempty"`
	// ReplyBatch is how many replies one POST to ReplyURL may carry
	// (reply_batch): 0 or 1, one a POST (the body one reply); more, up
	// to MaxReceiptBatch, a {"replies": [...]} of those due at once.
	ReplyBatch int `json:"reply_batch,omitempty"`
	// Previous is the secret a rotation replaced; it still signs, in a
	// header of its own (X-Qxtd-Signature-Previous), until PreviousUntil,
	// so that a receiver can switch to the new secret without refusing
	// receipts in between. Never shown.
	Previous      string    `json:"previous,omitempty"`
	PreviousUntil time.Time `json:"previous_until,omitzero"`
}

// ReceiptSecretOverlap is how long a rotated-out receipt secret keeps
// signing beside the new one by default (webhooks.secret_overlap): a day
// for the receiver to deploy the new one.
const ReceiptSecretOverlap = 24 * time.Hour

// SetSecret makes secret the one that signs from now on. The secret it
// replaces (if any, and different) goes on signing in its own header for
// overlap (0: it stops at once). That is safe even when the rotation is
// because the old secret leaked: what a receiver accepts is the
// receiver's choice, and one that has the new secret checks
// X-Qxtd-Signature against it alone.
func (h *ReceiptHook) SetSecret(secret string, now time.Time, overlap time.Duration) {
	if h.Secret != "" && h.Secret != secret {
		h.Previous, h.PreviousUntil = h.Secret, now.Add(overlap)
		if overlap <= 0 {
			h.Previous, h.PreviousUntil = "", time.Time{}
		}
	}
	h.Secret = secret
}

// PreviousSecret is the rotated-out secret that still signs at now ("" if
// none).
func (h ReceiptHook) PreviousSecret(now time.Time) string {
	if h.Secret == "" || !now.Before(h.PreviousUntil) {
		return ""
	}
	return h.Previous
}

// PreviousSigns is until when PreviousSecret signs, nil if it does not at
// now.
func (h ReceiptHook) PreviousSigns(now time.Time) *time.Time {
	if h.PreviousSecret(now) == "" {
		return nil
	}
	t := h.PreviousUntil
	return &t
}

// MaxReceiptURL is the longest receipt_url accepted (bytes).
const MaxReceiptURL = 2048

// MaxReceiptBatch is the largest receipt_batch, and reply_batch,
// accepted (webhook.MaxBatch).
const MaxReceiptBatch = 1000

// CheckReceiptURL checks a receipt_url: an absolute http or https URL with
// a host, no user information, at most MaxReceiptURL bytes. field names
// the field in the error (ErrInvalid). Where the URL points is checked
// when it is used (package webhook: private addresses).
func CheckReceiptURL(field, s string) error {
	label := urlLabel[field]
	if label == "" {
		label = "地址"
	}
	if len(s) > MaxReceiptURL {
		return invalidField(field, fmt.Sprintf("%s最长 %d 字节", label, MaxReceiptURL), "%s: longer than %d bytes", field, MaxReceiptURL)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return invalidField(field, label+"不是网址", "%s: not a URL", field)
	case u.Scheme != "http" && u.Scheme != "https":
		return invalidField(field, label+"须以 http:// 或 https:// 开头", "%s: only http and https URLs are accepted, not %q", field, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return invalidField(field, label+"没有主机名", "%s: the URL has no host", field)
	case u.User != nil:
		return invalidField(field, label+"不能含用户名或密码（用签名密钥验证推送）", "%s: user information in the URL is not accepted", field)
	}
	return nil
}

// urlLabel is the Chinese of CheckReceiptURL's fields.
var urlLabel = map[string]string{"receipt_url": "回执推送地址", "reply_url": "回复推送地址", "url": "推送地址"}

// NewReceiptSecret returns a fresh random secret (32 bytes, hex).
func NewReceiptSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + hex.EncodeToString(b)
}

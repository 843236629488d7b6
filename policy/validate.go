package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field validation for enterprises and users: every refusal wraps ErrInvalid.

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func validCode(code string) error {
	if code == "" || len(code) > 32 {
		return invalid("group code %q: 1–32 characters", code)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return invalid("group code %q: only letters, digits, - and _", code)
		}
	}
	return nil
}

func validText(field, s string, minRunes, maxRunes int) error {
	n := utf8.RuneCountInString(s)
	if !utf8.ValidString(s) || n < minRunes || n > maxRunes || strings.TrimSpace(s) != s {
		return invalid("%s %q: %d–%d characters, no leading or trailing space", field, s, minRunes, maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid("%s %q: control character", field, s)
		}
	}
	return nil
}

// Signature brackets and bounds: "【" + 2..20 characters + "】".
const (
	sigOpen         = "【"
	sigClose        = "】"
	minSignatureLen = 2
	maxSignatureLen = 20
)

// ValidSignature checks an enterprise signature: "【…】" around 2 to 20
// characters, no brackets or control characters inside. The empty signature
// is valid for storage (an enterprise not yet given one) but cannot send.
func ValidSignature(sig string) error {
	if sig == "" {
		return nil
	}
	inner, ok := strings.CutPrefix(sig, sigOpen)
	if ok {
		inner, ok = strings.CutSuffix(inner, sigClose)
	}
	if !ok {
		return invalid("signature %q: must be wrapped in 【】", sig)
	}
	if strings.ContainsAny(inner, "【】[]") {
		return invalid("signature %q: brackets inside", sig)
	}
	return validText("signature", inner, minSignatureLen, maxSignatureLen)
}

func validSystemID(id string) error {
	if id == "" || len(id) > MaxSystemIDLen {
		return invalid("system_id %q: 1–%d characters", id, MaxSystemIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return invalid("system_id %q: printable ASCII without spaces", id)
		}
	}
	return nil
}

// ValidPassword checks an SMPP password: MinPasswordLen to MaxPasswordLen
// printable ASCII characters without spaces.
func ValidPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return invalid("password: %d–%d characters", MinPasswordLen, MaxPasswordLen)
	}
	for i := 0; i < len(pw); i++ {
		if pw[i] <= ' ' || pw[i] > '~' {
			return invalid("password: printable ASCII without spaces")
		}
	}
	return nil
}

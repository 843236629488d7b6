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

// validCode checks a group code, the field named field in the request
// ("code" for an enterprise, "group_code" for an application).
// ValidGroupCode checks an enterprise's group code as CreateEnterprise
// does (for codes named elsewhere: the configuration's).
func ValidGroupCode(code string) error { return validCode("code", code) }

func validCode(field, code string) error {
	if code == "" || len(code) > 32 {
		return invalidField(field, "集团编码须为 1–32 个字符", "group code %q: 1–32 characters", code)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return invalidField(field, "集团编码只能包含字母、数字、- 和 _", "group code %q: only letters, digits, - and _", code)
		}
	}
	return nil
}

// textField is a free-text field: its name in the English messages, in
// the requests, and in Chinese.
type textField struct{ en, field, zh string }

var (
	userNameField    = textField{"user name", "name", "姓名"}
	entNameField     = textField{"enterprise name", "name", "企业名称"}
	signatureField   = textField{"signature", "signature", "签名（【】内）"}
	groupField       = textField{"group", "groups", "分组名"}
	contactNameField = textField{"name", "name", "联系人姓名"}
	reasonField      = textField{"reason", "reason", "原因"}
)

func validText(f textField, s string, minRunes, maxRunes int) error {
	n := utf8.RuneCountInString(s)
	if !utf8.ValidString(s) || n < minRunes || n > maxRunes || strings.TrimSpace(s) != s {
		return invalidField(f.field, fmt.Sprintf("%s须为 %d–%d 个字，首尾不能有空格", f.zh, minRunes, maxRunes),
			"%s %q: %d–%d characters, no leading or trailing space", f.en, s, minRunes, maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalidField(f.field, f.zh+"不能含控制字符（如换行）", "%s %q: control character", f.en, s)
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
		return invalidField("signature", "签名须用【】括起来，例如【某某公司】", "signature %q: must be wrapped in 【】", sig)
	}
	if strings.ContainsAny(inner, "【】[]") {
		return invalidField("signature", "签名的【】内不能再有括号", "signature %q: brackets inside", sig)
	}
	return validText(signatureField, inner, minSignatureLen, maxSignatureLen)
}

func validSystemID(id string) error {
	if id == "" || len(id) > MaxSystemIDLen {
		return invalidField("system_id", fmt.Sprintf("登录账号须为 1–%d 位字母、数字或英文符号", MaxSystemIDLen), "system_id %q: 1–%d characters", id, MaxSystemIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return invalidField("system_id", "登录账号只能用字母、数字或英文符号，不能有空格", "system_id %q: printable ASCII without spaces", id)
		}
	}
	return nil
}

// ValidPassword checks an SMPP password: MinPasswordLen to MaxPasswordLen
// printable ASCII characters without spaces.
func ValidPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return invalidField("password", fmt.Sprintf("密码须为 %d–%d 位字母、数字或英文符号", MinPasswordLen, MaxPasswordLen), "password: %d–%d characters", MinPasswordLen, MaxPasswordLen)
	}
	for i := 0; i < len(pw); i++ {
		if pw[i] <= ' ' || pw[i] > '~' {
			return invalidField("password", "密码只能用字母、数字或英文符号，不能有空格", "password: printable ASCII without spaces")
		}
	}
	return nil
}

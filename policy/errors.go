package policy

import (
	"errors"
	"fmt"
)

// Errors of the account store, grouped by when they occur. Policy refusals on
// the sending path are *Refusal values instead (see reasons.go).
var (
	// ErrAuth: unknown system_id, wrong password, unknown API key, or a password
	// reset whose group code / user name / mobile do not all match. Which one is
	// never told.
	ErrAuth = errors.New("policy: authentication failed")
	// ErrForbidden: the actor may not do this (another enterprise's data, or an
	// operator-only action).
	ErrForbidden = errors.New("policy: forbidden")
	// ErrNotFound: no such enterprise, user, whitelist entry or override (only
	// reported to actors allowed to know).
	ErrNotFound = errors.New("policy: not found")
	// ErrExists: a record with that key already exists.
	ErrExists = errors.New("policy: already exists")
	// ErrInvalid: a field fails validation; the wrapping error names it.
	ErrInvalid = errors.New("policy: invalid")
	// ErrClosed: the store's database was closed.
	ErrClosed = errors.New("policy: store closed")
)

// FieldError is a value a field cannot take: ErrInvalid (errors.Is), with
// the field's name as the APIs' requests spell it and the rule in
// Chinese, so that a console puts the Chinese beside its field without
// reading the English, and an API client knows the field without parsing
// the message. The API answers it 400 invalid with "field" and
// "detail_zh".
type FieldError struct {
	Field  string // "system_id", "tps", …; "" when no one field is wrong
	Detail string // the English, as Error gives it after "policy: invalid: " (or is's message)
	ZH     string // the Chinese, which the consoles show after 输入有误
	is     error  // the sentinel it is (ErrUserCap, reminder.ErrInvalid); nil: ErrInvalid
}

// NewFieldError is a FieldError of another package's rules: errors.Is
// is (which should itself be an invalid-input error, as
// reminder.ErrInvalid is), and its message is is's then detail.
func NewFieldError(is error, field, zh, detail string) *FieldError {
	return &FieldError{Field: field, Detail: detail, ZH: zh, is: is}
}

func (e *FieldError) Error() string { return e.base().Error() + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrInvalid) hold (or is, when set).
func (e *FieldError) Unwrap() error { return e.base() }

func (e *FieldError) base() error {
	if e.is != nil {
		return e.is
	}
	return ErrInvalid
}

// invalidField is a *FieldError: field, its Chinese, and the English
// formatted as fmt.Sprintf(format, args...).
func invalidField(field, zh, format string, args ...any) error {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, args...), ZH: zh}
}

// FieldOf is the field err's FieldError names: "" for none.
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

package policy

import "errors"

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

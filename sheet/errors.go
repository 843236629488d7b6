package sheet

import (
	"errors"
	"fmt"
)

// Kinds of errors, for errors.Is. Every error of this package is an *Error
// wrapping one of them (or the underlying reader's error).
var (
	// ErrUnsupported: a format this package does not read (XLS).
	ErrUnsupported = errors.New("unsupported file format")
	// ErrMalformed: the file is not what its format says (a broken zip
	// archive, unterminated XML, …).
	ErrMalformed = errors.New("malformed file")
	// ErrLimit: the file passed one of the caller's Limits.
	ErrLimit = errors.New("limit exceeded")
)

// Error is a failure to read a file, at a row where one is known.
type Error struct {
	Row int   // 1-based, as Row.N; 0 when the file as a whole fails
	Err error // wraps ErrUnsupported, ErrMalformed, ErrLimit or a read error
}

func (e *Error) Error() string {
	if e.Row > 0 {
		return fmt.Sprintf("sheet: row %d: %v", e.Row, e.Err)
	}
	return "sheet: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func rowErr(row int, kind error, format string, args ...any) error {
	return &Error{Row: row, Err: fmt.Errorf("%w: "+format, append([]any{kind}, args...)...)}
}

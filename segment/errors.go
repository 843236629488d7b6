package segment

import (
	"errors"
	"fmt"
)

// Errors are sentinels, compared with errors.Is; the functions of this
// package wrap them with context (%w), so the message says which limit or
// which octet was wrong while the sentinel says what kind of refusal it is.
//
// Refusals of a text we are asked to send (Encode, Count):
var (
	// ErrEmpty: there is nothing to send (empty text) or nothing was received.
	ErrEmpty = errors.New("segment: empty message")
	// ErrTooLong: the signed text has more characters than Options.MaxChars
	// (500 by default), or would need more than 255 segments.
	ErrTooLong = errors.New("segment: message too long")
	// ErrNotUTF8: the text to send is not valid UTF-8. We refuse rather than
	// replace the bad bytes with U+FFFD, which would change what is billed.
	ErrNotUTF8 = errors.New("segment: text is not valid UTF-8")
	// ErrBadOptions: Options or BuildFrames arguments are out of range
	// (unknown Concat mode, negative MaxChars, no parts, more than 255 parts).
	ErrBadOptions = errors.New("segment: bad options")
)

// Refusals of what an ESME sent us (DecodeIncoming, ParseIncoming,
// ParseUDH, ParseSAR, Reassemble):
var (
	// ErrBinary: binary content — an 8-bit data_coding or WAP push port
	// addressing. This is how MMS notifications are refused (the service sends no MMS).
	ErrBinary = errors.New("segment: binary or WAP push content")
	// ErrUnsupportedCoding: a data_coding we do not decode (JIS, Cyrillic,
	// Hebrew, KS C 5601, compressed, message waiting indication, reserved).
	ErrUnsupportedCoding = errors.New("segment: unsupported data_coding")
	// ErrMalformed: the octets do not fit their data_coding (odd UCS-2
	// length, an octet above 0x7F in unpacked GSM or IA5), or both
	// short_message and message_payload are set.
	ErrMalformed = errors.New("segment: malformed message text")
	// ErrBadUDH: the user data header is truncated, an information element
	// has the wrong length, or the concatenation values are impossible
	// (total 0, seq 0, seq > total).
	ErrBadUDH = errors.New("segment: malformed user data header")
	// ErrBadSAR: sar_* TLVs are incomplete, of the wrong length or
	// impossible (total 0, seq 0, seq > total).
	ErrBadSAR = errors.New("segment: malformed SAR TLVs")
	// ErrBadConcat: a set of frames or parts does not form one message
	// (missing or repeated sequence numbers, mixed references).
	ErrBadConcat = errors.New("segment: inconsistent concatenated parts")
)

// LengthError is ErrTooLong with its counts, for a refusal that says them
// in another language than the message's (the consoles' Chinese):
// errors.Is(err, ErrTooLong) holds, and errors.As finds the counts.
type LengthError struct {
	// Chars and Limit: the signed text's characters and Options.MaxChars;
	// Segments (0 when the characters were over) and the 255 a message
	// may have.
	Chars, Limit          int
	Segments, MaxSegments int
}

func (e *LengthError) Error() string {
	if e.Segments > 0 {
		return fmt.Sprintf("%v: %d segments, limit %d", ErrTooLong, e.Segments, e.MaxSegments)
	}
	return fmt.Sprintf("%v: %d characters, limit %d", ErrTooLong, e.Chars, e.Limit)
}

func (e *LengthError) Unwrap() error { return ErrTooLong }

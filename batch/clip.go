package batch

import (
	"strings"
	"unicode/utf8"
)

// Limits of what a job (and a staged upload) keeps of a file: kept for a
// day and shown on every read, so bounded whatever the file holds.
const (
	// MaxFileName: bytes of an uploaded file's name (a name longer than a
	// file system's is nobody's).
	MaxFileName = 255
	// maxKeptNumber: bytes of a refused row's number (E.164 is 15 digits;
	// room for a "+86 " and separators).
	maxKeptNumber = 32
	// maxKeptMessage: bytes of a refused row's message (ours are shorter;
	// one that quotes the file is cut).
	maxKeptMessage = 300
	// maxKeptReason: bytes of a refused row's reason and code (ours are
	// short identifiers).
	maxKeptReason = 64
	// maxFailMessage: bytes of a failed job's message (one a job).
	maxFailMessage = 1 << 10
)

// Clip is a copy of s cut to at most n bytes, at a rune boundary, with
// "…" at the end when cut. A copy even when short: a cell of a CSV
// file is a substring of its whole record (encoding/csv allocates one
// string a record), so keeping the substring would keep the record.
func Clip(s string, n int) string {
	if len(s) <= n {
		return strings.Clone(s)
	}
	const ellipsis = "…"
	if n < len(ellipsis) {
		return ""
	}
	cut := n - len(ellipsis)
	// Back to the start of the rune cut in two (at most UTFMax-1 bytes:
	// invalid UTF-8 is cut where it is).
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut] + ellipsis
}

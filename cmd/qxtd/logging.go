package main

import (
	"io"
	"log/slog"
	"os"
)

// logFormat is the handler log.format asks for on w: "auto" is text when
// w is a terminal (a person reading `qxtd serve` in a shell) and JSON
// otherwise (journald, a pipe to a collector, a file), so that machines
// never get text by accident; "json" and "text" are kept as given.
func logFormat(format string, w io.Writer) string {
	if format != "auto" {
		return format
	}
	if isTerminal(w) {
		return "text"
	}
	return "json"
}

// isTerminal reports whether w is a character device, which for stderr
// means a terminal, without a terminal library: a pipe, a socket
// (journald) or a regular file is not one. /dev/null is one too, but
// nobody reads what goes there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// utcTimes is the handlers' ReplaceAttr: every time in a log line (the
// record's own "time" and any time.Time attribute) is written in UTC,
// RFC 3339 with a Z, whatever the machine's zone, so that lines from
// machines in different zones and the collector's own clock compare
// without a conversion. (Exports and bills stay in Asia/Shanghai: they
// are for people in that zone.)
func utcTimes(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindTime {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}

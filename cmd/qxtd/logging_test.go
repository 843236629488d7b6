package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestLogFormat: auto is JSON into a file and a pipe (journald, a
// collector) and text on a terminal (the master side of a pseudo-terminal
// from /dev/ptmx, a character device as a terminal is); json and text are
// taken as given.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "qxtd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("a pseudo-terminal for the terminal case: %v", err)
	}
	defer tty.Close()
	var buf bytes.Buffer
	for _, tc := range []struct {
		name, format string
		w            io.Writer
		want         string
	}{
		{"auto, file", "auto", file, "json"},
		{"auto, pipe", "auto", pw, "json"},
		{"auto, buffer", "auto", &buf, "json"},
		{"auto, terminal", "auto", tty, "text"},
		{"json, terminal", "json", tty, "json"},
		{"text, pipe", "text", pw, "text"},
	} {
		if got := logFormat(tc.format, tc.w); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestLogTimesUTC: every time in a line, the record's and an attribute's
// in another zone, is written in UTC with a Z, in both formats.
func TestLogTimesUTC(t *testing.T) {
	t.Parallel()
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 18, 30, 0, 0, shanghai)
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, _ := newLogger(LogConfig{Level: "info", Format: format}, &buf)
		log.Info("hello", "send_at", at)
		line := buf.String()
		if !regexp.MustCompile(`send_at"?[:=]"?2026-12-01T10:30:00(\.000)?Z`).MatchString(line) {
			t.Errorf("%s: the attribute is not in UTC: %s", format, line)
		}
		if strings.Contains(line, "+08:00") {
			t.Errorf("%s: a time in another zone: %s", format, line)
		}
		var rec time.Time
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("json: %v: %s", err, line)
			}
			s, _ := m["time"].(string)
			if rec, err = time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
				t.Errorf("json: record time %q is not RFC 3339 UTC (%v)", s, err)
			}
		} else {
			f := strings.Fields(line)[0]
			s, ok := strings.CutPrefix(f, "time=")
			if rec, err = time.Parse(time.RFC3339Nano, s); !ok || err != nil || !strings.HasSuffix(s, "Z") {
				t.Errorf("text: record time %q is not RFC 3339 UTC (%v)", f, err)
			}
		}
		if d := time.Since(rec); d < 0 || d > time.Minute {
			t.Errorf("%s: record time %v is %v from now", format, rec, d)
		}
	}
}

// TestDaemonLogsJSONInUTC: the real daemon with the default log.format,
// its stderr a pipe and its zone Asia/Shanghai, writes JSON lines with UTC
// times.
func TestDaemonLogsJSONInUTC(t *testing.T) {
	t.Parallel()
	_, simAddr := startSim(t, smpp.SimOptions{})
	d := startDaemon(t, writeConfig(t, t.TempDir(), simAddr, ""), "TZ=Asia/Shanghai")
	n := 0
	for line := range strings.Lines(d.log()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %v: %s", err, line)
		}
		s, _ := m["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("time %q is not RFC 3339 UTC: %s", s, line)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no log lines")
	}
}

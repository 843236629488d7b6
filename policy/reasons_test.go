package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestReasons(t *testing.T) {
	want := map[string]uint32{
		"not_whitelisted": 0x400, "scope_national": 0x401, "scope_offnet": 0x402, "invalid_number": 0x403,
		"quota_exceeded": 0x404, "binary_refused": 0x405, "too_long": 0x406, "no_signature": 0x407,
		"account_disabled": 0x408, "rate_limited": 0x58,
	}
	rs := Reasons()
	if len(rs) != len(want) {
		t.Fatalf("%d reasons, want %d", len(rs), len(want))
	}
	seenStatus := map[uint32]bool{}
	for _, r := range rs {
		if st, ok := want[r.String()]; !ok || st != r.Status() {
			t.Errorf("%v: status 0x%X, want 0x%X", r, r.Status(), st)
		}
		if seenStatus[r.Status()] {
			t.Errorf("status 0x%X used twice", r.Status())
		}
		seenStatus[r.Status()] = true
		if r != ReasonRateLimited && (r.Status() < 0x400 || r.Status() > 0x4FF) {
			t.Errorf("%v: vendor status out of 0x400–0x4FF", r)
		}
		if r.Message() == "" || r.MessageZH() == "" {
			t.Errorf("%v: no message", r)
		}
		if back, ok := ParseReason(r.String()); !ok || back != r {
			t.Errorf("ParseReason(%q)", r)
		}
		js, err := json.Marshal(struct{ R Reason }{r})
		if err != nil || !strings.Contains(string(js), `"`+r.String()+`"`) {
			t.Errorf("JSON %s %v", js, err)
		}
	}
	var zero Reason
	if zero.Valid() || zero.String() != "unknown" || zero.Status() != 0x08 {
		t.Error("zero reason")
	}
	if _, err := json.Marshal(zero); err == nil {
		t.Error("zero reason marshals")
	}
}

func TestReasonOf(t *testing.T) {
	err := fmt.Errorf("submit to %s: %w", "x", NewRefusal(ReasonScopeOffNet, "+8618612345678: china_unicom"))
	if r, ok := ReasonOf(err); !ok || r != ReasonScopeOffNet {
		t.Errorf("ReasonOf wrapped: %v %v", r, ok)
	}
	if !errors.Is(err, &Refusal{Reason: ReasonScopeOffNet}) || errors.Is(err, &Refusal{Reason: ReasonScopeNational}) {
		t.Error("errors.Is by reason")
	}
	if _, ok := ReasonOf(errors.New("other")); ok {
		t.Error("plain error has a reason")
	}
	if _, ok := ReasonOf(nil); ok {
		t.Error("nil has a reason")
	}
	if s := err.Error(); !strings.Contains(s, "scope_offnet") || !strings.Contains(s, "+8618612345678") {
		t.Errorf("message %q", s)
	}
}

// The refusal table in doc.go is ReasonTable(), verbatim (the README's copy
// is pasted from the same function).
func TestDocTable(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//\t|"); ok {
			b.WriteString("|" + rest + "\n")
		}
	}
	if got, want := b.String(), ReasonTable(); got != want {
		t.Errorf("doc.go table is stale; want:\n%s\ngot:\n%s", want, got)
	}
}

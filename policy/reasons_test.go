package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestReasons(t *testing.T) {
	want := map[string]uint32{
		"not_whitelisted": 0x400, "scope_national": 0x401, "scope_offnet": 0x402, "invalid_number": 0x403,
		"quota_exceeded": 0x404, "binary_refused": 0x405, "too_long": 0x406, "no_signature": 0x407,
		"account_disabled": 0x408, "rate_limited": 0x58,
		"bad_text": 0x01, "no_route": 0x0B, "presplit_unsupported": 0x43, "part_conflict": 0x45,
		"reassembly_full": 0x14, "incomplete": 0x45, "store_error": 0x08,
		"bad_source": 0x409, "opted_out": 0x40A,
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
		// A vendor code names one reason; standard codes may be shared
		// (ESME_RSUBMITFAIL for two ways a split message fails).
		if r.Vendor() {
			if seenStatus[r.Status()] {
				t.Errorf("vendor status 0x%X used twice", r.Status())
			}
			seenStatus[r.Status()] = true
		}
		if vendor := r <= ReasonAccountDisabled || r >= ReasonBadSource; vendor != r.Vendor() {
			t.Errorf("%v: Vendor() = %v, want %v (the operator's rules have codes in 0x400–0x4FF)", r, r.Vendor(), vendor)
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

func TestDescribe(t *testing.T) {
	reason, code, msg := Describe(fmt.Errorf("send: %w", NewRefusal(ReasonNotWhitelisted, "+8613800138000: whitelist entry pending")))
	if reason != "not_whitelisted" || code != "0x00000400" || !strings.Contains(msg, "pending") || !strings.Contains(msg, ReasonNotWhitelisted.Message()) {
		t.Errorf("Describe(refusal) = %q %q %q", reason, code, msg)
	}
	reason, code, msg = Describe(errors.New("disk on fire"))
	if reason != "internal" || code != "0x00000008" || msg != "disk on fire" {
		t.Errorf("Describe(other) = %q %q %q", reason, code, msg)
	}
}

package policy

import (
	"errors"
	"testing"
	"time"
)

// TestSetReceiptHook: an enterprise's admins set its own receipt webhook
// (self-service) and nothing else of it; its plain users and the other
// enterprises' admins may not; the operator may; the rules of
// UpdateEnterprise (an http(s) URL, a batch of 0–1000) hold for both.
func TestSetReceiptHook(t *testing.T) {
	f := newFixture(t)
	set := func(a Actor, code string, h ReceiptHook) error {
		_, err := f.p.SetReceiptHook(a, code, func(r *ReceiptHook) error { *r = h; return nil })
		return err
	}
	want := ReceiptHook{URL: "https://hooks.example.com/qxtd", ReplyURL: "https://hooks.example.com/replies", Secret: "whsec_0123456789abcdef", Batch: 100}
	if err := set(f.aAdmin, entA, want); err != nil {
		t.Fatalf("the enterprise's admin: %v", err)
	}
	e, ok := f.p.Lookup(entA)
	if !ok || e.Receipt != want {
		t.Fatalf("stored %+v, want %+v", e.Receipt, want)
	}
	if e.Signature != "【甲公司】" || e.Package != 1 {
		t.Fatalf("the rest of the enterprise changed: %+v", e)
	}
	for name, a := range map[string]Actor{"plain user": f.aUser, "another enterprise's admin": f.bAdmin, "nobody": {}} {
		if err := set(a, entA, ReceiptHook{URL: "https://evil.example.com/"}); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: err %v, want ErrForbidden", name, err)
		}
	}
	if e, _ := f.p.Lookup(entA); e.Receipt != want {
		t.Fatalf("a refused change was stored: %+v", e.Receipt)
	}
	if err := set(op, entB, ReceiptHook{URL: "http://receipts.example.net/"}); err != nil {
		t.Fatalf("the operator: %v", err)
	}
	for _, bad := range []ReceiptHook{{URL: "ftp://example.com/"}, {URL: "https://u:p@example.com/"},
		{ReplyURL: "ftp://example.com/"}, {ReplyURL: "https://u:p@example.com/"}, {ReplyURL: "https://"}, {Batch: MaxReceiptBatch + 1}, {Batch: -1}} {
		if err := set(f.aAdmin, entA, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
	if err := set(f.aAdmin, "GD0000404", want); err == nil {
		t.Error("an enterprise that does not exist was changed")
	}
}

// TestReceiptSecretRotation: a rotation keeps the replaced secret signing
// for the overlap asked for, then not; the first secret and a rotation to
// the same secret keep none, nor does a rotation with no overlap.
func TestReceiptSecretRotation(t *testing.T) {
	now := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	var h ReceiptHook
	h.SetSecret("whsec_a", now, ReceiptSecretOverlap)
	if h.PreviousSecret(now) != "" || h.PreviousSigns(now) != nil {
		t.Fatalf("the first secret: %+v", h)
	}
	later := now.Add(time.Hour)
	h.SetSecret("whsec_b", later, ReceiptSecretOverlap)
	until := later.Add(ReceiptSecretOverlap)
	if h.Secret != "whsec_b" || h.PreviousSecret(later) != "whsec_a" || h.PreviousSecret(until.Add(-time.Nanosecond)) != "whsec_a" {
		t.Fatalf("after a rotation: %+v", h)
	}
	if u := h.PreviousSigns(later); u == nil || !u.Equal(until) {
		t.Errorf("previous signs until %v, want %v", u, until)
	}
	if h.PreviousSecret(until) != "" || h.PreviousSigns(until) != nil {
		t.Errorf("after the overlap: %+v", h)
	}
	h.SetSecret("whsec_b", later.Add(time.Minute), ReceiptSecretOverlap) // the same again: nothing changes
	if h.PreviousSecret(later.Add(time.Minute)) != "whsec_a" || !h.PreviousUntil.Equal(until) {
		t.Errorf("set to the same secret: %+v", h)
	}
	h.SetSecret("whsec_c", later.Add(2*time.Minute), 7*24*time.Hour) // rotated again: b is the previous for a week, a is gone
	if h.PreviousSecret(later.Add(2*time.Minute)) != "whsec_b" || !h.PreviousUntil.Equal(later.Add(2*time.Minute+7*24*time.Hour)) {
		t.Errorf("rotated twice: %+v", h)
	}
	h.SetSecret("whsec_d", later.Add(3*time.Minute), 0) // no overlap: c stops at once
	if h.PreviousSecret(later.Add(3*time.Minute)) != "" || h.PreviousSigns(later.Add(3*time.Minute)) != nil {
		t.Errorf("rotated without an overlap: %+v", h)
	}
	h.SetSecret("whsec_e", later.Add(4*time.Minute), time.Hour)
	h.Secret = "" // no secret: nothing signs, the previous neither
	if h.PreviousSecret(later.Add(4*time.Minute)) != "" {
		t.Errorf("without a secret: %+v", h)
	}
}

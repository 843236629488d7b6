package policy

import (
	"errors"
	"testing"
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
	want := ReceiptHook{URL: "https://hooks.example.com/qxtd", Secret: "whsec_0123456789abcdef", Batch: 100}
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
	for _, bad := range []ReceiptHook{{URL: "ftp://example.com/"}, {URL: "https://u:p@example.com/"}, {Batch: MaxReceiptBatch + 1}, {Batch: -1}} {
		if err := set(f.aAdmin, entA, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
	if err := set(f.aAdmin, "GD0000404", want); err == nil {
		t.Error("an enterprise that does not exist was changed")
	}
}

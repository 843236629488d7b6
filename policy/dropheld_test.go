package policy

import (
	"errors"
	"testing"
	"time"
)

// TestDropHeld: only the operator drops what an enterprise holds, and
// only while it is disabled; Held names it disabled, then dropped with
// when, and no longer once it is enabled again (the drop cleared).
func TestDropHeld(t *testing.T) {
	f := newFixture(t)
	held := func() map[string]time.Time {
		m := map[string]time.Time{}
		f.p.Held(func(code string, dropped time.Time) { m[code] = dropped })
		return m
	}
	if _, err := f.p.DropHeld(op, entA); !errors.Is(err, ErrInvalid) {
		t.Fatalf("not disabled: %v, want ErrInvalid", err)
	}
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := held(); len(got) != 1 || !got[entA].IsZero() {
		t.Errorf("disabled: Held %v, want %s not dropped", got, entA)
	}
	if _, err := f.p.DropHeld(f.aAdmin, entA); !errors.Is(err, ErrForbidden) {
		t.Fatalf("by the enterprise's admin: %v, want ErrForbidden", err)
	}
	e, err := f.p.DropHeld(op, entA)
	if err != nil || e.HeldDropped.IsZero() {
		t.Fatalf("drop: %v %+v", err, e)
	}
	if got := held(); len(got) != 1 || !got[entA].Equal(e.HeldDropped) {
		t.Errorf("Held: %v, want %s dropped at %v", got, entA, e.HeldDropped)
	}
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.p.Lookup(entA); !e.HeldDropped.IsZero() || len(held()) != 0 {
		t.Errorf("enabled: held_dropped %v, held %v", e.HeldDropped, held())
	}
}

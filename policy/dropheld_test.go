package policy

import (
	"errors"
	"testing"
	"time"
)

// TestDropHeld: only the operator drops what an enterprise holds, and
// only while it is disabled; HeldDrops names it then, with when, and no
// longer once it is enabled again (the drop cleared).
func TestDropHeld(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.DropHeld(op, entA); !errors.Is(err, ErrInvalid) {
		t.Fatalf("not disabled: %v, want ErrInvalid", err)
	}
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.DropHeld(f.aAdmin, entA); !errors.Is(err, ErrForbidden) {
		t.Fatalf("by the enterprise's admin: %v, want ErrForbidden", err)
	}
	e, err := f.p.DropHeld(op, entA)
	if err != nil || e.HeldDropped.IsZero() {
		t.Fatalf("drop: %v %+v", err, e)
	}
	drops := func() map[string]time.Time {
		m := map[string]time.Time{}
		f.p.HeldDrops(func(code string, at time.Time) { m[code] = at })
		return m
	}
	if got := drops(); len(got) != 1 || !got[entA].Equal(e.HeldDropped) {
		t.Errorf("HeldDrops: %v, want %s at %v", got, entA, e.HeldDropped)
	}
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.p.Lookup(entA); !e.HeldDropped.IsZero() || len(drops()) != 0 {
		t.Errorf("enabled: held_dropped %v, drops %v", e.HeldDropped, drops())
	}
}

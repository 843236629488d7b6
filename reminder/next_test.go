package reminder

import (
	"testing"
	"time"
)

func TestReminderNext(t *testing.T) {
	// Wednesday 2 December 2026, 09:00 Shanghai; weekly on Mondays.
	start := time.Date(2026, 12, 2, 9, 0, 0, 0, Shanghai)
	r := &Reminder{Rule: Rule{Freq: Weekly, Start: start, Weekdays: []time.Weekday{time.Monday}}}
	now := start.Add(-time.Hour)
	o, ok := r.Next(now)
	if !ok || o.Date != "2026-12-07" {
		t.Fatalf("Next = %v %v, want Monday 2026-12-07 (not the start's Wednesday)", o.Date, ok)
	}
	if WeekOf(o.At).String() != "2026-W50" {
		t.Errorf("week of the next occurrence %s, want 2026-W50", WeekOf(o.At))
	}
	// A deleted occurrence is skipped; a moved one counts at its new time.
	r.Exceptions = map[string]Exception{"2026-12-07": {Deleted: true}}
	if o, _ = r.Next(now); o.Date != "2026-12-14" {
		t.Errorf("with the 7th deleted: Next = %s, want 2026-12-14", o.Date)
	}
	moved := time.Date(2026, 12, 16, 10, 0, 0, 0, Shanghai)
	r.Exceptions["2026-12-14"] = Exception{At: moved}
	if o, _ = r.Next(now); !o.At.Equal(moved) {
		t.Errorf("with the 14th moved: Next at %v, want %v", o.At, moved)
	}
	// Past the end: none.
	once := &Reminder{Rule: Rule{Freq: Once, Start: start}}
	if _, ok := once.Next(start.Add(time.Minute)); ok {
		t.Error("a one-off reminder past its time has a next occurrence")
	}
}

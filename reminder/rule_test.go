package reminder

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	_ "time/tzdata"
)

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, Shanghai)
	if err != nil {
		panic(err)
	}
	return t
}

func dates(os []Occurrence) string {
	var b []string
	for _, o := range os {
		b = append(b, o.At.In(Shanghai).Format("01-02 Mon 15:04"))
	}
	return strings.Join(b, ", ")
}

func TestRuleOccurrences(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rule     Rule
		from, to string
		want     string
	}{
		{"once", Rule{Freq: Once, Start: at("2026-12-01 09:30")}, "2026-11-30 00:00", "2026-12-07 00:00",
			"12-01 Tue 09:30"},
		{"once outside the window", Rule{Freq: Once, Start: at("2026-12-08 09:30")}, "2026-11-30 00:00", "2026-12-07 00:00", ""},
		{"daily", Rule{Freq: Daily, Start: at("2026-12-03 08:00")}, "2026-11-30 00:00", "2026-12-07 00:00",
			"12-03 Thu 08:00, 12-04 Fri 08:00, 12-05 Sat 08:00, 12-06 Sun 08:00"},
		{"daily count", Rule{Freq: Daily, Start: at("2026-12-03 08:00"), Count: 2}, "2026-11-30 00:00", "2026-12-07 00:00",
			"12-03 Thu 08:00, 12-04 Fri 08:00"},
		{"daily until (inclusive)", Rule{Freq: Daily, Start: at("2026-12-03 08:00"), Until: "2026-12-05"}, "2026-11-30 00:00", "2026-12-07 00:00",
			"12-03 Thu 08:00, 12-04 Fri 08:00, 12-05 Sat 08:00"},
		{"workdays", Rule{Freq: Workdays, Start: at("2026-12-02 18:00")}, "2026-11-30 00:00", "2026-12-08 00:00",
			"12-02 Wed 18:00, 12-03 Thu 18:00, 12-04 Fri 18:00, 12-07 Mon 18:00"},
		{"weekly Mon and Thu", Rule{Freq: Weekly, Start: at("2026-11-25 10:00"), Weekdays: []time.Weekday{time.Monday, time.Thursday}},
			"2026-11-30 00:00", "2026-12-14 00:00", "11-30 Mon 10:00, 12-03 Thu 10:00, 12-07 Mon 10:00, 12-10 Thu 10:00"},
		{"weekly count counts from the start", Rule{Freq: Weekly, Start: at("2026-11-25 10:00"), Weekdays: []time.Weekday{time.Monday, time.Thursday}, Count: 3},
			"2026-11-30 00:00", "2026-12-14 00:00", "11-30 Mon 10:00, 12-03 Thu 10:00"},
		{"monthly on the 31st skips short months", Rule{Freq: Monthly, Start: at("2026-01-31 09:00")}, "2026-01-01 00:00", "2026-06-01 00:00",
			"01-31 Sat 09:00, 03-31 Tue 09:00, 05-31 Sun 09:00"},
		{"monthly on the 29th: February of a common year skipped", Rule{Freq: Monthly, Start: at("2027-01-05 09:00"), MonthDay: 29}, "2027-01-01 00:00", "2027-04-01 00:00",
			"01-29 Fri 09:00, 03-29 Mon 09:00"},
		{"monthly on the 29th: leap February", Rule{Freq: Monthly, Start: at("2028-02-01 09:00"), MonthDay: 29}, "2028-02-01 00:00", "2028-03-01 00:00",
			"02-29 Tue 09:00"},
		{"over the year end", Rule{Freq: Daily, Start: at("2026-12-30 23:59")}, "2026-12-31 00:00", "2027-01-02 00:00",
			"12-31 Thu 23:59, 01-01 Fri 23:59"},
		{"window bounds on the event, not the message", Rule{Freq: Once, Start: at("2026-12-07 00:10"), Before: 30}, "2026-12-07 00:00", "2026-12-14 00:00",
			"12-07 Mon 00:10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dates(tc.rule.Between(at(tc.from), at(tc.to)))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRuleBefore(t *testing.T) {
	r := Rule{Freq: Once, Start: at("2026-12-07 00:10"), Before: 30}
	os := r.Between(at("2026-12-01 00:00"), at("2026-12-08 00:00"))
	if len(os) != 1 || !os[0].SendAt.Equal(at("2026-12-06 23:40")) || os[0].Date != "2026-12-07" || os[0].N != 1 {
		t.Fatalf("%+v", os)
	}
}

func TestRuleCheck(t *testing.T) {
	now := at("2026-12-01 12:00")
	for _, tc := range []struct {
		name string
		rule Rule
		want string // "" = accepted
	}{
		{"once ahead", Rule{Freq: Once, Start: at("2026-12-01 12:01")}, ""},
		{"once in the past", Rule{Freq: Once, Start: at("2026-12-01 11:59")}, "the reminder is in the past"},
		{"once whose message would be in the past", Rule{Freq: Once, Start: at("2026-12-01 12:10"), Before: 15}, "the reminder is in the past"},
		{"once with count", Rule{Freq: Once, Start: at("2026-12-02 08:00"), Count: 3}, "a one-off reminder has no"},
		{"no start", Rule{Freq: Daily}, "start: required"},
		{"unknown freq", Rule{Freq: "yearly", Start: at("2026-12-02 08:00")}, "freq: one of"},
		{"weekly without weekday", Rule{Freq: Weekly, Start: at("2026-12-02 08:00")}, "weekly: no weekday chosen"},
		{"weekly bad weekday", Rule{Freq: Weekly, Start: at("2026-12-02 08:00"), Weekdays: []time.Weekday{7}}, "weekday 7"},
		{"weekly whose only day is after until", Rule{Freq: Weekly, Start: at("2026-12-02 08:00"), Weekdays: []time.Weekday{time.Monday}, Until: "2026-12-06"},
			"the rule never fires: no chosen weekday between 2026-12-02 and 2026-12-06"},
		{"until before start", Rule{Freq: Daily, Start: at("2026-12-02 08:00"), Until: "2026-12-01"}, "until 2026-12-01 is before the start 2026-12-02"},
		{"until not a date", Rule{Freq: Daily, Start: at("2026-12-02 08:00"), Until: "12/31"}, "until: not a date"},
		{"monthly 31 with until before any such month", Rule{Freq: Monthly, Start: at("2027-02-01 08:00"), MonthDay: 31, Until: "2027-02-28"},
			"the rule never fires: no month with a day 31 between 2027-02-01 and 2027-02-28"},
		{"monthly 31 reaching March", Rule{Freq: Monthly, Start: at("2027-02-01 08:00"), MonthDay: 31, Until: "2027-03-31"}, ""},
		{"monthly day 32", Rule{Freq: Monthly, Start: at("2027-02-01 08:00"), MonthDay: 32}, "month_day 1 to 31"},
		{"workdays on a weekend only", Rule{Freq: Workdays, Start: at("2026-12-05 08:00"), Until: "2026-12-06"}, "no working day"},
		{"daily entirely past", Rule{Freq: Daily, Start: at("2026-11-01 08:00"), Until: "2026-11-30"}, "every occurrence of the rule is in the past"},
		{"daily started in the past, still running", Rule{Freq: Daily, Start: at("2026-11-01 08:00")}, ""},
		{"count spent in the past", Rule{Freq: Daily, Start: at("2026-11-01 08:00"), Count: 5}, "every occurrence of the rule is in the past"},
		{"before too large", Rule{Freq: Daily, Start: at("2026-12-02 08:00"), Before: MaxBefore + 1}, "before: 0 to"},
		{"negative count", Rule{Freq: Daily, Start: at("2026-12-02 08:00"), Count: -1}, "count: not negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Check(now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestWeeks(t *testing.T) {
	for _, tc := range []struct {
		week       string
		monday     string // Start, Asia/Shanghai
		prev, next string
	}{
		{"2026-W49", "2026-11-30", "2026-W48", "2026-W50"},
		{"2026-W01", "2025-12-29", "2025-W52", "2026-W02"},
		{"2026-W53", "2026-12-28", "2026-W52", "2027-W01"}, // 2026 has 53 weeks (it starts on a Thursday)
		{"2027-W01", "2027-01-04", "2026-W53", "2027-W02"},
		{"2020-W53", "2020-12-28", "2020-W52", "2021-W01"},
		{"2024-W01", "2024-01-01", "2023-W52", "2024-W02"},
	} {
		t.Run(tc.week, func(t *testing.T) {
			w, err := ParseWeek(tc.week)
			if err != nil {
				t.Fatal(err)
			}
			if w.String() != tc.week {
				t.Errorf("String %s", w)
			}
			if got := w.Start(); got.Format(Date) != tc.monday || got.Location() != Shanghai || got.Hour() != 0 {
				t.Errorf("Start %v, want %s 00:00 Asia/Shanghai", got, tc.monday)
			}
			if w.Prev().String() != tc.prev || w.Next().String() != tc.next {
				t.Errorf("prev %s next %s", w.Prev(), w.Next())
			}
			if WeekOf(w.Start()) != w || WeekOf(w.Next().Start().Add(-time.Nanosecond)) != w {
				t.Errorf("WeekOf does not bound the week")
			}
		})
	}
	// Sunday 23:30 UTC is already Monday in Shanghai: the next week.
	if got := WeekOf(time.Date(2026, 11, 29, 16, 30, 0, 0, time.UTC)).String(); got != "2026-W49" {
		t.Errorf("WeekOf(Sun 16:30 UTC) = %s, want 2026-W49", got)
	}
	// 9999-W52 ends on 10000-01-03, a year RFC 3339 cannot write.
	for _, bad := range []string{"2027-W53", "2026-W00", "2026-W5", "2026W49", "2026-W49x", "", "abcd-W01", "9999-W52"} {
		if _, err := ParseWeek(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseWeek(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestOccurrencesOfAWeekAcrossTheYearEnd(t *testing.T) {
	r := Rule{Freq: Weekly, Start: at("2026-12-01 07:00"), Weekdays: []time.Weekday{time.Thursday, time.Friday}}
	w, _ := ParseWeek("2026-W53")
	got := dates(r.Between(w.Start(), w.Next().Start()))
	if got != "12-31 Thu 07:00, 01-01 Fri 07:00" {
		t.Errorf("2026-W53: %s", got)
	}
}

// TestRuleEndsIn9999: a stored rule (an older release's, or one written
// into the store by hand) that starts in 9999 has no occurrence after
// 9999-12-31: a day of 10000 is no Date, no week key and no RFC 3339
// time (JSON). The HTTP API refuses such a start, so the rules are built
// here directly.
func TestRuleEndsIn9999(t *testing.T) {
	end := time.Date(10000, 1, 1, 0, 0, 0, 0, Shanghai)
	for _, tc := range []struct {
		name string
		rule Rule
		last string // the last occurrence's Date; "" none
	}{
		{"daily", Rule{Freq: Daily, Start: at("9999-12-30 08:00")}, "9999-12-31"},
		{"daily at the last nanosecond", Rule{Freq: Daily, Start: time.Date(9999, 12, 31, 23, 59, 59, 999999999, Shanghai), Before: MaxBefore}, "9999-12-31"},
		{"workdays", Rule{Freq: Workdays, Start: at("9999-12-01 08:00"), Count: 1000}, "9999-12-31"}, // a Friday
		{"weekly", Rule{Freq: Weekly, Start: at("9999-12-01 08:00"), Weekdays: []time.Weekday{time.Sunday}}, "9999-12-26"},
		{"monthly", Rule{Freq: Monthly, Start: at("9999-11-30 08:00"), Until: "9999-12-31"}, "9999-12-30"},
		// 9999-12-31 20:00 at -08:00 is 10000-01-01 12:00 in Asia/Shanghai.
		{"once, already 10000 in Shanghai", Rule{Freq: Once, Start: time.Date(9999, 12, 31, 20, 0, 0, 0, time.FixedZone("", -8*3600))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last Occurrence
			tc.rule.walk(func(o Occurrence) bool {
				last = o
				if !o.At.Before(end) {
					t.Fatalf("occurrence %s at %v: after 9999-12-31", o.Date, o.At)
				}
				if _, err := json.Marshal(o); err != nil {
					t.Fatalf("occurrence %s: %v", o.Date, err)
				}
				if w := WeekOf(o.At).String(); len(w) != len("9999-W52") {
					t.Fatalf("occurrence %s in week %q", o.Date, w)
				}
				return true
			})
			if last.Date != tc.last {
				t.Errorf("last occurrence %q, want %q", last.Date, tc.last)
			}
			if os := tc.rule.Between(at("9999-12-01 00:00"), end.AddDate(1, 0, 0)); len(os) > 0 && os[len(os)-1].Date != tc.last {
				t.Errorf("Between: last %s, want %q", os[len(os)-1].Date, tc.last)
			}
			re := &Reminder{Rule: tc.rule}
			if o, ok := re.Next(at("9999-12-31 09:00")); ok {
				t.Errorf("Next after the last event of 9999: %s", o.Date)
			}
			if err := tc.rule.Check(at("9999-12-31 09:00")); !errors.Is(err, ErrInvalid) {
				t.Errorf("Check after the last event of 9999: %v, want ErrInvalid", err)
			}
		})
	}
}

// TestStoredRuleIn9999Listed: a series stored by a service whose clock is
// in 9999 lists the last week of 9999 without days of 10000, and an
// occurrence cannot be moved into 10000 (9999-12-31T20:00:00-08:00 is
// RFC 3339 the API reads, and 10000-01-01 in Asia/Shanghai).
func TestStoredRuleIn9999Listed(t *testing.T) {
	_, addr := newSim(t)
	now := at("9999-12-20 09:00")
	r := openRig(t, tempPath(t), addr, 0, Config{Tick: time.Hour, Now: func() time.Time { return now }})
	a := Viewer{Enterprise: "A", Account: "alice"}
	rem, err := r.svc.Create(r.user("alice"), Spec{Text: "每天", To: []string{numAlice}, Rule: Rule{Freq: Daily, Start: at("9999-12-27 08:00")}})
	if err != nil {
		t.Fatal(err)
	}
	// 9999-W52 is refused by ParseWeek (its end is in 10000), yet it is
	// the week of 9999-12-31: listed here as WeekOf gives it.
	w := WeekOf(at("9999-12-31 08:00"))
	got, err := r.svc.Week(a, w)
	if err != nil {
		t.Fatal(err)
	}
	var days []string
	for _, l := range got {
		days = append(days, l.Date)
	}
	if want := "9999-12-27 9999-12-28 9999-12-29 9999-12-30 9999-12-31"; strings.Join(days, " ") != want {
		t.Errorf("week %s lists %v, want %s", w, days, want)
	}
	moved := OccurrenceEdit{At: time.Date(9999, 12, 31, 20, 0, 0, 0, time.FixedZone("", -8*3600))}
	if err := r.svc.EditOccurrence(context.Background(), a, rem.ID, "9999-12-30", moved); !errors.Is(err, ErrInvalid) {
		t.Errorf("an occurrence moved into 10000: %v, want ErrInvalid", err)
	}
	now = at("9999-12-31 09:00")
	got2, err := r.svc.Get(a, rem.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := got2.Next(now); ok {
		t.Errorf("next occurrence %s after the last of 9999", o.Date)
	}
}

package reminder

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

// FuzzRule: any JSON as a stored or requested Rule, then Check at a fixed
// now. A refusal wraps ErrInvalid and says why; a rule Check accepts has
// an occurrence to come, and its occurrences over a year from now and a
// year from its start are in time order, one a day (each keyed by its own
// day in Asia/Shanghai), at the start's wall clock, on days the rule
// picks, within until and count, each message Before minutes ahead, none
// after 9999-12-31 (a stored rule may start in 9999: its days of 10000
// would have no Date, week key or JSON time). The
// walk behind them is day by day for at most maxSpan days, whatever
// count or until says: a rule costs milliseconds.
func FuzzRule(f *testing.F) {
	// The rules of rule_test.go that fire, and rules at the bounds.
	for _, r := range []Rule{
		{Freq: Once, Start: at("2026-12-01 12:01")},
		{Freq: Once, Start: at("2026-12-07 00:10"), Before: 30},
		{Freq: Daily, Start: at("2026-12-03 08:00")},
		{Freq: Daily, Start: at("2026-12-03 08:00"), Count: 2},
		{Freq: Daily, Start: at("2026-12-03 08:00"), Until: "2026-12-05"},
		{Freq: Daily, Start: at("2026-12-30 23:59")},
		{Freq: Daily, Start: at("2026-11-01 08:00")},
		{Freq: Workdays, Start: at("2026-12-02 18:00")},
		{Freq: Weekly, Start: at("2026-11-25 10:00"), Weekdays: []time.Weekday{time.Monday, time.Thursday}},
		{Freq: Weekly, Start: at("2026-11-25 10:00"), Weekdays: []time.Weekday{time.Monday, time.Thursday}, Count: 3},
		{Freq: Weekly, Start: at("2026-12-01 07:00"), Weekdays: []time.Weekday{time.Thursday, time.Friday}},
		{Freq: Monthly, Start: at("2026-01-31 09:00")},
		{Freq: Monthly, Start: at("2027-01-05 09:00"), MonthDay: 29},
		{Freq: Monthly, Start: at("2028-02-01 09:00"), MonthDay: 29},
		{Freq: Monthly, Start: at("2027-02-01 08:00"), MonthDay: 31, Until: "2027-03-31"},
		{Freq: Monthly, Start: at("2026-12-02 08:00"), MonthDay: 31, Until: "9999-12-31"},
		{Freq: Monthly, Start: at("2026-12-02 08:00"), MonthDay: 31, Count: 1<<63 - 1, Before: MaxBefore},
		{Freq: Daily, Start: at("2007-01-01 08:00")}, // reaches now near the end of maxSpan
		{Freq: Weekly, Start: at("2007-01-01 08:00"), Weekdays: []time.Weekday{time.Sunday, time.Saturday, time.Monday}},
		{Freq: Daily, Start: time.Date(9999, 12, 31, 23, 59, 59, 999999999, Shanghai)},
		{Freq: Weekly, Start: at("9999-12-01 08:00"), Weekdays: []time.Weekday{time.Friday, time.Saturday}, Before: 1},
		{Freq: Once, Start: time.Date(9999, 12, 31, 20, 0, 0, 0, time.FixedZone("", -8*3600))}, // 10000-01-01 in Shanghai
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"freq":"once"}`,
		`{"freq":"daily","start":"0000-01-01T00:00:00Z"}`,
		`{"freq":"daily","start":"2026-12-02T08:00:00-23:59"}`,
		`{"freq":"weekly","start":"2026-12-02T08:00:00+08:00","weekdays":[7]}`,
		`{"freq":"weekly","start":"2026-12-02T08:00:00+08:00","weekdays":[-1,1]}`,
		`{"freq":"weekly","start":"2026-12-02T08:00:00+08:00","weekdays":[1,1]}`,
		`{"freq":"monthly","start":"2026-12-02T08:00:00+08:00","month_day":-9223372036854775808}`,
		`{"freq":"monthly","start":"2027-02-01T08:00:00+08:00","month_day":31,"until":"2027-02-28"}`,
		`{"freq":"daily","start":"2026-12-02T08:00:00+08:00","until":"2026-02-30"}`,
		`{"freq":"daily","start":"2026-12-02T08:00:00+08:00","count":-1}`,
		`{"freq":"daily","start":"2026-12-02T08:00:00+08:00","before":10081}`,
		`{"freq":"once","start":"2026-12-01T12:10:00+08:00","before":15}`,
		`{"freq":"workdays","start":"2026-12-05T08:00:00+08:00","until":"2026-12-06"}`,
	} {
		f.Add([]byte(s))
	}
	now := at("2026-12-01 12:00")
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Rule
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		err := r.Check(now)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || err.Error() == ErrInvalid.Error()+": " {
				t.Fatalf("refusal %q: not ErrInvalid with a reason", err)
			}
			return
		}
		next, ok := r.first(now)
		if !ok {
			t.Fatal("accepted, yet no occurrence after now")
		}
		start := r.Start.In(Shanghai)
		for _, from := range []time.Time{now, day(start)} {
			to := from.AddDate(1, 0, 0)
			os := r.Between(from, to)
			checkOccurrences(t, &r, os, from, to)
			if from == now && next.At.Before(to) && (len(os) == 0 || os[0].At.After(next.At)) {
				t.Fatalf("the first occurrence to come, %s, is not listed from now: %+v", next.Date, os)
			}
		}
	})
}

// checkOccurrences holds os, r's occurrences whose event is in [from, to),
// to what r says of them.
func checkOccurrences(t *testing.T, r *Rule, os []Occurrence, from, to time.Time) {
	t.Helper()
	start := r.Start.In(Shanghai)
	h, m, s := start.Clock()
	var until time.Time
	if r.Until != "" {
		until, _ = time.ParseInLocation(Date, r.Until, Shanghai)
	}
	for i, o := range os {
		at := o.At.In(Shanghai)
		oh, om, osec := at.Clock()
		switch {
		case o.At.Before(from) || !o.At.Before(to):
			t.Fatalf("occurrence %s at %v: outside [%v, %v)", o.Date, o.At, from, to)
		case o.Date != at.Format(Date):
			t.Fatalf("occurrence keyed %s happens on %s in Asia/Shanghai", o.Date, at.Format(Date))
		case oh != h || om != m || osec != s || at.Nanosecond() != start.Nanosecond():
			t.Fatalf("occurrence %s at %s; the start's wall clock is %s", o.Date, at.Format(time.TimeOnly), start.Format(time.TimeOnly))
		case !o.SendAt.Equal(o.At.Add(-time.Duration(r.Before) * time.Minute)):
			t.Fatalf("occurrence %s: message at %v for an event at %v, %d minutes before", o.Date, o.SendAt, o.At, r.Before)
		case at.Year() > 9999:
			t.Fatalf("occurrence %s at %v: after 9999-12-31", o.Date, o.At)
		case len(o.Date) != len(Date) || len(WeekOf(o.At).String()) != len("2006-W01"):
			t.Fatalf("occurrence %s in week %s: not a four-digit year", o.Date, WeekOf(o.At))
		case day(o.At).Before(day(start)):
			t.Fatalf("occurrence %s before the start %s", o.Date, start.Format(Date))
		case !until.IsZero() && day(o.At).After(until):
			t.Fatalf("occurrence %s after until %s", o.Date, r.Until)
		case o.N < 1 || r.Count > 0 && o.N > r.Count:
			t.Fatalf("occurrence %s is number %d; count %d", o.Date, o.N, r.Count)
		case i > 0 && (!o.At.After(os[i-1].At) || o.N <= os[i-1].N || day(o.At).Equal(day(os[i-1].At))):
			t.Fatalf("occurrence %s (number %d) after %s (number %d): not later, or the same day", o.Date, o.N, os[i-1].Date, os[i-1].N)
		}
		wd := at.Weekday()
		switch r.Freq {
		case Once:
			if o.N != 1 || o.Date != start.Format(Date) {
				t.Fatalf("a one-off reminder's occurrence %s, number %d", o.Date, o.N)
			}
		case Workdays:
			if wd == time.Saturday || wd == time.Sunday {
				t.Fatalf("a working days' occurrence on %s, a %s", o.Date, wd)
			}
		case Weekly:
			if !slices.Contains(r.Weekdays, wd) {
				t.Fatalf("a weekly occurrence on %s, a %s, not among %v", o.Date, wd, r.Weekdays)
			}
		case Monthly:
			if at.Day() != r.monthDay() {
				t.Fatalf("a monthly occurrence on %s, not day %d", o.Date, r.monthDay())
			}
		}
	}
}

// TestRuleWalkBounded: however far until or count reaches, a series is
// walked at most maxSpan days from its start's day, so that Check, a
// week's listing and a scheduler's pass cost at most that many days a
// rule (a few milliseconds), and a series older than that fires no more.
func TestRuleWalkBounded(t *testing.T) {
	start := at("2026-12-02 08:00")
	last := day(start).AddDate(0, 0, maxSpan-1)
	for _, r := range []Rule{
		{Freq: Daily, Start: start, Until: "9999-12-31"},
		{Freq: Daily, Start: start, Count: 1<<63 - 1},
		{Freq: Monthly, Start: start, MonthDay: 31, Until: "9999-12-31"},
		{Freq: Weekly, Start: start, Weekdays: []time.Weekday{time.Sunday}, Count: 1 << 40},
	} {
		var n int
		var end time.Time
		r.walk(func(o Occurrence) bool {
			n++
			end = o.At
			return true
		})
		if day(end).After(last) || r.Freq == Daily && n != maxSpan {
			t.Errorf("%s until %q count %d: %d occurrences, the last on %s; want none after %s (%d days)",
				r.Freq, r.Until, r.Count, n, end.Format(Date), last.Format(Date), maxSpan)
		}
	}
}

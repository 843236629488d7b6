package reminder

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzStoredReminder: any bytes as a stored series (a damaged file, or one
// written by another release). The scheduler decodes each series and asks
// it what is due, when it next wakes and its next occurrence; FuzzRule
// holds the rule alone, this the rest of the record with it: exceptions
// and occurrence records under any dates, times at the ends of what
// time.Time holds. A record that does not decode is an error; one that
// does is answered, within what was asked, without a panic and within the walk's
// bound (maxSpan days).
func FuzzStoredReminder(f *testing.F) {
	now := at("2026-12-02 09:00")
	for _, r := range []Reminder{
		{ID: 1, Enterprise: "GD0755001", Account: "a_user", Text: "开会", To: []string{"13712345678"},
			Rule: Rule{Freq: Daily, Start: at("2026-12-01 08:00"), Before: 30}, From: at("2026-12-01 07:00"),
			Exceptions: map[string]Exception{"2026-12-03": {Deleted: true}, "2026-12-04": {At: at("2026-12-04 10:00"), Text: "改期"}},
			Occ:        map[string]OccState{"2026-12-01": {State: StateScheduled, SendAt: at("2026-12-01 07:30"), IDs: []uint64{7}}}},
		{ID: 2, Rule: Rule{Freq: Weekly, Start: at("2026-11-25 10:00"), Weekdays: []time.Weekday{time.Monday}, Count: 3}},
		{ID: 3, Rule: Rule{Freq: Monthly, Start: at("2026-12-02 08:00"), MonthDay: 31, Until: "9999-12-31"},
			Exceptions: map[string]Exception{"": {}, "9999-12-31": {At: time.Date(9999, 12, 31, 23, 0, 0, 0, Shanghai)}}},
		{ID: 4, Rule: Rule{Freq: Once, Start: time.Time{}}, From: time.Date(9999, 12, 1, 0, 0, 0, 0, time.UTC)},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := &Service{cfg: Config{Ahead: DefaultAhead, Grace: DefaultGrace}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reminder
		if json.Unmarshal(b, &r) != nil {
			return
		}
		for _, o := range s.due(&r, now) {
			if o.SendAt.After(now.Add(DefaultAhead)) {
				t.Fatalf("due at %s: %+v is after the horizon", now, o)
			}
		}
		if o, ok := r.Next(now); ok && !o.SendAt.After(now) {
			t.Fatalf("next after %s: %+v", now, o)
		}
		_ = s.wakeAt(&r, now, false)
		from, to := now.AddDate(0, -1, 0), now.AddDate(1, 0, 0)
		for _, o := range r.occurrences(from, to) {
			if o.At.Before(from) || !o.At.Before(to) || o.SendAt.Before(r.From) {
				t.Fatalf("occurrences in [%s, %s) from %s: %+v", from, to, r.From, o)
			}
		}
	})
}

package reminder

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Shanghai is the zone of every reminder's wall clock, its days and its
// ISO weeks (time/tzdata is embedded by the daemon; tests import it too).
var Shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// ErrInvalid is wrapped by every refusal of a rule or a request: a rule
// that never fires, a reminder in the past, a bad week. Its message is the
// reason, fit to show.
var ErrInvalid = errors.New("reminder: invalid")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}

// invalidField is ErrInvalid about one field of the request, with its
// rule in Chinese (policy.FieldError: the API answers field and
// detail_zh, the consoles show the Chinese beside the field).
func invalidField(field, zh, format string, a ...any) error {
	return policy.NewFieldError(ErrInvalid, field, zh, fmt.Sprintf(format, a...))
}

// Freq is how often a reminder repeats.
type Freq string

// The frequencies.
const (
	Once     Freq = "once"     // one event, at Start
	Daily    Freq = "daily"    // every day
	Workdays Freq = "workdays" // Monday to Friday (public holidays are not known)
	Weekly   Freq = "weekly"   // on the chosen weekdays of every week
	Monthly  Freq = "monthly"  // on one day of every month; months without that day are skipped
)

// Date is a calendar day, "2006-01-02", in Asia/Shanghai.
const Date = "2006-01-02"

// MaxBefore bounds Rule.Before: a reminder goes out at most a week before
// its event.
const MaxBefore = 7 * 24 * 60

// maxSpan bounds how far a series is walked from its start (every walk is
// day by day): a series older than this fires no more.
const maxSpan = 20 * 366

// lastDay is the last day a series can have an event on. A day is
// written "2006-01-02" (an occurrence's key), its week "2006-W01" and its
// time in RFC 3339 (JSON), all with four-digit years: an event after
// 9999-12-31 does not exist. The API refuses a start more than a year
// ahead, but a stored rule (an older release's, or one written into the
// store by hand) may start in 9999, or on 9999-12-31 at a zone whose day
// is already 10000-01-01 in Asia/Shanghai.
var lastDay = time.Date(9999, time.December, 31, 0, 0, 0, 0, Shanghai)

// Rule is when a reminder's events happen. Every event is at the wall
// clock time of Start in Asia/Shanghai, on the days Freq picks from
// Start's day on, until Until (a Date, inclusive) or Count events; the
// message goes out Before minutes ahead of each event.
type Rule struct {
	Freq     Freq           `json:"freq"`
	Start    time.Time      `json:"start"`
	Weekdays []time.Weekday `json:"weekdays,omitempty"`  // Weekly: 0 = Sunday … 6 = Saturday
	MonthDay int            `json:"month_day,omitempty"` // Monthly: 1–31; 0 = Start's day
	Until    string         `json:"until,omitempty"`     // last day (Date), inclusive; "" = none
	Count    int            `json:"count,omitempty"`     // at most this many events; 0 = no limit
	Before   int            `json:"before,omitempty"`    // minutes between the message and the event
}

// Occurrence is one event of a series.
type Occurrence struct {
	Date   string    // its day (Date): the occurrence's key in its series
	At     time.Time // the event
	SendAt time.Time // the message: At less Rule.Before
	N      int       // 1 for the series' first event
}

// Check refuses a rule that is malformed or never fires after now, with
// the reason (wrapping ErrInvalid).
func (r *Rule) Check(now time.Time) error {
	if r.Start.IsZero() {
		return invalidField("start", "请选择开始时间", "start: required")
	}
	if r.Before < 0 || r.Before > MaxBefore {
		return invalidField("before", fmt.Sprintf("提前时间须为 0–%d 分钟", MaxBefore), "before: 0 to %d minutes", MaxBefore)
	}
	if r.Count < 0 {
		return invalidField("count", "次数不能为负", "count: not negative")
	}
	switch r.Freq {
	case Once:
		if len(r.Weekdays) > 0 || r.MonthDay != 0 || r.Until != "" || r.Count > 1 {
			return invalidField("freq", "一次性提醒不能设星期、每月日期、截止日期或次数", "a one-off reminder has no weekdays, month_day, until or count")
		}
	case Daily, Workdays:
		if len(r.Weekdays) > 0 || r.MonthDay != 0 {
			return invalidField("freq", "每天或工作日提醒不能设星期或每月日期", "%s: no weekdays or month_day", r.Freq)
		}
	case Weekly:
		if len(r.Weekdays) == 0 {
			return invalidField("weekdays", "每周提醒请至少选一天", "weekly: no weekday chosen")
		}
		for i, d := range r.Weekdays {
			if d < time.Sunday || d > time.Saturday {
				return invalidField("weekdays", "星期须为 0（周日）–6（周六）", "weekly: weekday %d: 0 (Sunday) to 6 (Saturday)", d)
			}
			if slices.Contains(r.Weekdays[:i], d) { // so a series keeps 7 at most
				return invalidField("weekdays", "同一天选了两次", "weekly: weekday %s twice", d)
			}
		}
		if r.MonthDay != 0 {
			return invalidField("month_day", "每周提醒不能设每月日期", "weekly: no month_day")
		}
	case Monthly:
		if r.MonthDay < 0 || r.MonthDay > 31 {
			return invalidField("month_day", "每月日期须为 1–31", "monthly: month_day 1 to 31")
		}
		if len(r.Weekdays) > 0 {
			return invalidField("weekdays", "每月提醒不能设星期", "monthly: no weekdays")
		}
	default:
		return invalidField("freq", "重复方式须为一次、每天、工作日、每周或每月", "freq: one of once, daily, workdays, weekly, monthly")
	}
	start := r.Start.In(Shanghai)
	if r.Until != "" {
		u, err := time.ParseInLocation(Date, r.Until, Shanghai)
		if err != nil {
			return invalidField("until", "截止日期须为日期，如 2026-12-31", "until: not a date (2006-01-02)")
		}
		if u.Before(day(start)) {
			return invalidField("until", "截止日期 "+r.Until+" 早于开始日期 "+start.Format(Date), "until %s is before the start %s", r.Until, start.Format(Date))
		}
	}
	first, ok := r.first(time.Time{})
	if !ok {
		return invalidField("freq", fmt.Sprintf("从 %s 到 %s 之间一次提醒也没有", start.Format(Date), r.Until), "the rule never fires: no %s between %s and %s", r.what(), start.Format(Date), r.Until)
	}
	if _, ok := r.first(now); !ok {
		if r.Freq == Once {
			return invalidField("start", "提醒时间已过（"+first.SendAt.In(Shanghai).Format("2006-01-02 15:04")+"）", "the reminder is in the past (%s)", first.SendAt.In(Shanghai).Format(time.RFC3339))
		}
		return invalidField("start", "每一次提醒的时间都已过", "every occurrence of the rule is in the past")
	}
	return nil
}

func (r *Rule) what() string {
	switch r.Freq {
	case Monthly:
		return fmt.Sprintf("month with a day %d", r.monthDay())
	case Weekly:
		return "chosen weekday"
	case Workdays:
		return "working day"
	}
	return "day"
}

// first is the first occurrence whose message goes out after now.
func (r *Rule) first(now time.Time) (Occurrence, bool) {
	var out Occurrence
	found := false
	r.walk(func(o Occurrence) bool {
		if o.SendAt.After(now) {
			out, found = o, true
			return false
		}
		return true
	})
	return out, found
}

// Between returns the occurrences whose event is in [from, to), in order.
func (r *Rule) Between(from, to time.Time) []Occurrence {
	var out []Occurrence
	r.walk(func(o Occurrence) bool {
		if !o.At.Before(to) {
			return false
		}
		if !o.At.Before(from) {
			out = append(out, o)
		}
		return true
	})
	return out
}

// walk calls fn with each occurrence in order until fn returns false or
// the series ends: at until, count, maxSpan days from its start, or
// lastDay, whichever comes first.
func (r *Rule) walk(fn func(Occurrence) bool) {
	start := r.Start.In(Shanghai)
	h, m, s := start.Clock()
	var until time.Time
	if r.Until != "" {
		until, _ = time.ParseInLocation(Date, r.Until, Shanghai)
	}
	n := 0
	d := day(start)
	for i := 0; i < maxSpan; i, d = i+1, d.AddDate(0, 0, 1) {
		if !until.IsZero() && d.After(until) || d.After(lastDay) {
			return
		}
		if r.Count > 0 && n >= r.Count {
			return
		}
		if !r.fires(d, start) {
			continue
		}
		n++
		at := time.Date(d.Year(), d.Month(), d.Day(), h, m, s, start.Nanosecond(), Shanghai)
		o := Occurrence{Date: d.Format(Date), At: at, SendAt: at.Add(-time.Duration(r.Before) * time.Minute), N: n}
		if !fn(o) || r.Freq == Once {
			return
		}
	}
}

// fires reports whether the rule has an event on day d (d not before
// start's day).
func (r *Rule) fires(d, start time.Time) bool {
	switch r.Freq {
	case Once:
		return true
	case Daily:
		return true
	case Workdays:
		return d.Weekday() != time.Saturday && d.Weekday() != time.Sunday
	case Weekly:
		return slices.Contains(r.Weekdays, d.Weekday())
	case Monthly:
		return d.Day() == r.monthDay()
	}
	return false
}

func (r *Rule) monthDay() int {
	if r.MonthDay != 0 {
		return r.MonthDay
	}
	return r.Start.In(Shanghai).Day()
}

// day is midnight of t's day in Asia/Shanghai.
func day(t time.Time) time.Time {
	t = t.In(Shanghai)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, Shanghai)
}

// Week is an ISO 8601 week in Asia/Shanghai, "2026-W49".
type Week struct {
	Year, Week int
}

// WeekOf is the ISO week of t in Asia/Shanghai.
func WeekOf(t time.Time) Week {
	y, w := t.In(Shanghai).ISOWeek()
	return Week{y, w}
}

// ParseWeek parses "2026-W49" (week 1 to 52 or 53, as the year has).
func ParseWeek(s string) (Week, error) {
	var w Week
	var rest string
	n, _ := fmt.Sscanf(s, "%4d-W%2d%s", &w.Year, &w.Week, &rest)
	if n != 2 || len(s) != 8 || w.Year < 1970 || w.Year > 9999 || w.Week < 1 {
		return Week{}, invalid("week: an ISO week such as 2026-W49")
	}
	if WeekOf(w.Start()) != w {
		return Week{}, invalid("week: %d has no week %d", w.Year, w.Week)
	}
	// A week is shown with its end, the next Monday (GET /v1/reminders'
	// "to"), in RFC 3339, whose years have four digits: the last week of
	// 9999 ends in 10000, which encoding/json refuses to write (the API
	// answered that week 200 with an empty body), so it is refused as a
	// week of 10000 would be.
	if w.Next().Start().Year() > 9999 {
		return Week{}, invalid("week: %s ends after the year 9999", s)
	}
	return w, nil
}

// Start is Monday 00:00 of the week in Asia/Shanghai; the week ends at
// the next one's Start.
func (w Week) Start() time.Time {
	jan4 := time.Date(w.Year, time.January, 4, 0, 0, 0, 0, Shanghai) // always in week 1
	monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
	return monday.AddDate(0, 0, 7*(w.Week-1))
}

// Next and Prev are the neighbouring weeks.
func (w Week) Next() Week { return WeekOf(w.Start().AddDate(0, 0, 7)) }

// Prev is the week before.
func (w Week) Prev() Week { return WeekOf(w.Start().AddDate(0, 0, -7)) }

func (w Week) String() string { return fmt.Sprintf("%04d-W%02d", w.Year, w.Week) }

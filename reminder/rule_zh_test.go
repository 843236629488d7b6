package reminder

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/qxtd/qxtd/policy"
)

// TestRuleRefusalsInChinese: a rule the consoles' form gets wrong is
// refused about its field, with the rule in Chinese (policy.FieldError),
// still ErrInvalid with its English message.
func TestRuleRefusalsInChinese(t *testing.T) {
	now := at("2026-12-07 09:00")
	for _, c := range []struct {
		rule          Rule
		field, prefix string
	}{
		{Rule{Freq: Once}, "start", "start: required"},
		{Rule{Freq: Once, Start: at("2026-12-08 10:00"), Before: MaxBefore + 1}, "before", "before: 0 to"},
		{Rule{Freq: Weekly, Start: at("2026-12-08 10:00")}, "weekdays", "weekly: no weekday chosen"},
		{Rule{Freq: Monthly, Start: at("2026-12-08 10:00"), MonthDay: 32}, "month_day", "monthly: month_day 1 to 31"},
		{Rule{Freq: "hourly", Start: at("2026-12-08 10:00")}, "freq", "freq: one of"},
		{Rule{Freq: Daily, Start: at("2026-12-08 10:00"), Until: "2026-12-01"}, "until", "until 2026-12-01 is before"},
		{Rule{Freq: Once, Start: at("2026-12-01 10:00")}, "start", "the reminder is in the past"},
	} {
		err := c.rule.Check(now)
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "reminder: invalid: "+c.prefix) {
			t.Errorf("%+v: %v, want ErrInvalid %q", c.rule, err, c.prefix)
			continue
		}
		zh := policy.DetailZH(err)
		if policy.FieldOf(err) != c.field || !strings.ContainsFunc(zh, func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
			t.Errorf("%+v: field %q, detail_zh %q, want %s and Chinese", c.rule, policy.FieldOf(err), zh, c.field)
		}
	}
}

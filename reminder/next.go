package reminder

import "time"

// Next is the first live occurrence of r (exceptions applied, deleted ones
// left out) whose message goes out after now, in the rule's order; false
// when none is left. The console lands a new reminder's author on its week.
func (r *Reminder) Next(now time.Time) (Occurrence, bool) {
	var out Occurrence
	found := false
	r.Rule.walk(func(o Occurrence) bool {
		if r.Exceptions[o.Date].Deleted {
			return true
		}
		o = r.effective(o)
		if o.SendAt.After(now) && !o.SendAt.Before(r.From) {
			out, found = o, true
			return false
		}
		return true
	})
	return out, found
}

package reminder

import (
	"hash/maphash"
	"math"
	"time"
)

// memo is what the scheduler remembers of one stored series between its
// passes (Service.memo, by the series' key), so that a pass decodes only
// the series that changed or may have an occurrence due:
//
//   - sum and size are the fingerprint of the stored value: its maphash
//     under the Service's random seed, and its length. Any write changes
//     the value (putTx marshals the whole series; a cluster replica writes
//     the bytes etcd holds), so a changed series is seen whoever wrote it,
//     this Service or another node. A changed value with the same length
//     and 64-bit hash goes unseen with a chance of 2^-64 a change, and the
//     seed is secret and new at every start: a user cannot forge a value
//     that hashes as another, as CRC's linearity would let them.
//   - seen and wake are Unix nanoseconds (wall clock): the value was
//     decoded at seen, and nothing of it can be due before wake (its next
//     occurrence to do, less Ahead; math.MaxInt64 when none is left). A
//     pass at now skips the series only if seen <= now < wake: a clock
//     that went back before seen decodes it again, since occurrences
//     older than occKeep at seen may be within it again.
type memo struct {
	sum        uint64
	size       uint32
	seen, wake int64
}

// skip reports whether m, remembered of a stored value that is now v
// (sum, its fingerprint), says nothing of it can be due at now.
func (m memo) skip(sum uint64, v []byte, now int64) bool {
	return m.sum == sum && m.size == uint32(len(v)) && m.seen <= now && now < m.wake
}

// fingerprint is the hash of a stored value under seed.
func fingerprint(seed maphash.Seed, v []byte) uint64 { return maphash.Bytes(seed, v) }

// wakeAt is when r may next have something due at the earliest, as seen
// at now: a series with an occurrence due at now is due again (now), one
// with none left to do never (math.MaxInt64).
//
// For any later now' with the same stored value, due(r, now') is a subset
// of the candidates nextUndone takes at now (live, no record, not before
// r.From, sent at or after now-occKeep, hence after now'-occKeep), and it
// holds only those sent by now'+Ahead: so now' >= wake whenever due is
// not empty, whatever the exceptions moved.
func (s *Service) wakeAt(r *Reminder, now time.Time, due bool) int64 {
	if due {
		return unixNano(now)
	}
	next, ok := r.nextUndone(now.Add(-occKeep))
	if !ok {
		return math.MaxInt64
	}
	return unixNano(next.Add(-s.cfg.Ahead))
}

// nextUndone is the earliest send time of r's live occurrences
// (exceptions applied, deleted ones left out) that have no record, are
// not before r.From and not before kept; false when none is left.
//
// The rule's own occurrences come in the order of their send times; only
// an exception moves one (by up to maxMove through EditOccurrence; the
// walk does not rely on it). So the walk stops at the first occurrence,
// past every day with an exception, whose own send time is not before the
// earliest found.
func (r *Reminder) nextUndone(kept time.Time) (time.Time, bool) {
	var last string // the latest day with an exception (dates sort as strings)
	for d := range r.Exceptions {
		last = max(last, d)
	}
	var best time.Time
	found := false
	r.Rule.walk(func(o Occurrence) bool {
		if found && o.Date > last && !o.SendAt.Before(best) {
			return false
		}
		if r.Exceptions[o.Date].Deleted {
			return true
		}
		o = r.effective(o)
		if _, done := r.Occ[o.Date]; done || o.SendAt.Before(r.From) || o.SendAt.Before(kept) {
			return true
		}
		if !found || o.SendAt.Before(best) {
			best, found = o.SendAt, true
		}
		return true
	})
	return best, found
}

// The wall-clock times an int64 of Unix nanoseconds holds.
var (
	minNano = time.Unix(0, math.MinInt64)
	maxNano = time.Unix(0, math.MaxInt64)
)

// unixNano is t in Unix nanoseconds, saturated at the int64's ends (years
// 1678 and 2262): a wake after 2262 is math.MaxInt64, "not before
// then". A pass whose clock is outside that range does not use the memo
// (nanoOK).
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// nanoOK reports whether now is strictly inside unixNano's range.
func nanoOK(now time.Time) bool { return now.After(minNano) && now.Before(maxNano) }

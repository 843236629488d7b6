package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The account manager's side of the whitelist: deciding entries (one
// enterprise's, or a list across enterprises) and the queue of pending
// entries of every enterprise, oldest first, with its statistics.

// checkDecision validates a decision and its reason: a rejection needs one
// (the enterprise sees it), an approval takes none.
func checkDecision(st WhitelistState, reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case st != WhitelistApproved && st != WhitelistRejected:
		return "", invalid("decision %v: want approved or rejected", st)
	case st == WhitelistApproved && reason != "":
		return "", invalidField("reason", "通过时不填原因", "an approval takes no reason")
	case st == WhitelistRejected && reason == "":
		return "", invalidField("reason", "拒绝时须填写原因（企业可以看到）", "a rejection needs a reason: the enterprise sees it")
	case utf8.RuneCountInString(reason) > MaxDecisionReason || !utf8.ValidString(reason) ||
		strings.ContainsFunc(reason, unicode.IsControl):
		return "", invalidField("reason", fmt.Sprintf("原因最多 %d 个字，不能含控制字符", MaxDecisionReason), "reason: at most %d characters of text", MaxDecisionReason)
	}
	return reason, nil
}

// decider returns the change of one entry to st by a, at now.
func decider(a Actor, st WhitelistState, reason string, now time.Time) func(*bolt.Bucket, []byte, WhitelistEntry) (bool, error) {
	return func(b *bolt.Bucket, key []byte, e WhitelistEntry) (bool, error) {
		if e.State == st && e.Reason == reason {
			return false, nil
		}
		val, err := encodeEntry(st, &wlMeta{AddedAt: e.AddedAt, AddedBy: e.AddedBy, DecidedAt: now, DecidedBy: a.who(), Reason: reason})
		if err != nil {
			return false, err
		}
		return true, b.Put(key, val)
	}
}

// DecideWhitelist sets numbers of an enterprise's whitelist to Approved or
// Rejected (its operator only); a rejection needs a reason, which the
// enterprise sees in its list and in the refusal of a send to the number.
// numbers == nil decides every pending entry.
func (s *Store) DecideWhitelist(a Actor, code string, st WhitelistState, reason string, numbers []string) (BulkResult, error) {
	if !a.Serves(code) {
		return BulkResult{}, ErrForbidden
	}
	reason, err := checkDecision(st, reason)
	if err != nil {
		return BulkResult{}, err
	}
	decide := decider(a, st, reason, s.now())
	if numbers == nil {
		var res BulkResult
		err := s.update(func(tx *bolt.Tx, ch *change) error {
			res = BulkResult{} // fn may run again (StoreOptions.Shared)
			b, err := s.wlBucket(tx, code)
			if err != nil || b == nil {
				return err
			}
			var pending [][]byte
			var entries []WhitelistEntry
			err = b.ForEach(func(k, v []byte) error {
				if len(v) > 0 && WhitelistState(v[0]) == WhitelistPending {
					e, err := decodeEntry(k, v)
					pending = append(pending, []byte(e.Number))
					entries = append(entries, e)
					return err
				}
				return nil
			})
			if err != nil {
				return err
			}
			for i, k := range pending { // not inside ForEach: no writes while iterating
				if _, err := decide(b, k, entries[i]); err != nil {
					return err
				}
				res.Changed++
				ch.wlKey(code, entries[i].Number)
			}
			return nil
		})
		return res, err
	}
	return s.bulk(code, numbers, decide)
}

// Approve approves numbers (nil: all pending) of an enterprise's whitelist.
func (s *Store) Approve(a Actor, code string, numbers ...string) (BulkResult, error) {
	return s.DecideWhitelist(a, code, WhitelistApproved, "", numbers)
}

// Reject rejects numbers (nil: all pending) of an enterprise's whitelist,
// for the given reason.
func (s *Store) Reject(a Actor, code, reason string, numbers ...string) (BulkResult, error) {
	return s.DecideWhitelist(a, code, WhitelistRejected, reason, numbers)
}

// EntryRef names one whitelist entry among every enterprise's.
type EntryRef struct {
	Enterprise string `json:"enterprise"`
	Number     string `json:"number"`
}

// DecideResult is the outcome of DecideEntries.
type DecideResult struct {
	Changed   int        `json:"changed"`
	Unchanged int        `json:"unchanged"` // already so decided
	NotFound  []EntryRef `json:"not_found"` // no such enterprise, or the number is not on its whitelist
	Errors    []RowError `json:"errors"`    // invalid numbers; Row is the position in the list
}

// DecideEntries approves or rejects entries of any enterprises' whitelists
// in one transaction (operator only, each entry's): the account manager's queue. A
// rejection needs a reason.
func (s *Store) DecideEntries(a Actor, st WhitelistState, reason string, refs []EntryRef) (DecideResult, error) {
	if !a.Operator {
		return DecideResult{}, ErrForbidden
	}
	// A manager's request naming an enterprise not its own is refused
	// whole: deciding the rest would leave the caller to find out which.
	for _, r := range refs {
		if !a.Serves(r.Enterprise) {
			return DecideResult{}, fmt.Errorf("%w: enterprise %s", ErrForbidden, r.Enterprise)
		}
	}
	reason, err := checkDecision(st, reason)
	if err != nil {
		return DecideResult{}, err
	}
	var res DecideResult
	rows := make([]inputRow, len(refs))
	for i, r := range refs {
		rows[i] = inputRow{row: i + 1, value: r.Number}
	}
	valid, errs := s.classifyRows(rows)
	res.Errors = errs
	decide := decider(a, st, reason, s.now())
	err = s.update(func(tx *bolt.Tx, ch *change) error {
		res = DecideResult{Errors: errs} // fn may run again (StoreOptions.Shared)
		seen := map[EntryRef]bool{}
		for _, r := range valid {
			ref := EntryRef{Enterprise: refs[r.row-1].Enterprise, Number: r.e164}
			if seen[ref] {
				continue
			}
			seen[ref] = true
			b, err := s.wlBucket(tx, ref.Enterprise)
			if errors.Is(err, ErrNotFound) || err == nil && b == nil {
				res.NotFound = append(res.NotFound, ref)
				continue
			} else if err != nil {
				return err
			}
			v := b.Get([]byte(ref.Number))
			if v == nil {
				res.NotFound = append(res.NotFound, ref)
				continue
			}
			e, err := decodeEntry([]byte(ref.Number), v)
			if err != nil {
				return err
			}
			changed, err := decide(b, []byte(ref.Number), e)
			if err != nil {
				return err
			}
			if changed {
				res.Changed++
				ch.wlKey(ref.Enterprise, ref.Number)
			} else {
				res.Unchanged++
			}
		}
		return nil
	})
	if err != nil {
		return DecideResult{}, err
	}
	return res, nil
}

// PendingEntry is a pending entry in the account manager's queue.
type PendingEntry struct {
	Enterprise string `json:"enterprise"`
	WhitelistEntry
}

// pendingCursor is the position of p in the queue (oldest first, then by
// enterprise and number), as ListPending's after and next.
func pendingCursor(p PendingEntry) string {
	return fmt.Sprintf("%d.%s.%s", p.AddedAt.UnixNano(), p.Enterprise, strings.TrimPrefix(p.Number, "+"))
}

func pendingLess(a, b PendingEntry) int {
	if c := a.AddedAt.Compare(b.AddedAt); c != 0 {
		return c
	}
	if c := strings.Compare(a.Enterprise, b.Enterprise); c != 0 {
		return c
	}
	return strings.Compare(a.Number, b.Number)
}

func parsePendingCursor(c string) (PendingEntry, error) {
	i, j := strings.IndexByte(c, '.'), strings.LastIndexByte(c, '.')
	if i < 0 || j <= i {
		return PendingEntry{}, invalidField("after", "翻页参数无效：请使用上一页返回的 next", "after %q: not a cursor of this list", c)
	}
	ns, err := strconv.ParseInt(c[:i], 10, 64)
	if err != nil {
		return PendingEntry{}, invalidField("after", "翻页参数无效：请使用上一页返回的 next", "after %q: not a cursor of this list", c)
	}
	return PendingEntry{Enterprise: c[i+1 : j], WhitelistEntry: WhitelistEntry{Number: "+" + c[j+1:], AddedAt: time.Unix(0, ns).UTC()}}, nil
}

// ListPending returns up to limit pending entries of every enterprise,
// oldest first (then by enterprise and number), after the cursor `after`
// ("": from the oldest); next is the cursor of the following page, "" at
// the end. Operator only (a manager's own enterprises'); it reads the file.
func (s *Store) ListPending(a Actor, after string, limit int) (entries []PendingEntry, next string, err error) {
	if !a.Operator {
		return nil, "", ErrForbidden
	}
	limit = pageLimit(limit)
	var from *PendingEntry
	if after != "" {
		c, err := parsePendingCursor(after)
		if err != nil {
			return nil, "", err
		}
		from = &c
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketWhitelist)
		return root.ForEach(func(code, v []byte) error {
			b := root.Bucket(code)
			if v != nil || b == nil || !a.Serves(string(code)) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if len(v) == 0 || WhitelistState(v[0]) != WhitelistPending {
					return nil
				}
				e, err := decodeEntry(k, v)
				if err != nil {
					return err
				}
				p := PendingEntry{Enterprise: string(code), WhitelistEntry: e}
				if from == nil || pendingLess(*from, p) < 0 {
					entries = append(entries, p)
				}
				return nil
			})
		})
	})
	if err != nil {
		return nil, "", dbErr(err)
	}
	slices.SortFunc(entries, pendingLess)
	if len(entries) > limit {
		entries = entries[:limit]
		next = pendingCursor(entries[limit-1])
	}
	return entries, next, nil
}

// PendingStats returns how many whitelist entries of all enterprises await
// the account manager's decision, and when the oldest of them was added
// (zero when none). Memory only, O(enterprises): for metrics at scrape time.
func (s *Store) PendingStats() (n int, oldest time.Time) {
	for _, es := range s.snap.Load().ents {
		if es.pending() == 0 {
			continue
		}
		n += es.pending()
		if oldest.IsZero() || es.oldest.Before(oldest) {
			oldest = es.oldest
		}
	}
	return n, oldest
}

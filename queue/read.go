package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Due returns up to limit parts (limit <= 0: no limit) that wait for SMSC
// acceptance and are due at or before now, earliest first, skipping those
// for which skip returns true (e.g. already in flight; skip may be nil). It
// reads a snapshot in a read-only transaction and never blocks writers for
// long; the cost is the number of due keys it walks (returned + skipped).
//
// A part stays due until Submitted, Retry or Fail moves it: the caller must
// remember what it has in flight (skip) so it does not send it twice.
func (s *Store) Due(now time.Time, limit int, skip func(Key) bool) ([]Job, error) {
	until := max(timeNanos(now), 0)
	var jobs []Job
	if limit > 0 {
		jobs = make([]Job, 0, min(limit, 1024))
	}
	err := s.view(func(tx *bolt.Tx) error {
		due := s.dueReader(tx)
		c := tx.Bucket(bucketDue).Cursor()
		for kb, _ := c.First(); kb != nil; kb, _ = c.Next() {
			ts, k, ok := parseTimeKey(kb)
			if !ok {
				return fmt.Errorf("%w: due key %x", ErrCorrupt, kb)
			}
			if ts > until {
				break
			}
			if skip != nil && skip(k) {
				continue
			}
			j, ok, err := due.job(k)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			jobs = append(jobs, j)
			if limit > 0 && len(jobs) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: due: %w", err)
	}
	return jobs, nil
}

// DueShared is Due in turns per enterprise, so that one enterprise's
// backlog does not hide the others' parts behind it. It walks each
// enterprise's due parts (earliest first, enterprises in name order) and
// takes at most share(enterprise) of each (share <= 0: none); if fewer
// than limit were taken, it fills up from what is left, in the same order,
// so an enterprise alone with due parts still gets every slot. The parts
// of messages sent with priority come first, within each enterprise's
// share (DueSharedAt with share as priority). limit must be positive. The
// cost is one seek per enterprise with due parts plus the keys walked
// (returned + skipped); an enterprise whose share is used up costs one
// seek.
func (s *Store) DueShared(now time.Time, limit int, share func(enterprise string) int, skip func(Key) bool) ([]Job, error) {
	jobs, _, err := s.DueSharedAt(now, limit, share, share, skip)
	return jobs, err
}

// DueSharedAt is DueShared with its own quota of priority parts, and it
// also returns the snapshot it read: every part handed over
// (SetDueCallback) at or before it was seen, so that unless limit cut the
// walk short each was either returned or skipped.
//
// Before the turns, it takes the due parts of messages sent with priority
// (Message.Priority), each enterprise's earliest first, at most
// priority(enterprise) of each (nil or <= 0: none ahead of the others);
// they come first in the result and count toward their enterprise's share
// in the turns that follow. Such parts have a key of their own (pdue), so
// that pass costs one seek when there are none: nothing more for the
// others.
func (s *Store) DueSharedAt(now time.Time, limit int, priority, share func(enterprise string) int, skip func(Key) bool) ([]Job, Snapshot, error) {
	r, err := s.DueFor(now, DueQuery{Limit: limit, Priority: priority, Share: share, Skip: skip})
	return r.Jobs, r.At, err
}

// DueQuery says which due parts DueFor takes: DueSharedAt's arguments,
// and how many parts of each upstream may be taken.
type DueQuery struct {
	Limit           int
	Priority, Share func(enterprise string) int
	Skip            func(Key) bool
	// Room, when set, is how many parts of the upstream named may be
	// taken (<= 0: none). The parts of an upstream without room are
	// passed by (DueResult.PassedBy) with one seek, and the walk goes on
	// to the next upstream: one that cannot send (its SMSC down, its
	// windows full) must not hold up the others' parts behind its own.
	Room func(upstream string) int
	// Hold, when set, names the enterprises none of whose parts may be
	// taken now (an enterprise the operator disabled): each pass goes
	// by their parts with one seek per upstream, however many there
	// are, and they stay due.
	Hold func(enterprise string) bool
}

// DueResult is what DueFor found: the parts taken, the snapshot it read,
// and the upstreams whose parts it stopped taking for want of Room while
// it went on to take others' (nil when none; a walk that ended at Limit
// names none).
type DueResult struct {
	Jobs     []Job
	At       Snapshot
	PassedBy map[string]bool
}

// DueFor is DueSharedAt with q.Room. The due keys it walks are ordered by
// upstream, then enterprise, then due time (udue, updue): each pass takes
// the upstreams in name order, each as far as its room goes, and in each
// the enterprises' earliest parts, an enterprise's quota counted over all
// the upstreams. So an upstream's backlog costs a scan one seek, however
// long it is, once the upstream has no room.
func (s *Store) DueFor(now time.Time, q DueQuery) (DueResult, error) {
	limit, priority, share, skip, roomOf := q.Limit, q.Priority, q.Share, q.Skip, q.Room
	held := map[string]bool{} // q.Hold's answers in this walk
	hold := func(ent string) bool {
		if q.Hold == nil {
			return false
		}
		h, ok := held[ent]
		if !ok {
			h = q.Hold(ent)
			held[ent] = h
		}
		return h
	}
	var res DueResult
	if limit <= 0 {
		return res, fmt.Errorf("queue: due: %w: limit %d", ErrInvalid, limit)
	}
	until := max(timeNanos(now), 0)
	jobs := make([]Job, 0, min(limit, 1024))
	taken := make(map[Key]bool)
	var ahead map[string]int // priority parts taken per enterprise, counted in its share
	room := map[string]int{} // what is left of each upstream's room in this walk
	left := func(up string) int {
		n, ok := room[up]
		if !ok {
			n = limit
			if roomOf != nil {
				n = roomOf(up)
			}
			room[up] = n
		}
		return n
	}
	passBy := func(up string) {
		if res.PassedBy == nil {
			res.PassedBy = make(map[string]bool)
		}
		res.PassedBy[up] = true
	}
	err := s.view(func(tx *bolt.Tx) error {
		res.At = Snapshot(tx.ID())
		due := s.dueReader(tx)
		// pass takes, in c's bucket of upstream due keys, at most
		// quota(enterprise) - from(enterprise) of each enterprise's due
		// parts over all the upstreams, calling took for each.
		pass := func(c *bolt.Cursor, quota func(enterprise string) int, from map[string]int, took func(ent string)) error {
			count := maps.Clone(from)
			if count == nil {
				count = map[string]int{}
			}
			kb, _ := c.First()
			for kb != nil && len(jobs) < limit {
				i := bytes.IndexByte(kb, sep)
				if i < 0 {
					return fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
				}
				up := string(kb[:i])
				upPrefix := []byte(up + "\x00")
				for kb != nil && len(jobs) < limit && bytes.HasPrefix(kb, upPrefix) {
					if left(up) <= 0 {
						passBy(up)
						break
					}
					e := bytes.IndexByte(kb[len(upPrefix):], sep)
					if e < 0 {
						return fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
					}
					ent := string(kb[len(upPrefix) : len(upPrefix)+e])
					entPrefix := append(upPrefix[:len(upPrefix):len(upPrefix)], ent+"\x00"...)
					n := quota(ent)
					if hold(ent) {
						n = 0
					}
					for ; kb != nil && count[ent] < n && len(jobs) < limit && left(up) > 0 && bytes.HasPrefix(kb, entPrefix); kb, _ = c.Next() {
						ts, k, ok := parseTimeKey(kb[len(entPrefix):])
						if !ok {
							return fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
						}
						if ts > until {
							break
						}
						if taken[k] || skip != nil && skip(k) {
							continue
						}
						j, ok, err := due.job(k)
						if err != nil {
							return err
						}
						if !ok {
							continue
						}
						jobs = append(jobs, j)
						taken[k] = true
						count[ent]++
						room[up]--
						if took != nil {
							took(ent)
						}
					}
					if left(up) <= 0 && len(jobs) < limit && kb != nil && bytes.HasPrefix(kb, entPrefix) {
						passBy(up) // more of its parts (or later ones), and the walk goes on
					}
					// The upstream's next enterprise: the first key past
					// this one's prefix.
					entPrefix[len(entPrefix)-1] = sep + 1
					kb, _ = c.Seek(entPrefix)
				}
				// The next upstream.
				upPrefix[len(upPrefix)-1] = sep + 1
				kb, _ = c.Seek(upPrefix)
			}
			return nil
		}
		if priority != nil {
			err := pass(tx.Bucket(bucketUPDue).Cursor(), priority, nil, func(ent string) {
				if ahead == nil {
					ahead = make(map[string]int)
				}
				ahead[ent]++
			})
			if err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketUDue).Cursor()
		if err := pass(c, share, ahead, nil); err != nil {
			return err
		}
		if len(jobs) < limit {
			return pass(c, func(string) int { return limit }, nil, nil)
		}
		return nil
	})
	if err != nil {
		return DueResult{}, fmt.Errorf("queue: due: %w", err)
	}
	res.Jobs = jobs
	return res, nil
}

// dueReader turns due keys into Jobs within one read transaction,
// decoding each message once however many of its parts are due.
type dueReader struct {
	s     *Store
	msgB  *bolt.Bucket
	cache map[uint64]*Message
}

func (s *Store) dueReader(tx *bolt.Tx) *dueReader {
	return &dueReader{s: s, msgB: tx.Bucket(bucketMsg), cache: make(map[uint64]*Message)}
}

// job is k's Job; ok is false for a key whose message or part is missing
// (logged: Check reports it).
func (r *dueReader) job(k Key) (Job, bool, error) {
	m := r.cache[k.ID]
	if m == nil {
		v := r.msgB.Get(msgKey(k.ID))
		if v == nil {
			r.s.reportDamaged("due/"+k.String(), "queue: due key without message (run Check)", "key", k.String())
			return Job{}, false, nil
		}
		var err error
		if m, err = DecodeMessage(v); err != nil {
			// Skipped, not an error: one damaged record must not stop
			// every message due after it. Check reports it.
			r.s.reportDamaged("due/"+k.String(), "queue: due message does not decode (run Check)", "key", k.String(), "err", err)
			return Job{}, false, nil
		}
		r.cache[k.ID] = m
	}
	if int(k.Part) >= len(m.Parts) {
		r.s.reportDamaged("due/"+k.String(), "queue: due key without part (run Check)", "key", k.String())
		return Job{}, false, nil
	}
	if st := m.Parts[k.Part].State; st != StateAccepted {
		// Never sent: it was sent, or ended, already. (A due index left
		// behind by a release that did not keep it: see Store.load.)
		r.s.reportDamaged("due/"+k.String(), "queue: due key of a part not waiting to be sent (run Check)", "key", k.String(), "state", st.String())
		return Job{}, false, nil
	}
	return Job{Key: k, Msg: m, Part: m.Parts[k.Part]}, true, nil
}

// Get returns a copy of message id, or ErrNotFound. It does not check the
// owner: the caller compares Account / Enterprise before showing it.
func (s *Store) Get(id uint64) (*Message, error) {
	var m *Message
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMsg).Get(msgKey(id))
		if v == nil {
			return fmt.Errorf("%w: message %d", ErrNotFound, id)
		}
		var err error
		m, err = DecodeMessage(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: get: %w", err)
	}
	return m, nil
}

// PendingDLRs returns up to limit messages of account (limit <= 0: no limit),
// oldest id first, that are final and whose DLR has not been acknowledged
// with AckDLR, skipping ids for which skip returns true (skip may be nil).
// Each is a copy.
func (s *Store) PendingDLRs(account string, limit int, skip func(id uint64) bool) ([]*Message, error) {
	out, _, err := s.PendingDLRsAt(account, limit, skip)
	return out, err
}

// PendingDLRsAt is PendingDLRs that also returns the snapshot it read:
// every message handed over by OnDLRReady at or before it was seen, so
// that unless limit cut the walk short each was returned or skipped, or
// its DLR was acknowledged already.
func (s *Store) PendingDLRsAt(account string, limit int, skip func(id uint64) bool) ([]*Message, Snapshot, error) {
	var out []*Message
	var snap Snapshot
	prefix := prefixKey(account, nil)
	err := s.view(func(tx *bolt.Tx) error {
		snap = Snapshot(tx.ID())
		msgB := tx.Bucket(bucketMsg)
		c := tx.Bucket(bucketDLROut).Cursor()
		for kb, _ := c.Seek(prefix); kb != nil && bytes.HasPrefix(kb, prefix); kb, _ = c.Next() {
			rest := kb[len(prefix):]
			if len(rest) != 8 {
				continue // a longer account that shares the prefix cannot: accounts contain no NUL
			}
			id := binary.BigEndian.Uint64(rest)
			if skip != nil && skip(id) {
				continue
			}
			v := msgB.Get(rest)
			if v == nil {
				s.reportDamaged(damagedKey("dlrout", id), "queue: dlrout key without message (run Check)", "account", account, "id", id)
				continue
			}
			m, err := DecodeMessage(v)
			if err != nil {
				// One damaged record must not hold back the account's
				// other receipts: it stays pending, reported, for Check.
				s.reportDamaged(damagedKey("dlrout", id), "queue: dlrout message does not decode (run Check)", "account", account, "id", id, "err", err)
				continue
			}
			out = append(out, m)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: pending dlrs: %w", err)
	}
	return out, snap, nil
}

// Waiting counts the parts due after now: scheduled sends and retries
// waiting out their backoff. It reads the due index from now on, at most
// limit keys (the count is then a lower bound): for metrics, not the hot
// path.
func (s *Store) Waiting(now time.Time, limit int) (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.Seek(timeKey(now, Key{})); k != nil && n < limit; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// PriorityWaiting counts the parts of messages sent with priority that
// wait to be sent (their priority due keys) and the pending parts of
// client-split messages stored with priority (version 2 frag records,
// until their group is joined or rejected): while any is there, the
// store holds records a release before priority was stored does not
// read. The frag bucket is read whole (its size is bounded by
// FragmentLimits, and it is usually near empty); only each record's
// version byte is looked at.
func (s *Store) PriorityWaiting() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketUPDue); b != nil {
			n = b.Stats().KeyN
		}
		return tx.Bucket(bucketFrag).ForEach(func(_, v []byte) error {
			if len(v) > 0 && v[0] != fragVersion {
				n++
			}
			return nil
		})
	})
	return n, err
}

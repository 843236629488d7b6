package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"
)

// Check verifies the store's invariants (listed in doc.go) by reading all of
// it, and the in-memory usage and state counters against a recomputation
// from the records. It costs a full scan: for tests, and for an operator's
// offline check. It first waits for the writes already queued (an op may
// commit after its caller gave up on a cancelled context), then reads; call
// it while no new writes are issued. It returns every violation found (up
// to 50), joined, each wrapping ErrCorrupt.
func (s *Store) Check() error {
	// An empty op queued behind every pending one: when it is done, they
	// are committed and the in-memory counters updated.
	_ = s.exec(context.Background(), func(*txn) error { return nil })
	var errs violations
	bad := errs.add
	err := s.view(func(tx *bolt.Tx) error {
		counts, stored, err := checkTx(tx, bad)
		if err != nil {
			return err
		}
		if err := checkMOs(tx, bad); err != nil {
			return err
		}
		if err := checkMOParts(tx, bad); err != nil {
			return err
		}
		if err := checkReplies(tx, bad); err != nil {
			return err
		}
		s.memMu.RLock()
		defer s.memMu.RUnlock()
		if counts != s.counts {
			bad("in-memory state counts %v, records say %v", s.counts, counts)
		}
		due, err := checkStoredCounts(tx, counts, bad)
		if err != nil {
			return err
		}
		mem := maps.Clone(s.usage)
		maps.DeleteFunc(mem, func(_ string, u usage) bool { return u == (usage{}) })
		if !maps.Equal(mem, stored) {
			bad("in-memory usage %v, stored %v", mem, stored)
		}
		orphans := map[string]int{}
		err = tx.Bucket(bucketOrphan).ForEach(func(k, _ []byte) error {
			orphans[orphanUpstream(k)]++
			return nil
		})
		if err != nil {
			return err
		}
		if !maps.Equal(orphans, s.orphanN) {
			bad("in-memory orphan counts %v, stored %v", s.orphanN, orphans)
		}
		if !maps.Equal(due, s.dueN) {
			bad("in-memory due counts per upstream %v, upstream due keys say %v", s.dueN, due)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: check: %w", err)
	}
	return errors.Join(errs...)
}

// checkStoredCounts compares the counts the meta bucket keeps (Open
// trusts them rather than walk the store) with counts, the state counts
// the records say, and with the upstream due keys, which it returns
// counted. A file has them, so a backup's verification runs it too.
func checkStoredCounts(tx *bolt.Tx, counts [stateEnd]int, bad func(format string, args ...any)) (map[string]int, error) {
	if c, ok, err := storedCounts(tx); err != nil {
		bad("stored state counts: %v", err)
	} else if ok && c != counts {
		bad("stored state counts %v, records say %v", c, counts)
	}
	due, err := countUDue(tx)
	if err != nil {
		return nil, err
	}
	if v := tx.Bucket(bucketMeta).Get(keyDueCounts); v != nil {
		if c, err := decodeDueCounts(v); err != nil {
			bad("stored due counts: %v", err)
		} else if !maps.Equal(c, due) {
			bad("stored due counts per upstream %v, upstream due keys say %v", c, due)
		}
	}
	return due, nil
}

// violations collects what a consistency check finds: the first 50, each
// wrapping ErrCorrupt.
type violations []error

func (v *violations) add(format string, args ...any) {
	if len(*v) < 50 {
		*v = append(*v, fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...))
	}
}

// checkTx verifies, in tx, the invariants of doc.go that the file alone
// can show, reporting each violation to bad. It returns the state counts
// and the non-zero usage counters the records hold, for Check to compare
// with the in-memory mirrors. Every bucket of allBuckets must exist.
func checkTx(tx *bolt.Tx, bad func(format string, args ...any)) ([stateEnd]int, map[string]usage, error) {
	msgB, dueB, waitB := tx.Bucket(bucketMsg), tx.Bucket(bucketDue), tx.Bucket(bucketWait)
	// Both nil in a backup older than these indexes: Open builds them.
	udueB, updueB := tx.Bucket(bucketUDue), tx.Bucket(bucketUPDue)
	if updueB == nil {
		udueB = nil
	}
	smscB, dlroutB := tx.Bucket(bucketSMSC), tx.Bucket(bucketDLROut)

	purgedAny, _ := tx.Bucket(bucketPurged).Cursor().First()
	hooks := checkHooks(tx, bad)
	checkHookPosts(tx, bad)
	checkAnswers(tx, bad)
	checkJobs(tx, bad)
	var counts [stateEnd]int
	use := make(map[string]usage)
	var maxID uint64
	nDue, nWait, nPDue := 0, 0, 0
	aliasOf := make(map[uint64]uint64) // alias id → the message listing it
	partAt := func(k Key) *Part {
		v := msgB.Get(msgKey(k.ID))
		if v == nil {
			return nil
		}
		m, err := DecodeMessage(v)
		if err != nil || int(k.Part) >= len(m.Parts) {
			return nil
		}
		return &m.Parts[k.Part]
	}

	err := msgB.ForEach(func(kb, v []byte) error {
		m, err := DecodeMessage(v)
		if err != nil {
			bad("message %x: %v", kb, err)
			return nil
		}
		if len(kb) != 8 || binary.BigEndian.Uint64(kb) != m.ID {
			bad("message key %x holds id %d", kb, m.ID)
		}
		maxID = max(maxID, m.ID)
		for _, a := range m.Aliases {
			if prev, dup := aliasOf[a]; dup {
				bad("alias %d listed by messages %d and %d", a, prev, m.ID)
			}
			aliasOf[a] = m.ID
		}
		if len(m.Parts) > 1 && m.Ref == 0 && !neverSent(m) {
			bad("message %d: %d parts and no ref", m.ID, len(m.Parts))
		}
		uk := usageKey(m.Enterprise, BillingMonth(m.AcceptedAt))
		u := use[uk]
		for i, p := range m.Parts {
			k := Key{m.ID, uint16(i)}
			counts[p.State]++
			switch {
			case p.State == StateDelivered:
				u.Charged += m.PartWeight()
			case !p.State.Final():
				u.Reserved += m.PartWeight()
			}
			switch p.State {
			case StateAccepted:
				nDue++
				if dueB.Get(timeKey(p.DueAt, k)) == nil {
					bad("part %s: accepted without its due key", k)
				}
				uk := udueKey(m.Upstream, m.Enterprise, p.DueAt, k)
				if udueB != nil && udueB.Get(uk) == nil {
					bad("part %s: accepted without its upstream due key", k)
				}
				if m.Priority {
					nPDue++
					if udueB != nil && updueB.Get(uk) == nil {
						bad("part %s: accepted with priority without its priority due key", k)
					}
				}
			case StateSubmitted:
				nWait++
				if waitB.Get(timeKey(p.SubmittedAt, k)) == nil {
					bad("part %s: submitted without its wait key", k)
				}
			}
			if p.State != StateAccepted {
				for _, id := range append([]string{p.SMSCID}, p.DupSMSCIDs...) {
					if validSMSCID(id) != nil {
						continue // accepted without a usable id: not indexed
					}
					// Once retention has run, a final part may have lost its
					// key: the SMSC reused the id for a newer message (the
					// index moved there) that Purge then deleted.
					if smscB.Get(smscKey(m.Upstream, CanonicalSMSCID(id))) == nil && !(purgedAny != nil && p.State.Final()) {
						bad("part %s: smsc id %q not indexed", k, id)
					}
				}
			}
		}
		if m.Priority && !m.waiting() {
			bad("message %d: priority kept with no part waiting", m.ID)
		}
		use[uk] = u
		pending := dlroutB.Get(dlroutKey(m.Account, m.ID)) != nil
		switch {
		case !m.Final() && (pending || m.DLRForwarded):
			bad("message %d: not final but DLR pending=%v forwarded=%v", m.ID, pending, m.DLRForwarded)
		case m.Final() && pending == m.DLRForwarded:
			bad("message %d: final with DLR pending=%v forwarded=%v", m.ID, pending, m.DLRForwarded)
		case m.Final() && pending && !m.wantsDLR():
			bad("message %d: DLR pending but none requested", m.ID)
		}
		wantHook := m.Final() && m.ReceiptURL != "" && !m.ReceiptDone
		if n := hooks[m.ID]; (wantHook && n != 1) || (!wantHook && n != 0) {
			bad("message %d: %d receipt webhook keys (final %v, url %q, done %v)", m.ID, n, m.Final(), m.ReceiptURL, m.ReceiptDone)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	// Retention deleted messages but not their usage: the delivered
	// parts it removed still count as charged.
	err = tx.Bucket(bucketPurged).ForEach(func(kb, v []byte) error {
		p, err := decodePurged(v)
		if err != nil {
			bad("purged %q: %v", kb, err)
			return nil
		}
		u := use[string(kb)]
		u.Charged += p.Delivered
		use[string(kb)] = u
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	maxID = max(maxID, checkFragments(tx, aliasOf, bad))
	if seq := msgB.Sequence(); seq < maxID {
		bad("message sequence %d below the highest id %d", seq, maxID)
	}

	n := 0
	err = dueB.ForEach(func(kb, _ []byte) error {
		n++
		ts, k, ok := parseTimeKey(kb)
		p := partAt(k)
		switch {
		case !ok:
			bad("due key %x malformed", kb)
		case p == nil:
			bad("due key %s: no such part", k)
		case p.State != StateAccepted:
			bad("due key %s: part is %s", k, p.State)
		case !bytes.Equal(kb, timeKey(p.DueAt, k)):
			bad("due key %s at %d: part due at %v", k, ts, p.DueAt)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	if n != nDue {
		bad("%d due keys for %d accepted parts", n, nDue)
	}
	if udueB != nil {
		if ne := udueB.Stats().KeyN; ne != nDue {
			bad("%d upstream due keys for %d accepted parts", ne, nDue)
		}
		if err := checkPDue(updueB, msgB, nPDue, bad); err != nil {
			return counts, nil, err
		}
	}

	n = 0
	err = waitB.ForEach(func(kb, _ []byte) error {
		n++
		_, k, ok := parseTimeKey(kb)
		if p := partAt(k); !ok || p == nil || p.State != StateSubmitted {
			bad("wait key %x: no submitted part", kb)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	if n != nWait {
		bad("%d wait keys for %d submitted parts", n, nWait)
	}

	err = smscB.ForEach(func(kb, v []byte) error {
		k, ok := parsePartRef(v)
		if p := partAt(k); !ok || p == nil || p.State == StateAccepted {
			bad("smsc key %q: points to %x, no submitted or final part", kb, v)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}

	err = dlroutB.ForEach(func(kb, _ []byte) error {
		i := bytes.IndexByte(kb, sep)
		if i < 0 || len(kb)-i-1 != 8 {
			bad("dlrout key %q malformed", kb)
			return nil
		}
		id := binary.BigEndian.Uint64(kb[i+1:])
		v := msgB.Get(kb[i+1:])
		if v == nil {
			bad("dlrout key %q: no message %d", kb, id)
			return nil
		}
		if m, err := DecodeMessage(v); err == nil && m.Account != string(kb[:i]) {
			bad("dlrout key %q: message %d belongs to %q", kb, id, m.Account)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}

	err = tx.Bucket(bucketOrphan).ForEach(func(kb, v []byte) error {
		if _, err := decodeOrphan(v); err != nil {
			bad("orphan %q: %v", kb, err)
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	err = tx.Bucket(bucketRef).ForEach(func(kb, v []byte) error {
		if len(v) != 2 {
			bad("ref %q: %d bytes", kb, len(v))
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}

	stored := make(map[string]usage)
	err = tx.Bucket(bucketUsage).ForEach(func(kb, v []byte) error {
		u, err := decodeUsage(v)
		if err != nil {
			bad("usage %q: %v", kb, err)
		} else if u != (usage{}) {
			stored[string(kb)] = u
		}
		return nil
	})
	if err != nil {
		return counts, nil, err
	}
	maps.DeleteFunc(use, func(_ string, u usage) bool { return u == (usage{}) })
	for k, u := range use {
		if stored[k] != u {
			bad("usage %q: stored %+v, records say %+v", k, stored[k], u)
		}
	}
	for k, u := range stored {
		if _, ok := use[k]; !ok {
			bad("usage %q: stored %+v, records say none", k, u)
		}
	}
	if err := checkFinal(tx, counts, bad); err != nil {
		return counts, nil, err
	}
	return counts, stored, nil
}

// checkPDue verifies the priority due keys: each names an Accepted part
// of a message sent with priority, under its upstream and enterprise and
// at its due time, and there are as many as such parts (want).
func checkPDue(pdueB, msgB *bolt.Bucket, want int, bad func(format string, args ...any)) error {
	n := 0
	err := pdueB.ForEach(func(kb, _ []byte) error {
		n++
		_, _, _, k, ok := splitUdueKey(kb)
		if !ok {
			bad("priority due key %x malformed", kb)
			return nil
		}
		v := msgB.Get(msgKey(k.ID))
		if v == nil {
			bad("priority due key %s: no such message", k)
			return nil
		}
		m, err := DecodeMessage(v)
		switch {
		case err != nil:
			return nil // reported with the message
		case int(k.Part) >= len(m.Parts):
			bad("priority due key %s: no such part", k)
		case !m.Priority || m.Parts[k.Part].State != StateAccepted:
			bad("priority due key %s: part is %s, priority %v", k, m.Parts[k.Part].State, m.Priority)
		case !bytes.Equal(kb, udueKey(m.Upstream, m.Enterprise, m.Parts[k.Part].DueAt, k)):
			bad("priority due key %x: part %s of %q on %q due at %v", kb, k, m.Enterprise, m.Upstream, m.Parts[k.Part].DueAt)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != want {
		bad("%d priority due keys for %d accepted parts sent with priority", n, want)
	}
	return nil
}

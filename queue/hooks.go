package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Receipts pushed over HTTP (receipt webhooks). A message stored with a
// ReceiptURL gets a key in the hook bucket in the same commit that makes
// it final: enterprise 0x00 due time (Unix ns, 8 BE) | id (8 BE) → attempts
// (uvarint). The webhook sender (package webhook) reads the keys that are
// due per enterprise (DueHooks), and either acknowledges a delivery
// (AckHook: the key goes and ReceiptDone is set) or moves the key to a
// later time (RetryHook). Like dlrout, this is at-least-once: a POST whose
// AckHook did not commit (crash) is made again.

const (
	hookKeyIDOff  = 8
	maxReceiptURL = 2048
)

func hookKey(enterprise string, due time.Time, id uint64) []byte {
	rest := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(max(timeNanos(due), 0)))
	return prefixKey(enterprise, binary.BigEndian.AppendUint64(rest, id))
}

// Hook is one receipt webhook due, as DueHooks returns it.
type Hook struct {
	Enterprise string
	Due        time.Time // when it became (or becomes) due
	Attempts   int       // POSTs that failed so far
	Msg        *Message  // a copy
}

// putHook queues m's receipt webhook, due at once. m is final.
func (t *txn) putHook(m *Message, at time.Time) error {
	if m.ReceiptURL == "" || m.ReceiptDone {
		return nil
	}
	t.hookEnts = append(t.hookEnts, m.Enterprise)
	return t.hook().Put(hookKey(m.Enterprise, at, m.ID), binary.AppendUvarint(nil, 0))
}

// hookEnterprises is hookEnts, each once.
func (t *txn) hookEnterprises() []string {
	slices.Sort(t.hookEnts)
	return slices.Compact(t.hookEnts)
}

// HookEnterprises lists the enterprises with at least one receipt webhook
// pending (due now or later), in key order.
func (s *Store) HookEnterprises() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHook).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, sep)
			if i < 0 {
				k, _ = c.Next()
				continue
			}
			out = append(out, string(k[:i]))
			next := append(append([]byte(nil), k[:i]...), sep+1)
			k, _ = c.Seek(next)
		}
		return nil
	})
	return out, err
}

// HookPending is the number of receipt webhooks not yet delivered or given
// up, for metrics. It counts keys: O(pending).
func (s *Store) HookPending() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketHook).Stats().KeyN
		return nil
	})
	return n, err
}

// HookSummary is the state of an enterprise's receipt webhooks (or, from
// ReplySummary, reply webhooks) not yet delivered or given up: what its
// admins see to tell a slow or failing endpoint (GET /v1/receipt-webhook).
type HookSummary struct {
	Pending  int       // not yet delivered or given up; counted up to the limit asked for
	More     bool      // the count stopped at that limit: there are more
	Retrying int       // of those counted, the ones whose POST failed at least once
	FirstDue time.Time // the earliest due time among them (a receipt waiting since then, if past); zero if none
}

// HookSummary counts enterprise's pending receipt webhooks, reading at
// most limit keys (a dead endpoint can leave millions, and anyone of the
// enterprise may ask): More says whether it stopped there.
func (s *Store) HookSummary(enterprise string, limit int) (HookSummary, error) {
	sum, err := s.summary(bucketHook, enterprise, limit)
	if err != nil {
		return HookSummary{}, fmt.Errorf("queue: hook summary: %w", err)
	}
	return sum, nil
}

// summary counts enterprise's keys in a bucket of the hook layout
// (enterprise 0x00 due time | id → attempts: hook, mohook), reading at
// most limit of them.
func (s *Store) summary(bucket []byte, enterprise string, limit int) (HookSummary, error) {
	var sum HookSummary
	prefix := prefixKey(enterprise, nil)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rest := k[len(prefix):]
			if len(rest) != 16 {
				continue
			}
			if sum.Pending >= limit {
				sum.More = true
				break
			}
			if sum.Pending == 0 {
				sum.FirstDue = nanosTime(int64(binary.BigEndian.Uint64(rest)))
			}
			sum.Pending++
			if a, _ := binary.Uvarint(v); a > 0 {
				sum.Retrying++
			}
		}
		return nil
	})
	if err != nil {
		return HookSummary{}, err
	}
	return sum, nil
}

// DueHooks returns up to limit receipt webhooks of enterprise due at or
// before now, oldest due first, skipping ids for which skip returns true.
func (s *Store) DueHooks(enterprise string, now time.Time, limit int, skip func(id uint64) bool) ([]Hook, error) {
	hs, _, err := s.DueHooksNext(enterprise, now, limit, skip)
	return hs, err
}

// DueHooksNext is DueHooks that also tells when the enterprise's next
// receipt webhook (one neither returned nor skipped) comes due: now if the
// limit ended the walk (there may be more due), that receipt's due time if
// it is later than now, and the zero time if the enterprise has no other.
// A caller can then leave the enterprise alone until then, or until the
// store's OnHookReady names it.
func (s *Store) DueHooksNext(enterprise string, now time.Time, limit int, skip func(id uint64) bool) (hs []Hook, next time.Time, err error) {
	return s.DueHooksWhile(enterprise, now, limit, skip, nil)
}

// DueHooksWhile is DueHooksNext that also ends the walk at the first
// receipt take refuses (it is not returned, and next is now): a sender
// whose POSTs carry several receipts of one URL reads only the receipts
// of the POSTs it may start. take nil takes every one.
func (s *Store) DueHooksWhile(enterprise string, now time.Time, limit int, skip func(id uint64) bool, take func(Hook) bool) (hs []Hook, next time.Time, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		msgB := tx.Bucket(bucketMsg)
		next = walkDue(tx.Bucket(bucketHook), enterprise, now, skip, func(id uint64, due time.Time, attempts int) (stop bool) {
			if limit > 0 && len(hs) >= limit {
				return true
			}
			mv := msgB.Get(msgKey(id))
			if mv == nil {
				s.reportDamaged(damagedKey("hook", id), "queue: hook key without message (run Check)", "enterprise", enterprise, "id", id)
				return false
			}
			m, err := DecodeMessage(mv)
			if err != nil {
				// One damaged record must not hold back the enterprise's
				// other receipts: it stays due, reported, for Check.
				s.reportDamaged(damagedKey("hook", id), "queue: hook of a message that does not decode (run Check)", "enterprise", enterprise, "id", id, "err", err)
				return false
			}
			h := Hook{Enterprise: enterprise, Due: due, Attempts: attempts, Msg: m}
			if take != nil && !take(h) {
				return true
			}
			hs = append(hs, h)
			return false
		})
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("queue: due hooks: %w", err)
	}
	return hs, next, nil
}

// retryDue moves webhook id of enterprise, due at due in b (the receipts'
// hook or the replies' mohook), to next with one more failed attempt. A
// key gone already (acknowledged meanwhile) is left alone.
func retryDue(b *bolt.Bucket, enterprise string, due, next time.Time, id uint64) error {
	key := hookKey(enterprise, due, id)
	v := b.Get(key)
	if v == nil {
		return nil
	}
	a, _ := binary.Uvarint(v)
	if err := b.Delete(key); err != nil {
		return err
	}
	return b.Put(hookKey(enterprise, next, id), binary.AppendUvarint(nil, a+1))
}

// walkDue walks enterprise's keys of a bucket of webhooks to POST (the
// receipts' hook, the replies' mohook: enterprise 0x00 due time (8 BE
// ns) | id (8 BE) → attempts, uvarint) in due order up to now, leaving
// out the ids skip names, and gives each to visit, which may stop the
// walk. It returns when the enterprise's next webhook
// not visited comes due: now if visit stopped the walk (there may be more
// due), its due time if later than now, the zero time if there is none.
func walkDue(b *bolt.Bucket, enterprise string, now time.Time, skip func(id uint64) bool,
	visit func(id uint64, due time.Time, attempts int) (stop bool)) (next time.Time) {
	prefix := prefixKey(enterprise, nil)
	end := timeNanos(now)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rest := k[len(prefix):]
		if len(rest) != 16 {
			continue
		}
		due := int64(binary.BigEndian.Uint64(rest))
		if due > end {
			return nanosTime(due)
		}
		id := binary.BigEndian.Uint64(rest[hookKeyIDOff:])
		if skip != nil && skip(id) {
			continue
		}
		a, _ := binary.Uvarint(v)
		if visit(id, nanosTime(due), int(a)) {
			return now
		}
	}
	return time.Time{}
}

// AckHook ends receipt webhook h: delivered, or given up. The message's
// ReceiptDone is set. Idempotent: a key already gone is not an error.
func (s *Store) AckHook(ctx context.Context, h Hook) error {
	return s.AckHooks(ctx, []Hook{h})
}

// AckHooks is AckHook for many receipts in one store operation: a sender
// acknowledging what its POSTs delivered in batches does not pass the
// commit loop once per receipt.
func (s *Store) AckHooks(ctx context.Context, hs []Hook) error {
	if len(hs) == 0 {
		return nil
	}
	keys := make([][]byte, len(hs)) // worked out outside the commit loop
	for i, h := range hs {
		keys[i] = hookKey(h.Enterprise, h.Due, h.Msg.ID)
	}
	err := s.exec(ctx, func(t *txn) error {
		for i, h := range hs {
			if t.hook().Get(keys[i]) == nil {
				continue
			}
			m, err := t.getMsg(h.Msg.ID)
			if err != nil {
				return fmt.Errorf("%d: %w", h.Msg.ID, err)
			}
			if err := t.hook().Delete(keys[i]); err != nil {
				return err
			}
			m.ReceiptDone = true
			if err := t.putMsg(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: ack hooks: %w", err)
	}
	return nil
}

// RetryHook moves receipt webhook h to next, one more failed attempt
// counted. A key already gone (acknowledged meanwhile) is left alone.
func (s *Store) RetryHook(ctx context.Context, h Hook, next time.Time) error {
	if err := s.RetryHooks(ctx, []Hook{h}, []time.Time{next}); err != nil {
		return fmt.Errorf("%w (message %d)", err, h.Msg.ID)
	}
	return nil
}

// RetryHooks is RetryHook for many receipts in one store operation,
// hs[i] to next[i]: a batch whose POST failed is not a commit a receipt.
func (s *Store) RetryHooks(ctx context.Context, hs []Hook, next []time.Time) error {
	if len(hs) != len(next) {
		return fmt.Errorf("queue: retry hooks: %d hooks, %d times", len(hs), len(next))
	}
	if len(hs) == 0 {
		return nil
	}
	err := s.exec(ctx, func(t *txn) error {
		for i, h := range hs {
			if err := retryDue(t.hook(), h.Enterprise, h.Due, next[i], h.Msg.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: retry hooks: %w", err)
	}
	return nil
}

// checkHooks verifies the hook bucket against the messages: every key names
// a final message with a ReceiptURL, not ReceiptDone, of that enterprise;
// each such message has exactly one key. It returns the ids with a key.
func checkHooks(tx *bolt.Tx, bad func(string, ...any)) map[uint64]int {
	seen := make(map[uint64]int)
	msgB, hookB := tx.Bucket(bucketMsg), tx.Bucket(bucketHook)
	if hookB == nil {
		return seen // a backup older than receipt webhooks
	}
	_ = hookB.ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, sep)
		if i < 0 || len(k)-i-1 != 16 {
			bad("hook key %q malformed", k)
			return nil
		}
		id := binary.BigEndian.Uint64(k[i+1+hookKeyIDOff:])
		seen[id]++
		v := msgB.Get(msgKey(id))
		if v == nil {
			bad("hook key %q: no message %d", k, id)
			return nil
		}
		m, err := DecodeMessage(v)
		if err != nil {
			return nil // reported by the message scan
		}
		if m.Enterprise != string(k[:i]) || !m.Final() || m.ReceiptURL == "" || m.ReceiptDone {
			bad("hook key %q: message %d (enterprise %q, final %v, url %q, done %v)", k, id, m.Enterprise, m.Final(), m.ReceiptURL, m.ReceiptDone)
		}
		return nil
	})
	return seen
}

// HooksDueNow makes up to limit of enterprise's receipt webhooks that wait
// for a later retry due at now, their attempts kept (so a POST that fails
// again backs off as far as before): an admin whose endpoint is mended
// need not wait out the backoff, up to webhooks' MaxBackoff. The receipts
// due already are left where they are. moved is how many it moved; more
// says some still wait (call again). One store operation.
func (s *Store) HooksDueNow(ctx context.Context, enterprise string, now time.Time, limit int) (moved int, more bool, err error) {
	return s.dueNow(ctx, false, enterprise, now, limit)
}

// dueNow is HooksDueNow of the receipts' hook bucket, or with reply of the
// replies' mohook (RepliesDueNow): the same key layout, the same walk.
// The enterprise is named to the store's callback of that kind
// (OnHookReady, OnReplyReady), so that the sender reads it at once.
func (s *Store) dueNow(ctx context.Context, reply bool, enterprise string, now time.Time, limit int) (moved int, more bool, err error) {
	prefix := prefixKey(enterprise, nil)
	end := timeNanos(now)
	err = s.exec(ctx, func(t *txn) error {
		moved, more = 0, false
		b, ents := t.hook(), &t.hookEnts
		if reply {
			b, ents = t.tx.Bucket(bucketMOHook), &t.replyEnts
		}
		type waiting struct {
			key []byte
			v   []byte
		}
		var ws []waiting
		// Keys sort by due time: start past the ones due already, which
		// an enterprise with a backlog can have by the million (this runs
		// in the commit loop, and RetryNow calls it once a chunk).
		c := b.Cursor()
		from := prefixKey(enterprise, binary.BigEndian.AppendUint64(nil, uint64(end)+1))
		for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k)-len(prefix) != 16 {
				continue
			}
			if len(ws) >= limit {
				more = true
				break
			}
			ws = append(ws, waiting{bytes.Clone(k), bytes.Clone(v)}) // the cursor's memory is the page's: the writes below move it
		}
		for _, w := range ws {
			id := binary.BigEndian.Uint64(w.key[len(prefix)+hookKeyIDOff:])
			if err := b.Delete(w.key); err != nil {
				return err
			}
			if err := b.Put(hookKey(enterprise, now, id), w.v); err != nil {
				return err
			}
		}
		if len(ws) > 0 {
			*ents = append(*ents, enterprise) // the sender reads it at once
		}
		moved = len(ws)
		return nil
	})
	if err != nil {
		kind := "hooks"
		if reply {
			kind = "replies"
		}
		return 0, false, fmt.Errorf("queue: %s due now: %w", kind, err)
	}
	return moved, more, nil
}

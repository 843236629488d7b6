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

// Replies pushed over HTTP (reply webhooks). An MO stored with a ReplyURL
// (its enterprise has a reply_url) gets a key in the mohook bucket in the
// commit that stores it: enterprise 0x00 due time (Unix ns, 8 BE) | MO id
// (8 BE) → attempts (uvarint), the layout of the receipt webhooks' hook
// bucket (hooks.go). The webhook sender reads the keys due per enterprise
// (DueReplies), and either ends one (AckReplies: delivered, PostedAt set;
// or given up, ReplyGaveUp set; the key goes) or moves it to a later time
// (RetryReplies). At-least-once: a POST whose AckReplies did not commit
// (a crash) is made again.

var bucketMOHook = []byte("mohook")

// Reply is one reply webhook due, as DueReplies returns it.
type Reply struct {
	Enterprise string
	Due        time.Time // when it became (or becomes) due
	Attempts   int       // POSTs that failed so far
	MO         *MO       // a copy
}

// replyKey is a mohook key: the receipts' hook key layout (hookKey).
func replyKey(enterprise string, due time.Time, id uint64) []byte {
	return hookKey(enterprise, due, id)
}

// wantsReply reports whether m is to be POSTed and is not yet done with:
// what a mohook key stands for.
func (m *MO) wantsReply() bool {
	return m.Enterprise != "" && m.ReplyURL != "" && m.PostedAt.IsZero() && !m.ReplyGaveUp
}

// putReply queues m's reply webhook, due at once, if it has one.
func (t *txn) putReply(m *MO) error {
	if !m.wantsReply() {
		return nil
	}
	t.replyEnts = append(t.replyEnts, m.Enterprise)
	return t.tx.Bucket(bucketMOHook).Put(replyKey(m.Enterprise, m.ReceivedAt, m.ID), binary.AppendUvarint(nil, 0))
}

// replyEnterprises is replyEnts, each once.
func (t *txn) replyEnterprises() []string {
	slices.Sort(t.replyEnts)
	return slices.Compact(t.replyEnts)
}

// SetReplyCallback sets Options.OnReplyReady after Open, under the rules
// of SetCallbacks: at most once, before the first write.
func (s *Store) SetReplyCallback(fn func(enterprises []string)) {
	s.opt.OnReplyReady = fn
}

// ReplyEnterprises lists the enterprises with at least one reply webhook
// pending (due now or later), in key order. It costs a seek an
// enterprise, not a read a reply.
func (s *Store) ReplyEnterprises() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMOHook).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, sep)
			if i < 0 {
				k, _ = c.Next()
				continue
			}
			out = append(out, string(k[:i]))
			k, _ = c.Seek(append(append([]byte(nil), k[:i]...), sep+1))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: reply enterprises: %w", err)
	}
	return out, nil
}

// ReplyPending is the number of reply webhooks not yet delivered or given
// up, for metrics.
func (s *Store) ReplyPending() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketMOHook).Stats().KeyN
		return nil
	})
	return n, err
}

// ReplySummary counts enterprise's pending reply webhooks as HookSummary
// counts its receipts', reading at most limit keys: More says whether it
// stopped there.
func (s *Store) ReplySummary(enterprise string, limit int) (HookSummary, error) {
	sum, err := s.summary(bucketMOHook, enterprise, limit)
	if err != nil {
		return HookSummary{}, fmt.Errorf("queue: reply summary: %w", err)
	}
	return sum, nil
}

// maxDueReplyBytes bounds the content (text, octets, UDH) one DueReplies
// returns, past its first reply: replies are short, but an SMSC may send
// a reply of a whole message_payload (64 KiB) or a long one joined from
// many, and a read of thousands of those would hold that many at once.
const maxDueReplyBytes = 8 << 20

// DueReplies returns up to limit reply webhooks of enterprise due at or
// before now, oldest due first, leaving out the ids skip names (in
// flight), and past the first at most maxDueReplyBytes of content. next
// is when the enterprise's next one (neither returned nor skipped) comes
// due: now if the limit or the bound ended the walk, its due time if
// later, the zero time if it has no other. An MO record that is missing
// or does not decode is reported (for Check) and left where it is.
func (s *Store) DueReplies(enterprise string, now time.Time, limit int, skip func(id uint64) bool) (rs []Reply, next time.Time, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		moB := tx.Bucket(bucketMO)
		size := 0
		next = walkDue(tx.Bucket(bucketMOHook), enterprise, now, skip, func(id uint64, due time.Time, attempts int) (stop bool) {
			if limit > 0 && len(rs) >= limit || size >= maxDueReplyBytes {
				return true
			}
			m, err := decodeMO(msgKey(id), moB.Get(msgKey(id)))
			if err != nil {
				s.reportDamaged(damagedKey("mohook", id), "queue: reply webhook of an MO that does not read (run Check)",
					"enterprise", enterprise, "id", id, "err", err)
				return false
			}
			rs = append(rs, Reply{Enterprise: enterprise, Due: due, Attempts: attempts, MO: m})
			size += len(m.Text) + len(m.Binary) + len(m.UDH)
			return false
		})
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("queue: due replies: %w", err)
	}
	return rs, next, nil
}

// AckReplies ends reply webhooks rs in one store operation: delivered
// (the MO's PostedAt set to at) or, with gaveUp, given up (ReplyGaveUp
// set). Idempotent: a key gone already (acknowledged meanwhile, or its MO
// purged) is left alone.
func (s *Store) AckReplies(ctx context.Context, rs []Reply, at time.Time, gaveUp bool) error {
	if len(rs) == 0 {
		return nil
	}
	keys := make([][]byte, len(rs))
	for i, r := range rs {
		keys[i] = replyKey(r.Enterprise, r.Due, r.MO.ID)
	}
	err := s.exec(ctx, func(t *txn) error {
		hookB, moB := t.tx.Bucket(bucketMOHook), t.tx.Bucket(bucketMO)
		for i, r := range rs {
			if hookB.Get(keys[i]) == nil {
				continue
			}
			m, err := decodeMO(msgKey(r.MO.ID), moB.Get(msgKey(r.MO.ID)))
			if err != nil {
				return err
			}
			if err := hookB.Delete(keys[i]); err != nil {
				return err
			}
			if gaveUp {
				m.ReplyGaveUp = true
			} else {
				m.PostedAt = at
			}
			if err := putMO(t.tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: ack replies: %w", err)
	}
	return nil
}

// RetryReplies moves reply webhooks rs to later times in one store
// operation, rs[i] to next[i], one more failed attempt counted each. A
// key gone already is left alone.
func (s *Store) RetryReplies(ctx context.Context, rs []Reply, next []time.Time) error {
	if len(rs) != len(next) {
		return fmt.Errorf("queue: retry replies: %d replies, %d times", len(rs), len(next))
	}
	if len(rs) == 0 {
		return nil
	}
	err := s.exec(ctx, func(t *txn) error {
		b := t.tx.Bucket(bucketMOHook)
		for i, r := range rs {
			if err := retryDue(b, r.Enterprise, r.Due, next[i], r.MO.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: retry replies: %w", err)
	}
	return nil
}

// RepliesDueNow makes up to limit of enterprise's reply webhooks that wait
// for a later retry due at now, their attempts kept, as HooksDueNow does
// its receipts (the same walk over the same key layout), and names the
// enterprise to OnReplyReady. moved is how many it moved; more says some
// still wait. One store operation.
func (s *Store) RepliesDueNow(ctx context.Context, enterprise string, now time.Time, limit int) (moved int, more bool, err error) {
	return s.dueNow(ctx, true, enterprise, now, limit)
}

// checkReplies verifies the mohook keys against the MOs: every key names
// an MO of its enterprise that wants its reply POSTed (wantsReply), and
// such an MO has exactly one key. nil bucket: a backup from before reply
// webhooks.
func checkReplies(tx *bolt.Tx, bad func(string, ...any)) error {
	moB, hookB := tx.Bucket(bucketMO), tx.Bucket(bucketMOHook)
	if moB == nil || hookB == nil {
		return nil
	}
	keys := make(map[uint64]int)
	err := hookB.ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, sep)
		if i < 0 || len(k)-i-1 != 16 {
			bad("mohook key %x malformed", k)
			return nil
		}
		idb := k[i+1+8:]
		id := binary.BigEndian.Uint64(idb)
		keys[id]++
		m, err := decodeMO(idb, moB.Get(idb))
		if err != nil {
			bad("mohook key %x: %v", k, err)
			return nil
		}
		if m.Enterprise != string(k[:i]) || !m.wantsReply() {
			bad("mohook key %x: mo %d (enterprise %q, reply_url %q, posted %v, gave up %v)", k, id, m.Enterprise, m.ReplyURL, m.PostedAt, m.ReplyGaveUp)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return moB.ForEach(func(k, v []byte) error {
		m, err := decodeMO(k, v)
		if err != nil {
			return nil // reported by checkMOs
		}
		want := 0
		if m.wantsReply() {
			want = 1
		}
		if n := keys[m.ID]; n != want {
			bad("mo %d: %d mohook keys, want %d", m.ID, n, want)
		}
		return nil
	})
}

// deleteReplyKeys deletes the mohook keys of MOs ms (PurgeMOs). A key's
// due time is not on its MO, so each enterprise's keys are walked once
// for all of its MOs: only MOs purged while their webhook still waits
// (older than the retention, which is longer than webhooks.max_age in any
// sensible configuration) cost that walk.
func deleteReplyKeys(b *bolt.Bucket, ms []*MO) error {
	if len(ms) == 0 {
		return nil
	}
	ids := make(map[string]map[uint64]bool)
	for _, m := range ms {
		if ids[m.Enterprise] == nil {
			ids[m.Enterprise] = make(map[uint64]bool)
		}
		ids[m.Enterprise][m.ID] = true
	}
	for ent, want := range ids {
		prefix := prefixKey(ent, nil)
		var dead [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(dead) < len(want); k, _ = c.Next() {
			if rest := k[len(prefix):]; len(rest) == 16 && want[binary.BigEndian.Uint64(rest[8:])] {
				dead = append(dead, bytes.Clone(k))
			}
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

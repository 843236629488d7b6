package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What became of an enterprise's last POSTs of receipts and of replies
// (HookPost.Reply tells them apart). Package webhook
// keeps them in memory and saves the changed ones here every few seconds
// and when it stops, so that a restart does not forget an endpoint that is
// down: the enterprise's status, the desk's list of failing enterprises
// and the metric an alert names the enterprise by carry on where they
// were, instead of waiting for the next POST (up to an hour of backoff
// away). The hookpost bucket holds one record per enterprise: enterprise
// → version, count (uvarint), then each POST oldest first.

const hookPostVersion = 1

// MaxHookPosts bounds the POSTs one record holds (package webhook keeps
// its last 10 of receipts and its last 10 of replies).
const MaxHookPosts = 32

// HookPost is one POST of an enterprise's receipts, or of one of its
// replies, as kept.
type HookPost struct {
	At        time.Time // when it started
	URL       string
	Reply     bool          // a POST of a reply (MO), not of receipts
	Receipts  int           // the receipts it carried; for a reply's POST the replies (0: one, saved before reply batches)
	Delivered bool          // a 2xx came
	Status    int           // the endpoint's HTTP status, 0 if none came
	Duration  time.Duration // from the start to the answer or the failure
	Err       string
	// FailingSince, for a failed POST: when the failures in a row that it
	// ends began (the first failed POST since the last delivered one).
	FailingSince time.Time
}

// The flags byte. A reply's POST (hookPostReply) is refused by a qxtd
// older than reply webhooks, as an unknown flag: its enterprise's record
// is left out there.
const (
	hookPostDelivered = 1 << iota
	hookPostReply
)

func encodeHookPosts(ps []HookPost) []byte {
	e := encoder{make([]byte, 0, 64*len(ps)+2)}
	e.u8(hookPostVersion)
	e.uvarint(uint64(len(ps)))
	for _, p := range ps {
		e.time(p.At)
		e.str(p.URL)
		e.uvarint(uint64(max(p.Receipts, 0)))
		var flags uint8
		if p.Delivered {
			flags |= hookPostDelivered
		}
		if p.Reply {
			flags |= hookPostReply
		}
		e.u8(flags)
		e.uvarint(uint64(max(p.Status, 0)))
		e.varint(int64(p.Duration))
		e.str(p.Err)
		e.time(p.FailingSince)
	}
	return e.b
}

// decodeHookPosts refuses with ErrCorrupt what encodeHookPosts did not
// write: more than MaxHookPosts, unknown flags, counts past an int32.
func decodeHookPosts(b []byte) ([]HookPost, error) {
	d := newDecoder(b)
	d.version(hookPostVersion, "hook posts")
	n := d.uvarint("count")
	if d.err == nil && n > MaxHookPosts {
		d.fail("hook posts: %d posts, at most %d", n, MaxHookPosts)
	}
	var ps []HookPost
	for i := uint64(0); d.err == nil && i < n; i++ {
		p := HookPost{At: d.time("at"), URL: d.str("url")}
		receipts := d.uvarint("receipts")
		flags := d.u8("flags")
		status := d.uvarint("status")
		p.Duration = time.Duration(d.varint("duration"))
		p.Err = d.str("err")
		p.FailingSince = d.time("failing_since")
		if d.err != nil {
			break
		}
		if receipts > 1<<31-1 || status > 999 || flags&^(hookPostDelivered|hookPostReply) != 0 {
			d.fail("hook post %d: receipts %d, status %d, flags %#x", i, receipts, status, flags)
			break
		}
		p.Receipts, p.Status, p.Delivered, p.Reply = int(receipts), int(status), flags&hookPostDelivered != 0, flags&hookPostReply != 0
		ps = append(ps, p)
	}
	d.end("hook posts")
	if d.err != nil {
		return nil, d.err
	}
	return ps, nil
}

// SaveHookPosts replaces the kept POSTs of each enterprise in posts, in
// one store operation. Enterprise "" (no key can be empty) and an empty
// list are left out.
func (s *Store) SaveHookPosts(ctx context.Context, posts map[string][]HookPost) error {
	if len(posts) == 0 {
		return nil
	}
	vals := make(map[string][]byte, len(posts)) // encoded outside the commit loop
	for ent, ps := range posts {
		if ent != "" && len(ps) > 0 {
			vals[ent] = encodeHookPosts(ps[max(len(ps)-MaxHookPosts, 0):])
		}
	}
	err := s.exec(ctx, func(t *txn) error {
		b, err := t.tx.CreateBucketIfNotExists(bucketHookPost) // Open made it: this is a lookup
		if err != nil {
			return err
		}
		for ent, v := range vals {
			if err := b.Put([]byte(ent), v); err != nil {
				return fmt.Errorf("%q: %w", ent, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: save hook posts: %w", err)
	}
	return nil
}

// HookPosts reads every enterprise's kept POSTs, oldest first. A record
// that does not decode is left out, and named in the error (ErrCorrupt)
// returned with the others.
func (s *Store) HookPosts() (map[string][]HookPost, error) {
	out := make(map[string][]HookPost)
	var bad []error
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHookPost)
		if b == nil {
			return nil // a store opened read-only from a file older than the records
		}
		return b.ForEach(func(k, v []byte) error {
			ps, err := decodeHookPosts(v)
			if err != nil {
				bad = append(bad, fmt.Errorf("enterprise %q: %w", k, err))
				return nil
			}
			if len(ps) > 0 {
				out[string(k)] = ps
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: hook posts: %w", err)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("queue: hook posts: %w", errors.Join(bad...))
	}
	return out, nil
}

// checkHookPosts reports the hookpost records that do not decode.
func checkHookPosts(tx *bolt.Tx, bad func(string, ...any)) {
	b := tx.Bucket(bucketHookPost)
	if b == nil {
		return // a backup older than the records
	}
	_ = b.ForEach(func(k, v []byte) error {
		if _, err := decodeHookPosts(v); err != nil {
			bad("hook posts of %q: %v", k, err)
		}
		return nil
	})
}

package queue

import (
	"bytes"
	"context"
	"fmt"
)

// Reroute moves up to limit messages waiting for upstream from to upstream
// to, and returns how many it moved. It moves only a message of from none
// of whose parts has gone to the SMSC yet (every part Accepted: a message
// partly sent stays, its SMSC ids and the rest of its parts belong with
// one SMSC) and none of whose parts skip reports (in flight: skip may be
// nil). Each part keeps its due time and attempts; its due keys move under
// to (putDue), in the transaction that rewrites the message. The caller
// sees that to can carry the parts as they were made: the same segment
// options, since the parts are not made again.
//
// Its cost is one seek in from's due keys and the messages it reads: up
// to limit that move, and the messages of from that cannot move (partly
// sent, in flight), read again at each call.
func (s *Store) Reroute(ctx context.Context, from, to string, limit int, skip func(Key) bool) (int, error) {
	if limit <= 0 || from == to {
		return 0, nil
	}
	if err := checkKeyFields(keyField{"upstream", from, false}, keyField{"upstream", to, false}); err != nil {
		return 0, fmt.Errorf("queue: reroute: %w", err)
	}
	var n int
	err := s.exec(ctx, func(t *txn) error {
		n = 0
		// The messages first: the due keys change under the cursor.
		prefix := appendPrefix(nil, from)
		var msgs []*Message
		seen := map[uint64]bool{}
		c := t.udue().Cursor()
		for kb, _ := c.Seek(prefix); kb != nil && bytes.HasPrefix(kb, prefix) && len(msgs) < limit; kb, _ = c.Next() {
			_, _, _, k, ok := splitUdueKey(kb)
			if !ok {
				return fmt.Errorf("%w: upstream due key %x", ErrCorrupt, kb)
			}
			if seen[k.ID] {
				continue
			}
			seen[k.ID] = true
			m, err := t.getMsg(k.ID)
			if err != nil {
				return fmt.Errorf("upstream due key %s: %w", k, err)
			}
			if m.Upstream == from && movable(m, skip) {
				msgs = append(msgs, m)
			}
		}
		for _, m := range msgs {
			for i := range m.Parts {
				if err := t.delDue(m, m.Parts[i].DueAt, Key{ID: m.ID, Part: uint16(i)}); err != nil {
					return err
				}
			}
			m.Upstream = to
			for i := range m.Parts {
				if err := t.putDue(m, m.Parts[i].DueAt, Key{ID: m.ID, Part: uint16(i)}); err != nil {
					return err
				}
			}
			if err := t.putMsg(m); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: reroute %s to %s: %w", from, to, err)
	}
	return n, nil
}

// movable reports whether every part of m waits for the SMSC and none is
// in flight (skip).
func movable(m *Message, skip func(Key) bool) bool {
	for i, p := range m.Parts {
		if p.State != StateAccepted || skip != nil && skip(Key{ID: m.ID, Part: uint16(i)}) {
			return false
		}
	}
	return true
}

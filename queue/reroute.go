package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// RerouteOptions bound and shape one Reroute call.
type RerouteOptions struct {
	// To is the upstream a message moves to (Reroute's to). Target, when
	// set, names it for each message instead ("" or from: it stays):
	// messages of one upstream can go to others by their carrier.
	To     string
	Target func(*Message) string
	// Limit is the most messages the call moves (at least 1).
	Limit int
	// Scan is the most messages the call reads, moved or not (0: no
	// bound). The messages that cannot move (partly sent, in flight, not
	// remade) are read again only when a walk comes round to them, not
	// at every call: the caller resumes at Next.
	Scan int
	// From is where the call starts in from's queue: a Next of an earlier
	// call, or nil for the first message.
	From []byte
	// Skip reports a part in flight (nil: none is).
	Skip func(Key) bool
	// Remake, when set, is asked for each message that can move: nil and
	// true when to makes its parts as from does (they move as they were
	// made); its parts made again from its text for to, and true, when
	// to makes them another way (other segment options); false keeps the
	// message where it is. A message moves only if its new parts count
	// as many segments on the air as its old ones (Message.Segments), so
	// that what was counted against the quota at acceptance, and told to
	// the client, is what is sent and billed; the store keeps the others
	// where they are whatever Remake says. nil: every message moves with
	// its parts as they were made.
	Remake func(m *Message, to string) (*Remade, bool)
	// AnyCount moves a remade message whatever its new parts count, the
	// enterprise's reservation for its billing month changed by the
	// difference in the same transaction (no limit checked): for the
	// messages of an upstream no longer configured, which could never be
	// sent otherwise.
	AnyCount bool
}

// Remade is a message's parts made again for another upstream: its
// segment bodies, data_coding, concatenation mode and Weight there.
type Remade struct {
	Parts      [][]byte
	DataCoding uint8
	Concat     uint8
	Weight     uint16
}

// RerouteResult is what one Reroute call did.
type RerouteResult struct {
	Moved int // messages moved (Remade ones included)
	// By counts the moved messages by the upstream they went to.
	By map[string]int
	// Remade counts the moved messages whose parts were made again.
	Remade int
	// Kept counts the messages read that stay: partly sent, in flight,
	// or not remade (Remake false, or another count of segments).
	Kept int
	// Next is where the next call resumes (RerouteOptions.From); nil
	// once the call reached the end of from's queue (Done).
	Next []byte
	Done bool
}

// Reroute moves messages waiting for upstream from to upstream opt.To
// (or each to the one opt.Target names), in the order of from's due
// keys. It moves only a message of from none of whose parts has gone to
// the SMSC yet (every part Accepted: a message partly sent stays, its
// SMSC ids and the rest of its parts belong with one SMSC) and none of
// whose parts opt.Skip reports (in flight). A moved
// message's parts keep their due times and attempts, and their due keys
// move under to (putDue) in the transaction that rewrites the message. A
// message whose parts are made again (opt.Remake) gets parts due at the
// earliest of its old ones, with the most attempts any had, and a new
// concatenation reference if it has parts where it had one.
//
// Its cost is a seek in from's due keys and the messages it reads: at
// most opt.Scan, and it stops once opt.Limit have moved.
func (s *Store) Reroute(ctx context.Context, from string, opt RerouteOptions) (RerouteResult, error) {
	if opt.Limit <= 0 || opt.Target == nil && from == opt.To {
		return RerouteResult{Done: true}, nil
	}
	target := opt.Target
	if target == nil {
		target = func(*Message) string { return opt.To }
	}
	if err := checkKeyFields(keyField{"upstream", from, false}); err != nil {
		return RerouteResult{}, fmt.Errorf("queue: reroute: %w", err)
	}
	var res RerouteResult
	err := s.exec(ctx, func(t *txn) error {
		res = RerouteResult{}
		// The messages first: the due keys change under the cursor.
		prefix := appendPrefix(nil, from)
		start := prefix
		if bytes.HasPrefix(opt.From, prefix) {
			start = opt.From
		}
		type move struct {
			m      *Message
			to     string
			remade *Remade
		}
		var moves []move
		seen := map[uint64]bool{}
		read := 0
		c := t.udue().Cursor()
		kb, _ := c.Seek(start)
		for ; kb != nil && bytes.HasPrefix(kb, prefix); kb, _ = c.Next() {
			if len(moves) >= opt.Limit || opt.Scan > 0 && read >= opt.Scan {
				res.Next = bytes.Clone(kb)
				break
			}
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
			read++
			if m.Upstream != from || !movable(m, opt.Skip) {
				res.Kept++
				continue
			}
			to := target(m)
			if to == "" || to == from || checkKeyFields(keyField{"upstream", to, false}) != nil {
				res.Kept++
				continue
			}
			if opt.Remake == nil {
				moves = append(moves, move{m: m, to: to})
				continue
			}
			r, ok := opt.Remake(m, to)
			if !ok || r != nil && !r.fits(m, opt.AnyCount) {
				res.Kept++
				continue
			}
			moves = append(moves, move{m: m, to: to, remade: r})
		}
		res.Done = res.Next == nil
		for _, mv := range moves {
			m := mv.m
			for i := range m.Parts {
				if err := t.delDue(m, m.Parts[i].DueAt, Key{ID: m.ID, Part: uint16(i)}); err != nil {
					return err
				}
			}
			m.Upstream = mv.to
			if res.By == nil {
				res.By = map[string]int{}
			}
			res.By[mv.to]++
			if mv.remade != nil {
				if err := t.remake(m, mv.remade); err != nil {
					return err
				}
				res.Remade++
			}
			for i := range m.Parts {
				if err := t.putDue(m, m.Parts[i].DueAt, Key{ID: m.ID, Part: uint16(i)}); err != nil {
					return err
				}
			}
			if err := t.putMsg(m); err != nil {
				return err
			}
			res.Moved++
		}
		return nil
	})
	if err != nil {
		return RerouteResult{}, fmt.Errorf("queue: reroute from %s: %w", from, err)
	}
	return res, nil
}

// fits reports whether r holds parts the store can take for m: 1 to 255,
// counting as many segments on the air as m's (Message.Segments) unless
// anyCount.
func (r *Remade) fits(m *Message, anyCount bool) bool {
	n := len(r.Parts)
	return n > 0 && n <= maxParts && (anyCount || r.segments() == m.Segments())
}

// segments is the segments on the air r's parts count (Message.Segments).
func (r *Remade) segments() int64 { return int64(len(r.Parts)) * max(int64(r.Weight), 1) }

// remake gives m (every part Accepted, its due keys deleted) r's parts:
// due at the earliest of the old parts' times, with the most attempts
// any had (the retry schedule goes on where it was), and a
// concatenation reference while it has more than one part.
func (t *txn) remake(m *Message, r *Remade) error {
	var due time.Time
	attempts := 0
	for i, p := range m.Parts {
		if i == 0 || p.DueAt.Before(due) {
			due = p.DueAt
		}
		attempts = max(attempts, p.Attempts)
	}
	if diff := r.segments() - m.Segments(); diff != 0 { // AnyCount
		if err := t.addUsage(m, diff, 0); err != nil {
			return err
		}
	}
	t.counts[StateAccepted] += len(r.Parts) - len(m.Parts)
	m.DataCoding, m.Concat, m.Weight = r.DataCoding, r.Concat, 0
	if r.Weight > 1 {
		m.Weight = r.Weight
	}
	m.Parts = make([]Part, len(r.Parts))
	for i, b := range r.Parts {
		m.Parts[i] = Part{Body: bytes.Clone(b), State: StateAccepted, DueAt: due, Attempts: attempts}
	}
	switch {
	case len(m.Parts) == 1:
		m.Ref = 0
	case m.Ref == 0:
		ref, err := t.nextRef(m.Dest)
		if err != nil {
			return err
		}
		m.Ref = ref
	}
	return nil
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

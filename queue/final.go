package queue

import (
	"encoding/base32"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The final index: every part that reached a final state, in the order it
// did, numbered by the final bucket's sequence (see doc.go, "Incremental
// export"). A number is taken in the transaction that makes the part final,
// so numbers are committed in order, never reused and, but for keys Purge
// deleted, without holes.
//
//	final      seq (8 BE)  → id | part              (10 bytes)
//	finalpart  id | part   → seq (8 BE)

const finalPartLen = 8

// builtAtOpen reports whether bucket name is one that Open creates (or
// builds from the messages) when a file from before it lacks it, so a
// backup without it is still a qxtd store.
func builtAtOpen(name []byte) bool {
	switch string(name) {
	case string(bucketFinal), string(bucketFinalPart), // built from the messages
		string(bucketUDue), string(bucketUPDue), // built from due
		string(bucketHook),     // empty: messages from before have no receipt_url
		string(bucketHookPost): // empty: no POST was kept before
		return true
	}
	return false
}

// Cursor is a position in the order parts became final: the parts numbered
// up to it have been exported. The zero Cursor is the start. Its text form
// (String, ParseCursor) is opaque to clients and stable across restarts.
type Cursor uint64

var cursorEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// String is the cursor's opaque text form: 13 characters of RFC 4648
// base32.
func (c Cursor) String() string {
	return cursorEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, uint64(c)))
}

// ParseCursor reads a cursor's text form; "" is the start.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return 0, nil
	}
	b, err := cursorEncoding.DecodeString(s)
	if err != nil || len(b) != 8 || cursorEncoding.EncodeToString(b) != s {
		return 0, fmt.Errorf("%w: cursor %q is not one this daemon gave", ErrInvalid, s)
	}
	return Cursor(binary.BigEndian.Uint64(b)), nil
}

// indexFinal numbers part k, which has just become final, in the final
// index (in the transaction that made it final).
func (t *txn) indexFinal(k Key) error { return putFinal(t.tx, k) }

func putFinal(tx *bolt.Tx, k Key) error {
	fb := tx.Bucket(bucketFinal)
	fb.FillPercent = appendFill // numbered in order: see txn.bind
	seq, err := fb.NextSequence()
	if err != nil {
		return err
	}
	ref := partRef(k)
	if err := fb.Put(msgKey(seq), ref); err != nil {
		return err
	}
	return tx.Bucket(bucketFinalPart).Put(ref, msgKey(seq))
}

// delFinal removes part k from the final index (Purge).
func delFinal(tx *bolt.Tx, k Key) error {
	ref := partRef(k)
	fp := tx.Bucket(bucketFinalPart)
	v := fp.Get(ref)
	if len(v) != finalPartLen {
		return nil // Check reports a final part without its key
	}
	if err := tx.Bucket(bucketFinal).Delete(v); err != nil {
		return err
	}
	return fp.Delete(ref)
}

// buildFinal fills the final index of a file written before it existed:
// the parts already final, in message id order (the order they became
// final in was not recorded).
func buildFinal(tx *bolt.Tx) error {
	return tx.Bucket(bucketMsg).ForEach(func(kb, v []byte) error {
		m, err := DecodeMessage(v)
		if err != nil {
			return fmt.Errorf("message %x: %w", kb, err)
		}
		for i, p := range m.Parts {
			if !p.State.Final() {
				continue
			}
			if err := putFinal(tx, Key{m.ID, uint16(i)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// FinalCursor returns the cursor after the last part that is final now:
// ExportFinal up to it is a complete answer, and a part that becomes final
// later comes after it.
func (s *Store) FinalCursor() (Cursor, error) {
	var c Cursor
	err := s.view(func(tx *bolt.Tx) error {
		c = Cursor(tx.Bucket(bucketFinal).Sequence())
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: final cursor: %w", err)
	}
	return c, nil
}

// ExportFinal calls fn with one Row for each part that became final after
// the cursor after and up to until (a FinalCursor), in the order the parts
// became final, of enterprise ("" for all). Every final part is numbered
// once, in the transaction that made it final, so the exports of
// consecutive ranges (after = the previous until) give each final part
// exactly once, whatever becomes final meanwhile, across restarts.
//
// Purged is how many parts of the range Purge deleted before they could
// be exported (0 unless the range reaches further back than the retention
// period; see Purge). An until beyond FinalCursor (a cursor of another
// store, or of this one before it was restored from a backup) is
// ErrInvalid, as is after > until.
//
// Memory is bounded as in ExportParts: chunks of at most 4096 parts per
// read-only transaction, fn run between them.
func (s *Store) ExportFinal(after, until Cursor, enterprise string, fn func(Row) error) (purged int64, err error) {
	if after > until {
		return 0, fmt.Errorf("queue: export final: %w: cursor %d is after %d", ErrInvalid, after, until)
	}
	next := uint64(after) + 1
	var rows []Row
	var found uint64
	for next <= uint64(until) {
		rows = rows[:0]
		err := s.view(func(tx *bolt.Tx) error {
			fb := tx.Bucket(bucketFinal)
			if seq := fb.Sequence(); uint64(until) > seq {
				return fmt.Errorf("%w: cursor %s is ahead of this store (at %s): not one of its cursors, or the store was restored from an older backup",
					ErrInvalid, until, Cursor(seq))
			}
			msgB := tx.Bucket(bucketMsg)
			c := fb.Cursor()
			n := 0
			k, v := c.Seek(msgKey(next))
			for ; k != nil && n < exportChunkRows; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("%w: final key %x", ErrCorrupt, k)
				}
				seq := binary.BigEndian.Uint64(k)
				if seq > uint64(until) {
					break
				}
				next = seq + 1
				n++
				found++
				ref, ok := parsePartRef(v)
				if !ok {
					return fmt.Errorf("%w: final key %d: bad value", ErrCorrupt, seq)
				}
				mv := msgB.Get(msgKey(ref.ID))
				if mv == nil {
					return fmt.Errorf("%w: final key %d names missing message %d", ErrCorrupt, seq, ref.ID)
				}
				m, err := DecodeMessage(mv)
				if err != nil {
					return fmt.Errorf("message %d: %w", ref.ID, err)
				}
				if int(ref.Part) >= len(m.Parts) {
					return fmt.Errorf("%w: final key %d names missing part %s", ErrCorrupt, seq, ref)
				}
				if enterprise != "" && m.Enterprise != enterprise {
					continue
				}
				rows = append(rows, partRow(m, int(ref.Part)))
			}
			if k == nil || n < exportChunkRows {
				next = uint64(until) + 1 // the range is done
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("queue: export final: %w", err)
		}
		for i := range rows {
			if err := fn(rows[i]); err != nil {
				return 0, err
			}
		}
	}
	return int64(uint64(until-after) - found), nil
}

// checkFinal verifies the final index against the records: one final key
// and one finalpart key per final part (final parts counted in counts),
// each naming the other, and no number above the sequence.
func checkFinal(tx *bolt.Tx, counts [stateEnd]int, bad func(format string, args ...any)) error {
	fb, fp, msgB := tx.Bucket(bucketFinal), tx.Bucket(bucketFinalPart), tx.Bucket(bucketMsg)
	if fb == nil || fp == nil {
		return nil // a backup older than the index: Open builds it
	}
	nFinal := 0
	for st, n := range counts {
		if State(st).Final() {
			nFinal += n
		}
	}
	seqMax := fb.Sequence()
	n := 0
	err := fb.ForEach(func(kb, v []byte) error {
		n++
		ref, ok := parsePartRef(v)
		if len(kb) != 8 || !ok {
			bad("final key %x → %x malformed", kb, v)
			return nil
		}
		if seq := binary.BigEndian.Uint64(kb); seq > seqMax {
			bad("final key %d above the sequence %d", seq, seqMax)
		}
		if pv := fp.Get(v); string(pv) != string(kb) {
			bad("final key %x: part %s is indexed as %x", kb, ref, pv)
		}
		mv := msgB.Get(msgKey(ref.ID))
		if mv == nil {
			bad("final key %x: no message %d", kb, ref.ID)
			return nil
		}
		if m, err := DecodeMessage(mv); err == nil && (int(ref.Part) >= len(m.Parts) || !m.Parts[ref.Part].State.Final()) {
			bad("final key %x: part %s is not final", kb, ref)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != nFinal {
		bad("%d final keys for %d final parts", n, nFinal)
	}
	if np := fp.Stats().KeyN; np != n {
		bad("%d finalpart keys for %d final keys", np, n)
	}
	return nil
}

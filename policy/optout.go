package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"
)

// Opt-outs (回复TD退订): a handset that replies an opt-out keyword to an
// enterprise's service number goes on that enterprise's opt-out list, and
// CheckRecipient refuses later sends to it with opted_out until the
// enterprise removes it. Other enterprises are unaffected.

var bucketOptOuts = []byte("policy_optouts") // code → bucket: E.164 → JSON optMeta

// DefaultOptOutKeywords are the replies that opt out when the
// configuration names none.
var DefaultOptOutKeywords = []string{"TD", "T", "退订"}

// OptOutEntry is one number of an enterprise's opt-out list.
type OptOutEntry struct {
	Enterprise string    `json:"enterprise"`
	Number     string    `json:"number"` // E.164
	At         time.Time `json:"at"`     // when the reply was received
	MOID       uint64    `json:"mo_id"`  // the reply's id (the inbox's)
}

type optMeta struct {
	At   time.Time `json:"at"`
	MOID uint64    `json:"mo"`
}

// IsOptOut reports whether a reply's text is one of keywords, compared
// case-insensitively after trimming spaces and punctuation at both ends:
// "td ", "Td。" and "退订!" opt out, "TDX" and "请退订吧" do not.
func IsOptOut(text string, keywords []string) bool {
	t := strings.TrimFunc(text, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
	})
	if t == "" {
		return false
	}
	for _, k := range keywords {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return false
}

// optSnap is the opt-out lists in memory: code → national numbers.
type optSnap map[string]map[uint64]struct{}

func loadOptOuts(tx *bolt.Tx, code string) (map[uint64]struct{}, error) {
	set := map[uint64]struct{}{}
	b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
	if b == nil {
		return set, nil
	}
	err := b.ForEach(func(k, _ []byte) error {
		nat, ok := nationalOf(string(k))
		if !ok {
			return fmt.Errorf("policy: opt-outs %q: bad entry %q", code, k)
		}
		set[nat] = struct{}{}
		return nil
	})
	return set, err
}

func loadAllOptOuts(tx *bolt.Tx) (optSnap, error) {
	all := optSnap{}
	err := tx.Bucket(bucketOptOuts).ForEach(func(k, _ []byte) error {
		set, err := loadOptOuts(tx, string(k))
		if err == nil && len(set) > 0 {
			all[string(k)] = set
		}
		return err
	})
	return all, err
}

// OptedOut reports whether e164 is on the enterprise's opt-out list (from
// memory).
func (s *Store) OptedOut(code, e164 string) bool {
	nat, ok := nationalOf(e164)
	if !ok {
		return false
	}
	_, ok = s.snap.Load().opt[code][nat]
	return ok
}

// OptedOutNational is OptedOut for a national number as a stored message
// holds it ("13712345678"), read before each part goes to the SMSC: one map
// lookup, no string built.
func (s *Store) OptedOutNational(code, national string) bool {
	if len(national) != 11 {
		return false
	}
	var n uint64
	for i := range len(national) {
		c := national[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + uint64(c-'0')
	}
	_, ok := s.snap.Load().opt[code][n]
	return ok
}

// OptOut puts number (a handset's address as the SMSC gave it) on the
// enterprise's opt-out list, with the time and id of the reply. It is
// idempotent: a number already listed keeps its first entry and added is
// false. A number that is no Chinese mobile is an invalid_number refusal
// (nothing could be sent to it anyway). Called by the gateway for a reply,
// not by an actor.
func (s *Store) OptOut(code, number string, moID uint64, at time.Time) (added bool, err error) {
	e164, err := s.cls.normalizeMobile(strings.TrimSpace(number))
	if err != nil {
		return false, err
	}
	err = s.update(func(tx *bolt.Tx, ch *change) error {
		if e, err := loadEnterprise(tx, code); err != nil {
			return err
		} else if e == nil {
			return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
		}
		b, err := tx.Bucket(bucketOptOuts).CreateBucketIfNotExists([]byte(code))
		if err != nil {
			return err
		}
		if b.Get([]byte(e164)) != nil {
			return nil
		}
		if err := putJSON(b, e164, optMeta{At: at.UTC(), MOID: moID}); err != nil {
			return err
		}
		added = true
		ch.opt = append(ch.opt, code)
		return nil
	})
	return added, err
}

// RemoveOptOut takes number off the enterprise's opt-out list (its admins,
// or the operator): sends to it are allowed again at once. A number not on
// the list is ErrNotFound; one that is no mobile number an invalid_number
// refusal.
func (s *Store) RemoveOptOut(a Actor, code, number string) error {
	if !a.admin(code) {
		return ErrForbidden
	}
	e164, err := s.cls.normalizeMobile(strings.TrimSpace(number))
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
		if b == nil || b.Get([]byte(e164)) == nil {
			return fmt.Errorf("%w: %s is not on the opt-out list", ErrNotFound, e164)
		}
		ch.opt = append(ch.opt, code)
		return b.Delete([]byte(e164))
	})
}

// ListOptOuts returns a page of the enterprise's opt-out list in number
// order after after (any member, or the operator); next is "" on the last
// page. It reads the file.
func (s *Store) ListOptOuts(a Actor, code, after string, limit int) (entries []OptOutEntry, next string, err error) {
	if !a.member(code) {
		return nil, "", ErrForbidden
	}
	limit = pageLimit(limit)
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := seekAfter(c, after)
		for ; k != nil; k, v = c.Next() {
			if len(entries) == limit {
				next = entries[len(entries)-1].Number
				return nil
			}
			e, err := decodeOptOut(code, k, v)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", dbErr(err)
	}
	return entries, next, nil
}

// ExportOptOuts calls fn for every opt-out of the enterprise code, or of
// every enterprise when code is "" (operator only), in enterprise then
// number order, inside one read transaction: fn should write, not block.
func (s *Store) ExportOptOuts(a Actor, code string, fn func(OptOutEntry) error) error {
	if !a.Operator {
		return ErrForbidden
	}
	return dbErr(s.db.View(func(tx *bolt.Tx) error {
		if code != "" {
			if e, err := loadEnterprise(tx, code); err != nil {
				return err
			} else if e == nil {
				return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
			}
		}
		return tx.Bucket(bucketOptOuts).ForEachBucket(func(ck []byte) error {
			if code != "" && string(ck) != code {
				return nil
			}
			return tx.Bucket(bucketOptOuts).Bucket(ck).ForEach(func(k, v []byte) error {
				e, err := decodeOptOut(string(ck), k, v)
				if err != nil {
					return err
				}
				return fn(e)
			})
		})
	}))
}

// FindOptOut returns number's entry on the enterprise's opt-out list (any
// member, or the operator), nil when it is not listed: the console's
// search of the list by a number in any form. A number that is no
// Chinese mobile is an invalid_number refusal.
func (s *Store) FindOptOut(a Actor, code, number string) (*OptOutEntry, error) {
	if !a.member(code) {
		return nil, ErrForbidden
	}
	e164, err := s.cls.normalizeMobile(strings.TrimSpace(number))
	if err != nil {
		return nil, err
	}
	var out *OptOutEntry
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(e164))
		if v == nil {
			return nil
		}
		e, err := decodeOptOut(code, []byte(e164), v)
		out = &e
		return err
	})
	return out, dbErr(err)
}

// OptOutsOf returns number's entry on every enterprise's opt-out list
// that has it (the operator only), in enterprise order: what a handset
// owner who says "I replied TD and still get messages" is answered from.
// A number that is no Chinese mobile is an invalid_number refusal.
func (s *Store) OptOutsOf(a Actor, number string) ([]OptOutEntry, error) {
	if !a.Operator {
		return nil, ErrForbidden
	}
	e164, err := s.cls.normalizeMobile(strings.TrimSpace(number))
	if err != nil {
		return nil, err
	}
	var out []OptOutEntry
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOptOuts).ForEachBucket(func(ck []byte) error {
			v := tx.Bucket(bucketOptOuts).Bucket(ck).Get([]byte(e164))
			if v == nil {
				return nil
			}
			e, err := decodeOptOut(string(ck), []byte(e164), v)
			out = append(out, e)
			return err
		})
	})
	return out, dbErr(err)
}

func decodeOptOut(code string, k, v []byte) (OptOutEntry, error) {
	var m optMeta
	if err := json.Unmarshal(v, &m); err != nil {
		return OptOutEntry{}, fmt.Errorf("policy: opt-out %s %q: %w", code, k, err)
	}
	return OptOutEntry{Enterprise: code, Number: string(k), At: m.At, MOID: m.MOID}, nil
}

package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/sheet"
)

// Opt-outs (回复TD退订): a handset that replies an opt-out keyword to an
// enterprise's service number goes on that enterprise's opt-out list, and
// CheckRecipient refuses later sends to it with opted_out until the
// enterprise removes it. Other enterprises are unaffected.

var bucketOptOuts = []byte("policy_optouts") // code → bucket: E.164 → JSON optMeta

// DefaultOptOutKeywords are the replies that opt out when the
// configuration names none.
var DefaultOptOutKeywords = []string{"TD", "T", "退订"}

// OptOutEntry is one number of an enterprise's opt-out list: put there by
// its reply (MOID) or by hand (By).
type OptOutEntry struct {
	Enterprise string    `json:"enterprise"`
	Number     string    `json:"number"`       // E.164
	At         time.Time `json:"at"`           // when the reply was received, or the number added
	MOID       uint64    `json:"mo_id"`        // the reply's id (the inbox's); 0 for one added by hand
	By         string    `json:"by,omitempty"` // who of the enterprise added it by hand (AddOptOuts); "" for a reply's
	// ByOperator: the operator added it (a complaint that reached the
	// operator or the carrier); By is then "".
	ByOperator bool `json:"by_operator,omitempty"`
}

type optMeta struct {
	At   time.Time `json:"at"`
	MOID uint64    `json:"mo"`
	By   string    `json:"by,omitempty"`
	Op   bool      `json:"op,omitempty"`
}

// DefaultMaxOptOuts bounds the numbers an enterprise puts on its opt-out
// list itself (StoreOptions.MaxOptOuts): any user may, and a list without
// a bound grew without end, all of it in memory. Each number takes about
// 20 bytes there. Numbers a reply put there count too, but a reply is
// never refused.
const DefaultMaxOptOuts = 500_000

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
type optSnap map[string]*optSet

// optShards is how many maps an opt-out list is held in. A write (a
// reply of TD, a number added by hand) copies the maps it touches, not
// the list: beside 500,000 numbers one map of the whole list took 24 ms
// to copy at each reply, a shard of it about 2,000 numbers
// (BenchmarkOptOutAtBound).
const optShards = 256

// optSet is one enterprise's opt-out list in memory, its national numbers
// spread over optShards maps by their last digits. A published set is
// never changed: a write builds the next one (with).
type optSet struct {
	shards [optShards]map[uint64]struct{}
	n      int
}

func (o *optSet) has(nat uint64) bool {
	if o == nil {
		return false
	}
	_, ok := o.shards[nat%optShards][nat]
	return ok
}

func (o *optSet) len() int {
	if o == nil {
		return 0
	}
	return o.n
}

// add puts nat in o, which is being built (not yet published).
func (o *optSet) add(nat uint64) {
	m := o.shards[nat%optShards]
	if m == nil {
		m = map[uint64]struct{}{}
		o.shards[nat%optShards] = m
	}
	if _, ok := m[nat]; !ok {
		m[nat] = struct{}{}
		o.n++
	}
}

// with is o with the numbers in (true) and out (false) of changes, as a new
// set: the shards they touch are copied, the others shared with o.
func (o *optSet) with(changes map[uint64]bool) *optSet {
	next := &optSet{}
	if o != nil {
		*next = *o
	}
	copied := map[uint64]bool{}
	for nat, in := range changes {
		sh := nat % optShards
		if !copied[sh] {
			next.shards[sh] = maps.Clone(next.shards[sh])
			if next.shards[sh] == nil {
				next.shards[sh] = map[uint64]struct{}{}
			}
			copied[sh] = true
		}
		_, had := next.shards[sh][nat]
		switch {
		case in && !had:
			next.shards[sh][nat] = struct{}{}
			next.n++
		case !in && had:
			delete(next.shards[sh], nat)
			next.n--
		}
	}
	return next
}

func loadOptOuts(tx *bolt.Tx, code string) (*optSet, error) {
	set := &optSet{}
	b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
	if b == nil {
		return set, nil
	}
	err := b.ForEach(func(k, _ []byte) error {
		nat, ok := nationalOf(string(k))
		if !ok {
			return fmt.Errorf("policy: opt-outs %q: bad entry %q", code, k)
		}
		set.add(nat)
		return nil
	})
	return set, err
}

func loadAllOptOuts(tx *bolt.Tx) (optSnap, error) {
	all := optSnap{}
	err := tx.Bucket(bucketOptOuts).ForEach(func(k, _ []byte) error {
		set, err := loadOptOuts(tx, string(k))
		if err == nil && set.len() > 0 {
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
	return s.snap.Load().opt[code].has(nat)
}

// OptedOutNational is OptedOut for a national number as a stored message
// holds it ("13712345678"), read before each part goes to the SMSC: one map
// lookup, no string built.
func (s *Store) OptedOutNational(code, national string) bool {
	n, ok := parseNational(national)
	return ok && s.snap.Load().opt[code].has(n)
}

// parseNational reads an 11-digit national number as the snapshot's maps
// key it, without building a string.
func parseNational(national string) (uint64, bool) {
	if len(national) != 11 {
		return 0, false
	}
	var n uint64
	for i := range len(national) {
		c := national[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
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
		b, err := optBucket(tx, code)
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
		ch.optKey(code, e164)
		return nil
	})
	return added, err
}

// AddOptOuts puts numbers on the enterprise's opt-out list by hand (any of
// its users, or the operator): customers who asked not to get its
// messages another way (a call, its website, its app), the list it kept
// with an earlier SMS platform, or (the operator) a complaint about it
// that reached the operator or the carrier. Sends to them are refused opted_out
// at once, and its messages waiting for them are not sent (the gateway's
// check before each part goes). Invalid numbers are reported per item,
// the others are added; a number already listed keeps its entry (reported
// in Listed, RowOptedOut). Past StoreOptions.MaxOptOuts numbers on the
// list each is refused per item, optout_limit, the items before it added.
func (s *Store) AddOptOuts(a Actor, code string, numbers []string) (ImportResult, error) {
	if !a.member(code) {
		return ImportResult{}, ErrForbidden
	}
	return s.addOptOutRows(a, code, listRows(numbers), 0)
}

// ImportOptOuts adds column A of a file as AddOptOuts does, read as
// ImportWhitelist reads its file (a first row without a digit is a
// header). The caller bounds r's size.
func (s *Store) ImportOptOuts(a Actor, code string, r io.Reader, f sheet.Format) (ImportResult, error) {
	if !a.member(code) {
		return ImportResult{}, ErrForbidden
	}
	rows, header, err := s.readNumberColumn(r, f)
	if err != nil {
		return ImportResult{}, err
	}
	return s.addOptOutRows(a, code, rows, header)
}

func (s *Store) addOptOutRows(a Actor, code string, rows []inputRow, header int) (ImportResult, error) {
	res := ImportResult{Rows: len(rows), HeaderRow: header}
	valid, errs := s.classifyRows(rows)
	res.Errors = errs
	now := s.now().UTC()
	res0 := res
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		res = res0                             // fn may run again (StoreOptions.Shared)
		res.Errors = slices.Clone(res0.Errors) // its appends must not write into res0's array
		b, err := optBucket(tx, code)
		if err != nil {
			return err
		}
		// From the snapshot, as whitelistSize: the state this write starts from.
		total := s.snap.Load().opt[code].len()
		seen := make(map[string]int, len(valid)) // E.164 → its first row
		for _, r := range valid {
			if first, ok := seen[r.e164]; ok {
				res.Duplicates++
				res.Listed = append(res.Listed, RowError{Row: r.row, Value: r.raw, Reason: RowOptedOut,
					Detail: fmt.Sprintf("%s: repeats row %d", r.e164, first), DetailZH: repeatsZH(r.e164, first)})
				continue
			}
			seen[r.e164] = r.row
			if v := b.Get([]byte(r.e164)); v != nil {
				old, err := decodeOptOut(code, []byte(r.e164), v)
				if err != nil {
					return err
				}
				res.Duplicates++
				res.Listed = append(res.Listed, RowError{Row: r.row, Value: r.raw, Reason: RowOptedOut,
					Detail:   fmt.Sprintf("%s: on the opt-out list since %s", r.e164, old.At.Format(time.RFC3339)),
					DetailZH: fmt.Sprintf("%s：%s 起已在退订名单中", r.e164, old.At.In(shanghai).Format("2006-01-02 15:04"))})
				continue
			}
			if n := s.opts.MaxOptOuts; total >= n {
				res.Errors = append(res.Errors, RowError{Row: r.row, Value: r.raw, Reason: RowOptOutLimit,
					Detail:   fmt.Sprintf("%s: the opt-out list holds at most %d numbers added by hand: ask the account manager", r.e164, n),
					DetailZH: fmt.Sprintf("%s：手工添加的退订号码最多 %d 个，请联系客户经理", r.e164, n)})
				continue
			}
			m := optMeta{At: now, By: a.who()}
			if a.Operator {
				m = optMeta{At: now, Op: true}
			}
			if err := putJSON(b, r.e164, m); err != nil {
				return err
			}
			ch.optKey(code, r.e164)
			total++
			res.Added++
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	slices.SortStableFunc(res.Errors, func(x, y RowError) int { return x.Row - y.Row })
	return res, nil
}

// OptOutCount is how many numbers are on the enterprise's opt-out list
// (from memory), for its detail.
func (s *Store) OptOutCount(code string) int { return s.snap.Load().opt[code].len() }

// optBucket is the enterprise's opt-out list in a write, created if need
// be; ErrNotFound if there is no such enterprise.
func optBucket(tx *bolt.Tx, code string) (*bolt.Bucket, error) {
	if e, err := loadEnterprise(tx, code); err != nil {
		return nil, err
	} else if e == nil {
		return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
	}
	return tx.Bucket(bucketOptOuts).CreateBucketIfNotExists([]byte(code))
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
		ch.optKey(code, e164)
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
// every enterprise when code is "" (the operator of every enterprise
// only; of code, its operator only), in enterprise then
// number order, inside one read transaction: fn should write, not block.
func (s *Store) ExportOptOuts(a Actor, code string, fn func(OptOutEntry) error) error {
	if code == "" && !a.Everywhere() || code != "" && !a.Serves(code) {
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
// that has it (the operator only; a manager's own enterprises' lists
// only), in enterprise order: what a handset
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
			if v == nil || !a.Serves(string(ck)) {
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
	return OptOutEntry{Enterprise: code, Number: string(k), At: m.At, MOID: m.MOID, By: m.By, ByOperator: m.Op}, nil
}

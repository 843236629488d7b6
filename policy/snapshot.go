package policy

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshot is the immutable in-memory state the sending path reads. The
// one way it changes is update: a write in one transaction, the parts it
// touched reloaded from that transaction, the new snapshot published after
// the commit.
type snapshot struct {
	ents   map[string]*entSnap            // code →
	bySID  map[string]*userRec            // system_id →
	byKey  map[[sha256.Size]byte]*userRec // API key hash →
	byName map[string]map[string]*userRec // code → name →
	bySvc  map[string]string              // service number → code
	byExt  map[string]map[string]*userRec // code → extension →
	opt    optSnap                        // code → opted-out national numbers
}

type entSnap struct {
	ent Enterprise
	wlSnap
}

// wlSnap is an enterprise's whitelist in memory.
type wlSnap struct {
	wl     map[uint64]WhitelistState // national number → state
	why    map[uint64]string         // rejected entries with a reason → the reason
	added  map[uint64]time.Time      // pending entries → when added (kept so that a decision can find the next oldest without the file)
	oldest time.Time                 // when the oldest pending entry was added (zero: none)
}

// pending is the number of pending entries.
func (ws *wlSnap) pending() int { return len(ws.added) }

// put records the entry k (its national number nat) with the stored value v.
func (ws *wlSnap) put(code string, nat uint64, k, v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("policy: whitelist %q: bad entry %q", code, k)
	}
	st := WhitelistState(v[0])
	ws.wl[nat] = st
	if st != WhitelistPending && st != WhitelistRejected {
		return nil
	}
	e, err := decodeEntry(k, v)
	if err != nil {
		return err
	}
	if st == WhitelistPending {
		if ws.added == nil {
			ws.added = map[uint64]time.Time{}
		}
		ws.added[nat] = e.AddedAt
	} else if e.Reason != "" {
		if ws.why == nil {
			ws.why = map[uint64]string{}
		}
		ws.why[nat] = e.Reason
	}
	return nil
}

// drop forgets the entry nat.
func (ws *wlSnap) drop(nat uint64) {
	delete(ws.wl, nat)
	delete(ws.why, nat)
	delete(ws.added, nat)
}

// findOldest sets oldest from added.
func (ws *wlSnap) findOldest() {
	ws.oldest = time.Time{}
	for _, at := range ws.added {
		if ws.oldest.IsZero() || at.Before(ws.oldest) {
			ws.oldest = at
		}
	}
}

func loadAll(tx *bolt.Tx) (*snapshot, error) {
	snap := &snapshot{ents: map[string]*entSnap{}}
	err := tx.Bucket(bucketEnterprises).ForEach(func(k, v []byte) error {
		es := &entSnap{}
		if err := json.Unmarshal(v, &es.ent); err != nil {
			return fmt.Errorf("policy: enterprise %q: %w", k, err)
		}
		wl, err := loadWhitelist(tx, es.ent.Code)
		if err != nil {
			return err
		}
		es.wlSnap = wl
		snap.ents[es.ent.Code] = es
		return nil
	})
	if err != nil {
		return nil, err
	}
	indexServiceNumbers(snap)
	if snap.opt, err = loadAllOptOuts(tx); err != nil {
		return nil, err
	}
	return snap, loadUsers(tx, snap)
}

func loadEnterprise(tx *bolt.Tx, code string) (*Enterprise, error) {
	v := tx.Bucket(bucketEnterprises).Get([]byte(code))
	if v == nil {
		return nil, nil
	}
	var e Enterprise
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("policy: enterprise %q: %w", code, err)
	}
	return &e, nil
}

func loadWhitelist(tx *bolt.Tx, code string) (wlSnap, error) {
	ws := wlSnap{wl: map[uint64]WhitelistState{}}
	b := tx.Bucket(bucketWhitelist).Bucket([]byte(code))
	if b == nil {
		return ws, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		nat, ok := nationalOf(string(k))
		if !ok {
			return fmt.Errorf("policy: whitelist %q: bad entry %q", code, k)
		}
		return ws.put(code, nat, k, v)
	})
	ws.findOldest()
	return ws, err
}

// patchWhitelist is old with the entries keys (E.164, put or deleted) read
// again from tx: a write of a few entries costs a copy of the maps, not a
// read and decode of the whole whitelist from the file (an approval beside
// 200,000 entries, 10,000 of them pending: about 2 ms, against 40–93 ms
// reading it all; BenchmarkWhitelistAtBound).
func patchWhitelist(tx *bolt.Tx, old wlSnap, code string, keys []string) (wlSnap, error) {
	b := tx.Bucket(bucketWhitelist).Bucket([]byte(code))
	if b == nil {
		return loadWhitelist(tx, code)
	}
	ws := wlSnap{wl: maps.Clone(old.wl), why: maps.Clone(old.why), added: maps.Clone(old.added)}
	if ws.wl == nil {
		ws.wl = map[uint64]WhitelistState{}
	}
	for _, k := range keys {
		nat, ok := nationalOf(k)
		if !ok {
			return wlSnap{}, fmt.Errorf("policy: whitelist %q: bad entry %q", code, k)
		}
		ws.drop(nat)
		if v := b.Get([]byte(k)); v != nil {
			if err := ws.put(code, nat, []byte(k), v); err != nil {
				return wlSnap{}, err
			}
		}
	}
	ws.findOldest()
	return ws, nil
}

// patchOptOuts is old with the numbers keys (E.164, put or deleted) read
// again from tx: a reply of TD, or a number added by hand, costs a copy of
// the shards it touches (optSet.with), not a read of the whole list from
// the file.
func patchOptOuts(tx *bolt.Tx, old *optSet, code string, keys []string) (*optSet, error) {
	b := tx.Bucket(bucketOptOuts).Bucket([]byte(code))
	if b == nil {
		return nil, nil
	}
	changes := make(map[uint64]bool, len(keys))
	for _, k := range keys {
		nat, ok := nationalOf(k)
		if !ok {
			return nil, fmt.Errorf("policy: opt-outs %q: bad entry %q", code, k)
		}
		changes[nat] = b.Get([]byte(k)) != nil
	}
	return old.with(changes), nil
}

func loadUsers(tx *bolt.Tx, snap *snapshot) error {
	snap.bySID = map[string]*userRec{}
	snap.byKey = map[[sha256.Size]byte]*userRec{}
	snap.byName = map[string]map[string]*userRec{}
	snap.byExt = map[string]map[string]*userRec{}
	return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		u := &userRec{}
		if err := json.Unmarshal(v, u); err != nil {
			return fmt.Errorf("policy: user %q: %w", k, err)
		}
		snap.bySID[u.SystemID] = u
		if len(u.APIKeyHash) == sha256.Size {
			snap.byKey[[sha256.Size]byte(u.APIKeyHash)] = u
		}
		m := snap.byName[u.Enterprise]
		if m == nil {
			m = map[string]*userRec{}
			snap.byName[u.Enterprise] = m
		}
		m[u.Name] = u
		if u.Extension != "" {
			x := snap.byExt[u.Enterprise]
			if x == nil {
				x = map[string]*userRec{}
				snap.byExt[u.Enterprise] = x
			}
			x[u.Extension] = u
		}
		return nil
	})
}

func loadOverrides(tx *bolt.Tx) ([]Override, error) {
	var ovs []Override
	err := tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
		var o Override
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("policy: override %q: %w", k, err)
		}
		ovs = append(ovs, o)
		return nil
	})
	return ovs, err
}

// nationalOf returns the national number of "+861xxxxxxxxxx".
func nationalOf(e164 string) (uint64, bool) {
	if len(e164) != 14 || e164[:3] != "+86" {
		return 0, false
	}
	var n uint64
	for i := 3; i < 14; i++ {
		c := e164[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// change lists what a write touched, so that only that is reloaded.
type change struct {
	ents      []string            // enterprise records
	wl        []string            // whitelists, reloaded whole
	wlKeys    map[string][]string // whitelist → the entries put or deleted, patched in (wlKey)
	opt       []string            // opt-out lists, reloaded whole
	optKeys   map[string][]string // opt-out list → the numbers put or deleted, patched in (optKey)
	users     bool
	overrides bool
}

// wlKey records that the entry e164 of code's whitelist was put or
// deleted: rebuild patches it into the snapshot (patchWhitelist).
func (ch *change) wlKey(code, e164 string) {
	if ch.wlKeys == nil {
		ch.wlKeys = map[string][]string{}
	}
	ch.wlKeys[code] = append(ch.wlKeys[code], e164)
}

// optKey records that number e164 of code's opt-out list was put or
// deleted: rebuild patches it into the snapshot (patchOptOuts).
func (ch *change) optKey(code, e164 string) {
	if ch.optKeys == nil {
		ch.optKeys = map[string][]string{}
	}
	ch.optKeys[code] = append(ch.optKeys[code], e164)
}

// update runs fn in one read-write transaction, rebuilds the touched parts of
// the snapshot from that same transaction and publishes it once committed.
//
// With opts.Shared, fn runs through the committer and the snapshot is
// published by applyShared when the write comes back applied, before
// update returns: s.mu still serialises this node's writes, and the hook
// takes only pubMu, so update waiting for its write holds nothing the
// hook needs.
func (s *Store) update(fn func(tx *bolt.Tx, ch *change) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Shared != nil {
		return dbErr(s.write(func(tx *bolt.Tx) error {
			var ch change // the hook finds what changed from the applied paths
			return fn(tx, &ch)
		}))
	}
	var next *snapshot
	var ovs []Override
	var ch change
	fnFailed, err := s.local(func(tx *bolt.Tx) error {
		if err := fn(tx, &ch); err != nil {
			return err
		}
		var err error
		if next, err = rebuild(tx, s.snap.Load(), &ch); err != nil {
			return err
		}
		if ch.overrides {
			ovs, err = loadOverrides(tx)
		}
		return err
	})
	if err != nil && !fnFailed {
		// The commit failed, but it may be what the file shows (its
		// sync failed after bbolt wrote it): the snapshot follows the
		// file, whichever it is.
		if rerr := s.reload(); rerr != nil {
			return errors.Join(dbErr(err), rerr)
		}
	}
	if err != nil {
		return dbErr(err)
	}
	if ch.overrides {
		if err := s.cls.SetOverrides(ovs); err != nil {
			return err // cannot happen: overrides are validated before they are stored
		}
		s.markClassChanged(s.now())
	}
	s.snap.Store(next)
	return nil
}

func rebuild(tx *bolt.Tx, old *snapshot, ch *change) (*snapshot, error) {
	next := *old
	slices.Sort(ch.ents)
	ch.ents = slices.Compact(ch.ents)
	slices.Sort(ch.wl)
	ch.wl = slices.Compact(ch.wl)
	if len(ch.ents)+len(ch.wl)+len(ch.wlKeys) > 0 {
		next.ents = maps.Clone(old.ents)
	}

	for _, code := range ch.ents {
		e, err := loadEnterprise(tx, code)
		if err != nil {
			return nil, err
		}
		if e == nil {
			delete(next.ents, code)
			continue
		}
		es := &entSnap{ent: *e}
		if o := old.ents[code]; o != nil {
			es.wlSnap = o.wlSnap
		} else if es.wlSnap, err = loadWhitelist(tx, code); err != nil {
			return nil, err
		}
		next.ents[code] = es
	}
	for _, code := range ch.wl {
		o := next.ents[code]
		if o == nil {
			continue
		}
		wl, err := loadWhitelist(tx, code)
		if err != nil {
			return nil, err
		}
		next.ents[code] = &entSnap{ent: o.ent, wlSnap: wl}
	}
	for code, keys := range ch.wlKeys {
		o := next.ents[code]
		if _, whole := slices.BinarySearch(ch.wl, code); o == nil || whole {
			continue
		}
		wl, err := patchWhitelist(tx, o.wlSnap, code, keys)
		if err != nil {
			return nil, err
		}
		next.ents[code] = &entSnap{ent: o.ent, wlSnap: wl}
	}
	if len(ch.opt) > 0 || len(ch.optKeys) > 0 {
		next.opt = maps.Clone(old.opt)
		for _, code := range ch.opt {
			set, err := loadOptOuts(tx, code)
			if err != nil {
				return nil, err
			}
			if set.len() == 0 {
				delete(next.opt, code)
			} else {
				next.opt[code] = set
			}
		}
		for code, keys := range ch.optKeys {
			if slices.Contains(ch.opt, code) {
				continue // reloaded whole
			}
			set, err := patchOptOuts(tx, old.opt[code], code, keys)
			if err != nil {
				return nil, err
			}
			if set.len() == 0 {
				delete(next.opt, code)
			} else {
				next.opt[code] = set
			}
		}
	}
	if ch.users {
		if err := loadUsers(tx, &next); err != nil {
			return nil, err
		}
	}
	if len(ch.ents) > 0 {
		indexServiceNumbers(&next)
	}
	return &next, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// reload replaces the snapshot (and the classifier's overrides) with
// what the file holds now: at the open, and after a failed commit that
// the file may show.
func (s *Store) reload() error {
	var snap *snapshot
	var ovs []Override
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if snap, err = loadAll(tx); err != nil {
			return err
		}
		ovs, err = loadOverrides(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("policy: load: %w", err)
	}
	if err := s.cls.SetOverrides(ovs); err != nil {
		return fmt.Errorf("policy: stored overrides: %w", err)
	}
	// Whether the overrides, the home province or the number table
	// changed while the daemon was down is not known: what was accepted
	// before is classified again at its turn (tens of ns a number, once
	// for each message waiting at the start). What is accepted from now
	// on is admitted under what was just loaded: the mark is set
	// scopeSettle back (StopReason adds it), to the nanosecond, not
	// the second (a restart can take less than one).
	s.markClassChanged(s.opts.Now().Add(-scopeSettle))
	s.snap.Store(snap)
	return nil
}

// markClassChanged moves the mark of classChanged to t, never back: a
// reload after a failed commit (its mark scopeSettle back) must not
// shorten the settle of an overrides change made a moment before.
func (s *Store) markClassChanged(t time.Time) {
	for {
		was := s.classChanged.Load()
		if t.UnixNano() <= was || s.classChanged.CompareAndSwap(was, t.UnixNano()) {
			return
		}
	}
}

// applyShared is the hook of StoreOptions.Shared: it rebuilds the parts of
// the snapshot that the applied change touched, from the applied state,
// and publishes the result. Its errors cannot be returned to a writer (the
// change is applied already, maybe written by another node): it keeps the
// previous snapshot for the parts that fail to load (a record that does not
// decode would have failed the writer's own checks).
func (s *Store) applyShared(tx *bolt.Tx, changed [][][]byte) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	old := s.snap.Load()
	if old == nil {
		return // OpenStore has not loaded yet: it will read this change
	}
	ch, all := changeOf(changed)
	var next *snapshot
	var err error
	if all {
		next, err = loadAll(tx)
	} else {
		next, err = rebuild(tx, old, &ch)
	}
	if err != nil {
		return
	}
	if all || ch.overrides {
		if ovs, err := loadOverrides(tx); err == nil {
			_ = s.cls.SetOverrides(ovs)
			s.markClassChanged(s.now()) // another node's change
		}
	}
	s.snap.Store(next)
}

// changeOf maps the paths a Committer applied to the parts of the snapshot
// they touch; all when one of the snapshot's buckets changed as a whole.
func changeOf(changed [][][]byte) (ch change, all bool) {
	if changed == nil {
		return ch, true
	}
	for _, p := range changed {
		if len(p) == 0 {
			continue
		}
		var sub string
		if len(p) >= 2 {
			sub = string(p[1])
		}
		switch string(p[0]) {
		case string(bucketEnterprises), string(bucketWhitelist), string(bucketOptOuts):
			if len(p) < 2 {
				return ch, true
			}
			switch string(p[0]) {
			case string(bucketEnterprises):
				ch.ents = append(ch.ents, sub)
			case string(bucketWhitelist):
				if len(p) == 3 { // an entry put or deleted
					ch.wlKey(sub, string(p[2]))
				} else { // the whitelist's bucket created or deleted
					ch.wl = append(ch.wl, sub)
				}
			default:
				if len(p) == 3 { // a number put or deleted
					ch.optKey(sub, string(p[2]))
				} else { // the list's bucket created or deleted
					ch.opt = append(ch.opt, sub)
				}
			}
		case string(bucketUsers):
			ch.users = true
		case string(bucketOverrides):
			ch.overrides = true
		}
	}
	return ch, false
}

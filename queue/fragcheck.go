package queue

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkFragments verifies the buckets of client-split messages for Check:
// every alias key names a message that lists it (aliasOf, from the msg
// scan) and every alias a message lists is indexed (Purge deletes a
// message's aliases with it); frag records decode and are indexed in
// fragid, and fragid names only them; part ids are neither message ids
// nor aliases; fragn equals a recount — per account, per enterprise (in a
// file from before enterprises were counted, version 1 totals: none) and
// in all. It returns the highest part id seen, for the sequence check.
func checkFragments(tx *bolt.Tx, aliasOf map[uint64]uint64, bad func(string, ...any)) uint64 {
	msgB, aliasB := tx.Bucket(bucketMsg), tx.Bucket(bucketAlias)
	fragB, fragIDB := tx.Bucket(bucketFrag), tx.Bucket(bucketFragID)
	var maxID uint64
	for a, id := range aliasOf {
		maxID = max(maxID, a)
		if v := aliasB.Get(msgKey(a)); len(v) != 8 || binary.BigEndian.Uint64(v) != id {
			bad("message %d: alias %d not indexed to it (%x)", id, a, v)
		}
		if msgB.Get(msgKey(a)) != nil {
			bad("message %d: alias %d is also a message id", id, a)
		}
	}
	_ = aliasB.ForEach(func(k, v []byte) error {
		if len(k) != 8 || len(v) != 8 {
			bad("alias key %x → %x malformed", k, v)
			return nil
		}
		a, id := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(v)
		if aliasOf[a] != id {
			bad("alias %d → message %d, which does not list it", a, id)
		}
		return nil
	})
	counts := make(map[string]fragCount)
	var prev []byte
	_ = fragB.ForEach(func(k, v []byte) error {
		f, err := decodeFragment(k, v)
		if err != nil {
			bad("frag %q: %v", k, err)
			return nil
		}
		maxID = max(maxID, f.ID)
		if !bytes.Equal(fragIDB.Get(msgKey(f.ID)), k) {
			bad("frag %s part %d: id %d not indexed in fragid", f.FragmentGroup, f.Seq, f.ID)
		}
		if msgB.Get(msgKey(f.ID)) != nil || aliasB.Get(msgKey(f.ID)) != nil {
			bad("frag %s part %d: id %d is also a message id or an alias", f.FragmentGroup, f.Seq, f.ID)
		}
		c, all, ent := counts[f.Account], counts[fragAll], counts[fragEntKey(f.Enterprise)]
		if prefix := k[:len(k)-1]; !bytes.Equal(prefix, prev) {
			prev = append(prev[:0], prefix...)
			c.Groups++
			all.Groups++
		}
		n := int64(len(f.Data))
		c.Bytes += n
		all.Bytes += n
		ent.Bytes += n
		counts[f.Account], counts[fragAll] = c, all
		if ent.Bytes > 0 { // a counter at zero is deleted
			counts[fragEntKey(f.Enterprise)] = ent
		}
		return nil
	})
	entCounted := true
	if v := tx.Bucket(bucketFragN).Get([]byte(fragAll)); v != nil {
		if _, ver, err := decodeFragCount(v); err == nil {
			entCounted = ver == fragNTotalsVersion
		}
	}
	_ = fragIDB.ForEach(func(k, v []byte) error {
		if len(k) != 8 || fragB.Get(v) == nil {
			bad("fragid %x → %q: no such part", k, v)
		}
		return nil
	})
	_ = tx.Bucket(bucketFragN).ForEach(func(k, v []byte) error {
		c, ver, err := decodeFragCount(v)
		total := string(k) == fragAll
		switch {
		case err != nil:
			bad("fragn %q: %v", k, err)
		case !total && ver != fragNVersion:
			bad("fragn %q: version %d", k, ver)
		case !total && k[0] == sep && !entCounted:
			bad("fragn %q: enterprise counter beside version 1 totals", k)
		case counts[string(k)] != c:
			bad("fragn %q: stored %+v, parts say %+v", k, c, counts[string(k)])
		}
		delete(counts, string(k))
		return nil
	})
	for k, c := range counts {
		if k != fragAll && k[0] == sep && !entCounted {
			continue // not counted yet: the next write adds it (upgradeFragN)
		}
		bad("fragn %q: missing, parts say %+v", k, c)
	}
	return maxID
}

// neverSent reports whether m is a record RejectFragments made: parts of a
// client-split message settled without sending anything, so it needs no
// concatenation reference.
func neverSent(m *Message) bool {
	if len(m.Aliases) == 0 {
		return false
	}
	for _, p := range m.Parts {
		if p.State != StateRejected || p.SMSCID != "" || p.Attempts != 0 || p.SubmittedAt != (time.Time{}) {
			return false
		}
	}
	return true
}

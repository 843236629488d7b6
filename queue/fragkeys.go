package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The records of the fragment buckets: keys, values and the per-account,
// per-enterprise and total counters behind FragmentLimits.

// fragAll is the fragn key of the totals over all accounts (no account
// contains NUL; bbolt refuses an empty key).
const fragAll = "\x00"

// A frag record is version 1 unless a flag is set: then it is version 2,
// version 1 followed by one flags byte, read as a message record's second
// flags byte is (codec.go): its low four bits are hints a reader may drop
// (an unknown one is ignored), its high four are refused when unknown, and
// a version 2 record whose flags byte is 0 is refused (it would be version
// 1). So a part stored without priority is byte for byte what a release
// before version 2 wrote and reads; one with it is refused by such a
// release as damaged (queue/doc.go, Notes).
const (
	fragVersion      = 1
	fragVersionFlags = 2 // fragVersion, then a flags byte

	fragPriority = 1 << 0 // Fragment.Priority (a hint: without it the message goes in due order)
	fragHints    = 0x0f
	fragKnown    = fragPriority
)

const (
	// fragn records: version | groups (uvarint) | bytes (uvarint). The
	// totals (fragAll) are version 2 once the enterprises' counters are
	// kept beside them; version 1 totals are a file from before, with no
	// enterprise counters (upgradeFragN adds them on its next write).
	fragNVersion       = 1
	fragNTotalsVersion = 2
	fragTailLen        = 2 + 1 + 1 + 1 // ref, total, 0x00, seq
)

// concatPrefix is the key of a group of parts without its sequence
// number, the layout of the frag and moparts buckets: owner (an account,
// an upstream) 0x00 source 0x00 dest 0x00 ref (2 BE) total 0x00.
func concatPrefix(owner, source, dest string, ref uint16, total uint8) []byte {
	b := make([]byte, 0, len(owner)+len(source)+len(dest)+3+fragTailLen)
	b = append(b, owner...)
	b = append(b, sep)
	b = append(b, source...)
	b = append(b, sep)
	b = append(b, dest...)
	b = append(b, sep)
	b = binary.BigEndian.AppendUint16(b, ref)
	return append(b, total, sep)
}

// concatKey is a key of that layout taken apart: f is owner, source and
// dest; ok is false for a key of another shape or impossible numbers
// (total 0, seq 0 or past total, no owner).
type concatKey struct {
	f          [3]string
	ref        uint16
	total, seq uint8
}

func parseConcatKey(k []byte) (c concatKey, ok bool) {
	rest := k
	for i := range c.f {
		j := bytes.IndexByte(rest, sep)
		if j < 0 {
			return c, false
		}
		c.f[i], rest = string(rest[:j]), rest[j+1:]
	}
	if len(rest) != fragTailLen || rest[3] != sep || c.f[0] == "" {
		return c, false
	}
	c.ref, c.total, c.seq = binary.BigEndian.Uint16(rest), rest[2], rest[4]
	return c, c.total != 0 && c.seq != 0 && c.seq <= c.total
}

// fragGroupPrefix is the frag key of g without its sequence number.
func fragGroupPrefix(g FragmentGroup) []byte {
	return concatPrefix(g.Account, g.Source, g.Dest, g.Ref, g.Total)
}

func fragKey(g FragmentGroup, seq uint8) []byte { return append(fragGroupPrefix(g), seq) }

// parseFragKey is the inverse of fragKey.
func parseFragKey(k []byte) (FragmentGroup, uint8, bool) {
	c, ok := parseConcatKey(k)
	if !ok || c.f[2] == "" {
		return FragmentGroup{}, 0, false
	}
	return FragmentGroup{Account: c.f[0], Source: c.f[1], Dest: c.f[2], Ref: c.ref, Total: c.total}, c.seq, true
}

func encodeFragment(f *Fragment) []byte {
	e := encoder{make([]byte, 0, 64+len(f.Data)+len(f.Enterprise)+len(f.Signature)+len(f.UserSignature))}
	var flags uint8
	if f.Priority {
		flags |= fragPriority
	}
	if flags == 0 {
		e.u8(fragVersion)
	} else {
		e.u8(fragVersionFlags)
	}
	e.uvarint(f.ID)
	e.str(f.Enterprise)
	e.time(f.ArrivedAt)
	e.u8(f.Coding)
	e.bytes(f.Data)
	e.u8(f.ClientCoding)
	e.u8(f.RegisteredDelivery)
	e.u8(f.SourceTON)
	e.u8(f.SourceNPI)
	e.u8(f.DestTON)
	e.u8(f.DestNPI)
	e.time(f.SendAt)
	e.time(f.ValidUntil)
	e.str(f.Signature)
	e.str(f.UserSignature)
	if flags != 0 {
		e.u8(flags)
	}
	return e.b
}

// decodeFragment decodes the record stored under key k.
func decodeFragment(k, v []byte) (*Fragment, error) {
	g, seq, ok := parseFragKey(k)
	if !ok {
		return nil, fmt.Errorf("%w: frag key %q malformed", ErrCorrupt, k)
	}
	d := newDecoder(v)
	withFlags := d.fragmentVersion()
	f := &Fragment{FragmentGroup: g, Seq: seq}
	f.ID = d.uvarint("id")
	f.Enterprise = d.str("enterprise")
	f.ArrivedAt = d.time("arrived_at")
	f.Coding = d.u8("coding")
	f.Data = d.bytes("data")
	f.ClientCoding = d.u8("client_coding")
	f.RegisteredDelivery = d.u8("registered_delivery")
	f.SourceTON = d.u8("source_ton")
	f.SourceNPI = d.u8("source_npi")
	f.DestTON = d.u8("dest_ton")
	f.DestNPI = d.u8("dest_npi")
	f.SendAt = d.time("send_at")
	f.ValidUntil = d.time("valid_until")
	f.Signature = d.str("signature")
	f.UserSignature = d.str("user_signature")
	if withFlags {
		x := d.u8("fragment flags")
		switch {
		case d.err != nil:
		case x == 0:
			d.fail("fragment version %d without flags", fragVersionFlags)
		case x&^(fragKnown|fragHints) != 0:
			d.fail("fragment: unknown flags %#x", x)
		}
		f.Priority = x&fragPriority != 0
	}
	d.end("fragment")
	if d.err == nil && f.ID == 0 {
		d.fail("fragment: id 0")
	}
	if d.err != nil {
		return nil, d.err
	}
	if f.Data == nil {
		f.Data = []byte{}
	}
	return f, nil
}

// fragmentVersion reads a frag record's version byte: true for version
// 2 (a flags byte follows the fields).
func (d *decoder) fragmentVersion() (flags bool) {
	if d.err != nil {
		return false
	}
	if d.left() < 1 {
		d.fail("fragment version: truncated")
		return false
	}
	v := d.b[d.pos]
	d.pos++
	switch v {
	case fragVersion:
		return false
	case fragVersionFlags:
		return true
	}
	d.fail("fragment: unknown version %d", v)
	return false
}

// fragCount is one fragn record. An enterprise's record counts bytes
// only (Groups 0): a group is its account's, while the parts of one group
// may name different enterprises (the account moved meanwhile).
type fragCount struct {
	Groups int64
	Bytes  int64
}

// fragEntKey is the fragn key of enterprise's counters: NUL, then the
// name (no account is empty or contains NUL, no enterprise is empty).
func fragEntKey(enterprise string) string { return fragAll + enterprise }

func encodeFragCount(c fragCount, version uint8) []byte {
	b := []byte{version}
	b = binary.AppendUvarint(b, uint64(c.Groups))
	return binary.AppendUvarint(b, uint64(c.Bytes))
}

// decodeFragCount decodes a fragn record of either version.
func decodeFragCount(v []byte) (fragCount, uint8, error) {
	d := newDecoder(v)
	ver := d.u8("fragment counters version")
	if d.err == nil && ver != fragNVersion && ver != fragNTotalsVersion {
		d.fail("fragment counters: unknown version %d", ver)
	}
	c := fragCount{Groups: int64(d.uvarint("groups")), Bytes: int64(d.uvarint("bytes"))}
	d.end("fragment counters")
	if d.err == nil && (c.Groups < 0 || c.Bytes < 0) {
		d.fail("fragment counters out of range")
	}
	return c, ver, d.err
}

func (t *txn) fragCount(key string) (fragCount, error) {
	v := t.tx.Bucket(bucketFragN).Get([]byte(key))
	if v == nil {
		return fragCount{}, nil
	}
	c, _, err := decodeFragCount(v)
	return c, err
}

// fragEntCounted reports whether fragn holds the enterprises' counters:
// always, except in a file written before they were kept that still has
// pending parts (its totals are version 1).
func (t *txn) fragEntCounted() (bool, error) {
	v := t.tx.Bucket(bucketFragN).Get([]byte(fragAll))
	if v == nil {
		return true, nil
	}
	_, ver, err := decodeFragCount(v)
	return ver == fragNTotalsVersion, err
}

// fragEntBytes returns the Data bytes of the pending parts of enterprise:
// its counter, or a count over frag in a file not yet upgraded (read
// only: a precondition writes nothing).
func (t *txn) fragEntBytes(enterprise string) (int64, error) {
	ok, err := t.fragEntCounted()
	if err != nil || ok {
		c, cerr := t.fragCount(fragEntKey(enterprise))
		return c.Bytes, errors.Join(err, cerr)
	}
	var n int64
	err = t.tx.Bucket(bucketFrag).ForEach(func(k, v []byte) error {
		f, err := decodeFragment(k, v)
		if err == nil && f.Enterprise == enterprise {
			n += int64(len(f.Data))
		}
		return err
	})
	return n, err
}

// upgradeFragN adds the enterprises' counters to a file written before
// they were kept (one scan of frag, bounded by FragmentLimits) and marks
// the totals version 2. Idempotent; nothing to do in an upgraded file.
// Every write to frag runs it first.
func (t *txn) upgradeFragN() error {
	ok, err := t.fragEntCounted()
	if err != nil || ok {
		return err
	}
	sum := make(map[string]int64)
	err = t.tx.Bucket(bucketFrag).ForEach(func(k, v []byte) error {
		f, err := decodeFragment(k, v)
		if err == nil {
			sum[f.Enterprise] += int64(len(f.Data))
		}
		return err
	})
	if err != nil {
		return err
	}
	b := t.tx.Bucket(bucketFragN)
	for ent, n := range sum {
		if n == 0 {
			continue
		}
		if err := b.Put([]byte(fragEntKey(ent)), encodeFragCount(fragCount{Bytes: n}, fragNVersion)); err != nil {
			return err
		}
	}
	all, err := t.fragCount(fragAll)
	if err != nil {
		return err
	}
	return b.Put([]byte(fragAll), encodeFragCount(all, fragNTotalsVersion))
}

// addFragCount adds groups and bytes to the counters of account and to
// the totals (fragAll), and bytes to those of enterprise. A counter that
// drops to zero is deleted. The caller ran upgradeFragN before it changed
// frag, so that the upgrade's scan counts the parts as they were.
func (t *txn) addFragCount(account, enterprise string, groups, bytes int64) error {
	b := t.tx.Bucket(bucketFragN)
	for _, k := range []struct {
		key     string
		groups  int64
		version uint8
	}{{account, groups, fragNVersion}, {fragEntKey(enterprise), 0, fragNVersion}, {fragAll, groups, fragNTotalsVersion}} {
		c, err := t.fragCount(k.key)
		if err != nil {
			return err
		}
		c.Groups += k.groups
		c.Bytes += bytes
		if c.Groups < 0 || c.Bytes < 0 {
			return fmt.Errorf("%w: fragment counters of %q below zero", ErrCorrupt, k.key)
		}
		if c == (fragCount{}) {
			err = b.Delete([]byte(k.key))
		} else {
			err = b.Put([]byte(k.key), encodeFragCount(c, k.version))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func validGroup(g FragmentGroup) error {
	if err := checkKeyFields(keyField{"account", g.Account, true}, keyField{"source", g.Source, false}, keyField{"dest", g.Dest, true}); err != nil {
		return err
	}
	if g.Total == 0 {
		return fmt.Errorf("%w: total 0", ErrInvalid)
	}
	return nil
}

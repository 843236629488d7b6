package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The records of the fragment buckets: keys, values and the per-account
// counters behind FragmentLimits.

// fragAll is the fragn key of the totals over all accounts (no account
// contains NUL; bbolt refuses an empty key).
const fragAll = "\x00"

const (
	fragVersion  = 1
	fragNVersion = 1
	fragTailLen  = 2 + 1 + 1 + 1 // ref, total, 0x00, seq
)

// fragGroupPrefix is the frag key of g without its sequence number.
func fragGroupPrefix(g FragmentGroup) []byte {
	b := make([]byte, 0, len(g.Account)+len(g.Source)+len(g.Dest)+3+fragTailLen)
	b = append(b, g.Account...)
	b = append(b, sep)
	b = append(b, g.Source...)
	b = append(b, sep)
	b = append(b, g.Dest...)
	b = append(b, sep)
	b = binary.BigEndian.AppendUint16(b, g.Ref)
	return append(b, g.Total, sep)
}

func fragKey(g FragmentGroup, seq uint8) []byte { return append(fragGroupPrefix(g), seq) }

// parseFragKey is the inverse of fragKey.
func parseFragKey(k []byte) (FragmentGroup, uint8, bool) {
	var g FragmentGroup
	var parts [3]string
	rest := k
	for i := range parts {
		j := bytes.IndexByte(rest, sep)
		if j < 0 {
			return g, 0, false
		}
		parts[i], rest = string(rest[:j]), rest[j+1:]
	}
	if len(rest) != fragTailLen || rest[3] != sep || parts[0] == "" || parts[2] == "" {
		return g, 0, false
	}
	g = FragmentGroup{Account: parts[0], Source: parts[1], Dest: parts[2],
		Ref: binary.BigEndian.Uint16(rest), Total: rest[2]}
	seq := rest[4]
	if g.Total == 0 || seq == 0 || seq > g.Total {
		return g, 0, false
	}
	return g, seq, true
}

func encodeFragment(f *Fragment) []byte {
	e := encoder{make([]byte, 0, 64+len(f.Data)+len(f.Enterprise)+len(f.Signature)+len(f.UserSignature))}
	e.u8(fragVersion)
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
	return e.b
}

// decodeFragment decodes the record stored under key k.
func decodeFragment(k, v []byte) (*Fragment, error) {
	g, seq, ok := parseFragKey(k)
	if !ok {
		return nil, fmt.Errorf("%w: frag key %q malformed", ErrCorrupt, k)
	}
	d := newDecoder(v)
	d.version(fragVersion, "fragment")
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

// fragCount is one fragn record.
type fragCount struct {
	Groups int64
	Bytes  int64
}

func encodeFragCount(c fragCount) []byte {
	b := []byte{fragNVersion}
	b = binary.AppendUvarint(b, uint64(c.Groups))
	return binary.AppendUvarint(b, uint64(c.Bytes))
}

func decodeFragCount(v []byte) (fragCount, error) {
	d := newDecoder(v)
	d.version(fragNVersion, "fragment counters")
	c := fragCount{Groups: int64(d.uvarint("groups")), Bytes: int64(d.uvarint("bytes"))}
	d.end("fragment counters")
	if d.err == nil && (c.Groups < 0 || c.Bytes < 0) {
		d.fail("fragment counters out of range")
	}
	return c, d.err
}

func (t *txn) fragCount(account string) (fragCount, error) {
	v := t.tx.Bucket(bucketFragN).Get([]byte(account))
	if v == nil {
		return fragCount{}, nil
	}
	return decodeFragCount(v)
}

// addFragCount adds to the counters of account and to the total (fragAll).
// A counter that drops to zero is deleted.
func (t *txn) addFragCount(account string, groups, bytes int64) error {
	b := t.tx.Bucket(bucketFragN)
	for _, k := range []string{account, fragAll} {
		c, err := t.fragCount(k)
		if err != nil {
			return err
		}
		c.Groups += groups
		c.Bytes += bytes
		if c.Groups < 0 || c.Bytes < 0 {
			return fmt.Errorf("%w: fragment counters of %q below zero", ErrCorrupt, k)
		}
		if c == (fragCount{}) {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), encodeFragCount(c))
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

package cluster

// The etcd encoding of the mirrored buckets (key layout: replica.go), its
// application to the local file, and the diff of a write.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// path is a decoded etcd key.
type path struct {
	buckets [][]byte
	tail    byte   // 'm', 's' or 'k'
	key     []byte // tail 'k'
}

func (p path) changed() [][]byte {
	if p.tail == keyTail {
		return append(slices.Clone(p.buckets), p.key)
	}
	return p.buckets
}

func (r *Replica) decode(k string) (path, bool) {
	rest, ok := strings.CutPrefix(k, r.prefix+dataPrefixSuffix)
	if !ok {
		return path{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return path{}, false
	}
	var p path
	for _, e := range parts[:len(parts)-1] {
		if len(e) < 2 || e[0] != bucketTag {
			return path{}, false
		}
		b, err := hex.DecodeString(e[1:])
		if err != nil {
			return path{}, false
		}
		p.buckets = append(p.buckets, b)
	}
	last := parts[len(parts)-1]
	switch {
	case last == markerTail || last == sequenceTail:
		p.tail = last[0]
	case len(last) > 1 && last[0] == keyTail:
		key, err := hex.DecodeString(last[1:])
		if err != nil {
			return path{}, false
		}
		p.tail, p.key = keyTail, key
	default:
		return path{}, false
	}
	return p, true
}

// bucketKey is the etcd key prefix of a bucket path ("P data/b…/b…/").
func (r *Replica) bucketKey(buckets [][]byte) string {
	var sb strings.Builder
	sb.WriteString(r.prefix)
	sb.WriteString(dataPrefixSuffix)
	for _, b := range buckets {
		sb.WriteByte(bucketTag)
		sb.WriteString(hex.EncodeToString(b))
		sb.WriteByte('/')
	}
	return sb.String()
}

func keyOf(bucketKey string, key []byte) string {
	return bucketKey + string(keyTail) + hex.EncodeToString(key)
}

// ensureBucket returns the bucket at path, creating it and its parents,
// replacing a plain value of the same name.
func ensureBucket(tx *bolt.Tx, buckets [][]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(buckets[0])
	if err != nil {
		return nil, err
	}
	for _, name := range buckets[1:] {
		nb, err := b.CreateBucketIfNotExists(name)
		if errors.Is(err, berrors.ErrIncompatibleValue) {
			if err = b.Delete(name); err == nil {
				nb, err = b.CreateBucket(name)
			}
		}
		if err != nil {
			return nil, err
		}
		b = nb
	}
	return b, nil
}

// lookupBucket returns the bucket at path or nil.
func lookupBucket(tx *bolt.Tx, buckets [][]byte) *bolt.Bucket {
	b := tx.Bucket(buckets[0])
	for _, name := range buckets[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket(name)
	}
	return b
}

// applyPut applies a put of etcd key k; it returns the changed path (nil
// for keys outside the mirrored buckets).
func (r *Replica) applyPut(tx *bolt.Tx, k string, v []byte) ([][]byte, error) {
	p, ok := r.decode(k)
	if !ok || !r.match(p.buckets[0]) {
		return nil, nil
	}
	b, err := ensureBucket(tx, p.buckets)
	if err != nil {
		return nil, err
	}
	switch p.tail {
	case 's':
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("sequence %q: %w", k, err)
		}
		if err := b.SetSequence(n); err != nil {
			return nil, err
		}
	case keyTail:
		if b.Bucket(p.key) != nil {
			if err := b.DeleteBucket(p.key); err != nil {
				return nil, err
			}
		}
		if err := b.Put(p.key, v); err != nil {
			return nil, err
		}
	}
	return p.changed(), nil
}

// applyDelete applies a delete of etcd key k. A delete of something that
// is already gone, or that became another type, is ignored.
func (r *Replica) applyDelete(tx *bolt.Tx, k string) ([][]byte, error) {
	p, ok := r.decode(k)
	if !ok || !r.match(p.buckets[0]) {
		return nil, nil
	}
	switch p.tail {
	case 'm':
		n := len(p.buckets)
		var err error
		if n == 1 {
			err = tx.DeleteBucket(p.buckets[0])
		} else if parent := lookupBucket(tx, p.buckets[:n-1]); parent != nil {
			err = parent.DeleteBucket(p.buckets[n-1])
		}
		if err != nil && !errors.Is(err, berrors.ErrBucketNotFound) && !errors.Is(err, berrors.ErrIncompatibleValue) {
			return nil, err
		}
	case 's':
		if b := lookupBucket(tx, p.buckets); b != nil {
			if err := b.SetSequence(0); err != nil {
				return nil, err
			}
		}
	case keyTail:
		if b := lookupBucket(tx, p.buckets); b != nil && b.Bucket(p.key) == nil {
			if err := b.Delete(p.key); err != nil {
				return nil, err
			}
		}
	}
	return p.changed(), nil
}

// emitBucket appends the ops that create (or, with del, delete) bucket b
// at path and everything in it. Values are copied.
func (r *Replica) emitBucket(b *bolt.Bucket, buckets [][]byte, del bool, ops *[]op) {
	bk := r.bucketKey(buckets)
	if del {
		*ops = append(*ops, op{key: bk + markerTail, del: true})
		if b.Sequence() != 0 {
			*ops = append(*ops, op{key: bk + sequenceTail, del: true})
		}
	} else {
		*ops = append(*ops, op{key: bk + markerTail, val: []byte{}})
		if s := b.Sequence(); s != 0 {
			*ops = append(*ops, op{key: bk + sequenceTail, val: []byte(strconv.FormatUint(s, 10))})
		}
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if sub := subBucket(b, k, v); sub != nil {
			r.emitBucket(sub, append(slices.Clip(buckets), slices.Clone(k)), del, ops)
			continue
		}
		if del {
			*ops = append(*ops, op{key: keyOf(bk, k), del: true})
		} else {
			*ops = append(*ops, op{key: keyOf(bk, k), val: append([]byte{}, v...)})
		}
	}
}

// subBucket returns the nested bucket at cursor position k, v, or nil for
// a value. A cursor returns a nil v for a bucket, but also for a value put
// as nil in the transaction at hand, hence the lookup.
func subBucket(b *bolt.Bucket, k, v []byte) *bolt.Bucket {
	if v != nil {
		return nil
	}
	return b.Bucket(k)
}

// diffTx appends the ops that turn the mirrored buckets of old into new's.
func (r *Replica) diffTx(old, new *bolt.Tx, ops *[]op) {
	names := map[string]bool{}
	collect := func(name []byte, _ *bolt.Bucket) error {
		if r.match(name) {
			names[string(name)] = true
		}
		return nil
	}
	_ = old.ForEach(collect)
	_ = new.ForEach(collect)
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}) {
		ob, nb := old.Bucket([]byte(n)), new.Bucket([]byte(n))
		p := [][]byte{[]byte(n)}
		switch {
		case ob == nil:
			r.emitBucket(nb, p, false, ops)
		case nb == nil:
			r.emitBucket(ob, p, true, ops)
		default:
			r.diffBucket(ob, nb, p, ops)
		}
	}
}

// diffBucket appends the ops that turn bucket ob into nb (both at path):
// a merge of their cursors, which return keys in byte order.
func (r *Replica) diffBucket(ob, nb *bolt.Bucket, buckets [][]byte, ops *[]op) {
	bk := r.bucketKey(buckets)
	if os, ns := ob.Sequence(), nb.Sequence(); os != ns {
		if ns == 0 {
			*ops = append(*ops, op{key: bk + sequenceTail, del: true})
		} else {
			*ops = append(*ops, op{key: bk + sequenceTail, val: []byte(strconv.FormatUint(ns, 10))})
		}
	}
	child := func(k []byte) [][]byte { return append(slices.Clip(buckets), slices.Clone(k)) }
	removed := func(k []byte, sub *bolt.Bucket) {
		if sub != nil {
			r.emitBucket(sub, child(k), true, ops)
		} else {
			*ops = append(*ops, op{key: keyOf(bk, k), del: true})
		}
	}
	added := func(k, v []byte, sub *bolt.Bucket) {
		if sub != nil {
			r.emitBucket(sub, child(k), false, ops)
		} else {
			*ops = append(*ops, op{key: keyOf(bk, k), val: append([]byte{}, v...)})
		}
	}
	oc, nc := ob.Cursor(), nb.Cursor()
	ok, ov := oc.First()
	nk, nv := nc.First()
	for ok != nil || nk != nil {
		c := 0
		switch {
		case ok == nil:
			c = 1
		case nk == nil:
			c = -1
		default:
			c = bytes.Compare(ok, nk)
		}
		switch {
		case c < 0:
			removed(ok, subBucket(ob, ok, ov))
			ok, ov = oc.Next()
		case c > 0:
			added(nk, nv, subBucket(nb, nk, nv))
			nk, nv = nc.Next()
		default:
			os, ns := subBucket(ob, ok, ov), subBucket(nb, nk, nv)
			switch {
			case os != nil && ns != nil:
				r.diffBucket(os, ns, child(nk), ops)
			case os != nil || ns != nil:
				removed(ok, os)
				added(nk, nv, ns)
			case !bytes.Equal(ov, nv):
				*ops = append(*ops, op{key: keyOf(bk, nk), val: append([]byte{}, nv...)})
			}
			ok, ov = oc.Next()
			nk, nv = nc.Next()
		}
	}
}

package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Messages the client split itself.
//
// An ESME that splits a long text itself (Kannel, Jasmin, most SMPP
// libraries) sends one submit_sm per part, each with a concatenation UDH
// or SAR TLVs, and expects one message_id per part. Each part is stored
// here as a Fragment — durably, before its submit_sm_resp — until the last
// part of its group arrives; then the gateway joins them, and
// EnqueueAssembled stores the message and deletes the parts in one
// transaction. A group that never completes is settled by RejectFragments.
//
// Buckets (see doc.go for the others):
//
//	frag    account 0x00 source 0x00 dest 0x00 ref (2 BE) total (1) 0x00 seq (1) → fragment record
//	fragid  part id (8 BE)                                → frag key
//	fragn   account (0x00 = all accounts)                 → version | groups (uvarint) | bytes (uvarint)
//	alias   part id (8 BE)                                → message id (8 BE)
//
// Part ids come from the msg bucket's sequence, like message ids: an id
// the client holds names either a pending part (fragid) or, once its group
// was consumed, a part of a message (alias) — never both, never a message
// id. The fragn counters make the caps (FragmentLimits) point reads.
//
// Crash safety: a part is on disk before the client hears its id. The
// message and the deletion of its parts are one transaction, and that
// transaction first checks that the parts are still there with the ids
// the caller read; so a crash between the last part's ack and the
// assembly (the group is found complete by the next FragmentGroups scan),
// or two assemblies racing, store the message exactly once.

// FragmentGroup names the parts of one message a client split itself:
// who sent them, from and to which addresses, with which concatenation
// reference and total. An 8-bit and a 16-bit reference of the same value
// name the same group.
type FragmentGroup struct {
	Account string
	Source  string
	Dest    string
	Ref     uint16
	Total   uint8
}

func (g FragmentGroup) String() string {
	return fmt.Sprintf("%s/%s→%s ref %d total %d", g.Account, g.Source, g.Dest, g.Ref, g.Total)
}

// Fragment is one stored part of a client-split message.
type Fragment struct {
	FragmentGroup
	Seq uint8 // 1..Total

	ID         uint64 // assigned by StoreFragment: the id the client is given
	Enterprise string // billing owner; StoreFragment sets it to Account if empty
	ArrivedAt  time.Time

	Coding uint8  // opaque to queue (the gateway's decoder's coding of Data)
	Data   []byte // the part's text data, unpacked, without UDH

	ClientCoding                           uint8 // data_coding as sent
	RegisteredDelivery                     uint8
	SourceTON, SourceNPI, DestTON, DestNPI uint8
	SendAt, ValidUntil                     time.Time
	// The signatures the account had when the part arrived, so that a
	// group assembled later (after a restart) is signed as it would have
	// been at once.
	Signature, UserSignature string
}

// FragmentLimits bound what pending groups may hold. Zero values take the
// defaults.
type FragmentLimits struct {
	MaxGroups int   // incomplete groups per account; default 10,000
	MaxBytes  int64 // Data of all pending parts of all accounts; default 16 MiB
}

// Defaults of FragmentLimits.
const (
	DefaultMaxFragmentGroups       = 10000
	DefaultMaxFragmentBytes  int64 = 16 << 20
)

// maxFragmentData bounds one part's Data (message_payload is at most 64 KiB).
const maxFragmentData = 64 << 10

// FragmentStored says what StoreFragment did.
type FragmentStored struct {
	ID        uint64 // the part's id
	Duplicate bool   // the same part was stored before: ID is the earlier one and nothing was written
	Complete  bool   // this part was the last one missing: the group can be assembled
}

// Errors of the fragment operations. Nothing was written.
var (
	// ErrFragmentConflict: a different part is already stored under the
	// same group and sequence number.
	ErrFragmentConflict = errors.New("a different part with this reference and sequence number is pending")
	// ErrFragmentsFull: storing the part would exceed FragmentLimits.
	ErrFragmentsFull = errors.New("too many parts waiting for reassembly")
	// ErrFragmentsGone: the group is not (any more) as the caller read it:
	// it was assembled or rejected meanwhile, or a part was added.
	ErrFragmentsGone = errors.New("fragment group changed or already consumed")
)

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
	for _, f := range []struct{ name, v string }{{"account", g.Account}, {"source", g.Source}, {"dest", g.Dest}} {
		if len(f.v) > maxField {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, f.name, maxField)
		}
		if strings.IndexByte(f.v, sep) >= 0 {
			return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, f.name)
		}
	}
	if g.Account == "" || g.Dest == "" {
		return fmt.Errorf("%w: account and dest are required", ErrInvalid)
	}
	if g.Total == 0 {
		return fmt.Errorf("%w: total 0", ErrInvalid)
	}
	return nil
}

// StoreFragment stores one part of a client-split message durably and
// gives it an id (from the message id sequence). When it returns nil the
// part is on disk: its id may be sent to the client.
//
// A part already stored under the same group and sequence number with
// the same Coding and Data is a client's retry: its earlier id comes back
// with Duplicate set and nothing is written. A different one fails with
// ErrFragmentConflict. A part that would start a group beyond
// lim.MaxGroups pending groups of its account, or take the Data of all
// pending parts beyond lim.MaxBytes, fails with ErrFragmentsFull.
//
// Complete is set when this part was the last one missing: the caller
// should read the group (Fragments), join it and store the message with
// EnqueueAssembled, or settle it with RejectFragments. If it does not
// (crash), FragmentGroups reports the group as complete.
func (s *Store) StoreFragment(ctx context.Context, f *Fragment, lim FragmentLimits) (FragmentStored, error) {
	if err := validGroup(f.FragmentGroup); err != nil {
		return FragmentStored{}, fmt.Errorf("queue: store fragment: %w", err)
	}
	if f.Seq == 0 || f.Seq > f.Total {
		return FragmentStored{}, fmt.Errorf("queue: store fragment: %w: part %d of %d", ErrInvalid, f.Seq, f.Total)
	}
	if len(f.Data) > maxFragmentData {
		return FragmentStored{}, fmt.Errorf("queue: store fragment: %w: %d octets of data", ErrInvalid, len(f.Data))
	}
	if lim.MaxGroups <= 0 {
		lim.MaxGroups = DefaultMaxFragmentGroups
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxFragmentBytes
	}
	c := *f
	c.Data = slices.Clone(f.Data)
	if c.Data == nil {
		c.Data = []byte{}
	}
	if c.Enterprise == "" {
		c.Enterprise = c.Account
	}
	if c.ArrivedAt.IsZero() {
		c.ArrivedAt = time.Now()
	}
	var res FragmentStored
	err := s.exec(ctx, func(t *txn) error {
		res = FragmentStored{}
		fb := t.tx.Bucket(bucketFrag)
		key := fragKey(c.FragmentGroup, c.Seq)
		if v := fb.Get(key); v != nil {
			old, err := decodeFragment(key, v)
			if err != nil {
				return err
			}
			if old.Coding == c.Coding && bytes.Equal(old.Data, c.Data) {
				res = FragmentStored{ID: old.ID, Duplicate: true}
				return nil
			}
			return soft(fmt.Errorf("%w: %s part %d (id %d)", ErrFragmentConflict, c.FragmentGroup, c.Seq, old.ID))
		}
		have := 0
		prefix := fragGroupPrefix(c.FragmentGroup)
		cur := fb.Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			have++
		}
		newGroup := int64(0)
		if have == 0 {
			newGroup = 1
			own, err := t.fragCount(c.Account)
			if err != nil {
				return err
			}
			if own.Groups >= int64(lim.MaxGroups) {
				return soft(fmt.Errorf("%w: account %q has %d incomplete messages", ErrFragmentsFull, c.Account, own.Groups))
			}
		}
		all, err := t.fragCount(fragAll)
		if err != nil {
			return err
		}
		if all.Bytes+int64(len(c.Data)) > lim.MaxBytes {
			return soft(fmt.Errorf("%w: %d octets pending", ErrFragmentsFull, all.Bytes))
		}
		// Preconditions hold: from here on the operation writes.
		id, err := t.msg.NextSequence()
		if err != nil {
			return err
		}
		rec := c
		rec.ID = id
		if err := fb.Put(key, encodeFragment(&rec)); err != nil {
			return err
		}
		if err := t.tx.Bucket(bucketFragID).Put(msgKey(id), key); err != nil {
			return err
		}
		if err := t.addFragCount(c.Account, newGroup, int64(len(c.Data))); err != nil {
			return err
		}
		res = FragmentStored{ID: id, Complete: have+1 == int(c.Total)}
		return nil
	})
	if err != nil {
		return FragmentStored{}, fmt.Errorf("queue: store fragment %s part %d: %w", f.FragmentGroup, f.Seq, err)
	}
	f.ID = res.ID
	return res, nil
}

// readGroup returns the parts of g present in b, in sequence order.
func readGroup(b *bolt.Bucket, g FragmentGroup) ([]*Fragment, error) {
	var out []*Fragment
	prefix := fragGroupPrefix(g)
	cur := b.Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		f, err := decodeFragment(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Fragments returns the pending parts of group g, in sequence order
// (none if it has no pending part). Each is a copy.
func (s *Store) Fragments(g FragmentGroup) ([]*Fragment, error) {
	var out []*Fragment
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = readGroup(tx.Bucket(bucketFrag), g)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: fragments %s: %w", g, err)
	}
	return out, nil
}

// FragmentGroupInfo describes one pending group (FragmentGroups).
type FragmentGroupInfo struct {
	Group    FragmentGroup
	IDs      []uint64  // ids of the parts present, in sequence order
	Started  time.Time // arrival of the earliest part present
	Complete bool      // every part is present
}

// FragmentGroups lists every pending group, for housekeeping: groups
// complete but never assembled (a crash after the last part's ack), and
// incomplete ones to expire. It reads the whole frag bucket in one
// read-only transaction; its size is bounded by FragmentLimits.
func (s *Store) FragmentGroups() ([]FragmentGroupInfo, error) {
	var out []FragmentGroupInfo
	err := s.view(func(tx *bolt.Tx) error {
		out = nil
		var prev []byte
		return tx.Bucket(bucketFrag).ForEach(func(k, v []byte) error {
			f, err := decodeFragment(k, v)
			if err != nil {
				return err
			}
			prefix := k[:len(k)-1]
			if prev == nil || !bytes.Equal(prefix, prev) {
				prev = append(prev[:0], prefix...)
				out = append(out, FragmentGroupInfo{Group: f.FragmentGroup, Started: f.ArrivedAt})
			}
			gi := &out[len(out)-1]
			gi.IDs = append(gi.IDs, f.ID)
			if f.ArrivedAt.Before(gi.Started) {
				gi.Started = f.ArrivedAt
			}
			gi.Complete = len(gi.IDs) == int(gi.Group.Total)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: fragment groups: %w", err)
	}
	return out, nil
}

// FragmentByID returns the pending part with id, or ErrNotFound (no such
// id, or its group was consumed: see AliasOf). It does not check the
// owner.
func (s *Store) FragmentByID(id uint64) (*Fragment, error) {
	var f *Fragment
	err := s.view(func(tx *bolt.Tx) error {
		key := tx.Bucket(bucketFragID).Get(msgKey(id))
		if key == nil {
			return fmt.Errorf("%w: part %d", ErrNotFound, id)
		}
		v := tx.Bucket(bucketFrag).Get(key)
		if v == nil {
			return fmt.Errorf("%w: fragid %d names a missing part", ErrCorrupt, id)
		}
		var err error
		f, err = decodeFragment(key, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: fragment %d: %w", id, err)
	}
	return f, nil
}

// AliasOf returns the id of the message that the part with id was
// reassembled into, or ErrNotFound.
func (s *Store) AliasOf(id uint64) (uint64, error) {
	var msgID uint64
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAlias).Get(msgKey(id))
		if v == nil {
			return fmt.Errorf("%w: alias %d", ErrNotFound, id)
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: alias %d: %d bytes", ErrCorrupt, id, len(v))
		}
		msgID = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: alias: %w", err)
	}
	return msgID, nil
}

// takeGroup checks that the pending parts of g are exactly ids (in
// sequence order) — and all of them when complete — and deletes them,
// their fragid keys and their count. It returns the parts. A group that
// differs is a soft ErrFragmentsGone, with nothing written.
func (t *txn) takeGroup(g FragmentGroup, ids []uint64, complete bool) ([]*Fragment, error) {
	fb := t.tx.Bucket(bucketFrag)
	frags, err := readGroup(fb, g)
	if err != nil {
		return nil, err
	}
	same := len(frags) == len(ids) && len(ids) > 0 && (!complete || len(frags) == int(g.Total))
	for i := 0; same && i < len(frags); i++ {
		same = frags[i].ID == ids[i]
	}
	if !same {
		return nil, soft(fmt.Errorf("%w: %s", ErrFragmentsGone, g))
	}
	var n int64
	for _, f := range frags {
		if err := fb.Delete(fragKey(g, f.Seq)); err != nil {
			return nil, err
		}
		if err := t.tx.Bucket(bucketFragID).Delete(msgKey(f.ID)); err != nil {
			return nil, err
		}
		n += int64(len(f.Data))
	}
	return frags, t.addFragCount(g.Account, -1, -n)
}

// putAliases maps each of m's Aliases to m.
func (t *txn) putAliases(m *Message) error {
	if len(m.Aliases) == 0 {
		return nil
	}
	b := t.tx.Bucket(bucketAlias)
	for _, a := range m.Aliases {
		if err := b.Put(msgKey(a), msgKey(m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// EnqueueAssembled stores m, the message joined from the complete group
// g, and deletes g's parts, in one transaction. m.Aliases must be the ids
// of g's parts in sequence order, as the caller read them (Fragments);
// if g no longer holds exactly those parts — another call assembled or
// rejected it, or the group was reused — nothing is written and the
// error wraps ErrFragmentsGone: the message exists already, or the parts
// are settled otherwise. So a crash or a race can neither lose the
// message nor store it twice.
//
// Otherwise it is Enqueue of one message under EnqueueLimit's quota: a
// refusal wraps ErrQuota and leaves the group pending (settle it with
// RejectFragments). On success m has its ID, Ref and times set, and each
// alias resolves to it (AliasOf).
func (s *Store) EnqueueAssembled(ctx context.Context, limit int64, g FragmentGroup, m *Message) error {
	if err := validate(m); err != nil {
		return fmt.Errorf("queue: enqueue assembled %s: %w", g, err)
	}
	if len(m.Aliases) != int(g.Total) || m.Account != g.Account {
		return fmt.Errorf("queue: enqueue assembled %s: %w: %d aliases, account %q", g, ErrInvalid, len(m.Aliases), m.Account)
	}
	work := prepareNew(m, time.Now())
	err := s.exec(ctx, func(t *txn) error {
		q, err := t.checkQuota(work, limit)
		if err != nil {
			return err
		}
		if q != nil {
			return soft(q)
		}
		if _, err := t.takeGroup(g, work.Aliases, true); err != nil {
			return err
		}
		var first uint64
		return t.storeNew(work, &first)
	})
	if err != nil {
		return fmt.Errorf("queue: enqueue assembled %s: %w", g, err)
	}
	*m = *work
	return nil
}

// RejectFragments settles the parts ids of group g (exactly those
// pending, in sequence order; else ErrFragmentsGone and nothing written)
// without sending anything: they were acknowledged to the client, so
// they become a message that is final at once, every part Rejected with
// errCode (e.g. "incomplete", "too_long"), with the ids as its Aliases,
// text as its Text. Its receipt is queued like any other (one per alias
// at the gateway). Nothing is reserved or billed. It returns the
// message's id.
func (s *Store) RejectFragments(ctx context.Context, g FragmentGroup, ids []uint64, errCode, text string) (uint64, error) {
	if len(ids) == 0 || len(ids) > int(g.Total) {
		return 0, fmt.Errorf("queue: reject fragments %s: %w: %d ids", g, ErrInvalid, len(ids))
	}
	var id uint64
	err := s.exec(ctx, func(t *txn) error {
		id = 0
		frags, err := t.takeGroup(g, ids, false)
		if err != nil {
			return err
		}
		first, now := frags[0], time.Now()
		m := &Message{
			Account: g.Account, Enterprise: first.Enterprise,
			Source: g.Source, Dest: g.Dest,
			SourceTON: first.SourceTON, SourceNPI: first.SourceNPI, DestTON: first.DestTON, DestNPI: first.DestNPI,
			RegisteredDelivery: first.RegisteredDelivery, ClientCoding: first.ClientCoding,
			Text: text, AcceptedAt: first.ArrivedAt,
			Aliases: slices.Clone(ids),
		}
		for _, f := range frags {
			if f.ArrivedAt.Before(m.AcceptedAt) {
				m.AcceptedAt = f.ArrivedAt
			}
			m.Parts = append(m.Parts, Part{State: StateRejected, DoneAt: now, ErrCode: errCode})
		}
		if m.ID, err = t.msg.NextSequence(); err != nil {
			return err
		}
		id = m.ID
		t.counts[StateRejected] += len(m.Parts)
		if m.wantsDLR() {
			if err := t.dlrout.Put(dlroutKey(m.Account, m.ID), nil); err != nil {
				return err
			}
			t.ready = append(t.ready, m.Account)
		} else {
			m.DLRForwarded = true
		}
		if err := t.putMsg(m); err != nil {
			return err
		}
		return t.putAliases(m)
	})
	if err != nil {
		return 0, fmt.Errorf("queue: reject fragments %s: %w", g, err)
	}
	return id, nil
}

// checkFragments verifies the buckets of client-split messages for Check:
// every alias key names a message that lists it (aliasOf, from the msg
// scan) and every alias a message lists is indexed (Purge deletes a
// message's aliases with it); frag records decode and are indexed in
// fragid, and fragid names only them; part ids are neither message ids
// nor aliases; fragn equals a recount. It returns the highest part id
// seen, for the sequence check.
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
		c, all := counts[f.Account], counts[fragAll]
		if prefix := k[:len(k)-1]; !bytes.Equal(prefix, prev) {
			prev = append(prev[:0], prefix...)
			c.Groups++
			all.Groups++
		}
		c.Bytes += int64(len(f.Data))
		all.Bytes += int64(len(f.Data))
		counts[f.Account], counts[fragAll] = c, all
		return nil
	})
	_ = fragIDB.ForEach(func(k, v []byte) error {
		if len(k) != 8 || fragB.Get(v) == nil {
			bad("fragid %x → %q: no such part", k, v)
		}
		return nil
	})
	_ = tx.Bucket(bucketFragN).ForEach(func(k, v []byte) error {
		c, err := decodeFragCount(v)
		switch {
		case err != nil:
			bad("fragn %q: %v", k, err)
		case counts[string(k)] != c:
			bad("fragn %q: stored %+v, parts say %+v", k, c, counts[string(k)])
		}
		delete(counts, string(k))
		return nil
	})
	for k, c := range counts {
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

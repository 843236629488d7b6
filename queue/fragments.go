package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
//	fragn   account                                       → version | groups (uvarint) | bytes (uvarint)
//	        0x00 enterprise                               → version | 0 | bytes    (the enterprise's share)
//	        0x00                                          → version | groups | bytes  (all accounts)
//	alias   part id (8 BE)                                → message id (8 BE)
//
// Part ids come from the msg bucket's sequence, like message ids: an id
// the client holds names either a pending part (fragid) or, once its group
// was consumed, a part of a message (alias) — never both, never a message
// id. The fragn counters make the caps (FragmentLimits) point reads; they
// change in the transaction that stores or deletes the parts they count.
//
// Crash safety: a part is on disk before the client hears its id. The
// message and the deletion of its parts are one transaction, and that
// transaction first checks that the parts are still there with the ids
// the caller read; so a crash between the last part's ack and the
// assembly (the group is found complete by the next FragmentGroups scan),
// or two assemblies racing, store the message exactly once. Whatever the
// joined message takes from its parts is in their records (the priority
// too: GroupPriority), so the message assembled after a restart is the
// one the live path would have stored.

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
	// Priority: the part's submit_sm asked for priority (priority_flag
	// 1–3), stored so that a group assembled later (after a restart, by
	// the FragmentGroups scan) is sent with it as it would have been at
	// once: see GroupPriority.
	Priority bool
}

// GroupPriority reports whether the message joined from frags goes with
// priority (Message.Priority): if any of its parts asked for it. The ESME
// sets priority_flag per submit_sm (SMPP 3.4 §5.2.14), so per part, and
// nothing in the protocol makes the parts of one message agree (a client
// may set it on one part only); the message is sent whole, and is not
// partly urgent, so one part that asks is enough.
func GroupPriority(frags []*Fragment) bool {
	return slices.ContainsFunc(frags, func(f *Fragment) bool { return f.Priority })
}

// FragmentLimits bound what pending groups may hold. Zero values take the
// defaults.
//
// The bytes are a pool all enterprises share, so each enterprise has a
// fixed share of it, MaxEnterpriseBytes: an enterprise that opens groups
// it never completes fills its own share and is refused, while the rest
// of the pool stays free for the others. While k enterprises hold their
// whole share, the others still have MaxBytes − k·MaxEnterpriseBytes;
// with the default quarter, up to three abusers at once leave a quarter
// of the pool (4 MiB: some 30,000 parts of 140 octets) to everyone else.
// A share that shrinks as more enterprises have parts pending (MaxBytes /
// n) would not do: what an abuser stored while it was alone was
// acknowledged and cannot be taken back, so the pool would still be full
// when the next enterprise arrives.
type FragmentLimits struct {
	MaxGroups          int   // incomplete groups per account; default 10,000
	MaxBytes           int64 // Data of all pending parts of all accounts; default 16 MiB
	MaxEnterpriseBytes int64 // Data of the pending parts of one enterprise; default MaxBytes / 4
}

// Defaults of FragmentLimits.
const (
	DefaultMaxFragmentGroups       = 10000
	DefaultMaxFragmentBytes  int64 = 16 << 20
	// DefaultEnterpriseFragmentShare: MaxEnterpriseBytes defaults to
	// MaxBytes / DefaultEnterpriseFragmentShare.
	DefaultEnterpriseFragmentShare = 4
)

func (lim FragmentLimits) withDefaults() FragmentLimits {
	if lim.MaxGroups <= 0 {
		lim.MaxGroups = DefaultMaxFragmentGroups
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxFragmentBytes
	}
	if lim.MaxEnterpriseBytes <= 0 {
		lim.MaxEnterpriseBytes = lim.MaxBytes / DefaultEnterpriseFragmentShare
	}
	return lim
}

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

// StoreFragment stores one part of a client-split message durably and
// gives it an id (from the message id sequence). When it returns nil the
// part is on disk: its id may be sent to the client.
//
// A part already stored under the same group and sequence number with
// the same Coding and Data is a client's retry: its earlier id comes back
// with Duplicate set and nothing is written. A different one fails with
// ErrFragmentConflict. A part that would start a group beyond
// lim.MaxGroups pending groups of its account, or take the Data of the
// pending parts of its enterprise beyond lim.MaxEnterpriseBytes or of all
// beyond lim.MaxBytes, fails with ErrFragmentsFull.
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
	lim = lim.withDefaults()
	c := *f
	c.Data = slices.Clone(f.Data)
	if c.Data == nil {
		c.Data = []byte{}
	}
	if c.Enterprise == "" {
		c.Enterprise = c.Account
	}
	if err := checkKeyFields(keyField{"enterprise", c.Enterprise, true}); err != nil {
		return FragmentStored{}, fmt.Errorf("queue: store fragment: %w", err)
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
		ent, err := t.fragEntBytes(c.Enterprise)
		if err != nil {
			return err
		}
		if ent+int64(len(c.Data)) > lim.MaxEnterpriseBytes {
			return soft(fmt.Errorf("%w: enterprise %q has %d octets pending (its share: %d)", ErrFragmentsFull, c.Enterprise, ent, lim.MaxEnterpriseBytes))
		}
		all, err := t.fragCount(fragAll)
		if err != nil {
			return err
		}
		if all.Bytes+int64(len(c.Data)) > lim.MaxBytes {
			return soft(fmt.Errorf("%w: %d octets pending", ErrFragmentsFull, all.Bytes))
		}
		// Preconditions hold: from here on the operation writes.
		if err := t.upgradeFragN(); err != nil {
			return err
		}
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
		if err := t.addFragCount(c.Account, c.Enterprise, newGroup, int64(len(c.Data))); err != nil {
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
	return readPrefixed(b, fragGroupPrefix(g), decodeFragment)
}

// readPrefixed decodes every record of b under prefix, in key order.
func readPrefixed[T any](b *bolt.Bucket, prefix []byte, decode func(k, v []byte) (T, error)) ([]T, error) {
	var out []T
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		x, err := decode(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
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

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

// Parts of a reply (MO) the SMSC split.
//
// A handset's long reply reaches the gateway as several deliver_sm (or
// data_sm), each with a concatenation UDH or SAR TLVs. Each part is
// stored here — durably, before its deliver_sm_resp — until the last
// part of its group arrives; then the gateway joins them, and
// StoreJoinedMO stores the one reply and deletes the parts in one
// transaction. The model is fragments.go's (parts an ESME split itself),
// simpler: a part has no id of its own (the SMSC is answered, not given
// one), so there are no aliases; a part sent again (the SMSC resending
// after a lost deliver_sm_resp) overwrites the one stored.
//
// Buckets:
//
//	moparts  upstream 0x00 source 0x00 dest 0x00 ref (2 BE) total (1) 0x00 seq (1) → part record
//	mopartn  upstream → version | parts (uvarint) | bytes (uvarint)
//
// The mopartn counters make the caps (MOPartLimits) point reads; they
// change in the transaction that stores or deletes the parts they count.
//
// Crash safety: a part is on disk before the SMSC hears OK. The reply and
// the deletion of its parts are one transaction, which first checks that
// the parts are still there as the caller read them: a crash between the
// last part's answer and the assembly (the group is found complete by the
// next MOPartGroups scan), or two assemblies racing, store the reply
// exactly once.

var (
	bucketMOParts = []byte("moparts")
	bucketMOPartN = []byte("mopartn")
)

const (
	moPartVersion  = 1
	moPartNVersion = 1
	// moPartBinaryVersion: a binary part's record, v1's fields then its
	// data_coding and UDH. Text parts keep writing v1, which a release
	// from before binary replies reads.
	moPartBinaryVersion = 2
	// moPartPortsVersion: a binary part with port TLVs, v2's fields then
	// which ports are set (bit 0 source, bit 1 destination) and both.
	// Parts without them keep writing v2.
	moPartPortsVersion = 3
)

// MOPartGroup names the parts of one reply: the upstream they came on,
// the handset, the destination, the concatenation reference and total.
// An 8-bit and a 16-bit reference of the same value name the same group.
type MOPartGroup struct {
	Upstream string
	Source   string
	Dest     string
	Ref      uint16
	Total    uint8
}

func (g MOPartGroup) String() string {
	return fmt.Sprintf("%s:%s→%s ref %d total %d", g.Upstream, g.Source, g.Dest, g.Ref, g.Total)
}

// MOPart is one stored part of a reply.
type MOPart struct {
	MOPartGroup
	Seq uint8 // 1..Total

	Coding uint8  // opaque to queue (segment.Coding of Data)
	Data   []byte // segment.Fragment.Data: unpacked septets, UTF-16BE or octets

	// Binary: Data are octets not read as text; DataCoding and UDH are
	// then the SMSC's, as MO's.
	Binary     bool
	DataCoding uint8
	UDH        []byte
	// SourcePort and DestPort are a binary part's port TLVs, as MO's.
	SourcePort, DestPort *uint16

	SourceTON, SourceNPI uint8
	ReceivedAt           time.Time
}

// MOPartLimits bound the parts one upstream may hold pending. Zero
// values take the defaults.
type MOPartLimits struct {
	MaxParts int   // default DefaultMaxMOParts
	MaxBytes int64 // Data of the parts; default DefaultMaxMOPartBytes
}

// Defaults of MOPartLimits: far above what an SMSC's honest long replies
// keep waiting (their parts come seconds apart), far below what hurts
// the store.
const (
	DefaultMaxMOParts           = 10000
	DefaultMaxMOPartBytes int64 = 4 << 20
)

func (lim MOPartLimits) withDefaults() MOPartLimits {
	if lim.MaxParts <= 0 {
		lim.MaxParts = DefaultMaxMOParts
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxMOPartBytes
	}
	return lim
}

// Errors of the MO part operations. Nothing was written.
var (
	// ErrMOPartsFull: storing the part would exceed MOPartLimits.
	ErrMOPartsFull = errors.New("too many reply parts waiting for the rest of their reply")
	// ErrMOPartsGone: the group is not (any more) as the caller read it.
	ErrMOPartsGone = errors.New("reply parts changed or already joined")
)

// StoreMOPart stores one part of a reply durably: when it returns nil the
// SMSC may be answered. A part already stored under the same group and
// sequence number is replaced (the SMSC sent it again); one of a reply
// joined lately, with the same data, is not stored: ErrMOPartJoined
// (mojoined.go), and the SMSC may be answered too. A new part that
// would take its upstream's pending parts beyond lim fails with
// ErrMOPartsFull; a part whose fields cannot be a key fails with
// ErrInvalid: the caller stores it as a reply of its own.
//
// complete is set when every part of the group is stored: the caller
// should read the group (MOParts), join it and store it (StoreJoinedMO).
// If it does not (a crash), MOPartGroups reports the group complete.
func (s *Store) StoreMOPart(ctx context.Context, p *MOPart, lim MOPartLimits) (complete bool, err error) {
	if err := validMOPart(p); err != nil {
		return false, fmt.Errorf("queue: store mo part: %w", err)
	}
	lim = lim.withDefaults()
	rec := *p
	rec.Data, rec.UDH = slices.Clone(p.Data), slices.Clone(p.UDH)
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = time.Now()
	}
	v := encodeMOPart(&rec)
	err = s.exec(ctx, func(t *txn) error {
		complete = false
		if joinedAgain(t.tx.Bucket(bucketMOJoined), &rec) {
			return soft(fmt.Errorf("%w: %s part %d", ErrMOPartJoined, rec.MOPartGroup, rec.Seq))
		}
		b := t.tx.Bucket(bucketMOParts)
		key := moPartKey(rec.MOPartGroup, rec.Seq)
		delta := moPartCount{Parts: 1, Bytes: int64(len(rec.Data))}
		if old := b.Get(key); old != nil {
			o, err := decodeMOPart(key, old)
			if err != nil {
				return err
			}
			delta = moPartCount{Bytes: int64(len(rec.Data)) - int64(len(o.Data))}
		}
		n, err := t.moPartCount(rec.Upstream)
		if err != nil {
			return err
		}
		if n.Parts+delta.Parts > int64(lim.MaxParts) || delta.Bytes > 0 && n.Bytes+delta.Bytes > lim.MaxBytes {
			return soft(fmt.Errorf("%w: upstream %q holds %d parts, %d octets", ErrMOPartsFull, rec.Upstream, n.Parts, n.Bytes))
		}
		// Preconditions hold: from here on the operation writes.
		if err := b.Put(key, v); err != nil {
			return err
		}
		if err := t.addMOPartCount(rec.Upstream, delta); err != nil {
			return err
		}
		complete = countGroup(b, moPartGroupPrefix(rec.MOPartGroup)) == int(rec.Total)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("queue: store mo part %s part %d: %w", p.MOPartGroup, p.Seq, err)
	}
	return complete, nil
}

func validMOPart(p *MOPart) error {
	if err := checkKeyFields(keyField{"upstream", p.Upstream, true}, keyField{"source", p.Source, false}, keyField{"dest", p.Dest, false}); err != nil {
		return err
	}
	if p.Total == 0 || p.Seq == 0 || p.Seq > p.Total {
		return fmt.Errorf("%w: part %d of %d", ErrInvalid, p.Seq, p.Total)
	}
	if len(p.Data) > maxFragmentData {
		return fmt.Errorf("%w: %d octets of data", ErrInvalid, len(p.Data))
	}
	if len(p.UDH) > maxUDH || !p.Binary && (p.DataCoding != 0 || p.UDH != nil || p.SourcePort != nil || p.DestPort != nil) {
		return fmt.Errorf("%w: %d octets of UDH, data_coding 0x%02x for a text part", ErrInvalid, len(p.UDH), p.DataCoding)
	}
	return nil
}

func countGroup(b *bolt.Bucket, prefix []byte) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// readMOGroup returns the parts of g present in b, in sequence order.
func readMOGroup(b *bolt.Bucket, g MOPartGroup) ([]*MOPart, error) {
	return readPrefixed(b, moPartGroupPrefix(g), decodeMOPart)
}

// MOParts returns the stored parts of g in sequence order (none if it
// has none). Each is a copy.
func (s *Store) MOParts(g MOPartGroup) ([]*MOPart, error) {
	var out []*MOPart
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = readMOGroup(tx.Bucket(bucketMOParts), g)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: mo parts %s: %w", g, err)
	}
	return out, nil
}

// MOPartGroupInfo describes one group with parts stored (MOPartGroups).
type MOPartGroupInfo struct {
	Group    MOPartGroup
	Parts    int       // parts present
	Started  time.Time // arrival of the earliest part present
	Complete bool      // every part is present
}

// MOPartGroups lists every group with parts stored, for housekeeping:
// complete groups never joined (a crash after the last part's answer),
// and incomplete ones to settle at their timeout. It reads the whole
// moparts bucket in one read-only transaction; its size is bounded by
// MOPartLimits per upstream. A part that does not decode is reported
// (damaged.go) and left out, so that one damaged record does not hold up
// the others' settling; Check names it.
func (s *Store) MOPartGroups() ([]MOPartGroupInfo, error) {
	var out []MOPartGroupInfo
	err := s.view(func(tx *bolt.Tx) error {
		out = nil
		var prev []byte
		return tx.Bucket(bucketMOParts).ForEach(func(k, v []byte) error {
			p, err := decodeMOPart(k, v)
			if err != nil {
				s.reportDamaged(fmt.Sprintf("moparts/%x", k), "queue: reply part that does not read (run Check)", "err", err)
				return nil
			}
			prefix := k[:len(k)-1]
			if prev == nil || !bytes.Equal(prefix, prev) {
				prev = append(prev[:0], prefix...)
				out = append(out, MOPartGroupInfo{Group: p.MOPartGroup, Started: p.ReceivedAt})
			}
			gi := &out[len(out)-1]
			gi.Parts++
			if p.ReceivedAt.Before(gi.Started) {
				gi.Started = p.ReceivedAt
			}
			gi.Complete = gi.Parts == int(gi.Group.Total)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("queue: mo part groups: %w", err)
	}
	return out, nil
}

// StoreJoinedMO stores m, the reply joined from parts (one group's, in
// sequence order, as MOParts returned them: all of the group, or those
// present when it timed out), and deletes the parts, in one transaction.
// If the group no longer holds exactly those parts — another call joined
// it, or a part came (again) meanwhile — nothing is written and the error
// wraps ErrMOPartsGone. Otherwise it is StoreMO.
func (s *Store) StoreJoinedMO(ctx context.Context, parts []*MOPart, m *MO) error {
	if len(parts) == 0 {
		return fmt.Errorf("queue: store joined mo: %w: no parts", ErrInvalid)
	}
	g := parts[0].MOPartGroup
	if err := validateMO(m); err != nil {
		return fmt.Errorf("queue: store joined mo %s: %w", g, err)
	}
	want := make([][]byte, len(parts))
	for i, p := range parts {
		if p.MOPartGroup != g {
			return fmt.Errorf("queue: store joined mo %s: %w: parts of two groups", g, ErrInvalid)
		}
		want[i] = encodeMOPart(p)
	}
	var id uint64
	err := s.exec(ctx, func(t *txn) error {
		if err := t.takeMOParts(g, parts, want); err != nil {
			return err
		}
		if err := t.putJoined(g, parts, time.Now()); err != nil {
			return err
		}
		var err error
		id, err = t.storeMO(m)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: store joined mo %s: %w", g, err)
	}
	m.ID = id
	return nil
}

// takeMOParts checks that the parts of g stored are exactly parts, with
// the records want, and deletes them and their counts. A group that
// differs is a soft ErrMOPartsGone, with nothing written.
func (t *txn) takeMOParts(g MOPartGroup, parts []*MOPart, want [][]byte) error {
	b := t.tx.Bucket(bucketMOParts)
	prefix := moPartGroupPrefix(g)
	c := b.Cursor()
	i := 0
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if i == len(parts) || k[len(k)-1] != parts[i].Seq || !bytes.Equal(v, want[i]) {
			return soft(fmt.Errorf("%w: %s", ErrMOPartsGone, g))
		}
		i++
	}
	if i != len(parts) {
		return soft(fmt.Errorf("%w: %s", ErrMOPartsGone, g))
	}
	var sum moPartCount
	for _, p := range parts {
		if err := b.Delete(moPartKey(g, p.Seq)); err != nil {
			return err
		}
		sum.Parts--
		sum.Bytes -= int64(len(p.Data))
	}
	return t.addMOPartCount(g.Upstream, sum)
}

// moPartGroupPrefix is the moparts key of g without its sequence number.
func moPartGroupPrefix(g MOPartGroup) []byte {
	return concatPrefix(g.Upstream, g.Source, g.Dest, g.Ref, g.Total)
}

func moPartKey(g MOPartGroup, seq uint8) []byte { return append(moPartGroupPrefix(g), seq) }

// parseMOPartKey is the inverse of moPartKey.
func parseMOPartKey(k []byte) (MOPartGroup, uint8, bool) {
	c, ok := parseConcatKey(k)
	if !ok || len(c.f[0]) > maxField || len(c.f[1]) > maxField || len(c.f[2]) > maxField {
		return MOPartGroup{}, 0, false
	}
	return MOPartGroup{Upstream: c.f[0], Source: c.f[1], Dest: c.f[2], Ref: c.ref, Total: c.total}, c.seq, true
}

// encodeMOPart is a part's record; the group and sequence number are in
// its key.
func encodeMOPart(p *MOPart) []byte {
	e := encoder{make([]byte, 0, 24+len(p.Data)+len(p.UDH))}
	v := uint8(moPartVersion)
	switch {
	case p.Binary && (p.SourcePort != nil || p.DestPort != nil):
		v = moPartPortsVersion
	case p.Binary:
		v = moPartBinaryVersion
	}
	e.u8(v)
	e.time(p.ReceivedAt)
	e.u8(p.Coding)
	e.bytes(p.Data)
	e.u8(p.SourceTON)
	e.u8(p.SourceNPI)
	if p.Binary {
		e.u8(p.DataCoding)
		e.bytes(p.UDH)
	}
	if v == moPartPortsVersion {
		var set uint8
		var src, dst uint16
		if p.SourcePort != nil {
			set, src = set|1, *p.SourcePort
		}
		if p.DestPort != nil {
			set, dst = set|2, *p.DestPort
		}
		e.u8(set)
		e.u16(src)
		e.u16(dst)
	}
	return e.b
}

// decodeMOPart decodes the record stored under key k.
func decodeMOPart(k, v []byte) (*MOPart, error) {
	g, seq, ok := parseMOPartKey(k)
	if !ok {
		return nil, fmt.Errorf("%w: moparts key %q malformed", ErrCorrupt, k)
	}
	d := newDecoder(v)
	version := d.u8("mo part version")
	if d.err == nil && version != moPartVersion && version != moPartBinaryVersion && version != moPartPortsVersion {
		d.fail("mo part: unknown version %d", version)
	}
	p := &MOPart{MOPartGroup: g, Seq: seq}
	p.ReceivedAt = d.time("received_at")
	p.Coding = d.u8("coding")
	p.Data = d.bytes("data")
	p.SourceTON = d.u8("source_ton")
	p.SourceNPI = d.u8("source_npi")
	if version == moPartBinaryVersion || version == moPartPortsVersion {
		p.Binary = true
		p.DataCoding = d.u8("data_coding")
		if p.UDH = d.bytes("udh"); len(p.UDH) == 0 {
			p.UDH = nil
		}
		if d.err == nil && len(p.UDH) > maxUDH {
			d.fail("mo part: %d octets of UDH", len(p.UDH))
		}
	}
	if version == moPartPortsVersion {
		set := d.u8("ports set")
		src, dst := d.u16("source_port"), d.u16("destination_port")
		if set&1 != 0 {
			p.SourcePort = &src
		}
		if set&2 != 0 {
			p.DestPort = &dst
		}
		if d.err == nil && (set == 0 || set > 3) {
			d.fail("mo part: ports set 0x%02x", set)
		}
	}
	d.end("mo part")
	if d.err == nil && len(p.Data) > maxFragmentData {
		d.fail("mo part: %d octets of data", len(p.Data))
	}
	if d.err != nil {
		return nil, d.err
	}
	if p.Data == nil {
		p.Data = []byte{}
	}
	return p, nil
}

// moPartCount is one mopartn record: an upstream's pending parts.
type moPartCount struct {
	Parts int64
	Bytes int64
}

func encodeMOPartCount(c moPartCount) []byte {
	b := []byte{moPartNVersion}
	b = binary.AppendUvarint(b, uint64(c.Parts))
	return binary.AppendUvarint(b, uint64(c.Bytes))
}

func decodeMOPartCount(v []byte) (moPartCount, error) {
	d := newDecoder(v)
	d.version(moPartNVersion, "mo part counters")
	c := moPartCount{Parts: int64(d.uvarint("parts")), Bytes: int64(d.uvarint("bytes"))}
	d.end("mo part counters")
	if d.err == nil && (c.Parts <= 0 || c.Bytes < 0) {
		d.fail("mo part counters out of range")
	}
	return c, d.err
}

func (t *txn) moPartCount(upstream string) (moPartCount, error) {
	v := t.tx.Bucket(bucketMOPartN).Get([]byte(upstream))
	if v == nil {
		return moPartCount{}, nil
	}
	return decodeMOPartCount(v)
}

// addMOPartCount adds d to upstream's counters; one that drops to no
// part is deleted.
func (t *txn) addMOPartCount(upstream string, d moPartCount) error {
	c, err := t.moPartCount(upstream)
	if err != nil {
		return err
	}
	c.Parts += d.Parts
	c.Bytes += d.Bytes
	b := t.tx.Bucket(bucketMOPartN)
	switch {
	case c.Parts < 0 || c.Bytes < 0 || c.Parts == 0 && c.Bytes != 0:
		return fmt.Errorf("%w: mo part counters of %q: %d parts, %d octets", ErrCorrupt, upstream, c.Parts, c.Bytes)
	case c.Parts == 0:
		return b.Delete([]byte(upstream))
	}
	return b.Put([]byte(upstream), encodeMOPartCount(c))
}

// MOPartsPending returns the parts pending of upstream and their Data's
// octets (the counters MOPartLimits bound).
func (s *Store) MOPartsPending(upstream string) (parts int, octets int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMOPartN).Get([]byte(upstream))
		if v == nil {
			return nil
		}
		c, err := decodeMOPartCount(v)
		parts, octets = int(c.Parts), c.Bytes
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue: mo parts pending: %w", err)
	}
	return parts, octets, nil
}

// checkMOParts verifies the moparts keys and records decode and the
// mopartn counters are their sums.
func checkMOParts(tx *bolt.Tx, bad func(format string, args ...any)) error {
	pb, nb := tx.Bucket(bucketMOParts), tx.Bucket(bucketMOPartN)
	if pb == nil || nb == nil {
		return nil // a backup older than them
	}
	sums := map[string]moPartCount{}
	err := pb.ForEach(func(k, v []byte) error {
		p, err := decodeMOPart(k, v)
		if err != nil {
			bad("%v", err)
			return nil
		}
		c := sums[p.Upstream]
		c.Parts++
		c.Bytes += int64(len(p.Data))
		sums[p.Upstream] = c
		return nil
	})
	if err != nil {
		return err
	}
	err = nb.ForEach(func(k, v []byte) error {
		c, err := decodeMOPartCount(v)
		switch {
		case err != nil:
			bad("mopartn %q: %v", k, err)
		case c != sums[string(k)]:
			bad("mopartn %q: %+v, the parts hold %+v", k, c, sums[string(k)])
		}
		delete(sums, string(k))
		return nil
	})
	for up, c := range sums {
		bad("upstream %q: %d reply parts without counters", up, c.Parts)
	}
	if err != nil {
		return err
	}
	jb := tx.Bucket(bucketMOJoined)
	if jb == nil {
		return nil // a backup older than it
	}
	return jb.ForEach(func(k, v []byte) error {
		// A group's prefix ends ref (2) total (1) 0x00.
		if len(k) < 4 || k[len(k)-1] != sep || len(v) != 9+8*int(k[len(k)-2]) || v[0] != moJoinedVersion {
			bad("mojoined %x: a mark of %d octets", k, len(v))
		}
		return nil
	})
}

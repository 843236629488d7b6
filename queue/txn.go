package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// txn is one write transaction of the commit loop plus the in-memory deltas
// its operations produced, folded into the Store's mirrors after commit.
type txn struct {
	s        *Store
	tx       *bolt.Tx
	msg, due *bolt.Bucket // nearly every operation writes these: opened at bind
	// opened are the other buckets, each opened on first use (txn.bucket):
	// at a low rate a commit carries one or two operations, which touch a
	// few of them, and opening one costs a search of the file's root.
	opened [lazyBuckets]*bolt.Bucket

	usageNow   map[string]*usageEntry // the usage rows this transaction read, written once at its end
	usageDelta []usageDelta           // each operation's changes to them, to undo a refused one (restore)
	counts     [stateEnd]int
	ready      []*Message // messages whose DLR this transaction queued, as stored
	fresh      []*Message // messages this transaction stored new (for OnDue)
	snapshot   Snapshot   // the transaction's commit, as reads will see it
	hookEnts   []string   // enterprises of the receipt webhooks queued (one left by a refused operation is a harmless extra wake)
	replyEnts  []string   // enterprises of the reply webhooks queued (moreplies.go), likewise
	orphans    orphanState
	// orphanDelta is the orphans each operation kept (+1) and deleted
	// (-1), per upstream, folded into Store.orphanN after the commit
	// (and undone for a refused operation: restore); orphanNet sums them
	// per upstream, so that a count costs one lookup however many
	// orphans the transaction carries (a flood of them, say).
	orphanDelta []orphanDelta
	orphanNet   map[string]int
	// dueDelta is the parts each operation made due (+1) and took out
	// of the due keys (-1), per upstream, folded into Store.dueN after
	// the commit (undone for a refused operation: restore).
	dueDelta []orphanDelta
	cursors  map[*bolt.Bucket]*bolt.Cursor // see get
	// keyMsg, keyTime and keyPrefix are where the keys of the hot paths
	// are built (msgKey, timeKey and the prefixed keys below), instead
	// of in a new slice each: bbolt keeps no key it is given (Put copies
	// it, Seek and Delete only compare), so a buffer serves again as
	// soon as the call returns. A key built in one is valid until the
	// next key of its kind; never pass one as a value, which Put keeps
	// until the commit.
	keyMsg, keyTime, keyPrefix []byte
	lastUsage                  struct { // see usageKeyOf
		enterprise string
		from, to   time.Time // the billing month, [from, to)
		key        string
	}
}

// get is b.Get(key) through one cursor per bucket for the whole
// transaction: bbolt's Get and Delete make a cursor and grow its stack on
// every call (four allocations), and each message passes a dozen of them.
// A cursor is repositioned from the root by every Seek, so the writes
// between two lookups do not matter.
func (t *txn) get(b *bolt.Bucket, key []byte) []byte {
	k, v := t.cursor(b).Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

// has reports whether b holds key. (A key written with a nil value in
// this transaction reads back as a nil value: Get cannot tell it apart.)
func (t *txn) has(b *bolt.Bucket, key []byte) bool {
	k, _ := t.cursor(b).Seek(key)
	return bytes.Equal(k, key)
}

// del is b.Delete(key) through the transaction's cursor of b (see get).
func (t *txn) del(b *bolt.Bucket, key []byte) error {
	c := t.cursor(b)
	if k, _ := c.Seek(key); !bytes.Equal(k, key) {
		return nil
	}
	return c.Delete()
}

func (t *txn) cursor(b *bolt.Bucket) *bolt.Cursor {
	c := t.cursors[b]
	if c == nil {
		if t.cursors == nil {
			t.cursors = make(map[*bolt.Bucket]*bolt.Cursor, 8)
		}
		c = b.Cursor()
		t.cursors[b] = c
	}
	return c
}

// msgKey is msgKey(id) in t.keyMsg.
func (t *txn) msgKey(id uint64) []byte {
	t.keyMsg = appendMsgKey(t.keyMsg[:0], id)
	return t.keyMsg
}

// timeKey is timeKey(at, k) in t.keyTime.
func (t *txn) timeKey(at time.Time, k Key) []byte {
	t.keyTime = appendTimeKey(t.keyTime[:0], at, k)
	return t.keyTime
}

// udueKey is udueKey(upstream, enterprise, at, k) in t.keyPrefix.
func (t *txn) udueKey(upstream, enterprise string, at time.Time, k Key) []byte {
	t.keyPrefix = appendUdueKey(t.keyPrefix[:0], upstream, enterprise, at, k)
	return t.keyPrefix
}

// smscKey is smscKey(upstream, canon) in t.keyPrefix.
func (t *txn) smscKey(upstream, canon string) []byte {
	t.keyPrefix = appendSMSCKey(t.keyPrefix[:0], upstream, canon)
	return t.keyPrefix
}

// dlroutKey is dlroutKey(account, id) in t.keyPrefix.
func (t *txn) dlroutKey(account string, id uint64) []byte {
	t.keyPrefix = appendDLROutKey(t.keyPrefix[:0], account, id)
	return t.keyPrefix
}

// orphanState is what a transaction knows of the orphan bucket. Nearly
// always it is empty (receipts come after the acceptance they follow), and
// one look per transaction then spares every acceptance its lookups of
// each candidate id there.
type orphanState uint8

const (
	orphansUnknown orphanState = iota
	orphansNone
	orphansSome
)

// mayHaveOrphans reports whether the orphan bucket may hold a key.
func (t *txn) mayHaveOrphans() bool {
	if t.orphans == orphansUnknown {
		t.orphans = orphansSome
		if k, _ := t.orphan().Cursor().First(); k == nil {
			t.orphans = orphansNone
		}
	}
	return t.orphans == orphansSome
}

type orphanDelta struct {
	upstream string
	n        int
}

// orphanUpstream is the upstream of an orphan key (upstream 0x00 id).
func orphanUpstream(k []byte) string {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return string(k[:i])
	}
	return string(k)
}

// orphanCount is how many orphans upstream keeps, this transaction's
// changes so far included.
func (t *txn) orphanCount(upstream string) int {
	t.s.memMu.RLock()
	n := t.s.orphanN[upstream]
	t.s.memMu.RUnlock()
	return n + t.orphanNet[upstream]
}

func (t *txn) addOrphans(upstream string, n int) {
	if t.orphanNet == nil {
		t.orphanNet = make(map[string]int)
	}
	t.orphanDelta = append(t.orphanDelta, orphanDelta{upstream, n})
	t.orphanNet[upstream] += n
}

// keepOrphan stores orphan o under key, unless it would be one too many
// for its upstream (ErrOrphansFull, soft). Storing it again under a key
// already kept (the SMSC repeated the receipt) adds none.
func (t *txn) keepOrphan(key []byte, o *orphan) error {
	if !t.has(t.orphan(), key) {
		if t.orphanCount(o.DLR.Upstream) >= t.s.opt.MaxOrphans {
			return soft(ErrOrphansFull)
		}
		t.addOrphans(o.DLR.Upstream, 1)
	}
	t.orphans = orphansSome
	return t.orphan().Put(key, encodeOrphan(nil, o))
}

// dropOrphan deletes the orphan under key, which the caller has read.
func (t *txn) dropOrphan(key []byte) error {
	if err := t.del(t.orphan(), key); err != nil {
		return err
	}
	t.addOrphans(orphanUpstream(key), -1)
	return nil
}

type usageDelta struct {
	key               string
	reserved, charged int64
}

// usageEntry is one usage row as the transaction found it and as its
// operations have left it so far. Every operation of a batch touches its
// enterprise's row of the month; read once and written once per commit,
// the row costs two B-tree lookups per commit instead of two per message.
type usageEntry struct {
	stored, now usage
}

type checkpoint struct {
	usage, ready, fresh, orphans, dues int
	counts                             [stateEnd]int
}

func (t *txn) bind(tx *bolt.Tx) {
	t.tx = tx
	t.snapshot = Snapshot(tx.ID())
	t.opened = [lazyBuckets]*bolt.Bucket{}
	t.msg = tx.Bucket(bucketMsg)
	t.due = tx.Bucket(bucketDue)
	// Message ids, due times and the final index's numbers only grow,
	// so these buckets are written at their end: bbolt's default
	// half-full split would leave every page half empty behind the
	// writes. Pages filled to 90 % keep room for a message that grows
	// when its state changes. (The final index at 90 % holds a retained
	// message in 58 bytes instead of 105: 6 % of the file; putFinal sets
	// it. Its reverse, finalpart, is not written in key order, parts
	// finishing out of turn: at 90 % too, the file came out larger than
	// before.)
	t.msg.FillPercent = appendFill
	t.due.FillPercent = appendFill
}

// appendFill is the FillPercent of the buckets written in key order.
const appendFill = 0.9

// lazyBucket names a bucket a txn opens on first use.
type lazyBucket uint8

const (
	lazyUDue lazyBucket = iota
	lazyUPDue
	lazyWait
	lazySMSC
	lazyOrphan
	lazyDLROut
	lazyRef
	lazyUsage
	lazyHook
	lazyBuckets // how many
)

var lazyBucketNames = [lazyBuckets][]byte{
	lazyUDue: bucketUDue, lazyUPDue: bucketUPDue, lazyWait: bucketWait, lazySMSC: bucketSMSC, lazyOrphan: bucketOrphan,
	lazyDLROut: bucketDLROut, lazyRef: bucketRef, lazyUsage: bucketUsage, lazyHook: bucketHook,
}

// bucket is the transaction's bucket i, opened the first time it is asked
// for.
func (t *txn) bucket(i lazyBucket) *bolt.Bucket {
	if b := t.opened[i]; b != nil {
		return b
	}
	b := t.tx.Bucket(lazyBucketNames[i])
	if i == lazyUDue || i == lazyUPDue {
		b.FillPercent = udueFill
	}
	t.opened[i] = b
	return b
}

// udueFill is how full the upstream due keys' pages are filled before a
// split. Their keys come in order within each upstream and enterprise
// (due now, or a little later on a retry), so bbolt's default of half a
// page would leave most pages half empty. With 0.9: 311 bytes of store a
// queued message; with half a page 359, and 330 with the per-enterprise
// keys before them, shorter by the upstream's name (qxtd-bench -scenarios
// qxtd/restart -queued 1000000).
const udueFill = 0.9

func (t *txn) udue() *bolt.Bucket   { return t.bucket(lazyUDue) }
func (t *txn) updue() *bolt.Bucket  { return t.bucket(lazyUPDue) }
func (t *txn) wait() *bolt.Bucket   { return t.bucket(lazyWait) }
func (t *txn) smsc() *bolt.Bucket   { return t.bucket(lazySMSC) }
func (t *txn) orphan() *bolt.Bucket { return t.bucket(lazyOrphan) }
func (t *txn) dlrout() *bolt.Bucket { return t.bucket(lazyDLROut) }
func (t *txn) ref() *bolt.Bucket    { return t.bucket(lazyRef) }
func (t *txn) usage() *bolt.Bucket  { return t.bucket(lazyUsage) }
func (t *txn) hook() *bolt.Bucket   { return t.bucket(lazyHook) }

// putDue makes part k of m due at at: its due key and its upstream and
// enterprise's, and for a message sent with priority its priority due key
// (the same key, in updue). A message without priority writes no more
// than before updue existed.
func (t *txn) putDue(m *Message, at time.Time, k Key) error {
	if err := t.due.Put(t.timeKey(at, k), nil); err != nil {
		return err
	}
	ek := t.udueKey(m.Upstream, m.Enterprise, at, k)
	if err := t.udue().Put(ek, nil); err != nil {
		return err
	}
	t.dueDelta = append(t.dueDelta, orphanDelta{m.Upstream, 1})
	if m.Priority {
		return t.updue().Put(ek, nil)
	}
	return nil
}

// delDue removes the due keys putDue wrote.
func (t *txn) delDue(m *Message, at time.Time, k Key) error {
	if err := t.del(t.due, t.timeKey(at, k)); err != nil {
		return err
	}
	ek := t.udueKey(m.Upstream, m.Enterprise, at, k)
	if err := t.del(t.udue(), ek); err != nil {
		return err
	}
	t.dueDelta = append(t.dueDelta, orphanDelta{m.Upstream, -1})
	if m.Priority {
		return t.del(t.updue(), ek)
	}
	return nil
}

func (t *txn) checkpoint() checkpoint {
	return checkpoint{usage: len(t.usageDelta), ready: len(t.ready), fresh: len(t.fresh), counts: t.counts, orphans: len(t.orphanDelta), dues: len(t.dueDelta)}
}

func (t *txn) restore(c checkpoint) {
	for _, d := range t.usageDelta[c.usage:] { // exact: integer sums undone in any order
		e := t.usageNow[d.key]
		e.now.Reserved -= d.reserved
		e.now.Charged -= d.charged
	}
	t.usageDelta = t.usageDelta[:c.usage]
	t.ready = t.ready[:c.ready]
	t.fresh = t.fresh[:c.fresh]
	t.counts = c.counts
	for _, d := range t.orphanDelta[c.orphans:] {
		t.orphanNet[d.upstream] -= d.n
	}
	t.orphanDelta = t.orphanDelta[:c.orphans]
	t.dueDelta = t.dueDelta[:c.dues]
}

// getMsg loads message id; a missing one is a soft ErrNotFound.
func (t *txn) getMsg(id uint64) (*Message, error) {
	v := t.get(t.msg, t.msgKey(id))
	if v == nil {
		return nil, soft(fmt.Errorf("%w: message %d", ErrNotFound, id))
	}
	m, err := DecodeMessage(v)
	if err != nil {
		return nil, fmt.Errorf("message %d: %w", id, err)
	}
	return m, nil
}

// getPart loads the message and checks the part exists.
func (t *txn) getPart(k Key) (*Message, *Part, error) {
	m, err := t.getMsg(k.ID)
	if err != nil {
		return nil, nil, err
	}
	if int(k.Part) >= len(m.Parts) {
		return nil, nil, soft(fmt.Errorf("%w: part %s (message has %d)", ErrNotFound, k, len(m.Parts)))
	}
	return m, &m.Parts[k.Part], nil
}

func (t *txn) putMsg(m *Message) error {
	if m.Priority && !m.waiting() {
		// Sent (or ended): priority has nothing left to do, and the
		// record goes back to version 1, which every release reads.
		m.Priority = false
	}
	return t.msg.Put(t.msgKey(m.ID), encodeMessage(nil, m))
}

// getUsage is the usage row key as this transaction's operations have
// left it so far.
func (t *txn) getUsage(key string) (usage, error) {
	e, err := t.usageEntry(key)
	if err != nil {
		return usage{}, err
	}
	return e.now, nil
}

// usageEntry reads the usage row key the first time the transaction
// needs it.
func (t *txn) usageEntry(key string) (*usageEntry, error) {
	if e := t.usageNow[key]; e != nil {
		return e, nil
	}
	var u usage
	if v := t.usage().Get([]byte(key)); v != nil {
		var err error
		if u, err = decodeUsage(v); err != nil {
			return nil, err
		}
	}
	if t.usageNow == nil {
		t.usageNow = make(map[string]*usageEntry)
	}
	e := &usageEntry{stored: u, now: u}
	t.usageNow[key] = e
	return e, nil
}

// usageKeyOf is usageKey(m.Enterprise, BillingMonth(m.AcceptedAt)),
// remembered for the last enterprise and month: the operations of one
// commit are mostly one enterprise's in one month, and computing the key
// costs two allocations (the month's text and the key).
func (t *txn) usageKeyOf(m *Message) string {
	u := &t.lastUsage
	if u.key != "" && m.Enterprise == u.enterprise && !m.AcceptedAt.Before(u.from) && m.AcceptedAt.Before(u.to) {
		return u.key
	}
	local := m.AcceptedAt.In(shanghai)
	u.from = time.Date(local.Year(), local.Month(), 1, 0, 0, 0, 0, shanghai)
	u.to = u.from.AddDate(0, 1, 0)
	u.enterprise = m.Enterprise
	u.key = usageKey(m.Enterprise, BillingMonth(m.AcceptedAt))
	return u.key
}

func (t *txn) addUsage(m *Message, reserved, charged int64) error {
	key := t.usageKeyOf(m)
	e, err := t.usageEntry(key)
	if err != nil {
		return err
	}
	e.now.Reserved += reserved
	e.now.Charged += charged
	t.usageDelta = append(t.usageDelta, usageDelta{key, reserved, charged})
	return nil
}

// putUsage writes the usage rows the transaction changed.
func (t *txn) putUsage() error {
	for key, e := range t.usageNow {
		if e.now == e.stored {
			continue
		}
		if err := t.usage().Put([]byte(key), encodeUsage(e.now)); err != nil {
			return fmt.Errorf("usage %s: %w", key, err)
		}
	}
	return nil
}

// nextRef returns the next concatenation reference for dest (never 0).
func (t *txn) nextRef(dest string) (uint16, error) {
	var ref uint16
	if v := t.ref().Get([]byte(dest)); len(v) == 2 {
		ref = binary.BigEndian.Uint16(v)
	}
	ref++
	if ref == 0 {
		ref = 1
	}
	return ref, t.ref().Put([]byte(dest), binary.BigEndian.AppendUint16(nil, ref))
}

// setFinal moves a transient part to a final state, keeping every index,
// counter and the usage exact, and queues the message's DLR when this was
// its last transient part. The caller stores m afterwards.
func (t *txn) setFinal(m *Message, idx uint16, state State, at time.Time, errCode string) error {
	p := &m.Parts[idx]
	k := Key{m.ID, idx}
	switch p.State {
	case StateAccepted:
		if err := t.delDue(m, p.DueAt, k); err != nil {
			return err
		}
	case StateSubmitted:
		if err := t.del(t.wait(), t.timeKey(p.SubmittedAt, k)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("setFinal of %s part %s", p.State, k) // callers check first
	}
	t.counts[p.State]--
	t.counts[state]++
	p.State, p.DoneAt, p.ErrCode = state, at, errCode
	if err := t.indexFinal(k); err != nil {
		return err
	}
	w := m.PartWeight()
	charged := int64(0)
	if state == StateDelivered {
		charged = w
	}
	if err := t.addUsage(m, -w, charged); err != nil {
		return err
	}
	if !m.Final() {
		return nil
	}
	if err := t.putHook(m, at); err != nil {
		return err
	}
	if !m.wantsDLR() {
		m.DLRForwarded = true
		return nil
	}
	if err := t.dlrout().Put(t.dlroutKey(m.Account, m.ID), nil); err != nil {
		return err
	}
	t.ready = append(t.ready, m)
	return nil
}

// indexSMSC records that smscID (on m.Upstream) names part k.
func (t *txn) indexSMSC(m *Message, k Key, smscID string) error {
	key := t.smscKey(m.Upstream, CanonicalSMSCID(smscID))
	if old := t.get(t.smsc(), key); old != nil {
		if ok, _ := parsePartRef(old); ok != k {
			t.s.log.Warn("queue: SMSC id reused, index moved to the newer part",
				"upstream", m.Upstream, "smsc_id", smscID, "old", ok.String(), "new", k.String())
		}
	}
	return t.smsc().Put(key, partRef(k))
}

// takeOrphan finds a stored DLR for smscID on upstream that arrived no
// earlier than OrphanMaxAge before at, deletes every orphan under the id's
// candidate forms it looked at, and returns the one to apply (or nil).
func (t *txn) takeOrphan(upstream string, cands []string, at time.Time) (*orphan, error) {
	if len(cands) == 0 || !t.mayHaveOrphans() {
		return nil, nil
	}
	for _, c := range cands {
		key := smscKey(upstream, c)
		v := t.orphan().Get(key)
		if v == nil {
			continue
		}
		o, err := decodeOrphan(v)
		if err := t.dropOrphan(key); err != nil {
			return nil, err
		}
		if err != nil {
			t.s.log.Warn("queue: corrupt orphan DLR dropped", "upstream", upstream, "smsc_id", c, "err", err)
			continue
		}
		if o.ReceivedAt.Before(at.Add(-t.s.opt.OrphanMaxAge)) {
			t.s.log.Warn("queue: stale orphan DLR dropped (SMSC id reused)",
				"upstream", upstream, "smsc_id", o.SMSCID, "received_at", o.ReceivedAt)
			continue
		}
		return o, nil
	}
	return nil, nil
}

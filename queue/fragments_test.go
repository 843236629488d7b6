package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var testGroup = FragmentGroup{Account: "acct", Source: "1069", Dest: "13800138000", Ref: 7, Total: 3}

func frag(g FragmentGroup, seq uint8, data string) *Fragment {
	return &Fragment{FragmentGroup: g, Seq: seq, Enterprise: "ent", Coding: 1, Data: []byte(data),
		ClientCoding: 8, RegisteredDelivery: 1, Signature: "【测试】"}
}

func (ts *testStore) storeFrag(f *Fragment, lim FragmentLimits) FragmentStored {
	ts.t.Helper()
	res, err := ts.StoreFragment(context.Background(), f, lim)
	if err != nil {
		ts.t.Fatalf("store fragment %d: %v", f.Seq, err)
	}
	return res
}

// assembled is the message the gateway would build from a complete group.
func assembled(g FragmentGroup, frags []*Fragment) *Message {
	m := msg(g.Account, g.Dest, 2)
	m.Enterprise = "ent"
	for _, f := range frags {
		m.Aliases = append(m.Aliases, f.ID)
	}
	return m
}

// TestFragmentsAssembleOnce: parts out of order each get their own id; a
// retried part gets its earlier id, a different part under the same
// sequence number is refused; the last part completes the group; the
// message and the deletion of the parts are one step, done once.
func TestFragmentsAssembleOnce(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	r3 := s.storeFrag(frag(testGroup, 3, "ccc"), FragmentLimits{})
	r1 := s.storeFrag(frag(testGroup, 1, "aaa"), FragmentLimits{})
	if r3.Complete || r1.Complete || r3.ID == r1.ID || r1.ID == 0 {
		t.Fatalf("first two parts: %+v %+v", r3, r1)
	}
	if again := s.storeFrag(frag(testGroup, 1, "aaa"), FragmentLimits{}); !again.Duplicate || again.ID != r1.ID || again.Complete {
		t.Fatalf("retried part: %+v, want duplicate of %d", again, r1.ID)
	}
	if _, err := s.StoreFragment(ctx, frag(testGroup, 1, "xxx"), FragmentLimits{}); !errors.Is(err, ErrFragmentConflict) {
		t.Fatalf("conflicting part: %v", err)
	}
	if got, err := s.FragmentByID(r3.ID); err != nil || string(got.Data) != "ccc" || got.Seq != 3 || got.Signature != "【测试】" {
		t.Fatalf("fragment by id: %+v %v", got, err)
	}
	r2 := s.storeFrag(frag(testGroup, 2, "bbb"), FragmentLimits{})
	if !r2.Complete {
		t.Fatalf("last part: %+v, want complete", r2)
	}
	frags, err := s.Fragments(testGroup)
	if err != nil || len(frags) != 3 {
		t.Fatalf("fragments: %d, %v", len(frags), err)
	}
	for i, f := range frags {
		if int(f.Seq) != i+1 || string(f.Data) != string(rune('a'+i))+string(rune('a'+i))+string(rune('a'+i)) {
			t.Fatalf("fragment %d: seq %d data %q", i, f.Seq, f.Data)
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	m := assembled(testGroup, frags)
	if err := s.EnqueueAssembled(ctx, NoLimit, testGroup, m); err != nil {
		t.Fatal(err)
	}
	want := []uint64{r1.ID, r2.ID, r3.ID}
	got := s.get(m.ID)
	if len(got.Aliases) != 3 || got.Aliases[0] != want[0] || got.Aliases[1] != want[1] || got.Aliases[2] != want[2] {
		t.Fatalf("aliases %v, want %v", got.Aliases, want)
	}
	for _, a := range want {
		if id, err := s.AliasOf(a); err != nil || id != m.ID {
			t.Fatalf("alias %d → %d %v, want %d", a, id, err, m.ID)
		}
		if _, err := s.FragmentByID(a); !errors.Is(err, ErrNotFound) {
			t.Fatalf("consumed part %d still pending: %v", a, err)
		}
	}
	// A second assembly (a race, or housekeeping after the live path) is
	// refused and stores nothing.
	if err := s.EnqueueAssembled(ctx, NoLimit, testGroup, assembled(testGroup, frags)); !errors.Is(err, ErrFragmentsGone) {
		t.Fatalf("second assembly: %v, want ErrFragmentsGone", err)
	}
	if n := s.bucketLen(bucketMsg); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	for _, b := range [][]byte{bucketFrag, bucketFragID, bucketFragN} {
		if n := s.bucketLen(b); n != 0 {
			t.Fatalf("bucket %s holds %d keys after assembly", b, n)
		}
	}
	s.wantUsage("ent", 2, 0)

	// The client reuses the reference later: a new group with new ids;
	// the old ids cannot consume it.
	n1 := s.storeFrag(frag(testGroup, 1, "new"), FragmentLimits{})
	if n1.Duplicate || n1.ID <= r2.ID {
		t.Fatalf("reused reference: %+v", n1)
	}
	if _, err := s.RejectFragments(ctx, testGroup, []uint64{r1.ID}, "incomplete", ""); !errors.Is(err, ErrFragmentsGone) {
		t.Fatalf("stale reject: %v", err)
	}
}

// TestFragmentsCrashBeforeAssembly: every part acknowledged, then the
// process stops before the message is stored. After a restart the group
// is found complete and is assembled exactly once, however many times
// assembly is attempted, concurrently or not.
func TestFragmentsCrashBeforeAssembly(t *testing.T) {
	s := newStore(t, Options{})
	for seq := uint8(1); seq <= 3; seq++ {
		s.storeFrag(frag(testGroup, seq, "part"), FragmentLimits{})
	}
	s.reopen()
	groups, err := s.FragmentGroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || !groups[0].Complete || len(groups[0].IDs) != 3 || groups[0].Group != testGroup || groups[0].Started.IsZero() {
		t.Fatalf("groups after restart: %+v", groups)
	}
	frags, err := s.Fragments(testGroup)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, gone := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.EnqueueAssembled(context.Background(), NoLimit, testGroup, assembled(testGroup, frags))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrFragmentsGone):
				gone++
			default:
				t.Errorf("assemble: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || gone != 7 {
		t.Fatalf("%d assemblies stored, %d refused; want 1 and 7", ok, gone)
	}
	s.reopen()
	if n := s.bucketLen(bucketMsg); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	if groups, _ := s.FragmentGroups(); len(groups) != 0 {
		t.Fatalf("groups left: %+v", groups)
	}
}

// TestFragmentsReject: an incomplete group is settled as one message,
// final at once, rejected, listing the ids that arrived: its receipt is
// queued, nothing is reserved or billed, nothing is due.
func TestFragmentsReject(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	a := s.storeFrag(frag(testGroup, 1, "a"), FragmentLimits{})
	c := s.storeFrag(frag(testGroup, 3, "c"), FragmentLimits{})
	if _, err := s.RejectFragments(ctx, testGroup, []uint64{c.ID, a.ID}, "incomplete", ""); !errors.Is(err, ErrFragmentsGone) {
		t.Fatalf("ids out of order: %v", err)
	}
	id, err := s.RejectFragments(ctx, testGroup, []uint64{a.ID, c.ID}, "incomplete", "")
	if err != nil {
		t.Fatal(err)
	}
	m := s.get(id)
	if !m.Final() || m.State() != StateRejected || len(m.Parts) != 2 || m.Parts[0].ErrCode != "incomplete" ||
		len(m.Aliases) != 2 || m.Aliases[0] != a.ID || m.Aliases[1] != c.ID || m.Enterprise != "ent" || m.ClientCoding != 8 {
		t.Fatalf("rejected message: %+v", m)
	}
	s.wantUsage("ent", 0, 0)
	s.wantCounts(map[State]int{StateRejected: 2})
	if keys := s.dueKeys(time.Now().Add(time.Hour)); len(keys) != 0 {
		t.Fatalf("due: %v", keys)
	}
	pending, err := s.PendingDLRs("acct", 0, nil)
	if err != nil || len(pending) != 1 || pending[0].ID != id {
		t.Fatalf("pending receipts: %v %v", pending, err)
	}
	if got := s.readyCalls(); len(got) != 1 || got[0] != "acct" {
		t.Fatalf("OnDLRReady calls %v", got)
	}
	if err := s.AckDLR(ctx, "acct", id); err != nil {
		t.Fatal(err)
	}
	// Retention deletes the message with its aliases.
	if n, err := s.Purge(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if n := s.bucketLen(bucketAlias); n != 0 {
		t.Fatalf("%d alias keys left after purge", n)
	}
	if _, err := s.AliasOf(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alias of a purged message: %v", err)
	}
}

// TestFragmentsQuotaLeavesGroup: an assembled message over the quota is
// refused with nothing written; the group stays to be rejected.
func TestFragmentsQuotaLeavesGroup(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	g := testGroup
	g.Total = 2
	s.storeFrag(frag(g, 1, "a"), FragmentLimits{})
	s.storeFrag(frag(g, 2, "b"), FragmentLimits{})
	frags, _ := s.Fragments(g)
	m := assembled(g, frags)
	if err := s.EnqueueAssembled(ctx, 1, g, m); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if left, _ := s.Fragments(g); len(left) != 2 {
		t.Fatalf("%d parts left, want 2", len(left))
	}
	if _, err := s.RejectFragments(ctx, g, m.Aliases, "quota_exceeded", "text"); err != nil {
		t.Fatal(err)
	}
	s.wantUsage("ent", 0, 0)
}

// TestFragmentsLimits: pending groups per account and pending bytes are
// capped; parts of a group already pending are not counted twice.
func TestFragmentsLimits(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	lim := FragmentLimits{MaxGroups: 2, MaxBytes: 10, MaxEnterpriseBytes: 10}
	g1, g2, g3 := testGroup, testGroup, testGroup
	g2.Ref, g3.Ref = 8, 9
	s.storeFrag(frag(g1, 1, "aa"), lim)
	s.storeFrag(frag(g2, 1, "bb"), lim)
	if _, err := s.StoreFragment(ctx, frag(g3, 1, "cc"), lim); !errors.Is(err, ErrFragmentsFull) {
		t.Fatalf("third group: %v, want ErrFragmentsFull", err)
	}
	other := g3
	other.Account = "other"
	s.storeFrag(frag(other, 1, "dd"), lim) // another account's groups are its own
	s.storeFrag(frag(g1, 2, "ee"), lim)    // 8 bytes pending now
	if _, err := s.StoreFragment(ctx, frag(g2, 2, "fff"), lim); !errors.Is(err, ErrFragmentsFull) {
		t.Fatalf("bytes over the cap: %v, want ErrFragmentsFull", err)
	}
	if _, err := s.StoreFragment(ctx, frag(g2, 4, "x"), lim); !errors.Is(err, ErrInvalid) {
		t.Fatalf("seq beyond total: %v", err)
	}
	bad := frag(g1, 3, "x")
	bad.Account = "a\x00b"
	if _, err := s.StoreFragment(ctx, bad, lim); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NUL in account: %v", err)
	}
}

// TestCodecAliases: Aliases round-trip and cost nothing when absent; plain
// Enqueue refuses them.
func TestCodecAliases(t *testing.T) {
	m := &Message{ID: 9, Account: "a", Enterprise: "e", Dest: "13800138000", Upstream: "u", ClientCoding: 8, Group: 3,
		Parts: []Part{{Body: []byte("x"), State: StateRejected}}}
	plain := len(encodeMessage(nil, m))
	m.Aliases = []uint64{5, 6, 1 << 40}
	b := encodeMessage(nil, m)
	got, err := DecodeMessage(b)
	if err != nil || len(got.Aliases) != 3 || got.Aliases[2] != 1<<40 || got.Group != 3 || got.ClientCoding != 8 {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if len(b) <= plain {
		t.Fatal("aliases should add bytes")
	}
	if _, err := DecodeMessage(b[:len(b)-1]); err == nil {
		t.Fatal("truncated aliases decoded")
	}
	s := newStore(t, Options{NoSync: true})
	am := msg("a", "13800138000", 1)
	am.Aliases = []uint64{1}
	if err := s.Enqueue(context.Background(), am); !errors.Is(err, ErrInvalid) {
		t.Fatalf("enqueue with aliases: %v", err)
	}
}

func TestFragKeyRoundTrip(t *testing.T) {
	g := FragmentGroup{Account: "a", Source: "", Dest: "d", Ref: 0, Total: 255}
	got, seq, ok := parseFragKey(fragKey(g, 200))
	if !ok || got != g || seq != 200 {
		t.Fatalf("%+v %d %v", got, seq, ok)
	}
	// Malformed: no tail, a tail too long, no separator before seq, seq
	// beyond total, empty account.
	for _, k := range []string{"", "a\x00b\x00c\x00", "a\x00b\x00c\x00\x00\x01\x02\x00\x01\x04",
		"a\x00b\x00c\x00\x00\x01\x02\x01\x01", "a\x00b\x00c\x00\x00\x01\x02\x00\x03", "\x00b\x00c\x00\x00\x01\x02\x00\x01"} {
		if _, _, ok := parseFragKey([]byte(k)); ok {
			t.Errorf("parsed %q", k)
		}
	}
}

// fragNCount reads one fragn record as stored.
func (ts *testStore) fragNCount(key string) (fragCount, uint8) {
	ts.t.Helper()
	var c fragCount
	var ver uint8
	err := ts.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFragN).Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		c, ver, err = decodeFragCount(v)
		return err
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return c, ver
}

// floodFragments stores first parts of two-part groups of enterprise ent,
// from its accounts in turn, 140 octets each, until the store refuses
// one; it returns how many it took.
func (ts *testStore) floodFragments(ent string, accounts []string, lim FragmentLimits) int {
	ts.t.Helper()
	for n := 0; ; n++ {
		g := FragmentGroup{Account: accounts[n%len(accounts)], Source: "1069", Dest: "13800138000", Ref: uint16(n), Total: 2}
		f := frag(g, 1, strings.Repeat("x", 140))
		f.Enterprise = ent
		_, err := ts.StoreFragment(context.Background(), f, lim)
		if errors.Is(err, ErrFragmentsFull) {
			return n
		}
		if err != nil {
			ts.t.Fatalf("part %d: %v", n, err)
		}
		if n > 1000 {
			ts.t.Fatal("never refused")
		}
	}
}

// TestFragmentsEnterpriseShare: enterprise A, from two accounts, opens
// groups it never completes until it is refused — at its share of the
// pool (a quarter by default), not at the whole pool — and enterprise B's
// split message is still stored and assembled. Rejecting one of A's
// groups gives A room again. The counters survive reopening the file.
func TestFragmentsEnterpriseShare(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	lim := FragmentLimits{MaxBytes: 4000} // A's share: 1000 octets
	n := s.floodFragments("A", []string{"a1", "a2"}, lim)
	if n != 7 {
		t.Fatalf("A stored %d parts of 140 octets, want 7 (its share is 1000 octets)", n)
	}
	if c, _ := s.fragNCount(fragEntKey("A")); c.Bytes != 980 {
		t.Fatalf("A's counter: %+v, want 980 octets", c)
	}
	s.reopen()
	if got := s.floodFragments("A", []string{"a3"}, lim); got != 0 {
		t.Fatalf("after reopening, A stored %d more parts (another account), want 0", got)
	}

	g := FragmentGroup{Account: "b", Source: "1069", Dest: "13900139000", Ref: 1, Total: 2}
	for seq := uint8(1); seq <= 2; seq++ {
		f := frag(g, seq, strings.Repeat("y", 140))
		f.Enterprise = "B"
		res, err := s.StoreFragment(ctx, f, lim)
		if err != nil {
			t.Fatalf("B's part %d refused while A is at its share: %v", seq, err)
		}
		if res.Complete != (seq == 2) {
			t.Fatalf("B's part %d: %+v", seq, res)
		}
	}
	frags, err := s.Fragments(g)
	if err != nil {
		t.Fatal(err)
	}
	m := assembled(g, frags)
	m.Enterprise = "B"
	if err := s.EnqueueAssembled(ctx, NoLimit, g, m); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.fragNCount(fragEntKey("B")); c != (fragCount{}) {
		t.Fatalf("B's counter after assembly: %+v, want none", c)
	}

	// Settling one of A's groups frees its part of A's share.
	groups, err := s.FragmentGroups()
	if err != nil || len(groups) != 7 {
		t.Fatalf("groups: %d, %v", len(groups), err)
	}
	if _, err := s.RejectFragments(ctx, groups[0].Group, groups[0].IDs, "incomplete", ""); err != nil {
		t.Fatal(err)
	}
	if got := s.floodFragments("A", []string{"a1"}, lim); got != 1 {
		t.Fatalf("A stored %d parts after one group was settled, want 1", got)
	}
	s.reopen()
	all, ver := s.fragNCount(fragAll)
	if all.Bytes != 980 || all.Groups != 7 || ver != fragNTotalsVersion {
		t.Fatalf("totals: %+v version %d", all, ver)
	}
}

// TestFragmentsEnterpriseUpgrade: a file written before enterprises were
// counted (version 1 totals, no enterprise counters) passes Check, its
// enterprises' shares are enforced from the parts, and the next write
// adds exact counters. A wrong enterprise counter fails Check.
func TestFragmentsEnterpriseUpgrade(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	lim := FragmentLimits{MaxBytes: 1000, MaxEnterpriseBytes: 10}
	g1, g2 := testGroup, testGroup
	g2.Account, g2.Ref = "other", 8
	s.storeFrag(frag(g1, 1, "aaaa"), lim)
	f := frag(g2, 1, "bb")
	f.Enterprise = "ent2"
	s.storeFrag(f, lim)

	// Back to the old format.
	setOld := func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFragN)
		all, _, err := decodeFragCount(b.Get([]byte(fragAll)))
		if err != nil {
			return err
		}
		for _, ent := range []string{"ent", "ent2"} {
			if err := b.Delete([]byte(fragEntKey(ent))); err != nil {
				return err
			}
		}
		return b.Put([]byte(fragAll), encodeFragCount(all, fragNVersion))
	}
	if err := s.db.Update(setOld); err != nil {
		t.Fatal(err)
	}
	s.reopen() // checks the old format

	// The share is counted from the parts: "ent" holds 4 of its 10 octets.
	if _, err := s.StoreFragment(ctx, frag(g1, 2, "1234567"), lim); !errors.Is(err, ErrFragmentsFull) {
		t.Fatalf("over the share in an old file: %v", err)
	}
	if _, ver := s.fragNCount(fragAll); ver != fragNVersion {
		t.Fatal("a refused part upgraded the file")
	}
	s.storeFrag(frag(g1, 2, "123456"), lim)
	if c, _ := s.fragNCount(fragEntKey("ent")); c.Bytes != 10 {
		t.Fatalf("ent's counter after the upgrade: %+v", c)
	}
	if c, _ := s.fragNCount(fragEntKey("ent2")); c.Bytes != 2 {
		t.Fatalf("ent2's counter after the upgrade: %+v", c)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}

	// Check sees a wrong enterprise counter.
	put := func(c fragCount) {
		t.Helper()
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketFragN).Put([]byte(fragEntKey("ent2")), encodeFragCount(c, fragNVersion))
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(fragCount{Bytes: 3})
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check with a wrong enterprise counter: %v", err)
	}
	put(fragCount{Bytes: 2})

	// Settling takes each part off its own enterprise.
	groups, err := s.FragmentGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, gi := range groups {
		if _, err := s.RejectFragments(ctx, gi.Group, gi.IDs, "incomplete", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.bucketLen(bucketFragN); n != 0 {
		t.Fatalf("%d fragn records left", n)
	}
}

// TestCodecAliasDLR: each alias's registered_delivery round-trips, costs
// nothing when absent (the records stored before it decode as before),
// and a record that claims it without aliases, or is cut short, is
// corrupt.
func TestCodecAliasDLR(t *testing.T) {
	m := &Message{ID: 9, Account: "a", Enterprise: "e", Dest: "13800138000", Upstream: "u", RegisteredDelivery: 1,
		Parts: []Part{{Body: []byte("x"), State: StateDelivered}}, Aliases: []uint64{5, 6, 7}}
	plain := encodeMessage(nil, m)
	if got, err := DecodeMessage(plain); err != nil || got.AliasDLR != nil {
		t.Fatalf("without: %+v, %v", got, err)
	}
	m.AliasDLR = []uint8{1, 0, 2}
	b := encodeMessage(nil, m)
	if len(b) != len(plain)+3 {
		t.Fatalf("%d bytes, want %d", len(b), len(plain)+3)
	}
	got, err := DecodeMessage(b)
	if err != nil || !slices.Equal(got.AliasDLR, []uint8{1, 0, 2}) || !slices.Equal(got.Aliases, m.Aliases) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if c := got.Clone(); &c.AliasDLR[0] == &got.AliasDLR[0] {
		t.Fatal("Clone shares AliasDLR")
	}
	if _, err := DecodeMessage(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("cut short: %v", err)
	}
	m.Aliases, m.AliasDLR = nil, nil
	bad := encodeMessage(nil, m)
	bad[flagsOffset(t, m)] |= flagAliasDLR
	if _, err := DecodeMessage(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flag without aliases: %v", err)
	}
}

// flagsOffset is where m's flags octet is encoded: the one octet that
// ReceiptDone changes.
func flagsOffset(t *testing.T, m *Message) int {
	t.Helper()
	c := m.Clone()
	c.ReceiptDone = !m.ReceiptDone
	a, b := encodeMessage(nil, m), encodeMessage(nil, c)
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	t.Fatal("no flags octet found")
	return 0
}

func TestCombineDLR(t *testing.T) {
	for _, c := range []struct {
		in   []uint8
		want uint8
		per  bool
	}{
		{nil, 0, false},
		{[]uint8{1, 1}, 1, false},
		{[]uint8{0x11, 0x11}, 0x11, false},
		{[]uint8{1, 0, 0}, 1, true},
		{[]uint8{0, 0, 2}, 2, true},
		{[]uint8{2, 1}, 1, true},
		{[]uint8{3, 0}, 1, true},
		{[]uint8{0x10, 2}, 0x12, true},
	} {
		got, per := combineDLR(c.in)
		if got != c.want || (per != nil) != c.per || per != nil && !slices.Equal(per, c.in) {
			t.Errorf("combineDLR(%v) = %#x, %v; want %#x, per alias %v", c.in, got, per, c.want, c.per)
		}
	}
}

// TestAssembledKeepsEachPartsReceipt: a message joined or rejected from
// parts that asked for receipts differently keeps what each asked,
// whatever registered_delivery the caller gave; parts that asked alike
// keep the message's record as it was.
func TestAssembledKeepsEachPartsReceipt(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	store := func(g FragmentGroup, asked ...uint8) []*Fragment {
		g.Total = uint8(len(asked))
		for i, r := range asked {
			f := frag(g, uint8(i+1), "p")
			f.RegisteredDelivery = r
			s.storeFrag(f, FragmentLimits{})
		}
		frags, err := s.Fragments(g)
		if err != nil || len(frags) != len(asked) {
			t.Fatalf("%d parts, %v", len(frags), err)
		}
		return frags
	}
	g := testGroup
	g.Total = 3
	m := assembled(g, store(g, 0, 0, 1))
	m.RegisteredDelivery = 0
	if err := s.EnqueueAssembled(ctx, 100, g, m); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(m.ID)
	if err != nil || got.RegisteredDelivery != 1 || !slices.Equal(got.AliasDLR, []uint8{0, 0, 1}) {
		t.Fatalf("assembled: registered_delivery %d, per alias %v, %v", got.RegisteredDelivery, got.AliasDLR, err)
	}
	if got.AliasWantsDLR(0) || !got.AliasWantsDLR(2) {
		t.Fatal("AliasWantsDLR does not follow the parts")
	}

	g2 := testGroup
	g2.Ref, g2.Total = 77, 2
	frags := store(g2, 2, 0)
	id, err := s.RejectFragments(ctx, g2, []uint64{frags[0].ID, frags[1].ID}, "incomplete", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(id); err != nil || got.RegisteredDelivery != 2 || !slices.Equal(got.AliasDLR, []uint8{2, 0}) {
		t.Fatalf("rejected: %+v, %v", got, err)
	}
	if !got.AliasWantsDLR(0) || got.AliasWantsDLR(1) {
		t.Fatal("a rejected message's receipts do not follow the parts")
	}

	g3 := testGroup
	g3.Ref, g3.Total = 78, 2
	m = assembled(g3, store(g3, 1, 1))
	if err := s.EnqueueAssembled(ctx, 100, g3, m); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(m.ID); err != nil || got.RegisteredDelivery != 1 || got.AliasDLR != nil {
		t.Fatalf("parts alike: %+v, %v", got, err)
	}
}

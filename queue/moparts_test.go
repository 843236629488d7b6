package queue

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func moPart(ref uint16, total, seq uint8, data string) *MOPart {
	return &MOPart{MOPartGroup: MOPartGroup{Upstream: "up", Source: "13712345678", Dest: "10657500112", Ref: ref, Total: total},
		Seq: seq, Data: []byte(data), SourceTON: 1, SourceNPI: 1}
}

func (ts *testStore) storeMOPart(p *MOPart, lim MOPartLimits) bool {
	ts.t.Helper()
	complete, err := ts.StoreMOPart(context.Background(), p, lim)
	if err != nil {
		ts.t.Fatalf("store part %d of %v: %v", p.Seq, p.MOPartGroup, err)
	}
	return complete
}

// joinMO stores the parts of g as one MO whose text is their data in
// order, as the gateway does.
func (ts *testStore) joinMO(g MOPartGroup) (*MO, error) {
	ts.t.Helper()
	parts, err := ts.MOParts(g)
	if err != nil {
		ts.t.Fatal(err)
	}
	var text strings.Builder
	for _, p := range parts {
		text.Write(p.Data)
	}
	m := &MO{Enterprise: "E1", Source: g.Source, Dest: g.Dest, Upstream: g.Upstream, Text: text.String(),
		PartsMissing: int(g.Total) - len(parts)}
	return m, ts.StoreJoinedMO(context.Background(), parts, m)
}

func (ts *testStore) inboxTexts(ent string) []string {
	ts.t.Helper()
	list, _, err := ts.Inbox(ent, InboxFilter{}, 0, 100)
	if err != nil {
		ts.t.Fatal(err)
	}
	var out []string
	for _, m := range list {
		out = append(out, m.Text)
	}
	return out
}

// TestMOPartsJoined: parts out of order, one sent again, an 8-bit and a
// 16-bit reference of one value naming one group: complete once every
// sequence number is in, joined in order into one MO, the parts gone.
func TestMOPartsJoined(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var lim MOPartLimits
	if ts.storeMOPart(moPart(7, 3, 3, "three"), lim) {
		t.Fatal("complete after one part of three")
	}
	if ts.storeMOPart(moPart(7, 3, 1, "one "), lim) {
		t.Fatal("complete after two parts of three")
	}
	if ts.storeMOPart(moPart(7, 3, 1, "one "), lim) { // the SMSC sent it again
		t.Fatal("a part sent again completed the group")
	}
	if n, b, _ := ts.MOPartsPending("up"); n != 2 || b != 9 {
		t.Fatalf("pending %d parts, %d octets; want 2, 9: a part sent again is stored once", n, b)
	}
	if !ts.storeMOPart(moPart(7, 3, 2, "two "), lim) {
		t.Fatal("not complete with every part in")
	}
	groups, err := ts.MOPartGroups()
	if err != nil || len(groups) != 1 || !groups[0].Complete || groups[0].Parts != 3 {
		t.Fatalf("groups %+v, %v", groups, err)
	}
	m, err := ts.joinMO(moPart(7, 3, 1, "").MOPartGroup)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID == 0 || m.Text != "one two three" {
		t.Fatalf("joined %+v", m)
	}
	if _, err := ts.joinMO(moPart(7, 3, 1, "").MOPartGroup); !errors.Is(err, ErrInvalid) {
		t.Fatalf("joining a group with no part left: %v, want ErrInvalid (nothing to join)", err)
	}
	if got := ts.inboxTexts("E1"); len(got) != 1 {
		t.Fatalf("inbox %q, want the one reply", got)
	}
	if n, b, _ := ts.MOPartsPending("up"); n != 0 || b != 0 || ts.bucketLen(bucketMOParts) != 0 || ts.bucketLen(bucketMOPartN) != 0 {
		t.Fatalf("after the join: %d parts, %d octets pending", n, b)
	}
}

// TestMOPartsJoinedOnce: two joins of one group racing (the live path and
// the housekeeping) store one MO; a join of parts read before a part came
// again stores nothing (the later read joins them).
func TestMOPartsJoinedOnce(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	for seq := uint8(1); seq <= 2; seq++ {
		ts.storeMOPart(moPart(1, 2, seq, "x"), MOPartLimits{})
	}
	g := moPart(1, 2, 1, "").MOPartGroup
	parts, err := ts.MOParts(g)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = ts.StoreJoinedMO(context.Background(), parts, &MO{Enterprise: "E1", Text: "xx"}) })
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, ErrMOPartsGone):
			t.Fatal(err)
		}
	}
	if stored != 1 || len(ts.inboxTexts("E1")) != 1 {
		t.Fatalf("%d joins stored, inbox %q; want one", stored, ts.inboxTexts("E1"))
	}

	for seq := uint8(1); seq <= 2; seq++ {
		ts.storeMOPart(moPart(2, 2, seq, "y"), MOPartLimits{})
	}
	g.Ref = 2
	stale, _ := ts.MOParts(g)
	again := moPart(2, 2, 2, "y")
	again.ReceivedAt = time.Now().Add(time.Second)
	ts.storeMOPart(again, MOPartLimits{})
	if err := ts.StoreJoinedMO(context.Background(), stale, &MO{Enterprise: "E1"}); !errors.Is(err, ErrMOPartsGone) {
		t.Fatalf("join of parts read before one came again: %v, want ErrMOPartsGone", err)
	}
	if _, err := ts.joinMO(g); err != nil {
		t.Fatal(err)
	}
	if got := ts.inboxTexts("E1"); len(got) != 2 {
		t.Fatalf("inbox %q, want two replies", got)
	}
}

// TestMOPartsCrash: a complete group whose join never ran (a crash after
// the last part's answer) is on disk after a reopen, listed complete, and
// joined once; an incomplete one is listed with its parts and start.
func TestMOPartsCrash(t *testing.T) {
	ts := newStore(t, Options{})
	start := time.Unix(1_790_000_000, 0)
	for seq := uint8(1); seq <= 2; seq++ {
		p := moPart(9, 2, seq, "half")
		p.ReceivedAt = start.Add(time.Duration(seq) * time.Second)
		ts.storeMOPart(p, MOPartLimits{})
	}
	lone := moPart(10, 3, 2, "middle")
	lone.ReceivedAt = start
	ts.storeMOPart(lone, MOPartLimits{})
	ts.reopen()
	groups, err := ts.MOPartGroups()
	if err != nil || len(groups) != 2 {
		t.Fatalf("groups after reopen %+v, %v", groups, err)
	}
	for _, gi := range groups {
		switch gi.Group.Ref {
		case 9:
			if !gi.Complete || gi.Parts != 2 || !gi.Started.Equal(start.Add(time.Second)) {
				t.Errorf("complete group %+v", gi)
			}
			if _, err := ts.joinMO(gi.Group); err != nil {
				t.Fatal(err)
			}
		case 10:
			if gi.Complete || gi.Parts != 1 || !gi.Started.Equal(start) {
				t.Errorf("incomplete group %+v", gi)
			}
			m, err := ts.joinMO(gi.Group)
			if err != nil || m.PartsMissing != 2 || m.Text != "middle" {
				t.Fatalf("timed-out group joined as %+v, %v", m, err)
			}
		}
	}
	ts.reopen()
	list, _, _ := ts.Inbox("E1", InboxFilter{}, 0, 10)
	if len(list) != 2 || list[0].PartsMissing != 2 || list[1].Text != "halfhalf" || list[1].PartsMissing != 0 {
		t.Fatalf("inbox %+v", list)
	}
	if groups, _ := ts.MOPartGroups(); len(groups) != 0 {
		t.Fatalf("groups left %+v", groups)
	}
}

// TestMOPartsCap: an upstream's pending parts never exceed the cap, in
// count or octets; the part past it is refused with ErrMOPartsFull and
// nothing written; another upstream is not held up by it; joining frees
// room.
func TestMOPartsCap(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	lim := MOPartLimits{MaxParts: 5, MaxBytes: 40}
	ctx := context.Background()
	refused := 0
	for ref := uint16(0); ref < 20; ref++ {
		_, err := ts.StoreMOPart(ctx, moPart(ref, 2, 1, "0123456"), lim) // first parts only: never complete
		switch {
		case errors.Is(err, ErrMOPartsFull):
			refused++
		case err != nil:
			t.Fatal(err)
		}
		if n, b, _ := ts.MOPartsPending("up"); n > lim.MaxParts || b > lim.MaxBytes {
			t.Fatalf("%d parts, %d octets pending: past the cap %+v", n, b, lim)
		}
	}
	if n, _, _ := ts.MOPartsPending("up"); n != 5 || refused != 15 {
		t.Fatalf("%d parts pending, %d refused; want 5, 15", n, refused)
	}
	// Octets: a part that fits the count but not the bytes.
	big := moPart(100, 2, 1, strings.Repeat("x", 41))
	big.Upstream = "other"
	if _, err := ts.StoreMOPart(ctx, big, lim); !errors.Is(err, ErrMOPartsFull) {
		t.Fatalf("41 octets under a 40-octet cap: %v", err)
	}
	other := moPart(100, 2, 1, "fits")
	other.Upstream = "other"
	ts.storeMOPart(other, lim)
	// A part sent again fits at the cap: it replaces, adds none.
	ts.storeMOPart(moPart(0, 2, 1, "0123456"), lim)
	// Completing a group at the cap: its last part is a new one, refused;
	// the gateway then stores it alone.
	if _, err := ts.StoreMOPart(ctx, moPart(0, 2, 2, "z"), lim); !errors.Is(err, ErrMOPartsFull) {
		t.Fatalf("a sixth part: %v", err)
	}
	if _, err := ts.StoreMOPart(ctx, &MOPart{MOPartGroup: MOPartGroup{Upstream: "up", Source: "a\x00b", Total: 2}, Seq: 1}, lim); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a source with NUL: %v, want ErrInvalid", err)
	}
	groups, _ := ts.MOPartGroups()
	for _, gi := range groups {
		if _, err := ts.joinMO(gi.Group); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, _ := ts.MOPartsPending("up"); n != 0 {
		t.Fatalf("%d pending after the joins", n)
	}
	ts.storeMOPart(moPart(0, 2, 2, "z"), lim)
}

// TestCheckMOParts: Check names a moparts key that does not decode and
// counters that are not the parts' sums.
func TestCheckMOParts(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ts.storeMOPart(moPart(1, 2, 1, "abc"), MOPartLimits{})
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	write := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := ts.db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOParts).Put([]byte("up\x00bad key"), encodeMOPart(moPart(1, 2, 1, "abc")))
	})
	err := ts.Check()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "moparts key") {
		t.Fatalf("check of a bad key: %v", err)
	}
	write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOParts).Delete([]byte("up\x00bad key"))
	})
	write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOPartN).Put([]byte("up"), encodeMOPartCount(moPartCount{Parts: 2, Bytes: 3}))
	})
	if err := ts.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("check of wrong counters: %v", err)
	}
	write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOPartN).Put([]byte("up"), encodeMOPartCount(moPartCount{Parts: 1, Bytes: 3}))
	})
}

// TestMOPartsJoinedAgain: a part of a reply joined lately, sent again
// with the same data (the SMSC resending after our answer was lost), is
// not stored (ErrMOPartJoined) and starts no group that would end as a
// second, partial reply; with other data (a new reply reusing the
// reference) it is stored; once the marker is purged, stored again. A
// timed-out join marks only the parts that came: the late part is new.
func TestMOPartsJoinedAgain(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	pending := func() int {
		t.Helper()
		n, _, err := ts.MOPartsPending("up")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ts.storeMOPart(moPart(7, 2, 1, "first half, "), MOPartLimits{})
	ts.storeMOPart(moPart(7, 2, 2, "second half"), MOPartLimits{})
	if _, err := ts.joinMO(moPart(7, 2, 1, "").MOPartGroup); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.StoreMOPart(ctx, moPart(7, 2, 2, "second half"), MOPartLimits{}); !errors.Is(err, ErrMOPartJoined) {
		t.Fatalf("the last part sent again: %v, want ErrMOPartJoined", err)
	}
	ts.reopen()
	if _, err := ts.StoreMOPart(ctx, moPart(7, 2, 1, "first half, "), MOPartLimits{}); !errors.Is(err, ErrMOPartJoined) {
		t.Fatalf("the first part sent again after a reopen: %v, want ErrMOPartJoined", err)
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d parts pending after the parts sent again, want 0", n)
	}
	ts.storeMOPart(moPart(7, 2, 1, "another reply"), MOPartLimits{}) // same reference, other text
	if n := pending(); n != 1 {
		t.Fatalf("%d parts pending after a new reply's part, want 1", n)
	}
	if n, err := ts.PurgeJoinedMOParts(ctx, time.Now().Add(-time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("purged %d marks joined before an hour ago (%v), want 0", n, err)
	}
	if n, err := ts.PurgeJoinedMOParts(ctx, time.Now().Add(time.Second), 100); err != nil || n != 1 {
		t.Fatalf("purged %d marks (%v), want 1", n, err)
	}
	if complete := ts.storeMOPart(moPart(7, 2, 2, "second half"), MOPartLimits{}); !complete {
		t.Fatal("with its mark purged, the part is stored and completes the new group")
	}

	// Timed out with part 2 of 3 missing: parts 1 and 3 sent again are
	// dropped, part 2 (late) is stored.
	ts.storeMOPart(moPart(9, 3, 1, "a"), MOPartLimits{})
	ts.storeMOPart(moPart(9, 3, 3, "c"), MOPartLimits{})
	if _, err := ts.joinMO(moPart(9, 3, 1, "").MOPartGroup); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*MOPart{moPart(9, 3, 1, "a"), moPart(9, 3, 3, "c")} {
		if _, err := ts.StoreMOPart(ctx, p, MOPartLimits{}); !errors.Is(err, ErrMOPartJoined) {
			t.Fatalf("part %d of a timed-out join sent again: %v, want ErrMOPartJoined", p.Seq, err)
		}
	}
	before := pending()
	ts.storeMOPart(moPart(9, 3, 2, "b"), MOPartLimits{})
	if n := pending(); n != before+1 {
		t.Fatalf("the late part: %d pending, want %d", n, before+1)
	}
}

// TestMOBinaryKept: a binary part keeps its data_coding and UDH through
// the store (its own record version), a text part beside it does not
// take them, and a joined binary reply keeps its octets in the inbox;
// fields a text reply or part cannot have are refused.
func TestMOBinaryKept(t *testing.T) {
	ts := newStore(t, Options{})
	udh := []byte{6, 5, 4, 0x0B, 0x84, 0x23, 0xF0}
	bin := moPart(7, 2, 1, "\x00\xff")
	bin.Binary, bin.DataCoding, bin.UDH = true, 0xF5, udh
	ts.storeMOPart(bin, MOPartLimits{})
	text := moPart(8, 2, 1, "hi")
	ts.storeMOPart(text, MOPartLimits{})
	parts, err := ts.MOParts(bin.MOPartGroup)
	if err != nil || len(parts) != 1 {
		t.Fatalf("parts %v, %v", parts, err)
	}
	if p := parts[0]; !p.Binary || p.DataCoding != 0xF5 || !bytes.Equal(p.UDH, udh) || !bytes.Equal(p.Data, []byte{0, 0xff}) {
		t.Fatalf("binary part read back as %+v", p)
	}
	if parts, _ := ts.MOParts(text.MOPartGroup); len(parts) != 1 || parts[0].Binary || parts[0].UDH != nil {
		t.Fatalf("text part read back as %+v", parts[0])
	}
	// Port TLVs: a record of their own version, read back as they were;
	// a part with one port keeps the other absent.
	src, dst := uint16(0), uint16(0x23F4)
	last := moPart(7, 2, 2, "\x01")
	last.Binary, last.DataCoding, last.SourcePort, last.DestPort = true, 0xF5, &src, &dst
	ts.storeMOPart(last, MOPartLimits{})
	parts, _ = ts.MOParts(bin.MOPartGroup)
	if len(parts) != 2 || parts[0].SourcePort != nil || parts[0].DestPort != nil ||
		parts[1].SourcePort == nil || *parts[1].SourcePort != 0 || parts[1].DestPort == nil || *parts[1].DestPort != 0x23F4 {
		t.Fatalf("ports read back as %+v", parts)
	}
	if v := encodeMOPart(parts[0]); v[0] != moPartBinaryVersion {
		t.Fatalf("a binary part without ports written as version %d, want %d", v[0], moPartBinaryVersion)
	}
	one := *parts[1]
	one.SourcePort = nil
	if p, err := decodeMOPart(moPartKey(one.MOPartGroup, one.Seq), encodeMOPart(&one)); err != nil || p.SourcePort != nil || *p.DestPort != 0x23F4 {
		t.Fatalf("destination port alone read back as %+v, %v", p, err)
	}
	m := &MO{Enterprise: "E1", Source: bin.Source, Dest: bin.Dest, Upstream: bin.Upstream,
		Binary: []byte{0, 0xff, 1}, DataCoding: 0xF5, UDH: udh, SourcePort: &src, DestPort: &dst}
	if err := ts.StoreJoinedMO(context.Background(), parts, m); err != nil {
		t.Fatal(err)
	}
	list, _, err := ts.Inbox("E1", InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("inbox %v, %v", list, err)
	}
	if got := list[0]; !bytes.Equal(got.Binary, m.Binary) || got.DataCoding != 0xF5 || !bytes.Equal(got.UDH, udh) || got.Text != "" ||
		got.SourcePort == nil || *got.SourcePort != 0 || got.DestPort == nil || *got.DestPort != 0x23F4 {
		t.Fatalf("joined binary reply read back as %+v", got)
	}
	for _, bad := range []*MO{
		{Enterprise: "E1", Text: "x", DataCoding: 4},
		{Enterprise: "E1", Text: "x", UDH: udh},
		{Enterprise: "E1", Binary: make([]byte, maxMOBinary+1)},
		{Enterprise: "E1", Text: "x", DestPort: &dst},
	} {
		if err := ts.StoreMO(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("StoreMO(dc %d, udh %d, %d octets): %v, want ErrInvalid", bad.DataCoding, len(bad.UDH), len(bad.Binary), err)
		}
	}
	bad := moPart(9, 2, 1, "x")
	bad.DataCoding = 4
	if _, err := ts.StoreMOPart(context.Background(), bad, MOPartLimits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a text part with a data_coding: %v, want ErrInvalid", err)
	}
	bad = moPart(9, 2, 1, "x")
	bad.SourcePort = &src
	if _, err := ts.StoreMOPart(context.Background(), bad, MOPartLimits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a text part with a port: %v, want ErrInvalid", err)
	}
}

// TestRecentMOs: the MOs received within the window before the newest,
// newest id first, however their ids and times interleave, at most max;
// the scan stops recentMOsSlack MOs past the window.
func TestRecentMOs(t *testing.T) {
	ts := newStore(t, Options{})
	if list, err := ts.RecentMOs(10*time.Second, 100); err != nil || len(list) != 0 {
		t.Fatalf("an empty store: %v, %v", list, err)
	}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	store := func(text string, at time.Time) {
		t.Helper()
		if err := ts.StoreMO(context.Background(), &MO{Enterprise: "E1", Source: "13712345678", Dest: "106575001", Text: text, Upstream: "sim", ReceivedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	// Far older, past the slack: never read.
	store("ancient", t0.Add(-time.Hour))
	for i := range recentMOsSlack {
		store("old", t0.Add(-time.Minute+time.Duration(i)*time.Millisecond))
	}
	store("in", t0.Add(-20*time.Second)) // in the window once "late" raises its end
	store("edge", t0.Add(-5*time.Second))
	store("late", t0.Add(10*time.Second)) // received after "mid", committed before
	store("mid", t0)
	// An id newer than its time (a reply joined from its parts): read
	// first, it opens the window, which the others then move up.
	store("joined", t0.Add(-3*time.Minute))
	list, err := ts.RecentMOs(30*time.Second, 100)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range list {
		texts = append(texts, m.Text)
	}
	if want := []string{"mid", "late", "edge", "in"}; !slices.Equal(texts, want) {
		t.Fatalf("recent MOs %q, want %q", texts, want)
	}
	if list, _ := ts.RecentMOs(30*time.Second, 2); len(list) != 2 || list[0].Text != "mid" {
		t.Fatalf("at most 2: %v", list)
	}
	// A record that does not decode, the newest: skipped, not an error.
	bad := msgKey(1 << 40)
	put := func(v []byte) {
		t.Helper()
		if err := ts.db.Update(func(tx *bolt.Tx) error {
			if v == nil {
				return tx.Bucket(bucketMO).Delete(bad)
			}
			return tx.Bucket(bucketMO).Put(bad, v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	put([]byte{moVersion, '{'})
	list, err = ts.RecentMOs(30*time.Second, 100)
	put(nil) // the Cleanup's Check would report it
	if err != nil || len(list) != 4 {
		t.Fatalf("with a damaged record: %d MOs, %v; want the 4", len(list), err)
	}
}

// TestRepliesAnswered: the mark of a stop that answered every reply is
// read once, by the next start, and says nothing of the run after it.
func TestRepliesAnswered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.TakeRepliesAnswered(t.Context()); ok || err != nil {
		t.Fatalf("a new store: marked %v, %v", ok, err)
	}
	at := time.Unix(1_796_000_000, 123).UTC()
	if err := s.MarkRepliesAnswered(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, ok, err := s.TakeRepliesAnswered(t.Context()); !ok || err != nil || !got.Equal(at) {
		t.Fatalf("after the stop: %v %v %v, want %v", got, ok, err, at)
	}
	if _, ok, err := s.TakeRepliesAnswered(t.Context()); ok || err != nil {
		t.Fatalf("taken twice: %v, %v", ok, err)
	}
}

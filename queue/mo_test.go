package queue

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestMOStoreForwardInbox(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	store := func(ent, acct, text string) uint64 {
		t.Helper()
		m := &MO{Enterprise: ent, Account: acct, Source: "13712345678", Dest: "10657500112", Text: text, Upstream: "sim"}
		if err := ts.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	a1 := store("E1", "alice", "one")
	e1 := store("E1", "", "two")
	b1 := store("E2", "bob", "three")
	u1 := store("", "", "nobody's")
	a2 := store("E1", "alice", "four")

	pending := func(ent string) []uint64 {
		t.Helper()
		list, err := ts.PendingMOs(ent, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := pending("E1"); len(got) != 3 || got[0] != a1 || got[1] != e1 || got[2] != a2 {
		t.Fatalf("pending E1 %v, want %d %d %d", got, a1, e1, a2)
	}
	if got := pending(""); len(got) != 0 {
		t.Fatalf("an MO without enterprise is never forwarded: %v", got)
	}
	if err := ts.AckMO(ctx, "E1", e1, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if err := ts.AckMO(ctx, "E1", e1, time.Now(), false); err != nil { // idempotent
		t.Fatal(err)
	}
	ts.reopen()
	if got := pending("E1"); len(got) != 2 || got[0] != a1 || got[1] != a2 {
		t.Fatalf("pending E1 after ack and reopen %v", got)
	}

	inbox := func(ent, acct string, before uint64, limit int) ([]uint64, uint64) {
		t.Helper()
		list, next, err := ts.Inbox(ent, InboxFilter{Account: acct}, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		return ids, next
	}
	got, next := inbox("E1", "", 0, 2)
	if len(got) != 2 || got[0] != a2 || got[1] != e1 || next != e1 {
		t.Fatalf("E1 page 1: %v next %d", got, next)
	}
	got, next = inbox("E1", "", next, 2)
	if len(got) != 1 || got[0] != a1 || next != 0 {
		t.Fatalf("E1 page 2: %v next %d", got, next)
	}
	if got, _ := inbox("E1", "alice", 0, 10); len(got) != 2 || got[0] != a2 || got[1] != a1 {
		t.Fatalf("alice: %v", got)
	}
	if got, _ := inbox("E2", "", 0, 10); len(got) != 1 || got[0] != b1 {
		t.Fatalf("E2: %v", got)
	}
	if got, _ := inbox("", "", 0, 10); len(got) != 1 || got[0] != u1 {
		t.Fatalf("unmatched: %v", got)
	}
	list, _, _ := ts.Inbox("E1", InboxFilter{}, 0, 10)
	if list[1].ForwardedAt.IsZero() || list[1].Text != "two" {
		t.Fatalf("acknowledged MO: %+v", list[1])
	}
}

// Retention deletes every reply received before the cutoff, with its
// keys: forwarded, owned by no enterprise, or still to forward (counted
// untaken: no receiver took it within the retention; before, it stayed,
// and every later purge decoded it again in the commit loop). Newer ones
// stay. The indexes stay consistent (Check).
func TestPurgeMOs(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	old := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	store := func(ent string, at time.Time) uint64 {
		t.Helper()
		m := &MO{Enterprise: ent, Source: "13712345678", Dest: "10657500112", Text: "TD", Upstream: "sim", ReceivedAt: at}
		if err := ts.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	forwarded := store("E1", old)
	unowned := store("", old)
	waiting := store("E1", old)
	fresh := store("E1", old.Add(48*time.Hour))
	freshWaiting := store("E1", old.Add(48*time.Hour))
	if err := ts.AckMO(ctx, "E1", forwarded, old.Add(time.Minute), false); err != nil {
		t.Fatal(err)
	}
	if err := ts.AckMO(ctx, "E1", fresh, old.Add(49*time.Hour), false); err != nil {
		t.Fatal(err)
	}
	cutoff := old.Add(24 * time.Hour)
	n, untaken, err := ts.PurgeMOs(ctx, cutoff, 100)
	if err != nil || n != 3 || untaken != 1 {
		t.Fatalf("PurgeMOs = %d (%d untaken), %v; want 3 (the forwarded, the unowned, the waiting: 1 untaken)", n, untaken, err)
	}
	ids := func(ent string) map[uint64]bool {
		list, _, err := ts.Inbox(ent, InboxFilter{}, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]bool{}
		for _, m := range list {
			got[m.ID] = true
		}
		return got
	}
	if got := ids("E1"); len(got) != 2 || !got[fresh] || !got[freshWaiting] || got[forwarded] || got[waiting] {
		t.Errorf("E1's inbox after the purge: %v, want %d and %d", got, fresh, freshWaiting)
	}
	if got := ids(""); got[unowned] {
		t.Errorf("the unowned reply was kept: %v", got)
	}
	// Only the newer one is still to forward.
	pending, err := ts.PendingMOs("E1", 10, nil)
	if err != nil || len(pending) != 1 || pending[0].ID != freshWaiting {
		t.Errorf("still to forward after the purge: %v, %v; want only %d", pending, err, freshWaiting)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := ts.PurgeMOs(ctx, cutoff, 100); err != nil || n != 0 {
		t.Errorf("a second purge: %d, %v", n, err)
	}
	ts.reopen()
	if got := ids("E1"); len(got) != 2 {
		t.Errorf("after reopen: %v", got)
	}
}

// TestInboxFilter: the inbox narrowed to a handset's number however the
// SMSC wrote it, to a time range and to an account; a call reads at most
// listScan MOs, so a filtered page can be short with a cursor, and paging
// on finds every match once, newest first.
func TestInboxFilter(t *testing.T) {
	old := listScan
	listScan = 5
	t.Cleanup(func() { listScan = old })
	ts := newStore(t, Options{NoSync: true})
	t0 := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	sources := []string{"8613712345678", "13800138000", "+86 137 1234 5678", "13912345678", "13712345678"}
	var ids []uint64
	for i := range 20 {
		m := &MO{Enterprise: "E1", Account: []string{"alice", ""}[i%2], Source: sources[i%len(sources)], Dest: "10657500112",
			Text: "回复", Upstream: "sim", ReceivedAt: t0.Add(time.Duration(i) * time.Minute)}
		if err := ts.StoreMO(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	all := func(f InboxFilter) []int {
		t.Helper()
		var got []int
		var before uint64
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("%+v: no end to the pages", f)
			}
			list, next, err := ts.Inbox("E1", f, before, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range list {
				got = append(got, int(m.ID-ids[0]))
			}
			if next == 0 {
				return got
			}
			before = next
		}
	}
	for _, tc := range []struct {
		name string
		f    InboxFilter
		want []int
	}{
		{"every form of one number", InboxFilter{Number: "137-1234-5678"}, []int{19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0}},
		{"its last digits", InboxFilter{Number: "712345678"}, []int{19, 17, 15, 14, 12, 10, 9, 7, 5, 4, 2, 0}},
		{"another number", InboxFilter{Number: "+8613800138000"}, []int{16, 11, 6, 1}},
		{"a time range", InboxFilter{From: t0.Add(3 * time.Minute), To: t0.Add(6 * time.Minute)}, []int{5, 4, 3}},
		{"an account and a number", InboxFilter{Account: "alice", Number: "13912345678"}, []int{18, 8}},
		{"nothing matches", InboxFilter{Number: "13000000000"}, nil},
	} {
		if got := all(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A page that reads listScan MOs without a match ends short, with a
	// cursor past what it read.
	list, next, err := ts.Inbox("E1", InboxFilter{Number: "13000000000"}, 0, 3)
	if err != nil || len(list) != 0 || next != ids[15] {
		t.Fatalf("first page of no match: %d, next %d, %v; want none and next %d", len(list), next, err, ids[15])
	}
	if _, _, err := ts.Inbox("E1", InboxFilter{Number: "+-"}, 0, 3); err == nil {
		t.Error("a number without a digit was taken")
	}

	// Every enterprise's: another enterprise's reply and one no
	// enterprise owns come too, each with its owner, newest first; paged
	// as one enterprise's is.
	for _, e := range []string{"E2", ""} {
		if err := ts.StoreMO(context.Background(), &MO{Enterprise: e, Source: "13712345678", Dest: "106575002", Text: "别处", Upstream: "sim", ReceivedAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var before uint64
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("every enterprise's: no end to the pages")
		}
		list, next, err := ts.Inbox("", InboxFilter{Number: "+86 137 1234 5678", AllEnterprises: true}, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			got = append(got, m.Enterprise+"/"+strconv.Itoa(int(m.ID-ids[0])))
		}
		if next == 0 {
			break
		}
		before = next
	}
	if want := []string{"/21", "E2/20", "E1/19", "E1/17", "E1/15", "E1/14", "E1/12", "E1/10", "E1/9", "E1/7", "E1/5", "E1/4", "E1/2", "E1/0"}; !slices.Equal(got, want) {
		t.Errorf("every enterprise's replies from 13712345678: %v, want %v", got, want)
	}
	// A source JSON escapes (the search's peek declines it): decoded, and
	// found by its digits all the same.
	odd := &MO{Enterprise: "E3", Source: "<13712345678>", Dest: "106575003", Text: "x", Upstream: "sim", ReceivedAt: t0}
	if err := ts.StoreMO(context.Background(), odd); err != nil {
		t.Fatal(err)
	}
	if list, _, err := ts.Inbox("E3", InboxFilter{Number: "13712345678"}, 0, 3); err != nil || len(list) != 1 || list[0].ID != odd.ID {
		t.Errorf("a source with escapes: %v, %v", list, err)
	}
	for _, bad := range []struct {
		ent string
		f   InboxFilter
	}{{"", InboxFilter{AllEnterprises: true}}, {"E1", InboxFilter{AllEnterprises: true, Number: "5678"}}} {
		if _, _, err := ts.Inbox(bad.ent, bad.f, 0, 3); !errors.Is(err, ErrInvalid) {
			t.Errorf("every enterprise's, enterprise %q, number %q: %v, want ErrInvalid", bad.ent, bad.f.Number, err)
		}
	}
}

// TestSameNumber: a source and the number asked, as digits.
func TestSameNumber(t *testing.T) {
	for _, tc := range []struct {
		src, asked string
		want       bool
	}{
		{"8613712345678", "13712345678", true}, // the SMSC's form with the country code
		{"13712345678", "8613712345678", true}, // the question's
		{"13712345678", "5678", true},          // the last digits
		{"13912345678", "13712345678", false},
		{"10086", "8613810086", false}, // a short code ends many numbers: not a match
		{"1008612", "8613811008612", true},
	} {
		if got := sameNumber(tc.src, tc.asked); got != tc.want {
			t.Errorf("sameNumber(%q, %q) = %v, want %v", tc.src, tc.asked, got, tc.want)
		}
	}
}

// A reply the ESME refused for good is answered (no longer pending) and
// says so in the inbox, across a reopen; a later answer does not change
// what the first one said.
func TestAckMORefused(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	m := &MO{Enterprise: "E1", Account: "alice", Source: "13712345678", Dest: "10657500112", Text: "TD", Upstream: "sim"}
	if err := ts.StoreMO(ctx, m); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	if err := ts.AckMO(ctx, "E1", m.ID, at, true); err != nil {
		t.Fatal(err)
	}
	if err := ts.AckMO(ctx, "E1", m.ID, at.Add(time.Minute), false); err != nil {
		t.Fatal(err)
	}
	ts.reopen()
	if p, err := ts.PendingMOs("E1", 0, nil); err != nil || len(p) != 0 {
		t.Fatalf("pending after a refusal: %d %v, want none", len(p), err)
	}
	list, _, err := ts.Inbox("E1", InboxFilter{}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("inbox: %d %v", len(list), err)
	}
	if got := list[0]; !got.Refused || !got.ForwardedAt.Equal(at) {
		t.Errorf("inbox entry: refused %v at %v, want refused at %v", got.Refused, got.ForwardedAt, at)
	}
}

// TestPendingOptOuts: an opt-out reply stored marked is pending until
// OptOutsRecorded, across a reopen, listed oldest first after a cursor;
// clearing is idempotent; retention takes a pending one with its key;
// an opt-out of no enterprise is refused.
func TestPendingOptOuts(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	var ids []uint64
	for i, text := range []string{"TD", "hello", "退订", "td"} {
		m := &MO{Enterprise: "E1", Source: "13712345678", Dest: "106575001", Text: text, Upstream: "sim",
			OptOutPending: text != "hello", ReceivedAt: old.Add(time.Duration(i) * 24 * time.Hour)}
		if err := ts.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	pending := func(after uint64, limit int) []uint64 {
		t.Helper()
		ms, err := ts.PendingOptOuts(after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, m := range ms {
			if !m.OptOutPending {
				t.Errorf("pending mo %d not marked", m.ID)
			}
			out = append(out, m.ID)
		}
		return out
	}
	if got, want := pending(0, 0), []uint64{ids[0], ids[2], ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("pending %v, want %v", got, want)
	}
	if got, want := pending(ids[0], 1), []uint64{ids[2]}; !slices.Equal(got, want) {
		t.Fatalf("pending after %d, 1: %v, want %v", ids[0], got, want)
	}
	if err := ts.OptOutsRecorded(ctx, []uint64{ids[2], ids[1], 999}); err != nil {
		t.Fatal(err)
	}
	if err := ts.OptOutsRecorded(ctx, []uint64{ids[2]}); err != nil { // idempotent
		t.Fatal(err)
	}
	ts.reopen()
	if got, want := pending(0, 0), []uint64{ids[0], ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("pending after one recorded and a reopen %v, want %v", got, want)
	}
	// Retention: the first (pending) and second go; Check (at cleanup)
	// finds no key left naming them.
	if n, _, err := ts.PurgeMOs(ctx, old.Add(36*time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("purged %d (%v), want 2", n, err)
	}
	if got, want := pending(0, 0), []uint64{ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("pending after the purge %v, want %v", got, want)
	}
	if err := ts.StoreMO(ctx, &MO{Source: "13712345678", Dest: "1", Text: "TD", OptOutPending: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an opt-out of no enterprise: %v, want ErrInvalid", err)
	}
}

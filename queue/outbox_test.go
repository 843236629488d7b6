package queue

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// scheduled returns a message of enterprise ent due at sendAt.
func scheduledMsg(account, ent, dest string, parts int, sendAt time.Time) *Message {
	m := msg(account, dest, parts)
	m.Enterprise = ent
	m.SendAt = sendAt
	m.ValidUntil = sendAt.Add(time.Hour)
	return m
}

func ids(ms []*Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestListFiltersAndPaging(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-time.Hour)
	var a []uint64 // enterprise A's ids, oldest first
	for i := range 12 {
		m := msg("a1", "1380000000"+string(rune('0'+i%10)), 1)
		if i%3 == 2 {
			m.Account = "a2"
		}
		m.Enterprise = "A"
		m.AcceptedAt = t0.Add(time.Duration(i) * time.Minute)
		// A priority message's record is of the extended version: it is
		// listed as any other (before 2026-12-07 the list's peek at its
		// owner refused that version, left it out and logged it damaged).
		m.Priority = i == 5
		s.enqueue(m)
		a = append(a, m.ID)
		b := msg("b1", "13900000000", 1) // interleaved: another enterprise
		b.Enterprise = "B"
		s.enqueue(b)
	}
	future := scheduledMsg("a1", "A", "13800000099", 2, now.Add(time.Hour))
	s.enqueue(future)
	// Deliver A's oldest, fail the next.
	s.submitted(Key{a[0], 0}, "s0")
	s.dlr("up1", "s0", StateDelivered)
	if err := s.Fail(ctx, Key{a[1], 0}, StateRejected, "0x00000045", now); err != nil {
		t.Fatal(err)
	}

	list := func(f ListFilter, after uint64, limit int) ([]*Message, uint64) {
		t.Helper()
		ms, next, err := s.List(f, after, limit)
		if err != nil {
			t.Fatalf("list %+v: %v", f, err)
		}
		for _, m := range ms {
			if m.Enterprise != f.Enterprise {
				t.Fatalf("message %d of %s listed for %s", m.ID, m.Enterprise, f.Enterprise)
			}
		}
		return ms, next
	}

	// Every A message, newest first, in pages of 5.
	var got []uint64
	after := uint64(0)
	pages := 0
	for {
		ms, next := list(ListFilter{Enterprise: "A"}, after, 5)
		got = append(got, ids(ms)...)
		pages++
		if next == 0 {
			break
		}
		if len(ms) != 5 || next != ms[4].ID {
			t.Fatalf("page %d: %d messages, next %d", pages, len(ms), next)
		}
		after = next
	}
	want := append(slices.Clone(a), future.ID)
	slices.Reverse(want)
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("pages %d, got %v, want %v", pages, got, want)
	}

	// Filters.
	if ms, _ := list(ListFilter{Enterprise: "A", Scheduled: true}, 0, 0); !slices.Equal(ids(ms), []uint64{future.ID}) {
		t.Errorf("scheduled: %v", ids(ms))
	}
	if ms, _ := list(ListFilter{Enterprise: "A", Sent: true}, 0, 0); len(ms) != 12 || slices.Contains(ids(ms), future.ID) {
		t.Errorf("sent: %v", ids(ms))
	}
	// Once its time has come it is in the sent outbox.
	if ms, _ := list(ListFilter{Enterprise: "A", Sent: true, Now: now.Add(2 * time.Hour)}, 0, 0); len(ms) != 13 {
		t.Errorf("sent later: %d", len(ms))
	}
	if ms, _ := list(ListFilter{Enterprise: "A", State: StateDelivered}, 0, 0); !slices.Equal(ids(ms), []uint64{a[0]}) {
		t.Errorf("delivered: %v", ids(ms))
	}
	if ms, _ := list(ListFilter{Enterprise: "A", State: StateRejected}, 0, 0); !slices.Equal(ids(ms), []uint64{a[1]}) {
		t.Errorf("rejected: %v", ids(ms))
	}
	if ms, _ := list(ListFilter{Enterprise: "A", Account: "a2"}, 0, 0); !slices.Equal(ids(ms), []uint64{a[11], a[8], a[5], a[2]}) {
		t.Errorf("account a2: %v", ids(ms))
	}
	from, to := t0.Add(3*time.Minute), t0.Add(6*time.Minute) // [3, 6)
	if ms, _ := list(ListFilter{Enterprise: "A", From: from, To: to}, 0, 0); !slices.Equal(ids(ms), []uint64{a[5], a[4], a[3]}) {
		t.Errorf("from/to: %v", ids(ms))
	}
	// By the recipient: in any form, or its last digits.
	for _, n := range []string{"13800000001", "+86 138-0000-0001", "8613800000001", "0001"} {
		if ms, _ := list(ListFilter{Enterprise: "A", Number: n}, 0, 0); !slices.Equal(ids(ms), []uint64{a[11], a[1]}) {
			t.Errorf("number %q: %v", n, ids(ms))
		}
	}
	if ms, _ := list(ListFilter{Enterprise: "A", Number: "99", Scheduled: true}, 0, 0); !slices.Equal(ids(ms), []uint64{future.ID}) {
		t.Errorf("number 99, scheduled: %v", ids(ms))
	}
	if ms, _ := list(ListFilter{Enterprise: "A", Number: "13900000000"}, 0, 0); len(ms) != 0 {
		t.Errorf("another enterprise's number: %v", ids(ms))
	}
	// Every enterprise's, to a number: B's twelve, newest first.
	all, _, err := s.List(ListFilter{AllEnterprises: true, Number: "13900000000"}, 0, 100)
	if err != nil || len(all) != 12 || all[0].Enterprise != "B" || all[0].ID < all[11].ID {
		t.Errorf("every enterprise's to 13900000000: %d (%v)", len(all), err)
	}
	all, _, _ = s.List(ListFilter{AllEnterprises: true, Number: "13800000001"}, 0, 100)
	if !slices.Equal(ids(all), []uint64{a[11], a[1]}) {
		t.Errorf("every enterprise's to 13800000001: %v", ids(all))
	}
	if ms, _ := list(ListFilter{Enterprise: "nobody"}, 0, 0); len(ms) != 0 {
		t.Errorf("unknown enterprise: %v", ids(ms))
	}
	// A cursor past the end starts at the newest; one at the oldest ends.
	if ms, _ := list(ListFilter{Enterprise: "A"}, 1<<40, 1); len(ms) != 1 || ms[0].ID != future.ID {
		t.Errorf("after beyond the end: %v", ids(ms))
	}
	if ms, next := list(ListFilter{Enterprise: "A"}, a[0], 10); len(ms) != 0 || next != 0 {
		t.Errorf("after the oldest: %v next %d", ids(ms), next)
	}

	for _, f := range []ListFilter{{}, {Enterprise: "A", Scheduled: true, Sent: true}, {Enterprise: "A", State: 77}, {Enterprise: "A", Number: "+-"},
		{AllEnterprises: true}, {AllEnterprises: true, Enterprise: "A", Number: "1"}} {
		if _, _, err := s.List(f, 0, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("list %+v: %v, want ErrInvalid", f, err)
		}
	}
}

// TestListBoundedScan: a call reads at most listScan records, returns what
// it found and a cursor, and paging on finds everything.
func TestListBoundedScan(t *testing.T) {
	old := listScan
	listScan = 7
	t.Cleanup(func() { listScan = old })
	s := newStore(t, Options{NoSync: true})
	var want []uint64
	for i := range 40 {
		m := msg("x", "13800000000", 1)
		m.Enterprise = "X"
		if i%10 == 0 {
			m.Account, m.Enterprise = "y", "Y"
			want = append(want, 0)
		}
		s.enqueue(m)
		if m.Enterprise == "Y" {
			want[len(want)-1] = m.ID
		}
	}
	slices.Reverse(want)
	var got []uint64
	after, calls := uint64(0), 0
	for {
		ms, next, err := s.List(ListFilter{Enterprise: "Y"}, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		got = append(got, ids(ms)...)
		if next == 0 {
			break
		}
		if next >= after && after != 0 {
			t.Fatalf("cursor did not move: %d after %d", next, after)
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if calls != 6 { // 40 records, 7 per call
		t.Errorf("%d calls", calls)
	}
}

func TestCancel(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	now := time.Now()
	m := scheduledMsg("acct", "E", "13800000001", 2, now.Add(time.Hour))
	other := scheduledMsg("acct", "E", "13800000002", 1, now.Add(time.Hour))
	other.RegisteredDelivery = 0
	atOnce := msg("acct", "13800000003", 1)
	atOnce.Enterprise = "E"
	soon := scheduledMsg("acct", "E", "13800000004", 1, now.Add(ScheduleMargin/2))
	s.enqueue(m, other, atOnce, soon)
	s.wantUsage("E", 5, 0)

	if err := s.Cancel(ctx, m.ID, "F"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel by another enterprise: %v", err)
	}
	if err := s.Cancel(ctx, 9999, "E"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	if err := s.Cancel(ctx, atOnce.ID, "E"); !errors.Is(err, ErrNotScheduled) {
		t.Fatalf("cancel unscheduled: %v", err)
	}
	if err := s.Cancel(ctx, soon.ID, "E"); !errors.Is(err, ErrNotScheduled) {
		t.Fatalf("cancel within the margin: %v", err)
	}
	if err := s.Cancel(ctx, m.ID, "E"); err != nil {
		t.Fatal(err)
	}
	if err := s.Cancel(ctx, m.ID, "E"); err != nil {
		t.Fatalf("cancel again: %v", err)
	}
	if err := s.Cancel(ctx, other.ID, "E"); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		got := s.get(m.ID)
		if got.State() != StateCancelled || !got.Final() || got.Scheduled(now) {
			t.Fatalf("state %s final %v", got.State(), got.Final())
		}
		for _, p := range got.Parts {
			if p.State != StateCancelled || p.DoneAt.IsZero() {
				t.Fatalf("part %+v", p)
			}
		}
		// The receipt waits for the account; the other asked for none.
		pend, err := s.PendingDLRs("acct", 0, nil)
		if err != nil || len(pend) != 1 || pend[0].ID != m.ID {
			t.Fatalf("pending receipts %v %v", pend, err)
		}
		if !s.get(other.ID).DLRForwarded {
			t.Fatal("no receipt requested: DLRForwarded")
		}
		// Only atOnce and soon are still due; usage released.
		keys := s.dueKeys(now.Add(2 * time.Hour))
		if !slices.Equal(keys, []Key{{atOnce.ID, 0}, {soon.ID, 0}}) && !slices.Equal(keys, []Key{{soon.ID, 0}, {atOnce.ID, 0}}) {
			t.Fatalf("due %v", keys)
		}
		s.wantUsage("E", 2, 0)
		s.wantCounts(map[State]int{StateAccepted: 2, StateCancelled: 3})
	}
	check()
	if calls := s.readyCalls(); !slices.Contains(calls, "acct") {
		t.Errorf("OnDLRReady calls %v", calls)
	}
	s.reopen()
	check()
	// A cancelled message is final: no transition applies any more.
	if err := s.Reschedule(ctx, m.ID, "E", now.Add(2*time.Hour), "", nil, 0, NoLimit); !errors.Is(err, ErrNotScheduled) {
		t.Fatalf("reschedule a cancelled message: %v", err)
	}
	if err := s.Fail(ctx, Key{m.ID, 0}, StateExpired, "", now); !errors.Is(err, ErrState) {
		t.Fatalf("fail a cancelled part: %v", err)
	}
}

func TestReschedule(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	now := time.Now()
	send := now.Add(time.Hour)
	m := scheduledMsg("acct", "E", "13800000001", 1, send)
	s.enqueue(m)
	s.wantUsage("E", 1, 0)

	// Wrong enterprise, unknown id, invalid parts.
	if err := s.Reschedule(ctx, m.ID, "F", send, "", nil, 0, NoLimit); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other enterprise: %v", err)
	}
	if err := s.Reschedule(ctx, 4242, "E", send, "", nil, 0, NoLimit); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if err := s.Reschedule(ctx, m.ID, "E", send, "x", [][]byte{}, 8, NoLimit); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no parts: %v", err)
	}

	// Later: the due key moves, the validity window keeps its length.
	later := send.Add(30 * time.Minute)
	if err := s.Reschedule(ctx, m.ID, "E", later, "", nil, 0, NoLimit); err != nil {
		t.Fatal(err)
	}
	got := s.get(m.ID)
	if !got.SendAt.Equal(later) || !got.ValidUntil.Equal(later.Add(time.Hour)) || !got.Parts[0].DueAt.Equal(later) {
		t.Fatalf("send %v valid %v due %v", got.SendAt, got.ValidUntil, got.Parts[0].DueAt)
	}
	if k := s.dueKeys(send.Add(time.Minute)); len(k) != 0 {
		t.Fatalf("still due at the old time: %v", k)
	}
	if k := s.dueKeys(later); len(k) != 1 {
		t.Fatalf("not due at the new time: %v", k)
	}

	// Longer text, 3 parts: refused past the limit (nothing changes), then
	// accepted; reserved grows by 2 and a reference is assigned.
	parts3 := [][]byte{{1}, {2}, {3}}
	if err := s.Reschedule(ctx, m.ID, "E", time.Time{}, "【测试】long", parts3, 8, 2); !errors.Is(err, ErrQuota) {
		t.Fatalf("over the limit: %v", err)
	}
	s.wantUsage("E", 1, 0)
	if got := s.get(m.ID); len(got.Parts) != 1 || got.Text != m.Text {
		t.Fatalf("changed after a refusal: %+v", got)
	}
	if err := s.Reschedule(ctx, m.ID, "E", time.Time{}, "【测试】long", parts3, 8, 3); err != nil {
		t.Fatal(err)
	}
	s.wantUsage("E", 3, 0)
	s.wantCounts(map[State]int{StateAccepted: 3})
	got = s.get(m.ID)
	if len(got.Parts) != 3 || got.Ref == 0 || got.Text != "【测试】long" || got.DataCoding != 8 || !got.SendAt.Equal(later) {
		t.Fatalf("after growing: %+v", got)
	}
	for i, p := range got.Parts {
		if p.State != StateAccepted || !p.DueAt.Equal(later) || p.Body[0] != byte(i+1) {
			t.Fatalf("part %d: %+v", i, p)
		}
	}

	// Shorter again, and sooner: single part, Ref 0, reservation back to 1.
	sooner := now.Add(10 * time.Minute)
	if err := s.Reschedule(ctx, m.ID, "E", sooner, "short", [][]byte{{9}}, 0, 3); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	s.wantUsage("E", 1, 0)
	s.wantCounts(map[State]int{StateAccepted: 1})
	got = s.get(m.ID)
	if len(got.Parts) != 1 || got.Ref != 0 || got.Text != "short" || got.DataCoding != 0 ||
		!got.SendAt.Equal(sooner) || !got.ValidUntil.Equal(sooner.Add(time.Hour)) {
		t.Fatalf("after shrinking: %+v", got)
	}

	// A send time in the past: at once. It is no longer scheduled, so it
	// cannot be changed again.
	if err := s.Reschedule(ctx, m.ID, "E", now.Add(-time.Hour), "", nil, 0, NoLimit); err != nil {
		t.Fatal(err)
	}
	if k := s.dueKeys(time.Now()); len(k) != 1 {
		t.Fatalf("not due at once: %v", k)
	}
	if err := s.Reschedule(ctx, m.ID, "E", later, "", nil, 0, NoLimit); !errors.Is(err, ErrNotScheduled) {
		t.Fatalf("reschedule after it became due: %v", err)
	}
	if err := s.Cancel(ctx, m.ID, "E"); !errors.Is(err, ErrNotScheduled) {
		t.Fatalf("cancel after it became due: %v", err)
	}
	// It is sent like any other message.
	s.submitted(Key{m.ID, 0}, "abc")
	s.dlr("up1", "abc", StateDelivered)
	s.wantUsage("E", 0, 1)
}

// TestRescheduleKeepsRefsApart: a message that becomes multi-part takes
// the next reference of its destination, like a new message would.
func TestRescheduleKeepsRefsApart(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	send := time.Now().Add(time.Hour)
	a := scheduledMsg("acct", "E", "13800000001", 2, send)
	b := scheduledMsg("acct", "E", "13800000001", 1, send)
	s.enqueue(a, b)
	if err := s.Reschedule(ctx, b.ID, "E", time.Time{}, "t", [][]byte{{1}, {2}}, 0, NoLimit); err != nil {
		t.Fatal(err)
	}
	if ra, rb := s.get(a.ID).Ref, s.get(b.ID).Ref; ra == rb || rb == 0 {
		t.Fatalf("refs %d and %d", ra, rb)
	}
}

// TestPeekHead: the lists' peek at a record's owner and recipient reads
// them as DecodeMessage does, for both record versions (a priority
// message's too: before 2026-12-07 its version was refused, and the
// message left out of every list), and never a wrong one from a
// truncated record.
func TestPeekHead(t *testing.T) {
	urgent := msg("acct", "13800138000", 2)
	urgent.Priority = true
	for _, m := range []*Message{
		{ID: 1, Account: "a", Enterprise: "E", Dest: "+86 138 0013 8000"},
		{ID: 1 << 60, Account: string(make([]byte, 255)), Enterprise: "", Source: "1069", Dest: ""},
		msg("acct", "1", 3),
		urgent,
	} {
		b := encodeMessage(nil, m)
		a, e, d, ok := peekHead(b)
		if !ok || string(a) != m.Account || string(e) != m.Enterprise || string(d) != m.Dest {
			t.Errorf("peek %q/%q/%q: %q %q %q %v", m.Account, m.Enterprise, m.Dest, a, e, d, ok)
		}
		for n := range len(b) { // truncated: no header, or the right one
			if a, e, d, ok := peekHead(b[:n]); ok && (string(a) != m.Account || string(e) != m.Enterprise || string(d) != m.Dest) {
				t.Errorf("truncated to %d: %q %q %q", n, a, e, d)
			}
		}
	}
	if _, _, _, ok := peekHead([]byte{3, 1, 0, 0, 0, 0}); ok {
		t.Error("unknown version accepted")
	}
}

// TestSameDigits: the peek's comparison of a recipient with the number
// asked is the store's own (sameNumber over the digits).
func TestSameDigits(t *testing.T) {
	for _, n := range []string{"+86 138-0013-8000", "8613800138000", "13800138000", "10086", "1008612", "", "+", "0013800138000"} {
		for _, asked := range []string{"13800138000", "8613800138000", "8000", "0", "10086", "8613811008612", "1008612", "138001380001"} {
			if got, want := sameDigits([]byte(n), asked), sameNumber(onlyDigits(n), asked); got != want {
				t.Errorf("%q asked %q: %v, want %v", n, asked, got, want)
			}
		}
	}
}

func TestParseState(t *testing.T) {
	for _, st := range States {
		if got, ok := ParseState(st.String()); !ok || got != st {
			t.Errorf("%s: %v %v", st, got, ok)
		}
	}
	if _, ok := ParseState("bogus"); ok {
		t.Error("bogus state parsed")
	}
	if !StateCancelled.Final() || StateCancelled.String() != "cancelled" {
		t.Error("cancelled")
	}
}

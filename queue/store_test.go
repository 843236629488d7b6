package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bg = context.Background()

func TestLifecycle(t *testing.T) {
	s := newStore(t, Options{})
	m := msg("alice", "13712345678", 2)
	m.Enterprise = "ent1"
	s.enqueue(m)
	if m.ID == 0 || m.Ref == 0 || m.AcceptedAt.IsZero() {
		t.Fatalf("enqueue did not assign id/ref/accepted_at: %+v", m)
	}
	for i, p := range m.Parts {
		if p.State != StateAccepted {
			t.Errorf("part %d is %s", i, p.State)
		}
	}
	s.wantCounts(map[State]int{StateAccepted: 2})
	s.wantUsage("ent1", 2, 0)

	jobs, err := s.Due(time.Now(), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Key != (Key{m.ID, 0}) || jobs[1].Key != (Key{m.ID, 1}) {
		t.Fatalf("due: %+v", jobs)
	}
	if jobs[0].Msg.Dest != m.Dest || string(jobs[1].Part.Body) != string(m.Parts[1].Body) {
		t.Errorf("due job content: %+v", jobs[1])
	}
	// skip (in flight) and max
	jobs, _ = s.Due(time.Now(), 1, func(k Key) bool { return k.Part == 0 })
	if len(jobs) != 1 || jobs[0].Key.Part != 1 {
		t.Errorf("due with skip: %+v", jobs)
	}

	s.submitted(Key{m.ID, 0}, "0A1B")
	s.submitted(Key{m.ID, 1}, "0A1C")
	s.wantCounts(map[State]int{StateSubmitted: 2})
	s.wantUsage("ent1", 2, 0)
	if got := s.dueKeys(time.Now()); len(got) != 0 {
		t.Errorf("due after submit: %v", got)
	}

	// The decimal of 0x0A1B: taken only once MatchOrphans rules out a
	// later message with that exact id.
	if r := s.dlr("up1", "2587", StateDelivered); r != Orphaned {
		t.Fatalf("dlr part 0: %s", r)
	}
	if r := s.matchOrphans(); !slices.Equal(r, []Result{Matched}) {
		t.Fatalf("dlr part 0 converted: %v", r)
	}
	s.wantCounts(map[State]int{StateSubmitted: 1, StateDelivered: 1})
	s.wantUsage("ent1", 1, 1)
	if p, _ := s.PendingDLRs("alice", 0, nil); len(p) != 0 {
		t.Errorf("DLR pending before every part is final: %d", len(p))
	}

	if r := s.dlr("up1", "a1c", StateUndeliverable); r != Matched {
		t.Fatalf("dlr part 1: %s", r)
	}
	s.wantCounts(map[State]int{StateDelivered: 1, StateUndeliverable: 1})
	s.wantUsage("ent1", 0, 1)
	if got := s.readyCalls(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("OnDLRReady calls: %v", got)
	}
	got := s.get(m.ID)
	if got.State() != StateUndeliverable || got.DLRForwarded {
		t.Errorf("message state %s forwarded %v", got.State(), got.DLRForwarded)
	}
	if p := got.Parts[0]; p.SMSCID != "0A1B" || p.SubmittedAt.IsZero() || p.DoneAt.IsZero() || p.ErrCode != "000" || p.Attempts != 1 {
		t.Errorf("part 0: %+v", p)
	}

	pend, err := s.PendingDLRs("alice", 10, nil)
	if err != nil || len(pend) != 1 || pend[0].ID != m.ID {
		t.Fatalf("pending: %v %+v", err, pend)
	}
	if p, _ := s.PendingDLRs("alice", 10, func(id uint64) bool { return id == m.ID }); len(p) != 0 {
		t.Errorf("pending with skip: %d", len(p))
	}
	if p, _ := s.PendingDLRs("bob", 10, nil); len(p) != 0 {
		t.Errorf("bob sees alice's DLRs: %d", len(p))
	}
	if p, _ := s.PendingDLRs("alic", 10, nil); len(p) != 0 {
		t.Errorf("a prefix of alice sees alice's DLRs: %d", len(p))
	}

	if err := s.AckDLR(bg, "bob", m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("ack by another account: %v", err)
	}
	if err := s.AckDLR(bg, "alice", m.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.AckDLR(bg, "alice", m.ID); err != nil {
		t.Errorf("second ack: %v", err)
	}
	if p, _ := s.PendingDLRs("alice", 10, nil); len(p) != 0 {
		t.Errorf("pending after ack: %d", len(p))
	}
	if !s.get(m.ID).DLRForwarded {
		t.Error("DLRForwarded not set")
	}
	s.wantUsage("ent1", 0, 1)
	if st := s.Stats(); st.Txns == 0 || st.Ops < st.Txns {
		t.Errorf("stats: %+v", st)
	}
}

func TestReopenRecoversEveryStep(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	now := time.Now()
	a, b, c := msg("alice", "111", 3), msg("alice", "222", 1), msg("alice", "333", 1)
	s.enqueue(a, b, c)
	s.reopen()
	want := []Key{{a.ID, 0}, {a.ID, 1}, {a.ID, 2}, {b.ID, 0}, {c.ID, 0}}
	if got := s.dueKeys(now.Add(time.Second)); !slices.Equal(got, want) {
		t.Fatalf("due after reopen: %v, want %v", got, want)
	}
	s.wantUsage("alice", 5, 0)

	// Submitted: exactly the other parts stay due (restart resend).
	s.submitted(Key{a.ID, 1}, "100")
	s.submitted(Key{b.ID, 0}, "101")
	s.reopen()
	if got := s.dueKeys(now.Add(time.Second)); !slices.Equal(got, []Key{{a.ID, 0}, {a.ID, 2}, {c.ID, 0}}) {
		t.Fatalf("due after submitted+reopen: %v", got)
	}
	s.wantCounts(map[State]int{StateAccepted: 3, StateSubmitted: 2})

	// Retry moves a part into the future.
	later := now.Add(time.Hour)
	if err := s.Retry(bg, Key{a.ID, 0}, later, "0x00000058"); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	if got := s.dueKeys(now.Add(time.Second)); !slices.Equal(got, []Key{{a.ID, 2}, {c.ID, 0}}) {
		t.Fatalf("due after retry+reopen: %v", got)
	}
	if got := s.dueKeys(later); !slices.Equal(got, []Key{{a.ID, 2}, {c.ID, 0}, {a.ID, 0}}) {
		t.Fatalf("due later: %v", got)
	}
	if p := s.get(a.ID).Parts[0]; p.Attempts != 1 || p.ErrCode != "0x00000058" || !p.DueAt.Equal(later) {
		t.Errorf("retried part: %+v", p)
	}

	// Fail.
	if err := s.Fail(bg, Key{c.ID, 0}, StateRejected, "0x0000000b", now); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	if got := s.get(c.ID); got.State() != StateRejected || got.Parts[0].ErrCode != "0x0000000b" {
		t.Errorf("failed message: %+v", got.Parts[0])
	}
	s.wantUsage("alice", 4, 0)
	if p, _ := s.PendingDLRs("alice", 0, nil); len(p) != 1 || p[0].ID != c.ID {
		t.Errorf("pending after fail: %+v", p)
	}

	// DLR, and an orphan that waits across a restart.
	if r := s.dlr("up1", "101", StateDelivered); r != Matched {
		t.Fatalf("dlr: %s", r)
	}
	if r := s.dlr("up1", "102", StateExpired); r != Orphaned {
		t.Fatalf("early dlr: %s", r)
	}
	s.reopen()
	s.wantUsage("alice", 3, 1)
	s.submitted(Key{a.ID, 2}, "102")
	if got := s.get(a.ID).Parts[2]; got.State != StateExpired {
		t.Errorf("orphan not applied after reopen: %s", got.State)
	}
	s.reopen()
	s.wantUsage("alice", 2, 1)
	s.wantCounts(map[State]int{StateAccepted: 1, StateSubmitted: 1, StateDelivered: 1, StateExpired: 1, StateRejected: 1})

	// Ack.
	if err := s.AckDLR(bg, "alice", c.ID); err != nil {
		t.Fatal(err)
	}
	s.reopen()
	if p, _ := s.PendingDLRs("alice", 0, nil); len(p) != 1 || p[0].ID != b.ID {
		t.Errorf("pending after ack+reopen: %+v", p)
	}

	// Ids keep growing after a restart.
	d := msg("alice", "444", 1)
	s.enqueue(d)
	if d.ID <= c.ID {
		t.Errorf("id %d after restart not above %d", d.ID, c.ID)
	}
}

func TestOrphanDLR(t *testing.T) {
	s := newStore(t, Options{})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	if r := s.dlr("up1", "00FF", StateDelivered); r != Orphaned {
		t.Fatalf("dlr before resp: %s", r)
	}
	if r := s.dlr("up1", "00FF", StateDelivered); r != Orphaned {
		t.Fatalf("repeated dlr before resp: %s", r)
	}
	if n := s.bucketLen(bucketOrphan); n != 1 {
		t.Fatalf("%d orphans", n)
	}
	s.wantCounts(map[State]int{StateAccepted: 1})
	s.wantUsage("alice", 1, 0)

	s.submitted(Key{m.ID, 0}, "FF")
	got := s.get(m.ID)
	if got.Parts[0].State != StateDelivered || got.Parts[0].SMSCID != "FF" {
		t.Fatalf("part after submitted: %+v", got.Parts[0])
	}
	if n := s.bucketLen(bucketOrphan); n != 0 {
		t.Errorf("%d orphans left", n)
	}
	s.wantCounts(map[State]int{StateDelivered: 1})
	s.wantUsage("alice", 0, 1)
	if r := s.dlr("up1", "ff", StateDelivered); r != Duplicate {
		t.Errorf("dlr after orphan applied: %s", r)
	}
	// The same receipt in decimal: kept until MatchOrphans, which finds
	// it a duplicate and drops it.
	if r := s.dlr("up1", "255", StateDelivered); r != Orphaned {
		t.Errorf("dlr in decimal: %s", r)
	}
	if r := s.matchOrphans(); !slices.Equal(r, []Result{Duplicate}) || s.bucketLen(bucketOrphan) != 0 {
		t.Errorf("dlr in decimal converted: %v, %d orphans left", r, s.bucketLen(bucketOrphan))
	}
	s.wantUsage("alice", 0, 1)
	if got := s.readyCalls(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("OnDLRReady: %v", got)
	}

	// An orphan on another upstream is not applied.
	m2 := msg("alice", "111", 1)
	s.enqueue(m2)
	s.dlr("up2", "77", StateDelivered)
	s.submitted(Key{m2.ID, 0}, "77")
	if st := s.get(m2.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("orphan from another upstream applied: %s", st)
	}
}

func TestStaleOrphanDropped(t *testing.T) {
	s := newStore(t, Options{OrphanMaxAge: time.Minute})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	s.dlr("up1", "abc", StateDelivered)
	// The resp comes (by its timestamp) long after the orphan arrived:
	// the orphan was for an earlier message that had the same id.
	if err := s.Submitted(bg, Key{m.ID, 0}, "ABC", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := s.get(m.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("stale orphan applied: %s", st)
	}
	if n := s.bucketLen(bucketOrphan); n != 0 {
		t.Errorf("stale orphan kept")
	}
}

func TestDuplicateDLRChargedOnce(t *testing.T) {
	s := newStore(t, Options{})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	s.submitted(Key{m.ID, 0}, "12345")
	if r := s.dlr("up1", "12345", StateDelivered); r != Matched {
		t.Fatal(r)
	}
	for _, id := range []string{"12345", "0012345"} {
		if r := s.dlr("up1", id, StateDelivered); r != Duplicate {
			t.Errorf("dlr %q again: %s", id, r)
		}
	}
	if r := s.dlr("up1", "3039", StateDelivered); r != Orphaned { // in hex
		t.Errorf("dlr in hex: %s", r)
	}
	if r := s.matchOrphans(); !slices.Equal(r, []Result{Duplicate}) {
		t.Errorf("dlr in hex again: %v", r)
	}
	// A contradicting late receipt changes nothing either.
	if r := s.dlr("up1", "12345", StateUndeliverable); r != Duplicate {
		t.Errorf("contradicting dlr: %s", r)
	}
	s.wantUsage("alice", 0, 1)
	s.wantCounts(map[State]int{StateDelivered: 1})
	if got := s.readyCalls(); len(got) != 1 {
		t.Errorf("OnDLRReady %d times", len(got))
	}
	if p, _ := s.PendingDLRs("alice", 0, nil); len(p) != 1 {
		t.Errorf("%d pending DLRs", len(p))
	}
}

func TestDLRIDVariants(t *testing.T) {
	// converted: the receipt has the id in the other base, so it waits
	// for MatchOrphans whichever comes first.
	tests := []struct {
		resp, dlr string
		converted bool
	}{
		{"0A1B", "2587", true},                                   // hex in resp, decimal in DLR
		{"2587", "a1b", true},                                    // decimal in resp, hex in DLR
		{"2587", "0000a1b", true},                                // with leading zeros
		{"000123", "123", false},                                 // leading zeros
		{"ABCDEF", "abcdef", false},                              // case
		{" 42\x00", "42", false},                                 // padding and a C string's NUL
		{"0000", "0", false},                                     // all zeros
		{"18446744073709551616123", "3e8000000000000007b", true}, // wider than 64 bits
		{"msg-7F", "MSG-7f", false},                              // neither decimal nor hex: exact only
	}
	for _, tc := range tests {
		t.Run(tc.resp+"~"+tc.dlr, func(t *testing.T) {
			for _, orphanFirst := range []bool{false, true} {
				s := newStore(t, Options{NoSync: true})
				m := msg("alice", "111", 1)
				s.enqueue(m)
				want := Matched
				if tc.converted {
					want = Orphaned
				}
				if orphanFirst {
					if r := s.dlr("up1", tc.dlr, StateDelivered); r != Orphaned {
						t.Fatalf("orphan: %s", r)
					}
					s.submitted(Key{m.ID, 0}, tc.resp)
				} else {
					s.submitted(Key{m.ID, 0}, tc.resp)
					if r := s.dlr("up1", tc.dlr, StateDelivered); r != want {
						t.Fatalf("dlr: %s, want %s", r, want)
					}
				}
				if st := s.get(m.ID).Parts[0].State; tc.converted != (st == StateSubmitted) {
					t.Errorf("orphanFirst=%v: part %s before MatchOrphans", orphanFirst, st)
				}
				res := s.matchOrphans()
				if tc.converted && !slices.Equal(res, []Result{Matched}) || !tc.converted && len(res) != 0 {
					t.Errorf("orphanFirst=%v: MatchOrphans %v", orphanFirst, res)
				}
				if st := s.get(m.ID).Parts[0].State; st != StateDelivered {
					t.Errorf("orphanFirst=%v: part %s", orphanFirst, st)
				}
			}
		})
	}
}

// An SMSC that numbers its messages in hex gives out "5c" and, 54
// messages later, "92": the same digits as 0x5c in decimal. A receipt for
// "92" that comes before "92"'s acceptance is recorded is for the later
// message, not the earlier one, whether that one is still waiting for its
// own receipt or has it already.
func TestReceiptBeforeAcceptanceNotTakenForAnEarlierMessage(t *testing.T) {
	for _, earlierFinal := range []bool{false, true} {
		s := newStore(t, Options{NoSync: true})
		m1, m2 := msg("alice", "111", 1), msg("alice", "222", 1)
		s.enqueue(m1, m2)
		s.submitted(Key{m1.ID, 0}, "5c")
		if earlierFinal {
			if r := s.dlr("up1", "5c", StateUndeliverable); r != Matched {
				t.Fatalf("m1's own receipt: %s", r)
			}
		}
		if r := s.dlr("up1", "92", StateDelivered); r != Orphaned {
			t.Fatalf("earlierFinal=%v: m2's receipt before its acceptance: %s", earlierFinal, r)
		}
		s.submitted(Key{m2.ID, 0}, "92")
		if st := s.get(m2.ID).Parts[0].State; st != StateDelivered {
			t.Errorf("earlierFinal=%v: m2 is %s", earlierFinal, st)
		}
		want := StateSubmitted
		if earlierFinal {
			want = StateUndeliverable
		}
		if st := s.get(m1.ID).Parts[0].State; st != want {
			t.Errorf("earlierFinal=%v: m1 is %s, want %s", earlierFinal, st, want)
		}
		if r := s.matchOrphans(); len(r) != 0 {
			t.Errorf("earlierFinal=%v: orphans left: %v", earlierFinal, r)
		}
	}
	// The earlier message's acceptance recorded after that receipt came
	// does not take it either.
	s := newStore(t, Options{NoSync: true})
	m1, m2 := msg("alice", "111", 1), msg("alice", "222", 1)
	s.enqueue(m1, m2)
	if r := s.dlr("up1", "92", StateDelivered); r != Orphaned {
		t.Fatalf("receipt before both acceptances: %s", r)
	}
	s.submitted(Key{m1.ID, 0}, "5c")
	if st := s.get(m1.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("m1 took m2's receipt: %s", st)
	}
	s.submitted(Key{m2.ID, 0}, "92")
	if st := s.get(m2.ID).Parts[0].State; st != StateDelivered {
		t.Errorf("m2 is %s", st)
	}
}

// MatchOrphans leaves an orphan stored again since it was listed (a newer
// receipt under that id), one whose converted id names a part submitted
// long after it came (a reused id), and one with no converted form.
func TestMatchOrphansLeaves(t *testing.T) {
	s := newStore(t, Options{NoSync: true, OrphanMaxAge: time.Minute})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	s.dlr("up1", "2587", StateDelivered)
	s.dlr("up1", "msg-1", StateDelivered)
	listed, _, err := s.Orphans(bg, nil, 10)
	if err != nil || len(listed) != 2 {
		t.Fatalf("orphans: %d, %v", len(listed), err)
	}
	// Accepted (as 0xA1B) an hour after the receipt came.
	if err := s.Submitted(bg, Key{m.ID, 0}, "a1b", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.MatchOrphans(bg, listed); err != nil || !slices.Equal(r, []Result{Unmatched, Unmatched}) {
		t.Fatalf("reused id: %v, %v", r, err)
	}
	if st := s.get(m.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("part %s", st)
	}
	// Stored again since listed: left for the next listing.
	m2 := msg("alice", "111", 1)
	s.enqueue(m2)
	s.submitted(Key{m2.ID, 0}, "ff")
	s.dlr("up1", "255", StateDelivered)
	first, _, _ := s.Orphans(bg, nil, 10)
	s.dlr("up1", "255", StateDelivered)
	if r, _ := s.MatchOrphans(bg, first); !slices.Contains(r, Unmatched) || slices.Contains(r, Matched) {
		t.Errorf("re-stored orphan: %v", r)
	}
	if r := s.matchOrphans(); !slices.Contains(r, Matched) {
		t.Errorf("listed afresh: %v", r)
	}
	if st := s.get(m2.ID).Parts[0].State; st != StateDelivered {
		t.Errorf("m2 is %s", st)
	}
	if n := s.bucketLen(bucketOrphan); n != 2 {
		t.Errorf("%d orphans left, want the reused id's and msg-1", n)
	}
}

func TestDLRAmbiguityExactFirst(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	m1, m2 := msg("alice", "111", 1), msg("alice", "222", 1)
	s.enqueue(m1, m2)
	s.submitted(Key{m1.ID, 0}, "10") // read as hex: 16
	s.submitted(Key{m2.ID, 0}, "16")
	s.dlr("up1", "16", StateDelivered)
	if st := s.get(m2.ID).Parts[0].State; st != StateDelivered {
		t.Errorf("exact match not preferred: m2 is %s", st)
	}
	if st := s.get(m1.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("m1 is %s", st)
	}
}

func TestSubmittedTwice(t *testing.T) {
	s := newStore(t, Options{})
	m := msg("alice", "111", 1)
	s.enqueue(m)
	k := Key{m.ID, 0}
	s.submitted(k, "A1")
	s.submitted(k, "a1") // same id again: no change
	got := s.get(m.ID)
	if p := got.Parts[0]; p.Attempts != 1 || len(p.DupSMSCIDs) != 0 {
		t.Fatalf("repeated Submitted changed the part: %+v", p)
	}
	s.submitted(k, "B2") // accepted twice (retry after a lost response)
	if p := s.get(m.ID).Parts[0]; p.SMSCID != "A1" || !slices.Equal(p.DupSMSCIDs, []string{"B2"}) || p.State != StateSubmitted {
		t.Fatalf("dup submission: %+v", p)
	}
	if r := s.dlr("up1", "B2", StateDelivered); r != Matched {
		t.Errorf("dlr of the duplicate: %s", r)
	}
	if r := s.dlr("up1", "A1", StateDelivered); r != Duplicate {
		t.Errorf("dlr of the original: %s", r)
	}
	s.wantUsage("alice", 0, 1)
	if err := s.Retry(bg, k, time.Now(), ""); !errors.Is(err, ErrState) {
		t.Errorf("retry of a delivered part: %v", err)
	}
	if err := s.Submitted(bg, Key{m.ID, 5}, "x", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("submitted of a missing part: %v", err)
	}
	if err := s.Submitted(bg, Key{999, 0}, "x", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("submitted of a missing message: %v", err)
	}

	// A late acceptance of a part the sender already failed.
	late := msg("alice", "333", 1)
	s.enqueue(late)
	if err := s.Fail(bg, Key{late.ID, 0}, StateExpired, "validity", time.Now()); err != nil {
		t.Fatal(err)
	}
	s.submitted(Key{late.ID, 0}, "C3")
	if p := s.get(late.ID).Parts[0]; p.State != StateExpired || p.SMSCID != "C3" || len(p.DupSMSCIDs) != 0 {
		t.Errorf("late acceptance of a failed part: %+v", p)
	}
	if r := s.dlr("up1", "c3", StateDelivered); r != Duplicate {
		t.Errorf("DLR of a failed part: %s", r)
	}

	// Accepted without an id: Submitted (never resent), unmatched, expired later.
	m2 := msg("alice", "222", 1)
	s.enqueue(m2)
	s.submitted(Key{m2.ID, 0}, " \x00")
	if p := s.get(m2.ID).Parts[0]; p.State != StateSubmitted {
		t.Errorf("accepted without id: %s", p.State)
	}
	if got := s.dueKeys(time.Now()); len(got) != 0 {
		t.Errorf("due: %v", got)
	}
	if n, err := s.ExpireSubmitted(bg, time.Now().Add(time.Second), time.Now(), 10); n != 1 || err != nil {
		t.Errorf("expire: %d %v", n, err)
	}
	if _, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: " ", State: StateDelivered}); !errors.Is(err, ErrInvalid) {
		t.Errorf("DLR without id: %v", err)
	}
}

func TestFailRetryAndReceiptRequests(t *testing.T) {
	s := newStore(t, Options{})
	now := time.Now()

	// registered_delivery 2 (failure only): all delivered → no DLR.
	ok := msg("alice", "111", 2)
	ok.RegisteredDelivery = 2
	// registered_delivery 2: one part failed → DLR.
	failed := msg("alice", "222", 2)
	failed.RegisteredDelivery = 2
	// registered_delivery 0: never.
	none := msg("alice", "333", 1)
	none.RegisteredDelivery = 0
	s.enqueue(ok, failed, none)

	s.submitted(Key{ok.ID, 0}, "1")
	s.submitted(Key{ok.ID, 1}, "2")
	s.dlr("up1", "1", StateDelivered)
	s.dlr("up1", "2", StateDelivered)
	if m := s.get(ok.ID); !m.DLRForwarded {
		t.Error("failure-only receipt for a delivered message: DLRForwarded not set")
	}

	if err := s.Retry(bg, Key{failed.ID, 0}, now.Add(time.Minute), "0x00000058"); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(bg, Key{failed.ID, 0}, StateRejected, "0x0000000b", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(bg, Key{failed.ID, 0}, StateRejected, "0x0000000b", now); err != nil {
		t.Errorf("second Fail: %v", err)
	}
	if err := s.Fail(bg, Key{failed.ID, 0}, StateExpired, "", now); !errors.Is(err, ErrState) {
		t.Errorf("Fail of a failed part with another state: %v", err)
	}
	if p := s.get(failed.ID).Parts[0]; p.Attempts != 1 || p.ErrCode != "0x0000000b" {
		t.Errorf("failed part: %+v", p)
	}
	s.submitted(Key{failed.ID, 1}, "3")
	if err := s.Fail(bg, Key{failed.ID, 1}, StateRejected, "", now); !errors.Is(err, ErrState) {
		t.Errorf("Fail of a submitted part: %v", err)
	}
	s.dlr("up1", "3", StateDelivered)

	if err := s.Fail(bg, Key{none.ID, 0}, StateExpired, "", now); err != nil {
		t.Fatal(err)
	}
	if m := s.get(none.ID); !m.DLRForwarded {
		t.Error("no receipt requested: DLRForwarded not set")
	}
	pend, _ := s.PendingDLRs("alice", 0, nil)
	if len(pend) != 1 || pend[0].ID != failed.ID || pend[0].State() != StateRejected {
		t.Errorf("pending: %+v", pend)
	}
	s.wantUsage("alice", 0, 3)
	s.wantCounts(map[State]int{StateDelivered: 3, StateRejected: 1, StateExpired: 1})

	if err := s.Fail(bg, Key{none.ID, 0}, StateDelivered, "", now); !errors.Is(err, ErrInvalid) {
		t.Errorf("Fail as delivered: %v", err)
	}
	if err := s.Fail(bg, Key{none.ID, 0}, StateSubmitted, "", now); !errors.Is(err, ErrInvalid) {
		t.Errorf("Fail as submitted: %v", err)
	}
	if _, err := s.ApplyDLR(bg, DLR{Upstream: "up1", SMSCID: "1", State: StateSubmitted}); !errors.Is(err, ErrInvalid) {
		t.Errorf("DLR with a transient state: %v", err)
	}
	if err := s.AckDLR(bg, "alice", 12345); !errors.Is(err, ErrNotFound) {
		t.Errorf("ack of a missing message: %v", err)
	}
	m := msg("alice", "444", 1)
	s.enqueue(m)
	if err := s.AckDLR(bg, "alice", m.ID); !errors.Is(err, ErrState) {
		t.Errorf("ack of a message without DLR: %v", err)
	}
}

func TestRefPerDestination(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	var refs []uint16
	for range 3 {
		m := msg("alice", "111", 2)
		s.enqueue(m)
		refs = append(refs, m.Ref)
	}
	single := msg("alice", "111", 1)
	other := msg("alice", "222", 3)
	s.enqueue(single, other)
	if !slices.Equal(refs, []uint16{1, 2, 3}) || single.Ref != 0 || other.Ref != 1 {
		t.Fatalf("refs %v, single %d, other dest %d", refs, single.Ref, other.Ref)
	}
	s.reopen()
	m := msg("alice", "111", 2)
	s.enqueue(m)
	if m.Ref != 4 {
		t.Errorf("ref after reopen: %d", m.Ref)
	}
	if got := s.get(m.ID).Ref; got != 4 {
		t.Errorf("stored ref %d", got)
	}
	// Wrap-around skips 0 (0 means "no reference").
	if err := s.exec(bg, func(t *txn) error { return t.ref().Put([]byte("111"), []byte{0xFF, 0xFF}) }); err != nil {
		t.Fatal(err)
	}
	m = msg("alice", "111", 2)
	s.enqueue(m)
	if m.Ref != 1 {
		t.Errorf("ref after 0xFFFF: %d", m.Ref)
	}
}

func TestQuotaConcurrent(t *testing.T) {
	s := newStore(t, Options{})
	const limit, writers, parts = 100, 50, 3
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			m := msg("alice", "111", parts)
			m.Enterprise = "ent"
			e, err := s.EnqueueLimit(bg, limit, m)
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = e[0]
		})
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrQuota):
			refused++
		default:
			t.Errorf("enqueue: %v", err)
		}
	}
	if ok != limit/parts || refused != writers-limit/parts {
		t.Errorf("%d stored, %d refused; want %d, %d", ok, refused, limit/parts, writers-limit/parts)
	}
	s.wantUsage("ent", limit/parts*parts, 0)

	// Charged segments count too, and later messages of one call see the
	// reservations of earlier ones; a refused message leaves nothing.
	s2 := newStore(t, Options{NoSync: true})
	a := msg("bob", "1", 2)
	s2.enqueue(a)
	s2.submitted(Key{a.ID, 0}, "1")
	s2.dlr("up1", "1", StateDelivered) // reserved 1, charged 1
	x, y, z := msg("bob", "2", 2), msg("bob", "3", 3), msg("bob", "4", 1)
	e, err := s2.EnqueueLimit(bg, 5, x, y, z)
	if err != nil {
		t.Fatal(err)
	}
	if e[0] != nil || !errors.Is(e[1], ErrQuota) || e[2] != nil {
		t.Fatalf("per-message results: %v", e)
	}
	if x.ID == 0 || y.ID != 0 || z.ID == 0 {
		t.Errorf("ids: %d %d %d", x.ID, y.ID, z.ID)
	}
	s2.wantUsage("bob", 4, 1)
	if e, err := s2.EnqueueLimit(bg, NoLimit, y); err != nil || e[0] != nil {
		t.Errorf("no limit: %v %v", e, err)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	s := newStore(t, Options{})
	const n = 1000
	before := s.Stats()
	release := s.block()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := s.Enqueue(bg, msg("alice", string(rune('0'+i%10)), 1)); err != nil {
				errs <- err
			}
		})
	}
	s.waitQueued(n)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	txns, ops := st.Txns-before.Txns, st.Ops-before.Ops
	t.Logf("%d enqueues (+1 blocker) in %d transactions, max batch %d", n, txns, st.MaxBatch)
	if ops != n+1 || txns > 2 {
		t.Errorf("%d ops in %d txns; want %d in at most 2", ops, txns, n+1)
	}
	s.wantCounts(map[State]int{StateAccepted: n})
}

func TestGroupCommitConcurrent(t *testing.T) {
	s := newStore(t, Options{}) // fsync on
	const n = 1000
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Go(func() {
			if err := s.Enqueue(bg, msg("alice", "111", 1)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%d concurrent enqueues: %d transactions (%.1f ops/txn, max %d) in %v",
		n, st.Txns, float64(st.Ops)/float64(st.Txns), st.MaxBatch, time.Since(start))
	if st.Ops != n || st.Txns > n/4 {
		t.Errorf("%d ops in %d transactions: no group commit", st.Ops, st.Txns)
	}
}

func TestHardErrorFailsOnlyItsOp(t *testing.T) {
	s := newStore(t, Options{})
	release := s.block()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 6)
	for i := range 6 {
		wg.Go(func() {
			switch i {
			case 2:
				results[i] = s.exec(bg, func(t *txn) error {
					if err := t.ref().Put([]byte("half"), []byte{1, 2}); err != nil {
						return err
					}
					return boom // after a write: must be rolled back
				})
			case 4:
				results[i] = s.exec(bg, func(*txn) error { panic("bug") })
			default:
				results[i] = s.Enqueue(bg, msg("alice", "111", 1))
			}
		})
	}
	s.waitQueued(6)
	release()
	wg.Wait()
	for i, err := range results {
		switch i {
		case 2:
			if !errors.Is(err, boom) {
				t.Errorf("op %d: %v", i, err)
			}
		case 4:
			if !errors.Is(err, ErrPanic) {
				t.Errorf("op %d: %v", i, err)
			}
		default:
			if err != nil {
				t.Errorf("op %d: %v", i, err)
			}
		}
	}
	if n := s.bucketLen(bucketRef); n != 0 {
		t.Errorf("the failed op's write survived")
	}
	if st := s.Stats(); st.Rollbacks != 2 {
		t.Errorf("stats: %+v", st)
	}
	s.wantCounts(map[State]int{StateAccepted: 4})
	s.wantUsage("alice", 4, 0)
}

// holdRig is a store with opt whose commits' sizes are kept, and helpers
// to send operations from their own goroutines and wait for them: for the
// tests of operations held for company (CommitDelay, RecordDelay).
type holdRig struct {
	*testStore
	mu      sync.Mutex
	batches []int
}

func newHoldRig(t *testing.T, opt Options) *holdRig {
	r := &holdRig{}
	opt.OnCommit = func(_ time.Duration, ops int) {
		r.mu.Lock()
		r.batches = append(r.batches, ops)
		r.mu.Unlock()
	}
	r.testStore = newStore(t, opt)
	return r
}

// lastBatch is the number of operations of the latest commit.
func (r *holdRig) lastBatch() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batches[len(r.batches)-1]
}

// enqueue sends n messages of ctx at once, each from its own goroutine.
func (r *holdRig) enqueue(ctx context.Context, n int) <-chan error {
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- r.Enqueue(ctx, msg("alice", fmt.Sprint(i), 1)) }()
	}
	return errs
}

// waitOK receives n outcomes from errs; any error fails the test.
func waitOK(t *testing.T, errs <-chan error, n int) {
	t.Helper()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommitDelay: with Options.CommitDelay, patient operations wait for
// company until the oldest was queued the delay ago; an operation that is
// not patient never waits and ends the wait of those held; a lone
// operation that is not patient, a batch of commitFill, operations that
// waited the delay for the commit before, and a Close do not wait.
func TestCommitDelay(t *testing.T) {
	const delay = 2 * time.Second // far above a commit, so the bounds below are not timing luck
	s := newHoldRig(t, Options{CommitDelay: delay})
	lastBatch, enqueue := s.lastBatch, s.enqueue
	patient := s.Patient(bg)
	gathering := make(chan struct{}, 100) // every wait for company, in order
	s.gathering = func() { gathering <- struct{}{} }

	// Not patient: never held, alone or with others.
	start := time.Now()
	waitOK(t, enqueue(bg, 1), 1)
	if took := time.Since(start); took >= delay {
		t.Errorf("a lone operation that is not patient took %v: it waited for company", took)
	}
	release := s.block()
	errs := enqueue(bg, 2)
	s.waitQueued(2)
	start = time.Now()
	release()
	waitOK(t, errs, 2)
	if took := time.Since(start); took >= delay {
		t.Errorf("two operations that are not patient took %v: they waited for company", took)
	}

	// A lone patient operation waits the delay for company.
	start = time.Now()
	waitOK(t, enqueue(patient, 1), 1)
	if took := time.Since(start); took < delay {
		t.Errorf("a lone patient operation committed after %v, before the commit delay", took)
	}

	// Two patient ones queued behind a commit wait; a third sent
	// meanwhile joins them.
	release = s.block()
	start = time.Now() // before they are queued: the delay counts from then
	errs = enqueue(patient, 2)
	s.waitQueued(2)
	release()
	late := enqueue(patient, 1)
	waitOK(t, errs, 2)
	waitOK(t, late, 1)
	if took := time.Since(start); took < delay {
		t.Errorf("a patient batch of 2 committed after %v, before the commit delay", took)
	}
	if n := lastBatch(); n != 3 {
		t.Errorf("the late operation did not join the waiting batch: last commit had %d ops", n)
	}

	// One that is not patient ends the wait of those held: it and they
	// commit together, at once.
	for len(gathering) > 0 {
		<-gathering // the waits before
	}
	release = s.block()
	errs = enqueue(patient, 2)
	s.waitQueued(2)
	release()
	<-gathering // the two wait for company
	start = time.Now()
	urgent := enqueue(bg, 1)
	waitOK(t, urgent, 1)
	waitOK(t, errs, 2)
	if took := time.Since(start); took >= delay {
		t.Errorf("an operation that is not patient, sent to a waiting batch, took %v", took)
	}
	if n := lastBatch(); n != 3 {
		t.Errorf("the urgent operation did not take the waiting ones along: last commit had %d ops", n)
	}

	// A patient batch of commitFill is worth its commit: no wait.
	release = s.block()
	errs = enqueue(patient, commitFill)
	s.waitQueued(commitFill)
	start = time.Now()
	release()
	waitOK(t, errs, commitFill)
	if took := time.Since(start); took >= delay {
		t.Errorf("a batch of %d took %v: it waited", commitFill, took)
	}

	// Operations that waited the delay already, for a commit that took
	// that long, are not held again.
	release = s.block()
	errs = enqueue(patient, 2)
	s.waitQueued(2)
	time.Sleep(delay) // the behaviour under test is time passing, not a synchronisation
	start = time.Now()
	release()
	waitOK(t, errs, 2)
	if took := time.Since(start); took >= delay {
		t.Errorf("operations that waited %v for a commit were held another %v", delay, took)
	}

	// Close commits a waiting batch at once.
	release = s.block()
	errs = enqueue(patient, 2)
	s.waitQueued(2)
	start = time.Now()
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitOK(t, errs, 2)
	if took := time.Since(start); took >= delay {
		t.Errorf("close took %v: the waiting batch was held", took)
	}
	if st := s.Stats(); st.Ops != 1+1+2+1+1+3+1+3+1+commitFill+1+2+1+2 {
		t.Errorf("stats: %+v", st)
	}
}

// TestRecordDelay: with Options.RecordDelay alone, records (Record) wait
// for company up to the delay and ride along with an operation that
// commits at once; Patient marks nothing (CommitDelay is 0); and a batch
// waits only until the first of its operations has waited its own hold.
func TestRecordDelay(t *testing.T) {
	const delay = 2 * time.Second // far above a commit, so the bounds below are not timing luck
	s := newHoldRig(t, Options{RecordDelay: delay})
	gathering := make(chan struct{}, 100)
	s.gathering = func() { gathering <- struct{}{} }

	// Patient without a CommitDelay: not held.
	start := time.Now()
	waitOK(t, s.enqueue(s.Patient(bg), 1), 1)
	if took := time.Since(start); took >= delay {
		t.Errorf("a patient operation without a commit delay took %v: held", took)
	}

	// A lone record waits the delay for company.
	start = time.Now()
	waitOK(t, s.enqueue(s.Record(bg), 1), 1)
	if took := time.Since(start); took < delay {
		t.Errorf("a lone record committed after %v, before the record delay", took)
	}

	// One that may not wait ends the wait: it carries the records along.
	release := s.block()
	errs := s.enqueue(s.Record(bg), 2)
	s.waitQueued(2)
	release()
	<-gathering
	start = time.Now()
	waitOK(t, s.enqueue(bg, 1), 1)
	waitOK(t, errs, 2)
	if took := time.Since(start); took >= delay {
		t.Errorf("an operation that may not wait, sent to waiting records, took %v", took)
	}
	if n := s.lastBatch(); n != 3 {
		t.Errorf("the urgent operation did not take the records along: last commit had %d ops", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Records and patient operations together: the batch commits when the
	// first of them has waited its own hold (CommitDelay, shorter here),
	// and a record is held at least as long as CommitDelay.
	const short = time.Second
	s = newHoldRig(t, Options{RecordDelay: delay, CommitDelay: short})
	if got, want := holdOf(s.Record(bg)), delay; got != want {
		t.Errorf("record hold %v, want %v", got, want)
	}
	if got := holdOf(newStore(t, Options{RecordDelay: short, CommitDelay: delay}).Record(bg)); got != delay {
		t.Errorf("record hold %v with a longer commit delay, want %v", got, delay)
	}
	release = s.block()
	start = time.Now()
	records := s.enqueue(s.Record(bg), 1)
	s.waitQueued(1) // first in the batch: the batch's wait is not the oldest's
	patient := s.enqueue(s.Patient(bg), 1)
	s.waitQueued(2)
	release()
	waitOK(t, records, 1)
	waitOK(t, patient, 1)
	if took := time.Since(start); took < short || took >= delay {
		t.Errorf("a record and a patient operation committed after %v: want the patient one's %v, not the record's %v", took, short, delay)
	}
}

func TestContextAndClose(t *testing.T) {
	s := newStore(t, Options{})
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := s.Enqueue(ctx, msg("alice", "1", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}

	// Cancelled while waiting for the commit: ctx.Err() at once; an op whose
	// ctx ended before its batch began is skipped.
	release := s.block()
	ctx, cancel = context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { errc <- s.Enqueue(ctx, msg("alice", "1", 1)) }()
	s.waitQueued(1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancel while waiting: %v", err)
	}

	// Operations queued before Close are committed by Close.
	queued := make(chan error, 1)
	go func() { queued <- s.Enqueue(bg, msg("alice", "2", 1)) }()
	s.waitQueued(2)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-queued; err != nil {
		t.Errorf("op queued before Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(bg, msg("alice", "3", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("enqueue after close: %v", err)
	}
	if _, err := s.Due(time.Now(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("due after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	s.open()
	s.wantCounts(map[State]int{StateAccepted: 1})
}

func TestEnqueueInvalid(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	good := msg("alice", "1", 1)
	tests := map[string]func(*Message){
		"no parts":       func(m *Message) { m.Parts = nil },
		"256 parts":      func(m *Message) { m.Parts = make([]Part, 256) },
		"NUL in account": func(m *Message) { m.Account = "a\x00b" },
		"NUL upstream":   func(m *Message) { m.Upstream = "\x00" },
		"no dest":        func(m *Message) { m.Dest = "" },
		"no account":     func(m *Message) { m.Account = "" },
		"long dest":      func(m *Message) { m.Dest = string(make([]byte, 300)) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			bad := msg("alice", "1", 1)
			mutate(bad)
			if err := s.Enqueue(bg, good.Clone(), bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v", err)
			}
		})
	}
	if err := s.Enqueue(bg, good.Clone(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil message: %v", err)
	}
	s.wantCounts(nil)
}

func TestScheduledAndMonth(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	now := time.Now()
	sched := msg("alice", "1", 1)
	sched.SendAt = now.Add(time.Hour)
	// 2025-12-31 17:30 UTC is already January 2026 in Shanghai.
	dec := msg("alice", "2", 2)
	dec.AcceptedAt = time.Date(2025, 12, 31, 17, 30, 0, 0, time.UTC)
	s.enqueue(sched, dec)
	if got := s.dueKeys(now.Add(time.Minute)); !slices.Equal(got, []Key{{dec.ID, 0}, {dec.ID, 1}}) {
		t.Errorf("due now: %v", got)
	}
	if got := s.dueKeys(sched.SendAt); len(got) != 3 || got[2] != (Key{sched.ID, 0}) {
		t.Errorf("due at send time: %v", got)
	}
	if r, _ := s.Usage("alice", "2026-01"); r != 2 {
		t.Errorf("January usage %d", r)
	}
	if r, _ := s.Usage("alice", "2025-12"); r != 0 {
		t.Errorf("December usage %d", r)
	}
	if got := BillingMonth(time.Date(2026, 1, 31, 16, 0, 0, 0, time.UTC)); got != "2026-02" {
		t.Errorf("BillingMonth: %s", got)
	}
}

func TestExpireSubmitted(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	now := time.Now()
	a, b := msg("alice", "1", 2), msg("alice", "2", 1)
	s.enqueue(a, b)
	for i, k := range []Key{{a.ID, 0}, {a.ID, 1}, {b.ID, 0}} {
		if err := s.Submitted(bg, k, string(rune('a'+i)), now.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.ExpireSubmitted(bg, now.Add(90*time.Minute), now, 10)
	if err != nil || n != 2 {
		t.Fatalf("expired %d, %v", n, err)
	}
	if m := s.get(a.ID); m.State() != StateUnknown {
		t.Errorf("a: %s", m.State())
	}
	if st := s.get(b.ID).Parts[0].State; st != StateSubmitted {
		t.Errorf("b: %s", st)
	}
	if r := s.dlr("up1", "a", StateDelivered); r != Duplicate {
		t.Errorf("late DLR: %s", r)
	}
	s.wantUsage("alice", 1, 0)
	if p, _ := s.PendingDLRs("alice", 0, nil); len(p) != 1 || p[0].ID != a.ID {
		t.Errorf("pending: %v", p)
	}
}

func TestStateStrings(t *testing.T) {
	want := "accepted submitted delivered undeliverable expired rejected unknown cancelled"
	var got []string
	for _, st := range States {
		got = append(got, st.String())
		if st.Final() != (st >= StateDelivered) {
			t.Errorf("%s.Final() = %v", st, st.Final())
		}
	}
	if g := joinSpace(got); g != want {
		t.Errorf("names %q", g)
	}
	if State(0).Valid() || State(9).Valid() || State(0).Final() {
		t.Error("invalid states")
	}
}

func joinSpace(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestPurgeOrphans(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	s.dlr("up1", "1", StateDelivered)
	s.dlr("up1", "2", StateDelivered)
	if n, err := s.PurgeOrphans(bg, time.Now().Add(-time.Hour), 10); err != nil || n != 0 {
		t.Errorf("purge of fresh orphans: %d %v", n, err)
	}
	if n, err := s.PurgeOrphans(bg, time.Now().Add(time.Hour), 1); err != nil || n != 1 {
		t.Errorf("purge with limit 1: %d %v", n, err)
	}
	if n, err := s.PurgeOrphans(bg, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Errorf("purge of the rest: %d %v", n, err)
	}
	if n := s.bucketLen(bucketOrphan); n != 0 {
		t.Errorf("%d orphans left", n)
	}
}

// TestGrowthWithLongReader: a read transaction held open for a long time (a
// DLR export streaming, a console page) must not stall the commit loop
// while the file grows. bbolt remaps a file that outgrows its map, and a
// remap waits for every open read transaction: with the default map (32
// KiB, doubling) the first few MiB written here would wait for the reader.
func TestGrowthWithLongReader(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	rtx, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rtx.Rollback() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := make([]byte, 140)
	for i := range 200 { // ~8 MiB of messages
		msgs := make([]*Message, 200)
		for j := range msgs {
			msgs[j] = &Message{Account: "a", Dest: "13800000000", Text: strings.Repeat("x", 40),
				Parts: []Part{{Body: body}}}
		}
		if err := s.Enqueue(ctx, msgs...); err != nil {
			t.Fatalf("batch %d with a reader open: %v", i, err)
		}
	}
	if err := rtx.Rollback(); err != nil {
		t.Fatal(err)
	}
	var size int64
	_ = s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	if size < 4<<20 {
		t.Fatalf("the store grew to %d bytes only: the test wrote too little to outgrow a default map", size)
	}
}

// The messages OnDLRReady hands over are the ones PendingDLRs lists, as
// committed: one call per account per commit, none for a message that
// asked for no receipt, so a receiver can forward them without a scan.
func TestDLRReadyHandsCommittedMessages(t *testing.T) {
	s := newStore(t, Options{})
	a1, a2, b := msg("alice", "111", 1), msg("alice", "112", 2), msg("bob", "113", 1)
	quiet := msg("alice", "114", 1)
	quiet.RegisteredDelivery = 0
	all := []*Message{a1, a2, b, quiet}
	for _, m := range all {
		s.enqueue(m)
	}
	at := time.Now().Add(-time.Hour)
	for i, m := range all {
		for j := range m.Parts {
			if err := s.Submitted(context.Background(), Key{m.ID, uint16(j)}, fmt.Sprintf("%d-%d", i, j), at); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One operation ends every part: one commit, two accounts.
	if n, err := s.ExpireSubmitted(context.Background(), time.Now(), time.Now(), 100); err != nil || n != 5 {
		t.Fatalf("expire: %d, %v", n, err)
	}
	if got := s.readyCalls(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("OnDLRReady calls: %v", got)
	}
	s.mu.Lock()
	handed := append([]*Message(nil), s.handed...)
	snaps := append([]Snapshot(nil), s.at...)
	s.mu.Unlock()
	var pending []*Message
	for _, acc := range []string{"alice", "bob"} {
		p, snap, err := s.PendingDLRsAt(acc, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != 2 || snaps[0] != snaps[1] || snap != snaps[0] {
			t.Errorf("hand-over snapshots %v, a read right after the commit %d: want the same", snaps, snap)
		}
		pending = append(pending, p...)
	}
	if len(handed) != len(pending) || len(handed) != 3 {
		t.Fatalf("handed %d messages, %d pending", len(handed), len(pending))
	}
	for i := range handed {
		h, p := encodeMessage(nil, handed[i]), encodeMessage(nil, pending[i])
		if !bytes.Equal(h, p) {
			t.Errorf("handed message %d differs from the stored one:\n%+v\n%+v", i, handed[i], pending[i])
		}
		if handed[i].State() != StateUnknown { // what ExpireSubmitted settles on
			t.Errorf("handed message %d is %s", handed[i].ID, handed[i].State())
		}
	}
}

// The usage rows are read and written once per commit: what a batch's
// operations add is summed in memory, what a refused (soft) or failed
// (hard) operation added is taken back, and the row written at the end
// is what the messages say (the cleanup's Check) before and after a
// reopen.
func TestUsageSummedPerCommit(t *testing.T) {
	s := newStore(t, Options{})
	usageOf := func(parts int) *Message {
		m := msg("alice", "111", parts)
		m.Enterprise, m.AcceptedAt = "alice", time.Now()
		return m
	}
	release := s.block()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Go(func() {
			switch i {
			case 2: // refused after adding: must leave no trace
				results[i] = s.exec(bg, func(t *txn) error {
					if err := t.addUsage(usageOf(1), 5, 1); err != nil {
						return err
					}
					return soft(ErrQuota)
				})
			case 5: // failed after adding: the batch is run again without it
				results[i] = s.exec(bg, func(t *txn) error {
					if err := t.addUsage(usageOf(1), 7, 0); err != nil {
						return err
					}
					return boom
				})
			default:
				results[i] = s.Enqueue(bg, msg("alice", "111", 2))
			}
		})
	}
	s.waitQueued(len(results))
	before := s.Stats()
	release()
	wg.Wait()
	for i, err := range results {
		switch i {
		case 2:
			if !errors.Is(err, ErrQuota) {
				t.Errorf("op %d: %v", i, err)
			}
		case 5:
			if !errors.Is(err, boom) {
				t.Errorf("op %d: %v", i, err)
			}
		default:
			if err != nil {
				t.Errorf("op %d: %v", i, err)
			}
		}
	}
	if st := s.Stats(); st.Txns-before.Txns != 2 || st.Rollbacks-before.Rollbacks != 1 {
		t.Errorf("%d commits, %d rollbacks; want the blocker's and the batch's, after one rollback",
			st.Txns-before.Txns, st.Rollbacks-before.Rollbacks)
	}
	s.wantUsage("alice", 12, 0)

	// A later operation of the same commit sees what the earlier ones added.
	err := s.exec(bg, func(t *txn) error {
		key := usageKey("alice", BillingMonth(time.Now()))
		for i := range 3 {
			u, err := t.getUsage(key)
			if err != nil {
				return err
			}
			if u.Reserved != int64(12+i) {
				return fmt.Errorf("read %d: reserved %d, want %d", i, u.Reserved, 12+i)
			}
			if err := t.addUsage(usageOf(1), 1, 0); err != nil {
				return err
			}
		}
		return t.addUsage(usageOf(1), -3, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wantUsage("alice", 12, 0)
	s.reopen() // the usage mirror is loaded from the stored rows
	s.wantUsage("alice", 12, 0)
}

// When one operation of a batch fails hard, the others run again in a
// fresh transaction, and a message of submit_multi (GroupWithFirst) is
// grouped by the id it is stored under in that run, not a rolled-back one.
func TestRerunRegroups(t *testing.T) {
	s := newStore(t, Options{})
	release := s.block()
	boom := errors.New("boom")
	runs := 0
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() { // takes a message id on the batch's first run only
		errs[0] = s.exec(bg, func(t *txn) error {
			runs++
			if runs == 1 {
				_, err := t.msg.NextSequence()
				return err
			}
			return nil
		})
	})
	s.waitQueued(1)
	m := msg("alice", "111", 1)
	m.Group = GroupWithFirst
	wg.Go(func() { errs[1] = s.Enqueue(bg, m) })
	s.waitQueued(2)
	wg.Go(func() { errs[2] = s.exec(bg, func(*txn) error { return boom }) })
	s.waitQueued(3)
	release()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], boom) {
		t.Fatalf("results %v", errs)
	}
	if runs != 2 {
		t.Fatalf("the batch ran %d times, want 2", runs)
	}
	if got := s.get(m.ID); got.Group != m.ID {
		t.Errorf("message %d stored with group %d, want its own id", m.ID, got.Group)
	}
}

// An operation whose caller gave up (its ctx ended) stays queued for the
// commit loop, which still runs or skips it; exec reuses operations
// (opPool), and must not reuse that one for the caller's next operation,
// which would then get the abandoned one's outcome, or none. (One
// goroutine makes both calls: a pool hands back first what the same
// processor put in.)
func TestExecAbandonedOpNotReused(t *testing.T) {
	s := newStore(t, Options{})
	release := s.block()
	ctx, cancel := context.WithCancel(bg)
	abandoned, mine := make(chan error, 1), make(chan error, 1)
	errMine := errors.New("mine")
	var runs atomic.Int32
	go func() {
		abandoned <- s.exec(ctx, func(*txn) error { return soft(errors.New("the abandoned operation ran")) })
		mine <- s.exec(bg, func(*txn) error { runs.Add(1); return soft(errMine) })
	}()
	s.waitQueued(1)
	cancel()
	if err := within(t, "the abandoned call", abandoned); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned call got %v, want context.Canceled", err)
	}
	s.waitQueued(2)
	release()
	if err := within(t, "the next call", mine); !errors.Is(err, errMine) {
		t.Errorf("the next call got %v, want its own outcome", err)
	}
	s.Close() // the commit loop has finished every queued operation
	if n := runs.Load(); n != 1 {
		t.Errorf("the next call's operation ran %d times, want once", n)
	}
}

// within receives from c, failing t after 10 s.
func within[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10 s", what)
		panic("unreachable")
	}
}

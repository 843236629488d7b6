package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func entMsg(enterprise, dest string) *Message {
	m := msg("acct-"+enterprise, dest, 1)
	m.Enterprise = enterprise
	return m
}

func countByEnterprise(jobs []Job) map[string]int {
	n := map[string]int{}
	for _, j := range jobs {
		n[j.Msg.Enterprise]++
	}
	return n
}

// TestDueSharedTakesTurns: an enterprise over its share yields to the
// others' due parts however long its own backlog, and an enterprise alone
// gets every slot.
func TestDueSharedTakesTurns(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var backlog []*Message
	for i := range 300 {
		backlog = append(backlog, entMsg("A", fmt.Sprintf("1380000%04d", i)))
	}
	ts.enqueue(backlog...)
	ts.enqueue(entMsg("B", "13900000001"), entMsg("B", "13900000002"))
	now := time.Now().Add(time.Second)

	jobs, err := ts.DueShared(now, 10, func(string) int { return 4 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := countByEnterprise(jobs); got["A"] != 8 || got["B"] != 2 {
		// Shares first (A 4, B 2), then the rest filled (A 4 more).
		t.Errorf("took %v, want A 8, B 2", got)
	}
	// A has used its share: B's parts come first and A gets what is left.
	jobs, err = ts.DueShared(now, 3, func(e string) int {
		if e == "A" {
			return 0
		}
		return 4
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := countByEnterprise(jobs); got["B"] != 2 || got["A"] != 1 {
		t.Errorf("took %v, want B 2, A 1", got)
	}
	// Skipped parts (in flight) are not returned; nothing is due early.
	jobs, err = ts.DueShared(now, 1000, func(string) int { return 1000 }, func(k Key) bool { return k.ID%2 == 0 })
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Key.ID%2 == 0 {
			t.Fatalf("skipped part %s returned", j.Key)
		}
	}
	if jobs, _ := ts.DueShared(time.Unix(1, 0), 10, func(string) int { return 10 }, nil); len(jobs) != 0 {
		t.Errorf("%d parts due in 1970", len(jobs))
	}
	if _, err := ts.DueShared(now, 0, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("limit 0: %v, want ErrInvalid", err)
	}
}

// TestUpstreamDueIndexFollowsParts: the upstream due keys follow every
// transition (Check compares them with the parts).
func TestUpstreamDueIndexFollowsParts(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	ts.enqueue(entMsg("A", "13800000001"), entMsg("A", "13800000002"), entMsg("B", "13800000003"))
	jobs, err := ts.Due(time.Now(), 0, nil)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("due: %d, %v", len(jobs), err)
	}
	if err := ts.Retry(ctx, jobs[0].Key, time.Now().Add(time.Hour), "throttled"); err != nil {
		t.Fatal(err)
	}
	ts.submitted(jobs[1].Key, "abc1")
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	if n := ts.bucketLen(bucketUDue); n != 2 {
		t.Errorf("%d upstream due keys for 2 parts due", n)
	}
}

// TestUpstreamDueIndexBuilt: a file written before the upstream due keys
// existed — with the per-enterprise ones (edue, and pdue for priority), or
// from before priority was stored (edue alone) — gets them built at open,
// priority kept, and the old ones deleted. So does a file an earlier
// release ran on after this one (it built edue again and kept udue stale:
// here, udue missing a part and naming one at another time).
func TestUpstreamDueIndexBuilt(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		withPDue, stale, noEDue bool
	}{
		{"edue and pdue", true, false, false}, {"edue", false, false, false}, {"edue beside a stale udue", true, true, false},
		// A release from before edue ran on the file: only the stale keys tell.
		{"a stale udue alone", true, true, true},
	} {
		withPDue, stale, noEDue := tc.withPDue, tc.stale, tc.noEDue
		t.Run(tc.name, func(t *testing.T) {
			ts := newStore(t, Options{NoSync: true})
			plain, otp, later := entMsg("A", "13800000001"), entMsg("B", "13800000002"), entMsg("A", "13800000003")
			plain.Upstream, otp.Upstream, later.Upstream = "cm", "cu", "cm"
			otp.Priority = withPDue
			later.SendAt = time.Now().Add(time.Hour)
			ts.enqueue(plain, otp, later)
			if err := ts.Close(); err != nil {
				t.Fatal(err)
			}
			// The layout before: enterprise | 0 | due time | id | part.
			db, err := bolt.Open(ts.path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				if stale {
					udue := tx.Bucket(bucketUDue)
					if err := udue.Delete(udueKey(plain.Upstream, plain.Enterprise, plain.Parts[0].DueAt, Key{ID: plain.ID})); err != nil {
						return err
					}
					if err := udue.Put(udueKey(later.Upstream, later.Enterprise, time.Unix(1, 0), Key{ID: later.ID}), nil); err != nil {
						return err
					}
				} else {
					for _, name := range [][]byte{bucketUDue, bucketUPDue} {
						if err := tx.DeleteBucket(name); err != nil {
							return err
						}
					}
				}
				if noEDue {
					return nil
				}
				edue, err := tx.CreateBucket(legacyEDue)
				if err != nil {
					return err
				}
				for _, m := range []*Message{plain, otp, later} {
					if err := edue.Put(appendTimeKey(appendPrefix(nil, m.Enterprise), m.Parts[0].DueAt, Key{ID: m.ID}), nil); err != nil {
						return err
					}
				}
				if !withPDue {
					return nil
				}
				pdue, err := tx.CreateBucket(legacyPDue)
				if err != nil {
					return err
				}
				return pdue.Put(appendTimeKey(appendPrefix(nil, otp.Enterprise), otp.Parts[0].DueAt, Key{ID: otp.ID}), nil)
			})
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			ts.open()
			if err := ts.Check(); err != nil {
				t.Fatalf("after building the index: %v", err)
			}
			err = ts.db.View(func(tx *bolt.Tx) error {
				if tx.Bucket(legacyEDue) != nil || tx.Bucket(legacyPDue) != nil {
					t.Errorf("the per-enterprise due keys are left")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			wantPDue := 0
			if withPDue {
				wantPDue = 1
			}
			if n, p := ts.bucketLen(bucketUDue), ts.bucketLen(bucketUPDue); n != 3 || p != wantPDue {
				t.Errorf("%d upstream due keys, %d priority; want 3, %d", n, p, wantPDue)
			}
			one := func(string) int { return 1 }
			jobs, _, err := ts.DueSharedAt(time.Now().Add(time.Second), 1, one, one, nil)
			if err != nil || len(jobs) != 1 {
				t.Fatalf("due: %v, %v", keysOf(jobs), err)
			}
			if want := plain.ID; withPDue && jobs[0].Key.ID != otp.ID || !withPDue && jobs[0].Key.ID != want {
				t.Errorf("first due %v (priority %v): want the priority message first, else cm's", jobs[0].Key, withPDue)
			}
		})
	}
}

// SetDueCallback hands over, at the commit that stored them, the parts of
// new messages due at once — as DueShared would return them — and the
// commit's snapshot, which a read before the commit has not reached and a
// read after it has; not the parts of a scheduled message, nor those of
// one refused by its quota.
func TestDueHandOver(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	type call struct {
		jobs []Job
		at   Snapshot
	}
	var calls []call
	remove := ts.SetDueCallback(func(jobs []Job, at Snapshot) { calls = append(calls, call{jobs, at}) })
	now := time.Now()
	two := entMsg("A", "13800000001")
	two.Parts = append(two.Parts, Part{Body: []byte{1, 0xAB}})
	later := entMsg("A", "13800000002")
	later.SendAt = now.Add(time.Hour)
	_, before, err := ts.DueSharedAt(now, 1, nil, func(string) int { return 1 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := entMsg("B", "13800000003")
	for range 3 {
		refused.Parts = append(refused.Parts, Part{Body: []byte{2, 0xAB}})
	}
	errs, err := ts.EnqueueLimit(context.Background(), 3, two, later, refused) // B's 4 segments are over 3
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrQuota) {
		t.Fatalf("enqueue: %v", errs)
	}
	if len(calls) != 1 {
		t.Fatalf("%d hand-overs for one commit", len(calls))
	}
	due, snap, err := ts.DueSharedAt(now.Add(time.Minute), 100, nil, func(string) int { return 100 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot names the commit exactly: a read before it is older,
	// a read right after it (no commit between) is the same.
	if before >= calls[0].at || snap != calls[0].at {
		t.Errorf("snapshots: read before %d, hand-over %d, read after %d", before, calls[0].at, snap)
	}
	got := calls[0].jobs
	if len(got) != len(due) {
		t.Fatalf("handed %d parts, the store has %d due", len(got), len(due))
	}
	for i := range due {
		h, s := got[i], due[i]
		if h.Key != s.Key || !bytes.Equal(h.Part.Body, s.Part.Body) || h.Part.State != StateAccepted ||
			!bytes.Equal(encodeMessage(nil, h.Msg), encodeMessage(nil, s.Msg)) {
			t.Errorf("handed part %d differs from the stored one:\n%+v\n%+v", i, h, s)
		}
		if h.Key.ID == later.ID {
			t.Errorf("the scheduled message was handed over")
		}
	}
	// A scan before the next commit sees the same snapshot: nothing new.
	if _, again, _ := ts.DueSharedAt(now, 1, nil, func(string) int { return 1 }, nil); again != snap {
		t.Errorf("snapshot moved without a commit: %d then %d", snap, again)
	}
	remove()
	ts.enqueue(entMsg("C", "13800000004"))
	if len(calls) != 1 {
		t.Errorf("handed over after the callback was removed")
	}
	// remove takes away only its own callback, not one set since.
	var newer []Job
	ts.SetDueCallback(func(jobs []Job, _ Snapshot) { newer = append(newer, jobs...) })
	remove()
	ts.enqueue(entMsg("C", "13800000005"))
	if len(newer) != 1 {
		t.Errorf("a stale remove took away the newer callback: %d parts handed", len(newer))
	}
}

// TestDueForUpstreamRoom: the parts of an upstream without room are passed
// by, named in PassedBy, and the walk goes on to the parts of the others
// due after them, in the enterprise's share and in the fill-up; an
// upstream with some room gets that many.
func TestDueForUpstreamRoom(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var ms []*Message
	for i := range 50 {
		ms = append(ms, upMsg("down", fmt.Sprintf("1371000%04d", i), 1))
	}
	for i := range 3 {
		ms = append(ms, upMsg("cu", fmt.Sprintf("1301000%04d", i), 1))
	}
	for i := range 5 {
		ms = append(ms, upMsg("ct", fmt.Sprintf("1331000%04d", i), 1))
	}
	ts.enqueue(ms...)
	room := map[string]int{"down": 0, "cu": 10, "ct": 2}
	r, err := ts.DueFor(time.Now().Add(time.Second), DueQuery{
		Limit: 100, Share: func(string) int { return 4 }, Room: func(up string) int { return room[up] },
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, j := range r.Jobs {
		got[j.Msg.Upstream]++
	}
	if got["down"] != 0 || got["cu"] != 3 || got["ct"] != 2 {
		t.Errorf("took %v, want cu 3, ct 2 (its room), none of down's", got)
	}
	if len(r.PassedBy) != 2 || !r.PassedBy["down"] || !r.PassedBy["ct"] {
		t.Errorf("passed by %v, want down and ct", r.PassedBy)
	}
	// Without Room every upstream has room: in name order, ct's 5,
	// cu's 3, then down's.
	r, err = ts.DueFor(time.Now().Add(time.Second), DueQuery{Limit: 10, Share: func(string) int { return 10 }})
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]int{}
	for _, j := range r.Jobs {
		got[j.Msg.Upstream]++
	}
	if got["ct"] != 5 || got["cu"] != 3 || got["down"] != 2 || r.PassedBy != nil {
		t.Errorf("no Room: took %v, passed by %v; want ct 5, cu 3, down 2", got, r.PassedBy)
	}
}

// TestDueForHold: an enterprise held (disabled by the operator) has none
// of its parts taken, in any pass (priority, share, fill-up) and on any
// upstream, and they stay due: taken again once it is no longer held. The
// others' parts due after them are taken.
func TestDueForHold(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var ms []*Message
	for i := range 20 {
		m := upMsg([]string{"cm", "cu"}[i%2], fmt.Sprintf("1371000%04d", i), 1+i%3)
		m.Enterprise = "A"
		m.Priority = i%5 == 0
		ms = append(ms, m)
	}
	for i := range 3 {
		m := upMsg("cu", fmt.Sprintf("1301000%04d", i), 1)
		m.Enterprise = "B"
		ms = append(ms, m)
	}
	ts.enqueue(ms...)
	due := time.Now().Add(time.Second)
	asked := map[string]int{}
	r, err := ts.DueFor(due, DueQuery{
		Limit: 100, Priority: func(string) int { return 100 }, Share: func(string) int { return 2 },
		Hold: func(ent string) bool { asked[ent]++; return ent == "A" },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := countByEnterprise(r.Jobs); got["A"] != 0 || got["B"] != 3 {
		t.Errorf("A held: took %v, want B's 3 and none of A's", got)
	}
	if asked["A"] != 1 {
		t.Errorf("Hold asked %d times of A in one walk, want once", asked["A"])
	}
	r, err = ts.DueFor(due, DueQuery{Limit: 100, Share: func(string) int { return 2 }, Hold: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	parts := 0
	for _, m := range ms {
		parts += len(m.Parts)
	}
	if len(r.Jobs) != parts {
		t.Errorf("no longer held: took %d parts, want all %d", len(r.Jobs), parts)
	}
}

// TestFailHeld: the operator drops what disabled enterprise A holds: its
// waiting parts accepted before the drop, on every upstream, priority and
// scheduled ones included, end rejected with the code, their receipts
// queued, a few at a time (limit); a message of A accepted after the
// drop, one part of A already at the SMSC, and B's parts are left as
// they are.
func TestFailHeld(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var aMsgs []*Message
	for i := range 7 {
		m := upMsg([]string{"cm", "cu"}[i%2], fmt.Sprintf("1371000%04d", i), 1+i%3)
		m.Enterprise, m.Account = "A", "acct-A"
		m.Priority = i == 3
		if i == 5 {
			m.SendAt = time.Now().Add(time.Hour) // scheduled
			for j := range m.Parts {
				m.Parts[j].DueAt = m.SendAt
			}
		}
		aMsgs = append(aMsgs, m)
	}
	b := upMsg("cu", "13010000001", 2)
	b.Enterprise = "B"
	ts.enqueue(append(aMsgs, b)...)
	sent := Key{aMsgs[1].ID, 0} // a part of a 2-part message at the SMSC already
	ts.submitted(sent, "smsc-1")
	before := time.Now()
	late := upMsg("cm", "13710009999", 1)
	late.Enterprise = "A"
	late.AcceptedAt = before.Add(time.Second)
	ts.enqueue(late)

	want := -1 // A's parts waiting, accepted before the drop
	for _, m := range aMsgs {
		want += len(m.Parts)
	}
	total := 0
	var after []byte
	for round := 0; ; round++ {
		n, next, err := ts.FailHeld(context.Background(), "A", after, before, time.Now(), StateRejected, "account_disabled", 3)
		if err != nil {
			t.Fatal(err)
		}
		if n > 3 {
			t.Fatalf("round %d ended %d parts, limit 3", round, n)
		}
		total, after = total+n, next
		if next == nil || round > 10 {
			break
		}
	}
	if total != want {
		t.Errorf("ended %d parts, want %d", total, want)
	}
	ts.wantEnded(aMsgs, sent, StateRejected, "account_disabled")
	for _, id := range []uint64{late.ID, b.ID} {
		got, err := ts.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if st := got.State(); st != StateAccepted {
			t.Errorf("message %d (%s) is %s, want accepted", id, got.Enterprise, st)
		}
	}
	r, err := ts.DueFor(time.Now().Add(2*time.Hour), DueQuery{Limit: 100, Share: func(string) int { return 100 }})
	if err != nil {
		t.Fatal(err)
	}
	if got := countByEnterprise(r.Jobs); got["A"] != 1 || got["B"] != 2 {
		t.Errorf("due after the drop: %v, want A's late message and B's 2 parts", got)
	}
	dlrs, err := ts.PendingDLRs("acct-A", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dlrs) != len(aMsgs)-1 { // the half-sent one waits for its receipt
		t.Errorf("%d receipts queued for A, want %d", len(dlrs), len(aMsgs)-1)
	}
	if _, _, err := ts.FailHeld(context.Background(), "A", nil, before, time.Now(), StateDelivered, "", 3); !errors.Is(err, ErrInvalid) {
		t.Errorf("delivered: %v, want ErrInvalid", err)
	}
}

// TestExpireHeld: a disabled enterprise's waiting parts whose validity
// ended are expired, on every upstream, a few keys at a time (the walk
// goes on after where it stopped until it reaches the last); parts still
// valid or without a validity, a part already at the SMSC, and other
// enterprises' expired parts (one whose code begins with A's, one that
// sorts before it) are left as they are.
func TestExpireHeld(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	now := time.Now()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	msg := func(ent, up string, parts int, valid time.Time) *Message {
		m := upMsg(up, fmt.Sprintf("137%08d", len(ent)*1000+parts), parts)
		m.Enterprise, m.Account, m.ValidUntil = ent, "acct-"+ent, valid
		return m
	}
	var expired, kept []*Message
	for i, up := range []string{"cm", "ct", "cu"} {
		expired = append(expired, msg("A", up, 1+i, past))
		kept = append(kept, msg("A", up, 2, future), msg("A", up, 1, time.Time{}))
	}
	halfSent := msg("A", "cm", 2, past)
	others := []*Message{msg("AB", "cm", 1, past), msg("0", "ct", 2, past), msg("B", "cu", 1, past)}
	ts.enqueue(append(append(append(append([]*Message(nil), expired...), kept...), halfSent), others...)...)
	sent := Key{halfSent.ID, 0}
	ts.submitted(sent, "smsc-1")

	total, rounds := 0, 0
	var after []byte
	for {
		n, next, err := ts.ExpireHeld(context.Background(), "A", after, now, 2)
		if err != nil {
			t.Fatal(err)
		}
		total, after, rounds = total+n, next, rounds+1
		if next == nil || rounds > 20 {
			break
		}
	}
	// A has 1+2+3 expired parts, 9 kept and the half-sent's second: 16
	// due keys, 2 a call.
	if want := 1 + 2 + 3 + 1; total != want {
		t.Errorf("expired %d parts, want %d", total, want)
	}
	if rounds != 8 && rounds != 9 {
		t.Errorf("%d calls for 16 keys 2 at a time", rounds)
	}
	ts.wantEnded(append(expired, halfSent), sent, StateExpired, "validity")
	for _, m := range append(kept, others...) {
		got, err := ts.Get(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st := got.State(); st != StateAccepted {
			t.Errorf("message %d (%s, valid until %v) is %s, want accepted", m.ID, m.Enterprise, m.ValidUntil, st)
		}
	}
	dlrs, err := ts.PendingDLRs("acct-A", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dlrs) != len(expired) { // the half-sent one waits for its receipt
		t.Errorf("%d receipts queued for A, want %d", len(dlrs), len(expired))
	}
	// Nothing left to end: a look commits nothing.
	txns := ts.Stats().Txns
	if n, _, err := ts.ExpireHeld(context.Background(), "A", nil, now, 100); err != nil || n != 0 {
		t.Errorf("again: %d, %v", n, err)
	}
	if n, _, err := ts.FailHeld(context.Background(), "B", nil, now.Add(-time.Hour), now, StateRejected, "account_disabled", 100); err != nil || n != 0 {
		t.Errorf("B's accepted after the cut: %d, %v", n, err)
	}
	if got := ts.Stats().Txns; got != txns {
		t.Errorf("%d commits for looks that ended nothing", got-txns)
	}
	if _, _, err := ts.ExpireHeld(context.Background(), "A", nil, now, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("limit 0: %v, want ErrInvalid", err)
	}
}

// wantEnded checks that every part of msgs ended state with code, but
// the part sent, at the SMSC, which stays submitted (FailHeld and
// ExpireHeld leave a half-sent message's other half to go).
func (ts *testStore) wantEnded(msgs []*Message, sent Key, state State, code string) {
	ts.t.Helper()
	for _, m := range msgs {
		got, err := ts.Get(m.ID)
		if err != nil {
			ts.t.Fatal(err)
		}
		for i, p := range got.Parts {
			if k := (Key{m.ID, uint16(i)}); k == sent {
				if p.State != StateSubmitted {
					ts.t.Errorf("the part at the SMSC is %s", p.State)
				}
			} else if p.State != state || p.ErrCode != code {
				ts.t.Errorf("part %s: %s %q, want %s %s", k, p.State, p.ErrCode, state, code)
			}
		}
	}
}

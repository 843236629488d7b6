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

// TestEnterpriseDueIndexFollowsParts: the per-enterprise due keys follow
// every transition (Check compares them with the parts), and a file
// written before the index existed gets it built at open.
func TestEnterpriseDueIndexFollowsParts(t *testing.T) {
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
	// An older file: no index. Opening it builds one.
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(ts.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketEDue) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ts.open()
	if err := ts.Check(); err != nil {
		t.Fatalf("after building the index: %v", err)
	}
	jobs, err = ts.DueShared(time.Now().Add(2*time.Hour), 10, func(string) int { return 10 }, nil)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("due after reopen: %d, %v", len(jobs), err)
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

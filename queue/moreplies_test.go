package queue

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// storeReply stores an MO of enterprise ent (with a reply webhook when url
// is not "") received at at, and returns its id.
func storeReply(t *testing.T, ts *testStore, ent, url string, at time.Time) uint64 {
	t.Helper()
	m := &MO{Enterprise: ent, Source: "13712345678", Dest: "10657500112", Extension: "12", Text: "收到",
		Upstream: "sim", ReceivedAt: at, ReplyURL: url}
	if err := ts.StoreMO(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func replyIDs(rs []Reply) []uint64 {
	var ids []uint64
	for _, r := range rs {
		ids = append(ids, r.MO.ID)
	}
	return ids
}

// TestReplyHookLifecycle: an MO with a ReplyURL is queued in its commit
// (and its enterprise named to OnReplyReady), one without is not; due
// replies come oldest first within the limit and skip; a retry moves one
// later with its attempts counted; an ack sets PostedAt, a give-up
// ReplyGaveUp, both idempotent; all of it survives a reopen, and Check
// holds throughout (the Cleanup's).
func TestReplyHookLifecycle(t *testing.T) {
	var mu sync.Mutex
	var named []string
	ts := newStore(t, Options{NoSync: true})
	ts.SetReplyCallback(func(ents []string) {
		mu.Lock()
		named = append(named, ents...)
		mu.Unlock()
	})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	a1 := storeReply(t, ts, "E1", "https://crm.example.com/r", t0)
	a2 := storeReply(t, ts, "E1", "https://crm.example.com/r", t0.Add(time.Second))
	b1 := storeReply(t, ts, "E2", "https://b.example.com/r", t0)
	storeReply(t, ts, "E3", "", t0)                         // no reply_url: nothing queued
	storeReply(t, ts, "", "https://nobody.example.com", t0) // no enterprise: nothing queued
	mu.Lock()
	if !slices.Equal(named, []string{"E1", "E1", "E2"}) {
		t.Errorf("OnReplyReady named %v, want E1 E1 E2", named)
	}
	mu.Unlock()
	if ents, err := ts.ReplyEnterprises(); err != nil || !slices.Equal(ents, []string{"E1", "E2"}) {
		t.Fatalf("ReplyEnterprises %v, %v", ents, err)
	}
	if n, _ := ts.ReplyPending(); n != 3 {
		t.Fatalf("pending %d, want 3", n)
	}
	now := time.Now()
	rs, next, err := ts.DueReplies("E1", now, 1, nil)
	if err != nil || !slices.Equal(replyIDs(rs), []uint64{a1}) || !next.Equal(now) {
		t.Fatalf("due E1 limit 1: %v next %v, %v", replyIDs(rs), next, err)
	}
	if rs[0].MO.Text != "收到" || rs[0].MO.ReplyURL != "https://crm.example.com/r" || rs[0].Attempts != 0 {
		t.Fatalf("reply %+v, MO %+v", rs[0], rs[0].MO)
	}
	rs, next, _ = ts.DueReplies("E1", now, 10, func(id uint64) bool { return id == a1 })
	if !slices.Equal(replyIDs(rs), []uint64{a2}) || !next.IsZero() {
		t.Fatalf("due E1 skipping a1: %v next %v", replyIDs(rs), next)
	}

	// a1's POST failed: due again in an hour, one attempt counted.
	rs, _, _ = ts.DueReplies("E1", now, 10, nil)
	later := now.Add(time.Hour)
	if err := ts.RetryReplies(ctx, rs[:1], []time.Time{later}); err != nil {
		t.Fatal(err)
	}
	if got, next, _ := ts.DueReplies("E1", now, 10, nil); !slices.Equal(replyIDs(got), []uint64{a2}) || !next.Equal(later) {
		t.Fatalf("after retry: due %v next %v, want a2 then %v", replyIDs(got), next, later)
	}
	if err := ts.RetryReplies(ctx, rs[:1], []time.Time{later}); err != nil { // its old key is gone: nothing
		t.Fatal(err)
	}
	// a2 delivered, b1 given up; both twice (idempotent).
	rs2, _, _ := ts.DueReplies("E1", now, 10, nil)
	posted := now.Add(2 * time.Second)
	for range 2 {
		if err := ts.AckReplies(ctx, rs2, posted, false); err != nil {
			t.Fatal(err)
		}
	}
	rb, _, _ := ts.DueReplies("E2", now, 10, nil)
	for range 2 {
		if err := ts.AckReplies(ctx, rb, now, true); err != nil {
			t.Fatal(err)
		}
	}
	ts.reopen()
	got, _, _ := ts.DueReplies("E1", later, 10, nil)
	if !slices.Equal(replyIDs(got), []uint64{a1}) || got[0].Attempts != 1 {
		t.Fatalf("after reopen, at the retry's time: %v (%+v)", replyIDs(got), got)
	}
	if n, _ := ts.ReplyPending(); n != 1 {
		t.Fatalf("pending %d after reopen, want 1", n)
	}
	list, _, err := ts.Inbox("E1", InboxFilter{}, 0, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("inbox %v, %v", list, err)
	}
	for _, m := range list {
		if m.ID == a2 && !m.PostedAt.Equal(posted) {
			t.Errorf("a2 posted at %v, want %v", m.PostedAt, posted)
		}
		if m.ID == a1 && !m.PostedAt.IsZero() {
			t.Errorf("a1 posted at %v, want not yet", m.PostedAt)
		}
	}
	if list, _, _ := ts.Inbox("E2", InboxFilter{}, 0, 10); len(list) != 1 || list[0].ID != b1 || !list[0].ReplyGaveUp || !list[0].PostedAt.IsZero() {
		t.Fatalf("E2 inbox %+v: want b1 given up", list[0])
	}
	if ents, _ := ts.ReplyEnterprises(); !slices.Equal(ents, []string{"E1"}) {
		t.Fatalf("enterprises %v after E2's give-up", ents)
	}
}

// TestReplyHookPurge: PurgeMOs deleting an MO whose reply webhook still
// waits deletes its key too (wherever a retry moved it), and leaves the
// keys of MOs it keeps.
func TestReplyHookPurge(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	gone := storeReply(t, ts, "E1", "https://crm.example.com/r", old)
	kept := storeReply(t, ts, "E1", "https://crm.example.com/r", time.Now())
	for _, id := range []uint64{gone, kept} {
		if err := ts.AckMO(ctx, "E1", id, time.Now(), false); err != nil { // forwarded over SMPP: purgeable
			t.Fatal(err)
		}
	}
	rs, _, _ := ts.DueReplies("E1", time.Now(), 10, func(id uint64) bool { return id != gone })
	if err := ts.RetryReplies(ctx, rs, []time.Time{time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	n, untaken, err := ts.PurgeMOs(ctx, time.Now().Add(-24*time.Hour), 100)
	if err != nil || n != 1 || untaken != 0 {
		t.Fatalf("purged %d (%d untaken), %v; want 1 (0: it was forwarded)", n, untaken, err)
	}
	if p, _ := ts.ReplyPending(); p != 1 {
		t.Fatalf("%d reply keys after the purge, want 1 (the kept MO's)", p)
	}
	if got, _, _ := ts.DueReplies("E1", time.Now().Add(2*time.Hour), 10, nil); !slices.Equal(replyIDs(got), []uint64{kept}) {
		t.Fatalf("due after purge %v, want %d", replyIDs(got), kept)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestReplyHookOldFile: a file from before reply webhooks (no mohook
// bucket) is a good backup and opens, the bucket created; Check catches a
// key whose MO wants no POST.
func TestReplyHookOldFile(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	storeReply(t, ts, "E1", "", time.Now())
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(ts.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMOHook) })
	if err2 := db.Close(); err == nil {
		err = err2
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyBackup(ts.path); err != nil {
		t.Fatalf("a file from before reply webhooks is a good backup: %v", err)
	}
	ts.open()
	id := storeReply(t, ts, "E1", "https://crm.example.com/r", time.Now())
	if got, _, err := ts.DueReplies("E1", time.Now(), 10, nil); err != nil || !slices.Equal(replyIDs(got), []uint64{id}) {
		t.Fatalf("due %v, %v", replyIDs(got), err)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	// A key for an MO without reply_url is a violation.
	err = ts.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOHook).Put(replyKey("E1", time.Now(), 1), []byte{0})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Check(); err == nil {
		t.Fatal("Check passed a mohook key of an MO without reply_url")
	}
	err = ts.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMOHook).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Check(); err == nil {
		t.Fatal("Check passed an MO with reply_url and no key")
	}
	// Put it back for the Cleanup's check.
	err = ts.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMOHook).Put(replyKey("E1", time.Now(), id), []byte{0})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplySummary: an enterprise's pending replies are counted with
// those whose POST failed, from the earliest due; the count stops at the
// limit and says so; another enterprise's replies, an MO without a
// reply_url and a delivered reply are not counted.
func TestReplySummary(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 4 {
		storeReply(t, ts, "E1", "https://crm.example.com/r", t0.Add(time.Duration(i)*time.Second))
	}
	storeReply(t, ts, "E2", "https://b.example.com/r", t0.Add(-time.Hour))
	storeReply(t, ts, "E1", "", t0.Add(-time.Hour)) // no reply_url
	if sum, err := ts.ReplySummary("E3", 10); err != nil || sum != (HookSummary{}) {
		t.Fatalf("an enterprise without replies: %+v, %v", sum, err)
	}
	rs, _, err := ts.DueReplies("E1", time.Now(), 10, nil)
	if err != nil || len(rs) != 4 {
		t.Fatalf("due: %d, %v", len(rs), err)
	}
	// The first delivered, the next two failed (due in an hour), the last untouched.
	if err := ts.AckReplies(ctx, rs[:1], time.Now(), false); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := ts.RetryReplies(ctx, rs[1:3], []time.Time{later, later}); err != nil {
		t.Fatal(err)
	}
	sum, err := ts.ReplySummary("E1", 10)
	if err != nil || sum.Pending != 3 || sum.More || sum.Retrying != 2 || !sum.FirstDue.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("summary %+v, %v; want 3 pending, 2 retrying, the first due at %v", sum, err, t0.Add(3*time.Second))
	}
	if sum, _ := ts.ReplySummary("E1", 2); sum.Pending != 2 || !sum.More {
		t.Fatalf("limited to 2: %+v", sum)
	}
	if sum, _ := ts.ReplySummary("E2", 10); sum.Pending != 1 || sum.Retrying != 0 || !sum.FirstDue.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("E2: %+v", sum)
	}
	if sum, _ := ts.HookSummary("E1", 10); sum != (HookSummary{}) {
		t.Fatalf("receipts of E1 (none): %+v", sum)
	}
}

// TestRepliesDueNow: replies waiting for a later retry are made due now,
// their attempts kept, at most limit a call, and OnReplyReady names the
// enterprise (not OnHookReady); the replies due already, another
// enterprise's, and the enterprise's receipts waiting for their retry are
// left alone (and HooksDueNow leaves its replies alone).
func TestRepliesDueNow(t *testing.T) {
	var mu sync.Mutex
	var replyWoken, hookWoken []string
	ts := newStore(t, Options{NoSync: true})
	ts.SetReplyCallback(func(ents []string) { mu.Lock(); replyWoken = append(replyWoken, ents...); mu.Unlock() })
	ts.SetHookCallback(func(ents []string) { mu.Lock(); hookWoken = append(hookWoken, ents...); mu.Unlock() })
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	t0 := time.Now().Add(-time.Minute)
	for _, ent := range []string{"a", "b"} {
		for i := range 4 {
			storeReply(t, ts, ent, "https://crm.example.com/r", t0.Add(time.Duration(i)*time.Second))
		}
		rs, _, err := ts.DueReplies(ent, time.Now(), 3, nil) // three fail, one stays due
		if err != nil || len(rs) != 3 {
			t.Fatalf("%s due: %d, %v", ent, len(rs), err)
		}
		if err := ts.RetryReplies(ctx, rs, []time.Time{later, later, later}); err != nil {
			t.Fatal(err)
		}
	}
	// A receipt of a, waiting for its retry too.
	hookedMessages(t, ts, "a", 1)
	hs, err := ts.DueHooks("a", time.Now(), 0, nil)
	if err != nil || len(hs) != 1 {
		t.Fatalf("receipts of a due: %d, %v", len(hs), err)
	}
	if err := ts.RetryHooks(ctx, hs, []time.Time{later}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	replyWoken, hookWoken = nil, nil
	mu.Unlock()

	now := time.Now()
	moved, more, err := ts.RepliesDueNow(ctx, "a", now, 2)
	if err != nil || moved != 2 || !more {
		t.Fatalf("first call: moved %d, more %v, %v; want 2 and more", moved, more, err)
	}
	mu.Lock()
	if !slices.Equal(replyWoken, []string{"a"}) || len(hookWoken) != 0 {
		t.Errorf("woken: replies %v, receipts %v; want the replies' sender for a only", replyWoken, hookWoken)
	}
	mu.Unlock()
	if moved, more, err = ts.RepliesDueNow(ctx, "a", now, 2); err != nil || moved != 1 || more {
		t.Fatalf("second call: moved %d, more %v, %v; want 1 and no more", moved, more, err)
	}
	rs, _, err := ts.DueReplies("a", now, 0, nil)
	if err != nil || len(rs) != 4 {
		t.Fatalf("due now: %d, %v; want all 4", len(rs), err)
	}
	attempts := 0
	for _, r := range rs {
		attempts += r.Attempts
	}
	if attempts != 3 {
		t.Errorf("attempts %d, want the 3 failures kept", attempts)
	}
	if rs, _, _ := ts.DueReplies("b", now, 0, nil); len(rs) != 1 {
		t.Errorf("b: %d due, want only its one never failed", len(rs))
	}
	if hs, _ := ts.DueHooks("a", now, 0, nil); len(hs) != 0 {
		t.Errorf("a's receipt made due by the replies' retry: %+v", hs)
	}
	// And the other way round: the receipts' retry moves the receipt, not b's replies.
	if moved, _, err := ts.HooksDueNow(ctx, "b", now, 10); err != nil || moved != 0 {
		t.Errorf("HooksDueNow of b (replies only): %d, %v", moved, err)
	}
	if moved, _, err := ts.HooksDueNow(ctx, "a", now, 10); err != nil || moved != 1 {
		t.Errorf("HooksDueNow of a: %d, %v; want its one receipt", moved, err)
	}
	if moved, more, err := ts.RepliesDueNow(ctx, "c", now, 10); err != nil || moved != 0 || more {
		t.Errorf("an enterprise without replies: %d, %v, %v", moved, more, err)
	}
}

// TestDueRepliesBounded: a read of due replies holds at most
// maxDueReplyBytes of content past its first reply, whatever its limit,
// and says more are due now; a read of the replies to forward and a
// page of the inbox likewise.
func TestDueRepliesBounded(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	t0 := time.Now().Add(-time.Minute)
	big := bytes.Repeat([]byte{0xA5}, 3<<20)
	for i := range 5 {
		m := &MO{Enterprise: "E1", Source: "13712345678", Dest: "106575001", Upstream: "sim", ReplyURL: "https://crm.example.com/r",
			Binary: big, DataCoding: 4, ReceivedAt: t0.Add(time.Duration(i) * time.Second)}
		if err := ts.StoreMO(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	rs, next, err := ts.DueReplies("E1", now, 100, nil)
	if err != nil || len(rs) != 3 || !next.Equal(now) {
		t.Fatalf("read %d replies of 3 MiB (next %v, %v); want 3, the rest due now", len(rs), next, err)
	}
	rs, _, err = ts.DueReplies("E1", now, 100, func(id uint64) bool { return id <= rs[1].MO.ID })
	if err != nil || len(rs) != 3 {
		t.Fatalf("past the first two: %d replies, %v; want 3", len(rs), err)
	}
	// A reply larger than the bound is read, alone.
	huge := &MO{Enterprise: "E2", Source: "13712345678", Dest: "106575001", Upstream: "sim", ReplyURL: "https://b.example.com/r",
		Binary: bytes.Repeat([]byte{1}, maxDueReplyBytes+1), DataCoding: 4, ReceivedAt: t0}
	if err := ts.StoreMO(context.Background(), huge); err != nil {
		t.Fatal(err)
	}
	if rs, _, err := ts.DueReplies("E2", now, 100, nil); err != nil || len(rs) != 1 {
		t.Fatalf("a reply past the bound: %d read, %v", len(rs), err)
	}
	// The forwarding to the ESMEs likewise (the gateway reads again).
	if mos, err := ts.PendingMOs("E1", 64, nil); err != nil || len(mos) != 3 {
		t.Fatalf("pending MOs: %d read, %v; want 3", len(mos), err)
	}
	// The inbox's pages likewise, paged on by next.
	var pages []int
	for before := uint64(0); ; {
		list, next, err := ts.Inbox("E1", InboxFilter{}, before, 100)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(list))
		if next == 0 {
			break
		}
		before = next
	}
	if !slices.Equal(pages, []int{3, 2}) {
		t.Fatalf("inbox pages of %v replies of 3 MiB, want 3 then 2", pages)
	}
}

// TestPendingMOsAfter: a read from an id on finds the enterprise's
// pending MOs after it only, in order, with skip; past the last, none.
func TestPendingMOsAfter(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	var ids []uint64
	for i := range 10 {
		ent := "E1"
		if i%3 == 2 {
			ent = "E0" // before E1 in the index
		}
		m := &MO{Enterprise: ent, Source: "13712345678", Dest: "106575001", Upstream: "sim", Text: fmt.Sprint(i), ReceivedAt: time.Now()}
		if err := ts.StoreMO(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if ent == "E1" {
			ids = append(ids, m.ID)
		}
	}
	read := func(after uint64, limit int, skip func(uint64) bool) []uint64 {
		t.Helper()
		mos, err := ts.PendingMOsAfter("E1", after, limit, skip)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, m := range mos {
			out = append(out, m.ID)
		}
		return out
	}
	if got := read(0, 100, nil); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("from the first: %v, want %v", got, ids)
	}
	if got := read(ids[2], 2, nil); fmt.Sprint(got) != fmt.Sprint(ids[3:5]) {
		t.Errorf("after %d, 2: %v, want %v", ids[2], got, ids[3:5])
	}
	if got := read(ids[2], 100, func(id uint64) bool { return id == ids[4] }); fmt.Sprint(got) != fmt.Sprint(append(slices.Clone(ids[3:4]), ids[5:]...)) {
		t.Errorf("after %d skipping %d: %v", ids[2], ids[4], got)
	}
	if got := read(ids[len(ids)-1], 100, nil); len(got) != 0 {
		t.Errorf("after the last: %v", got)
	}
	if got := read(math.MaxUint64, 100, nil); len(got) != 0 {
		t.Errorf("after the largest id: %v", got)
	}
}

package queue

import (
	"context"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestReroute: the messages of an upstream whose every part waits move to
// another with their due times, priority and attempts, and a scan finds
// them there; a message partly sent, one in flight, one scheduled later
// than the rest and another upstream's are handled as documented: the
// first two stay, the scheduled one moves, the other upstream's is not
// touched. limit bounds the messages moved.
func TestReroute(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	plain, long, partly, flying, later, other := upMsg("cm", "13800000001", 1), upMsg("cm", "13800000002", 3),
		upMsg("cm", "13800000003", 2), upMsg("cm", "13800000004", 1), upMsg("cm", "13800000005", 1), upMsg("cu", "13000000006", 1)
	plain.Priority = true
	later.SendAt = time.Now().Add(time.Hour)
	ts.enqueue(plain, long, partly, flying, later, other)
	ts.submitted(Key{ID: partly.ID, Part: 0}, "abc1")
	if err := ts.Retry(ctx, Key{ID: long.ID, Part: 1}, time.Now().Add(time.Minute), "throttled"); err != nil {
		t.Fatal(err)
	}
	skip := func(k Key) bool { return k.ID == flying.ID }

	n, err := ts.Reroute(ctx, "cm", "cm-b", 2, skip)
	if err != nil || n != 2 {
		t.Fatalf("reroute with limit 2: %d, %v; want 2", n, err)
	}
	n, err = ts.Reroute(ctx, "cm", "cm-b", 100, skip)
	if err != nil || n != 1 {
		t.Fatalf("reroute the rest: %d, %v; want 1 (the partly sent and the one in flight stay)", n, err)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m  *Message
		up string
	}{{plain, "cm-b"}, {long, "cm-b"}, {later, "cm-b"}, {partly, "cm"}, {flying, "cm"}, {other, "cu"}} {
		got, err := ts.Get(c.m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Upstream != c.up {
			t.Errorf("message to %s on %q, want %q", c.m.Dest, got.Upstream, c.up)
		}
	}
	if got, _ := ts.Get(long.ID); got.Parts[1].Attempts != 1 || got.Parts[1].DueAt.Before(time.Now().Add(30*time.Second)) {
		t.Errorf("long's retried part: attempts %d, due %v; want them kept", got.Parts[1].Attempts, got.Parts[1].DueAt)
	}
	if got, _ := ts.Get(plain.ID); !got.Priority || ts.bucketLen(bucketUPDue) != 1 {
		t.Errorf("priority: %v, %d priority due keys; want kept, 1", got.Priority, ts.bucketLen(bucketUPDue))
	}
	r, err := ts.DueFor(time.Now().Add(time.Second), DueQuery{Limit: 100, Share: func(string) int { return 100 },
		Room: func(up string) int { return map[string]int{"cm-b": 100}[up] }})
	if err != nil {
		t.Fatal(err)
	}
	if ids := keysOf(r.Jobs); len(ids) != 3 { // plain, and long's parts 0 and 2
		t.Errorf("due on cm-b: %v, want plain and long's two parts due now", ids)
	}
	if n, err := ts.Reroute(ctx, "cm", "cm", 10, nil); n != 0 || err != nil {
		t.Errorf("reroute to itself: %d, %v", n, err)
	}
	if _, err := ts.Reroute(ctx, "cm", "bad\x00name", 10, nil); err == nil {
		t.Errorf("a NUL in the upstream's name: no error")
	}
}

// TestDueOf: the parts due per upstream follow enqueues, submits, failures
// and moves; a refused operation leaves them as they were; the count is
// read back at open, and counted from the due keys when the file has
// none.
func TestDueOf(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	long, one, other := upMsg("cm", "13800000001", 3), upMsg("cm", "13800000002", 1), upMsg("cu", "13000000003", 1)
	ts.enqueue(long, one, other)
	want := func(when string, cm, cu, b int) {
		t.Helper()
		if got := [3]int{ts.DueOf("cm"), ts.DueOf("cu"), ts.DueOf("cm-b")}; got != [3]int{cm, cu, b} {
			t.Errorf("%s: due cm, cu, cm-b %v, want %v", when, got, [3]int{cm, cu, b})
		}
	}
	want("enqueued", 4, 1, 0)
	ts.submitted(Key{ID: long.ID, Part: 0}, "abc1")
	if err := ts.Fail(ctx, Key{ID: other.ID}, StateRejected, "0x45", time.Now()); err != nil {
		t.Fatal(err)
	}
	want("one submitted, one failed", 3, 0, 0)
	if err := ts.Retry(ctx, Key{ID: long.ID, Part: 0}, time.Now(), "x"); err == nil {
		t.Fatal("a retry of a submitted part was taken")
	}
	want("a refused retry", 3, 0, 0)
	if n, err := ts.Reroute(ctx, "cm", "cm-b", 10, nil); err != nil || n != 1 {
		t.Fatalf("reroute: %d, %v", n, err)
	}
	want("one moved (long is partly sent)", 2, 0, 1)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ts.open()
	want("reopened", 2, 0, 1)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(ts.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyDueCounts) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ts.open()
	want("reopened without the stored counts", 2, 0, 1)
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
}

// upMsg is a message of enterprise A to dest routed to upstream up, in
// parts parts.
func upMsg(up, dest string, parts int) *Message {
	m := entMsg("A", dest)
	m.Upstream = up
	for range parts - 1 {
		m.Parts = append(m.Parts, Part{Body: []byte{1, 0xAB}})
	}
	return m
}

package queue

import (
	"context"
	"fmt"
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

	res, err := ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 2, Skip: skip})
	if err != nil || res.Moved != 2 || res.Done || res.Next == nil {
		t.Fatalf("reroute with limit 2: %+v, %v; want 2 moved, not done", res, err)
	}
	res, err = ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 100, Skip: skip})
	if err != nil || res.Moved != 1 || res.Kept != 2 || !res.Done || res.Next != nil {
		t.Fatalf("reroute the rest: %+v, %v; want 1 moved, 2 kept (the partly sent and the one in flight), done", res, err)
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
	if res, err := ts.Reroute(ctx, "cm", RerouteOptions{To: "cm", Limit: 10}); res.Moved != 0 || err != nil {
		t.Errorf("reroute to itself: %+v, %v", res, err)
	}
	if _, err := ts.Reroute(ctx, "bad\x00name", RerouteOptions{To: "cm", Limit: 10}); err == nil {
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
	if res, err := ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 10}); err != nil || res.Moved != 1 {
		t.Fatalf("reroute: %+v, %v", res, err)
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

// TestRerouteRemade: a message whose parts are made again for the
// upstream it moves to gets the new parts, data_coding, concatenation
// mode and weight, due at the earliest of its old parts with the most
// attempts any had, its reference kept or taken as its parts need; one
// whose new parts would count other segments on the air stays, and so
// does one Remake declines. The store's counts and usage hold (Check).
func TestRerouteRemade(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	// two parts → one payload part of weight 2; two parts → two others;
	// one part → three parts (another count: stays); declined: stays.
	toPayload, twoNew, grows, declined := upMsg("cm", "13800000001", 2), upMsg("cm", "13800000002", 2),
		upMsg("cm", "13800000003", 1), upMsg("cm", "13800000004", 1)
	single := upMsg("cm", "13800000005", 1) // one part → two parts of weight 0: 2 segments, not 1: stays
	ts.enqueue(toPayload, twoNew, grows, declined, single)
	later := time.Now().Add(time.Minute)
	if err := ts.Retry(ctx, Key{ID: twoNew.ID, Part: 1}, later, "throttled"); err != nil {
		t.Fatal(err)
	}
	before, err := ts.Get(twoNew.ID)
	if err != nil {
		t.Fatal(err)
	}
	remade := map[uint64]Remade{
		toPayload.ID: {Parts: [][]byte{[]byte("whole")}, DataCoding: 8, Concat: 2, Weight: 2},
		twoNew.ID:    {Parts: [][]byte{[]byte("a"), []byte("b")}, DataCoding: 8, Concat: 1},
		grows.ID:     {Parts: [][]byte{[]byte("a"), []byte("b"), []byte("c")}, Concat: 1},
		single.ID:    {Parts: [][]byte{[]byte("a"), []byte("b")}, Concat: 1},
	}
	res, err := ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 10, Remake: func(m *Message, to string) (*Remade, bool) {
		r, ok := remade[m.ID]
		return &r, ok && to == "cm-b"
	}})
	if err != nil || res.Moved != 2 || res.Remade != 2 || res.Kept != 3 || !res.Done {
		t.Fatalf("reroute: %+v, %v; want 2 moved and remade, 3 kept, done", res, err)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	p, _ := ts.Get(toPayload.ID)
	if p.Upstream != "cm-b" || len(p.Parts) != 1 || string(p.Parts[0].Body) != "whole" || p.Weight != 2 || p.Ref != 0 ||
		p.DataCoding != 8 || p.Concat != 2 || p.Segments() != 2 {
		t.Errorf("to payload: %+v", p)
	}
	n, _ := ts.Get(twoNew.ID)
	if n.Upstream != "cm-b" || len(n.Parts) != 2 || string(n.Parts[1].Body) != "b" || n.Ref != before.Ref || n.Weight != 0 {
		t.Errorf("two new parts: %+v", n)
	}
	for i, part := range n.Parts {
		if part.Attempts != 1 || !part.DueAt.Equal(before.Parts[0].DueAt) || part.State != StateAccepted {
			t.Errorf("two new parts, part %d: attempts %d, due %v, state %v; want 1, %v (the earliest), accepted",
				i, part.Attempts, part.DueAt, part.State, before.Parts[0].DueAt)
		}
	}
	for _, m := range []*Message{grows, declined, single} {
		if got, _ := ts.Get(m.ID); got.Upstream != "cm" || len(got.Parts) != len(m.Parts) {
			t.Errorf("message to %s: on %q in %d parts, want kept on cm in %d", m.Dest, got.Upstream, len(got.Parts), len(m.Parts))
		}
	}
	if got := [2]int{ts.DueOf("cm"), ts.DueOf("cm-b")}; got != [2]int{3, 3} {
		t.Errorf("due on cm, cm-b: %v, want [3 3]", got)
	}
	// One part made into two on a message that had one: it takes a
	// reference (two of weight 1 = the 2 segments of a payload part).
	pay := upMsg("cm", "13800000006", 1)
	pay.Weight = 2
	ts.enqueue(pay)
	res, err = ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 10, Remake: func(m *Message, _ string) (*Remade, bool) {
		return &Remade{Parts: [][]byte{[]byte("a"), []byte("b")}, Concat: 1}, m.ID == pay.ID
	}})
	if err != nil || res.Moved != 1 {
		t.Fatalf("reroute the payload message: %+v, %v", res, err)
	}
	if got, _ := ts.Get(pay.ID); len(got.Parts) != 2 || got.Ref == 0 || got.Weight != 0 {
		t.Errorf("payload made into two parts: %d parts, ref %d, weight %d; want 2, a ref, 0", len(got.Parts), got.Ref, got.Weight)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	// AnyCount: the one part made into three moves, and the enterprise's
	// reservation grows by the two segments more.
	g, _ := ts.Get(grows.ID)
	month := BillingMonth(g.AcceptedAt)
	reserved, _ := ts.Usage("A", month)
	res, err = ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 10, AnyCount: true, Remake: func(m *Message, _ string) (*Remade, bool) {
		return &Remade{Parts: [][]byte{[]byte("a"), []byte("b"), []byte("c")}, Concat: 1}, m.ID == grows.ID
	}})
	if err != nil || res.Moved != 1 {
		t.Fatalf("reroute with AnyCount: %+v, %v", res, err)
	}
	if now, _ := ts.Usage("A", month); now != reserved+2 {
		t.Errorf("reserved %d after the move, want %d", now, reserved+2)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestRerouteTarget: with Target, each message goes to the upstream it
// names, or stays ("", its own); Remake is asked per target, nil moving
// the parts as they were made; By counts the moves per upstream.
func TestRerouteTarget(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	toB, toC, stays, same := upMsg("cm", "13800000001", 1), upMsg("cm", "13000000002", 1), upMsg("cm", "15300000003", 1), upMsg("cm", "13800000004", 2)
	ts.enqueue(toB, toC, stays, same)
	target := map[uint64]string{toB.ID: "b", toC.ID: "c", stays.ID: "", same.ID: "b"}
	res, err := ts.Reroute(ctx, "cm", RerouteOptions{Limit: 10,
		Target: func(m *Message) string { return target[m.ID] },
		Remake: func(m *Message, to string) (*Remade, bool) {
			if to == "c" {
				return &Remade{Parts: [][]byte{[]byte("c")}, Concat: 3}, true
			}
			return nil, true
		}})
	if err != nil || res.Moved != 3 || res.Remade != 1 || res.Kept != 1 || res.By["b"] != 2 || res.By["c"] != 1 {
		t.Fatalf("reroute by target: %+v, %v; want 3 moved (2 to b, 1 to c, remade), 1 kept", res, err)
	}
	for _, c := range []struct {
		m      *Message
		up     string
		concat uint8
	}{{toB, "b", 0}, {toC, "c", 3}, {stays, "cm", 0}, {same, "b", 0}} {
		if got, _ := ts.Get(c.m.ID); got.Upstream != c.up || got.Concat != c.concat || len(got.Parts) != len(c.m.Parts) {
			t.Errorf("message to %s: on %q, concat %d, %d parts; want %q, %d, %d", c.m.Dest, got.Upstream, got.Concat, len(got.Parts), c.up, c.concat, len(c.m.Parts))
		}
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestRerouteScan: a call reads at most Scan messages and says where the
// next resumes; calls from there walk the queue once, reading each
// message that cannot move once, and move what can.
func TestRerouteScan(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	var msgs []*Message
	for i := range 10 {
		msgs = append(msgs, upMsg("cm", fmt.Sprintf("138000000%02d", i), 1))
	}
	ts.enqueue(msgs...)
	stays := func(k Key) bool { return k.ID%2 == 0 } // in flight: half of them
	var from []byte
	moved, read, calls := 0, 0, 0
	for {
		res, err := ts.Reroute(ctx, "cm", RerouteOptions{To: "cm-b", Limit: 10, Scan: 3, From: from, Skip: stays})
		if err != nil {
			t.Fatal(err)
		}
		calls++
		moved, read = moved+res.Moved, read+res.Moved+res.Kept
		if res.Moved+res.Kept > 3 {
			t.Fatalf("call %d read %d messages, Scan 3", calls, res.Moved+res.Kept)
		}
		if res.Done {
			break
		}
		from = res.Next
		if calls > 10 {
			t.Fatal("no end to the walk")
		}
	}
	if moved != 5 || read != 10 || calls != 4 {
		t.Errorf("walk: %d moved, %d read in %d calls; want 5, 10, 4", moved, read, calls)
	}
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

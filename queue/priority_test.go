package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCodecPriority: Priority is the second flags byte's first hint: a
// record with it is version 2, and one without it stays version 1, byte
// for byte what a release before it wrote and reads. A hint this release
// does not know is ignored; any other unknown bit of that byte is refused,
// as is a version 2 record whose second byte says nothing.
func TestCodecPriority(t *testing.T) {
	m := fullMessage()
	plain := encodeMessage(nil, m)
	if plain[0] != msgVersion {
		t.Fatalf("a record without priority is version %d, want %d", plain[0], msgVersion)
	}
	m.Priority = true
	b := encodeMessage(nil, m)
	if b[0] != msgVersionExt || len(b) != len(plain)+1 {
		t.Fatalf("a record with priority: version %d, %d bytes; want version %d, %d bytes", b[0], len(b), msgVersionExt, len(plain)+1)
	}
	got, err := DecodeMessage(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	at := extFlagsAt(t, b)
	for _, tc := range []struct {
		name string
		ext  byte
		ok   bool
	}{
		{"a hint from a later release", extPriority | 0x08, true},
		{"a later flag that must be known", extPriority | 0x10, false},
		{"nothing in the second byte", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bytes.Clone(b)
			c[at] = tc.ext
			got, err := DecodeMessage(c)
			switch {
			case tc.ok && (err != nil || !got.Priority):
				t.Errorf("got %+v, %v; want it read with priority", got, err)
			case !tc.ok && !errors.Is(err, ErrCorrupt):
				t.Errorf("got %+v, %v; want ErrCorrupt", got, err)
			}
		})
	}
}

// extFlagsAt is where the second flags byte of the version 2 record b
// is: one past the first, which is where a version 1 record of the same
// message has its part count.
func extFlagsAt(t *testing.T, b []byte) int {
	t.Helper()
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	m.Priority = false
	v1 := encodeMessage(nil, m)
	for i := 1; i < len(v1); i++ {
		if b[i] != v1[i] {
			if b[i] != extPriority {
				t.Fatalf("byte %d: %#x, want the second flags byte %#x", i, b[i], extPriority)
			}
			return i
		}
	}
	t.Fatal("no second flags byte")
	return 0
}

// TestPriorityReadFirst: parts of a message sent with priority have a
// priority due key while they wait, so that DueSharedAt takes them ahead
// of their enterprise's backlog (at most its priority quota, counted in
// its share), after a reopen too, at their new time after a Retry; once
// the message has no part waiting its priority and keys are gone, and
// its record is version 1 again. Messages without priority write no
// priority key. Check holds the keys to the parts throughout.
func TestPriorityReadFirst(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ctx := context.Background()
	var backlog []*Message
	for i := range 200 {
		backlog = append(backlog, entMsg("A", fmt.Sprintf("1380000%04d", i)))
	}
	ts.enqueue(backlog...)
	ts.enqueue(entMsg("B", "13900000009"))
	if n := ts.bucketLen(bucketPDue); n != 0 {
		t.Fatalf("%d priority due keys without a message sent with priority", n)
	}
	otp := entMsg("A", "13900000001")
	otp.Parts = append(otp.Parts, Part{Body: []byte{1, 0xAB}})
	otp.Priority = true
	otp2 := entMsg("A", "13900000002")
	otp2.Priority = true
	ts.enqueue(otp, otp2)
	if n := ts.bucketLen(bucketPDue); n != 3 {
		t.Fatalf("%d priority due keys for 3 parts", n)
	}
	if n, err := ts.PriorityWaiting(); err != nil || n != 3 {
		t.Fatalf("PriorityWaiting %d, %v; want the 3 parts", n, err)
	}
	ts.reopen() // read back from the file, not handed over

	now := time.Now().Add(time.Second)
	two := func(string) int { return 2 }
	jobs, _, err := ts.DueSharedAt(now, 5, two, two, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A's two parts with priority (the earliest two), then B's share,
	// then what is left: A's share is used up by the two.
	if len(jobs) != 5 || jobs[0].Key != (Key{otp.ID, 0}) || jobs[1].Key != (Key{otp.ID, 1}) || !jobs[0].Msg.Priority {
		t.Fatalf("took %v, want %d's two parts first", keysOf(jobs), otp.ID)
	}
	if jobs[2].Msg.Enterprise != "B" {
		t.Errorf("took %v: B's part third, after A's share went to its parts with priority", keysOf(jobs))
	}
	// No quota for priority: due order, as before.
	jobs, _, err = ts.DueSharedAt(now, 5, nil, two, nil)
	if err != nil {
		t.Fatal(err)
	}
	if jobs[0].Msg.Priority {
		t.Errorf("without a priority quota took %v", keysOf(jobs))
	}

	// Part 0 accepted by the SMSC: part 1 still waits, with priority.
	ts.submitted(Key{otp.ID, 0}, "p0")
	if m := ts.get(otp.ID); !m.Priority {
		t.Fatal("priority gone while a part still waits")
	}
	// Part 1 retried later: its priority key moves with it.
	later := time.Now().Add(time.Hour)
	if err := ts.Retry(ctx, Key{otp.ID, 1}, later, "0x00000058"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Check(); err != nil {
		t.Fatal(err)
	}
	jobs, _, err = ts.DueSharedAt(later, 1, two, two, func(k Key) bool { return k.ID == otp2.ID })
	if err != nil || len(jobs) != 1 || jobs[0].Key != (Key{otp.ID, 1}) {
		t.Fatalf("at its retry: took %v, %v; want %d/1 first", keysOf(jobs), err, otp.ID)
	}
	ts.submitted(Key{otp.ID, 1}, "p1")
	m := ts.get(otp.ID)
	if m.Priority {
		t.Error("priority kept with no part waiting")
	}
	err = ts.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMsg).Get(msgKey(otp.ID)); v[0] != msgVersion {
			t.Errorf("record of a message sent with priority, all sent: version %d, want %d", v[0], msgVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// otp2 ends without being sent (validity): its key goes too.
	if err := ts.Fail(ctx, Key{otp2.ID, 0}, StateExpired, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := ts.bucketLen(bucketPDue); n != 0 {
		t.Errorf("%d priority due keys left with no part waiting", n)
	}
	if n, err := ts.PriorityWaiting(); err != nil || n != 0 {
		t.Errorf("PriorityWaiting %d, %v with none waiting: an operator would wait on it to go back a release", n, err)
	}
}

// TestPriorityDueIndexAbsent: a file written before the priority due
// index existed (no pdue bucket) opens, gets an empty one, and reads as
// before.
func TestPriorityDueIndexAbsent(t *testing.T) {
	ts := newStore(t, Options{NoSync: true})
	ts.enqueue(entMsg("A", "13800000001"))
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(ts.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketPDue) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ts.open()
	one := func(string) int { return 1 }
	if jobs, _, err := ts.DueSharedAt(time.Now().Add(time.Second), 10, one, one, nil); err != nil || len(jobs) != 1 {
		t.Fatalf("due: %v, %v", keysOf(jobs), err)
	}
}

func keysOf(jobs []Job) []Key {
	out := make([]Key, len(jobs))
	for i, j := range jobs {
		out[i] = j.Key
	}
	return out
}

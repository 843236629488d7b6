package queue

import (
	"bytes"
	"context"
	"encoding/hex"
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
	if n := ts.bucketLen(bucketUPDue); n != 0 {
		t.Fatalf("%d priority due keys without a message sent with priority", n)
	}
	otp := entMsg("A", "13900000001")
	otp.Parts = append(otp.Parts, Part{Body: []byte{1, 0xAB}})
	otp.Priority = true
	otp2 := entMsg("A", "13900000002")
	otp2.Priority = true
	ts.enqueue(otp, otp2)
	if n := ts.bucketLen(bucketUPDue); n != 3 {
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
	if n := ts.bucketLen(bucketUPDue); n != 0 {
		t.Errorf("%d priority due keys left with no part waiting", n)
	}
	if n, err := ts.PriorityWaiting(); err != nil || n != 0 {
		t.Errorf("PriorityWaiting %d, %v with none waiting: an operator would wait on it to go back a release", n, err)
	}
}

func keysOf(jobs []Job) []Key {
	out := make([]Key, len(jobs))
	for i, j := range jobs {
		out[i] = j.Key
	}
	return out
}

// oldFragmentRecord is a frag record as the release before Fragment.Priority
// wrote it (version 1, its encodeFragment run on fragmentForCodec): such
// records wait in files that release left, and are read by this one.
const oldFragmentRecord = "012a03656e74808098bf84e1add73108044f60597d08010500010180a0cfc6ede6add731000ce38090e6b58be8af95e3809100"

func fragmentForCodec() *Fragment {
	g := FragmentGroup{Account: "acct", Source: "1069", Dest: "13800138000", Ref: 7, Total: 3}
	return &Fragment{FragmentGroup: g, Seq: 2, ID: 42, Enterprise: "ent", ArrivedAt: time.Unix(1_790_000_000, 0).UTC(),
		Coding: 8, Data: []byte{0x4f, 0x60, 0x59, 0x7d}, ClientCoding: 8, RegisteredDelivery: 1, SourceTON: 5, DestTON: 1, DestNPI: 1,
		SendAt: time.Unix(1_790_000_100, 0).UTC(), Signature: "【测试】"}
}

// TestCodecFragmentPriority: a part stored with Priority has a version 2
// frag record, version 1 with a flags byte after the fields; one without
// it is version 1, byte for byte what the release before wrote, and such
// an older record decodes (without priority). A hint of a later release
// in the flags byte is ignored; any other unknown bit, a flags byte of 0,
// a version 2 record without its flags byte and a version 1 record with
// one are refused.
func TestCodecFragmentPriority(t *testing.T) {
	fr := fragmentForCodec()
	key := fragKey(fr.FragmentGroup, fr.Seq)
	old, err := hex.DecodeString(oldFragmentRecord)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeFragment(key, old)
	if err != nil || !reflect.DeepEqual(got, fr) {
		t.Fatalf("the record of the release before: %#v, %v; want %#v", got, err, fr)
	}
	plain := encodeFragment(fr)
	if !bytes.Equal(plain, old) {
		t.Fatalf("a part without priority encodes as\n%x, want the release before's\n%x", plain, old)
	}

	fr.Priority = true
	b := encodeFragment(fr)
	if b[0] != fragVersionFlags || len(b) != len(plain)+1 || !bytes.Equal(b[1:len(plain)], plain[1:]) || b[len(b)-1] != fragPriority {
		t.Fatalf("a part with priority encodes as\n%x; want version %d, then version 1's fields, then the flags byte %#x", b, fragVersionFlags, fragPriority)
	}
	got, err = decodeFragment(key, b)
	if err != nil || !reflect.DeepEqual(got, fr) {
		t.Fatalf("round trip with priority: %#v, %v; want %#v", got, err, fr)
	}

	for _, tc := range []struct {
		name     string
		rec      []byte
		priority bool
		ok       bool
	}{
		{"a hint from a later release", append(bytes.Clone(b[:len(b)-1]), fragPriority|0x08), true, true},
		{"a later hint alone", append(bytes.Clone(b[:len(b)-1]), 0x08), false, true},
		{"a later flag that must be known", append(bytes.Clone(b[:len(b)-1]), fragPriority|0x10), false, false},
		{"nothing in the flags byte", append(bytes.Clone(b[:len(b)-1]), 0), false, false},
		{"version 2 without its flags byte", bytes.Clone(b[:len(b)-1]), false, false},
		{"version 1 with a flags byte", append(bytes.Clone(plain), fragPriority), false, false},
		{"version 3", append([]byte{3}, b[1:]...), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeFragment(key, tc.rec)
			switch {
			case tc.ok && (err != nil || got.Priority != tc.priority):
				t.Errorf("got %#v, %v; want it read, priority %v", got, err, tc.priority)
			case !tc.ok && !errors.Is(err, ErrCorrupt):
				t.Errorf("got %#v, %v; want ErrCorrupt", got, err)
			}
		})
	}
}

// TestFragmentsPriorityStored: the priority of each part is on disk with
// it, so that the parts read back after a restart (Fragments,
// FragmentByID) still say which asked for it, and GroupPriority is set
// when any part of the group has it; a retried part is the part stored
// first, whatever its flag. Check reads the version 2 records, and
// PriorityWaiting counts them while they are there.
func TestFragmentsPriorityStored(t *testing.T) {
	s := newStore(t, Options{NoSync: true})
	p1 := frag(testGroup, 1, "aaa")
	p1.Priority = true
	r1 := s.storeFrag(p1, FragmentLimits{})
	r2 := s.storeFrag(frag(testGroup, 2, "bbb"), FragmentLimits{})
	if again := s.storeFrag(frag(testGroup, 1, "aaa"), FragmentLimits{}); !again.Duplicate || again.ID != r1.ID {
		t.Fatalf("retried part without the flag: %+v, want a duplicate of %d", again, r1.ID)
	}
	s.reopen()
	frags, err := s.Fragments(testGroup)
	if err != nil || len(frags) != 2 {
		t.Fatalf("fragments: %d, %v", len(frags), err)
	}
	if !frags[0].Priority || frags[1].Priority {
		t.Fatalf("after a reopen: part 1 priority %v, part 2 %v; want true, false", frags[0].Priority, frags[1].Priority)
	}
	if !GroupPriority(frags) || GroupPriority(frags[1:]) || GroupPriority(nil) {
		t.Fatalf("GroupPriority: %v of both, %v of part 2 alone, %v of none; want true, false, false",
			GroupPriority(frags), GroupPriority(frags[1:]), GroupPriority(nil))
	}
	if f, err := s.FragmentByID(r1.ID); err != nil || !f.Priority {
		t.Fatalf("part %d by id: %#v, %v; want it with priority", r1.ID, f, err)
	}
	if f, err := s.FragmentByID(r2.ID); err != nil || f.Priority {
		t.Fatalf("part %d by id: %#v, %v; want it without priority", r2.ID, f, err)
	}
	// A release before Fragment.Priority refuses part 1's record: it is
	// counted with the parts of messages with priority waiting, which
	// an operator waits on before going back; the part without priority
	// (version 1) is not. Once the group is joined neither is there.
	if n, err := s.PriorityWaiting(); err != nil || n != 1 {
		t.Fatalf("PriorityWaiting %d, %v with one part stored with priority pending; want 1", n, err)
	}
	if _, err := s.RejectFragments(context.Background(), testGroup, []uint64{r1.ID, r2.ID}, "incomplete", ""); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PriorityWaiting(); err != nil || n != 0 {
		t.Fatalf("PriorityWaiting %d, %v once the group was settled; want 0", n, err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

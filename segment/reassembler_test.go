package segment

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)

// fragments parses frames the way the gateway parses submit_sm PDUs.
func fragments(t *testing.T, frames []Frame, packed bool) []Fragment {
	t.Helper()
	out := make([]Fragment, len(frames))
	for i, fr := range frames {
		f, err := ParseIncoming(Incoming{
			DataCoding: fr.DataCoding, ESMClass: fr.ESMClass, ShortMessage: fr.ShortMessage,
			Payload: fr.TLVs[TagMessagePayload], SARRef: fr.TLVs[TagSARMsgRefNum],
			SARTotal: fr.TLVs[TagSARTotalSegments], SARSeq: fr.TLVs[TagSARSegmentSeqnum],
		}, packed)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = f
	}
	return out
}

func TestReassemblerOutOfOrder(t *testing.T) {
	text := sig + rep("企信通", 60) + emoji
	for _, o := range allOptions() {
		_, frames := roundTrip(t, text, o, 0x0102)
		r := NewReassembler(ReassemblerConfig{})
		frags := fragments(t, frames, o.GSMPacked)
		var got string
		for i := len(frags) - 1; i >= 0; i-- {
			s, done, err := r.Add("esme1", frags[i], t0)
			if err != nil {
				t.Fatal(err)
			}
			if done != (i == 0) {
				t.Fatalf("%s: part %d done=%v", optName(o), i, done)
			}
			got = s
		}
		if got != text {
			t.Errorf("%s: %q", optName(o), got)
		}
		if r.Pending() != 0 {
			t.Errorf("%d pending", r.Pending())
		}
	}
}

// go-smpp's SubmitLongMsg splits octets, not characters: a surrogate pair
// or a GSM escape can straddle two parts. Joining before decoding repairs it.
func TestReassemblerSplitCharacters(t *testing.T) {
	ucs := []byte{0x00, 0x41, 0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x42} // "A😀B"
	gsm := []byte{0x41, 0x1B, 0x65, 0x42}                         // "A€B"
	tests := []struct {
		name  string
		dc    byte
		parts [][]byte
		want  string
	}{
		{"surrogate pair", 0x08, [][]byte{ucs[:4], ucs[4:]}, "A😀B"},
		{"odd split", 0x08, [][]byte{ucs[:3], ucs[3:]}, "A😀B"},
		{"escape", 0x00, [][]byte{gsm[:2], gsm[2:]}, "A€B"},
	}
	for _, tt := range tests {
		r := NewReassembler(ReassemblerConfig{})
		var got string
		var done bool
		for i, p := range tt.parts {
			sm := append([]byte{0x05, 0x00, 0x03, 0x77, byte(len(tt.parts)), byte(i + 1)}, p...)
			f, err := ParseIncoming(Incoming{DataCoding: tt.dc, ESMClass: 0x40, ShortMessage: sm}, false)
			if err != nil {
				t.Fatal(err)
			}
			if got, done, err = r.Add("k", f, t0); err != nil {
				t.Fatal(err)
			}
		}
		if !done || got != tt.want {
			t.Errorf("%s: %q %v", tt.name, got, done)
		}
	}
}

func concatFrag(ref uint16, total, seq uint8, text string) Fragment {
	return Fragment{Coding: IA5, Data: []byte(text), Info: &UDHInfo{Concat: true, Ref: ref, Total: total, Seq: seq}}
}

func TestReassemblerRules(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{Timeout: time.Minute, MaxGroups: 2, MaxParts: 3})

	// Not concatenated: returned at once.
	if s, done, err := r.Add("a", Fragment{Coding: IA5, Data: []byte("x")}, t0); s != "x" || !done || err != nil {
		t.Fatalf("single: %q %v %v", s, done, err)
	}
	if _, _, err := r.Add("a", concatFrag(1, 4, 1, "x"), t0); !errors.Is(err, ErrTooManyParts) {
		t.Errorf("4 parts: %v", err)
	}
	if _, _, err := r.Add("a", concatFrag(1, 2, 3, "x"), t0); !errors.Is(err, ErrBadConcat) {
		t.Errorf("seq > total: %v", err)
	}
	mustAdd := func(key string, f Fragment, now time.Time) {
		t.Helper()
		if _, done, err := r.Add(key, f, now); err != nil || done {
			t.Fatalf("%s: done=%v %v", key, done, err)
		}
	}
	mustAdd("a", concatFrag(1, 2, 1, "x"), t0)
	mustAdd("a", concatFrag(1, 2, 1, "x"), t0) // identical repeat: ignored
	if _, _, err := r.Add("a", concatFrag(1, 2, 1, "y"), t0); !errors.Is(err, ErrDuplicatePart) {
		t.Errorf("conflicting repeat: %v", err)
	}
	// Same ref from another key, and another total, are other messages.
	mustAdd("b", concatFrag(1, 2, 1, "x"), t0.Add(time.Second))
	if _, _, err := r.Add("a", concatFrag(1, 3, 1, "x"), t0); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("third group: %v", err)
	}
	if r.Pending() != 2 {
		t.Fatalf("%d pending", r.Pending())
	}
	if got := r.Expire(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Errorf("expired early: %+v", got)
	}
	got := r.Expire(t0.Add(time.Minute + time.Second))
	want := []Incomplete{
		{Key: "a", Ref: 1, Total: 2, Received: 1, Started: t0},
		{Key: "b", Ref: 1, Total: 2, Received: 1, Started: t0.Add(time.Second)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Expire = %+v, want %+v", got, want)
	}
	if r.Pending() != 0 || r.bytes != 0 {
		t.Errorf("after expire: %d pending, %d bytes", r.Pending(), r.bytes)
	}
	// The part that completes after an expiry starts a new group.
	mustAdd("a", concatFrag(1, 2, 2, "y"), t0)
}

func TestReassemblerMaxBytes(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{MaxBytes: 10})
	if _, _, err := r.Add("a", concatFrag(1, 2, 1, "123456"), t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add("b", concatFrag(1, 2, 1, "123456"), t0); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("over MaxBytes: %v", err)
	}
	if s, done, err := r.Add("a", concatFrag(1, 2, 2, "7"), t0); s != "1234567" || !done || err != nil {
		t.Errorf("complete: %q %v %v", s, done, err)
	}
	if r.bytes != 0 {
		t.Errorf("%d bytes held", r.bytes)
	}
}

func TestReassemblerCopiesData(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{})
	buf := []byte("ab")
	f := Fragment{Coding: IA5, Data: buf, Info: &UDHInfo{Concat: true, Ref: 3, Total: 2, Seq: 1}}
	r.Add("k", f, t0)
	copy(buf, "XX") // the caller reuses its buffer
	if s, _, _ := r.Add("k", concatFrag(3, 2, 2, "cd"), t0); s != "abcd" {
		t.Errorf("%q", s)
	}
}

func TestReassemblerConcurrent(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("esme", w)
			for ref := range 50 {
				for seq := uint8(1); seq <= 3; seq++ {
					s, done, err := r.Add(key, concatFrag(uint16(ref), 3, seq, "x"), t0)
					if err != nil || done != (seq == 3) || (done && s != "xxx") {
						t.Errorf("%s ref %d seq %d: %q %v %v", key, ref, seq, s, done, err)
					}
				}
			}
			r.Expire(t0)
		}()
	}
	wg.Wait()
	if r.Pending() != 0 {
		t.Errorf("%d pending", r.Pending())
	}
}

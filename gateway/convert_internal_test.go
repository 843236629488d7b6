package gateway

import (
	"testing"
	"time"
)

func TestReceiptIDConverted(t *testing.T) {
	for _, tc := range []struct {
		r      ReceiptIDs
		in, to string
	}{
		{ReceiptIDsDecimal, "92", "5c"},
		{ReceiptIDsDecimal, "0000092", "5c"},
		{ReceiptIDsDecimal, " 92\x00", "5c"},
		{ReceiptIDsDecimal, "18446744073709551616123", "3e8000000000000007b"}, // wider than 64 bits
		{ReceiptIDsDecimal, "5c", "5c"},                                       // not decimal: as given
		{ReceiptIDsDecimal, "-5", "-5"},
		{ReceiptIDsHex, "5C", "92"},
		{ReceiptIDsHex, "3e8000000000000007b", "18446744073709551616123"},
		{ReceiptIDsHex, "msg-1", "msg-1"},
		{ReceiptIDsSame, "92", "92"},
		{ReceiptIDsAuto, "92", "92"},
	} {
		if got := tc.r.receiptID(tc.in); got != tc.to {
			t.Errorf("%s: receiptID(%q) = %q, want %q", tc.r, tc.in, got, tc.to)
		}
	}
	for _, s := range []string{"", "auto", "same", "decimal", "hex"} {
		if _, ok := ParseReceiptIDs(s); !ok {
			t.Errorf("ParseReceiptIDs(%q) refused", s)
		}
	}
	if _, ok := ParseReceiptIDs("octal"); ok {
		t.Error(`ParseReceiptIDs("octal") accepted`)
	}
}

// TestConvertPause: the converter lists every orphan each round, so with
// many of them it pauses longer, listing at most convertListedPerSecond a
// second on average; with few it looks every second.
func TestConvertPause(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, time.Second},
		{19_999, time.Second},
		{20_000, time.Second},
		{30_000, 1500 * time.Millisecond},
		{1_000_000, 50 * time.Second},
	} {
		if got := convertPause(tc.n); got != tc.want {
			t.Errorf("convertPause(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestLookDue: an orphan gets a look when its age crosses the first grace
// and again when it crosses the late one, whatever the rounds' spacing
// (both crossed between two rounds: one look), and once at the first
// round after a start if past its first grace. Nothing is kept per orphan.
func TestLookDue(t *testing.T) {
	const first, late = 11 * time.Second, 41 * time.Second
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	// Rounds every second: looks at 11 s and 41 s, never between or after.
	var looks []int
	for s := 1; s <= 200; s++ {
		if lookDue(t0, at(float64(s-1)), at(float64(s)), first, late) {
			looks = append(looks, s)
		}
	}
	if len(looks) != 2 || looks[0] != 11 || looks[1] != 41 {
		t.Errorf("rounds a second apart: looks at %v s, want [11 41]", looks)
	}
	// Rounds 50 s apart (a million orphans listed): both graces crossed
	// between two of them, one look.
	looks = nil
	for s := 0; s <= 300; s += 50 {
		if lookDue(at(5), at(float64(s-50)), at(float64(s)), first, late) {
			looks = append(looks, s)
		}
	}
	if len(looks) != 1 || looks[0] != 50 {
		t.Errorf("rounds 50 s apart, an orphan of 5 s: looks at %v s, want [50]", looks)
	}
	// The first round after a start: once if past the first grace.
	for _, c := range []struct {
		age  time.Duration
		want bool
	}{{first - time.Millisecond, false}, {first, true}, {late + time.Hour, true}} {
		if got := lookDue(t0, time.Time{}, t0.Add(c.age), first, late); got != c.want {
			t.Errorf("first round, an orphan of %v: due %v, want %v", c.age, got, c.want)
		}
	}
	// The same receipt stored again later is a new orphan: its graces
	// count from then.
	if !lookDue(at(100), at(110), at(111.5), first, late) || lookDue(at(100), at(111.5), at(112), first, late) {
		t.Error("a receipt stored again: want a look as its first grace passes, once")
	}
}

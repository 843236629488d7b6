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

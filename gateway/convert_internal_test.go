package gateway

import "testing"

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

package queue

import (
	"math/big"
	"slices"
	"testing"
)

func TestCanonicalSMSCID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0A1B", "a1b"},
		{"0a1b", "a1b"},
		{"2587", "2587"},
		{"000123", "123"},
		{"0000", "0"},
		{"0", "0"},
		{"  7F00 \r\n", "7f00"},
		{"12ab\x00\x00", "12ab"},
		{"MSG-00Z", "msg-00z"},
		{"", ""},
		{" \x00", ""},
		{"00abc-DEF", "abc-def"},
	}
	for _, tc := range tests {
		if got := CanonicalSMSCID(tc.in); got != tc.want {
			t.Errorf("CanonicalSMSCID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSMSCCandidates(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"0A1B", []string{"a1b", "2587"}},         // hex only
		{"2587", []string{"2587", "a1b", "9607"}}, // decimal (→ hex) and hex (→ decimal)
		{"10", []string{"10", "a", "16"}},         // ambiguous: exact first
		{"0", []string{"0"}},                      // all conversions agree
		{"9", []string{"9"}},                      // single digit: same in both
		{"msg-1", []string{"msg-1"}},              // neither
		{"FFFFFFFFFFFFFFFFFF", []string{"ffffffffffffffffff", "4722366482869645213695"}}, // > 64 bits
		{"", nil},
	}
	for _, tc := range tests {
		if got := smscCandidates(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("smscCandidates(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSMSCCandidatesAt64Bits holds the uint64 fast path equal to big.Int's
// conversions on both sides of the 64-bit boundary, where one takes over
// from the other.
func TestSMSCCandidatesAt64Bits(t *testing.T) {
	ref := func(id string) []string {
		c := CanonicalSMSCID(id)
		out := []string{c}
		if v, ok := new(big.Int).SetString(c, 10); ok {
			out = appendNew(out, v.Text(16))
		}
		if v, ok := new(big.Int).SetString(c, 16); ok {
			out = appendNew(out, v.Text(10))
		}
		return out
	}
	for _, in := range []string{
		"18446744073709551615", "18446744073709551616", "99999999999999999999", // decimal around 2^64
		"ffffffffffffffff", "10000000000000000", "1ffffffffffffffff", // hex around 2^64
		"9223372036854775807", "123456789012345678", "deadbeef", "1",
	} {
		if got, want := smscCandidates(in), ref(in); !slices.Equal(got, want) {
			t.Errorf("smscCandidates(%q) = %q, want %q", in, got, want)
		}
	}
}

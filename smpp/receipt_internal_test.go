package smpp

import (
	"strings"
	"testing"
	"time"
)

// parseReceiptDate is a hand-written reader of the two receipt date
// layouts; it must agree with time.ParseInLocation on every input of
// digits, and read nothing else (time.Parse takes "+6" as the year 06).
func FuzzParseReceiptDate(f *testing.F) {
	for _, s := range []string{"2611251459", "261125145930", "0002291200", "9902291200", "6912312359", "6801010000",
		"2613011200", "2611311200", "2611252460", "26112514", "abcdefghij", "261125 45930", "+61125145930", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := time.Time{}
		if strings.Trim(s, "0123456789") != "" {
			if got := parseReceiptDate(s); !got.IsZero() {
				t.Errorf("parseReceiptDate(%q) = %v, want nothing from a non-digit", s, got)
			}
			return
		}
		for _, layout := range []string{"060102150405", "0601021504"} {
			if len(s) == len(layout) {
				if tm, err := time.ParseInLocation(layout, s, time.Local); err == nil {
					want = tm
				}
			}
		}
		if got := parseReceiptDate(s); !got.Equal(want) {
			t.Errorf("parseReceiptDate(%q) = %v, time.ParseInLocation says %v", s, got, want)
		}
	})
}

func BenchmarkParseReceiptText(b *testing.B) {
	s := "id:51a583da3e sub:001 dlvrd:001 submit date:2611251459 done date:2611251459 stat:DELIVRD err:000 text:hello"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseReceiptText(s); err != nil {
			b.Fatal(err)
		}
	}
}

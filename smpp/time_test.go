package smpp_test

import (
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"251126120000000+", time.Date(2025, 11, 26, 12, 0, 0, 0, time.UTC)},
		{"251126120000432+", time.Date(2025, 11, 26, 12, 0, 0, 4e8, time.FixedZone("", 8*3600))}, // Beijing
		{"251126120000004-", time.Date(2025, 11, 26, 12, 0, 0, 0, time.FixedZone("", -3600))},
		{"000001000000000R", now.AddDate(0, 0, 1)},
		{"000000013000000R", now.Add(90 * time.Minute)},
		{"010200000001000R", now.AddDate(1, 2, 0).Add(time.Second)},
	} {
		got, ok := smpp.ParseTime(tc.in, now)
		if !ok || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
		if _, off := got.Zone(); ok && tc.in[15] != 'R' {
			if _, wantOff := tc.want.Zone(); off != wantOff {
				t.Errorf("ParseTime(%q) offset %d, want %d", tc.in, off, wantOff)
			}
		}
	}
	for _, in := range []string{
		"", "251126120000000", "251126120000000+0", "2511261200000000",
		"251326120000000+", // month 13
		"251100120000000+", // day 0
		"251126240000000+", // hour 24
		"251126126000000+", // minute 60
		"25112612000000X+", // tenths not a digit
		"251126120000049+", // 49 quarter hours
		"251126120000000X", // neither + - nor R
		"2511261200000a0+", "ab1126120000000+",
	} {
		if got, ok := smpp.ParseTime(in, now); ok {
			t.Errorf("ParseTime(%q) = %v, want not ok", in, got)
		}
	}
}

package smpp

import (
	"strconv"
	"time"
)

// ParseTime reads an SMPP time (§7.1.1): "YYMMDDhhmmsstnnp", 16
// characters, where p is '+' or '-' (absolute, nn quarter hours from UTC)
// or 'R' (relative to now: YY years, MM months, DD days, hh:mm:ss).
// ok is false for an empty or malformed value.
func ParseTime(v string, now time.Time) (time.Time, bool) {
	if len(v) != 16 {
		return time.Time{}, false
	}
	for i := 0; i < 15; i++ {
		if v[i] < '0' || v[i] > '9' { // Atoi would take "+1"
			return time.Time{}, false
		}
	}
	n := make([]int, 0, 7)
	for _, w := range [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 8}, {8, 10}, {10, 12}, {13, 15}} {
		x, _ := strconv.Atoi(v[w[0]:w[1]])
		n = append(n, x)
	}
	tenths := int(v[12] - '0')
	switch v[15] {
	case 'R':
		return now.AddDate(n[0], n[1], n[2]).Add(time.Duration(n[3])*time.Hour +
			time.Duration(n[4])*time.Minute + time.Duration(n[5])*time.Second), true
	case '+', '-':
		if n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[3] > 23 || n[4] > 59 || n[5] > 59 || n[6] > 48 {
			return time.Time{}, false
		}
		off := n[6] * 15 * 60
		if v[15] == '-' {
			off = -off
		}
		zone := time.FixedZone("", off)
		return time.Date(2000+n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], tenths*1e8, zone), true
	}
	return time.Time{}, false
}

// FormatTime writes t as an absolute SMPP time (§7.1.1) in t's zone;
// the zero time is the empty string (a NULL field).
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	return t.Format("060102150405") + strconv.Itoa(t.Nanosecond()/1e8) +
		string([]byte{byte('0' + off/900/10), byte('0' + off/900%10), sign})
}

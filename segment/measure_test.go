package segment

import (
	"errors"
	"strings"
	"testing"
)

// MeasureText agrees with Encode on every text Encode takes, and goes on
// counting past the limits.
func TestMeasureText(t *testing.T) {
	opt := Options{Concat: ConcatUDH8}
	for _, text := range []string{"a", "【甲公司】您好", strings.Repeat("a", 161), strings.Repeat("中", 500), "€" + strings.Repeat("x", 200)} {
		p, err := Encode(text, opt)
		if err != nil {
			t.Fatal(err)
		}
		m, err := MeasureText(text, opt)
		if err != nil || m.Coding != p.Coding || m.Chars != p.Chars || m.Segments != p.Segments() {
			t.Errorf("%.20q: measure %+v %v, encode %v %d %d", text, m, err, p.Coding, p.Chars, p.Segments())
		}
	}
	// 501 Chinese characters: too long, still counted (8 segments of 67).
	m, err := MeasureText(strings.Repeat("中", 501), opt)
	if !errors.Is(err, ErrTooLong) || m.Chars != 501 || m.Segments != 8 || m.Coding != UCS2 {
		t.Errorf("501 characters: %+v %v", m, err)
	}
	// More than 255 segments: the count with the error.
	m, err = MeasureText(strings.Repeat("a", 153*256), Options{MaxChars: 1 << 20})
	if !errors.Is(err, ErrTooLong) || m.Segments != 256 || m.Coding != GSM7 {
		t.Errorf("256 segments: %+v %v", m, err)
	}
	if _, err := MeasureText("", opt); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
}

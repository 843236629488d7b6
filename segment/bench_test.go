package segment

import (
	"testing"

	"golang.org/x/text/encoding/unicode"
)

var (
	bench500Chinese = rep("企信通", 166) + "完毕"
	bench500GSM     = rep("Hello ", 83) + "!!"
)

func BenchmarkEncode500Chinese(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(bench500Chinese, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode500GSM(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(bench500GSM, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCount(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Count(bench500Chinese, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildFrames500Chinese(b *testing.B) {
	p, err := Encode(bench500Chinese, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildFrames(p.DataCoding, p.Parts, 1, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUTF16Baseline is the floor for BenchmarkEncode500Chinese: the
// same text converted to UTF-16BE with x/text and nothing else.
func BenchmarkUTF16Baseline(b *testing.B) {
	enc := unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := enc.NewEncoder().Bytes([]byte(bench500Chinese)); err != nil {
			b.Fatal(err)
		}
	}
}

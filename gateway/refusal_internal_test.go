package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
)

// TestTextRefusalsInChinese: a text segment cannot encode, and a carrier no
// upstream serves, are refused with their reason and a Chinese detail
// for the consoles; the English detail (SMPP's logs, the API's message)
// is the one segment gave.
func TestTextRefusalsInChinese(t *testing.T) {
	refusal := func(err error) *policy.Refusal {
		t.Helper()
		var r *policy.Refusal
		if !errors.As(err, &r) {
			t.Fatalf("%v: not a refusal", err)
		}
		return r
	}
	for _, tc := range []struct {
		text   string
		opt    segment.Options
		reason policy.Reason
		zh     string
	}{
		{strings.Repeat("长", 605), segment.Options{}, policy.ReasonTooLong, "共 605 个字（含签名），最多 500 个字"},
		{strings.Repeat("长", 67*255+1), segment.Options{MaxChars: 1 << 20}, policy.ReasonTooLong, "共 17086 个字，需要 256 条短信，一条长短信最多 255 条"},
		{"", segment.Options{}, policy.ReasonBadText, "短信内容为空"},
		{"a\xffb", segment.Options{}, policy.ReasonBadText, "内容含有无效的字符（不是 UTF-8 文本）"},
	} {
		_, err := encode(tc.text, tc.opt)
		r := refusal(err)
		if r.Reason != tc.reason || r.DetailZH != tc.zh || !strings.HasPrefix(r.Detail, "segment: ") {
			t.Errorf("%d characters: %v %q (%q), want %v %q", len([]rune(tc.text)), r.Reason, r.DetailZH, r.Detail, tc.reason, tc.zh)
		}
	}
	for carrier, zh := range map[string]string{"china_unicom": "没有通道发往中国联通号码", "": "没有通道发往运营商未知的号码"} {
		if r := refusal(noRoute(carrier)); r.Reason != policy.ReasonNoRoute || r.DetailZH != zh || r.Detail != "no upstream serves carrier "+carrier {
			t.Errorf("no route for %q: %+v", carrier, r)
		}
	}
}

package console

import (
	"testing"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/batch"
)

func TestDetailDropsPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		`policy: invalid: signature "甲公司新": must be wrapped in 【】`: `signature "甲公司新": must be wrapped in 【】`,
		"queue: invalid argument: send_at in the past":             "send_at in the past",
		"to: 1 to 1000 numbers, got none":                          "to: 1 to 1000 numbers, got none",
		"policy: invalid":                                          "",
		"":                                                         "",
	} {
		if got := detail(in); got != want {
			t.Errorf("detail(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestJobFailReasonsInChinese: every reason a batch job ends failed for
// is said in Chinese on 发送任务 (not shown as its code).
func TestJobFailReasonsInChinese(t *testing.T) {
	for _, r := range batch.FailReasons() {
		if v := newJobView(api.BatchJob{State: api.JobFailed, Reason: r}); v.FailZH == "" || v.FailZH == r {
			t.Errorf("job failed for %q: shown as %q", r, v.FailZH)
		}
	}
}

// TestRefusalDetail: after a refusal's Chinese reason the consoles show
// its Chinese detail, else only what its English message says beyond the
// reason (a number, a limit): never the reason again in English.
func TestRefusalDetail(t *testing.T) {
	for _, tc := range []struct{ reason, msg, zh, want string }{
		{"too_long", "message longer than 500 characters including signatures: segment: message too long: 605 characters, limit 500", "共 605 个字（含签名），最多 500 个字", "共 605 个字（含签名），最多 500 个字"},
		{"quota_exceeded", "monthly package or spending cap exhausted", "", ""},
		{"quota_exceeded", "quota_exceeded: monthly package or spending cap exhausted", "", ""}, // an error's own text (writeErr)
		{"rate_limited", "submission rate limit exceeded, retry later", "", ""},
		{"no_route", "no upstream serves the destination's carrier: no upstream serves carrier china_unicom", "", "no upstream serves carrier china_unicom"},
		{"invalid", `policy: invalid: signature "甲公司新": must be wrapped in 【】`, "", `signature "甲公司新": must be wrapped in 【】`},
	} {
		if got := refusalDetail(tc.reason, tc.msg, tc.zh); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.reason, tc.msg, got, tc.want)
		}
	}
	e := &api.APIError{Status: 422, Reason: "quota_exceeded", Message: "monthly package or spending cap exhausted"}
	if got := zhError(e); got != "已超出本月套餐或消费上限" {
		t.Errorf("quota refusal shown as %q", got)
	}
	e = &api.APIError{Status: 422, Reason: "too_long", Message: "message longer than …: 605 characters, limit 500", DetailZH: "共 605 个字（含签名），最多 500 个字"}
	if got := zhError(e); got != "短信超过500个字（含签名）（共 605 个字（含签名），最多 500 个字）" {
		t.Errorf("too long shown as %q", got)
	}
}

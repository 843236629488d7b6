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

package console

import "testing"

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

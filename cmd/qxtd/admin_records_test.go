package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// TestAdminRecordsCLI: qxtd admin records sent and replies list an
// enterprise's messages and replies, narrowed to a number, as tables and
// as JSON; a bad number is the API's refusal.
func TestAdminRecordsCLI(t *testing.T) {
	t.Parallel()
	url, pol, q := adminServerStore(t)
	if _, err := pol.Seed(t.Context(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "ACME", Name: "Acme", Signature: "【阿克米】", Package: 1, ServiceNumber: "106575009"},
	}}}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"13800138000", "13900139000"} {
		m := &queue.Message{Account: "acme1", Enterprise: "ACME", Upstream: "sim", Dest: to, Text: "【阿克米】发给" + to,
			Parts: []queue.Part{{Body: []byte("x")}}}
		if err := q.Enqueue(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.StoreMO(t.Context(), &queue.MO{Enterprise: "ACME", Source: "8613800138000", Dest: "106575009", Text: "收到了",
		Upstream: "sim", ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// One that came while ACME had a reply URL, its POST still to go.
	if err := q.StoreMO(t.Context(), &queue.MO{Enterprise: "ACME", Source: "8613800138000", Dest: "106575009", Text: "推送的",
		Upstream: "sim", ReceivedAt: time.Now(), ReplyURL: "https://acme.example/replies"}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", url, "--token", "tok", "records"}, args...), &stdout, &stderr)
		return code, squeezeBlanks(stdout.String()), stderr.String()
	}
	code, out, errOut := run("sent", "ACME", "--number", "138 0013 8000")
	if code != 0 || !strings.Contains(out, "acme1 13800138000 accepted 1") || strings.Contains(out, "13900139000") {
		t.Fatalf("sent --number: %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run("sent", "ACME", "--json")
	if code != 0 || strings.Count(out, `"to":`) != 2 {
		t.Fatalf("sent --json: %d\n%s", code, out)
	}
	code, out, errOut = run("replies", "ACME", "--number", "13800138000")
	if code != 0 || !strings.Contains(out, "8613800138000 106575009") || !regexp.MustCompile(` no - 收到了\n`).MatchString(out) ||
		!regexp.MustCompile(` no pending 推送的\n`).MatchString(out) {
		t.Fatalf("replies: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run("trace", "+86 138 0013 8000")
	if code != 0 || !strings.Contains(out, "ACME 1 acme1 13800138000") || strings.Contains(out, "13900139000") {
		t.Fatalf("trace: %d\n%s\n%s", code, out, errOut)
	}
	// The trace of the number's replies, and its opt-outs.
	code, out, errOut = run("trace", "13800138000", "--replies")
	if code != 0 || !regexp.MustCompile(`ACME \d+ 8613800138000 106575009 .* no pending 推送的\n`).MatchString(out) || !strings.Contains(out, "收到了") {
		t.Fatalf("trace --replies: %d\n%s\n%s", code, out, errOut)
	}
	optouts := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", url, "--token", "tok", "optouts"}, args...), &stdout, &stderr)
		return code, squeezeBlanks(stdout.String()), stderr.String()
	}
	if code, out, errOut = optouts("of", "13800138000"); code != 0 || !strings.Contains(out, "13800138000 is on no enterprise's opt-out list") {
		t.Fatalf("optouts of, none: %d\n%s\n%s", code, out, errOut)
	}
	if _, err := pol.OptOut("ACME", "13800138000", 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = optouts("of", "+86 138 0013 8000"); code != 0 || !strings.Contains(out, "ACME +8613800138000 ") {
		t.Fatalf("optouts of: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut = optouts("of", "8000"); code != 1 || !strings.Contains(errOut, "invalid_number") {
		t.Fatalf("optouts of last digits: %d %s", code, errOut)
	}

	// export: the file to standard output, its rows to standard error.
	code, out, errOut = run("export", "ACME", "sent", "--number", "13900139000")
	if code != 0 || !strings.HasPrefix(out, "id,") || strings.Count(out, "\n") != 2 || !strings.Contains(out, "13900139000") || errOut != "1 rows\n" {
		t.Fatalf("export sent: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run("export", "ACME", "replies", "--lang", "zh")
	if code != 0 || !strings.HasPrefix(out, "\uFEFF消息ID,来自") || !strings.Contains(out, "推送的") || !strings.Contains(out, "待推送") || errOut != "2 rows\n" {
		t.Fatalf("export replies: %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut = run("export", "ACME", "inbox"); code != 2 || !strings.Contains(errOut, "want sent or replies") {
		t.Fatalf("export inbox: %d %s", code, errOut)
	}
	if code, _, errOut = run("export", "ACME", "replies", "--outcome", "failed"); code != 2 || !strings.Contains(errOut, "for sent") {
		t.Fatalf("export replies --outcome: %d %s", code, errOut)
	}
	if code, _, errOut = run("sent", "ACME", "--number", "abc"); code != 1 || !strings.Contains(errOut, "invalid:") {
		t.Fatalf("a bad number: %d %s", code, errOut)
	}
	if code, _, errOut = run("sent", "NOPE"); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("an unknown enterprise: %d %s", code, errOut)
	}
}

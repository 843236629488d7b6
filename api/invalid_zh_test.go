package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/sheet"
)

// TestInvalidZHSource: no handler of the package answers 400 invalid
// without its field and its rule in Chinese: writeInvalid (or an
// invalidZH error through writeErr), never writeError(…, "invalid", …)
// nor a bare invalidf.
func TestInvalidZHSource(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	bare := regexp.MustCompile(`\binvalidf\(`)
	const plain = `writeError(w, http.StatusBadRequest, "invalid"`
	files := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		files++
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.Contains(line, plain) {
				t.Errorf("%s:%d: 400 invalid without field and detail_zh (use writeInvalid): %s", name, n, strings.TrimSpace(line))
			}
			if bare.MatchString(line) {
				t.Errorf("%s:%d: invalidf without its Chinese (use invalidZH): %s", name, n, strings.TrimSpace(line))
			}
		}
		if err := sc.Err(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}
	if files == 0 {
		t.Fatal("no source file read: the test does not run in the package directory")
	}
}

// TestInvalidZHAnswers: invalid requests of /v1 and /admin/v1, over HTTP,
// are answered 400 invalid with the field they are about, the rule in
// Chinese and the English message as before.
func TestInvalidZHAnswers(t *testing.T) {
	r := newUserRig(t)
	_, url := operatorServer(t, r, adminToken, nil)
	adm := &userRig{t: t, url: url}
	alice, amy := r.keys["alice"], r.keys["amy"]

	for _, c := range []struct {
		rig                 *userRig
		method, path, token string
		body                any
		field, zh, msg      string // zh and msg: substrings of detail_zh and message
	}{
		// /v1
		{r, "GET", "/v1/messages?limit=0", alice, nil, "limit", "每页条数须为 1–1000", "limit: 1 to 1000"},
		{r, "GET", "/v1/messages?after=x", alice, nil, "after", "翻页参数无效", "after: the next cursor of the previous page"},
		{r, "GET", "/v1/messages?state=bogus", alice, nil, "state", "状态须为", "state: one of accepted"},
		{r, "GET", "/v1/messages?from=yesterday", alice, nil, "from", "开始时间须为 RFC 3339 时间", "from: not an RFC 3339 time"},
		{r, "GET", "/v1/messages/export?format=xml", alice, nil, "format", "导出格式须为 csv 或 jsonl", `format "xml": want csv or jsonl`},
		{r, "GET", "/v1/inbox?limit=5000", alice, nil, "limit", "每页条数须为 1–1000", "limit: 1–1000"},
		{r, "POST", "/v1/messages", alice, map[string]any{"to": []string{uNumA1}, "text": "hi", "colour": "red"},
			"colour", "不支持的字段", `request body: json: unknown field "colour"`},
		{r, "POST", "/v1/messages/personalized", alice, map[string]any{"messages": []map[string]string{{"to": "", "text": "hi"}}},
			"messages[0].to", "第 1 条（messages[0]）请填写接收号码", "messages[0].to is required"},
		{r, "PATCH", "/v1/receipt-webhook", amy, map[string]any{}, "", "没有要修改的内容",
			"policy: invalid: nothing to change: give receipt_url, reply_url, receipt_batch or reply_batch"},
		// /admin/v1
		{adm, "GET", "/admin/v1/bill?month=2026-13", adminToken, nil, "month", "月份格式须为 YYYY-MM", `month "2026-13": want YYYY-MM`},
		{adm, "GET", "/admin/v1/enterprises/A?month=26-1", adminToken, nil, "month", "月份格式须为 YYYY-MM",
			`policy: invalid: month "26-1": want YYYY-MM`},
		{adm, "GET", "/admin/v1/export/dlr?from=2026-02-01&to=2026-01-01", adminToken, nil, "to", "结束时间早于开始时间", "to is before from"},
		{adm, "GET", "/admin/v1/export/dlr?from=2026-01-01&to=2026-02-01&format=xml", adminToken, nil,
			"format", "导出格式须为 csv 或 jsonl", `format "xml": want csv or jsonl`},
		{adm, "GET", "/admin/v1/export/dlr?after=zz", adminToken, nil, "after", "游标无效", `cursor "zz" is not one this daemon gave`},
		{adm, "GET", "/admin/v1/whitelist/pending?limit=0", adminToken, nil, "limit", "每页条数须为 1–1000",
			`policy: invalid: limit "0": want a number from 1 to 1000`},
		{adm, "GET", "/admin/v1/enterprises/A/whitelist?state=bogus", adminToken, nil, "state", "状态须为 pending（待审批）",
			`policy: invalid: unknown whitelist state "bogus"`},
		{adm, "GET", "/admin/v1/optouts?format=xml", adminToken, nil, "format", "导出格式须为 csv 或 json", `policy: invalid: format "xml": want csv or json`},
		{adm, "GET", "/admin/v1/messages", adminToken, nil, "number", "请填写接收号码或其尾号（最多 32 个字符）",
			"number: required, the recipient's number or its last digits (at most 32 characters)"},
		{adm, "GET", "/admin/v1/applications?limit=0", adminToken, nil, "limit", "每页条数须为 1–1000", "limit: 1–1000"},
		{adm, "PATCH", "/admin/v1/users/alice", adminToken, map[string]any{}, "", "没有要修改的内容", "policy: invalid: nothing to change"},
		{adm, "PATCH", "/admin/v1/users/alice", adminToken, map[string]any{"role": "boss"}, "role", "角色须为 user（普通用户）或 admin（管理员）",
			`policy: invalid: unknown role "boss"`},
		{adm, "POST", "/admin/v1/applications/1/reject", adminToken, map[string]any{}, "reason", "拒绝时须填写原因",
			"reason: required (the applicant sees it)"},
	} {
		name := c.method + " " + c.path
		code, b := c.rig.call(c.method, c.path, c.token, c.body, nil)
		var e errorBody
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("%s: %d, not a JSON error: %q", name, code, b)
			continue
		}
		if code != http.StatusBadRequest || e.Error.Reason != "invalid" {
			t.Errorf("%s: %d %s, want 400 invalid", name, code, b)
			continue
		}
		if e.Error.Field != c.field {
			t.Errorf("%s: field %q, want %q (%s)", name, e.Error.Field, c.field, b)
		}
		if e.Error.DetailZH == "" || !strings.Contains(e.Error.DetailZH, c.zh) {
			t.Errorf("%s: detail_zh %q, want it to contain %q", name, e.Error.DetailZH, c.zh)
		}
		if !strings.Contains(e.Error.Message, c.msg) {
			t.Errorf("%s: message %q, want it to contain %q", name, e.Error.Message, c.msg)
		}
	}
}

// TestInvalidZHTemplates: every template or number column that package
// batch refuses as invalid (batch.FieldError "invalid") is said in
// Chinese by its own rule, not templateErrZH's fallback: a change of
// batch's English that templateErrZH no longer reads fails here.
func TestInvalidZHTemplates(t *testing.T) {
	for _, c := range []struct {
		csv, tmpl, field string
	}{
		{"姓名,金额\n张三,10\n", "{姓名}", "number_column"},
		{"号码,姓名,姓名\n13800138000,a,b\n", "{姓名}", "template"},
		{"号码,姓名\n13800138000,a\n", "\xff{姓名}", "template"},
		{"号码,姓名\n13800138000,a\n", "您好 {姓名", "template"},
		{"号码,姓名\n13800138000,a\n", "您好 {}", "template"},
		{"号码,姓名\n13800138000,a\n", "您好 } {姓名}", "template"},
		{"号码,姓名\n13800138000,a\n", "您好", "template"},
	} {
		rs, err := batch.OpenRows(io.NopCloser(strings.NewReader(c.csv)),
			batch.RowsOptions{Format: sheet.CSV, Template: c.tmpl, MaxBytes: 1 << 20, TempDir: t.TempDir()})
		if err == nil {
			rs.Close()
			t.Errorf("template %q over %q: no error", c.tmpl, c.csv)
			continue
		}
		var fe *batch.FieldError
		if !errors.As(err, &fe) || fe.Reason != "invalid" {
			t.Errorf("template %q over %q: %v, want a batch.FieldError invalid", c.tmpl, c.csv, err)
			continue
		}
		field, zh := templateErrZH(fe.Msg)
		if field != c.field || zh == "" || zh == "短信模板有误" {
			t.Errorf("template %q (%s): field %q, zh %q: want field %q and the rule in Chinese", c.tmpl, fe.Msg, field, zh, c.field)
		}
	}
}

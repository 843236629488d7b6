package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// adminServer runs the admin API on a real store behind 127.0.0.1.
func adminServer(t *testing.T) (url string, pol *policy.Policy) {
	t.Helper()
	url, pol, _ = adminServerStore(t)
	return url, pol
}

// adminServerStore is adminServer with its store.
func adminServerStore(t *testing.T) (url string, pol *policy.Policy, q *queue.Store) {
	t.Helper()
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the store's Close (cleanups run last first)
	q, err = queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pol, err = policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.New(api.Config{AdminToken: "tok", Store: q, Policy: pol}).Handler())
	t.Cleanup(func() {
		ts.Close()
		q.Close()
	})
	return ts.URL, pol, q
}

// squeezeBlanks collapses runs of tableBlanks (table columns) to one space.
func squeezeBlanks(s string) string { return tableBlanks.ReplaceAllString(s, " ") }

var tableBlanks = regexp.MustCompile(`[ \t]+`)

func TestAdminCLI(t *testing.T) {
	t.Parallel()
	url, pol := adminServer(t)
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "numbers.csv")
	if err := os.WriteFile(csvPath, []byte("手机号\n13800138000\n\nabc\n13800138001\n,empty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	xlsxPath := filepath.Join(dir, "numbers.xlsx")
	f := excelize.NewFile()
	for cell, v := range map[string]any{"A1": 13900139000, "A2": "nope", "A3": 13900139001} {
		if err := f.SetCellValue("Sheet1", cell, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.SaveAs(xlsxPath); err != nil {
		t.Fatal(err)
	}
	f.Close()
	oddPath := filepath.Join(dir, "numbers.pdf")
	if err := os.WriteFile(oddPath, []byte("%PDF"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Entries an enterprise admin added (pending): the operator's own are approved at once.
	plant := func() {
		adm, err := pol.User(policy.OperatorActor("t"), "acme_adm")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pol.AddWhitelist(policy.ActorFor(adm), "ACME", []string{"13600136000", "13600136001"}); err != nil {
			t.Fatal(err)
		}
	}

	type step struct {
		args    []string
		stdin   string
		code    int
		out     []string // substrings of stdout
		errOut  []string // substrings of stderr
		noToken bool     // do not add --api and --token
		check   func(t *testing.T, stdout string)
	}
	steps := []step{
		{args: []string{"enterprise", "add", "ACME", "--name", "Acme", "--signature", "【阿克米】", "--package", "3", "--cap", "200"},
			out: []string{"ACME", "【阿克米】", "200.00 CNY"}},
		{args: []string{"enterprise", "add", "ACME", "--name", "again", "--package", "1"}, code: 1,
			errOut: []string{"qxtd admin: exists:", "ACME"}},
		{args: []string{"enterprise", "add", "BAD", "--package", "1"}, code: 2, errOut: []string{"--name and --package are required"}},
		{args: []string{"enterprise", "add", "BAD", "--name", "bad", "--package", "99"}, code: 1, errOut: []string{"invalid:", "package 99"}},
		{args: []string{"enterprise", "list"}, out: []string{"CODE", "ACME", "Acme", "200.00 CNY"}},
		{args: []string{"enterprise", "show", "NOPE"}, code: 1, errOut: []string{"qxtd admin: not_found:"}},

		// The daemon's own: the package table, the health summary, the log
		// level (served by the daemon's mux, not this API server: 404 here;
		// the daemon's test sets it).
		{args: []string{"package", "list"}, out: []string{"ID", "FEE", "20.00 CNY", "0.10 CNY"}},
		{args: []string{"package", "list", "--json"}, out: []string{`"fee_yuan": "20.00"`}},
		{args: []string{"daemon", "status"}, out: []string{"store_writable", "yes", "queue waiting"}},
		{args: []string{"daemon", "whoami"}, out: []string{"name\tadmin-api", "enterprises\tevery enterprise", "read_only\tno"}},
		{args: []string{"daemon", "whoami", "--json"}, out: []string{`"name": "admin-api"`}},
		{args: []string{"daemon", "log-level", "loud"}, code: 2, errOut: []string{"want debug, info, warn or error"}},
		{args: []string{"daemon", "log-level", "debug"}, code: 1, errOut: []string{"qxtd admin: not_found:"}},

		// Opt-outs: the header alone, then a number that replied TD.
		{args: []string{"optouts", "export"}, out: []string{"enterprise,number,at,mo_id"}, check: func(t *testing.T, out string) {
			if strings.Count(out, "\n") != 1 {
				t.Errorf("export with no opt-outs: %q", out)
			}
			if _, err := pol.OptOut("ACME", "8613800138000", 5, time.Date(2024, 3, 15, 10, 0, 0, 0, time.UTC)); err != nil {
				t.Fatal(err)
			}
		}},
		{args: []string{"optouts", "export", "--enterprise", "ACME"}, out: []string{"ACME,+8613800138000,2024-03-15T10:00:00Z,5"}},
		{args: []string{"optouts", "export", "--format", "json"}, out: []string{`"number":"+8613800138000"`, `"mo_id":5`}},
		{args: []string{"optouts", "export", "--enterprise", "NOPE"}, code: 1, errOut: []string{"qxtd admin: not_found:"}},
		{args: []string{"optouts", "export", "--format", "xml"}, code: 2, errOut: []string{"want csv or json"}},
		// A complaint: the operator puts a number on ACME's list.
		{args: []string{"optouts", "add", "ACME", "13800138009", "+8613800138000", "5678"},
			out: []string{"rows 3: 1 added, 1 duplicates, 1 errors", "invalid_number"}},
		{args: []string{"optouts", "of", "13800138009"}, out: []string{"ACME", "+8613800138009", "operator"}},
		{args: []string{"optouts", "of", "13800138000"}, out: []string{"reply 5"}},
		{args: []string{"optouts", "add", "NOPE", "13800138009"}, code: 1, errOut: []string{"qxtd admin: not_found:"}},

		{args: []string{"user", "add", "ACME", "acme_adm", "--name", "管理员", "--role", "admin", "--mobile", "13712345678", "--password", "adm12345"},
			out: []string{"acme_adm", "+8613712345678"}, check: func(t *testing.T, out string) {
				if !strings.Contains(squeezeBlanks(out), "long_replies payload\n") {
					t.Errorf("long_replies by default:\n%s", out)
				}
			}},
		{args: []string{"user", "add", "ACME", "acme_u1", "--name", "Alice", "--show-signature", "--long-replies", "UDH16"}, stdin: "usr12345\n",
			out: []string{"acme_u1"}, check: func(t *testing.T, out string) {
				if _, _, err := pol.Authenticate("acme_u1", "usr12345"); err != nil {
					t.Errorf("password from stdin: %v", err)
				}
				if u, err := pol.User(policy.OperatorActor("t"), "acme_u1"); err != nil || u.LongReplies != "udh16" || !strings.Contains(squeezeBlanks(out), "long_replies udh16\n") {
					t.Errorf("--long-replies UDH16: %+v %v\n%s", u, err, out)
				}
			}},
		{args: []string{"user", "add", "ACME", "acme_u2", "--name", "Bob", "--long-replies", "udh7", "--password", "usr12345"}, code: 1,
			errOut: []string{"qxtd admin: invalid:", `long_replies "udh7" (want payload, udh8, udh16 or sar)`}},
		{args: []string{"user", "add", "ACME", "acme_u2", "--name", "Bob"}, stdin: "", code: 2, errOut: []string{"no --password"}},
		{args: []string{"user", "list", "ACME"}, out: []string{"SYSTEM_ID", "acme_adm", "管理员", "admin", "acme_u1", "Alice"}},
		{args: []string{"user", "passwd", "acme_u1", "--password", "new12345"}, out: []string{"password set for acme_u1"},
			check: func(t *testing.T, _ string) {
				if _, _, err := pol.Authenticate("acme_u1", "new12345"); err != nil {
					t.Errorf("new password: %v", err)
				}
			}},
		{args: []string{"user", "passwd", "acme_u1", "--password", "x"}, code: 1, errOut: []string{"invalid:", "password"}},
		{args: []string{"--json", "user", "apikey", "acme_u1"}, check: func(t *testing.T, out string) {
			var k api.APIKey
			if err := json.Unmarshal([]byte(out), &k); err != nil {
				t.Fatal(err)
			}
			if u, _, err := pol.AuthenticateAPIKey(k.APIKey); err != nil || u.SystemID != "acme_u1" {
				t.Errorf("issued key: %v %v", u, err)
			}
		}},
		{args: []string{"user", "apikey", "acme_u1", "--revoke"}, out: []string{"revoked"}},
		{args: []string{"user", "set", "acme_u1", "--show-signature=false", "--role", "admin"}, out: []string{"show_signature", "no"}},
		{args: []string{"user", "set", "acme_u1", "--long-replies", "sar"}, check: func(t *testing.T, out string) {
			if u, err := pol.User(policy.OperatorActor("t"), "acme_u1"); err != nil || u.LongReplies != "sar" || u.Role != policy.RoleAdmin ||
				!strings.Contains(squeezeBlanks(out), "long_replies sar\n") {
				t.Errorf("--long-replies sar: %+v %v\n%s", u, err, out)
			}
		}},
		{args: []string{"user", "set", "acme_u1", "--long-replies", "udh7"}, code: 1, errOut: []string{"qxtd admin: invalid:", `long_replies "udh7"`}},
		{args: []string{"user", "show", "acme_u1"}, out: []string{"admin"}, check: func(t *testing.T, out string) {
			if !strings.Contains(squeezeBlanks(out), "long_replies sar\n") {
				t.Errorf("show after a refused --long-replies udh7:\n%s", out)
			}
		}},
		{args: []string{"user", "delete", "acme_u1"}, out: []string{"user acme_u1 deleted"}},
		{args: []string{"user", "delete", "acme_u1"}, code: 1, errOut: []string{"not_found"}},

		{args: []string{"whitelist", "add", "ACME", "13712345678", "12345", "+86 137 1234 5679"},
			out: []string{"rows 3: 2 added, 0 duplicates, 1 errors", "ROW", "2", `"12345"`, "invalid_number"}},
		{args: []string{"whitelist", "import", "ACME", csvPath},
			out: []string{"rows 4: 2 added, 0 duplicates, 2 errors (row 1 is a header)", `4 "abc"`, `6 ""`, "empty number"}},
		{args: []string{"whitelist", "import", "ACME", xlsxPath}, out: []string{"rows 3: 2 added, 0 duplicates, 1 errors", `2 "nope"`}},
		{args: []string{"whitelist", "import", "ACME", oddPath}, code: 2, errOut: []string{"--format"}},
		{args: []string{"whitelist", "import", "ACME", oddPath, "--format", "xlsx"}, code: 1, errOut: []string{"invalid:", "XLSX"}},
		{args: []string{"whitelist", "list", "ACME", "--state", "pending"}, out: []string{"NUMBER"}, check: func(t *testing.T, out string) {
			if strings.Count(out, "\n") != 1 {
				t.Errorf("operator-added numbers are pending:\n%s", out)
			}
			plant()
		}},
		{args: []string{"whitelist", "list", "ACME", "--state", "pending"}, out: []string{"+8613600136000", "+8613600136001", "pending", "acme_adm"}},
		{args: []string{"whitelist", "approve", "ACME"}, code: 2, errOut: []string{"give numbers or --all-pending"}},
		{args: []string{"whitelist", "pending"}, out: []string{"ENTERPRISE", "ACME\t+8613600136000\t", "ACME\t+8613600136001\t", "acme_adm"}},
		{args: []string{"whitelist", "pending", "--limit", "1"}, out: []string{"+8613600136000", "more: --after "}},
		{args: []string{"whitelist", "reject", "ACME", "13600136001"}, code: 2, errOut: []string{"--reason"}},
		{args: []string{"whitelist", "reject", "ACME", "13600136001", "13500135000", "--reason", "空号"},
			out: []string{"rejected 1, unchanged 0, not on the whitelist 1", "+8613500135000"}},
		{args: []string{"whitelist", "list", "ACME", "--state", "rejected", "--json"}, out: []string{`"reason"`, "空号", `"decided_by"`, "admin-api"}},
		{args: []string{"whitelist", "approve", "ACME", "--all-pending"}, out: []string{"approved 1, unchanged 0"}},
		{args: []string{"whitelist", "list", "ACME", "--state", "approved", "--limit", "2"}, out: []string{"more: --after +8613712345678"}},
		{args: []string{"whitelist", "list", "ACME", "--json", "--state", "approved", "--limit", "2", "--all"}, check: func(t *testing.T, out string) {
			var p api.WhitelistPage
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range p.Entries {
				got = append(got, e.Number)
			}
			want := "+8613600136000 +8613712345678 +8613712345679 +8613800138000 +8613800138001 +8613900139000 +8613900139001"
			if strings.Join(got, " ") != want || p.Next != "" {
				t.Errorf("all approved: %v next %q", got, p.Next)
			}
		}},
		{args: []string{"whitelist", "remove", "ACME", "13600136000"}, out: []string{"removed 1"}},

		{args: []string{"scope", "grant", "ACME", "national"}, out: []string{"national yes", "offnet no"}},
		{args: []string{"scope", "grant", "ACME", "offnet"}, out: []string{"national yes", "offnet yes"}},
		{args: []string{"scope", "revoke", "ACME", "national"}, out: []string{"national no", "offnet yes", "scope_narrowed\t20"}},
		{args: []string{"scope", "grant", "ACME", "world"}, code: 2, errOut: []string{"national or offnet"}},
		{args: []string{"package", "set", "ACME", "5"}, out: []string{"package 5"}},
		{args: []string{"package", "set", "ACME", "13"}, code: 1, errOut: []string{"invalid:", "package 13"}},
		{args: []string{"enterprise", "set", "ACME", "--tps", "100", "--cap", "600", "--json"}, check: func(t *testing.T, out string) {
			var e api.Enterprise
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				t.Fatal(err)
			}
			if e.TPS != 100 || e.CapFen != 600_00 || e.Package != 5 || !e.OffNet || e.National {
				t.Errorf("set: %+v", e)
			}
		}},
		{args: []string{"enterprise", "set", "ACME"}, code: 2, errOut: []string{"nothing to change"}},
		{args: []string{"enterprise", "set", "ACME", "--receipt-batch", "100", "--json"}, check: func(t *testing.T, out string) {
			var e api.Enterprise
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				t.Fatal(err)
			}
			if e.ReceiptBatch != 100 || e.TPS != 100 {
				t.Errorf("set --receipt-batch 100: %+v", e)
			}
		}},
		{args: []string{"enterprise", "set", "ACME", "--receipt-batch", "1001"}, code: 1, errOut: []string{"invalid:", "receipt_batch 1001"}},
		{args: []string{"enterprise", "show", "ACME"}, out: []string{"receipt_url (none: receipts pushed only to a send's own receipt_url)",
			"reply_url (none: replies to receiver binds and GET /v1/inbox only)", "disabled\tno\n"}},
		{args: []string{"enterprise", "drop-held", "ACME"}, code: 1, errOut: []string{"invalid:", "not disabled"}},
		{args: []string{"enterprise", "set", "ACME", "--disabled=true"}, out: []string{"ACME"}},
		{args: []string{"enterprise", "show", "ACME"}, out: []string{"disabled\tyes (its messages waiting to be sent are held until it is enabled)"}},
		{args: []string{"enterprise", "drop-held", "ACME"}, out: []string{"ACME: its held messages are dropped"}},
		{args: []string{"enterprise", "show", "ACME"}, out: []string{"disabled\tyes (its waiting messages dropped at 20"}},
		{args: []string{"enterprise", "set", "ACME", "--disabled=false"}, out: []string{"ACME"}},
		{args: []string{"enterprise", "show", "ACME"}, out: []string{"disabled\tno\n"}},
		{args: []string{"enterprise", "set", "ACME", "--reply-url", "https://crm.example.com/mo", "--reply-batch", "20"}, out: []string{"ACME"}},
		{args: []string{"enterprise", "set", "ACME", "--reply-batch", "1001"}, code: 1, errOut: []string{"invalid:", "reply_batch 1001"}},
		{args: []string{"enterprise", "show", "ACME", "--month", "2025-06"},
			out: []string{"500.00 CNY/month, 6200 segments included, 0.09 CNY", "users 1", "6 approved, 0 pending, 1 rejected", "optouts 2 numbers",
				"usage 2025-06 0 charged, 0 reserved, limit 7311", "receipts 0 pending, 0 retrying",
				"replies 0 pending, 0 retrying", "reply_url https://crm.example.com/mo", "webhooks unsigned (no secret), up to 100 receipts a POST, up to 20 replies a POST"}},
		{args: []string{"--json", "enterprise", "show", "ACME"}, check: func(t *testing.T, out string) {
			var d api.EnterpriseDetail
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatal(err)
			}
			if d.Enterprise.Code != "ACME" || d.Users != 1 || d.Whitelist.Approved != 6 || d.OptOuts != 2 || d.Usage.Limit != 7311 {
				t.Errorf("show: %+v", d)
			}
		}},

		{args: []string{"override", "set", "13712345678", "--carrier", "china_unicom"}, out: []string{"override set for 13712345678"}},
		{args: []string{"override", "set", "1391234", "--province", "广西"}, out: []string{"override set"}},
		{args: []string{"override", "list"}, out: []string{"PREFIX", "13712345678 china_unicom (library)", "1391234 (library) 广西壮族自治区"}},
		{args: []string{"override", "set", "13712345678"}, code: 2, errOut: []string{"--carrier, --province"}},
		{args: []string{"override", "remove", "13712345678"}, out: []string{"override removed"}},
		{args: []string{"override", "remove", "13712345678"}, code: 1, errOut: []string{"not_found"}},

		{noToken: true, args: []string{"--api", url, "--token", "wrong", "enterprise", "list"}, code: 1,
			errOut: []string{"qxtd admin: unauthorized: admin token missing or wrong"}},
		{noToken: true, args: []string{"--api", url, "--token", "", "enterprise", "list"}, code: 2, errOut: []string{"no admin token"}},
		{noToken: true, args: []string{"--api", "http://127.0.0.1:1", "--token", "tok", "enterprise", "list"}, code: 1, errOut: []string{"connect"}},
		{args: []string{"enterprise"}, code: 2, errOut: []string{"add, drop-held, list, receipt-retry, receipt-secret, receipt-test, set, show"}},
		{args: []string{"enterprise", "frobnicate"}, code: 2, errOut: []string{"unknown command"}},
		{args: []string{"frobnicate"}, code: 2, errOut: []string{"unknown command"}},
		{args: []string{"enterprise", "show"}, code: 2, errOut: []string{"wrong number of arguments"}},
		{args: []string{"enterprise", "list", "--bogus"}, code: 2, errOut: []string{"unknown flag: --bogus", "Run 'qxtd admin enterprise list --help' for usage."}},
		{args: []string{"help"}, out: []string{"whitelist approve CODE (NUMBER... | --all-pending)", "user add CODE SYSTEM_ID --name N"}},
		{args: []string{"enterprise", "list", "-h"}, out: []string{"qxtd admin enterprise list [flags]", "--api string"}},
		{args: []string{}, code: 2, errOut: []string{"qxtd admin: want a command: one of application, daemon, enterprise, optouts, override, package, records, scope, signature, user, whitelist"}},
	}
	for _, s := range steps {
		args := append([]string{"admin"}, s.args...)
		if !s.noToken {
			args = append([]string{"admin", "--api", url, "--token", "tok"}, s.args...)
		}
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(s.stdin), args, &stdout, &stderr)
		name := strings.Join(s.args, " ")
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, code, s.code, stdout.String(), stderr.String())
		}
		for _, want := range s.out {
			if !strings.Contains(squeezeBlanks(stdout.String()), squeezeBlanks(want)) {
				t.Errorf("%s: stdout lacks %q:\n%s", name, want, stdout.String())
			}
		}
		for _, want := range s.errOut {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%s: stderr lacks %q:\n%s", name, want, stderr.String())
			}
		}
		if s.code == 0 && stderr.Len() > 0 {
			t.Errorf("%s: stderr:\n%s", name, stderr.String())
		}
		if s.check != nil {
			s.check(t, stdout.String())
		}
	}
}

// TestPrintHookStatus: enterprise show's lines of pushed receipts and
// replies count what the last POST carried in its own kind: a batch of
// replies as replies, a reply's POST saved before reply batches as one.
func TestPrintHookStatus(t *testing.T) {
	at := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	for _, tc := range []struct {
		kind string
		last api.ReceiptPost
		want string
	}{
		{"receipts", api.ReceiptPost{At: at, Receipts: 3, Delivered: true}, "receipts\t0 pending, 0 retrying; last POST 2026-12-05T01:02:03Z (3 receipts) delivered\n"},
		{"replies", api.ReceiptPost{At: at, Replies: 7, Delivered: true}, "replies\t0 pending, 0 retrying; last POST 2026-12-05T01:02:03Z (7 replies) delivered\n"},
		{"replies", api.ReceiptPost{At: at, Delivered: true}, "replies\t0 pending, 0 retrying; last POST 2026-12-05T01:02:03Z (1 reply) delivered\n"},
	} {
		var b strings.Builder
		last := tc.last
		printHookStatus(&b, tc.kind, api.ReceiptStatus{ReceiptCounts: api.ReceiptCounts{Last: &last}})
		if b.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.kind, b.String(), tc.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// TestAdminApplicationCLI: applications submitted over /v1, decided with
// `qxtd admin application`.
func TestAdminApplicationCLI(t *testing.T) {
	t.Parallel()
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "qxtd.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	q, err := queue.New(db, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		q.Close()
		t.Fatal(err)
	}
	srv := api.New(api.Config{AdminToken: "tok", Store: q, Policy: pol})
	var mu sync.Mutex
	var sms []string
	srv.SetPasswordNotifier(func(_ context.Context, mobile, text string) error {
		mu.Lock()
		defer mu.Unlock()
		sms = append(sms, mobile+" "+text)
		return nil
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		q.Close()
	})
	apply := func(code string) string {
		b, _ := json.Marshal(api.ApplicationRequest{GroupCode: code, Name: "某某" + code, ContactMobile: "13712345678",
			Package: 2, Signature: "【某某】"})
		resp, err := http.Post(ts.URL+"/v1/applications", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st api.ApplicationStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("apply %s: %d %v", code, resp.StatusCode, err)
		}
		return st.Number
	}
	n1, n2 := apply("GD1"), apply("GD2")
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", ts.URL, "--token", "tok", "application"}, args...), &stdout, &stderr)
		if code != wantCode {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, wantCode, stdout.String(), stderr.String())
		}
		return squeezeBlanks(stdout.String() + stderr.String())
	}
	out := cli(0, "list")
	if !strings.Contains(out, n1+" pending GD1 某某GD1 2 【某某】") || !strings.Contains(out, n2) {
		t.Fatalf("list:\n%s", out)
	}
	if out := cli(0, "show", n1); !strings.Contains(out, "contact mobile +8613712345678") {
		t.Fatalf("show:\n%s", out)
	}
	if out := cli(0, "approve", n1, "--system-id", "gd1_admin"); !strings.Contains(out, "state approved") ||
		!strings.Contains(out, "admin gd1_admin") || !strings.Contains(out, "password sent by SMS") {
		t.Fatalf("approve:\n%s", out)
	}
	mu.Lock()
	got := sms
	mu.Unlock()
	m := regexp.MustCompile(`初始密码：([^。]+)。`).FindStringSubmatch(strings.Join(got, ""))
	if len(got) != 1 || m == nil {
		t.Fatalf("SMS %q", got)
	}
	if _, _, err := pol.Authenticate("gd1_admin", m[1]); err != nil {
		t.Fatalf("first password: %v", err)
	}
	if out := cli(2, "reject", n2); !strings.Contains(out, "--reason is required") {
		t.Fatalf("reject without reason:\n%s", out)
	}
	if out := cli(0, "reject", n2, "--reason", "资料不全"); !strings.Contains(out, "state rejected") || !strings.Contains(out, "reason 资料不全") {
		t.Fatalf("reject:\n%s", out)
	}
	if out := cli(1, "approve", n2); !strings.Contains(out, "already_decided") {
		t.Fatalf("approve rejected:\n%s", out)
	}
	if out := cli(0, "list"); strings.Contains(out, n1) || strings.Contains(out, n2) {
		t.Fatalf("decided ones still pending:\n%s", out)
	}
	if out := cli(0, "list", "--state", "all", "--json"); !strings.Contains(out, `"reason": "资料不全"`) {
		t.Fatalf("list all --json:\n%s", out)
	}
	if out := cli(1, "show", "app_nope"); !strings.Contains(out, "not_found") {
		t.Fatalf("show unknown:\n%s", out)
	}
}

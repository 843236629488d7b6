package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/policy"
)

// The account manager's signature queue from the command line: list the
// pending request, reject one with a reason, approve another.
func TestAdminSignatureCLI(t *testing.T) {
	t.Parallel()
	url, pol := adminServer(t)
	op := policy.OperatorActor("t")
	if _, err := pol.CreateEnterprise(op, policy.Enterprise{Code: "ACME", Name: "Acme", Signature: "【阿克米】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	adm := policy.Actor{Enterprise: "ACME", Admin: true, Name: "acme_adm"}
	r1, err := pol.RequestSignature(adm, "ACME", "【阿克米科技】")
	if err != nil {
		t.Fatal(err)
	}
	run := func(want int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := runIO(strings.NewReader(""), append([]string{"admin", "--api", url, "--token", "tok", "signature"}, args...), &stdout, &stderr)
		if code != want {
			t.Fatalf("signature %v: exit %d, want %d\n%s%s", args, code, want, stdout.String(), stderr.String())
		}
		return squeezeBlanks(stdout.String() + stderr.String())
	}
	if out := run(0, "pending"); !strings.Contains(out, r1.ID+" ACME 【阿克米科技】 【阿克米】 pending acme_adm") {
		t.Errorf("pending:\n%s", out)
	}
	if out := run(2, "reject", r1.ID); !strings.Contains(out, "--reason is required") {
		t.Errorf("reject without reason:\n%s", out)
	}
	if out := run(0, "reject", r1.ID, "--reason", "与执照不符"); !strings.Contains(out, "rejected") {
		t.Errorf("reject:\n%s", out)
	}
	if out := run(0, "pending"); strings.Contains(out, r1.ID+" ACME") {
		t.Errorf("still pending after reject:\n%s", out)
	}
	r2, err := pol.RequestSignature(adm, "ACME", "【阿克米集团】")
	if err != nil {
		t.Fatal(err)
	}
	if out := run(0, "approve", r2.ID); !strings.Contains(out, "approved") {
		t.Errorf("approve:\n%s", out)
	}
	if e, _ := pol.Lookup("ACME"); e.Signature != "【阿克米集团】" {
		t.Errorf("signature after approval: %s", e.Signature)
	}
	if out := run(1, "approve", r2.ID); !strings.Contains(out, "invalid:") {
		t.Errorf("approve twice:\n%s", out)
	}
	if out := run(0, "pending", "--state", "all", "--enterprise", "ACME"); !strings.Contains(out, "approved") || !strings.Contains(out, "rejected") {
		t.Errorf("all states:\n%s", out)
	}
}

package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
)

// TestPreview: a preview signs and counts as Send does, counts a text too
// long in full with its refusal, and is no submission (no refusal counted).
func TestPreview(t *testing.T) {
	r, pol := policyRig(t, smpp.SimOptions{DLRDelay: time.Millisecond})
	op := policy.OperatorActor("test")
	u, err := pol.User(op, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := pol.Lookup("E1")
	acct := gateway.AccountFor(u, ent)

	p, err := r.gw.Preview(acct, "您好", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Signed != "【甲公司】您好" || p.Chars != 7 || p.Segments != 1 || p.Coding != segment.UCS2 || p.MaxChars != 500 || p.Refusal != nil {
		t.Fatalf("preview %+v", p)
	}
	// What Send stores is what the preview showed.
	res, err := r.gw.Send(context.Background(), acct, gateway.SendRequest{Ingress: "http", Dests: []string{"13712345678"}, Text: "您好"})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	m, err := r.store.Get(res[0].ID)
	if err != nil || m.Text != p.Signed {
		t.Fatalf("stored %q (%v), previewed %q", m.Text, err, p.Signed)
	}
	// Too long: counted whole, refused as Send refuses it.
	p, err = r.gw.Preview(acct, strings.Repeat("长", 500), "")
	if err != nil || p.Refusal == nil || p.Refusal.Reason != policy.ReasonTooLong || p.Chars != 505 || p.Segments != 8 {
		t.Fatalf("too long: %+v %v", p, err)
	}
	// GSM text, two segments.
	p, _ = r.gw.Preview(acct, strings.Repeat("a", 160), "")
	if p.Coding != segment.UCS2 || p.Segments != 3 { // the signature is Chinese: UCS-2
		t.Fatalf("latin: %+v", p)
	}
	// Empty: the signature alone.
	p, _ = r.gw.Preview(acct, "", "")
	if p.Signed != "【甲公司】" || p.Chars != 5 || p.Segments != 1 || p.Refusal != nil {
		t.Fatalf("empty: %+v", p)
	}
	// A disabled enterprise: refused as Send refuses it.
	if _, err := pol.UpdateEnterprise(op, "E1", func(e *policy.Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.gw.Preview(acct, "x", ""); err == nil {
		t.Fatal("preview of a disabled enterprise")
	} else if reason, _ := policy.ReasonOf(err); reason != policy.ReasonAccountDisabled {
		t.Fatalf("disabled: %v", err)
	}

	// Refusals reads the metrics' counters: previews count nothing.
	if _, err := r.gw.Send(context.Background(), &gateway.Account{SystemID: "bob", Enterprise: "E2"},
		gateway.SendRequest{Ingress: "http", Dests: []string{"13012345678"}, Text: "x"}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, c := range r.gw.Refusals() {
		counts[c.Reason] = c.Count
	}
	if len(counts) != len(policy.Reasons()) || counts["scope_offnet"] != 1 || counts["too_long"] != 0 || counts["account_disabled"] != 0 {
		t.Fatalf("refusals %v", counts)
	}
}

// TestPreviewRoutes: a preview for a recipient counts with the options of
// the upstream a message to it would go to now — the backup's once the
// primary is routed around — and counts no failover; one without counts
// with the first upstream's; a number the send would refuse is the
// refusal, after the text's own. What Send stores is what was previewed.
func TestPreviewRoutes(t *testing.T) {
	const after = 300 * time.Millisecond
	r, primary, _, _ := failoverRig(t, after, func(c *gateway.Config) {
		c.Upstreams[1].Segment.Concat = segment.ConcatUDH16
	})
	acct := &gateway.Account{SystemID: "alice", Enterprise: "E1"}
	// Signed with 【甲公司】: 134 characters of UCS-2, two parts of 67 with
	// the primary's 8-bit reference, three of at most 66 with the
	// backup's 16-bit one.
	text := strings.Repeat("g", 129)
	segments := func(to string) int {
		t.Helper()
		p, err := r.gw.Preview(acct, text, to)
		if err != nil || p.Refusal != nil {
			t.Fatalf("preview to %q: %+v, %v", to, p, err)
		}
		return p.Segments
	}
	health := func(name string) gateway.UpstreamHealth { return upHealth(t, r, name) }
	waitUpstreams(t, r, "both upstreams bound", func() bool { return health("primary").BindsUp == 2 && health("backup").BindsUp == 2 })
	if a, b := segments(""), segments("13712345678"); a != 2 || b != 2 {
		t.Fatalf("primary up: %d segments without a recipient, %d with; want 2, 2", a, b)
	}
	// Without a recipient the preview also says the most any upstream
	// counts (the backup's 3); with one, its own count.
	for to, want := range map[string]int{"": 3, "13712345678": 2} {
		if p, err := r.gw.Preview(acct, text, to); err != nil || p.SegmentsMax != want {
			t.Fatalf("preview to %q: SegmentsMax %d (%v), want %d", to, p.SegmentsMax, err, want)
		}
	}
	_ = primary.Close()
	waitUpstreams(t, r, "primary routed around", func() bool { return health("primary").RoutedAround })
	failovers := func() float64 {
		return counters(t, r)["qxtd_upstream_failovers_total,to=backup,upstream=primary"]
	}
	if a, b := segments(""), segments("13712345678"); a != 2 || b != 3 {
		t.Fatalf("primary routed around: %d segments without a recipient, %d with; want 2 (the first upstream's), 3 (the backup's)", a, b)
	}
	if n := failovers(); n != 0 {
		t.Fatalf("previews counted %v failovers", n)
	}
	// A number the send would refuse; the text's own refusal first.
	p, err := r.gw.Preview(acct, text, "12345")
	if err != nil || p.Refusal == nil || p.Refusal.Reason != policy.ReasonInvalidNumber || p.Segments != 2 {
		t.Fatalf("an invalid number: %+v, %v", p, err)
	}
	p, err = r.gw.Preview(acct, strings.Repeat("长", 500), "12345")
	if err != nil || p.Refusal == nil || p.Refusal.Reason != policy.ReasonTooLong {
		t.Fatalf("too long, to an invalid number: %+v, %v", p, err)
	}
	res, err := r.gw.Send(context.Background(), acct, gateway.SendRequest{Ingress: "http", Dests: []string{"13712345678"}, Text: text})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	m, err := r.store.Get(res[0].ID)
	if err != nil || m.Upstream != "backup" || m.Segments() != 3 {
		t.Fatalf("stored on %q in %d segments (%v); previewed 3 on the backup", m.Upstream, m.Segments(), err)
	}
	if n := failovers(); n != 1 {
		t.Fatalf("%v failovers counted after one send, want 1", n)
	}
}

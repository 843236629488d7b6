package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// TestOptedOutSinceHalfSent: a waiting part to a number that opted out is
// stopped, unless another part of its message already went to the SMSC
// (the customer would get half a text); a part failed before it, or one
// only tried, does not count as gone.
func TestOptedOutSinceHalfSent(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pol, err := policy.New(db, policy.Config{Packages: policy.PackageTable{{ID: 1, FeeFen: 100, Included: 3}}, BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1},
		Whitelist:  []string{"13712345678"},
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.OptOut("E1", "13712345678", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{policy: Rules{P: pol}}
	job := func(dest string, part int, parts ...queue.Part) queue.Job {
		m := &queue.Message{Enterprise: "E1", Dest: dest, Parts: parts}
		return queue.Job{Key: queue.Key{ID: 1, Part: uint16(part)}, Msg: m, Part: parts[part]}
	}
	waiting := queue.Part{State: queue.StateAccepted}
	for _, tc := range []struct {
		what string
		j    queue.Job
		want bool
	}{
		{"a single part", job("13712345678", 0, waiting), true},
		{"another number", job("13923412345", 0, waiting), false},
		{"no part gone", job("13712345678", 1, waiting, waiting, waiting), true},
		{"another part stopped before it", job("13712345678", 1, queue.Part{State: queue.StateRejected, ErrCode: "opted_out"}, waiting), true},
		{"another part tried, unanswered", job("13712345678", 1, queue.Part{State: queue.StateAccepted, Attempts: 1}, waiting), true},
		{"another part accepted by the SMSC", job("13712345678", 1, queue.Part{State: queue.StateSubmitted, SMSCID: "9", SubmittedAt: time.Now()}, waiting), false},
		{"another part delivered", job("13712345678", 0, waiting, queue.Part{State: queue.StateDelivered, SMSCID: "9", SubmittedAt: time.Now()}), false},
		{"this part sent before, retried", job("13712345678", 0, queue.Part{State: queue.StateAccepted, SMSCID: "8"}), true},
	} {
		if got := g.optedOutSince(tc.j); got != tc.want {
			t.Errorf("%s: stopped %v, want %v", tc.what, got, tc.want)
		}
	}
	if (&Gateway{policy: StaticAccounts{}}).optedOutSince(job("13712345678", 0, waiting)) {
		t.Error("a policy without opt-outs stopped a part")
	}
}

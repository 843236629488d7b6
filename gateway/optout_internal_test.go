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

// stopFixture is a gateway over a real policy: E1 with a whitelist of
// four numbers, of which 13712345678 opted out, 13800138000 was taken off
// and 13800138001 rejected; E2 without a whitelist.
func stopFixture(t testing.TB) *Gateway {
	t.Helper()
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
		Whitelist:  []string{"13712345678", "13923412345", "13800138000", "13800138001"},
		Users: []policy.NewUser{{Name: "甲", SystemID: "alice", Password: "secret1"},
			{Name: "甲二", SystemID: "al2", Password: "secret1"}},
	}, {
		Enterprise: policy.Enterprise{Code: "E2", Name: "乙公司", Signature: "【乙公司】", Package: 1, NoWhitelist: true},
		Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret1"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	op := policy.OperatorActor("manager")
	if _, err := pol.UpdateUser(op, "al2", policy.UserUpdate{Disabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.RemoveWhitelist(op, "E1", []string{"13800138000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Reject(op, "E1", "the customer never agreed", "13800138001"); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.OptOut("E1", "13712345678", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	return &Gateway{policy: Rules{P: pol}}
}

// TestStoppedSinceHalfSent: a waiting part to a number that opted out, or
// that is no longer an approved whitelist entry, is stopped, unless
// another part of its message already went to the SMSC (the customer
// would get half a text); a part failed before it, or one only tried,
// does not count as gone. An enterprise without a whitelist, or unknown
// (the operator's notifications), sends to any number it was admitted.
func TestStoppedSinceHalfSent(t *testing.T) {
	g := stopFixture(t)
	acctJob := func(ent, acct, dest string, part int, parts ...queue.Part) queue.Job {
		// Accepted by this process (a message accepted before the policy
		// was opened would have its number classified again).
		m := &queue.Message{Enterprise: ent, Account: acct, Dest: dest, Parts: parts, AcceptedAt: time.Now()}
		return queue.Job{Key: queue.Key{ID: 1, Part: uint16(part)}, Msg: m, Part: parts[part]}
	}
	entJob := func(ent, dest string, part int, parts ...queue.Part) queue.Job {
		acct := map[string]string{"E1": "alice", "E2": "bob"}[ent]
		if acct == "" {
			acct = SystemAccount // the operator's notifications
		}
		return acctJob(ent, acct, dest, part, parts...)
	}
	job := func(dest string, part int, parts ...queue.Part) queue.Job { return entJob("E1", dest, part, parts...) }
	const none = policy.Reason(0)
	waiting := queue.Part{State: queue.StateAccepted}
	for _, tc := range []struct {
		what string
		j    queue.Job
		want policy.Reason
	}{
		{"a single part", job("13712345678", 0, waiting), policy.ReasonOptedOut},
		{"another number", job("13923412345", 0, waiting), none},
		{"no part gone", job("13712345678", 1, waiting, waiting, waiting), policy.ReasonOptedOut},
		{"another part stopped before it", job("13712345678", 1, queue.Part{State: queue.StateRejected, ErrCode: "opted_out"}, waiting), policy.ReasonOptedOut},
		{"another part tried, unanswered", job("13712345678", 1, queue.Part{State: queue.StateAccepted, Attempts: 1}, waiting), policy.ReasonOptedOut},
		{"another part accepted by the SMSC", job("13712345678", 1, queue.Part{State: queue.StateSubmitted, SMSCID: "9", SubmittedAt: time.Now()}, waiting), none},
		{"another part delivered", job("13712345678", 0, waiting, queue.Part{State: queue.StateDelivered, SMSCID: "9", SubmittedAt: time.Now()}), none},
		{"this part sent before, retried", job("13712345678", 0, queue.Part{State: queue.StateAccepted, SMSCID: "8"}), policy.ReasonOptedOut},
		{"taken off the whitelist", job("13800138000", 0, waiting), policy.ReasonNotWhitelisted},
		{"its entry rejected", job("13800138001", 1, waiting, waiting), policy.ReasonNotWhitelisted},
		{"never on the whitelist", job("13600136000", 0, waiting), policy.ReasonNotWhitelisted},
		{"off the whitelist, another part at the SMSC", job("13800138000", 1, queue.Part{State: queue.StateSubmitted, SMSCID: "9", SubmittedAt: time.Now()}, waiting), none},
		{"an enterprise without a whitelist", entJob("E2", "13800138000", 0, waiting), none},
		{"its user disabled since", acctJob("E1", "al2", "13923412345", 0, waiting), policy.ReasonAccountDisabled},
		{"its user deleted since", acctJob("E1", "gone", "13923412345", 0, waiting), policy.ReasonAccountDisabled},
		{"its user moved to another enterprise", acctJob("E1", "bob", "13923412345", 0, waiting), policy.ReasonAccountDisabled},
		{"its user disabled, another part at the SMSC", acctJob("E1", "al2", "13923412345", 1, queue.Part{State: queue.StateSubmitted, SMSCID: "9", SubmittedAt: time.Now()}, waiting), none},
		{"an unknown enterprise", entJob("qxtd-notices", "13800138000", 0, waiting), none},
		{"a number the whitelist cannot hold", job("+8613800138000", 0, waiting), none},
	} {
		got, stop := g.stoppedSince(tc.j)
		if stop != (tc.want != none) || got != tc.want {
			t.Errorf("%s: stopped %v (%v), want %v", tc.what, stop, got, tc.want)
		}
	}
	// Accepted before the daemon started: its number is classified again
	// (the home province may have changed meanwhile); to Beijing, E1 has
	// no 全网发送.
	before := job("13800138000", 0, waiting)
	before.Msg.AcceptedAt = time.Now().Add(-time.Hour)
	if got, _ := g.stoppedSince(before); got != policy.ReasonScopeNational {
		t.Errorf("accepted before the start, to Beijing: %v, want scope_national", got)
	}
	if _, stop := (&Gateway{policy: StaticAccounts{}}).stoppedSince(job("13712345678", 0, waiting)); stop {
		t.Error("a policy without opt-outs and whitelists stopped a part")
	}
}

// BenchmarkStoppedSince: the checks before each part goes (its user:
// Policy.UserStopped; scope, opt-out, whitelist: Policy.StopReason) for
// a user and a number that pass them all, E1 having a whitelist.
func BenchmarkStoppedSince(b *testing.B) {
	g := stopFixture(b)
	j := queue.Job{Key: queue.Key{ID: 1}, Msg: &queue.Message{Enterprise: "E1", Account: "alice", Dest: "13923412345", Parts: []queue.Part{{State: queue.StateAccepted}}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, stop := g.stoppedSince(j); stop {
			b.Fatal("stopped")
		}
	}
}

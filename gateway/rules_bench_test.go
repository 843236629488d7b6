package gateway_test

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// BenchmarkRulesPrepare is the per-submission account check: "user" looks
// the user up (disabled, deleted or moved since the bind), "system" is
// qxtd's own account, which skips that lookup — the baseline in the same
// run.
func BenchmarkRulesPrepare(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "p.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	pol, err := policy.New(db, policy.Config{BcryptCost: 4})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1},
		Users:      []policy.NewUser{{Name: "甲", SystemID: "alice", Password: "secret1"}},
	}}}); err != nil {
		b.Fatal(err)
	}
	rules := gateway.Rules{P: pol}
	for _, bc := range []struct{ name, systemID string }{{"system", gateway.SystemAccount}, {"user", "alice"}} {
		b.Run(bc.name, func(b *testing.B) {
			acct := &gateway.Account{SystemID: bc.systemID, Enterprise: "E1"}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := rules.Prepare(acct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

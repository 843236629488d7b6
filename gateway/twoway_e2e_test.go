package gateway_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// twoWayRig: two enterprises with service numbers (E1 106575001 with
// 2-digit extensions, alice on extension 12; E2 106575002), and E3
// without one (sources relayed as before).
func twoWayRig(t *testing.T, o rigOpts) (*rig, *policy.Policy) {
	t.Helper()
	var pol *policy.Policy
	o.rules = func(t testing.TB, db *bbolt.DB) gateway.Policy {
		var err error
		pol, err = policy.New(db, policy.Config{Packages: testPackages, BcryptCost: 4, DefaultTPS: 1000})
		if err != nil {
			t.Fatal(err)
		}
		wl := []string{"13712345678", "13923412345"}
		_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
			{
				Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1, ServiceNumber: "106575001", ExtLen: 2},
				Users: []policy.NewUser{
					{Name: "甲", SystemID: "alice", Password: "secret1", Extension: "12"},
					{Name: "甲管理员", SystemID: "amy", Password: "secret1", Role: policy.RoleAdmin},
				},
				Whitelist: wl,
			},
			{
				Enterprise: policy.Enterprise{Code: "E2", Name: "乙公司", Signature: "【乙公司】", Package: 1, ServiceNumber: "106575002"},
				Users:      []policy.NewUser{{Name: "乙", SystemID: "bob", Password: "secret2"}},
				Whitelist:  wl,
			},
			{
				Enterprise: policy.Enterprise{Code: "E3", Name: "丙公司", Signature: "【丙公司】", Package: 1},
				Users:      []policy.NewUser{{Name: "丙", SystemID: "carol", Password: "secret3"}},
				Whitelist:  wl,
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return gateway.Rules{P: pol}
	}
	return newRig(t, o), pol
}

// waitReceived waits until the simulator accepted n messages.
func (r *rig) waitReceived(t *testing.T, n int) []smpp.SimMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if got := r.sim.Received(); len(got) >= n {
			return got
		}
		if ctx.Err() != nil {
			t.Fatalf("the SMSC received %d messages, want %d", len(r.sim.Received()), n)
		}
		waitABit(ctx)
	}
}

// TestServiceNumberSources: the source of every message is the
// enterprise's service number plus an allowed extension, over SMPP.
func TestServiceNumberSources(t *testing.T) {
	r, _ := twoWayRig(t, rigOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := r.bind("alice", "secret1", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	carol, err := r.bind("carol", "secret3", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"106575002", "10086", "106575001123", "10657500"} {
		_, err := alice.submit(ctx, submitSM(src, "13712345678", "x"))
		wantStatus(t, err, 0x409)
	}
	want := []string{}
	for _, tc := range []struct{ src, want string }{
		{"", "10657500112"},            // empty: the service number + alice's extension
		{"106575001", "106575001"},     // the service number alone
		{"10657500199", "10657500199"}, // another extension of at most ext_len digits
	} {
		if _, err := alice.submit(ctx, submitSM(tc.src, "13712345678", "x")); err != nil {
			t.Fatalf("source %q: %v", tc.src, err)
		}
		want = append(want, tc.want)
	}
	// Without a service number, the source is relayed as given.
	if _, err := carol.submit(ctx, submitSM("1069", "13712345678", "x")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "1069")
	got := map[string]int{}
	for _, m := range r.waitReceived(t, len(want)) {
		got[m.Source]++
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("the SMSC got source %s %d times, want once (all: %v)", w, got[w], got)
		}
	}
}

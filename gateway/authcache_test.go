package gateway_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// TestAuthCacheForgetsChangedCredentials: a remembered bind is good only
// while its user and enterprise are unchanged: a new password, a disabled
// enterprise or a deleted user are seen at the next bind.
func TestAuthCacheForgetsChangedCredentials(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	// The policy's clock: accounts set up a minute ago, changes made now
	// (changes are stamped to the second, and credentials changed in the
	// current second are not remembered).
	var mu sync.Mutex
	at := time.Now().Add(-time.Minute)
	setClock := func(t time.Time) { mu.Lock(); at = t; mu.Unlock() }
	pol, err := policy.New(db, policy.Config{BcryptCost: 4, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return at }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "E1", Name: "甲公司", Signature: "【甲公司】", Package: 1},
		Users: []policy.NewUser{
			{Name: "甲", SystemID: "alice", Password: "secret1"},
			{Name: "乙", SystemID: "bob", Password: "secret2"},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	r := gateway.Rules{P: pol, Auth: gateway.NewAuthCache(gateway.AuthOptions{
		OnCheck: func(o string) { mu.Lock(); outcomes = append(outcomes, o); mu.Unlock() },
	})}
	lastOutcome := func() string { mu.Lock(); defer mu.Unlock(); return outcomes[len(outcomes)-1] }
	ctx := context.Background()
	bind := func(sid, pw string) error {
		_, err := r.AuthenticateBind(ctx, "127.0.0.1", sid, pw)
		return err
	}
	op := policy.OperatorActor("test")
	for _, want := range []string{gateway.AuthChecked, gateway.AuthCached} {
		if err := bind("alice", "secret1"); err != nil {
			t.Fatal(err)
		}
		if got := lastOutcome(); got != want {
			t.Fatalf("bind answered %q, want %q", got, want)
		}
	}
	setClock(time.Now())
	if err := bind("alice", "wrong"); !errors.Is(err, gateway.ErrAuth) {
		t.Fatalf("wrong password = %v, want ErrAuth", err)
	}
	if err := pol.SetPassword(op, "alice", "newpass1"); err != nil {
		t.Fatal(err)
	}
	if err := bind("alice", "secret1"); !errors.Is(err, gateway.ErrAuth) {
		t.Fatalf("old password after a change = %v, want ErrAuth", err)
	}
	if err := bind("alice", "newpass1"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	setClock(time.Now().Add(time.Minute)) // each change in a later second

	if err := bind("bob", "secret2"); err != nil {
		t.Fatal(err)
	}
	if _, err := pol.UpdateEnterprise(op, "E1", func(e *policy.Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := bind("bob", "secret2"); !isReason(err, policy.ReasonAccountDisabled) {
		t.Fatalf("bind of a disabled enterprise = %v, want account_disabled", err)
	}
	if _, err := pol.UpdateEnterprise(op, "E1", func(e *policy.Enterprise) error { e.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := bind("bob", "secret2"); err != nil {
		t.Fatal(err)
	}
	setClock(time.Now().Add(2 * time.Minute))
	if err := pol.DeleteUser(op, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := bind("bob", "secret2"); !errors.Is(err, gateway.ErrAuth) {
		t.Fatalf("bind of a deleted user = %v, want ErrAuth", err)
	}

	// A bind whose connection already closed is not checked at all (a
	// remembered one costs nothing and is answered anyway).
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.AuthenticateBind(gone, "127.0.0.1", "alice", "guess"); !errors.Is(err, gateway.ErrBindAbandoned) {
		t.Fatalf("abandoned bind = %v, want ErrBindAbandoned", err)
	}
}

func isReason(err error, want policy.Reason) bool {
	r, ok := policy.ReasonOf(err)
	return ok && r == want
}

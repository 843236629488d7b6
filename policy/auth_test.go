package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	u, e, err := f.p.Authenticate("a_admin", "secret1")
	if err != nil || u.SystemID != "a_admin" || e.Code != entA || u.Role != RoleAdmin {
		t.Fatalf("good login: %+v %+v %v", u, e, err)
	}
	for _, tc := range []struct{ sid, pw string }{
		{"a_admin", "secret2"},    // wrong password
		{"a_admin", ""},           // empty
		{"a_admin", "secret1xyz"}, // right prefix, too long for SMPP
		{"nobody", "secret1"},     // unknown user
		{"", ""},                  //
		{"a_admin", strings.Repeat("x", 100)},
	} {
		if _, _, err := f.p.Authenticate(tc.sid, tc.pw); err != ErrAuth {
			t.Errorf("%q/%q: got %v, want exactly ErrAuth", tc.sid, tc.pw, err)
		}
	}
	// Disabled enterprise: refused after a correct password only.
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.p.Authenticate("a_admin", "secret1"); !isReason(err, ReasonAccountDisabled) {
		t.Errorf("disabled: %v", err)
	}
	if _, _, err := f.p.Authenticate("a_admin", "wrong!"); err != ErrAuth {
		t.Errorf("disabled, wrong password: %v", err)
	}
}

// An unknown system_id costs a bcrypt comparison like a known one: at a
// configured cost (the dummy hash generated at New) and at the default one
// (the written-out dummy hash).
func TestAuthenticateUnknownSpendsBcrypt(t *testing.T) {
	for _, cost := range []int{8, DefaultBcryptCost} { // 8: ≈ 17 ms, measurable against the ~µs of a map miss
		t.Run(strconv.Itoa(cost), func(t *testing.T) { testAuthenticateUnknownSpendsBcrypt(t, cost) })
	}
}

func testAuthenticateUnknownSpendsBcrypt(t *testing.T, cost int) {
	db, _ := openDB(t)
	clk := newClock()
	cfg := testConfig(clk)
	cfg.BcryptCost = cost
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bcrypt.Cost(p.dummy); err != nil || got != cost {
		t.Fatalf("dummy hash of cost %d, %v; want %d", got, err, cost)
	}
	if err := bcrypt.CompareHashAndPassword(p.dummy, []byte("wrong!!")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("comparing with the dummy hash: %v, want a mismatch", err)
	}
	if _, err := p.CreateEnterprise(op, Enterprise{Code: "E", Name: "E", Signature: "【某某公司】", Package: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateUser(op, NewUser{Enterprise: "E", Name: "n", Mobile: "13712345678", SystemID: "known", Password: "secret1"}); err != nil {
		t.Fatal(err)
	}
	measure := func(sid string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			p.Authenticate(sid, "wrong!!")
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure("known"), measure("unknown")
	if unknown < known/3 {
		t.Errorf("unknown user %v vs known user %v: the dummy comparison is missing", unknown, known)
	}
}

func TestAPIKeys(t *testing.T) {
	f := newFixture(t)
	key, err := f.p.IssueAPIKey(f.aUser, "a_user") // a user may issue its own
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "qxtd_") || len(key) != 5+43 {
		t.Errorf("key format %q", key)
	}
	u, e, err := f.p.AuthenticateAPIKey(key)
	if err != nil || u.SystemID != "a_user" || e.Code != entA || !u.HasAPIKey {
		t.Fatalf("api key: %+v %v", u, err)
	}
	flipped := []byte(key)
	flipped[len(flipped)-1] ^= 1
	for _, bad := range []string{"", "qxtd_", string(flipped), strings.TrimPrefix(key, "qxtd_")} {
		if _, _, err := f.p.AuthenticateAPIKey(bad); err != ErrAuth {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// The store holds no key in clear.
	f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			if strings.Contains(string(v), strings.TrimPrefix(key, "qxtd_")) || strings.Contains(string(v), "secret") {
				t.Errorf("secret in clear in %s", k)
			}
			return nil
		})
	})
	key2, err := f.p.IssueAPIKey(f.aAdmin, "a_user") // rotation by the admin
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.p.AuthenticateAPIKey(key); err != ErrAuth {
		t.Error("old key still valid after rotation")
	}
	if err := f.p.RevokeAPIKey(op, "a_user"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.p.AuthenticateAPIKey(key2); err != ErrAuth {
		t.Error("revoked key still valid")
	}
	if _, err := f.p.IssueAPIKey(f.bAdmin, "a_user"); err != ErrForbidden {
		t.Errorf("other enterprise's admin: %v", err)
	}
}

func TestResetPassword(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ code, name, mobile string }{
		{entB, "李四", "13802412345"},       // wrong group
		{entA, "王五", "13802412345"},       // wrong name
		{entA, "李四", "13712345678"},       // wrong mobile (another user's)
		{entA, "李四", "not a number"},      //
		{"", "", ""},                      //
		{entA, "李四", "+86 138 0241 2346"}, // one digit off
	} {
		pw, u, err := f.p.ResetPassword(tc.code, tc.name, tc.mobile)
		if err != ErrAuth || pw != "" || u != nil {
			t.Errorf("%+v: got %q %v %v, want exactly ErrAuth", tc, pw, u, err)
		}
	}
	if _, _, err := f.p.Authenticate("a_user", "secret2"); err != nil {
		t.Fatal("failed resets must not change the password")
	}
	pw, u, err := f.p.ResetPassword(entA, "李四", "+86 138-0241-2345")
	if err != nil {
		t.Fatal(err)
	}
	if len(pw) != 8 || ValidPassword(pw) != nil || u.Mobile != "+8613802412345" || u.SystemID != "a_user" {
		t.Errorf("reset: %q %+v", pw, u)
	}
	if _, _, err := f.p.Authenticate("a_user", "secret2"); err != ErrAuth {
		t.Error("old password still valid")
	}
	if _, _, err := f.p.Authenticate("a_user", pw); err != nil {
		t.Errorf("new password: %v", err)
	}
	seen := map[string]bool{pw: true}
	for range 5 {
		pw, _, _ := f.p.ResetPassword(entA, "李四", "13802412345")
		if seen[pw] {
			t.Fatal("password repeats")
		}
		seen[pw] = true
	}
}

// TestAuthenticateDamagedHash: a stored hash that names a cost above
// MaxBcryptCost can only come from a damaged file (FuzzStoreRecords found
// one: a digit of "$2a$04$" changed) or a hostile write. Checked at its
// cost (31: 2^21 × a bind at the default) it would hold one of the store's
// AuthConcurrency slots for days and lock every bind out behind it; it is
// refused like a wrong password, after the store's own cost of work, and
// the other users log in meanwhile.
func TestAuthenticateDamagedHash(t *testing.T) {
	f := newFixture(t)
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var rec userRec
		if err := json.Unmarshal(b.Get([]byte("a_user")), &rec); err != nil {
			return err
		}
		if c, err := bcrypt.Cost(rec.PassHash); err != nil || c != bcrypt.MinCost {
			return fmt.Errorf("the fixture's hash: cost %d, %v", c, err)
		}
		rec.PassHash = []byte(strings.Replace(string(rec.PassHash), "$04$", "$31$", 1))
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte("a_user"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := newPolicy(t, f.db, f.clk) // the snapshot read from the file again
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Authenticate("a_user", "secret2")
		done <- err
	}()
	select {
	case err := <-done:
		if err != ErrAuth {
			t.Fatalf("a hash of cost 31: %v, want ErrAuth", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a hash of cost 31 was checked at its cost: no answer in 20 s")
	}
	if _, _, err := p.Authenticate("a_admin", "secret1"); err != nil {
		t.Fatalf("another user beside the damaged one: %v", err)
	}
	if _, err := New(f.db, Config{BcryptCost: MaxBcryptCost + 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("policy.bcrypt_cost %d: %v, want ErrInvalid", MaxBcryptCost+1, err)
	}
}

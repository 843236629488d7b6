package policy

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/bcrypt"
)

// openDB opens a bbolt file in t.TempDir() and checks its consistency when
// the test ends (like bbolt's own tests).
func openDB(t testing.TB) (*bolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qxtd.db")
	db := reopenDB(t, path)
	return db, path
}

func reopenDB(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			t.Errorf("bbolt consistency: %v", err)
		}
		db.Close()
	})
	return db
}

// fakeClock is a settable clock; tests advance it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 3, 15, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testConfig(clk *fakeClock) Config {
	return Config{HomeProvince: "广东", BcryptCost: bcrypt.MinCost, Now: clk.Now, DefaultTPS: 10}
}

func newPolicy(t testing.TB, db *bolt.DB, clk *fakeClock) *Policy {
	t.Helper()
	p, err := New(db, testConfig(clk))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var op = OperatorActor("manager-li")

// fixture: two enterprises, each with an admin and a user.
type fixture struct {
	p      *Policy
	db     *bolt.DB
	path   string
	clk    *fakeClock
	a, b   *Enterprise
	aAdmin Actor
	aUser  Actor
	bAdmin Actor
}

const (
	entA = "GD0755001"
	entB = "GD0200002"
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture with the test's changes to the Config (nil:
// none).
func newFixtureWith(t testing.TB, with func(*Config)) *fixture {
	t.Helper()
	db, path := openDB(t)
	clk := newClock()
	cfg := testConfig(clk)
	if with != nil {
		with(&cfg)
	}
	p, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{p: p, db: db, path: path, clk: clk}
	f.a, err = f.p.CreateEnterprise(op, Enterprise{Code: entA, Name: "甲公司", Signature: "【甲公司】", Package: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.b, err = f.p.CreateEnterprise(op, Enterprise{Code: entB, Name: "乙公司", Signature: "【乙公司】", Package: 2, National: true, OffNet: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, nu := range []NewUser{
		{Enterprise: entA, Name: "张三", Mobile: "13712345678", SystemID: "a_admin", Password: "secret1", Role: RoleAdmin},
		{Enterprise: entA, Name: "李四", Mobile: "13802412345", SystemID: "a_user", Password: "secret2"},
		{Enterprise: entB, Name: "王五", Mobile: "13923412345", SystemID: "b_admin", Password: "secret3", Role: RoleAdmin},
	} {
		if _, err := f.p.CreateUser(op, nu); err != nil {
			t.Fatal(err)
		}
	}
	f.aAdmin = Actor{Enterprise: entA, Admin: true, Name: "a_admin"}
	f.aUser = Actor{Enterprise: entA, Name: "a_user"}
	f.bAdmin = Actor{Enterprise: entB, Admin: true, Name: "b_admin"}
	return f
}

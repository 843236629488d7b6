package policy

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

// The whole check, against the matrix of grants and whitelist states.
func TestCheckRecipient(t *testing.T) {
	f := newFixture(t)
	approved := []string{"13712345678", "13800138000", "18612345678", "19212345678"}
	if _, err := f.p.AddWhitelist(op, entA, approved); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(op, entB, approved); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"13923412345"}); err != nil { // pending
		t.Fatal(err)
	}
	for _, tc := range []struct {
		number string
		a, b   Reason // A: no grants; B: national + off-net
	}{
		{"13712345678", 0, 0},
		{"+86 137 1234 5678", 0, 0},
		{"13712345679", ReasonNotWhitelisted, ReasonNotWhitelisted},
		{"13923412345", ReasonNotWhitelisted, ReasonNotWhitelisted}, // pending in A, absent in B
		{"13800138000", ReasonScopeNational, 0},
		{"18612345678", ReasonScopeOffNet, 0},
		{"19212345678", ReasonScopeOffNet, 0},
		{"+86 20 8888 8888", ReasonInvalidNumber, ReasonInvalidNumber},
		{"+1 650 253 0000", ReasonInvalidNumber, ReasonInvalidNumber},
		{"abc", ReasonInvalidNumber, ReasonInvalidNumber},
	} {
		for _, x := range []struct {
			ent  *Enterprise
			want Reason
		}{{f.a, tc.a}, {f.b, tc.b}} {
			cl, err := f.p.CheckRecipient(x.ent, tc.number)
			if r, _ := ReasonOf(err); r != x.want || (err == nil) != (x.want == 0) {
				t.Errorf("%s → %s: %v, want %v", x.ent.Code, tc.number, err, x.want)
			}
			if err == nil && cl.E164 == "" {
				t.Errorf("no class for %s", tc.number)
			}
		}
	}
	_, err := f.p.CheckRecipient(f.a, "13923412345")
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Detail, "pending") {
		t.Errorf("pending detail: %v", err)
	}
}

// The sending path reads no file: close the database, and every check still
// answers as before.
func TestHotPathWithoutDisk(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678"}); err != nil {
		t.Fatal(err)
	}
	key, err := f.p.IssueAPIKey(op, "a_user")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ent, ok := f.p.Lookup(entA)
			if !ok {
				t.Error("Lookup")
				return
			}
			if err := f.p.CheckEnterprise(ent); err != nil {
				t.Error(err)
			}
			if _, err := f.p.CheckRecipient(ent, "+8613712345678"); err != nil {
				t.Error(err)
			}
			if _, err := f.p.CheckRecipient(ent, "13800138000"); !isReason(err, ReasonScopeNational) {
				t.Error(err)
			}
			if _, _, err := f.p.Authenticate("a_user", "secret2"); err != nil {
				t.Error(err)
			}
			if _, _, err := f.p.AuthenticateAPIKey(key); err != nil {
				t.Error(err)
			}
			if f.p.Limit(ent) != -1 || !f.p.Allow(entA) {
				t.Error("limit / rate")
			}
		}()
	}
	wg.Wait()
}

// CheckRecipient of an approved number in E.164 allocates nothing.
func TestCheckRecipientAllocs(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678"}); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := f.p.CheckRecipient(f.a, "+8613712345678"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per check", allocs)
	}
}

// Writes under concurrent reads: readers always see a consistent snapshot.
func TestConcurrentWritesAndChecks(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.p.CheckRecipient(f.a, "13712345678")
				f.p.Allowed(entA, "+8613712345600")
				f.p.Enterprises(op)
			}
		}()
	}
	for i := range 20 {
		n := "137123456" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		if _, err := f.p.AddWhitelist(op, entA, []string{n}); err != nil {
			t.Fatal(err)
		}
		if !f.p.Allowed(entA, "+86"+n) {
			t.Fatalf("%s not visible right after the write", n)
		}
	}
	close(stop)
	wg.Wait()
}

func TestCheckEnterprise(t *testing.T) {
	p := &Policy{}
	for _, tc := range []struct {
		e    Enterprise
		want Reason
	}{
		{Enterprise{Signature: "【某某公司】"}, 0},
		{Enterprise{}, ReasonNoSignature},
		{Enterprise{Signature: "【某某公司】", Disabled: true}, ReasonAccountDisabled},
	} {
		r, _ := ReasonOf(p.CheckEnterprise(&tc.e))
		if r != tc.want {
			t.Errorf("%+v: %v, want %v", tc.e, r, tc.want)
		}
	}
}

func TestNewConfig(t *testing.T) {
	db, _ := openDB(t)
	if _, err := New(db, Config{HomeProvince: "Atlantis"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad province: %v", err)
	}
	if _, err := New(db, Config{Packages: PackageTable{{ID: 1}, {ID: 1}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad packages: %v", err)
	}
	cfg := testConfig(newClock())
	cfg.HomeProvince = ""
	p, err := New(db, cfg)
	if err != nil || p.HomeProvince() != "广东省" {
		t.Errorf("default home: %v %v", p, err)
	}
}

// BenchmarkCheckRecipient measures the per-recipient check; compare it with
// BenchmarkPhonenumbersParse (phonenumbers.Parse alone on the same numbers).
func BenchmarkCheckRecipient(b *testing.B) {
	f := newFixture(b)
	if _, err := f.p.AddWhitelist(op, entA, []string{"13712345678"}); err != nil {
		b.Fatal(err)
	}
	for _, num := range benchNumbers {
		b.Run(strings.ReplaceAll(num, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.p.CheckRecipient(f.a, num); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("refused_scope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.p.CheckRecipient(f.a, "+8613800138000"); err == nil {
				b.Fatal("allowed")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				f.p.CheckRecipient(f.a, "+8613712345678")
			}
		})
	})
}

func BenchmarkAllow(b *testing.B) {
	f := newFixture(b)
	f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.TPS = 100_000; return nil })
	b.ReportAllocs()
	for b.Loop() {
		f.p.Allow(entA)
	}
}

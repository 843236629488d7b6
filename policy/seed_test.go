package policy

import (
	"context"
	"errors"
	"testing"
)

func seedData() SeedData {
	return SeedData{
		Enterprises: []SeedEnterprise{{
			Enterprise: Enterprise{Code: "GD001", Name: "东莞某某公司", Signature: "【某某公司】", Package: 4, National: true, CapFen: 500_00},
			Users: []NewUser{
				{Name: "管理员", Mobile: "13712345678", SystemID: "gd001", Password: "init001", Role: RoleAdmin},
				{Name: "小王", Mobile: "13802412345", SystemID: "gd001w", Password: "init002"},
			},
			Whitelist: []string{"13712345678", "+86 139 2341 2345"},
		}},
		Overrides: []Override{{Prefix: "13012345678", Carrier: ChinaMobile}},
	}
}

func TestSeedRule(t *testing.T) {
	db, path := openDB(t)
	clk := newClock()
	p := newPolicy(t, db, clk)
	ctx := context.Background()
	rep, err := p.Seed(ctx, seedData())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (SeedReport{EnterprisesCreated: 1, UsersCreated: 2, WhitelistAdded: 2, OverridesAdded: 1}) {
		t.Errorf("first seed: %+v", rep)
	}
	if _, _, err := p.Authenticate("gd001", "init001"); err != nil {
		t.Fatal(err)
	}
	if !p.Allowed("GD001", "+8613923412345") {
		t.Error("seeded whitelist entry not approved")
	}

	// Admins change things; then the daemon restarts and seeds again.
	if err := p.SetPassword(OperatorActor("x"), "gd001", "changed"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpdateEnterprise(op, "GD001", func(e *Enterprise) error { e.Package = 5; e.National = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reject(op, "GD001", "no", "13712345678"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveOverride(op, "13012345678"); err != nil {
		t.Fatal(err)
	}
	if err := p.SetOverride(op, Override{Prefix: "13012345678", Carrier: ChinaTelecom}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = reopenDB(t, path)
	p = newPolicy(t, db, clk)
	rep, err = p.Seed(ctx, seedData())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (SeedReport{EnterprisesKept: 1, UsersKept: 2, WhitelistKept: 2, OverridesKept: 1}) {
		t.Errorf("re-seed: %+v", rep)
	}
	e := mustLookup(t, p, "GD001")
	if e.Package != 5 || e.National {
		t.Errorf("seed overwrote the operator's change: %+v", e)
	}
	if _, _, err := p.Authenticate("gd001", "changed"); err != nil {
		t.Error("seed overwrote the changed password")
	}
	if st, _ := p.WhitelistStatus("GD001", "+8613712345678"); st != WhitelistRejected {
		t.Errorf("seed overwrote a rejection: %v", st)
	}
	if c, _ := p.Classifier().Classify("13012345678"); c.Carrier != ChinaTelecom {
		t.Errorf("seed overwrote an override: %v", c.Carrier)
	}

	// Force: configuration wins.
	d := seedData()
	d.Force = true
	rep, err = p.Seed(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (SeedReport{EnterprisesForced: 1, UsersForced: 2, WhitelistForced: 1, WhitelistKept: 1, OverridesForced: 1}) {
		t.Errorf("forced seed: %+v", rep)
	}
	if e := mustLookup(t, p, "GD001"); e.Package != 4 || !e.National {
		t.Errorf("force: %+v", e)
	}
	if _, _, err := p.Authenticate("gd001", "init001"); err != nil {
		t.Error("force did not reset the password")
	}
	if !p.Allowed("GD001", "+8613712345678") {
		t.Error("force did not approve")
	}
}

func TestSeedValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, mod := range map[string]func(*SeedData){
		"bad signature":       func(d *SeedData) { d.Enterprises[0].Signature = "某某" },
		"bad password":        func(d *SeedData) { d.Enterprises[0].Users[0].Password = "toolongpw" },
		"duplicate system_id": func(d *SeedData) { d.Enterprises[0].Users[1].SystemID = "gd001" },
		"duplicate name":      func(d *SeedData) { d.Enterprises[0].Users[1].Name = "管理员" },
		"bad whitelist":       func(d *SeedData) { d.Enterprises[0].Whitelist = append(d.Enterprises[0].Whitelist, "") },
		"bad override":        func(d *SeedData) { d.Overrides[0].Prefix = "2" },
		"wrong enterprise":    func(d *SeedData) { d.Enterprises[0].Users[0].Enterprise = "OTHER" },
		"duplicate code": func(d *SeedData) {
			d.Enterprises = append(d.Enterprises, d.Enterprises[0])
		},
	} {
		d := seedData()
		mod(&d)
		if _, err := f.p.Seed(ctx, d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A system_id of another enterprise: error, nothing written (all or nothing).
	d := seedData()
	d.Enterprises[0].Users[1].SystemID = "a_admin"
	if _, err := f.p.Seed(ctx, d); !errors.Is(err, ErrExists) {
		t.Errorf("foreign system_id: %v", err)
	}
	if _, ok := f.p.Lookup("GD001"); ok {
		t.Error("failed seed left an enterprise behind")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.p.Seed(cctx, seedData()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

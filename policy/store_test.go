package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/sheet"
)

func TestEnterpriseValidation(t *testing.T) {
	f := newFixture(t)
	base := Enterprise{Code: "X1", Name: "X", Signature: "【某某公司】", Package: 3}
	for _, tc := range []struct {
		name string
		mod  func(*Enterprise)
	}{
		{"empty code", func(e *Enterprise) { e.Code = "" }},
		{"bad code", func(e *Enterprise) { e.Code = "a b" }},
		{"long code", func(e *Enterprise) { e.Code = strings.Repeat("9", 33) }},
		{"no name", func(e *Enterprise) { e.Name = "" }},
		{"signature without brackets", func(e *Enterprise) { e.Signature = "某某公司" }},
		{"signature half bracket", func(e *Enterprise) { e.Signature = "【某某公司" }},
		{"signature ascii brackets", func(e *Enterprise) { e.Signature = "[某某公司]" }},
		{"signature too short", func(e *Enterprise) { e.Signature = "【某】" }},
		{"signature too long", func(e *Enterprise) { e.Signature = "【" + strings.Repeat("长", 21) + "】" }},
		{"signature nested", func(e *Enterprise) { e.Signature = "【某【某】司】" }},
		{"signature control", func(e *Enterprise) { e.Signature = "【某某\n公司】" }},
		{"package 0", func(e *Enterprise) { e.Package = 0 }},
		{"package 13", func(e *Enterprise) { e.Package = 13 }},
		{"negative cap", func(e *Enterprise) { e.CapFen = -1 }},
		{"negative tps", func(e *Enterprise) { e.TPS = -1 }},
	} {
		e := base
		tc.mod(&e)
		if _, err := f.p.CreateEnterprise(op, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := f.p.CreateEnterprise(op, base); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.CreateEnterprise(op, base); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	// An enterprise may exist without a signature; it cannot send.
	e, err := f.p.CreateEnterprise(op, Enterprise{Code: "X2", Name: "Y", Package: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ReasonOf(f.p.CheckEnterprise(e)); r != ReasonNoSignature {
		t.Errorf("no signature: %v", r)
	}
	if _, err := f.p.UpdateEnterprise(op, "X2", func(e *Enterprise) error { e.Code = "X3"; return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("code change: %v", err)
	}
	if _, err := f.p.UpdateEnterprise(op, "nope", func(e *Enterprise) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing: %v", err)
	}
	e, err = f.p.UpdateEnterprise(op, "X2", func(e *Enterprise) error { e.Signature = "【乙方】"; e.National = true; return nil })
	if err != nil || e.Signature != "【乙方】" || !e.National || e.CreatedAt.IsZero() {
		t.Fatalf("update: %+v %v", e, err)
	}
	if got, _ := f.p.Lookup("X2"); !reflect.DeepEqual(got, e) {
		t.Errorf("Lookup after update: %+v, want %+v", got, e)
	}
}

func TestUserValidation(t *testing.T) {
	f := newFixture(t)
	base := NewUser{Enterprise: entA, Name: "赵六", Mobile: "13712340000", SystemID: "zhao6", Password: "abc123"}
	for _, tc := range []struct {
		name string
		mod  func(*NewUser)
		want error
	}{
		{"system_id too long", func(u *NewUser) { u.SystemID = strings.Repeat("s", 16) }, ErrInvalid},
		{"system_id with space", func(u *NewUser) { u.SystemID = "a b" }, ErrInvalid},
		{"password too long for SMPP", func(u *NewUser) { u.Password = "123456789" }, ErrInvalid},
		{"password too short", func(u *NewUser) { u.Password = "12345" }, ErrInvalid},
		{"password non-ascii", func(u *NewUser) { u.Password = "密码密码" }, ErrInvalid},
		{"bad mobile", func(u *NewUser) { u.Mobile = "020-88888888" }, ErrInvalid},
		{"empty name", func(u *NewUser) { u.Name = "" }, ErrInvalid},
		{"bad role", func(u *NewUser) { u.Role = 7 }, ErrInvalid},
		{"bad long_replies", func(u *NewUser) { u.LongReplies = "udh7" }, ErrInvalid},
		{"system_id taken (other enterprise)", func(u *NewUser) { u.SystemID = "b_admin" }, ErrExists},
		{"name taken in enterprise", func(u *NewUser) { u.Name = "张三" }, ErrExists},
		{"no such enterprise", func(u *NewUser) { u.Enterprise = "ZZ" }, ErrNotFound},
	} {
		u := base
		tc.mod(&u)
		if _, err := f.p.CreateUser(op, u); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// Same name in another enterprise is fine.
	u := base
	u.Enterprise, u.Name = entB, "张三"
	if _, err := f.p.CreateUser(op, u); err != nil {
		t.Fatal(err)
	}
	got, err := f.p.User(op, "zhao6")
	if err != nil || got.Mobile != "+8613712340000" || got.Role != RoleUser || got.Enterprise != entB {
		t.Fatalf("user: %+v %v", got, err)
	}
}

func isReason(err error, r Reason) bool {
	got, ok := ReasonOf(err)
	return ok && got == r
}

func TestSetPasswordAndUserUpdates(t *testing.T) {
	f := newFixture(t)
	if err := f.p.SetPassword(f.aUser, "a_user", "newpw1"); err != nil { // self
		t.Fatal(err)
	}
	if _, _, err := f.p.Authenticate("a_user", "newpw1"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.SetPassword(f.aUser, "a_admin", "newpw2"); err != ErrForbidden {
		t.Errorf("user sets admin's password: %v", err)
	}
	show, role := true, RoleAdmin
	if _, err := f.p.UpdateUser(f.aUser, "a_user", UserUpdate{ShowSignature: &show}); err != ErrForbidden {
		t.Errorf("plain user toggles its signature: %v", err)
	}
	u, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{ShowSignature: &show, Role: &role})
	if err != nil || !u.ShowSignature || u.Role != RoleAdmin {
		t.Fatalf("admin update: %+v %v", u, err)
	}
	// How long replies reach its binds: stored lower case, "payload" as
	// the default "", anything else refused.
	for _, tc := range []struct{ in, want string }{{"UDH16", "udh16"}, {" sar ", "sar"}, {"payload", ""}, {"udh8", "udh8"}} {
		lr := tc.in
		u, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{LongReplies: &lr})
		if err != nil || u.LongReplies != tc.want {
			t.Fatalf("long_replies %q: %+v %v", tc.in, u, err)
		}
		if got, _ := f.p.User(op, "a_user"); got.LongReplies != tc.want {
			t.Fatalf("long_replies %q as read: %q", tc.in, got.LongReplies)
		}
	}
	bad := "parts"
	if _, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{LongReplies: &bad}); !errors.Is(err, ErrInvalid) {
		t.Errorf("long_replies %q: %v", bad, err)
	}
	name := "张三"
	if _, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{Name: &name}); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto an existing name: %v", err)
	}
	if err := f.p.DeleteUser(f.aAdmin, "a_user"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.p.Authenticate("a_user", "newpw1"); err != ErrAuth {
		t.Error("deleted user can log in")
	}
	if _, err := f.p.User(op, "a_user"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted: %v", err)
	}
}

// Enterprise A's actors can neither read, list, approve nor change anything
// of enterprise B, and only the operator does operator things.
func TestIsolation(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.AddWhitelist(f.bAdmin, entB, []string{"13712345678"}); err != nil {
		t.Fatal(err)
	}
	show := true
	for _, actor := range []Actor{f.aAdmin, f.aUser, {Enterprise: entA, Admin: true}, {}} {
		for name, call := range map[string]func() error{
			"Enterprise(B)": func() error { _, err := f.p.Enterprise(actor, entB); return err },
			"UpdateEnterprise": func() error {
				_, err := f.p.UpdateEnterprise(actor, entA, func(*Enterprise) error { return nil })
				return err
			},
			"CreateEnterprise": func() error {
				_, err := f.p.CreateEnterprise(actor, Enterprise{Code: "N", Name: "N", Package: 1})
				return err
			},
			"Users(B)":      func() error { _, err := f.p.Users(actor, entB); return err },
			"User(B's)":     func() error { _, err := f.p.User(actor, "b_admin"); return err },
			"User(unknown)": func() error { _, err := f.p.User(actor, "nobody"); return err },
			"CreateUser(B)": func() error {
				_, err := f.p.CreateUser(actor, NewUser{Enterprise: entB, Name: "x", Mobile: "13712345678", SystemID: "x", Password: "123456"})
				return err
			},
			"UpdateUser(B's)":   func() error { _, err := f.p.UpdateUser(actor, "b_admin", UserUpdate{ShowSignature: &show}); return err },
			"DeleteUser(B's)":   func() error { return f.p.DeleteUser(actor, "b_admin") },
			"SetPassword(B's)":  func() error { return f.p.SetPassword(actor, "b_admin", "123456") },
			"IssueAPIKey(B's)":  func() error { _, err := f.p.IssueAPIKey(actor, "b_admin"); return err },
			"RevokeAPIKey(B's)": func() error { return f.p.RevokeAPIKey(actor, "b_admin") },
			"AddWhitelist(B)":   func() error { _, err := f.p.AddWhitelist(actor, entB, []string{"13712345679"}); return err },
			"ImportWhitelist(B)": func() error {
				_, err := f.p.ImportWhitelist(actor, entB, strings.NewReader("13712345679\n"), sheet.CSV)
				return err
			},
			"RemoveWhitelist(B)": func() error { _, err := f.p.RemoveWhitelist(actor, entB, []string{"13712345678"}); return err },
			"ListWhitelist(B)":   func() error { _, _, err := f.p.ListWhitelist(actor, entB, 0, "", 10); return err },
			"WhitelistCounts(B)": func() error { _, err := f.p.WhitelistCounts(actor, entB); return err },
			"Approve(B)":         func() error { _, err := f.p.Approve(actor, entB); return err },
			"Approve(own)":       func() error { _, err := f.p.Approve(actor, entA); return err },
			"Reject(B)":          func() error { _, err := f.p.Reject(actor, entB, "no", "13712345678"); return err },
			"SetOverride":        func() error { return f.p.SetOverride(actor, Override{Prefix: "137", Province: "广东"}) },
			"RemoveOverride":     func() error { return f.p.RemoveOverride(actor, "137") },
			"Overrides":          func() error { _, err := f.p.Overrides(actor); return err },
		} {
			if err := call(); err != ErrForbidden {
				t.Errorf("actor %+v: %s: got %v, want ErrForbidden", actor, name, err)
			}
		}
		for _, e := range f.p.Enterprises(actor) {
			if e.Code != actor.Enterprise {
				t.Errorf("actor %+v lists enterprise %s", actor, e.Code)
			}
		}
	}
	// A plain user may ask for numbers (pending: only the account manager
	// makes them usable) but not remove entries, nor manage users.
	if _, err := f.p.AddWhitelist(f.aUser, entA, []string{"13712345679"}); err != nil {
		t.Errorf("plain user asks for a number: %v", err)
	}
	if st, ok := f.p.WhitelistStatus(entA, "+8613712345679"); !ok || st != WhitelistPending {
		t.Errorf("a plain user's request: %v %v, want pending", st, ok)
	}
	if _, err := f.p.RemoveWhitelist(f.aUser, entA, []string{"13712345679"}); err != ErrForbidden {
		t.Errorf("plain user removes from whitelist: %v", err)
	}
	if _, err := f.p.AddWhitelist(f.aUser, entB, []string{"13712345679"}); err != ErrForbidden {
		t.Errorf("plain user adds to another enterprise's whitelist: %v", err)
	}
	if _, err := f.p.CreateUser(f.aUser, NewUser{Enterprise: entA, Name: "x", Mobile: "13712345678", SystemID: "x", Password: "123456"}); err != ErrForbidden {
		t.Errorf("plain user creates user: %v", err)
	}
	// Nothing of B changed.
	if st, ok := f.p.WhitelistStatus(entB, "+8613712345678"); !ok || st != WhitelistPending {
		t.Errorf("B's entry: %v %v", st, ok)
	}
	if _, err := f.p.User(op, "b_admin"); err != nil {
		t.Error(err)
	}
	if _, _, err := f.p.Authenticate("b_admin", "secret3"); err != nil {
		t.Error(err)
	}
	if len(f.p.Enterprises(op)) != 2 {
		t.Error("operator sees all")
	}
}

// State persists across a close and reopen of the file.
func TestReopen(t *testing.T) {
	f := newFixture(t)
	key, err := f.p.IssueAPIKey(op, "a_user")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddWhitelist(f.aAdmin, entA, []string{"13712345678", "13800138000", "13916012345"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Approve(op, entA, "13712345678"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Reject(op, entA, "no", "13800138000"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.SetOverride(op, Override{Prefix: "13012345678", Carrier: ChinaMobile, Province: "广东"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.CapFen = 3000; e.TPS = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	before := f.p.Enterprises(op)
	f.db.Close()

	db := reopenDB(t, f.path)
	p := newPolicy(t, db, f.clk)
	if got := p.Enterprises(op); !reflect.DeepEqual(got, before) {
		t.Errorf("enterprises after reopen:\n%+v\nwant\n%+v", got, before)
	}
	if _, _, err := p.Authenticate("a_user", "secret2"); err != nil {
		t.Error(err)
	}
	if u, _, err := p.AuthenticateAPIKey(key); err != nil || u.SystemID != "a_user" {
		t.Error(err)
	}
	for num, want := range map[string]WhitelistState{"+8613712345678": WhitelistApproved, "+8613800138000": WhitelistRejected, "+8613916012345": WhitelistPending} {
		if st, ok := p.WhitelistStatus(entA, num); !ok || st != want {
			t.Errorf("%s: %v %v, want %v", num, st, ok, want)
		}
	}
	if c, _ := p.Classifier().Classify("13012345678"); c.Carrier != ChinaMobile || !c.Override {
		t.Errorf("override lost: %+v", c)
	}
	if l := p.Limit(mustLookup(t, p, entA)); l != 320 {
		t.Errorf("limit %d", l)
	}
}

func mustLookup(t testing.TB, p *Policy, code string) *Enterprise {
	t.Helper()
	e, ok := p.Lookup(code)
	if !ok {
		t.Fatalf("no enterprise %s", code)
	}
	return e
}

// Writes fail cleanly on a closed database; the memory snapshot is unchanged.
func TestClosedDB(t *testing.T) {
	f := newFixture(t)
	f.db.Close()
	if _, err := f.p.CreateEnterprise(op, Enterprise{Code: "N", Name: "N", Signature: "【某某公司】", Package: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("write on closed db: %v", err)
	}
	if _, ok := f.p.Lookup("N"); ok {
		t.Error("failed write visible in memory")
	}
	if _, ok := f.p.Lookup(entA); !ok {
		t.Error("snapshot lost")
	}
}

func TestRolesText(t *testing.T) {
	for _, r := range []Role{RoleUser, RoleAdmin} {
		b, _ := r.MarshalText()
		var back Role
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("%v", r)
		}
	}
	if a := ActorFor(&User{Enterprise: "E", SystemID: "s", Role: RoleAdmin}); !a.Admin || a.Enterprise != "E" || a.Operator {
		t.Errorf("ActorFor: %+v", a)
	}
}

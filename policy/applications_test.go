package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestApplications(t *testing.T) {
	t.Parallel()
	db, path := openDB(t)
	clk := newClock()
	p := newPolicy(t, db, clk)
	good := NewApplication{GroupCode: "GD0755009", Name: "东莞某某有限公司", ContactMobile: "+86 137-1234-5678",
		Package: 3, Signature: "【某某公司】"}

	app, err := p.SubmitApplication(good)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(app.Number, "app_") || len(app.Number) != 30 || app.State != ApplicationPending ||
		app.ContactMobile != "+8613712345678" {
		t.Fatalf("submitted %+v", app)
	}
	clk.Advance(time.Minute)
	other, err := p.SubmitApplication(NewApplication{GroupCode: "GD0755010", Name: "另一家", ContactMobile: "13923412345",
		Package: 1, Signature: "【另一家】"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Number == app.Number {
		t.Fatal("two applications with one number")
	}

	for name, na := range map[string]NewApplication{
		"group code":          {GroupCode: "bad code", Name: "x", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"},
		"name":                {GroupCode: "G1", Name: "", ContactMobile: "13712345678", Package: 1, Signature: "【某某】"},
		"mobile":              {GroupCode: "G1", Name: "x", ContactMobile: "010-12345678", Package: 1, Signature: "【某某】"},
		"package":             {GroupCode: "G1", Name: "x", ContactMobile: "13712345678", Package: 99, Signature: "【某某】"},
		"signature":           {GroupCode: "G1", Name: "x", ContactMobile: "13712345678", Package: 1, Signature: "某某"},
		"signature: required": {GroupCode: "G1", Name: "x", ContactMobile: "13712345678", Package: 1},
	} {
		if _, err := p.SubmitApplication(na); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want ErrInvalid naming it", name, err)
		}
	}

	if _, err := p.Applications(Actor{Enterprise: "GD0755009", Admin: true}, "", 0); !errors.Is(err, ErrForbidden) {
		t.Fatalf("enterprise lists applications: %v", err)
	}
	list, err := p.Applications(op, ApplicationPending, 0)
	if err != nil || len(list) != 2 || list[0].Number != app.Number || list[1].Number != other.Number {
		t.Fatalf("pending %+v %v", list, err)
	}

	// Approve: the enterprise and its admin exist, the password works.
	got, u, pw, err := p.ApproveApplication(op, app.Number, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ApplicationApproved || got.AdminSystemID != "GD0755009" || got.DecidedBy != "manager-li" ||
		u.Role != RoleAdmin || u.Mobile != "+8613712345678" || len(pw) != MaxPasswordLen {
		t.Fatalf("approved %+v %+v", got, u)
	}
	e, ok := p.Lookup("GD0755009")
	if !ok || e.Signature != "【某某公司】" || e.Package != 3 {
		t.Fatalf("enterprise %+v %v", e, ok)
	}
	if _, _, err := p.Authenticate("GD0755009", pw); err != nil {
		t.Fatalf("first password: %v", err)
	}
	if _, _, _, err := p.ApproveApplication(op, app.Number, ""); !errors.Is(err, ErrDecided) {
		t.Fatalf("approved twice: %v", err)
	}
	if _, err := p.RejectApplication(op, app.Number, "late"); !errors.Is(err, ErrDecided) {
		t.Fatalf("rejected after approval: %v", err)
	}

	// A second application for a taken code is accepted (nothing told) and
	// found at approval: it stays pending until rejected.
	dup, err := p.SubmitApplication(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := p.ApproveApplication(op, dup.Number, "dup_admin"); !errors.Is(err, ErrExists) {
		t.Fatalf("taken code approved: %v", err)
	}
	if _, err := p.User(op, "dup_admin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed approval left a user: %v", err)
	}
	if _, err := p.RejectApplication(op, dup.Number, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reject without a reason: %v", err)
	}
	rej, err := p.RejectApplication(op, dup.Number, "集团编码已开户")
	if err != nil || rej.State != ApplicationRejected || rej.Reason != "集团编码已开户" {
		t.Fatalf("rejected %+v %v", rej, err)
	}
	if _, err := p.LookupApplication("app_nosuchnumber"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown number: %v", err)
	}

	// Durable: everything is there after reopening the file.
	db.Close()
	p2 := newPolicy(t, reopenDB(t, path), clk)
	all, err := p2.Applications(op, "", 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("after reopening: %+v %v", all, err)
	}
	pending, err := p2.Applications(op, ApplicationPending, 0)
	if err != nil || len(pending) != 1 || pending[0].Number != other.Number {
		t.Fatalf("pending after reopening: %+v %v", pending, err)
	}
	if a, err := p2.LookupApplication(dup.Number); err != nil || a.Reason != "集团编码已开户" {
		t.Fatalf("rejected after reopening: %+v %v", a, err)
	}
	if first, err := p2.Applications(op, "", 1); err != nil || len(first) != 1 || first[0].Number != app.Number {
		t.Fatalf("limit 1: %+v %v", first, err)
	}
}

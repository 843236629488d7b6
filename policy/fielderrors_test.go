package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/qxtd/qxtd/sheet"
)

// TestFieldErrors: a value a form or a request gives that the rules
// refuse names its field and says the rule in Chinese (FieldError), so
// that the consoles show the Chinese beside the field instead of the
// English; the English, errors.Is ErrInvalid, is what it always was.
func TestFieldErrors(t *testing.T) {
	f := newFixture(t)
	ptr := func(s string) *string { return &s }
	for _, c := range []struct {
		name, field, english string
		do                   func() error
	}{
		{"system_id with a space", "system_id", "printable ASCII without spaces", func() error {
			_, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, Name: "赵六", SystemID: "a b", Password: "secret9"})
			return err
		}},
		{"system_id too long", "system_id", "1–15 characters", func() error {
			_, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, Name: "赵六", SystemID: strings.Repeat("x", 16), Password: "secret9"})
			return err
		}},
		{"password too short", "password", "password: 6–8 characters", func() error {
			_, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, Name: "赵六", SystemID: "zhao6", Password: "abc"})
			return err
		}},
		{"password with a space", "password", "printable ASCII", func() error { return f.p.SetPassword(f.aAdmin, "a_user", "abc def") }},
		{"user name empty", "name", "user name", func() error {
			_, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, SystemID: "zhao6", Password: "secret9"})
			return err
		}},
		{"user mobile", "mobile", "not a valid Chinese mobile number", func() error {
			_, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{Mobile: ptr("12345")})
			return err
		}},
		{"long_replies", "long_replies", "want payload", func() error {
			_, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{LongReplies: ptr("mms")})
			return err
		}},
		{"extension without a service number", "extension", "a service number to extend", func() error {
			_, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{Extension: ptr("12")})
			return err
		}},
		{"an admin disabling itself", "", "cannot disable or demote itself", func() error {
			_, err := f.p.UpdateUser(f.aAdmin, "a_admin", UserUpdate{Disabled: new(true)})
			return err
		}},
		{"group code", "code", "only letters, digits", func() error {
			_, err := f.p.CreateEnterprise(op, Enterprise{Code: "甲", Name: "甲", Package: 1})
			return err
		}},
		{"enterprise name", "name", "enterprise name", func() error {
			_, err := f.p.CreateEnterprise(op, Enterprise{Code: "X1", Name: " 甲", Package: 1})
			return err
		}},
		{"signature brackets", "signature", "must be wrapped in 【】", func() error {
			_, err := f.p.CreateEnterprise(op, Enterprise{Code: "X1", Name: "甲", Signature: "甲公司", Package: 1})
			return err
		}},
		{"signature too long", "signature", "2–20 characters", func() error {
			_, err := f.p.CreateEnterprise(op, Enterprise{Code: "X1", Name: "甲", Signature: "【" + strings.Repeat("甲", 21) + "】", Package: 1})
			return err
		}},
		{"package", "package", "not in the package table", func() error {
			_, err := f.p.CreateEnterprise(op, Enterprise{Code: "X1", Name: "甲", Package: 99})
			return err
		}},
		{"tps", "tps", "tps -1: 0–100000", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.TPS = -1; return nil })
			return err
		}},
		{"max_users", "max_users", "max_users", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.MaxUsers = MaxUsersLimit + 1; return nil })
			return err
		}},
		{"service number", "service_number", "3–20 digits", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.ServiceNumber = "10a"; return nil })
			return err
		}},
		{"ext_len without a service number", "ext_len", "without a service number", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.ExtLen = 2; return nil })
			return err
		}},
		{"receipt URL", "receipt_url", "only http and https", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Receipt.URL = "ftp://x.example/r"; return nil })
			return err
		}},
		{"the group code changed", "code", "cannot change", func() error {
			_, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.Code = "Y"; return nil })
			return err
		}},
		{"held dropped of an enabled enterprise", "", "is not disabled", func() error {
			_, err := f.p.DropHeld(op, entA)
			return err
		}},
		{"signature request empty", "signature", "required", func() error {
			_, err := f.p.RequestSignature(f.aAdmin, entA, "")
			return err
		}},
		{"signature request the same", "signature", "already the enterprise's", func() error {
			_, err := f.p.RequestSignature(f.aAdmin, entA, "【甲公司】")
			return err
		}},
		{"whitelist rejection without a reason", "reason", "needs a reason", func() error {
			_, err := f.p.DecideWhitelist(op, entA, WhitelistRejected, " ", []string{"13800138000"})
			return err
		}},
		{"contact number", "number", "invalid_number", func() error {
			_, err := f.p.AddContact(f.aAdmin, EnterpriseBook(entA), ContactInput{Name: "甲", Number: "12345"})
			return err
		}},
		{"contact name", "name", "name", func() error {
			_, err := f.p.AddContact(f.aAdmin, EnterpriseBook(entA), ContactInput{Name: strings.Repeat("甲", maxContactNameLen+1), Number: "13800138000"})
			return err
		}},
		{"application contact mobile", "contact_mobile", "contact mobile", func() error {
			return f.p.CheckApplication(&NewApplication{GroupCode: "X1", Name: "甲", ContactMobile: "123", Package: 1, Signature: "【甲】"})
		}},
		{"application group code", "group_code", "group code", func() error {
			return f.p.CheckApplication(&NewApplication{GroupCode: "", Name: "甲", ContactMobile: "13800138000", Package: 1, Signature: "【甲】"})
		}},
		{"an amount", "", "at most 2 decimals", func() error { _, err := ParseYuan("1.234"); return err }},
		{"a signature request decided twice", "", "not pending", func() error {
			req, err := f.p.RequestSignature(f.aAdmin, entA, "【甲新】")
			if err != nil {
				return err
			}
			if _, err := f.p.DecideSignature(op, req.ID, true, ""); err != nil {
				return err
			}
			_, err = f.p.DecideSignature(op, req.ID, true, "")
			return err
		}},
		{"an address book file too long", "file", "more than 10000 rows", func() error {
			_, err := f.p.ImportContacts(f.aAdmin, EnterpriseBook(entA), strings.NewReader(strings.Repeat("甲,13800138000\n", MaxContactImportRows+2)), sheet.CSV)
			return err
		}},
	} {
		err := c.do()
		var fe *FieldError
		switch {
		case !errors.Is(err, ErrInvalid) || !errors.As(err, &fe):
			t.Errorf("%s: %v, want a FieldError (ErrInvalid)", c.name, err)
			continue
		case !strings.HasPrefix(err.Error(), "policy: invalid: ") || !strings.Contains(err.Error(), c.english):
			t.Errorf("%s: %q, want the English %q after policy: invalid:", c.name, err, c.english)
		}
		if got := FieldOf(err); got != c.field {
			t.Errorf("%s: field %q, want %q", c.name, got, c.field)
		}
		if DetailZH(err) != fe.ZH {
			t.Errorf("%s: DetailZH %q, want the FieldError's %q", c.name, DetailZH(err), fe.ZH)
		}
		wantZH(t, c.name, fe.ZH)
	}
}

// TestUserCapFieldError: the user cap is still ErrUserCap (and
// ErrInvalid), now with its Chinese.
func TestUserCapFieldError(t *testing.T) {
	f := newFixture(t)
	if _, err := f.p.UpdateEnterprise(op, entA, func(e *Enterprise) error { e.MaxUsers = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, Name: "赵六", SystemID: "zhao6", Password: "secret9"})
	if !errors.Is(err, ErrUserCap) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("a third user with a cap of 2: %v, want ErrUserCap", err)
	}
	if want := "policy: invalid: user cap reached: enterprise " + entA + " has 2 users"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%q, want it to start %q", err, want)
	}
	wantZH(t, "user cap", DetailZH(err))
}

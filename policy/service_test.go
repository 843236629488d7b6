package policy

import (
	"errors"
	"testing"
)

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		svc, ext, given string
		extLen          int
		want            string
		bad             bool
	}{
		{svc: "", given: "10086", want: "10086"}, // no service number: relayed as before
		{svc: "", given: "", want: ""},
		{svc: "106575001", extLen: 4, given: "", want: "106575001"},
		{svc: "106575001", extLen: 4, ext: "12", given: "", want: "10657500112"},
		{svc: "106575001", extLen: 4, ext: "12", given: "106575001", want: "106575001"},
		{svc: "106575001", extLen: 4, given: "1065750019999", want: "1065750019999"},
		{svc: "106575001", extLen: 4, given: " 1065750011 ", want: "1065750011"},
		{svc: "106575001", extLen: 4, given: "10657500199999", bad: true}, // 5 digits
		{svc: "106575001", extLen: 0, given: "1065750011", bad: true},
		{svc: "106575001", extLen: 4, given: "106575002", bad: true}, // another enterprise's
		{svc: "106575001", extLen: 4, given: "10086", bad: true},
		{svc: "106575001", extLen: 4, given: "106575001ab", bad: true},
	} {
		got, err := Source(tc.svc, tc.extLen, tc.ext, tc.given)
		if tc.bad {
			if r, ok := ReasonOf(err); !ok || r != ReasonBadSource {
				t.Errorf("Source(%q, %d, %q, %q) = %q, %v; want bad_source", tc.svc, tc.extLen, tc.ext, tc.given, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Source(%q, %d, %q, %q) = %q, %v; want %q", tc.svc, tc.extLen, tc.ext, tc.given, got, err, tc.want)
		}
	}
}

func TestServiceNumbers(t *testing.T) {
	f := newFixture(t)
	set := func(code, svc string, extLen int) error {
		_, err := f.p.UpdateEnterprise(op, code, func(e *Enterprise) error {
			e.ServiceNumber, e.ExtLen = svc, extLen
			return nil
		})
		return err
	}
	for _, tc := range []struct {
		svc    string
		extLen int
	}{{"10a", 0}, {"10", 0}, {"", 2}, {"106575001", 12}, {"106575001", -1}} {
		if err := set(entA, tc.svc, tc.extLen); !errors.Is(err, ErrInvalid) {
			t.Errorf("service number %q ext_len %d: %v, want ErrInvalid", tc.svc, tc.extLen, err)
		}
	}
	if err := set(entA, "106575001", 4); err != nil {
		t.Fatal(err)
	}
	// Equal or overlapping numbers would make a reply's owner ambiguous.
	for _, svc := range []string{"106575001", "1065750", "1065750012"} {
		if err := set(entB, svc, 0); !errors.Is(err, ErrExists) {
			t.Errorf("B takes %s: %v, want ErrExists", svc, err)
		}
	}
	if err := set(entB, "106575002", 2); err != nil {
		t.Fatal(err)
	}
	ext := "12"
	if _, err := f.p.UpdateUser(f.aAdmin, "a_user", UserUpdate{Extension: &ext}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"12345", "1x"} {
		if _, err := f.p.UpdateUser(f.aAdmin, "a_admin", UserUpdate{Extension: &bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("extension %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := f.p.UpdateUser(f.aAdmin, "a_admin", UserUpdate{Extension: &ext}); !errors.Is(err, ErrExists) {
		t.Errorf("a second user with extension 12: %v, want ErrExists", err)
	}
	if err := set(entA, "106575001", 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("ext_len below a user's extension: %v, want ErrInvalid", err)
	}

	for _, tc := range []struct {
		dest string
		want ReplyOwner
		ok   bool
	}{
		{"106575001", ReplyOwner{Enterprise: entA}, true},
		{"10657500112", ReplyOwner{Enterprise: entA, Extension: "12", SystemID: "a_user"}, true},
		{"8610657500112", ReplyOwner{Enterprise: entA, Extension: "12", SystemID: "a_user"}, true},
		{"10657500113", ReplyOwner{Enterprise: entA, Extension: "13"}, true},
		{"1065750029", ReplyOwner{Enterprise: entB, Extension: "9"}, true},
		{"106575003", ReplyOwner{}, false},
		{"10086", ReplyOwner{}, false},
	} {
		got, ok := f.p.ReplyTo(tc.dest)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ReplyTo(%s) = %+v, %v; want %+v, %v", tc.dest, got, ok, tc.want, tc.ok)
		}
	}
	// The index is rebuilt from the file.
	p2 := newPolicy(t, f.db, f.clk)
	if got, _ := p2.ReplyTo("10657500112"); got.SystemID != "a_user" {
		t.Errorf("after reopen: %+v", got)
	}
	// The owner carries the enterprise's reply webhook, as it is now.
	const hook = "https://crm.example.com/replies"
	if _, err := f.p.SetReceiptHook(op, entA, func(h *ReceiptHook) error { h.ReplyURL = hook; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.p.ReplyTo("10657500112"); got.ReplyURL != hook {
		t.Errorf("with a reply_url: %+v", got)
	}
	if got, _ := f.p.ReplyTo("1065750029"); got.ReplyURL != "" {
		t.Errorf("another enterprise's: %+v", got)
	}
}

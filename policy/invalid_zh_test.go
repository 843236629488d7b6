package policy

import (
	"errors"
	"testing"
)

// The store's refusals of a request's value name the field and say the
// rule in Chinese, as the API answers them (field, detail_zh).
func TestStoreInvalidsInChinese(t *testing.T) {
	f := newFixture(t)
	_, appErr := f.p.Applications(op, "maybe", 10)
	_, sigErr := f.p.SignatureRequests(op, "", "maybe")
	_, _, curErr := f.p.ListPending(op, "not-a-cursor", 10)
	var carrier Carrier
	var role Role
	var state WhitelistState
	for _, c := range []struct {
		what, field string
		err         error
	}{
		{"override prefix", "prefix", f.p.SetOverride(op, Override{Prefix: "999", Carrier: ChinaUnicom})},
		{"override carrier", "carrier", f.p.SetOverride(op, Override{Prefix: "1370000", Carrier: numCarriers})},
		{"override province", "province", f.p.SetOverride(op, Override{Prefix: "1370000", Province: "Atlantis"})},
		{"applications state", "state", appErr},
		{"signature requests state", "state", sigErr},
		{"pending cursor", "after", curErr},
		{"a carrier's name", "carrier", carrier.UnmarshalText([]byte("moon-mobile"))},
		{"a role's name", "role", role.UnmarshalText([]byte("boss"))},
		{"a whitelist state's name", "state", state.UnmarshalText([]byte("maybe"))},
	} {
		if !errors.Is(c.err, ErrInvalid) || FieldOf(c.err) != c.field || DetailZH(c.err) == "" {
			t.Errorf("%s: %v (field %q, zh %q), want invalid about %q with its Chinese", c.what, c.err, FieldOf(c.err), DetailZH(c.err), c.field)
		}
	}
}

package gateway

import (
	"errors"

	"github.com/qxtd/qxtd/policy"
)

// Rules adapts the policy package to the gateway: accounts, signatures,
// whitelist, scope, package quota and rate limits. Its refusals are the
// policy package's *Refusal values; the SMPP and HTTP layers turn them
// into command_status and JSON.
type Rules struct{ P *policy.Policy }

var _ Policy = Rules{}

// Authenticate implements Policy.
func (r Rules) Authenticate(systemID, password string) (*Account, error) {
	u, ent, err := r.P.Authenticate(systemID, password)
	if err != nil {
		if errors.Is(err, policy.ErrAuth) {
			return nil, ErrAuth
		}
		return nil, err
	}
	return AccountFor(u, ent), nil
}

// Prepare implements Policy with the enterprise as it is now.
func (r Rules) Prepare(acct *Account) (*Account, int64, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return nil, 0, policy.NewRefusal(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise+" no longer exists")
	}
	if err := r.P.CheckEnterprise(ent); err != nil {
		return nil, 0, err
	}
	a := *acct
	a.Signature = ent.Signature
	return &a, r.P.Limit(ent), nil
}

// Allow implements Policy with the enterprise's token bucket.
func (r Rules) Allow(acct *Account) error {
	if !r.P.Allow(acct.Enterprise) {
		return policy.NewRefusal(policy.ReasonRateLimited, "")
	}
	return nil
}

// Admit implements Policy: the SMSC gets the national number (11 digits).
func (r Rules) Admit(acct *Account, dest string) (Recipient, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return Recipient{}, policy.NewRefusal(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise)
	}
	c, err := r.P.CheckRecipient(ent, dest)
	if err != nil {
		return Recipient{}, err
	}
	return Recipient{Number: c.National, Carrier: c.Carrier.String()}, nil
}

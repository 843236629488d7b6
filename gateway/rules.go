package gateway

import (
	"errors"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/policy"
)

// Rules adapts the policy package to the gateway: accounts, signatures,
// whitelist, scope, package quota and rate limits, with policy refusals
// turned into wire statuses.
type Rules struct{ P *policy.Policy }

var _ Policy = Rules{}

// Authenticate implements Policy.
func (r Rules) Authenticate(systemID, password string) (*Account, error) {
	u, ent, err := r.P.Authenticate(systemID, password)
	if err != nil {
		if errors.Is(err, policy.ErrAuth) {
			return nil, ErrAuth
		}
		return nil, refusal(err)
	}
	return account(u, ent), nil
}

func account(u *policy.User, ent *policy.Enterprise) *Account { return AccountFor(u, ent) }

// Prepare implements Policy with the enterprise as it is now.
func (r Rules) Prepare(acct *Account) (*Account, int64, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return nil, 0, refusal(policy.NewRefusal(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise+" no longer exists"))
	}
	if err := r.P.CheckEnterprise(ent); err != nil {
		return nil, 0, refusal(err)
	}
	if !r.P.Allow(ent.Code) {
		return nil, 0, refusal(policy.NewRefusal(policy.ReasonRateLimited, ""))
	}
	a := *acct
	a.Signature = ent.Signature
	return &a, r.P.Limit(ent), nil
}

// Admit implements Policy: the SMSC gets the national number (11 digits).
func (r Rules) Admit(acct *Account, dest string) (Recipient, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return Recipient{}, refusal(policy.NewRefusal(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise))
	}
	c, err := r.P.CheckRecipient(ent, dest)
	if err != nil {
		return Recipient{}, refusal(err)
	}
	return Recipient{Number: c.National, Carrier: c.Carrier.String()}, nil
}

// refusal turns a policy refusal into the gateway's, keeping its reason
// string and status; anything else is an internal error.
func refusal(err error) error {
	reason, ok := policy.ReasonOf(err)
	if !ok {
		return err
	}
	detail := ""
	var pr *policy.Refusal
	if errors.As(err, &pr) {
		detail = pr.Detail
	}
	return &Refusal{Status: pdu.Status(reason.Status()), Reason: reason.String(), Detail: detail}
}

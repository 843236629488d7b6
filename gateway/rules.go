package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Rules adapts the policy package to the gateway: accounts, signatures,
// whitelist, scope, package quota and rate limits. Its refusals are the
// policy package's *Refusal values; the SMPP and HTTP layers turn them
// into command_status and JSON. Auth, when set, fronts the password
// check of SMPP binds (AuthCache: remembered credentials, fair queueing).
type Rules struct {
	P    *policy.Policy
	Auth *AuthCache
}

var (
	_ Policy            = Rules{}
	_ BindAuthenticator = Rules{}
	_ DistributionLists = Rules{}
	_ CarrierLookup     = Rules{}
	_ Stops             = Rules{}
	_ Disabling         = Rules{}
	_ Holds             = Rules{}
)

// CarrierOf implements CarrierLookup: the carrier the policy's number
// classification gives (Admit's), "" if it cannot read the number.
func (r Rules) CarrierOf(number string) string {
	c, err := r.P.Classify(number)
	if err != nil {
		return ""
	}
	return c.Carrier.String()
}

// ListNumbers implements DistributionLists: the group of that name in the
// account's personal address book, else in its enterprise's (the book
// every user of the enterprise reads), as the console's and the HTTP
// API's group sends read them.
func (r Rules) ListNumbers(acct *Account, name string) ([]string, error) {
	u, err := r.P.User(policy.OperatorActor("smpp"), acct.SystemID)
	if err != nil {
		return nil, fmt.Errorf("distribution list of %s: %w", acct.SystemID, err)
	}
	for _, b := range []policy.Book{policy.PersonalBook(u), policy.EnterpriseBook(u.Enterprise)} {
		numbers, err := r.P.GroupNumbers(policy.ActorFor(u), b, []string{name})
		if errors.Is(err, policy.ErrInvalid) {
			continue // no contact in that group of this book
		}
		if err != nil {
			return nil, fmt.Errorf("distribution list %q: %w", name, err)
		}
		return numbers, nil
	}
	return nil, ErrNoList
}

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

// AuthenticateBind implements BindAuthenticator: through Auth when set;
// without it, a bind whose connection already closed is still dropped
// before the password check.
func (r Rules) AuthenticateBind(ctx context.Context, remoteIP, systemID, password string) (*Account, error) {
	if r.Auth == nil {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w (%w)", ErrBindAbandoned, err)
		}
		return r.Authenticate(systemID, password)
	}
	return r.Auth.authenticate(ctx, remoteIP, systemID, password, r.Authenticate, r.credentialVersion)
}

// credentialVersion is the state a remembered bind depends on, read from
// the policy's in-memory snapshot (no bcrypt, no disk): every change of a
// user or an enterprise updates its UpdatedAt. false: the user or its
// enterprise is gone or disabled.
func (r Rules) credentialVersion(systemID string) (credentialVersion, bool) {
	u, err := r.P.User(policy.OperatorActor("auth-cache"), systemID)
	if err != nil {
		return credentialVersion{}, false
	}
	ent, ok := r.P.Lookup(u.Enterprise)
	if !ok || ent.Disabled {
		return credentialVersion{}, false
	}
	return credentialVersion{user: u.UpdatedAt, enterprise: ent.UpdatedAt, code: ent.Code}, true
}

// LongRepliesOf implements ReplyFormats from the policy's in-memory
// snapshot (no disk): a lookup a reply.
func (r Rules) LongRepliesOf(systemID string) (string, bool) {
	u, err := r.P.User(policy.OperatorActor("gateway"), systemID)
	if err != nil {
		return "", false
	}
	return u.LongReplies, true
}

// StopReason implements Stops from the policy's snapshot in memory.
func (r Rules) StopReason(enterprise, number string, accepted time.Time) (policy.Reason, bool) {
	return r.P.StopReason(enterprise, number, accepted)
}

// UserStopped implements UserStops from the policy's users in memory;
// the daemon's own account (SystemAccount) is no user's.
func (r Rules) UserStopped(enterprise, account string) bool {
	return account != SystemAccount && r.P.UserStopped(enterprise, account)
}

// Held implements Holds from the policy's enterprises in memory.
func (r Rules) Held(fn func(enterprise string, dropped time.Time)) { r.P.Held(fn) }

// Disabled implements Disabling from the policy's enterprises in memory.
func (r Rules) Disabled(enterprise string) bool { return r.P.Disabled(enterprise) }

// SystemAccount is the account qxtd's own messages (password resets, the
// first password of an approved application) are sent as: no policy user
// has to exist for it.
const SystemAccount = "qxtd-system"

// Prepare implements Policy with the enterprise and the user as they are
// now: a user disabled, deleted or moved since its bind (or since its API
// key was checked) sends nothing more.
func (r Rules) Prepare(acct *Account) (*Account, int64, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return nil, 0, policy.NewRefusalZH(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise+" no longer exists", "企业 "+acct.Enterprise+" 已不存在")
	}
	if err := r.P.CheckEnterprise(ent); err != nil {
		return nil, 0, err
	}
	a := *acct
	if acct.SystemID != SystemAccount {
		u, err := r.P.User(policy.OperatorActor("gateway"), acct.SystemID)
		switch {
		case err != nil || u.Enterprise != acct.Enterprise:
			return nil, 0, policy.NewRefusalZH(policy.ReasonAccountDisabled, "user "+acct.SystemID+" no longer exists", "用户 "+acct.SystemID+" 已不存在")
		case u.Disabled:
			return nil, 0, policy.NewRefusalZH(policy.ReasonAccountDisabled, "user "+acct.SystemID, "用户 "+acct.SystemID+" 已停用")
		}
		// The user's own settings as they are now, as the enterprise's
		// below: an ESME bound for weeks gets a changed user signature
		// or extension with its next message, not at its next bind.
		a.UserSignature, a.Extension, a.LongReplies = userSignature(u), u.Extension, u.LongReplies
	}
	a.Signature = ent.Signature
	a.ServiceNumber, a.ExtLen = ent.ServiceNumber, ent.ExtLen
	return &a, r.P.Limit(ent), nil
}

// Allow implements Policy with the enterprise's token bucket.
func (r Rules) Allow(acct *Account) error {
	if !r.P.Allow(acct.Enterprise) {
		// The rate, so that a refused sender is told how fast it may go.
		tps := strconv.Itoa(r.P.TPS(acct.Enterprise))
		return policy.NewRefusalZH(policy.ReasonRateLimited, "the enterprise's limit: "+tps+" a second", "本企业每秒最多提交 "+tps+" 次")
	}
	return nil
}

// Admit implements Policy: the SMSC gets the national number (11 digits).
func (r Rules) Admit(acct *Account, dest string) (Recipient, error) {
	ent, ok := r.P.Lookup(acct.Enterprise)
	if !ok {
		return Recipient{}, policy.NewRefusalZH(policy.ReasonAccountDisabled, "enterprise "+acct.Enterprise, "企业 "+acct.Enterprise+" 已不存在")
	}
	c, err := r.P.CheckRecipient(ent, dest)
	if err != nil {
		return Recipient{}, err
	}
	return Recipient{Number: c.National, Carrier: c.Carrier.String()}, nil
}

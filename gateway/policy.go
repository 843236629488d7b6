package gateway

import (
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Account is the sender behind a bind or an API call, as the gateway
// needs it: who owns the messages, who pays, what signs them.
type Account struct {
	SystemID      string // owner of messages and receipts
	Enterprise    string // billing owner
	Signature     string // enterprise signature, e.g. 【某某公司】; "" = none
	UserSignature string // appended when the user's name is shown
	ReceiptURL    string // the enterprise's receipt webhook for HTTP sends; "" = none
	// ServiceNumber, ExtLen and Extension decide the source of its
	// messages (policy.Source): the enterprise's service number (接入号,
	// "" = none: sources relayed as given), the extension digits a
	// message may add, the user's own extension.
	ServiceNumber string
	ExtLen        int
	Extension     string
	// LongReplies is how a reply too long for one SMS goes to this
	// account's binds (policy.User.LongReplies): "" whole in
	// message_payload, or "udh8", "udh16", "sar" in parts.
	LongReplies string
}

// Policy is the operator's rules as the gateway sees them. Rules adapts
// the policy package; StaticAccounts is the minimal one for protocol tests.
type Policy interface {
	// Authenticate checks SMPP credentials: ErrAuth (or a *policy.Refusal)
	// if wrong.
	Authenticate(systemID, password string) (*Account, error)
	// Prepare is called once per submission: the account as it is now
	// (signatures may have changed since the bind) and the most segments
	// the enterprise may have reserved plus charged this month (-1: no
	// limit), or a *policy.Refusal (disabled, no signature).
	Prepare(acct *Account) (*Account, int64, error)
	// Allow takes one token of the enterprise's submission rate limit or
	// refuses (rate_limited). Every new submission pays one (a submit_sm,
	// each part of a message the ESME split, an HTTP request, a
	// replace_sm); a message joined from its parts pays none again.
	Allow(acct *Account) error
	// Admit checks one recipient and returns it as it goes to the SMSC,
	// or a *policy.Refusal.
	Admit(acct *Account, dest string) (Recipient, error)
}

// DistributionLists is the optional part of a Policy that resolves the
// distribution list names of submit_multi (dest_flag 2): an address-book
// group of the account. Rules implements it; without it every list name
// is refused ESME_RINVDLNAME.
type DistributionLists interface {
	// ListNumbers returns the numbers of list name of acct, or ErrNoList.
	ListNumbers(acct *Account, name string) ([]string, error)
}

// CarrierLookup is the optional part of a Policy that tells a stored
// number's carrier without admitting it again (the Carrier Admit gave it
// when it was accepted): moveQueued routes a queued message where a new
// one to its number would go. Rules implements it; without it every
// number's carrier is "" (served by the upstreams that list none).
type CarrierLookup interface {
	CarrierOf(number string) string
}

// ReplyFormats is the optional part of a Policy that tells how an
// account takes long replies now (Account.LongReplies): a user's
// long_replies changed by the operator applies to the next reply to its
// binds, not only once the ESME binds again (an ESME bound for weeks
// would otherwise go on getting replies in a form it cannot read). Rules
// implements it; without it a bind keeps the form its account had at
// the bind.
type ReplyFormats interface {
	// LongRepliesOf is systemID's long_replies as it is now; false: the
	// user is gone (the bind's own form stands).
	LongRepliesOf(systemID string) (string, bool)
}

// Stops is the optional part of a Policy that says whether a message
// accepted earlier must no longer go, as a new one to its number would be
// refused, and why: the number is out of the enterprise's scope since the
// operator withdrew a grant (全网发送, 外网发送), opted out (回复TD) of its
// messages since, or is no approved entry of its whitelist now (taken
// off, its entry rejected: a customer who says he never agreed). A
// scheduled campaign, a retry or a message queued behind a down upstream
// is then not sent to the customer (upstream.send). Rules implements it;
// without it every accepted message goes.
type Stops interface {
	// StopReason is asked before each part goes to the SMSC, with the
	// number as the stored message holds it and when the message was
	// accepted: it must not touch the disk.
	StopReason(enterprise, number string, accepted time.Time) (policy.Reason, bool)
}

// UserStops is the optional part of a Policy that says whether the user
// a message was accepted from may no longer send it: disabled by its
// enterprise's admin (an employee who left, an account abused), deleted,
// or moved since. Its parts not yet sent are failed rejected
// account_disabled, as a new message of the user would be refused (a
// scheduled one due after the user is enabled again goes). Rules
// implements it.
type UserStops interface {
	// UserStopped is asked before each part goes to the SMSC, beside
	// StopReason: it must not touch the disk.
	UserStopped(enterprise, account string) bool
}

// Disabling is the optional part of a Policy that says whether the
// operator has disabled an enterprise: its messages accepted before, and
// not yet sent, wait in the store until it is enabled again (the
// dispatcher passes them by: dispatcher.unsendable, queue.DueQuery.Hold;
// a part taken just before is given back by upstream.send), rather than going to
// customers on behalf of an enterprise stopped for spam complaints or
// arrears. Rules implements it; without it every accepted message goes.
type Disabling interface {
	// Disabled reports whether the enterprise is disabled now. The
	// dispatcher asks it of every enterprise with parts due at each scan
	// and of each part it sends: it must not touch the disk.
	Disabled(enterprise string) bool
}

// Holds is the optional part of a Policy that names the disabled
// enterprises (Disabling), each with when the operator dropped the
// messages it holds (policy's DropHeld; zero: not dropped). Housekeeping
// fails what this node's store holds of a dropped one, rejected
// account_disabled, and the others' parts whose validity ended, expired,
// since no worker takes them to find it (maintain.go). Rules implements
// it; without it held messages wait until the enterprise is enabled again.
type Holds interface {
	Held(fn func(enterprise string, dropped time.Time))
}

// ErrNoList is a distribution list name that names no list.
var ErrNoList = errors.New("gateway: no such distribution list")

// Recipient is an admitted destination: the number as the SMSC gets it
// and its carrier (policy.Carrier names: china_mobile, china_unicom, …;
// "" when unknown), which picks the upstream.
type Recipient struct {
	Number  string
	Carrier string
}

// ErrAuth is a failed authentication.
var ErrAuth = errors.New("gateway: authentication failed")

// StaticAccount is one account of StaticAccounts.
type StaticAccount struct {
	Account
	Password string
}

// StaticAccounts is a Policy with fixed accounts, no whitelist, no scope
// and no quota: the demo and protocol tests use it.
type StaticAccounts map[string]StaticAccount

// Authenticate implements Policy.
func (s StaticAccounts) Authenticate(systemID, password string) (*Account, error) {
	a, ok := s[systemID]
	if !ok || subtle.ConstantTimeCompare([]byte(a.Password), []byte(password)) != 1 {
		return nil, ErrAuth
	}
	acct := a.Account
	if acct.SystemID == "" {
		acct.SystemID = systemID
	}
	if acct.Enterprise == "" {
		acct.Enterprise = systemID
	}
	return &acct, nil
}

// Admit implements Policy: any non-empty address of digits (and a leading +).
func (StaticAccounts) Admit(_ *Account, dest string) (Recipient, error) {
	d := strings.TrimPrefix(strings.TrimSpace(dest), "+")
	if d == "" || strings.Trim(d, "0123456789") != "" {
		return Recipient{}, policy.NewRefusal(policy.ReasonInvalidNumber, dest)
	}
	return Recipient{Number: d}, nil
}

// Prepare implements Policy: no limits.
func (StaticAccounts) Prepare(a *Account) (*Account, int64, error) { return a, -1, nil }

// Allow implements Policy: no rate limit.
func (StaticAccounts) Allow(*Account) error { return nil }

var _ Policy = StaticAccounts(nil)

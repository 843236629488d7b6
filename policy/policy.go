package policy

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Config configures a Policy. Only cmd/ reads configuration files; it fills
// this and passes it in.
type Config struct {
	HomeProvince    string       // "广东省" (also "广东", "Guangdong"); "" = 广东省
	Packages        PackageTable // nil: DefaultPackages()
	DefaultTPS      int          // for enterprises with TPS 0; 0: DefaultTPS
	BcryptCost      int          // 0: DefaultBcryptCost
	AuthConcurrency int          // 0: max(1, GOMAXPROCS/2)
	MaxImportRows   int          // 0: 100,000
	// Whitelist entries per enterprise, in any state and pending (0:
	// DefaultMaxWhitelist, DefaultMaxPendingWhitelist).
	MaxWhitelist        int
	MaxPendingWhitelist int
	// The numbers an enterprise may put on its opt-out list itself (0:
	// DefaultMaxOptOuts).
	MaxOptOuts int
	Now        func() time.Time
	// Shared makes the policy data shared by the nodes of a cluster
	// (StoreOptions.Shared; cluster.Replica). nil: single node.
	Shared Committer
	// Write: StoreOptions.Write.
	Write func(ctx context.Context, fn func(tx *bolt.Tx) error) error
}

// Policy is the business-rule core: the account Store (embedded: its admin and
// authentication methods are Policy's), the number Classifier, the package
// table and the rate limiter.
type Policy struct {
	*Store
	home    string
	limiter *RateLimiter
}

// New opens the policy data in db (which the caller owns and closes).
func New(db *bolt.DB, cfg Config) (*Policy, error) {
	home := "广东省"
	if cfg.HomeProvince != "" {
		h, ok := NormalizeProvince(cfg.HomeProvince)
		if !ok {
			return nil, invalid("home province %q", cfg.HomeProvince)
		}
		home = h
	}
	st, err := OpenStore(db, StoreOptions{
		Packages:            cfg.Packages,
		BcryptCost:          cfg.BcryptCost,
		AuthConcurrency:     cfg.AuthConcurrency,
		MaxImportRows:       cfg.MaxImportRows,
		MaxWhitelist:        cfg.MaxWhitelist,
		MaxPendingWhitelist: cfg.MaxPendingWhitelist,
		MaxOptOuts:          cfg.MaxOptOuts,
		Now:                 cfg.Now,
		Shared:              cfg.Shared,
		Write:               cfg.Write,
	})
	if err != nil {
		return nil, err
	}
	return &Policy{Store: st, home: home, limiter: NewRateLimiter(st, cfg.DefaultTPS, cfg.Now)}, nil
}

// HomeProvince returns the full name of the home province.
func (p *Policy) HomeProvince() string { return p.home }

// CheckEnterprise refuses a disabled enterprise (account_disabled) and one
// without an enterprise signature (no_signature). Call it per submission with
// a fresh Lookup, since the operator may change either at any time.
func (p *Policy) CheckEnterprise(ent *Enterprise) error {
	if ent.Disabled {
		return refuseZH(ReasonAccountDisabled, "enterprise "+ent.Code, "企业 "+ent.Code+" 已停用")
	}
	if ent.Signature == "" {
		return refuseZH(ReasonNoSignature, "enterprise "+ent.Code, "企业 "+ent.Code)
	}
	return nil
}

// CheckRecipient is the per-recipient check of the sending path, from memory
// only: invalid_number (not a Chinese mobile), scope_national / scope_offnet
// (grants), then opted_out (the number replied TD to this enterprise), then
// not_whitelisted (not an approved entry; the Detail says whether it is
// pending, rejected or absent). The opt-out comes before the whitelist: the
// handset's own wish is the more useful answer, and it binds enterprises
// without a whitelist too. The Class is returned in every
// case where the number could be read, for logs and HTTP answers.
func (p *Policy) CheckRecipient(ent *Enterprise, number string) (Class, error) {
	c, err := p.cls.Classify(number)
	if err != nil {
		return c, err
	}
	if err := ScopeCheck(c, ent.Grants(), p.home); err != nil {
		return c, err
	}
	if p.OptedOut(ent.Code, c.E164) {
		return c, refuseZH(ReasonOptedOut, c.E164+": unsubscribed (退订: a reply of TD, or asked another way and added to the list); the enterprise's admins may remove it once the customer agrees",
			c.E164+"：已退订（回复了 TD，或通过其他方式要求退订而被加入退订名单）；客户同意再次接收后，企业管理员可将其移出退订名单")
	}
	if ent.NoWhitelist {
		return c, nil
	}
	st, why, ok := p.whitelistInfo(ent.Code, c.E164)
	if ok && st == WhitelistApproved {
		return c, nil
	}
	return c, refuseZH(ReasonNotWhitelisted, WhitelistDetail(c.E164, st, why, ok), WhitelistDetailZH(c.E164, st, why, ok))
}

// scopeSettle is how long after a grant is withdrawn (ScopeNarrowed) a
// message accepted may still have been admitted under the grant: the
// policy's clock is cut to the second, and in a cluster another node
// applies the change a moment later, its clock its own. Messages accepted
// within it are checked again; checking one admitted under the narrower
// scope costs a lookup and finds it in scope.
const scopeSettle = time.Minute

// StopReason says whether a message the enterprise code had accepted for
// national (11 digits, as a stored message holds the number) at accepted
// must no longer go, as a new one to the number would be refused, and
// why, in CheckRecipient's order: out of the enterprise's scope since the
// operator withdrew a grant, changed the number overrides (a number
// ported to another carrier) or started the daemon with another home
// province (scope_national, scope_offnet), opted out
// (opted_out), or no approved entry of its whitelist now (not_whitelisted:
// taken off, rejected, or the enterprise's no_whitelist withdrawn). The
// gateway asks it before each part goes to the SMSC: from memory, one
// look at the snapshot, and a classification of the number only for a
// message accepted before a grant was withdrawn, the overrides changed
// or the daemon started. An unknown enterprise
// (the operator's own notifications are sent as one that exists) or a
// number it cannot read is not stopped: it was admitted once.
func (p *Policy) StopReason(code, national string, accepted time.Time) (Reason, bool) {
	n, ok := parseNational(national)
	if !ok {
		return 0, false
	}
	snap := p.snap.Load()
	es := snap.ents[code]
	if es == nil {
		return 0, false
	}
	nw, ov := es.ent.ScopeNarrowed, p.classChanged.Load()
	if !nw.IsZero() && accepted.Before(nw.Add(scopeSettle)) || ov != 0 && accepted.Before(time.Unix(0, ov).Add(scopeSettle)) {
		if c, err := p.cls.Classify(national); err == nil {
			if r, ok := ReasonOf(ScopeCheck(c, es.ent.Grants(), p.home)); ok && (r == ReasonScopeNational || r == ReasonScopeOffNet) {
				return r, true
			}
		}
	}
	if snap.opt[code].has(n) {
		return ReasonOptedOut, true
	}
	if es.ent.NoWhitelist {
		return 0, false
	}
	if st, ok := es.wl[n]; !ok || st != WhitelistApproved {
		return ReasonNotWhitelisted, true
	}
	return 0, false
}

// UserStopped says whether the user systemID, who had a message of
// enterprise code accepted, may no longer send it, as a new one of it
// would be refused (account_disabled): disabled since, deleted, or moved
// to another enterprise. The gateway asks it before each part goes to the
// SMSC, beside StopReason: from memory, one look at the snapshot. The
// caller leaves out accounts that are no user's (the daemon's own
// notifications): here every account is a user's, or was.
func (p *Policy) UserStopped(code, systemID string) bool {
	rec := p.snap.Load().bySID[systemID]
	return rec == nil || rec.Disabled || rec.Enterprise != code
}

// Classify reads a number as CheckRecipient does (its carrier, province
// and forms), and checks nothing else: for a number admitted before.
func (p *Policy) Classify(number string) (Class, error) { return p.cls.Classify(number) }

// WhitelistDetail is the Detail of a not_whitelisted refusal of e164:
// absent (ok false), pending (awaits approval), or rejected (with the
// account manager's reason).
func WhitelistDetail(e164 string, st WhitelistState, why string, ok bool) string {
	switch {
	case !ok:
		return e164 + ": not on the whitelist"
	case st == WhitelistPending:
		return e164 + ": whitelist entry pending, awaits the account manager's approval"
	case st == WhitelistRejected && why != "":
		return e164 + ": whitelist entry rejected by the account manager: " + why
	}
	return e164 + ": whitelist entry " + st.String()
}

// WhitelistDetailZH is WhitelistDetail in Chinese.
func WhitelistDetailZH(e164 string, st WhitelistState, why string, ok bool) string {
	switch {
	case !ok:
		return e164 + "：不在白名单中"
	case st == WhitelistPending:
		return e164 + "：白名单待审批，客户经理通过后才能发送"
	case st == WhitelistRejected && why != "":
		return e164 + "：白名单申请被客户经理拒绝：" + why
	case st == WhitelistRejected:
		return e164 + "：白名单申请被客户经理拒绝"
	}
	return e164 + "：白名单状态 " + st.String()
}

// UserSignatureSeparator goes between the text and a shown user signature
// (the gateway appends it with the user's registered name; segment.Sign
// puts the signatures on the text).
const UserSignatureSeparator = "——"

// Limit returns Limit(ent, the configured packages): the monthly segment limit
// to pass to the queue, -1 for none.
func (p *Policy) Limit(ent *Enterprise) int64 { return Limit(ent, p.opts.Packages) }

// Bill computes an enterprise's bill for a month from its delivered
// segments, with the package in force in that month (Enterprise.PackageIn).
func (p *Policy) Bill(ent *Enterprise, month string, delivered int64) (Bill, error) {
	id := ent.PackageIn(month)
	pkg, ok := p.opts.Packages.Lookup(id)
	if !ok {
		return Bill{}, invalid("enterprise %s: package %d (in force in %s) is not in the package table", ent.Code, id, month)
	}
	return ComputeBill(month, pkg, delivered), nil
}

// Allow takes one token of the enterprise's rate limit (false → rate_limited,
// ESME_RTHROTTLED).
func (p *Policy) Allow(code string) bool { return p.limiter.Allow(code) }

// TPS is the enterprise's submission rate (RateLimiter.TPS).
func (p *Policy) TPS(code string) int { return p.limiter.TPS(code) }

// AllowN takes n tokens of the enterprise's rate limit.
func (p *Policy) AllowN(code string, n int) bool { return p.limiter.AllowN(code, n) }

// SetNodes shares every enterprise's TPS among n live cluster nodes
// (RateLimiter.SetNodes).
func (p *Policy) SetNodes(n int) { p.limiter.SetNodes(n) }

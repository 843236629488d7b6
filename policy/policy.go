package policy

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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
	Now             func() time.Time
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
		Packages:        cfg.Packages,
		BcryptCost:      cfg.BcryptCost,
		AuthConcurrency: cfg.AuthConcurrency,
		MaxImportRows:   cfg.MaxImportRows,
		Now:             cfg.Now,
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
		return refuse(ReasonAccountDisabled, "enterprise "+ent.Code)
	}
	if ent.Signature == "" {
		return refuse(ReasonNoSignature, "enterprise "+ent.Code)
	}
	return nil
}

// CheckRecipient is the per-recipient check of the sending path, from memory
// only: invalid_number (not a Chinese mobile), scope_national / scope_offnet
// (grants), then not_whitelisted (not an approved entry; the Detail says
// whether it is pending, rejected or absent). The Class is returned in every
// case where the number could be read, for logs and HTTP answers.
func (p *Policy) CheckRecipient(ent *Enterprise, number string) (Class, error) {
	c, err := p.cls.Classify(number)
	if err != nil {
		return c, err
	}
	if err := ScopeCheck(c, ent.Grants(), p.home); err != nil {
		return c, err
	}
	if ent.NoWhitelist {
		return c, nil
	}
	st, ok := p.WhitelistStatus(ent.Code, c.E164)
	if ok && st == WhitelistApproved {
		return c, nil
	}
	detail := c.E164 + ": not on the whitelist"
	if ok {
		detail = c.E164 + ": whitelist entry " + st.String()
	}
	return c, refuse(ReasonNotWhitelisted, detail)
}

// MaxMessageChars is the longest message, signatures included (FAQ 20).
const MaxMessageChars = 500

// CheckLength refuses a signed text (see SignedText) longer than
// MaxMessageChars characters (Unicode code points) with too_long.
func CheckLength(signed string) error {
	if n := utf8.RuneCountInString(signed); n > MaxMessageChars {
		return refuse(ReasonTooLong, fmt.Sprintf("%d characters, at most %d", n, MaxMessageChars))
	}
	return nil
}

// CheckContent refuses binary content (binary_refused): data_coding 8-bit
// binary (0x02, 0x04; message-class codings 0xF4–0xF7 and 0xFC–0xFF; GSM
// general codings 0x10–0x3F with the 8-bit alphabet), and a user data header
// (udh, including its length octet, when esm_class has UDHI) with application
// port addressing (IEI 0x04/0x05: WAP push, MMS notifications, ringtones) or
// that cannot be parsed. Concatenation IEs (0x00, 0x08) are fine.
func CheckContent(dataCoding byte, udh []byte) error {
	switch {
	case dataCoding == 0x02 || dataCoding == 0x04:
		return refuse(ReasonBinaryRefused, fmt.Sprintf("data_coding 0x%02X is 8-bit binary", dataCoding))
	case dataCoding&0xF0 == 0xF0 && dataCoding&0x04 != 0:
		return refuse(ReasonBinaryRefused, fmt.Sprintf("data_coding 0x%02X is 8-bit data", dataCoding))
	case dataCoding >= 0x10 && dataCoding <= 0x3F && dataCoding>>2&0x03 == 0x01:
		return refuse(ReasonBinaryRefused, fmt.Sprintf("data_coding 0x%02X is 8-bit data", dataCoding))
	}
	if len(udh) == 0 {
		return nil
	}
	if int(udh[0])+1 != len(udh) {
		return refuse(ReasonBinaryRefused, "malformed user data header")
	}
	for i := 1; i < len(udh); {
		if i+1 >= len(udh) || i+2+int(udh[i+1]) > len(udh) {
			return refuse(ReasonBinaryRefused, "malformed user data header")
		}
		if iei := udh[i]; iei == 0x04 || iei == 0x05 {
			return refuse(ReasonBinaryRefused, "application port addressing (WAP push / MMS)")
		}
		i += 2 + int(udh[i+1])
	}
	return nil
}

// UserSignatureSeparator goes between the text and a shown user signature.
const UserSignatureSeparator = "——"

// SignedText returns the text as it goes on the air: the enterprise signature
// first (not doubled if the text already starts with it), then the text, then
// — if the user's ShowSignature is on — UserSignatureSeparator and the user's
// registered name. Signatures count toward the length and the segments.
func SignedText(ent *Enterprise, u *User, text string) string {
	var b strings.Builder
	if !strings.HasPrefix(text, ent.Signature) {
		b.WriteString(ent.Signature)
	}
	b.WriteString(text)
	if u != nil && u.ShowSignature {
		b.WriteString(UserSignatureSeparator)
		b.WriteString(u.Name)
	}
	return b.String()
}

// Limit returns Limit(ent, the configured packages): the monthly segment limit
// to pass to the queue, -1 for none.
func (p *Policy) Limit(ent *Enterprise) int64 { return Limit(ent, p.opts.Packages) }

// Bill computes an enterprise's bill for a month from its delivered segments.
func (p *Policy) Bill(ent *Enterprise, month string, delivered int64) (Bill, error) {
	pkg, ok := p.opts.Packages.Lookup(ent.Package)
	if !ok {
		return Bill{}, invalid("enterprise %s: package %d is not in the package table", ent.Code, ent.Package)
	}
	return ComputeBill(month, pkg, delivered), nil
}

// Allow takes one token of the enterprise's rate limit (false → rate_limited,
// ESME_RTHROTTLED).
func (p *Policy) Allow(code string) bool { return p.limiter.Allow(code) }

// AllowN takes n tokens of the enterprise's rate limit.
func (p *Policy) AllowN(code string, n int) bool { return p.limiter.AllowN(code, n) }

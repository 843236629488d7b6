package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Enterprises (集团): the records the operator keeps.

// Enterprise is a customer (集团), keyed by its group code. Every field is set
// by the operator.
type Enterprise struct {
	Code      string `json:"code"`      // group code (集团编码), the key
	Name      string `json:"name"`      // display name
	Signature string `json:"signature"` // the one enterprise signature, "【某某公司】"; "" = not yet set: sending refused (no_signature)
	Package   int    `json:"package"`   // PackageTable ID
	National  bool   `json:"national"`  // 全网发送
	OffNet    bool   `json:"offnet"`    // 外网发送
	CapFen    int64  `json:"cap_fen"`   // monthly spending cap in fen, 0 = none
	NoOverage bool   `json:"no_overage"`
	TPS       int    `json:"tps"` // submissions per second, 0 = Config.DefaultTPS
	Disabled  bool   `json:"disabled"`
	// HeldDropped: when the operator dropped the messages the enterprise
	// had waiting while disabled (DropHeld): every node fails those of
	// its store not yet sent (the gateway's housekeeping), for as long as
	// the enterprise stays disabled. Zero: none dropped; enabling the
	// enterprise clears it.
	HeldDropped time.Time `json:"held_dropped,omitzero"`
	// ScopeNarrowed: when the operator last withdrew a grant (National or
	// OffNet): the enterprise's messages accepted before it and not yet
	// sent are checked against its scope again when their turn comes
	// (Policy.StopReason). Set by the store; zero: never withdrawn.
	ScopeNarrowed time.Time `json:"scope_narrowed,omitzero"`
	// NoWhitelist exempts the enterprise from the whitelist (an operator
	// grant for the operator's own notification accounts, load tests and
	// demos); scope rules still apply.
	NoWhitelist bool `json:"no_whitelist"`
	// MaxUsers caps the users an enterprise admin may have in its
	// enterprise (0 = DefaultMaxUsers); the operator is not held to it.
	MaxUsers int `json:"max_users,omitempty"`
	// Receipt is where the final receipts of the enterprise's HTTP sends
	// are POSTed (package webhook) and the secret they are signed with.
	Receipt ReceiptHook `json:"receipt,omitzero"`
	// ServiceNumber is the enterprise's service number (接入号, e.g.
	// "106575000001"), the source of all its messages and where replies
	// come back; "" = none: sources are relayed as given (the behaviour
	// before service numbers). ExtLen is the most extension digits a
	// message may append to it (0 = none). See Source.
	ServiceNumber string `json:"service_number,omitempty"`
	ExtLen        int    `json:"ext_len,omitempty"`
	// PackageHistory is the package in force from each month on, oldest
	// first; the store keeps it (what callers put there is ignored). Bills
	// of a month use the package in force in that month (PackageIn).
	PackageHistory []PackageChange `json:"package_history,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// DefaultMaxUsers is the cap on an enterprise's users when the operator set
// none (Enterprise.MaxUsers 0); MaxUsersLimit is the highest cap.
const (
	DefaultMaxUsers = 50
	MaxUsersLimit   = 10_000
)

// UserCap returns the most users an enterprise admin may have.
func (e *Enterprise) UserCap() int {
	if e.MaxUsers == 0 {
		return DefaultMaxUsers
	}
	return e.MaxUsers
}

// PackageChange is one entry of an enterprise's package history: Package is
// in force from the month From ("2006-01", Asia/Shanghai) on.
type PackageChange struct {
	From    string `json:"from"`
	Package int    `json:"package"`
}

// PackageIn returns the package in force in month ("2006-01"): the last
// history entry from that month or before. A month before the first entry
// gets the first entry's package; an enterprise without history (stored
// before histories were kept) its current package. A package change
// applies to the whole month it is made in: that month is billed, and its
// quota computed, with the new package; earlier months keep theirs.
func (e *Enterprise) PackageIn(month string) int {
	pkg := e.Package
	for i, c := range e.PackageHistory {
		if i > 0 && c.From > month {
			break
		}
		pkg = c.Package
	}
	return pkg
}

// notePackage records the current package in the history from the month of
// now; prev is the package before the change (0 for a new enterprise).
func (e *Enterprise) notePackage(prev int, now time.Time) {
	h := e.PackageHistory
	if len(h) == 0 && prev != 0 {
		h = []PackageChange{{From: MonthOf(e.CreatedAt), Package: prev}}
	}
	month := MonthOf(now)
	switch n := len(h); {
	case n > 0 && h[n-1].Package == e.Package:
	case n > 0 && h[n-1].From >= month:
		h[n-1].Package = e.Package
	default:
		h = append(h, PackageChange{From: month, Package: e.Package})
	}
	e.PackageHistory = h
}

// Grants returns the enterprise's scope grants.
func (e *Enterprise) Grants() Grants { return Grants{National: e.National, OffNet: e.OffNet} }

func (s *Store) validEnterprise(e *Enterprise) error {
	if err := validCode("code", e.Code); err != nil {
		return err
	}
	if err := validText(entNameField, e.Name, 1, 64); err != nil {
		return err
	}
	if err := ValidSignature(e.Signature); err != nil {
		return err
	}
	if _, ok := s.opts.Packages.Lookup(e.Package); !ok {
		return invalidField("package", fmt.Sprintf("套餐表中没有套餐 %d", e.Package), "enterprise %s: package %d is not in the package table", e.Code, e.Package)
	}
	if e.CapFen < 0 {
		return invalidField("cap_yuan", "月消费上限不能为负", "enterprise %s: negative cap", e.Code)
	}
	if e.TPS < 0 || e.TPS > 100_000 {
		return invalidField("tps", "每秒条数须为 0–100000（0：默认）", "enterprise %s: tps %d: 0–100000", e.Code, e.TPS)
	}
	if e.Receipt.URL != "" {
		if err := CheckReceiptURL("receipt_url", e.Receipt.URL); err != nil {
			return err
		}
	}
	if e.Receipt.ReplyURL != "" {
		if err := CheckReceiptURL("reply_url", e.Receipt.ReplyURL); err != nil {
			return err
		}
	}
	if e.Receipt.Batch < 0 || e.Receipt.Batch > MaxReceiptBatch {
		return invalidField("receipt_batch", fmt.Sprintf("每次推送的回执数须为 0（一次一条）–%d", MaxReceiptBatch), "enterprise %s: receipt_batch %d: 0 (one receipt a POST)–%d", e.Code, e.Receipt.Batch, MaxReceiptBatch)
	}
	if e.Receipt.ReplyBatch < 0 || e.Receipt.ReplyBatch > MaxReceiptBatch {
		return invalidField("reply_batch", fmt.Sprintf("每次推送的回复数须为 0（一次一条）–%d", MaxReceiptBatch), "enterprise %s: reply_batch %d: 0 (one reply a POST)–%d", e.Code, e.Receipt.ReplyBatch, MaxReceiptBatch)
	}
	if e.MaxUsers < 0 || e.MaxUsers > MaxUsersLimit {
		return invalidField("max_users", fmt.Sprintf("用户数上限须为 0（默认 %d）–%d", DefaultMaxUsers, MaxUsersLimit), "enterprise %s: max_users %d: 0 (default %d)–%d", e.Code, e.MaxUsers, DefaultMaxUsers, MaxUsersLimit)
	}
	return validServiceNumber(e)
}

// CreateEnterprise creates an enterprise (the operator of every enterprise
// only: a manager with a portfolio is given new ones in the configuration).
func (s *Store) CreateEnterprise(a Actor, e Enterprise) (*Enterprise, error) {
	if !a.Everywhere() {
		return nil, ErrForbidden
	}
	if err := s.validEnterprise(&e); err != nil {
		return nil, err
	}
	e.CreatedAt = s.now()
	e.UpdatedAt = e.CreatedAt
	e.PackageHistory = nil
	e.notePackage(0, e.CreatedAt)
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketEnterprises)
		if b.Get([]byte(e.Code)) != nil {
			return fmt.Errorf("%w: enterprise %s", ErrExists, e.Code)
		}
		if err := serviceNumberTaken(tx, &e); err != nil {
			return err
		}
		ch.ents = append(ch.ents, e.Code)
		return putJSON(b, e.Code, &e)
	})
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEnterprise changes an enterprise (its operator only): fn edits a copy, which
// is validated and stored. The code cannot change.
func (s *Store) UpdateEnterprise(a Actor, code string, fn func(*Enterprise) error) (*Enterprise, error) {
	if !a.Serves(code) {
		return nil, ErrForbidden
	}
	return s.updateEnterprise(code, fn)
}

// SetReceiptHook changes an enterprise's receipt webhook (its URL, secret
// and batch) and nothing else of it: the operator's to change, and the
// enterprise's own admins' (self-service: they run the endpoint the
// receipts go to). fn edits a copy, validated as UpdateEnterprise's.
func (s *Store) SetReceiptHook(a Actor, code string, fn func(*ReceiptHook) error) (*Enterprise, error) {
	if !a.admin(code) {
		return nil, ErrForbidden
	}
	return s.updateEnterprise(code, func(e *Enterprise) error { return fn(&e.Receipt) })
}

func (s *Store) updateEnterprise(code string, fn func(*Enterprise) error) (*Enterprise, error) {
	var out Enterprise
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		e, err := loadEnterprise(tx, code)
		if err != nil {
			return err
		}
		if e == nil {
			return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
		}
		created, prev, hist := e.CreatedAt, e.Package, slices.Clone(e.PackageHistory)
		was, narrowed := e.Grants(), e.ScopeNarrowed
		if err := fn(e); err != nil {
			return err
		}
		if e.Code != code {
			return invalidField("code", "集团编码不能修改", "enterprise %s: the group code cannot change", code)
		}
		if err := s.validEnterprise(e); err != nil {
			return err
		}
		if err := serviceNumberTaken(tx, e); err != nil {
			return err
		}
		if err := extensionsFit(tx, e); err != nil {
			return err
		}
		if !e.Disabled {
			e.HeldDropped = time.Time{} // enabled: what waits goes again
		}
		e.CreatedAt, e.UpdatedAt, e.PackageHistory = created, s.now(), hist
		e.ScopeNarrowed = narrowed
		if now := e.Grants(); was.National && !now.National || was.OffNet && !now.OffNet {
			e.ScopeNarrowed = e.UpdatedAt
		}
		e.notePackage(prev, e.UpdatedAt)
		ch.ents = append(ch.ents, code)
		out = *e
		return putJSON(tx.Bucket(bucketEnterprises), code, e)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Enterprise returns an enterprise to the operator or one of its members.
func (s *Store) Enterprise(a Actor, code string) (*Enterprise, error) {
	if !a.member(code) {
		return nil, ErrForbidden
	}
	e, ok := s.Lookup(code)
	if !ok {
		return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
	}
	return e, nil
}

// Enterprises lists the enterprises the actor may see (all for the operator,
// its own for an enterprise actor), sorted by code.
func (s *Store) Enterprises(a Actor) []Enterprise {
	snap := s.snap.Load()
	var out []Enterprise
	for code, es := range snap.ents {
		if a.member(code) {
			out = append(out, es.ent)
		}
	}
	slices.SortFunc(out, func(x, y Enterprise) int { return strings.Compare(x.Code, y.Code) })
	return out
}

// DropHeld drops the messages the disabled enterprise code holds (operator
// only): Enterprise.HeldDropped becomes now, and every node's gateway
// fails its messages of the enterprise still waiting to be sent, rejected
// account_disabled (not charged; their receipts go as for any refusal
// after acceptance), until the enterprise is enabled. ErrInvalid if the
// enterprise is not disabled: its messages are not held, they go.
func (s *Store) DropHeld(a Actor, code string) (*Enterprise, error) {
	return s.UpdateEnterprise(a, code, func(e *Enterprise) error {
		if !e.Disabled {
			return invalidField("", "企业 "+code+" 没有停用：它等待发送的短信没有暂停，照常发送；请先停用", "enterprise %s is not disabled: its waiting messages are not held but sent; disable it first", code)
		}
		e.HeldDropped = s.now()
		return nil
	})
}

// Held calls fn with each disabled enterprise, whose messages waiting to
// be sent are held, and when the operator dropped them
// (Enterprise.HeldDropped; zero: not dropped), from memory.
func (s *Store) Held(fn func(code string, dropped time.Time)) {
	for code, es := range s.snap.Load().ents {
		if es.ent.Disabled {
			fn(code, es.ent.HeldDropped)
		}
	}
}

// Disabled reports whether the enterprise code is disabled now, from
// memory and without a copy: the dispatcher asks it of every enterprise
// with parts due, at every scan. An unknown code is not.
func (s *Store) Disabled(code string) bool {
	es := s.snap.Load().ents[code]
	return es != nil && es.ent.Disabled
}

// Lookup returns a copy of the current enterprise record, from memory. It is
// for the daemon's own use after authentication (no actor check): refresh the
// enterprise at each submission so that grants, caps and Disabled apply at once.
func (s *Store) Lookup(code string) (*Enterprise, bool) {
	es := s.snap.Load().ents[code]
	if es == nil {
		return nil, false
	}
	e := es.ent
	return &e, true
}

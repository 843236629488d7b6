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
	// NoWhitelist exempts the enterprise from the whitelist (an operator
	// grant for the operator's own notification accounts, load tests and
	// demos); scope rules still apply.
	NoWhitelist bool      `json:"no_whitelist"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Grants returns the enterprise's scope grants.
func (e *Enterprise) Grants() Grants { return Grants{National: e.National, OffNet: e.OffNet} }

func (s *Store) validEnterprise(e *Enterprise) error {
	if err := validCode(e.Code); err != nil {
		return err
	}
	if err := validText("enterprise name", e.Name, 1, 64); err != nil {
		return err
	}
	if err := ValidSignature(e.Signature); err != nil {
		return err
	}
	if _, ok := s.opts.Packages.Lookup(e.Package); !ok {
		return invalid("enterprise %s: package %d is not in the package table", e.Code, e.Package)
	}
	if e.CapFen < 0 {
		return invalid("enterprise %s: negative cap", e.Code)
	}
	if e.TPS < 0 || e.TPS > 100_000 {
		return invalid("enterprise %s: tps %d: 0–100000", e.Code, e.TPS)
	}
	return nil
}

// CreateEnterprise creates an enterprise (operator only).
func (s *Store) CreateEnterprise(a Actor, e Enterprise) (*Enterprise, error) {
	if !a.Operator {
		return nil, ErrForbidden
	}
	if err := s.validEnterprise(&e); err != nil {
		return nil, err
	}
	e.CreatedAt = s.now()
	e.UpdatedAt = e.CreatedAt
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketEnterprises)
		if b.Get([]byte(e.Code)) != nil {
			return fmt.Errorf("%w: enterprise %s", ErrExists, e.Code)
		}
		ch.ents = append(ch.ents, e.Code)
		return putJSON(b, e.Code, &e)
	})
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// UpdateEnterprise changes an enterprise (operator only): fn edits a copy, which
// is validated and stored. The code cannot change.
func (s *Store) UpdateEnterprise(a Actor, code string, fn func(*Enterprise) error) (*Enterprise, error) {
	if !a.Operator {
		return nil, ErrForbidden
	}
	var out Enterprise
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		e, err := loadEnterprise(tx, code)
		if err != nil {
			return err
		}
		if e == nil {
			return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
		}
		created := e.CreatedAt
		if err := fn(e); err != nil {
			return err
		}
		if e.Code != code {
			return invalid("enterprise %s: the group code cannot change", code)
		}
		if err := s.validEnterprise(e); err != nil {
			return err
		}
		e.CreatedAt, e.UpdatedAt = created, s.now()
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

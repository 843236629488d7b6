package policy

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Number overrides (operator only): 携号转网 and number-block corrections.

// SetOverride adds or replaces an override of the classifier (携号转网 and
// number-block corrections). The operator of every enterprise only;
// effective immediately.
func (s *Store) SetOverride(a Actor, o Override) error {
	if !a.Everywhere() {
		return ErrForbidden
	}
	n, err := o.normalize()
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx, ch *change) error {
		ch.overrides = true
		return putJSON(tx.Bucket(bucketOverrides), n.Prefix, &n)
	})
}

// RemoveOverride removes the override of prefix (as SetOverride).
func (s *Store) RemoveOverride(a Actor, prefix string) error {
	if !a.Everywhere() {
		return ErrForbidden
	}
	p, err := normalizePrefix(prefix)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketOverrides)
		if b.Get([]byte(p)) == nil {
			return fmt.Errorf("%w: override %s", ErrNotFound, p)
		}
		ch.overrides = true
		return b.Delete([]byte(p))
	})
}

// Overrides lists the overrides (operator only), sorted by prefix.
func (s *Store) Overrides(a Actor) ([]Override, error) {
	if !a.Operator {
		return nil, ErrForbidden
	}
	return s.cls.Overrides(), nil
}

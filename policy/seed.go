package policy

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// SeedData is the initial state from configuration.
type SeedData struct {
	Enterprises []SeedEnterprise
	Overrides   []Override
	// Force makes the configuration win over the file: existing enterprises,
	// users (including passwords), whitelist entries (→ approved) and overrides
	// are overwritten with the seeded values. Meant for a one-off run.
	Force bool
}

// SeedEnterprise is an enterprise with its users and approved whitelist.
type SeedEnterprise struct {
	Enterprise           // grants, package, cap, signature…
	Users      []NewUser // Enterprise field may be left empty
	Whitelist  []string  // approved numbers
}

// SeedReport counts what Seed did.
type SeedReport struct {
	EnterprisesCreated, EnterprisesKept, EnterprisesForced int
	UsersCreated, UsersKept, UsersForced                   int
	WhitelistAdded, WhitelistKept, WhitelistForced         int
	OverridesAdded, OverridesKept, OverridesForced         int
}

// Seed loads configuration into the store, as the operator, in one
// transaction (all or nothing). The rule, so that configuration and admin
// changes do not fight on every restart: Seed creates what does not exist and
// never changes or deletes what does — an enterprise, a user (by system_id), a
// whitelist entry (in any state) or an override already in the file is kept
// as the admins left it. Removing something from the configuration does not
// remove it from the file. With Force, seeded records overwrite existing ones
// (nothing is deleted either). A system_id that exists in another enterprise
// is an error even with Force. Everything is validated before anything is
// written; ctx is checked between password hashes (bcrypt is slow).
func (s *Store) Seed(ctx context.Context, d SeedData) (SeedReport, error) {
	var rep SeedReport
	type seedUser struct {
		rec  *userRec
		pass string
	}
	ents := make([]Enterprise, len(d.Enterprises))
	users := []seedUser{}
	wls := make([][]validRow, len(d.Enterprises))
	seenCode := map[string]bool{}
	seenSID := map[string]bool{}
	now := s.now()
	for i, se := range d.Enterprises {
		e := se.Enterprise
		if err := s.validEnterprise(&e); err != nil {
			return rep, fmt.Errorf("seed: %w", err)
		}
		if seenCode[e.Code] {
			return rep, fmt.Errorf("seed: %w", invalid("enterprise %s listed twice", e.Code))
		}
		seenCode[e.Code] = true
		e.CreatedAt, e.UpdatedAt = now, now
		ents[i] = e
		names := map[string]bool{}
		for _, nu := range se.Users {
			if nu.Enterprise == "" {
				nu.Enterprise = e.Code
			}
			if nu.Enterprise != e.Code {
				return rep, fmt.Errorf("seed: %w", invalid("user %s listed under enterprise %s but belongs to %s", nu.SystemID, e.Code, nu.Enterprise))
			}
			if nu.Role == 0 {
				nu.Role = RoleUser
			}
			u := User{Enterprise: nu.Enterprise, Name: nu.Name, Mobile: nu.Mobile, SystemID: nu.SystemID,
				ShowSignature: nu.ShowSignature, Role: nu.Role, Extension: nu.Extension, LongReplies: nu.LongReplies, CreatedAt: now, UpdatedAt: now}
			if err := s.validUser(&u); err != nil {
				return rep, fmt.Errorf("seed: %w", err)
			}
			if err := ValidPassword(nu.Password); err != nil {
				return rep, fmt.Errorf("seed: user %s: %w", nu.SystemID, err)
			}
			if seenSID[u.SystemID] || names[u.Name] {
				return rep, fmt.Errorf("seed: %w", invalid("user %s / %q listed twice", u.SystemID, u.Name))
			}
			seenSID[u.SystemID], names[u.Name] = true, true
			users = append(users, seedUser{&userRec{User: u}, nu.Password})
		}
		valid, errs := s.classifyRows(listRows(se.Whitelist))
		if len(errs) > 0 {
			return rep, fmt.Errorf("seed: enterprise %s whitelist item %d: %w", e.Code, errs[0].Row, invalid("%s", errs[0].Detail))
		}
		wls[i] = valid
	}
	ovs := make([]Override, len(d.Overrides))
	for i, o := range d.Overrides {
		n, err := o.normalize()
		if err != nil {
			return rep, fmt.Errorf("seed: %w", err)
		}
		ovs[i] = n
	}
	// Hash only the passwords that will be written.
	snap := s.snap.Load()
	for _, su := range users {
		if snap.bySID[su.rec.SystemID] != nil && !d.Force {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		h, err := s.hash(su.pass)
		if err != nil {
			return rep, err
		}
		su.rec.PassHash = h
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}

	err := s.update(func(tx *bolt.Tx, ch *change) error {
		rep = SeedReport{}
		eb := tx.Bucket(bucketEnterprises)
		for i, e := range ents {
			old, err := loadEnterprise(tx, e.Code)
			if err != nil {
				return err
			}
			switch {
			case old == nil:
				rep.EnterprisesCreated++
				e.PackageHistory = nil
				e.notePackage(0, e.CreatedAt)
			case d.Force:
				e.CreatedAt, e.PackageHistory = old.CreatedAt, old.PackageHistory
				e.notePackage(old.Package, e.UpdatedAt)
				rep.EnterprisesForced++
			default:
				rep.EnterprisesKept++
				ents[i] = *old
				continue
			}
			if err := serviceNumberTaken(tx, &e); err != nil {
				return err
			}
			if err := putJSON(eb, e.Code, &e); err != nil {
				return err
			}
			ch.ents = append(ch.ents, e.Code)
		}
		ub := tx.Bucket(bucketUsers)
		for _, su := range users {
			v := ub.Get([]byte(su.rec.SystemID))
			if v == nil {
				if su.rec.PassHash == nil { // deleted since we looked: hash now
					h, err := s.hash(su.pass)
					if err != nil {
						return err
					}
					su.rec.PassHash = h
				}
				if err := s.putNewUser(tx, ch, su.rec); err != nil {
					return err
				}
				rep.UsersCreated++
				continue
			}
			var old userRec
			if err := json.Unmarshal(v, &old); err != nil {
				return err
			}
			if old.Enterprise != su.rec.Enterprise {
				return fmt.Errorf("seed: %w: system_id %s belongs to enterprise %s", ErrExists, old.SystemID, old.Enterprise)
			}
			if !d.Force {
				rep.UsersKept++
				continue
			}
			if err := nameTaken(tx, su.rec.Enterprise, su.rec.Name, su.rec.SystemID); err != nil {
				return err
			}
			if err := extensionTaken(tx, &su.rec.User); err != nil {
				return err
			}
			rec := *su.rec
			rec.CreatedAt = old.CreatedAt
			rec.APIKeyHash, rec.HasAPIKey = old.APIKeyHash, old.HasAPIKey
			if err := putJSON(ub, rec.SystemID, &rec); err != nil {
				return err
			}
			ch.users = true
			rep.UsersForced++
		}
		for i, e := range ents {
			if len(wls[i]) == 0 {
				continue
			}
			b, err := tx.Bucket(bucketWhitelist).CreateBucketIfNotExists([]byte(e.Code))
			if err != nil {
				return err
			}
			for _, r := range wls[i] {
				v := b.Get([]byte(r.e164))
				switch {
				case v == nil:
					rep.WhitelistAdded++
				case d.Force && WhitelistState(v[0]) != WhitelistApproved:
					rep.WhitelistForced++
				default:
					rep.WhitelistKept++
					continue
				}
				val, err := encodeEntry(WhitelistApproved, &wlMeta{AddedAt: now, AddedBy: SeedActor, DecidedAt: now, DecidedBy: SeedActor})
				if err != nil {
					return err
				}
				if err := b.Put([]byte(r.e164), val); err != nil {
					return err
				}
				ch.wl = append(ch.wl, e.Code)
			}
		}
		ob := tx.Bucket(bucketOverrides)
		for _, o := range ovs {
			switch {
			case ob.Get([]byte(o.Prefix)) == nil:
				rep.OverridesAdded++
			case d.Force:
				rep.OverridesForced++
			default:
				rep.OverridesKept++
				continue
			}
			if err := putJSON(ob, o.Prefix, &o); err != nil {
				return err
			}
			ch.overrides = true
		}
		return nil
	})
	if err != nil {
		return SeedReport{}, err
	}
	return rep, nil
}

// SeedActor is who added and approved the whitelist entries seeding
// wrote (the configuration's enterprises[].whitelist): their added_by
// and decided_by.
const SeedActor = "seed"

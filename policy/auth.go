package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

// Authentication: SMPP binds, API keys and the forgotten-password flow,
// all from memory except the write of a reset password.

// Password hashing. bcrypt at cost 10 takes ≈ 70 ms of one core on the
// reference machine (2 cores): with AuthConcurrency 1, ≈ 14 binds/s, so a
// reconnect storm of 100 ESMEs is absorbed in ≈ 7 s while submits on open
// sessions keep the other core. SMPP passwords are at most 8 characters, so
// the slow hash is what protects them if the bbolt file leaks. bcrypt rather
// than argon2id: argon2id at a useful memory cost (64 MiB ≈ 240 ms here) makes
// every concurrent bind allocate 64 MiB, a memory DoS on a small gateway.
const (
	DefaultBcryptCost = 10
	// MaxBcryptCost bounds policy.bcrypt_cost and the cost a stored hash
	// may name: 16 is 64 × the default's work (about 4.5 s a bind here),
	// beyond any useful setting. A hash of a higher cost can only come
	// from a damaged file or a hostile write (a cluster's etcd): checked
	// at its cost (up to 31: 2^21 × the default) it would hold an
	// AuthConcurrency slot for days and lock every bind out behind it.
	MaxBcryptCost  = 16
	MinBcryptCost  = bcrypt.MinCost // 4: what tests use
	MinPasswordLen = 6
	MaxPasswordLen = 8  // SMPP 3.4 password: C-Octet String of at most 9 octets
	MaxSystemIDLen = 15 // SMPP 3.4 system_id: C-Octet String of at most 16 octets
	apiKeyPrefix   = "qxtd_"
)

// dummyHashDefault is a bcrypt hash, at DefaultBcryptCost, of a password
// nobody has: the hash an unknown system_id is compared against, so that it
// costs what a known one does. It is written out because generating it
// costs as much as checking a bind (about 60 ms on a small server) and New
// runs at every start: a restarted daemon would serve binds that much later.
// The hash need not be secret, only of the same cost as the users'.
const dummyHashDefault = "$2a$10$OHJH7OrhURTLDU.VAkIqQet7EfVk69SuFbLs2mPJ28dplq3ikVHhu"

// dummyHash is the dummy hash at cost: the written-out one at the default
// cost, a generated one at any other.
func dummyHash(cost int) ([]byte, error) {
	if cost == DefaultBcryptCost {
		return []byte(dummyHashDefault), nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte("dummy-password"), cost)
	if err != nil {
		return nil, fmt.Errorf("policy: dummy hash: %w", err)
	}
	return h, nil
}

func (s *Store) hash(pw string) ([]byte, error) {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	return bcrypt.GenerateFromPassword([]byte(pw), s.opts.BcryptCost)
}

// Authenticate checks an SMPP bind's system_id and password. Unknown system_id
// and wrong password both give ErrAuth after the same bcrypt work (an unknown
// user is compared against a dummy hash of the same cost). A correct password
// of a disabled enterprise gives an account_disabled *Refusal. At most
// AuthConcurrency bcrypt comparisons run at once; further calls wait.
func (s *Store) Authenticate(systemID, password string) (*User, *Enterprise, error) {
	snap := s.snap.Load()
	rec := snap.bySID[systemID]
	hash := s.dummy
	if rec != nil {
		hash = rec.PassHash
		if c, err := bcrypt.Cost(hash); err != nil || c > MaxBcryptCost {
			hash, rec = s.dummy, nil // damaged: refused as a wrong password, after the same work
		}
	}
	pw := password
	if len(pw) > 72 { // bcrypt's limit: still spend the time
		pw = pw[:72]
	}
	s.sem <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	<-s.sem
	if rec == nil || err != nil || len(password) > MaxPasswordLen {
		return nil, nil, ErrAuth
	}
	return s.loggedIn(snap, rec)
}

func (s *Store) loggedIn(snap *snapshot, rec *userRec) (*User, *Enterprise, error) {
	es := snap.ents[rec.Enterprise]
	if es == nil {
		return nil, nil, ErrAuth
	}
	if es.ent.Disabled {
		return nil, nil, refuseZH(ReasonAccountDisabled, "enterprise "+es.ent.Code, "企业 "+es.ent.Code+" 已停用")
	}
	if rec.Disabled {
		return nil, nil, refuseZH(ReasonAccountDisabled, "user "+rec.SystemID, "用户 "+rec.SystemID+" 已停用")
	}
	u, e := rec.User, es.ent
	return &u, &e, nil
}

// AuthenticateAPIKey checks an HTTP API key (memory only; ErrAuth if unknown).
func (s *Store) AuthenticateAPIKey(key string) (*User, *Enterprise, error) {
	snap := s.snap.Load()
	rec := snap.byKey[sha256.Sum256([]byte(key))]
	if rec == nil || !strings.HasPrefix(key, apiKeyPrefix) {
		return nil, nil, ErrAuth
	}
	return s.loggedIn(snap, rec)
}

// passwordAlphabet has no look-alikes (0/O, 1/l/I): 56 symbols, 8 of them ≈ 46 bits.
const passwordAlphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func (s *Store) randomPassword() (string, error) {
	var out [MaxPasswordLen]byte
	var b [1]byte
	for i := 0; i < len(out); {
		if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
			return "", err
		}
		if int(b[0]) >= 256-256%len(passwordAlphabet) { // rejection sampling: no modulo bias
			continue
		}
		out[i] = passwordAlphabet[int(b[0])%len(passwordAlphabet)]
		i++
	}
	return string(out[:]), nil
}

// ResetPassword is the forgotten-password flow of the FAQ: group code, user
// name and registered mobile must all match. It sets and returns a new random
// 8-character password, which the caller sends by SMS to user.Mobile (and to
// nothing else). Any mismatch gives ErrAuth, after the same bcrypt work as a
// success, so neither the error nor the timing tells which field was wrong.
// Callers must rate-limit it: whoever knows the three values can reset.
func (s *Store) ResetPassword(groupCode, userName, mobile string) (string, *User, error) {
	snap := s.snap.Load()
	rec := snap.byName[groupCode][userName]
	m, err := s.cls.normalizeMobile(mobile)
	ok := rec != nil && err == nil && subtle.ConstantTimeCompare([]byte(m), []byte(rec.Mobile)) == 1
	pw, err := s.randomPassword()
	if err != nil {
		return "", nil, err
	}
	h, err := s.hash(pw)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, ErrAuth
	}
	var out User
	err = s.modifyUser(rec.SystemID, func(_ *bolt.Tx, r *userRec) error {
		if r.Enterprise != groupCode || r.Name != userName || r.Mobile != rec.Mobile {
			return ErrAuth // changed under us
		}
		r.PassHash = h
		out = r.User
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = ErrAuth
		}
		return "", nil, err
	}
	return pw, &out, nil
}

package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Users: the logins of an enterprise, their passwords and API keys.

// Role of a user within its enterprise.
type Role uint8

// Roles.
const (
	RoleUser  Role = iota + 1 // sends, reads its own messages
	RoleAdmin                 // enterprise admin: users, whitelist, user signatures
)

func (r Role) String() string {
	switch r {
	case RoleUser:
		return "user"
	case RoleAdmin:
		return "admin"
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) {
	if r != RoleUser && r != RoleAdmin {
		return nil, fmt.Errorf("%w: role %d", ErrInvalid, uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	switch string(b) {
	case "user":
		*r = RoleUser
	case "admin":
		*r = RoleAdmin
	default:
		return invalidField("role", "角色须为 user（普通用户）或 admin（管理员）", "unknown role %q", b)
	}
	return nil
}

// User is a login of an enterprise: an SMPP system_id with password, and
// optionally an HTTP API key. No secret is ever part of a User.
type User struct {
	Enterprise    string `json:"enterprise"`
	Name          string `json:"name"`      // unique within the enterprise; the user signature
	Mobile        string `json:"mobile"`    // registered mobile, E.164 (password resets go there)
	SystemID      string `json:"system_id"` // SMPP system_id, globally unique
	ShowSignature bool   `json:"show_signature"`
	Role          Role   `json:"role"`
	Disabled      bool   `json:"disabled,omitempty"` // cannot log in, bind or use its API key
	HasAPIKey     bool   `json:"has_api_key"`
	// Extension is the user's extension of the enterprise's service
	// number (digits, at most the enterprise's ExtLen): its messages go
	// out from the service number plus it, and replies to that number
	// reach it. "" = the service number alone. Unique in the enterprise.
	Extension string `json:"extension,omitempty"`
	// LongReplies is how a reply too long for one SMS reaches the user's
	// SMPP binds: "" or "payload" whole in message_payload (SMPP 3.4
	// §5.3.2.32), or in parts as a carrier SMSC delivers it: "udh8",
	// "udh16" (a concatenation UDH, TS 23.040 §9.2.3.24.1/.8) or "sar"
	// (the sar_* TLVs), for an ESME that reads short_message only.
	LongReplies string    `json:"long_replies,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type userRec struct {
	User
	PassHash   []byte `json:"pass_hash"`              // bcrypt
	APIKeyHash []byte `json:"api_key_hash,omitempty"` // SHA-256 of the key
}

// NewUser is the input of CreateUser.
type NewUser struct {
	Enterprise    string
	Name          string
	Mobile        string // any format Classify accepts; stored as E.164
	SystemID      string
	Password      string // clear; hashed with bcrypt, never stored
	ShowSignature bool
	Role          Role   // 0 = RoleUser
	Extension     string // of the service number; "" = none
	LongReplies   string // User.LongReplies
}

func (s *Store) validUser(u *User) error {
	if err := validSystemID(u.SystemID); err != nil {
		return err
	}
	if err := validText(userNameField, u.Name, 1, 32); err != nil {
		return err
	}
	if u.Role != RoleUser && u.Role != RoleAdmin {
		return invalidField("role", "角色须为普通用户或管理员", "user %s: role %d", u.SystemID, uint8(u.Role))
	}
	lr, ok := longReplies(u.LongReplies)
	if !ok {
		return invalidField("long_replies", "长短信回复须为 payload（整条 message_payload）、udh8（分段 UDH 8位）、udh16（分段 UDH 16位）或 sar（分段 SAR）", "user %s: long_replies %q (want payload, udh8, udh16 or sar)", u.SystemID, u.LongReplies)
	}
	u.LongReplies = lr
	if u.Mobile == "" {
		return nil // no registered mobile: no password reset by SMS
	}
	m, err := s.cls.normalizeMobile(u.Mobile)
	if err != nil {
		return invalidField("mobile", u.Mobile+" 不是有效的中国大陆手机号码", "user %s: mobile %q: not a valid Chinese mobile number", u.SystemID, u.Mobile)
	}
	u.Mobile = m
	return nil
}

// CreateUser creates a user (operator, or an admin of that enterprise).
// SystemIDs are global: ErrExists tells that one is taken, in any enterprise.
func (s *Store) CreateUser(a Actor, nu NewUser) (*User, error) {
	if !a.admin(nu.Enterprise) {
		return nil, ErrForbidden
	}
	if nu.Role == 0 {
		nu.Role = RoleUser
	}
	u := User{Enterprise: nu.Enterprise, Name: nu.Name, Mobile: nu.Mobile, SystemID: nu.SystemID,
		ShowSignature: nu.ShowSignature, Role: nu.Role, Extension: nu.Extension, LongReplies: nu.LongReplies}
	if err := s.validUser(&u); err != nil {
		return nil, err
	}
	if err := ValidPassword(nu.Password); err != nil {
		return nil, err
	}
	h, err := s.hash(nu.Password)
	if err != nil {
		return nil, err
	}
	u.CreatedAt = s.now()
	u.UpdatedAt = u.CreatedAt
	rec := &userRec{User: u, PassHash: h}
	err = s.update(func(tx *bolt.Tx, ch *change) error {
		if !a.Operator {
			if err := userCap(tx, nu.Enterprise); err != nil {
				return err
			}
		}
		return s.putNewUser(tx, ch, rec)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

func (s *Store) putNewUser(tx *bolt.Tx, ch *change, rec *userRec) error {
	if e, err := loadEnterprise(tx, rec.Enterprise); err != nil {
		return err
	} else if e == nil {
		return fmt.Errorf("%w: enterprise %s", ErrNotFound, rec.Enterprise)
	}
	b := tx.Bucket(bucketUsers)
	if b.Get([]byte(rec.SystemID)) != nil {
		return fmt.Errorf("%w: system_id %s", ErrExists, rec.SystemID)
	}
	if err := nameTaken(tx, rec.Enterprise, rec.Name, rec.SystemID); err != nil {
		return err
	}
	if err := extensionTaken(tx, &rec.User); err != nil {
		return err
	}
	ch.users = true
	return putJSON(b, rec.SystemID, rec)
}

// ErrUserCap: an enterprise admin adding a user past the enterprise's cap
// (Enterprise.MaxUsers); it wraps ErrInvalid.
var ErrUserCap = fmt.Errorf("%w: user cap reached", ErrInvalid)

// userCap refuses one more user of an enterprise at its cap.
func userCap(tx *bolt.Tx, code string) error {
	e, err := loadEnterprise(tx, code)
	if err != nil || e == nil {
		return err // putNewUser reports a missing enterprise
	}
	n := 0
	c := tx.Bucket(bucketUsers).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if u.Enterprise == code {
			n++
		}
	}
	if n >= e.UserCap() {
		return &FieldError{is: ErrUserCap, ZH: fmt.Sprintf("企业已有 %d 个用户，到了上限（请联系客户经理增加）", n),
			Detail: fmt.Sprintf("enterprise %s has %d users, its cap (ask the account manager for more)", code, n)}
	}
	return nil
}

// nameTaken scans the enterprise's users in the transaction (the snapshot may
// lag within a multi-record write such as Seed).
func nameTaken(tx *bolt.Tx, ent, name, except string) error {
	c := tx.Bucket(bucketUsers).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if u.Enterprise == ent && u.Name == name && u.SystemID != except {
			return fmt.Errorf("%w: user name %q in enterprise %s", ErrExists, name, ent)
		}
	}
	return nil
}

// userFor returns the user record the actor may read (self, its admin, the
// operator). For enterprise actors, anything not in their enterprise —
// existing or not — is ErrForbidden.
func (s *Store) userFor(a Actor, systemID string, needAdmin bool) (*userRec, error) {
	rec := s.snap.Load().bySID[systemID]
	if rec == nil {
		if a.Everywhere() {
			return nil, fmt.Errorf("%w: user %s", ErrNotFound, systemID)
		}
		return nil, ErrForbidden
	}
	if a.admin(rec.Enterprise) || !needAdmin && a.member(rec.Enterprise) && a.Name == systemID {
		return rec, nil
	}
	return nil, ErrForbidden
}

// User returns a user to itself, its enterprise admins or the operator.
func (s *Store) User(a Actor, systemID string) (*User, error) {
	rec, err := s.userFor(a, systemID, false)
	if err != nil {
		return nil, err
	}
	u := rec.User
	return &u, nil
}

// Users lists an enterprise's users (its admins, or the operator), by name.
func (s *Store) Users(a Actor, code string) ([]User, error) {
	if !a.admin(code) {
		return nil, ErrForbidden
	}
	snap := s.snap.Load()
	if snap.ents[code] == nil {
		return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
	}
	var out []User
	for _, rec := range snap.byName[code] {
		out = append(out, rec.User)
	}
	slices.SortFunc(out, func(x, y User) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// UserUpdate lists the fields to change; nil leaves a field as it is.
type UserUpdate struct {
	Name          *string
	Mobile        *string
	ShowSignature *bool
	Role          *Role
	Disabled      *bool
	Extension     *string // "" removes it
	LongReplies   *string // "" = payload
}

// UpdateUser changes a user (its enterprise admins, or the operator). An
// enterprise admin cannot disable or demote itself (the enterprise would be
// left without anyone to manage it).
func (s *Store) UpdateUser(a Actor, systemID string, upd UserUpdate) (*User, error) {
	if _, err := s.userFor(a, systemID, true); err != nil {
		return nil, err
	}
	if !a.Operator && a.Name == systemID &&
		(upd.Disabled != nil && *upd.Disabled || upd.Role != nil && *upd.Role != RoleAdmin) {
		return nil, invalidField("", "管理员不能停用自己，也不能取消自己的管理员身份", "user %s: an admin cannot disable or demote itself", systemID)
	}
	var out User
	err := s.modifyUser(systemID, func(tx *bolt.Tx, rec *userRec) error {
		if upd.Name != nil {
			rec.Name = *upd.Name
		}
		if upd.Mobile != nil {
			rec.Mobile = *upd.Mobile
		}
		if upd.ShowSignature != nil {
			rec.ShowSignature = *upd.ShowSignature
		}
		if upd.Role != nil {
			rec.Role = *upd.Role
		}
		if upd.Disabled != nil {
			rec.Disabled = *upd.Disabled
		}
		if upd.Extension != nil {
			rec.Extension = *upd.Extension
		}
		if upd.LongReplies != nil {
			rec.LongReplies = *upd.LongReplies
		}
		if err := s.validUser(&rec.User); err != nil {
			return err
		}
		if err := nameTaken(tx, rec.Enterprise, rec.Name, rec.SystemID); err != nil {
			return err
		}
		if err := extensionTaken(tx, &rec.User); err != nil {
			return err
		}
		out = rec.User
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (s *Store) modifyUser(systemID string, fn func(*bolt.Tx, *userRec) error) error {
	return s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketUsers)
		v := b.Get([]byte(systemID))
		if v == nil {
			return fmt.Errorf("%w: user %s", ErrNotFound, systemID)
		}
		rec := &userRec{}
		if err := json.Unmarshal(v, rec); err != nil {
			return err
		}
		if err := fn(tx, rec); err != nil {
			return err
		}
		rec.UpdatedAt = s.now()
		ch.users = true
		return putJSON(b, systemID, rec)
	})
}

// DeleteUser deletes a user (its enterprise admins, or the operator).
func (s *Store) DeleteUser(a Actor, systemID string) error {
	if _, err := s.userFor(a, systemID, true); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx, ch *change) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(systemID)) == nil {
			return fmt.Errorf("%w: user %s", ErrNotFound, systemID)
		}
		ch.users = true
		return b.Delete([]byte(systemID))
	})
}

// SetPassword sets a user's password (the user itself, its enterprise admins,
// or the operator; checking the old password is the caller's business).
func (s *Store) SetPassword(a Actor, systemID, password string) error {
	if _, err := s.userFor(a, systemID, false); err != nil {
		return err
	}
	if err := ValidPassword(password); err != nil {
		return err
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	return s.modifyUser(systemID, func(_ *bolt.Tx, rec *userRec) error {
		rec.PassHash = h
		return nil
	})
}

// IssueAPIKey creates a new HTTP API key for a user (itself, its enterprise
// admins, or the operator), replacing any previous one. The key — "qxtd_" and
// 43 base64url characters, 32 random bytes — is returned once; only its
// SHA-256 is stored (a fast hash is enough for a 256-bit random secret).
func (s *Store) IssueAPIKey(a Actor, systemID string) (string, error) {
	if _, err := s.userFor(a, systemID, false); err != nil {
		return "", err
	}
	var raw [32]byte
	if _, err := io.ReadFull(s.opts.Rand, raw[:]); err != nil {
		return "", err
	}
	key := apiKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(key))
	err := s.modifyUser(systemID, func(_ *bolt.Tx, rec *userRec) error {
		rec.APIKeyHash = sum[:]
		rec.HasAPIKey = true
		return nil
	})
	if err != nil {
		return "", err
	}
	return key, nil
}

// ResetUserPassword gives a user a new random password of MaxPasswordLen
// characters (its enterprise admins, or the operator) and returns it; only
// its hash is stored.
func (s *Store) ResetUserPassword(a Actor, systemID string) (string, error) {
	if _, err := s.userFor(a, systemID, true); err != nil {
		return "", err
	}
	pw, err := s.randomPassword()
	if err != nil {
		return "", err
	}
	if err := s.SetPassword(a, systemID, pw); err != nil {
		return "", err
	}
	return pw, nil
}

// RevokeAPIKey removes a user's API key.
func (s *Store) RevokeAPIKey(a Actor, systemID string) error {
	if _, err := s.userFor(a, systemID, false); err != nil {
		return err
	}
	return s.modifyUser(systemID, func(_ *bolt.Tx, rec *userRec) error {
		rec.APIKeyHash = nil
		rec.HasAPIKey = false
		return nil
	})
}

// ParseLongReplies is s as User.LongReplies stores it (lower case,
// "payload" as "") and whether it is one of its values: for a caller that
// checks one before it reaches the store (a configuration file).
func ParseLongReplies(s string) (string, bool) { return longReplies(s) }

// longReplies is s as stored: lower case, "payload" stored as "" (the
// default), and whether it is one of User.LongReplies' values.
func longReplies(s string) (string, bool) {
	switch s = strings.ToLower(strings.TrimSpace(s)); s {
	case "", "payload":
		return "", true
	case "udh8", "udh16", "sar":
		return s, true
	}
	return s, false
}

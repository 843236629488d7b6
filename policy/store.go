package policy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/bcrypt"
)

// Bucket names: everything of this package lives under "policy_" buckets of
// the daemon's bbolt file.
var (
	bucketMeta        = []byte("policy_meta")
	bucketEnterprises = []byte("policy_enterprises") // code → JSON Enterprise
	bucketUsers       = []byte("policy_users")       // system_id → JSON userRec
	bucketWhitelist   = []byte("policy_whitelist")   // code → bucket: E.164 → state byte + JSON wlMeta
	bucketOverrides   = []byte("policy_overrides")   // prefix → JSON Override
	keySchema         = []byte("schema")
)

const schemaVersion = 1

// Password hashing. bcrypt at cost 10 takes ≈ 70 ms of one core on the
// reference machine (2 cores): with AuthConcurrency 1, ≈ 14 binds/s, so a
// reconnect storm of 100 ESMEs is absorbed in ≈ 7 s while submits on open
// sessions keep the other core. SMPP passwords are at most 8 characters, so
// the slow hash is what protects them if the bbolt file leaks. bcrypt rather
// than argon2id: argon2id at a useful memory cost (64 MiB ≈ 240 ms here) makes
// every concurrent bind allocate 64 MiB, a memory DoS on a small gateway.
const (
	DefaultBcryptCost = 10
	MinPasswordLen    = 6
	MaxPasswordLen    = 8  // SMPP 3.4 password: C-Octet String of at most 9 octets
	MaxSystemIDLen    = 15 // SMPP 3.4 system_id: C-Octet String of at most 16 octets
	apiKeyPrefix      = "qxtd_"
)

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
		return fmt.Errorf("%w: unknown role %q", ErrInvalid, b)
	}
	return nil
}

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

// User is a login of an enterprise: an SMPP system_id with password, and
// optionally an HTTP API key. No secret is ever part of a User.
type User struct {
	Enterprise    string    `json:"enterprise"`
	Name          string    `json:"name"`      // unique within the enterprise; the user signature
	Mobile        string    `json:"mobile"`    // registered mobile, E.164 (password resets go there)
	SystemID      string    `json:"system_id"` // SMPP system_id, globally unique
	ShowSignature bool      `json:"show_signature"`
	Role          Role      `json:"role"`
	HasAPIKey     bool      `json:"has_api_key"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

type userRec struct {
	User
	PassHash   []byte `json:"pass_hash"`              // bcrypt
	APIKeyHash []byte `json:"api_key_hash,omitempty"` // SHA-256 of the key
}

// Actor is who performs an administrative action. The operator (the account
// managers) may do everything; an enterprise actor only touches its own
// enterprise, and only an admin changes it.
type Actor struct {
	Operator   bool
	Enterprise string // enterprise actors: their group code
	Admin      bool   // enterprise admin
	Name       string // for the audit fields: operator login, or the user's system_id
}

// OperatorActor returns the operator actor with the given audit name.
func OperatorActor(name string) Actor { return Actor{Operator: true, Name: name} }

// ActorFor returns the actor of an authenticated user.
func ActorFor(u *User) Actor {
	return Actor{Enterprise: u.Enterprise, Admin: u.Role == RoleAdmin, Name: u.SystemID}
}

func (a Actor) member(code string) bool { return a.Operator || code != "" && a.Enterprise == code }
func (a Actor) admin(code string) bool {
	return a.Operator || a.Admin && code != "" && a.Enterprise == code
}
func (a Actor) who() string {
	switch {
	case a.Name != "":
		return a.Name
	case a.Operator:
		return "operator"
	}
	return a.Enterprise
}

// StoreOptions configure a Store. The zero value is production-ready.
type StoreOptions struct {
	Classifier      *Classifier      // nil: NewClassifier()
	Packages        PackageTable     // valid Enterprise.Package values; nil: DefaultPackages()
	BcryptCost      int              // 0: DefaultBcryptCost; tests use bcrypt.MinCost (4)
	AuthConcurrency int              // concurrent bcrypt operations; 0: max(1, GOMAXPROCS/2)
	MaxImportRows   int              // 0: 100,000 rows per whitelist import
	Now             func() time.Time // nil: time.Now
	Rand            io.Reader        // nil: crypto/rand.Reader
}

// Store holds enterprises, users, whitelists and number overrides in bbolt.
// Writes are rare admin operations, one db.Update each. Reads used on the
// sending path (Lookup, Allowed, Authenticate, AuthenticateAPIKey) never touch
// the file: they read an immutable in-memory snapshot, replaced atomically
// after every committed write (copy-on-write: the enterprises and whitelists a
// write did not touch are shared between snapshots).
type Store struct {
	db    *bolt.DB
	cls   *Classifier
	opts  StoreOptions
	mu    sync.Mutex // serialises writes and the publication of their snapshot
	snap  atomic.Pointer[snapshot]
	dummy []byte // bcrypt hash compared against for unknown system_ids
	sem   chan struct{}
}

type snapshot struct {
	ents   map[string]*entSnap            // code →
	bySID  map[string]*userRec            // system_id →
	byKey  map[[sha256.Size]byte]*userRec // API key hash →
	byName map[string]map[string]*userRec // code → name →
}

type entSnap struct {
	ent Enterprise
	wl  map[uint64]WhitelistState // national number → state
}

// OpenStore opens (creating the buckets if needed) the policy data in db and
// loads the in-memory snapshot. The caller owns db.
func OpenStore(db *bolt.DB, opts StoreOptions) (*Store, error) {
	if opts.Packages == nil {
		opts.Packages = DefaultPackages()
	}
	if err := opts.Packages.Validate(); err != nil {
		return nil, err
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = DefaultBcryptCost
	}
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d", ErrInvalid, opts.BcryptCost)
	}
	if opts.AuthConcurrency <= 0 {
		opts.AuthConcurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opts.MaxImportRows <= 0 {
		opts.MaxImportRows = 100_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Classifier == nil {
		c, err := NewClassifier()
		if err != nil {
			return nil, err
		}
		opts.Classifier = c
	}
	s := &Store{db: db, cls: opts.Classifier, opts: opts, sem: make(chan struct{}, opts.AuthConcurrency)}
	dummy, err := bcrypt.GenerateFromPassword([]byte("dummy-password"), opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	s.dummy = dummy

	var snap *snapshot
	var ovs []Override
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 1 || v[0] > schemaVersion {
				return fmt.Errorf("policy: data schema %v is newer than this binary (%d)", v, schemaVersion)
			}
		} else if err := meta.Put(keySchema, []byte{schemaVersion}); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketEnterprises, bucketUsers, bucketWhitelist, bucketOverrides} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		snap, err = loadAll(tx)
		if err != nil {
			return err
		}
		ovs, err = loadOverrides(tx)
		return err
	})
	if err != nil {
		return nil, dbErr(err)
	}
	if err := s.cls.SetOverrides(ovs); err != nil {
		return nil, fmt.Errorf("policy: stored overrides: %w", err)
	}
	s.snap.Store(snap)
	return s, nil
}

// Classifier returns the store's classifier.
func (s *Store) Classifier() *Classifier { return s.cls }

// Packages returns the package table enterprises are validated against.
func (s *Store) Packages() PackageTable { return s.opts.Packages }

func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Truncate(time.Second) }

// --- snapshot loading ---

func loadAll(tx *bolt.Tx) (*snapshot, error) {
	snap := &snapshot{ents: map[string]*entSnap{}}
	err := tx.Bucket(bucketEnterprises).ForEach(func(k, v []byte) error {
		es := &entSnap{}
		if err := json.Unmarshal(v, &es.ent); err != nil {
			return fmt.Errorf("policy: enterprise %q: %w", k, err)
		}
		wl, err := loadWhitelist(tx, es.ent.Code)
		if err != nil {
			return err
		}
		es.wl = wl
		snap.ents[es.ent.Code] = es
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snap, loadUsers(tx, snap)
}

func loadEnterprise(tx *bolt.Tx, code string) (*Enterprise, error) {
	v := tx.Bucket(bucketEnterprises).Get([]byte(code))
	if v == nil {
		return nil, nil
	}
	var e Enterprise
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("policy: enterprise %q: %w", code, err)
	}
	return &e, nil
}

func loadWhitelist(tx *bolt.Tx, code string) (map[uint64]WhitelistState, error) {
	wl := map[uint64]WhitelistState{}
	b := tx.Bucket(bucketWhitelist).Bucket([]byte(code))
	if b == nil {
		return wl, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		nat, ok := nationalOf(string(k))
		if !ok || len(v) == 0 {
			return fmt.Errorf("policy: whitelist %q: bad entry %q", code, k)
		}
		wl[nat] = WhitelistState(v[0])
		return nil
	})
	return wl, err
}

func loadUsers(tx *bolt.Tx, snap *snapshot) error {
	snap.bySID = map[string]*userRec{}
	snap.byKey = map[[sha256.Size]byte]*userRec{}
	snap.byName = map[string]map[string]*userRec{}
	return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
		u := &userRec{}
		if err := json.Unmarshal(v, u); err != nil {
			return fmt.Errorf("policy: user %q: %w", k, err)
		}
		snap.bySID[u.SystemID] = u
		if len(u.APIKeyHash) == sha256.Size {
			snap.byKey[[sha256.Size]byte(u.APIKeyHash)] = u
		}
		m := snap.byName[u.Enterprise]
		if m == nil {
			m = map[string]*userRec{}
			snap.byName[u.Enterprise] = m
		}
		m[u.Name] = u
		return nil
	})
}

func loadOverrides(tx *bolt.Tx) ([]Override, error) {
	var ovs []Override
	err := tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
		var o Override
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("policy: override %q: %w", k, err)
		}
		ovs = append(ovs, o)
		return nil
	})
	return ovs, err
}

// nationalOf returns the national number of "+861xxxxxxxxxx".
func nationalOf(e164 string) (uint64, bool) {
	if len(e164) != 14 || e164[:3] != "+86" {
		return 0, false
	}
	var n uint64
	for i := 3; i < 14; i++ {
		c := e164[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// --- writes ---

// change lists what a write touched, so that only that is reloaded.
type change struct {
	ents      []string // enterprise records
	wl        []string // whitelists
	users     bool
	overrides bool
}

// update runs fn in one read-write transaction, rebuilds the touched parts of
// the snapshot from that same transaction and publishes it once committed.
func (s *Store) update(fn func(tx *bolt.Tx, ch *change) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next *snapshot
	var ovs []Override
	var ch change
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &ch); err != nil {
			return err
		}
		var err error
		if next, err = rebuild(tx, s.snap.Load(), &ch); err != nil {
			return err
		}
		if ch.overrides {
			ovs, err = loadOverrides(tx)
		}
		return err
	})
	if err != nil {
		return dbErr(err)
	}
	if ch.overrides {
		if err := s.cls.SetOverrides(ovs); err != nil {
			return err // cannot happen: overrides are validated before they are stored
		}
	}
	s.snap.Store(next)
	return nil
}

func rebuild(tx *bolt.Tx, old *snapshot, ch *change) (*snapshot, error) {
	next := *old
	slices.Sort(ch.ents)
	ch.ents = slices.Compact(ch.ents)
	slices.Sort(ch.wl)
	ch.wl = slices.Compact(ch.wl)
	if len(ch.ents)+len(ch.wl) > 0 {
		next.ents = maps.Clone(old.ents)
	}
	for _, code := range ch.ents {
		e, err := loadEnterprise(tx, code)
		if err != nil {
			return nil, err
		}
		if e == nil {
			delete(next.ents, code)
			continue
		}
		es := &entSnap{ent: *e}
		if o := old.ents[code]; o != nil {
			es.wl = o.wl
		} else if es.wl, err = loadWhitelist(tx, code); err != nil {
			return nil, err
		}
		next.ents[code] = es
	}
	for _, code := range ch.wl {
		o := next.ents[code]
		if o == nil {
			continue
		}
		wl, err := loadWhitelist(tx, code)
		if err != nil {
			return nil, err
		}
		next.ents[code] = &entSnap{ent: o.ent, wl: wl}
	}
	if ch.users {
		if err := loadUsers(tx, &next); err != nil {
			return nil, err
		}
	}
	return &next, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// --- validation ---

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func validCode(code string) error {
	if code == "" || len(code) > 32 {
		return invalid("group code %q: 1–32 characters", code)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return invalid("group code %q: only letters, digits, - and _", code)
		}
	}
	return nil
}

func validText(field, s string, minRunes, maxRunes int) error {
	n := utf8.RuneCountInString(s)
	if !utf8.ValidString(s) || n < minRunes || n > maxRunes || strings.TrimSpace(s) != s {
		return invalid("%s %q: %d–%d characters, no leading or trailing space", field, s, minRunes, maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid("%s %q: control character", field, s)
		}
	}
	return nil
}

// Signature brackets and bounds: "【" + 2..20 characters + "】".
const (
	sigOpen         = "【"
	sigClose        = "】"
	minSignatureLen = 2
	maxSignatureLen = 20
)

// ValidSignature checks an enterprise signature: "【…】" around 2 to 20
// characters, no brackets or control characters inside. The empty signature
// is valid for storage (an enterprise not yet given one) but cannot send.
func ValidSignature(sig string) error {
	if sig == "" {
		return nil
	}
	inner, ok := strings.CutPrefix(sig, sigOpen)
	if ok {
		inner, ok = strings.CutSuffix(inner, sigClose)
	}
	if !ok {
		return invalid("signature %q: must be wrapped in 【】", sig)
	}
	if strings.ContainsAny(inner, "【】[]") {
		return invalid("signature %q: brackets inside", sig)
	}
	return validText("signature", inner, minSignatureLen, maxSignatureLen)
}

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

func validSystemID(id string) error {
	if id == "" || len(id) > MaxSystemIDLen {
		return invalid("system_id %q: 1–%d characters", id, MaxSystemIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return invalid("system_id %q: printable ASCII without spaces", id)
		}
	}
	return nil
}

// ValidPassword checks an SMPP password: MinPasswordLen to MaxPasswordLen
// printable ASCII characters without spaces.
func ValidPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return invalid("password: %d–%d characters", MinPasswordLen, MaxPasswordLen)
	}
	for i := 0; i < len(pw); i++ {
		if pw[i] <= ' ' || pw[i] > '~' {
			return invalid("password: printable ASCII without spaces")
		}
	}
	return nil
}

func (s *Store) hash(pw string) ([]byte, error) {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	return bcrypt.GenerateFromPassword([]byte(pw), s.opts.BcryptCost)
}

// --- enterprises ---

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

// --- users ---

// NewUser is the input of CreateUser.
type NewUser struct {
	Enterprise    string
	Name          string
	Mobile        string // any format Classify accepts; stored as E.164
	SystemID      string
	Password      string // clear; hashed with bcrypt, never stored
	ShowSignature bool
	Role          Role // 0 = RoleUser
}

func (s *Store) validUser(u *User) error {
	if err := validSystemID(u.SystemID); err != nil {
		return err
	}
	if err := validText("user name", u.Name, 1, 32); err != nil {
		return err
	}
	if u.Role != RoleUser && u.Role != RoleAdmin {
		return invalid("user %s: role %d", u.SystemID, uint8(u.Role))
	}
	if u.Mobile == "" {
		return nil // no registered mobile: no password reset by SMS
	}
	m, err := s.cls.normalizeMobile(u.Mobile)
	if err != nil {
		return invalid("user %s: mobile %q: not a valid Chinese mobile number", u.SystemID, u.Mobile)
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
		ShowSignature: nu.ShowSignature, Role: nu.Role}
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
	ch.users = true
	return putJSON(b, rec.SystemID, rec)
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
		if a.Operator {
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
}

// UpdateUser changes a user (its enterprise admins, or the operator).
func (s *Store) UpdateUser(a Actor, systemID string, upd UserUpdate) (*User, error) {
	if _, err := s.userFor(a, systemID, true); err != nil {
		return nil, err
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
		if err := s.validUser(&rec.User); err != nil {
			return err
		}
		if err := nameTaken(tx, rec.Enterprise, rec.Name, rec.SystemID); err != nil {
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

// --- authentication (memory only) ---

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
		return nil, nil, refuse(ReasonAccountDisabled, "enterprise "+es.ent.Code)
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

// ResetPassword is the forgotten-password flow (FAQ 2): group code, user name
// and registered mobile must all match. It sets and returns a new random
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

// --- number overrides (operator only) ---

// SetOverride adds or replaces an override of the classifier (携号转网 and
// number-block corrections). Operator only; effective immediately.
func (s *Store) SetOverride(a Actor, o Override) error {
	if !a.Operator {
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

// RemoveOverride removes the override of prefix (operator only).
func (s *Store) RemoveOverride(a Actor, prefix string) error {
	if !a.Operator {
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

package api

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"time"
)

// Console sessions: POST /v1/login exchanges a user's system_id and
// password for a token that the console sends as "Authorization: Bearer"
// like an API key. Tokens are 32 random bytes, kept only in memory (a
// restart logs everyone out) and only as their SHA-256 — or, in a cluster,
// in a SessionStore shared by the nodes (Config.Sessions). A session ends 30
// minutes after its last request (the portal's 30-minute idle logout: each request slides the expiry),
// at logout, or when a newer login needs its place (below).
//
// The table is shared by every enterprise, and anyone with a valid
// password can log in again and again (some 14 logins a second a node at
// bcrypt cost 10), so a login's place is found so that it ends its own
// user's or enterprise's sessions before anyone else's: a user keeps at
// most MaxUserSessions (its least recently used goes), an enterprise
// MaxEnterpriseSessions (the same), and when the whole table is full the
// enterprise that holds the most pays with its least recently used. An
// enterprise thus never loses a session to another's logins unless it
// holds as many as any other. Operator sessions are a table of their own
// (admin_session.go) that console logins cannot reach.

const (
	// SessionIdle ends a console session this long after its last request.
	SessionIdle = 30 * time.Minute
	// MaxSessions bounds the session table; when it is full, a login ends
	// the least recently used session of the enterprise holding the most.
	MaxSessions = 10_000
	// MaxEnterpriseSessions is an enterprise's share of the table: a
	// login past it ends the enterprise's least recently used session. A
	// quarter, as an enterprise's share of the other shared tables
	// (idempotency keys, reassembly): room for any real enterprise's staff,
	// while the flood of one leaves three quarters to the others.
	MaxEnterpriseSessions = MaxSessions / 4
	// MaxUserSessions bounds one user's sessions: a login past it ends the
	// user's least recently used one. A person has a browser or a few
	// (one cookie each); 50 leaves room for a login shared by a team or a
	// script that logs in instead of using an API key, while such a script
	// run amok ends its own sessions, not its colleagues'.
	MaxUserSessions = 50

	sessionPrefix = "qxs_" // tells console tokens from API keys ("qxtd_")
)

// SessionStore keeps sessions outside this process (Config.Sessions). Keys
// are the SHA-256 of the tokens: the tokens themselves never leave api.
// The store owns expiry: a session ends SessionIdle after its last Touch
// (a store may slide it coarsely, e.g. at most once a minute), at End, or
// at EndUser. It owns the bounds too, which should be this package's, per
// kind: MaxSessions, MaxEnterpriseSessions and MaxUserSessions for
// SessionUser, MaxOperatorSessions for SessionOperator, no login of one
// kind ending a session of the other. Its
// methods take plain types so that an implementation need not import api.
// A session has a kind (SessionUser or SessionOperator), a system_id (the
// user's, or the operator's name) and an enterprise ("" for the operator).
type SessionStore interface {
	// Create stores a new session under key.
	Create(key [32]byte, kind, systemID, enterprise string) error
	// Touch returns the live session of key and slides its expiry.
	Touch(key [32]byte) (kind, systemID, enterprise string, ok bool)
	// End ends the session of key (unknown keys are ignored).
	End(key [32]byte)
	// EndUser ends every session of kind of the user systemID but the
	// one of key keep (the zero key keeps none).
	EndUser(kind, systemID string, keep [32]byte)
}

// Session kinds of a SessionStore.
const (
	SessionUser     = "user"     // console sessions of /v1 ("qxs_…")
	SessionOperator = "operator" // operator sessions of /admin/v1 ("qxo_…")
)

type session struct {
	key        [32]byte // SHA-256 of the token
	systemID   string
	enterprise string
	last       time.Time // last use; the session ends at last + idle
	// Its places in the store's order and in its enterprise's and user's.
	inAll, inEnt, inUser *list.Element
}

// sessionLimits bounds a session table: all its sessions, an enterprise's
// and a user's (0: no bound of its own).
type sessionLimits struct{ all, enterprise, user int }

// userSessionLimits are the console table's; the operator's table has
// MaxOperatorSessions only (its sessions are all one operator's).
var userSessionLimits = sessionLimits{all: MaxSessions, enterprise: MaxEnterpriseSessions, user: MaxUserSessions}

// sessionStore is the table of console sessions. Its lists are in order
// of last use, least recent first, so expired sessions are always at the
// front and both expiry and eviction are O(1) per session (but for
// finding the enterprise holding the most, once the whole table is full).
type sessionStore struct {
	now    func() time.Time // Config.Clock
	idle   time.Duration
	limits sessionLimits // tests lower them
	prefix string        // of its tokens: sessionPrefix, or operatorPrefix (admin_session.go)
	// shared, when set (Config.Sessions), keeps the sessions instead of
	// the table below, as sessions of kind.
	shared SessionStore
	kind   string

	mu    sync.Mutex
	byKey map[[32]byte]*session
	lru   list.List             // of *session, all of them
	ents  map[string]*list.List // enterprise → its sessions (*session)
	users map[string]*list.List // userKey → the user's
}

func newSessionStore(limits sessionLimits, idle time.Duration, now func() time.Time) *sessionStore {
	if now == nil {
		now = time.Now
	}
	return &sessionStore{now: now, idle: idle, limits: limits, prefix: sessionPrefix, byKey: make(map[[32]byte]*session),
		ents: make(map[string]*list.List), users: make(map[string]*list.List)}
}

// userKey names a user's sessions: system_ids are unique, but a session
// made before the user moved to another enterprise stays the old one's.
func userKey(enterprise, systemID string) string { return enterprise + "\x00" + systemID }

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// isSessionToken tells a console token from an API key by its prefix.
func isSessionToken(tok string) bool { return strings.HasPrefix(tok, sessionPrefix) }

// create starts a session for a user and returns its token.
func (s *sessionStore) create(systemID, enterprise string) (string, error) {
	return s.createBound(systemID, func(string) string { return enterprise })
}

// createBound starts a session whose enterprise is bind(its token): an
// operator session's binding to the token it was opened with
// (operatorBinding), which needs the session's own token.
func (s *sessionStore) createBound(systemID string, bind func(token string) string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := s.prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	enterprise := bind(token)
	if s.shared != nil {
		if err := s.shared.Create(tokenKey(token), s.kind, systemID, enterprise); err != nil {
			return "", err
		}
		return token, nil
	}
	se := &session{key: tokenKey(token), systemID: systemID, enterprise: enterprise}
	uk := userKey(enterprise, systemID)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	// Make room, the login's own first: the user's, then the
	// enterprise's, then the largest holder's.
	s.evict(s.users[uk], s.limits.user)
	s.evict(s.ents[enterprise], s.limits.enterprise)
	for s.lru.Len() >= s.limits.all {
		s.remove(s.largest().Front().Value.(*session))
	}
	se.last = now
	s.byKey[se.key] = se
	se.inAll = s.lru.PushBack(se)
	se.inEnt = group(s.ents, enterprise).PushBack(se)
	se.inUser = group(s.users, uk).PushBack(se)
	return token, nil
}

// evict ends the least recently used sessions of l (one enterprise's or
// user's, nil for none) until one more fits under max (0: no bound).
func (s *sessionStore) evict(l *list.List, max int) {
	for max > 0 && l != nil && l.Len() >= max {
		s.remove(l.Front().Value.(*session))
	}
}

// largest is the sessions of the enterprise holding the most (of those
// holding as many, the one whose least recently used is older): a
// full table makes room at its expense. A scan of the enterprises, only
// when the whole table is full (a flood of several enterprises at their
// share, or more users than it was made for), and at a login, whose
// bcrypt costs more.
func (s *sessionStore) largest() *list.List {
	var big *list.List
	for _, l := range s.ents {
		if big == nil || l.Len() > big.Len() ||
			l.Len() == big.Len() && l.Front().Value.(*session).last.Before(big.Front().Value.(*session).last) {
			big = l
		}
	}
	return big
}

// group is the list of m under k, made if need be.
func group(m map[string]*list.List, k string) *list.List {
	l := m[k]
	if l == nil {
		l = list.New()
		m[k] = l
	}
	return l
}

// touch returns the session of token, if it is live, and slides its
// expiry: the session now ends idle after this call.
func (s *sessionStore) touch(token string) (session, bool) {
	key := tokenKey(token)
	if s.shared != nil {
		kind, sid, ent, ok := s.shared.Touch(key)
		if !ok || kind != s.kind {
			return session{}, false
		}
		return session{key: key, systemID: sid, enterprise: ent, last: s.now()}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expire(now)
	se, ok := s.byKey[key]
	if !ok {
		return session{}, false
	}
	se.last = now
	s.lru.MoveToBack(se.inAll)
	s.ents[se.enterprise].MoveToBack(se.inEnt)
	s.users[userKey(se.enterprise, se.systemID)].MoveToBack(se.inUser)
	return *se, true
}

// end removes the session of token (logout); unknown tokens are ignored.
func (s *sessionStore) end(token string) {
	if s.shared != nil {
		s.shared.End(tokenKey(token))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if se, ok := s.byKey[tokenKey(token)]; ok {
		s.remove(se)
	}
}

// endUser removes every session of the user systemID but keep's (a
// password change ends the user's other sessions; keep "" ends all).
func (s *sessionStore) endUser(systemID, keep string) {
	kept := [32]byte{}
	if keep != "" {
		kept = tokenKey(keep)
	}
	if s.shared != nil {
		s.shared.EndUser(s.kind, systemID, kept)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Front(); el != nil; {
		next := el.Next()
		if se := el.Value.(*session); se.systemID == systemID && (keep == "" || se.key != kept) {
			s.remove(se)
		}
		el = next
	}
}

// len is the number of live sessions (of this table's memory: 0 with a
// shared store).
func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(s.now())
	return s.lru.Len()
}

// expire drops every session idle for s.idle or longer at now.
func (s *sessionStore) expire(now time.Time) {
	for el := s.lru.Front(); el != nil; el = s.lru.Front() {
		se := el.Value.(*session)
		if now.Sub(se.last) < s.idle {
			return
		}
		s.remove(se)
	}
}

// remove forgets se, and its enterprise's and user's lists once empty
// (the maps hold only who has sessions).
func (s *sessionStore) remove(se *session) {
	delete(s.byKey, se.key)
	s.lru.Remove(se.inAll)
	el := s.ents[se.enterprise]
	el.Remove(se.inEnt)
	if el.Len() == 0 {
		delete(s.ents, se.enterprise)
	}
	uk := userKey(se.enterprise, se.systemID)
	ul := s.users[uk]
	ul.Remove(se.inUser)
	if ul.Len() == 0 {
		delete(s.users, uk)
	}
}

// loginThrottle slows down repeated failed logins from one source key
// (login.go says what a key is) as SMPP binds are: the n-th failure in a
// row is answered after 100 ms × 2^(n-1), at most 5 s, and the key
// makes no other attempt meanwhile. A key that is an address counts its
// network's failures too (smpp.SourcePrefix: an IPv4 /24, an IPv6 /48),
// one doubling per loginPrefixHolds of them, whichever is more: addresses
// of one network taking turns would otherwise each start from the first
// delay (13 addresses failing once each: the 13th waits 800 ms, not
// 100). A success clears its key, not its network. A quiet 10 minutes
// clears both. It also admits logins to the password check (login.go).
type loginThrottle struct {
	now func() time.Time
	// maxKeys bounds fails, nets and good (maxThrottledIPs, maxGoodLogins
	// when 0; tests lower it).
	maxKeys int

	mu    sync.Mutex
	fails map[string]failures
	nets  map[string]failures  // failures by network, of keys that are addresses
	good  map[string]time.Time // source address + system_id → last successful login (login.go)
	gate  loginGate
}

type failures struct {
	n    int
	last time.Time
}

const (
	loginDelayMin   = 100 * time.Millisecond
	loginDelayMax   = 5 * time.Second
	loginForget     = 10 * time.Minute
	maxThrottledIPs = 10_000
)

// failed records a failure of key, from network prefix ("" for a key that
// is not an address), and returns how long to wait before answering it.
func (l *loginThrottle) failed(key, prefix string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.fails == nil {
		l.fails, l.nets = make(map[string]failures), make(map[string]failures)
	}
	n := l.count(l.fails, key, now)
	if prefix != "" {
		n = max(n, (l.count(l.nets, prefix, now)-1)/loginPrefixHolds+1)
	}
	d := loginDelayMin
	for i := 1; i < n && d < loginDelayMax; i++ {
		d *= 2
	}
	return min(d, loginDelayMax)
}

// count counts a failure of key in m at now and returns its failures in
// a row, this one included. l.mu held.
func (l *loginThrottle) count(m map[string]failures, key string, now time.Time) int {
	f, ok := m[key]
	if now.Sub(f.last) > loginForget {
		f.n = 0
	}
	f.n++
	f.last = now
	// Bounded: full, the failures forgotten anyway (quiet loginForget)
	// go; still full, a new key is not remembered (it is answered after
	// the first delay each time) rather than everyone forgotten, which
	// would let a flood from many addresses wipe the delays and suspicion
	// of the addresses guessing a real user's password.
	if !ok && len(m) >= l.maxFails() {
		for k, old := range m {
			if now.Sub(old.last) > loginForget {
				delete(m, k)
			}
		}
	}
	if ok || len(m) < l.maxFails() {
		m[key] = f
	}
	return f.n
}

func (l *loginThrottle) maxFails() int {
	if l.maxKeys > 0 {
		return l.maxKeys
	}
	return maxThrottledIPs
}

// suspect reports whether key failed a login in the last loginForget.
func (l *loginThrottle) suspect(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.fails[key]
	return ok && l.now().Sub(f.last) <= loginForget
}

func (l *loginThrottle) succeeded(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
}

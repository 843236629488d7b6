package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// BindAuthenticator is an optional capability of a Policy: authentication
// that knows the bind's context and the peer's address, so that a bind whose
// connection closed while it waited costs nothing and the slow checks are
// shared fairly between source addresses. Gateway.Bind uses it when the
// Policy has it (Rules does), else Policy.Authenticate.
type BindAuthenticator interface {
	AuthenticateBind(ctx context.Context, remoteIP, systemID, password string) (*Account, error)
}

// AuthOptions configure an AuthCache. Zero values take the defaults.
type AuthOptions struct {
	// TTL is how long verified credentials are remembered: 5 min.
	TTL time.Duration
	// MaxEntries bounds the remembered credentials and the addresses
	// remembered as failing: 10,000 each.
	MaxEntries int
	// Concurrency is how many slow checks (bcrypt) run at once. The
	// default, max(1, GOMAXPROCS/2), is the policy's own bcrypt
	// concurrency, so binds wait here, where a peer that hangs up leaves
	// the queue, and not in the policy, where it does not.
	Concurrency int
	// PerIP is how many slow checks one source address may have running
	// or waiting at once: 2. Its further binds wait for one of those.
	// A network (an IPv4 /24, an IPv6 /48: smpp.SourcePrefix) may have
	// PerNetworkTimes as many, whatever its addresses: an IPv6 /48 holds
	// 65,536 /64s, each a fresh address served first, which would
	// otherwise queue tens of thousands of checks ahead of a real user's
	// first bind.
	PerIP int
	// FailureMemory is how long an address whose check failed waits
	// behind addresses without failures: 5 min.
	FailureMemory time.Duration
	// OnCheck is called once per bind with how it was answered: one of
	// the Auth* outcomes.
	OnCheck func(outcome string)
	Now     func() time.Time
}

// Outcomes of a bind's authentication (AuthOptions.OnCheck).
const (
	AuthCached    = "cached"    // answered from remembered credentials
	AuthChecked   = "checked"   // the password was checked (bcrypt)
	AuthAbandoned = "abandoned" // the peer left before its turn
)

// AuthOutcomes lists every outcome OnCheck may get.
var AuthOutcomes = []string{AuthCached, AuthChecked, AuthAbandoned}

// AuthCache fronts the slow password check of SMPP binds:
//   - it remembers verified credentials under a keyed hash (HMAC-SHA256
//     with a per-process random key) of system_id and password, so a
//     known-good rebind skips bcrypt. A remembered bind is only good while
//     the user and its enterprise are unchanged since it was verified
//     (any change to either, a new password or a disabled enterprise
//     included, makes the next bind check the password again) and for at
//     most TTL. The policy stamps changes to the second: credentials of a
//     user or enterprise changed in the current second are not
//     remembered, so two changes within one second cannot hide the second;
//   - it runs at most Concurrency slow checks at once, at most PerIP of
//     them for one source address and PerNetworkTimes × PerIP for one
//     network (an IPv4 /24, an IPv6 /48), and serves addresses without
//     recent failures first, so a flood of wrong passwords from any
//     number of addresses does not hold up a real user's first bind for
//     long, nor one of fresh addresses from one network (each served
//     first, as it has not failed yet) hold it up for more than the
//     network's checks;
//   - a bind whose connection closed while it waited is dropped before
//     the slow check.
//
// Caveat: the keyed hash is fast to compute. Someone who can read this
// process's memory gets the key and the hashes and can test password
// guesses quickly, where the bcrypt hashes on disk resist that. Only
// credentials that bound in the last TTL are exposed this way.
//
// Caveat: with a policy clock that stands still (tests), changes made at
// the same instant look alike, and a change is only seen after TTL.
type AuthCache struct {
	opt AuthOptions
	key [32]byte

	mu       sync.Mutex
	verified map[[sha256.Size]byte]verifiedBind
	failed   map[string]time.Time // source address → last failed check
	perIP    map[string]*ipSlots
	perNet   map[string]*netSlots // by network (networkOf): its addresses' checks together

	gate gate
}

type verifiedBind struct {
	acct    Account
	version credentialVersion
	expires time.Time
}

// credentialVersion changes whenever anything that decides a bind does:
// the user (password included) or its enterprise.
type credentialVersion struct {
	user, enterprise time.Time
	code             string
}

type ipSlots struct {
	sem  chan struct{}
	refs int
}

// NewAuthCache returns an AuthCache; Rules uses it through its Auth field.
func NewAuthCache(opt AuthOptions) *AuthCache {
	if opt.TTL <= 0 {
		opt.TTL = 5 * time.Minute
	}
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = 10000
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opt.PerIP <= 0 {
		opt.PerIP = 2
	}
	if opt.FailureMemory <= 0 {
		opt.FailureMemory = 5 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	a := &AuthCache{
		opt:      opt,
		verified: make(map[[sha256.Size]byte]verifiedBind),
		failed:   make(map[string]time.Time),
		perIP:    make(map[string]*ipSlots),
		perNet:   make(map[string]*netSlots),
		gate:     gate{free: opt.Concurrency},
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic(fmt.Sprintf("gateway: no randomness for the auth cache key: %v", err)) // crypto/rand does not fail on Linux
	}
	return a
}

// ErrBindAbandoned is returned for a bind whose connection closed before
// its password was checked.
var ErrBindAbandoned = fmt.Errorf("%w: the peer left before its bind was checked", ErrAuth)

func (a *AuthCache) sum(systemID, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(systemID))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// authenticate answers from memory when it can, else queues for check,
// the slow path. version reads the credentials' current version (false:
// the user or its enterprise is gone or disabled).
func (a *AuthCache) authenticate(ctx context.Context, ip, systemID, password string,
	check func(systemID, password string) (*Account, error),
	version func(systemID string) (credentialVersion, bool),
) (*Account, error) {
	key := a.sum(systemID, password)
	now := a.opt.Now()
	a.mu.Lock()
	v, hit := a.verified[key]
	a.mu.Unlock()
	if hit {
		if cur, ok := version(systemID); ok && cur == v.version && now.Before(v.expires) {
			a.outcome(AuthCached)
			acct := v.acct
			return &acct, nil
		}
		a.mu.Lock()
		delete(a.verified, key)
		a.mu.Unlock()
	}

	release, err := a.acquire(ctx, ip, now)
	if err == nil {
		defer release()
		err = ctx.Err()
	}
	if err != nil {
		a.outcome(AuthAbandoned)
		return nil, fmt.Errorf("%w (%w)", ErrBindAbandoned, err)
	}
	a.outcome(AuthChecked)
	// Read the version before the check: if the password changes while it
	// runs, the remembered version is already stale and the next bind
	// checks again.
	before, known := version(systemID)
	acct, err := check(systemID, password)
	if err != nil {
		a.failure(ip)
		return nil, err
	}
	// Changes are stamped to the second: a version from this very second
	// could be followed by another change with the same stamp.
	if second := now.Truncate(time.Second); known && before.user.Before(second) && before.enterprise.Before(second) {
		a.remember(key, verifiedBind{acct: *acct, version: before, expires: a.opt.Now().Add(a.opt.TTL)})
	}
	return acct, nil
}

func (a *AuthCache) outcome(o string) {
	if a.opt.OnCheck != nil {
		a.opt.OnCheck(o)
	}
}

func (a *AuthCache) remember(key [sha256.Size]byte, v verifiedBind) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.verified[key]; !ok && len(a.verified) >= a.opt.MaxEntries {
		now := a.opt.Now()
		for k, e := range a.verified {
			if !now.Before(e.expires) {
				delete(a.verified, k)
			}
		}
		for k := range a.verified { // still full: drop an arbitrary entry
			if len(a.verified) < a.opt.MaxEntries {
				break
			}
			delete(a.verified, k)
		}
	}
	a.verified[key] = v
}

func (a *AuthCache) failure(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opt.Now()
	_, known := a.failed[ip]
	// Bounded as the SMPP server's failed binds are: full, the addresses
	// whose failure is older than FailureMemory go (they are served
	// first again anyway); still full, a new address is not remembered
	// (it is served as one without failures) rather than an arbitrary
	// one forgotten, which a flood from many addresses would turn into
	// serving the one guessing a password ahead of real users again.
	if !known && len(a.failed) >= a.opt.MaxEntries {
		cutoff := now.Add(-a.opt.FailureMemory)
		for k, at := range a.failed {
			if at.Before(cutoff) {
				delete(a.failed, k)
			}
		}
	}
	if known || len(a.failed) < a.opt.MaxEntries {
		a.failed[ip] = now
	}
}

// PerNetworkTimes is how many times an address's PerIP slots its network
// has: the factor of every network limit (smpp.PrefixTimes; an office or
// a data-centre /24 shared by several ESMEs keeps room for them).
const PerNetworkTimes = smpp.PrefixTimes

// acquire takes one of the address's slots, then one of its network's,
// then one of the shared ones; an address that has not failed recently
// goes ahead of those that have, in its network's queue and in the
// shared one.
func (a *AuthCache) acquire(ctx context.Context, ip string, now time.Time) (func(), error) {
	network := networkOf(ip)
	a.mu.Lock()
	s := a.perIP[ip]
	if s == nil {
		s = &ipSlots{sem: make(chan struct{}, a.opt.PerIP)}
		a.perIP[ip] = s
	}
	s.refs++
	n := a.perNet[network]
	if n == nil {
		n = &netSlots{gate: gate{free: PerNetworkTimes * a.opt.PerIP}}
		a.perNet[network] = n
	}
	n.refs++
	last, failed := a.failed[ip]
	a.mu.Unlock()
	unref := func() {
		a.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(a.perIP, ip)
		}
		if n.refs--; n.refs == 0 {
			delete(a.perNet, network)
		}
		a.mu.Unlock()
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		unref()
		return nil, ctx.Err()
	}
	priority := !failed || now.Sub(last) > a.opt.FailureMemory
	if err := n.gate.acquire(ctx, priority); err != nil {
		<-s.sem
		unref()
		return nil, err
	}
	if err := a.gate.acquire(ctx, priority); err != nil {
		n.gate.release()
		<-s.sem
		unref()
		return nil, err
	}
	return func() {
		a.gate.release()
		n.gate.release()
		<-s.sem
		unref()
	}, nil
}

// netSlots are a network's checks, running or waiting for the shared
// gate, and the binds waiting for one of them.
type netSlots struct {
	gate gate
	refs int
}

// networkOf is the network of a source key (smpp.RemoteIP's form: an
// IPv4 address, or an IPv6 /64 as a prefix), as smpp.SourcePrefix counts
// it: an IPv4 /24, an IPv6 /48.
func networkOf(key string) string {
	if p, err := netip.ParsePrefix(key); err == nil {
		return smpp.SourcePrefix(p.Addr().String())
	}
	return smpp.SourcePrefix(key)
}

// gate is a counting semaphore with two queues: a slot that frees goes to
// the first waiter of the priority queue, else to the first of the other.
type gate struct {
	mu        sync.Mutex
	free      int
	high, low []chan struct{}
}

func (g *gate) acquire(ctx context.Context, priority bool) error {
	g.mu.Lock()
	if g.free > 0 && len(g.high) == 0 && (priority || len(g.low) == 0) {
		g.free--
		g.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	if priority {
		g.high = append(g.high, w)
	} else {
		g.low = append(g.low, w)
	}
	g.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	queued := false
	if i := slices.Index(g.high, w); i >= 0 {
		g.high, queued = slices.Delete(g.high, i, i+1), true
	} else if i := slices.Index(g.low, w); i >= 0 {
		g.low, queued = slices.Delete(g.low, i, i+1), true
	}
	g.mu.Unlock()
	if !queued { // granted meanwhile: hand the slot on
		g.release()
	}
	return ctx.Err()
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(g.high) > 0:
		close(g.high[0])
		g.high = slices.Delete(g.high, 0, 1)
	case len(g.low) > 0:
		close(g.low[0])
		g.low = slices.Delete(g.low, 0, 1)
	default:
		g.free++
	}
}

package api

import (
	"container/list"
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// Login admission. POST /v1/login costs a bcrypt comparison (≈ 70 ms of
// a core at cost 10) for anyone who asks, so a flood of wrong passwords
// from many addresses would queue real users behind it (200 addresses
// held a real login 12 s). Logins therefore pass a gate before the
// password check:
//
//   - A login is counted under a source key: the client's IP address
//     (the connection's, X-Forwarded-For is not read), or, for an
//     address from which this system_id logged in successfully in the
//     last loginRemember, that address and system_id together. A key
//     has at most one login in progress — waiting, being checked, or
//     sitting out its failure delay (session.go's throttle); another
//     login from it is answered 429 at once, without bcrypt work.
//   - A network (smpp.SourcePrefix: an IPv4 /24, an IPv6 /48) has at
//     most loginPrefixHolds logins in progress from keys that are
//     addresses; another is answered 429 at once too. Known (address,
//     system_id) pairs do not count against it nor meet it: a user who
//     logged in from that address before is not held back by a
//     neighbour.
//   - At most gateSlots password checks run at once (policy's own
//     bound, AuthConcurrency, is the same); the others wait, in three
//     classes served in order: keys that logged in before and have not
//     failed since, then keys with no recent failure (newest first:
//     under a flood of new addresses, the one who just arrived is the
//     likeliest to still be waiting), then keys that failed lately (in
//     arrival order; one login per key, so they take turns). A real user
//     therefore waits for the checks in progress, not for the flood.
//   - A login whose client hung up leaves the queue, and one admitted
//     after its client hung up is not checked.
//   - At most maxLoginWaiting logins wait in all; more are answered 429.
//
// There is no per-account lockout: it would let anyone lock a user out
// of every address. An attacker sharing the user's address (a NAT) and
// guessing other accounts fills that address's key, not the user's
// (address, system_id) key; one guessing this very user's password
// slows the user's key by its failure delay (≤ 5 s), never locks it. A
// cache of verified credentials (a keyed hash of system_id + password,
// as SMPP binds are to get one) would plug in before the gate in login:
// a hit skips the gate and bcrypt alike.

const (
	loginRemember   = 30 * 24 * time.Hour // a successful (address, system_id) pair is known this long
	maxGoodLogins   = 10_000              // known pairs kept; when full, no new one until one is a loginRemember old
	maxLoginWaiting = 1024
	// loginPrefixHolds is how many logins from one network may be in
	// progress at once, where an address has one: the same factor as the
	// public routes' network buckets (prefixBurstTimes). A failed login
	// holds its place for its failure delay (up to 5 s), so a /24 of
	// guessers, 256 addresses, makes about 4 guesses in 5 s once their
	// delays have grown, not 256, and a /48 (65,536 /64s) holds 4 of the
	// maxLoginWaiting places, not all of them. Four, not one: the
	// addresses of an office or a campus share the network, and one
	// user's mistyped password, sitting out its delay, leaves three.
	loginPrefixHolds = prefixBurstTimes
)

var (
	errLoginBusy = errors.New("too many logins waiting")
	// loginGate.hold's refusals.
	errLoginHeld     = errors.New("a login from this source is in progress")
	errNetworkLogins = errors.New("too many logins from this network are in progress")
	gateSlots        = max(1, runtime.GOMAXPROCS(0)/2)
)

// Waiting classes, served in this order.
const (
	classKnown   = iota // an (address, system_id) pair that logged in before, no failure since
	classNew            // no recent failure; served newest first
	classSuspect        // failed lately
	numClasses
)

// loginKey is the source key of a login from ip for systemID and its
// waiting class.
func (l *loginThrottle) loginKey(ip, systemID string) (string, int) {
	pair := ip + "\x00" + systemID
	l.mu.Lock()
	last, known := l.good[pair]
	known = known && l.now().Sub(last) < loginRemember
	l.mu.Unlock()
	key, class := ip, classNew
	if known {
		key, class = pair, classKnown
	}
	if l.suspect(key) {
		class = classSuspect
	}
	return key, class
}

// loggedIn records a successful login of systemID from ip.
func (l *loginThrottle) loggedIn(key, ip, systemID string) {
	l.succeeded(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.good == nil {
		l.good = make(map[string]time.Time)
	}
	now, pair := l.now(), ip+"\x00"+systemID
	// Bounded as the failures are: full, the pairs not seen for
	// loginRemember go; still full, a new pair is not remembered rather
	// than every real user's forgotten (a flood of logins with valid
	// credentials from many addresses could do that at will).
	max := maxGoodLogins
	if l.maxKeys > 0 {
		max = l.maxKeys
	}
	if _, ok := l.good[pair]; !ok && len(l.good) >= max {
		for k, at := range l.good {
			if now.Sub(at) >= loginRemember {
				delete(l.good, k)
			}
		}
		if len(l.good) >= max {
			return
		}
	}
	l.good[pair] = now
}

// loginGate holds the source keys with a login in progress, counts them
// by network, and admits logins to the password check by class.
type loginGate struct {
	mu       sync.Mutex
	held     map[string]bool
	prefixes map[string]int // network → logins in progress; only those > 0 are kept
	running  int
	waiting  int
	queues   [numClasses]list.List // of *loginWaiter
}

type loginWaiter struct {
	ready chan struct{} // closed when admitted
	class int
	el    *list.Element
}

// hold marks key as having a login in progress, counted under the
// network prefix unless prefix is "" (a known pair). It marks nothing and
// returns errLoginHeld if key has one, errNetworkLogins if prefix has
// loginPrefixHolds.
func (g *loginGate) hold(key, prefix string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[key] {
		return errLoginHeld
	}
	if prefix != "" && g.prefixes[prefix] >= loginPrefixHolds {
		return errNetworkLogins
	}
	if g.held == nil {
		g.held = make(map[string]bool)
		g.prefixes = make(map[string]int)
	}
	g.held[key] = true
	if prefix != "" {
		g.prefixes[prefix]++
	}
	return nil
}

// unhold ends what hold(key, prefix) marked.
func (g *loginGate) unhold(key, prefix string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.held, key)
	if prefix == "" {
		return
	}
	if g.prefixes[prefix]--; g.prefixes[prefix] <= 0 {
		delete(g.prefixes, prefix)
	}
}

// wait returns when a password check may start (call done after it), or
// with ctx's error if the client hung up first, or errLoginBusy.
func (g *loginGate) wait(ctx context.Context, class int) error {
	g.mu.Lock()
	if g.running < gateSlots && g.waiting == 0 {
		g.running++
		g.mu.Unlock()
		return nil
	}
	if g.waiting >= maxLoginWaiting {
		g.mu.Unlock()
		return errLoginBusy
	}
	w := &loginWaiter{ready: make(chan struct{}), class: class}
	if class == classNew {
		w.el = g.queues[class].PushFront(w)
	} else {
		w.el = g.queues[class].PushBack(w)
	}
	g.waiting++
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-w.ready: // admitted meanwhile: pass the slot on
			g.mu.Unlock()
			g.done()
		default:
			g.queues[w.class].Remove(w.el)
			g.waiting--
			g.mu.Unlock()
		}
		return ctx.Err()
	}
}

// done ends a password check: its slot goes to the first waiter.
func (g *loginGate) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.queues {
		if el := g.queues[c].Front(); el != nil {
			g.queues[c].Remove(el)
			g.waiting--
			close(el.Value.(*loginWaiter).ready)
			return
		}
	}
	g.running--
}

// queued is the number of logins waiting.
func (g *loginGate) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

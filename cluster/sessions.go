package cluster

// Sessions: console and operator sessions shared by the nodes.
//
// Sessions implements api.SessionStore (api.Config.Sessions) in etcd, so
// that a browser logged in through one node is logged in on every node,
// and a logout or an expiry on one ends the session everywhere.
//
// # Key layout
//
//	P sessions/<hex SHA-256 of the token>  JSON {"system_id", "enterprise", "kind", "created"}
//
// The token itself is never stored or sent (api hands over its SHA-256
// only). Each session has its own etcd lease of TTL idle (api.SessionIdle,
// 30 minutes): when it is not kept alive, etcd deletes the key and every
// node's watch drops it.
//
// # Guarantees and costs
//
//   - Lookups (Touch) are served from a local cache that a watch of the
//     prefix keeps, so an authenticated HTTP request costs no etcd request.
//     A session created on another node reaches the cache within the
//     watch's delay (milliseconds; under a second); a token missing from
//     the cache is looked up once in etcd (a serializable read of the local
//     member) so that a request sent right after the login to another node
//     is not refused.
//   - Sliding the expiry is one LeaseKeepAliveOnce at most every
//     slideEvery (a minute; idle/4 when idle is shorter) per session and
//     node: a session ends between idle − slideEvery and idle after its
//     last request. A keepalive that finds the lease gone ends the
//     session at once, whichever node kept it alive before.
//   - Create is two etcd requests (grant, put); End and EndUser revoke the
//     leases (one request each).
//   - Bounded as api's in-memory tables are, each kind apart: console
//     sessions at MaxSessions, an enterprise's at MaxEnterpriseSessions
//     and a user's at MaxUserSessions; operator sessions at
//     MaxOperatorSessions, which no console login can end. A login past a
//     bound revokes, in this order, its own user's session kept alive
//     least recently, its enterprise's, or (the kind's whole table full)
//     that of the enterprise holding the most. Create counts in the cache,
//     a scan of it (a login's bcrypt costs more).
//
// # Caveats
//
//   - The bounds are kept by the node of the login, on what its cache
//     holds: logins on other nodes in the last instant (before their
//     watch events arrived) are not counted yet, so a bound can be passed
//     by a few sessions for that long; the next login of that enterprise
//     brings it back.
//   - "Least recently" is by this node's keepalives (at most one a
//     slideEvery per session); a session used only through another node
//     counts as kept alive when this node learnt of it.
//   - With etcd unreachable, logins fail; live sessions stay usable from
//     the cache, their expiry sliding is retried at the next request.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
)

// sessionRequestTimeout bounds each etcd request of Sessions.
const sessionRequestTimeout = 5 * time.Second

// Sessions is the cluster's table of console sessions (see above).
type Sessions struct {
	cli        *clientv3.Client
	prefix     string // P + "sessions/"
	idle       time.Duration
	slideEvery time.Duration
	now        func() time.Time
	log        *slog.Logger

	// users and operators bound the sessions of either kind (see above;
	// tests lower them). fetches bounds the etcd reads of tokens this node
	// has not seen, so that requests with made-up tokens cannot turn into
	// a read of etcd each.
	users, operators sessionLimits
	fetches          *rate.Limiter

	mu    sync.Mutex
	cache map[string]*cachedSession // hex key →
	rev   int64                     // the revision the cache reflects

	cancel context.CancelFunc
	done   chan struct{}
}

type sessionRec struct {
	SystemID   string    `json:"system_id"`
	Enterprise string    `json:"enterprise,omitempty"`
	Kind       string    `json:"kind"`
	Created    time.Time `json:"created"`
}

type cachedSession struct {
	rec   sessionRec
	lease clientv3.LeaseID
	kept  time.Time // last keepalive (or when this node learnt of it)
}

// OpenSessions loads the live sessions under prefix and watches them until
// Close. idle is how long a session lives after its last use (api's
// SessionIdle; etcd rounds it to whole seconds, at least its minimum TTL).
// ctx bounds the initial load. The caller owns client.
func OpenSessions(ctx context.Context, client *clientv3.Client, prefix string, idle time.Duration, log *slog.Logger) (*Sessions, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sessions{cli: client, prefix: prefix + "sessions/", idle: idle, slideEvery: min(time.Minute, idle/4),
		now: time.Now, log: log, done: make(chan struct{}),
		users:     sessionLimits{all: MaxSessions, enterprise: MaxEnterpriseSessions, user: MaxUserSessions},
		operators: sessionLimits{all: MaxOperatorSessions},
		fetches:   rate.NewLimiter(sessionFetchRate, sessionFetchRate)}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(wctx)
	return s, nil
}

// Close stops the watch; sessions stay in etcd until they expire.
func (s *Sessions) Close() error {
	s.cancel()
	<-s.done
	return nil
}

func (s *Sessions) keyOf(key [32]byte) string { return s.prefix + hex.EncodeToString(key[:]) }

func (s *Sessions) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), sessionRequestTimeout)
}

// The bounds of the cluster's sessions: api's of one node (api.MaxSessions
// and the others of the same names; a test keeps them equal), so that
// neither a node nor a cluster lets one enterprise end the others'
// sessions, nor any enterprise the operator's.
const (
	MaxSessions           = 10_000          // console sessions
	MaxEnterpriseSessions = MaxSessions / 4 // an enterprise's console sessions
	MaxUserSessions       = 50              // a user's console sessions
	MaxOperatorSessions   = 1000            // operator sessions, bounded apart

	// kindOperator is api.SessionOperator: sessions of that kind are
	// bounded by operators, any other kind by users.
	kindOperator = "operator"
)

// sessionLimits bounds the sessions of a kind: all of them, an
// enterprise's and a user's (0: no bound of its own).
type sessionLimits struct{ all, enterprise, user int }

// sessionFetchRate is how many unknown tokens a second a node looks up
// in etcd (a session created on another node an instant ago, before the
// watch brought it); past it, such a token is refused until the watch
// has it — a few milliseconds for a real one.
const sessionFetchRate = 100

// Create stores a new session with its own lease, and revokes those that
// it pushes past a bound.
func (s *Sessions) Create(key [32]byte, kind, systemID, enterprise string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	ttl := int64((s.idle + time.Second - 1) / time.Second)
	lease, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("cluster: session: grant lease: %w", err)
	}
	rec := sessionRec{SystemID: systemID, Enterprise: enterprise, Kind: kind, Created: s.now().UTC()}
	data, _ := json.Marshal(rec)
	if _, err := s.cli.Put(ctx, s.keyOf(key), string(data), clientv3.WithLease(lease.ID)); err != nil {
		_, _ = s.cli.Revoke(ctx, lease.ID)
		return fmt.Errorf("cluster: session: store: %w", err)
	}
	hk := hex.EncodeToString(key[:])
	s.mu.Lock()
	s.cache[hk] = &cachedSession{rec: rec, lease: lease.ID, kept: s.now()}
	var evict []clientv3.LeaseID
	for {
		k := s.pastBound(hk)
		if k == "" {
			break
		}
		evict = append(evict, s.cache[k].lease)
		delete(s.cache, k)
	}
	s.mu.Unlock()
	for _, l := range evict {
		_, _ = s.cli.Revoke(ctx, l) // its key goes on every node
	}
	return nil
}

// sessionCount is how many sessions of a group the cache holds and which
// of them (the new one aside) was kept alive least recently.
type sessionCount struct {
	n      int
	oldest string // hex key; "" for none
	kept   time.Time
}

func (g *sessionCount) add(hk string, c *cachedSession, isNew bool) {
	g.n++
	if !isNew && (g.oldest == "" || c.kept.Before(g.kept)) {
		g.oldest, g.kept = hk, c.kept
	}
}

// pastBound returns the session to end because the new session hk passes
// a bound of its kind, "" if none does: its user's kept alive least
// recently, else its enterprise's, else, the kind's table full, that of
// the enterprise holding the most (of those holding as many, the one
// kept alive least recently). One scan of the cache; s.mu is held.
func (s *Sessions) pastBound(hk string) string {
	rec := s.cache[hk].rec
	lim := s.users
	if rec.Kind == kindOperator {
		lim = s.operators
	}
	var all, user sessionCount
	ents := make(map[string]*sessionCount)
	for k, c := range s.cache {
		if c.rec.Kind != rec.Kind {
			continue
		}
		isNew := k == hk
		all.add(k, c, isNew)
		e := ents[c.rec.Enterprise]
		if e == nil {
			e = &sessionCount{}
			ents[c.rec.Enterprise] = e
		}
		e.add(k, c, isNew)
		if c.rec.Enterprise == rec.Enterprise && c.rec.SystemID == rec.SystemID {
			user.add(k, c, isNew)
		}
	}
	ent := ents[rec.Enterprise] // the new session's own: never nil
	switch {
	case lim.user > 0 && user.n > lim.user:
		return user.oldest
	case lim.enterprise > 0 && ent.n > lim.enterprise:
		return ent.oldest
	case all.n > lim.all:
		var big *sessionCount
		for _, e := range ents {
			if e.oldest != "" && (big == nil || e.n > big.n || e.n == big.n && e.kept.Before(big.kept)) {
				big = e
			}
		}
		if big != nil {
			return big.oldest
		}
	}
	return ""
}

// Touch returns the live session of key and slides its expiry (a
// keepalive of its lease at most every slideEvery).
func (s *Sessions) Touch(key [32]byte) (kind, systemID, enterprise string, ok bool) {
	hk := hex.EncodeToString(key[:])
	s.mu.Lock()
	cs := s.cache[hk]
	var c cachedSession
	if cs != nil {
		c = *cs
	}
	s.mu.Unlock()
	now := s.now()
	if cs == nil {
		// Not here yet (created on another node an instant ago), or no
		// such session: ask the local etcd member once.
		got, found := s.fetch(hk)
		if !found {
			return "", "", "", false
		}
		c = *got
	} else if now.Sub(c.kept) >= s.slideEvery {
		ctx, cancel := s.ctx()
		_, err := s.cli.KeepAliveOnce(ctx, c.lease)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.drop(hk, c.lease)
			return "", "", "", false
		case err != nil:
			s.log.Warn("cluster: session keepalive", "err", err) // retried at the next request
		default:
			s.mu.Lock()
			if cs := s.cache[hk]; cs != nil && cs.lease == c.lease {
				cs.kept = now
			}
			s.mu.Unlock()
		}
	}
	return c.rec.Kind, c.rec.SystemID, c.rec.Enterprise, true
}

// fetch reads a session missing from the cache and caches it.
func (s *Sessions) fetch(hk string) (*cachedSession, bool) {
	if !s.fetches.Allow() {
		return nil, false
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+hk, clientv3.WithSerializable())
	if err != nil || len(resp.Kvs) == 0 {
		return nil, false
	}
	var rec sessionRec
	if json.Unmarshal(resp.Kvs[0].Value, &rec) != nil {
		return nil, false
	}
	cs := &cachedSession{rec: rec, lease: clientv3.LeaseID(resp.Kvs[0].Lease), kept: s.now()}
	out := *cs // the caller's copy: once cached, cs is the watch's to change (under s.mu)
	s.mu.Lock()
	if _, ok := s.cache[hk]; !ok && resp.Header.Revision > s.rev {
		s.cache[hk] = cs // a delete seen by the watch after this read wins
	}
	s.mu.Unlock()
	return &out, true
}

// drop removes a session from the cache if it still has lease.
func (s *Sessions) drop(hk string, lease clientv3.LeaseID) {
	s.mu.Lock()
	if cs := s.cache[hk]; cs != nil && cs.lease == lease {
		delete(s.cache, hk)
	}
	s.mu.Unlock()
}

// End ends the session of key on every node.
func (s *Sessions) End(key [32]byte) {
	hk := hex.EncodeToString(key[:])
	s.mu.Lock()
	cs := s.cache[hk]
	delete(s.cache, hk)
	s.mu.Unlock()
	ctx, cancel := s.ctx()
	defer cancel()
	if cs != nil {
		if _, err := s.cli.Revoke(ctx, cs.lease); err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return
		}
	}
	if _, err := s.cli.Delete(ctx, s.prefix+hk); err != nil {
		s.log.Warn("cluster: session end", "err", err)
	}
}

// EndUser ends every session of kind of systemID but keep's.
func (s *Sessions) EndUser(kind, systemID string, keep [32]byte) {
	kept := hex.EncodeToString(keep[:])
	var leases []clientv3.LeaseID
	s.mu.Lock()
	for hk, cs := range s.cache {
		if cs.rec.Kind == kind && cs.rec.SystemID == systemID && hk != kept {
			leases = append(leases, cs.lease)
			delete(s.cache, hk)
		}
	}
	s.mu.Unlock()
	ctx, cancel := s.ctx()
	defer cancel()
	for _, l := range leases {
		if _, err := s.cli.Revoke(ctx, l); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.log.Warn("cluster: session end", "err", err)
		}
	}
}

// Len is the number of sessions in the cache.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache)
}

// load replaces the cache with etcd's sessions.
func (s *Sessions) load(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("cluster: sessions: load: %w", err)
	}
	cache := make(map[string]*cachedSession, len(resp.Kvs))
	now := s.now()
	for _, kv := range resp.Kvs {
		var rec sessionRec
		if json.Unmarshal(kv.Value, &rec) == nil {
			cache[strings.TrimPrefix(string(kv.Key), s.prefix)] = &cachedSession{rec: rec, lease: clientv3.LeaseID(kv.Lease), kept: now}
		}
	}
	s.mu.Lock()
	s.cache, s.rev = cache, resp.Header.Revision
	s.mu.Unlock()
	return nil
}

// watch keeps the cache until ctx ends.
func (s *Sessions) watch(ctx context.Context) {
	defer close(s.done)
	backoff := watchRetryMin
	for ctx.Err() == nil {
		s.mu.Lock()
		from := s.rev + 1
		s.mu.Unlock()
		reload := false
		wctx, stop := context.WithCancel(ctx) // ends this watch when the loop leaves it
		for resp := range s.cli.Watch(clientv3.WithRequireLeader(wctx), s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
			if resp.CompactRevision != 0 {
				reload = true
				break
			}
			if err := resp.Err(); err != nil {
				s.log.Warn("cluster: sessions watch", "err", err)
				break
			}
			now := s.now()
			s.mu.Lock()
			for _, ev := range resp.Events {
				hk := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
				if ev.Type == clientv3.EventTypeDelete {
					delete(s.cache, hk)
					continue
				}
				var rec sessionRec
				if json.Unmarshal(ev.Kv.Value, &rec) != nil {
					continue
				}
				if cs := s.cache[hk]; cs != nil && cs.lease == clientv3.LeaseID(ev.Kv.Lease) {
					cs.rec = rec
				} else {
					s.cache[hk] = &cachedSession{rec: rec, lease: clientv3.LeaseID(ev.Kv.Lease), kept: now}
				}
			}
			if n := len(resp.Events); n > 0 {
				s.rev = max(s.rev, resp.Events[n-1].Kv.ModRevision)
			}
			s.mu.Unlock()
			backoff = watchRetryMin
		}
		stop()
		if reload && ctx.Err() == nil {
			if err := s.load(ctx); err != nil {
				s.log.Error("cluster: sessions reload", "err", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !pause(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

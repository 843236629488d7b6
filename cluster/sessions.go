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
//
// # Caveats
//
//   - No table bound: memory is one small entry per live session of the
//     cluster (api's in-memory table evicts the least recently used past
//     MaxSessions; this does not).
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

	// max bounds the sessions of the cluster (as api's in-memory table
	// is bounded): a login past it ends the session kept alive least
	// recently. fetches bounds the etcd reads of tokens this node has not
	// seen, so that requests with made-up tokens cannot turn into a read
	// of etcd each.
	max     int
	fetches *rate.Limiter

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
		max: MaxSessions, fetches: rate.NewLimiter(sessionFetchRate, sessionFetchRate)}
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

// Create stores a new session with its own lease.
// MaxSessions bounds the console and operator sessions of a cluster
// (api.MaxSessions is the same bound for one node).
const MaxSessions = 10_000

// sessionFetchRate is how many unknown tokens a second a node looks up
// in etcd (a session created on another node an instant ago, before the
// watch brought it); past it, such a token is refused until the watch
// has it — a few milliseconds for a real one.
const sessionFetchRate = 100

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
	s.mu.Lock()
	s.cache[hex.EncodeToString(key[:])] = &cachedSession{rec: rec, lease: lease.ID, kept: s.now()}
	var evict []clientv3.LeaseID
	for len(s.cache) > s.max {
		// The session kept alive least recently: a scan, at a login
		// (rare, and slower by its bcrypt than by this).
		var oldK string
		var old *cachedSession
		for k, c := range s.cache {
			if old == nil || c.kept.Before(old.kept) {
				oldK, old = k, c
			}
		}
		delete(s.cache, oldK)
		evict = append(evict, old.lease)
	}
	s.mu.Unlock()
	for _, l := range evict {
		_, _ = s.cli.Revoke(ctx, l) // its key goes on every node
	}
	return nil
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

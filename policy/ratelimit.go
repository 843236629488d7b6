package policy

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultTPS is the submission rate of an enterprise whose TPS is 0, unless
// Config.DefaultTPS says otherwise.
const DefaultTPS = 50

// RateLimiter is a token bucket per enterprise (golang.org/x/time/rate), rate
// = the enterprise's TPS (or the default), burst = one second's worth. Buckets
// are created lazily, only for enterprises that exist in the store's snapshot,
// so their number is bounded by the number of enterprises; a bucket is
// replaced when the enterprise's TPS changes.
type RateLimiter struct {
	store      *Store
	defaultTPS int
	now        func() time.Time
	// nodes shares every enterprise's TPS among the nodes of a cluster
	// (SetNodes): each node allows its part.
	nodes atomic.Int32

	mu sync.RWMutex
	m  map[string]*entLimiter
}

type entLimiter struct {
	tps int
	lim *rate.Limiter
}

// NewRateLimiter returns a limiter reading enterprises' TPS from store.
// defaultTPS ≤ 0 means DefaultTPS; now nil means time.Now.
func NewRateLimiter(store *Store, defaultTPS int, now func() time.Time) *RateLimiter {
	if defaultTPS <= 0 {
		defaultTPS = DefaultTPS
	}
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{store: store, defaultTPS: defaultTPS, now: now, m: map[string]*entLimiter{}}
}

// Allow takes one token of the enterprise's bucket; false for an unknown
// enterprise or an empty bucket (→ ESME_RTHROTTLED / ReasonRateLimited).
func (r *RateLimiter) Allow(code string) bool { return r.AllowN(code, 1) }

// AllowN takes n tokens at once. n above the burst (the enterprise's TPS)
// never succeeds: count submissions (PDUs, HTTP requests), or split a large
// submit_multi.
func (r *RateLimiter) AllowN(code string, n int) bool {
	snap := r.store.snap.Load()
	es := snap.ents[code]
	if es == nil {
		return false
	}
	tps := es.ent.TPS
	if tps <= 0 {
		tps = r.defaultTPS
	}
	if n := int(r.nodes.Load()); n > 1 {
		tps = max(1, (tps+n-1)/n) // rounded up: a share is never 0
	}
	r.mu.RLock()
	el := r.m[code]
	r.mu.RUnlock()
	if el == nil || el.tps != tps {
		r.mu.Lock()
		if el = r.m[code]; el == nil || el.tps != tps {
			el = &entLimiter{tps: tps, lim: rate.NewLimiter(rate.Limit(tps), tps)}
			r.m[code] = el
			if len(r.m) > len(snap.ents) { // drop enterprises that no longer exist
				for c := range r.m {
					if snap.ents[c] == nil {
						delete(r.m, c)
					}
				}
			}
		}
		r.mu.Unlock()
	}
	return el.lim.AllowN(r.now(), n)
}

// TPS is the enterprise's submission rate as Allow applies it, the whole
// enterprise's (not a cluster node's share); 0 for an unknown enterprise.
func (r *RateLimiter) TPS(code string) int {
	es := r.store.snap.Load().ents[code]
	if es == nil {
		return 0
	}
	if es.ent.TPS <= 0 {
		return r.defaultTPS
	}
	return es.ent.TPS
}

// SetNodes shares the enterprises' TPS among n live nodes of a cluster:
// each bucket of this node refills at TPS/n (rounded up, at least 1) from
// the next submission on. The cluster calls it when nodes join or leave,
// so the enterprise's total stays its TPS (within the rounding) however
// its clients spread over the nodes. n ≤ 1: the whole TPS.
func (r *RateLimiter) SetNodes(n int) { r.nodes.Store(int32(max(n, 1))) }

// size returns the number of buckets (tests).
func (r *RateLimiter) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

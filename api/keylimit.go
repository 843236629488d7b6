package api

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/qxtd/qxtd/smpp"
)

// keyLimiter is a token bucket per key (a source address, an account),
// for the public routes anyone may call: applications, password resets.
// It has one level of buckets or more, each its own table: a request names
// a key of each level and takes a token of each key's bucket, or of none
// (a source limiter's two levels: its address and its network, see
// newSourceLimiter). A request refused by one level takes nothing from
// another, and one refused creates no bucket, so a flood that is refused
// does not fill the tables.
//
// Memory is bounded: at most max keys a level; when a level is full, the
// keys whose bucket is full again (idle) are forgotten, at most once a
// second, and a new key that still finds no room is refused (fail closed:
// a flood of addresses cannot buy fresh buckets by evicting busy ones). A
// key is at most maxKeyBytes: a longer one (a reset's group code and user
// name, up to the body's 8 KiB, chosen by whoever calls) is kept as its
// SHA-256.
type keyLimiter struct {
	now func() time.Time

	mu     sync.Mutex
	levels []*bucketTable
}

// bucketTable is one level of a keyLimiter, guarded by its mutex.
type bucketTable struct {
	every time.Duration // one token per every
	burst int
	max   int
	m     map[string]*rate.Limiter
	swept time.Time
}

func newKeyLimiter(every time.Duration, burst, maxKeys int) *keyLimiter {
	return &keyLimiter{now: time.Now, levels: []*bucketTable{newBucketTable(every, burst, maxKeys)}}
}

// prefixBurstTimes is how many times a source's burst its network's
// bucket holds (smpp.SourcePrefix: an IPv4 /24, an IPv6 /48); it refills
// at the source's own rate. So a network of many addresses (a /24 has 256,
// a /48 65,536 /64s) gets four sources' burst and then one source's rate,
// where counted by address alone it got 256 (65,536) times both. Four,
// not one: the addresses of a NAT'd office or a campus share the /24, and
// one of them spending its whole allowance, at any pace, takes at most its
// own burst from the network's (its steady rate is the network's refill),
// so the others keep three sources' burst and share the refill with it.
// The factor every network limit shares (the listeners', the bind queue's).
const prefixBurstTimes = smpp.PrefixTimes

// newSourceLimiter is a keyLimiter of two levels, for allowSource: per
// source address (smpp.SourceKey) one token per every after a burst, and
// per network (smpp.SourcePrefix) one token per every after
// prefixBurstTimes × burst.
func newSourceLimiter(every time.Duration, burst, maxKeys int) *keyLimiter {
	return &keyLimiter{now: time.Now, levels: []*bucketTable{
		newBucketTable(every, burst, maxKeys),
		newBucketTable(every, prefixBurstTimes*burst, maxKeys),
	}}
}

func newBucketTable(every time.Duration, burst, maxKeys int) *bucketTable {
	return &bucketTable{every: every, burst: burst, max: maxKeys, m: make(map[string]*rate.Limiter)}
}

// maxKeyBytes bounds a key as kept: max keys take at most max ×
// maxKeyBytes beside their buckets.
const maxKeyBytes = sha256.Size

// allow takes a token of each key's bucket (keys[i] of the i-th level)
// if every one has a token and a new key finds room in its level; else
// it takes none and keeps no new key. keys are one a level.
func (l *keyLimiter) allow(keys ...string) bool {
	if len(keys) != len(l.levels) {
		panic("api: keyLimiter.allow: one key a level")
	}
	var kb [2]string
	var lb [2]*rate.Limiter
	kept, lims := kb[:0], lb[:0]
	for _, k := range keys {
		kept = append(kept, keptKey(k))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Check every level, then take from every one: a refusal by one
	// level takes nothing from another and keeps no new key.
	for i, t := range l.levels {
		lim := t.bucket(kept[i], now)
		if lim == nil || lim.TokensAt(now) < 1 {
			return false
		}
		lims = append(lims, lim)
	}
	for i, t := range l.levels {
		t.m[kept[i]] = lims[i]
		lims[i].AllowN(now, 1)
	}
	return true
}

// allowSource takes a token of r's source address and of its network
// (newSourceLimiter), or of neither.
func (l *keyLimiter) allowSource(r *http.Request) bool {
	return l.allow(clientIP(r), clientPrefix(r))
}

// keptKey is key as a table keeps it: at most maxKeyBytes.
func keptKey(key string) string {
	if len(key) > maxKeyBytes {
		h := sha256.Sum256([]byte(key))
		return string(h[:])
	}
	return key
}

// bucket is key's bucket: the kept one, or a new full one that is not
// kept yet; nil if key is new and the table has no room for it even after
// forgetting the idle keys.
func (t *bucketTable) bucket(key string, now time.Time) *rate.Limiter {
	if lim := t.m[key]; lim != nil {
		return lim
	}
	if len(t.m) >= t.max && now.Sub(t.swept) >= time.Second {
		t.swept = now
		for k, v := range t.m {
			if v.TokensAt(now) >= float64(t.burst) {
				delete(t.m, k)
			}
		}
	}
	if len(t.m) >= t.max {
		return nil
	}
	return rate.NewLimiter(rate.Every(t.every), t.burst)
}

// writeRateLimited answers 429 rate_limited.
func writeRateLimited(w http.ResponseWriter, retryAfter, msg string) {
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusTooManyRequests, "rate_limited", msg)
}

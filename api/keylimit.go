package api

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyLimiter is a token bucket per key (a source address, an account),
// for the public routes anyone may call: applications, password resets.
// Memory is bounded: at most max keys; when full, the keys whose bucket is
// full again (idle) are forgotten, at most once a second, and a new key that
// still finds no room is refused (fail closed: a flood of addresses cannot
// buy fresh buckets by evicting busy ones). A key is at most maxKeyBytes:
// a longer one (a reset's group code and user name, up to the body's
// 8 KiB, chosen by whoever calls) is kept as its SHA-256.
type keyLimiter struct {
	every time.Duration // one token per every
	burst int
	max   int
	now   func() time.Time

	mu    sync.Mutex
	m     map[string]*rate.Limiter
	swept time.Time
}

func newKeyLimiter(every time.Duration, burst, maxKeys int) *keyLimiter {
	return &keyLimiter{every: every, burst: burst, max: maxKeys, now: time.Now, m: make(map[string]*rate.Limiter)}
}

// maxKeyBytes bounds a key as kept: max keys take at most max ×
// maxKeyBytes beside their buckets.
const maxKeyBytes = sha256.Size

// allow takes a token of key's bucket.
func (l *keyLimiter) allow(key string) bool {
	if len(key) > maxKeyBytes {
		h := sha256.Sum256([]byte(key))
		key = string(h[:])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= l.max && now.Sub(l.swept) >= time.Second {
			l.swept = now
			for k, v := range l.m {
				if v.TokensAt(now) >= float64(l.burst) {
					delete(l.m, k)
				}
			}
		}
		if len(l.m) >= l.max {
			return false
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.m[key] = lim
	}
	return lim.AllowN(now, 1)
}

// writeRateLimited answers 429 rate_limited.
func writeRateLimited(w http.ResponseWriter, retryAfter, msg string) {
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusTooManyRequests, "rate_limited", msg)
}

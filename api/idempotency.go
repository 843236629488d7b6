package api

import (
	"bytes"
	"net/http"
	"sync"
	"time"
)

// Idempotency keys for POST /v1/messages: a client that sends the same
// Idempotency-Key header again (a retry after a lost answer) gets the
// first answer back and nothing is sent twice. Keys are per user, kept in
// memory for IdempotencyTTL, at most MaxIdempotencyKeys (the oldest go
// first); a restart forgets them.
const (
	IdempotencyTTL     = 24 * time.Hour
	MaxIdempotencyKeys = 100_000
	maxIdempotencyKey  = 128 // bytes
)

type idemEntry struct {
	at   time.Time
	done chan struct{} // closed once code and body are set
	code int
	hdr  http.Header
	body []byte
}

type idemStore struct {
	mu    sync.Mutex
	m     map[string]*idemEntry
	order []string // insertion order, for eviction
	now   func() time.Time
}

func newIdemStore(now func() time.Time) *idemStore {
	return &idemStore{m: make(map[string]*idemEntry), now: now}
}

// begin returns the entry for key and whether the caller is the first
// (and must run the request and call finish).
func (s *idemStore) begin(key string) (*idemEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.m[key]; ok && now.Sub(e.at) < IdempotencyTTL {
		return e, false
	}
	for len(s.order) > 0 {
		old, ok := s.m[s.order[0]]
		if ok && len(s.m) < MaxIdempotencyKeys && now.Sub(old.at) < IdempotencyTTL {
			break
		}
		if ok && old.closed() {
			delete(s.m, s.order[0]) // never one still running: its waiters need it
		}
		s.order = s.order[1:]
	}
	e := &idemEntry{at: now, done: make(chan struct{})}
	if _, ok := s.m[key]; !ok {
		s.order = append(s.order, key)
	}
	s.m[key] = e
	return e, true
}

func (e *idemEntry) closed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// forget drops a key whose answer must not be replayed (a server error:
// nothing was accepted, a retry must run again).
func (s *idemStore) forget(key string, e *idemEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key] == e {
		delete(s.m, key)
	}
}

// recorder keeps what a handler writes so it can be replayed.
type recorder struct {
	hdr  http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.hdr }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// idempotent runs h once per (user, Idempotency-Key); requests without
// the header run as usual.
func (s *Server) idempotent(h func(*caller, http.ResponseWriter, *http.Request)) func(*caller, http.ResponseWriter, *http.Request) {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			h(c, w, r)
			return
		}
		if len(key) > maxIdempotencyKey {
			writeError(w, http.StatusBadRequest, "invalid", "Idempotency-Key: at most 128 bytes")
			return
		}
		k := c.ent.Code + "\x00" + c.user.SystemID + "\x00" + key
		e, first := s.user.idem.begin(k)
		if first {
			rec := &recorder{hdr: http.Header{}, code: http.StatusOK}
			h(c, rec, r)
			e.code, e.hdr, e.body = rec.code, rec.hdr, rec.body.Bytes()
			close(e.done)
			if e.code >= 500 {
				s.user.idem.forget(k, e)
			}
		} else {
			select {
			case <-e.done:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Idempotent-Replayed", "true")
		}
		for k, v := range e.hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(e.code)
		_, _ = w.Write(e.body)
	}
}

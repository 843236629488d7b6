package api

import (
	"bytes"
	"container/list"
	"net/http"
	"sync"
	"time"
)

// Idempotency keys for POST /v1/messages: a client that sends the same
// Idempotency-Key header again (a retry after a lost answer) gets the
// first answer back and nothing is sent twice. Keys are per user, kept in
// memory for IdempotencyTTL; a restart forgets them.
//
// The answers kept are what all enterprises share on a node, so they are
// bounded twice: at most MaxIdempotencyKeys keys and MaxIdempotencyBytes
// of answers (a group send's answer is up to some 150 KiB: a count alone
// would let 100,000 of them take 15 GiB), and an enterprise at most
// 1/idemShare of either, its own oldest keys going first beyond it. So one
// enterprise flooding keys only shortens its own keys' lives; the others'
// go early only once several enterprises hold their whole share. A key
// whose request still runs is never dropped (a retry waits for it).
const (
	IdempotencyTTL      = 24 * time.Hour
	MaxIdempotencyKeys  = 100_000
	MaxIdempotencyBytes = 64 << 20
	idemShare           = 4
	maxIdempotencyKey   = 128 // bytes
	idemOverhead        = 64  // bytes counted for an entry beyond its key and answer
)

type idemEntry struct {
	at   time.Time
	ent  string // the enterprise's code: whose share it counts in
	key  string
	done chan struct{} // closed once code and body are set
	code int
	hdr  http.Header
	body []byte
	size int // bytes counted: key, answer and overhead
	// inAll and inEnt are its places in the store's order and its
	// enterprise's (nil once dropped).
	inAll, inEnt *list.Element
}

// idemUse is what one enterprise holds.
type idemUse struct {
	keys, bytes int
	order       list.List // of *idemEntry, oldest first
}

type idemStore struct {
	mu    sync.Mutex
	m     map[string]*idemEntry
	order list.List // of *idemEntry, every enterprise's, oldest first
	ents  map[string]*idemUse
	keys  int
	bytes int
	// maxKeys and maxBytes are MaxIdempotencyKeys and MaxIdempotencyBytes
	// (tests lower them).
	maxKeys, maxBytes int
	now               func() time.Time
}

func newIdemStore(now func() time.Time) *idemStore {
	return &idemStore{m: make(map[string]*idemEntry), ents: make(map[string]*idemUse), now: now,
		maxKeys: MaxIdempotencyKeys, maxBytes: MaxIdempotencyBytes}
}

// begin returns the entry for enterprise ent's key and whether the caller
// is the first (and must run the request and call finish).
func (s *idemStore) begin(ent, key string) (*idemEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.m[key]; ok && now.Sub(e.at) < IdempotencyTTL {
		return e, false
	}
	s.expire(now)
	if old := s.m[key]; old != nil {
		s.drop(old) // expired, its request still running
	}
	u := s.ents[ent]
	if u == nil {
		u = &idemUse{}
		s.ents[ent] = u
	}
	e := &idemEntry{at: now, ent: ent, key: key, done: make(chan struct{}), size: len(key) + idemOverhead}
	s.m[key] = e
	e.inAll, e.inEnt = s.order.PushBack(e), u.order.PushBack(e)
	u.keys++
	u.bytes += e.size
	s.keys++
	s.bytes += e.size
	s.bound(u)
	return e, true
}

// finish records the answer of e's request, counts its bytes and keeps
// the bounds.
func (s *idemStore) finish(e *idemEntry, code int, hdr http.Header, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.code, e.hdr, e.body = code, hdr, body
	close(e.done)
	if e.inAll == nil {
		return // dropped while it ran (expired): counted no more
	}
	grow := len(body)
	for k, vs := range hdr {
		grow += len(k)
		for _, v := range vs {
			grow += len(v)
		}
	}
	e.size += grow
	u := s.ents[e.ent]
	u.bytes += grow
	s.bytes += grow
	s.bound(u)
}

// bound drops the oldest finished keys of u while it holds more than its
// share, then the oldest of anyone's while the node holds more than the
// whole.
func (s *idemStore) bound(u *idemUse) {
	s.dropOldest(&u.order, func() bool { return u.keys > s.maxKeys/idemShare || u.bytes > s.maxBytes/idemShare })
	s.dropOldest(&s.order, func() bool { return s.keys > s.maxKeys || s.bytes > s.maxBytes })
}

// dropOldest drops the oldest finished entries of order while over holds
// (a running one stays: its retries wait for its answer).
func (s *idemStore) dropOldest(order *list.List, over func() bool) {
	for el := order.Front(); el != nil && over(); {
		e, next := el.Value.(*idemEntry), el.Next()
		if e.closed() {
			s.drop(e)
		}
		el = next
	}
}

// expire drops the finished keys older than IdempotencyTTL (oldest first:
// they are at the front of the order).
func (s *idemStore) expire(now time.Time) {
	for el := s.order.Front(); el != nil; {
		e, next := el.Value.(*idemEntry), el.Next()
		if now.Sub(e.at) < IdempotencyTTL {
			return
		}
		if e.closed() {
			s.drop(e)
		}
		el = next
	}
}

// drop forgets e and uncounts it.
func (s *idemStore) drop(e *idemEntry) {
	if e.inAll == nil {
		return
	}
	if s.m[e.key] == e {
		delete(s.m, e.key)
	}
	u := s.ents[e.ent]
	s.order.Remove(e.inAll)
	u.order.Remove(e.inEnt)
	e.inAll, e.inEnt = nil, nil
	u.keys--
	u.bytes -= e.size
	s.keys--
	s.bytes -= e.size
	if u.keys == 0 {
		delete(s.ents, e.ent)
	}
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
func (s *idemStore) forget(e *idemEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(e)
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

// idempotent runs h once per (user, route, Idempotency-Key); requests
// without the header run as usual. The route is part of the key: a client
// that numbers its requests per endpoint would otherwise get a personalized
// send's answer replayed for a send with the same key (and no send).
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
		k := c.ent.Code + "\x00" + c.user.SystemID + "\x00" + r.URL.Path + "\x00" + key
		e, first := s.user.idem.begin(c.ent.Code, k)
		if first {
			rec := &recorder{hdr: http.Header{}, code: http.StatusOK}
			h(c, rec, r)
			// A copy of its exact size: the buffer grew to up to twice the
			// answer, and what is kept is what the bounds count.
			s.user.idem.finish(e, rec.code, rec.hdr, bytes.Clone(rec.body.Bytes()))
			if e.code >= 500 {
				s.user.idem.forget(e)
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

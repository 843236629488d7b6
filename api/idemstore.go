package api

import (
	"container/list"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// The keys of idempotency.go, in memory: the entries, their order, their
// bounds (what all enterprises share on a node, and each one's share).

type idemEntry struct {
	at   time.Time
	ent  string // the enterprise's code: whose share it counts in
	key  string
	done chan struct{} // closed once code and body are set
	code int
	hdr  http.Header
	body []byte
	// saved: the answer is in the store, not in code, hdr and body
	// (only the code is kept).
	saved bool
	// sum is the fingerprint of the request that ran (bodySum), set with
	// its answer: a request with the key and another body is refused.
	sum  []byte
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
	// gone are the saved keys dropped since the last forgotten: the
	// store's copies to delete.
	gone []string
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
	e := &idemEntry{at: now, ent: ent, key: key, done: make(chan struct{}), size: len(key) + idemOverhead}
	s.add(e)
	return e, true
}

// add keeps e, in place of an older entry of its key (expired: its
// request may still run), counts it and keeps the bounds.
func (s *idemStore) add(e *idemEntry) {
	if old := s.m[e.key]; old != nil {
		s.drop(old)
	}
	u := s.ents[e.ent]
	if u == nil {
		u = &idemUse{}
		s.ents[e.ent] = u
	}
	s.m[e.key] = e
	e.inAll, e.inEnt = s.order.PushBack(e), u.order.PushBack(e)
	u.keys++
	u.bytes += e.size
	s.keys++
	s.bytes += e.size
	s.bound(u)
}

// finish records the answer of e's request, counts its bytes and keeps
// the bounds.
func (s *idemStore) finish(e *idemEntry, code int, hdr http.Header, body []byte) {
	s.finishSum(e, code, hdr, body, nil)
}

// finishSum is finish for the request whose body's fingerprint is sum.
func (s *idemStore) finishSum(e *idemEntry, code int, hdr http.Header, body, sum []byte) {
	grow := len(body)
	for k, vs := range hdr {
		grow += len(k)
		for _, v := range vs {
			grow += len(v)
		}
	}
	s.settle(e, code, hdr, body, sum, grow, false)
}

// finishSaved records that the answer of e's request, of size bytes
// beyond its key (queue.Answer.Size), is saved in the store: only its code
// stays in memory.
func (s *idemStore) finishSaved(e *idemEntry, code, size int, sum []byte) {
	s.settle(e, code, nil, nil, sum, size-len(e.key), true)
}

func (s *idemStore) settle(e *idemEntry, code int, hdr http.Header, body, sum []byte, grow int, saved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.code, e.hdr, e.body, e.sum, e.saved = code, hdr, body, sum, saved
	close(e.done)
	if e.inAll == nil {
		if e.saved {
			s.gone = append(s.gone, e.key) // dropped while it ran (expired)
		}
		return
	}
	e.size += grow
	u := s.ents[e.ent]
	u.bytes += grow
	s.bytes += grow
	s.bound(u)
}

// answer is e's answer once it is done, and the fingerprint of the
// request it answered; saved: it is to be read from the store.
func (s *idemStore) answer(e *idemEntry) (code int, hdr http.Header, body, sum []byte, saved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.code, e.hdr, e.body, e.sum, e.saved
}

// load adds the answers kept in the store (their keys and sizes: the
// answers stay there), oldest first, dropping the expired and those past
// the bounds as begin would have.
func (s *idemStore) load(store interface {
	Answers(func(*queue.Answer, int)) error
}) error {
	var all []*idemEntry
	err := store.Answers(func(a *queue.Answer, size int) {
		done := make(chan struct{})
		close(done)
		all = append(all, &idemEntry{at: a.At, ent: a.Enterprise, key: a.Key, done: done, code: a.Code, sum: a.Sum, saved: true,
			size: size + idemOverhead})
	})
	slices.SortFunc(all, func(a, b *idemEntry) int { return a.at.Compare(b.at) })
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, e := range all {
		if now.Sub(e.at) >= IdempotencyTTL {
			s.gone = append(s.gone, e.key)
			continue
		}
		s.add(e)
	}
	return err
}

// forgotten returns the saved keys dropped since it was last called, for
// the caller to delete from the store.
func (s *idemStore) forgotten() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := s.gone
	s.gone = nil
	return gone
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
	if e.saved {
		s.gone = append(s.gone, e.key)
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

// peek returns the entry of key if it is kept and not expired, without
// starting one.
func (s *idemStore) peek(key string) *idemEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && s.now().Sub(e.at) < IdempotencyTTL {
		return e
	}
	return nil
}

// forget drops a key whose answer must not be replayed (a server error:
// nothing was accepted, a retry must run again).
func (s *idemStore) forget(e *idemEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(e)
}

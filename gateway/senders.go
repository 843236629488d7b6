package gateway

import (
	"maps"
	"sync"
)

// senders counts the messages each enterprise had accepted since the
// start, for the status's top senders (the load of the last minute: whom
// to ask when the node is busy). Prometheus has no per-enterprise
// accepted series on purpose (its labels are closed sets), so the count
// is kept here; it grows by one key per enterprise that ever sent, which
// the operator's enterprises bound.
type senders struct {
	mu sync.Mutex
	n  map[string]uint64
}

// add counts n accepted messages of enterprise.
func (s *senders) add(enterprise string, n uint64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	if s.n == nil {
		s.n = make(map[string]uint64)
	}
	s.n[enterprise] += n
	s.mu.Unlock()
}

// snapshot copies the counts.
func (s *senders) snapshot() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.n)
}

// AcceptedByEnterprise is how many messages each enterprise had accepted
// since the start (every ingress; enterprises that sent none are absent).
// The map is the caller's.
func (g *Gateway) AcceptedByEnterprise() map[string]uint64 {
	return g.senders.snapshot()
}

package gateway

import (
	"context"
	"sync"
	"time"
)

// forwarders is the set of forwarder goroutines of a router (receipts,
// replies): one per key — an account, an enterprise — while at least one
// bind of that key can receive. The first bind starts it, the last one's
// going stops it; kick wakes it when something new is stored.
type forwarders[F any] struct {
	mu sync.Mutex
	fw map[string]*forwarding[F]
	wg sync.WaitGroup
}

// forwarding is one running forwarder: its state F, the wake-up it waits
// on (F holds it too, to wake itself) and the cancel that ends it.
type forwarding[F any] struct {
	f      F
	wake   chan struct{}
	cancel context.CancelFunc
}

func newForwarders[F any]() *forwarders[F] {
	return &forwarders[F]{fw: make(map[string]*forwarding[F])}
}

// attach adds a bind to key's forwarder (add, under the set's lock). The
// first bind makes it (newF, with its wake-up channel) and starts run on
// a context derived from ctx (the gateway's: Stop ends it). It wakes the
// forwarder.
func (s *forwarders[F]) attach(ctx context.Context, key string, newF func(wake chan struct{}) F, add func(F), run func(ctx context.Context, f F)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.fw[key]
	if e == nil {
		fctx, cancel := context.WithCancel(ctx)
		wake := make(chan struct{}, 1)
		e = &forwarding[F]{f: newF(wake), wake: wake, cancel: cancel}
		s.fw[key] = e
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			run(fctx, e.f)
		}()
	}
	add(e.f)
	e.kick()
}

// detach removes a bind (remove reports whether none is left) and stops
// key's forwarder with the last one.
func (s *forwarders[F]) detach(key string, remove func(F) (empty bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.fw[key]
	if e == nil {
		return
	}
	if remove(e.f) {
		e.cancel()
		delete(s.fw, key)
	}
}

// get returns key's forwarder, if it runs.
func (s *forwarders[F]) get(key string) (F, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.fw[key]; e != nil {
		return e.f, true
	}
	var none F
	return none, false
}

// kick wakes key's forwarder, if it runs.
func (s *forwarders[F]) kick(key string) {
	s.mu.Lock()
	e := s.fw[key]
	s.mu.Unlock()
	if e != nil {
		e.kick()
	}
}

// stop ends every forwarder and waits for them.
func (s *forwarders[F]) stop() {
	s.mu.Lock()
	for _, e := range s.fw {
		e.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (e *forwarding[F]) kick() { wakeUp(e.wake) }

// wakeUp signals a wake-up channel of capacity 1 without blocking: a
// wake-up already pending covers this one.
func wakeUp(wake chan struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// waitWake waits for a wake-up or d on the reusable timer t, whichever
// comes first, and reports false once ctx ends (the forwarder stops).
func waitWake(ctx context.Context, t *time.Timer, d time.Duration, wake <-chan struct{}) bool {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

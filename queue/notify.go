package queue

import "time"

// SetCallbacks sets Options.OnDLRReady and Options.OnCommit after Open,
// for a receiver that is built over the open store (the gateway): open the
// store, build the receiver, register it here, then start traffic. A nil
// function leaves that callback as it was.
//
// Call it at most once, before the first write: the commit goroutine reads
// the callbacks without a lock, and a write's hand-over to that goroutine
// is what orders this call before their use.
func (s *Store) SetCallbacks(onDLRReady func(account string, ready []*Message), onCommit func(d time.Duration, ops int)) {
	if onDLRReady != nil {
		s.opt.OnDLRReady = onDLRReady
	}
	if onCommit != nil {
		s.opt.OnCommit = onCommit
	}
}

// SetHookCallback sets Options.OnHookReady after Open, under the same
// rules as SetCallbacks: at most once, before the first write.
func (s *Store) SetHookCallback(fn func()) {
	s.opt.OnHookReady = fn
}

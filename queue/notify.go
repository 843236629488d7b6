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
func (s *Store) SetCallbacks(onDLRReady func(account string, ready []*Message, at Snapshot), onCommit func(d time.Duration, ops int)) {
	if onDLRReady != nil {
		s.opt.OnDLRReady = onDLRReady
	}
	if onCommit != nil {
		s.opt.OnCommit = onCommit
	}
}

// Snapshot names a committed state of the store: the transaction that
// committed it, as the reads that see it report it. Snapshots only grow.
type Snapshot uint64

// SetDueCallback registers fn to be handed, after each commit that
// stored new messages (Enqueue, EnqueueAssembled), the jobs of their parts
// that are due at once, and the commit's snapshot: a DueSharedAt whose
// snapshot is at or past it saw those parts. A dispatcher can send them
// without reading them back; the store still lists them as due until
// Submitted, Retry or Fail, so jobs it drops are found by its next scan.
//
// fn runs on the commit goroutine, under OnDLRReady's rules: it must not
// block and must not call a Store write method. Each job's Msg is a copy
// the store does not touch again (parts of one message share it): treat
// it as read-only. A later call replaces fn. Safe to call at any time;
// the returned remove takes fn away again unless it was replaced since.
func (s *Store) SetDueCallback(fn func(jobs []Job, at Snapshot)) (remove func()) {
	p := &fn
	s.onDue.Store(p)
	return func() { s.onDue.CompareAndSwap(p, nil) }
}

// SetHookCallback sets Options.OnHookReady after Open, under the same
// rules as SetCallbacks: at most once, before the first write.
func (s *Store) SetHookCallback(fn func(enterprises []string)) {
	s.opt.OnHookReady = fn
}

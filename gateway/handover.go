package gateway

import (
	"sync"

	"github.com/qxtd/qxtd/queue"
)

// handOver is a bounded queue of what the store hands over as it commits
// (new parts due at once, receipts ready to forward), filled on the
// commit goroutine and drained by one consumer. It has a lock of its own,
// held only to append or to take the lot, so the commit goroutine never
// waits for a consumer that is busy scanning the store.
type handOver[T any] struct {
	mu      sync.Mutex
	items   []handed[T]
	dropped bool // something did not fit since the last drain
	max     int
}

// handed is one item and the snapshot of the commit that handed it over:
// a scan of the store at or past that snapshot saw it.
type handed[T any] struct {
	v  T
	at queue.Snapshot
}

func newHandOver[T any](max int) *handOver[T] { return &handOver[T]{max: max} }

// put queues vs, committed at at, as far as they fit.
func (h *handOver[T]) put(vs []T, at queue.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range vs {
		if len(h.items) >= h.max {
			h.dropped = true
			return
		}
		h.items = append(h.items, handed[T]{v: v, at: at})
	}
}

// drain appends what was handed over to dst, keeping dst within the same
// bound, and reports whether anything was dropped since the last drain
// (then the store holds items the consumer must scan for).
func (h *handOver[T]) drain(dst []handed[T]) ([]handed[T], bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	dropped := h.dropped
	h.dropped = false
	n := min(len(h.items), max(h.max-len(dst), 0))
	if n < len(h.items) {
		dropped = true
	}
	dst = append(dst, h.items[:n]...)
	clear(h.items)
	h.items = h.items[:0]
	return dst, dropped
}

package queue

import (
	"fmt"
	"sync"
)

// damaged logs each damaged record a reader skips once, not at every
// scan: the dispatcher reads the due index several times a second, and a
// record that stays damaged until an operator runs Check would otherwise
// fill the log. Memory is bounded: past maxDamagedReported records the
// set starts again (each is then reported once more).
type damaged struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

const maxDamagedReported = 4096

// report logs msg with args the first time it is said of what.
func (s *Store) reportDamaged(what, msg string, args ...any) {
	d := &s.damaged
	d.mu.Lock()
	if _, ok := d.seen[what]; ok {
		d.mu.Unlock()
		return
	}
	if d.seen == nil || len(d.seen) >= maxDamagedReported {
		d.seen = make(map[string]struct{})
	}
	d.seen[what] = struct{}{}
	d.mu.Unlock()
	s.log.Error(msg, args...)
}

func damagedKey(kind string, id uint64) string { return fmt.Sprintf("%s/%d", kind, id) }

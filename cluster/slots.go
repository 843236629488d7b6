package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrLost is returned when the node's lease is gone: it can take nothing.
var ErrLost = errors.New("node lease lost")

// Slot is one of the total places of a counting semaphore shared by the
// cluster: the key slots/<name>/<index>, attached to the holder's lease.
type Slot struct {
	n     *Node
	name  string
	index int
	key   string
	rev   int64 // CreateRevision of our key: "still ours" means this

	done     chan struct{}
	doneOnce sync.Once
	relOnce  sync.Once
	cancel   context.CancelFunc // stops the watch
}

// AcquireSlot blocks until one of total slots named name is free and takes
// it for this node, or ctx ends, or the node's lease is lost. It prefers the
// index this node held last (a bind keeps its slot across reconnects), then
// the lowest free one. Indexes ≥ total are never taken, so a smaller total
// after a reload takes effect as holders of higher indexes release theirs;
// a new slot is also refused while the count of held keys, including those
// ≥ total, is total or more. It waits on a watch of the slot prefix, not by
// polling.
func (n *Node) AcquireSlot(ctx context.Context, name string, total int) (*Slot, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("cluster: acquire slot: %w", err)
	}
	if total <= 0 {
		return nil, fmt.Errorf("cluster: acquire slot %s: total %d must be positive", name, total)
	}
	prefix := n.key("slots", name) + "/"
	for {
		if err := n.live(ctx); err != nil {
			return nil, fmt.Errorf("cluster: acquire slot %s: %w", name, err)
		}
		resp, err := n.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, fmt.Errorf("cluster: acquire slot %s: list: %w", name, err)
		}
		taken := make(map[string]bool, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			taken[string(kv.Key)] = true
		}
		if len(resp.Kvs) < total {
			for _, i := range n.slotOrder(name, total) {
				key := prefix + strconv.Itoa(i)
				if taken[key] {
					continue
				}
				s, err := n.tryTake(ctx, name, i, key)
				if err != nil {
					return nil, err
				}
				if s != nil {
					return s, nil
				}
				// Taken by another node since the list: any later
				// delete is still seen by the watch from the list's
				// revision.
			}
		}
		if err := n.waitSlotChange(ctx, prefix, resp.Header.Revision); err != nil {
			return nil, fmt.Errorf("cluster: acquire slot %s: %w", name, err)
		}
	}
}

// live is nil while the node may act: not lost, not closed, ctx not ended.
func (n *Node) live(ctx context.Context) error {
	select {
	case <-n.lost:
		return ErrLost
	default:
	}
	if n.ctx.Err() != nil {
		return ErrLost
	}
	return ctx.Err()
}

// slotOrder is the node's last index first, then 0..total-1.
func (n *Node) slotOrder(name string, total int) []int {
	n.mu.Lock()
	last, ok := n.lastSlot[name]
	n.mu.Unlock()
	order := make([]int, 0, total)
	if ok && last < total {
		order = append(order, last)
	}
	for i := 0; i < total; i++ {
		if !ok || i != last {
			order = append(order, i)
		}
	}
	return order
}

// tryTake creates key with the node's lease if nobody holds it; nil, nil
// when somebody does.
func (n *Node) tryTake(ctx context.Context, name string, index int, key string) (*Slot, error) {
	resp, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, strconv.Itoa(int(n.cfg.NodeID)), clientv3.WithLease(n.sess.Lease()))).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("cluster: acquire slot %s: take %s: %w", name, key, err)
	}
	if !resp.Succeeded {
		return nil, nil
	}
	s := &Slot{n: n, name: name, index: index, key: key, rev: resp.Header.Revision, done: make(chan struct{})}
	n.mu.Lock()
	n.lastSlot[name] = index
	n.held[name]++
	n.mu.Unlock()
	// The watch ends with the slot: Release, the node's Close, or loss.
	wctx, cancel := context.WithCancel(n.ctx)
	s.cancel = cancel
	n.wg.Add(1)
	go s.watch(wctx)
	return s, nil
}

// waitSlotChange returns after the first delete under prefix after rev.
func (n *Node) waitSlotChange(ctx context.Context, prefix string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := n.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithFilterPut())
	select {
	case _, ok := <-wch:
		// A delete, or a compacted or failed watch, which says nothing of
		// the slots: either way list again.
		if !ok {
			return n.live(ctx)
		}
		return nil
	case <-n.lost:
		return ErrLost
	case <-n.ctx.Done():
		return ErrLost
	}
}

// watch closes Done when the key goes (lease expired, revoked, deleted by an
// operator) or the node's lease is lost.
func (s *Slot) watch(ctx context.Context) {
	defer s.n.wg.Done()
	defer s.lose()
	from := s.rev + 1
	for ctx.Err() == nil {
		if s.watchFrom(ctx, from) {
			return
		}
		// The watch failed (compaction, no leader, etcd unreachable): is
		// the key still ours? Asked within a bound, and not once fenced:
		// a node cut off from etcd must still give the slot up in time
		// (an unbounded Get waits for etcd to come back).
		if s.n.fenced() {
			s.n.log.Warn("cluster: keepalive unanswered for ttl/2; giving up bind slot", "slot", s.key)
			return
		}
		gctx, cancel := context.WithTimeout(ctx, max(s.n.cfg.TTL/10, 100*time.Millisecond))
		g, err := s.n.cli.Get(gctx, s.key)
		cancel()
		if err != nil {
			s.n.pause(200 * time.Millisecond)
			continue
		}
		if len(g.Kvs) == 0 || g.Kvs[0].CreateRevision != s.rev {
			return
		}
		from = g.Header.Revision + 1
		s.n.pause(200 * time.Millisecond)
	}
}

// watchFrom reports true when the slot is gone or the watch should stop,
// false when the watch failed and the key must be checked again.
func (s *Slot) watchFrom(ctx context.Context, from int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Watch itself waits while etcd is unreachable: opened aside, so that
	// the fencing below goes on meanwhile (cancel ends the wait).
	opened := make(chan clientv3.WatchChan, 1)
	go func() { opened <- s.n.cli.Watch(wctx, s.key, clientv3.WithRev(from), clientv3.WithFilterPut()) }()
	var wch clientv3.WatchChan // nil until opened
	// A node whose keepalive has gone unanswered for TTL/2 gives its
	// slots up before etcd can expire its lease and hand them to another
	// node, as a leader steps down: the carrier never sees the old bind
	// and the new one at once (assuming clocks that run at about the same
	// rate, as leader.go does).
	tick := time.NewTicker(max(s.n.cfg.TTL/10, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case wch = <-opened:
		case <-s.n.lost:
			return true
		case <-tick.C:
			if s.n.fenced() {
				s.n.log.Warn("cluster: keepalive unanswered for ttl/2; giving up bind slot", "slot", s.key)
				return true
			}
		case resp, ok := <-wch:
			switch {
			case !ok:
				return ctx.Err() != nil // released or node closed
			case resp.Err() != nil:
				return false
			case len(resp.Events) > 0:
				return true // our key is deleted
			}
		}
	}
}

func (s *Slot) lose() {
	s.doneOnce.Do(func() {
		close(s.done)
		s.n.mu.Lock()
		s.n.held[s.name]--
		s.n.mu.Unlock()
	})
}

// Name is the semaphore's name.
func (s *Slot) Name() string { return s.name }

// Index is the slot's place, 0..total-1.
func (s *Slot) Index() int { return s.index }

// Done is closed when the slot is no longer held: released, the key deleted
// by someone else, or the node's lease lost. The bind it guards must close.
func (s *Slot) Done() <-chan struct{} { return s.done }

// Release gives the slot back: it deletes the key if it is still ours. It
// is idempotent, and safe after the node closed (the lease took the key).
// A delete that fails (etcd unreachable) is tried again in the background
// until etcd answers or the node's lease is gone (taking the key with it):
// a lease that lives on past the outage would otherwise keep the key, and
// the slot, held for nobody.
func (s *Slot) Release() {
	s.relOnce.Do(func() {
		s.cancel()
		s.lose()
		if s.n.ctx.Err() != nil {
			return // node closed: its revoke deleted the key
		}
		err := s.del()
		if err == nil {
			return
		}
		s.n.log.Warn("cluster: release slot; trying again until etcd answers", "key", s.key, "err", err)
		s.n.wg.Go(func() {
			for {
				s.n.pause(200 * time.Millisecond)
				select {
				case <-s.n.lost:
					return // the lease, and the key on it, are gone
				default:
				}
				if s.n.ctx.Err() != nil || s.del() == nil {
					return
				}
			}
		})
	})
}

// del deletes the slot's key if it is still ours.
func (s *Slot) del() error {
	ctx, cancel := s.n.opCtx()
	defer cancel()
	_, err := s.n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.key), "=", s.rev)).
		Then(clientv3.OpDelete(s.key)).
		Commit()
	return err
}

// checkName refuses a slot or leadership name that would make its keys
// overlap another's: a name with "/" would be inside another's prefix.
func checkName(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("name %q: must be non-empty, without '/'", name)
	}
	return nil
}

package cluster

// ESMEBinds: which node has a receiver-capable ESME bind of which account,
// so that a receipt or a reply stored on one node can reach an ESME whose
// receiver (or transceiver) is bound to another.
//
// # Key layout
//
//	P esmebinds/<node id>/<path-escaped system_id>   value: the account's enterprise
//
// Each key is on its node's lease: a node that dies (or loses its lease)
// takes its keys with it after the lease's TTL, and every node's view
// drops them by the watch.
//
// # Why etcd keys, not asking the peers
//
// Where an account is bound changes at bind and unbind — rare next to
// receipts — while the question "who can take this account's receipts"
// is asked for every pending batch. A key per (account, node) written at
// the first receiver bind and deleted at the last one costs one etcd write
// per such event (not per message, not per bind of an account already
// bound), and a watch keeps every node's answer in memory: a lookup is
// free, and a change (a bind elsewhere, a node's death) wakes the
// forwarders at once instead of them polling N−1 peers. Asking the peers
// on demand would need no etcd writes but cost a round of HTTP requests
// per pending account per retry, and learn of a new bind only at the next
// poll.
//
// # Guarantees and caveats
//
//   - Bound and Unbound only change this node's wish and never block: a
//     publisher goroutine brings etcd to it, coalescing flaps, and retries
//     (with a back-off) while etcd is unreachable. The view lags a bind
//     by the put and the watch (milliseconds).
//   - The view is a hint, not a lock: a key may name a node whose bind
//     went a moment ago, or a dead node until its lease expires. Whoever
//     uses it must treat "that node had no bind after all" or "it did not
//     answer" as retry-later, never as delivered.
//   - The view includes this node's own keys; Binds leaves them out.

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// esmeBindsTimeout bounds each etcd request of ESMEBinds.
const esmeBindsTimeout = 5 * time.Second

// ESMEBind is one account with a receiver-capable bind on one node.
type ESMEBind struct {
	Node       uint16
	Account    string // system_id
	Enterprise string
}

// ESMEBinds publishes this node's receiver binds and watches every
// node's (see above). It is safe for concurrent use.
type ESMEBinds struct {
	node   *Node
	prefix string // P + "esmebinds/"
	log    *slog.Logger

	mu        sync.Mutex
	want      map[string]wantBind // account → this node's receiver binds
	view      map[string]ESMEBind // key (without prefix) → bind, every node's
	changed   chan struct{}       // closed at the next change of view
	published map[string]string   // account → enterprise, as written in etcd (publisher's own)

	kick   chan struct{} // wakes the publisher; 1-buffered
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type wantBind struct {
	enterprise string
	count      int
}

// OpenESMEBinds loads the binds every node published and keeps them
// current until Close; ctx bounds the first load.
func OpenESMEBinds(ctx context.Context, n *Node, log *slog.Logger) (*ESMEBinds, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &ESMEBinds{node: n, prefix: n.Prefix() + "esmebinds/", log: log,
		want: make(map[string]wantBind), view: make(map[string]ESMEBind), changed: make(chan struct{}),
		published: make(map[string]string), kick: make(chan struct{}, 1)}
	rev, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	// This node's keys from a previous process of the same id (its lease
	// expired before Join returned, so normally none): published is
	// empty, so the first round deletes any that are not wanted.
	wctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.wg.Go(func() { b.watch(wctx, rev) })
	b.wg.Go(func() { b.publish(wctx) })
	return b, nil
}

// Close stops the watch and the publisher. The keys stay until the node's
// lease ends (Node.Close revokes it).
func (b *ESMEBinds) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

// Bound records one more receiver-capable bind of account (of enterprise)
// on this node; the first one is published.
func (b *ESMEBinds) Bound(account, enterprise string) {
	b.mu.Lock()
	w := b.want[account]
	w.enterprise = enterprise
	w.count++
	b.want[account] = w
	b.mu.Unlock()
	wakeOne(b.kick)
}

// Unbound records that one of account's receiver binds went; with the
// last one its key is deleted.
func (b *ESMEBinds) Unbound(account string) {
	b.mu.Lock()
	w, ok := b.want[account]
	if ok {
		w.count--
		if w.count <= 0 {
			delete(b.want, account)
		} else {
			b.want[account] = w
		}
	}
	b.mu.Unlock()
	wakeOne(b.kick)
}

// Binds lists the receiver binds of the other nodes as of the watch,
// sorted by account and node. It does not check that the nodes are
// members: the caller filters by its own view of the live nodes.
func (b *ESMEBinds) Binds() []ESMEBind {
	self := b.node.ID()
	b.mu.Lock()
	out := make([]ESMEBind, 0, len(b.view))
	for _, e := range b.view {
		if e.Node != self {
			out = append(out, e)
		}
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Account != out[j].Account {
			return out[i].Account < out[j].Account
		}
		return out[i].Node < out[j].Node
	})
	return out
}

// Changed returns a channel closed at the next change of the view.
func (b *ESMEBinds) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func wakeOne(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (b *ESMEBinds) key(node uint16, account string) string {
	return b.prefix + strconv.Itoa(int(node)) + "/" + url.PathEscape(account)
}

// parse splits a key (with prefix) into its bind; ok is false for a key
// this version does not understand (ignored).
func (b *ESMEBinds) parse(key, value string) (ESMEBind, bool) {
	rest, ok := strings.CutPrefix(key, b.prefix)
	if !ok {
		return ESMEBind{}, false
	}
	nodeS, acctS, ok := strings.Cut(rest, "/")
	if !ok {
		return ESMEBind{}, false
	}
	n, err := strconv.ParseUint(nodeS, 10, 16)
	if err != nil || n == 0 {
		return ESMEBind{}, false
	}
	acct, err := url.PathUnescape(acctS)
	if err != nil || acct == "" {
		return ESMEBind{}, false
	}
	return ESMEBind{Node: uint16(n), Account: acct, Enterprise: value}, true
}

// signalLocked wakes the watchers of Changed; b.mu is held.
func (b *ESMEBinds) signalLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// list replaces the view with one Range and returns its revision.
func (b *ESMEBinds) list(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, esmeBindsTimeout)
	defer cancel()
	resp, err := b.node.Client().Get(ctx, b.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("cluster: list esme binds: %w", err)
	}
	view := make(map[string]ESMEBind, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if e, ok := b.parse(string(kv.Key), string(kv.Value)); ok {
			view[string(kv.Key)] = e
		}
	}
	b.mu.Lock()
	b.view = view
	b.signalLocked()
	b.mu.Unlock()
	return resp.Header.Revision, nil
}

// watch keeps the view current; on a watch error it lists again.
func (b *ESMEBinds) watch(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		if rev == 0 {
			r, err := b.list(ctx)
			if err != nil {
				if ctx.Err() == nil {
					b.log.Warn("cluster: esme binds", "err", err)
					pause(ctx, time.Second)
				}
				continue
			}
			rev = r
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range b.node.Client().Watch(wctx, b.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil {
					b.log.Warn("cluster: esme binds watch; listing again", "err", err)
				}
				break
			}
			b.mu.Lock()
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				switch ev.Type {
				case clientv3.EventTypePut:
					if e, ok := b.parse(k, string(ev.Kv.Value)); ok {
						b.view[k] = e
					}
				case clientv3.EventTypeDelete:
					delete(b.view, k)
				}
			}
			if len(resp.Events) > 0 {
				b.signalLocked()
			}
			b.mu.Unlock()
		}
		cancel()
		rev = 0
		pause(ctx, 200*time.Millisecond)
	}
}

// publish brings this node's keys to b.want: at start (deleting what a
// previous process of this node left), at each kick, and after a
// failure with a back-off (1 s doubling to 30 s).
func (b *ESMEBinds) publish(ctx context.Context) {
	// Start from what etcd holds for this node.
	b.mu.Lock()
	self := b.node.ID()
	for _, e := range b.view {
		if e.Node == self {
			b.published[e.Account] = e.Enterprise
		}
	}
	b.mu.Unlock()
	backoff := time.Second
	for {
		if err := b.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("cluster: publish esme binds; retrying", "err", err, "retry_in", backoff.String())
			pause(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
	}
}

// sync writes the differences between b.want and b.published.
func (b *ESMEBinds) sync(ctx context.Context) error {
	b.mu.Lock()
	put := map[string]string{}
	var del []string
	for a, w := range b.want {
		if e, ok := b.published[a]; !ok || e != w.enterprise {
			put[a] = w.enterprise
		}
	}
	for a := range b.published {
		if _, ok := b.want[a]; !ok {
			del = append(del, a)
		}
	}
	b.mu.Unlock()
	cli, self, lease := b.node.Client(), b.node.ID(), b.node.Session().Lease()
	for a, e := range put {
		rctx, cancel := context.WithTimeout(ctx, esmeBindsTimeout)
		_, err := cli.Put(rctx, b.key(self, a), e, clientv3.WithLease(lease))
		cancel()
		if err != nil {
			return fmt.Errorf("cluster: publish bind of %s: %w", a, err)
		}
		b.published[a] = e
	}
	for _, a := range del {
		rctx, cancel := context.WithTimeout(ctx, esmeBindsTimeout)
		_, err := cli.Delete(rctx, b.key(self, a))
		cancel()
		if err != nil {
			return fmt.Errorf("cluster: unpublish bind of %s: %w", a, err)
		}
		delete(b.published, a)
	}
	return nil
}

// pause waits d or until ctx ends; false when ctx ended. Every back-off of
// the package's watch and retry loops waits with it.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

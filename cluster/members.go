package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Members are the live members (those whose lease holds their key), sorted
// by ID, as of the node's watch: a view that lags etcd by a watch event.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m)
	}
	n.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PublishUpstreamsUp publishes in this node's member key the upstreams of
// which it has a sending bind up (UpstreamUp, on every node, reads them).
// Nothing is written when they did not change.
func (n *Node) PublishUpstreamsUp(names []string) error {
	esc := make([]string, len(names))
	for i, name := range names {
		esc[i] = url.QueryEscape(name) // a name may hold a comma
	}
	v := strings.Join(slices.Sorted(slices.Values(esc)), ",")
	return n.publishSelf("upstreams up", func(m *Member) bool {
		if m.ReportsUp && m.UpstreamsUp == v {
			return false
		}
		m.ReportsUp, m.UpstreamsUp = true, v
		return true
	})
}

// PublishDigest publishes in this node's member key the digest of a part
// of its configuration (Member.Digests), after a reload changed it;
// Differing, on every node, compares them. Nothing is written when it did
// not change.
func (n *Node) PublishDigest(part, digest string) error {
	return n.publishSelf("digest of "+part, func(m *Member) bool {
		if m.Digests[part] == digest {
			return false
		}
		m.Digests = maps.Clone(m.Digests)
		if m.Digests == nil {
			m.Digests = map[string]string{}
		}
		m.Digests[part] = digest
		return true
	})
}

// publishSelf rewrites this node's member key with change applied to what
// it holds, unless change says nothing changed. publishMu orders the
// writes: the last one written is the last one asked for.
func (n *Node) publishSelf(what string, change func(*Member) bool) error {
	n.publishMu.Lock()
	defer n.publishMu.Unlock()
	m := n.self
	if !change(&m) {
		return nil
	}
	val, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := n.opCtx()
	defer cancel()
	if _, err := n.cli.Put(ctx, n.memberKey(n.cfg.NodeID), string(val), clientv3.WithLease(n.sess.Lease())); err != nil {
		return fmt.Errorf("cluster: publish %s: %w", what, err)
	}
	n.self = m
	return nil
}

// Differing names the parts of the configuration (Member.Digests) that
// the live members publish unlike, sorted, in the node's view: a node
// reloaded and another not yet, or their files apart. A member that does
// not publish a part is not compared on it.
func (n *Node) Differing() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return differing(slices.Collect(maps.Values(n.members)))
}

func differing(members []Member) []string {
	seen := map[string]string{}
	var out []string
	for _, m := range members {
		for part, d := range m.Digests {
			if was, ok := seen[part]; !ok {
				seen[part] = d
			} else if was != d && !slices.Contains(out, part) {
				out = append(out, part)
			}
		}
	}
	slices.Sort(out)
	return out
}

// UpstreamUp reports whether, in the node's view, some live member has a
// sending bind of upstream up, or may have: a member that does not
// publish them (an earlier release) counts as up.
func (n *Node) UpstreamUp(upstream string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.members {
		if !m.ReportsUp || slices.Contains(strings.Split(m.UpstreamsUp, ","), url.QueryEscape(upstream)) {
			return true
		}
	}
	return false
}

// Peer is the live member with id, if any.
func (n *Node) Peer(id uint16) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.members[id]
	return m, ok
}

// Subscribe returns a channel that receives a signal after every change of
// the member set. It has room for one signal: a slow reader sees one signal
// for several changes and re-reads Members. cancel stops the signals.
func (n *Node) Subscribe() (c <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
	}
}

// notifyLocked signals every subscriber without blocking; n.mu is held.
func (n *Node) notifyLocked() {
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// listMembers replaces the view with one Range and returns its revision.
func (n *Node) listMembers(ctx context.Context) error {
	_, err := n.relistMembers(ctx)
	return err
}

func (n *Node) relistMembers(ctx context.Context) (int64, error) {
	prefix := n.key("members") + "/"
	resp, err := n.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("cluster: list members: %w", err)
	}
	view := make(map[uint16]Member, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m, ok := n.decodeMember(prefix, kv); ok {
			view[m.ID] = m
		}
	}
	n.mu.Lock()
	changed := len(view) != len(n.members)
	for id, m := range view {
		if old, ok := n.members[id]; !ok || !old.equal(m) {
			changed = true
		}
	}
	n.members = view
	if changed {
		n.notifyLocked()
	}
	n.mu.Unlock()
	return resp.Header.Revision, nil
}

// equal: the same member key's value.
func (m Member) equal(o Member) bool {
	return m.ID == o.ID && m.Name == o.Name && m.PeerURL == o.PeerURL && m.Started.Equal(o.Started) &&
		m.UpstreamsUp == o.UpstreamsUp && m.ReportsUp == o.ReportsUp && maps.Equal(m.Digests, o.Digests)
}

func (n *Node) decodeMember(prefix string, kv *mvccpb.KeyValue) (Member, bool) {
	var m Member
	if err := json.Unmarshal(kv.Value, &m); err != nil {
		n.log.Warn("cluster: bad member value", "key", string(kv.Key), "err", err)
		return m, false
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), prefix), 10, 16)
	if err != nil || id == 0 {
		n.log.Warn("cluster: bad member key", "key", string(kv.Key))
		return m, false
	}
	m.ID = uint16(id) // the key is the truth, not the value
	return m, true
}

// watchMembers keeps the view current until the node closes. On a
// compaction or any watch error it lists again and watches from there.
func (n *Node) watchMembers() {
	defer n.wg.Done()
	prefix := n.key("members") + "/"
	rev := int64(0)
	for n.ctx.Err() == nil {
		if rev == 0 {
			r, err := n.relistMembers(n.ctx)
			if err != nil {
				if n.ctx.Err() == nil {
					n.log.Warn("cluster: members", "err", err)
					n.pause(time.Second)
				}
				continue
			}
			rev = r
		}
		// RequireLeader: a member cut off from the etcd quorum ends the
		// watch instead of serving a stale view forever.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(n.ctx))
		wch := n.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if n.ctx.Err() == nil {
					n.log.Warn("cluster: members watch; listing again", "err", err)
				}
				break
			}
			n.mu.Lock()
			for _, ev := range resp.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					if m, ok := n.decodeMember(prefix, ev.Kv); ok {
						n.members[m.ID] = m
					}
				case clientv3.EventTypeDelete:
					id, err := strconv.ParseUint(strings.TrimPrefix(string(ev.Kv.Key), prefix), 10, 16)
					if err == nil {
						delete(n.members, uint16(id))
					}
				}
			}
			if len(resp.Events) > 0 {
				n.notifyLocked()
			}
			n.mu.Unlock()
		}
		cancel()
		rev = 0 // list again: events may have been missed
		// Not at once: a watch refused again and again (no leader) would
		// otherwise spin.
		n.pause(200 * time.Millisecond)
	}
}

// pause waits d or until the node closes; for back-off after errors.
func (n *Node) pause(d time.Duration) { pause(n.ctx, d) }

package main

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// clusterGateway adapts the cluster's membership, bind slots and quota
// claims to gateway.Cluster.
type clusterGateway struct {
	node  *cluster.Node
	quota *cluster.Quota

	mu      sync.Mutex
	changed chan struct{} // closed at the next membership change
}

var _ gateway.Cluster = (*clusterGateway)(nil)

func newClusterGateway(node *cluster.Node, quota *cluster.Quota) *clusterGateway {
	return &clusterGateway{node: node, quota: quota, changed: make(chan struct{})}
}

// run turns the node's membership signals into the broadcast Changed
// promises, and calls onChange with the number of live nodes, until ctx
// ends.
func (c *clusterGateway) run(ctx context.Context, onChange func(live int)) {
	sig, cancel := c.node.Subscribe()
	defer cancel()
	onChange(len(c.node.Members()))
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		onChange(len(c.node.Members()))
		c.mu.Lock()
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *clusterGateway) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// BindShare spreads total over the live nodes, rounded up: with 4 binds
// and 3 nodes each node binds twice at most while only 4 slots exist, so
// every node has at least one bind when total ≥ nodes.
func (c *clusterGateway) BindShare(total int) int {
	n := max(1, len(c.node.Members()))
	return (total + n - 1) / n
}

func (c *clusterGateway) AcquireBind(ctx context.Context, upstream string, receivers bool, total int) (gateway.BindSlot, error) {
	// Slot names are one etcd path element: an upstream name with a "/"
	// is escaped. Its receivers are counted apart, under their own prefix.
	name := "upstream:" + url.PathEscape(upstream)
	if receivers {
		name = "receivers:" + url.PathEscape(upstream)
	}
	s, err := c.node.AcquireSlot(ctx, name, total)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (c *clusterGateway) PublishUpstreamsUp(names []string) error {
	return c.node.PublishUpstreamsUp(names)
}

func (c *clusterGateway) UpstreamUp(upstream string) bool {
	return c.node.UpstreamUp(upstream)
}

func (c *clusterGateway) QuotaClaim(enterprise, month string) int64 {
	return c.quota.Claim(enterprise, month)
}

func (c *clusterGateway) QuotaGrow(ctx context.Context, enterprise, month string, used, need, limit int64) (int64, error) {
	return c.quota.Grow(ctx, enterprise, month, used, need, limit)
}

// clusterPeers is gateway.Peers over the membership and the node-to-node
// client.
type clusterPeers struct {
	node   *cluster.Node
	client *cluster.PeerClient
}

func (p clusterPeers) Live() []gateway.Peer {
	var out []gateway.Peer
	for _, m := range p.node.Members() {
		if m.ID != p.node.ID() && m.PeerURL != "" {
			out = append(out, gateway.Peer{ID: m.ID, URL: m.PeerURL})
		}
	}
	return out
}

func (p clusterPeers) PushReceipts(ctx context.Context, peer gateway.Peer, rs []gateway.PeerReceipt) ([]gateway.PeerResult, error) {
	in := make([]cluster.PeerReceipt, len(rs))
	for i, r := range rs {
		in[i] = cluster.PeerReceipt(r)
	}
	out, err := p.client.PushReceipts(ctx, peer.URL, in)
	res := make([]gateway.PeerResult, len(out))
	for i, r := range out {
		res[i] = gateway.PeerResult(r)
	}
	return res, err
}

// peerBackend answers the other nodes (cluster.PeerHandler) with the
// gateway.
type peerBackend struct{ g *gateway.Gateway }

func (b peerBackend) MatchReceipts(ctx context.Context, rs []cluster.PeerReceipt) ([]cluster.PeerResult, error) {
	in := make([]gateway.PeerReceipt, len(rs))
	for i, r := range rs {
		in[i] = gateway.PeerReceipt(r)
	}
	out, err := b.g.MatchPeerReceipts(ctx, in)
	res := make([]cluster.PeerResult, len(out))
	for i, r := range out {
		res[i] = cluster.PeerResult(r)
	}
	return res, err
}

func (b peerBackend) Message(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, err := b.g.PeerMessage(ctx, enterprise, id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, cluster.ErrPeerNotFound
	}
	return m, err
}

// clusterState is the daemon's part of cluster mode; nil without it.
type clusterState struct {
	node     *cluster.Node
	replica  *cluster.Replica
	sessions *cluster.Sessions
	gateway  *clusterGateway
	binds    *cluster.ESMEBinds // receiver binds of every node (cluster_deliver.go)
	peerAddr net.Addr
	peer     *http.Server
	// peerHTTP carries every request to the other nodes: one pool of
	// connections, so a node keeps at most cluster.PeerConnsPerNode to
	// each (the peer listener's per-address cap).
	peerHTTP *http.Client

	run  context.CancelFunc // stops the membership follower and the leadership of reminders
	wg   sync.WaitGroup
	lost chan struct{} // closed when the node lost its membership for good
}

// sharedBuckets are the buckets of the state file that every node shares:
// policy's and the reminders'. The queue's stay local.
func sharedBuckets(name []byte) bool {
	s := string(name)
	return strings.HasPrefix(s, "policy_") || strings.HasPrefix(s, "reminder_")
}

// joinCluster listens for the other nodes, joins the cluster in etcd
// (failing if a live node holds this node id) and loads the shared state
// into db before policy reads it.
func (d *daemon) joinCluster(cfg ClusterConfig, db *bolt.DB) (*clusterState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := &clusterState{lost: make(chan struct{}), peerHTTP: cluster.NewPeerHTTPClient()}
	pl, err := net.Listen("tcp", cfg.PeerListen)
	if err != nil {
		return nil, fmt.Errorf("cluster.peer_listen: %w", err)
	}
	cs.peerAddr = pl.Addr()
	d.peerListener = pl
	peerURL := cfg.AdvertisedPeerURL()
	if cfg.PeerURL == "" {
		peerURL = "http://" + pl.Addr().String() // the port the kernel chose, when peer_listen asks for :0
	}
	log := d.log.With("component", "cluster")
	ccfg := cluster.Config{
		Endpoints: cfg.EtcdEndpoints, NodeID: uint16(cfg.NodeID), Name: cfg.Name,
		PeerURL: peerURL, Prefix: cfg.Prefix, TTL: cfg.LeaseTTL,
		Username: cfg.EtcdUsername, Password: cfg.EtcdPassword,
		Digests: configDigests(d.cfg),
	}
	// A node restarted right after a crash finds its id still held by its
	// previous lease: it waits for that to expire (at most lease_ttl), as
	// the fencing wants. Another live process with the same id keeps it
	// held, and start fails after the wait with the holder's name.
	for {
		cs.node, err = cluster.Join(ctx, ccfg, log)
		if !errors.Is(err, cluster.ErrIDHeld) || ctx.Err() != nil {
			break
		}
		log.Warn("cluster: node id still held; waiting for that lease to expire", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.LeaseTTL / 4):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// The node's copy of etcd's data is written through the store, as
	// the policy's writes are on a single node (queue.Store.Update).
	cs.replica, err = cluster.OpenReplica(ctx, cs.node.Client(), cs.node.Prefix(), db, sharedBuckets, log, cluster.WithWrite(d.store.Update))
	if err != nil {
		_ = cs.node.Close()
		return nil, fmt.Errorf("cluster: shared state: %w", err)
	}
	cs.sessions, err = cluster.OpenSessions(ctx, cs.node.Client(), cs.node.Prefix(), api.SessionIdle, log)
	if err != nil {
		_ = cs.replica.Close()
		_ = cs.node.Close()
		return nil, fmt.Errorf("cluster: sessions: %w", err)
	}
	cs.gateway = newClusterGateway(cs.node, cs.node.Quota(cfg.QuotaBlock))
	return cs, nil
}

// startCluster starts what needs the gateway: the peer endpoint, the
// membership follower (TPS shares, receipts waiting for a node that came
// back) and the reminders' scheduler on the one node that leads.
func (d *daemon) startCluster(cfg *Config, reg prometheus.Registerer, conns *connMetrics) error {
	cs := d.cluster
	if err := cs.node.RegisterMetrics(reg); err != nil {
		return fmt.Errorf("cluster: metrics: %w", err)
	}
	log := d.log.With("component", "cluster")
	cs.peer = d.httpServer(cfg.HTTP, cluster.PeerHandler([]byte(cfg.Cluster.Secret),
		peerListsBackend{peerLoadBackend{peerHooksBackend{peerUsageBackend{peerBackend{d.gw}, d.store}, d.hooks, log}, d.load}, d.api}, log), "peer")
	// A peer's request is at most cluster.PeerMaxBody on the nodes'
	// network: a body that takes longer than this is a slow attacker
	// holding one of the PeerMaxInFlight places.
	cs.peer.ReadTimeout = min(cfg.HTTP.ReadTimeout, 30*time.Second)
	// No cap per network: the other nodes, its clients, commonly share a
	// /24, and each keeps up to cluster.PeerConnsPerNode connections to
	// this one (four times max_conns_per_addr would refuse a sixth node's).
	limited := conns.limit(d.peerListener, cfg.HTTP.MaxConns, cfg.HTTP.MaxConnsPerAddr, 0)
	limited.evictIdle(cs.peer)
	d.goServe("peer", func() error { return cs.peer.Serve(limited) })

	ctx, run := context.WithCancel(context.Background())
	cs.run = run
	cs.wg.Go(func() {
		var differ []string // the parts unlike when last logged (this goroutine's)
		cs.gateway.run(ctx, func(live int) {
			d.policy.SetNodes(live)
			d.gw.PeersChanged()
			if now := cs.node.Differing(); !slices.Equal(now, differ) {
				differ = now
				logDiffering(log, cs.node.Members(), now)
			}
		})
	})
	cs.wg.Go(func() {
		cs.node.Lead(ctx, "reminders", func(ctx context.Context) {
			log.Info("leading: this node runs the reminders' scheduler")
			d.rem.Run(ctx)
		})
	})
	cs.wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-cs.node.Lost():
			// Without its lease the node can no longer prove it holds its
			// binds and quota blocks: it stops, and its supervisor starts
			// it again (a new lease, the same store).
			log.Error("cluster: membership lost (etcd unreachable for longer than cluster.lease_ttl); stopping")
			close(cs.lost)
		}
	})
	return nil
}

// status is this node's view of the cluster for GET /admin/v1/status.
func (cs *clusterState) status() *api.ClusterStatus {
	out := &api.ClusterStatus{Node: cs.node.ID(), Members: []api.ClusterMember{}, Leads: cs.node.Leads(),
		ConfigDiffers: cs.node.Differing()}
	if out.Leads == nil {
		out.Leads = []string{}
	}
	for _, m := range cs.node.Members() {
		out.Members = append(out.Members, api.ClusterMember{ID: m.ID, Name: m.Name, PeerURL: m.PeerURL, Started: m.Started,
			ConfigDigests: m.Digests})
	}
	return out
}

// logDiffering says in the log which parts of the configuration the live
// members have unlike since the last change of the membership, with each
// member's digest of them, or that they agree again: the log of every
// node says so once, beside the status, the metric and the alert.
func logDiffering(log *slog.Logger, members []cluster.Member, parts []string) {
	if len(parts) == 0 {
		log.Info("cluster: the nodes' configurations agree")
		return
	}
	args := []any{"parts", parts}
	for _, m := range members {
		var each []string
		for _, p := range parts {
			each = append(each, p+"="+cmp.Or(m.Digests[p], "none"))
		}
		args = append(args, fmt.Sprintf("node_%d", m.ID), strings.Join(each, " "))
	}
	log.Warn("cluster: the nodes run parts of their configuration unlike; give every node the same file, then reload (account_managers) or restart (the others) each", args...)
}

// The parts of the configuration that every node reads from its own file
// and that the nodes compare (cluster.Member.Digests): nodes that have
// them unlike answer differently.
const (
	// digestManagers says who may act as the operator: each node checks
	// tokens against its own file, so a node not reloaded after a token
	// was rotated would still take the old one. A reload changes it.
	digestManagers = "account_managers"
	// digestAdmin is http.admin_token: a node started with another one
	// refuses the CLI and the desk the others take. A restart changes it.
	digestAdmin = "admin_token"
	// digestHome is policy.home_province: which numbers an enterprise
	// without 全网发送 may reach. A restart changes it.
	digestHome = "home_province"
	// digestPackages is the package table (policy.packages, or the
	// FAQ's): the fees and monthly limits, so the quota and the bills.
	// A restart changes it.
	digestPackages = "packages"
)

// configDigests are the digests of c's parts that the nodes compare (the
// home province as its name), keyed with cluster.secret (HMAC-SHA256):
// the nodes share it, and whoever reads the digests (in etcd, or in the
// status, which every account manager may) cannot try guesses of a token
// against them.
func configDigests(c *Config) map[string]string {
	key := []byte(c.Cluster.Secret)
	out := map[string]string{digestManagers: managersDigest(key, c.HTTP.AccountManagers)}
	if c.HTTP.AdminToken != "" {
		out[digestAdmin] = digestOf(key, []string{c.HTTP.AdminToken})
	}
	if home, ok := policy.NormalizeProvince(c.Policy.HomeProvince); ok {
		out[digestHome] = home // no secret: the name itself tells the operator more
	}
	if pc, err := policyConfig(c); err == nil { // validated at load
		table := pc.Packages
		if len(table) == 0 {
			table = policy.DefaultPackages()
		}
		lines := make([]string, len(table))
		for i, p := range table {
			lines[i] = fmt.Sprintf("%d %d %d %d", p.ID, p.FeeFen, p.Included, p.OverageFen)
		}
		out[digestPackages] = digestOf(key, lines)
	}
	return out
}

// digestOf is 16 hex digits of the HMAC-SHA256 under key of lines, sorted.
func digestOf(key []byte, lines []string) string {
	lines = slices.Sorted(slices.Values(lines))
	h := hmac.New(sha256.New, key)
	h.Write([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// managersDigest is a digest under key of the account managers
// (http.account_managers) that tells two nodes' apart without showing
// anything of them: each manager's name, token, portfolio (sorted) and
// whether it is read-only, the managers sorted; 16 hex digits. Alike on
// nodes whose managers are alike, whatever the order in their files or
// whether a token is in the file or in token_file. "" for none.
func managersDigest(key []byte, ms []AccountManagerConfig) string {
	if len(ms) == 0 {
		return ""
	}
	lines := make([]string, 0, len(ms))
	for _, m := range ms {
		ents := slices.Sorted(slices.Values(m.Enterprises))
		lines = append(lines, fmt.Sprintf("%q %q %q %t", m.Name, m.Token, ents, m.ReadOnly))
	}
	return digestOf(key, lines)
}

// peerAddr is where the other nodes reach this one; nil outside a cluster.
func (d *daemon) peerAddr() net.Addr {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.peerAddr
}

// stopFollowing stops the membership follower and, on the leader, the
// reminders' scheduler.
func (cs *clusterState) stopFollowing() {
	if cs.run != nil {
		cs.run()
		cs.wg.Wait()
		cs.run = nil
	}
}

// stop ends cluster mode after the gateway stopped: the lease is revoked
// so the binds, quota blocks and leadership free at once for the others.
func (cs *clusterState) stop(ctx context.Context) {
	if cs.peer != nil {
		_ = cs.peer.Shutdown(ctx)
	}
	cs.stopFollowing()
	if cs.binds != nil {
		_ = cs.binds.Close()
	}
	_ = cs.sessions.Close()
	_ = cs.replica.Close()
	_ = cs.node.Close()
	cs.peerHTTP.CloseIdleConnections()
}

// clusterSubmitRelay is gateway.SubmitRelay over the live peers: the first that has a
// bind of the upstream up sends the segment (starting from a different
// peer each time, to spread the load over the nodes holding binds).
type clusterSubmitRelay struct {
	self    uint16                  // this node's id
	members func() []cluster.Member // the live nodes (cluster.Node.Members)
	client  *cluster.PeerClient
	next    atomic.Uint32
}

func (r *clusterSubmitRelay) RelaySubmit(ctx context.Context, upstream string, frame []byte) (uint32, string, error) {
	var peers []cluster.Member
	for _, m := range r.members() {
		if m.ID != r.self && m.PeerURL != "" {
			peers = append(peers, m)
		}
	}
	start := int(r.next.Add(1))
	// A busy peer (at its bound of relays in flight) has a bind: the
	// segment waits a moment for it rather than the second a segment
	// with no bind anywhere waits (gateway.ErrNoRelay), at most
	// relayBusyWait in all, then that second.
	pause := time.Millisecond
	deadline := time.Now().Add(relayBusyWait)
	for {
		busy := false
		for k := range peers {
			p := peers[(start+k)%len(peers)]
			st, id, err := r.client.Relay(ctx, p.PeerURL, upstream, frame)
			switch {
			case errors.Is(err, cluster.ErrPeerNoBind):
				continue
			case errors.Is(err, cluster.ErrPeerBusy):
				busy = true
				continue
			}
			return st, id, err
		}
		if !busy || time.Now().Add(pause).After(deadline) {
			return 0, "", gateway.ErrNoRelay
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, "", gateway.ErrNoRelay
		case <-t.C:
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// relayBusyWait is how long a segment waits in all for a busy peer.
const relayBusyWait = 2 * time.Second

// Relay implements cluster.PeerRelayBackend: another node's segment sent on
// this node's bind.
func (b peerBackend) Relay(ctx context.Context, upstream string, frame []byte) (uint32, string, error) {
	st, id, err := b.g.SubmitRelayed(ctx, upstream, frame)
	if errors.Is(err, gateway.ErrNoBind) {
		return 0, "", cluster.ErrPeerNoBind
	}
	return st, id, err
}

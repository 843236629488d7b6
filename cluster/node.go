package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Defaults and bounds of Config.
const (
	DefaultPrefix      = "/qxtd/"
	DefaultTTL         = 10 * time.Second
	MinTTL             = 2 * time.Second
	DefaultDialTimeout = 5 * time.Second
	// ReconnectMax is the longest pause between tries to reach etcd
	// again after the connection was lost.
	ReconnectMax = 250 * time.Millisecond
)

// ErrIDHeld is wrapped by Join when a live node already holds the id.
var ErrIDHeld = errors.New("held by a live node")

// Config says how a node reaches etcd and who it is.
type Config struct {
	// Endpoints are etcd client addresses (host:port or URLs); required.
	Endpoints []string
	// NodeID is this node's id, 1..65535; required. It is the fencing
	// token: two live processes never hold the same id.
	NodeID uint16
	// Name is for people; default "node-<id>".
	Name string
	// PeerURL is the advertised node-to-node URL; may be empty.
	PeerURL string
	// Prefix is where all keys live; default "/qxtd/". It ends in "/".
	Prefix string
	// TTL is the lease's time to live: how long a dead node's slots and
	// claims stay held. Default 10 s, minimum 2 s.
	TTL time.Duration
	// DialTimeout bounds the first connection and each of Close's
	// requests; default 5 s.
	DialTimeout time.Duration
	// Username and Password enable etcd authentication when Username is set.
	Username, Password string
	// TLS, when set, is used for the client connections.
	TLS *tls.Config
	// Digests are the node's Member.Digests at its join; PublishDigest
	// changes one later (a reload).
	Digests map[string]string
}

// Validate checks cfg and fills its defaults.
func (c *Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("cluster: config: endpoints: at least one etcd endpoint is required")
	}
	if c.NodeID == 0 {
		return errors.New("cluster: config: node_id: required, 1..65535")
	}
	if c.Name == "" {
		c.Name = "node-" + strconv.Itoa(int(c.NodeID))
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Prefix[len(c.Prefix)-1] != '/' {
		c.Prefix += "/"
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < MinTTL {
		return fmt.Errorf("cluster: config: ttl: %v is below the minimum %v", c.TTL, MinTTL)
	}
	if c.TTL%time.Second != 0 {
		return fmt.Errorf("cluster: config: ttl: %v is not whole seconds (etcd leases count seconds)", c.TTL)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("cluster: config: dial_timeout: %v is negative", c.DialTimeout)
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("cluster: config: password: set without a username")
	}
	return nil
}

// Member is what a live node publishes under members/<id>.
type Member struct {
	ID      uint16    `json:"id"`
	Name    string    `json:"name"`
	PeerURL string    `json:"peer_url,omitempty"`
	Started time.Time `json:"started"`
	// UpstreamsUp names, query-escaped, comma-separated and sorted, the upstreams of
	// which the node has a sending bind up; ReportsUp says it publishes
	// them (a node of an earlier release does not: its binds are
	// unknown). Routing's failover reads them (UpstreamUp).
	UpstreamsUp string `json:"upstreams_up,omitempty"`
	ReportsUp   bool   `json:"reports_up,omitempty"`
	// Digests are digests of parts of the node's configuration that
	// every node should have alike but reads from its own file
	// ("account_managers": who may act as the operator), so that nodes
	// reloaded at different times, or configured apart, can be told
	// (Differing). A part a node does not publish (an earlier release)
	// is not compared.
	Digests map[string]string `json:"digests,omitempty"`
}

// Node is this process's membership in the cluster: an etcd client, a lease
// (held by a concurrency.Session) and the member key attached to it.
type Node struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	sess    *concurrency.Session
	self    Member
	started time.Time

	requests  atomic.Uint64
	leaseLost atomic.Uint64
	// lastKeepAlive is the UnixNano time of the last keepalive answer;
	// Quota.Claim stops spending when it is older than TTL/2.
	lastKeepAlive atomic.Int64

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	kaStop context.CancelFunc // ends keepAliveLoop's keepalive listener (Join's failure)
	wg     sync.WaitGroup
	// campaigns are Lead's elections' campaigns, which may outlive Lead
	// until the client closes (campaign).
	campaigns sync.WaitGroup
	lost      chan struct{}
	closed    atomic.Bool
	once      sync.Once

	// publishMu orders PublishUpstreamsUp's writes of the member key:
	// the last one written is the last one asked for.
	publishMu sync.Mutex

	mu       sync.Mutex
	members  map[uint16]Member
	subs     map[chan struct{}]struct{}
	lastSlot map[string]int             // name → index held last, preferred next time
	held     map[string]int             // name → slots held now (for metrics)
	leading  map[string]bool            // name → leader now (for metrics)
	leads    map[chan struct{}]struct{} // closed when a running fn of Lead ends
}

// Join connects to etcd, takes a lease and registers the member key, failing
// with ErrIDHeld when a live node holds cfg.NodeID. log may be nil.
func Join(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:      cfg,
		log:      log.With("node", cfg.NodeID),
		lost:     make(chan struct{}),
		members:  map[uint16]Member{},
		subs:     map[chan struct{}]struct{}{},
		lastSlot: map[string]int{},
		held:     map[string]int{},
		leading:  map[string]bool{},
		leads:    map[chan struct{}]struct{}{},
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		TLS:         cfg.TLS,
		// etcd's own zap log would duplicate what we log through slog.
		Logger: zap.NewNop(),
		// Counted at the gRPC layer so that every request is seen,
		// including those made inside concurrency.* helpers.
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(n.countUnary),
			grpc.WithChainStreamInterceptor(n.countStream),
			// gRPC's default back-off (1 s growing 1.6× to 2 min) would
			// try an etcd back after an outage only seconds later: past
			// the lease's ttl, a node would stop although etcd had been
			// down for less. A failed connect to a down etcd is cheap.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2,
					MaxDelay: ReconnectMax,
				},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: join: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	n.cli = cli
	fail := func(err error) (*Node, error) {
		if n.kaStop != nil {
			n.kaStop()
		}
		cli.Close()
		return nil, err
	}
	// The lease is granted under the caller's ctx, but the session keeps it
	// alive under the client's: it must outlive Join's ctx.
	lease, err := cli.Grant(ctx, int64(cfg.TTL/time.Second))
	if err != nil {
		return fail(fmt.Errorf("cluster: join: grant lease: %w", err))
	}
	// A keepalive listener of our own on the lease, besides the session's
	// (which eats its answers): the quota fencing needs the time of the last
	// answer. It is asked for first so that it sees the first answer; it
	// ends with the session's context (Orphan, Close).
	kaCtx, kaStop := context.WithCancel(context.Background())
	n.kaStop = kaStop
	ka, err := cli.KeepAlive(kaCtx, lease.ID)
	if err != nil {
		return fail(fmt.Errorf("cluster: join: keepalive: %w", err))
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(int(cfg.TTL/time.Second)), concurrency.WithLease(lease.ID))
	if err != nil {
		return fail(fmt.Errorf("cluster: join: keep lease alive: %w", err))
	}
	n.sess = sess
	context.AfterFunc(sess.Ctx(), kaStop)
	// Until etcd has answered one keepalive, its client does not know the
	// lease's ttl and gives the lease up DialTimeout+1 s after asking: a
	// node whose etcd went down just after Join would stop in an outage far
	// shorter than the ttl. So Join returns once the first answer came.
	select {
	case resp, ok := <-ka:
		if !ok || resp.TTL <= 0 {
			sess.Close()
			return fail(fmt.Errorf("cluster: join: lease %x: no answer to its first keepalive (etcd down or the lease revoked)", int64(lease.ID)))
		}
	case <-ctx.Done():
		sess.Close()
		return fail(fmt.Errorf("cluster: join: wait for the lease's first keepalive answer: %w", ctx.Err()))
	}
	n.lastKeepAlive.Store(time.Now().UnixNano())

	n.started = time.Now().UTC().Truncate(time.Millisecond)
	n.self = Member{ID: cfg.NodeID, Name: cfg.Name, PeerURL: cfg.PeerURL, Started: n.started, Digests: maps.Clone(cfg.Digests)}
	val, _ := json.Marshal(n.self)
	key := n.memberKey(cfg.NodeID)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		sess.Close()
		return fail(fmt.Errorf("cluster: join: register %s: %w", key, err))
	}
	if !resp.Succeeded {
		sess.Close()
		var m Member
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			_ = json.Unmarshal(kvs[0].Value, &m)
		}
		return fail(fmt.Errorf("cluster: node id %d is %w (name %q, started %s); it frees when that node's lease expires (ttl %v)",
			cfg.NodeID, ErrIDHeld, m.Name, m.Started.Format(time.RFC3339), cfg.TTL))
	}

	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.listMembers(ctx); err != nil {
		n.cancel()
		sess.Close()
		return fail(err)
	}
	n.wg.Add(2)
	go n.keepAliveLoop(ka)
	go n.watchMembers()
	n.log.Info("cluster: joined", "name", cfg.Name, "lease", int64(sess.Lease()), "ttl", cfg.TTL)
	return n, nil
}

// keepAliveLoop records answers until the lease is gone, then closes Lost.
func (n *Node) keepAliveLoop(ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer n.wg.Done()
	for range ka {
		n.lastKeepAlive.Store(time.Now().UnixNano())
	}
	// The session's own loop ends on the same events; waiting for it
	// means Session().Done() is closed before Lost() is.
	<-n.sess.Done()
	if !n.closed.Load() {
		n.leaseLost.Add(1)
		n.log.Error("cluster: lease lost; this node stops acting as a member")
	}
	n.markLost()
}

func (n *Node) markLost() { n.once.Do(func() { close(n.lost) }) }

func (n *Node) countUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	n.requests.Add(1)
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (n *Node) countStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	n.requests.Add(1)
	return streamer(ctx, desc, cc, method, opts...)
}

// ID is this node's id.
func (n *Node) ID() uint16 { return n.cfg.NodeID }

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Client is the etcd client; other parts of the cluster package share it.
func (n *Node) Client() *clientv3.Client { return n.cli }

// Session holds the node's lease.
func (n *Node) Session() *concurrency.Session { return n.sess }

// Prefix is the key prefix, ending in "/".
func (n *Node) Prefix() string { return n.cfg.Prefix }

// TTL is the lease's time to live.
func (n *Node) TTL() time.Duration { return n.cfg.TTL }

// Lost is closed when the lease is gone for good (keepalive ended: expired,
// revoked or Close). The node must then stop acting as a member: close its
// binds, stop spending claims; a new Join is needed to come back.
func (n *Node) Lost() <-chan struct{} { return n.lost }

// Requests is the number of etcd requests this node made: unary calls and
// stream opens (watches, the keepalive stream), not messages on open streams.
func (n *Node) Requests() uint64 { return n.requests.Load() }

// fenced reports whether the node must not spend what its lease guards: the
// lease is lost, or no keepalive was answered for TTL/2, so that etcd may
// expire it before we notice.
func (n *Node) fenced() bool {
	select {
	case <-n.lost:
		return true
	default:
	}
	last := time.Unix(0, n.lastKeepAlive.Load())
	return time.Since(last) > n.cfg.TTL/2
}

// Close ends the functions run by Lead and waits for them (they must
// return when their context ends), then revokes the lease, so the node's member key, slots, claims' free
// parts and leaderships free at once, stops the node's goroutines and closes
// the client. It is idempotent.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	n.waitLeads()
	// Session.Close revokes with the session's context; bound it ourselves
	// in case etcd is unreachable (the lease then expires by itself).
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.DialTimeout)
	defer cancel()
	n.sess.Orphan()
	_, rerr := n.cli.Revoke(ctx, n.sess.Lease())
	n.wg.Wait()
	n.markLost()
	cerr := n.cli.Close()
	n.campaigns.Wait()
	n.log.Info("cluster: left")
	// Not found: it expired or was revoked already, which is what we want.
	if rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("cluster: close: revoke lease: %w", rerr)
	}
	if cerr != nil {
		return fmt.Errorf("cluster: close: %w", cerr)
	}
	return nil
}

// waitLeads waits for the functions run by Lead to return after n.ctx ended.
func (n *Node) waitLeads() {
	n.mu.Lock()
	runs := make([]chan struct{}, 0, len(n.leads))
	for ch := range n.leads {
		runs = append(runs, ch)
	}
	n.mu.Unlock()
	for _, ch := range runs {
		<-ch
	}
}

func (n *Node) key(parts ...string) string {
	k := n.cfg.Prefix
	for i, p := range parts {
		if i > 0 {
			k += "/"
		}
		k += p
	}
	return k
}

func (n *Node) memberKey(id uint16) string { return n.key("members", strconv.Itoa(int(id))) }

// opCtx bounds a request made on the node's behalf without a caller's
// context (Release, resign): it ends with the node or after DialTimeout.
func (n *Node) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(n.ctx, n.cfg.DialTimeout)
}

package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// carrier is an SMSC whose receipts the test sends itself, on the bind
// it chooses: every node binds with its own system_id, so a receipt for
// a message node A submitted can be sent on node B's bind, as a carrier
// does when the nodes share an account.
type carrier struct {
	srv *smpp.Server
	mu  sync.Mutex
	// conns are the bound connections by system_id.
	conns map[string][]*smpp.Conn
	// ids is the SMSC id given to each destination (tests send one
	// message per destination).
	ids   map[string]string
	next  uint64
	bound chan struct{} // kicked at each bind and submit
}

type carrierSession struct {
	c        *carrier
	systemID string
	conn     *smpp.Conn
}

func newCarrier(t *testing.T) (*carrier, string) {
	c := &carrier{conns: map[string][]*smpp.Conn{}, ids: map[string]string{}, bound: make(chan struct{}, 1)}
	c.srv = smpp.NewServer(smpp.BackendFunc(func(_ context.Context, req smpp.BindRequest) (smpp.Session, error) {
		c.mu.Lock()
		c.conns[req.SystemID] = append(c.conns[req.SystemID], req.Conn)
		c.mu.Unlock()
		c.kick()
		return &carrierSession{c: c, systemID: req.SystemID, conn: req.Conn}, nil
	}), smpp.ServerOptions{SystemID: "carrier"})
	l := listen(t)
	go func() { _ = c.srv.Serve(l) }()
	t.Cleanup(func() { _ = c.srv.Close() })
	return c, l.Addr().String()
}

func (c *carrier) kick() {
	select {
	case c.bound <- struct{}{}:
	default:
	}
}

func (s *carrierSession) Handle(_ context.Context, p pdu.Body) (pdu.Body, error) {
	if p.Header().ID != pdu.SubmitSMID {
		return nil, smpp.StatusInvalidCommandID
	}
	s.c.mu.Lock()
	s.c.next++
	id := strconv.FormatUint(0xC0DE0000+s.c.next, 16)
	s.c.ids[smpp.Str(p, pdufield.DestinationAddr)] = id
	s.c.mu.Unlock()
	s.c.kick()
	resp := pdu.NewSubmitSMResp()
	_ = resp.Fields().Set(pdufield.MessageID, id)
	return resp, nil
}

func (s *carrierSession) Close() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.conns[s.systemID] = slices.DeleteFunc(s.c.conns[s.systemID], func(c *smpp.Conn) bool { return c == s.conn })
}

// smscID waits for the id the carrier gave the message to dest.
func (c *carrier) smscID(t *testing.T, dest string) string {
	t.Helper()
	var id string
	eventually(t, 10*time.Second, "carrier accepts the message to "+dest, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		id = c.ids[dest]
		return id != ""
	})
	return id
}

// receipt sends a delivered receipt for smscID on a bind of systemID
// and returns once the node answered it (the node stored it).
func (c *carrier) receipt(t *testing.T, systemID, smscID, dest string) {
	t.Helper()
	var conn *smpp.Conn
	eventually(t, 10*time.Second, systemID+" bound", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if l := c.conns[systemID]; len(l) > 0 {
			conn = l[0]
		}
		return conn != nil
	})
	r := smpp.Receipt{ID: smscID, Sub: 1, Dlvrd: 1, SubmitDate: time.Now(), DoneDate: time.Now(), State: smpp.StateDelivered, Err: "000"}
	p := smpp.NewReceiptPDU(r, dest, "1069", 1, 1, 0, 0)
	_ = p.TLVFields().Set(pdutlv.TagReceiptedMessageID, pdutlv.CString(smscID))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := conn.Request(ctx, p)
	if err != nil {
		t.Fatalf("receipt on %s: %v", systemID, err)
	}
	if st := resp.Header().Status; st != 0 {
		t.Fatalf("receipt on %s answered %v", systemID, st)
	}
}

// eventually waits, with a deadline, for cond to hold.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting: %s", what)
		}
		waitABit(ctx)
	}
}

// peerBackend is what cmd/qxtd wires: cluster.PeerBackend over a Gateway.
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

func (b peerBackend) QueryMessage(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, err := b.g.PeerQueryMessage(ctx, enterprise, id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, cluster.ErrPeerNotFound
	}
	return m, err
}

func (b peerBackend) Cancel(ctx context.Context, id uint64, acct cluster.PeerAccount) (cluster.PeerOutcome, error) {
	a := gateway.Account(acct)
	out, err := b.g.PeerCancel(ctx, &a, id)
	return cluster.PeerOutcome(out), err
}

func (b peerBackend) Replace(ctx context.Context, id uint64, req cluster.PeerReplace) (cluster.PeerOutcome, error) {
	a := gateway.Account(req.Account)
	out, err := b.g.PeerReschedule(ctx, &a, id, req.SendAt, req.Text)
	return cluster.PeerOutcome(out), err
}

// peerList is what cmd/qxtd wires: gateway.Peers over the membership (here
// a list the test changes) and cluster.PeerClient.
type peerList struct {
	client *cluster.PeerClient
	mu     sync.Mutex
	peers  []gateway.Peer
}

func (l *peerList) Live() []gateway.Peer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.peers)
}

func (l *peerList) set(ps ...gateway.Peer) {
	l.mu.Lock()
	l.peers = ps
	l.mu.Unlock()
}

func (l *peerList) PushReceipts(ctx context.Context, p gateway.Peer, rs []gateway.PeerReceipt) ([]gateway.PeerResult, error) {
	in := make([]cluster.PeerReceipt, len(rs))
	for i, r := range rs {
		in[i] = cluster.PeerReceipt(r)
	}
	out, err := l.client.PushReceipts(ctx, p.URL, in)
	res := make([]gateway.PeerResult, len(out))
	for i, r := range out {
		res[i] = gateway.PeerResult(r)
	}
	return res, err
}

var peerSecret = []byte("cluster-secret")

// node is one cluster node: a rig (gateway, store, SMPP server) bound to
// the shared carrier as systemID, and its peer listener.
type node struct {
	*rig
	id    uint16
	peers *peerList
	url   string
}

func newNode(t *testing.T, id uint16, carrierAddr, dbPath string) *node {
	t.Helper()
	return newNodeBound(t, id, dbPath, func(u *gateway.UpstreamConfig) {
		u.Addr, u.SystemID, u.Password, u.Binds = carrierAddr, fmt.Sprintf("node%d", id), "pw", 1
	})
}

// newNodeBound is newNode with the upstream set by up.
func newNodeBound(t *testing.T, id uint16, dbPath string, up func(*gateway.UpstreamConfig)) *node {
	t.Helper()
	n := &node{id: id, peers: &peerList{client: cluster.NewPeerClient(id, peerSecret, nil)}}
	n.rig = newRig(t, rigOpts{
		dbPath:   dbPath,
		store:    func(o *queue.Options) { o.NodeID = id },
		upstream: up,
		gwcfg:    func(c *gateway.Config) { c.Peers = n.peers },
	})
	srv := httptest.NewServer(cluster.PeerHandler(peerSecret, peerBackend{n.gw}, nil))
	n.url = srv.URL
	stop := n.rig.stop
	n.rig.stop = sync.OnceFunc(func() { srv.Close(); stop() })
	t.Cleanup(n.rig.stop)
	return n
}

func (n *node) peer() gateway.Peer { return gateway.Peer{ID: n.id, URL: n.url} }

func (n *node) orphans(t *testing.T) int {
	t.Helper()
	got, _, err := n.store.Orphans(t.Context(), nil, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return len(got)
}

func forwarded(t *testing.T, r *rig, result string) float64 {
	return counters(t, r)["qxtd_cluster_receipts_forwarded_total,result="+result]
}

// TestReceiptOnAnotherNode: messages submitted on node A whose receipts
// the carrier sends on node B's bind reach A's ESME, each once, and B
// keeps no orphan; the extra latency over a receipt on A's own bind is
// measured.
// twoNodes starts a carrier and nodes A and B on it, each the other's
// peer, and binds an ESME to A.
func twoNodes(t *testing.T) (car *carrier, a, b *node, e *esme) {
	t.Helper()
	car, addr := newCarrier(t)
	a = newNode(t, 1, addr, "")
	b = newNode(t, 2, addr, "")
	a.peers.set(b.peer())
	b.peers.set(a.peer())
	waitReady(t, a.rig)
	waitReady(t, b.rig)
	e, err := a.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	return car, a, b, e
}

func TestReceiptOnAnotherNode(t *testing.T) {
	car, a, b, e := twoNodes(t)
	const n = 40 // per path
	var local, cross []time.Duration
	for i := range 2 * n {
		dest := fmt.Sprintf("1390000%04d", i)
		id, err := e.submit(t.Context(), submitSM("1069", dest, "hi"))
		if err != nil {
			t.Fatal(err)
		}
		if nid, _ := strconv.ParseUint(id, 10, 64); queue.NodeOf(nid) != 1 {
			t.Fatalf("message id %s is not node 1's", id)
		}
		smscID := car.smscID(t, dest)
		eventually(t, 10*time.Second, "A records the submission", func() bool {
			return a.store.Counts()[queue.StateSubmitted] == 1
		})
		on := "node1"
		if i%2 == 1 {
			on = "node2"
		}
		start := time.Now()
		car.receipt(t, on, smscID, dest)
		e.waitReceipts(t, i+1, 10*time.Second)
		if _, ok := e.receipts()[id]; !ok {
			t.Fatalf("no receipt for %s", id)
		}
		if on == "node1" {
			local = append(local, time.Since(start))
		} else {
			cross = append(cross, time.Since(start))
		}
	}
	eventually(t, 10*time.Second, "B deletes the orphans A took", func() bool { return b.orphans(t) == 0 })
	if got := forwarded(t, b.rig, "matched"); got != n {
		t.Errorf("B forwarded %v matched, want %d", got, n)
	}
	if got := counters(t, a.rig)["qxtd_dlrs_received_total,result=matched,state=delivered"]; got != 2*n {
		t.Errorf("A counted %v matched receipts, want %d", got, 2*n)
	}
	lp, cp := pct(local, 50), pct(cross, 50)
	t.Logf("receipt to ESME: local p50 %v p90 %v; via node B p50 %v p90 %v (extra p50 %v)",
		lp, pct(local, 90), cp, pct(cross, 90), cp-lp)
	if cp-lp > 100*time.Millisecond {
		t.Errorf("cross-node receipt p50 %v, local %v: more than 100 ms extra", cp, lp)
	}
}

// TestReceiptInAnotherBaseOnAnotherNode: the carrier gives hex ids in
// submit_sm_resp and decimal ones in receipts, and sends a receipt for A's
// message on B's bind. B offers it to A by its own form (A does not know
// it) until the receipt is older than the upstream's resp_timeout, then
// with Convert, and A matches it by the hex form.
func TestReceiptInAnotherBaseOnAnotherNode(t *testing.T) {
	car, a, b, e := twoNodes(t)
	const dest = "13900000001"
	id, err := e.submit(t.Context(), submitSM("1069", dest, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	hexID := car.smscID(t, dest)
	eventually(t, 10*time.Second, "A records the submission", func() bool {
		return a.store.Counts()[queue.StateSubmitted] == 1
	})
	v, err := strconv.ParseUint(hexID, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	car.receipt(t, "node2", strconv.FormatUint(v, 10), dest)
	eventually(t, 10*time.Second, "A does not take it by its own form", func() bool { return forwarded(t, b.rig, "unknown") >= 1 })
	if rc := e.waitReceipts(t, 1, 15*time.Second)[id]; rc.State != smpp.StateDelivered {
		t.Fatalf("receipt of %s: %+v", id, rc)
	}
	// The rig's upstreams wait 2 s for a submit_sm_resp.
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("receipt converted after %v, before the resp_timeout", d)
	}
	eventually(t, 10*time.Second, "B deletes the orphan", func() bool { return b.orphans(t) == 0 })
	if got := forwarded(t, b.rig, "matched"); got != 1 {
		t.Errorf("B forwarded %v matched, want 1", got)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// TestReceiptsKeptWhileOwnerDown: with node A stopped, B stores the
// receipts of A's messages, keeps them while A cannot be reached, and
// delivers them once A is back: none lost.
func TestReceiptsKeptWhileOwnerDown(t *testing.T) {
	car, addr := newCarrier(t)
	pathA := filepath.Join(t.TempDir(), "a.db")
	a := newNode(t, 1, addr, pathA)
	b := newNode(t, 2, addr, "")
	a.peers.set(b.peer())
	b.peers.set(a.peer())
	waitReady(t, a.rig)
	e, err := a.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := map[string]string{} // dest → our id
	for i := range n {
		dest := fmt.Sprintf("1370000%04d", i)
		if ids[dest], err = e.submit(t.Context(), submitSM("1069", dest, "hi")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "A records the submissions", func() bool {
		return a.store.Counts()[queue.StateSubmitted] == n
	})
	smscIDs := map[string]string{}
	for dest := range ids {
		smscIDs[dest] = car.smscID(t, dest)
	}
	a.stop() // B still lists it: the membership has not noticed yet

	for dest, sid := range smscIDs {
		car.receipt(t, "node2", sid, dest) // acknowledged: stored on B
	}
	eventually(t, 10*time.Second, "B fails to reach A", func() bool { return forwarded(t, b.rig, "failed") >= n })
	if got := b.orphans(t); got != n {
		t.Fatalf("B keeps %d orphans, want %d", got, n)
	}

	a2 := newNode(t, 1, addr, pathA)
	b.peers.set(a2.peer())
	b.gw.PeersChanged()
	e2, err := a2.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	got := e2.waitReceipts(t, n, 15*time.Second)
	for dest, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s (to %s): %+v, %v", id, dest, rc, ok)
		}
	}
	eventually(t, 10*time.Second, "B deletes the orphans", func() bool { return b.orphans(t) == 0 })
	if c := a2.store.Counts(); c[queue.StateDelivered] != n {
		t.Errorf("A's counts after: %v", c)
	}
}

// TestPeerAuthOnGateway: the peer listener of a node refuses a wrong
// secret, a stale clock and an oversize batch; nothing reaches its store.
func TestPeerAuthOnGateway(t *testing.T) {
	_, addr := newCarrier(t)
	a := newNode(t, 1, addr, "")
	rs := []cluster.PeerReceipt{{Upstream: "sim", SMSCID: "abc", State: "delivered", DoneAt: time.Now()}}
	if _, err := cluster.NewPeerClient(2, []byte("wrong"), nil).PushReceipts(t.Context(), a.url, rs); !peerStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v", err)
	}
	res, err := cluster.NewPeerClient(2, peerSecret, nil).PushReceipts(t.Context(), a.url, rs)
	if err != nil || len(res) != 1 || res[0] != cluster.PeerUnknown {
		t.Errorf("unknown receipt: %v, %v", res, err)
	}
	if got := a.orphans(t); got != 0 {
		t.Errorf("a peer's receipt left %d orphans", got)
	}
	if _, err := cluster.NewPeerClient(2, peerSecret, nil).Message(t.Context(), a.url, "esme", 1<<48+99); !errors.Is(err, cluster.ErrPeerNotFound) {
		t.Errorf("unknown message: %v", err)
	}
}

func peerStatus(err error, status int) bool {
	pe, ok := errors.AsType[*cluster.PeerError](err)
	return ok && pe.Status == status
}

// TestReceiptBeforeOwnerSubmitted: a receipt that reaches node B before
// node A recorded the submission is unknown to A at first; B keeps it and
// offers it again until A matches it.
func TestReceiptBeforeOwnerSubmitted(t *testing.T) {
	car, addr := newCarrier(t)
	a := newNode(t, 1, addr, "")
	b := newNode(t, 2, addr, "")
	b.peers.set(a.peer())
	waitReady(t, a.rig)
	waitReady(t, b.rig)
	e, err := a.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	// The carrier's ids are consecutive: the next is known in advance.
	car.mu.Lock()
	next := strconv.FormatUint(0xC0DE0000+car.next+1, 16)
	car.mu.Unlock()
	const dest = "13600000001"
	car.receipt(t, "node2", next, dest)
	eventually(t, 10*time.Second, "A does not know it yet", func() bool { return forwarded(t, b.rig, "unknown") >= 1 })

	id, err := e.submit(t.Context(), submitSM("1069", dest, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if got := car.smscID(t, dest); got != next {
		t.Fatalf("carrier gave %s, want %s", got, next)
	}
	if rc := e.waitReceipts(t, 1, 10*time.Second)[id]; rc.State != smpp.StateDelivered {
		t.Errorf("receipt of %s: %+v", id, rc)
	}
	eventually(t, 10*time.Second, "B deletes the orphan", func() bool { return b.orphans(t) == 0 })
	if got := forwarded(t, b.rig, "matched"); got != 1 {
		t.Errorf("matched %v, want 1", got)
	}
}

// TestSharedSimulatorBinds: both nodes bind to the simulator under the same
// account, which sends each receipt on any of the account's binds (round
// robin over both nodes'): every message submitted on A gets its receipt
// at A's ESME, about half of them through B.
func TestSharedSimulatorBinds(t *testing.T) {
	sim := smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", DLRDelay: 10 * time.Millisecond})
	sl := listen(t)
	go func() { _ = sim.Serve(sl) }()
	t.Cleanup(func() { _ = sim.Close() })
	shared := func(u *gateway.UpstreamConfig) {
		u.Addr, u.SystemID, u.Password, u.Binds = sl.Addr().String(), "up", "uppw", 2
	}
	a := newNodeBound(t, 1, "", shared)
	b := newNodeBound(t, 2, "", shared)
	a.peers.set(b.peer())
	b.peers.set(a.peer())
	waitReady(t, a.rig)
	waitReady(t, b.rig)
	eventually(t, 10*time.Second, "all four binds up", func() bool {
		return !a.gw.Health().Degraded() && !b.gw.Health().Degraded()
	})
	e, err := a.bind("esme", "pw", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	ids := submitN(t, e, n, "1350000")
	got := e.waitReceipts(t, n, 20*time.Second)
	for _, id := range ids {
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Errorf("receipt of %s: %+v, %v", id, rc, ok)
		}
	}
	eventually(t, 10*time.Second, "B keeps no orphan", func() bool { return b.orphans(t) == 0 })
	via := forwarded(t, b.rig, "matched")
	t.Logf("%v of %d receipts came through node B", via, n)
	if via == 0 || via == n {
		t.Errorf("%v of %d receipts through B: the simulator did not share the binds", via, n)
	}
}

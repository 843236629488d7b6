package gateway_test

import (
	"context"
	"fmt"
	"maps"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// bindBoard plays etcd's part for the relay: what each node published of
// its receiver binds, and which nodes are live.
type bindBoard struct {
	mu      sync.Mutex
	binds   map[uint16]map[string]boardBind // node → account →
	urls    map[uint16]string
	down    map[uint16]bool
	changed chan struct{}
}

type boardBind struct {
	enterprise string
	count      int
}

func newBoard() *bindBoard {
	return &bindBoard{binds: map[uint16]map[string]boardBind{}, urls: map[uint16]string{},
		down: map[uint16]bool{}, changed: make(chan struct{})}
}

func (b *bindBoard) signalLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// drop forgets node id, as its lease's expiry would.
func (b *bindBoard) drop(id uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[id] = true
	delete(b.binds, id)
	b.signalLocked()
}

// boardRelay is one node's gateway.Relay on the board, over a real
// cluster.PeerClient (what cmd/qxtd wires over cluster.ESMEBinds).
type boardRelay struct {
	b      *bindBoard
	id     uint16
	client *cluster.PeerClient
}

func (r *boardRelay) Bound(account, enterprise string) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.b.binds[r.id] == nil {
		r.b.binds[r.id] = map[string]boardBind{}
	}
	e := r.b.binds[r.id][account]
	e.enterprise = enterprise
	e.count++
	r.b.binds[r.id][account] = e
	r.b.signalLocked()
}

func (r *boardRelay) Unbound(account, _ string) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	e, ok := r.b.binds[r.id][account]
	if !ok {
		return
	}
	if e.count--; e.count == 0 {
		delete(r.b.binds[r.id], account)
	} else {
		r.b.binds[r.id][account] = e
	}
	r.b.signalLocked()
}

func (r *boardRelay) RemoteBinds() []gateway.RemoteBind {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	var out []gateway.RemoteBind
	for id, m := range r.b.binds {
		if id == r.id || r.b.down[id] {
			continue
		}
		for a, e := range m {
			out = append(out, gateway.RemoteBind{Peer: gateway.Peer{ID: id, URL: r.b.urls[id]}, Account: a, Enterprise: e.enterprise})
		}
	}
	return out
}

func (r *boardRelay) Changed() <-chan struct{} {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.b.changed
}

func (r *boardRelay) Deliver(ctx context.Context, p gateway.Peer, ds []gateway.PeerDelivery) ([]gateway.PeerDeliveryResult, error) {
	in := make([]cluster.PeerDelivery, len(ds))
	for i, d := range ds {
		in[i] = cluster.PeerDelivery(d)
	}
	out, err := r.client.Deliver(ctx, p.URL, in)
	res := make([]gateway.PeerDeliveryResult, len(out))
	for i, x := range out {
		res[i] = gateway.PeerDeliveryResult(x)
	}
	return res, err
}

// relayBackend is cmd/qxtd's peerBackend with deliveries.
type relayBackend struct{ peerBackend }

func (b relayBackend) Deliver(ctx context.Context, ds []cluster.PeerDelivery) ([]cluster.PeerDeliveryResult, error) {
	in := make([]gateway.PeerDelivery, len(ds))
	for i, d := range ds {
		in[i] = gateway.PeerDelivery(d)
	}
	out, err := b.g.DeliverForPeer(ctx, in)
	res := make([]cluster.PeerDeliveryResult, len(out))
	for i, x := range out {
		res[i] = cluster.PeerDeliveryResult(x)
	}
	return res, err
}

// relayNode is a two-way rig (enterprises E1: alice, E2: bob) with its own
// carrier and store, on the board, serving the peer protocol.
type relayNode struct {
	*rig
	id  uint16
	pol *policy.Policy
}

func newRelayNode(t *testing.T, b *bindBoard, id uint16, cfg ...func(*gateway.Config)) *relayNode {
	t.Helper()
	n := &relayNode{id: id}
	rel := &boardRelay{b: b, id: id, client: cluster.NewPeerClient(id, peerSecret, nil)}
	n.rig, n.pol = twoWayRig(t, rigOpts{
		sim:   smpp.SimOptions{DLRDelay: 10 * time.Millisecond},
		store: func(o *queue.Options) { o.NodeID = id },
		gwcfg: func(c *gateway.Config) {
			c.Relay = rel
			for _, f := range cfg {
				f(c)
			}
		},
	})
	srv := httptest.NewServer(cluster.PeerHandler(peerSecret, relayBackend{peerBackend{n.gw}}, nil))
	b.mu.Lock()
	b.urls[id] = srv.URL
	b.mu.Unlock()
	stop := n.rig.stop
	n.rig.stop = sync.OnceFunc(func() { srv.Close(); stop() })
	t.Cleanup(n.rig.stop)
	waitReady(t, n.rig)
	return n
}

func (n *relayNode) pendingDLRs(t *testing.T, account string) int {
	t.Helper()
	ms, err := n.store.PendingDLRs(account, 10000, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func relayed(t *testing.T, r *rig, kind, result string) float64 {
	return counters(t, r)["qxtd_cluster_deliveries_relayed_total,kind="+kind+",result="+result]
}

var wlNumbers = []string{"13712345678", "13923412345"}

// TestRelayReceiptsAndReplies: bob sends through node 1 (transmitter)
// and receives on node 2 (receiver only): every receipt of node 1's
// messages reaches him there, and node 1 keeps none; a reply that comes
// in on node 1 reaches alice's and bob's receivers on node 2. The
// latency of a relayed receipt is measured against a local one.
func TestRelayReceiptsAndReplies(t *testing.T) {
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2)
	tx, err := n1.bind("bob", "secret2", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := n2.bind("bob", "secret2", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := n2.bind("alice", "secret1", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	var cross []time.Duration
	for i := range n {
		start := time.Now()
		id, err := tx.submit(t.Context(), submitSM("", wlNumbers[i%2], fmt.Sprintf("m%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		got := rx.waitReceipts(t, i+1, 10*time.Second)
		if rc, ok := got[id]; !ok || rc.State != smpp.StateDelivered {
			t.Fatalf("receipt of %s: %+v %v", id, rc, ok)
		}
		cross = append(cross, time.Since(start))
	}
	eventually(t, 5*time.Second, "node 1 acknowledged the relayed receipts", func() bool { return n1.pendingDLRs(t, "bob") == 0 })
	if got := relayed(t, n1.rig, "receipt", "delivered"); got != n {
		t.Errorf("node 1 relayed %v receipts delivered, want %d", got, n)
	}
	if got := counters(t, n2.rig)["qxtd_cluster_deliveries_served_total,kind=receipt,result=delivered"]; got != n {
		t.Errorf("node 2 served %v receipts, want %d", got, n)
	}

	// The same ESME with a local receiver on node 1: the local path.
	trx, err := n1.bind("bob", "secret2", smpp.BindTransceiver)
	if err != nil {
		t.Fatal(err)
	}
	var local []time.Duration
	for i := range n {
		start := time.Now()
		if _, err := trx.submit(t.Context(), submitSM("", wlNumbers[i%2], fmt.Sprintf("l%d", i))); err != nil {
			t.Fatal(err)
		}
		trx.waitReceipts(t, i+1, 10*time.Second)
		local = append(local, time.Since(start))
	}
	if got := relayed(t, n1.rig, "receipt", "delivered"); got != n {
		t.Errorf("with a local receiver node 1 relayed %v, want still %d (local first)", got, n)
	}
	t.Logf("submit to receipt: local p50 %v p90 %v; relayed to node 2 p50 %v p90 %v (extra p50 %v)",
		pct(local, 50), pct(local, 90), pct(cross, 50), pct(cross, 90), pct(cross, 50)-pct(local, 50))

	// Replies arriving on node 1: alice's (by extension) and E2's.
	if err := n1.sim.InjectMO("13712345678", "10657500112", "你好，收到"); err != nil {
		t.Fatal(err)
	}
	if err := n1.sim.InjectMO("13923412345", "106575002", "reply to bob"); err != nil {
		t.Fatal(err)
	}
	if got := alice.waitMOs(t, 1); moText(t, got[0]) != "你好，收到" || got[0].Dest != "10657500112" || got[0].Source != "13712345678" {
		t.Errorf("alice got %+v", got[0])
	}
	// bob has a receiver on node 1 now (trx): the local one takes it.
	if got := trx.waitMOs(t, 1); moText(t, got[0]) != "reply to bob" {
		t.Errorf("bob got %+v", got[0])
	}
	eventually(t, 5*time.Second, "node 1 has no reply pending", func() bool {
		m1, _ := n1.store.PendingMOs("E1", 10, nil)
		m2, _ := n1.store.PendingMOs("E2", 10, nil)
		return len(m1) == 0 && len(m2) == 0
	})
	if got := relayed(t, n1.rig, "mo", "delivered"); got != 1 {
		t.Errorf("node 1 relayed %v replies, want 1 (alice's)", got)
	}
}

// TestRelayWaitsForDownPeer: while the node with bob's receiver is down
// (still listed: its lease has not expired), node 1 keeps bob's receipts;
// when bob binds his receiver on node 3 they all reach him there.
func TestRelayWaitsForDownPeer(t *testing.T) {
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2)
	n3 := newRelayNode(t, b, 3)
	tx, err := n1.bind("bob", "secret2", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.bind("bob", "secret2", smpp.BindReceiver); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "node 2's bind on the board", func() bool { return len((&boardRelay{b: b, id: 1}).RemoteBinds()) == 1 })
	// Node 2 dies: its binds stay on the board until its lease expires.
	b.mu.Lock()
	kept := maps.Clone(b.binds[2])
	b.mu.Unlock()
	n2.stop()
	b.mu.Lock()
	b.binds[2] = kept // its session's Unbound ran; a crash would not
	b.signalLocked()
	b.mu.Unlock()

	const n = 20
	ids := map[string]bool{}
	for i := range n {
		id, err := tx.submit(t.Context(), submitSM("", wlNumbers[i%2], fmt.Sprintf("d%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	eventually(t, 10*time.Second, "node 1 holds every receipt", func() bool { return n1.pendingDLRs(t, "bob") == n })
	eventually(t, 10*time.Second, "node 1 tried node 2", func() bool { return relayed(t, n1.rig, "receipt", "failed") > 0 })
	if got := n1.pendingDLRs(t, "bob"); got != n {
		t.Fatalf("node 1 holds %d receipts after failing, want %d", got, n)
	}

	b.drop(2)
	start := time.Now()
	rx, err := n3.bind("bob", "secret2", smpp.BindReceiver)
	if err != nil {
		t.Fatal(err)
	}
	got := rx.waitReceipts(t, n, 10*time.Second)
	t.Logf("%d waiting receipts reached node 3 %v after the bind", n, time.Since(start).Round(time.Millisecond))
	for id := range ids {
		if _, ok := got[id]; !ok {
			t.Errorf("no receipt for %s on node 3", id)
		}
	}
	eventually(t, 5*time.Second, "node 1 acknowledged them", func() bool { return n1.pendingDLRs(t, "bob") == 0 })
}

// TestDeliverForPeerNoBind: a delivery for an account bound nowhere here
// is no_bind, and nothing is sent.
func TestDeliverForPeerNoBind(t *testing.T) {
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	c := cluster.NewPeerClient(2, peerSecret, nil)
	res, err := c.Deliver(t.Context(), b.urls[1], []cluster.PeerDelivery{
		{Kind: cluster.DeliveryReceipt, Account: "bob", Enterprise: "E2", Source: "1", Dest: "2", ReceiptID: "9"},
		{Kind: cluster.DeliveryMO, Enterprise: "E1", Source: "1", Dest: "106575001", Text: "x"},
		{Kind: "bogus"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.PeerDeliveryResult{cluster.PeerNoBind, cluster.PeerNoBind, cluster.PeerFailed}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("result %d = %s, want %s", i, res[i], want[i])
		}
	}
	if _, err := cluster.NewPeerClient(2, []byte("wrong"), nil).Deliver(t.Context(), b.urls[1], nil); !peerStatus(err, 401) {
		t.Errorf("wrong secret: %v", err)
	}
	_ = n1
}

// TestRelayRefusedForGood: a receipt or a reply relayed to another node,
// whose ESME refuses it for good there (ESME_RX_P_APPN), is done on the
// sending node, as a local bind's refusal is (TestReceiptRefusedByESME,
// TestReplyRefusedByESME): sent once, not kept, the reply marked refused
// in the inbox, and the enterprise's later replies go on. Before, the
// serving node said failed and the sending node sent it again every
// round for ever, holding up every later reply of the enterprise.
func TestRelayRefusedForGood(t *testing.T) {
	b := newBoard()
	n1 := newRelayNode(t, b, 1)
	n2 := newRelayNode(t, b, 2)
	tx, err := n1.bind("bob", "secret2", smpp.BindTransmitter)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	receipts, replies := 0, map[string]int{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rx, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: n2.addr, SystemID: "bob", Password: "secret2", Kind: smpp.BindReceiver,
		Conn: smpp.ConnOptions{Window: 50, RespTimeout: 5 * time.Second},
		Handler: smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
			resp := pdu.NewDeliverSMResp()
			mu.Lock()
			defer mu.Unlock()
			if _, err := smpp.ParseReceipt(p); err == nil {
				receipts++
				resp.Header().Status = smpp.StatusRxPApp // every receipt
				return resp
			}
			text := string(smpp.Bytes(p, pdufield.ShortMessage))
			if replies[text]++; text == "first" {
				resp.Header().Status = smpp.StatusRxPApp
			}
			return resp
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	eventually(t, 5*time.Second, "node 2's bind on the board", func() bool { return len((&boardRelay{b: b, id: 1}).RemoteBinds()) == 1 })

	const n = 5
	for i := range n {
		if _, err := tx.submit(t.Context(), submitSM("", wlNumbers[i%2], fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, text := range []string{"first", "second"} {
		if err := n1.sim.InjectMO("13923412345", "106575002", text); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "node 1 holds no receipt and no reply", func() bool {
		mos, err := n1.store.PendingMOs("E2", 10, nil)
		return n1.pendingDLRs(t, "bob") == 0 && err == nil && len(mos) == 0
	})
	mu.Lock()
	gotReceipts, first, second := receipts, replies["first"], replies["second"]
	mu.Unlock()
	if gotReceipts != n || first != 1 || second != 1 {
		t.Errorf("sent %d receipts (want %d), the refused reply %d times and the next %d (want once each)", gotReceipts, n, first, second)
	}
	if got := relayed(t, n1.rig, "receipt", "refused"); got != n {
		t.Errorf("node 1 relayed %v receipts refused, want %d", got, n)
	}
	c1 := counters(t, n1.rig)
	if got := c1["qxtd_dlrs_forwarded_total,outcome=refused"]; got != n {
		t.Errorf("node 1 counted %v receipts forwarded refused, want %d", got, n)
	}
	if got := c1["qxtd_mo_forwarded_total,outcome=refused"]; got != 1 {
		t.Errorf("node 1 counted %v replies forwarded refused, want 1", got)
	}
	inbox, _, err := n1.store.Inbox("E2", queue.InboxFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range inbox {
		if m.Refused != (m.Text == "first") {
			t.Errorf("inbox %q: refused %v", m.Text, m.Refused)
		}
	}
}

package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// Cluster mode: receipts and replies for an ESME bound to another node.
//
// Each node keeps its own store: a message's receipt waits in the dlrout
// of the node that accepted it, a reply (MO) in the moout of the node
// whose carrier bind it came on. When the account (for an MO: the user,
// or any account of the enterprise) has a receiver-capable bind here, the
// local forwarders (dlr.go, mo.go) send it, exactly as on a single node.
// When it has none here but a live peer has one (Relay.RemoteBinds, a view
// of what every node publishes at bind and unbind), the relay — one
// goroutine of the Gateway — hands the pending ones to that peer in
// batches (Relay.Deliver); the peer sends each as a deliver_sm on its bind
// and answers per item after the ESME's deliver_sm_resp. Only what the
// peer confirmed is acknowledged here (queue.Store.AckDLRs, AckMO); the
// rest stays pending and is tried again with a back-off (1 s doubling to
// 30 s per account or enterprise), on another peer if one has a bind, or
// locally once the ESME binds here. Nothing is dropped while a peer is
// down; a delivery whose answer was lost is sent again (at-least-once,
// as locally).
//
// The relay wakes when a receipt or reply is stored (and looks at that
// account or enterprise only), when a local receiver bind comes or goes
// or the view of the other nodes' binds changes (and looks at every
// account and enterprise bound elsewhere: one store read each), and when
// a back-off ends. A local bind always wins: an account
// bound here is left to its forwarder. A local bind that appears while a
// batch is with a peer may repeat a few of them.

// Relay is the cluster as the relay needs it; cmd/qxtd implements it over
// cluster.ESMEBinds, the membership and cluster.PeerClient.
type Relay interface {
	// Bound and Unbound tell the cluster that a receiver-capable ESME
	// bind of account (of enterprise) came or went on this node. They
	// must not block.
	Bound(account, enterprise string)
	Unbound(account, enterprise string)
	// RemoteBinds lists the receiver-capable binds of the other live
	// nodes, one entry per (node, account).
	RemoteBinds() []RemoteBind
	// Changed returns a channel closed at the next change of RemoteBinds.
	Changed() <-chan struct{}
	// Deliver hands ds (at most MaxPeerDeliveries) to p, which sends each
	// on a local bind and answers, in order, once the ESME acknowledged
	// it or it gave up. An error means the outcome is unknown.
	Deliver(ctx context.Context, p Peer, ds []PeerDelivery) ([]PeerDeliveryResult, error)
}

// RemoteBind is an account with a receiver-capable bind on another node.
type RemoteBind struct {
	Peer       Peer
	Account    string
	Enterprise string
}

// PeerDelivery is one deliver_sm handed between nodes; its fields are
// cluster.PeerDelivery's, which converts to and from it.
type PeerDelivery struct {
	Kind       string    `json:"kind"` // DeliveryReceipt or DeliveryMO
	Enterprise string    `json:"enterprise"`
	Account    string    `json:"account,omitempty"`
	Source     string    `json:"source"`
	SourceTON  uint8     `json:"source_ton"`
	SourceNPI  uint8     `json:"source_npi"`
	Dest       string    `json:"dest"`
	DestTON    uint8     `json:"dest_ton"`
	DestNPI    uint8     `json:"dest_npi"`
	Text       string    `json:"text,omitempty"`
	ReceiptID  string    `json:"receipt_id,omitempty"`
	Sub        int       `json:"sub,omitempty"`
	Dlvrd      int       `json:"dlvrd,omitempty"`
	SubmitDate time.Time `json:"submit_date,omitzero"`
	DoneDate   time.Time `json:"done_date,omitzero"`
	State      uint8     `json:"state,omitempty"`
	Err        string    `json:"err,omitempty"`
	// Reply only: a reply kept as octets (Octets; queue.MO.Binary, its
	// data_coding, UDH and port TLVs), and the reply's id, whose low bits
	// are the reference of its parts (replyPDUs). A node of an earlier
	// release sends Text alone: a binary reply as an empty text.
	Octets     bool    `json:"octets,omitempty"`
	Binary     []byte  `json:"binary,omitempty"`
	DataCoding uint8   `json:"data_coding,omitempty"`
	UDH        []byte  `json:"udh,omitempty"`
	SourcePort *uint16 `json:"source_port,omitempty"`
	DestPort   *uint16 `json:"dest_port,omitempty"`
	MOID       uint64  `json:"mo_id,omitempty"`
}

// PeerDeliveryResult is what a peer did with a PeerDelivery
// (cluster.PeerDeliveryResult).
type PeerDeliveryResult string

// Kinds and results of deliveries between nodes.
const (
	DeliveryReceipt = "receipt"
	DeliveryMO      = "mo"

	PeerDelivered PeerDeliveryResult = "delivered"
	PeerNoBind    PeerDeliveryResult = "no_bind"
	PeerFailed    PeerDeliveryResult = "failed"
	// PeerRefused: the ESME refused it for good (refusedForGood), as a
	// local bind's refusal: answered, not sent again. A node of an
	// earlier release, not knowing it, keeps the delivery and tries
	// again, as it did before.
	PeerRefused PeerDeliveryResult = "refused"
	// PeerThrottled: the ESME answered ESME_RTHROTTLED or ESME_RMSGQFUL,
	// or had asked so and its pause held (esmePause): not delivered,
	// kept and tried again after the back-off. A node of an earlier
	// release reads it as failed, which it is.
	PeerThrottled PeerDeliveryResult = "throttled"
)

// Relay tuning.
const (
	MaxPeerDeliveries = 256 // cluster.PeerMaxDeliveries
	// peerDeliverTimeout bounds one Deliver round trip; the serving node
	// gives its ESME less (peerServeTimeout) so that it answers in time.
	peerDeliverTimeout = 10 * time.Second
	peerServeTimeout   = 7 * time.Second
	// peerServeParallel bounds the deliver_sm a node sends at once for
	// one request (each bind's window bounds them further).
	peerServeParallel = 32
)

// relay forwards pending receipts and replies to peers (see above).
type relay struct {
	g    *Gateway
	r    Relay
	wake chan struct{} // 1-buffered

	mu    sync.Mutex
	retry map[string]relayRetry // "r:"+account, "m:"+enterprise → back-off
	// dirty are the keys with something new stored since the last round;
	// all asks the next round to look at every key (binds changed here
	// or elsewhere). A round otherwise looks only at these and at the
	// back-offs that ended: a receipt costs a look at its own account.
	dirty map[string]bool
	all   bool

	relayed *prometheus.CounterVec // kind, result
	served  *prometheus.CounterVec // kind, result
}

// relayRetry is the back-off of an account or enterprise whose turn
// failed, and the nodes it had binds on then: a change of those (the
// ESME bound elsewhere) ends the back-off.
type relayRetry struct {
	peerRetry
	nodes string
}

func newRelay(g *Gateway, r Relay) *relay {
	x := &relay{g: g, r: r, wake: make(chan struct{}, 1), retry: make(map[string]relayRetry),
		dirty: make(map[string]bool), all: true}
	x.relayed = promauto.With(g.metrics.reg).NewCounterVec(prometheus.CounterOpts{
		Name: "qxtd_cluster_deliveries_relayed_total",
		Help: "Receipts and replies (kind) this node handed to another node for an ESME bound there, by result: delivered (the ESME acknowledged: done here), refused (the ESME refused it for good: done here, not sent again), no_bind (that node had no bind any more), throttled (the ESME asked to slow down there: kept and tried again after a back-off), failed (not acknowledged, or the node could not be asked): kept and tried again.",
	}, []string{"kind", "result"})
	x.served = promauto.With(g.metrics.reg).NewCounterVec(prometheus.CounterOpts{
		Name: "qxtd_cluster_deliveries_served_total",
		Help: "Receipts and replies (kind) another node handed this one for an ESME bound here, by result: delivered, refused, no_bind, throttled (the ESME asked to slow down: answered so, or not sent while its pause held), failed.",
	}, []string{"kind", "result"})
	promauto.With(g.metrics.reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qxtd_cluster_remote_receiver_binds",
		Help: "Accounts with a receiver-capable ESME bind on another live node, counted once per node: where this node can hand receipts and replies.",
	}, func() float64 { return float64(len(r.RemoteBinds())) })
	for _, k := range []string{DeliveryReceipt, DeliveryMO} {
		for _, res := range []PeerDeliveryResult{PeerDelivered, PeerRefused, PeerNoBind, PeerThrottled, PeerFailed} {
			x.relayed.WithLabelValues(k, string(res))
			x.served.WithLabelValues(k, string(res))
		}
	}
	return x
}

// touch marks key ("r:"+account, "m:"+enterprise, or "" for every key)
// for the next round and wakes the relay.
func (x *relay) touch(key string) {
	x.mu.Lock()
	if key == "" {
		x.all = true
	} else {
		x.dirty[key] = true
	}
	x.mu.Unlock()
	wakeUp(x.wake)
}

// relayKick wakes the relay, if any, for key: a receipt ("r:"+account) or
// a reply ("m:"+enterprise) was stored.
func (g *Gateway) relayKick(key string) {
	if g.relay != nil {
		g.relay.touch(key)
	}
}

// receiverBound and receiverUnbound publish a local receiver-capable bind
// (cluster mode) and wake the relay: an account bound here is its
// forwarder's again, one unbound here may be another node's now.
func (g *Gateway) receiverBound(acct *Account) {
	if g.relay != nil {
		g.relay.r.Bound(acct.SystemID, acct.Enterprise)
		g.relay.touch("")
	}
}

func (g *Gateway) receiverUnbound(acct *Account) {
	if g.relay != nil {
		g.relay.r.Unbound(acct.SystemID, acct.Enterprise)
		g.relay.touch("")
	}
}

// run relays until ctx ends.
func (x *relay) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		changed := x.r.Changed()
		select {
		case <-ctx.Done():
			return
		case <-x.wake:
		case <-changed:
			x.mu.Lock()
			x.all = true
			x.mu.Unlock()
		case <-timer.C:
		}
		next := x.round(ctx)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// round relays, for every account and enterprise with a bind on a peer
// and none here, what is pending; concurrently, so that a slow peer
// delays only its own. It returns the earliest back-off's end (zero: none).
func (x *relay) round(ctx context.Context) time.Time {
	byAccount := map[string][]Peer{}
	byEnterprise := map[string][]RemoteBind{}
	nodes := map[string]string{} // key → the nodes of its binds, for relayRetry
	binds := x.r.RemoteBinds()
	slices.SortFunc(binds, func(a, b RemoteBind) int {
		return cmp.Or(strings.Compare(a.Account, b.Account), cmp.Compare(a.Peer.ID, b.Peer.ID))
	})
	for _, b := range binds {
		byAccount[b.Account] = append(byAccount[b.Account], b.Peer)
		byEnterprise[b.Enterprise] = append(byEnterprise[b.Enterprise], b)
		id := strconv.Itoa(int(b.Peer.ID)) + ","
		nodes["r:"+b.Account] += id
		nodes["m:"+b.Enterprise] += id + b.Account + ","
	}
	now := time.Now()
	var wg sync.WaitGroup
	x.mu.Lock()
	all, dirty := x.all, x.dirty
	x.all, x.dirty = false, make(map[string]bool)
	for k, r := range x.retry {
		if r.nodes != nodes[k] {
			delete(x.retry, k) // bound elsewhere now (or nowhere): afresh
			dirty[k] = true
		}
	}
	// due: a key to look at now — touched (or all are) and not backing
	// off, or its back-off ended.
	due := func(k string) bool {
		r, ok := x.retry[k]
		if ok {
			return !r.next.After(now)
		}
		return all || dirty[k]
	}
	for account, peers := range byAccount {
		k := "r:" + account
		if x.g.dlrs.bound(account) || !due(k) {
			continue
		}
		wg.Go(func() { x.done(k, nodes[k], x.receipts(ctx, account, peers)) })
	}
	for enterprise, binds := range byEnterprise {
		k := "m:" + enterprise
		if !due(k) {
			continue
		}
		wg.Go(func() { x.done(k, nodes[k], x.replies(ctx, enterprise, binds)) })
	}
	x.mu.Unlock()
	wg.Wait()
	x.mu.Lock()
	defer x.mu.Unlock()
	var next time.Time
	for _, r := range x.retry {
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	return next
}

// done records the outcome of one account's or enterprise's turn: ok
// clears its back-off, !ok doubles it (for binds on nodes).
func (x *relay) done(key, nodes string, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ok {
		delete(x.retry, key)
		return
	}
	r := x.retry[key]
	r.delay = min(max(2*r.delay, peerRetryMin), peerRetryMax)
	r.next = time.Now().Add(r.delay)
	r.nodes = nodes
	x.retry[key] = r
}

// receipts hands account's pending receipts to its peers, batch by
// batch, until none is left (true) or one was not taken (false: back off).
func (x *relay) receipts(ctx context.Context, account string, peers []Peer) bool {
	g := x.g
	for i := 0; ctx.Err() == nil; i++ {
		if g.dlrs.bound(account) {
			return true // bound here meanwhile: the forwarder's now
		}
		// A message can have several receipts (Aliases, at most one per
		// segment): fetch fewer messages than the batch holds, and cut at
		// the limit.
		msgs, err := g.store.PendingDLRs(account, MaxPeerDeliveries/4, nil)
		if err != nil {
			g.log.Error("pending receipts to relay", "account", account, "err", err)
			return false
		}
		if len(msgs) == 0 {
			return true
		}
		var ds []PeerDelivery
		var owner []int // ds[k] is a receipt of msgs[owner[k]]
		for j, m := range msgs {
			rcs := ReceiptsFor(m)
			if len(ds)+len(rcs) > MaxPeerDeliveries && j > 0 {
				msgs = msgs[:j]
				break
			}
			for _, rc := range rcs {
				ds = append(ds, PeerDelivery{Kind: DeliveryReceipt, Enterprise: m.Enterprise, Account: account,
					Source: m.Dest, SourceTON: m.DestTON, SourceNPI: m.DestNPI,
					Dest: m.Source, DestTON: m.SourceTON, DestNPI: m.SourceNPI, Text: rc.Text,
					ReceiptID: rc.ID, Sub: rc.Sub, Dlvrd: rc.Dlvrd, SubmitDate: rc.SubmitDate, DoneDate: rc.DoneDate,
					State: uint8(rc.State), Err: rc.Err})
				owner = append(owner, j)
			}
		}
		res := x.deliver(ctx, DeliveryReceipt, peers[i%len(peers):], peers[:i%len(peers)], ds)
		ok := make([]bool, len(msgs))
		for j := range ok {
			ok[j] = true
		}
		// Counted a receipt each, as the local forwarder does (dlr.go),
		// for the messages acknowledged.
		delivered, refused := make([]int, len(msgs)), make([]int, len(msgs))
		for k, r := range res {
			switch r {
			case PeerDelivered:
				delivered[owner[k]]++
			case PeerRefused:
				refused[owner[k]]++
			default:
				ok[owner[k]] = false
			}
		}
		var ids []uint64
		nOK, nRefused := 0, 0
		for j, m := range msgs {
			if ok[j] {
				ids = append(ids, m.ID)
				nOK += delivered[j]
				nRefused += refused[j]
			}
		}
		if len(ids) > 0 {
			if err := g.store.AckDLRs(context.WithoutCancel(ctx), account, ids); err != nil {
				g.log.Error("ack relayed receipts", "account", account, "n", len(ids), "err", err)
				return false // sent again: at-least-once
			}
			g.metrics.dlrForward.WithLabelValues("ok").Add(float64(nOK))
			g.metrics.dlrForward.WithLabelValues(dlrForwardRefused).Add(float64(nRefused))
		}
		if len(ids) < len(msgs) {
			return false
		}
	}
	return false
}

// replies hands the enterprise's pending MOs that no local bind can take
// to a peer with a bind of their user (or any, for the enterprise as a
// whole), until none is left (true) or one was not taken (false).
func (x *relay) replies(ctx context.Context, enterprise string, binds []RemoteBind) bool {
	g := x.g
	all := true
	// Read on from the last read's end: each reply once a pass, those
	// left to a local bind, or whose user no peer has, passed over.
	var after uint64
	for ctx.Err() == nil {
		mos, err := g.store.PendingMOsAfter(enterprise, after, moBatch, nil)
		if err != nil {
			g.log.Error("pending replies to relay", "enterprise", enterprise, "err", err)
			return false
		}
		if len(mos) == 0 {
			return all
		}
		after = mos[len(mos)-1].ID
		byPeer := map[Peer][]*queue.MO{}
		for _, m := range mos {
			var to *Peer
			if !g.mos.bound(enterprise, m.Account) {
				for _, b := range binds {
					if m.Account == "" || b.Account == m.Account {
						to = &b.Peer
						break
					}
				}
			}
			if to == nil {
				continue
			}
			byPeer[*to] = append(byPeer[*to], m)
		}
		for p, mos := range byPeer {
			for list, ds := range peerReplyBatches(enterprise, mos) {
				ok, throttled := x.relayReplies(ctx, enterprise, p, list, ds)
				if throttled {
					// The ESME asked to slow down: what is left waits
					// for the back-off, not sent only to be refused.
					return false
				}
				all = all && ok
			}
		}
	}
	return false
}

// peerReplyBatchBytes bounds the JSON of the replies one Deliver carries,
// under the peer's body limit (cluster.PeerMaxBody, 4 MiB), as a read of
// replies may hold 8 MiB of content (queue: maxDueReplyBytes). A reply
// larger than that goes alone.
const peerReplyBatchBytes = 2 << 20

// peerReplyBatches yields mos in batches of at most peerReplyBatchBytes
// of JSON (one reply at least), each with its deliveries.
func peerReplyBatches(enterprise string, mos []*queue.MO) iter.Seq2[[]*queue.MO, []PeerDelivery] {
	return func(yield func([]*queue.MO, []PeerDelivery) bool) {
		var list []*queue.MO
		var ds []PeerDelivery
		size := 0
		for _, m := range mos {
			d := PeerDelivery{Kind: DeliveryMO, Enterprise: enterprise, Account: m.Account,
				Source: m.Source, SourceTON: m.SourceTON, SourceNPI: m.SourceNPI, Dest: m.Dest, Text: m.Text, MOID: m.ID}
			if m.Binary != nil {
				d.Octets, d.Binary, d.DataCoding, d.UDH = true, m.Binary, m.DataCoding, m.UDH
				d.SourcePort, d.DestPort = m.SourcePort, m.DestPort
			}
			b, _ := json.Marshal(d) // plain fields: it cannot fail
			if len(list) > 0 && size+len(b) > peerReplyBatchBytes {
				if !yield(list, ds) {
					return
				}
				list, ds, size = nil, nil, 0
			}
			list, ds, size = append(list, m), append(ds, d), size+len(b)
		}
		if len(list) > 0 {
			yield(list, ds)
		}
	}
}

// relayReplies hands list (as ds) to peer p and acknowledges what it
// delivered, or the ESME refused for good; the others wait for the
// next pass (ok false). throttled: the ESME asked to slow down.
func (x *relay) relayReplies(ctx context.Context, enterprise string, p Peer, list []*queue.MO, ds []PeerDelivery) (ok, throttled bool) {
	g := x.g
	all := true
	res := x.deliver(ctx, DeliveryMO, []Peer{p}, nil, ds)
	for k, m := range list {
		if res[k] != PeerDelivered && res[k] != PeerRefused {
			all = false
			throttled = throttled || res[k] == PeerThrottled
			continue
		}
		if err := g.store.AckMO(context.WithoutCancel(ctx), enterprise, m.ID, time.Now(), res[k] == PeerRefused); err != nil {
			g.log.Error("ack relayed reply", "enterprise", enterprise, "id", m.ID, "err", err)
			all = false
			continue
		}
		outcome := "ok"
		if res[k] == PeerRefused {
			outcome = moForwardRefused
		}
		g.metrics.moForward.WithLabelValues(outcome).Inc()
	}
	return all, throttled
}

// deliver hands ds to the first of peers (then of more) that answers and
// returns a result per delivery: PeerFailed for all when none answered.
// Deliveries a peer had no bind for are offered to the next one.
func (x *relay) deliver(ctx context.Context, kind string, peers, more []Peer, ds []PeerDelivery) []PeerDeliveryResult {
	out := make([]PeerDeliveryResult, len(ds))
	for k := range out {
		out[k] = PeerFailed
	}
	todo := make([]int, len(ds)) // indexes of ds still to place
	for k := range todo {
		todo[k] = k
	}
	for _, p := range append(append([]Peer(nil), peers...), more...) {
		if len(todo) == 0 || ctx.Err() != nil {
			break
		}
		batch := make([]PeerDelivery, len(todo))
		for k, i := range todo {
			batch[k] = ds[i]
		}
		pctx, cancel := context.WithTimeout(ctx, peerDeliverTimeout)
		res, err := x.r.Deliver(pctx, p, batch)
		cancel()
		if err != nil || len(res) != len(batch) {
			if ctx.Err() == nil {
				x.g.log.Warn("relay to a peer", "peer", p.ID, "url", p.URL, "kind", kind, "n", len(batch), "err", err)
			}
			continue
		}
		var left []int
		for k, i := range todo {
			out[i] = res[k]
			if res[k] == PeerNoBind {
				left = append(left, i)
			}
		}
		todo = left
	}
	for _, r := range out {
		x.relayed.WithLabelValues(kind, string(r)).Inc()
	}
	return out
}

// DeliverForPeer sends deliveries another node handed this one
// (cluster.PeerDeliverer) on local binds: a receipt on a receiver bind of
// its account, a reply on one of its user's (any of the enterprise's for
// Account ""). Each result comes after the ESME's deliver_sm_resp
// (PeerDelivered), or is PeerNoBind (none bound here), PeerThrottled or
// PeerFailed. It stores nothing: the sending node keeps what is not
// PeerDelivered (or PeerRefused).
//
// As the local forwarders do, up to peerServeParallel go at once, and
// an enterprise's replies reach the wire in the order they came: each
// (all its parts) goes once the one before it is queued. The ESME's
// answers are awaited together. An ESME that asked to slow down
// (esmePause: the same pause as its local forwarder's) gets nothing new
// until the pause ends: those deliveries are answered PeerThrottled
// unsent, and the sending node backs off.
func (g *Gateway) DeliverForPeer(ctx context.Context, ds []PeerDelivery) ([]PeerDeliveryResult, error) {
	out := make([]PeerDeliveryResult, len(ds))
	ctx, cancel := context.WithTimeout(ctx, peerServeTimeout)
	defer cancel()
	sem := make(chan struct{}, peerServeParallel)
	turns := map[string]chan struct{}{} // enterprise → closed once its last reply started is queued
	var wg sync.WaitGroup
	for i, d := range ds {
		sem <- struct{}{}
		var prev, mine chan struct{}
		if d.Kind == DeliveryMO {
			prev, mine = turns[d.Enterprise], make(chan struct{})
			turns[d.Enterprise] = mine
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = g.deliverForPeer(ctx, d, prev, mine)
			if g.relay != nil {
				g.relay.served.WithLabelValues(d.Kind, string(out[i])).Inc()
			}
		})
	}
	wg.Wait()
	return out, nil
}

// deliverForPeer sends d once prev is closed (nil: at once), closing
// mine (if any) once its deliver_sm are queued or it gave up, and
// returns its result after the ESME's answers.
func (g *Gateway) deliverForPeer(ctx context.Context, d PeerDelivery, prev <-chan struct{}, mine chan struct{}) PeerDeliveryResult {
	queued := func() {
		if mine != nil {
			close(mine)
			mine = nil
		}
	}
	defer queued()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return PeerFailed
		}
	}
	var c *smpp.Conn
	var pause *esmePause
	var pdus []pdu.Body
	switch d.Kind {
	case DeliveryReceipt:
		if c, pause = g.dlrs.local(d.Account); c != nil {
			rc := smpp.Receipt{ID: d.ReceiptID, Sub: d.Sub, Dlvrd: d.Dlvrd, SubmitDate: d.SubmitDate, DoneDate: d.DoneDate,
				State: smpp.MessageState(d.State), Err: d.Err, Text: d.Text}
			pdus = []pdu.Body{smpp.NewReceiptPDU(g.inReceiptZone(rc), d.Source, d.Dest, d.SourceTON, d.SourceNPI, d.DestTON, d.DestNPI)}
		}
	case DeliveryMO:
		if b, p, ok := g.mos.local(d.Enterprise, d.Account); ok {
			m := &queue.MO{ID: d.MOID, Source: d.Source, SourceTON: d.SourceTON, SourceNPI: d.SourceNPI, Dest: d.Dest, Text: d.Text}
			if d.Octets {
				m.Binary, m.DataCoding, m.UDH, m.SourcePort, m.DestPort = d.Binary, d.DataCoding, d.UDH, d.SourcePort, d.DestPort
				if m.Binary == nil {
					m.Binary = []byte{}
				}
			}
			c, pause, pdus = b.conn, p, replyPDUs(m, g.replyForm(b))
		}
	default:
		return PeerFailed
	}
	if c == nil {
		return PeerNoBind
	}
	if pause.paused(time.Now()) {
		return PeerThrottled
	}
	errs := make([]error, len(pdus))
	var answers sync.WaitGroup
	for i, p := range pdus {
		sent := make(chan struct{})
		answers.Go(func() { _, errs[i] = c.RequestQueued(ctx, p, func() { close(sent) }) })
		<-sent
	}
	queued()
	answers.Wait()
	res := PeerDelivered
	for _, err := range errs {
		throttled := pause.answered(err, time.Now(), g.cfg.RetryMin, g.cfg.RetryMax)
		switch {
		case refusedForGood(err):
			res = PeerRefused
		case throttled && res == PeerDelivered:
			res = PeerThrottled
		case err != nil && res == PeerDelivered:
			res = PeerFailed
		}
	}
	return res
}

// bound reports whether account has a receiver-capable bind here.
func (r *router) bound(account string) bool {
	r.set.mu.Lock()
	defer r.set.mu.Unlock()
	return r.set.fw[account] != nil
}

// local picks one of account's receiver-capable binds here, or nil, and
// the pause its ESME asked for.
func (r *router) local(account string) (*smpp.Conn, *esmePause) {
	r.set.mu.Lock()
	e := r.set.fw[account]
	r.set.mu.Unlock()
	if e == nil {
		return nil, nil
	}
	return e.f.conn(), &e.f.pause
}

// bound reports whether an MO for account ("" : the enterprise as a
// whole) has a bind to go to here.
func (r *moRouter) bound(enterprise, account string) bool {
	r.set.mu.Lock()
	e := r.set.fw[enterprise]
	r.set.mu.Unlock()
	if e == nil {
		return false
	}
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	for _, b := range e.f.binds {
		if account == "" || b.account == account {
			return true
		}
	}
	return false
}

// local picks a bind here for an MO of enterprise for account, with the
// pause the enterprise's ESMEs asked for.
func (r *moRouter) local(enterprise, account string) (moBind, *esmePause, bool) {
	r.set.mu.Lock()
	e := r.set.fw[enterprise]
	r.set.mu.Unlock()
	if e == nil {
		return moBind{}, nil, false
	}
	b, ok := e.f.bind(account)
	return b, &e.f.pause, ok
}

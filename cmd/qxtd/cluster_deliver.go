package main

import (
	"context"
	"fmt"
	"time"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
)

// clusterRelay is gateway.Relay over the published ESME binds, the
// membership and the node-to-node client: receipts and replies for an ESME
// whose receiver is bound to another node go there.
type clusterRelay struct {
	node   *cluster.Node
	binds  *cluster.ESMEBinds
	client *cluster.PeerClient
}

var _ gateway.Relay = clusterRelay{}

// openRelay starts publishing and watching the ESME binds of every node;
// clusterState.stop closes them.
func (cs *clusterState) openRelay(secret string) (gateway.Relay, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := cluster.OpenESMEBinds(ctx, cs.node, nil)
	if err != nil {
		return nil, fmt.Errorf("cluster: esme binds: %w", err)
	}
	cs.binds = b
	return clusterRelay{node: cs.node, binds: b,
		client: cluster.NewPeerClient(cs.node.ID(), []byte(secret), cs.peerHTTP)}, nil
}

func (r clusterRelay) Bound(account, enterprise string) { r.binds.Bound(account, enterprise) }

func (r clusterRelay) Unbound(account, _ string) { r.binds.Unbound(account) }

// RemoteBinds is the published binds of the nodes that are members now
// (a dead node's keys last until its lease expires; its membership too,
// but the two views may lag each other).
func (r clusterRelay) RemoteBinds() []gateway.RemoteBind {
	live := map[uint16]string{}
	for _, m := range r.node.Members() {
		if m.ID != r.node.ID() && m.PeerURL != "" {
			live[m.ID] = m.PeerURL
		}
	}
	var out []gateway.RemoteBind
	for _, b := range r.binds.Binds() {
		if u, ok := live[b.Node]; ok {
			out = append(out, gateway.RemoteBind{Peer: gateway.Peer{ID: b.Node, URL: u}, Account: b.Account, Enterprise: b.Enterprise})
		}
	}
	return out
}

func (r clusterRelay) Changed() <-chan struct{} { return r.binds.Changed() }

func (r clusterRelay) Deliver(ctx context.Context, p gateway.Peer, ds []gateway.PeerDelivery) ([]gateway.PeerDeliveryResult, error) {
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

// Deliver implements cluster.PeerDeliverer: another node's receipts and
// replies for ESMEs bound here.
func (b peerBackend) Deliver(ctx context.Context, ds []cluster.PeerDelivery) ([]cluster.PeerDeliveryResult, error) {
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

var _ cluster.PeerDeliverer = peerBackend{}

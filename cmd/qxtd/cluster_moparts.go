package main

import (
	"context"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
)

// clusterMOParts is gateway.MOPartPeers over the membership and the
// node-to-node client: each part of a long reply goes to the node that
// joins it (cluster.MOPartOwner over the live members).
type clusterMOParts struct {
	node   *cluster.Node
	client *cluster.PeerClient
}

var _ gateway.MOPartPeers = clusterMOParts{}

func (c clusterMOParts) MOPartOwner(g queue.MOPartGroup) (gateway.Peer, bool) {
	self := c.node.ID()
	var live []cluster.Member
	for _, m := range c.node.Members() {
		if m.ID == self || m.PeerURL != "" {
			live = append(live, m)
		}
	}
	o, ok := cluster.MOPartOwner(live, cluster.MOPartKey(g.Upstream, g.Source, g.Dest, g.Ref, g.Total))
	if !ok || o.ID == self {
		return gateway.Peer{}, false
	}
	return gateway.Peer{ID: o.ID, URL: o.PeerURL}, true
}

func (c clusterMOParts) ForwardMOPart(ctx context.Context, owner gateway.Peer, p gateway.PeerMOPart) error {
	return c.client.ForwardMOPart(ctx, owner.URL, cluster.PeerMOPart(p))
}

// StoreMOPart implements cluster.PeerMOPartBackend: a part of a reply
// this node joins, which came on another node's bind.
func (b peerBackend) StoreMOPart(ctx context.Context, p cluster.PeerMOPart) error {
	return b.g.StorePeerMOPart(ctx, gateway.PeerMOPart(p))
}

// The backend the daemon mounts takes them.
var _ cluster.PeerMOPartBackend = peerListsBackend{}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/queue"
)

// Lists across the nodes: each node's store holds the messages it
// accepted and the replies that arrived on its binds, so the outboxes and
// the inbox merge every node's pages (api.PeerLists over the peer
// protocol's /peer/v1/lists/{list}).

// peerListsBackend is peerLoadBackend that also answers the other nodes'
// pages of this node's lists (cluster.PeerListBackend), as its API shows
// them.
type peerListsBackend struct {
	peerLoadBackend
	api *api.Server
}

var _ cluster.PeerListBackend = peerListsBackend{}

func (b peerListsBackend) List(_ context.Context, q cluster.PeerListQuery) (json.RawMessage, error) {
	pg, err := b.api.NodePage(api.NodeListQuery(q))
	if errors.Is(err, queue.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", cluster.ErrPeerBadQuery, err)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(pg)
}

// clusterLists is api.PeerLists: it asks one other node, over the peer
// protocol; the API asks them in parallel.
type clusterLists struct {
	node   *cluster.Node
	client *cluster.PeerClient
}

var _ api.PeerLists = (*clusterLists)(nil)

func (d *daemon) clusterLists(cfg *Config) *clusterLists {
	return &clusterLists{node: d.cluster.node,
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)}
}

func (l *clusterLists) Self() uint16 { return l.node.ID() }

// ListNodes is every other node with a registered store (a node down is
// still known to hold messages), and every other live one.
func (l *clusterLists) ListNodes(ctx context.Context) ([]uint16, error) {
	ids, err := l.node.Stores(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range l.node.Members() {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return slices.DeleteFunc(ids, func(id uint16) bool { return id == l.node.ID() }), nil
}

func (l *clusterLists) PeerPage(ctx context.Context, node uint16, q api.NodeListQuery) (api.NodePage, error) {
	peerURL := ""
	for _, m := range l.node.Members() {
		if m.ID == node {
			peerURL = m.PeerURL
		}
	}
	if peerURL == "" {
		return api.NodePage{}, fmt.Errorf("node %d is not live", node)
	}
	data, err := l.client.List(ctx, peerURL, cluster.PeerListQuery(q))
	if err != nil {
		return api.NodePage{}, err
	}
	var pg api.NodePage
	if err := json.Unmarshal(data, &pg); err != nil {
		return api.NodePage{}, fmt.Errorf("list %s of node %d: answer: %w", q.List, node, err)
	}
	return pg, nil
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/queue"
)

// Usage across the nodes: each node's store holds the usage of what it
// accepted, so bills sum every node's (api.PeerUsage over the peer
// protocol's GET /peer/v1/usage). The nodes with a store are registered in
// etcd (cluster.Node.RegisterStore), so a node that is down is named as
// missing rather than silently left out of a bill.

// peerUsageBackend is peerBackend that also answers the other nodes'
// questions about this node's usage (cluster.PeerUsageBackend).
type peerUsageBackend struct {
	peerBackend
	store *queue.Store
}

var _ cluster.PeerUsageBackend = peerUsageBackend{}

func (b peerUsageBackend) Usage(_ context.Context, month, enterprise string) ([]cluster.PeerUsage, error) {
	us, err := b.store.UsageByMonth(month)
	if err != nil {
		return nil, err
	}
	out := make([]cluster.PeerUsage, 0, len(us))
	for _, u := range us {
		if enterprise == "" || u.Enterprise == enterprise {
			out = append(out, cluster.PeerUsage{Enterprise: u.Enterprise, Reserved: u.Reserved,
				Charged: u.Charged, PurgedCharged: u.PurgedCharged})
		}
	}
	return out, nil
}

// clusterUsage is api.PeerUsage: it asks every other node with a store,
// in parallel.
type clusterUsage struct {
	node   *cluster.Node
	client *cluster.PeerClient
	log    *slog.Logger
}

var _ api.PeerUsage = (*clusterUsage)(nil)

// clusterUsage registers this node's store in etcd (before it accepts
// anything, so that no bill leaves it out) and returns the other nodes'
// usage for the API.
func (d *daemon) clusterUsage(cfg *Config) (*clusterUsage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cluster.node.RegisterStore(ctx); err != nil {
		return nil, err
	}
	return &clusterUsage{node: d.cluster.node, log: d.log.With("component", "cluster"),
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)}, nil
}

// PeerUsage sums the usage of every other registered store whose node is
// live and answers; the others are missing. A live node not (yet)
// registered is asked too.
func (u *clusterUsage) PeerUsage(ctx context.Context, month, enterprise string) ([]queue.EnterpriseUsage, []uint16, error) {
	var (
		mu  sync.Mutex
		sum = make(map[string]queue.EnterpriseUsage)
	)
	missing, err := askOthers(ctx, u.node, u.log, "usage of "+month, func(ctx context.Context, _ uint16, peerURL string) error {
		us, err := u.client.Usage(ctx, peerURL, month, enterprise)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range us {
			t := sum[p.Enterprise]
			t.Enterprise = p.Enterprise
			t.Reserved += p.Reserved
			t.Charged += p.Charged
			t.PurgedCharged += p.PurgedCharged
			sum[p.Enterprise] = t
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]queue.EnterpriseUsage, 0, len(sum))
	for _, t := range sum {
		out = append(out, t)
	}
	return out, missing, nil
}

// askOthers calls ask, in parallel, for every other node that is live
// (with its peer URL) or has a registered store, which is what holds an
// enterprise's rows: its usage, its receipts. It returns the ids of the
// nodes whose part is unknown (sorted): registered but not live, or whose
// ask failed. An error means not even that is known.
func askOthers(ctx context.Context, node *cluster.Node, log *slog.Logger, what string,
	ask func(ctx context.Context, id uint16, peerURL string) error) ([]uint16, error) {
	stores, err := node.Stores(ctx)
	if err != nil {
		return nil, err
	}
	self := node.ID()
	live := make(map[uint16]string)
	for _, m := range node.Members() {
		if m.ID != self && m.PeerURL != "" {
			live[m.ID] = m.PeerURL
		}
	}
	ids := make([]uint16, 0, len(stores)+len(live))
	for _, id := range stores {
		if id != self {
			ids = append(ids, id)
		}
	}
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	var (
		mu      sync.Mutex
		missing []uint16
		wg      sync.WaitGroup
	)
	for _, id := range ids {
		peerURL, ok := live[id]
		if !ok {
			missing = append(missing, id) // nothing runs yet
			continue
		}
		wg.Go(func() {
			if err := ask(ctx, id, peerURL); err != nil {
				log.Warn(what+" of a node unknown", "node", id, "err", err)
				mu.Lock()
				missing = append(missing, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s of the other nodes: %w", what, ctx.Err())
	}
	slices.Sort(missing)
	return missing, nil
}

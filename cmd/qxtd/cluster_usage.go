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
	stores, err := u.node.Stores(ctx)
	if err != nil {
		return nil, nil, err
	}
	self := u.node.ID()
	live := make(map[uint16]string)
	for _, m := range u.node.Members() {
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
		sum     = make(map[string]queue.EnterpriseUsage)
		missing []uint16
		wg      sync.WaitGroup
	)
	for _, id := range ids {
		peerURL, ok := live[id]
		if !ok {
			missing = append(missing, id) // ids is sorted and nothing runs yet
			continue
		}
		wg.Go(func() {
			us, err := u.client.Usage(ctx, peerURL, month, enterprise)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				u.log.Warn("usage of a node unknown", "node", id, "month", month, "err", err)
				missing = append(missing, id)
				return
			}
			for _, p := range us {
				t := sum[p.Enterprise]
				t.Enterprise = p.Enterprise
				t.Reserved += p.Reserved
				t.Charged += p.Charged
				t.PurgedCharged += p.PurgedCharged
				sum[p.Enterprise] = t
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("usage of the other nodes: %w", ctx.Err())
	}
	slices.Sort(missing)
	out := make([]queue.EnterpriseUsage, 0, len(sum))
	for _, t := range sum {
		out = append(out, t)
	}
	return out, missing, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
)

// Idempotency keys across the nodes: a keyed send asks every other live
// node whether it ran the key (api.PeerAnswers over the peer protocol's
// POST /peer/v1/answers), so that a retry that a load balancer sends to
// another node replays the first answer instead of sending again.

var _ cluster.PeerAnswerBackend = peerListsBackend{}

// Answer is what this node knows of key, for another node.
func (b peerListsBackend) Answer(_ context.Context, key string) (cluster.PeerAnswer, error) {
	a, err := b.api.NodeAnswer(key)
	return cluster.PeerAnswer(a), err
}

// clusterAnswers is api.PeerAnswers.
type clusterAnswers struct {
	node   *cluster.Node
	client *cluster.PeerClient
}

var _ api.PeerAnswers = (*clusterAnswers)(nil)

func (d *daemon) clusterAnswers(cfg *Config) *clusterAnswers {
	return &clusterAnswers{node: d.cluster.node,
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)}
}

// FindAnswer asks the other live nodes in parallel (within ctx). A
// node's answer wins over another's running request, which wins over
// none; a node that could not be asked is an error unless another
// answered, but one that answers 404 (an older release) counts as none.
func (c *clusterAnswers) FindAnswer(ctx context.Context, key string) (api.KeyAnswer, uint16, error) {
	type result struct {
		node uint16
		a    cluster.PeerAnswer
		err  error
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got []result
	)
	for _, m := range c.node.Members() {
		if m.ID == c.node.ID() {
			continue
		}
		wg.Go(func() {
			a, err := c.client.Answer(ctx, m.PeerURL, key)
			mu.Lock()
			got = append(got, result{m.ID, a, err})
			mu.Unlock()
		})
	}
	wg.Wait()
	best := result{a: cluster.PeerAnswer{State: api.KeyNone}}
	var errs []error
	for _, r := range got {
		var pe *cluster.PeerError
		switch {
		case errors.As(r.err, &pe) && pe.Status == http.StatusNotFound:
			// A node of a release before kept answers (a rolling
			// upgrade): it keeps its keys in memory, which no node can
			// ask, so a retry that reaches another node is sent again, as
			// it was before this release; refusing every keyed send until
			// the upgrade ends would be worse.
		case r.err != nil:
			errs = append(errs, fmt.Errorf("node %d: %w", r.node, r.err))
		case r.a.State == api.KeyDone:
			return api.KeyAnswer(r.a), r.node, nil
		case r.a.State == api.KeyRunning:
			best = r
		}
	}
	if best.a.State == api.KeyRunning {
		return api.KeyAnswer(best.a), best.node, nil
	}
	if len(errs) > 0 {
		return api.KeyAnswer{}, 0, errors.Join(errs...)
	}
	return api.KeyAnswer(best.a), 0, nil
}

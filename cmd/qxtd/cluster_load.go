package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
)

// The members' loads in a cluster node's status: each node measures its
// own last minute (load.go); the node that answers GET /admin/v1/status
// asks the others for theirs (/peer/v1/load), so that one page shows
// which node is busy, what a message costs there and for whom, without
// Prometheus.

const (
	// loadPeerWait bounds the wait for a member's load: one that does not
	// answer by then (hung, unreachable, just started) is shown without,
	// so that it does not hold the status for the peer timeout (10 s).
	loadPeerWait = 2 * time.Second
	// loadPeerTTL is how long the members' answers are kept: a desk page
	// reloaded, or a script polling the status, asks the others at most
	// once in it, so it cannot crowd their peer listeners.
	loadPeerTTL = time.Second
)

// peerLoadBackend is peerHooksBackend that also answers the other nodes'
// questions about this node's load (cluster.PeerLoadBackend).
type peerLoadBackend struct {
	peerHooksBackend
	load *loadMeter
}

var _ cluster.PeerLoadBackend = peerLoadBackend{}

func (b peerLoadBackend) Load() (cluster.PeerLoad, bool) {
	st := b.load.status()
	if st == nil {
		return cluster.PeerLoad{}, false
	}
	out := cluster.PeerLoad{Seconds: st.Seconds, Accepted: st.Accepted, CPUCores: st.CPUCores,
		CPUMicrosPerMessage: st.CPUMicrosPerMessage, CommitsPerSecond: st.CommitsPerSecond,
		WrittenBytesPerSecond: st.WrittenBytesPerSecond, TopEnterprises: []cluster.PeerEnterpriseLoad{}}
	for _, e := range st.TopEnterprises {
		out.TopEnterprises = append(out.TopEnterprises, cluster.PeerEnterpriseLoad{Enterprise: e.Enterprise, Accepted: e.Accepted})
	}
	out.Upstreams = []cluster.PeerUpstreamLoad{}
	for _, u := range st.Upstreams {
		out.Upstreams = append(out.Upstreams, cluster.PeerUpstreamLoad{Name: u.Name, Relayed: u.Relayed, Throttled: u.Throttled,
			Failed: u.Failed, SubmitMeanMS: u.SubmitMeanMS, TPS: u.TPS, PacePerSecond: u.PacePerSecond, InFlight: u.InFlight, Slots: u.Slots})
	}
	return out, true
}

// loadStatusOf is a member's answer in the API's terms (the rates are
// derived: they are not on the wire).
func loadStatusOf(l cluster.PeerLoad) *api.LoadStatus {
	if l.Seconds <= 0 {
		return nil
	}
	out := &api.LoadStatus{Seconds: l.Seconds, Accepted: l.Accepted, AcceptedPerSecond: float64(l.Accepted) / l.Seconds,
		CPUCores: l.CPUCores, CPUMicrosPerMessage: l.CPUMicrosPerMessage, CommitsPerSecond: l.CommitsPerSecond,
		WrittenBytesPerSecond: l.WrittenBytesPerSecond, TopEnterprises: []api.EnterpriseLoad{}}
	for _, e := range l.TopEnterprises[:min(len(l.TopEnterprises), topSenders)] {
		out.TopEnterprises = append(out.TopEnterprises, api.EnterpriseLoad{Enterprise: e.Enterprise, Accepted: e.Accepted,
			AcceptedPerSecond: float64(e.Accepted) / l.Seconds})
	}
	out.Upstreams = []api.UpstreamLoad{}
	for _, u := range l.Upstreams {
		out.Upstreams = append(out.Upstreams, api.UpstreamLoad{Name: u.Name, Relayed: u.Relayed, RelayedPerSecond: float64(u.Relayed) / l.Seconds,
			Throttled: u.Throttled, Failed: u.Failed, SubmitMeanMS: u.SubmitMeanMS, TPS: u.TPS, PacePerSecond: u.PacePerSecond,
			InFlight: u.InFlight, Slots: u.Slots})
	}
	return out
}

// clusterLoads fills the members' loads of a status.
type clusterLoads struct {
	node   *cluster.Node
	client *cluster.PeerClient
	self   func() *api.LoadStatus // this node's (loadMeter.status)
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex // held while asking: concurrent statuses wait for one round
	at    time.Time
	loads map[uint16]*api.LoadStatus // the last round's answers, by node
}

func (d *daemon) clusterLoads(cfg *Config) *clusterLoads {
	return &clusterLoads{node: d.cluster.node, self: d.load.status, log: d.log.With("component", "cluster"), now: time.Now,
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)}
}

// fill sets each member's Load: this node's own, the others' as they
// answered within loadPeerWait (asked again once loadPeerTTL passed).
func (c *clusterLoads) fill(ctx context.Context, st *api.ClusterStatus) {
	self := c.self()
	c.mu.Lock()
	defer c.mu.Unlock()
	loads := c.loads
	if c.now().Sub(c.at) >= loadPeerTTL {
		loads = c.ask(ctx, st.Node, st.Members)
		if ctx.Err() == nil { // a round its caller cut short is not kept
			c.at, c.loads = c.now(), loads
		}
	}
	for i := range st.Members {
		m := &st.Members[i]
		if m.ID == st.Node {
			m.Load = self
		} else {
			m.Load = loads[m.ID]
		}
	}
}

// ask asks every other member for its load, in parallel, each for at most
// loadPeerWait.
func (c *clusterLoads) ask(ctx context.Context, self uint16, members []api.ClusterMember) map[uint16]*api.LoadStatus {
	var (
		mu  sync.Mutex
		out = make(map[uint16]*api.LoadStatus, len(members))
		wg  sync.WaitGroup
	)
	for _, m := range members {
		if m.ID == self || m.PeerURL == "" {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, loadPeerWait)
			defer cancel()
			l, err := c.client.Load(ctx, m.PeerURL)
			if err != nil {
				// Debug: a desk polling beside a hung node would log
				// this every second; the node's own absence shows.
				c.log.Debug("load of a node unknown", "node", m.ID, "err", err)
				return
			}
			mu.Lock()
			out[m.ID] = loadStatusOf(l)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

package main

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
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

// peerTopSenders is how many enterprises a node names to the others, so
// that the cluster's top senders are added up from more than each node's
// own five: exact while no node has more enterprises sending in its
// minute.
const peerTopSenders = 50

func (b peerLoadBackend) Load() (cluster.PeerLoad, bool) { return b.loadOf(nil) }

// loadOf is Load naming of the enterprises that sent the most those keep
// holds (nil: all): this node's own part of a status asked for by an
// account manager with a portfolio.
func (b peerLoadBackend) loadOf(keep func(string) bool) (cluster.PeerLoad, bool) {
	st := b.load.statusTop(peerTopSenders, keep)
	if st == nil {
		return cluster.PeerLoad{}, false
	}
	out := cluster.PeerLoad{Seconds: st.Seconds, Accepted: st.Accepted, CPUCores: st.CPUCores,
		CPUMicrosPerMessage: st.CPUMicrosPerMessage, CommitsPerSecond: st.CommitsPerSecond,
		WrittenBytesPerSecond: st.WrittenBytesPerSecond, TopEnterprises: []cluster.PeerEnterpriseLoad{}, TopLimit: peerTopSenders}
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
// derived: they are not on the wire), its top senders those keep holds
// (nil: all).
func loadStatusOf(l cluster.PeerLoad, keep func(string) bool) *api.LoadStatus {
	if l.Seconds <= 0 {
		return nil
	}
	out := &api.LoadStatus{Seconds: l.Seconds, Accepted: l.Accepted, AcceptedPerSecond: float64(l.Accepted) / l.Seconds,
		CPUCores: l.CPUCores, CPUMicrosPerMessage: l.CPUMicrosPerMessage, CommitsPerSecond: l.CommitsPerSecond,
		WrittenBytesPerSecond: l.WrittenBytesPerSecond, TopEnterprises: []api.EnterpriseLoad{}}
	for _, e := range l.TopEnterprises {
		if len(out.TopEnterprises) == topSenders {
			break
		}
		if keep != nil && !keep(e.Enterprise) {
			continue
		}
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

// clusterLoads fills the members' loads of a status, and the cluster's.
type clusterLoads struct {
	node   *cluster.Node
	client *cluster.PeerClient
	self   func(keep func(string) bool) (cluster.PeerLoad, bool) // this node's, as the others get it (peerLoadBackend.loadOf)
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex // held while asking: concurrent statuses wait for one round
	at    time.Time
	loads map[uint16]cluster.PeerLoad // the last round's answers, by node
}

func (d *daemon) clusterLoads(cfg *Config) *clusterLoads {
	return &clusterLoads{node: d.cluster.node, self: peerLoadBackend{load: d.load}.loadOf, log: d.log.With("component", "cluster"), now: time.Now,
		client: cluster.NewPeerClient(d.cluster.node.ID(), []byte(cfg.Cluster.Secret), d.cluster.peerHTTP)}
}

// fill sets each member's Load: this node's own, the others' as they
// answered within loadPeerWait (asked again once loadPeerTTL passed); and
// the cluster's, the members' added up. keep, when not nil, is the
// enterprises the top senders are of (an account manager's portfolio):
// this node ranks its own among them; the others' are what they named,
// their 50 that sent the most, kept to those (TopPartial says when an
// enterprise may be missing).
func (c *clusterLoads) fill(ctx context.Context, st *api.ClusterStatus, keep func(string) bool) {
	self, selfOK := c.self(keep)
	c.mu.Lock()
	defer c.mu.Unlock()
	loads := c.loads
	if c.now().Sub(c.at) >= loadPeerTTL {
		loads = c.ask(ctx, st.Node, st.Members)
		if ctx.Err() == nil { // a round its caller cut short is not kept
			c.at, c.loads = c.now(), loads
		}
	}
	var known []cluster.PeerLoad
	for i := range st.Members {
		m := &st.Members[i]
		l, ok := loads[m.ID]
		if m.ID == st.Node {
			l, ok = self, selfOK
		}
		if ok {
			m.Load = loadStatusOf(l, keep)
		}
		if m.Load != nil {
			known = append(known, l)
		}
	}
	st.Load = clusterLoadOf(known, keep)
}

// clusterLoadOf adds up the members' loads (each over its own span, about
// a minute: the rates are added, not the spans), their top senders those
// keep holds (nil: all); nil for none.
func clusterLoadOf(loads []cluster.PeerLoad, keep func(string) bool) *api.ClusterLoad {
	if len(loads) == 0 {
		return nil
	}
	out := &api.ClusterLoad{Members: len(loads), TopEnterprises: []api.EnterpriseLoad{}}
	byEnt := make(map[string]*api.EnterpriseLoad)
	for _, l := range loads {
		out.Accepted += l.Accepted
		out.AcceptedPerSecond += float64(l.Accepted) / l.Seconds
		out.CPUCores += l.CPUCores
		limit := l.TopLimit
		if limit == 0 {
			limit = topSenders // a node of the release before names its five
		}
		if len(l.TopEnterprises) >= limit {
			out.TopPartial = true
		}
		for _, e := range l.TopEnterprises {
			if keep != nil && !keep(e.Enterprise) {
				continue
			}
			sum := byEnt[e.Enterprise]
			if sum == nil {
				sum = &api.EnterpriseLoad{Enterprise: e.Enterprise}
				byEnt[e.Enterprise] = sum
			}
			sum.Accepted += e.Accepted
			sum.AcceptedPerSecond += float64(e.Accepted) / l.Seconds
		}
	}
	for _, e := range byEnt {
		out.TopEnterprises = append(out.TopEnterprises, *e)
	}
	slices.SortFunc(out.TopEnterprises, func(a, b api.EnterpriseLoad) int {
		if c := cmp.Compare(b.Accepted, a.Accepted); c != 0 {
			return c
		}
		return strings.Compare(a.Enterprise, b.Enterprise)
	})
	out.TopEnterprises = out.TopEnterprises[:min(len(out.TopEnterprises), topSenders)]
	return out
}

// ask asks every other member for its load, in parallel, each for at most
// loadPeerWait.
func (c *clusterLoads) ask(ctx context.Context, self uint16, members []api.ClusterMember) map[uint16]cluster.PeerLoad {
	var (
		mu  sync.Mutex
		out = make(map[uint16]cluster.PeerLoad, len(members))
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
			out[m.ID] = l
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

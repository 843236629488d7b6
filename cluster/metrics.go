package cluster

import (
	"maps"
	"slices"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the node's collector on reg. Values are read
// from the node when scraped. Names are slot and leadership names, a closed
// set chosen by the configuration.
func (n *Node) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(newCollector(n))
}

// collector reads the node's state at scrape time.
type collector struct {
	n                                                               *Node
	descMembers, descRequests, descLeaseLost, descSlots, descLeader *prometheus.Desc
	descDiffers                                                     *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(n *Node) *collector {
	return &collector{
		n: n,
		descMembers: prometheus.NewDesc("qxtd_cluster_members",
			"Live cluster members in this node's view.", nil, nil),
		descRequests: prometheus.NewDesc("qxtd_cluster_etcd_requests_total",
			"Requests this node made to etcd (unary calls and stream opens).", nil, nil),
		descLeaseLost: prometheus.NewDesc("qxtd_cluster_lease_lost_total",
			"Times this node's lease was lost while it was a member.", nil, nil),
		descSlots: prometheus.NewDesc("qxtd_cluster_bind_slots_held",
			"Bind slots this node holds, by semaphore name.", []string{"name"}, nil),
		descLeader: prometheus.NewDesc("qxtd_cluster_is_leader",
			"1 while this node leads the named leadership.", []string{"name"}, nil),
		descDiffers: prometheus.NewDesc("qxtd_cluster_config_differs",
			"1 while the live members publish unlike digests of the named part of their configuration (account_managers, admin_token, home_province, packages): a node not reloaded or restarted yet, or configured apart.", []string{"part"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descMembers
	ch <- c.descRequests
	ch <- c.descLeaseLost
	ch <- c.descSlots
	ch <- c.descLeader
	ch <- c.descDiffers
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	n.mu.Lock()
	members := len(n.members)
	held := make(map[string]int, len(n.held))
	for k, v := range n.held {
		held[k] = v
	}
	leading := make(map[string]bool, len(n.leading))
	for k, v := range n.leading {
		leading[k] = v
	}
	parts := map[string]bool{}
	for _, m := range n.members {
		for part := range m.Digests {
			parts[part] = false
		}
	}
	for _, part := range differing(slices.Collect(maps.Values(n.members))) {
		parts[part] = true
	}
	n.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.descMembers, prometheus.GaugeValue, float64(members))
	ch <- prometheus.MustNewConstMetric(c.descRequests, prometheus.CounterValue, float64(n.Requests()))
	ch <- prometheus.MustNewConstMetric(c.descLeaseLost, prometheus.CounterValue, float64(n.leaseLost.Load()))
	for _, name := range sortedKeys(held) {
		ch <- prometheus.MustNewConstMetric(c.descSlots, prometheus.GaugeValue, float64(held[name]), name)
	}
	for _, name := range sortedKeys(leading) {
		v := 0.0
		if leading[name] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.descLeader, prometheus.GaugeValue, v, name)
	}
	for _, part := range sortedKeys(parts) {
		v := 0.0
		if parts[part] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.descDiffers, prometheus.GaugeValue, v, part)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

func TestMetrics(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 2, DefaultTTL) // no expiry awaited: a short lease only risks expiring under a loaded run
	n := nodes[0]
	reg := prometheus.NewPedanticRegistry()
	if err := n.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "2 members", func() bool { return len(n.Members()) == 2 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := n.AcquireSlot(ctx, "carrier-a", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	leading := make(chan struct{})
	go n.Lead(ctx, "reminders", func(lctx context.Context) {
		close(leading)
		<-lctx.Done()
	})
	closed(t, leading, 3*time.Second, "not leading")
	waitFor(t, time.Second, "is_leader", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.leading["reminders"]
	})
	want := `
# HELP qxtd_cluster_bind_slots_held Bind slots this node holds, by semaphore name.
# TYPE qxtd_cluster_bind_slots_held gauge
qxtd_cluster_bind_slots_held{name="carrier-a"} 1
# HELP qxtd_cluster_is_leader 1 while this node leads the named leadership.
# TYPE qxtd_cluster_is_leader gauge
qxtd_cluster_is_leader{name="reminders"} 1
# HELP qxtd_cluster_lease_lost_total Times this node's lease was lost while it was a member.
# TYPE qxtd_cluster_lease_lost_total counter
qxtd_cluster_lease_lost_total 0
# HELP qxtd_cluster_members Live cluster members in this node's view.
# TYPE qxtd_cluster_members gauge
qxtd_cluster_members 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"qxtd_cluster_bind_slots_held", "qxtd_cluster_is_leader", "qxtd_cluster_lease_lost_total", "qxtd_cluster_members"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "qxtd_cluster_etcd_requests_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v < 1 {
				t.Fatalf("requests_total = %v", v)
			}
			return
		}
	}
	t.Fatal("no qxtd_cluster_etcd_requests_total")
}

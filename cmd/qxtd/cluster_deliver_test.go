package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// writeDeliverConfig is writeClusterConfig with one more enterprise, T4,
// which has a service number (replies come to 1065904) and the account
// esme4.
func writeDeliverConfig(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
	t.Helper()
	path := writeClusterConfig(t, id, endpoints, simAddr, binds)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "accounts:\n",
		`  - { code: T4, signature: "【回复】", package: 12, national: true, offnet: true, no_whitelist: true, tps: 100000, service_number: "1065904" }
accounts:
  - { system_id: esme4, password: secret4, enterprise: T4 }
`, 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialKind binds as systemID with the given kind; h records what comes.
func dialKind(t *testing.T, addr, systemID, password string, kind smpp.BindKind, h smpp.Handler) *smpp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: addr, SystemID: systemID, Password: password, Kind: kind, Handler: h,
		Conn: smpp.ConnOptions{Window: 64, RespTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("bind %s as %s (%v): %v", addr, systemID, kind, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// metricSum is the sum of the samples of p's /metrics whose line starts with
// prefix (a name, or a name and the start of its labels).
func metricSum(t *testing.T, p *proc, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// TestClusterDeliverAcrossNodes: an ESME's receiver bind on another node
// than the one holding its messages' receipts or its replies gets them:
// three daemons, one etcd, the simulator as carrier (one bind per node).
func TestClusterDeliverAcrossNodes(t *testing.T) {
	t.Parallel()
	const binds = 3
	nodes, sim, _ := startCluster(t, 3, binds, smpp.SimOptions{DLRDelay: 20 * time.Millisecond}, writeDeliverConfig)
	relayed := func(n *clusterNode, kind string) float64 {
		return metricSum(t, n.proc, `qxtd_cluster_deliveries_relayed_total{kind="`+kind+`",result="delivered"}`)
	}

	t.Run("receipts of node 1's messages reach the receiver on node 2", func(t *testing.T) {
		sink := newSink()
		tx := dialKind(t, nodes[0].proc.smppAddr, "esme", "secret1", smpp.BindTransmitter, nil)
		dialKind(t, nodes[1].proc.smppAddr, "esme", "secret1", smpp.BindReceiver, sink.handler())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// One at a time first, for the latency of a relayed receipt.
		const one = 10
		var lat []time.Duration
		var ids []string
		for i := range one {
			start := time.Now()
			id, err := submit(ctx, tx, fmt.Sprintf("1371%07d", i), "one")
			if err != nil {
				t.Fatal(err)
			}
			sink.waitAll(t, []string{id}, 10*time.Second)
			lat = append(lat, time.Since(start))
			ids = append(ids, id)
		}
		// Then a burst.
		const burst = 200
		for i := range burst {
			id, err := submit(ctx, tx, fmt.Sprintf("1372%07d", i), "burst")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		start := time.Now()
		sink.waitAll(t, ids, 30*time.Second)
		t.Logf("submit to receipt on node 2, one at a time: p50 %v max %v; a burst of %d all in %v after the last submit",
			pctDur(lat, 50), pctDur(lat, 100), burst, time.Since(start).Round(time.Millisecond))
		// The ESME has them before node 1 has node 2's answer.
		waitCond(t, 5*time.Second, "node 1 counting every relayed receipt", func() bool { return relayed(nodes[0], "receipt") >= one+burst })
	})

	t.Run("a reply on one node reaches the receiver bound only to another", func(t *testing.T) {
		// The reply lands on whichever node's bind the simulator picks:
		// find it, then bind esme4 to another one.
		if err := sim.InjectMO("13800000001", "1065904", "first"); err != nil {
			t.Fatal(err)
		}
		var at *clusterNode
		for _, n := range nodes {
			if metricSum(t, n.proc, `qxtd_mo_received_total{result="matched"}`) == 1 {
				at = n
			}
		}
		if at == nil {
			t.Fatal("no node stored the reply")
		}
		other := nodes[at.id%len(nodes)]
		sink := newReplySink()
		sink.dests = true
		dialKind(t, other.proc.smppAddr, "esme4", "secret4", smpp.BindReceiver, sink.handler())
		got := sink.wait(t, 1, 10*time.Second)
		if got[0] != "13800000001 → 1065904: first" {
			t.Errorf("esme4 on node %d got %q", other.id, got)
		}
		// Bound now: the next reply on that node goes at once.
		start := time.Now()
		if err := sim.InjectMO("13800000002", "1065904", "second"); err != nil {
			t.Fatal(err)
		}
		got = sink.wait(t, 2, 10*time.Second)
		t.Logf("reply stored on node %d reached esme4 on node %d (the second %v after the carrier sent it)",
			at.id, other.id, time.Since(start).Round(time.Millisecond))
		if got[1] != "13800000002 → 1065904: second" {
			t.Errorf("esme4 got %q", got)
		}
		var n float64
		for _, x := range nodes {
			n += relayed(x, "mo")
		}
		if n < 1 {
			t.Errorf("%v replies relayed between nodes, want at least 1", n)
		}
	})

	t.Run("node 2 killed: the waiting receipts reach the ESME rebound to node 3", func(t *testing.T) {
		tx := dialKind(t, nodes[0].proc.smppAddr, "esme", "secret1", smpp.BindTransmitter, nil)
		rx2 := newSink()
		dialKind(t, nodes[1].proc.smppAddr, "esme", "secret1", smpp.BindReceiver, rx2.handler())
		remote := func() float64 { return metricSum(t, nodes[0].proc, "qxtd_cluster_remote_receiver_binds") }
		waitCond(t, 5*time.Second, "node 1 seeing node 2's receiver", func() bool { return remote() >= 1 })
		if err := nodes[1].proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-nodes[1].proc.exited
		failed := func() float64 {
			return metricSum(t, nodes[0].proc, `qxtd_cluster_deliveries_relayed_total{kind="receipt",result="failed"}`)
		}
		failedBefore := failed()
		// Node 1's segments not yet final (none: the earlier receipts all
		// arrived).
		open := func() float64 {
			return metricSum(t, nodes[0].proc, `qxtd_queue_segments{state="accepted"}`) +
				metricSum(t, nodes[0].proc, `qxtd_queue_segments{state="submitted"}`)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const n = 50
		var ids []string
		for i := range n {
			id, err := submit(ctx, tx, fmt.Sprintf("1373%07d", i), "wait")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		// Every receipt is matched on node 1 (whichever node's bind it
		// came on) and waits there: the only receiver was node 2's.
		waitCond(t, 20*time.Second, "node 1 holding every receipt", func() bool { return open() == 0 })
		// Until node 2's lease expires (4 s) node 1 still sees its bind,
		// tries it and fails; then it sees none. Either way it keeps them.
		waitCond(t, 10*time.Second, "node 1 failing to reach node 2, or its lease expired", func() bool {
			return failed() > failedBefore || remote() == 0
		})
		t.Logf("node 1's relay to the dead node failed for %v receipts before the bind on node 3", failed()-failedBefore)
		rx3 := newSink()
		start := time.Now()
		dialKind(t, nodes[2].proc.smppAddr, "esme", "secret1", smpp.BindReceiver, rx3.handler())
		rx3.waitAll(t, ids, 30*time.Second)
		t.Logf("%d receipts waiting for the dead node reached node 3 %v after the rebind", n, time.Since(start).Round(time.Millisecond))
	})
}

func pctDur(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s { // insertion sort: a handful
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[(len(s)-1)*p/100].Round(100 * time.Microsecond)
}

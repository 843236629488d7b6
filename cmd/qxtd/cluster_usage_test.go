package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// usageAnswer is what the test reads of GET /v1/usage and of a line of
// GET /admin/v1/bill.
type usageAnswer struct {
	Delivered    int64    `json:"delivered"`
	Partial      bool     `json:"partial"`
	MissingNodes []uint16 `json:"missing_nodes"`
	Enterprise   string   `json:"enterprise"`
}

// TestClusterUsage: an enterprise's month is spread over the nodes' stores;
// usage and bills on any node sum them, and say which node is missing
// when one is down.
func TestClusterUsage(t *testing.T) {
	t.Parallel()
	const binds = 3
	nodes, _, etcd := startCluster(t, 3, binds, smpp.SimOptions{DLRDelay: 20 * time.Millisecond}, writeClusterConfig)

	// 3 messages through node 1, 2 through node 2, all delivered.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, count := range []int{3, 2} {
		sink := newSink()
		c := dialAs(t, nodes[i].proc.smppAddr, "esme", "secret1", sink.handler())
		var ids []string
		for k := range count {
			id, err := submit(ctx, c, fmt.Sprintf("1380%d%06d", i, k), "usage")
			if err != nil {
				t.Fatalf("submit through node %d: %v", i+1, err)
			}
			ids = append(ids, id)
		}
		if miss := sink.waitMissing(ids, 20*time.Second); len(miss) > 0 {
			t.Fatalf("no receipt through node %d for %v", i+1, miss)
		}
	}
	month := policy.MonthOf(time.Now())

	usage := func(n *clusterNode) usageAnswer {
		t.Helper()
		code, body := postJSON(t, "POST", "http://"+n.proc.httpAddr+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
		var lr struct{ Token string }
		if err := json.Unmarshal([]byte(body), &lr); code != http.StatusOK || err != nil {
			t.Fatalf("login on node %d: %d %s", n.id, code, body)
		}
		code, body = postJSON(t, "GET", "http://"+n.proc.httpAddr+"/v1/usage", lr.Token, "")
		var u usageAnswer
		if err := json.Unmarshal([]byte(body), &u); code != http.StatusOK || err != nil {
			t.Fatalf("GET /v1/usage on node %d: %d %s", n.id, code, body)
		}
		return u
	}
	bill := func(n *clusterNode) usageAnswer {
		t.Helper()
		code, body := postJSON(t, "GET", "http://"+n.proc.httpAddr+"/admin/v1/bill?"+
			url.Values{"month": {month}, "enterprise": {"T1"}}.Encode(), "test-token", "")
		var lines []usageAnswer
		if err := json.Unmarshal([]byte(body), &lines); code != http.StatusOK || err != nil || len(lines) != 1 {
			t.Fatalf("GET /admin/v1/bill on node %d: %d %s", n.id, code, body)
		}
		return lines[0]
	}

	t.Run("node 3 shows the sum of node 1's and node 2's", func(t *testing.T) {
		// A receipt that came in on another node is forwarded to the
		// owner: the last may be on its way still.
		waitCond(t, 10*time.Second, "5 delivered on node 3", func() bool { return usage(nodes[2]).Delivered == 5 })
		if u := usage(nodes[2]); u.Partial || u.MissingNodes != nil {
			t.Errorf("node 3's usage: %+v, want complete", u)
		}
		for _, n := range nodes {
			if b := bill(n); b.Delivered != 5 || b.Partial || b.Enterprise != "T1" {
				t.Errorf("bill on node %d: %+v, want 5 delivered, complete", n.id, b)
			}
		}
	})

	t.Run("the DLR export is per node, its rows say which", func(t *testing.T) {
		for i, want := range []int{3, 2, 0} {
			code, body := postJSON(t, "GET", "http://"+nodes[i].proc.httpAddr+"/admin/v1/export/dlr?"+
				url.Values{"from": {month + "-01"}, "to": {"2100-01-01"}, "enterprise": {"T1"}}.Encode(), "test-token", "")
			recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if code != http.StatusOK || err != nil || len(recs) != want+1 {
				t.Fatalf("export of node %d: %d, %v: %s", i+1, code, err, body)
			}
			col := slices.Index(recs[0], "node")
			for _, r := range recs[1:] {
				if col < 0 || r[col] != strconv.Itoa(i+1) {
					t.Errorf("node %d exports %v (node column %d)", i+1, r, col)
				}
			}
		}
	})

	t.Run("with node 2 down the answer is partial and names it", func(t *testing.T) {
		victim := nodes[1]
		if err := victim.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.proc.exited
		check := func(when string) {
			t.Helper()
			for _, n := range []*clusterNode{nodes[0], nodes[2]} {
				for what, a := range map[string]usageAnswer{"usage": usage(n), "bill": bill(n)} {
					if a.Delivered != 3 || !a.Partial || !slices.Equal(a.MissingNodes, []uint16{2}) {
						t.Errorf("%s, %s on node %d: %+v, want node 1's 3, partial, missing [2]", when, what, n.id, a)
					}
				}
			}
		}
		// Killed, it is a member until its lease expires, unreachable at
		// once; then no longer a member, but its store still registered.
		check("killed, still a member")
		cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		waitCond(t, 10*time.Second, "node 2's lease expired", func() bool {
			resp, err := cli.Get(ctx, cluster.DefaultPrefix+"members/2")
			return err == nil && len(resp.Kvs) == 0
		})
		check("no longer a member")
	})
}

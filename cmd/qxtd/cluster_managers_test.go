package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// TestClusterManagersDiffer: each node checks the account managers'
// tokens against its own file, so a token rotated on one node only is
// still taken on the others. The nodes publish a digest of the managers
// they run, and the status of any node, daemon status and
// qxtd_cluster_config_differs say when they are unlike: after node 2 alone
// is reloaded with 张经理's new token (node 1 still takes the old one,
// the hazard shown), and no longer once node 1 is reloaded alike. The
// digest shows nothing of the tokens.
func TestClusterManagersDiffer(t *testing.T) {
	t.Parallel()
	const (
		oldTok = "zhang-old-0123456789abcdef"
		newTok = "zhang-new-0123456789abcdef"
	)
	oldManagers := "account_managers: [{name: 张经理, token: " + oldTok + ", enterprises: [T1]}]"
	newManagers := "account_managers: [{name: 张经理, token: " + newTok + ", enterprises: [T1]}]"
	nodes, _, _ := startCluster(t, 2, 1, smpp.SimOptions{}, func(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
		return rewriteConfig(t, writeClusterConfig(t, id, endpoints, simAddr, binds), "admin_token: test-token }",
			"admin_token: test-token, "+oldManagers+" }")
	})
	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	type status struct {
		Cluster struct {
			Members []struct {
				ID              uint16 `json:"id"`
				AccountManagers string `json:"account_managers"`
			} `json:"members"`
			ConfigDiffers []string `json:"config_differs"`
		} `json:"cluster"`
	}
	statusOf := func(n *clusterNode) (status, string) {
		t.Helper()
		code, body := postJSON(t, http.MethodGet, base(n)+"/admin/v1/status", "test-token", "")
		var st status
		if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
			t.Fatalf("node %d status: %d %v %s", n.id, code, err, body)
		}
		return st, body
	}
	digests := func(st status) []string {
		var out []string
		for _, m := range st.Cluster.Members {
			out = append(out, m.AccountManagers)
		}
		return out
	}
	// differ waits until every node sees the members' digests differ (or
	// agree), both nodes published.
	differ := func(want bool) {
		t.Helper()
		for _, n := range nodes {
			waitCond(t, 10*time.Second, "node's view of the managers' digests", func() bool {
				st, _ := statusOf(n)
				d := digests(st)
				return len(d) == 2 && d[0] != "" && d[1] != "" && (d[0] != d[1]) == want &&
					slices.Equal(st.Cluster.ConfigDiffers, map[bool][]string{true: {"account_managers"}}[want])
			})
		}
	}
	differ(false)
	reload := func(n *clusterNode, seen int) {
		t.Helper()
		rewriteConfig(t, n.cfg, oldManagers, newManagers)
		if err := n.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		n.proc.waitLog(t, "configuration reloaded", seen, 30*time.Second)
	}
	reload(nodes[1], 0)
	differ(true)
	for what, got := range map[string]int{
		"node 1, the old token": code(t, base(nodes[0]), oldTok),
		"node 2, the old token": code(t, base(nodes[1]), oldTok),
		"node 2, the new token": code(t, base(nodes[1]), newTok),
	} {
		want := map[string]int{"node 1, the old token": 200, "node 2, the old token": 401, "node 2, the new token": 200}[what]
		if got != want {
			t.Errorf("node 2 reloaded, node 1 not: %s answers %d, want %d", what, got, want)
		}
	}
	_, body := statusOf(nodes[0])
	for _, tok := range []string{oldTok, newTok, "zhang-"} {
		if strings.Contains(body, tok) {
			t.Errorf("the status shows %q of a token:\n%s", tok, body)
		}
	}
	if v := metricSum(t, nodes[0].proc, `qxtd_cluster_config_differs{part="account_managers"}`); v != 1 {
		t.Errorf("node 1's qxtd_cluster_config_differs{part=account_managers} = %v, want 1", v)
	}
	var stdout, stderr bytes.Buffer
	if c := runIO(strings.NewReader(""), []string{"admin", "--api", base(nodes[0]), "--token", "test-token", "daemon", "status"}, &stdout, &stderr); c != 0 ||
		!regexp.MustCompile(`cluster config differs +account_managers unlike between the nodes \(node 1 [0-9a-f]{16}, node 2 [0-9a-f]{16}\)`).MatchString(stdout.String()) {
		t.Errorf("daemon status: exit %d, want the line cluster config differs:\n%s%s", c, stdout.String(), stderr.String())
	}

	reload(nodes[0], 0)
	differ(false)
	if got := code(t, base(nodes[0]), oldTok); got != http.StatusUnauthorized {
		t.Errorf("both reloaded: node 1 takes the old token (%d)", got)
	}
	if v := metricSum(t, nodes[0].proc, `qxtd_cluster_config_differs{part="account_managers"}`); v != 0 {
		t.Errorf("both reloaded: node 1's qxtd_cluster_config_differs{part=account_managers} = %v, want 0", v)
	}
}

// code is the status of GET /admin/v1/session on base with tok.
func code(t *testing.T, base, tok string) int {
	t.Helper()
	c, _ := postJSON(t, http.MethodGet, base+"/admin/v1/session", tok, "")
	return c
}

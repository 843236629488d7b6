package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/smpp"
)

// TestClusterManagersDiffer: each node checks the account managers'
// tokens against its own file, so a token rotated on one node only is
// still taken on the others. The nodes publish a digest of the managers
// they run, and the status of any node, daemon status and
// qxtd_cluster_config_differs say when they are unlike: after node 2 alone
// is reloaded with 张经理's new token (node 1 still takes the old one,
// the hazard shown), and no longer once node 1 is reloaded alike. The
// digest shows nothing of the tokens. Node 2 was started with another
// home province: that differs throughout (a restart changes it); the
// package tables agree.
func TestClusterManagersDiffer(t *testing.T) {
	t.Parallel()
	const (
		oldTok = "zhang-old-0123456789abcdef"
		newTok = "zhang-new-0123456789abcdef"
	)
	oldManagers := "account_managers: [{name: 张经理, token: " + oldTok + ", enterprises: [T1]}]"
	newManagers := "account_managers: [{name: 张经理, token: " + newTok + ", enterprises: [T1]}]"
	nodes, _, _ := startCluster(t, 2, 1, smpp.SimOptions{}, func(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
		path := rewriteConfig(t, writeClusterConfig(t, id, endpoints, simAddr, binds), "admin_token: test-token }",
			"admin_token: test-token, "+oldManagers+" }")
		if id == 2 { // started with another home province: unlike from the start
			path = rewriteConfig(t, path, "policy: { bcrypt_cost: 4,", "policy: { home_province: 浙江, bcrypt_cost: 4,")
		}
		return path
	})
	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	type status struct {
		Cluster struct {
			Members []struct {
				ID            uint16            `json:"id"`
				ConfigDigests map[string]string `json:"config_digests"`
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
	digests := func(st status, part string) []string {
		var out []string
		for _, m := range st.Cluster.Members {
			out = append(out, m.ConfigDigests[part])
		}
		return out
	}
	// differ waits until every node sees the members' managers differ (or
	// agree), both nodes published; the home province differs throughout,
	// the package table never.
	differ := func(want bool) {
		t.Helper()
		wantParts := []string{"home_province"}
		if want {
			wantParts = []string{"account_managers", "home_province"}
		}
		for _, n := range nodes {
			waitCond(t, 10*time.Second, "node's view of the managers' digests", func() bool {
				st, _ := statusOf(n)
				d, p := digests(st, "account_managers"), digests(st, "packages")
				return len(d) == 2 && d[0] != "" && d[1] != "" && (d[0] != d[1]) == want &&
					p[0] != "" && p[0] == p[1] && slices.Equal(st.Cluster.ConfigDiffers, wantParts)
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
	// logged waits for n's log to say the nodes run parts unlike.
	logged := func(n *clusterNode, parts ...string) {
		t.Helper()
		const msg = "cluster: the nodes run parts of their configuration unlike; give every node the same file, then reload (account_managers) or restart (the others) each"
		for skip := 0; ; skip++ {
			rec := n.proc.waitLog(t, msg, skip, 10*time.Second)
			if slices.Equal(strs(rec["parts"]), parts) {
				if d, _ := rec["node_2"].(string); !strings.Contains(d, "home_province=浙江省") {
					t.Errorf("node %d's log of the parts unlike: node 2's %q, want its home province", n.id, d)
				}
				return
			}
		}
	}
	logged(nodes[0], "home_province")
	reload(nodes[1], 0)
	differ(true)
	logged(nodes[0], "account_managers", "home_province")
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
		!regexp.MustCompile(`cluster config differs +account_managers unlike between the nodes \(node 1 [0-9a-f]{16}, node 2 [0-9a-f]{16}\): reload every node`).MatchString(stdout.String()) ||
		!regexp.MustCompile(`cluster config differs +home_province unlike between the nodes \(node 1 广东省, node 2 浙江省\): restart every node`).MatchString(stdout.String()) {
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
	if v := metricSum(t, nodes[0].proc, `qxtd_cluster_config_differs{part="home_province"}`); v != 1 {
		t.Errorf("node 1's qxtd_cluster_config_differs{part=home_province} = %v, want 1", v)
	}
}

// code is the status of GET /admin/v1/session on base with tok.
func code(t *testing.T, base, tok string) int {
	t.Helper()
	c, _ := postJSON(t, http.MethodGet, base+"/admin/v1/session", tok, "")
	return c
}

// TestConfigDigests: the digests the nodes compare are alike for files
// alike in what runs, whatever their order or spelling: the managers in
// another order (their portfolios too), the home province as 广东 or
// 广东省, no package table or the FAQ's written out. A token, a portfolio,
// read_only, the admin token, the province or a price changed each
// changes its digest.
func TestConfigDigests(t *testing.T) {
	base := func() *Config {
		c := &Config{}
		c.Cluster.Secret = "cluster-secret-0123456789"
		c.HTTP.AdminToken = "admin-0123456789abcdef"
		c.Policy.HomeProvince = "广东"
		c.HTTP.AccountManagers = []AccountManagerConfig{
			{Name: "张经理", Token: "zhang-0123456789abcdef", Enterprises: []string{"T1", "T2"}},
			{Name: "李经理", Token: "li-0123456789abcdef0"},
		}
		return c
	}
	ref := configDigests(base())
	if ref[digestHome] != "广东省" {
		t.Errorf("home province digest %q, want its name 广东省", ref[digestHome])
	}
	for _, part := range []string{digestManagers, digestAdmin, digestPackages} {
		if len(ref[part]) != 16 {
			t.Fatalf("%s digest %q, want 16 hex digits", part, ref[part])
		}
	}
	same := base()
	same.Policy.HomeProvince = "广东省"
	same.HTTP.AccountManagers[0], same.HTTP.AccountManagers[1] = same.HTTP.AccountManagers[1], same.HTTP.AccountManagers[0]
	same.HTTP.AccountManagers[1].Enterprises = []string{"T2", "T1"}
	for _, p := range policy.DefaultPackages() {
		same.Policy.Packages = append(same.Policy.Packages, PackageConfig{ID: p.ID, FeeYuan: yuanOf(p.FeeFen), Included: p.Included, OverageYuan: yuanOf(p.OverageFen)})
	}
	if got := configDigests(same); !maps.Equal(got, ref) {
		t.Errorf("alike files: %v, want %v", got, ref)
	}
	// Keyed with the cluster's secret: another key, every digest another.
	other := base()
	other.Cluster.Secret += "x"
	for part, d := range configDigests(other) {
		if d == ref[part] && part != digestHome {
			t.Errorf("%s: the same digest under another cluster.secret", part)
		}
	}
	for what, change := range map[string]func(*Config) string{
		"a token":         func(c *Config) string { c.HTTP.AccountManagers[0].Token += "x"; return digestManagers },
		"a portfolio":     func(c *Config) string { c.HTTP.AccountManagers[1].Enterprises = []string{"T3"}; return digestManagers },
		"read_only":       func(c *Config) string { c.HTTP.AccountManagers[1].ReadOnly = true; return digestManagers },
		"the province":    func(c *Config) string { c.Policy.HomeProvince = "浙江"; return digestHome },
		"the admin token": func(c *Config) string { c.HTTP.AdminToken += "x"; return digestAdmin },
		"a price": func(c *Config) string {
			c.Policy.Packages = []PackageConfig{{ID: 1, FeeYuan: "20", Included: 220, OverageYuan: "0.11"}}
			return digestPackages
		},
	} {
		c := base()
		part := change(c)
		got := configDigests(c)
		for _, p := range []string{digestManagers, digestAdmin, digestHome, digestPackages} {
			if changed := got[p] != ref[p]; changed != (p == part) {
				t.Errorf("%s changed: %s digest changed %v", what, p, changed)
			}
		}
	}
}

// yuanOf writes fen as policy.ParseYuan reads it.
func yuanOf(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

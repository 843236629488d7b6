package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"

	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// clusterNode is one qxtd process of a test cluster.
type clusterNode struct {
	id   int
	cfg  string // its configuration file
	proc *proc
}

// writeClusterConfig is node id's configuration: the same enterprises and
// accounts on every node (seeding creates what the shared data lacks),
// its own store, one etcd.
func writeClusterConfig(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`smpp: { listen: 127.0.0.1:0 }
http: { listen: 127.0.0.1:0, admin_token: test-token }
store: { path: %s }
simulator: { enabled: false }
upstreams:
  - name: sim
    addr: %s
    system_id: up
    password: uppw
    binds: %d
    window: 50
    resp_timeout: 2s
    reconnect_max: 200ms
delivery: { retry_min: 100ms, retry_max: 1s, dlr_retry: 500ms }
policy: { bcrypt_cost: 4, default_tps: 100000 }
enterprises:
  - { code: T1, signature: "【测试】", package: 12, national: true, offnet: true, no_whitelist: true, tps: 100000 }
  - { code: T2, signature: "【白名单】", package: 12, national: true, offnet: true, tps: 100000 }
  - { code: T3, signature: "【配额】", package: 1, no_overage: true, national: true, offnet: true, no_whitelist: true, tps: 100000 }
accounts:
  - { system_id: esme, password: secret1, enterprise: T1 }
  - { system_id: esme2, password: secret2, enterprise: T2 }
  - { system_id: esme3, password: secret3, enterprise: T3 }
cluster:
  etcd_endpoints: [%s]
  node_id: %d
  peer_listen: 127.0.0.1:0
  secret: cluster-test-secret-0123456789
  lease_ttl: 4s # a node steps down after ttl/2 without an answer: 1 s was too tight for a loaded CI machine running etcd under -race
  quota_block: 20
`, filepath.Join(dir, "qxtd.db"), simAddr, binds, strings.Join(endpoints, ", "), id)
	path := filepath.Join(dir, "qxtd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dialAs(t *testing.T, addr, systemID, password string, h smpp.Handler) *smpp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smpp.Dial(ctx, smpp.ClientOptions{
		Addr: addr, SystemID: systemID, Password: password, Kind: smpp.BindTransceiver, Handler: h,
		Conn: smpp.ConnOptions{Window: 64, RespTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatalf("bind %s as %s: %v", addr, systemID, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// submitStatus is submit that returns the command_status of a refusal.
func submitStatus(ctx context.Context, c *smpp.Conn, dst, text string) (string, pdu.Status, error) {
	id, err := submit(ctx, c, dst, text)
	if st, ok := err.(pdu.Status); ok {
		return "", st, nil
	}
	return id, 0, err
}

// TestClusterThreeNodes runs three qxtd processes on one etcd and one
// carrier (the simulator, which caps binds as carriers do and returns
// receipts round-robin over every bind of the account, so most come in on
// another node than the one that sent the message).
func TestClusterThreeNodes(t *testing.T) {
	t.Parallel()
	const binds = 2 // fewer than the nodes: one node relays through the others (gateway/submitrelay.go)
	nodes, sim, _ := startCluster(t, 3, binds, smpp.SimOptions{DLRDelay: 50 * time.Millisecond}, writeClusterConfig)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				if resp, err := http.Get("http://" + n.proc.httpAddr + "/metrics"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					for _, l := range strings.Split(string(b), "\n") {
						if strings.Contains(l, "orphan") || strings.Contains(l, "forwarded") || strings.Contains(l, "qxtd_dlrs") {
							t.Logf("node %d: %s", n.id, l)
						}
					}
				}
			}
		}
	})

	t.Run("every node's status shows the three members and one reminders leader", func(t *testing.T) {
		leaders := 0
		for _, n := range nodes {
			var st struct {
				Cluster *struct {
					Node    int `json:"node"`
					Members []struct {
						ID      int    `json:"id"`
						PeerURL string `json:"peer_url"`
					} `json:"members"`
					Leads []string `json:"leads"`
				} `json:"cluster"`
			}
			waitCond(t, 5*time.Second, "three members in the status", func() bool {
				_, body := postJSON(t, "GET", "http://"+n.proc.httpAddr+"/admin/v1/status", "test-token", "")
				return json.Unmarshal([]byte(body), &st) == nil && st.Cluster != nil && len(st.Cluster.Members) == 3
			})
			if st.Cluster.Node != n.id {
				t.Errorf("node %d's status says node %d", n.id, st.Cluster.Node)
			}
			for _, l := range st.Cluster.Leads {
				if l == "reminders" {
					leaders++
				}
			}
		}
		if leaders != 1 {
			t.Errorf("%d nodes lead the reminders, want 1", leaders)
		}
	})

	t.Run("login on one node works on another", func(t *testing.T) {
		code, body := postJSON(t, "POST", "http://"+nodes[0].proc.httpAddr+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
		if code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		var lr struct{ Token string }
		if err := json.Unmarshal([]byte(body), &lr); err != nil || lr.Token == "" {
			t.Fatalf("login answer %s: %v", body, err)
		}
		waitCond(t, time.Second, "the session known on node 2", func() bool {
			code, _ := postJSON(t, "GET", "http://"+nodes[1].proc.httpAddr+"/v1/me", lr.Token, "")
			return code == http.StatusOK
		})
		if code, body := postJSON(t, "POST", "http://"+nodes[2].proc.httpAddr+"/v1/logout", lr.Token, ""); code >= 300 {
			t.Fatalf("logout on node 3: %d %s", code, body)
		}
		waitCond(t, time.Second, "the session ended on node 1", func() bool {
			code, _ := postJSON(t, "GET", "http://"+nodes[0].proc.httpAddr+"/v1/me", lr.Token, "")
			return code == http.StatusUnauthorized
		})
	})

	t.Run("whitelist approved on node 1 is enforced on node 3 within 1s", func(t *testing.T) {
		c := dialAs(t, nodes[2].proc.smppAddr, "esme2", "secret2", newSink().handler())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		const num = "13800138077"
		if _, st, err := submitStatus(ctx, c, num, "before"); err != nil || st == 0 {
			t.Fatalf("before the approval: status %v err %v, want a refusal", st, err)
		}
		if code, body := postJSON(t, "POST", "http://"+nodes[0].proc.httpAddr+"/admin/v1/enterprises/T2/whitelist", "test-token",
			`{"numbers":["`+num+`"]}`); code >= 300 {
			t.Fatalf("operator adds %s on node 1: %d %s", num, code, body)
		}
		start := time.Now()
		waitCond(t, time.Second, "node 3 accepting the approved number", func() bool {
			_, st, err := submitStatus(ctx, c, num, "after")
			return err == nil && st == 0
		})
		t.Logf("approval on node 1 enforced on node 3 after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("no_overage quota hammered from all three is never exceeded", func(t *testing.T) {
		const included = 220 // package 1
		var mu sync.Mutex
		accepted := 0
		var wg sync.WaitGroup
		for _, n := range nodes {
			c := dialAs(t, n.proc.smppAddr, "esme3", "secret3", newSink().handler())
			for w := range 4 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					for i := range 40 {
						dst := fmt.Sprintf("1390%d%d%05d", n.id, w, i)
						if _, st, err := submitStatus(ctx, c, dst, "q"); err == nil && st == 0 {
							mu.Lock()
							accepted++
							mu.Unlock()
						}
					}
				})
			}
		}
		wg.Wait()
		t.Logf("accepted %d of 480 against %d included", accepted, included)
		if accepted > included {
			t.Fatalf("accepted %d segments, more than the %d of a no_overage package", accepted, included)
		}
		if accepted < included*9/10 {
			t.Errorf("accepted only %d of %d included: blocks stranded on nodes", accepted, included)
		}
		// Over HTTP the refusal says the month's limit and what the
		// message needs; not what is left, which a node does not know
		// beyond its own claim.
		base := "http://" + nodes[0].proc.httpAddr
		code, body := postJSON(t, http.MethodPost, base+"/v1/messages", issueAPIKey(t, base, "esme3"), `{"to":["13900300001"],"text":"q"}`)
		if code != http.StatusOK || !strings.Contains(body, `"quota_exceeded"`) || !strings.Contains(body, "本月可发 220 条，剩余不足本条所需的 1 条") {
			t.Errorf("a send past the quota over HTTP: %d %s", code, body)
		}
	})

	t.Run("load through all three with a kill -9: receipts all reach the ESMEs, nothing acknowledged is lost", func(t *testing.T) {
		type sent struct {
			node int
			dst  string
		}
		var mu sync.Mutex
		acked := map[string]sent{}
		// One ESME bound to every node: a receipt may reach it on any of
		// its binds (a node without a bind of its own, as node 2 while it
		// restarts, relays its receipts to another's: cluster_deliver.go).
		sinks := make([]*receiptSink, len(nodes))
		esme := newSink()
		conns := make([]*smpp.Conn, len(nodes))
		for i, n := range nodes {
			sinks[i] = esme
			conns[i] = dialAs(t, n.proc.smppAddr, "esme", "secret1", sinks[i].handler())
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const per = 300
		var wg sync.WaitGroup
		halfway := make(chan struct{})
		var once sync.Once
		for i := range nodes {
			for w := range 4 {
				wg.Go(func() {
					for k := 0; k < per/4 && ctx.Err() == nil; k++ {
						dst := fmt.Sprintf("1370%d%d%05d", i, w, k)
						id, err := submit(ctx, conns[i], dst, "load "+dst)
						if err != nil {
							return // node 2's connection dies with it
						}
						mu.Lock()
						acked[id] = sent{i, dst}
						if len(acked) >= per*3/2 {
							once.Do(func() { close(halfway) })
						}
						mu.Unlock()
					}
				})
			}
		}
		select {
		case <-halfway:
		case <-time.After(60 * time.Second):
			t.Fatal("load did not reach halfway")
		}
		victim := nodes[1]
		if err := victim.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.proc.exited
		wg.Wait()
		victim.proc = startDaemon(t, victim.cfg)
		// The same sink: receipts it took before the kill were acknowledged.
		conns[1] = dialAs(t, victim.proc.smppAddr, "esme", "secret1", sinks[1].handler())

		byNode := make([][]string, len(nodes))
		mu.Lock()
		for id, s := range acked {
			byNode[s.node] = append(byNode[s.node], id)
		}
		mu.Unlock()
		got := map[string]int{}
		for i, ids := range byNode {
			if miss := sinks[i].waitMissing(ids, 60*time.Second); len(miss) > 0 {
				for _, m := range sim.Received() {
					got[m.Dest]++
				}
				_, body := postJSON(t, "POST", "http://"+nodes[i].proc.httpAddr+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
				var lr struct{ Token string }
				_ = json.Unmarshal([]byte(body), &lr)
				for _, id := range miss {
					_, m := postJSON(t, "GET", "http://"+nodes[i].proc.httpAddr+"/v1/messages/"+id, lr.Token, "")
					t.Errorf("no receipt for %s (node %d, to %s, at the carrier %d times): %s", id, i+1, acked[id].dst, got[acked[id].dst], m)
				}
				t.FailNow()
			}
		}
		for _, m := range sim.Received() {
			got[m.Dest]++
		}
		for id, s := range acked {
			if got[s.dst] == 0 {
				t.Errorf("message %s to %s acknowledged by node %d never reached the carrier", id, s.dst, s.node+1)
			}
		}
		if _, peak := sim.Binds("up"); peak > binds {
			t.Errorf("the carrier saw %d binds at once; the cluster holds %d", peak, binds)
		}
		var via float64
		for _, n := range nodes {
			via += metricSum(t, n.proc, "qxtd_cluster_segments_relayed_via_peer_total")
		}
		// With 2 binds for 3 nodes, one node holds none at any time.
		if via == 0 {
			t.Error("no segment was relayed through another node's bind")
		}
		t.Logf("%d messages acknowledged through 3 nodes (node 2 killed halfway), every receipt delivered; %v segments relayed through another node's bind", len(acked), via)
	})
}

// startCluster runs n qxtd nodes on one embedded etcd, their one upstream
// the simulator (sim options as given, capping binds at binds as a carrier
// does), each node's configuration written by write (writeClusterConfig
// or a variant), and waits until every bind is up. A failed test logs
// every node's output.
//
// Every TestCluster test runs in parallel with the others (t.Parallel):
// each has its own etcd, simulator and daemons on ports of their own, and
// spends most of its time waiting on them (leases, binds, receipts), so
// two at a time shorten the package (254 s to 214 s of wall time, alone
// under -race).
func startCluster(t *testing.T, n, binds int, simOpt smpp.SimOptions,
	write func(t *testing.T, id int, endpoints []string, simAddr string, binds int) string) ([]*clusterNode, *smpp.Simulator, *clustertest.Etcd) {
	t.Helper()
	etcd := clustertest.Start(t)
	simOpt.MaxBinds = binds
	sim, simAddr := startSim(t, simOpt)
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		c := &clusterNode{id: i + 1, cfg: write(t, i+1, etcd.Endpoints, simAddr, binds)}
		c.proc = startDaemon(t, c.cfg)
		nodes[i] = c
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range nodes {
				t.Logf("node %d log:\n%s", c.id, c.proc.log())
			}
		}
	})
	waitCond(t, 15*time.Second, "every bind of the upstream up", func() bool {
		now, _ := sim.Binds("up")
		return now == binds
	})
	return nodes, sim, etcd
}

// waitCond polls cond until it holds or d passes: for state that changes
// in another process and has no event to wait on.
func waitCond(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not yet %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMissing waits up to d for a receipt of every id and returns the ids
// still without one.
func (s *receiptSink) waitMissing(ids []string, d time.Duration) []string {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		miss := s.missing(ids)
		if len(miss) == 0 {
			return nil
		}
		select {
		case <-s.wake:
		case <-deadline.C:
			return miss
		}
	}
}

// TestClusterReminderOnce: a reminder created on one node is sent once by
// the cluster — by the node that leads the reminders — however many nodes
// share it.
func TestClusterReminderOnce(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 3, smpp.SimOptions{DLRDelay: 20 * time.Millisecond}, writeClusterConfig)
	code, body := postJSON(t, "POST", "http://"+nodes[1].proc.httpAddr+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
	if code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	var lr struct{ Token string }
	if err := json.Unmarshal([]byte(body), &lr); err != nil {
		t.Fatal(err)
	}
	const to = "13800138066"
	start := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	code, body = postJSON(t, "POST", "http://"+nodes[1].proc.httpAddr+"/v1/reminders", lr.Token,
		`{"text":"开会提醒","to":["`+to+`"],"freq":"once","start":"`+start+`"}`)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("create reminder on node 2: %d %s", code, body)
	}
	waitReceived(t, sim, to, 30*time.Second)
	// The outbox, merged over every node's store (any node answers for
	// all): the reminder's message exists once in the cluster (a second
	// scheduler would have stored its own).
	total := 0
	for _, n := range nodes[:1] {
		_, body := postJSON(t, "GET", "http://"+n.proc.httpAddr+"/v1/messages", lr.Token, "")
		var page struct {
			Messages []struct {
				To string `json:"to"`
			} `json:"messages"`
			Partial bool `json:"partial"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || page.Partial {
			t.Fatalf("node %d outbox: %v: %s", n.id, err, body)
		}
		for _, m := range page.Messages {
			if m.To == to {
				total++
			}
		}
	}
	if total != 1 {
		t.Fatalf("the reminder's message is in the cluster's outbox %d times, want 1", total)
	}
	got := 0
	for _, m := range sim.Received() {
		if m.Dest == to {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("the carrier got the reminder %d times, want 1", got)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/smpp"
)

// fixedLoad is a PeerBackend that answers a fixed load, counting the
// questions.
type fixedLoad struct {
	cluster.PeerBackend
	load  cluster.PeerLoad
	asked *atomic.Int32
}

func (b fixedLoad) Load() (cluster.PeerLoad, bool) { b.asked.Add(1); return b.load, true }

// TestClusterLoadsBounded: a status fills each member's load, its own
// from this node and the others' from their peer listeners; a member that
// hangs is left without one after loadPeerWait, not the peer timeout; the
// answers are kept loadPeerTTL, so polling asks the others once a second
// at most.
func TestClusterLoadsBounded(t *testing.T) {
	t.Parallel()
	const secret = "cluster-test-secret-0123456789"
	var asked atomic.Int32
	us := 58.2
	up := httptest.NewServer(cluster.PeerHandler([]byte(secret), fixedLoad{load: cluster.PeerLoad{Seconds: 60, Accepted: 6000,
		CPUCores: 0.35, CPUMicrosPerMessage: &us, CommitsPerSecond: 300, WrittenBytesPerSecond: 1 << 20,
		TopEnterprises: []cluster.PeerEnterpriseLoad{{Enterprise: "E7", Accepted: 4500}, {Enterprise: "E2", Accepted: 1500}},
		Upstreams: []cluster.PeerUpstreamLoad{{Name: "cmcc", Relayed: 5400, Throttled: 30, Failed: 2, SubmitMeanMS: &us, TPS: 100,
			PacePerSecond: &us, InFlight: 50, Slots: 100}}}, asked: &asked}, nil))
	t.Cleanup(up.Close)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a node stopped (SIGSTOP) or a network that drops
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hung.Close() })

	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	self := cluster.PeerLoad{Seconds: 60, Accepted: 10, TopEnterprises: []cluster.PeerEnterpriseLoad{{Enterprise: "E2", Accepted: 10}}, TopLimit: peerTopSenders}
	c := &clusterLoads{client: cluster.NewPeerClient(1, []byte(secret), &http.Client{Timeout: 10 * time.Second}),
		self: func(func(string) bool) (cluster.PeerLoad, bool) { return self, true }, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	members := func() *api.ClusterStatus {
		return &api.ClusterStatus{Node: 1, Members: []api.ClusterMember{{ID: 1}, {ID: 2, PeerURL: up.URL}, {ID: 3, PeerURL: hung.URL}}}
	}
	st := members()
	start := time.Now()
	c.fill(t.Context(), st, nil)
	if took := time.Since(start); took < loadPeerWait || took > loadPeerWait+3*time.Second { // slack for a loaded CI machine; the peer timeout would be 10 s
		t.Errorf("a status beside a hung member took %v, want about %v", took, loadPeerWait)
	}
	want := &api.LoadStatus{Seconds: 60, Accepted: 6000, AcceptedPerSecond: 100, CPUCores: 0.35, CPUMicrosPerMessage: &us,
		CommitsPerSecond: 300, WrittenBytesPerSecond: 1 << 20,
		TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E7", Accepted: 4500, AcceptedPerSecond: 75}, {Enterprise: "E2", Accepted: 1500, AcceptedPerSecond: 25}},
		Upstreams: []api.UpstreamLoad{{Name: "cmcc", Relayed: 5400, RelayedPerSecond: 90, Throttled: 30, Failed: 2, SubmitMeanMS: &us, TPS: 100,
			PacePerSecond: &us, InFlight: 50, Slots: 100}}}
	if got, _ := json.Marshal(st.Members[1].Load); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("node 2's load:\n got %s\nwant %s", got, must(json.Marshal(want)))
	}
	if l := st.Members[0].Load; l == nil || l.Accepted != 10 || st.Members[2].Load != nil {
		t.Errorf("this node's load %+v (want its own), the hung one's %+v (want none)", l, st.Members[2].Load)
	}
	// The cluster's: the two that answered added up, E2 from both (node
	// 2 answers as the release before did, without top_limit, and names
	// fewer than its five: complete).
	wantCluster := &api.ClusterLoad{Members: 2, Accepted: 6010, AcceptedPerSecond: 6010.0 / 60, CPUCores: 0.35,
		TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E7", Accepted: 4500, AcceptedPerSecond: 75}, {Enterprise: "E2", Accepted: 1510, AcceptedPerSecond: 1510.0 / 60}}}
	if got, want := must(json.Marshal(st.Load)), must(json.Marshal(wantCluster)); string(got) != string(want) {
		t.Errorf("the cluster's load:\n got %s\nwant %s", got, want)
	}

	now = now.Add(loadPeerTTL / 2)
	st = members()
	start = time.Now()
	c.fill(t.Context(), st, nil)
	if took := time.Since(start); took > loadPeerWait/2 || asked.Load() != 1 || st.Members[1].Load == nil {
		t.Errorf("within %v of the last round: took %v, node 2 asked %d times, its load %+v; want the kept answers",
			loadPeerTTL, took, asked.Load(), st.Members[1].Load)
	}
	now = now.Add(loadPeerTTL)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	c.fill(ctx, members(), nil) // its caller gives up: the round is not kept
	if asked.Load() != 2 {
		t.Errorf("after %v: node 2 asked %d times, want 2", loadPeerTTL, asked.Load())
	}
	c.fill(t.Context(), members(), nil)
	if asked.Load() != 3 {
		t.Errorf("after a round cut short: node 2 asked %d times, want 3 (asked again)", asked.Load())
	}
}

// TestClusterLoadOf: the cluster's top senders are added up from every
// member's list, each member's rate over its own span; the counts are
// marked partial when a member's list may have left some out (as many as
// it names at most: 50, or 5 from a node of the release before).
func TestClusterLoadOf(t *testing.T) {
	t.Parallel()
	if clusterLoadOf(nil, nil) != nil {
		t.Error("no member's load known: want none for the cluster")
	}
	top := func(pairs ...any) []cluster.PeerEnterpriseLoad {
		out := []cluster.PeerEnterpriseLoad{}
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, cluster.PeerEnterpriseLoad{Enterprise: pairs[i].(string), Accepted: uint64(pairs[i+1].(int))})
		}
		return out
	}
	// Each node's own first is another enterprise; together E3, which
	// is second on both, sends the most.
	a := cluster.PeerLoad{Seconds: 60, Accepted: 1000, CPUCores: 0.5, TopLimit: peerTopSenders, TopEnterprises: top("E1", 500, "E3", 400, "E9", 100)}
	b := cluster.PeerLoad{Seconds: 30, Accepted: 900, CPUCores: 0.25, TopLimit: peerTopSenders, TopEnterprises: top("E2", 450, "E3", 300, "E8", 75, "E7", 75)}
	got := clusterLoadOf([]cluster.PeerLoad{a, b}, nil)
	want := &api.ClusterLoad{Members: 2, Accepted: 1900, AcceptedPerSecond: 1000.0/60 + 900.0/30, CPUCores: 0.75,
		TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E3", Accepted: 700, AcceptedPerSecond: 400.0/60 + 300.0/30},
			{Enterprise: "E1", Accepted: 500, AcceptedPerSecond: 500.0 / 60}, {Enterprise: "E2", Accepted: 450, AcceptedPerSecond: 15},
			{Enterprise: "E9", Accepted: 100, AcceptedPerSecond: 100.0 / 60}, {Enterprise: "E7", Accepted: 75, AcceptedPerSecond: 2.5}}}
	if math.Abs(got.AcceptedPerSecond-want.AcceptedPerSecond) < 1e-9 {
		want.AcceptedPerSecond = got.AcceptedPerSecond // added in another order
	}
	if g, w := must(json.Marshal(got)), must(json.Marshal(want)); string(g) != string(w) {
		t.Errorf("two members:\n got %s\nwant %s", g, w)
	}

	// An account manager serving E7, E8 and E9: its own, added up from
	// what the members named, however low they rank among all.
	served := func(e string) bool { return e == "E7" || e == "E8" || e == "E9" }
	got = clusterLoadOf([]cluster.PeerLoad{a, b}, served)
	want.TopEnterprises = []api.EnterpriseLoad{{Enterprise: "E9", Accepted: 100, AcceptedPerSecond: 100.0 / 60},
		{Enterprise: "E7", Accepted: 75, AcceptedPerSecond: 2.5}, {Enterprise: "E8", Accepted: 75, AcceptedPerSecond: 2.5}}
	if g, w := must(json.Marshal(got.TopEnterprises)), must(json.Marshal(want.TopEnterprises)); string(g) != string(w) || got.Accepted != 1900 {
		t.Errorf("a portfolio's:\n got %s (of %d)\nwant %s", g, got.Accepted, w)
	}
	// A member's own list: the portfolio's among the 50 it named, not
	// the portfolio's among its first five.
	many := cluster.PeerLoad{Seconds: 60, Accepted: 600, TopLimit: peerTopSenders}
	for i := range 6 {
		many.TopEnterprises = append(many.TopEnterprises, cluster.PeerEnterpriseLoad{Enterprise: fmt.Sprintf("E%d", i+4), Accepted: uint64(100 - i)})
	}
	var names []string
	for _, e := range loadStatusOf(many, served).TopEnterprises {
		names = append(names, e.Enterprise)
	}
	if !slices.Equal(names, []string{"E7", "E8", "E9"}) {
		t.Errorf("a member's top senders of a portfolio: %v, want E7 E8 E9", names)
	}
	if n := len(loadStatusOf(many, nil).TopEnterprises); n != topSenders {
		t.Errorf("a member's top senders: %d, want %d", n, topSenders)
	}

	full := a
	full.TopEnterprises = nil
	for i := range peerTopSenders {
		full.TopEnterprises = append(full.TopEnterprises, cluster.PeerEnterpriseLoad{Enterprise: fmt.Sprintf("F%02d", i), Accepted: 10})
	}
	if !clusterLoadOf([]cluster.PeerLoad{full, b}, nil).TopPartial {
		t.Errorf("a member that named %d: the counts not marked partial", peerTopSenders)
	}
	old := b
	old.TopLimit = 0 // the release before: five at most
	if clusterLoadOf([]cluster.PeerLoad{a, old}, nil).TopPartial {
		t.Error("a member of the release before that named four: marked partial")
	}
	old.TopEnterprises = append(old.TopEnterprises, cluster.PeerEnterpriseLoad{Enterprise: "E6", Accepted: 1})
	if !clusterLoadOf([]cluster.PeerLoad{a, old}, nil).TopPartial {
		t.Error("a member of the release before that named five: not marked partial")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestClusterLoads: two real nodes; each one's status shows both
// members' last minute, with the messages each accepted and their
// enterprise.
func TestClusterLoads(t *testing.T) {
	t.Parallel()
	nodes, _, _ := startCluster(t, 2, 2, smpp.SimOptions{}, writeClusterConfig)
	send := func(n *clusterNode, user, password string, count int) {
		base := "http://" + n.proc.httpAddr
		code, body := postJSON(t, "POST", base+"/v1/login", "", `{"system_id":"`+user+`","password":"`+password+`"}`)
		var login struct{ Token string }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &login) != nil {
			t.Fatalf("login on node %d: %d %s", n.id, code, body)
		}
		to := `"13800138000"`
		for i := 1; i < count; i++ {
			to += `,"1380013800` + string(rune('0'+i)) + `"`
		}
		if code, body := postJSON(t, "POST", base+"/v1/messages", login.Token, `{"to":[`+to+`],"text":"负载"}`); code != http.StatusOK {
			t.Fatalf("send on node %d: %d %s", n.id, code, body)
		}
	}
	// T1 sends the most on node 1 (3), T3 on node 2 (2 against T1's 1),
	// and T1 in the cluster (4 against 2).
	send(nodes[0], "esme", "secret1", 3)
	send(nodes[1], "esme", "secret1", 1)
	send(nodes[1], "esme3", "secret3", 2)
	for _, n := range nodes {
		var st api.SystemStatus
		waitCond(t, 5*time.Second, "both members in the status", func() bool {
			_, body := postJSON(t, "GET", "http://"+n.proc.httpAddr+"/admin/v1/status", "test-token", "")
			st = api.SystemStatus{}
			return json.Unmarshal([]byte(body), &st) == nil && st.Cluster != nil && len(st.Cluster.Members) == 2
		})
		for _, m := range st.Cluster.Members {
			want, top := uint64(3), []string{"T1"}
			if m.ID == 2 {
				want, top = 3, []string{"T3", "T1"}
			}
			l := m.Load
			if l == nil || l.Accepted != want || l.CPUCores <= 0 || len(l.TopEnterprises) != len(top) {
				t.Errorf("node %d's status, member %d's load: %+v", n.id, m.ID, l)
				continue
			}
			for i, e := range l.TopEnterprises {
				if e.Enterprise != top[i] {
					t.Errorf("node %d's status, member %d's top senders: %+v, want %v", n.id, m.ID, l.TopEnterprises, top)
				}
			}
		}
		cl := st.Cluster.Load
		if cl == nil || cl.Members != 2 || cl.Accepted != 6 || cl.TopPartial || len(cl.TopEnterprises) != 2 ||
			cl.TopEnterprises[0].Enterprise != "T1" || cl.TopEnterprises[0].Accepted != 4 ||
			cl.TopEnterprises[1].Enterprise != "T3" || cl.TopEnterprises[1].Accepted != 2 {
			t.Errorf("node %d's status, the cluster's load: %+v", n.id, cl)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runIO(strings.NewReader(""), []string{"admin", "--api", "http://" + nodes[0].proc.httpAddr, "--token", "test-token",
		"daemon", "status"}, &stdout, &stderr); code != 0 {
		t.Fatalf("daemon status: exit %d\n%s", code, stderr.String())
	}
	for _, re := range []string{`node 1 \S+ \(this node\)\s+[\d.]+ msg/s accepted, [\d.]+ CPU cores, \d+ µs CPU a message, most from T1 \([\d.]+ msg/s\)`,
		`node 2 \S+\s+[\d.]+ msg/s accepted, [\d.]+ CPU cores, \d+ µs CPU a message, most from T3`,
		`cluster load \(2 of 2 nodes\)\s+[\d.]+ msg/s accepted \(6\), [\d.]+ CPU cores`,
		`cluster load by T1\s+[\d.]+ msg/s accepted \(4, 67%\)\n`, `cluster load by T3\s+[\d.]+ msg/s accepted \(2, 33%\)\n`} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("daemon status, no line %s:\n%s", re, stdout.String())
		}
	}
}

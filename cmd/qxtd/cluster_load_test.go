package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
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
	self := &api.LoadStatus{Seconds: 60, Accepted: 10}
	c := &clusterLoads{client: cluster.NewPeerClient(1, []byte(secret), &http.Client{Timeout: 10 * time.Second}),
		self: func() *api.LoadStatus { return self }, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	members := func() *api.ClusterStatus {
		return &api.ClusterStatus{Node: 1, Members: []api.ClusterMember{{ID: 1}, {ID: 2, PeerURL: up.URL}, {ID: 3, PeerURL: hung.URL}}}
	}
	st := members()
	start := time.Now()
	c.fill(t.Context(), st)
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
	if st.Members[0].Load != self || st.Members[2].Load != nil {
		t.Errorf("this node's load %+v (want its own), the hung one's %+v (want none)", st.Members[0].Load, st.Members[2].Load)
	}

	now = now.Add(loadPeerTTL / 2)
	st = members()
	start = time.Now()
	c.fill(t.Context(), st)
	if took := time.Since(start); took > loadPeerWait/2 || asked.Load() != 1 || st.Members[1].Load == nil {
		t.Errorf("within %v of the last round: took %v, node 2 asked %d times, its load %+v; want the kept answers",
			loadPeerTTL, took, asked.Load(), st.Members[1].Load)
	}
	now = now.Add(loadPeerTTL)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	c.fill(ctx, members()) // its caller gives up: the round is not kept
	if asked.Load() != 2 {
		t.Errorf("after %v: node 2 asked %d times, want 2", loadPeerTTL, asked.Load())
	}
	c.fill(t.Context(), members())
	if asked.Load() != 3 {
		t.Errorf("after a round cut short: node 2 asked %d times, want 3 (asked again)", asked.Load())
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
	nodes, _, _ := startCluster(t, 2, 2, smpp.SimOptions{}, writeClusterConfig)
	send := func(n *clusterNode, count int) {
		base := "http://" + n.proc.httpAddr
		code, body := postJSON(t, "POST", base+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
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
	send(nodes[0], 3)
	send(nodes[1], 2)
	for _, n := range nodes {
		var st api.SystemStatus
		waitCond(t, 5*time.Second, "both members in the status", func() bool {
			_, body := postJSON(t, "GET", "http://"+n.proc.httpAddr+"/admin/v1/status", "test-token", "")
			st = api.SystemStatus{}
			return json.Unmarshal([]byte(body), &st) == nil && st.Cluster != nil && len(st.Cluster.Members) == 2
		})
		for _, m := range st.Cluster.Members {
			want := uint64(3)
			if m.ID == 2 {
				want = 2
			}
			l := m.Load
			if l == nil || l.Accepted != want || l.CPUCores <= 0 || len(l.TopEnterprises) != 1 ||
				l.TopEnterprises[0] != (api.EnterpriseLoad{Enterprise: "T1", Accepted: want, AcceptedPerSecond: float64(want) / l.Seconds}) {
				t.Errorf("node %d's status, member %d's load: %+v", n.id, m.ID, l)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runIO(strings.NewReader(""), []string{"admin", "--api", "http://" + nodes[0].proc.httpAddr, "--token", "test-token",
		"daemon", "status"}, &stdout, &stderr); code != 0 {
		t.Fatalf("daemon status: exit %d\n%s", code, stderr.String())
	}
	for _, re := range []string{`node 1 \S+ \(this node\)\s+[\d.]+ msg/s accepted, [\d.]+ CPU cores, \d+ µs CPU a message, most from T1 \([\d.]+ msg/s\)`,
		`node 2 \S+\s+[\d.]+ msg/s accepted, [\d.]+ CPU cores, \d+ µs CPU a message, most from T1`} {
		if !regexp.MustCompile(re).MatchString(stdout.String()) {
			t.Errorf("daemon status, no line %s:\n%s", re, stdout.String())
		}
	}
}

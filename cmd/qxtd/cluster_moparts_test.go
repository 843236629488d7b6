package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/smpp"
)

// replySink records the replies an ESME gets, their text decoded (UCS-2
// or not), and wakes a waiter at each.
type replySink struct {
	mu    sync.Mutex
	got   []string // source: text (with dests, source → destination: text)
	wake  chan struct{}
	dests bool
}

func newReplySink() *replySink { return &replySink{wake: make(chan struct{}, 1)} }

func (s *replySink) handler() smpp.Handler {
	return smpp.HandlerFunc(func(_ context.Context, _ *smpp.Conn, p pdu.Body) pdu.Body {
		if _, err := smpp.ParseReceipt(p); !errors.Is(err, smpp.ErrNotReceipt) {
			return pdu.NewDeliverSMResp()
		}
		b := smpp.Bytes(p, pdufield.ShortMessage)
		text := string(b)
		if smpp.Byte(p, pdufield.DataCoding) == 8 {
			u := make([]uint16, len(b)/2)
			for i := range u {
				u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			}
			text = string(utf16.Decode(u))
		}
		line := smpp.Str(p, pdufield.SourceAddr) + ": " + text
		if s.dests {
			line = smpp.Str(p, pdufield.SourceAddr) + " → " + smpp.Str(p, pdufield.DestinationAddr) + ": " + text
		}
		s.mu.Lock()
		s.got = append(s.got, line)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return pdu.NewDeliverSMResp()
	})
}

// wait returns the replies once there are n, failing after d.
func (s *replySink) wait(t *testing.T, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got := slices.Clone(s.got)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.wake:
		case <-deadline.C:
			t.Fatalf("after %v: %d replies, want %d: %q", d, len(got), n, got)
		}
	}
}

// expectNoMore fails if the ESME gets more than n replies within d.
func (s *replySink) expectNoMore(t *testing.T, n int, d time.Duration) {
	t.Helper()
	quiet := time.NewTimer(d)
	defer quiet.Stop()
	for {
		s.mu.Lock()
		got := slices.Clone(s.got)
		s.mu.Unlock()
		if len(got) > n {
			t.Fatalf("%d replies, want %d: %q", len(got), n, got[n:])
		}
		select {
		case <-s.wake:
		case <-quiet.C:
			return
		}
	}
}

// ucs2 is s in UTF-16BE.
func ucs2(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

// moPart is one deliver_sm of a long reply, with its concatenation UDH
// (8-bit reference), to send on bind `bind` of the simulator.
type moPart struct {
	bind          int
	ref, total, i byte
	coding        uint8
	data          []byte
}

func injectPartOn(t *testing.T, sim *smpp.Simulator, source, dest string, p moPart) {
	t.Helper()
	sm := smpp.SM{SourceAddr: source, DestinationAddr: dest, ESMClass: 0x40, DataCoding: p.coding,
		ShortMessage: append([]byte{5, 0, 3, p.ref, p.total, p.i}, p.data...)}
	if err := sim.InjectDeliverSMOn("up", p.bind, sm); err != nil {
		t.Fatalf("part %d/%d of ref %d on bind %d: %v", p.i, p.total, p.ref, p.bind, err)
	}
}

// waitOneBindEach waits until every node holds exactly one bind of the
// upstream: then the simulator's binds 0, 1, 2 are on three nodes.
func waitOneBindEach(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	waitCond(t, 20*time.Second, "one bind of the upstream on each node", func() bool {
		for _, n := range nodes {
			if metricSum(t, n.proc, "qxtd_upstream_binds_up{") != 1 {
				return false
			}
		}
		return true
	})
}

// partsMetric sums qxtd_mo_parts_total{outcome} over nodes.
func partsMetric(t *testing.T, nodes []*clusterNode, outcome string) float64 {
	t.Helper()
	var n float64
	for _, x := range nodes {
		n += metricSum(t, x.proc, `qxtd_mo_parts_total{outcome="`+outcome+`"}`)
	}
	return n
}

// TestClusterReplyPartsAcrossNodes: the carrier sends the parts of a
// long reply on binds of different nodes (three daemons, one bind each,
// one etcd): each reply is joined once, whole, on one node, reaches the
// ESME once, and an opt-out "退订" whose two parts came on two nodes
// puts its sender on the list. Before, each node stored the parts it
// had, in fragments at the reassembly timeout, and the opt-out was
// missed.
func TestClusterReplyPartsAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 3, smpp.SimOptions{}, writeDeliverConfig)
	waitOneBindEach(t, nodes)
	sink := newReplySink()
	dialKind(t, nodes[0].proc.smppAddr, "esme4", "secret4", smpp.BindReceiver, sink.handler())

	const to = "1065904"
	// Two parts on binds 0 and 1; three on 2, 0, 1 (out of order);
	// the opt-out on 1 and 2.
	injectPartOn(t, sim, "13800000001", to, moPart{bind: 0, ref: 11, total: 2, i: 1, data: []byte("hello from ")})
	injectPartOn(t, sim, "13800000001", to, moPart{bind: 1, ref: 11, total: 2, i: 2, data: []byte("two nodes")})
	injectPartOn(t, sim, "13800000002", to, moPart{bind: 2, ref: 12, total: 3, i: 3, data: []byte("three.")})
	injectPartOn(t, sim, "13800000002", to, moPart{bind: 0, ref: 12, total: 3, i: 1, data: []byte("one, ")})
	injectPartOn(t, sim, "13800000002", to, moPart{bind: 1, ref: 12, total: 3, i: 2, data: []byte("two, ")})
	injectPartOn(t, sim, "13900000003", to, moPart{bind: 1, ref: 13, total: 2, i: 1, coding: 8, data: ucs2("退")})
	injectPartOn(t, sim, "13900000003", to, moPart{bind: 2, ref: 13, total: 2, i: 2, coding: 8, data: ucs2("订")})

	want := []string{"13800000001: hello from two nodes", "13800000002: one, two, three.", "13900000003: 退订"}
	got := sink.wait(t, len(want), 20*time.Second)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the ESME got %q, want %q", got, want)
	}
	// Each reply once: stored and joined once in the cluster, every part
	// stored once, on the node that joined it.
	var matched, complete, timedOut float64
	for _, n := range nodes {
		matched += metricSum(t, n.proc, `qxtd_mo_received_total{result="matched"}`)
		complete += metricSum(t, n.proc, `qxtd_mo_joined_total{how="complete"}`)
		timedOut += metricSum(t, n.proc, `qxtd_mo_joined_total{how="timeout"}`)
	}
	if matched != 3 || complete != 3 || timedOut != 0 {
		t.Errorf("replies stored %v, joined complete %v, timed out %v; want 3, 3, 0", matched, complete, timedOut)
	}
	stored, forwarded, failed := partsMetric(t, nodes, "stored"), partsMetric(t, nodes, "forwarded"), partsMetric(t, nodes, "forward_failed")
	if stored != 7 || forwarded < 3 || failed != 0 {
		t.Errorf("parts stored %v, forwarded %v, forward failed %v; want 7, at least 3 (each reply's parts came on two nodes or more), 0", stored, forwarded, failed)
	}
	code, body := postJSON(t, "GET", "http://"+nodes[1].proc.httpAddr+"/admin/v1/optouts?enterprise=T4", "test-token", "")
	if code != http.StatusOK || !strings.Contains(body, "13900000003") || strings.Contains(body, "13800000001") {
		t.Fatalf("T4's opt-outs: %d %s; want 13900000003's only", code, body)
	}

	// A burst: 60 replies of 2 or 3 parts, every part sent at once, each
	// on the next bind; each reply whole, once.
	const burst = 60
	var wg sync.WaitGroup
	errs := make(chan error, 3*burst)
	parts := 0
	for k := range burst {
		total := byte(2 + k%2)
		src := fmt.Sprintf("1370000%04d", k)
		for i := byte(1); i <= total; i++ {
			parts++
			sm := smpp.SM{SourceAddr: src, DestinationAddr: to, ESMClass: 0x40,
				ShortMessage: append([]byte{5, 0, 3, byte(k), total, i}, fmt.Sprintf("<%d of reply %d>", i, k)...)}
			bind := (k + int(i)) % 3
			wg.Go(func() {
				if err := sim.InjectDeliverSMOn("up", bind, sm); err != nil {
					errs <- fmt.Errorf("reply %d part %d on bind %d: %w", k, i, bind, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got = sink.wait(t, len(want)+burst, 30*time.Second)
	seen := map[string]int{}
	for _, r := range got[len(want):] {
		seen[r]++
	}
	for k := range burst {
		text := fmt.Sprintf("1370000%04d: <1 of reply %d><2 of reply %d>", k, k, k)
		if k%2 == 1 {
			text += fmt.Sprintf("<3 of reply %d>", k)
		}
		if seen[text] != 1 {
			t.Errorf("reply %d reached the ESME %d times, want once whole: %q", k, seen[text], text)
		}
	}
	matched, complete = 0, 0
	for _, n := range nodes {
		matched += metricSum(t, n.proc, `qxtd_mo_received_total{result="matched"}`)
		complete += metricSum(t, n.proc, `qxtd_mo_joined_total{how="complete"}`)
	}
	if matched != 3+burst || complete != 3+burst || partsMetric(t, nodes, "stored") != float64(7+parts) || partsMetric(t, nodes, "forward_failed") != 0 {
		t.Errorf("replies stored %v, joined %v, parts stored %v, forward failed %v; want %d, %d, %d, 0", matched, complete,
			partsMetric(t, nodes, "stored"), partsMetric(t, nodes, "forward_failed"), 3+burst, 3+burst, 7+parts)
	}
	// Nothing more comes: no fragment of the replies.
	sink.expectNoMore(t, len(want)+burst, 200*time.Millisecond)
}

// writeLongLeaseConfig is writeDeliverConfig with a lease the test
// outlives: a node killed stays a member (its lease held) to the end.
func writeLongLeaseConfig(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
	t.Helper()
	path := writeDeliverConfig(t, id, endpoints, simAddr, binds)
	replaceInConfig(t, path, "lease_ttl: 4s", "lease_ttl: 60s")
	return path
}

// TestClusterReplyPartsOwnerDown: the node that joins a reply is killed
// and still counts as a member (its lease runs): the nodes whose binds
// get the reply's parts cannot hand them over and keep them, answering
// the SMSC OK only once stored. A reply whose parts all came on one node
// is then joined there, whole; one split over two nodes waits on both
// (for the reassembly timeout: fragments), nothing lost.
func TestClusterReplyPartsOwnerDown(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 3, smpp.SimOptions{}, writeLongLeaseConfig)
	waitOneBindEach(t, nodes)
	const to, src = "1065904", "13800000009"
	// Both replies (refs 21 and 22) are owned by one node: find it.
	members := []cluster.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	owner, _ := cluster.MOPartOwner(members, cluster.MOPartKey("sim", src, to, 21, 2))
	ref2 := byte(22)
	for ; ; ref2++ {
		if o, _ := cluster.MOPartOwner(members, cluster.MOPartKey("sim", src, to, uint16(ref2), 2)); o.ID == owner.ID {
			break
		}
	}
	dead := nodes[owner.ID-1]
	var alive []*clusterNode
	for _, n := range nodes {
		if n != dead {
			alive = append(alive, n)
		}
	}
	sink := newReplySink()
	dialKind(t, alive[0].proc.smppAddr, "esme4", "secret4", smpp.BindReceiver, sink.handler())
	if err := dead.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dead.proc.exited
	waitCond(t, 10*time.Second, "the simulator seeing the killed node's bind go", func() bool { return sim.Receivers("up") == 2 })
	// Reply 21 both parts on bind 0; reply 22 one part on each bind.
	injectPartOn(t, sim, src, to, moPart{bind: 0, ref: 21, total: 2, i: 1, data: []byte("kept ")})
	injectPartOn(t, sim, src, to, moPart{bind: 0, ref: 21, total: 2, i: 2, data: []byte("here")})
	injectPartOn(t, sim, src, to, moPart{bind: 0, ref: ref2, total: 2, i: 1, data: []byte("split ")})
	injectPartOn(t, sim, src, to, moPart{bind: 1, ref: ref2, total: 2, i: 2, data: []byte("over two")})

	got := sink.wait(t, 1, 20*time.Second)
	if got[0] != src+": kept here" {
		t.Fatalf("the ESME got %q, want the reply kept on one node, whole", got)
	}
	if failed, stored := partsMetric(t, alive, "forward_failed"), partsMetric(t, alive, "stored"); failed != 4 || stored != 4 {
		t.Errorf("parts forward failed %v, stored %v on the live nodes; want 4, 4", failed, stored)
	}
	// The split reply's parts wait on two nodes, one each.
	for _, n := range alive {
		if s := metricSum(t, n.proc, `qxtd_mo_parts_total{outcome="stored"}`); s < 1 {
			t.Errorf("node %d stored %v parts, want at least 1", n.id, s)
		}
	}
	// The split reply's fragments wait for the reassembly timeout.
	sink.expectNoMore(t, 1, 200*time.Millisecond)
}

// writeShortJoinConfig is writeDeliverConfig with a reassembly timeout of
// a second: a node started again stores at once the parts it kept.
func writeShortJoinConfig(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
	t.Helper()
	path := writeDeliverConfig(t, id, endpoints, simAddr, binds)
	replaceInConfig(t, path, "smpp: { listen: 127.0.0.1:0 }", "smpp: { listen: 127.0.0.1:0, mo_reassembly_timeout: 1s }")
	return path
}

// TestClusterReplyPartsOwnerDiesMidReply: the node that joins a reply
// holds its first part and dies; once it has left the members the second
// part goes to another node. Nothing is lost: the first part, durable on
// the dead node, reaches the ESME (with parts_missing) when that node
// starts again, the second waits on the node that took it for its
// reassembly timeout; each part stored once in the cluster.
func TestClusterReplyPartsOwnerDiesMidReply(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 3, smpp.SimOptions{}, writeShortJoinConfig)
	waitOneBindEach(t, nodes)
	const to, src, ref = "1065904", "13800000007", 31
	members := []cluster.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	owner, _ := cluster.MOPartOwner(members, cluster.MOPartKey("sim", src, to, ref, 2))
	dead := nodes[owner.ID-1]
	var alive []*clusterNode
	for _, n := range nodes {
		if n != dead {
			alive = append(alive, n)
		}
	}
	sink := newReplySink()
	dialKind(t, alive[0].proc.smppAddr, "esme4", "secret4", smpp.BindReceiver, sink.handler())

	injectPartOn(t, sim, src, to, moPart{bind: 0, ref: ref, total: 2, i: 1, data: []byte("first half")})
	if s := metricSum(t, dead.proc, `qxtd_mo_parts_total{outcome="stored"}`); s != 1 {
		t.Fatalf("the owner, node %d, stored %v parts, want 1", dead.id, s)
	}
	if err := dead.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dead.proc.exited
	waitCond(t, 20*time.Second, "the live nodes seeing the owner leave the members", func() bool {
		for _, n := range alive {
			if metricSum(t, n.proc, "qxtd_cluster_members") != 2 {
				return false
			}
		}
		return true
	})
	waitCond(t, 10*time.Second, "a bind of the upstream on a live node", func() bool { return sim.Receivers("up") >= 1 })
	injectPartOn(t, sim, src, to, moPart{bind: 0, ref: ref, total: 2, i: 2, data: []byte("second half")})
	if s, f := partsMetric(t, alive, "stored"), partsMetric(t, alive, "forward_failed"); s != 1 || f != 0 {
		t.Fatalf("the live nodes stored %v parts, failed to forward %v; want 1, 0", s, f)
	}

	// The owner again: at its start the part it kept is past the
	// reassembly timeout, stored as a reply with one part missing, and
	// delivered to the ESME on another node.
	dead.proc = startDaemon(t, dead.cfg)
	got := sink.wait(t, 1, 30*time.Second)
	if got[0] != src+": first half" {
		t.Fatalf("the ESME got %q, want the first half", got)
	}
	if n := metricSum(t, dead.proc, `qxtd_mo_joined_total{how="timeout"}`); n != 1 {
		t.Errorf("the restarted owner stored %v replies at the timeout, want 1", n)
	}
}

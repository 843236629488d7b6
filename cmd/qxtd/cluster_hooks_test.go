package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"
)

// writeHooksClusterConfig is writeClusterConfig with receipt endpoints on
// loopback allowed (the test's receiver).
func writeHooksClusterConfig(t *testing.T, id int, endpoints []string, simAddr string, binds int) string {
	t.Helper()
	path := writeClusterConfig(t, id, endpoints, simAddr, binds)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("webhooks: { allow_private: true }\n"); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClusterReceiptWebhooks: an enterprise's waiting receipts are spread
// over the nodes that accepted its messages. Its status on any node counts
// them all, node by node; "post them now" on one node makes every node's
// due, so a mended endpoint gets them at once rather than after each
// node's backoff; the minute's limit holds across the nodes; a node that
// is down is named.
func TestClusterReceiptWebhooks(t *testing.T) {
	t.Parallel()
	nodes, _, _ := startCluster(t, 3, 3, smpp.SimOptions{DLRDelay: 20 * time.Millisecond}, writeHooksClusterConfig)

	var (
		status    atomic.Int32
		mu        sync.Mutex
		delivered = make(map[string]time.Time) // receipt id → its first 2xx
	)
	status.Store(http.StatusServiceUnavailable)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		code := int(status.Load())
		var rc webhook.Receipt
		if json.Unmarshal(body, &rc) == nil && code/100 == 2 {
			mu.Lock()
			if _, ok := delivered[rc.ID]; !ok {
				delivered[rc.ID] = time.Now()
			}
			mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rcv.Close)

	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	code, body := postJSON(t, "POST", base(nodes[0])+"/v1/login", "", `{"system_id":"esme","password":"secret1"}`)
	var lr struct{ Token string }
	if err := json.Unmarshal([]byte(body), &lr); code != http.StatusOK || err != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	// One message through node 1, two through node 2, none through node 3.
	var ids []string
	for i, count := range []int{1, 2} {
		for k := range count {
			code, body := postJSON(t, "POST", base(nodes[i])+"/v1/messages", lr.Token,
				fmt.Sprintf(`{"to":["1380%d%06d"],"text":"回执","receipt_url":"%s/dlr"}`, i, k, rcv.URL))
			var res struct{ Results []struct{ ID string } }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || len(res.Results) != 1 {
				t.Fatalf("send through node %d: %d %s", i+1, code, body)
			}
			ids = append(ids, res.Results[0].ID)
		}
	}

	statusOn := func(n *clusterNode) api.ReceiptStatus {
		t.Helper()
		var rw api.ReceiptWebhook
		code, body := postJSON(t, "GET", base(n)+"/v1/receipt-webhook", lr.Token, "")
		if code != http.StatusOK || json.Unmarshal([]byte(body), &rw) != nil {
			t.Fatalf("GET /v1/receipt-webhook on node %d: %d %s", n.id, code, body)
		}
		return rw.Status
	}
	parts := func(st api.ReceiptStatus) (pending, retrying []int) {
		for _, n := range st.Nodes {
			pending, retrying = append(pending, n.Pending), append(retrying, n.Retrying)
		}
		return pending, retrying
	}
	// Every receipt fails once, on the node that accepted its message.
	var st api.ReceiptStatus
	waitCond(t, 20*time.Second, "every receipt failed once, seen from node 3", func() bool {
		st = statusOn(nodes[2])
		_, r := parts(st)
		return slices.Equal(r, []int{1, 2, 0})
	})
	if p, _ := parts(st); st.Pending != 3 || st.Retrying != 3 || !slices.Equal(p, []int{1, 2, 0}) || st.Partial ||
		st.Nodes[0].Node != 1 || st.Nodes[2].Node != 3 {
		t.Fatalf("status from node 3: %+v", st)
	}
	if st.Last == nil || st.Last.Delivered || (st.Last.Node != 1 && st.Last.Node != 2) || st.FirstDueAt == nil || st.Last.FailingSince == nil ||
		st.Nodes[1].Last == nil || st.Nodes[1].Last.FailingSince == nil {
		t.Fatalf("status from node 3: last POST %+v, first due %v", st.Last, st.FirstDueAt)
	}
	// reply_status has every node's part too (no replies here): the
	// peer protocol carries it in the same answer.
	var rw api.ReceiptWebhook
	if code, body := postJSON(t, "GET", base(nodes[2])+"/v1/receipt-webhook", lr.Token, ""); code != http.StatusOK ||
		json.Unmarshal([]byte(body), &rw) != nil || rw.ReplyStatus.Partial || len(rw.ReplyStatus.Nodes) != 3 || rw.ReplyStatus.Pending != 0 {
		t.Errorf("reply_status from node 3: %d %s", code, body)
	}
	// The recent POSTs: the 503s of nodes 1 and 2 (one POST a receipt),
	// newest first.
	var from []uint16
	for i, p := range st.Recent {
		if p.Delivered || p.Status != http.StatusServiceUnavailable || (i > 0 && p.At.After(st.Recent[i-1].At)) {
			t.Errorf("recent POST %d: %+v", i, p)
		}
		from = append(from, p.Node)
	}
	slices.Sort(from)
	if !slices.Equal(from, []uint16{1, 2, 2}) {
		t.Errorf("recent POSTs from nodes %v, want 1, 2, 2", from)
	}
	// The operator's daemon status on node 2 names T1 among the failing.
	var stdout, stderr bytes.Buffer
	if code := runIO(strings.NewReader(""), []string{"admin", "--api", base(nodes[1]), "--token", "test-token", "daemon", "status"}, &stdout, &stderr); code != 0 ||
		!regexp.MustCompile(`receipt webhook failing T1\s+since \S+: webhook: HTTP status 503`).MatchString(stdout.String()) {
		t.Errorf("daemon status on node 2: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// No receipt would be POSTed again before this, without a retry-now.
	firstDue := *st.FirstDueAt

	// The endpoint is mended; the account manager asks node 1 to post the
	// waiting receipts now: node 2 does its own too.
	status.Store(http.StatusNoContent)
	var rr api.ReceiptWebhookRetry
	code, body = postJSON(t, "POST", base(nodes[0])+"/admin/v1/enterprises/T1/receipt-retry", "test-token", "")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rr) != nil {
		t.Fatalf("receipt-retry on node 1: %d %s", code, body)
	}
	var moved []int
	for _, n := range rr.Nodes {
		moved = append(moved, n.Rescheduled)
	}
	if rr.Rescheduled != 3 || !slices.Equal(moved, []int{1, 2, 0}) || rr.Partial {
		t.Fatalf("receipt-retry on node 1: %s", body)
	}
	waitCond(t, time.Until(firstDue), "every receipt delivered before its backoff ended", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == len(ids)
	})
	mu.Lock()
	for _, id := range ids {
		if _, ok := delivered[id]; !ok {
			t.Errorf("receipt of %s not delivered; delivered: %v", id, delivered)
		}
	}
	mu.Unlock()

	// Within the minute, node 2 refuses a retry-now: it made its own due
	// a moment ago, for node 1.
	code, body = postJSON(t, "POST", base(nodes[1])+"/admin/v1/enterprises/T1/receipt-retry", "test-token", "")
	if code != http.StatusTooManyRequests {
		t.Errorf("a second receipt-retry, on node 2: %d %s, want 429", code, body)
	}
	// The replies' retry is a question of its own: every node answers it
	// over the peer protocol (none has a reply waiting), none busy from the
	// receipts' retry of a moment ago.
	var rp api.ReceiptWebhookRetry
	code, body = postJSON(t, "POST", base(nodes[1])+"/admin/v1/enterprises/T1/receipt-retry", "test-token", `{"kind":"reply"}`)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rp) != nil || rp.Kind != "reply" || rp.Rescheduled != 0 || rp.Partial ||
		len(rp.Nodes) != 3 || slices.ContainsFunc(rp.Nodes, func(n api.NodeReceiptRetry) bool { return n.Busy }) {
		t.Errorf("replies' retry on node 2: %d %s", code, body)
	}

	waitCond(t, 10*time.Second, "nothing pending, seen from node 1", func() bool {
		st = statusOn(nodes[0])
		return st.Pending == 0 && st.Last != nil && st.Last.Delivered
	})

	// Node 3 stops: its store is registered, so the status names it.
	nodes[2].proc.stop(t)
	waitCond(t, 10*time.Second, "node 3 missing from the status", func() bool {
		st = statusOn(nodes[0])
		return st.Partial && slices.Equal(st.MissingNodes, []uint16{3})
	})
	if len(st.Nodes) != 2 {
		t.Errorf("status without node 3: nodes %+v", st.Nodes)
	}
	stdout.Reset()
	stderr.Reset()
	code = runIO(strings.NewReader(""), []string{"admin", "--api", base(nodes[0]), "--token", "test-token", "enterprise", "show", "T1"}, &stdout, &stderr)
	if out := stdout.String(); code != 0 || !strings.Contains(out, "node 1: 0 pending, 0 retrying; node 2: 0 pending, 0 retrying") ||
		!strings.Contains(out, "PARTIAL: without node(s) [3]") || !regexp.MustCompile(`last POST by node [12] \S+ \(1 receipt\) delivered`).MatchString(out) {
		t.Errorf("enterprise show T1: exit %d\n%s%s", code, out, stderr.String())
	}
}

// TestClusterHookStatusBounds: however many ask at once, the other nodes'
// part of an enterprise's status is asked for once a second (a member
// scripting GET /v1/receipt-webhook cannot crowd the peer listeners), and
// a node that does not answer is named missing after hookStatusWait, not
// after the peer timeout.
func TestClusterHookStatusBounds(t *testing.T) {
	t.Parallel()
	et := clustertest.Start(t)
	var asked atomic.Int32
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/peer/v1/receipt-hooks" && r.URL.Query().Get("enterprise") == "E" {
			asked.Add(1)
			_, _ = io.WriteString(w, `{"pending":2,"more":false,"retrying":1}`)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(good.Close)
	hung := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hung.Close)

	self := joinPeer(t, et, 1, "http://127.0.0.1:1")
	joinPeer(t, et, 2, good.URL)
	joinPeer(t, et, 3, hung.URL)
	waitCond(t, 10*time.Second, "node 1 sees nodes 2 and 3", func() bool { return len(self.Members()) == 3 })

	var mu sync.Mutex
	now := time.Now()
	h := &clusterHooks{node: self, client: cluster.NewPeerClient(1, []byte("cluster-test-secret-0123456789"), nil),
		log: slog.New(slog.DiscardHandler), status: make(map[string]*hookStatusEntry),
		now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	check := func(what string) {
		t.Helper()
		start := time.Now()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				nodes, missing, err := h.PeerHookStatus(context.Background(), "E")
				if err != nil || len(nodes) != 1 || nodes[0].Node != 2 || nodes[0].Pending != 2 || !slices.Equal(missing, []uint16{3}) {
					t.Errorf("%s: %+v, missing %v, %v", what, nodes, missing, err)
				}
			})
		}
		wg.Wait()
		// Well under the peer timeout (10 s), which would hold it otherwise.
		if d := time.Since(start); d > cluster.PeerTimeout/2 {
			t.Errorf("%s: %v with a hung node, want about %v", what, d, hookStatusWait)
		}
	}
	check("8 at once")
	if n := asked.Load(); n != 1 {
		t.Fatalf("8 statuses at once asked node 2 %d times, want 1", n)
	}
	check("within the second")
	if n := asked.Load(); n != 1 {
		t.Fatalf("statuses within the second asked node 2 %d times in all, want 1", n)
	}
	mu.Lock()
	now = now.Add(hookStatusTTL)
	mu.Unlock()
	check("a second later")
	if n := asked.Load(); n != 2 {
		t.Fatalf("a second later node 2 was asked %d times in all, want 2", n)
	}
}

// TestPeerHookPostCounts: a POST's count crosses the peer protocol as it
// was: a receipts' POST its receipts, a reply's POST its replies (a batch
// with reply_batch), so another node's status shows what this one did.
func TestPeerHookPostCounts(t *testing.T) {
	at := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	st := webhook.Status{Recent: []webhook.Outcome{
		{At: at, URL: "https://e.example/mo", Reply: true, Receipts: 7, Delivered: true, Status: 200},
		{At: at.Add(-time.Second), URL: "https://e.example/dlr", Receipts: 3, Status: 503},
	}}
	b, err := json.Marshal(peerStatusOf(st))
	if err != nil {
		t.Fatal(err)
	}
	var wire cluster.PeerHookStatus
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	n := nodeStatusOf(2, wire)
	if len(n.Recent) != 2 || n.Recent[0].Replies != 7 || n.Recent[0].Receipts != 0 || n.Recent[1].Receipts != 3 || n.Recent[1].Replies != 0 {
		t.Fatalf("after the peer protocol: %+v (wire %s)", n.Recent, b)
	}
}

// TestClusterReplyRetryOlderNode: the replies' retry-now asks every other
// node about its replies. A node older than reply webhooks has no such
// question (its peer server answers 404): it is named missing, and its
// receipts' retry is not called in its place; a node that has it answers
// what it did. The receipts' retry asks both as before.
func TestClusterReplyRetryOlderNode(t *testing.T) {
	t.Parallel()
	et := clustertest.Start(t)
	var newer, olderReceipts atomic.Int32
	peer := func(count *atomic.Int32, paths ...string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && slices.Contains(paths, r.URL.Path) && r.URL.Query().Get("enterprise") == "E" {
				count.Add(1)
				_, _ = io.WriteString(w, `{"rescheduled":2,"more":false}`)
				return
			}
			http.NotFound(w, r) // what a node's peer mux answers a route it does not have
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	newNode := peer(&newer, "/peer/v1/receipt-hooks/retry", "/peer/v1/reply-hooks/retry")
	oldNode := peer(&olderReceipts, "/peer/v1/receipt-hooks/retry")
	self := joinPeer(t, et, 1, "http://127.0.0.1:1")
	joinPeer(t, et, 2, newNode.URL)
	joinPeer(t, et, 3, oldNode.URL)
	waitCond(t, 10*time.Second, "node 1 sees nodes 2 and 3", func() bool { return len(self.Members()) == 3 })
	h := &clusterHooks{node: self, client: cluster.NewPeerClient(1, []byte("cluster-test-secret-0123456789"), nil),
		log: slog.New(slog.DiscardHandler), status: make(map[string]*hookStatusEntry), now: time.Now}

	nodes, missing, err := h.PeerHookRetry(context.Background(), "E", true)
	if err != nil || len(nodes) != 1 || nodes[0].Node != 2 || nodes[0].Rescheduled != 2 || !slices.Equal(missing, []uint16{3}) {
		t.Fatalf("replies' retry: %+v, missing %v, %v; want node 2's part and node 3 missing", nodes, missing, err)
	}
	if n := olderReceipts.Load(); n != 0 {
		t.Fatalf("the older node's receipts were made due %d times for a replies' retry", n)
	}
	nodes, missing, err = h.PeerHookRetry(context.Background(), "E", false)
	if err != nil || len(nodes) != 2 || len(missing) != 0 || olderReceipts.Load() != 1 {
		t.Fatalf("receipts' retry: %+v, missing %v, %v (older node asked %d times)", nodes, missing, err, olderReceipts.Load())
	}
}

// joinPeer joins node id, whose peer listener is at peerURL, to the
// cluster on et until the test ends.
func joinPeer(t *testing.T, et *clustertest.Etcd, id uint16, peerURL string) *cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := cluster.Join(ctx, cluster.Config{Endpoints: et.Endpoints, NodeID: id, TTL: 4 * time.Second, PeerURL: peerURL}, nil)
	if err != nil {
		t.Fatalf("join node %d: %v", id, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/cluster/clustertest"
	"github.com/qxtd/qxtd/smpp"
)

// TestClusterIdempotencyKey: on three real nodes, a send answered by
// node 1 under an Idempotency-Key is replayed by node 2 and node 3 (a
// load balancer sent the retry elsewhere) and reaches the SMSC once; a
// new key sends. With node 3 killed (its lease not yet expired) a keyed
// send is refused with 503 and Retry-After, since node 3 cannot say
// whether it ran the key, while a send without a key goes on.
func TestClusterIdempotencyKey(t *testing.T) {
	t.Parallel()
	nodes, sim, _ := startCluster(t, 3, 2, smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Faults: smpp.Faults{UndelivPrefix: "1390020"}}, writeClusterConfig)
	base := func(n *clusterNode) string { return "http://" + n.proc.httpAddr }
	key := issueAPIKey(t, base(nodes[0]), "esme")
	send := func(n *clusterNode, idem, to string) (int, string, http.Header) {
		t.Helper()
		return keyedSend(t, base(n), key, idem, to)
	}

	code, first, _ := send(nodes[0], "order-1", "13800138000")
	if code != http.StatusOK || !strings.Contains(first, `"accepted":1`) {
		t.Fatalf("send on node 1: %d %s", code, first)
	}
	for _, n := range []*clusterNode{nodes[1], nodes[2], nodes[1]} { // node 2 twice: its own copy the second time
		code, again, hdr := send(n, "order-1", "13800138000")
		if code != http.StatusOK || again != first || hdr.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry on node %d: %d %s (replayed %q), want node 1's answer %s", n.id, code, again, hdr.Get("Idempotent-Replayed"), first)
		}
	}
	if code, other, _ := send(nodes[2], "order-2", "13800138001"); code != http.StatusOK || other == first {
		t.Fatalf("a new key on node 3: %d %s", code, other)
	}
	// The new key's message went after the retries: a second copy of the
	// keyed one would have gone before it.
	waitReceived(t, sim, "13800138001", 20*time.Second)
	if n := len(waitReceived(t, sim, "13800138000", 20*time.Second)); n != 1 {
		t.Fatalf("the SMSC got the keyed message %d times, want once", n)
	}

	// An enterprise with a quota (T3: package 1, no overage; a node
	// claims what a send needs): 15 sent first to numbers the SMSC cannot
	// deliver give their segments back once final, leaving node 1 a claim
	// of 15 unused, so a keyed send of 25 stores 15 in its first commit
	// and the other 10 in a second, once the claim grew: the answer
	// stored with the second is the whole answer the client got.
	key3 := issueAPIKey(t, base(nodes[0]), "esme3")
	first15 := make([]string, 15)
	for i := range first15 {
		first15[i] = fmt.Sprintf("1390020%04d", i)
	}
	if code, body := postJSON(t, http.MethodPost, base(nodes[0])+"/v1/messages", key3,
		`{"to":["`+strings.Join(first15, `","`)+`"],"text":"送不到"}`); code != http.StatusOK || !strings.Contains(body, `"accepted":15`) {
		t.Fatalf("15 first: %d %s", code, body)
	}
	waitCond(t, 20*time.Second, "15 undeliverable", func() bool {
		_, body := postJSON(t, http.MethodGet, base(nodes[0])+"/v1/messages?outcome=failed&limit=100", key3, "")
		return strings.Count(body, `"state":"undeliverable"`) == 15
	})
	var to []string
	for i := range 25 {
		to = append(to, fmt.Sprintf("1390010%04d", i))
	}
	quotaSend := func() (int, string, http.Header) {
		t.Helper()
		return keyedSend(t, base(nodes[0]), key3, "quota-1", strings.Join(to, ","))
	}
	code, grown, _ := quotaSend()
	if code != http.StatusOK || !strings.Contains(grown, `"accepted":25`) {
		t.Fatalf("a send past node 1's first claim: %d %s", code, grown)
	}
	if code, again, hdr := quotaSend(); code != http.StatusOK || again != grown || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("its retry: %d %s, want %s", code, again, grown)
	}
	if strings.Contains(nodes[0].proc.log(), "is not the one written") {
		t.Fatal("the answer stored with the messages was not the one sent (saved again alone)")
	}

	victim := nodes[2]
	if err := victim.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.proc.exited
	code, body, hdr := send(nodes[0], "order-3", "13800138002")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) || hdr.Get("Retry-After") == "" {
		t.Fatalf("a keyed send with node 3 down: %d %s (Retry-After %q), want 503 unavailable", code, body, hdr.Get("Retry-After"))
	}
	if code, body, _ := send(nodes[0], "", "13800138003"); code != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("a send without a key with node 3 down: %d %s", code, body)
	}
}

// TestClusterAnswersOlderNode: a node of a release before kept answers
// (it answers /peer/v1/answers 404) counts as one that has not seen the
// key, so a rolling upgrade does not refuse every keyed send; a newer
// node's running request is still found; a node that cannot be reached
// at all is an error (the send is refused).
func TestClusterAnswersOlderNode(t *testing.T) {
	t.Parallel()
	et := clustertest.Start(t)
	var state atomic.Value
	state.Store(`{"state":"none"}`)
	newer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/peer/v1/answers" {
			_, _ = io.WriteString(w, state.Load().(string))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(newer.Close)
	older := httptest.NewServer(http.NotFoundHandler()) // what a node's peer mux answers a route it does not have
	t.Cleanup(older.Close)
	self := joinPeer(t, et, 1, "http://127.0.0.1:1")
	joinPeer(t, et, 2, newer.URL)
	joinPeer(t, et, 3, older.URL)
	waitCond(t, 10*time.Second, "node 1 sees nodes 2 and 3", func() bool { return len(self.Members()) == 3 })
	c := &clusterAnswers{node: self, client: cluster.NewPeerClient(1, []byte("cluster-test-secret-0123456789"), nil)}

	if a, _, err := c.FindAnswer(t.Context(), "k"); err != nil || a.State != api.KeyNone {
		t.Fatalf("with an older node: %+v, %v; want none", a, err)
	}
	state.Store(`{"state":"running"}`)
	if a, node, err := c.FindAnswer(t.Context(), "k"); err != nil || a.State != api.KeyRunning || node != 2 {
		t.Fatalf("node 2 running it: %+v from %d, %v", a, node, err)
	}
	newer.Close()
	if _, _, err := c.FindAnswer(t.Context(), "k"); err == nil {
		t.Fatal("node 2 unreachable: no error")
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

// lostBindLog is the warning the smpp client logs when the SMSC answers
// ESME_RINVBNDSTS (smpp/client.go, bindLost).
const lostBindLog = "upstream SMSC answered ESME_RINVBNDSTS: it no longer has this bind; unbinding to bind again"

// TestClusterBindLostIsRebound: two nodes share one carrier bind, so one
// node holds it and the other relays its segments through it
// (POST /peer/v1/relay). The SMSC loses that bind behind a TCP
// connection that stays up (a front end restarted) and answers every
// submit_sm ESME_RINVBNDSTS. The node holding the bind unbinds and binds
// again in its slot, and every message — those relayed from the other
// node and its own — is delivered once, none rejected. Before, a relayed
// segment's ESME_RINVBNDSTS went back to its owner as the SMSC's verdict,
// and the owner rejected the message for good.
func TestClusterBindLostIsRebound(t *testing.T) {
	t.Parallel()
	const binds, n = 1, 5
	nodes, sim, _ := startCluster(t, 2, binds, smpp.SimOptions{DLRDelay: 20 * time.Millisecond}, writeClusterConfig)
	holder, relayer := nodes[0], nodes[1]
	waitCond(t, 10*time.Second, "one node counting the bind's slot", func() bool {
		return metricSum(t, nodes[0].proc, "qxtd_cluster_bind_slots_held")+metricSum(t, nodes[1].proc, "qxtd_cluster_bind_slots_held") == binds
	})
	if metricSum(t, relayer.proc, "qxtd_cluster_bind_slots_held") == binds {
		holder, relayer = relayer, holder
	}
	sink := newSink()
	conns := map[*clusterNode]*smpp.Conn{
		holder:  dialAs(t, holder.proc.smppAddr, "esme", "secret1", sink.handler()),
		relayer: dialAs(t, relayer.proc.smppAddr, "esme", "secret1", sink.handler()),
	}
	key := issueAPIKey(t, "http://"+holder.proc.httpAddr, "esme")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dests := map[string]bool{}
	for round, via := range []*clusterNode{relayer, holder} {
		// The SMSC forgets the bind; the node holding it learns only from
		// the next submit_sm's answer, so every segment below meets the
		// lost bind or the rebinding.
		if lost := sim.LoseBinds(); lost != binds {
			t.Fatalf("round %d: the SMSC forgot %d binds, want %d", round, lost, binds)
		}
		var ids []string
		for k := range n {
			dst := fmt.Sprintf("138%d%d0%05d", holder.id, round, k)
			id, err := submit(ctx, conns[via], dst, "through node "+fmt.Sprint(via.id))
			if err != nil {
				t.Fatalf("round %d: submit through node %d: %v", round, via.id, err)
			}
			ids = append(ids, id)
			dests[dst] = true
		}
		holder.proc.waitLog(t, lostBindLog, round, 20*time.Second)
		sink.waitAll(t, ids, 30*time.Second)
		for _, id := range ids {
			var m struct {
				State     string
				ErrorCode string `json:"error_code"`
			}
			code, body := postJSON(t, http.MethodGet, "http://"+holder.proc.httpAddr+"/v1/messages/"+id, key, "")
			if err := json.Unmarshal([]byte(body), &m); code != http.StatusOK || err != nil {
				t.Fatalf("message %s: %d %s", id, code, body)
			}
			if m.State != "delivered" {
				t.Errorf("round %d: message %s sent through node %d is %s (%s), want delivered", round, id, via.id, m.State, m.ErrorCode)
			}
		}
	}
	arrived := map[string]int{}
	for _, m := range sim.Received() {
		arrived[m.Dest]++
	}
	for dst := range dests {
		if arrived[dst] != 1 {
			t.Errorf("the SMSC took the message to %s %d times, want once", dst, arrived[dst])
		}
	}
	if _, peak := sim.Binds("up"); peak > binds {
		t.Errorf("the SMSC saw %d binds at once; the cluster holds %d", peak, binds)
	}
	if strings.Contains(relayer.proc.log(), lostBindLog) {
		t.Errorf("node %d, which holds no bind, logged a lost bind", relayer.id)
	}
	// The node with the bind counted the refusals and kept them: the
	// relayed segments went again on its new bind, their owner never
	// told of a lost bind that was not its own.
	const bindLost = `qxtd_upstream_submit_errors_total{kind="bind_lost"`
	if got := metricSum(t, holder.proc, bindLost); got < 2 {
		t.Errorf("node %d counted %v submit_sm refused for the lost bind, want one a round at least", holder.id, got)
	}
	if got := metricSum(t, relayer.proc, bindLost); got != 0 {
		t.Errorf("node %d was answered ESME_RINVBNDSTS for %v relayed segments, want none (the peer tries again itself)", relayer.id, got)
	}
}

package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster"
	"github.com/qxtd/qxtd/gateway"
)

// A peer at its bound of relays in flight (503 marked busy) has a bind:
// the segment waits a moment and goes through it, instead of coming back
// as "no bind anywhere" (which makes it wait a second). A peer with no
// bind (503 unmarked) is passed over at once.
func TestRelaySubmitWaitsForBusyPeer(t *testing.T) {
	var calls atomic.Int64
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= 3 {
			w.Header().Set("Qxtd-Peer-Busy", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":0,"message_id":"smsc-7"}`))
	}))
	t.Cleanup(busy.Close)
	var noBindCalls atomic.Int64
	noBind := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		noBindCalls.Add(1)
		http.Error(w, "no bind of the upstream", http.StatusServiceUnavailable)
	}))
	t.Cleanup(noBind.Close)

	members := []cluster.Member{{ID: 1, PeerURL: "http://127.0.0.1:1"}, {ID: 2, PeerURL: noBind.URL}, {ID: 3, PeerURL: busy.URL}}
	r := &clusterSubmitRelay{self: 1, members: func() []cluster.Member { return members },
		client: cluster.NewPeerClient(1, []byte("secret"), nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	st, id, err := r.RelaySubmit(ctx, "up", []byte("a submit_sm"))
	if err != nil || st != 0 || id != "smsc-7" {
		t.Fatalf("RelaySubmit = %d %q %v, want 0 smsc-7 through the busy peer", st, id, err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("the busy peer was asked %d times, want 4 (three busy answers, then the relay)", n)
	}
	if d := time.Since(start); d >= time.Second {
		t.Errorf("took %v: waited like a segment with no bind anywhere", d)
	}

	// No node with a bind: ErrNoRelay after one round, no waiting.
	members = members[:2]
	before := noBindCalls.Load()
	if _, _, err := r.RelaySubmit(ctx, "up", []byte("a submit_sm")); !errors.Is(err, gateway.ErrNoRelay) {
		t.Fatalf("no bind anywhere: %v, want ErrNoRelay", err)
	}
	if n := noBindCalls.Load() - before; n != 1 {
		t.Errorf("the node without a bind was asked %d times, want 1", n)
	}
}

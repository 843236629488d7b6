package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qxtd/qxtd/queue"
)

// holding is a policy whose enterprise E1 is disabled (its held messages
// not dropped), or enabled.
type holding struct {
	StaticAccounts
	enabled bool
}

func (h holding) Held(fn func(string, time.Time)) {
	if !h.enabled {
		fn("E1", time.Time{})
	}
}

// TestExpireHeldGoesOn: housekeeping looks at expireHeldScan of a disabled
// enterprise's waiting parts a run, and the next run goes on from there:
// parts past their validity behind more than a run's worth of valid ones
// are expired at the second run, and the third begins again at the first.
func TestExpireHeldGoesOn(t *testing.T) {
	store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	g, err := New(Config{Upstreams: []UpstreamConfig{{Name: "sim", Addr: "127.0.0.1:1"}}}, store, holding{},
		prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const valid, expired = expireHeldScan, 500
	var msgs []*queue.Message
	for i := range valid + expired {
		// Due in this order: the valid ones first.
		m := &queue.Message{Account: "alice", Enterprise: "E1", Upstream: "sim", Source: "10657", Dest: fmt.Sprintf("137%08d", i),
			DataCoding: 8, Text: "x", AcceptedAt: now.Add(-2 * time.Hour), ValidUntil: now.Add(time.Hour),
			Parts: []queue.Part{{Body: []byte{0, 1}, DueAt: now.Add(-2*time.Hour + time.Duration(i)*time.Millisecond)}}}
		if i >= valid {
			m.ValidUntil = now.Add(-time.Minute)
		}
		msgs = append(msgs, m)
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := store.Enqueue(context.Background(), msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
	expiredNow := func() float64 { return testutil.ToFloat64(g.metrics.heldExpired) }
	for run, want := range []float64{0, expired, expired} {
		g.settleHeld(context.Background(), now)
		if got := expiredNow(); got != want {
			t.Errorf("after run %d: %v parts expired, want %v", run+1, got, want)
		}
		if atEnd := g.heldAfter["E1"] == nil; atEnd != (run > 0) {
			t.Errorf("after run %d: at the end %v", run+1, atEnd)
		}
	}
	g.heldAfter["E1"] = []byte("x")
	g.policy = holding{enabled: true} // where to go on is forgotten
	g.settleHeld(context.Background(), now)
	if len(g.heldAfter) != 0 {
		t.Errorf("E1 enabled: %v kept", g.heldAfter)
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAbandonedSubmitIsNoStoreError: a submission whose context ended
// (the ESME disconnected with messages in flight) is neither an ERROR line
// nor a store_error refusal.
func TestAbandonedSubmitIsNoStoreError(t *testing.T) {
	store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	var logs lockedBuffer
	reg := prometheus.NewRegistry()
	gw, err := gateway.New(gateway.Config{Upstreams: []gateway.UpstreamConfig{{Name: "up", Addr: "127.0.0.1:1", Binds: 1, Window: 1}}},
		store, gateway.StaticAccounts{"esme": {Password: "pw"}}, reg,
		slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	acct, err := gateway.StaticAccounts{"esme": {Password: "pw"}}.Authenticate("esme", "pw")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		_, err := gw.Send(ctx, acct, gateway.SendRequest{Ingress: "smpp", Text: "hello", Dests: []string{"13712345678"}})
		if !errors.Is(err, context.Canceled) || errors.Is(err, gateway.ErrStore) {
			t.Fatalf("Send = %v, want context.Canceled and not ErrStore", err)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("abandoned submissions logged errors:\n%s", logs.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "qxtd_messages_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("qxtd_messages_refused_total%v = %v, want 0", m.GetLabel(), v)
			}
		}
	}
}

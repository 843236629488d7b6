package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// cutAtJoin owns every reply for E1 and, armed, ends the SMSC's
// connection (cancels its context) when the join asks who owns the
// reply: after the last part's commit, before the join's.
type cutAtJoin struct {
	StaticAccounts
	mu  sync.Mutex
	cut context.CancelFunc
}

func (p *cutAtJoin) ReplyTo(string) (policy.ReplyOwner, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut != nil {
		p.cut()
		p.cut = nil
	}
	return policy.ReplyOwner{Enterprise: "E1"}, true
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestReplyJoinNotCutByTheConnection: the SMSC's connection ends (its
// context cancelled) between the commit of a long reply's last part and
// the join: the reply is joined all the same, nothing logged at error
// level. Before, the join failed with the connection's context ("join a
// reply's parts: joined later", context canceled, an error line under
// TestSoakTwoWayFaults' connection cuts) and the whole reply waited for
// the part to come again or for housekeeping.
func TestReplyJoinNotCutByTheConnection(t *testing.T) {
	store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	var logs syncBuffer
	pol := &cutAtJoin{StaticAccounts: StaticAccounts{}}
	g, err := New(Config{Upstreams: []UpstreamConfig{{Name: "sim", Addr: "127.0.0.1:1"}}}, store, pol,
		prometheus.NewRegistry(), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	part := func(ctx context.Context, seq byte, text string) pdu.Body {
		p := smpp.NewDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10657500112", ESMClass: 0x40,
			ShortMessage: append([]byte{5, 0, 3, 9, 2, seq}, text...)})
		return g.receiveMO(ctx, "sim", p, smpp.NewDeliverSMResp())
	}
	if resp := part(context.Background(), 1, "joined though "); resp == nil || resp.Header().Status != 0 {
		t.Fatalf("first part answered %v", resp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pol.mu.Lock()
	pol.cut = cancel
	pol.mu.Unlock()
	part(ctx, 2, "the connection ended")
	if ctx.Err() == nil {
		t.Fatal("the join never asked who owns the reply: the test cut nothing")
	}
	in, _, err := store.Inbox("E1", queue.InboxFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Text != "joined though the connection ended" {
		t.Errorf("inbox %+v, want the reply joined", in)
	}
	if n, _, err := store.MOPartsPending("sim"); err != nil || n != 0 {
		t.Errorf("%d parts pending (%v), want 0", n, err)
	}
	if bytes.Contains([]byte(logs.String()), []byte(`"level":"ERROR"`)) {
		t.Errorf("logged at error level:\n%s", logs.String())
	}
}

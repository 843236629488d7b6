package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
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
		return g.receiveMO(ctx, nil, "sim", p, smpp.NewDeliverSMResp())
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

// ownerIs is MOPartPeers that names owner for every group (ok false:
// this node) and hands parts to the gateway to (nil: fails).
type ownerIs struct {
	owner Peer
	ok    bool
	to    *Gateway
	sent  int
}

func (o *ownerIs) MOPartOwner(queue.MOPartGroup) (Peer, bool) { return o.owner, o.ok }

func (o *ownerIs) ForwardMOPart(ctx context.Context, _ Peer, p PeerMOPart) error {
	o.sent++
	if o.to == nil {
		return context.DeadlineExceeded
	}
	return o.to.StorePeerMOPart(ctx, p)
}

// newPartsGateway is a gateway on its own store whose replies are E1's,
// with mp as its MOPartPeers and at most maxParts parts waiting.
func newPartsGateway(t *testing.T, mp MOPartPeers, maxParts int) (*Gateway, *queue.Store) {
	t.Helper()
	store, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	g, err := New(Config{Upstreams: []UpstreamConfig{{Name: "sim", Addr: "127.0.0.1:1"}}, MOPartPeers: mp, MOReassemblyMaxParts: maxParts},
		store, &cutAtJoin{StaticAccounts: StaticAccounts{}}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, store
}

func inboxTexts(t *testing.T, s *queue.Store) []string {
	t.Helper()
	in, _, err := s.Inbox("E1", queue.InboxFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range in {
		out = append(out, m.Text)
	}
	return out
}

// The parts of a reply received on two nodes are joined on the owner:
// each answered OK once the owner stored it, nothing stored where they
// came. A part the owner cannot take is kept where it came. A part past
// the owner's cap is stored there as a reply of its own; one of a reply
// joined lately is answered and not stored.
func TestReplyPartsHandedToOwner(t *testing.T) {
	owner, ownerStore := newPartsGateway(t, nil, 3)
	mp := &ownerIs{owner: Peer{ID: 2, URL: "http://owner"}, ok: true, to: owner}
	a, aStore := newPartsGateway(t, mp, 0)
	b, bStore := newPartsGateway(t, mp, 0)
	part := func(g *Gateway, ref, seq byte, text string) {
		t.Helper()
		p := smpp.NewDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10657500112", ESMClass: 0x40,
			ShortMessage: append([]byte{5, 0, 3, ref, 2, seq}, text...)})
		if resp := g.receiveMO(context.Background(), nil, "sim", p, smpp.NewDeliverSMResp()); resp == nil || resp.Header().Status != 0 {
			t.Fatalf("part %d of ref %d answered %v", seq, ref, resp)
		}
	}
	part(a, 1, 2, "world")
	part(b, 1, 1, "hello ")
	part(a, 1, 2, "world") // sent again: the owner joined it lately
	if got := inboxTexts(t, ownerStore); len(got) != 1 || got[0] != "hello world" {
		t.Fatalf("the owner's inbox %q, want the reply joined", got)
	}
	// A binary reply (a WAP push) with its parts on two nodes: joined at
	// the owner as the handset sent it, coding, UDH ports and port TLV
	// kept.
	binary := func(g *Gateway, seq byte, data ...byte) {
		t.Helper()
		p := smpp.NewDeliverSM(smpp.SM{SourceAddr: "13712345678", DestinationAddr: "10657500112", ESMClass: 0x40, DataCoding: 0x04,
			ShortMessage: append([]byte{11, 5, 4, 0x0B, 0x84, 0x23, 0xF0, 0, 3, 0x77, 2, seq}, data...),
			TLVs:         []smpp.TLVField{{Tag: pdutlv.TagDestinationPort, Value: []byte{0x0B, 0x84}}}})
		if resp := g.receiveMO(context.Background(), nil, "sim", p, smpp.NewDeliverSMResp()); resp == nil || resp.Header().Status != 0 {
			t.Fatalf("binary part %d answered %v", seq, resp)
		}
	}
	binary(b, 2, 0xFF)
	binary(a, 1, 0x00, 0x01)
	if list, _, err := ownerStore.Inbox("E1", queue.InboxFilter{}, 0, 10); err != nil || len(list) != 2 ||
		!bytes.Equal(list[0].Binary, []byte{0x00, 0x01, 0xFF}) || list[0].DataCoding != 0x04 || !bytes.Equal(list[0].UDH, []byte{6, 5, 4, 0x0B, 0x84, 0x23, 0xF0}) ||
		list[0].SourcePort != nil || list[0].DestPort == nil || *list[0].DestPort != 2948 {
		t.Fatalf("the owner's inbox %+v (%v), want the binary reply joined", list, err)
	}
	for _, s := range []*queue.Store{aStore, bStore} {
		if n, _, _ := s.MOPartsPending("sim"); n != 0 || len(inboxTexts(t, s)) != 0 {
			t.Fatalf("a node that handed its parts over holds %d parts, replies %q", n, inboxTexts(t, s))
		}
	}
	// The owner's cap (3 parts waiting): the 4th part is a reply of its own there.
	for ref := byte(2); ref <= 5; ref++ {
		part(a, ref, 1, "first half "+string('0'+ref))
	}
	if got := inboxTexts(t, ownerStore); len(got) != 3 || got[0] != "first half 5" {
		t.Fatalf("the owner's inbox %q, want the part past its cap as a reply of its own", got)
	}
	if n, _, _ := ownerStore.MOPartsPending("sim"); n != 3 {
		t.Fatalf("the owner holds %d parts, want 3", n)
	}
	// The owner does not take it: kept here, joined here when whole.
	mp.to = nil
	part(a, 9, 1, "kept ")
	part(a, 9, 2, "here")
	if got := inboxTexts(t, aStore); len(got) != 1 || got[0] != "kept here" {
		t.Fatalf("inbox of the node that kept its parts %q", got)
	}
	if mp.sent != 11 {
		t.Errorf("%d parts handed over, want 11", mp.sent)
	}
	// A node that is the owner stores its parts without asking anyone.
	mp.ok = false
	part(b, 10, 1, "mine")
	if mp.sent != 11 {
		t.Errorf("a part of this node's own reply was handed over")
	}
	if err := owner.StorePeerMOPart(context.Background(), PeerMOPart{Upstream: "sim", Total: 2, Seq: 3}); err == nil {
		t.Error("a part 3 of 2 was taken")
	}
}

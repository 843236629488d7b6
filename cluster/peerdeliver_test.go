package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
)

// deliveringBackend is a recordingBackend that also takes deliveries:
// those for account "bound" are delivered, the others have no bind.
type deliveringBackend struct {
	recordingBackend
	dmu   sync.Mutex
	got   []PeerDelivery
	nodes []uint16
}

func (b *deliveringBackend) Deliver(ctx context.Context, ds []PeerDelivery) ([]PeerDeliveryResult, error) {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	b.got = append(b.got, ds...)
	b.nodes = append(b.nodes, PeerNode(ctx))
	out := make([]PeerDeliveryResult, len(ds))
	for i, d := range ds {
		out[i] = PeerNoBind
		if d.Account == "bound" {
			out[i] = PeerDelivered
		}
	}
	return out, nil
}

var _ PeerDeliverer = (*deliveringBackend)(nil)

func TestPeerDeliver(t *testing.T) {
	port0, port9204 := uint16(0), uint16(9204)
	b := &deliveringBackend{}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(4, secret, nil)
	done := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ds := []PeerDelivery{
		{Kind: DeliveryReceipt, Enterprise: "E", Account: "bound", Source: "13700000000", Dest: "1069", DestTON: 1,
			ReceiptID: "42", Sub: 1, Dlvrd: 1, SubmitDate: done.Add(-time.Minute), DoneDate: done, State: 2, Err: "000", Text: "hi"},
		{Kind: DeliveryMO, Enterprise: "E", Source: "13700000000", Dest: "106575001", Text: "你好"},
		{Kind: DeliveryMO, Enterprise: "E", Account: "bound", Source: "13700000000", Dest: "106575001", MOID: 1<<48 | 7,
			Octets: true, Binary: []byte{0, 1, 0xFF}, DataCoding: 0xF5, UDH: []byte{6, 5, 4, 0x23, 0xF4, 0, 0}, SourcePort: &port0, DestPort: &port9204},
	}
	res, err := c.Deliver(t.Context(), srv.URL, ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0] != PeerDelivered || res[1] != PeerNoBind || res[2] != PeerDelivered {
		t.Errorf("results %v", res)
	}
	// A binary reply keeps its octets, coding, UDH, ports and id.
	if !reflect.DeepEqual(b.got, ds) || b.nodes[0] != 4 {
		t.Errorf("backend got %+v from %v", b.got, b.nodes)
	}
	if _, err := c.Deliver(t.Context(), srv.URL, make([]PeerDelivery, PeerMaxDeliveries+1)); err == nil {
		t.Error("an oversize batch was sent")
	}
}

// TestPeerDeliverNotServed: a backend without deliveries answers 501, and
// the client reports it as an error (the sender keeps them).
func TestPeerDeliverNotServed(t *testing.T) {
	srv, _ := newPeerServer(t)
	_, err := NewPeerClient(4, secret, nil).Deliver(t.Context(), srv.URL, []PeerDelivery{{Kind: DeliveryMO}})
	if !isStatus(err, http.StatusNotImplemented) {
		t.Errorf("got %v, want 501", err)
	}
}

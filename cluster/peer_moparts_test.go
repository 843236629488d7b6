package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// moPartBackend stores reply parts in memory, or blocks them until
// release is closed.
type moPartBackend struct {
	recordingBackend
	mu      sync.Mutex
	parts   []PeerMOPart
	from    []uint16
	entered chan struct{} // nil: do not block
	release chan struct{}
}

func (b *moPartBackend) StoreMOPart(ctx context.Context, p PeerMOPart) error {
	if b.entered != nil {
		b.entered <- struct{}{}
		<-b.release
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.parts = append(b.parts, p)
	b.from = append(b.from, PeerNode(ctx))
	return nil
}

// busySeen is a RoundTripper that signals each 503 busy answer.
type busySeen struct {
	rt   http.RoundTripper
	seen chan<- struct{}
}

func (b busySeen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(r)
	if err == nil && resp.Header.Get(peerBusyHeader) != "" {
		select {
		case b.seen <- struct{}{}:
		default:
		}
	}
	return resp, err
}

func TestPeerMOPart(t *testing.T) {
	b := &moPartBackend{}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(3, secret, srv.Client())
	ctx := context.Background()
	p := PeerMOPart{Upstream: "up", Source: "13712345678", Dest: "106590112", Ref: 0x1234, Total: 2, Seq: 2,
		Coding: 8, Data: []byte{0x8b, 0xa2}, SourceTON: 1, SourceNPI: 1, ReceivedAt: time.Unix(1_700_000_000, 5).UTC()}
	if err := c.ForwardMOPart(ctx, srv.URL, p); err != nil {
		t.Fatal(err)
	}
	if len(b.parts) != 1 || !b.parts[0].ReceivedAt.Equal(p.ReceivedAt) || !bytes.Equal(b.parts[0].Data, p.Data) ||
		b.parts[0].Ref != p.Ref || b.parts[0].Seq != 2 || b.from[0] != 3 {
		t.Fatalf("the owner stored %+v from %v, want %+v from node 3", b.parts, b.from, p)
	}
	// A binary part's coding, UDH and port TLVs go with it.
	bin := p
	dst := uint16(2948)
	bin.Seq, bin.Binary, bin.DataCoding, bin.UDH, bin.DestPort = 1, true, 0xF5, []byte{6, 5, 4, 0x0B, 0x84, 0x23, 0xF0}, &dst
	if err := c.ForwardMOPart(ctx, srv.URL, bin); err != nil {
		t.Fatal(err)
	}
	if got := b.parts[1]; !got.Binary || got.DataCoding != 0xF5 || !bytes.Equal(got.UDH, bin.UDH) || got.SourcePort != nil || got.DestPort == nil || *got.DestPort != 2948 {
		t.Fatalf("the owner stored %+v, want %+v", got, bin)
	}
	// A failed store is an error: the forwarding node keeps the part.
	b.fail = errors.New("disk full")
	if err := c.ForwardMOPart(ctx, srv.URL, p); !isStatus(err, http.StatusInternalServerError) {
		t.Fatalf("a failed store: %v, want 500", err)
	}
	b.fail = nil
	for _, bad := range []PeerMOPart{{Upstream: "", Total: 2, Seq: 1}, {Upstream: "up", Total: 2, Seq: 3}, {Upstream: "up", Total: 1, Seq: 1}} {
		if err := c.ForwardMOPart(ctx, srv.URL, bad); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("part %+v: %v, want 400", bad, err)
		}
	}
	big := p
	big.Data = make([]byte, PeerMaxMOPartData+1)
	if err := c.ForwardMOPart(ctx, srv.URL, big); !isStatus(err, http.StatusRequestEntityTooLarge) {
		t.Fatalf("data over PeerMaxMOPartData: %v, want 413", err)
	}
	huge := p
	huge.Data = make([]byte, PeerMaxMOPartBody)
	if err := c.ForwardMOPart(ctx, srv.URL, huge); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a body over PeerMaxMOPartBody is not sent: %v", err)
	}
	// A wrong secret stores nothing; a backend without parts answers 501.
	if err := NewPeerClient(3, []byte("another secret"), srv.Client()).ForwardMOPart(ctx, srv.URL, p); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("wrong secret: %v, want 401", err)
	}
	plain := httptest.NewServer(PeerHandler(secret, &recordingBackend{}, nil))
	t.Cleanup(plain.Close)
	if err := c.ForwardMOPart(ctx, plain.URL, p); !isStatus(err, http.StatusNotImplemented) {
		t.Fatalf("backend without parts: %v, want 501", err)
	}
	if len(b.parts) != 2 {
		t.Fatalf("%d parts stored, want 2", len(b.parts))
	}
}

// Reply parts have their own pool: with every place of the others taken
// they are served, PeerMaxMOPartInFlight at once, and one more is busy.
// A body over PeerMaxMOPartBody is 413 before it is read.
func TestPeerMOPartBound(t *testing.T) {
	b := &moPartBackend{entered: make(chan struct{}, PeerMaxMOPartInFlight), release: make(chan struct{})}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	release := sync.OnceFunc(func() { close(b.release) })
	t.Cleanup(release) // before srv.Close: a failed test leaves no request blocked
	busy := make(chan struct{}, 100)
	hc := &http.Client{Transport: busySeen{&http.Transport{MaxIdleConnsPerHost: 2 * PeerMaxMOPartInFlight}, busy}}
	t.Cleanup(hc.CloseIdleConnections)
	c := NewPeerClient(2, secret, hc)
	ctx := context.Background()
	errs := make(chan error, PeerMaxMOPartInFlight)
	for i := range PeerMaxMOPartInFlight {
		go func() {
			errs <- c.ForwardMOPart(ctx, srv.URL, PeerMOPart{Upstream: "up", Source: strconv.Itoa(i), Total: 2, Seq: 1, Data: []byte("x")})
		}()
	}
	deadline := time.After(20 * time.Second)
	for i := range PeerMaxMOPartInFlight {
		select {
		case <-b.entered:
		case <-deadline:
			t.Fatalf("%d of %d parts reached the backend", i, PeerMaxMOPartInFlight)
		}
	}
	// One more is asked again until its deadline: busy.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := c.ForwardMOPart(short, srv.URL, PeerMOPart{Upstream: "up", Total: 2, Seq: 1})
	cancel()
	if !errors.Is(err, ErrPeerBusy) {
		t.Fatalf("part %d while %d are served: %v, want ErrPeerBusy", PeerMaxMOPartInFlight+1, PeerMaxMOPartInFlight, err)
	}
	// With time to wait, it is stored once a place frees.
	for len(busy) > 0 {
		<-busy
	}
	waited := make(chan error, 1)
	go func() {
		waited <- c.ForwardMOPart(ctx, srv.URL, PeerMOPart{Upstream: "up", Source: "waited", Total: 2, Seq: 1})
	}()
	select {
	case <-busy: // refused once at least: it waits
	case <-deadline:
		t.Fatal("the part that waits was never refused busy")
	}
	release()
	for range PeerMaxMOPartInFlight {
		if err := <-errs; err != nil {
			t.Errorf("a part within the bound: %v", err)
		}
	}
	if err := <-waited; err != nil {
		t.Fatalf("a part that waited for a place: %v", err)
	}
	if n := len(b.parts); n != PeerMaxMOPartInFlight+1 {
		t.Fatalf("%d parts stored, want %d", n, PeerMaxMOPartInFlight+1)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/peer/v1/moparts", bytes.NewReader(make([]byte, PeerMaxMOPartBody+1)))
	req.Header.Set("Authorization", "QXTD-HMAC 2:"+strconv.FormatInt(time.Now().Unix(), 10)+":"+strings.Repeat("0", 64))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("part body of %d bytes: %d, want 413", PeerMaxMOPartBody+1, resp.StatusCode)
	}
}

// MOPartOwner names one member per key whatever the order of the members,
// spreads keys over them, and when a member leaves moves only the keys it
// held.
func TestMOPartOwner(t *testing.T) {
	three := []Member{{ID: 1}, {ID: 2}, {ID: 3}}
	reversed := []Member{{ID: 3}, {ID: 2}, {ID: 1}}
	two := []Member{{ID: 1}, {ID: 3}}
	if _, ok := MOPartOwner(nil, "k"); ok {
		t.Fatal("an owner among no members")
	}
	count := map[uint16]int{}
	const keys = 3000
	for i := range keys {
		k := MOPartKey("up", fmt.Sprintf("1371234%04d", i), "106590112", uint16(i), 2)
		o, ok := MOPartOwner(three, k)
		r, _ := MOPartOwner(reversed, k)
		if !ok || o.ID != r.ID {
			t.Fatalf("key %d: owner %d, %d with the members reversed", i, o.ID, r.ID)
		}
		count[o.ID]++
		o2, _ := MOPartOwner(two, k)
		if o.ID != 2 && o2.ID != o.ID {
			t.Fatalf("key %d moved from node %d to %d when node 2 left", i, o.ID, o2.ID)
		}
	}
	for id, n := range count {
		if n < keys/3-keys/10 || n > keys/3+keys/10 {
			t.Errorf("node %d owns %d of %d keys: %v", id, n, keys, count)
		}
	}
	if MOPartKey("a", "b", "c", 1, 2) == MOPartKey("a", "b", "c", 1, 3) {
		t.Fatal("keys of two groups are equal")
	}
}

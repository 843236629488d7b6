package cluster

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relayBackend relays for upstream "up" only, recording what it sent.
type relayBackend struct {
	recordingBackend
	sent [][]byte
}

func (b *relayBackend) Relay(_ context.Context, upstream string, pdu []byte) (uint32, string, error) {
	if upstream != "up" {
		return 0, "", ErrPeerNoBind
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, bytes.Clone(pdu))
	if bytes.Equal(pdu, []byte("throttle me")) {
		return 0x58, "", nil // ESME_RTHROTTLED: the SMSC's answer, passed on
	}
	return 0, "smsc-1", nil
}

func TestPeerRelay(t *testing.T) {
	b := &relayBackend{}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())
	ctx := context.Background()

	st, id, err := c.Relay(ctx, srv.URL, "up", []byte("a submit_sm frame"))
	if err != nil || st != 0 || id != "smsc-1" {
		t.Fatalf("relay = %d %q %v; want 0 smsc-1", st, id, err)
	}
	if len(b.sent) != 1 || string(b.sent[0]) != "a submit_sm frame" {
		t.Fatalf("the peer sent %q", b.sent)
	}
	if st, _, err := c.Relay(ctx, srv.URL, "up", []byte("throttle me")); err != nil || st != 0x58 {
		t.Fatalf("an SMSC refusal comes back as its status: %#x %v", st, err)
	}
	if _, _, err := c.Relay(ctx, srv.URL, "other", []byte("x")); !errors.Is(err, ErrPeerNoBind) {
		t.Fatalf("no bind of the upstream: %v, want ErrPeerNoBind", err)
	}
	if _, _, err := c.Relay(ctx, srv.URL, "up", make([]byte, PeerMaxPDU+1)); !isStatus(err, http.StatusRequestEntityTooLarge) {
		t.Fatalf("oversize pdu: %v, want 413", err)
	}
	// A wrong secret sends nothing.
	bad := NewPeerClient(2, []byte("not the cluster's secret"), srv.Client())
	if _, _, err := bad.Relay(ctx, srv.URL, "up", []byte("x")); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("wrong secret: %v, want 401", err)
	}
	if len(b.sent) != 2 {
		t.Fatalf("%d frames sent, want 2", len(b.sent))
	}
}

// A node whose backend does not relay answers 404, which the client
// reports as an error, not as "no bind" (the caller must not treat the
// node as a relay at all).
func TestPeerRelayUnsupported(t *testing.T) {
	srv, _ := newPeerServer(t)
	c := NewPeerClient(2, secret, srv.Client())
	_, _, err := c.Relay(context.Background(), srv.URL, "up", []byte("x"))
	if !isStatus(err, http.StatusNotFound) {
		t.Fatalf("relay to a non-relaying node: %v, want 404", err)
	}
}

// blockingRelay holds every relay until released.
type blockingRelay struct {
	blockingBackend
	relayEntered chan struct{}
}

func (b *blockingRelay) Relay(ctx context.Context, _ string, _ []byte) (uint32, string, error) {
	b.relayEntered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
	return 0, "smsc-1", nil
}

// Relays have their own bound, apart from the other requests: with every
// slot of the others taken, relays are still served, PeerMaxRelayInFlight
// of them at once; one more is refused as busy (ErrPeerBusy: try again),
// not as "no bind" (which would send the segment elsewhere or make it
// wait a second).
func TestPeerRelayBound(t *testing.T) {
	b := &blockingRelay{blockingBackend: blockingBackend{entered: make(chan struct{}, PeerMaxInFlight), release: make(chan struct{})},
		relayEntered: make(chan struct{}, PeerMaxRelayInFlight)}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	// A client with enough connections for every request of the test.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * PeerMaxRelayInFlight}}
	t.Cleanup(hc.CloseIdleConnections)
	c := NewPeerClient(2, secret, hc)
	ctx := context.Background()
	rs := []PeerReceipt{{Upstream: "up", SMSCID: "a1", State: "delivered", DoneAt: time.Unix(1_700_000_000, 0)}}
	errs := make(chan error, PeerMaxInFlight+PeerMaxRelayInFlight)
	for range PeerMaxInFlight {
		go func() {
			_, err := c.PushReceipts(ctx, srv.URL, rs)
			errs <- err
		}()
	}
	for range PeerMaxRelayInFlight {
		go func() {
			_, _, err := c.Relay(ctx, srv.URL, "up", []byte("x"))
			errs <- err
		}()
	}
	deadline := time.After(20 * time.Second)
	for range PeerMaxInFlight {
		select {
		case <-b.entered:
		case <-deadline:
			t.Fatal("the receipts requests did not reach the backend")
		}
	}
	for i := range PeerMaxRelayInFlight {
		select {
		case <-b.relayEntered:
		case <-deadline:
			t.Fatalf("%d of %d relays reached the backend beside %d other requests", i, PeerMaxRelayInFlight, PeerMaxInFlight)
		}
	}
	if _, _, err := c.Relay(ctx, srv.URL, "up", []byte("x")); !errors.Is(err, ErrPeerBusy) {
		t.Fatalf("relay %d while %d are served: %v, want ErrPeerBusy", PeerMaxRelayInFlight+1, PeerMaxRelayInFlight, err)
	}
	if _, err := c.PushReceipts(ctx, srv.URL, rs); !isStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("receipts request %d: %v, want 503", PeerMaxInFlight+1, err)
	}
	close(b.release)
	for range PeerMaxInFlight + PeerMaxRelayInFlight {
		if err := <-errs; err != nil {
			t.Errorf("a request within the bounds: %v", err)
		}
	}
	// A relay body is bounded apart too: one over PeerMaxRelayBody is 413
	// before it is read.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/peer/v1/relay", bytes.NewReader(make([]byte, PeerMaxRelayBody+1)))
	req.Header.Set("Authorization", "QXTD-HMAC 2:"+strconv.FormatInt(time.Now().Unix(), 10)+":"+strings.Repeat("0", 64))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("relay body of %d bytes: %d, want 413", PeerMaxRelayBody+1, resp.StatusCode)
	}
}

// The default peer client keeps its connections and has at most
// PeerConnsPerNode open to a node: 1,280 relays, 128 at a time, open at
// most that many at once, and dial hardly more (http.DefaultClient kept
// two idle and had no cap, so nearly every relay beyond two in flight
// dialled anew: 1,042 connections). The count is the client's own, at
// its dialer: the server learns of a closed connection later than the
// client may dial its replacement.
func TestPeerClientKeepAlive(t *testing.T) {
	srv := httptest.NewServer(PeerHandler(secret, &relayBackend{}, nil))
	t.Cleanup(srv.Close)
	hc := NewPeerHTTPClient()
	tr := hc.Transport.(*http.Transport)
	var dials, open, peak atomic.Int64
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		dials.Add(1)
		n := open.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		return &countedConn{Conn: nc, open: &open}, nil
	}
	c := NewPeerClient(2, secret, hc)
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for range 10 {
				if _, _, err := c.Relay(context.Background(), srv.URL, "up", []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := peak.Load(); n > PeerConnsPerNode {
		t.Errorf("%d connections open at once for 1,280 relays 128 at a time, want at most %d", n, PeerConnsPerNode)
	}
	if n := dials.Load(); n > 2*PeerConnsPerNode {
		t.Errorf("%d connections dialled for 1,280 relays 128 at a time: not kept alive (want at most %d)", n, 2*PeerConnsPerNode)
	}
}

// countedConn counts itself out of open when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

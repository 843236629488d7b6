package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
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

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recordingBackend is a PeerBackend that knows a fixed set of SMSC ids
// and records what it was asked.
type recordingBackend struct {
	mu       sync.Mutex
	known    map[string]PeerResult // smsc id → result
	got      []PeerReceipt
	nodes    []uint16
	messages map[string]json.RawMessage // enterprise/id → message
	fail     error
	changes  []string               // "cancel id system_id/enterprise", "replace id …"
	outcomes map[uint64]PeerOutcome // id → outcome of a cancel or replace (none: not_found)
}

func (b *recordingBackend) change(op string, id uint64, acct PeerAccount, extra string) (PeerOutcome, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return PeerOutcome{}, b.fail
	}
	b.changes = append(b.changes, fmt.Sprintf("%s %d %s/%s%s", op, id, acct.SystemID, acct.Enterprise, extra))
	if out, ok := b.outcomes[id]; ok {
		return out, nil
	}
	return PeerOutcome{Result: "not_found"}, nil
}

func (b *recordingBackend) Cancel(_ context.Context, id uint64, acct PeerAccount) (PeerOutcome, error) {
	return b.change("cancel", id, acct, "")
}

func (b *recordingBackend) Replace(_ context.Context, id uint64, req PeerReplace) (PeerOutcome, error) {
	return b.change("replace", id, req.Account, fmt.Sprintf(" %s %q", req.SendAt.UTC().Format(time.RFC3339), req.Text))
}

func (b *recordingBackend) MatchReceipts(ctx context.Context, rs []PeerReceipt) ([]PeerResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	b.got = append(b.got, rs...)
	b.nodes = append(b.nodes, PeerNode(ctx))
	out := make([]PeerResult, len(rs))
	for i, r := range rs {
		out[i] = PeerUnknown
		if res, ok := b.known[r.SMSCID]; ok {
			out[i] = res
		}
	}
	return out, nil
}

func (b *recordingBackend) Message(_ context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	m, ok := b.messages[fmt.Sprintf("%s/%d", enterprise, id)]
	if !ok {
		return nil, ErrPeerNotFound
	}
	return m, nil
}

// QueryMessage also knows the fragment "ent/281474976710658".
func (b *recordingBackend) QueryMessage(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error) {
	if enterprise == "ent" && id == 281474976710658 {
		return json.RawMessage(`{"id":281474976710658,"fragment":true}`), nil
	}
	return b.Message(ctx, enterprise, id)
}

var _ PeerBackend = (*recordingBackend)(nil)

var secret = []byte("s3cret-shared-by-all-nodes")

func newPeerServer(t *testing.T) (*httptest.Server, *recordingBackend) {
	t.Helper()
	b := &recordingBackend{
		known:    map[string]PeerResult{"a1": PeerMatched, "a2": PeerDuplicate},
		messages: map[string]json.RawMessage{"ent/281474976710657": json.RawMessage(`{"id":281474976710657}`)},
	}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	return srv, b
}

func TestPeerReceipts(t *testing.T) {
	srv, b := newPeerServer(t)
	c := NewPeerClient(2, secret, srv.Client())
	done := time.Unix(1_800_000_000, 0).UTC()
	rs := []PeerReceipt{
		{Upstream: "cmcc", SMSCID: "a1", State: "delivered", DoneAt: done},
		{Upstream: "cmcc", SMSCID: "a2", State: "expired", Err: "001", DoneAt: done},
		{Upstream: "cmcc", SMSCID: "zz", State: "delivered", DoneAt: done},
	}
	res, err := c.PushReceipts(t.Context(), srv.URL, rs)
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerResult{PeerMatched, PeerDuplicate, PeerUnknown}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", res, want)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) != 3 || b.got[1] != rs[1] {
		t.Errorf("backend got %+v", b.got)
	}
	if len(b.nodes) != 1 || b.nodes[0] != 2 {
		t.Errorf("PeerNode: %v", b.nodes)
	}
}

func TestPeerMessage(t *testing.T) {
	srv, _ := newPeerServer(t)
	c := NewPeerClient(2, secret, srv.Client())
	m, err := c.Message(t.Context(), srv.URL+"/", "ent", 281474976710657)
	if err != nil || string(m) != `{"id":281474976710657}` {
		t.Fatalf("message: %s, %v", m, err)
	}
	for _, tc := range []struct {
		ent string
		id  uint64
	}{{"other", 281474976710657}, {"ent", 1}} {
		if _, err := c.Message(t.Context(), srv.URL, tc.ent, tc.id); !errors.Is(err, ErrPeerNotFound) {
			t.Errorf("%s/%d: %v, want ErrPeerNotFound", tc.ent, tc.id, err)
		}
	}
	if _, err := c.Message(t.Context(), srv.URL, "ent", 281474976710658); !errors.Is(err, ErrPeerNotFound) {
		t.Errorf("a fragment without fragments=1: %v", err)
	}
	if m, err := c.QueryMessage(t.Context(), srv.URL, "ent", 281474976710658); err != nil || string(m) != `{"id":281474976710658,"fragment":true}` {
		t.Errorf("QueryMessage of a fragment: %s, %v", m, err)
	}
	if m, err := c.QueryMessage(t.Context(), srv.URL, "ent", 281474976710657); err != nil || string(m) != `{"id":281474976710657}` {
		t.Errorf("QueryMessage of a message: %s, %v", m, err)
	}
}

func TestPeerBackendError(t *testing.T) {
	srv, b := newPeerServer(t)
	b.fail = errors.New("store closed")
	_, err := NewPeerClient(2, secret, srv.Client()).PushReceipts(t.Context(), srv.URL, []PeerReceipt{{SMSCID: "a1"}})
	if !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure: %v", err)
	}
}

// signed builds a request signed as node 2 at unix over signBody, sending sendBody.
func signed(t *testing.T, key []byte, method, url, uri string, unix int64, signBody, sendBody []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url+uri, bytes.NewReader(sendBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", fmt.Sprintf("QXTD-HMAC 2:%d:%s", unix, peerMAC(key, method, uri, 2, unix, signBody)))
	return req
}

func TestPeerAuthRefusals(t *testing.T) {
	srv, b := newPeerServer(t)
	body := []byte(`{"receipts":[{"upstream":"cmcc","smsc_id":"a1","state":"delivered","done_at":"2027-01-01T00:00:00Z"}]}`)
	now := time.Now().Unix()
	big := append([]byte(`{"receipts":[],"pad":"`), bytes.Repeat([]byte("x"), PeerMaxBody)...)
	many, _ := json.Marshal(receiptsRequest{Receipts: make([]PeerReceipt, PeerMaxReceipts+1)})
	const rURI = "/peer/v1/receipts"
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"ok", signed(t, secret, "POST", srv.URL, rURI, now, body, body), http.StatusOK},
		{"wrong secret", signed(t, []byte("guess"), "POST", srv.URL, rURI, now, body, body), http.StatusUnauthorized},
		{"stale", signed(t, secret, "POST", srv.URL, rURI, now-61, body, body), http.StatusUnauthorized},
		// now is truncated to the second and the server reads its clock
		// later: 62 s ahead is beyond the skew however late it reads it.
		{"future", signed(t, secret, "POST", srv.URL, rURI, now+62, body, body), http.StatusUnauthorized},
		{"tampered body", signed(t, secret, "POST", srv.URL, rURI, now, body, bytes.Replace(body, []byte("a1"), []byte("a9"), 1)), http.StatusUnauthorized},
		{"other path", func() *http.Request {
			r := signed(t, secret, "GET", srv.URL, "/peer/v1/messages/281474976710657?enterprise=ent", now, nil, nil)
			r.URL.RawQuery = "enterprise=other"
			return r
		}(), http.StatusUnauthorized},
		{"no header", func() *http.Request {
			r := signed(t, secret, "POST", srv.URL, rURI, now, body, body)
			r.Header.Del("Authorization")
			return r
		}(), http.StatusUnauthorized},
		{"malformed header", func() *http.Request {
			r := signed(t, secret, "POST", srv.URL, rURI, now, body, body)
			r.Header.Set("Authorization", "QXTD-HMAC 2:"+fmt.Sprint(now)+":zz")
			return r
		}(), http.StatusUnauthorized},
		{"oversize", signed(t, secret, "POST", srv.URL, rURI, now, big, big), http.StatusRequestEntityTooLarge},
		{"oversize chunked", func() *http.Request {
			r := signed(t, secret, "POST", srv.URL, rURI, now, big, big)
			r.ContentLength = -1 // no Content-Length: the cap applies while reading
			r.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(big)})
			return r
		}(), http.StatusRequestEntityTooLarge},
		{"too many receipts", signed(t, secret, "POST", srv.URL, rURI, now, many, many), http.StatusRequestEntityTooLarge},
		{"bad json", signed(t, secret, "POST", srv.URL, rURI, now, []byte("{"), []byte("{")), http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := srv.Client().Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) != 1 {
		t.Errorf("backend reached %d times with %+v, want once (the signed request)", len(b.nodes), b.got)
	}
}

func TestPeerClientRefused(t *testing.T) {
	srv, _ := newPeerServer(t)
	rs := []PeerReceipt{{Upstream: "cmcc", SMSCID: "a1", State: "delivered"}}
	_, err := NewPeerClient(2, []byte("wrong"), srv.Client()).PushReceipts(t.Context(), srv.URL, rs)
	if !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v", err)
	}
	skewed := NewPeerClient(2, secret, srv.Client())
	skewed.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	if _, err := skewed.PushReceipts(t.Context(), srv.URL, rs); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("stale clock: %v", err)
	}
	if _, err := NewPeerClient(2, secret, srv.Client()).PushReceipts(t.Context(), srv.URL, make([]PeerReceipt, PeerMaxReceipts+1)); err == nil {
		t.Error("client sent more than PeerMaxReceipts")
	}
}

func isStatus(err error, status int) bool {
	pe, ok := errors.AsType[*PeerError](err)
	return ok && pe.Status == status
}

// blockingBackend holds every receipts request until released.
type blockingBackend struct {
	recordingBackend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) MatchReceipts(ctx context.Context, rs []PeerReceipt) ([]PeerResult, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.recordingBackend.MatchReceipts(ctx, rs)
}

// A node serves at most PeerMaxInFlight requests at once: one more is
// refused (503, which every caller retries) before its body is read, so
// memory is bounded however many connections send bodies.
func TestPeerInFlightBound(t *testing.T) {
	b := &blockingBackend{entered: make(chan struct{}, PeerMaxInFlight), release: make(chan struct{})}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())
	rs := []PeerReceipt{{Upstream: "up", SMSCID: "a1", State: "delivered", DoneAt: time.Unix(1_700_000_000, 0)}}
	errs := make(chan error, PeerMaxInFlight)
	for range PeerMaxInFlight {
		go func() {
			_, err := c.PushReceipts(context.Background(), srv.URL, rs)
			errs <- err
		}()
	}
	for range PeerMaxInFlight {
		select {
		case <-b.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the first requests did not reach the backend")
		}
	}
	if _, err := c.PushReceipts(context.Background(), srv.URL, rs); !isStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("request %d while %d are served: %v, want 503", PeerMaxInFlight+1, PeerMaxInFlight, err)
	}
	close(b.release)
	for range PeerMaxInFlight {
		if err := <-errs; err != nil {
			t.Errorf("a request within the bound: %v", err)
		}
	}
	// Freed: served again.
	if _, err := c.PushReceipts(context.Background(), srv.URL, rs); err != nil {
		t.Fatalf("after the others ended: %v", err)
	}
}

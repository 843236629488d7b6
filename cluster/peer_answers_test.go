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
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// answersBackend answers from a map of keys.
type answersBackend struct {
	*recordingBackend
	mu    sync.Mutex
	keys  map[string]PeerAnswer
	asked []string
}

func (b *answersBackend) Answer(_ context.Context, key string) (PeerAnswer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, key)
	if a, ok := b.keys[key]; ok {
		return a, nil
	}
	return PeerAnswer{State: AnswerNone}, nil
}

// TestPeerAnswers: a key with NULs in it crosses whole; the node's
// answer, its running request and none come back as they are, a kept
// answer with its status, headers and body byte for byte; an empty or
// too long key is 400; a node older than kept answers answers 404.
func TestPeerAnswers(t *testing.T) {
	done := PeerAnswer{State: AnswerDone, Code: 200, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body: []byte("{\"results\":[]}\n\x00\xff")}
	b := &answersBackend{recordingBackend: &recordingBackend{}, keys: map[string]PeerAnswer{
		"E\x00u\x00/v1/messages\x00k1": done,
		"E\x00u\x00/v1/messages\x00k2": {State: AnswerRunning},
	}}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())
	for key, want := range map[string]PeerAnswer{
		"E\x00u\x00/v1/messages\x00k1": done,
		"E\x00u\x00/v1/messages\x00k2": {State: AnswerRunning},
		"E\x00u\x00/v1/messages\x00k3": {State: AnswerNone},
	} {
		if got, err := c.Answer(t.Context(), srv.URL, key); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("key %q: %+v, %v; want %+v", key, got, err, want)
		}
	}
	b.mu.Lock()
	if len(b.asked) != 3 || !strings.HasPrefix(b.asked[0], "E\x00u\x00/v1/messages\x00k") {
		t.Errorf("the backend was asked %q", b.asked)
	}
	b.mu.Unlock()
	for _, bad := range []string{"", strings.Repeat("k", PeerMaxAnswerKey+1)} {
		if _, err := c.Answer(t.Context(), srv.URL, bad); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("a key of %d bytes: %v, want 400", len(bad), err)
		}
	}
	older := httptest.NewServer(PeerHandler(secret, &recordingBackend{}, nil))
	t.Cleanup(older.Close)
	if _, err := c.Answer(t.Context(), older.URL, "E\x00u\x00/v1/messages\x00k1"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("a node older than kept answers: %v, want 404", err)
	}
}

// poolBackend answers every key at once as unknown, except the keys of
// the enterprises in hold: those signal held and wait until the
// enterprise's channel is closed (or the request ends). With
// receiptsHeld set, receipts requests signal it and wait for
// releaseReceipts the same way. Its fields are set before the server
// starts and only read after.
type poolBackend struct {
	recordingBackend
	hold            map[string]chan struct{} // enterprise → closed to release its questions
	held            chan string              // the key of a question that waits
	receiptsHeld    chan struct{}
	releaseReceipts chan struct{}
}

func (b *poolBackend) Answer(ctx context.Context, key string) (PeerAnswer, error) {
	if release, ok := b.hold[answerEnterprise(key)]; ok {
		b.held <- key
		select {
		case <-release:
		case <-ctx.Done():
			return PeerAnswer{}, ctx.Err()
		}
	}
	return PeerAnswer{State: AnswerNone}, nil
}

func (b *poolBackend) MatchReceipts(ctx context.Context, rs []PeerReceipt) ([]PeerResult, error) {
	if b.receiptsHeld != nil {
		b.receiptsHeld <- struct{}{}
		select {
		case <-b.releaseReceipts:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.recordingBackend.MatchReceipts(ctx, rs)
}

// newPoolServer serves b with a client that has a connection for every
// request of a test (the peer client's 64 a node would queue the
// requests beyond the pool instead of sending them).
func newPoolServer(t *testing.T, b *poolBackend) (*httptest.Server, *peerServer, *PeerClient) {
	t.Helper()
	h := PeerHandler(secret, b, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * PeerMaxAnswerInFlight}}
	t.Cleanup(hc.CloseIdleConnections)
	return srv, h.(*peerServer), NewPeerClient(2, secret, hc)
}

func answerKey(ent string, i int) string {
	return fmt.Sprintf("%s\x00u\x00/v1/messages\x00k%d", ent, i)
}

// waitHeld waits for n requests to reach the backend (on held), failing
// at once if one of the requests started returns meanwhile (done): each
// of them should wait there.
func waitHeld[T any](t *testing.T, what string, held <-chan T, n int, done <-chan error) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-held:
		case err := <-done:
			t.Fatalf("%d of %d %s waited in the backend; another returned: %v", i, n, what, err)
		case <-deadline:
			t.Fatalf("%d of %d %s reached the backend", i, n, what)
		}
	}
}

// Keyed sends' questions and the other requests have pools apart: with
// every slot of the questions' pool held (four enterprises at their
// share), one more question is refused as busy and a receipts request is
// still served; with every slot of the others held by receipts requests,
// questions are still answered.
func TestPeerAnswersPoolApart(t *testing.T) {
	rs := []PeerReceipt{{Upstream: "up", SMSCID: "a1", State: "delivered", DoneAt: time.Unix(1_700_000_000, 0)}}
	ctx := context.Background()

	t.Run("questions full", func(t *testing.T) {
		const ents = PeerMaxAnswerInFlight / peerAnswerShare
		release := make(chan struct{})
		b := &poolBackend{hold: map[string]chan struct{}{}, held: make(chan string, PeerMaxAnswerInFlight)}
		for e := range ents {
			b.hold[fmt.Sprintf("E%d", e)] = release
		}
		srv, _, c := newPoolServer(t, b)
		free := sync.OnceFunc(func() { close(release) })
		t.Cleanup(free) // before the server's Close, which waits for them
		errs := make(chan error, PeerMaxAnswerInFlight)
		for i := range PeerMaxAnswerInFlight {
			go func() {
				_, err := c.Answer(ctx, srv.URL, answerKey(fmt.Sprintf("E%d", i%ents), i))
				errs <- err
			}()
		}
		waitHeld(t, "questions", b.held, PeerMaxAnswerInFlight, errs)
		_, err := c.Answer(ctx, srv.URL, answerKey("other", 0))
		if pe, ok := errors.AsType[*PeerError](err); !ok || pe.Status != http.StatusServiceUnavailable || !pe.Busy() {
			t.Errorf("question %d while %d are served: %v, want 503 busy", PeerMaxAnswerInFlight+1, PeerMaxAnswerInFlight, err)
		}
		if res, err := c.PushReceipts(ctx, srv.URL, rs); err != nil || len(res) != 1 {
			t.Errorf("receipts with the questions' pool full: %v, %v", res, err)
		}
		free()
		for range PeerMaxAnswerInFlight {
			if err := <-errs; err != nil {
				t.Errorf("a question within the bound: %v", err)
			}
		}
	})

	t.Run("others full", func(t *testing.T) {
		b := &poolBackend{receiptsHeld: make(chan struct{}, PeerMaxInFlight), releaseReceipts: make(chan struct{})}
		srv, _, c := newPoolServer(t, b)
		free := sync.OnceFunc(func() { close(b.releaseReceipts) })
		t.Cleanup(free)
		errs := make(chan error, PeerMaxInFlight)
		for range PeerMaxInFlight {
			go func() {
				_, err := c.PushReceipts(ctx, srv.URL, rs)
				errs <- err
			}()
		}
		waitHeld(t, "receipts requests", b.receiptsHeld, PeerMaxInFlight, errs)
		if _, err := c.PushReceipts(ctx, srv.URL, rs); !isStatus(err, http.StatusServiceUnavailable) {
			t.Errorf("receipts request %d: %v, want 503", PeerMaxInFlight+1, err)
		}
		if a, err := c.Answer(ctx, srv.URL, answerKey("E0", 0)); err != nil || a.State != AnswerNone {
			t.Errorf("a question with the other requests' pool full: %+v, %v", a, err)
		}
		free()
		for range PeerMaxInFlight {
			if err := <-errs; err != nil {
				t.Errorf("a receipts request within the bound: %v", err)
			}
		}
	})
}

// An enterprise has at most a quarter of the questions' pool: with its
// quarter held, one more of its questions is refused as busy while
// another enterprise's and an unnamed one's (a key without a NUL) are
// answered; once its questions end, its share is free (and forgotten)
// again.
func TestPeerAnswersEnterpriseShare(t *testing.T) {
	if peerAnswerShare != PeerMaxAnswerInFlight/4 {
		t.Fatalf("share %d of a pool of %d", peerAnswerShare, PeerMaxAnswerInFlight)
	}
	release := make(chan struct{})
	b := &poolBackend{hold: map[string]chan struct{}{"A": release}, held: make(chan string, peerAnswerShare+1)}
	srv, ps, c := newPoolServer(t, b)
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	ctx := context.Background()
	errs := make(chan error, peerAnswerShare)
	for i := range peerAnswerShare {
		go func() {
			_, err := c.Answer(ctx, srv.URL, answerKey("A", i))
			errs <- err
		}()
	}
	waitHeld(t, "of A's questions", b.held, peerAnswerShare, errs)
	// Bounded: were A's question let through, it would wait in the
	// backend with the others.
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.Answer(octx, srv.URL, answerKey("A", peerAnswerShare))
	cancel()
	if pe, ok := errors.AsType[*PeerError](err); !ok || pe.Status != http.StatusServiceUnavailable || !pe.Busy() {
		t.Errorf("A's question %d while %d are served: %v, want 503 busy", peerAnswerShare+1, peerAnswerShare, err)
	}
	for _, key := range []string{answerKey("B", 0), "no-enterprise"} {
		if a, err := c.Answer(ctx, srv.URL, key); err != nil || a.State != AnswerNone {
			t.Errorf("question %q while A holds its share: %+v, %v", key, a, err)
		}
	}
	free()
	for range peerAnswerShare {
		if err := <-errs; err != nil {
			t.Errorf("a question of A within its share: %v", err)
		}
	}
	if _, err := c.Answer(ctx, srv.URL, answerKey("A", 0)); err != nil {
		t.Errorf("A's question once the others ended: %v", err)
	}
	ps.answerMu.Lock()
	defer ps.answerMu.Unlock()
	if len(ps.answerShares) != 0 {
		t.Errorf("shares left with nothing served: %v", ps.answerShares)
	}
}

// A question's body is bounded by PeerMaxAnswerBody, apart from the
// others' PeerMaxBody: the longest key, each byte escaped, is answered;
// one byte more than the bound is 413, with its length declared or not.
func TestPeerAnswersBodyLimit(t *testing.T) {
	srv, _, c := newPoolServer(t, &poolBackend{})
	longest := strings.Repeat("\x01", PeerMaxAnswerKey)
	if q, _ := json.Marshal(peerAnswerQuery{Key: longest}); len(q) > PeerMaxAnswerBody {
		t.Errorf("the longest question is %d bytes, over %d", len(q), PeerMaxAnswerBody)
	}
	if a, err := c.Answer(t.Context(), srv.URL, longest); err != nil || a.State != AnswerNone {
		t.Errorf("a key of %d escaped bytes: %+v, %v", PeerMaxAnswerKey, a, err)
	}
	big := []byte(`{"key":"` + strings.Repeat("k", PeerMaxAnswerBody-len(`{"key":""}`)+1) + `"}`)
	if len(big) != PeerMaxAnswerBody+1 {
		t.Fatalf("a body of %d bytes", len(big))
	}
	const uri = "/peer/v1/answers"
	for _, chunked := range []bool{false, true} {
		req := signed(t, secret, http.MethodPost, srv.URL, uri, time.Now().Unix(), big, big)
		if chunked {
			req.ContentLength = -1 // no Content-Length: the cap applies while reading
			req.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(big)})
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a question of %d bytes (chunked %v): %d, want 413", len(big), chunked, resp.StatusCode)
		}
	}
}

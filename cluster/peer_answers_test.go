package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
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

package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// hooksBackend is a recordingBackend that also answers receipt-hook
// questions, recording them.
type hooksBackend struct {
	*recordingBackend
	mu     sync.Mutex
	asked  []string // "status E" or "retry E"
	status map[string]PeerHookStatus
	retry  PeerHookRetry
	fail   error
}

func (b *hooksBackend) HookStatus(_ context.Context, enterprise string) (PeerHookStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, "status "+enterprise)
	return b.status[enterprise], b.fail
}

func (b *hooksBackend) HookRetry(_ context.Context, enterprise string) (PeerHookRetry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, "retry "+enterprise)
	return b.retry, b.fail
}

var _ PeerHooksBackend = (*hooksBackend)(nil)

func TestPeerHooks(t *testing.T) {
	due := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	b := &hooksBackend{recordingBackend: &recordingBackend{}, status: map[string]PeerHookStatus{
		"a": {Pending: 10_000, More: true, Retrying: 7, FirstDue: &due,
			Recent: []PeerHookPost{{At: due, URL: "https://e.example/dlr", Receipts: 3, Status: 503, DurationMS: 41.5,
				Err: "webhook: HTTP status 503", FailingSince: &due}},
			Replies: &PeerHookStatus{Pending: 2, Retrying: 1, FirstDue: &due,
				Recent: []PeerHookPost{{At: due, URL: "https://e.example/mo", Delivered: true, Status: 204, DurationMS: 3}}}},
	}, retry: PeerHookRetry{Rescheduled: 1000, More: true}}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())

	st, err := c.HookStatus(t.Context(), srv.URL, "a")
	if err != nil || !reflect.DeepEqual(st, b.status["a"]) {
		t.Errorf("status of a: %+v, %v; want %+v", st, err, b.status["a"])
	}
	if st, err := c.HookStatus(t.Context(), srv.URL, "b"); err != nil || !reflect.DeepEqual(st, PeerHookStatus{}) {
		t.Errorf("status of b, with nothing waiting: %+v, %v", st, err)
	}
	if res, err := c.HookRetry(t.Context(), srv.URL, "a&x=1"); err != nil || res != b.retry {
		t.Errorf("retry: %+v, %v", res, err)
	}
	b.retry = PeerHookRetry{Busy: true}
	if res, err := c.HookRetry(t.Context(), srv.URL, "a"); err != nil || !res.Busy {
		t.Errorf("retry within the minute: %+v, %v; want busy", res, err)
	}
	b.mu.Lock()
	if want := []string{"status a", "status b", "retry a&x=1", "retry a"}; !slices.Equal(b.asked, want) {
		t.Errorf("backend asked %q, want %q", b.asked, want)
	}
	b.mu.Unlock()

	if _, err := c.HookStatus(t.Context(), srv.URL, ""); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("no enterprise: %v", err)
	}
	b.fail = errors.New("store closed")
	if _, err := c.HookStatus(t.Context(), srv.URL, "a"); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure, status: %v", err)
	}
	if _, err := c.HookRetry(t.Context(), srv.URL, "a"); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure, retry: %v", err)
	}
	if _, err := NewPeerClient(2, []byte("wrong"), srv.Client()).HookRetry(t.Context(), srv.URL, "a"); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v", err)
	}
}

// A backend without the hooks has no such endpoints: 404, not a 500.
func TestPeerHooksNotServed(t *testing.T) {
	srv, _ := newPeerServer(t)
	c := NewPeerClient(2, secret, srv.Client())
	if _, err := c.HookStatus(t.Context(), srv.URL, "a"); !isStatus(err, http.StatusNotFound) {
		t.Errorf("status of a backend without it: %v", err)
	}
	if _, err := c.HookRetry(t.Context(), srv.URL, "a"); !isStatus(err, http.StatusNotFound) {
		t.Errorf("retry of a backend without it: %v", err)
	}
}

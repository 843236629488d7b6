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
	asked  []string // "status E", "retry E" or "retry replies E"
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

func (b *hooksBackend) HookRetry(_ context.Context, enterprise string, reply bool) (PeerHookRetry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if reply {
		b.asked = append(b.asked, "retry replies "+enterprise)
	} else {
		b.asked = append(b.asked, "retry "+enterprise)
	}
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
	if res, err := c.HookRetry(t.Context(), srv.URL, "a&x=1", false); err != nil || res != b.retry {
		t.Errorf("retry: %+v, %v", res, err)
	}
	if res, err := c.HookRetry(t.Context(), srv.URL, "a", true); err != nil || res != b.retry {
		t.Errorf("retry of replies: %+v, %v", res, err)
	}
	b.retry = PeerHookRetry{Busy: true}
	if res, err := c.HookRetry(t.Context(), srv.URL, "a", false); err != nil || !res.Busy {
		t.Errorf("retry within the minute: %+v, %v; want busy", res, err)
	}
	b.mu.Lock()
	if want := []string{"status a", "status b", "retry a&x=1", "retry replies a", "retry a"}; !slices.Equal(b.asked, want) {
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
	if _, err := c.HookRetry(t.Context(), srv.URL, "a", false); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure, retry: %v", err)
	}
	if _, err := c.HookRetry(t.Context(), srv.URL, "a", true); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure, retry of replies: %v", err)
	}
	if _, err := NewPeerClient(2, []byte("wrong"), srv.Client()).HookRetry(t.Context(), srv.URL, "a", true); !isStatus(err, http.StatusUnauthorized) {
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
	for _, reply := range []bool{false, true} {
		if _, err := c.HookRetry(t.Context(), srv.URL, "a", reply); !isStatus(err, http.StatusNotFound) {
			t.Errorf("retry (replies %v) of a backend without it: %v", reply, err)
		}
	}
}

// TestPeerReplyRetryOlderNode: a node older than reply webhooks serves the
// receipts' retry only, and ignores query parameters it does not know. A
// retry of replies must not reach its receipts' route (it would make the
// receipts due instead, and say it did): it is a 404 there, an error to
// the asker, and the receipts' route is not called.
func TestPeerReplyRetryOlderNode(t *testing.T) {
	b := &hooksBackend{recordingBackend: &recordingBackend{}, retry: PeerHookRetry{Rescheduled: 5}}
	full := PeerHandler(secret, b, nil)
	// The older node: the same handler (authentication, the receipts'
	// routes) without the route it does not have.
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/peer/v1/reply-hooks/retry" {
			http.NotFound(w, r)
			return
		}
		full.ServeHTTP(w, r)
	}))
	t.Cleanup(older.Close)
	c := NewPeerClient(2, secret, older.Client())
	if res, err := c.HookRetry(t.Context(), older.URL, "a", true); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("retry of replies at an older node: %+v, %v; want 404", res, err)
	}
	if res, err := c.HookRetry(t.Context(), older.URL, "a", false); err != nil || res.Rescheduled != 5 {
		t.Fatalf("retry of receipts at an older node: %+v, %v", res, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if want := []string{"retry a"}; !slices.Equal(b.asked, want) {
		t.Errorf("the older node's backend was asked %q, want %q (the replies' question not taken for receipts)", b.asked, want)
	}
}

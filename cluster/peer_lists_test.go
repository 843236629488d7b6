package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
)

// listsBackend is a recordingBackend that also pages lists, recording the
// queries it was asked.
type listsBackend struct {
	*recordingBackend
	mu    sync.Mutex
	asked []PeerListQuery
	fail  error
}

func (b *listsBackend) List(_ context.Context, q PeerListQuery) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, q)
	if b.fail != nil {
		return nil, b.fail
	}
	return json.RawMessage(fmt.Sprintf(`{"%s":[],"next":"7"}`, map[bool]string{true: "replies", false: "messages"}[q.List == "inbox"])), nil
}

// TestPeerLists: a list query crosses the peer protocol whole (every
// filter, the cursor, the times to the nanosecond) and the node's page
// comes back as it gave it; a malformed query is refused 400 before the
// backend sees it, a query the backend cannot answer 400 too; a node
// older than cluster lists (its backend pages no list) answers 404, which
// the asking node takes for a node missing.
func TestPeerLists(t *testing.T) {
	b := &listsBackend{recordingBackend: &recordingBackend{}}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())
	from := time.Date(2026, 12, 1, 0, 0, 0, 123456789, time.UTC)
	q := PeerListQuery{List: "sent", Enterprise: "E", Account: "demo", State: "delivered", Outcome: "received",
		From: from, To: from.Add(48 * time.Hour), Now: from.Add(time.Hour), Cursor: 1<<48 + 42, Limit: 50}
	page, err := c.List(t.Context(), srv.URL, q)
	if err != nil || string(page) != `{"messages":[],"next":"7"}` {
		t.Fatalf("page %s, %v", page, err)
	}
	inbox := PeerListQuery{List: "inbox", Enterprise: "E", Number: "+86 137 1234 5678", From: from, Limit: 1000}
	if page, err := c.List(t.Context(), srv.URL, inbox); err != nil || string(page) != `{"replies":[],"next":"7"}` {
		t.Fatalf("inbox page %s, %v", page, err)
	}
	sched := PeerListQuery{List: "scheduled", Enterprise: "E", SendFrom: from.Add(24 * time.Hour), SendTo: from.Add(48 * time.Hour),
		Now: from, Limit: 50}
	if page, err := c.List(t.Context(), srv.URL, sched); err != nil || string(page) != `{"messages":[],"next":"7"}` {
		t.Fatalf("scheduled page %s, %v", page, err)
	}
	for _, bad := range []PeerListQuery{
		{List: "drafts", Enterprise: "E", Limit: 10},
		{List: "sent", Limit: 10},
		{List: "sent", Enterprise: "E", Limit: PeerMaxListLimit + 1},
		{List: "sent", Enterprise: "E"},
	} {
		if _, err := c.List(t.Context(), srv.URL, bad); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("query %+v: %v, want 400", bad, err)
		}
	}
	b.mu.Lock()
	asked := b.asked
	b.mu.Unlock()
	if len(asked) != 3 || !reflect.DeepEqual(asked[0], q) || !reflect.DeepEqual(asked[1], inbox) || !reflect.DeepEqual(asked[2], sched) {
		t.Fatalf("the backend was asked %+v, want %+v, %+v and %+v", asked, q, inbox, sched)
	}
	b.mu.Lock()
	b.fail = fmt.Errorf("%w: state: no such state", ErrPeerBadQuery)
	b.mu.Unlock()
	if _, err := c.List(t.Context(), srv.URL, q); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("a query the backend refuses: %v, want 400", err)
	}

	older := httptest.NewServer(PeerHandler(secret, &recordingBackend{}, nil))
	t.Cleanup(older.Close)
	if page, err := c.List(t.Context(), older.URL, q); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("a node older than cluster lists: %s, %v; want 404", page, err)
	}
}

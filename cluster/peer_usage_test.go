package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/cluster/clustertest"
)

// usageBackend is a recordingBackend that also answers usage, recording
// the questions.
type usageBackend struct {
	*recordingBackend
	mu    sync.Mutex
	asked []string // month/enterprise
	usage map[string][]PeerUsage
	fail  error
}

func (b *usageBackend) Usage(_ context.Context, month, enterprise string) ([]PeerUsage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, month+"/"+enterprise)
	if b.fail != nil {
		return nil, b.fail
	}
	var out []PeerUsage
	for _, u := range b.usage[month] {
		if enterprise == "" || u.Enterprise == enterprise {
			out = append(out, u)
		}
	}
	return out, nil
}

var _ PeerUsageBackend = (*usageBackend)(nil)

func TestPeerUsage(t *testing.T) {
	b := &usageBackend{recordingBackend: &recordingBackend{}, usage: map[string][]PeerUsage{
		"2026-11": {{Enterprise: "a", Reserved: 1, Charged: 7, PurgedCharged: 2}, {Enterprise: "b", Charged: 3}},
	}}
	srv := httptest.NewServer(PeerHandler(secret, b, nil))
	t.Cleanup(srv.Close)
	c := NewPeerClient(2, secret, srv.Client())

	for _, tc := range []struct {
		month, ent string
		want       []PeerUsage
	}{
		{"2026-11", "", b.usage["2026-11"]},
		{"2026-11", "b", b.usage["2026-11"][1:]},
		{"2026-11", "x", []PeerUsage{}},
		{"2026-10", "", []PeerUsage{}},
	} {
		t.Run(tc.month+"/"+tc.ent, func(t *testing.T) {
			got, err := c.Usage(t.Context(), srv.URL, tc.month, tc.ent)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || got == nil {
				t.Errorf("usage %#v, want %#v", got, tc.want)
			}
		})
	}
	b.mu.Lock()
	if want := []string{"2026-11/", "2026-11/b", "2026-11/x", "2026-10/"}; !slices.Equal(b.asked, want) {
		t.Errorf("backend asked %q, want %q", b.asked, want)
	}
	b.mu.Unlock()

	if _, err := c.Usage(t.Context(), srv.URL, "2026-13", ""); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("bad month: %v", err)
	}
	b.fail = errors.New("store closed")
	if _, err := c.Usage(t.Context(), srv.URL, "2026-11", ""); !isStatus(err, http.StatusInternalServerError) {
		t.Errorf("backend failure: %v", err)
	}
	if _, err := NewPeerClient(2, []byte("wrong"), srv.Client()).Usage(t.Context(), srv.URL, "2026-11", ""); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong secret: %v", err)
	}
}

// A backend without Usage has no usage endpoint: 404, not a 500.
func TestPeerUsageNotServed(t *testing.T) {
	srv, _ := newPeerServer(t)
	_, err := NewPeerClient(2, secret, srv.Client()).Usage(t.Context(), srv.URL, "2026-11", "")
	if !isStatus(err, http.StatusNotFound) {
		t.Errorf("usage of a backend without it: %v", err)
	}
}

func TestStores(t *testing.T) {
	et := clustertest.Start(t)
	nodes := joinN(t, et, 3, 5*time.Second)
	ctx := ctxT(t, 10*time.Second)
	for _, n := range nodes[:2] {
		for range 2 { // idempotent
			if err := n.RegisterStore(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids, err := nodes[2].Stores(ctx)
	if err != nil || fmt.Sprint(ids) != "[1 2]" {
		t.Fatalf("stores %v, %v; want [1 2]", ids, err)
	}
	// A store outlives its node's membership.
	if err := nodes[1].Close(); err != nil {
		t.Fatal(err)
	}
	if ids, err = nodes[0].Stores(ctx); err != nil || fmt.Sprint(ids) != "[1 2]" {
		t.Fatalf("stores after node 2 left: %v, %v", ids, err)
	}
	if err := nodes[0].ForgetStore(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if ids, err = nodes[0].Stores(ctx); err != nil || fmt.Sprint(ids) != "[1]" {
		t.Fatalf("stores after ForgetStore(2): %v, %v", ids, err)
	}
}

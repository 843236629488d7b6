package api

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// fixedPeerHooks is a PeerHooks with fixed answers that records the
// enterprises it was asked about.
type fixedPeerHooks struct {
	mu      sync.Mutex
	status  []NodeReceiptStatus
	retry   []NodeReceiptRetry
	missing []uint16
	err     error
	asked   []string
}

func (p *fixedPeerHooks) Self() uint16 { return 1 }

func (p *fixedPeerHooks) PeerHookStatus(_ context.Context, enterprise string) ([]NodeReceiptStatus, []uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, "status "+enterprise)
	if p.err != nil {
		return nil, nil, p.err
	}
	return slices.Clone(p.status), p.missing, nil
}

func (p *fixedPeerHooks) PeerHookRetry(_ context.Context, enterprise string, reply bool) ([]NodeReceiptRetry, []uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if reply {
		p.asked = append(p.asked, "retry replies "+enterprise)
	} else {
		p.asked = append(p.asked, "retry "+enterprise)
	}
	if p.err != nil {
		return nil, nil, p.err
	}
	return slices.Clone(p.retry), p.missing, nil
}

func (p *fixedPeerHooks) set(missing []uint16, err error) {
	p.mu.Lock()
	p.missing, p.err = missing, err
	p.mu.Unlock()
}

var _ PeerHooks = (*fixedPeerHooks)(nil)

// In a cluster the receipt webhook's status sums every node's part (this
// node's from its store), keeps the earliest due and the latest POST with
// its node, and says which nodes are missing; retry-now adds what every
// other node did.
func TestReceiptWebhookAcrossNodes(t *testing.T) {
	r := newUserRig(t)
	hookSender(t, r, time.Hour) // not running: the receipt waits
	url := "https://receipts.example/dlr"
	r.must(http.StatusOK, "PATCH", "/v1/receipt-webhook", r.keys["amy"], ReceiptWebhookPatch{ReceiptURL: &url}, nil)
	r.send(r.keys["alice"], SendRequest{To: []string{uNumA1}, Text: "回执状态"})

	early, late := time.Now().Add(-time.Hour).UTC().Truncate(time.Second), time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	post3 := ReceiptPost{At: late, URL: url, Receipts: 2, Error: "502 Bad Gateway"}
	post2 := ReceiptPost{At: early, URL: url, Receipts: 1, Delivered: true}
	peers := &fixedPeerHooks{
		status: []NodeReceiptStatus{ // not sorted
			{Node: 3, ReceiptCounts: ReceiptCounts{Pending: 10_000, PendingMore: true, Retrying: 5, FirstDueAt: &early, Last: &post3},
				Recent: []ReceiptPost{post3}},
			{Node: 2, ReceiptCounts: ReceiptCounts{Pending: 2, Retrying: 2, FirstDueAt: &late, Last: &post2},
				Recent: []ReceiptPost{post2}},
		},
		retry:   []NodeReceiptRetry{{Node: 3, Rescheduled: 1000, More: true}, {Node: 2, Busy: true}},
		missing: []uint16{4},
	}
	r.srv.cfg.PeerHooks = peers
	r.srv.cfg.AdminToken = opsToken
	status := func() ReceiptStatus {
		var rw ReceiptWebhook
		r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["alice"], nil, &rw)
		return rw.Status
	}
	var st ReceiptStatus
	waitUntil(t, func() (bool, string) {
		st = status()
		return len(st.Nodes) == 3 && st.Nodes[0].Pending == 1, "this node's receipt in the status"
	})
	nodes := func(st ReceiptStatus) (ids []uint16) {
		for _, n := range st.Nodes {
			ids = append(ids, n.Node)
		}
		return ids
	}
	if st.Pending != 10_003 || !st.PendingMore || st.Retrying != 7 || !slices.Equal(nodes(st), []uint16{1, 2, 3}) ||
		st.FirstDueAt == nil || !st.FirstDueAt.Equal(early) || !st.Partial || !slices.Equal(st.MissingNodes, []uint16{4}) {
		t.Errorf("status across nodes: %+v", st)
	}
	if want := (ReceiptPost{At: late, URL: url, Receipts: 2, Error: "502 Bad Gateway", Node: 3}); st.Last == nil || !reflect.DeepEqual(*st.Last, want) {
		t.Errorf("last POST across nodes: %+v, want %+v", st.Last, want)
	}

	// The operator's view of the enterprise has the same.
	var d EnterpriseDetail
	r.must(http.StatusOK, "GET", "/admin/v1/enterprises/A", opsToken, nil, &d)
	if d.Receipts.Pending != 10_003 || !slices.Equal(nodes(d.Receipts), []uint16{1, 2, 3}) {
		t.Errorf("enterprise detail's receipts: %+v", d.Receipts)
	}

	// The other nodes unknown: this node's part, said to be partial.
	peers.set(nil, errors.New("etcd unreachable"))
	if st := status(); st.Pending != 1 || !slices.Equal(nodes(st), []uint16{1}) || !st.Partial {
		t.Errorf("status without the other nodes: %+v", st)
	}

	// Retry-now: this node moves none (its receipt is due, not retrying),
	// node 3 a thousand, node 2 did it less than a minute ago; node 4 is
	// missing.
	peers.set([]uint16{4}, nil)
	var rr ReceiptWebhookRetry
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/retry", r.keys["amy"], nil, &rr)
	want := ReceiptWebhookRetry{Kind: "receipt", Rescheduled: 1000, More: true,
		Nodes:   []NodeReceiptRetry{{Node: 1}, {Node: 2, Busy: true}, {Node: 3, Rescheduled: 1000, More: true}},
		Missing: Missing{Partial: true, MissingNodes: []uint16{4}}}
	if !reflect.DeepEqual(rr, want) {
		t.Errorf("retry across nodes: %+v, want %+v", rr, want)
	}
	// Refused by this node's minute: the others are not asked.
	r.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/v1/receipt-webhook/retry", r.keys["amy"], nil)
	// Another enterprise's retry, the other nodes failing: this node's part.
	peers.set(nil, errors.New("etcd unreachable"))
	var rb ReceiptWebhookRetry
	r.must(http.StatusOK, "POST", "/admin/v1/enterprises/B/receipt-retry", opsToken, nil, &rb)
	if want := (ReceiptWebhookRetry{Kind: "receipt", Nodes: []NodeReceiptRetry{{Node: 1}}, Missing: Missing{Partial: true}}); !reflect.DeepEqual(rb, want) {
		t.Errorf("retry without the other nodes: %+v, want %+v", rb, want)
	}
	peers.mu.Lock()
	defer peers.mu.Unlock()
	if n := len(peers.asked); peers.asked[n-2] != "retry A" || peers.asked[n-1] != "retry B" {
		t.Errorf("asked %q: want the last two retry A, retry B (none for the refused one)", peers.asked)
	}
}

// In a cluster reply_status sums every node's replies as the receipts'
// status sums their receipts (one question a node for both); a node that
// answered without its replies' part (older than reply webhooks) is
// missing from reply_status only.
func TestReplyStatusAcrossNodes(t *testing.T) {
	r := newUserRig(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	storeReplies(t, r.store, "A", 2, t0)
	early := t0.Add(-time.Hour)
	post := ReceiptPost{At: t0, URL: "https://crm.example.com/mo", Status: 503, Error: "503 Service Unavailable", FailingSince: &early}
	r.srv.cfg.PeerHooks = &fixedPeerHooks{
		status: []NodeReceiptStatus{
			{Node: 3, ReceiptCounts: ReceiptCounts{Pending: 5}}, // no replies' part
			{Node: 2, ReceiptCounts: ReceiptCounts{Pending: 1},
				Replies: &NodeReceiptStatus{ReceiptCounts: ReceiptCounts{Pending: 4, Retrying: 4, FirstDueAt: &early, Last: &post},
					Recent: []ReceiptPost{post}}},
		},
		missing: []uint16{4},
	}
	var rw ReceiptWebhook
	r.must(http.StatusOK, "GET", "/v1/receipt-webhook", r.keys["alice"], nil, &rw)
	st := rw.ReplyStatus
	if st.Pending != 6 || st.Retrying != 4 || st.FirstDueAt == nil || !st.FirstDueAt.Equal(early) ||
		len(st.Nodes) != 2 || st.Nodes[0].Node != 1 || st.Nodes[0].Pending != 2 || st.Nodes[1].Node != 2 || st.Nodes[1].Pending != 4 ||
		!st.Partial || !slices.Equal(st.MissingNodes, []uint16{3, 4}) {
		t.Errorf("reply_status across nodes: %+v", st)
	}
	post.Node = 2
	if st.Last == nil || !reflect.DeepEqual(*st.Last, post) || len(st.Recent) != 1 {
		t.Errorf("last reply POST across nodes: %+v, want %+v", st.Last, post)
	}
	if rs := rw.Status; rs.Pending != 6 || len(rs.Nodes) != 3 || !slices.Equal(rs.MissingNodes, []uint16{4}) || rs.Last != nil {
		t.Errorf("receipts' status beside it: %+v", rs)
	}
}

// In a cluster the replies' retry-now ("kind": "reply") asks the other
// nodes about replies, not receipts, and sums what they did; a node that
// could not be asked (down, or older than reply webhooks: it has no
// replies' retry) is named missing, the answer partial.
func TestReplyRetryAcrossNodes(t *testing.T) {
	r := newUserRig(t)
	hookSender(t, r, time.Hour) // not running
	peers := &fixedPeerHooks{retry: []NodeReceiptRetry{{Node: 3, Rescheduled: 4}, {Node: 2, Rescheduled: 1}}, missing: []uint16{4}}
	r.srv.cfg.PeerHooks = peers
	var rr ReceiptWebhookRetry
	r.must(http.StatusOK, "POST", "/v1/receipt-webhook/retry", r.keys["amy"], ReceiptWebhookRetryIn{Kind: "reply"}, &rr)
	want := ReceiptWebhookRetry{Kind: "reply", Rescheduled: 5,
		Nodes:   []NodeReceiptRetry{{Node: 1}, {Node: 2, Rescheduled: 1}, {Node: 3, Rescheduled: 4}},
		Missing: Missing{Partial: true, MissingNodes: []uint16{4}}}
	if !reflect.DeepEqual(rr, want) {
		t.Errorf("replies' retry across nodes: %+v, want %+v", rr, want)
	}
	peers.mu.Lock()
	defer peers.mu.Unlock()
	if want := []string{"retry replies A"}; !slices.Equal(peers.asked, want) {
		t.Errorf("asked %q, want %q", peers.asked, want)
	}
}

package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// fakeNode is a node's inbox for syntheticLists: its replies, newest id
// first, paged as queue.Store.Inbox pages them, or shorter.
type fakeNode struct {
	replies []InboxItem // ids descending
	// short: at most this many replies a page (0: limit), as a store whose
	// scan bound ends a page early; its first page is then empty, with a
	// next above every reply (a scan that found none of the enterprise's).
	short int
	down  bool
	asked int
	// delay: each answer takes this long (a slow node), or fails when
	// the asker's context ends first.
	delay time.Duration
}

// synthetic is a PeerLists of fake nodes; this node (Self) has an empty
// store.
type synthetic struct {
	mu    sync.Mutex
	self  uint16
	nodes map[uint16]*fakeNode
}

func (p *synthetic) Self() uint16 { return p.self }

func (p *synthetic) ListNodes(context.Context) ([]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []uint16
	for id := range p.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (p *synthetic) PeerPage(ctx context.Context, node uint16, q NodeListQuery) (NodePage, error) {
	p.mu.Lock()
	delay := p.nodes[node].delay
	p.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay) // the slow node's answer, not a wait for an event
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return NodePage{}, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nodes[node]
	if n.down {
		return NodePage{}, errors.New("down")
	}
	n.asked++
	var below []InboxItem
	for _, r := range n.replies {
		if id, _ := strconv.ParseUint(r.ID, 10, 64); q.Cursor == 0 || id < q.Cursor {
			below = append(below, r)
		}
	}
	if len(below) == 0 {
		return NodePage{}, nil
	}
	if n.short > 0 && n.asked == 1 {
		top, _ := strconv.ParseUint(below[0].ID, 10, 64)
		return NodePage{Next: top + 1}, nil
	}
	limit := q.Limit
	if n.short > 0 {
		limit = min(limit, n.short)
	}
	pg := NodePage{Replies: below[:min(limit, len(below))]}
	if len(below) > limit {
		pg.Next, _ = strconv.ParseUint(pg.Replies[len(pg.Replies)-1].ID, 10, 64)
	}
	return pg, nil
}

// replies are n replies of node, one every step from start, ids in the
// node's range.
func replies(node uint16, n int, start time.Time, step time.Duration) []InboxItem {
	var out []InboxItem
	for i := n; i >= 1; i-- {
		out = append(out, InboxItem{ID: strconv.FormatUint(uint64(node)<<48|uint64(i), 10), ReceivedAt: start.Add(time.Duration(i) * step)})
	}
	return out
}

func newSyntheticServer(t *testing.T, p *synthetic) *Server {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NodeID: p.self})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return New(Config{Store: st, PeerLists: p})
}

// pageAll pages the merged inbox with limit until next is empty, and
// returns the ids in the order shown.
func pageAll(t *testing.T, s *Server, limit int) (ids []string, pages int) {
	t.Helper()
	cursor := ""
	for pages = 1; pages < 1000; pages++ {
		streams, unknown, ok := s.listStreams(t.Context(), httptest.NewRecorder(), "before", cursor)
		if !ok {
			t.Fatalf("cursor %q refused", cursor)
		}
		taken, next, missing := s.clusterPage(t.Context(), NodeListQuery{List: ListInbox, Enterprise: "G1", Limit: limit}, streams, unknown)
		if len(taken) > limit || missing.Partial {
			t.Fatalf("page %d: %d items for limit %d, %+v", pages, len(taken), limit, missing)
		}
		for _, e := range taken {
			ids = append(ids, e.Reply.ID)
		}
		if next == "" {
			return ids, pages
		}
		cursor = next
	}
	t.Fatal("no end")
	return nil, 0
}

// wantOrder is every fake node's replies, newest first, ties by id.
func wantOrder(p *synthetic) []string {
	var all []InboxItem
	for _, n := range p.nodes {
		all = append(all, n.replies...)
	}
	slices.SortFunc(all, func(a, b InboxItem) int {
		if c := b.ReceivedAt.Compare(a.ReceivedAt); c != 0 {
			return c
		}
		x, _ := strconv.ParseUint(a.ID, 10, 64)
		y, _ := strconv.ParseUint(b.ID, 10, 64)
		return cmp.Compare(y, x)
	})
	var out []string
	for _, r := range all {
		out = append(out, r.ID)
	}
	return out
}

// The merged pages of several nodes list every item once, newest first
// (ties by id), whatever the page size: with interleaved times, equal
// times on two nodes, a node whose pages end short with a next (an empty
// first page among them), one all older than the others, and one empty.
func TestClusterListMerge(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	for _, limit := range []int{1, 2, 3, 7, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			p := &synthetic{self: 9, nodes: map[uint16]*fakeNode{
				1: {replies: replies(1, 12, t0, 2*time.Second)},                  // even seconds
				2: {replies: replies(2, 12, t0.Add(time.Second), 2*time.Second)}, // odd seconds
				3: {replies: replies(3, 6, t0, 4*time.Second)},                   // the same times as node 1's: ties
				4: {replies: replies(4, 9, t0.Add(time.Millisecond), 3*time.Second), short: 2},
				5: {replies: replies(5, 3, t0.Add(-time.Hour), time.Second)}, // all older
				6: {},                                                        // none
			}}
			s := newSyntheticServer(t, p)
			got, pages := pageAll(t, s, limit)
			want := wantOrder(p)
			if !slices.Equal(got, want) {
				t.Fatalf("%d pages:\ngot  %v\nwant %v", pages, got, want)
			}
		})
	}
}

// An entry is taken only when every other node's page reaches back at
// least as far; a node drained with more to read is asked first.
func TestMergeStreamsSafety(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	e := func(node uint16, i int, sec int) listEntry {
		return listEntry{ID: uint64(node)<<48 | uint64(i), At: t0.Add(time.Duration(sec) * time.Second)}
	}
	a := &listStream{Node: 1, Fetched: true, Items: []listEntry{e(1, 2, 10), e(1, 1, 9)}}      // all it has
	b := &listStream{Node: 2, Fetched: true, Items: []listEntry{e(2, 9, 11)}, Next: 2<<48 | 9} // more below
	c := &listStream{Node: 3, Fetched: true, Next: 3<<48 | 50}                                 // a short page: none, more below
	d := &listStream{Node: 4, Fetched: true}                                                   // nothing
	taken, blocked := mergeStreams([]*listStream{a, b, c, d}, 10)
	if len(taken) != 0 || !slices.Equal(blocked, []*listStream{c}) {
		t.Fatalf("with node 3 unread below: taken %v, blocked %v", taken, blocked)
	}
	c.Items, c.Next = []listEntry{e(3, 50, 12), e(3, 49, 3)}, 0 // its next page: all it has
	taken, blocked = mergeStreams([]*listStream{a, b, c, d}, 10)
	// 12 (node 3) and 11 (node 2) are safe; 10 (node 1) is not: node 2
	// has nothing fetched left and more to read.
	if len(taken) != 2 || taken[0].ID != 3<<48|50 || taken[1].ID != 2<<48|9 || !slices.Equal(blocked, []*listStream{b}) {
		t.Fatalf("taken %v, blocked %v", taken, blocked)
	}
	if p := b.position(); p.Done || p.Pos != 2<<48|9 {
		t.Errorf("node 2's place: %+v", p)
	}
	if p := a.position(); p.Done || p.Pos != 0 {
		t.Errorf("node 1's place (nothing taken): %+v", p)
	}
	if p := d.position(); !p.Done {
		t.Errorf("node 4's place: %+v", p)
	}
	// Node 2 has nothing more: the rest is node 1's and node 3's, by time.
	b.Next = 0
	taken, blocked = mergeStreams([]*listStream{a, b, c, d}, 10)
	if len(taken) != 3 || taken[0].ID != 1<<48|2 || taken[1].ID != 1<<48|1 || taken[2].ID != 3<<48|49 || blocked != nil {
		t.Fatalf("taken %v, blocked %v", taken, blocked)
	}
	// A tie: the higher id first.
	x := &listStream{Node: 1, Fetched: true, Items: []listEntry{e(1, 7, 5)}}
	y := &listStream{Node: 2, Fetched: true, Items: []listEntry{e(2, 1, 5)}}
	if taken, _ := mergeStreams([]*listStream{x, y}, 2); len(taken) != 2 || taken[0].ID != 2<<48|1 {
		t.Fatalf("tie: %v", taken)
	}
}

// A node that does not answer is named; its place stays, so that once it
// answers its replies come in a later page; a cursor of every node but it
// done ends the list (no endless empty pages).
func TestClusterListMissingNode(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	p := &synthetic{self: 9, nodes: map[uint16]*fakeNode{
		1: {replies: replies(1, 4, t0, time.Second)},
		2: {replies: replies(2, 2, t0, time.Second), down: true},
	}}
	s := newSyntheticServer(t, p)
	q := NodeListQuery{List: ListInbox, Enterprise: "G1", Limit: 3}
	streams, unknown, _ := s.listStreams(t.Context(), httptest.NewRecorder(), "before", "")
	taken, next, missing := s.clusterPage(t.Context(), q, streams, unknown)
	if len(taken) != 3 || !missing.Partial || !slices.Equal(missing.MissingNodes, []uint16{2}) {
		t.Fatalf("taken %d, %+v", len(taken), missing)
	}
	if want := "c1.1-" + strconv.FormatUint(1<<48|2, 10) + ".2-0.9-x"; next != want {
		t.Fatalf("next %q, want %q", next, want)
	}
	p.nodes[2].down = false
	streams, unknown, _ = s.listStreams(t.Context(), httptest.NewRecorder(), "before", next)
	taken, next, missing = s.clusterPage(t.Context(), q, streams, unknown)
	if len(taken) != 3 || missing.Partial || next != "" {
		t.Fatalf("taken %d, next %q, %+v", len(taken), next, missing)
	}
	// Every node done but a missing one: the end, partial.
	p.nodes[2].down = true
	streams, unknown, _ = s.listStreams(t.Context(), httptest.NewRecorder(), "before", "c1.1-x.2-0.9-x")
	if taken, next, missing = s.clusterPage(t.Context(), q, streams, unknown); len(taken) != 0 || next != "" || !missing.Partial {
		t.Fatalf("taken %d, next %q, %+v", len(taken), next, missing)
	}
}

// TestClusterListPageWait: nodes slow in every round (but within
// listPeerWait each time) hold a page for the page's budget and the
// round under way, not for every round: with answers taking 200 ms and
// pages of one reply, a page of 10 would ask four rounds (800 ms); with a
// budget of 300 ms it asks two (400 ms) and ends short, with a next, and
// no node named missing.
func TestClusterListPageWait(t *testing.T) {
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	p := &synthetic{self: 9, nodes: map[uint16]*fakeNode{
		1: {replies: replies(1, 6, t0, time.Second), short: 1, delay: 200 * time.Millisecond},
		2: {replies: replies(2, 6, t0.Add(time.Millisecond), time.Second), short: 1, delay: 200 * time.Millisecond},
	}}
	s := newSyntheticServer(t, p)
	s.user.listWait = 300 * time.Millisecond
	q := NodeListQuery{List: ListInbox, Enterprise: "G1", Limit: 10}
	streams, unknown, _ := s.listStreams(t.Context(), httptest.NewRecorder(), "before", "")
	start := time.Now()
	taken, next, missing := s.clusterPage(t.Context(), q, streams, unknown)
	took := time.Since(start)
	if took >= 700*time.Millisecond {
		t.Fatalf("a page took %v with a budget of 300 ms", took)
	}
	if len(taken) >= 10 || next == "" || missing.Partial {
		t.Fatalf("taken %d, next %q, %+v: want a short page with a next, nobody missing", len(taken), next, missing)
	}
	t.Logf("%d taken in %v", len(taken), took)
}

// olderNode is a node of a cluster that predates send_from and send_to:
// it pages its whole scheduled outbox whatever the range, and records
// the queries it was asked.
type olderNode struct {
	mu    sync.Mutex
	asked []NodeListQuery
	msgs  []Message // ids descending
}

func (*olderNode) Self() uint16                                { return 1 }
func (*olderNode) ListNodes(context.Context) ([]uint16, error) { return []uint16{2}, nil }
func (p *olderNode) PeerPage(_ context.Context, _ uint16, q NodeListQuery) (NodePage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, q)
	var pg NodePage
	for _, m := range p.msgs {
		if id, _ := strconv.ParseUint(m.ID, 10, 64); q.Cursor == 0 || id < q.Cursor {
			pg.Messages = append(pg.Messages, m)
		}
	}
	return pg, nil
}

// TestClusterScheduledSendRange: in a cluster, GET /v1/scheduled's
// send_from and send_to go to every node with the query, this node's store
// applies them, and the page holds none of another day's messages even
// from a node that ignores them (one not yet upgraded).
func TestClusterScheduledSendRange(t *testing.T) {
	now := time.Now()
	d1 := now.Truncate(time.Hour).Add(24 * time.Hour)
	d2, d3 := d1.Add(24*time.Hour), d1.Add(48*time.Hour)
	peer := &olderNode{}
	for i, at := range []time.Time{d3.Add(time.Hour), d2.Add(time.Hour), d1.Add(time.Hour)} {
		peer.msgs = append(peer.msgs, Message{ID: strconv.FormatUint(2<<48|uint64(3-i), 10), Text: "peer " + at.Format(time.DateTime),
			AcceptedAt: now.Add(-time.Duration(i) * time.Second), SendAt: at, Scheduled: true})
	}
	var mine []*queue.Message
	for _, at := range []time.Time{d1.Add(2 * time.Hour), d2.Add(2 * time.Hour), d3.Add(2 * time.Hour)} {
		mine = append(mine, &queue.Message{Account: "u", Enterprise: "G1", Upstream: "sim", Dest: "13800138000", Text: "self " + at.Format(time.DateTime),
			SendAt: at, Parts: []queue.Part{{Body: []byte("x")}}})
	}
	got := pageOverOlderNode(t, peer, mine, queue.ListFilter{Enterprise: "G1", Scheduled: true, SendFrom: d2, SendTo: d3, Now: now})
	want := []string{"peer " + d2.Add(time.Hour).Format(time.DateTime), "self " + d2.Add(2*time.Hour).Format(time.DateTime)}
	if !slices.Equal(got, want) {
		t.Fatalf("page %q, want %q", got, want)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if len(peer.asked) == 0 || peer.asked[0].List != ListScheduled || !peer.asked[0].SendFrom.Equal(d2) || !peer.asked[0].SendTo.Equal(d3) {
		t.Fatalf("the node was asked %+v", peer.asked)
	}
}

// TestClusterOutboxNumber: in a cluster, GET /v1/messages's number= goes
// to every node with the query, this node's store applies it, and the
// page holds no message to another number even from a node that ignores
// it (one not yet upgraded).
func TestClusterOutboxNumber(t *testing.T) {
	now := time.Now()
	peer := &olderNode{}
	for i, to := range []string{"13800138001", "13800138000", "13800138002"} {
		peer.msgs = append(peer.msgs, Message{ID: strconv.FormatUint(2<<48|uint64(3-i), 10), To: to, Text: "peer " + to,
			AcceptedAt: now.Add(-time.Duration(i) * time.Second)})
	}
	var mine []*queue.Message
	for _, to := range []string{"13800138000", "13900139000", "+8613800138000"} {
		mine = append(mine, &queue.Message{Account: "u", Enterprise: "G1", Upstream: "sim", Dest: to, Text: "self " + to,
			Parts: []queue.Part{{Body: []byte("x")}}})
	}
	got := pageOverOlderNode(t, peer, mine, queue.ListFilter{Enterprise: "G1", Sent: true, Number: "138 0013 8000", Now: now})
	want := []string{"peer 13800138000", "self +8613800138000", "self 13800138000"}
	if !slices.Equal(got, want) {
		t.Fatalf("page %q, want %q", got, want)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if len(peer.asked) == 0 || peer.asked[0].Number != "138 0013 8000" {
		t.Fatalf("the node was asked %+v", peer.asked)
	}
}

// pageOverOlderNode is clusterList's page of f on node 1, whose store
// holds mine, beside peer as node 2: its texts, sorted. A page that is
// partial or has a next fails the test.
func pageOverOlderNode(t *testing.T, peer *olderNode, mine []*queue.Message, f queue.ListFilter) []string {
	t.Helper()
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, m := range mine {
		if err := st.Enqueue(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	w := httptest.NewRecorder()
	New(Config{Store: st, PeerLists: peer}).clusterList(t.Context(), w, &caller{}, f, "", "", 10)
	var page MessagePage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || w.Code != 200 {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	if page.Partial || page.Next != "" {
		t.Fatalf("page partial %v, next %q", page.Partial, page.Next)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Text)
	}
	slices.Sort(got)
	return got
}

// TestNodePageSentAll: a node pages every enterprise's sent messages to a
// number for another (the operator's trace), each naming its
// enterprise; the query names no enterprise and needs a number, and an
// enterprise's own lists still need theirs.
func TestNodePageSentAll(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, e := range []string{"G1", "G2"} {
		for _, to := range []string{"13800138000", "13900139000"} {
			if err := st.Enqueue(t.Context(), &queue.Message{Account: "u" + e, Enterprise: e, Upstream: "sim", Dest: to, Text: e + " " + to,
				Parts: []queue.Part{{Body: []byte("x")}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := New(Config{Store: st})
	pg, err := s.NodePage(NodeListQuery{List: ListSentAll, Number: "13800138000", Limit: 10, Now: time.Now()})
	if err != nil || len(pg.Messages) != 2 || pg.Messages[0].Enterprise != "G2" || pg.Messages[1].Enterprise != "G1" || pg.Messages[1].To != "13800138000" {
		t.Fatalf("sent_all: %+v, %v", pg.Messages, err)
	}
	for _, q := range []NodeListQuery{
		{List: ListSentAll, Limit: 10},                                          // no number
		{List: ListSentAll, Enterprise: "G1", Number: "13800138000", Limit: 10}, // an enterprise
		{List: ListSent, Number: "13800138000", Limit: 10},                      // an enterprise's own, without one
	} {
		if _, err := s.NodePage(q); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", q, err)
		}
	}
	if q := nodeQuery(queue.ListFilter{Sent: true, AllEnterprises: true, Number: "1"}, "", 10); q.List != ListSentAll || q.Enterprise != "" || q.Number != "1" {
		t.Errorf("the nodes' query of a trace: %+v", q)
	}

	// inbox_all: every enterprise's replies from a number, each naming
	// its enterprise; an enterprise's own inbox names none.
	for _, e := range []string{"G1", "G2"} {
		if err := st.StoreMO(t.Context(), &queue.MO{Enterprise: e, Source: "8613800138000", Dest: "10657", Text: e + " 回复", Upstream: "sim", ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	pg, err = s.NodePage(NodeListQuery{List: ListInboxAll, Number: "138 0013 8000", Limit: 10})
	if err != nil || len(pg.Replies) != 2 || pg.Replies[0].Enterprise != "G2" || pg.Replies[1].Enterprise != "G1" {
		t.Fatalf("inbox_all: %+v, %v", pg.Replies, err)
	}
	if pg, err = s.NodePage(NodeListQuery{List: ListInbox, Enterprise: "G1", Limit: 10}); err != nil || len(pg.Replies) != 1 || pg.Replies[0].Enterprise != "" {
		t.Fatalf("G1's inbox: %+v, %v", pg.Replies, err)
	}
	for _, q := range []NodeListQuery{{List: ListInboxAll, Limit: 10}, {List: ListInboxAll, Enterprise: "G1", Number: "1", Limit: 10}} {
		if _, err := s.NodePage(q); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", q, err)
		}
	}
	if q := inboxNodeQuery("", queue.InboxFilter{AllEnterprises: true, Number: "1"}, 10); q.List != ListInboxAll || q.Enterprise != "" {
		t.Errorf("the nodes' query of a replies trace: %+v", q)
	}
}

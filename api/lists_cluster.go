package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// Lists in a cluster. Each node's store holds the messages it accepted and
// the replies (MO) that arrived on its binds, so an enterprise's outboxes
// and inbox are spread over the nodes. With Config.PeerLists set, GET
// /v1/messages, /v1/scheduled and /v1/inbox ask every node for a page from
// its place in the cursor (this one in its own store, the others over the
// peer protocol, in parallel, each for at most listPeerWait) and merge
// them newest first: by AcceptedAt (the outboxes; a node lists its
// messages by id, the order it accepted them in) or ReceivedAt (the
// inbox), ties by id. An item is taken only when no node can still hold a
// newer one: every other node has nothing more, or its page reaches back
// at least as far (its last item is not newer); otherwise that node is
// asked for its following page first, up to listRounds rounds (then the
// page ends short, with a next). next is a cluster cursor
// (lists_cursor.go) holding every node's place. A node that cannot be
// asked is named in missing_nodes (partial): its items are not in the
// page and its place stays where it was, so a later page, once it
// answers, shows them (out of order: they are newer than those shown).

// The lists a node pages for another (NodeListQuery.List).
const (
	ListSent      = "sent"
	ListScheduled = "scheduled"
	ListInbox     = "inbox"
	// ListSentAll is every enterprise's sent messages to a number (the
	// operator's trace; NodeListQuery.Enterprise ""). A node older than
	// it refuses it and is named missing.
	ListSentAll = "sent_all"
	// ListInboxAll is every enterprise's replies from a number (the
	// operator's trace of a handset's replies), as ListSentAll.
	ListInboxAll = "inbox_all"
)

// isInbox says whether list is of replies (the inbox, or every
// enterprise's replies from a number).
func isInbox(list string) bool { return list == ListInbox || list == ListInboxAll }

// allEnterprises says whether list is one of every enterprise's (asked
// with no enterprise).
func allEnterprises(list string) bool { return list == ListSentAll || list == ListInboxAll }

// Bounds of a cluster list.
const (
	// listRounds bounds the rounds of questions one page asks: each
	// asks the nodes whose page does not reach back far enough, in
	// parallel.
	listRounds = 4
	// listPeerWait bounds one node's answer in a round; a node that does
	// not answer by then is missing from the page.
	listPeerWait = 3 * time.Second
	// listPageWait bounds the rounds of one page: past it no round starts
	// (the page ends short, with a next). A node slow in every round, but
	// within listPeerWait each time, would otherwise hold a page for
	// listRounds × listPeerWait (12 s); now at most listPageWait and one
	// round (7 s), and a slow node is not named missing for it.
	listPageWait = 4 * time.Second
	// listPeerParallel bounds the nodes asked at once for one page.
	listPeerParallel = 8
)

// PeerLists is the other nodes' lists, in a cluster (Config.PeerLists; the
// daemon implements it over the peer protocol). nil: a node of its own,
// whose store has every message and reply.
type PeerLists interface {
	// Self is this node's id.
	Self() uint16
	// ListNodes returns the ids of the other nodes whose lists count
	// (those holding a store, and the live ones), sorted. An error means
	// they are unknown.
	ListNodes(ctx context.Context) ([]uint16, error)
	// PeerPage asks node for its page of q. An error means the node
	// could not be asked or did not answer.
	PeerPage(ctx context.Context, node uint16, q NodeListQuery) (NodePage, error)
}

// NodeListQuery is one node's page of a list, as another node asks it.
type NodeListQuery struct {
	List       string    // ListSent, ListScheduled or ListInbox
	Enterprise string    // required
	Account    string    // "": every account's
	Number     string    // only replies from (inbox), messages to (outboxes), this number or one ending in these digits ("": any)
	State      string    // outboxes: a state's name ("": any)
	Outcome    string    // outboxes: received, failed, pending ("": any)
	From, To   time.Time // AcceptedAt (outboxes) or ReceivedAt (inbox) at or after From, before To (zero: unbounded)
	SendFrom   time.Time // scheduled: SendAt at or after it (zero: unbounded)
	SendTo     time.Time // scheduled: SendAt before it (zero: unbounded)
	Now        time.Time // outboxes: the now that tells scheduled from sent
	Cursor     uint64    // the node's cursor (after= or before=); 0: from its newest
	Limit      int       // 1 to MaxListLimit
}

// NodePage is one node's page of a list: Messages (outboxes) or Replies
// (inbox), newest first, and Next, the node's cursor after them (0: it
// has nothing more).
type NodePage struct {
	Messages []Message   `json:"messages,omitempty"`
	Replies  []InboxItem `json:"replies,omitempty"`
	Next     uint64      `json:"next,omitempty,string"`
}

// errNodeList is a NodeListQuery this node cannot answer.
var errNodeList = errors.New("api: list query")

// NodePage answers q from this node's store (the peer protocol's list
// route). An error wraps queue.ErrInvalid for a query that is not one.
func (s *Server) NodePage(q NodeListQuery) (NodePage, error) {
	if s.cfg.Store == nil {
		return NodePage{}, fmt.Errorf("%w: messages are not configured", errNodeList)
	}
	if (q.Enterprise == "") != allEnterprises(q.List) || q.Limit < 1 || q.Limit > MaxListLimit {
		return NodePage{}, fmt.Errorf("%w: %w: enterprise (none for %s and %s) and limit 1–%d", errNodeList, queue.ErrInvalid, ListSentAll, ListInboxAll, MaxListLimit)
	}
	if isInbox(q.List) {
		f := queue.InboxFilter{Account: q.Account, Number: q.Number, From: q.From, To: q.To, AllEnterprises: q.List == ListInboxAll}
		list, next, err := s.cfg.Store.Inbox(q.Enterprise, f, q.Cursor, q.Limit)
		if err != nil {
			return NodePage{}, err
		}
		out := NodePage{Replies: make([]InboxItem, 0, len(list)), Next: next}
		for _, m := range list {
			out.Replies = append(out.Replies, inboxItemOf(m, f.AllEnterprises))
		}
		return out, nil
	}
	f := queue.ListFilter{Enterprise: q.Enterprise, Account: q.Account, Number: q.Number, From: q.From, To: q.To, Now: q.Now,
		SendFrom: q.SendFrom, SendTo: q.SendTo}
	switch q.List {
	case ListSent:
		f.Sent = true
	case ListSentAll:
		f.Sent, f.AllEnterprises = true, true
	case ListScheduled:
		f.Scheduled = true
	default:
		return NodePage{}, fmt.Errorf("%w: %w: list %q", errNodeList, queue.ErrInvalid, q.List)
	}
	if q.State != "" {
		st, ok := queue.ParseState(q.State)
		if !ok {
			return NodePage{}, fmt.Errorf("%w: %w: state %q", errNodeList, queue.ErrInvalid, q.State)
		}
		f.State = st
	}
	if q.Outcome != "" {
		sts, ok := outcomeStates[q.Outcome]
		if !ok {
			return NodePage{}, fmt.Errorf("%w: %w: outcome %q", errNodeList, queue.ErrInvalid, q.Outcome)
		}
		f.States = sts
	}
	ms, next, err := s.cfg.Store.List(f, q.Cursor, q.Limit)
	if err != nil {
		return NodePage{}, err
	}
	out := NodePage{Messages: make([]Message, len(ms)), Next: next}
	for i, m := range ms {
		out.Messages[i] = messageOut(m, f.Now, false)
		s.markHeld(&out.Messages[i], m)
		if f.AllEnterprises {
			out.Messages[i].Enterprise = m.Enterprise
		}
	}
	return out, nil
}

// listEntry is one item of a node's page, with what orders it.
type listEntry struct {
	At    time.Time
	ID    uint64
	Msg   *Message   // outboxes
	Reply *InboxItem // inbox
}

// newer orders entries newest first: by time, then by id.
func newer(a, b listEntry) bool {
	if !a.At.Equal(b.At) {
		return a.At.After(b.At)
	}
	return a.ID > b.ID
}

// listStream is one node's part of a merged list.
type listStream struct {
	Node    uint16
	Pos     uint64      // the node's cursor below the entries taken (where it began if none)
	Items   []listEntry // fetched and not taken yet, newest first
	Next    uint64      // the node's cursor after Items; 0: nothing after them
	Fetched bool        // Items and Next are answers of the node
	Missing bool        // it did not answer: left out
}

// done: the node has nothing more.
func (st *listStream) done() bool { return st.Fetched && len(st.Items) == 0 && st.Next == 0 }

// position is the node's place in the next page's cursor.
func (st *listStream) position() listPos {
	p := listPos{Node: st.Node, Pos: st.Pos}
	if st.Fetched && len(st.Items) == 0 {
		p.Pos, p.Done = st.Next, st.Next == 0
	}
	return p
}

// mergeStreams takes up to limit entries off streams, newest first, each
// only when it is safe: every other stream (not missing) has nothing
// more, or was fetched back at least as far as the entry (its last item
// fetched is not newer). It stops at limit, or when every stream is done
// or missing, or at an entry not yet safe: then blocked are the streams to
// ask for more (their next page) before anything more can be taken.
func mergeStreams(streams []*listStream, limit int) (taken []listEntry, blocked []*listStream) {
	for len(taken) < limit {
		var best *listStream
		for _, st := range streams {
			if !st.Missing && len(st.Items) > 0 && (best == nil || newer(st.Items[0], best.Items[0])) {
				best = st
			}
		}
		for _, st := range streams {
			if st == best || st.Missing || st.done() {
				continue
			}
			switch {
			case !st.Fetched:
				blocked = append(blocked, st)
			case st.Next == 0: // all it has is fetched
			case len(st.Items) == 0 || best != nil && newer(st.Items[len(st.Items)-1], best.Items[0]):
				blocked = append(blocked, st)
			}
		}
		if best == nil || len(blocked) > 0 {
			return taken, blocked
		}
		e := best.Items[0]
		best.Items = best.Items[1:]
		best.Pos = e.ID
		taken = append(taken, e)
	}
	return taken, nil
}

// listStreams are the nodes' streams of a list from cursor (its parameter
// param; "": from the newest), or false with a 400 written. unknown: the
// other nodes are not known (etcd did not answer), so only the ones the
// cursor names are asked and the page is partial.
func (s *Server) listStreams(ctx context.Context, w http.ResponseWriter, param, cursor string) (streams []*listStream, unknown, ok bool) {
	var from []listPos
	if cursor != "" {
		var err error
		if from, err = parseListCursor(cursor); err != nil {
			msg, zh := param+": the next of the previous page", pageCursorZH
			if _, numeric := canonicalUint(cursor, 64); numeric {
				msg = param + ": in a cluster a cursor is the next of a page of this list (c1.…), not a message id; start again without " + param
				zh = "翻页参数无效：集群中须使用上一页返回的 next（c1.…），不是短信编号；请去掉 " + param + " 从第一页开始"
			}
			writeInvalid(w, param, zh, msg)
			return nil, false, false
		}
	}
	self := s.cfg.PeerLists.Self()
	nodes, err := s.cfg.PeerLists.ListNodes(ctx)
	if err != nil {
		s.log.Warn("list without the other nodes'", "err", err)
		unknown, nodes = true, nil
		for _, p := range from {
			nodes = append(nodes, p.Node)
		}
	}
	nodes = append(nodes, self)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	streams = make([]*listStream, 0, len(nodes))
	for _, id := range nodes {
		st := &listStream{Node: id}
		if i := slices.IndexFunc(from, func(p listPos) bool { return p.Node == id }); i >= 0 {
			st.Pos = from[i].Pos
			st.Fetched = from[i].Done // nothing more: done
		}
		st.Missing = unknown && id != self // not asked: its address is unknown
		streams = append(streams, st)
	}
	return streams, unknown, true
}

// clusterPage merges the nodes' pages of q from streams: up to q.Limit
// entries, the next cursor ("" when every node that answered has nothing
// more) and the nodes missing from it (partial too with unknown: the
// other nodes are not known).
func (s *Server) clusterPage(ctx context.Context, q NodeListQuery, streams []*listStream, unknown bool) (taken []listEntry, next string, missing Missing) {
	limit := q.Limit
	deadline := time.Now().Add(s.user.listWait)
	for round := 0; ; round++ {
		got, blocked := mergeStreams(streams, limit-len(taken))
		taken = append(taken, got...)
		if len(blocked) == 0 || round == listRounds || round > 0 && time.Now().After(deadline) {
			break
		}
		q.Limit = limit - len(taken)
		s.fetchStreams(ctx, q, blocked)
	}
	var ps []listPos
	more := false
	for _, st := range streams {
		if st.Missing {
			missing.MissingNodes = append(missing.MissingNodes, st.Node)
		}
		p := st.position()
		more = more || !p.Done && !st.Missing
		ps = append(ps, p)
	}
	missing.Partial = unknown || len(missing.MissingNodes) > 0
	if more {
		next = formatListCursor(ps)
	}
	return taken, next, missing
}

// fetchStreams asks each stream's node for its following page, in
// parallel: this node in its store, the others over PeerLists. A node
// that fails is marked missing.
func (s *Server) fetchStreams(ctx context.Context, q NodeListQuery, streams []*listStream) {
	sem := make(chan struct{}, listPeerParallel)
	var wg sync.WaitGroup
	for _, st := range streams {
		nq := q
		nq.Cursor = st.Pos
		if st.Fetched {
			nq.Cursor = st.Next
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				st.Missing = true
				return
			}
			var pg NodePage
			var err error
			if st.Node == s.cfg.PeerLists.Self() {
				pg, err = s.NodePage(nq)
			} else {
				actx, cancel := context.WithTimeout(ctx, listPeerWait)
				pg, err = s.cfg.PeerLists.PeerPage(actx, st.Node, nq)
				cancel()
			}
			var items []listEntry
			if err == nil {
				items, err = pageEntries(q.List, pg, nq.Limit)
			}
			if err == nil && st.Node != s.cfg.PeerLists.Self() {
				items = toNumber(q, inSendRange(q, items))
			}
			if err != nil {
				s.log.Warn("list of a node unknown", "node", st.Node, "list", q.List, "enterprise", q.Enterprise, "err", err)
				st.Missing = true
				return
			}
			st.Items, st.Next, st.Fetched = append(st.Items, items...), pg.Next, true
		})
	}
	wg.Wait()
}

// pageEntries are a node's page as entries to merge.
func pageEntries(list string, pg NodePage, limit int) ([]listEntry, error) {
	var out []listEntry
	if isInbox(list) {
		for i := range pg.Replies {
			r := &pg.Replies[i]
			id, err := strconv.ParseUint(r.ID, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("reply id %q: %w", r.ID, err)
			}
			out = append(out, listEntry{At: r.ReceivedAt, ID: id, Reply: r})
		}
	} else {
		for i := range pg.Messages {
			m := &pg.Messages[i]
			id, err := strconv.ParseUint(m.ID, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("message id %q: %w", m.ID, err)
			}
			out = append(out, listEntry{At: m.AcceptedAt, ID: id, Msg: m})
		}
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%d items for a limit of %d", len(out), limit)
	}
	return out, nil
}

// inSendRange drops the messages of another node's page whose send_at
// is outside q's SendFrom and SendTo. A node older than send_from= and
// send_to= ignores them and pages its whole scheduled outbox; without
// this, while a cluster is upgraded node by node, the page would show
// other days' messages. For a node that filtered, nothing is dropped. The
// node's cursor stays past the dropped ones, as past any it skipped
// itself.
func inSendRange(q NodeListQuery, items []listEntry) []listEntry {
	if q.List != ListScheduled || q.SendFrom.IsZero() && q.SendTo.IsZero() {
		return items
	}
	return slices.DeleteFunc(items, func(e listEntry) bool {
		at := e.Msg.SendAt
		return !q.SendFrom.IsZero() && at.Before(q.SendFrom) || !q.SendTo.IsZero() && !at.Before(q.SendTo)
	})
}

// toNumber drops the messages of another node's page that are not to
// q's Number: a node older than number= on the outboxes ignores it, as
// inSendRange's does send_from=.
func toNumber(q NodeListQuery, items []listEntry) []listEntry {
	if isInbox(q.List) || q.Number == "" {
		return items
	}
	return slices.DeleteFunc(items, func(e listEntry) bool { return !queue.SameNumber(e.Msg.To, q.Number) })
}

// nodeQuery is the nodes' query of GET /v1/messages or /v1/scheduled (f).
func nodeQuery(f queue.ListFilter, outcome string, limit int) NodeListQuery {
	q := NodeListQuery{List: ListSent, Enterprise: f.Enterprise, Account: f.Account, Number: f.Number, Outcome: outcome,
		From: f.From, To: f.To, SendFrom: f.SendFrom, SendTo: f.SendTo, Now: f.Now, Limit: limit}
	switch {
	case f.Scheduled:
		q.List = ListScheduled
	case f.AllEnterprises:
		q.List = ListSentAll
	}
	if f.State != 0 {
		q.State = f.State.String()
	}
	return q
}

// clusterList answers GET /v1/messages or /v1/scheduled (f) in a cluster.
func (s *Server) clusterList(ctx context.Context, w http.ResponseWriter, c *caller, f queue.ListFilter, outcome, cursor string, limit int) {
	streams, unknown, ok := s.listStreams(ctx, w, "after", cursor)
	if !ok {
		return
	}
	taken, next, missing := s.clusterPage(ctx, nodeQuery(f, outcome, limit), streams, unknown)
	page := MessagePage{Messages: make([]Message, 0, len(taken)), Next: next, Missing: missing}
	for _, e := range taken {
		if c.listed(e.Msg.Enterprise) {
			page.Messages = append(page.Messages, *e.Msg)
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// inboxNodeQuery is the nodes' query of GET /v1/inbox (f).
func inboxNodeQuery(enterprise string, f queue.InboxFilter, limit int) NodeListQuery {
	q := NodeListQuery{List: ListInbox, Enterprise: enterprise, Account: f.Account, Number: f.Number, From: f.From, To: f.To, Limit: limit}
	if f.AllEnterprises {
		q.List = ListInboxAll
	}
	return q
}

// clusterInbox answers GET /v1/inbox in a cluster.
func (s *Server) clusterInbox(ctx context.Context, w http.ResponseWriter, c *caller, f queue.InboxFilter, cursor string, limit int) {
	streams, unknown, ok := s.listStreams(ctx, w, "before", cursor)
	if !ok {
		return
	}
	taken, next, missing := s.clusterPage(ctx, inboxNodeQuery(c.ent.Code, f, limit), streams, unknown)
	page := InboxPage{Replies: make([]InboxItem, 0, len(taken)), Next: next, Missing: missing}
	for _, e := range taken {
		if c.listed(e.Reply.Enterprise) {
			page.Replies = append(page.Replies, *e.Reply)
		}
	}
	writeJSON(w, http.StatusOK, page)
}

package cluster

// Lists across nodes. Each node keeps the messages it accepted and the
// replies (MO) that arrived on its binds, so an enterprise's outboxes and
// inbox are spread over the nodes' stores: the node that answers a list
// asks every other for a page from that node's own cursor and merges
// them. A node answers
//
//	GET /peer/v1/lists/{list}?enterprise=E&limit=N[&cursor=C][&account=A]
//	     [&number=D][&state=S][&outcome=O][&from=T][&to=T]
//	     [&send_from=T][&send_to=T][&now=T]
//	                              → its page, as the node's API shows its items:
//	                                {"messages"|"replies":[…],"next":"C"} ("next" absent:
//	                                it has nothing more)
//
// list is sent, scheduled, inbox, sent_all (every enterprise's sent
// messages to number, enterprise empty: the operator's trace of a number;
// a node older than it answers 400 and is named missing) or inbox_all
// (every enterprise's replies from number, as sent_all); C is the
// node's own numeric cursor (an
// id: its page begins below it); times are RFC 3339. 404 if the backend
// is not a PeerListBackend (a node older than cluster lists): the asking
// node names it missing. A page is bounded as the node's own API bounds
// one (limit at most PeerMaxListLimit; the store reads a bounded number of
// records a page), and its answer by PeerMaxBody.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// PeerMaxListLimit is the most items a node is asked for in one page.
const PeerMaxListLimit = 1000

// PeerLists are the lists a node pages for another.
var PeerLists = []string{"sent", "scheduled", "inbox", "sent_all", "inbox_all"}

// PeerListQuery is one node's page of a list, as another asks it.
type PeerListQuery struct {
	List       string // one of PeerLists
	Enterprise string // required, but for sent_all and inbox_all (none)
	Account    string
	Number     string // the handset's number or its last digits (sent_all, inbox_all: required)
	State      string
	Outcome    string
	From, To   time.Time
	SendFrom   time.Time // scheduled: by the messages' send time
	SendTo     time.Time
	Now        time.Time
	Cursor     uint64
	Limit      int // 1 to PeerMaxListLimit
}

// PeerListBackend is the optional part of a PeerBackend that answers
// GET /peer/v1/lists/{list}.
type PeerListBackend interface {
	// List returns the node's page of q as JSON, as the node's API shows
	// it. An error wrapping ErrPeerBadQuery is a 400.
	List(ctx context.Context, q PeerListQuery) (json.RawMessage, error)
}

// ErrPeerBadQuery: a PeerListBackend cannot answer the query as asked.
var ErrPeerBadQuery = errors.New("cluster: peer: bad query")

// listsRoutes registers the list endpoint if backend answers it.
func (s *peerServer) listsRoutes() {
	if lb, ok := s.backend.(PeerListBackend); ok {
		s.mux.HandleFunc("GET /peer/v1/lists/{list}", func(w http.ResponseWriter, r *http.Request) { s.list(w, r, lb) })
	}
}

func (s *peerServer) list(w http.ResponseWriter, r *http.Request, lb PeerListBackend) {
	q, err := parseListQuery(r.PathValue("list"), r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	page, err := lb.List(r.Context(), q)
	switch {
	case errors.Is(err, ErrPeerBadQuery):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case err != nil:
		s.log.Error("peer list", "node", PeerNode(r.Context()), "list", q.List, "enterprise", q.Enterprise, "err", err)
		http.Error(w, "list unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(page)
}

// parseListQuery reads a list's query off its path and parameters.
func parseListQuery(list string, v url.Values) (PeerListQuery, error) {
	q := PeerListQuery{List: list, Enterprise: v.Get("enterprise"), Account: v.Get("account"),
		Number: v.Get("number"), State: v.Get("state"), Outcome: v.Get("outcome")}
	known := false
	for _, l := range PeerLists {
		known = known || l == list
	}
	if !known {
		return q, fmt.Errorf("list: one of %v", PeerLists)
	}
	switch {
	case (list == "sent_all" || list == "inbox_all") && (q.Enterprise != "" || q.Number == ""):
		return q, fmt.Errorf("%s: a number and no enterprise", list)
	case list != "sent_all" && list != "inbox_all" && q.Enterprise == "":
		return q, errors.New("enterprise: required")
	}
	n, err := strconv.Atoi(v.Get("limit"))
	if err != nil || n < 1 || n > PeerMaxListLimit {
		return q, fmt.Errorf("limit: 1 to %d", PeerMaxListLimit)
	}
	q.Limit = n
	if c := v.Get("cursor"); c != "" {
		if q.Cursor, err = strconv.ParseUint(c, 10, 64); err != nil {
			return q, errors.New("cursor: a node's cursor")
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}, {"send_from", &q.SendFrom}, {"send_to", &q.SendTo}, {"now", &q.Now}} {
		if t := v.Get(p.name); t != "" {
			if *p.dst, err = time.Parse(time.RFC3339Nano, t); err != nil {
				return q, fmt.Errorf("%s: not an RFC 3339 time", p.name)
			}
		}
	}
	return q, nil
}

// List asks the node at peerURL for its page of q. An error means the
// page is unknown (a node older than cluster lists answers 404).
func (c *PeerClient) List(ctx context.Context, peerURL string, q PeerListQuery) (json.RawMessage, error) {
	v := url.Values{"enterprise": {q.Enterprise}, "limit": {strconv.Itoa(q.Limit)}}
	for k, s := range map[string]string{"account": q.Account, "number": q.Number, "state": q.State, "outcome": q.Outcome} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Cursor != 0 {
		v.Set("cursor", strconv.FormatUint(q.Cursor, 10))
	}
	for k, t := range map[string]time.Time{"from": q.From, "to": q.To, "send_from": q.SendFrom, "send_to": q.SendTo, "now": q.Now} {
		if !t.IsZero() {
			v.Set(k, t.Format(time.RFC3339Nano))
		}
	}
	data, err := c.do(ctx, http.MethodGet, peerURL, "/peer/v1/lists/"+url.PathEscape(q.List)+"?"+v.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("cluster: list %s of %s at %s: %w", q.List, q.Enterprise, peerURL, err)
	}
	return data, nil
}

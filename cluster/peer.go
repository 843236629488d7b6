package cluster

// The peer protocol: node to node, HTTP and JSON, authenticated with a
// secret all nodes share. Every request carries
//
//	Authorization: QXTD-HMAC <node-id>:<unix-time>:<mac>
//
// where mac is the hex HMAC-SHA256 under the secret of
//
//	method "\n" request-URI "\n" node-id "\n" unix-time "\n" hex(SHA-256(body))
//
// (request-URI: path and query as sent, e.g. /peer/v1/messages/7?enterprise=e).
// The server refuses (401) a header it cannot parse, a time more than
// PeerClockSkew away from its clock, or a MAC that does not match
// (compared in constant time); a body over PeerMaxBody (a relay's over
// PeerMaxRelayBody, a question's to /peer/v1/answers over
// PeerMaxAnswerBody, a reply part's over PeerMaxMOPartBody) is 413; more
// than PeerMaxInFlight requests at once (PeerMaxRelayInFlight relays,
// PeerMaxAnswerInFlight questions and PeerMaxMOPartInFlight reply parts,
// each pool counted apart) get 503 with the header Qxtd-Peer-Busy before
// their body is read, and so does an enterprise's question beyond its
// quarter of the questions' pool, once the body has named it
// (peer_answers.go). A
// request replayed within the skew window is accepted again: every
// endpoint is idempotent (a receipt matched twice is a duplicate).
//
// Endpoints (v1):
//
//	POST /peer/v1/receipts        {"receipts":[PeerReceipt…]} (at most PeerMaxReceipts)
//	                              → {"results":["matched"|"duplicate"|"unknown"…]} in order
//	GET  /peer/v1/messages/{id}?enterprise=E[&fragments=1]
//	                              → the message as the owner's backend gives it; 404 if it
//	                                has none (or it is another enterprise's); fragments=1
//	                                looks it up as query_sm does (QueryMessage)
//	POST /peer/v1/messages/{id}/cancel, …/replace
//	                              → PeerOutcome: the owner's answer to a cancel_sm /
//	                                replace_sm (or the API's DELETE / PATCH) that another
//	                                node received (peer_owner.go)
//	GET  /peer/v1/usage?month=M[&enterprise=E]
//	                              → the node's usage counters (peer_usage.go)
//	GET  /peer/v1/receipt-hooks?enterprise=E, POST …/retry, POST /peer/v1/reply-hooks/retry
//	                              → an enterprise's receipt and reply webhooks on the node:
//	                                their status, and "post the waiting ones now" of each
//	                                kind (peer_hooks.go)
//	POST /peer/v1/relay           {upstream, pdu} → the SMSC's submit_sm_resp status
//	                                and message_id, sent on this node's bind for a
//	                                node that holds none (peer_relay.go)
//	POST /peer/v1/deliver         receipts and replies for an ESME bound there (peerdeliver.go)
//	POST /peer/v1/answers         {"key":K} → what the node knows of an Idempotency-Key
//	                                (peer_answers.go)
//	POST /peer/v1/moparts         a part of a long reply (MO) → {"result":"stored"} once the
//	                                node that joins its reply stored it (peer_moparts.go)

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of the peer protocol.
const (
	PeerClockSkew = 60 * time.Second // accepted difference between a request's time and the server's clock
	PeerMaxBody   = 4 << 20          // bytes of a request (or response) body
	// PeerMaxInFlight bounds the requests other than relays and keyed
	// sends' questions a node reads and serves at once; more get 503 at
	// once (every caller retries: receipts and deliveries wait, a routed
	// query is a temporary failure), so a flood of bodies, authenticated
	// or not, holds at most PeerMaxInFlight × PeerMaxBody = 64 MiB.
	PeerMaxInFlight = 16
	// PeerMaxRelayInFlight bounds the relays (POST /peer/v1/relay) a
	// node serves at once, beside the others: a relay holds its slot for
	// the SMSC's answer, so with 16 in all a cluster relayed at most 16
	// per SMSC round trip (320 a second at 50 ms). Their bodies are at
	// most PeerMaxRelayBody, so a flood of them holds at most 32 MiB more.
	PeerMaxRelayInFlight = 256
	PeerMaxRelayBody     = 128 << 10
	// PeerMaxAnswerInFlight bounds the questions of keyed sends
	// (POST /peer/v1/answers) a node serves at once, beside the others:
	// every keyed send on every other node asks it first, so in the
	// general pool a burst of them took the 16 slots that receipts,
	// routed queries and lists need, and a burst of those made every
	// enterprise's keyed sends 503. 64 is as many connections as a node
	// keeps to another (PeerConnsPerNode): one node's questions alone,
	// however many its connections carry at once, are never turned away
	// by the pool (a question holds its slot only for a lookup in memory
	// and, for a kept answer, one read of the store). An answer is at
	// most some 160 KB (a 1,000-number send's), about 215 KB as base64
	// in JSON, so a full pool writes at most 64 × 215 KB ≈ 14 MB of
	// answers; counting each answer read from the store and the
	// encoder's buffer beside it, some 50 MB at the very worst. An
	// enterprise takes at most a quarter of the pool (peer_answers.go).
	PeerMaxAnswerInFlight = 64
	// PeerMaxAnswerBody bounds a question's body: {"key":K} with K at
	// most PeerMaxAnswerKey bytes, which encoding/json writes as at most
	// 6 bytes each (\u00XX for a control character or <, >, &, \ufffd for
	// a byte that is not UTF-8; a multi-byte character is 2–4 bytes as
	// itself, U+2028 and U+2029 6 for their 3), plus the 10 bytes of
	// {"key":""} and room for a field or two of a later release: 12,352
	// bytes, so a full pool holds under 1 MiB of questions.
	PeerMaxAnswerBody = 6*PeerMaxAnswerKey + 64
	// PeerConnsPerNode is the most connections a node opens to another
	// (and keeps idle): under the peer listener's per-address cap
	// (http.max_conns_per_addr, 64 by default), and requests beyond it
	// wait for one instead of dialling.
	PeerConnsPerNode = 64
	PeerMaxReceipts  = 512 // receipts in one POST /peer/v1/receipts
	// PeerTimeout bounds the backend's work on one request (server) and
	// one request's round trip (client, unless the caller's context is
	// shorter).
	PeerTimeout = 10 * time.Second
)

const peerAuthScheme = "QXTD-HMAC"

// PeerReceipt is a delivery receipt that one node received from an SMSC
// and could not match: it offers it to the others.
type PeerReceipt struct {
	Upstream string    `json:"upstream"` // the upstream's name, the same on every node
	SMSCID   string    `json:"smsc_id"`  // as the SMSC gave it
	State    string    `json:"state"`    // final state: delivered, expired, undeliverable, rejected, unknown
	Err      string    `json:"err,omitempty"`
	DoneAt   time.Time `json:"done_at"` // when the receiving node got it
	// Convert: old enough (its upstream's resp_timeout) to be matched by
	// the id in another base too, decimal for hex or the reverse; before
	// that only the id's own form matches.
	Convert bool `json:"convert,omitempty"`
}

// PeerResult is what a node did with a PeerReceipt.
type PeerResult string

// Results of MatchReceipts.
const (
	PeerMatched   PeerResult = "matched"   // a part of its messages had the id: now final
	PeerDuplicate PeerResult = "duplicate" // it had the id, the part was already final
	PeerUnknown   PeerResult = "unknown"   // no part of its messages has the id (yet)
)

// PeerBackend is what the peer server needs of the node: the gateway
// implements it (cmd/qxtd adapts it).
type PeerBackend interface {
	// MatchReceipts applies the receipts whose SMSC id one of the node's
	// parts has and stores nothing for the others: one result per
	// receipt, in order. An error fails the whole batch (500): the
	// sender keeps the receipts and tries again.
	MatchReceipts(ctx context.Context, rs []PeerReceipt) ([]PeerResult, error)
	// Message returns message id of enterprise as JSON, as the node's
	// API would show it, or ErrPeerNotFound.
	Message(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error)
	// QueryMessage is Message as query_sm looks a message up: the id of
	// one part of a message its ESME split itself, still waiting for the
	// others, is found too (GET …?enterprise=E&fragments=1).
	QueryMessage(ctx context.Context, enterprise string, id uint64) (json.RawMessage, error)
	// Cancel cancels scheduled message id for acct exactly as a local
	// request of acct would, and returns the outcome (refusals are
	// outcomes, not errors). An error (the store failed) is a 500: the
	// caller tells its client to try later.
	Cancel(ctx context.Context, id uint64, acct PeerAccount) (PeerOutcome, error)
	// Replace changes scheduled message id as Cancel cancels it.
	Replace(ctx context.Context, id uint64, req PeerReplace) (PeerOutcome, error)
}

// ErrPeerNotFound: the node has no such message (or it is another
// enterprise's). PeerBackend.Message returns it; PeerClient.Message
// returns it for a 404.
var ErrPeerNotFound = errors.New("cluster: peer: not found")

// PeerError is a peer's refusal: an HTTP status other than 200 (and 404
// for a message).
type PeerError struct {
	Status  int
	Message string
	busy    bool
}

// peerBusyHeader marks a 503 that says "too many requests at once, try
// again" rather than the endpoint's own 503 (a relay's "no bind").
const peerBusyHeader = "Qxtd-Peer-Busy"

// ErrPeerBusy: the peer served as many requests as it takes at once;
// nothing was done, try again shortly.
var ErrPeerBusy = errors.New("cluster: peer busy")

// Busy says whether the peer refused the request for being at its
// in-flight bound, or a question for its enterprise's share of it
// (nothing was done).
func (e *PeerError) Busy() bool { return e.busy }

func (e *PeerError) Error() string {
	return fmt.Sprintf("cluster: peer answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

type receiptsRequest struct {
	Receipts []PeerReceipt `json:"receipts"`
}

type receiptsResponse struct {
	Results []PeerResult `json:"results"`
}

// peerMAC is the hex MAC of one request.
func peerMAC(secret []byte, method, uri string, node uint16, unix int64, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s\n%s\n%d\n%d\n%s", method, uri, node, unix, hex.EncodeToString(sum[:]))
	return hex.EncodeToString(m.Sum(nil))
}

// parseAuth splits an Authorization header value.
func parseAuth(h string) (node uint16, unix int64, mac []byte, ok bool) {
	rest, found := strings.CutPrefix(h, peerAuthScheme+" ")
	if !found {
		return 0, 0, nil, false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return 0, 0, nil, false
	}
	n, err := strconv.ParseUint(parts[0], 10, 16)
	if err != nil || n == 0 {
		return 0, 0, nil, false
	}
	unix, err = strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return 0, 0, nil, false
	}
	mac, err = hex.DecodeString(parts[2])
	if err != nil || len(mac) != sha256.Size {
		return 0, 0, nil, false
	}
	return uint16(n), unix, mac, true
}

// peerServer is PeerHandler's handler.
type peerServer struct {
	secret  []byte
	backend PeerBackend
	log     *slog.Logger
	mux     *http.ServeMux
	now     func() time.Time // tests
	// inflight holds a token per request being read or served; relays
	// and answers the same for relays and for keyed sends' questions,
	// which have their own bounds (and body limits).
	inflight, relays, answers chan struct{}
	// moParts: the same for reply parts handed over (peer_moparts.go).
	moParts chan struct{}
	// answerShares counts an enterprise's questions being served (no
	// entry at 0): each at most peerAnswerShare (peer_answers.go).
	answerMu     sync.Mutex
	answerShares map[string]int
}

type peerNodeKey struct{}

// PeerNode returns the node id of the authenticated peer that sent the
// request whose context ctx is (0 outside PeerHandler).
func PeerNode(ctx context.Context) uint16 {
	n, _ := ctx.Value(peerNodeKey{}).(uint16)
	return n
}

// PeerHandler serves the peer protocol over backend: the daemon mounts it
// on its peer listener. Requests must be signed with secret; log
// receives refusals and backend errors (nil: discard).
func PeerHandler(secret []byte, backend PeerBackend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &peerServer{secret: bytes.Clone(secret), backend: backend, log: log, mux: http.NewServeMux(), now: time.Now,
		inflight: make(chan struct{}, PeerMaxInFlight), relays: make(chan struct{}, PeerMaxRelayInFlight),
		answers: make(chan struct{}, PeerMaxAnswerInFlight), answerShares: map[string]int{},
		moParts: make(chan struct{}, PeerMaxMOPartInFlight)}
	s.mux.HandleFunc("POST /peer/v1/receipts", s.receipts)
	s.mux.HandleFunc("GET /peer/v1/messages/{id}", s.message)
	s.mux.HandleFunc("POST /peer/v1/messages/{id}/cancel", s.cancel)
	s.mux.HandleFunc("POST /peer/v1/messages/{id}/replace", s.replace)
	s.usageRoutes()                                      // peer_usage.go
	s.hooksRoutes()                                      // peer_hooks.go
	s.loadRoutes()                                       // peer_load.go
	s.listsRoutes()                                      // peer_lists.go
	s.answersRoutes()                                    // peer_answers.go
	s.mux.HandleFunc("POST /peer/v1/relay", s.relay)     // peer_relay.go
	s.mux.HandleFunc("POST /peer/v1/deliver", s.deliver) // peerdeliver.go
	s.mux.HandleFunc("POST /peer/v1/moparts", s.moPart)  // peer_moparts.go
	return s
}

func (s *peerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pool, limit := s.inflight, int64(PeerMaxBody)
	if r.Method == http.MethodPost {
		switch r.URL.Path {
		case "/peer/v1/relay":
			pool, limit = s.relays, PeerMaxRelayBody
		case "/peer/v1/answers":
			pool, limit = s.answers, PeerMaxAnswerBody
		case "/peer/v1/moparts":
			pool, limit = s.moParts, PeerMaxMOPartBody
		}
	}
	select {
	case pool <- struct{}{}:
		defer func() { <-pool }()
	default:
		// Not logged: a flood would flood the log too.
		w.Header().Set(peerBusyHeader, "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	node, unix, mac, ok := parseAuth(r.Header.Get("Authorization"))
	if !ok {
		s.refuse(w, r, http.StatusUnauthorized, "missing or malformed authorization")
		return
	}
	if d := s.now().Sub(time.Unix(unix, 0)); d > PeerClockSkew || d < -PeerClockSkew {
		s.refuse(w, r, http.StatusUnauthorized, "request time off by more than the accepted skew")
		return
	}
	if r.ContentLength > limit {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		s.refuse(w, r, http.StatusBadRequest, "body unreadable")
		return
	}
	want := peerMAC(s.secret, r.Method, r.URL.RequestURI(), node, unix, body)
	if !hmac.Equal(mac, mustHex(want)) {
		s.refuse(w, r, http.StatusUnauthorized, "bad signature")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), peerNodeKey{}, node), PeerTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mux.ServeHTTP(w, r)
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

func (s *peerServer) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.log.Warn("peer request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", status, "reason", msg)
	http.Error(w, msg, status)
}

func (s *peerServer) receipts(w http.ResponseWriter, r *http.Request) {
	var req receiptsRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad receipts: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Receipts) > PeerMaxReceipts {
		http.Error(w, fmt.Sprintf("more than %d receipts", PeerMaxReceipts), http.StatusRequestEntityTooLarge)
		return
	}
	res, err := s.backend.MatchReceipts(r.Context(), req.Receipts)
	if err == nil && len(res) != len(req.Receipts) {
		err = fmt.Errorf("backend gave %d results for %d receipts", len(res), len(req.Receipts))
	}
	if err != nil {
		s.log.Error("peer receipts", "node", PeerNode(r.Context()), "receipts", len(req.Receipts), "err", err)
		http.Error(w, "receipts not applied", http.StatusInternalServerError)
		return
	}
	writeJSON(w, receiptsResponse{Results: res})
}

func (s *peerServer) message(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "bad message id", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	lookup := s.backend.Message
	if q.Get("fragments") == "1" {
		lookup = s.backend.QueryMessage
	}
	m, err := lookup(r.Context(), q.Get("enterprise"), id)
	switch {
	case errors.Is(err, ErrPeerNotFound):
		http.Error(w, "no such message", http.StatusNotFound)
		return
	case err != nil:
		s.log.Error("peer message", "node", PeerNode(r.Context()), "id", id, "err", err)
		http.Error(w, "message unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(m)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the answer failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// PeerClient calls other nodes' PeerHandler. It is safe for concurrent use.
type PeerClient struct {
	node   uint16
	secret []byte
	hc     *http.Client
	now    func() time.Time // tests
}

// NewPeerHTTPClient is the HTTP client for NewPeerClient: at most
// PeerConnsPerNode connections to each node, kept alive between requests
// (http.DefaultClient keeps two idle per host, so a node relaying many
// segments at once dialled a new connection for nearly every one), and
// no proxy from the environment.
func NewPeerHTTPClient() *http.Client {
	return &http.Client{
		Timeout: PeerTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxConnsPerHost:     PeerConnsPerNode,
			MaxIdleConnsPerHost: PeerConnsPerNode,
			MaxIdleConns:        4 * PeerConnsPerNode,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// NewPeerClient returns a client that signs its requests as node with
// secret and sends them with hc (nil: NewPeerHTTPClient). Each request
// is bounded by PeerTimeout unless the caller's context ends earlier.
func NewPeerClient(node uint16, secret []byte, hc *http.Client) *PeerClient {
	if hc == nil {
		hc = NewPeerHTTPClient()
	}
	return &PeerClient{node: node, secret: bytes.Clone(secret), hc: hc, now: time.Now}
}

// PushReceipts offers rs (at most PeerMaxReceipts) to the node at
// peerURL (its base URL, e.g. "http://10.0.0.2:7946") and returns its
// result for each, in order. An error means nothing is known of the
// outcome: the caller keeps the receipts and tries again later (matching
// is idempotent).
func (c *PeerClient) PushReceipts(ctx context.Context, peerURL string, rs []PeerReceipt) ([]PeerResult, error) {
	if len(rs) > PeerMaxReceipts {
		return nil, fmt.Errorf("cluster: push receipts: %d receipts, at most %d", len(rs), PeerMaxReceipts)
	}
	body, err := json.Marshal(receiptsRequest{Receipts: rs})
	if err != nil {
		return nil, fmt.Errorf("cluster: push receipts: %w", err)
	}
	data, err := c.do(ctx, http.MethodPost, peerURL, "/peer/v1/receipts", body)
	if err != nil {
		return nil, fmt.Errorf("cluster: push receipts to %s: %w", peerURL, err)
	}
	var resp receiptsResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("cluster: push receipts to %s: answer: %w", peerURL, err)
	}
	if len(resp.Results) != len(rs) {
		return nil, fmt.Errorf("cluster: push receipts to %s: %d results for %d receipts", peerURL, len(resp.Results), len(rs))
	}
	return resp.Results, nil
}

// Message asks the node at peerURL for message id of enterprise (the
// node NodeOf the id names). ErrPeerNotFound if it has none.
func (c *PeerClient) Message(ctx context.Context, peerURL, enterprise string, id uint64) (json.RawMessage, error) {
	return c.message(ctx, peerURL, url.Values{"enterprise": {enterprise}}, id)
}

// QueryMessage is Message looked up as query_sm does
// (PeerBackend.QueryMessage).
func (c *PeerClient) QueryMessage(ctx context.Context, peerURL, enterprise string, id uint64) (json.RawMessage, error) {
	return c.message(ctx, peerURL, url.Values{"enterprise": {enterprise}, "fragments": {"1"}}, id)
}

func (c *PeerClient) message(ctx context.Context, peerURL string, q url.Values, id uint64) (json.RawMessage, error) {
	uri := "/peer/v1/messages/" + strconv.FormatUint(id, 10) + "?" + q.Encode()
	data, err := c.do(ctx, http.MethodGet, peerURL, uri, nil)
	if pe, ok := errors.AsType[*PeerError](err); ok && pe.Status == http.StatusNotFound {
		return nil, fmt.Errorf("cluster: message %d at %s: %w", id, peerURL, ErrPeerNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: message %d at %s: %w", id, peerURL, err)
	}
	return data, nil
}

// do sends one signed request and returns the body of a 200 answer.
func (c *PeerClient) do(ctx context.Context, method, base, uri string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+uri, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	unix := c.now().Unix()
	req.Header.Set("Authorization", fmt.Sprintf("%s %d:%d:%s", peerAuthScheme, c.node, unix,
		peerMAC(c.secret, method, req.URL.RequestURI(), c.node, unix, body)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, PeerMaxBody+1))
	if err != nil {
		return nil, err
	}
	if len(data) > PeerMaxBody {
		return nil, fmt.Errorf("answer over %d bytes", PeerMaxBody)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &PeerError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data)),
			busy: resp.Header.Get(peerBusyHeader) != ""}
	}
	return data, nil
}

package cluster

// Idempotency keys across nodes. A node keeps the answers of the sends
// it ran under their Idempotency-Key (package api, in its store); a
// client behind a load balancer may send its retry to another node. So a
// node about to run a keyed send first asks every other live node
//
//	POST /peer/v1/answers   {"key":K}
//	                        → {"state":"none"} | {"state":"running"} |
//	                          {"state":"done","code":C,"header":{…},"body":"base64","sum":"base64"}
//
// and replays a node's answer rather than sending again. K is api's whole
// key (enterprise, user, route and the client's key, joined by NULs; at
// most PeerMaxAnswerKey bytes). 404 if the backend is not a
// PeerAnswerBackend (a node older than this): the asking node cannot
// know that node's keys and says so.
//
// The questions have a pool of their own (PeerMaxAnswerInFlight, bodies
// at most PeerMaxAnswerBody): a burst of keyed sends does not take the
// slots of receipts, routed queries and lists, nor a burst of those make
// keyed sends fail. Within it an enterprise has at most a quarter
// (peerAnswerShare), so one enterprise's burst does not make every
// other's keyed sends 503 either: beyond it a question is answered 503
// busy, as beyond the pool. The enterprise is read from K, up to its
// first NUL (api's enterprise codes are letters, digits, - and _): no
// field is added to the question, so an older node's questions are
// counted by enterprise too. A key without a NUL counts as one unnamed
// enterprise.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// PeerMaxAnswerKey bounds a key asked for.
const PeerMaxAnswerKey = 2048

// peerAnswerShare is the most questions of one enterprise a node serves
// at once: a quarter of PeerMaxAnswerInFlight (at least 1).
const peerAnswerShare = max(PeerMaxAnswerInFlight/4, 1)

// The states of a key on a node.
const (
	AnswerNone    = "none"    // the node has not seen it
	AnswerRunning = "running" // its request runs there now
	AnswerDone    = "done"    // answered: Code, Header, Body
)

// PeerAnswer is what a node knows of a key.
type PeerAnswer struct {
	State  string      `json:"state"`
	Code   int         `json:"code,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
	Sum    []byte      `json:"sum,omitempty"` // the fingerprint of the request it answered
}

// PeerAnswerBackend is the optional part of a PeerBackend that answers
// POST /peer/v1/answers.
type PeerAnswerBackend interface {
	Answer(ctx context.Context, key string) (PeerAnswer, error)
}

type peerAnswerQuery struct {
	Key string `json:"key"`
}

// answersRoutes registers the answers endpoint if backend answers it.
func (s *peerServer) answersRoutes() {
	if ab, ok := s.backend.(PeerAnswerBackend); ok {
		s.mux.HandleFunc("POST /peer/v1/answers", func(w http.ResponseWriter, r *http.Request) { s.answer(w, r, ab) })
	}
}

func (s *peerServer) answer(w http.ResponseWriter, r *http.Request, ab PeerAnswerBackend) {
	var q peerAnswerQuery
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Key == "" || len(q.Key) > PeerMaxAnswerKey {
		http.Error(w, fmt.Sprintf("key: 1 to %d bytes", PeerMaxAnswerKey), http.StatusBadRequest)
		return
	}
	// The request holds its slot of the pool already (ServeHTTP); the
	// share needs the body, so it is taken here.
	ent := answerEnterprise(q.Key)
	if !s.takeAnswerShare(ent) {
		// Not logged, as the pool's busy: the asking node logs its 503.
		w.Header().Set(peerBusyHeader, "1")
		http.Error(w, "busy: the enterprise's share of questions", http.StatusServiceUnavailable)
		return
	}
	defer s.releaseAnswerShare(ent)
	a, err := ab.Answer(r.Context(), q.Key)
	if err != nil {
		s.log.Error("peer answer", "node", PeerNode(r.Context()), "err", err)
		http.Error(w, "answer unavailable", http.StatusInternalServerError)
		return
	}
	writeJSON(w, a)
}

// answerEnterprise is the enterprise of api's key: up to its first NUL
// ("" for a key without one).
func answerEnterprise(key string) string {
	ent, _, found := strings.Cut(key, "\x00")
	if !found {
		return ""
	}
	return ent
}

// takeAnswerShare counts a question of ent, unless ent has
// peerAnswerShare being served.
func (s *peerServer) takeAnswerShare(ent string) bool {
	s.answerMu.Lock()
	defer s.answerMu.Unlock()
	if s.answerShares[ent] >= peerAnswerShare {
		return false
	}
	s.answerShares[ent]++
	return true
}

// releaseAnswerShare ends a question takeAnswerShare counted.
func (s *peerServer) releaseAnswerShare(ent string) {
	s.answerMu.Lock()
	defer s.answerMu.Unlock()
	if s.answerShares[ent]--; s.answerShares[ent] <= 0 {
		delete(s.answerShares, ent)
	}
}

// Answer asks the node at peerURL what it knows of key.
func (c *PeerClient) Answer(ctx context.Context, peerURL, key string) (PeerAnswer, error) {
	body, _ := json.Marshal(peerAnswerQuery{Key: key})
	data, err := c.do(ctx, http.MethodPost, peerURL, "/peer/v1/answers", body)
	if err != nil {
		return PeerAnswer{}, fmt.Errorf("cluster: answer at %s: %w", peerURL, err)
	}
	var a PeerAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return PeerAnswer{}, fmt.Errorf("cluster: answer at %s: %w", peerURL, err)
	}
	switch {
	case a.State == AnswerNone, a.State == AnswerRunning:
	case a.State == AnswerDone && a.Code >= 100 && a.Code <= 999:
	default:
		return PeerAnswer{}, fmt.Errorf("cluster: answer at %s: %w", peerURL, errors.New("state "+a.State))
	}
	return a, nil
}

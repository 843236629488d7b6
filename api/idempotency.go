package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
)

// Idempotency keys for POST /v1/messages: a client that sends the same
// Idempotency-Key header again (a retry after a lost answer) gets the
// first answer back and nothing is sent twice. Keys are per user, kept
// for IdempotencyTTL. With a store (the daemon's), each answer is saved
// in it before the client hears it and its body is read back from there
// when a retry asks, so a restart or a crash — when answers get lost —
// forgets no key, and the memory holds the keys, not the answers. Without
// one (tests), the answers are kept in memory.
//
// The answers kept are what all enterprises share on a node, so they are
// bounded twice: at most MaxIdempotencyKeys keys and MaxIdempotencyBytes
// of answers (a group send's answer is up to some 150 KiB: a count alone
// would let 100,000 of them take 15 GiB), and an enterprise at most
// 1/idemShare of either, its own oldest keys going first beyond it. So one
// enterprise flooding keys only shortens its own keys' lives; the others'
// go early only once several enterprises hold their whole share. A key
// whose request still runs is never dropped (a retry waits for it).
const (
	IdempotencyTTL      = 24 * time.Hour
	MaxIdempotencyKeys  = 100_000
	MaxIdempotencyBytes = 64 << 20
	idemShare           = 4
	maxIdempotencyKey   = 128 // bytes
	idemOverhead        = 64  // bytes counted for an entry beyond its key and answer
)

// recorder keeps what a handler writes so it can be replayed.
type recorder struct {
	hdr  http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.hdr }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// idempotent runs h once per (user, route, Idempotency-Key); requests
// without the header run as usual. The route is part of the key: a client
// that numbers its requests per endpoint would otherwise get a personalized
// send's answer replayed for a send with the same key (and no send).
func (s *Server) idempotent(h func(*caller, http.ResponseWriter, *http.Request)) func(*caller, http.ResponseWriter, *http.Request) {
	return s.keyed(h, false)
}

// idempotentSend is idempotent for a handler that sends (gateway.Send or
// SendEach, once) and answers 200 with sendResponse's body (renderSend):
// that answer is stored with the messages, in their transaction.
func (s *Server) idempotentSend(h func(*caller, http.ResponseWriter, *http.Request)) func(*caller, http.ResponseWriter, *http.Request) {
	return s.keyed(h, true)
}

// notKeyChar is a character an Idempotency-Key may not have: the IETF
// draft's key is a structured-field string, printable ASCII. A byte that
// is not UTF-8 also could not cross to another node whole: the question
// (cluster's POST /peer/v1/answers, JSON) would carry U+FFFD instead, so
// that node would look up another key, answer that it has not seen it,
// and a retry there would be sent again.
func notKeyChar(r rune) bool { return r < 0x20 || r > 0x7e }

func (s *Server) keyed(h func(*caller, http.ResponseWriter, *http.Request), sends bool) func(*caller, http.ResponseWriter, *http.Request) {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			h(c, w, r)
			return
		}
		if len(key) > maxIdempotencyKey || strings.IndexFunc(key, notKeyChar) >= 0 {
			writeInvalid(w, "Idempotency-Key", "Idempotency-Key 最多 128 个可打印的 ASCII 字符（如 UUID、订单号）",
				"Idempotency-Key: at most 128 printable ASCII characters (a UUID, an order number)")
			return
		}
		// The enterprise first, up to the first NUL: another node
		// asked about k counts its questions by it (cluster's
		// peer_answers.go).
		k := c.ent.Code + "\x00" + c.user.SystemID + "\x00" + r.URL.Path + "\x00" + key
		idem := s.user.idem
		e, first := idem.begin(c.ent.Code, k)
		var (
			code            int
			hdr             http.Header
			body            []byte
			saved, replayed bool
		)
		if first {
			code, hdr, body, replayed = s.runOnce(c, r, h, e, sends)
			if replayed {
				w.Header().Set("Idempotent-Replayed", "true")
			}
		} else {
			sum := requestSum(r) // read while the first runs
			select {
			case <-e.done:
			case <-r.Context().Done():
				return
			}
			var first []byte
			if code, hdr, body, first, saved = idem.answer(e); !sameRequest(first, sum) {
				writeKeyReused(w)
				return
			}
			if saved {
				var ok bool
				if hdr, body, ok = s.loadAnswer(e.key); !ok {
					// The key was answered, the answer cannot be read:
					// sending again could send twice.
					writeError(w, http.StatusInternalServerError, "internal", "the first answer of this Idempotency-Key cannot be read; nothing was sent again")
					return
				}
			}
			w.Header().Set("Idempotent-Replayed", "true")
		}
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(code)
		_, _ = w.Write(body)
		s.deleteForgotten(r.Context())
	}
}

// runOnce runs h for e's key, its first request on this node, and
// returns its answer. In a cluster it first asks the other nodes
// (PeerAnswers): a key answered there is replayed (replayed) and kept
// here too; a key whose request runs there, or that a node could not be
// asked about, is refused for now (409 in_progress, 503 unavailable, both
// with Retry-After): sending would risk sending twice, and the client
// retries anyway.
func (s *Server) runOnce(c *caller, r *http.Request, h func(*caller, http.ResponseWriter, *http.Request), e *idemEntry, sends bool) (code int, hdr http.Header, body []byte, replayed bool) {
	idem := s.user.idem
	rec := &recorder{hdr: http.Header{}, code: http.StatusOK}
	refuse := func() (int, http.Header, []byte, bool) {
		body := bytes.Clone(rec.body.Bytes())
		idem.finish(e, rec.code, rec.hdr, body)
		idem.forget(e)
		return rec.code, rec.hdr, body, false
	}
	if s.cfg.PeerAnswers != nil {
		actx, cancel := context.WithTimeout(r.Context(), keyPeerWait)
		pa, node, err := s.cfg.PeerAnswers.FindAnswer(actx, e.key)
		cancel()
		switch {
		case err != nil:
			s.log.Warn("idempotency key: a node could not be asked; the send is refused for now", "enterprise", c.ent.Code, "err", err)
			rec.hdr.Set("Retry-After", "2")
			writeError(rec, http.StatusServiceUnavailable, "unavailable",
				"another node of the cluster could not be asked whether this Idempotency-Key was sent there; nothing was sent: retry")
			return refuse()
		case pa.State == KeyRunning:
			rec.hdr.Set("Retry-After", "1")
			writeError(rec, http.StatusConflict, "in_progress",
				fmt.Sprintf("a request with this Idempotency-Key is still running on node %d; nothing was sent: retry for its answer", node))
			return refuse()
		case pa.State == KeyDone:
			if sum := requestSum(r); !sameRequest(pa.Sum, sum) {
				writeKeyReused(rec)
				return refuse()
			}
			code, hdr, body = pa.Code, pa.Header, pa.Body
			if hdr == nil {
				hdr = http.Header{}
			}
			if !s.saveAnswer(r.Context(), e, code, hdr, body, pa.Sum) {
				idem.finishSum(e, code, hdr, body, pa.Sum)
			}
			return code, hdr, body, true
		}
	}
	if sends && s.cfg.Store != nil {
		switch code, hdr, body, found := s.storedAlone(r, e, rec); {
		case found && code != 0:
			return code, hdr, body, true
		case found:
			return refuse()
		}
	}
	bodySum := func() []byte { return nil }
	if h := bodyHash(r); h != nil {
		tee := &summing{r: r.Body, h: h}
		r.Body = tee
		bodySum = tee.sum
	}
	var ga *gateway.Answer
	if sends && s.cfg.Store != nil {
		ga = &gateway.Answer{Key: e.key, Enterprise: e.ent, At: e.at, Header: []byte(sendHeader), Sum: bodySum, Render: renderSend}
		r = r.WithContext(gateway.WithAnswer(r.Context(), ga))
	}
	h(c, rec, r)
	// bodySum reads the rest of the body to hash it, so it is taken only
	// for an answer that is kept: a refusal is not (below), and a body
	// refused at once (413, 429) is not read on up to maxSumBody.

	// A copy of its exact size: the buffer grew to up to twice the
	// answer, and what is kept is what the bounds count.
	code, hdr, body = rec.code, rec.hdr, bytes.Clone(rec.body.Bytes())
	if ga != nil && ga.Stored() != nil {
		// Stored with the messages, in their transaction: the answer
		// written must be that one.
		if hj, _ := json.Marshal(hdr); code == http.StatusOK && bytes.Equal(ga.Stored(), body) && string(hj) == sendHeader {
			idem.finishSaved(e, code, len(e.key)+len(hj)+len(body), bodySum())
			return code, hdr, body, false
		}
		s.log.Error("idempotency key: the answer stored with the messages is not the one written; saving the one written",
			"enterprise", e.ent, "status", code)
		if s.saveAnswer(r.Context(), e, code, hdr, body, bodySum()) {
			return code, hdr, body, false
		}
	}
	switch {
	case code >= 400:
		// The request was refused as a whole (a bad field, the rate
		// limit, a disabled account) or failed: nothing was accepted, and
		// a retry must run again, once the cause is mended, rather than
		// meet this answer for a day (those waiting meanwhile get it).
		idem.finish(e, code, hdr, body)
		idem.forget(e)
	case s.saveAnswer(r.Context(), e, code, hdr, body, bodySum()):
	default:
		idem.finishSum(e, code, hdr, body, bodySum())
	}
	return code, hdr, body, false
}

// keyPeerWait bounds the question to the other nodes before a keyed
// request runs: a node that does not answer by then is one that cannot be
// asked (503), rather than every keyed send waiting out the peer
// client's 10 s for a node that hangs.
const keyPeerWait = 2 * time.Second

// sendHeader is the headers of a send's answer (writeJSON's), as saved.
const sendHeader = `{"Content-Type":["application/json; charset=utf-8"]}`

// A key is for one request: sent again with another body (a client that
// numbers its requests and reuses a number, one that keys by order and
// sends a corrected text, an upload of another file), replaying the first
// answer would silently drop the new request, and running it would break
// the key's promise. So the request is refused (422
// idempotency_key_reused), as the IETF's Idempotency-Key draft has it. The
// fingerprint is the SHA-256 of the body, read to its end (at most
// maxSumBody: beyond, the route refused it anyway); of a multipart body
// (POST /v1/batches), the SHA-256 of the body with its boundary left out
// (bodyHash).
const maxSumBody = MaxBatchBody + 1<<20

// sumHash is what a body is fingerprinted with: SHA-256, or a stripping
// one over it. Sum is taken once, at the end.
type sumHash interface {
	io.Writer
	Sum(b []byte) []byte
}

// summing hashes what is read through it.
type summing struct {
	r    io.ReadCloser
	h    sumHash
	done []byte // the sum, once taken
}

func (t *summing) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.h.Write(p[:n])
	return n, err
}

func (t *summing) Close() error { return t.r.Close() }

// sum reads the rest of the body (what the handler left: usually nothing)
// and returns the fingerprint of the whole; the same again when asked
// again.
func (t *summing) sum() []byte {
	if t.done != nil {
		return t.done
	}
	var buf [1024]byte // not io.Copy's 32 KiB a call: this runs for every keyed send
	for n := 0; n < maxSumBody; {
		k, err := t.r.Read(buf[:])
		t.h.Write(buf[:k])
		n += k
		if err != nil {
			break
		}
	}
	t.done = t.h.Sum(nil)
	return t.done
}

// requestSum is the fingerprint of r's body read whole, nil for a body
// not fingerprinted.
func requestSum(r *http.Request) []byte {
	h := bodyHash(r)
	if h == nil {
		return nil
	}
	return (&summing{r: r.Body, h: h}).sum()
}

// bodyHash is the hash that fingerprints r's body, nil for a body not
// fingerprinted. A multipart upload (POST /v1/batches) draws its boundary
// anew for every try (curl -F, a browser's form, the console's relay), so
// that the same file sent again is other bytes: it is hashed with every
// occurrence of its boundary left out, which leaves the same bytes for
// the same parts and other bytes for another file or field. A multipart
// body without a boundary (which the route refuses) is not fingerprinted,
// nor one whose boundary is longer than RFC 2046's 70 bytes (no client
// draws one; Go's reader takes it): a write to the stripping hash costs
// the boundary's length besides its own, and the sum may read up to
// maxSumBody in writes of 1 KiB.
func bodyHash(r *http.Request) sumHash {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var h sumHash
	switch b := params["boundary"]; {
	case !strings.HasPrefix(mt, "multipart/"):
		h = sha256.New()
	case b != "" && len(b) <= maxBoundary:
		h = newStripping(sha256.New(), b)
	default:
		return nil
	}
	writeQuery(h, r.URL.RawQuery)
	return h
}

// writeQuery puts a request's query, if it has one, in its fingerprint:
// a file posted as the body (text/csv, an XLSX) takes its options there
// (?template=…&send_at=…), and the same file with another template is
// another request. Its parameters are sorted, so the same query written
// in another order is the same request; a request without one hashes its
// body alone, as before the query counted.
func writeQuery(h io.Writer, raw string) {
	if raw == "" {
		return
	}
	q := raw
	if v, err := url.ParseQuery(raw); err == nil {
		q = v.Encode()
	}
	io.WriteString(h, "?"+q+"\n")
}

// maxBoundary is the longest multipart boundary RFC 2046 allows.
const maxBoundary = 70

// stripping passes what is written to it on to h with every occurrence of
// sep left out (as bytes.ReplaceAll(all, sep, nil) would, however the
// writes split the stream). Between writes it holds back a tail of at
// most len(sep)-1 bytes that may begin an occurrence; Sum writes it.
type stripping struct {
	h   sumHash
	sep []byte
	// tail is held back; its capacity, 2*(len(sep)-1), also takes a
	// write short enough to join it, and the first len(sep)-1 bytes of
	// a longer one: no write allocates.
	tail []byte
}

func newStripping(h sumHash, sep string) *stripping {
	return &stripping{h: h, sep: []byte(sep), tail: make([]byte, 0, 2*(len(sep)-1))}
}

func (s *stripping) Write(p []byte) (int, error) {
	n := len(p)
	if t := len(s.tail); t > 0 {
		if t+len(p) <= cap(s.tail) {
			// A short write: the tail and it, in the tail's buffer.
			s.strip(append(s.tail, p...))
			return n, nil
		}
		// An occurrence that begins in the tail ends within the next
		// len(sep)-1 bytes of p (the tail is shorter than sep).
		j := append(s.tail, p[:len(s.sep)-1]...)
		if i := bytes.Index(j, s.sep); i >= 0 && i < t {
			s.h.Write(j[:i])
			p = p[i+len(s.sep)-t:]
		} else {
			s.h.Write(s.tail)
		}
		s.tail = s.tail[:0]
	}
	s.strip(p)
	return n, nil
}

// strip writes b to h without the occurrences of sep, holding back (in
// the tail) its last bytes that may begin one.
func (s *stripping) strip(b []byte) {
	for {
		i := bytes.Index(b, s.sep)
		if i < 0 {
			break
		}
		s.h.Write(b[:i])
		b = b[i+len(s.sep):]
	}
	keep := min(len(b), len(s.sep)-1)
	s.h.Write(b[:len(b)-keep])
	s.tail = append(s.tail[:0], b[len(b)-keep:]...) // b may be the tail's buffer: append moves
}

// Sum ends the stream: the tail held back is no occurrence.
func (s *stripping) Sum(b []byte) []byte {
	s.h.Write(s.tail)
	s.tail = s.tail[:0]
	return s.h.Sum(b)
}

// sameRequest reports whether a request with fingerprint sum is the one
// that was answered with first (nil on either side: unknown, taken as the
// same).
func sameRequest(first, sum []byte) bool {
	return first == nil || sum == nil || bytes.Equal(first, sum)
}

func writeKeyReused(w http.ResponseWriter) {
	writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused",
		"this Idempotency-Key was used in the last 24 hours for a request with another body or query; nothing was sent: a new request needs a new key")
}

// KeyAnswer is what a node knows of an Idempotency-Key.
type KeyAnswer struct {
	State  string // KeyNone, KeyRunning or KeyDone
	Code   int    // KeyDone: the answer
	Header http.Header
	Body   []byte
	Sum    []byte // KeyDone: the fingerprint of the request it answered
}

// The states of a key on a node.
const (
	KeyNone    = "none"    // not seen
	KeyRunning = "running" // its request runs there now
	KeyDone    = "done"    // answered
)

// PeerAnswers is what the other nodes of a cluster know of an
// Idempotency-Key (Config.PeerAnswers; the daemon implements it over the
// peer protocol).
type PeerAnswers interface {
	// FindAnswer asks every other live node about key: the answer of a
	// node that answered it (KeyDone) or runs it (KeyRunning), and
	// which node; KeyNone if none has seen it. An error means a node
	// could not be asked.
	FindAnswer(ctx context.Context, key string) (KeyAnswer, uint16, error)
}

// NodeAnswer is what this node knows of key, for another node
// (PeerAnswers): the peer protocol's POST /peer/v1/answers.
func (s *Server) NodeAnswer(key string) (KeyAnswer, error) {
	e := s.user.idem.peek(key)
	if e == nil {
		return KeyAnswer{State: KeyNone}, nil
	}
	if !e.closed() {
		return KeyAnswer{State: KeyRunning}, nil
	}
	code, hdr, body, sum, saved := s.user.idem.answer(e)
	if saved {
		var ok bool
		if hdr, body, ok = s.loadAnswer(key); !ok {
			return KeyAnswer{}, errors.New("api: the answer of a kept key cannot be read")
		}
	}
	return KeyAnswer{State: KeyDone, Code: code, Header: hdr, Body: body, Sum: sum}, nil
}

// saveAnswer saves the answer of e's request in the store before the
// client hears it, and reports whether it did (else the answer is kept in
// memory: a restart forgets the key).
func (s *Server) saveAnswer(ctx context.Context, e *idemEntry, code int, hdr http.Header, body, sum []byte) bool {
	if s.cfg.Store == nil {
		return false
	}
	h, _ := json.Marshal(hdr) // a map of strings: cannot fail
	a := &queue.Answer{Key: e.key, Enterprise: e.ent, At: e.at, Code: code, Sum: sum, Header: h, Body: body}
	// The send it answers has been committed: the answer is saved even if
	// the client has gone (a retry is then what comes next).
	s.user.answersAlone.Add(1)
	if err := s.cfg.Store.SaveAnswer(context.WithoutCancel(ctx), a); err != nil {
		s.log.Warn("idempotency key kept in memory only: a restart forgets it", "enterprise", e.ent, "err", err)
		return false
	}
	s.user.idem.finishSaved(e, code, a.Size(), sum)
	return true
}

// storedAlone looks in the store for an answer to e that this process
// does not know of (found): a send whose commit was written and whose
// sync failed (queue.ErrNotSynced) stored it with its messages and was
// refused. Its messages go out, so a retry must not send them again: the
// answer is replayed (its code, header and body), once a commit succeeds
// again (the store syncs what that one left first). Until then, or for a
// retry of another request, it writes the refusal to rec and code is 0.
func (s *Server) storedAlone(r *http.Request, e *idemEntry, rec *recorder) (code int, hdr http.Header, body []byte, found bool) {
	a, err := s.cfg.Store.LoadAnswer(e.key)
	if err != nil || time.Since(a.At) > IdempotencyTTL { // expired, not deleted yet: forgotten
		return 0, nil, nil, false
	}
	switch {
	case !sameRequest(a.Sum, requestSum(r)):
		writeKeyReused(rec)
	case s.cfg.Store.Probe(r.Context()) != nil:
		rec.hdr.Set("Retry-After", "2")
		writeError(rec, http.StatusServiceUnavailable, "store_error",
			"the first request with this Idempotency-Key was written but the disk has not confirmed it; nothing was sent again: retry")
	case json.Unmarshal(a.Header, &hdr) != nil:
		s.log.Error("idempotency key: the stored answer's header cannot be read", "enterprise", e.ent)
		writeError(rec, http.StatusInternalServerError, "internal", "the first answer of this Idempotency-Key cannot be read; nothing was sent again")
	default:
		s.user.idem.finishSaved(e, a.Code, a.Size(), a.Sum)
		return a.Code, hdr, a.Body, true
	}
	return 0, nil, nil, true
}

// loadAnswer reads a saved answer back from the store.
func (s *Server) loadAnswer(key string) (http.Header, []byte, bool) {
	a, err := s.cfg.Store.LoadAnswer(key)
	if err != nil {
		s.log.Error("idempotency key: the first answer cannot be read", "err", err)
		return nil, nil, false
	}
	var hdr http.Header
	if err := json.Unmarshal(a.Header, &hdr); err != nil {
		s.log.Error("idempotency key: the first answer's header cannot be read", "err", err)
		return nil, nil, false
	}
	return hdr, a.Body, true
}

// deleteForgotten deletes from the store the saved answers whose keys were
// dropped (expired, or past the bounds), after the answer has gone to the
// client: no request waits on it. One that fails is left for the next
// start, which drops it again.
func (s *Server) deleteForgotten(ctx context.Context) {
	gone := s.user.idem.forgotten()
	if len(gone) == 0 || s.cfg.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Store.DeleteAnswers(ctx, gone); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("idempotency keys: dropped answers not deleted", "keys", len(gone), "err", err)
	}
}

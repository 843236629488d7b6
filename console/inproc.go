package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/qxtd/qxtd/api"
)

// The console reads and changes nothing itself: every page is one or more
// calls of the HTTP API (/v1 as the logged-in user, /admin/v1 as the
// operator), made in-process through the API's own handler. So a rule —
// the whitelist, a quota, who may see which message — has one
// implementation, the API's, and the console only shows its answers.

// apiBase is the base URL of in-process calls; no request leaves the
// process, the host only has to parse.
const apiBase = "http://qxtd.console"

// maxAPIAnswer bounds an in-process answer kept in memory (a page's list
// is paged by the API; downloads are streamed with proxy instead).
const maxAPIAnswer = 16 << 20

// inproc is an http.RoundTripper that serves a request with the API's
// handler in the calling goroutine. remote is the browser's address, so
// the API's per-address limits (login throttle, public routes) apply to
// the person, not to the console.
type inproc struct {
	h      http.Handler
	remote string
}

func (t inproc) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.RemoteAddr = t.remote
	req.RequestURI = req.URL.RequestURI()
	if req.Body == nil {
		req.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	t.h.ServeHTTP(rec, req)
	return &http.Response{
		Status:        http.StatusText(rec.code),
		StatusCode:    rec.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// recorder is the ResponseWriter of an in-process call: the answer is
// kept in memory, at most maxAPIAnswer bytes.
type recorder struct {
	header http.Header
	code   int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(p) > maxAPIAnswer {
		return 0, errAnswerTooLarge
	}
	return r.body.Write(p)
}

// Flush lets streaming handlers flush (a no-op here).
func (r *recorder) Flush() {}

type consoleError string

func (e consoleError) Error() string { return string(e) }

const errAnswerTooLarge = consoleError("console: API answer larger than the in-process limit")

// client returns an API client that calls the API in-process as token
// (a console or operator session token), for the browser request r.
func (s *Server) client(r *http.Request, token string) *api.Client {
	return &api.Client{Base: apiBase, Token: token, HTTP: &http.Client{Transport: inproc{h: s.cfg.API, remote: r.RemoteAddr}}}
}

// call is one JSON call of the API as the session of r: out receives a
// 2xx answer; an error answer is an *api.APIError.
func (s *Server) call(r *http.Request, method, path string, body, out any) error {
	return s.client(r, sessionToken(r)).DoContext(r.Context(), method, path, body, out)
}

// callOnce is call with an Idempotency-Key: the once parameter of the
// send form's action (the template function once), so that the form
// posted twice — a double click, a reload of the answer, a retry after a
// timeout — sends once and shows the first answer again (replayed: the
// API answered from the first post, nothing was sent now). It is in the
// action's query, not a field, so that a multipart upload is not read to
// find it. A missing or malformed one is a call without a key.
func (s *Server) callOnce(r *http.Request, method, path string, body, out any) (replayed bool, err error) {
	c, w := s.onceClient(r, sessionToken(r))
	err = c.DoContext(r.Context(), method, path, body, out)
	return w.replayed, err
}

// uploadOnce is upload with the Idempotency-Key of callOnce.
func (s *Server) uploadOnce(r *http.Request, token, method, path, contentType string, body io.Reader, out any) (replayed bool, err error) {
	c, w := s.onceClient(r, token)
	err = c.Upload(r.Context(), method, path, contentType, body, out)
	return w.replayed, err
}

func (s *Server) onceClient(r *http.Request, token string) (*api.Client, *replayWatch) {
	c := s.client(r, token)
	w := &replayWatch{rt: c.HTTP.Transport}
	c.HTTP.Transport = w
	if once := r.URL.Query().Get("once"); validOnce(once) {
		c.Header = http.Header{"Idempotency-Key": {"console-" + once}}
	}
	return c, w
}

// replayWatch notes an answer the API replayed (Idempotent-Replayed).
type replayWatch struct {
	rt       http.RoundTripper
	replayed bool
}

func (w *replayWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.rt.RoundTrip(req)
	if err == nil && resp.Header.Get("Idempotent-Replayed") == "true" {
		w.replayed = true
	}
	return resp, err
}

// newOnce is a fresh value for a send form's once parameter: every
// rendering of the form gets its own, so the form shown again (for
// another send, or corrected after a refusal) is a new send.
func newOnce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validOnce reports whether v is what newOnce makes.
func validOnce(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 16
}

// opsCall is call as the operator session of r.
func (s *Server) opsCall(r *http.Request, method, path string, body, out any) error {
	return s.client(r, opsToken(r)).DoContext(r.Context(), method, path, body, out)
}

// upload sends body (a file of the browser's form) to the API as is.
func (s *Server) upload(r *http.Request, token, method, path, contentType string, body io.Reader, out any) error {
	return s.client(r, token).Upload(r.Context(), method, path, contentType, body, out)
}

// proxy streams an API answer (a download: CSV, XLSX, an export) to the
// browser as it comes, with the API's own headers, as token.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, token, path string, q url.Values) {
	req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), http.MethodGet, apiBase+path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req = req.WithContext(r.Context())
	if len(q) > 0 {
		req.URL.RawQuery = q.Encode()
	}
	req.RemoteAddr = r.RemoteAddr
	req.RequestURI = req.URL.RequestURI()
	req.Header.Set("Authorization", "Bearer "+token)
	s.cfg.API.ServeHTTP(w, req)
}

// pathSeg escapes one path segment of an API path.
func pathSeg(s string) string { return url.PathEscape(strings.TrimSpace(s)) }

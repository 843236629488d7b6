package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/smpp"
)

// TestIdempotencyKey: the same POST /v1/messages sent again with the same
// Idempotency-Key (a retry after a lost answer) gets the first answer and
// sends nothing more; another key sends again.
func TestIdempotencyKey(t *testing.T) {
	r := newUserRig(t)
	post := func(key string) (SendResponse, http.Header) { return postKeyed(t, r, "alice", key, uNumA1) }
	first, _ := post("order-1")
	again, hdr := post("order-1")
	if again.Results[0].ID != first.Results[0].ID || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry got id %s (replayed %q), want the first answer's %s", again.Results[0].ID, hdr.Get("Idempotent-Replayed"), first.Results[0].ID)
	}
	other, _ := post("order-2")
	if other.Results[0].ID == first.Results[0].ID {
		t.Fatal("another key got the same message")
	}
	r.waitState(r.keys["alice"], other.Results[0].ID, "delivered", 10*time.Second)
	r.waitState(r.keys["alice"], first.Results[0].ID, "delivered", 10*time.Second)
	if n := len(r.received(uNumA1)); n != 2 {
		t.Fatalf("the SMSC got %d messages for two keys, want 2", n)
	}
}

// TestIdempotencyBounds: the answers kept are bounded in keys and bytes
// on the node, and an enterprise holds at most a quarter of either, its
// own oldest finished keys going first; a key whose request runs is never
// dropped; a key expires after IdempotencyTTL; the counts stay exact.
func TestIdempotencyBounds(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	s := newIdemStore(func() time.Time { return now })
	s.maxKeys, s.maxBytes = 40, 40_000 // a share: 10 keys, 10,000 bytes
	body := bytes.Repeat([]byte("x"), 900)
	put := func(ent, key string, body []byte) *idemEntry {
		t.Helper()
		e, first := s.begin(ent, key)
		if !first {
			t.Fatalf("%s %s: kept already", ent, key)
		}
		s.finish(e, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, body)
		return e
	}
	kept := func(ent, key string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		e, ok := s.m[key]
		return ok && e.ent == ent && e.inAll != nil
	}
	check := func(what string) {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		keys, size := 0, 0
		for _, u := range s.ents {
			if u.order.Len() != u.keys {
				t.Errorf("%s: an enterprise's order holds %d, its count %d", what, u.order.Len(), u.keys)
			}
			keys += u.keys
			size += u.bytes
			if u.keys > s.maxKeys/idemShare+running(u) || u.bytes > s.maxBytes/idemShare+runningBytes(u) {
				t.Errorf("%s: an enterprise holds %d keys, %d bytes (share %d, %d)", what, u.keys, u.bytes, s.maxKeys/idemShare, s.maxBytes/idemShare)
			}
		}
		live := 0
		for _, e := range s.m {
			if e.inAll != nil {
				live++
			}
		}
		if keys != s.keys || s.order.Len() != s.keys || size != s.bytes || live != s.keys || s.keys > s.maxKeys || s.bytes > s.maxBytes {
			t.Errorf("%s: counted %d keys, %d bytes; the enterprises %d, %d; %d in the map (at most %d, %d)",
				what, s.keys, s.bytes, keys, size, live, s.maxKeys, s.maxBytes)
		}
	}

	put("B", "B-1", body) // before the flood
	for i := range 100 {
		put("A", fmt.Sprint("A-", i), body)
		now = now.Add(time.Second)
	}
	check("A's flood")
	if !kept("B", "B-1") {
		t.Error("A's flood dropped B's key")
	}
	if kept("A", "A-0") || !kept("A", "A-99") || !kept("A", "A-90") {
		t.Errorf("A keeps A-0 %v, A-90 %v, A-99 %v: want its newest only", kept("A", "A-0"), kept("A", "A-90"), kept("A", "A-99"))
	}
	// Bytes bind before keys: answers of 4,000 bytes, two a share.
	for i := range 5 {
		put("C", fmt.Sprint("C-", i), bytes.Repeat([]byte("y"), 4000))
	}
	check("C's large answers")
	if kept("C", "C-2") || !kept("C", "C-3") || !kept("C", "C-4") {
		t.Error("C's bytes: want its two newest answers kept")
	}
	// Every enterprise at its share: the node's whole bounds hold, the
	// oldest of anyone's going first.
	for _, ent := range []string{"D", "E", "F", "G"} {
		for i := range 12 {
			put(ent, fmt.Sprint(ent, "-", i), body)
		}
	}
	check("seven enterprises")
	if kept("B", "B-1") {
		t.Error("the node over its bounds kept its oldest key")
	}
	// A request still running is never dropped: its retry waits for it.
	var running []*idemEntry
	for i := range 15 {
		e, _ := s.begin("H", fmt.Sprint("H-", i))
		running = append(running, e)
	}
	for i := range 15 {
		if !kept("H", fmt.Sprint("H-", i)) {
			t.Fatalf("H-%d dropped while its request runs", i)
		}
	}
	for _, e := range running {
		s.finish(e, http.StatusOK, nil, body)
	}
	check("H's requests finished")
	if kept("H", "H-0") || !kept("H", "H-14") {
		t.Error("H finished: want its oldest dropped, its newest kept")
	}
	// A failed request's key is forgotten: the retry runs again.
	e := put("I", "I-1", nil)
	s.forget(e)
	if kept("I", "I-1") {
		t.Error("a forgotten key kept")
	}
	check("a key forgotten")
	// A day later everything has expired.
	now = now.Add(IdempotencyTTL)
	put("J", "J-1", body)
	check("a day later")
	if s.keys != 1 || kept("A", "A-99") {
		t.Errorf("a day later: %d keys kept, A-99 %v; want J-1 only", s.keys, kept("A", "A-99"))
	}
}

// A flood of keys by one enterprise over HTTP does not cost another its
// replay: bob's retry still gets his first answer.
func TestIdempotencyFloodOverHTTP(t *testing.T) {
	r := newUserRig(t)
	r.srv.user.idem.mu.Lock()
	r.srv.user.idem.maxKeys = 16 // a share: 4 keys
	r.srv.user.idem.mu.Unlock()
	post := func(user, key string, to ...string) (SendResponse, http.Header) {
		return postKeyed(t, r, user, key, to...)
	}
	first, _ := post("bob", "bob-1", uNumA1)
	for i := range 50 { // refused numbers: answers kept, nothing sent
		post("alice", fmt.Sprint("flood-", i), "1", "2", "3")
	}
	again, hdr := post("bob", "bob-1", uNumA1)
	if hdr.Get("Idempotent-Replayed") != "true" || again.Results[0].ID != first.Results[0].ID {
		t.Fatalf("bob's retry after alice's flood: id %s (replayed %q), want %s", again.Results[0].ID, hdr.Get("Idempotent-Replayed"), first.Results[0].ID)
	}
	if _, hdr := post("alice", "flood-49", "1", "2", "3"); hdr.Get("Idempotent-Replayed") != "true" {
		t.Error("alice's newest key not replayed")
	}
	if _, hdr := post("alice", "flood-0", "1", "2", "3"); hdr.Get("Idempotent-Replayed") == "true" {
		t.Error("alice's oldest key replayed beyond her share")
	}
}

// running is how many of u's keys have their request running, and
// runningBytes what they count: the part of u its bounds cannot drop.
func running(u *idemUse) (n int) {
	for el := u.order.Front(); el != nil; el = el.Next() {
		if !el.Value.(*idemEntry).closed() {
			n++
		}
	}
	return n
}

func runningBytes(u *idemUse) (n int) {
	for el := u.order.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*idemEntry); !e.closed() {
			n += e.size
		}
	}
	return n
}

// postKeyed sends text to numbers as user with an Idempotency-Key and
// returns the answer (200 expected) and its headers.
func postKeyed(t *testing.T, r *userRig, user, key string, to ...string) (SendResponse, http.Header) {
	t.Helper()
	code, body, hdr := keyedPost(t, r.url, "/v1/messages", r.keys[user], key, SendRequest{To: to, Text: "once only"})
	var out SendResponse
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Results) != len(to) {
		t.Fatalf("%s's POST with key %q: %d %s", user, key, code, body)
	}
	return out, hdr
}

// keyedPost posts body as JSON to url+path with token and the
// Idempotency-Key key ("": none): the status, the body and the headers.
func keyedPost(t *testing.T, url, path, token, key string, body any) (int, []byte, http.Header) {
	t.Helper()
	b, _ := json.Marshal(body)
	return keyedRaw(t, url, path, token, key, "application/json", b)
}

// keyedRaw POSTs body as contentType with the Idempotency-Key key (none
// if empty) and returns the answer.
func keyedRaw(t *testing.T, url, path, token, key, contentType string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes(), resp.Header
}

// TestIdempotencyKeyKeptInStore: an answer is saved in the store, not
// held in memory, and a server started again on the same store (a
// restart) replays it from there: the retry gets the first answer and
// nothing more is sent.
func TestIdempotencyKeyKeptInStore(t *testing.T) {
	r := newUserRig(t)
	first, _ := postKeyed(t, r, "alice", "order-1", uNumA1)
	idem := r.srv.user.idem
	idem.mu.Lock()
	for _, e := range idem.m {
		if !e.saved || e.body != nil || e.hdr != nil || e.size <= len(e.key)+idemOverhead {
			t.Errorf("entry saved %v, body %d bytes, size %d: want the answer in the store, counted", e.saved, len(e.body), e.size)
		}
	}
	idem.mu.Unlock()

	again := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw})
	t.Cleanup(again.Close)
	hs := httptest.NewServer(again.Handler())
	t.Cleanup(hs.Close)
	r2 := &userRig{t: t, url: hs.URL, keys: r.keys}
	retry, hdr := postKeyed(t, r2, "alice", "order-1", uNumA1)
	if retry.Results[0].ID != first.Results[0].ID || hdr.Get("Idempotent-Replayed") != "true" ||
		hdr.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("retry after a restart: id %s (replayed %q, type %q), want the first answer's %s",
			retry.Results[0].ID, hdr.Get("Idempotent-Replayed"), hdr.Get("Content-Type"), first.Results[0].ID)
	}
	other, _ := postKeyed(t, r2, "alice", "order-2", uNumA1)
	r.waitState(r.keys["alice"], other.Results[0].ID, "delivered", 10*time.Second)
	r.waitState(r.keys["alice"], first.Results[0].ID, "delivered", 10*time.Second)
	if n := len(r.received(uNumA1)); n != 2 {
		t.Fatalf("the SMSC got %d messages for two keys, want 2", n)
	}
}

// TestIdempotencyLoad: the answers kept in the store are loaded at start
// with their ages and sizes; the expired ones and those past the bounds
// are dropped as begin would have, and forgotten names them for deletion
// from the store; a loaded key replays, an expired one runs again.
func TestIdempotencyLoad(t *testing.T) {
	st, err := queue.Open(filepath.Join(t.TempDir(), "q.db"), queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	body := bytes.Repeat([]byte("x"), 900)
	save := func(ent, key string, age time.Duration) {
		t.Helper()
		if err := st.SaveAnswer(context.Background(), &queue.Answer{Key: key, Enterprise: ent, At: now.Add(-age), Code: 200, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	save("A", "a-expired", IdempotencyTTL+time.Second)
	for i := range 12 { // A's share is 10 keys: a-0 and a-1 go
		save("A", fmt.Sprint("a-", i), time.Duration(20-i)*time.Minute)
	}
	save("B", "b-0", time.Hour)
	s := newIdemStore(func() time.Time { return now })
	s.maxKeys, s.maxBytes = 40, 40_000
	if err := s.load(st); err != nil {
		t.Fatal(err)
	}
	gone := s.forgotten()
	slices.Sort(gone)
	if want := []string{"a-0", "a-1", "a-expired"}; !slices.Equal(gone, want) {
		t.Fatalf("forgotten %q, want %q", gone, want)
	}
	wantBytes := len("b-0") + 900 + idemOverhead
	for i := 2; i < 12; i++ {
		wantBytes += len(fmt.Sprint("a-", i)) + 900 + idemOverhead
	}
	if s.keys != 11 || s.bytes != wantBytes || s.ents["A"].keys != 10 || s.ents["B"].keys != 1 {
		t.Fatalf("loaded %d keys, %d bytes; A %d, B %d", s.keys, s.bytes, s.ents["A"].keys, s.ents["B"].keys)
	}
	if e, first := s.begin("A", "a-11"); first || !e.closed() || e.code != 200 || !e.saved {
		t.Fatalf("a loaded key: first %v, code %d, saved %v", first, e.code, e.saved)
	}
	if _, first := s.begin("A", "a-expired"); !first {
		t.Fatal("an expired key was replayed")
	}
}

// nodeAnswers is PeerAnswers over other servers in this process: what the
// daemon does over the peer protocol, without HTTP between them.
type nodeAnswers []*Server

func (n nodeAnswers) FindAnswer(_ context.Context, key string) (KeyAnswer, uint16, error) {
	best := KeyAnswer{State: KeyNone}
	for i, s := range n {
		a, err := s.NodeAnswer(key)
		if err != nil {
			return KeyAnswer{}, 0, err
		}
		if a.State == KeyDone {
			return a, uint16(i + 1), nil
		}
		if a.State == KeyRunning {
			best = a
		}
	}
	return best, 1, nil
}

// TestIdempotencyKeyOnAnotherNode: a keyed send on node 2 asks node 1
// first. While node 1 runs the key, node 2 refuses (409 in_progress,
// Retry-After) and keeps nothing; once node 1 has answered, node 2
// replays node 1's answer byte for byte and keeps it itself (a later
// retry on node 2 does not need node 1); a key neither has seen is sent.
func TestIdempotencyKeyOnAnotherNode(t *testing.T) {
	r := newUserRig(t)
	node2 := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, PeerAnswers: nodeAnswers{r.srv}})
	t.Cleanup(node2.Close)
	hs := httptest.NewServer(node2.Handler())
	t.Cleanup(hs.Close)
	post := func(key string) (int, string, http.Header) {
		t.Helper()
		code, body, hdr := keyedPost(t, hs.URL, "/v1/messages", r.keys["alice"], key, SendRequest{To: []string{uNumA1}, Text: "x"})
		return code, string(body), hdr
	}
	k := "A\x00alice\x00/v1/messages\x00order-9"
	e, _ := r.srv.user.idem.begin("A", k) // node 1 runs it
	code, body, hdr := post("order-9")
	if code != http.StatusConflict || !bytes.Contains([]byte(body), []byte(`"in_progress"`)) || hdr.Get("Retry-After") == "" {
		t.Fatalf("while node 1 runs the key: %d %s (Retry-After %q), want 409 in_progress", code, body, hdr.Get("Retry-After"))
	}
	if node2.user.idem.peek(k) != nil {
		t.Fatal("node 2 kept a key it refused")
	}
	first := `{"results":[{"to":"` + uNumA1 + `","status":"accepted","id":"77"}],"accepted":1,"refused":0,"duplicates":0}` + "\n"
	r.srv.user.idem.finish(e, http.StatusOK, http.Header{"Content-Type": {"application/json; charset=utf-8"}}, []byte(first))
	for range 2 {
		code, body, hdr = post("order-9")
		if code != http.StatusOK || body != first || hdr.Get("Idempotent-Replayed") != "true" || hdr.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("once node 1 answered: %d %q (replayed %q), want node 1's answer %q", code, body, hdr.Get("Idempotent-Replayed"), first)
		}
		r.srv.user.idem.forget(e) // the second time node 2 answers from its own copy
	}
	if code, body, _ = post("order-10"); code != http.StatusOK || !bytes.Contains([]byte(body), []byte(`"accepted":1`)) || body == first {
		t.Fatalf("a new key on node 2: %d %s", code, body)
	}
}

// TestBatchIdempotencyKey: POST /v1/batches with an Idempotency-Key sent
// again (a double click on the console's 批量发送, a retry after a lost
// answer) answers the first job's id and starts no second job: the rows
// are sent once, though each try's multipart boundary differs.
func TestBatchIdempotencyKey(t *testing.T) {
	r := newUserRig(t)
	post := func() (string, http.Header) {
		t.Helper()
		// A new boundary each time, as curl -F and browsers draw them:
		// the same file is other bytes, the same with the boundary left
		// out (bodyHash).
		ct, body := multipartBody(t, "批量.csv", []byte(uNumA1+",批量只发一次\n"), nil)
		code, answer, hdr := keyedRaw(t, r.url, "/v1/batches", r.keys["alice"], "upload-1", ct, body)
		if code != http.StatusAccepted {
			t.Fatalf("POST /v1/batches: %d %s", code, answer)
		}
		return idOfJob(t, answer), hdr
	}
	first, _ := post()
	again, hdr := post()
	if again != first || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the upload again: job %s (replayed %q), want the first job %s", again, hdr.Get("Idempotent-Replayed"), first)
	}
	if j := r.c().waitJob(r.keys["alice"], first, 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("job %+v", j)
	}
	var l struct {
		Jobs []BatchJob `json:"jobs"`
	}
	r.must(http.StatusOK, "GET", "/v1/batches", r.keys["alice"], nil, &l)
	if len(l.Jobs) != 1 {
		t.Fatalf("%d jobs after the upload was posted twice, want 1", len(l.Jobs))
	}
}

// TestBatchIdempotencyKeyReused: POST /v1/batches with an Idempotency-Key
// sent again with another file (another number, another text) or another
// field (a template, a send time) is refused with 422
// idempotency_key_reused and starts no job, where before the first job's
// id came back and the new file was never sent; the same file, with
// another boundary, is still replayed. The same on another node, which
// checks the retry against the fingerprint the first node kept
// (requestSum).
func TestBatchIdempotencyKeyReused(t *testing.T) {
	r := newUserRig(t)
	post := func(url, file string, fields map[string]string) (int, []byte, http.Header) {
		t.Helper()
		ct, body := multipartBody(t, "批量.csv", []byte(file), fields) // a new boundary each time
		return keyedRaw(t, url, "/v1/batches", r.keys["alice"], "upload-7", ct, body)
	}
	file := uNumA1 + ",批量只发一次\n"
	code, first, _ := post(r.url, file, nil)
	if code != http.StatusAccepted {
		t.Fatalf("first: %d %s", code, first)
	}
	reused := func(url, file string, fields map[string]string) {
		t.Helper()
		code, body, hdr := post(url, file, fields)
		if code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(`"idempotency_key_reused"`)) || hdr.Get("Idempotent-Replayed") != "" {
			t.Fatalf("the key again with the file %q and the fields %v: %d %s", file, fields, code, body)
		}
	}
	reused(r.url, uNumA2+",批量只发一次\n", nil)
	reused(r.url, uNumA1+",批量发了两次\n", nil)
	reused(r.url, file, map[string]string{"template": "{0}"})
	reused(r.url, file, map[string]string{"send_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
	if code, again, hdr := post(r.url, file, nil); code != http.StatusAccepted || !bytes.Equal(again, first) || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same file again: %d %s", code, again)
	}

	// A file posted as the body takes its options in the query: another
	// query is another request, the same one in another order is not.
	raw := func(query string) (int, []byte) {
		t.Helper()
		code, body, _ := keyedRaw(t, r.url, "/v1/batches?"+query, r.keys["alice"], "upload-8", "text/csv", []byte(uNumA3+",正文上传\n"))
		return code, body
	}
	later := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	rawFirst := "format=csv&send_at=" + later
	code, rawJob := raw(rawFirst)
	if code != http.StatusAccepted {
		t.Fatalf("a file as the body: %d %s", code, rawJob)
	}
	if code, body := raw("format=csv"); code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(`"idempotency_key_reused"`)) {
		t.Fatalf("the same body without its send_at: %d %s, want 422", code, body)
	}
	if code, body := raw("send_at=" + later + "&format=csv"); code != http.StatusAccepted || !bytes.Equal(body, rawJob) {
		t.Fatalf("the same query in another order: %d %s, want the first answer %s", code, body, rawJob)
	}

	node2 := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, PeerAnswers: nodeAnswers{r.srv}})
	t.Cleanup(node2.Close)
	node2.user.idem = newIdemStore(time.Now) // as a node with a store of its own: it asks node 1
	hs2 := httptest.NewServer(node2.Handler())
	t.Cleanup(hs2.Close)
	reused(hs2.URL, uNumA2+",批量只发一次\n", nil)
	if code, again, hdr := post(hs2.URL, file, nil); code != http.StatusAccepted || !bytes.Equal(again, first) || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same file on node 2: %d %s", code, again)
	}

	if j := r.c().waitJob(r.keys["alice"], idOfJob(t, first), 20*time.Second, nil); j.Accepted != 1 {
		t.Fatalf("job %+v", j)
	}
	var l struct {
		Jobs []BatchJob `json:"jobs"`
	}
	r.must(http.StatusOK, "GET", "/v1/batches", r.keys["alice"], nil, &l)
	if len(l.Jobs) != 2 {
		t.Fatalf("%d jobs after the keys were sent again with other files and fields, want 2 (a job a key)", len(l.Jobs))
	}
	r.waitReceived(uNumA1, "【甲公司】批量只发一次", 10*time.Second)
	if n := len(r.received(uNumA1)) + len(r.received(uNumA2)); n != 1 {
		t.Fatalf("the SMSC got %d messages, want the first file's only", n)
	}
}

func idOfJob(t *testing.T, answer []byte) string {
	t.Helper()
	var created BatchCreated
	if err := json.Unmarshal(answer, &created); err != nil || created.JobID == "" {
		t.Fatalf("not a job's answer: %s", answer)
	}
	return created.JobID
}

// TestIdempotencyKeyReused: a key sent again with another body (another
// number, another text) is refused with 422 idempotency_key_reused and
// sends nothing, while the same body is replayed; the fingerprint is kept
// with the answer, so the same holds after a restart, and on another node
// that asks the node which ran the key.
func TestIdempotencyKeyReused(t *testing.T) {
	r := newUserRig(t)
	post := func(url, to, text string) (int, []byte, http.Header) {
		t.Helper()
		return keyedPost(t, url, "/v1/messages", r.keys["alice"], "order-7", SendRequest{To: []string{to}, Text: text})
	}
	code, first, _ := post(r.url, uNumA1, "订单已发货")
	if code != http.StatusOK {
		t.Fatalf("first: %d %s", code, first)
	}
	reused := func(url, to, text string) {
		t.Helper()
		code, body, hdr := post(url, to, text)
		if code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(`"idempotency_key_reused"`)) || hdr.Get("Idempotent-Replayed") != "" {
			t.Fatalf("the key again with %s %q: %d %s", to, text, code, body)
		}
	}
	reused(r.url, uNumA2, "订单已发货")
	reused(r.url, uNumA1, "订单已取消")
	if code, again, _ := post(r.url, uNumA1, "订单已发货"); code != http.StatusOK || !bytes.Equal(again, first) {
		t.Fatalf("the same request again: %d %s", code, again)
	}

	restarted := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw})
	t.Cleanup(restarted.Close)
	hs := httptest.NewServer(restarted.Handler())
	t.Cleanup(hs.Close)
	reused(hs.URL, uNumA1, "订单已取消")

	node2 := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, PeerAnswers: nodeAnswers{r.srv}})
	t.Cleanup(node2.Close)
	// node 2 shares node 1's store here, so it loaded the key: without
	// it, as a node with a store of its own, it asks node 1.
	node2.user.idem = newIdemStore(time.Now)
	hs2 := httptest.NewServer(node2.Handler())
	t.Cleanup(hs2.Close)
	reused(hs2.URL, uNumA1, "订单已取消")
	if code, again, hdr := post(hs2.URL, uNumA1, "订单已发货"); code != http.StatusOK || !bytes.Equal(again, first) || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same request on node 2: %d %s", code, again)
	}

	r.waitState(r.keys["alice"], idOf(t, first), "delivered", 10*time.Second)
	if n := len(r.received(uNumA1)) + len(r.received(uNumA2)); n != 1 {
		t.Fatalf("the SMSC got %d messages, want the first only", n)
	}
}

// idOf is the id of the first result of a send's answer.
func idOf(t *testing.T, answer []byte) string {
	t.Helper()
	var res SendResponse
	if err := json.Unmarshal(answer, &res); err != nil || len(res.Results) == 0 {
		t.Fatalf("answer %s: %v", answer, err)
	}
	return res.Results[0].ID
}

// TestIdempotencyAnswerStoredWithTheMessages: a keyed send's answer is
// stored in the messages' own transaction, rendered there from their
// outcomes: byte for byte the answer the client gets, refusals of the
// policy, of the quota (dave's 3 segments a month) and a duplicate
// number included, for both send routes.
func TestIdempotencyAnswerStoredWithTheMessages(t *testing.T) {
	r := newUserRig(t)
	post := func(path, key string, body any) []byte {
		t.Helper()
		code, out, _ := keyedPost(t, r.url, path, r.keys["dave"], key, body)
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, out)
		}
		return out
	}
	group := post("/v1/messages", "g-1", SendRequest{To: []string{uNumA1, uNumA2, uNumA1}, Text: "两条"})
	personal := post("/v1/messages/personalized", "p-1", PersonalizedRequest{Messages: []PersonalMessage{
		{To: uNumA1, Text: "一"}, {To: uNumA1, Text: "二"}, {To: uNumA1, Text: "三"}}})
	for key, body := range map[string][]byte{"/v1/messages\x00g-1": group, "/v1/messages/personalized\x00p-1": personal} {
		a, err := r.store.LoadAnswer("D\x00dave\x00" + key)
		if err != nil || !bytes.Equal(a.Body, body) || string(a.Header) != sendHeader || a.Code != http.StatusOK {
			t.Fatalf("%q: stored %q (%v), answered %q", key, a.Body, err, body)
		}
	}
	for _, want := range []string{`"duplicates":1`, `"not_whitelisted"`} {
		if !bytes.Contains(group, []byte(want)) {
			t.Errorf("the group send's answer %s lacks %s", group, want)
		}
	}
	if !bytes.Contains(personal, []byte(`"quota_exceeded"`)) || !bytes.Contains(personal, []byte("本月可发 3 条，剩余 0 条")) {
		t.Errorf("the personalized send's answer %s has no quota refusal with its detail", personal)
	}
	if n := r.srv.user.answersAlone.Load(); n != 0 {
		t.Fatalf("%d answers saved in a commit of their own, want none: each went with its messages", n)
	}
	// A send that stores nothing (every number refused) saves its answer
	// alone.
	post("/v1/messages", "g-2", SendRequest{To: []string{uNumA2}, Text: "不在白名单"})
	if n := r.srv.user.answersAlone.Load(); n != 1 {
		t.Fatalf("%d answers saved alone, want the refusal's", n)
	}
}

// TestIdempotencyRefusalNotKept: a keyed send refused as a whole (carl's
// rate limit, 1 a second) is not kept: its retry with the same key runs
// again and, once the limit allows, is sent, instead of meeting the 429
// for a day; a refused retry is not replayed either ("Idempotent-Replayed").
func TestIdempotencyRefusalNotKept(t *testing.T) {
	r := newUserRig(t)
	post := func(key string) (int, http.Header) {
		t.Helper()
		code, _, hdr := keyedPost(t, r.url, "/v1/messages", r.keys["carl"], key, SendRequest{To: []string{uNumA1}, Text: "限速"})
		return code, hdr
	}
	if code, _ := post("c-1"); code != http.StatusOK {
		t.Fatalf("carl's first: %d", code)
	}
	code, _ := post("c-2")
	if code != http.StatusTooManyRequests {
		t.Fatalf("carl's second within the second: %d, want 429", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code == http.StatusTooManyRequests {
		if time.Now().After(deadline) {
			t.Fatal("the retry of the refused key still refused after 10 s: its 429 was kept")
		}
		tm := time.NewTimer(100 * time.Millisecond) // a client's retry pace, not a wait for an event
		<-tm.C
		var hdr http.Header
		if code, hdr = post("c-2"); hdr.Get("Idempotent-Replayed") != "" {
			t.Fatalf("a retry answered %d replayed", code)
		}
	}
	if code != http.StatusOK {
		t.Fatalf("the retry: %d", code)
	}
}

// hungNode is PeerAnswers over a node that never answers.
// hungNode answers nothing until the asker gives up, or giveUp passes:
// with the API's bound gone, the test fails after giveUp instead of
// hanging until the suite's timeout.
type hungNode struct{ giveUp time.Duration }

func (h hungNode) FindAnswer(ctx context.Context, _ string) (KeyAnswer, uint16, error) {
	select {
	case <-ctx.Done():
		return KeyAnswer{}, 0, ctx.Err()
	case <-time.After(h.giveUp):
		return KeyAnswer{}, 0, errors.New("hung node: the asker did not give up")
	}
}

// TestIdempotencyHungNode: with a node that does not answer, a keyed send
// is refused (503, Retry-After) after keyPeerWait, not after the peer
// client's 10 s, and nothing is sent; a send without a key goes.
func TestIdempotencyHungNode(t *testing.T) {
	r := newUserRig(t)
	node := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, PeerAnswers: hungNode{giveUp: keyPeerWait + 5*time.Second}})
	t.Cleanup(node.Close)
	hs := httptest.NewServer(node.Handler())
	t.Cleanup(hs.Close)
	send := func(key string) (int, http.Header, time.Duration) {
		t.Helper()
		start := time.Now()
		code, _, hdr := keyedPost(t, hs.URL, "/v1/messages", r.keys["alice"], key, SendRequest{To: []string{uNumA1}, Text: "挂起"})
		return code, hdr, time.Since(start)
	}
	code, hdr, took := send("h-1")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || took < keyPeerWait || took > keyPeerWait+3*time.Second {
		t.Fatalf("a keyed send with a hung node: %d (Retry-After %q) after %v, want 503 after about %v", code, hdr.Get("Retry-After"), took, keyPeerWait)
	}
	if code, _, _ := send(""); code != http.StatusOK {
		t.Fatalf("a send without a key: %d", code)
	}
	if n := len(r.received(uNumA1)); n > 1 {
		t.Fatalf("the SMSC got %d messages, want at most the unkeyed one", n)
	}
}

// TestStrippingSum: a multipart body's fingerprint leaves out its
// boundary, wherever the reads split it: the same parts with another
// boundary (1, 60 or 70 bytes) sum the same, another file or field sums
// otherwise, and for any body and reads of 1, 2, 7 or 4096 bytes (or of
// random sizes) the sum is that of bytes.ReplaceAll(body, boundary, nil):
// a boundary across reads is left out, a prefix of it at the body's very
// end is kept. Writes hold back no more than the tail and allocate
// nothing.
func TestStrippingSum(t *testing.T) {
	sizes := []int{1, 2, 7, 4096}
	// byReads is the fingerprint of body read through summing in reads
	// of n bytes.
	byReads := func(sep string, body []byte, n int) []byte {
		tee := &summing{r: io.NopCloser(bytes.NewReader(body)), h: newStripping(sha256.New(), sep)}
		buf := make([]byte, n)
		for {
			if _, err := tee.Read(buf); err != nil {
				break
			}
		}
		return tee.sum()
	}
	want := func(sep string, body []byte) []byte {
		s := sha256.Sum256(bytes.ReplaceAll(body, []byte(sep), nil))
		return s[:]
	}

	b70 := strings.Repeat("qxtd-7f3a", 7) + "0123456" // 70 bytes, the most RFC 2046 allows
	if len(b70) != 70 {
		t.Fatalf("boundary of %d bytes", len(b70))
	}
	form := func(boundary, file string, fields ...string) (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if boundary != "" {
			if err := mw.SetBoundary(boundary); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i+1 < len(fields); i += 2 {
			_ = mw.WriteField(fields[i], fields[i+1])
		}
		fw, _ := mw.CreateFormFile("file", "批量.csv")
		_, _ = fw.Write([]byte(file))
		_ = mw.Close()
		return mw.Boundary(), buf.Bytes()
	}
	file := uNumA1 + ",批量只发一次\n" + uNumA2 + ",批量只发一次\n"
	var base []byte
	for _, b := range []string{"", "Z", b70} { // "": a random one of 60 bytes
		sep, body := form(b, file, "source", "12")
		for _, n := range sizes {
			sum := byReads(sep, body, n)
			if base == nil {
				base = sum
			}
			if !bytes.Equal(sum, base) {
				t.Fatalf("boundary %q, reads of %d: another sum for the same parts", sep, n)
			}
		}
	}
	seen := map[string]string{string(base): "the first"}
	for _, c := range []struct {
		what, file string
		fields     []string
	}{
		{"another number", uNumA1 + ",批量只发一次\n" + uNumA1 + ",批量只发一次\n", []string{"source", "12"}},
		{"another text", uNumA1 + ",批量只发一次\n" + uNumA2 + ",批量发了两次\n", []string{"source", "12"}},
		{"a row less", uNumA1 + ",批量只发一次\n", []string{"source", "12"}},
		{"another field value", file, []string{"source", "13"}},
		{"another field", file, []string{"receipt", "12"}},
		{"a field more", file, []string{"source", "12", "template", "{0}"}},
		{"no field", file, nil},
	} {
		sep, body := form("", c.file, c.fields...)
		for _, n := range sizes {
			sum := byReads(sep, body, n)
			if prev, ok := seen[string(sum)]; ok && (prev != c.what || n == sizes[0]) {
				t.Fatalf("%s (reads of %d): the sum of %s", c.what, n, prev)
			}
			seen[string(sum)] = c.what
		}
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	for _, sep := range []string{"x", "ab", "aab", "aaa", "abab", "--" + strings.Repeat("a", 20) + "b", b70} {
		alphabet := sep + "z"
		var bodies [][]byte
		for _, n := range []int{0, 1, len(sep) - 1, len(sep), 2 * len(sep), 100, 5000, 20000} {
			b := make([]byte, max(n, 0))
			for i := range b {
				b[i] = alphabet[rnd.IntN(len(alphabet))]
			}
			bodies = append(bodies, b)
		}
		pad := bytes.Repeat([]byte("z"), 4095)
		bodies = append(bodies,
			[]byte(sep), []byte(sep+sep), []byte(sep+"z"+sep),
			append(slices.Clip(pad), sep...), // across the first 4096-byte read
			append(bytes.Repeat([]byte("z"), 4093), sep+"z"+sep...),
		)
		for k := 1; k < len(sep); k++ {
			// A prefix of the boundary at the very end: no occurrence,
			// kept; and after a whole one.
			bodies = append(bodies, []byte("zz"+sep[:k]), []byte("z"+sep+sep[:k]), append(slices.Clip(pad), sep[:k]...))
		}
		for _, body := range bodies {
			w := want(sep, body)
			for _, n := range sizes {
				if got := byReads(sep, body, n); !bytes.Equal(got, w) {
					t.Fatalf("boundary %q, body %q, reads of %d: not the sum without the boundary", sep, clipBody(body), n)
				}
			}
			for range 20 {
				h := newStripping(sha256.New(), sep)
				for rest := body; len(rest) > 0; {
					k := min(len(rest), rnd.IntN(2*len(sep)+3))
					_, _ = h.Write(rest[:k])
					rest = rest[k:]
					if len(h.tail) >= len(sep) {
						t.Fatalf("boundary %q: a tail of %d bytes held back", sep, len(h.tail))
					}
				}
				if got := h.Sum(nil); !bytes.Equal(got, w) {
					t.Fatalf("boundary %q, body %q, writes of random sizes: not the sum without the boundary", sep, clipBody(body))
				}
			}
		}
	}

	h := newStripping(sha256.New(), b70)
	chunk := []byte(strings.Repeat("z", 100) + b70[:30])
	if n := testing.AllocsPerRun(100, func() { _, _ = h.Write(chunk) }); n != 0 {
		t.Errorf("a write allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = h.Write(chunk[:3]) }); n != 0 {
		t.Errorf("a short write allocates %v times", n)
	}
}

func clipBody(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// TestBodyHash: what fingerprints a keyed request's body: SHA-256 for a
// body that is not multipart, the stripping hash for a multipart one with
// a boundary of 1 to 70 bytes, nothing (nil: not compared, as before) for
// a multipart one without a boundary or with a longer one.
func TestBodyHash(t *testing.T) {
	for ct, want := range map[string]string{
		"application/json":                "sha256",
		"text/csv":                        "sha256",
		"":                                "sha256",
		"multipart/form-data; boundary=Z": "stripping",
		"multipart/form-data; boundary=" + strings.Repeat("b", 70): "stripping",
		"multipart/form-data; boundary=" + strings.Repeat("b", 71): "none", // past RFC 2046
		"multipart/form-data":                         "none",
		`multipart/form-data; boundary=""`:            "none",
		"multipart/form-data; boundary=a; boundary=b": "sha256", // unparsed: a raw body to the route too
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/batches", nil)
		r.Header.Set("Content-Type", ct)
		got := "sha256"
		switch bodyHash(r).(type) {
		case nil:
			got = "none"
		case *stripping:
			got = "stripping"
		}
		if got != want {
			t.Errorf("Content-Type %q: fingerprinted by %s, want %s", ct, got, want)
		}
	}
}

// TestIdempotencyKeyCharacters: a key is printable ASCII (a UUID, an order
// number, spaces and punctuation included); a byte that is not — one
// that is not UTF-8, which would reach another node as U+FFFD and be
// looked up there as another key, or a Chinese order name — is 400
// invalid, and nothing is sent.
func TestIdempotencyKeyCharacters(t *testing.T) {
	r := newUserRig(t)
	for i, key := range []string{"550e8400-e29b-41d4-a716-446655440000", "订单 7 / A~Z!", "order-\xff\xfe", "订单-7"} {
		code, body, _ := keyedPost(t, r.url, "/v1/messages", r.keys["alice"], key, SendRequest{To: []string{uNumA1}, Text: fmt.Sprintf("键 %d", i)})
		if want := map[bool]int{true: http.StatusOK, false: http.StatusBadRequest}[i == 0]; code != want {
			t.Errorf("key %q: %d %s, want %d", key, code, body, want)
		}
	}
	code, body, _ := keyedPost(t, r.url, "/v1/messages", r.keys["alice"], "order 7 / A~Z!", SendRequest{To: []string{uNumA1}, Text: "键"})
	if code != http.StatusOK {
		t.Errorf("a key with spaces and punctuation: %d %s", code, body)
	}
	var page MessagePage
	r.must(http.StatusOK, "GET", "/v1/messages", r.keys["alice"], nil, &page)
	if len(page.Messages) != 2 {
		t.Fatalf("%d messages sent, want the two with good keys", len(page.Messages))
	}
}

// countingReader counts what is read of it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestIdempotencyRefusalNotDrained: a keyed request refused at once (a
// body over the route's limit: 413) is not read on to hash it, since a
// refusal is not kept: of a 48 MiB body the server takes a few MiB (the
// route's limit and the sockets' buffers), not all of it.
func TestIdempotencyRefusalNotDrained(t *testing.T) {
	r := newUserRig(t)
	const size = 48 << 20
	body := &countingReader{r: io.MultiReader(strings.NewReader(`{"to":["`+uNumA1+`"],"text":"`), strings.NewReader(strings.Repeat("长", size/3)))}
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/messages", body)
	req.ContentLength = -1 // chunked: the server learns the size by reading
	req.Header.Set("Authorization", "Bearer "+r.keys["alice"])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "huge-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the refused request: %v (read %d bytes)", err, body.n.Load())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if n := body.n.Load(); n > 16<<20 {
		t.Fatalf("the server read %d MiB of a %d MiB body it refused", n>>20, size>>20)
	}
}

// TestIdempotencyKeyAfterUnsyncedCommit: a keyed send whose commit was
// written and whose sync failed (a failing disk) is refused, but its
// message is stored and goes out. A retry with the key must not send it
// again: while the disk still fails it is refused, once a commit succeeds
// it replays the first answer. Before 2026-12-06 the retry sent it again
// (the key's answer, stored with the message, was not known in memory).
func TestIdempotencyKeyAfterUnsyncedCommit(t *testing.T) {
	var failing atomic.Bool
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}, syncFault: func() error {
		if failing.Load() {
			return errors.New("fdatasync: input/output error")
		}
		return nil
	}})
	send := func(key string) (int, []byte, http.Header) {
		t.Helper()
		return keyedPost(t, r.url, "/v1/messages", r.keys["alice"], key, SendRequest{To: []string{uNumA1}, Text: "只发一次"})
	}
	// The first commit once the disk fails must be the send's: another
	// write of the daemon's may take it, the send then refused unwritten.
	key := ""
	for try := 0; key == ""; try++ {
		if try == 20 {
			t.Fatal("in 20 tries, no send was the commit whose sync failed")
		}
		k := fmt.Sprintf("order-%d", try)
		failing.Store(true)
		if code, body, _ := send(k); code != http.StatusServiceUnavailable {
			t.Fatalf("the send, its sync failing: %d %s, want 503", code, body)
		}
		if _, err := r.store.LoadAnswer("A\x00alice\x00/v1/messages\x00" + k); err == nil {
			key = k
			break
		}
		failing.Store(false)
		if err := r.store.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if code, body, hdr := send(key); code != http.StatusServiceUnavailable || hdr.Get("Idempotent-Replayed") != "" {
		t.Fatalf("its retry, the disk still failing: %d %s (replayed %q), want 503", code, body, hdr.Get("Idempotent-Replayed"))
	}
	failing.Store(false)
	code, body, hdr := send(key)
	var out SendResponse
	if code != http.StatusOK || hdr.Get("Idempotent-Replayed") != "true" || json.Unmarshal(body, &out) != nil || len(out.Results) != 1 {
		t.Fatalf("the retry once the disk is back: %d %s (replayed %q), want the stored answer replayed", code, body, hdr.Get("Idempotent-Replayed"))
	}
	r.waitState(r.keys["alice"], out.Results[0].ID, "delivered", 10*time.Second)
	if code, _, hdr := send(key); code != http.StatusOK || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a retry after: %d (replayed %q)", code, hdr.Get("Idempotent-Replayed"))
	}
	if n := len(r.received(uNumA1)); n != 1 {
		t.Fatalf("the SMSC got %d messages, want the key's one", n)
	}
}

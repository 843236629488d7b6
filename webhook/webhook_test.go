package webhook

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/queue"
)

// receiver is a real HTTP endpoint on 127.0.0.1 that records what it got
// and answers with the statuses queued in fail (then 200).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []posted
	fail []int
	ch   chan posted
}

type posted struct {
	body      []byte
	ts, sig   string
	at        time.Time
	status    int
	receiptID string
	event     string // X-Qxtd-Event
}

func newReceiver(t *testing.T, fail ...int) *receiver {
	r := &receiver{fail: fail, ch: make(chan posted, 64)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var rc Receipt
		_ = json.Unmarshal(b, &rc)
		p := posted{body: b, ts: req.Header.Get("X-Qxtd-Timestamp"), sig: req.Header.Get("X-Qxtd-Signature"), at: time.Now(), status: 200, receiptID: rc.ID, event: req.Header.Get(EventHeader)}
		r.mu.Lock()
		if len(r.fail) > 0 {
			p.status, r.fail = r.fail[0], r.fail[1:]
		}
		r.got = append(r.got, p)
		r.mu.Unlock()
		w.WriteHeader(p.status)
		r.ch <- p
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) posted {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no POST within 10s")
	}
	return posted{}
}

// finalMessage stores a message with url for enterprise and makes it
// delivered (or, with fail, undeliverable).
func finalMessage(t testing.TB, s *queue.Store, enterprise, url string, st queue.State) *queue.Message {
	t.Helper()
	ctx := context.Background()
	m := &queue.Message{Account: enterprise + "-u", Enterprise: enterprise, Dest: "13712345678", Upstream: "up",
		ReceiptURL: url, Parts: []queue.Part{{Body: []byte("hi")}}}
	if err := s.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}
	smsc := "s" + strconv.FormatUint(m.ID, 10)
	if err := s.Submitted(ctx, queue.Key{ID: m.ID}, smsc, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyDLR(ctx, queue.DLR{Upstream: "up", SMSCID: smsc, State: st, ErrCode: "000", DoneAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return m
}

type rig struct {
	path  string
	store *queue.Store
	snd   *Sender
	reg   *prometheus.Registry
	stop  func()
	// damaged: the test damaged the store on purpose, so stop does not
	// check its consistency.
	damaged bool
}

func start(t testing.TB, path string, cfg Config) *rig {
	t.Helper()
	return startWith(t, path, queue.Options{NoSync: true}, cfg)
}

func startWith(t testing.TB, path string, qopts queue.Options, cfg Config) *rig {
	t.Helper()
	s, err := queue.Open(path, qopts)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Store, cfg.Registerer, cfg.AllowPrivate = s, reg, true
	if cfg.Secret == nil {
		cfg.Secret = func(string) string { return "s3cret" }
	}
	snd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHookCallback(snd.HooksReady)
	s.SetReplyCallback(snd.RepliesReady)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); snd.Run(ctx) }()
	r := &rig{path: path, store: s, snd: snd, reg: reg}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err := s.Check(); err != nil && !r.damaged {
				t.Errorf("check: %v", err)
			}
			s.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

func TestSignedOnce(t *testing.T) {
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{})
	m := finalMessage(t, r.store, "ent1", rcv.URL+"/dlr", queue.StateDelivered)
	p := rcv.next(t)
	if !Verify("s3cret", p.ts, p.body, p.sig) {
		t.Fatalf("signature %q does not verify over %q", p.sig, p.body)
	}
	if Verify("other", p.ts, p.body, p.sig) || Verify("s3cret", p.ts+"1", p.body, p.sig) {
		t.Fatal("signature verifies under the wrong secret or timestamp")
	}
	var rc Receipt
	if err := json.Unmarshal(p.body, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.ID != strconv.FormatUint(m.ID, 10) || rc.State != "delivered" || rc.Segments != 1 || rc.Delivered != 1 || rc.Recipient != m.Dest {
		t.Fatalf("receipt %+v", rc)
	}
	waitPending(t, r, 0)
	// Exactly one: a message that becomes final later is the next POST,
	// not a repeat of the first.
	m2 := finalMessage(t, r.store, "ent1", rcv.URL+"/dlr", queue.StateUndeliverable)
	if p := rcv.next(t); p.receiptID != strconv.FormatUint(m2.ID, 10) {
		t.Fatalf("second POST is for %s, want %d", p.receiptID, m2.ID)
	}
	waitPending(t, r, 0)
	waitDelivered(t, r, 2)
}

// waitDelivered waits until the sender has counted n deliveries: it counts
// them once the store's commit has answered, a moment after HookPending
// already sees it.
func waitDelivered(t *testing.T, r *rig, n float64) {
	t.Helper()
	waitFor(t, func() (bool, string) {
		got := testutil.ToFloat64(r.snd.total.WithLabelValues("delivered"))
		return got == n, fmt.Sprintf("delivered %v, want %v", got, n)
	})
}

// waitPending waits until the store holds n receipts (every event is a
// commit the test awaits through the store; polling the store is the
// only observable).
func waitPending(t *testing.T, r *rig, n int) {
	t.Helper()
	waitFor(t, func() (bool, string) {
		got, err := r.store.HookPending()
		return err == nil && got == n, fmt.Sprintf("pending %d (%v), want %d", got, err, n)
	})
}

// waitFor polls cond until it holds, failing with its last word after
// 10 s.
func waitFor(t *testing.T, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(state)
		}
		<-tick.C
	}
}

func TestRetryWithBackoff(t *testing.T) {
	rcv := newReceiver(t, 500, 500)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
	a, b, c := rcv.next(t), rcv.next(t), rcv.next(t)
	if a.status != 500 || b.status != 500 || c.status != 200 {
		t.Fatalf("statuses %d %d %d", a.status, b.status, c.status)
	}
	if d1, d2 := b.at.Sub(a.at), c.at.Sub(b.at); d1 < 50*time.Millisecond || d2 < 100*time.Millisecond {
		t.Errorf("backoff %v then %v, want ≥ 50ms then ≥ 100ms", d1, d2)
	}
	waitPending(t, r, 0)
	if n := testutil.ToFloat64(r.snd.total.WithLabelValues("failed")); n != 2 {
		t.Errorf("failed %v", n)
	}
}

func TestGiveUpAfterMaxAge(t *testing.T) {
	rcv := newReceiver(t, 500, 500, 500, 500, 500, 500, 500, 500)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 10 * time.Millisecond, MaxAge: 30 * time.Millisecond, Poll: 5 * time.Millisecond})
	m := finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
	waitPending(t, r, 0)
	// The sender counts a give-up after its commit, so the store can show
	// the receipt gone a moment before the counter moves: wait for it.
	waitFor(t, func() (bool, string) {
		n := testutil.ToFloat64(r.snd.total.WithLabelValues("gave_up"))
		return n == 1, fmt.Sprintf("gave_up %v, want 1", n)
	})
	if n := testutil.ToFloat64(r.snd.total.WithLabelValues("delivered")); n != 0 {
		t.Errorf("delivered %v, want 0", n)
	}
	got, _ := r.store.Get(m.ID)
	if !got.ReceiptDone {
		t.Error("message not marked done after giving up")
	}
}

func TestDurableAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rcv := newReceiver(t, 503)
	r := start(t, path, Config{Backoff: 200 * time.Millisecond, Poll: 10 * time.Millisecond})
	m := finalMessage(t, r.store, "ent1", rcv.URL, queue.StateDelivered)
	if p := rcv.next(t); p.status != 503 {
		t.Fatalf("first status %d", p.status)
	}
	waitRetried(t, r)
	r.stop() // the daemon stops with the receipt pending
	r2 := start(t, path, Config{Poll: 10 * time.Millisecond})
	p := rcv.next(t)
	if p.status != 200 || p.receiptID != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("after restart: %+v", p)
	}
	waitPending(t, r2, 0)
}

// waitRetried waits until the failed attempt is recorded in the store.
func waitRetried(t *testing.T, r *rig) {
	t.Helper()
	waitFor(t, func() (bool, string) {
		hs, _ := r.store.DueHooks("ent1", time.Now().Add(time.Hour), 0, nil)
		return len(hs) == 1 && hs[0].Attempts == 1, "retry not recorded"
	})
}

// A dead endpoint of one enterprise takes at most PerEnterprise workers:
// another enterprise's receipts still go at once.
func TestDeadEndpointIsolated(t *testing.T) {
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-hang:
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(hang) })
	rcv := newReceiver(t)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Workers: 4, PerEnterprise: 2, Timeout: 5 * time.Second, Poll: 10 * time.Millisecond})
	for range 20 {
		finalMessage(t, r.store, "deadco", dead.URL, queue.StateDelivered)
	}
	began := time.Now()
	m := finalMessage(t, r.store, "liveco", rcv.URL, queue.StateDelivered)
	p := rcv.next(t)
	if p.receiptID != strconv.FormatUint(m.ID, 10) {
		t.Fatalf("got %+v", p)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("live enterprise waited %v behind a dead endpoint", d)
	}
}

func TestPrivateAddressRefused(t *testing.T) {
	s := &Sender{}
	for _, a := range []string{"127.0.0.1:80", "10.1.2.3:443", "192.168.0.1:80", "169.254.169.254:80", "[::1]:80", "0.0.0.0:80"} {
		if err := s.control("tcp", a, nil); !errors.Is(err, ErrRefusedAddress) {
			t.Errorf("%s: %v", a, err)
		}
	}
	if err := s.control("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("public address: %v", err)
	}
	s.cfg.AllowPrivate = true
	if err := s.control("tcp", "127.0.0.1:80", nil); err != nil {
		t.Errorf("allowed: %v", err)
	}
}

// Receipts to one endpoint reuse their connections: about PerEnterprise
// are opened to it, however many receipts go. (With two idle connections
// kept per host, every POST beyond two in flight dialled a new one: 47 for
// these 200.) The bound is twice PerEnterprise, not PerEnterprise:
// net/http drops a connection instead of reusing it when its writer has
// not reported the request written within 50 ms of the answer, and a
// machine starved of CPU (the whole suite under -race) made that happen
// once in a run (net/http's own tests raise that wait for this reason).
func TestKeepAlive(t *testing.T) {
	var dials atomic.Int64
	var got atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		got.Add(1)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Workers: 8, PerEnterprise: 4, Poll: 10 * time.Millisecond})
	const n = 200
	for range n {
		finalMessage(t, r.store, "ent1", srv.URL, queue.StateDelivered)
	}
	waitPending(t, r, 0)
	if got.Load() < n {
		t.Fatalf("%d POSTs for %d receipts", got.Load(), n)
	}
	if d := dials.Load(); d > 2*4 {
		t.Errorf("%d connections opened for %d receipts, want at most twice PerEnterprise (4)", d, n)
	}
}

// A worker's slot is free once its POST is answered, not once the store
// has recorded the delivery: with the store's commits held up, an
// enterprise's two slots still post more than two receipts, and every
// receipt is recorded once the commits go on.
func TestSlotFreeBeforeAck(t *testing.T) {
	gate := make(chan struct{}) // while gated, commits wait for its close after writing, before answering
	var gated atomic.Bool
	qopts := queue.Options{NoSync: true, OnCommit: func(time.Duration, int) {
		if gated.Load() {
			<-gate
		}
	}}
	rcv := newReceiver(t)
	// Ten final messages in a store the sender is not yet running on.
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := queue.Open(path, qopts)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		finalMessage(t, s, "ent1", rcv.URL, queue.StateDelivered)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	gated.Store(true)
	released := false
	release := func() {
		if !released {
			released = true
			gated.Store(false)
			close(gate)
		}
	}
	defer release()
	r := startWith(t, path, qopts, Config{Workers: 2, PerEnterprise: 2, Poll: 10 * time.Millisecond})
	// Under the gate, four POSTs at least: two, whose acknowledgement is
	// held at the gate, then two more in the freed slots.
	seen := map[string]bool{}
	for len(seen) < 4 {
		seen[rcv.next(t).receiptID] = true
	}
	release()
	waitPending(t, r, 0)
	waitDelivered(t, r, 10)
}

// A damaged message record does not hold back its enterprise's other
// receipts: they are posted and recorded, the damaged one stays due
// (reported, for Check). Before, the listing of due receipts failed on it,
// and none of the enterprise's receipts went out again.
func TestDamagedMessageDoesNotBlockReceipts(t *testing.T) {
	rcv := newReceiver(t)
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 6 {
		ids = append(ids, strconv.FormatUint(finalMessage(t, s, "ent1", rcv.URL, queue.StateDelivered).ID, 10))
	}
	bad := ids[2]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage one message record behind the store's back.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	badID, _ := strconv.ParseUint(bad, 10, 64)
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("msg")).Put(binary.BigEndian.AppendUint64(nil, badID), []byte{0xff})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r := start(t, path, Config{Workers: 8, PerEnterprise: 8, Poll: 10 * time.Millisecond})
	r.damaged = true

	got := map[string]int{}
	for len(got) < 5 {
		got[rcv.next(t).receiptID]++
	}
	if got[bad] != 0 {
		t.Errorf("the damaged message's receipt was posted: %v", got)
	}
	waitPending(t, r, 1)
	waitDelivered(t, r, 5)
}

// Every receipt is posted exactly once when nothing fails, however the
// sender's rescans interleave with the acknowledgements: a rescan reads a
// snapshot of the store that may predate an acknowledgement committed
// meanwhile, so no receipt may leave the in-flight set during a rescan.
// (One left as soon as its acknowledgement was committed, and a rescan
// whose snapshot was a moment older posted it again: the bench saw 2
// duplicates in 300; this test, 11 to 46 in 2,000.)
func TestNoDuplicateWhileRescanning(t *testing.T) {
	var mu sync.Mutex
	posts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var rc Receipt
		_ = json.NewDecoder(req.Body).Decode(&rc)
		mu.Lock()
		posts[rc.ID]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	// Rescans as often as possible: every finished POST wakes one, and the
	// poll is 1 ms.
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Workers: 32, PerEnterprise: 32, Poll: time.Millisecond})
	const n = 2000
	for range n {
		finalMessage(t, r.store, "ent1", srv.URL, queue.StateDelivered)
	}
	waitPending(t, r, 0)
	waitDelivered(t, r, n)
	mu.Lock()
	defer mu.Unlock()
	var dups []string
	for id, c := range posts {
		if c != 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, c))
		}
	}
	if len(posts) != n || len(dups) > 0 {
		t.Fatalf("%d receipts posted, want %d; posted more than once: %v", len(posts), n, dups)
	}
}

// Receipts waiting out a retry backoff at many enterprises cost the
// others nothing: a pass after a commit or a POST reads only the
// enterprises with receipts due, and the full pass (every Poll) reads them
// all. Before, every pass read every enterprise with a receipt pending:
// 50 receipts beside 200 such enterprises read about 20,000.
func TestIdleEnterprisesNotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	const idle = 200
	for i := range idle {
		m := finalMessage(t, s, "idle"+strconv.Itoa(i), "http://127.0.0.1:9/", queue.StateDelivered)
		hs, err := s.DueHooks(m.Enterprise, time.Now().Add(time.Minute), 1, nil)
		if err != nil || len(hs) != 1 {
			t.Fatalf("idle hook: %v %v", hs, err)
		}
		if err := s.RetryHook(context.Background(), hs[0], later); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	r := start(t, path, Config{Poll: time.Minute})
	const live = 50
	for range live {
		finalMessage(t, r.store, "live", rcv.URL, queue.StateDelivered)
		rcv.next(t)
	}
	waitDelivered(t, r, live)
	t.Logf("%d enterprises read", r.snd.scanned.Load())
	if n := r.snd.scanned.Load(); n > idle+3*live {
		t.Errorf("%d enterprises read for %d receipts beside %d idle enterprises; want at most %d", n, live, idle, idle+3*live)
	}
	if n, _ := r.store.HookPending(); n != idle {
		t.Errorf("%d receipts pending, want the %d idle ones", n, idle)
	}
}

// A retry that comes due is found while other receipts keep the sender
// busy: the full pass that finds it runs every Poll whatever wakes the
// sender (a pass per POST that ends would otherwise never let the Poll
// timer fire).
func TestRetryFoundUnderTraffic(t *testing.T) {
	flaky := newReceiver(t, 500)
	busy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(busy.Close)
	r := start(t, filepath.Join(t.TempDir(), "q.db"), Config{Backoff: 50 * time.Millisecond, Poll: 200 * time.Millisecond})
	finalMessage(t, r.store, "flaky", flaky.URL, queue.StateDelivered)
	first := flaky.next(t)
	stop := make(chan struct{})
	traffic := make(chan struct{})
	go func() {
		defer close(traffic)
		for {
			select {
			case <-stop:
				return
			default:
			}
			finalMessage(t, r.store, "busy", busy.URL, queue.StateDelivered)
		}
	}()
	var again posted
	select {
	case again = <-flaky.ch:
	case <-time.After(3 * time.Second):
	}
	close(stop)
	<-traffic
	if first.status != 500 || again.status != 200 {
		t.Fatalf("flaky endpoint got %d then %d (0: no retry within 3 s of busy traffic)", first.status, again.status)
	}
	if d := again.at.Sub(first.at); d > time.Second {
		t.Errorf("retry %v after the failure, want within a Poll of its 50 ms backoff", d)
	}
}

// While the store cannot write (a full disk), a receipt whose retry or
// delivery it cannot record is posted again once a Poll (the full pass),
// not in a loop: the endpoint is not flooded with copies, and once the
// store writes again the receipt is delivered and recorded.
func TestStoreFailureNoPostLoop(t *testing.T) {
	var fail, refuse atomic.Bool
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		posts.Add(1)
		if refuse.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	qopts := queue.Options{NoSync: true, CommitFault: func() error {
		if fail.Load() {
			return errors.New("injected: disk full")
		}
		return nil
	}}
	const poll = 100 * time.Millisecond
	r := startWith(t, filepath.Join(t.TempDir(), "q.db"), qopts, Config{Backoff: time.Hour, Poll: poll})
	fail.Store(true)
	for _, c := range []struct {
		name    string
		refused bool
	}{{"retry not recorded", true}, {"delivery not recorded", false}} {
		refuse.Store(c.refused)
		before := posts.Load()
		if c.refused { // the first receipt: made final while the store wrote
			fail.Store(false)
			finalMessage(t, r.store, "ent1", srv.URL, queue.StateDelivered)
			fail.Store(true)
		}
		<-time.After(10 * poll) // the window the POSTs are counted over, not a wait for an event
		t.Logf("%s: %d POSTs in %v", c.name, posts.Load()-before, 10*poll)
		if n := posts.Load() - before; n < 2 || n > 15 {
			t.Errorf("%s: %d POSTs of one receipt in %v with Poll %v; want about one a Poll", c.name, n, 10*poll, poll)
		}
	}
	fail.Store(false)
	waitPending(t, r, 0)
	waitDelivered(t, r, 1)
}

// A POST under way when the sender stops is finished and its 2xx
// recorded: cut off, the endpoint may have taken it already, and it would
// be posted again after the restart.
func TestStopFinishesPostInFlight(t *testing.T) {
	in, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.ReadAll(req.Body)
		in <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free) // before srv.Close, which waits for the handler, even when the test fails
	path := filepath.Join(t.TempDir(), "q.db")
	r := start(t, path, Config{Poll: 10 * time.Millisecond})
	finalMessage(t, r.store, "ent1", srv.URL, queue.StateDelivered)
	select {
	case <-in:
	case <-time.After(10 * time.Second):
		t.Fatal("no POST")
	}
	stopped := make(chan struct{})
	go func() {
		r.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("the sender stopped with a POST under way")
	case <-time.After(300 * time.Millisecond): // it waits: long enough to see it
	}
	free()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not stop once the POST was answered")
	}
	s, err := queue.Open(path, queue.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.HookPending(); err != nil || n != 0 {
		t.Fatalf("after the stop %d receipts still to post (%v): the answered POST was not recorded", n, err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLoad is the load client of the HTTP scenarios (Kannel's sendsms,
// qxtd's POST /v1/messages): -window requests outstanding, one keep-alive
// connection each, and a receipt server on 127.0.0.1 that the gateway
// calls back (Kannel's dlr-url, qxtd's receipt_url) with the message's
// index in the URL. What each gateway's request looks like is its
// httpTarget.
type HTTPLoad struct {
	t    httpTarget
	hc   *http.Client
	ln   net.Listener
	srv  *http.Server
	cur  atomic.Pointer[httpBatch]
	runs atomic.Int64 // batch numbers: a late receipt of an old batch is a stray

	Strays atomic.Int64
	// Dropped, if set, is how many receipts the gateway has said so far
	// that it could not match to a message (Kannel logs each): they will
	// never come, so a run waits only for the others.
	Dropped func() int
}

// httpTarget builds one gateway's submit request of text to dsts (one
// number, or a bulk request's); receiptURL is "" when no receipt is asked
// for. accepted says whether an answer took all n numbers. final says
// whether a receipt callback is the message's final one (Kannel also
// reports intermediate states); recipient reads the number it is about,
// which tells a bulk request's messages apart.
type httpTarget interface {
	request(ctx context.Context, dsts []int64, text, receiptURL string) (*http.Request, error)
	// split is a callback's receipts: one body each (more than one when
	// the gateway sends them in batches).
	split(body []byte) [][]byte
	accepted(status int, body []byte, n int) error
	final(r *http.Request, body []byte) (final bool)
	recipient(r *http.Request, body []byte) (int64, bool)
}

// httpBatch is one run of n messages.
type httpBatch struct {
	run      int64
	n        int
	sentAt   []atomic.Int64
	respLat  []time.Duration // written by the request's own worker
	rcptLat  []atomic.Int64  // ns; written by the receipt handler
	rcptSeen []atomic.Bool
	resps    atomic.Int64
	rcpts    atomic.Int64
	errs     atomic.Int64
	dups     atomic.Int64
	firstErr atomic.Value // string
	lastResp atomic.Int64
	lastRcpt atomic.Int64
	receipts bool
	firstDst int64 // message i went to firstDst+i
	bulk     int   // messages a request (1: one each)
	done     chan struct{}
	doneOnce sync.Once
}

func (b *httpBatch) check() {
	if int(b.resps.Load()+b.errs.Load()) >= b.n && (!b.receipts || int(b.rcpts.Load()) >= b.n) {
		b.doneOnce.Do(func() { close(b.done) })
	}
}

// NewHTTPLoad starts the receipt server; conns is the most keep-alive
// connections to the gateway (the window).
func NewHTTPLoad(t httpTarget, conns int) (*HTTPLoad, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	l := &HTTPLoad{t: t, hc: &http.Client{Transport: tr, Timeout: time.Minute}, ln: ln}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.receipt), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// Close stops the receipt server and the client's connections.
func (l *HTTPLoad) Close() {
	_ = l.srv.Close()
	l.hc.CloseIdleConnections()
}

// receiptBase is where the gateway calls back for message i of run.
func (l *HTTPLoad) receiptBase(run int64, i int) string {
	return "http://" + l.ln.Addr().String() + "/dlr?b=" + strconv.FormatInt(run, 10) + "&i=" + strconv.Itoa(i)
}

func (l *HTTPLoad) receipt(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	w.WriteHeader(http.StatusOK)
	for _, rc := range l.t.split(body) {
		l.receiptOne(r, rc, now)
	}
}

// receiptOne counts one receipt of a callback to r, that came at now.
func (l *HTTPLoad) receiptOne(r *http.Request, body []byte, now int64) {
	b := l.cur.Load()
	q := r.URL.Query()
	run, err1 := strconv.ParseInt(q.Get("b"), 10, 64)
	i, err2 := strconv.Atoi(q.Get("i"))
	if b == nil || err1 != nil || err2 != nil || run != b.run || i < 0 || i >= b.n {
		l.Strays.Add(1)
		return
	}
	if !l.t.final(r, body) {
		return
	}
	if b.bulk > 1 {
		// The URL names the request (its first message); the receipt
		// names the number, which must be one of that request's.
		dst, ok := l.t.recipient(r, body)
		j := int(dst - b.firstDst)
		if !ok || j < i || j >= min(i+b.bulk, b.n) {
			l.Strays.Add(1)
			return
		}
		i = j
	}
	if b.rcptSeen[i].Swap(true) {
		b.dups.Add(1)
		return
	}
	if s := b.sentAt[i].Load(); s > 0 {
		b.rcptLat[i].Store(now - s)
	}
	b.lastRcpt.Store(now)
	b.rcpts.Add(1)
	b.check()
}

// Run sends spec.N requests, at most spec.Window outstanding (paced at
// spec.Offered if set), and waits for every answer and, with
// spec.Receipts, every final receipt.
func (l *HTTPLoad) Run(ctx context.Context, spec RunSpec) (RunResult, error) {
	b := &httpBatch{run: l.runs.Add(1), n: spec.N, receipts: spec.Receipts, firstDst: spec.FirstDst, bulk: max(spec.Bulk, 1),
		sentAt: make([]atomic.Int64, spec.N), respLat: make([]time.Duration, spec.N),
		rcptLat: make([]atomic.Int64, spec.N), rcptSeen: make([]atomic.Bool, spec.N), done: make(chan struct{})}
	l.cur.Store(b)
	if spec.N == 0 {
		return RunResult{}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	next := make(chan int) // the first message of each request
	var wg sync.WaitGroup
	for range max(spec.Window, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l.send(ctx, b, spec, i, min(b.bulk, spec.N-i))
			}
		}()
	}
	go func() {
		defer close(next)
		var every time.Duration
		if spec.Offered > 0 {
			every = time.Duration(float64(time.Second) / spec.Offered)
		}
		pace := time.NewTimer(time.Hour)
		defer pace.Stop()
		for i := 0; i < spec.N; i += b.bulk {
			if every > 0 {
				if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
					pace.Reset(d)
					select {
					case <-pace.C:
					case <-ctx.Done():
						return
					}
				}
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	var err error
	dropped0, dropped := l.dropped(), 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	progress := newStallClock()
wait:
	for {
		select {
		case <-b.done:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case now := <-tick.C:
			if spec.Receipts {
				dropped = l.dropped() - dropped0
				if dropped > 0 && int(b.resps.Load()+b.errs.Load()) >= b.n && int(b.rcpts.Load())+dropped >= b.n {
					break wait
				}
			}
			if progress.stalled(now, b.resps.Load()+b.errs.Load()+b.rcpts.Load(), spec.Stall) {
				err = fmt.Errorf("stalled: nothing for %v", spec.Stall)
				break wait
			}
		}
	}
	cancel()
	wg.Wait() // every worker is done with the batch
	r := RunResult{N: spec.N, Answered: int(b.resps.Load()), Receipts: int(b.rcpts.Load()),
		Errors: int(b.errs.Load()), DupReceipts: int(b.dups.Load()), Start: start,
		LastResp: time.Unix(0, b.lastResp.Load()), LastRcpt: time.Unix(0, b.lastRcpt.Load()), Dropped: dropped}
	if s, ok := b.firstErr.Load().(string); ok {
		r.FirstErrText = s
	}
	if err == nil {
		r.RespLat = b.respLat
		if spec.Receipts {
			r.RcptLat = make([]time.Duration, spec.N)
			for i := range b.rcptLat {
				r.RcptLat[i] = time.Duration(b.rcptLat[i].Load())
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("%w (got %d/%d answers, %d errors, %d/%d receipts)",
			err, r.Answered, r.N, r.Errors, r.Receipts, map[bool]int{true: r.N}[spec.Receipts])
	}
	return r, err
}

func (l *HTTPLoad) dropped() int {
	if l.Dropped == nil {
		return 0
	}
	return l.Dropped()
}

// send makes the request of messages i to i+n-1 (one text to n
// numbers); the answer must accept all n. Each message's answer latency
// is the request's.
func (l *HTTPLoad) send(ctx context.Context, b *httpBatch, spec RunSpec, i, n int) {
	rurl := ""
	if spec.Receipts {
		rurl = l.receiptBase(b.run, i)
	}
	dsts := make([]int64, n)
	for j := range dsts {
		dsts[j] = spec.FirstDst + int64(i+j)
	}
	req, err := l.t.request(ctx, dsts, "bench message "+strconv.Itoa(i), rurl)
	if err != nil {
		l.fail(b, n, err.Error())
		return
	}
	t0 := time.Now()
	for j := i; j < i+n; j++ {
		b.sentAt[j].Store(t0.UnixNano())
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			l.fail(b, n, err.Error())
		}
		return
	}
	// An answer per number: 4 KiB would cut a bulk request's short.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	now := time.Now()
	if err := l.t.accepted(resp.StatusCode, body, n); err != nil {
		l.fail(b, n, err.Error())
		return
	}
	for j := i; j < i+n; j++ {
		b.respLat[j] = now.Sub(t0)
	}
	b.lastResp.Store(now.UnixNano())
	b.resps.Add(int64(n))
	b.check()
}

// fail counts the n messages of a request as errors.
func (l *HTTPLoad) fail(b *httpBatch, n int, msg string) {
	b.firstErr.CompareAndSwap(nil, msg)
	b.errs.Add(int64(n))
	b.check()
}

// qxtdTarget is qxtd's HTTP API: POST /v1/messages with a console token,
// a receipt asked for with receipt_url (qxtd POSTs the final state there).
type qxtdTarget struct{ addr, token string }

// loginQxtd logs the bench account in on qxtd's HTTP API.
func loginQxtd(ctx context.Context, addr string) (qxtdTarget, error) {
	body, _ := json.Marshal(map[string]string{"system_id": benchSystemID, "password": benchPassword})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/login", bytes.NewReader(body))
	if err != nil {
		return qxtdTarget{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return qxtdTarget{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return qxtdTarget{}, fmt.Errorf("qxtd login: HTTP %d: %.200s", resp.StatusCode, b)
	}
	return qxtdTarget{addr: addr, token: out.Token}, nil
}

func (t qxtdTarget) request(ctx context.Context, dsts []int64, text, receiptURL string) (*http.Request, error) {
	to := make([]string, len(dsts))
	for i, d := range dsts {
		to[i] = strconv.FormatInt(d, 10)
	}
	m := map[string]any{"to": to, "text": text}
	if receiptURL != "" {
		m["receipt_url"] = receiptURL
	}
	return t.send(ctx, m)
}

// personalTarget is qxtd's POST /v1/messages/personalized: each number of
// a request its own text (text and the number's place in the request).
type personalTarget struct{ qxtdTarget }

func (t personalTarget) request(ctx context.Context, dsts []int64, text, receiptURL string) (*http.Request, error) {
	msgs := make([]map[string]string, len(dsts))
	for i, d := range dsts {
		msgs[i] = map[string]string{"to": strconv.FormatInt(d, 10), "text": text + " #" + strconv.Itoa(i)}
	}
	m := map[string]any{"messages": msgs}
	if receiptURL != "" {
		m["receipt_url"] = receiptURL
	}
	return t.postTo(ctx, "/v1/messages/personalized", m)
}

// send is a POST /v1/messages of m, as the bench account.
func (t qxtdTarget) send(ctx context.Context, m map[string]any) (*http.Request, error) {
	return t.postTo(ctx, "/v1/messages", m)
}

// postTo is a POST of m to path, as the bench account.
func (t qxtdTarget) postTo(ctx context.Context, path string, m map[string]any) (*http.Request, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// accepted: qxtd answers 200 with a result per recipient, refused ones
// included.
func (qxtdTarget) accepted(status int, body []byte, n int) error { return acceptedAll(status, body, n) }

// acceptedAll checks that a POST /v1/messages answer accepted all n
// numbers.
func acceptedAll(status int, body []byte, n int) error {
	var out struct {
		Accepted int `json:"accepted"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Accepted != n {
		return fmt.Errorf("HTTP %d: %.200s", status, body)
	}
	return nil
}

// final: every receipt qxtd POSTs is the message's final state.
func (qxtdTarget) final(_ *http.Request, body []byte) bool { return len(body) > 0 }

// split: a batch (the enterprise's receipt_batch) is {"receipts": [...]},
// else the body is one receipt.
func (qxtdTarget) split(body []byte) [][]byte {
	var b struct {
		Receipts []json.RawMessage `json:"receipts"`
	}
	if json.Unmarshal(body, &b) != nil || b.Receipts == nil {
		return [][]byte{body}
	}
	out := make([][]byte, len(b.Receipts))
	for i, r := range b.Receipts {
		out[i] = r
	}
	return out
}

// recipient: a receipt's JSON names its number.
func (qxtdTarget) recipient(_ *http.Request, body []byte) (int64, bool) {
	var rc struct {
		Recipient string `json:"recipient"`
	}
	if json.Unmarshal(body, &rc) != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(rc.Recipient, 10, 64)
	return n, err == nil
}

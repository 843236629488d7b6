package console

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/segment"
	"github.com/qxtd/qxtd/smpp"
	"github.com/qxtd/qxtd/webhook"

	_ "time/tzdata"
)

// rig is the whole daemon in-process, as cmd/qxtd wires it: the SMSC
// simulator on loopback, the store and the policy on one bbolt file in
// t.TempDir(), the gateway with a real upstream bind, the reminders, the
// API, and the console in front of it, on a real HTTP listener.
type rig struct {
	// cluster is what GET /admin/v1/status says of a cluster (nil: the
	// node is alone), for the desk's cluster view.
	cluster atomic.Pointer[api.ClusterStatus]
	t       *testing.T
	sim     *smpp.Simulator
	store   *queue.Store
	pol     *policy.Policy
	gw      *gateway.Gateway
	api     *api.Server
	hooks   *webhook.Sender // not running: a test that wants receipts POSTed runs it
	rem     *reminder.Service
	con     *Server
	clock   *clock
	url     string
}

// The fixtures: enterprise A (甲公司) with alice (user), al2 (user) and
// amy (admin); enterprise B (乙公司) with bob (admin). A's whitelist has
// three approved numbers and one pending.
const (
	numA1      = "13712345678"
	numA2      = "13923412345"
	numA3      = "13800138000"
	numPending = "13712345679"
	opsToken_  = "ops-secret-token"
	password   = "secret1"
)

// clock is the API's clock: tests move it to end idle sessions.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }

// Add moves the clock forward by d.
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.off += d; c.mu.Unlock() }

// newRig builds the rig; opts change the API's configuration (a test's
// own parts: the other nodes of a cluster).
func newRig(t *testing.T, opts ...func(*api.Config)) *rig {
	t.Helper()
	r := &rig{t: t, clock: &clock{}}
	// An SMSC without transceivers, bound with a transmitter and a
	// receiver (upstreams[].bind_mode transmitter_receiver): the desk
	// shows the receivers apart, and every receipt and reply of the
	// console's tests comes in on the receiver.
	r.sim = smpp.NewSimulator(smpp.SimOptions{SystemID: "up", Password: "uppw", DLRDelay: 20 * time.Millisecond, Record: true, NoTransceiver: true})
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.sim.Serve(sl) }()
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var gwMu sync.Mutex
	var gw *gateway.Gateway
	// The webhook sender, built below, told of what the store queues or
	// makes due, as the daemon's is.
	var hooksRef atomic.Pointer[webhook.Sender]
	r.store, err = queue.New(db, queue.Options{OnDLRReady: func(a string, ready []*queue.Message, at queue.Snapshot) {
		gwMu.Lock()
		g := gw
		gwMu.Unlock()
		g.OnDLRReady(a, ready, at)
	}, OnHookReady: func(ents []string) {
		if h := hooksRef.Load(); h != nil {
			h.HooksReady(ents)
		}
	}, OnReplyReady: func(ents []string) {
		if h := hooksRef.Load(); h != nil {
			h.RepliesReady(ents)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.pol, err = policy.New(db, policy.Config{BcryptCost: 4, DefaultTPS: 1000})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{
		{
			Enterprise: policy.Enterprise{Code: "A", Name: "甲公司", Signature: "【甲公司】", Package: 3, National: true,
				ServiceNumber: "106575000001", ExtLen: 4},
			Users: []policy.NewUser{
				{Name: "甲用户", SystemID: "alice", Password: password},
				{Name: "甲二", SystemID: "al2", Password: password},
				{Name: "甲管理员", SystemID: "amy", Password: password, Role: policy.RoleAdmin},
			},
			Whitelist: []string{numA1, numA2, numA3},
		},
		{
			Enterprise: policy.Enterprise{Code: "B", Name: "乙公司", Signature: "【乙公司】", Package: 1, National: true},
			Users:      []policy.NewUser{{Name: "乙管理员", SystemID: "bob", Password: password, Role: policy.RoleAdmin}},
			Whitelist:  []string{numA1},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}, "A", []string{numPending}); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Config{
		Upstreams: []gateway.UpstreamConfig{{
			Name: "sim", Addr: sl.Addr().String(), SystemID: "up", Password: "uppw",
			Binds: 1, Receivers: 1, Window: 10, RespTimeout: 2 * time.Second,
			Segment: segment.Options{Concat: segment.ConcatUDH8},
		}},
		RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		// Housekeeping (a disabled enterprise's dropped messages among
		// it) within the tests' deadlines.
		MaintainInterval: 200 * time.Millisecond,
	}, r.store, gateway.Rules{P: r.pol}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	gwMu.Lock()
	gw = g
	gwMu.Unlock()
	r.gw = g
	g.Start()
	rem, err := reminder.New(reminder.Config{DB: db, Gateway: g, Policy: r.pol, Tick: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.rem = rem
	// The receipt webhooks' sender, for 回执推送's test receipts (to the
	// tests' endpoints on loopback: private addresses allowed).
	hooks, err := webhook.New(webhook.Config{Store: r.store, AllowPrivate: true, Timeout: 5 * time.Second,
		Secret:   func(code string) string { e, _ := r.pol.Lookup(code); return e.Receipt.Secret },
		Previous: func(code string) string { e, _ := r.pol.Lookup(code); return e.Receipt.PreviousSecret(time.Now()) },
		Batch:    func(code string) int { e, _ := r.pol.Lookup(code); return e.Receipt.Batch }})
	if err != nil {
		t.Fatal(err)
	}
	hooksRef.Store(hooks)
	acfg := api.Config{AdminToken: opsToken_, Store: r.store, Policy: r.pol, Gateway: g, Reminders: rem, Clock: r.clock.Now,
		ClusterStatus: func(context.Context, func(string) bool) *api.ClusterStatus { return r.cluster.Load() }, Webhooks: hooks}
	for _, o := range opts {
		o(&acfg)
	}
	r.api = api.New(acfg)
	r.hooks = hooks
	r.con, err = New(Config{API: r.api.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", r.api.Handler())
	mux.Handle("/admin/", r.api.Handler())
	mux.Handle("/", r.con.Handler())
	hs := httptest.NewServer(mux)
	r.url = hs.URL
	remCtx, remStop := context.WithCancel(context.Background())
	remDone := make(chan struct{})
	go func() { defer close(remDone); rem.Run(remCtx) }()
	t.Cleanup(func() {
		remStop()
		<-remDone
		hs.Close()
		r.api.Close()
		g.Stop()
		_ = r.store.Close()
		_ = r.sim.Close()
	})
	return r
}

// browserless is a cookie-keeping HTTP client for handler tests: it
// follows no redirects, so a test sees each answer.
type browserless struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (r *rig) client() *browserless {
	jar, _ := cookiejar.New(nil)
	return &browserless{t: r.t, base: r.url, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is one answer: status, body and the Location of a redirect.
type answer struct {
	Status   int
	Body     string
	Location string
	Header   http.Header
}

func (c *browserless) do(req *http.Request) answer {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return answer{Status: resp.StatusCode, Body: b.String(), Location: resp.Header.Get("Location"), Header: resp.Header}
}

// get opens a page.
func (c *browserless) get(path string) answer {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

// post submits a url-encoded form as a browser would (same origin).
func (c *browserless) post(path string, form url.Values) answer {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return c.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the forms of the page at path.
func (c *browserless) csrf(path string) string {
	c.t.Helper()
	a := c.get(path)
	m := csrfRE.FindStringSubmatch(a.Body)
	if m == nil {
		c.t.Fatalf("GET %s: no CSRF token in the page (status %d)", path, a.Status)
	}
	return m[1]
}

// submit fetches the page at page for its CSRF token and posts form to action.
func (c *browserless) submit(page, action string, form url.Values) answer {
	c.t.Helper()
	form.Set("csrf", c.csrf(page))
	return c.post(action, form)
}

// login logs the client in to the enterprise console as systemID.
func (c *browserless) login(systemID string) {
	c.t.Helper()
	a := c.submit("/login", "/login", url.Values{"system_id": {systemID}, "password": {password}})
	if a.Status != http.StatusSeeOther {
		c.t.Fatalf("login %s: status %d, want 303: %s", systemID, a.Status, a.Body)
	}
}

// opsLogin logs the client in to the account manager's desk.
func (c *browserless) opsLogin() {
	c.t.Helper()
	a := c.submit("/ops/login", "/ops/login", url.Values{"token": {opsToken_}})
	if a.Status != http.StatusSeeOther {
		c.t.Fatalf("ops login: status %d, want 303: %s", a.Status, a.Body)
	}
}

// wantPage fails unless a is a 200 page containing every want.
func (a answer) wantPage(t *testing.T, want ...string) {
	t.Helper()
	if a.Status != http.StatusOK {
		t.Fatalf("status %d, want 200; body:\n%s", a.Status, a.Body)
	}
	for _, w := range want {
		if !strings.Contains(a.Body, w) {
			t.Errorf("page lacks %q; body:\n%s", w, a.Body)
		}
	}
}

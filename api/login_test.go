package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// loginRig is the API over real sockets with one user, alice, whose
// passwords are hashed at cost (QXTD_LOGIN_FLOOD_COST, default 6: under
// -race bcrypt is ~8× slower; set 10, the default cost, without -race
// for the figures).
type loginRig struct {
	t       *testing.T
	url     string
	srv     *Server
	entered atomic.Int64 // login requests that reached the handler
}

func newLoginRig(t *testing.T) *loginRig {
	t.Helper()
	cost := 6
	if v, err := strconv.Atoi(os.Getenv("QXTD_LOGIN_FLOOD_COST")); err == nil {
		cost = v
	}
	db, err := queue.OpenDB(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pol, err := policy.New(db, policy.Config{BcryptCost: cost})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pol.Seed(context.Background(), policy.SeedData{Enterprises: []policy.SeedEnterprise{{
		Enterprise: policy.Enterprise{Code: "A", Name: "甲", Signature: "【甲公司】", Package: 1},
		Users:      []policy.NewUser{{Name: "alice", SystemID: "alice", Password: "secret1"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	r := &loginRig{t: t, srv: New(Config{Policy: pol})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := r.srv.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.entered.Add(1)
		h.ServeHTTP(w, req)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(l)
	}()
	t.Cleanup(func() {
		_ = hs.Close()
		<-done
	})
	r.url = "http://" + l.Addr().String() + "/v1/login"
	return r
}

// client is an HTTP client whose connections come from the loopback
// address src: a client at another address.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
}

// login posts a login and returns the status and how long it took.
func (r *loginRig) login(ctx context.Context, c *http.Client, sid, pw string) (int, time.Duration, error) {
	b, _ := json.Marshal(LoginRequest{SystemID: sid, Password: pw})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(b))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// flood runs n attackers, each at its own address (127.0.x.y), posting
// wrong passwords in a loop until the test ends; it returns once each
// has a login in the server and a counter of their answers by status.
// They are spread over networks of loginPrefixHolds addresses each
// (127.0.10.0/24 on), so that each has a login in progress as before
// there was a bound per network: the flood is n logins at once.
func (r *loginRig) flood(n int) *sync.Map {
	t := r.t
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	codes := &sync.Map{}
	before := r.entered.Load()
	for i := range n {
		src := fmt.Sprintf("127.0.%d.%d", 10+i/loginPrefixHolds, 1+i%loginPrefixHolds)
		c := clientFrom(src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				code, _, err := r.login(ctx, c, fmt.Sprintf("bot%d", i%7), "wrong1")
				if err != nil {
					continue
				}
				v, _ := codes.LoadOrStore(code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	// Each attacker has a request in the server: the flood is on.
	deadline := time.Now().Add(30 * time.Second)
	for r.entered.Load()-before < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d attackers reached the server", r.entered.Load()-before, n)
		}
		tm := time.NewTimer(10 * time.Millisecond) // no event to wait on: the requests are in the server
		<-tm.C
	}
	return codes
}

// TestLoginFlood: 200 addresses posting wrong passwords in a loop; a
// correct login from another address answers in under a second (each
// of three in a row), and so does one from an address the user logged
// in from before while an attacker floods from that same address.
//
// A machine whose cores other work holds (make test's other packages, a
// shared CI host) can stretch one measurement past the bound; a lockout
// (a correct login waiting behind the flood's queue) misses it every
// time, so a miss is measured again once, on a fresh rig, as the bind
// flood's test does.
func TestLoginFlood(t *testing.T) {
	for attempt := 1; ; attempt++ {
		var quiet, worst, nd time.Duration
		// A subtest: its rig and flood end with it, before another.
		t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) { quiet, worst, nd = loginUnderFlood(t) })
		if t.Failed() {
			return
		}
		// The bound is relative to one unloaded login (bcrypt is several
		// times slower under -race, and the machine is shared), with a
		// floor of the 1 s: without the gate a correct login
		// waits behind the flood's queue, 10 s and more.
		limit := max(time.Second, 8*quiet)
		if worst <= limit && nd <= limit {
			return
		}
		if attempt == 2 {
			t.Errorf("a correct login under the flood took %v (shared address: %v), want < %v (twice)", worst, nd, limit)
			return
		}
		t.Logf("a correct login under the flood took %v (shared address: %v), want < %v: measuring again", worst, nd, limit)
	}
}

// loginUnderFlood starts a rig, floods it, and times a correct login:
// unloaded (quiet), the worst of three under the flood from other
// addresses, and one from an address an attacker floods too (nd).
func loginUnderFlood(t *testing.T) (quiet, worst, nd time.Duration) {
	r := newLoginRig(t)
	real := clientFrom("127.0.0.1")
	ctx := context.Background()
	// Unloaded, for the figure.
	code, quiet, err := r.login(ctx, real, "alice", "secret1")
	if err != nil || code != http.StatusOK {
		t.Fatalf("login: %d %v", code, err)
	}
	// alice also logged in from 127.0.9.9 once, before it was flooded.
	nat := clientFrom("127.0.9.9")
	if code, _, err := r.login(ctx, nat, "alice", "secret1"); err != nil || code != http.StatusOK {
		t.Fatalf("login from 127.0.9.9: %d %v", code, err)
	}

	codes := r.flood(200)
	for i := range 3 {
		code, d, err := r.login(ctx, clientFrom(fmt.Sprintf("127.0.0.%d", 2+i)), "alice", "secret1")
		if err != nil || code != http.StatusOK {
			t.Fatalf("login under the flood: %d %v", code, err)
		}
		worst = max(worst, d)
	}
	// The attacker behind alice's NAT: its own wrong logins from 127.0.9.9.
	natFlood, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clientFrom("127.0.9.9")
			for natFlood.Err() == nil {
				_, _, _ = r.login(natFlood, c, "mallory", "wrong1")
			}
		}()
	}
	code, nd, err = r.login(ctx, nat, "alice", "secret1")
	cancel()
	wg.Wait()
	if err != nil || code != http.StatusOK {
		t.Fatalf("login from the flooded shared address: %d %v", code, err)
	}
	summary := map[int]int64{}
	codes.Range(func(k, v any) bool {
		summary[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})
	t.Logf("correct login: %v unloaded; under a 200-address flood %v (worst of 3), from a shared flooded address %v; attackers' answers %v; waiting now %d",
		quiet, worst, nd, summary, r.srv.user.logins.gate.queued())
	return quiet, worst, nd
}

// TestLoginGateHungUp: a login whose client hung up while it waited
// leaves the queue; the password check is not done for it.
func TestLoginGateHungUp(t *testing.T) {
	var g loginGate
	for range gateSlots {
		if err := g.wait(context.Background(), classNew); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 3)
	for range 3 {
		go func() { errc <- g.wait(ctx, classSuspect) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.queued() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want 3", g.queued())
		}
		tm := time.NewTimer(time.Millisecond)
		<-tm.C
	}
	cancel()
	for range 3 {
		if err := <-errc; err != context.Canceled {
			t.Fatalf("wait: %v", err)
		}
	}
	if g.queued() != 0 {
		t.Fatalf("%d still waiting after their clients hung up", g.queued())
	}
	// The slots pass on: a new login waits only for the checks running.
	for range gateSlots {
		g.done()
	}
	if err := g.wait(context.Background(), classNew); err != nil {
		t.Fatal(err)
	}
	g.done()
	if g.running != 0 {
		t.Fatalf("%d slots held", g.running)
	}
}

// TestLoginPrefixHolds: a network (here 127.0.5.0/24) has at most
// loginPrefixHolds logins in progress from its addresses; the next is
// answered 429 at once. Another network, and a user's known (address,
// system_id) pair in the same network, still get in line. The password
// checks are held (the gate's slots taken) so that the logins stay in
// progress until the test lets them go.
func TestLoginPrefixHolds(t *testing.T) {
	r := newLoginRig(t)
	ctx := context.Background()
	if code, _, err := r.login(ctx, clientFrom("127.0.5.200"), "alice", "secret1"); err != nil || code != http.StatusOK {
		t.Fatalf("alice's first login from 127.0.5.200: %d %v", code, err)
	}
	g := &r.srv.user.logins.gate
	for range gateSlots {
		if err := g.wait(ctx, classNew); err != nil {
			t.Fatal(err)
		}
	}
	type answer struct {
		who  string
		code int
		err  error
	}
	answers := make(chan answer, 8)
	inLine := 0
	start := func(src, sid, pw string) {
		inLine++
		go func() {
			code, _, err := r.login(ctx, clientFrom(src), sid, pw)
			answers <- answer{src + " " + sid, code, err}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for g.queued() != inLine {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d logins waiting, want %d", src, g.queued(), inLine)
			}
			tm := time.NewTimer(time.Millisecond) // no event to wait on: the login is in the server
			<-tm.C
		}
	}
	for i := range loginPrefixHolds {
		start(fmt.Sprintf("127.0.5.%d", 1+i), fmt.Sprintf("bot%d", i), "wrong1")
	}
	// The network is full: the next address of it is refused at once
	// (not put in line: the checks are held, it would wait).
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	code, _, err := r.login(quick, clientFrom("127.0.5.99"), "bot9", "wrong1")
	cancel()
	if err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("a login from a full network: %d %v, want 429 at once", code, err)
	}
	start("127.0.6.1", "bot10", "wrong1")    // another network
	start("127.0.5.200", "alice", "secret1") // a known pair in the full network
	for range gateSlots {
		g.done()
	}
	for range inLine {
		a := <-answers
		want := http.StatusUnauthorized
		if strings.HasSuffix(a.who, "alice") {
			want = http.StatusOK
		}
		if a.err != nil || a.code != want {
			t.Errorf("%s: %d %v, want %d", a.who, a.code, a.err, want)
		}
	}
	g.mu.Lock()
	held, nets := len(g.held), len(g.prefixes)
	g.mu.Unlock()
	if held != 0 || nets != 0 {
		t.Errorf("after the logins: %d keys and %d networks held, want none", held, nets)
	}
}

// TestLoginDelayByNetworkOverHTTP: over real connections, 13 addresses
// of one /24 each guessing once: the 13th's 401 comes after the network's
// delay (800 ms), not the first (100 ms); the first guess from another
// /24 comes after the first delay.
func TestLoginDelayByNetworkOverHTTP(t *testing.T) {
	r := newLoginRig(t)
	ctx := context.Background()
	var took time.Duration
	for i := range 13 {
		code, d, err := r.login(ctx, clientFrom(fmt.Sprintf("127.0.11.%d", i+1)), "alice", "wrong1")
		if err != nil || code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %v", i+1, code, err)
		}
		took = d
	}
	if took < 800*time.Millisecond {
		t.Fatalf("the 13th address of 127.0.11.0/24 answered after %v, want at least 800ms", took)
	}
	code, d, err := r.login(ctx, clientFrom("127.0.12.1"), "alice", "wrong1")
	if err != nil || code != http.StatusUnauthorized || d >= 800*time.Millisecond {
		t.Fatalf("another network's first guess: %d after %v (%v), want 401 before 800ms", code, d, err)
	}
	t.Logf("13th of a /24: %v; another /24's first: %v", took, d)
}

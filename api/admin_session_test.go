package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// operatorServer serves the admin API over the rig's daemon with the
// operator token and clock given.
func operatorServer(t *testing.T, r *userRig, token string, clock func() time.Time) (*Server, string) {
	t.Helper()
	s := New(Config{AdminToken: token, Store: r.store, Policy: r.pol, Gateway: r.gw, Clock: clock})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs.URL
}

// TestOperatorSession: the operator token is exchanged for a session that
// the admin API accepts like the token, ends 30 minutes after its last use
// (Config.Clock) or at logout; a wrong token waits out the login
// throttle's delay.
func TestOperatorSession(t *testing.T) {
	r := newUserRig(t)
	clock := &uClock{now: time.Now()}
	s, url := operatorServer(t, r, adminToken, clock.Now)
	adm := &userRig{t: t, url: url}

	start := time.Now()
	adm.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/admin/v1/login", "", OperatorLoginRequest{Token: "wrong"})
	if d := time.Since(start); d < loginDelayMin {
		t.Errorf("a wrong token answered after %v", d)
	}
	start = time.Now()
	adm.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/admin/v1/login", "", OperatorLoginRequest{Token: adminToken[:5]})
	if d := time.Since(start); d < 2*loginDelayMin {
		t.Errorf("a second wrong token answered after %v, want the doubled delay", d)
	}
	adm.wantError(http.StatusBadRequest, "invalid", "POST", "/admin/v1/login", "", map[string]string{"password": adminToken})

	c := &Client{Base: url}
	lr, err := c.OperatorLogin(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lr.Token, operatorPrefix) || lr.ExpiresIn != 1800 {
		t.Fatalf("login %+v", lr)
	}
	c.Token = lr.Token
	if _, err := c.Enterprises(); err != nil {
		t.Fatalf("with the session: %v", err)
	}
	// It acts as the operator: an operator-only change goes through.
	if _, err := c.CreateEnterprise(NewEnterprise{Code: "OPS1", Name: "运维测试", Package: 1, Signature: "【运维】"}); err != nil {
		t.Fatalf("create as the operator: %v", err)
	}
	// Each request slides the expiry; 30 minutes idle ends it.
	clock.Add(29 * time.Minute)
	if _, err := c.Status(); err != nil {
		t.Fatal(err)
	}
	clock.Add(29 * time.Minute)
	if _, err := c.Enterprises(); err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * time.Minute)
	_, err = c.Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")

	// Logout ends it at once; the configured token cannot log out.
	lr, _ = c.OperatorLogin(adminToken)
	c.Token = lr.Token
	if err := c.OperatorLogout(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
	c.Token = adminToken
	wantAPIError(t, c.OperatorLogout(), http.StatusBadRequest, "invalid")
	if _, err := c.Enterprises(); err != nil {
		t.Fatal(err)
	}
	if n := s.admin.sessions.len(); n != 0 {
		t.Errorf("%d operator sessions left", n)
	}

	// Operator sessions and console sessions do not cross.
	lr, _ = c.OperatorLogin(adminToken)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
	var ul LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "amy", Password: "secret1"}, &ul)
	adm.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/enterprises", ul.Token, nil)
	adm.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/admin/v1/enterprises", r.keys["amy"], nil)

	// Without an operator token every login is refused.
	_, off := operatorServer(t, r, "", nil)
	_, err = (&Client{Base: off}).OperatorLogin("")
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
}

// TestConsoleSessionClock: the console sessions follow Config.Clock.
func TestConsoleSessionClock(t *testing.T) {
	clock := &uClock{now: time.Now()}
	r := newBulkRig(t, rigOptions{clock: clock.Now})
	var lr LoginResponse
	r.must(http.StatusOK, "POST", "/v1/login", "", LoginRequest{SystemID: "alice", Password: "secret1"}, &lr)
	clock.Add(SessionIdle - time.Second)
	r.must(http.StatusOK, "GET", "/v1/me", lr.Token, nil, nil)
	clock.Add(SessionIdle)
	r.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/v1/me", lr.Token, nil)
}

// TestAdminStatus: the desk's summary reads the binds, the store and the
// refusal counters the metrics export.
func TestAdminStatus(t *testing.T) {
	r := newUserRig(t)
	_, url := operatorServer(t, r, adminToken, nil)
	c := &Client{Base: url, Token: adminToken}
	out := r.send(r.keys["alice"], SendRequest{To: []string{uNumA1, uNumPending}, Text: "状态"})
	if out.Accepted != 1 {
		t.Fatalf("%+v", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	var st *SystemStatus
	for {
		var err error
		if st, err = c.Status(); err != nil {
			t.Fatal(err)
		}
		if len(st.Upstreams) == 1 && st.Upstreams[0].BindsUp == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(st.Upstreams) != 1 || !st.StoreWritable {
		t.Fatalf("status %+v", st)
	}
	// The one message accepted is queued for sim, or gone already.
	if u := st.Upstreams[0]; u.Queued < 0 || u.Queued > 1 {
		t.Errorf("sim has %d queued, want 0 or 1", u.Queued)
	} else if u.Queued = 0; u != (UpstreamStatus{Name: "sim", BindsUp: 1, BindsConfigured: 1}) {
		t.Fatalf("status %+v", st)
	}
	if _, ok := st.Queue["accepted"]; !ok || st.Queue["waiting"] != 0 {
		t.Fatalf("queue %v", st.Queue)
	}
	total := 0
	for _, n := range st.Queue {
		total += n
	}
	if total == 0 {
		t.Fatalf("queue %v: the accepted message is not counted", st.Queue)
	}
	counts := map[string]uint64{}
	for _, rc := range st.Refusals {
		counts[rc.Reason] = rc.Count
	}
	if len(st.Refusals) != len(policy.Reasons()) || counts["not_whitelisted"] != 1 || counts["too_long"] != 0 {
		t.Fatalf("refusals %+v", st.Refusals)
	}
	// Operator only.
	_, err := (&Client{Base: url, Token: r.keys["amy"]}).Status()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
}

// TestAccountManagers: each account manager's own token (Config.Managers)
// is taken as the admin token is, directly and for a session, and what
// the manager decides is recorded under the manager's name, not
// "admin-api"; the admin token still acts as "admin-api", and another
// manager's token is not mistaken for the first's.
func TestAccountManagers(t *testing.T) {
	r := newUserRig(t)
	const zhang, li = "zhang-0123456789abcdef", "li-0123456789abcdef0"
	s := New(Config{AdminToken: adminToken, Store: r.store, Policy: r.pol, Gateway: r.gw,
		Managers: []Manager{{Name: "张经理", Token: zhang}, {Name: "李经理", Token: li}}})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })

	numbers := []string{"+8613712340001", "+8613712340002", "+8613712340003", "+8613712340004"}
	for _, n := range numbers { // pending: the enterprise asks
		r.must(http.StatusCreated, "POST", "/v1/whitelist", r.keys["alice"], WhitelistAdd{Number: n}, nil)
	}
	lr, err := (&Client{Base: hs.URL}).OperatorLogin(zhang)
	if err != nil || lr.Name != "张经理" {
		t.Fatalf("张经理's login: %+v, %v", lr, err)
	}
	for i, c := range []*Client{
		{Base: hs.URL, Token: lr.Token}, // 张经理's session
		{Base: hs.URL, Token: zhang},    // 张经理's token
		{Base: hs.URL, Token: li},       // 李经理's token
		{Base: hs.URL, Token: adminToken},
	} {
		if _, err := c.Approve("A", numbers[i:i+1], false); err != nil {
			t.Fatalf("approve %s: %v", numbers[i], err)
		}
	}
	page, err := (&Client{Base: hs.URL, Token: adminToken}).ListWhitelist("A", "approved", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]string{}
	for _, e := range page.Entries {
		by[e.Number] = e.DecidedBy
	}
	want := map[string]string{numbers[0]: "张经理", numbers[1]: "张经理", numbers[2]: "李经理", numbers[3]: OperatorName}
	for n, w := range want {
		if by[n] != w {
			t.Errorf("%s decided by %q, want %q (all: %v)", n, by[n], w, by)
		}
	}
	if lr, err := (&Client{Base: hs.URL}).OperatorLogin(adminToken); err != nil || lr.Name != OperatorName {
		t.Errorf("the admin token's login: %+v, %v", lr, err)
	}
	// A token one character short of a manager's is no one's.
	_, err = (&Client{Base: hs.URL, Token: zhang[:len(zhang)-1]}).Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
	// 张经理 taken out of the configuration: the session 张经理 opened
	// is no longer taken (in a cluster it would outlive the restart).
	gone := New(Config{AdminToken: adminToken, Store: r.store, Policy: r.pol, Gateway: r.gw,
		Managers: []Manager{{Name: "李经理", Token: li}}})
	hg := httptest.NewServer(gone.Handler())
	t.Cleanup(func() { hg.Close(); gone.Close() })
	ls, err := (&Client{Base: hg.URL}).OperatorLogin(li)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&Client{Base: hg.URL, Token: ls.Token}).Enterprises(); err != nil {
		t.Fatalf("李经理's session: %v", err)
	}
	zs, err := gone.admin.sessions.create("张经理", "") // as a shared session store would still hold it
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Client{Base: hg.URL, Token: zs}).Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")

	// Without an admin token the admin API is off, the managers' tokens too.
	off := New(Config{Store: r.store, Policy: r.pol, Gateway: r.gw, Managers: []Manager{{Name: "张经理", Token: zhang}}})
	ho := httptest.NewServer(off.Handler())
	t.Cleanup(func() { ho.Close(); off.Close() })
	_, err = (&Client{Base: ho.URL, Token: zhang}).Enterprises()
	wantAPIError(t, err, http.StatusUnauthorized, "unauthorized")
}

// TestOperatorSessionsBoundToToken: an operator session holds only while
// the configuration gives its operator the token it was opened with. In
// a cluster the sessions live in etcd and outlive a node's restart: a
// node started with another admin token, or a manager's token rotated,
// no longer takes the sessions opened with the old one (a leaked token's
// sessions end with it); a node whose tokens did not change takes them
// still. What the store keeps tells nothing of the configured token, and
// a session without a binding (an earlier release's) is refused.
func TestOperatorSessionsBoundToToken(t *testing.T) {
	r := newUserRig(t)
	shared := &mapSessions{}
	const (
		admin2 = "another-admin-token-0123456789"
		zhang1 = "zhang-0123456789abcdef"
		zhang2 = "zhang-rotated-0123456789"
	)
	node := func(adminTok, zhangTok string) string {
		t.Helper()
		s := New(Config{AdminToken: adminTok, Store: r.store, Policy: r.pol, Gateway: r.gw, Sessions: shared,
			Managers: []Manager{{Name: "张经理", Token: zhangTok}, {Name: "李经理", Token: "li-0123456789abcdef0"}}})
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(func() { hs.Close(); s.Close() })
		return hs.URL
	}
	first := node(adminToken, zhang1)
	login := func(tok string) string {
		t.Helper()
		lr, err := (&Client{Base: first}).OperatorLogin(tok)
		if err != nil {
			t.Fatal(err)
		}
		return lr.Token
	}
	adminSession, zhangSession := login(adminToken), login(zhang1)
	liSession := login("li-0123456789abcdef0")
	works := func(base, session string) bool {
		_, err := (&Client{Base: base, Token: session}).OperatorSession()
		return err == nil
	}
	same := node(adminToken, zhang1) // restarted, nothing changed
	for name, se := range map[string]string{"the admin token's": adminSession, "张经理's": zhangSession, "李经理's": liSession} {
		if !works(first, se) || !works(same, se) {
			t.Errorf("%s session refused by a node whose tokens did not change", name)
		}
	}
	changed := node(admin2, zhang2) // the admin token and 张经理's changed
	for name, want := range map[string]bool{"the admin token's": false, "张经理's": false, "李经理's": true} {
		se := map[string]string{"the admin token's": adminSession, "张经理's": zhangSession, "李经理's": liSession}[name]
		if got := works(changed, se); got != want {
			t.Errorf("a node started with the new tokens takes %s old session: %v, want %v", name, got, want)
		}
	}
	// What the store keeps of the sessions: no token, no hash of one.
	shared.mu.Lock()
	for _, v := range shared.m {
		for _, tok := range []string{adminToken, zhang1} {
			sum := sha256.Sum256([]byte(tok))
			if strings.Contains(v[2], tok) || strings.Contains(v[2], hex.EncodeToString(sum[:8])) {
				t.Errorf("a session's record %q shows the token %q", v, tok)
			}
		}
		if !strings.HasPrefix(v[2], "t1.") {
			t.Errorf("an operator session's record %q has no binding", v)
		}
	}
	shared.mu.Unlock()
	// An earlier release's session: no binding.
	old, err := (&sessionStore{shared: shared, kind: SessionOperator, prefix: operatorPrefix}).create(OperatorName, "")
	if err != nil {
		t.Fatal(err)
	}
	if works(first, old) {
		t.Error("a session without a binding is taken")
	}
}

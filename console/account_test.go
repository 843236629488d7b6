package console

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// sentSMS is one SMS the API's password notifier sent.
type sentSMS struct{ mobile, text string }

// newPasswordRE finds the new password in the reset SMS (api.resetText).
var newPasswordRE = regexp.MustCompile(`新密码：([^。]+)。`)

// notifyThroughGateway gives the API a password notifier wired as the
// daemon wires it (cmd/qxtd: the SMS goes out through the gateway as
// qxtd's system account), and reports every SMS it sent on the channel.
func notifyThroughGateway(r *rig) <-chan sentSMS {
	ch := make(chan sentSMS, 16)
	acct := &gateway.Account{SystemID: gateway.SystemAccount, Enterprise: "A"}
	r.api.SetPasswordNotifier(func(ctx context.Context, mobile, text string) error {
		res, err := r.gw.Send(ctx, acct, gateway.SendRequest{Ingress: "http", Dests: []string{mobile}, Text: text})
		if err == nil {
			err = res[0].Err
		}
		ch <- sentSMS{mobile, text}
		return err
	})
	return ch
}

// setMobile gives a fixture user a registered mobile (the seed has none).
func setMobile(t *testing.T, r *rig, systemID, mobile string) {
	t.Helper()
	if _, err := r.pol.UpdateUser(policy.OperatorActor("test"), systemID, policy.UserUpdate{Mobile: &mobile}); err != nil {
		t.Fatal(err)
	}
}

func waitSMS(t *testing.T, ch <-chan sentSMS) sentSMS {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no SMS was sent")
		return sentSMS{}
	}
}

// loginAs logs a fresh client in with pw; it answers the login's status.
func loginAs(r *rig, systemID, pw string) int {
	c := r.client()
	return c.submit("/login", "/login", url.Values{"system_id": {systemID}, "password": {pw}}).Status
}

// wantFieldError fails unless the form field's error (the ferr right
// after the field) says want.
func wantFieldError(t *testing.T, a answer, field, want string) {
	t.Helper()
	i := strings.Index(a.Body, `name="`+field+`"`)
	if i < 0 {
		t.Fatalf("no field %s in the page:\n%s", field, a.Body)
	}
	rest := a.Body[i:]
	j := strings.Index(rest, `class="ferr"`)
	if j < 0 || strings.Contains(rest[:j], "<label") && !strings.HasPrefix(field, "user:") {
		t.Fatalf("no error next to %s; body:\n%s", field, a.Body)
	}
	end := strings.Index(rest[j:], "</span>")
	if got := rest[j : j+end]; !strings.Contains(got, want) {
		t.Errorf("error next to %s: %q, want %q", field, got, want)
	}
}

func TestForgotPassword(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.get("/password/forgot").wantPage(t, "忘记密码", "集团编码", "用户名", "注册手机", `name="csrf"`, "我要取回密码")
	if a := c.post("/password/forgot", url.Values{"group_code": {"A"}, "user_name": {"甲用户"}, "mobile": {numA1}}); a.Status != http.StatusForbidden {
		t.Errorf("reset without CSRF token: %d, want 403", a.Status)
	}
	form := func(name, mobile string) url.Values {
		return url.Values{"group_code": {"A"}, "user_name": {name}, "mobile": {mobile}}
	}

	// No SMS notifier: the API's 503, in Chinese.
	a := c.submit("/password/forgot", "/password/forgot", form("甲用户", numA1))
	if a.Status != http.StatusServiceUnavailable || !strings.Contains(a.Body, "无法在线重置密码") || !strings.Contains(a.Body, `value="甲用户"`) {
		t.Fatalf("without a notifier: %d, want 503 in Chinese with the form kept; body:\n%s", a.Status, a.Body)
	}

	sms := notifyThroughGateway(r)
	setMobile(t, r, "alice", numA1)
	match := c.submit("/password/forgot", "/password/forgot", form("甲用户", numA1))
	if match.Status != http.StatusSeeOther || match.Location != "/login" {
		t.Fatalf("reset: %d → %q, want 303 → /login", match.Status, match.Location)
	}
	c.get("/login").wantPage(t, forgotNotice)
	m := waitSMS(t, sms)
	pw := newPasswordRE.FindStringSubmatch(m.text)
	if pw == nil || !strings.HasSuffix(m.mobile, numA1) {
		t.Fatalf("SMS %+v: want the new password to alice's mobile", m)
	}
	if code := loginAs(r, "alice", pw[1]); code != http.StatusSeeOther {
		t.Errorf("login with the new password: %d", code)
	}
	if code := loginAs(r, "alice", password); code != http.StatusUnauthorized {
		t.Errorf("login with the old password: %d, want 401", code)
	}

	// Details that do not match get the very same answer.
	for _, f := range []url.Values{form("甲用户", numA2), form("无此人", numA1)} {
		a := c.submit("/password/forgot", "/password/forgot", f)
		if a.Status != match.Status || a.Location != match.Location {
			t.Errorf("mismatch %v: %d → %q, want the answer of a match", f, a.Status, a.Location)
		}
		c.get("/login").wantPage(t, forgotNotice)
	}

	// The API's throttle (per address: a burst of 5), in Chinese.
	var last answer
	for range 5 {
		last = c.submit("/password/forgot", "/password/forgot", form("甲二", numA3))
		if last.Status == http.StatusTooManyRequests {
			break
		}
	}
	if last.Status != http.StatusTooManyRequests || !strings.Contains(last.Body, "操作太频繁，请稍后再试") {
		t.Fatalf("throttled reset: %d, want 429 in Chinese; body:\n%s", last.Status, last.Body)
	}
}

func TestChangePassword(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	c.get("/password").wantPage(t, "修改密码", `name="old_password"`, `name="new_password"`, `name="new_password2"`)
	form := func(old, n1, n2 string) url.Values {
		return url.Values{"old_password": {old}, "new_password": {n1}, "new_password2": {n2}}
	}
	if a := c.post("/password", form(password, "new12345", "new12345")); a.Status != http.StatusForbidden {
		t.Errorf("change without CSRF token: %d, want 403", a.Status)
	}
	a := c.submit("/password", "/password", form(password, "new12345", "new12346"))
	if a.Status != http.StatusUnprocessableEntity {
		t.Errorf("typed differently: %d, want 422", a.Status)
	}
	wantFieldError(t, a, "new_password2", "两次输入的新密码不一致")
	a = c.submit("/password", "/password", form("wrong1", "new12345", "new12345"))
	if a.Status != http.StatusForbidden {
		t.Errorf("wrong old password: %d, want the API's 403", a.Status)
	}
	wantFieldError(t, a, "old_password", "原密码错误")
	a = c.submit("/password", "/password", form(password, "new123456", "new123456"))
	if a.Status != http.StatusBadRequest {
		t.Errorf("too long: %d, want the API's 400", a.Status)
	}
	wantFieldError(t, a, "new_password", "6–8 位")
	if code := loginAs(r, "alice", password); code != http.StatusSeeOther {
		t.Fatalf("refused changes changed the password: login %d", code)
	}

	other := r.client()
	other.login("alice")
	a = c.submit("/password", "/password", form(password, "new12345", "new12345"))
	if a.Status != http.StatusSeeOther || a.Location != "/password" {
		t.Fatalf("change: %d → %q; body:\n%s", a.Status, a.Location, a.Body)
	}
	c.get("/password").wantPage(t, "密码已修改")
	if code := loginAs(r, "alice", "new12345"); code != http.StatusSeeOther {
		t.Errorf("login with the new password: %d", code)
	}
	if code := loginAs(r, "alice", password); code != http.StatusUnauthorized {
		t.Errorf("login with the old password: %d, want 401", code)
	}
	// The API ended alice's other session.
	if a := other.get("/password"); a.Status != http.StatusSeeOther || !strings.HasPrefix(a.Location, "/login") {
		t.Errorf("the other browser after the change: %d → %q, want the login page", a.Status, a.Location)
	}
}

func TestUsersPage(t *testing.T) {
	r := newRig(t)
	amy := r.client()
	amy.login("amy")
	amy.get("/enterprise/users").wantPage(t, "用户管理", "甲用户", "alice", "al2", "甲管理员", "管理员", "添加用户", `data-label="用户签名"`,
		`<th>长短信回复</th>`, `<option value="payload" selected>整条 (message_payload)</option>`)

	// alice is not an admin: no menu, and the API's refusal as a page.
	alice := r.client()
	alice.login("alice")
	if a := alice.get("/password"); strings.Contains(a.Body, "企业管理") || strings.Contains(a.Body, `href="/enterprise/users"`) {
		t.Errorf("alice's menu shows 企业管理")
	}
	if a := amy.get("/password"); !strings.Contains(a.Body, `href="/enterprise/users"`) {
		t.Errorf("amy's menu lacks 用户管理")
	}
	if a := alice.get("/enterprise/users"); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "企业管理仅限企业管理员") {
		t.Errorf("alice opens 用户管理: %d, want 403 in Chinese; body:\n%s", a.Status, a.Body)
	}
	if a := alice.submit("/password", "/enterprise/users/al2/update", url.Values{"disabled": {"true"}}); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "企业管理仅限企业管理员") {
		t.Errorf("alice disables al2: %d, want 403", a.Status)
	}

	// Adding a user: CSRF, refusals next to their fields, success.
	add := url.Values{"name": {"甲三"}, "system_id": {"al3"}, "password": {"pass123"}, "mobile": {numA3}, "role": {"user"}}
	if a := amy.post("/enterprise/users", add); a.Status != http.StatusForbidden {
		t.Errorf("add without CSRF token: %d, want 403", a.Status)
	}
	bad := url.Values{"name": {"甲三"}, "system_id": {"al3"}, "password": {"x"}, "role": {"user"}}
	a := amy.submit("/enterprise/users", "/enterprise/users", bad)
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `value="al3"`) {
		t.Errorf("short password: %d, want 400 with the form kept", a.Status)
	}
	wantFieldError(t, a, "password", "6–8 位")
	a = amy.submit("/enterprise/users", "/enterprise/users", url.Values{"name": {"甲三"}, "system_id": {"al3"}, "password": {"pass123"}, "mobile": {"12"}})
	if a.Status != http.StatusBadRequest {
		t.Errorf("bad mobile: %d, want 400", a.Status)
	}
	wantFieldError(t, a, "mobile", "输入有误（12 不是有效的中国大陆手机号码）")
	// The rule of a field in Chinese (policy.FieldError), not in English.
	a = amy.submit("/enterprise/users", "/enterprise/users", url.Values{"name": {"甲三"}, "system_id": {"al 3"}, "password": {"pass123"}})
	wantFieldError(t, a, "system_id", "输入有误（登录账号只能用字母、数字或英文符号，不能有空格）")
	if strings.Contains(a.Body, "printable ASCII") {
		t.Error("a system_id with a space: the English rule shown")
	}
	dup := url.Values{"name": {"重复"}, "system_id": {"alice"}, "password": {"pass123"}, "role": {"user"}}
	a = amy.submit("/enterprise/users", "/enterprise/users", dup)
	if a.Status != http.StatusConflict || !strings.Contains(a.Body, "已存在") {
		t.Errorf("existing system_id: %d, want 409 已存在; body:\n%s", a.Status, a.Body)
	}
	wantFieldError(t, a, "system_id", "已存在")
	// 长短信回复: a value not of the select is the API's refusal next to
	// it, the choice kept; then al3 is added with 分段 UDH 8位.
	add.Set("long_replies", "udh7")
	a = amy.submit("/enterprise/users", "/enterprise/users", add)
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `value="al3"`) {
		t.Errorf("long_replies udh7: %d, want 400 with the form kept", a.Status)
	}
	wantFieldError(t, answer{Body: a.Body[strings.Index(a.Body, `id="user-add"`):]}, "long_replies", "输入有误（长短信回复须为 payload（整条 message_payload）、udh8（分段 UDH 8位）")
	add.Set("long_replies", "udh8")
	a = amy.submit("/enterprise/users", "/enterprise/users", add)
	if a.Status != http.StatusSeeOther || a.Location != "/enterprise/users" {
		t.Fatalf("add: %d → %q; body:\n%s", a.Status, a.Location, a.Body)
	}
	pg := amy.get("/enterprise/users")
	pg.wantPage(t, "已添加用户 甲三（al3）", `id="user-al3"`)
	if row := userRow(t, pg.Body, "al3"); !strings.Contains(row, `<option value="udh8" selected>分段 UDH 8位</option>`) || strings.Count(row, "selected") != 1 {
		t.Errorf("al3's row does not show 分段 UDH 8位 alone selected:\n%s", row)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "al3"); err != nil || u.LongReplies != "udh8" {
		t.Errorf("al3 as stored: %+v %v", u, err)
	}
	if code := loginAs(r, "al3", "pass123"); code != http.StatusSeeOther {
		t.Errorf("the new user logs in: %d", code)
	}

	// The switches.
	if a := amy.post("/enterprise/users/al3/update", url.Values{"show_signature": {"true"}}); a.Status != http.StatusForbidden {
		t.Errorf("switch without CSRF token: %d, want 403", a.Status)
	}
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/update", url.Values{"show_signature": {"true"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("user signature on: %d %s", a.Status, a.Body)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "al3"); err != nil || !u.ShowSignature {
		t.Errorf("al3 after the switch: %+v %v", u, err)
	}
	amy.get("/enterprise/users").wantPage(t, "用户 al3 的用户签名已设为显示")
	// 长短信回复 from al3's row: 分段 UDH 16位 from its next reply; udh7 refused on the row.
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/update", url.Values{"long_replies": {"udh16"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("long_replies udh16: %d %s", a.Status, a.Body)
	}
	pg = amy.get("/enterprise/users")
	pg.wantPage(t, "用户 al3 的长短信回复已设为分段 UDH 16位，下一条回复即生效。")
	if row := userRow(t, pg.Body, "al3"); !strings.Contains(row, `<option value="udh16" selected>分段 UDH 16位</option>`) {
		t.Errorf("al3's row after the change:\n%s", row)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "al3"); err != nil || u.LongReplies != "udh16" || !u.ShowSignature {
		t.Errorf("al3 after 长短信回复: %+v %v", u, err)
	}
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/update", url.Values{"long_replies": {"udh7"}})
	if a.Status != http.StatusBadRequest {
		t.Errorf("long_replies udh7 on the row: %d, want the API's 400", a.Status)
	}
	if row := userRow(t, a.Body, "al3"); !strings.Contains(row, `class="ferr" role="alert">输入有误`) || !strings.Contains(row, "long_replies") {
		t.Errorf("no refusal of udh7 on al3's row:\n%s", row)
	}
	if u, _ := r.pol.User(policy.OperatorActor("test"), "al3"); u.LongReplies != "udh16" {
		t.Errorf("a refused change changed al3: %q", u.LongReplies)
	}
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/update", url.Values{"disabled": {"true"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("disable: %d %s", a.Status, a.Body)
	}
	amy.get("/enterprise/users").wantPage(t, "已停用用户 al3", "已停用")
	if code := loginAs(r, "al3", "pass123"); code == http.StatusSeeOther {
		t.Errorf("a disabled user logs in")
	}
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/update", url.Values{"disabled": {"false"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("enable: %d %s", a.Status, a.Body)
	}
	// The API's own rule: an admin cannot disable itself; shown on its row.
	a = amy.submit("/enterprise/users", "/enterprise/users/amy/update", url.Values{"disabled": {"true"}})
	if a.Status != http.StatusBadRequest {
		t.Errorf("amy disables amy: %d, want the API's 400", a.Status)
	}
	if i := strings.Index(a.Body, `id="user-amy"`); i < 0 || !strings.Contains(a.Body[i:], `class="ferr" role="alert">输入有误`) {
		t.Errorf("no refusal on amy's row; body:\n%s", a.Body)
	}

	// Resetting a user's password: shown once, on this answer.
	if a := amy.post("/enterprise/users/al3/password-reset", url.Values{}); a.Status != http.StatusForbidden {
		t.Errorf("reset without CSRF token: %d, want 403", a.Status)
	}
	a = amy.submit("/enterprise/users", "/enterprise/users/al3/password-reset", url.Values{})
	a.wantPage(t, "用户 al3 的密码已重置")
	m := regexp.MustCompile(`<code class="secret">([^<]+)</code>`).FindStringSubmatch(a.Body)
	if m == nil {
		t.Fatalf("no new password on the page:\n%s", a.Body)
	}
	if code := loginAs(r, "al3", m[1]); code != http.StatusSeeOther {
		t.Errorf("login with the reset password: %d", code)
	}
	if strings.Contains(strings.Join(a.Header.Values("Set-Cookie"), ";"), m[1]) {
		t.Errorf("the new password is in a cookie")
	}

	// Isolation: bob (admin of B) cannot touch A's users — the API's not found.
	bob := r.client()
	bob.login("bob")
	bob.get("/enterprise/users").wantPage(t, "乙管理员")
	if a := bob.get("/enterprise/users"); strings.Contains(a.Body, "alice") {
		t.Errorf("bob sees A's users")
	}
	for _, action := range []string{"/enterprise/users/alice/update", "/enterprise/users/alice/password-reset"} {
		a := bob.submit("/enterprise/users", action, url.Values{"disabled": {"true"}, "long_replies": {"sar"}})
		if a.Status != http.StatusNotFound || !strings.Contains(a.Body, "未找到") {
			t.Errorf("bob %s: %d, want the 404 page", action, a.Status)
		}
	}
	if code := loginAs(r, "alice", password); code != http.StatusSeeOther {
		t.Errorf("alice after bob's attempts: login %d", code)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "alice"); err != nil || u.LongReplies != "" {
		t.Errorf("alice's long_replies after bob's attempts: %+v %v", u, err)
	}
}

func TestSignaturePage(t *testing.T) {
	r := newRig(t)
	amy := r.client()
	amy.login("amy")
	amy.get("/enterprise/signature").wantPage(t, "短信签名", "【甲公司】", "还没有签名修改申请", "用户签名", `id="sig-alice"`)

	alice := r.client()
	alice.login("alice")
	if a := alice.get("/enterprise/signature"); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "企业管理仅限企业管理员") {
		t.Errorf("alice opens 短信签名: %d, want 403", a.Status)
	}
	if a := alice.submit("/password", "/enterprise/signature", url.Values{"signature": {"【甲乙】"}}); a.Status != http.StatusForbidden {
		t.Errorf("alice requests a signature: %d, want 403", a.Status)
	}

	if a := amy.post("/enterprise/signature", url.Values{"signature": {"【甲公司新】"}}); a.Status != http.StatusForbidden {
		t.Errorf("request without CSRF token: %d, want 403", a.Status)
	}
	a := amy.submit("/enterprise/signature", "/enterprise/signature", url.Values{"signature": {"甲公司新"}})
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `value="甲公司新"`) {
		t.Errorf("signature without brackets: %d, want 400 with the form kept; body:\n%s", a.Status, a.Body)
	}
	wantFieldError(t, a, "signature", "输入有误")
	a = amy.submit("/enterprise/signature", "/enterprise/signature", url.Values{"signature": {"【甲公司新】"}})
	if a.Status != http.StatusSeeOther || a.Location != "/enterprise/signature" {
		t.Fatalf("request: %d → %q; body:\n%s", a.Status, a.Location, a.Body)
	}
	a = amy.get("/enterprise/signature")
	a.wantPage(t, "客户经理审批通过后生效", "【甲公司新】", "待审批")
	if !strings.Contains(a.Body, `id="current-signature">【甲公司】`) {
		t.Errorf("the signature in force changed before approval")
	}

	// The account manager rejects it: the state and the reason.
	var list api.SignatureRequestList
	ops := &api.Client{Base: r.url, Token: opsToken_}
	if err := ops.DoContext(context.Background(), http.MethodGet, "/admin/v1/signature-requests", nil, &list); err != nil || len(list.Requests) == 0 {
		t.Fatalf("signature requests: %v %+v", err, list)
	}
	if err := ops.DoContext(context.Background(), http.MethodPost, "/admin/v1/signature-requests/"+list.Requests[0].ID+"/reject",
		api.SignatureDecision{Reason: "签名与营业执照不符"}, nil); err != nil {
		t.Fatal(err)
	}
	amy.get("/enterprise/signature").wantPage(t, "已拒绝", "签名与营业执照不符")

	// The user-signature switch from this page comes back here.
	a = amy.submit("/enterprise/signature", "/enterprise/users/alice/update", url.Values{"show_signature": {"true"}, "back": {"/enterprise/signature"}})
	if a.Status != http.StatusSeeOther || a.Location != "/enterprise/signature" {
		t.Fatalf("switch from 短信签名: %d → %q", a.Status, a.Location)
	}
	// back is one of two pages, nothing else.
	a = amy.submit("/enterprise/signature", "/enterprise/users/alice/update", url.Values{"show_signature": {"false"}, "back": {"//evil.example/"}})
	if a.Location != "/enterprise/users" {
		t.Errorf("back=//evil.example/: → %q", a.Location)
	}

	// Isolation: bob sees B's signature, not A's requests.
	bob := r.client()
	bob.login("bob")
	a = bob.get("/enterprise/signature")
	a.wantPage(t, "【乙公司】", "还没有签名修改申请")
	if strings.Contains(a.Body, "甲公司") {
		t.Errorf("bob sees A's signature")
	}
}

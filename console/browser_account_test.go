package console

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/webhook"
)

// A person who forgot the password asks for a new one with the FAQ's
// three details, reads the neutral notice, receives the SMS (it reaches
// the SMSC simulator) and logs in with the new password.
func TestBrowserForgotPassword(t *testing.T) {
	r := newRig(t)
	sms := notifyThroughGateway(r)
	setMobile(t, r, "alice", numA1)
	b := newBrowser(t)
	b.run("open the login page", chromedp.Navigate(r.url+"/login"))
	b.run("follow 忘记密码", chromedp.Click(chromedp.CSS(`a[href="/password/forgot"]`)))
	b.waitText("h1", "忘记密码", false)
	b.shot("password_forgot")
	b.run("fill in the details",
		chromedp.SendKeys(chromedp.CSS(`input[name=group_code]`), "A"),
		chromedp.SendKeys(chromedp.CSS(`input[name=user_name]`), "甲用户"),
		chromedp.SendKeys(chromedp.CSS(`input[name=mobile]`), numA1),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
	)
	b.waitText(".notice", "新密码将以短信发送到注册手机", false)
	b.waitText("h1", "用户登录", false)

	m := waitSMS(t, sms)
	pw := newPasswordRE.FindStringSubmatch(m.text)
	if pw == nil {
		t.Fatalf("SMS %q carries no password", m.text)
	}
	// The SMS went out through the gateway to the registered mobile.
	deadline := time.Now().Add(10 * time.Second)
	for !simGot(r, numA1) {
		if time.Now().After(deadline) {
			t.Fatal("the SMSC simulator never received the reset SMS")
		}
		b.run("wait for the SMSC", chromedp.Sleep(50*time.Millisecond)) // polling the simulator
	}
	b.run("log in with the new password",
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), pw[1]),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.side`)),
	)
}

// simGot reports whether the simulator received a message to mobile.
func simGot(r *rig, mobile string) bool {
	for _, m := range r.sim.Received() {
		if strings.HasSuffix(m.Dest, mobile) {
			return true
		}
	}
	return false
}

// alice changes her password: a wrong old password is refused next to
// its field; then the change, logging out, and in with the new one.
func TestBrowserChangePassword(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("open 修改密码", chromedp.Click(chromedp.CSS(`nav.side a[href="/password"]`)))
	b.waitText("h1", "修改密码", false)
	fill := func(old, pw string) {
		b.run("change the password",
			chromedp.SendKeys(chromedp.CSS(`input[name=old_password]`), old),
			chromedp.SendKeys(chromedp.CSS(`input[name=new_password]`), pw),
			chromedp.SendKeys(chromedp.CSS(`input[name=new_password2]`), pw),
			chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
		)
	}
	fill("wrong1", "new12345")
	b.waitText(".ferr", "原密码错误", false)
	b.shot("password")
	fill(password, "new12345")
	b.waitText(".notice", "密码已修改", false)
	b.run("log out", chromedp.Click(chromedp.CSS(`header form button`)))
	b.waitText(".notice", "您已安全退出", false)
	b.run("log in with the new password",
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "new12345"),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.side`)),
	)
}

// amy (admin) adds a user, turns its user signature on, and asks for a
// new enterprise signature, which waits for the account manager.
func TestBrowserEnterpriseAdmin(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "amy")
	if nav := b.text("nav.side"); !strings.Contains(nav, "企业管理") {
		t.Fatalf("amy's menu lacks 企业管理: %q", nav)
	}
	b.run("open 用户管理", chromedp.Click(chromedp.CSS(`nav.side a[href="/enterprise/users"]`)))
	b.waitText("h1", "用户管理", false)
	b.run("add a user",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "甲三"),
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "al3"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "pass123"),
		chromedp.SendKeys(chromedp.CSS(`input[name=mobile]`), numA3),
		chromedp.SetValue(chromedp.CSS(`#user-add select[name=long_replies]`), "sar"),
		chromedp.Click(chromedp.CSS(`main section.card form button[type=submit]`)),
	)
	b.waitText(".notice", "已添加用户 甲三（al3）", false)
	if s := b.text(`#user-al3 td[data-label="用户签名"]`); s != "不显示" {
		t.Errorf("al3's user signature: %q, want 不显示", s)
	}
	const lrSel = `#user-al3 td[data-label="长短信回复"] select`
	if v, s := b.selected(lrSel); v != "sar" || s != "分段 SAR" {
		t.Errorf("al3's 长短信回复: %q %q, want sar 分段 SAR", v, s)
	}
	b.run("al3's 长短信回复: 分段 UDH 16位",
		chromedp.SetValue(chromedp.CSS(lrSel), "udh16"),
		chromedp.Click(chromedp.CSS(`#user-al3 td[data-label="长短信回复"] button`)),
	)
	b.waitText(".notice", "长短信回复已设为分段 UDH 16位", false)
	if v, s := b.selected(lrSel); v != "udh16" || s != "分段 UDH 16位" {
		t.Errorf("al3's 长短信回复: %q %q, want udh16 分段 UDH 16位", v, s)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "al3"); err != nil || u.LongReplies != "udh16" {
		t.Errorf("al3 as stored: %+v %v", u, err)
	}
	b.run("show al3's user signature", chromedp.Click(chromedp.CSS(`#user-al3 form:nth-of-type(2) button`)))
	b.waitText(".notice", "用户签名已设为显示", false)
	if s := b.text(`#user-al3 td[data-label="用户签名"]`); s != "显示" {
		t.Errorf("al3's user signature: %q, want 显示", s)
	}
	b.shot("users")
	// A login with a space: the rule in Chinese beside its field.
	b.run("add a user with a space in its login",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "甲四"),
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "al 4"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "pass123"),
		chromedp.Click(chromedp.CSS(`main section.card form button[type=submit]`)),
	)
	b.waitText(".ferr", "输入有误（登录账号只能用字母、数字或英文符号，不能有空格）", false)
	b.shot("users-invalid")
	b.mobile()
	b.run("reload", chromedp.Reload())
	b.waitText("h1", "用户管理", false)
	b.shot("users_mobile")
	b.desktop()

	b.run("open 短信签名", chromedp.Click(chromedp.CSS(`nav.side a[href="/enterprise/signature"]`)))
	b.waitText("h1", "短信签名", false)
	if s := b.text("#current-signature"); s != "【甲公司】" {
		t.Errorf("current signature %q", s)
	}
	b.run("ask for a new signature",
		chromedp.SendKeys(chromedp.CSS(`input[name=signature]`), "【甲公司新】"),
		chromedp.Click(chromedp.CSS(`form[action="/enterprise/signature"] button[type=submit]`)),
	)
	b.waitText(".notice", "客户经理审批通过后生效", false)
	b.waitText("#requests", "待审批", false)
	if s := b.text("#requests"); !strings.Contains(s, "【甲公司新】") {
		t.Errorf("requests: %q", s)
	}
	b.shot("signature")
}

// alice is not an admin: no 企业管理 in her menu, and opening it
// directly shows the API's refusal as a page.
func TestBrowserEnterpriseNotAdmin(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	if nav := b.text("nav.side"); strings.Contains(nav, "企业管理") || strings.Contains(nav, "用户管理") {
		t.Errorf("alice's menu shows 企业管理: %q", nav)
	}
	b.run("open 用户管理 directly", chromedp.Navigate(r.url+"/enterprise/users"))
	b.waitText(".error", "企业管理仅限企业管理员", false)
	b.waitText("h1", "出错了", false)
	b.shot("users_forbidden")
}

// amy opens 回执推送 from her menu, sets the URL, the replies' URL and a batch, generates a
// secret (shown once) and sends a test receipt, which reaches her
// endpoint signed with it; the page shows the endpoint's answer.
func TestBrowserReceipts(t *testing.T) {
	r := newRig(t)
	ep, posts := receiptEndpoint(t)
	b := newBrowser(t)
	b.login(r.url, "amy")
	b.run("open 回执推送", chromedp.Click(chromedp.CSS(`nav.side a[href="/enterprise/receipts"]`)))
	b.waitText("h1", "回执推送", false)
	b.run("set the URL and the batch",
		chromedp.SendKeys(chromedp.CSS(`input[name=receipt_url]`), ep.URL+"/sms/receipts"),
		chromedp.SendKeys(chromedp.CSS(`input[name=reply_url]`), ep.URL+"/sms/replies"),
		chromedp.SetValue(chromedp.CSS(`input[name=receipt_batch]`), "50"),
		chromedp.Click(chromedp.CSS(`#receipt-form button[type=submit]`)),
	)
	b.waitText(".notice", "回执推送设置已保存", false)
	b.waitText("#receipt-url", ep.URL+"/sms/receipts", false)
	b.waitText("#receipt-batch", "最多 50 条", false)
	b.waitText("#reply-url", ep.URL+"/sms/replies", false)
	b.run("generate a secret", chromedp.Click(chromedp.CSS(`#secret-form button`)))
	b.waitText("#new-secret", "只显示这一次", false)
	secret := b.text("code.secret")
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret shown: %q", secret)
	}
	b.shot("receipts_secret")
	b.run("send a test receipt", chromedp.Click(chromedp.CSS(`#test-form button[type=submit]`)))
	b.waitText("#test-result", "推送成功", false)
	if s := b.text("#test-result"); !strings.Contains(s, "204") || !strings.Contains(s, "已签名") {
		t.Errorf("test result: %q", s)
	}
	select {
	case p := <-posts:
		if !webhook.Verify(secret, p.ts, p.body, p.sig) {
			t.Error("the test receipt does not verify with the secret the page showed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint got no test receipt")
	}
	if s := b.text("#secret-form button"); s != "更换密钥" {
		t.Errorf("after a secret, the button reads %q", s)
	}
	b.shot("receipts")
	b.mobile()
	b.run("reload", chromedp.Navigate(r.url+"/enterprise/receipts"))
	b.waitText("h1", "回执推送", false)
	b.shot("receipts_mobile")
	b.desktop()

	// The account manager sees the webhook amy set and tests it from the
	// desk (its own login, in the same browser).
	b.opsLogin(r.url + "/ops/enterprises/A")
	b.waitText("#ent-receipts", ep.URL+"/sms/receipts", false) // the login goes back to the page asked for
	b.waitText("#ent-reply-url", ep.URL+"/sms/replies", false)
	b.run("test the endpoint", chromedp.Click(chromedp.CSS(`#ent-receipt-test button`)))
	b.waitText("#test-result", "推送成功", false)
	select {
	case <-posts:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint got no test receipt from the desk")
	}
	b.shot("ops_enterprise_receipts")

	// A reply its endpoint refused waits out its backoff (10 s): amy's
	// 立即重试回复, beside the replies' rows, posts it at once.
	mended, posted := failingReplies(t, r, "A")
	b.run("amy's 回执推送 again", chromedp.Navigate(r.url+"/enterprise/receipts"))
	b.waitText("#reply-pending", "其中 1 条推送失败，等待重试", false)
	b.waitText("#reply-retry-form", "立即重试回复", false)
	b.shot("receipts_reply_failing")
	b.mobile()
	b.run("reload", chromedp.Navigate(r.url+"/enterprise/receipts"))
	b.waitText("#reply-retry-form", "立即重试回复", false)
	b.shot("receipts_reply_failing_mobile")
	b.desktop()
	mended.Store(true)
	b.run("立即重试回复", chromedp.Click(chromedp.CSS(`#reply-retry-form button`)))
	b.waitText(".notice", "已将 1 条等待重试的回复改为立即推送", false)
	waitPostedAtOnce(t, posted, "立即重试回复")
	b.waitText("#reply-last", "成功", true)
}

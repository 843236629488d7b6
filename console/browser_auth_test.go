package console

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
)

// A person logs in, sees the 发件箱, and is sent back to the login page
// with a notice after 30 idle minutes (FAQ 19); the clock is the API's.
func TestBrowserLoginAndIdleLogout(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.run("open the console", chromedp.Navigate(r.url+"/"))
	b.waitText("h1", "用户登录", false)
	b.shot("login")
	b.run("wrong password",
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "wrong"),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
	)
	b.waitText(".ferr", "用户名或密码错误", false)
	b.login(r.url, "alice")
	b.run("open the outbox", chromedp.Navigate(r.url+"/outbox"))
	b.waitText("h1", "发件箱", false)
	if who := b.text(".who"); !strings.Contains(who, "甲公司") || !strings.Contains(who, "alice") {
		t.Errorf("header shows %q, want the enterprise and the user", who)
	}

	// 29 minutes idle: still in; the visit slides the expiry.
	r.clock.Add(api.SessionIdle - time.Minute)
	b.run("come back after 29 minutes", chromedp.Navigate(r.url+"/outbox"))
	b.waitText("h1", "发件箱", false)
	r.clock.Add(api.SessionIdle + time.Second)
	b.run("come back after 30 more minutes", chromedp.Navigate(r.url+"/outbox"))
	b.waitText("h1", "用户登录", false)
	if n := b.text(".notice"); !strings.Contains(n, "30 分钟") {
		t.Errorf("login page notice %q, want the idle notice", n)
	}
	b.shot("login-expired")
	// Logging in again lands on the page that was asked for.
	b.run("log in again",
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
	)
	b.waitText("h1", "发件箱", false)
}

// The desk's login: the operator token, then the desk; an idle operator
// session ends like an enterprise one.
func TestBrowserOpsLoginAndIdleLogout(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.run("open the desk", chromedp.Navigate(r.url+"/ops/"))
	b.waitText("h1", "客户经理工作台", false)
	b.shot("ops-login")
	b.run("log in with the operator token",
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), opsToken_),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.side`)),
	)
	r.clock.Add(api.SessionIdle + time.Second)
	b.run("come back after 30 minutes", chromedp.Navigate(r.url+"/ops/"))
	b.waitText("h1", "客户经理工作台", false)
	if n := b.text(".notice"); !strings.Contains(n, "30 分钟") {
		t.Errorf("desk login notice %q, want the idle notice", n)
	}
}

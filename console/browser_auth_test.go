package console

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// A person logs in and sees the 发件箱.
func TestBrowserLogin(t *testing.T) {
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
	b.shot("outbox")
}

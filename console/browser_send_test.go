package console

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
)

// cookieClient is a browserless client carrying the browser's cookies
// (a download fetched as the person who sees its link).
func (b *browser) cookieClient(r *rig) *browserless {
	b.t.Helper()
	var cookies []*network.Cookie
	b.run("read cookies", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
		cookies = res.Cookies
		return err
	}))
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(r.url)
	var hc []*http.Cookie
	for _, c := range cookies {
		hc = append(hc, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	jar.SetCookies(u, hc)
	c := r.client()
	c.hc.Jar = jar
	return c
}

// apiPreview is the API's own count of text for alice.
func apiPreview(t *testing.T, r *rig, text string) api.PreviewResponse {
	t.Helper()
	var lr api.LoginResponse
	cl := &api.Client{Base: r.url}
	if err := cl.Do(http.MethodPost, "/v1/login", api.LoginRequest{SystemID: "alice", Password: password}, &lr); err != nil {
		t.Fatal(err)
	}
	cl.Token = lr.Token
	var p api.PreviewResponse
	if err := cl.Do(http.MethodPost, "/v1/messages/preview", api.PreviewRequest{Text: text}, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A person types a text and watches the counter cross into a second
// message (FAQ 7, 20), sends it to two whitelisted numbers and one that
// is not, sees the refusal in Chinese, and finds the message 接收成功 in
// 发件箱 (FAQ 5, 10, 17).
func TestBrowserSendGroup(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("open 短信群发",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/send/group"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#group-send textarea[name=text]`)),
	)
	p70, p71 := apiPreview(t, r, strings.Repeat("好", 65)), apiPreview(t, r, strings.Repeat("好", 66))
	if p70.Chars != 70 || p70.Segments != 1 || p71.Chars != 71 || p71.Segments != 2 {
		t.Fatalf("the API counts %+v and %+v", p70, p71)
	}
	b.run("type 65 characters", chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=text]`), strings.Repeat("好", 65)))
	b.waitText("#count", "共 70 字（含签名「【甲公司】」），按 1 条计费", false)
	b.run("one more", chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=text]`), "好"))
	b.waitText("#count", "共 71 字（含签名「【甲公司】」），按 2 条计费", false)
	b.run("a shorter text",
		chromedp.SetJavascriptAttribute(chromedp.CSS(`#group-send textarea[name=text]`), "value", "明天上午九点开"),
		chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=text]`), "会"),
		chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=to]`), numA1+"\n"+numA2+"，13900000099"),
	)
	b.waitText("#count", "共 13 字", false)
	b.shot("send-group")
	b.mobile()
	b.shot("send-group-mobile")
	b.desktop()
	b.run("send", chromedp.Click(chromedp.CSS(`#group-send button.primary[type=submit]`)))
	b.waitText("#send-result", "已接收", false)
	if s := b.text("#send-result .accepted"); s != "2" {
		t.Errorf("accepted: %q, want 2", s)
	}
	if s := b.text("#refused"); !strings.Contains(s, "13900000099") || !strings.Contains(s, "号码不在已审批的白名单内") {
		t.Errorf("refused: %q", s)
	}
	b.shot("send-result")
	b.run("open 发件箱", chromedp.Click(chromedp.CSS(`#send-result a[href="/outbox"]`)))
	b.waitText("table.outbox", "接收成功", true)
}

// A person uploads a batch file (FAQ 5) and watches its job finish, the
// row error listed and downloadable; then a templated send (FAQ 10).
func TestBrowserSendFiles(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	dir := t.TempDir()
	batchFile := filepath.Join(dir, "批量.csv")
	if err := os.WriteFile(batchFile, []byte("号码,内容\n"+numA1+",张先生您好\n13900000099,王先生您好\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run("open 批量发送",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/send/batch"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#batch input[type=file]`)),
	)
	b.shot("send-batch")
	b.run("upload",
		chromedp.SetUploadFiles(chromedp.CSS(`#batch input[type=file]`), []string{batchFile}),
		chromedp.Click(chromedp.CSS(`#batch button[type=submit]`)),
	)
	b.waitText("#job-state", "已完成", false) // the page polls itself
	b.waitText("#job-errors", "号码不在已审批的白名单内", false)
	if s := b.text("#job-accepted"); s != "1" {
		t.Errorf("accepted: %q", s)
	}
	b.shot("job")
	href, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(`#errors-csv`), "href"))
	if err != nil || !href.Exists {
		t.Fatal(href, err)
	}
	a := b.cookieClient(r).get(href.Value)
	if a.Status != http.StatusOK || !strings.Contains(a.Body, "13900000099,号码不在已审批的白名单内") {
		t.Errorf("errors.csv: %d %q", a.Status, a.Body)
	}
	b.run("open 发送任务", chromedp.Click(chromedp.CSS(`nav.side a[href="/jobs"]`)))
	b.waitText("#jobs", "批量.csv", false)
	b.shot("jobs")

	customFile := filepath.Join(dir, "费用.csv")
	if err := os.WriteFile(customFile, []byte("姓名,手机,金额\n张三,"+numA1+",100\n李四,"+numA2+",80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run("open 定制发送 and upload",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/send/custom"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#custom-upload input[type=file]`)),
	)
	b.shot("send-custom")
	b.run("upload",
		chromedp.SetUploadFiles(chromedp.CSS(`#custom-upload input[type=file]`), []string{customFile}),
		chromedp.Click(chromedp.CSS(`#custom-upload button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#compose textarea[name=template]`)),
	)
	b.waitText("#sheet", "张三", false)
	b.run("pick 手机 and compose with the field buttons",
		chromedp.SetValue(chromedp.CSS(`#number_column`), "手机"),
		chromedp.Click(chromedp.CSS(`#fields button[data-insert="{姓名}"]`)),
		chromedp.SendKeys(chromedp.CSS(`#template`), "您好，本月费用"),
		chromedp.Click(chromedp.CSS(`#fields button[data-insert="{金额}"]`)),
		chromedp.SendKeys(chromedp.CSS(`#template`), "元"),
	)
	if v, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(`#template`))); err != nil || v != "{姓名}您好，本月费用{金额}元" {
		t.Fatalf("template: %q %v", v, err)
	}
	b.run("预览", chromedp.Click(chromedp.CSS(`#compose button:not(.primary)[type=submit]`)))
	b.waitText("#preview", "【甲公司】张三您好，本月费用100元", false)
	b.waitText("#preview", "18 字 / 1 条", false)
	b.shot("send-compose")
	b.run("发送", chromedp.Click(chromedp.CSS(`#compose button.primary[type=submit]`)))
	b.waitText("#job-state", "已完成", false)
	if s := b.text("#job-accepted"); s != "2" {
		t.Errorf("templated send accepted: %q", s)
	}
	b.run("open 发件箱", chromedp.Click(chromedp.CSS(`nav.side a[href="/outbox"]`)))
	b.waitText("table.outbox", "李四您好，本月费用80元", true)
}

// TestBrowserComposeUploadGone: a preview asked for after the upload went
// (sent from another tab, or 发送 clicked within the typing's delay)
// says so in the preview, and the page stays where it is: before, htmx
// was redirected, and a user who had just clicked 发送 could be taken
// from the job's page to one saying the file was gone.
func TestBrowserComposeUploadGone(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	file := filepath.Join(t.TempDir(), "费用.csv")
	if err := os.WriteFile(file, []byte("姓名,手机,金额\n张三,"+numA1+",100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run("open 定制发送 and upload",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/send/custom"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#custom-upload input[type=file]`)),
		chromedp.SetUploadFiles(chromedp.CSS(`#custom-upload input[type=file]`), []string{file}),
		chromedp.Click(chromedp.CSS(`#custom-upload button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#compose textarea[name=template]`)),
	)
	page, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil || !strings.HasPrefix(page, "/send/custom/upl_") {
		t.Fatalf("the compose page: %q %v", page, err)
	}
	b.cookieClient(r).submit(page, page+"/delete", url.Values{}).wantRedirect(t, "/send/custom")
	b.run("type", chromedp.SendKeys(chromedp.CSS(`#template`), "{姓名}您好"))
	b.waitText("#preview", "可能刚刚已经发送", false)
	b.shot("send-compose-gone")
	if now, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.pathname`)); err != nil || now != page {
		t.Errorf("the page after the preview: %q %v, want it stay at %q", now, err, page)
	}
	if v, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(`#template`))); err != nil || v != "{姓名}您好" {
		t.Errorf("the text typed: %q %v, want it kept", v, err)
	}
}

// TestBrowserSendGroupTwice: the 短信群发 form posted twice from one
// rendering (as a double click or a reload of the answer does) shows the
// first answer the second time, saying nothing was sent again, and
// 发件箱 lists the message once.
func TestBrowserSendGroupTwice(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("open 短信群发 and fill it",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/send/group"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#group-send textarea[name=text]`)),
		chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=to]`), numA1),
		chromedp.SendKeys(chromedp.CSS(`#group-send textarea[name=text]`), "点了两次的通知"),
	)
	// The first post as the browser sends a form, its answer not shown
	// (lost, or replaced by the second click's).
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	status, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const f = document.getElementById("group-send");
		return fetch(f.action, {method: "POST", body: new URLSearchParams(new FormData(f))}).then(r => r.status); })()`, chromedp.EvalAwaitPromise))
	if err != nil || status != 200 {
		t.Fatalf("the first post: %v, %v", status, err)
	}
	b.run("the second", chromedp.Click(chromedp.CSS(`#group-send button.primary[type=submit]`)))
	b.waitText("#send-replayed", "这份表单已经提交过", false)
	if s := b.text("#send-result .accepted"); s != "1" {
		t.Errorf("accepted: %q, want the first answer's 1", s)
	}
	b.shot("send-result-replayed")
	b.run("open 发件箱", chromedp.Click(chromedp.CSS(`#send-result a[href="/outbox"]`)))
	b.waitText("table.outbox", "点了两次的通知", true)
	if n := strings.Count(b.text("table.outbox"), "点了两次的通知"); n != 1 {
		t.Fatalf("发件箱 lists the message %d times, want once", n)
	}
}

package console

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The workflow of the issue: alice adds a whitelist number and sees it
// 待审批; the account manager logs in at /ops/ (in the same browser: the
// desk's cookie is its own, path /ops/), approves it at 待审批, and
// alice's list shows it 已通过. Then the account manager creates an
// enterprise with 全网发送, changes its package, disables it, and
// downloads the month's bill.
func TestBrowserDeskWorkflow(t *testing.T) {
	// 张经理 logs in with a token of her own: the header names her, and
	// the enterprise sees her name beside what she approved.
	const zhang = "zhang-token-0123456789"
	r := newRig(t, func(c *api.Config) { c.Managers = []api.Manager{{Name: "张经理", Token: zhang}} })
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("alice adds a number",
		chromedp.Navigate(r.url+"/whitelist"),
		chromedp.WaitVisible(chromedp.CSS(`#wl-add textarea[name=numbers]`)),
		chromedp.SendKeys(chromedp.CSS(`#wl-add textarea[name=numbers]`), "13900000031"),
		chromedp.Click(chromedp.CSS(`#wl-add button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "待客户经理审批", false)
	wantRow(t, b.text(`#whitelist tbody`), "13900000031", "待审批")

	b.opsLoginWith(r.url+"/ops/", zhang)
	b.waitText("h1", "运行概况", false)
	b.waitText("header .who", "张经理", false)
	b.waitText("#pending", "白名单号码", false)
	if got := b.text(`#pending a[href="/ops/approvals#whitelist"] b`); got != "2" { // numPending and alice's
		t.Errorf("pending whitelist count %q, want 2", got)
	}
	b.shot("ops-home")

	b.run("open 待审批", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/approvals"]`)))
	b.waitText("#whitelist", "13900000031", false)
	b.shot("ops-approvals")
	b.run("approve alice's number", chromedp.Click(chromedp.CSS(`#wl-A-13900000031 button[name=approve]`)))
	b.waitText(".notice[role=status]", "已通过 1 个号码", false)
	if strings.Contains(b.text("#whitelist"), "13900000031") {
		t.Error("the approved number is still in the queue")
	}
	b.run("reject the other without a reason", chromedp.Click(chromedp.CSS(`#wl-A-13712345679 button[name=reject]`)))
	b.waitText(`#wl-A-13712345679 .ferr`, "拒绝时须填写原因", false)

	b.run("alice's list", chromedp.Navigate(r.url+"/whitelist"))
	b.waitText("#whitelist", "13900000031", false)
	wantRow(t, b.text(`#whitelist tbody`), "13900000031", "已通过", "张经理")
	b.shot("whitelist-decided-by")

	b.mobile()
	b.run("phone: 待审批", chromedp.Navigate(r.url+"/ops/approvals"))
	b.waitText("h1", "待审批", false)
	b.shot("ops-approvals-mobile")
	b.desktop()

	// The same desk on a node of a cluster: its nodes, what it leads,
	// and that node-1 runs other account managers (not reloaded yet).
	r.cluster.Store(&api.ClusterStatus{Node: 2, Leads: []string{"reminders"}, ConfigDiffers: []string{"account_managers"}, Members: []api.ClusterMember{
		{ID: 1, Name: "node-1", PeerURL: "http://10.0.0.21:7101", Started: time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC), ConfigDigests: map[string]string{"account_managers": "76613896558daddd"}},
		{ID: 2, Name: "node-2", PeerURL: "http://10.0.0.22:7101", Started: time.Date(2026, 12, 2, 3, 4, 9, 0, time.UTC), ConfigDigests: map[string]string{"account_managers": "ee8e009f232fe6ae"}},
		{ID: 3, Name: "node-3", PeerURL: "http://10.0.0.23:7101", Started: time.Date(2026, 12, 2, 3, 5, 1, 0, time.UTC), ConfigDigests: map[string]string{"account_managers": "ee8e009f232fe6ae"}},
	}})
	b.run("a cluster node's desk", chromedp.Navigate(r.url+"/ops/"))
	b.waitText("#cluster", "node-3", false)
	b.waitText("#cluster-managers-differ", "各节点的客户经理配置（http.account_managers）不一致", false)
	b.shot("ops-home-cluster")
	r.cluster.Store(nil)

	b.run("open 企业", chromedp.Navigate(r.url+"/ops/enterprises"))
	b.waitText("#enterprises", "甲公司", false)
	b.shot("ops-enterprises")
	b.run("新建企业",
		chromedp.Click(chromedp.CSS(`a[href="/ops/enterprises/new"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#ent-form input[name=code]`)),
	)
	b.shot("ops-enterprise-new")
	b.run("fill in 丁公司",
		chromedp.SendKeys(chromedp.CSS(`#ent-form input[name=code]`), "D"),
		chromedp.SendKeys(chromedp.CSS(`#ent-form input[name=name]`), "丁公司"),
		chromedp.SendKeys(chromedp.CSS(`#ent-form input[name=signature]`), "【丁公司】"),
		chromedp.SetValue(chromedp.CSS(`#ent-form select[name=package]`), "2"),
		chromedp.Click(chromedp.CSS(`#ent-form input[name=national]`)),
		chromedp.Click(chromedp.CSS(`#ent-form button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "已新建企业 丁公司（D）", false)
	b.waitText("#facts", "全网发送", false)
	b.waitText("#facts", "套餐 2", false)
	b.run("change the package to 4",
		chromedp.SetValue(chromedp.CSS(`#ent-form select[name=package]`), "4"),
		chromedp.Click(chromedp.CSS(`#ent-form button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "已保存企业 D 的修改", false)
	b.waitText("#facts", "套餐 4：月租 300.00 元", false)
	b.run("add a user to D, 长短信回复 分段 UDH 8位",
		chromedp.SendKeys(chromedp.CSS(`#user-add input[name=name]`), "丁一"),
		chromedp.SendKeys(chromedp.CSS(`#user-add input[name=system_id]`), "d1"),
		chromedp.SendKeys(chromedp.CSS(`#user-add input[name=password]`), "pass123"),
		chromedp.SetValue(chromedp.CSS(`#user-add select[name=long_replies]`), "udh8"),
		chromedp.Click(chromedp.CSS(`#user-add button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "已添加用户 丁一（d1）", false)
	const lrSel = `#user-d1 td[data-label="长短信回复"] select`
	if v, s := b.selected(lrSel); v != "udh8" || s != "分段 UDH 8位" {
		t.Errorf("d1's 长短信回复: %q %q, want udh8 分段 UDH 8位", v, s)
	}
	b.run("d1's 长短信回复 back to 整条",
		chromedp.SetValue(chromedp.CSS(lrSel), "payload"),
		chromedp.Click(chromedp.CSS(`#user-d1 td[data-label="长短信回复"] button`)),
	)
	b.waitText(".notice[role=status]", "用户 d1 的长短信回复已设为整条 (message_payload)", false)
	if v, s := b.selected(lrSel); v != "payload" || s != "整条 (message_payload)" {
		t.Errorf("d1's 长短信回复: %q %q, want payload 整条 (message_payload)", v, s)
	}
	if u, err := r.pol.User(policy.OperatorActor("test"), "d1"); err != nil || u.LongReplies != "" {
		t.Errorf("d1 as stored: %+v %v", u, err)
	}
	b.run("停用", chromedp.Click(chromedp.CSS(`#ent-toggle button[type=submit]`)))
	b.waitText("#ent-state", "已停用", false)
	b.shot("ops-enterprise")
	if e, ok := r.pol.Lookup("D"); !ok || !e.Disabled || !e.National || e.Package != 4 {
		t.Errorf("D: %+v", e)
	}

	b.run("open 账单", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/bills"]`)))
	b.waitText("#bills", "丁公司", false)
	b.shot("ops-bills")
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#bill-csv`), "href"))
	cancel()
	if err != nil || !strings.HasPrefix(href.Value, "/ops/bills.csv?month=") {
		t.Fatalf("下载 CSV link: %+v %v", href, err)
	}
	c := r.client()
	c.opsLogin()
	csv := c.get(href.Value)
	csv.wantStatus(t, http.StatusOK, "\uFEFF集团编码", "\nD,丁公司,")

	b.run("open 回执导出", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/export"]`)))
	b.waitText("h1", "回执导出", false)
	b.shot("ops-export")

	// Replies of A and B their endpoint refused: 运行概况 lists both
	// enterprises' reply endpoints as failing; from B's page 立即重试回复
	// posts its reply at once, and B leaves the list.
	mended, posted := failingReplies(t, r, "A", "B")
	b.run("运行概况", chromedp.Navigate(r.url+"/ops/"))
	b.waitText("#failing-webhooks", "用户回复", false)
	if got := b.text("#failing-webhooks tbody"); strings.Count(got, "用户回复") != 2 || !strings.Contains(got, "HTTP status 503") {
		t.Errorf("failing list: %q, want A's and B's reply endpoints", got)
	}
	b.shot("ops-home-failing")
	b.mobile()
	b.run("phone: 运行概况", chromedp.Navigate(r.url+"/ops/"))
	b.waitText("#failing-webhooks", "用户回复", false)
	b.shot("ops-home-failing-mobile")
	b.desktop()
	b.run("open B from the list", chromedp.Navigate(r.url+"/ops/"), chromedp.Click(chromedp.CSS(`#failing-webhooks a[href="/ops/enterprises/B"]`)))
	b.waitText("#ent-replies-pending", "1 条重试中", false)
	b.waitText("#ent-reply-retry", "立即重试回复", false)
	b.shot("ops-enterprise-reply-failing")
	mended.Store(true)
	b.run("立即重试回复", chromedp.Click(chromedp.CSS(`#ent-reply-retry button`)))
	b.waitText(".notice[role=status]", "已将 1 条等待重试的回复改为立即推送", false)
	waitPostedAtOnce(t, posted, "the desk's 立即重试回复 of B")
	ops := r.client()
	ops.opsLogin()
	waitCondition(t, "B off the failing list, A on it", func() bool {
		body := ops.get("/ops/").Body
		return !strings.Contains(body, `<a href="/ops/enterprises/B">B</a>`) && strings.Contains(body, `<a href="/ops/enterprises/A">A</a></td><td data-label="推送内容">用户回复`)
	})
}

// wantRow fails unless the list text has num with each of want after it
// on its line (a state, who decided).
func wantRow(t *testing.T, list, num string, want ...string) {
	t.Helper()
	i := strings.Index(list, num)
	if i < 0 {
		t.Fatalf("%s is not in the list:\n%s", num, list)
	}
	line := list[i:]
	if j := strings.Index(line, "\n"); j >= 0 {
		line = line[:j]
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s's row has no %s: %q", num, w, line)
		}
	}
}

// b.desktop() brings back the desktop window after b.mobile().
func TestBrowserDesktopAfterMobile(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	width := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(shot))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Width
	}
	b.run("open", chromedp.Navigate(r.url+"/ops/login"))
	desk := width()
	b.mobile()
	if w := width(); w != 390*2 {
		t.Errorf("phone screenshot %d px wide, want %d", w, 390*2)
	}
	b.desktop()
	if w := width(); w != desk || w != 1280 {
		t.Errorf("after desktop(): %d px wide, want %d (1280 at the start: %d)", w, 1280, desk)
	}
}

// A customer of enterprise A calls: "my message to 137… did not arrive,
// and my customer says he replied". The account manager opens the
// enterprise's 收发查询 from its page, finds the message by the number's
// last digits, opens it (its parts, 为什么没有收到), then the replies from
// that number; on a phone too.
func TestBrowserDeskRecords(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "您的快递明天送达", d1.Add(9*time.Hour), time.Time{})
	r.storeSentTo(numA2, "会议改到三点", d1.Add(10*time.Hour), time.Time{})
	r.storeReply(numA1, "好的，谢谢", time.Now())
	b := newBrowser(t)
	b.opsLogin(r.url + "/ops/enterprises/A")
	b.waitText("h1", "（A）", false)
	b.run("open 收发查询", chromedp.Click(chromedp.CSS(`#ent-records`)), chromedp.WaitVisible(chromedp.CSS(`#records-search`)))
	b.waitText("#records tbody", "会议改到三点", false)
	b.run("search by the last digits",
		chromedp.SendKeys(chromedp.CSS(`#records-search input[name=number]`), numA1[len(numA1)-4:]),
		chromedp.Click(chromedp.CSS(`#records-search button`)))
	// The new page, not the one the search was typed on (it lists both).
	b.waitText("#records-search", "显示全部", false)
	b.waitText("#records tbody", "您的快递明天送达", false)
	if s := b.text("#records tbody"); strings.Contains(s, "会议改到三点") {
		t.Errorf("narrowed to …%s: %q", numA1[len(numA1)-4:], s)
	}
	b.shot("ops-records")
	b.run("open the message", chromedp.Click(chromedp.CSS(`#records tbody td[data-label="接收号码"] a`)))
	b.waitText("main", "为什么没有收到？", false)
	b.waitText("main", "分条明细", false)
	b.shot("ops-record")
	b.run("the replies", chromedp.Navigate(r.url+"/ops/enterprises/A/records?number="+numA1))
	b.run("收到的回复", chromedp.Click(chromedp.CSS(`nav.tabs a[href*="box=inbox"]`)))
	b.waitText("#records tbody", "好的，谢谢", false)
	b.waitText("#records tbody", "未收取", false)
	b.shot("ops-records-inbox")
	b.run("往来记录", chromedp.Click(chromedp.CSS(`nav.tabs a[href*="box=thread"]`)), chromedp.WaitVisible(chromedp.CSS(`#records-thread`)))
	if s := b.text("#records-thread"); !inOrder(s, "您的快递明天送达", "好的，谢谢") {
		t.Errorf("the desk's thread with %s: %q", numA1, s)
	}
	b.shot("ops-records-thread")
	// 号码查询: the same number across the enterprises, from the menu.
	b.run("open 号码查询", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/trace"]`)), chromedp.WaitVisible(chromedp.CSS(`#trace-search`)))
	b.run("trace the number",
		chromedp.SendKeys(chromedp.CSS(`#trace-search input[name=number]`), numA1),
		chromedp.Click(chromedp.CSS(`#trace-search button`)))
	b.waitText("#trace tbody", "您的快递明天送达", false)
	if s := b.text("#trace tbody"); !strings.Contains(s, "A") || strings.Contains(s, "会议改到三点") {
		t.Errorf("号码查询 of %s: %q", numA1, s)
	}
	b.shot("ops-trace")
	// 该号码的回复, from the tab: the number kept, its reply to A, and
	// (it replied TD to A too) A's opt-out list holding it.
	if _, err := r.pol.OptOut("A", numA1, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	b.run("open the number's replies", chromedp.Click(chromedp.CSS(`nav.tabs a[href*="box=replies"]`)))
	b.waitText("#trace tbody", "好的，谢谢", false)
	if s := b.text("#trace-optouts"); !strings.Contains(s, "已退订") || !strings.Contains(s, "A") {
		t.Errorf("the number's opt-outs: %q", s)
	}
	b.shot("ops-trace-replies")
	b.mobile()
	b.run("the replies on a phone", chromedp.Navigate(r.url+"/ops/enterprises/A/records?box=inbox&number="+numA1))
	b.waitText("#records tbody", "好的，谢谢", false)
	b.fits("#records-search")
	b.fits("#records")
	b.shot("ops-records-inbox-mobile")
}

// TestBrowserDeskPortfolio: 李经理 serves A only. In Chromium her desk's
// header names the portfolio, the enterprise list shows A without 新建企业,
// and 待审批 has A's entry and no 开户申请.
func TestBrowserDeskPortfolio(t *testing.T) {
	const li = "li-token-0123456789ab"
	r := newRig(t, func(c *api.Config) {
		c.Managers = []api.Manager{{Name: "李经理", Token: li, Enterprises: []string{"A"}}}
	})
	b := newBrowser(t)
	b.opsLoginWith(r.url+"/ops/", li)
	b.waitText("header .who", "李经理 · 负责 A", false)
	b.shot("ops-portfolio-home")
	b.run("open 企业", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/enterprises"]`)))
	b.waitText("main", "甲公司", false)
	if m := b.text("main"); strings.Contains(m, "乙公司") || strings.Contains(m, "新建企业") {
		t.Errorf("李经理's enterprises: %q, want A's only and no 新建企业", m)
	}
	b.run("open 待审批", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/approvals"]`)))
	b.waitText("#whitelist", "13712345679", false)
	if m := b.text("main"); strings.Contains(m, "开户申请") {
		t.Errorf("李经理's 待审批 offers 开户申请: %q", m)
	}
	b.shot("ops-portfolio-approvals")
}

// TestBrowserDeskReadOnly (Chromium): a read-only manager's header says
// 只读; 待审批 lists the pending number with no button to decide it, and
// an enterprise's page shows its facts and users with nothing to change.
func TestBrowserDeskReadOnly(t *testing.T) {
	const chen = "chen-readonly-0123456789"
	r := newRig(t, func(c *api.Config) {
		c.Managers = []api.Manager{{Name: "陈客服", Token: chen, ReadOnly: true}}
	})
	b := newBrowser(t)
	b.opsLoginWith(r.url+"/ops/", chen)
	b.waitText("header .who", "陈客服 · 只读", false)
	b.run("open 待审批", chromedp.Click(chromedp.CSS(`nav.side a[href="/ops/approvals"]`)))
	b.waitText("#whitelist", "13712345679", false)
	if n := b.count("main button"); n != 0 {
		t.Errorf("陈客服's 待审批 has %d buttons, want none", n)
	}
	b.shot("ops-readonly-approvals")
	b.run("open A", chromedp.Navigate(r.url+"/ops/enterprises/A"))
	b.waitText("#users", "alice", false)
	if n := b.count("main form[method=post]"); n != 0 {
		t.Errorf("陈客服's page of A has %d forms that change something, want none", n)
	}
	b.shot("ops-readonly-enterprise")
	b.run("type 新建企业's address", chromedp.Navigate(r.url+"/ops/enterprises/new"))
	b.waitText(".error", "客户经理陈客服为只读账号，只能查看，不能新建企业", false)
	if n := b.count("#ent-form"); n != 0 {
		t.Error("陈客服 is shown the form of a new enterprise")
	}
	b.shot("ops-readonly-new")
}

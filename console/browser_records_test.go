package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
)

// A person checks that a message was received (FAQ 17) and why not (FAQ
// 6), changes and deletes a scheduled message (FAQ 8, 9), reads a reply
// and the month's costs (FAQ 16, 18).
func TestBrowserRecords(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "周五下午三点开会"})[0]
	b := newBrowser(t)
	b.login(r.url, "alice")

	// 首页: the month and the last messages.
	b.run("home", chromedp.Navigate(r.url+"/"))
	b.waitText("main", "本月用量", false)
	b.waitText("main", "周五下午三点开会", false)
	b.shot("home")

	// 发件箱: reload until the SMSC's receipt says 接收成功.
	b.run("open the outbox", chromedp.Click(chromedp.CSS(`nav.side a[href="/outbox"]`)), chromedp.WaitVisible(chromedp.CSS(`nav.tabs`)))
	b.waitText("table.list tbody", "接收成功", true)
	b.run("tab 接收成功", chromedp.Click(chromedp.CSS(`nav.tabs a[href="/outbox?outcome=received"]`)), chromedp.WaitVisible(chromedp.CSS(`nav.tabs a.on[href="/outbox?outcome=received"]`)))
	b.waitText("table.list tbody", numA1, false)
	b.shot("outbox")

	// Its detail: why (not) received.
	b.run("open the message", chromedp.Click(chromedp.CSS(`table.list a[href="/outbox/`+id+`"]`)), chromedp.WaitVisible(chromedp.CSS(`section.why`)))
	b.waitText("h1", "短信详情", false)
	if why := b.text("section.why"); !strings.Contains(why, "对方手机已经收到") || !strings.Contains(why, "计 1 条") {
		t.Errorf("为什么没有收到 says %q", why)
	}
	if parts := b.text("table.parts"); !strings.Contains(parts, "接收成功") {
		t.Errorf("parts: %q", parts)
	}
	b.shot("message")

	// 定时发件箱: tomorrow's message, moved and reworded, then deleted.
	at := time.Now().Add(24 * time.Hour).Truncate(time.Minute)
	sid := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "明天上午开会", SendAt: at.Format(time.RFC3339)})[0]
	b.run("open 定时发件箱", chromedp.Click(chromedp.CSS(`nav.side a[href="/scheduled"]`)), chromedp.WaitVisible(chromedp.CSS(`table.scheduled`)))
	b.waitText("table.scheduled", "明天上午开会", false)
	b.waitText("table.scheduled", at.In(reminder.Shanghai).Format("2006-01-02 15:04"), false)
	b.shot("scheduled")
	later := at.Add(5 * time.Hour).In(reminder.Shanghai)
	b.run("修改", chromedp.Click(chromedp.CSS(`a[href="/scheduled/`+sid+`"]`)), chromedp.WaitVisible(chromedp.CSS(`textarea[name=text]`)))
	b.shot("scheduled-edit")
	b.run("change time and text",
		chromedp.SetValue(chromedp.CSS(`input[name=send_at]`), later.Format(localLayout)),
		chromedp.Clear(chromedp.CSS(`textarea[name=text]`)),
		chromedp.SendKeys(chromedp.CSS(`textarea[name=text]`), "改到明天下午开会"),
		chromedp.Click(chromedp.CSS(`form.form button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`table.scheduled`)),
	)
	b.waitText("main", "定时短信已修改", false)
	b.waitText("table.scheduled", "【甲公司】改到明天下午开会", false)
	b.waitText("table.scheduled", later.Format("2006-01-02 15:04"), false)
	if m := r.waitState(key, sid, "accepted"); !m.SendAt.Equal(later) {
		t.Errorf("send_at %v, want %v", m.SendAt, later)
	}
	b.run("删除", chromedp.Click(chromedp.CSS(`form[action="/scheduled/`+sid+`/delete"] button`)))
	b.waitText("main", "定时短信已删除", false)
	b.waitText("main", "没有等待发送的定时短信", false)
	r.waitState(key, sid, "cancelled")

	// 收件箱: a reply to the enterprise's service number, which its admin
	// sees (a user sees the replies to its own extension).
	b.run("log out", chromedp.Click(chromedp.CSS(`header form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS(`input[name=system_id]`)))
	b.login(r.url, "amy")
	r.injectMO(numA1, "106575000001", "收到，准时参加")
	refused := &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001", Text: "请改到周五", Upstream: "sim"}
	if err := r.store.StoreMO(context.Background(), refused); err != nil {
		t.Fatal(err)
	}
	if err := r.store.AckMO(context.Background(), "A", refused.ID, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	if err := r.store.StoreMO(context.Background(), &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001",
		Text: "会议资料已收到，我们这边参加的有三个人，需要提前准备", Upstream: "sim", PartsMissing: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.store.StoreMO(context.Background(), &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001",
		Binary: []byte{0x00, 0x01, 0xFF, 0x80, 0x02, 0x10}, DataCoding: 0xF5, UDH: []byte{6, 5, 4, 0x23, 0xF4, 0x23, 0xF0}, Upstream: "sim"}); err != nil {
		t.Fatal(err)
	}
	b.run("open 收件箱", chromedp.Navigate(r.url+"/inbox"))
	b.waitText("main", "收到，准时参加", true)
	b.waitText("table.list tbody", "接收程序拒收", false)
	b.waitText("table.list tbody", "缺 1 段", false)
	b.waitText("table.list tbody", "二进制 6 字节", false)
	b.waitText("table.list tbody", "端口 9204", false) // from its UDH
	b.shot("inbox")
	// 来自号码: the handset's number, as the person types it.
	b.run("search the inbox", chromedp.SendKeys(chromedp.CSS(`#inbox-search input[name=number]`), "+86 "+numA1),
		chromedp.Click(chromedp.CSS(`#inbox-search button`)))
	b.waitText("main", "显示全部回复", false)
	b.waitText("table.list tbody", "收到，准时参加", false)
	b.shot("inbox-search")

	// 费用: the month against the package, the note of FAQ 18.
	b.run("open 费用", chromedp.Click(chromedp.CSS(`nav.side a[href="/billing"]`)), chromedp.WaitVisible(chromedp.CSS(`meter.usage`)))
	if s := b.text("section.usage"); !strings.Contains(s, "1 条") || !strings.Contains(s, "150.00 元") {
		t.Errorf("usage: %q", s)
	}
	b.waitText("section.note", "只有接收成功的短信收费", false)
	b.shot("billing")

	// The 发件箱 on a phone (last: the window stays phone-sized).
	b.run("outbox again", chromedp.Navigate(r.url+"/outbox"))
	b.mobile()
	b.waitText("table.list tbody", "接收成功", false)
	b.shot("outbox-mobile")
}

// A person looks for the messages and the replies of one day: 开始日期
// and 结束日期 on 发件箱, on 收件箱 and on 定时发件箱 (by the day they
// go out), a wrong range refused, and the same on a phone, where the
// search's fields fit the screen.
func TestBrowserRecordDates(t *testing.T) {
	r := newRig(t)
	d3, day3 := beijingDay(3)
	_, day4 := beijingDay(4)
	t2, tday2 := beijingDay(-2)
	r.storeSent("三天前的通知", d3.Add(10*time.Hour))
	r.storeSent("两天前的通知", d3.Add(34*time.Hour))
	r.storeReply(numA1, "三天前的回复", d3.Add(11*time.Hour))
	r.storeReply(numA2, "两天前的回复", d3.Add(35*time.Hour))
	r.storeScheduled("明天下午的定时通知", t2.Add(-9*time.Hour))
	r.storeScheduled("后天上午的定时通知", t2.Add(9*time.Hour))
	r.storeScheduled("三天后的定时通知", t2.Add(33*time.Hour))
	b := newBrowser(t)
	b.login(r.url, "amy")

	// 发件箱: both days, then the one.
	b.run("open the outbox", chromedp.Click(chromedp.CSS(`nav.side a[href="/outbox"]`)), chromedp.WaitVisible(chromedp.CSS(`#outbox-search`)))
	b.waitText("table.list tbody", "两天前的通知", false)
	b.run("search the outbox by date",
		chromedp.SetValue(chromedp.CSS(`#outbox-search input[name=from]`), day3),
		chromedp.SetValue(chromedp.CSS(`#outbox-search input[name=to]`), day3),
		chromedp.Click(chromedp.CSS(`#outbox-search button`)))
	b.waitText("#outbox-search", "显示全部日期", false)
	b.waitText("table.list tbody", "三天前的通知", false)
	if s := b.text("table.list tbody"); strings.Contains(s, "两天前的通知") {
		t.Errorf("%s to %s lists the day after: %q", day3, day3, s)
	}
	b.shot("outbox-dates")
	// 导出 downloads the day shown, as the person who sees it.
	href, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(`#outbox-export`), "href"))
	if err != nil || !href.Exists {
		t.Fatal(href, err)
	}
	if a := b.cookieClient(r).get(href.Value); a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "\uFEFF消息ID,") ||
		!strings.Contains(a.Body, "三天前的通知") || strings.Contains(a.Body, "两天前的通知") {
		t.Errorf("导出 (%s): %d %q", href.Value, a.Status, a.Body)
	}

	// 收件箱: the day, then an end before the start.
	b.run("open 收件箱", chromedp.Click(chromedp.CSS(`nav.side a[href="/inbox"]`)), chromedp.WaitVisible(chromedp.CSS(`#inbox-search`)))
	b.waitText("table.list tbody", "两天前的回复", false)
	b.run("search the inbox by date",
		chromedp.SetValue(chromedp.CSS(`#inbox-search input[name=from]`), day3),
		chromedp.SetValue(chromedp.CSS(`#inbox-search input[name=to]`), day3),
		chromedp.Click(chromedp.CSS(`#inbox-search button`)))
	b.waitText("#inbox-search", "显示全部回复", false)
	b.waitText("table.list tbody", "三天前的回复", false)
	if s := b.text("table.list tbody"); strings.Contains(s, "两天前的回复") {
		t.Errorf("%s to %s lists the day after: %q", day3, day3, s)
	}
	b.shot("inbox-dates")
	b.run("an end before the start",
		chromedp.SetValue(chromedp.CSS(`#inbox-search input[name=to]`), day4),
		chromedp.Click(chromedp.CSS(`#inbox-search button`)))
	b.waitText("#inbox-search .ferr", "结束日期不能早于开始日期", false)
	b.shot("inbox-dates-error")

	// 定时发件箱: the day after tomorrow's, by when they go out.
	b.run("open 定时发件箱", chromedp.Click(chromedp.CSS(`nav.side a[href="/scheduled"]`)), chromedp.WaitVisible(chromedp.CSS(`#scheduled-search`)))
	b.waitText("table.scheduled tbody", "三天后的定时通知", false)
	b.waitText("table.scheduled tbody", "明天下午的定时通知", false)
	b.run("search 定时发件箱 by date",
		chromedp.SetValue(chromedp.CSS(`#scheduled-search input[name=from]`), tday2),
		chromedp.SetValue(chromedp.CSS(`#scheduled-search input[name=to]`), tday2),
		chromedp.Click(chromedp.CSS(`#scheduled-search button`)))
	b.waitText("#scheduled-search", "显示全部日期", false)
	b.waitText("table.scheduled tbody", "后天上午的定时通知", false)
	if s := b.text("table.scheduled tbody"); strings.Contains(s, "明天下午的定时通知") || strings.Contains(s, "三天后的定时通知") {
		t.Errorf("%s to %s lists another day: %q", tday2, tday2, s)
	}
	b.shot("scheduled-dates")

	// On a phone: the search fits the screen's width.
	b.mobile()
	for _, p := range []struct{ path, form, want, shot string }{
		{"/outbox?from=" + day3 + "&to=" + day3, "#outbox-search", "三天前的通知", "outbox-dates-mobile"},
		{"/inbox?number=" + numA1 + "&from=" + day3 + "&to=" + day3, "#inbox-search", "三天前的回复", "inbox-dates-mobile"},
		{"/inbox?from=" + day3 + "&to=" + day4, "#inbox-search", "结束日期不能早于开始日期", "inbox-dates-error-mobile"},
		{"/scheduled?from=" + tday2 + "&to=" + tday2, "#scheduled-search", "后天上午的定时通知", "scheduled-dates-mobile"},
	} {
		b.run("open "+p.path, chromedp.Navigate(r.url+p.path))
		b.waitText("main", p.want, false)
		b.fits(p.form)
		b.shot(p.shot)
	}
}

// fits fails unless the element sel and the page are no wider than the
// window (nothing to scroll sideways for). On a phone the window is the
// screen's width: a page too wide makes the browser's layout wider.
func (b *browser) fits(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); const d = document.documentElement;
		return [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right, d.scrollWidth, Math.min(window.innerWidth, screen.width)].join(" "); })()`, sel)
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("measure %s: %v", sel, err)
	}
	var scroll, client, right, page, window float64
	if _, err := fmt.Sscan(s, &scroll, &client, &right, &page, &window); err != nil {
		b.t.Fatalf("measure %s: %q: %v", sel, s, err)
	}
	if scroll > client || right > window || page > window {
		b.t.Errorf("%s overflows: its content %v wide in %v, its right edge at %v, the page %v wide, the window %v", sel, scroll, client, right, page, window)
	}
}

// A person answers a reply and checks what was sent to that customer:
// 收件箱's 回复 opens 短信群发 with the number filled in, 发给该号码的短信
// opens 发件箱 narrowed to it, and 发件箱's 接收号码 finds another
// customer's messages by the last digits typed; on a phone the search
// and the inbox's new column fit the screen.
func TestBrowserRecordsByNumber(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "会议通知：明早九点", d1.Add(9*time.Hour), time.Time{})
	r.storeSentTo(numA2, "快递已送达", d1.Add(10*time.Hour), time.Time{})
	r.storeSentTo("+86"+numA1, "会议改到十点", d1.Add(11*time.Hour), time.Time{})
	r.storeReply(numA1, "收到，十点见", time.Now())
	b := newBrowser(t)
	b.login(r.url, "amy") // an admin: the reply is to the enterprise's number

	b.run("open 收件箱", chromedp.Navigate(r.url+"/inbox"))
	b.waitText("table.list tbody", "收到，十点见", false)
	b.shot("inbox-answer")
	b.run("the thread with this number", chromedp.Click(chromedp.CSS(`table.list tbody a[href="/conversation?number=`+numA1+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conversation`)))
	// Oldest first: the two messages, then the reply; another number's none.
	if s := b.text("#conversation"); !inOrder(s, "会议通知：明早九点", "会议改到十点", "收到，十点见") || strings.Contains(s, "快递已送达") {
		t.Errorf("往来记录 with %s: %q", numA1, s)
	}
	b.run("answer in the thread",
		chromedp.SendKeys(chromedp.CSS(`#conversation-reply textarea[name=text]`), "好的，十点见"),
		chromedp.Click(chromedp.CSS(`#conversation-reply button[type=submit]`)))
	b.waitText(".notice[role=status]", "已提交", false)
	b.waitText("#conversation", "【甲公司】好的，十点见", false)
	b.shot("conversation")
	b.run("what was sent to this number", chromedp.Navigate(r.url+"/outbox?number="+numA1), chromedp.WaitVisible(chromedp.CSS(`#outbox-number`)))
	b.waitText("table.list tbody", "会议改到十点", false)
	if s := b.text("table.list tbody"); !strings.Contains(s, "会议通知：明早九点") || strings.Contains(s, "快递已送达") {
		t.Errorf("发件箱 of %s: %q", numA1, s)
	}
	b.shot("outbox-number")

	// Another customer, by the last digits typed in 接收号码.
	b.run("search the outbox by number",
		chromedp.Clear(chromedp.CSS(`#outbox-search input[name=number]`)),
		chromedp.SendKeys(chromedp.CSS(`#outbox-search input[name=number]`), numA2[len(numA2)-4:]),
		chromedp.Click(chromedp.CSS(`#outbox-search button`)))
	b.waitText("table.list tbody", "快递已送达", false)
	if s := b.text("table.list tbody"); strings.Contains(s, "会议") {
		t.Errorf("发件箱 of …%s: %q", numA2[len(numA2)-4:], s)
	}

	// 回复 from 收件箱: the send form, the number in it.
	b.run("answer the reply", chromedp.Navigate(r.url+"/inbox"))
	b.run("click 回复", chromedp.Click(chromedp.CSS(`table.list tbody a.button[href="/send/group?to=`+numA1+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`textarea[name=to]`)))
	if v, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(`textarea[name=to]`))); err != nil || v != numA1 {
		t.Errorf("短信群发's numbers: %q (%v), want %s", v, err, numA1)
	}

	b.mobile()
	b.run("the outbox of a number on a phone", chromedp.Navigate(r.url+"/outbox?number="+numA1))
	b.waitText("table.list tbody", "会议改到十点", false)
	b.fits("#outbox-search")
	b.shot("outbox-number-mobile")
	b.run("the thread on a phone", chromedp.Navigate(r.url+"/conversation?number="+numA1))
	b.waitText("#conversation", "收到，十点见", false)
	b.fits("#conversation")
	b.shot("conversation-mobile")
	b.run("the inbox on a phone", chromedp.Navigate(r.url+"/inbox"))
	b.waitText("table.list tbody", "收到，十点见", false)
	b.fits("table.list")
	b.shot("inbox-answer-mobile")
}

// inOrder reports whether s holds each of parts, in this order.
func inOrder(s string, parts ...string) bool {
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}

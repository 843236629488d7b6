package console

import (
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// TestDeskRecords: 收发查询 on the desk lists an enterprise's sent messages
// (every user's) and the replies to it, narrowed to a number, and opens
// a message's detail with its parts and 为什么没有收到; a number without
// digits is refused next to the field; the enterprise's page links it.
func TestDeskRecords(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "给一号的通知", d1.Add(9*time.Hour), time.Time{})
	r.storeSentTo(numA2, "给二号的通知", d1.Add(10*time.Hour), time.Time{})
	r.storeReply(numA2, "二号的回复", time.Now())
	c := r.client()
	c.opsLogin()
	c.get("/ops/enterprises/A").wantPage(t, `id="ent-records" href="/ops/enterprises/A/records"`)

	a := c.get("/ops/enterprises/A/records")
	a.wantPage(t, "收发查询（A）", "给一号的通知", "给二号的通知", `class="on" aria-current="page">发出的短信`)
	a = c.get("/ops/enterprises/A/records?number=" + numA1[len(numA1)-4:])
	a.wantPage(t, "给一号的通知")
	if strings.Contains(a.Body, "给二号的通知") {
		t.Errorf("narrowed to %s, lists another number's:\n%s", numA1, a.Body)
	}
	id := between(a.Body, `<td data-label="接收号码"><a href="/ops/enterprises/A/records/`, `"`)
	if id == "" {
		t.Fatalf("no link to the message:\n%s", a.Body)
	}
	c.get("/ops/enterprises/A/records/"+id).wantPage(t, "短信详情", numA1, "为什么没有收到？", "分条明细",
		`<a href="/ops/enterprises/A/records">« 返回收发查询</a>`)
	if b := c.get("/ops/enterprises/A/records/" + id); strings.Contains(b.Body, "修改定时短信") {
		t.Error("the desk's detail offers the enterprise's change of a scheduled message")
	}

	// The sent box's tabs keep the number; 接收失败 lists none of these.
	a = c.get("/ops/enterprises/A/records?outcome=failed&number=" + numA1)
	a.wantPage(t, `<input type="hidden" name="outcome" value="failed">`, `class="on" aria-current="page">接收失败`,
		`href="/ops/enterprises/A/records?number=`+numA1+`&amp;outcome=received"`, `<a href="/ops/enterprises/A/records?outcome=failed">显示全部</a>`)
	if strings.Contains(a.Body, "给一号的通知") {
		t.Errorf("接收失败 lists a message not failed:\n%s", a.Body)
	}
	a = c.get("/ops/enterprises/A/records?box=inbox&number=" + numA2)
	a.wantPage(t, "二号的回复", `class="on" aria-current="page">收到的回复`, "未收取", `<input type="hidden" name="box" value="inbox">`)
	if a := c.get("/ops/enterprises/A/records?box=inbox&number=" + numA1); !strings.Contains(a.Body, "没有来自该号码的回复") {
		t.Errorf("another number's replies:\n%s", a.Body)
	}
	if a := c.get("/ops/enterprises/A/records?number=abc"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入手机号码") {
		t.Errorf("a number without digits: %d\n%s", a.Status, a.Body)
	}
	if a := c.get("/ops/enterprises/NOPE/records"); a.Status != http.StatusNotFound {
		t.Errorf("an unknown enterprise: %d", a.Status)
	}

	// 导出: the box shown, with its tab, number and dates, every page, as
	// a CSV for Excel; none for the thread.
	c.get("/ops/enterprises/A/records?number="+numA1).wantPage(t, `id="records-export" href="/ops/enterprises/A/records/export.csv?number=`+numA1+`"`)
	c.get("/ops/enterprises/A/records?box=inbox&outcome=x").wantPage(t, `id="records-export" href="/ops/enterprises/A/records/export.csv?box=inbox"`)
	if a := c.get("/ops/enterprises/A/records?box=thread&number=" + numA1); strings.Contains(a.Body, "records-export") {
		t.Error("the thread offers an export")
	}
	e := c.get("/ops/enterprises/A/records/export.csv?number=" + numA1)
	if e.Status != http.StatusOK || !strings.HasPrefix(e.Body, "\uFEFF消息ID,") || !strings.Contains(e.Body, "给一号的通知") ||
		strings.Contains(e.Body, "给二号的通知") || !strings.Contains(e.Header.Get("Content-Disposition"), `"outbox-A.csv"`) {
		t.Errorf("the sent box's export: %d %v\n%s", e.Status, e.Header, e.Body)
	}
	if e := c.get("/ops/enterprises/A/records/export.csv?outcome=failed&number=" + numA1); e.Status != http.StatusOK || strings.Contains(e.Body, "给一号的通知") {
		t.Errorf("接收失败's export: %d\n%s", e.Status, e.Body)
	}
	e = c.get("/ops/enterprises/A/records/export.csv?box=inbox")
	if e.Status != http.StatusOK || !strings.Contains(e.Body, "来自") || !strings.Contains(e.Body, "二号的回复") || !strings.Contains(e.Header.Get("Content-Disposition"), `"inbox-A.csv"`) {
		t.Errorf("the replies' export: %d %v\n%s", e.Status, e.Header, e.Body)
	}
	// A date the export cannot take goes back to the box, saying why.
	if e := c.get("/ops/enterprises/A/records/export.csv?box=inbox&from=yesterday"); e.Status != http.StatusSeeOther || !strings.HasPrefix(e.Location, "/ops/enterprises/A/records?box=inbox") {
		t.Errorf("a bad date: %d → %q", e.Status, e.Location)
	}
	// The enterprise's own detail keeps its back link and its change link.
	u := r.client()
	u.login("alice")
	u.get("/outbox/"+id).wantPage(t, "短信详情", `<a href="/outbox">« 返回发件箱</a>`)
}

// between is the text of s after the first before, up to the next after.
func between(s, before, after string) string {
	_, rest, ok := strings.Cut(s, before)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, after)
	return v
}

// TestDeskTrace: 号码查询 finds every enterprise's messages to a number
// (in any form), each naming its enterprise and linking to its detail;
// the menu has it; an empty form asks, a number without digits is
// refused next to the field.
func TestDeskTrace(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "甲发给一号", d1.Add(9*time.Hour), time.Time{})
	r.storeSentTo(numA2, "甲发给二号", d1.Add(10*time.Hour), time.Time{})
	if err := r.store.Enqueue(t.Context(), &queue.Message{Account: "bob", Enterprise: "B", Upstream: "sim", Source: "1065750002", Dest: numA1,
		Text: "【乙公司】乙发给一号", AcceptedAt: d1.Add(11 * time.Hour), Parts: []queue.Part{{Body: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	c.opsLogin()
	c.get("/ops/").wantPage(t, `href="/ops/trace">号码查询</a>`)
	c.get("/ops/trace").wantPage(t, `id="trace-search"`)
	a := c.get("/ops/trace?number=" + url.QueryEscape("+86 "+numA1))
	a.wantPage(t, "甲发给一号", "乙发给一号", `<a href="/ops/enterprises/B">B</a>`, `<a href="/ops/enterprises/A">A</a>`, `href="/ops/enterprises/B/records/`)
	if strings.Contains(a.Body, "甲发给二号") || !inOrder(a.Body, "乙发给一号", "甲发给一号") {
		t.Errorf("the trace of %s:\n%s", numA1, a.Body)
	}
	id := between(a.Body, `href="/ops/enterprises/B/records/`, `"`)
	c.get("/ops/enterprises/B/records/"+id).wantPage(t, "乙发给一号", "为什么没有收到？")
	if a := c.get("/ops/trace?number=abc"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入手机号码") {
		t.Errorf("a number without digits: %d", a.Status)
	}
	if a := c.get("/ops/trace?number=13000000000"); !strings.Contains(a.Body, "没有发给该号码的短信") {
		t.Errorf("a number nobody sent to:\n%s", a.Body)
	}

	// 该号码的回复: every enterprise's, with its opt-outs (one replied TD
	// to B), as the owner who "replied TD and still gets messages" asks.
	a.wantPage(t, "退订记录：该号码不在任何企业的退订名单中")
	r.storeReply(numA1, "收到", d1.Add(12*time.Hour))
	td := &queue.MO{Enterprise: "B", Source: "86" + numA1, Dest: "1065750002", Text: "TD", Upstream: "sim", ReceivedAt: d1.Add(13 * time.Hour), OptOut: true}
	if err := r.store.StoreMO(t.Context(), td); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.OptOut("B", numA1, td.ID, td.ReceivedAt); err != nil {
		t.Fatal(err)
	}
	a = c.get("/ops/trace?box=replies&number=" + numA1)
	a.wantPage(t, `class="on" aria-current="page">该号码的回复`, `<input type="hidden" name="box" value="replies">`, `id="optouts"`,
		`<td data-label="企业"><a href="/ops/enterprises/B">B</a></td>`, `href="/ops/enterprises/B/records?box=inbox&amp;number=`+numA1+`"`)
	if !inOrder(a.Body, `id="trace"`, ">TD <span class=\"badge wait\" title=\"这条回复是退订", ">收到<") || strings.Contains(a.Body, "甲发给一号") {
		t.Errorf("the replies of %s:\n%s", numA1, a.Body)
	}
	// A's customer asked A by phone: on A's list by hand, no reply to see.
	if _, err := r.pol.AddOptOuts(policy.Actor{Enterprise: "A", Name: "甲", Admin: true}, "A", []string{numA1}); err != nil {
		t.Fatal(err)
	}
	c.get("/ops/trace?box=replies&number="+numA1).wantPage(t, `<td data-label="企业"><a href="/ops/enterprises/A">A</a></td>`,
		"<td data-label=\"来源\">企业手工添加（甲）</td>")
	// A complaint about B reached the operator: 号码查询 puts the number on B's
	// list; one already there, or no enterprise, says so.
	if err := r.pol.RemoveOptOut(policy.Actor{Enterprise: "B", Admin: true}, "B", numA1); err != nil {
		t.Fatal(err)
	}
	page := "/ops/trace?box=replies&number=" + numA1
	c.get(page).wantPage(t, `action="/ops/trace/optout"`, `name="number" value="`+numA1+`"`)
	a = c.submit(page, "/ops/trace/optout", url.Values{"number": {numA1}, "enterprise": {"B"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("add to B's list: %d %s", a.Status, a.Body)
	}
	c.get(a.Location).wantPage(t, "已将 "+numA1+" 加入 B 的退订名单", "<td data-label=\"来源\">运营方添加</td>")
	if !r.pol.OptedOut("B", "+86"+numA1) {
		t.Error("not on B's list")
	}
	a = c.submit(page, "/ops/trace/optout", url.Values{"number": {numA1}, "enterprise": {"B"}})
	c.get(a.Location).wantPage(t, numA1+" 已在 B 的退订名单中")
	a = c.submit(page, "/ops/trace/optout", url.Values{"number": {numA1}, "enterprise": {"NOPE"}})
	c.get(a.Location).wantPage(t, "未加入：")
	// B's own list says the operator put it there.
	bob := r.client()
	bob.login("bob")
	bob.get("/optouts").wantPage(t, "运营方添加（客户投诉）")
	if a := c.get("/ops/trace?box=replies&number=" + numA1[len(numA1)-4:]); !strings.Contains(a.Body, "输入完整的手机号码可查看") || !strings.Contains(a.Body, ">TD <span") {
		t.Errorf("the replies of last digits:\n%s", a.Body)
	}
	if a := c.get("/ops/trace?box=replies&number=13000000000"); !strings.Contains(a.Body, "没有该号码的回复") {
		t.Errorf("a number that replied nothing:\n%s", a.Body)
	}
}

// TestDeskThread: 收发查询's 往来记录 shows one number's messages from the
// enterprise and its replies in one thread, oldest first, each message
// linking to its detail; without a number it asks for one.
func TestDeskThread(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "请确认到访时间", d1.Add(9*time.Hour), time.Time{})
	r.storeReply(numA1, "下午两点", d1.Add(10*time.Hour))
	r.storeSentTo(numA2, "别人的", d1.Add(11*time.Hour), time.Time{})
	c := r.client()
	c.opsLogin()
	c.get("/ops/enterprises/A/records?box=thread").wantPage(t, "输入手机号码，查看该企业发给它的短信与它的回复", `class="on" aria-current="page">往来记录`)
	a := c.get("/ops/enterprises/A/records?box=thread&number=" + numA1)
	a.wantPage(t, `id="records-thread"`, `href="/ops/enterprises/A/records/`, "SMPP 未收取", `<input type="hidden" name="box" value="thread">`)
	if !inOrder(a.Body, "请确认到访时间", "下午两点") || strings.Contains(a.Body, "别人的") {
		t.Errorf("the thread with %s:\n%s", numA1, a.Body)
	}
	if strings.Contains(a.Body, `id="thread-pager"`) {
		t.Error("a thread of one page offers another")
	}
	// More than a page: 更早的记录 on the desk's thread too, the box kept.
	for i := range conversationPage {
		r.storeSentTo(numA1, "群发"+strconv.Itoa(i), d1.Add(12*time.Hour+time.Duration(i)*time.Second), time.Time{})
	}
	a = c.get("/ops/enterprises/A/records?box=thread&number=" + numA1)
	older := html.UnescapeString(between(a.Body, `rel="next" href="`, `"`))
	if !strings.HasPrefix(older, "/ops/enterprises/A/records?box=thread&") || strings.Contains(a.Body, "下午两点") {
		t.Fatalf("a cut thread's link to the earlier page %q:\n%s", older, a.Body)
	}
	b := c.get(older)
	b.wantPage(t, "请确认到访时间", "下午两点", "回到最新")
	if strings.Contains(b.Body, "】群发") || strings.Contains(b.Body, `rel="next"`) {
		t.Errorf("the earlier page:\n%s", b.Body)
	}
}

package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
)

// TestOptOutsPage: 退订名单 lists the enterprise's opted-out numbers (not
// another enterprise's), finds one in any form, says when a number is
// not on it, and pages a long list; a plain user cannot remove; an admin
// removes a number only once the customer's consent is ticked, after
// which sends to it go out again.
func TestOptOutsPage(t *testing.T) {
	r := newRig(t)
	t0 := time.Now().Add(-time.Hour)
	for i, n := range []string{numA1, numA2} {
		if _, err := r.pol.OptOut("A", n, uint64(i+1), t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.pol.OptOut("B", numA3, 3, t0); err != nil {
		t.Fatal(err)
	}
	u := r.client()
	u.login("alice")
	a := u.get("/optouts")
	a.wantPage(t, `href="/optouts" class="on">退订名单</a>`, `id="optouts-export" href="/optouts/export.csv"`, ">"+numA1+"<", ">"+numA2+"<", `href="/conversation?number=`+numA1+`"`)
	if strings.Contains(a.Body, numA3) || strings.Contains(a.Body, ">移出名单</button>") {
		t.Errorf("a user's list: another enterprise's number, or a remove button:\n%s", a.Body)
	}
	a = u.get("/optouts?number=" + url.QueryEscape("+86 137-1234-5678"))
	if rows(a, "手机号码") != 1 || !strings.Contains(a.Body, ">"+numA1+"<") || strings.Contains(a.Body, numA2) {
		t.Errorf("the search of %s:\n%s", numA1, a.Body)
	}
	u.get("/optouts?number="+numA3).wantPage(t, numA3+" 不在本企业的退订名单中")
	if a := u.get("/optouts?number=5678"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入完整的手机号码") {
		t.Errorf("last digits: %d\n%s", a.Status, a.Body)
	}
	// 导出: the whole list, for Excel.
	a = u.get("/optouts/export.csv")
	if a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "\uFEFF手机号码,退订时间,退订回复编号,手工添加人\n") || !strings.Contains(a.Body, "\n"+numA1+",") ||
		!strings.Contains(a.Body, "\n"+numA2+",") || strings.Contains(a.Body, numA3) {
		t.Errorf("the export: %d\n%s", a.Status, a.Body)
	}
	// A send to an opted-out number is refused, the row linking to its
	// entry on the list.
	a = u.submit("/send/group", "/send/group", url.Values{"to": {numA2}, "text": {"通知"}})
	a.wantPage(t, "被拒绝的号码", `href="/optouts?number=`+numA2+`"`, "查看退订记录")
	// A plain user's remove is the API's refusal, shown; nothing removed.
	u.submit("/optouts", "/optouts/remove", url.Values{"number": {numA1}, "consent": {"yes"}})
	u.get("/optouts").wantPage(t, "未移出：", ">"+numA1+"<")

	// The admin: without the consent ticked, nothing; with it, removed.
	c := r.client()
	c.login("amy")
	c.get("/optouts").wantPage(t, "移出名单", `name="consent" value="yes" required`)
	c.submit("/optouts", "/optouts/remove", url.Values{"number": {numA1}})
	if a := c.get("/optouts"); !strings.Contains(a.Body, "未移出：请先确认") || !strings.Contains(a.Body, ">"+numA1+"<") {
		t.Errorf("a remove without consent:\n%s", a.Body)
	}
	a = c.submit("/optouts", "/optouts/remove", url.Values{"number": {numA1}, "consent": {"yes"}})
	if a.Status != http.StatusSeeOther || a.Location != "/optouts" {
		t.Fatalf("the remove: %d → %q", a.Status, a.Location)
	}
	if a := c.get("/optouts"); !strings.Contains(a.Body, "已将 "+numA1+" 移出退订名单") || rows(a, "手机号码") != 1 {
		t.Errorf("after the remove:\n%s", a.Body)
	}
	if r.pol.OptedOut("A", "+86"+numA1) || !r.pol.OptedOut("A", "+86"+numA2) {
		t.Error("the policy's list after the remove")
	}

	// A long list pages by number.
	for i := range optOutsPage + 5 {
		if _, err := r.pol.OptOut("A", fmt.Sprintf("1380000%04d", i), 10, t0); err != nil {
			t.Fatal(err)
		}
	}
	a = c.get("/optouts")
	next := unamp(between(a.Body, `rel="next" href="`, `"`))
	if rows(a, "手机号码") != optOutsPage || !strings.HasPrefix(next, "/optouts?after=") {
		t.Fatalf("the first page: %d rows, next %q", rows(a, "手机号码"), next)
	}
	a = c.get(next)
	if n := rows(a, "手机号码"); n != 6 || !strings.Contains(a.Body, "回到第一页") || strings.Contains(a.Body, `rel="next"`) {
		t.Errorf("the second page: %d rows, want 6 (%d in all)\n%s", n, optOutsPage+6, a.Body)
	}
}

// TestBrowserOptOuts: an admin opens 退订名单 from the menu, finds the
// customer who asked to receive messages again, ticks the consent and
// takes the number off; the list says so. On a phone the table and the
// form fit the screen.
func TestBrowserOptOuts(t *testing.T) {
	r := newRig(t)
	for i, n := range []string{numA1, numA2} {
		if _, err := r.pol.OptOut("A", n, uint64(i+1), time.Now().Add(-time.Duration(i+1)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t)
	b.login(r.url, "amy")
	b.run("open 退订名单", chromedp.Click(chromedp.CSS(`nav.side a[href="/optouts"]`)), chromedp.WaitVisible(chromedp.CSS(`#optouts`)))
	if s := b.text("#optouts tbody"); !strings.Contains(s, numA1) || !strings.Contains(s, numA2) {
		t.Fatalf("the list: %q", s)
	}
	b.shot("optouts")
	b.run("find the customer",
		chromedp.SendKeys(chromedp.CSS(`#optouts-search input[name=number]`), "+86 "+numA1),
		chromedp.Click(chromedp.CSS(`#optouts-search button`)))
	b.waitText("#optouts-search", "显示全部", false) // the search's page, not the list's
	if s := b.text("#optouts tbody"); !strings.Contains(s, numA1) || strings.Contains(s, numA2) {
		t.Fatalf("the search: %q", s)
	}
	b.run("take it off, with the consent",
		chromedp.Click(chromedp.CSS(`#optouts input[name=consent]`)),
		chromedp.Click(chromedp.CSS(`#optouts button[type=submit]`)))
	b.waitText(".notice[role=status]", "移出退订名单", false)
	if s := b.text("#optouts tbody"); strings.Contains(s, numA1) || !strings.Contains(s, numA2) {
		t.Errorf("the list after the remove: %q", s)
	}
	if r.pol.OptedOut("A", "+86"+numA1) {
		t.Error("still opted out in the policy")
	}
	b.run("add two by hand",
		chromedp.Click(chromedp.CSS(`#optouts-add-card summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#optouts-add textarea`)),
		chromedp.SendKeys(chromedp.CSS(`#optouts-add textarea`), numA1+"\n"+numA3),
		chromedp.Click(chromedp.CSS(`#optouts-add button[type=submit]`)))
	b.waitText(".notice[role=status]", "新加入退订名单 2 个", false)
	if s := b.text("#optouts tbody"); strings.Count(s, "手工添加") != 2 {
		t.Errorf("the list after adding: %q", s)
	}
	b.shot("optouts-added")
	b.mobile()
	b.run("the list on a phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#optouts`)))
	b.fits("#optouts")
	b.fits("#optouts-search")
	b.shot("optouts-mobile")
}

// TestStoppedForOptOut: a scheduled message whose number replied TD before
// its time is not sent; its detail says why, not FAQ 6's causes, and
// links to the number's opt-out (the enterprise's list; the desk's 号码查询).
func TestStoppedForOptOut(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	if _, err := r.pol.OptOut("A", numA1, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	mine, desk := stoppedAtItsTime(t, r, key, id, "opted_out")
	mine.wantPage(t, "对方在这条短信发出之前已退订", "本平台的错误码：opted_out（该号码已退订）", `href="/optouts?number=`+numA1+`"`, "没有发出的短信不收费")
	desk.wantPage(t, "对方在这条短信发出之前已退订", `href="/ops/trace?number=`+numA1+`"`)
}

// stoppedAtItsTime moves alice's scheduled message id to now and waits
// for qxtd to stop it, rejected with the error code, unsent; it returns
// the message's detail as alice and as the desk see it, having checked
// that alice's lists none of FAQ 6's causes (they are the SMSC's).
func stoppedAtItsTime(t *testing.T, r *rig, key, id, code string) (mine, desk answer) {
	t.Helper()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.gw.Reschedule(t.Context(), &gateway.Account{SystemID: "alice", Enterprise: "A"}, n, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	if m := r.waitState(key, id, "rejected"); m.ErrorCode != code {
		t.Fatalf("error code %q, want %s", m.ErrorCode, code)
	}
	c := r.client()
	c.login("alice")
	mine = c.get("/outbox/" + id)
	if strings.Contains(mine.Body, "常见原因") {
		t.Error("FAQ 6's causes listed for a message qxtd held back")
	}
	d := r.client()
	d.opsLogin()
	return mine, d.get("/ops/enterprises/A/records/" + id)
}

// TestOptOutsAddedByHand: a plain user puts numbers on 退订名单 by hand,
// one (back to its entry with a notice), several (each row accounted
// for), or from a file; the list says who added each, and sends to them
// are refused.
func TestOptOutsAddedByHand(t *testing.T) {
	r := newRig(t)
	u := r.client()
	u.login("alice")
	u.get("/optouts").wantPage(t, "添加退订号码", `action="/optouts"`, `action="/optouts/import?csrf=`, "退订名单是空的")
	a := u.submit("/optouts", "/optouts", url.Values{"numbers": {numA1}})
	if a.Status != http.StatusSeeOther || !strings.Contains(a.Location, "number="+numA1) {
		t.Fatalf("one number: %d %s", a.Status, a.Location)
	}
	u.get(a.Location).wantPage(t, "已将 "+numA1+" 加入退订名单", "手工添加（", `href="/conversation?number=`+numA1+`"`)
	a = u.submit("/optouts", "/optouts", url.Values{"numbers": {numA2 + "\n" + numA1 + "\n5678"}})
	a.wantStatus(t, http.StatusOK, "已提交 3 个号码：新加入退订名单 1 个，1 个已在名单中，1 个有误。", `id="optouts-result"`,
		"号码已在退订名单中或与前面的行重复", "5678", "起已在退订名单中）", "：不是有效的中国号码）")
	a = booksUpload(u, "/optouts", "/optouts/import", "old.csv", "手机号码\n"+numA3+"\n"+numA2+"\n")
	a.wantStatus(t, http.StatusOK, "导入完成：读取 2 个号码：新加入退订名单 1 个，1 个已在名单中，0 个有误。")
	if n := strings.Count(u.get("/optouts").Body, "手工添加（"); n != 3 {
		t.Errorf("%d entries say they were added by hand, want 3", n)
	}
	c := &api.Client{Base: r.url, Token: r.apiKey("alice")}
	var out api.SendResponse
	if err := c.DoContext(t.Context(), http.MethodPost, "/v1/messages", api.SendRequest{To: []string{numA1, numA2, numA3}, Text: "促销"}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 3 {
		t.Fatalf("send: %+v", out)
	}
	for _, res := range out.Results {
		if res.Status != "refused" || res.Reason != "opted_out" {
			t.Errorf("send to %s: %+v", res.To, res)
		}
	}
	// One that is no number: back to the form, the input kept.
	a = u.submit("/optouts", "/optouts", url.Values{"numbers": {"5678"}})
	if a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Body, ">5678</textarea>") {
		t.Errorf("an invalid number: %d\n%s", a.Status, a.Body)
	}
}

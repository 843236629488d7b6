package console

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/gateway"
)

// TestHeldWhileDisabled: the desk disables A while a message of it
// waits; when the message comes due it is 暂停发送 in 收发查询's 发送中
// and on its detail (why, the code, not charged), the enterprise's page
// says what happens to such messages, and once the desk enables A again
// the message is delivered.
func TestHeldWhileDisabled(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	d := r.client()
	d.opsLogin()
	d.submit("/ops/enterprises/A", "/ops/enterprises/A/state", url.Values{"disabled": {"true"}}).wantRedirect(t, "/ops/enterprises/A")
	d.get("/ops/enterprises/A").wantPage(t, "尚未发出的短信暂停发送", `id="ent-held"`, `href="/ops/enterprises/A/records?outcome=pending"`)
	detail := "/ops/enterprises/A/records/" + id
	d.get(detail).wantPage(t, "定时待发", "停用期间这条短信不会发出")
	if err := r.gw.Reschedule(t.Context(), &gateway.Account{SystemID: "alice", Enterprise: "A"}, n, time.Now(), ""); err != nil {
		t.Fatal(err)
	}
	a := d.get(detail)
	a.wantPage(t, "暂停发送：企业账号已被停用", "本平台的错误码：account_disabled（账号已停用（企业或用户））", "没有发出的短信不收费")
	if strings.Contains(a.Body, "等待发送") {
		t.Error("a held message's part says 等待发送")
	}
	d.get("/ops/enterprises/A/records?outcome=pending").wantPage(t, ">暂停发送</a>")
	// 导出 says so too: its state, and why in the last column.
	x := d.get("/ops/enterprises/A/records/export.csv?outcome=pending")
	x.wantStatus(t, 200, "暂停原因", id)
	if rows := strings.Split(strings.TrimSpace(x.Body), "\n"); len(rows) != 2 || !strings.Contains(rows[1], "暂停发送") || !strings.HasSuffix(strings.TrimSpace(rows[1]), "账号已停用（企业或用户）") {
		t.Errorf("the export of 发送中: %q", rows)
	}
	d.submit("/ops/enterprises/A", "/ops/enterprises/A/state", url.Values{"disabled": {"false"}}).wantRedirect(t, "/ops/enterprises/A")
	d.get("/ops/enterprises/A").wantPage(t, "暂停发送的短信继续发出")
	if strings.Contains(d.get("/ops/enterprises/A").Body, `id="ent-drop-held"`) {
		t.Error("an enabled enterprise offers to drop held messages")
	}
	r.waitState(key, id, "delivered")
	d.get(detail).wantPage(t, "接收成功")
}

// TestDeskDropsHeld: the desk drops what disabled A holds, once its box
// is ticked: the message ends rejected account_disabled (not charged),
// the page says when they were dropped, and enabling A sends nothing of
// it.
func TestDeskDropsHeld(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	d := r.client()
	d.opsLogin()
	d.submit("/ops/enterprises/A", "/ops/enterprises/A/state", url.Values{"disabled": {"true"}}).wantRedirect(t, "/ops/enterprises/A")
	d.get("/ops/enterprises/A").wantPage(t, `id="ent-drop-held"`, `action="/ops/enterprises/A/held/drop"`, "放弃暂停发送的短信")
	a := d.submit("/ops/enterprises/A", "/ops/enterprises/A/held/drop", url.Values{})
	a.wantRedirect(t, "/ops/enterprises/A")
	d.get(a.Location).wantPage(t, "未放弃：请先勾选确认。")
	if e, _ := r.pol.Lookup("A"); !e.HeldDropped.IsZero() {
		t.Fatal("dropped without the box ticked")
	}
	d.submit("/ops/enterprises/A", "/ops/enterprises/A/held/drop", url.Values{"confirm": {"yes"}}).wantRedirect(t, "/ops/enterprises/A")
	a = d.get("/ops/enterprises/A")
	a.wantPage(t, `id="ent-dropped"`, "放弃该企业暂停发送的短信")
	if strings.Contains(a.Body, `id="ent-held"`) || strings.Contains(a.Body, `id="ent-drop-held"`) {
		t.Error("after the drop the page still says the messages go once enabled, or offers the drop again")
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := r.gw.Message(&gateway.Account{SystemID: "alice", Enterprise: "A"}, n)
		if err != nil {
			t.Fatal(err)
		}
		if m.State().String() == "rejected" {
			if m.Parts[0].ErrCode != "account_disabled" {
				t.Errorf("the dropped message's error %q, want account_disabled", m.Parts[0].ErrCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dropped message is %s", m.State())
		}
		time.Sleep(20 * time.Millisecond) // polling the store, with a deadline: no event to wait on
	}
	detail := "/ops/enterprises/A/records/" + id
	d.get(detail).wantPage(t, "account_disabled（账号已停用（企业或用户））", "不收费")
	d.submit("/ops/enterprises/A", "/ops/enterprises/A/state", url.Values{"disabled": {"false"}}).wantRedirect(t, "/ops/enterprises/A")
	if e, _ := r.pol.Lookup("A"); !e.HeldDropped.IsZero() {
		t.Error("enabling A kept the drop")
	}
	d.get(detail).wantPage(t, "被拒绝")
}

// TestBrowserHeldAndStopped: in Chromium, a message stopped because its
// number opted out says so on the sender's detail page; the desk disables
// A with its button, and a message of A that comes due is 暂停发送 in
// 收发查询's 发送中, and its detail says why.
func TestBrowserHeldAndStopped(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	later := time.Now().Add(24 * time.Hour).Format(time.RFC3339)
	ids := r.apiSend(key, api.SendRequest{To: []string{numA1, numA2}, Text: "周末大促，全场八折", SendAt: later})
	acct := &gateway.Account{SystemID: "alice", Enterprise: "A"}
	now := func(id string) {
		t.Helper()
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.gw.Reschedule(t.Context(), acct, n, time.Now(), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.pol.OptOut("A", numA1, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	now(ids[0])
	r.waitState(key, ids[0], "rejected")
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("the stopped message", chromedp.Navigate(r.url+"/outbox/"+ids[0]))
	b.waitText("main", "对方在这条短信发出之前", false)
	b.shot("outbox-optedout")

	d := newBrowser(t)
	d.opsLogin(r.url + "/ops/enterprises/A")
	d.waitText("#ent-state", "正常", false)
	d.run("停用", chromedp.Click(chromedp.CSS(`#ent-toggle button[type=submit]`)))
	d.waitText("#ent-state", "已停用", false)
	d.waitText("#ent-held", "暂停发送", false)
	d.shot("ops-enterprise-disabled")
	now(ids[1])
	d.run("its messages waiting", chromedp.Click(chromedp.CSS(`#ent-held a`)))
	d.waitText("#records tbody", "暂停发送", false)
	d.shot("ops-records-held")
	d.run("open the held one", chromedp.Click(chromedp.CSS(`#records tbody td[data-label="状态"] a`)))
	d.waitText("main", "暂停发送：企业账号已被停用", false)
	d.shot("ops-record-held")
	d.mobile()
	d.run("the held one on a phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`main`)))
	d.waitText("main", "暂停发送：企业账号已被停用", false)
	d.fits("main")
	d.shot("ops-record-held-mobile")
}

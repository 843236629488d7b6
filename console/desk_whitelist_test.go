package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// TestDeskWhitelist: from an enterprise's page the desk lists its
// whitelist, finds one number, and rejects an approved entry (its reason
// required) — alice's message still waiting for it is then not sent —
// and approves it again.
func TestDeskWhitelist(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	d := r.client()
	d.opsLogin()
	d.get("/ops/enterprises/A").wantPage(t, `id="ent-whitelist"`, `href="/ops/enterprises/A/whitelist"`)
	list := d.get("/ops/enterprises/A/whitelist")
	list.wantPage(t, `id="ops-whitelist"`, numA1, numA2, numA3, "已通过")
	d.get("/ops/enterprises/A/whitelist?number=13600136000").wantPage(t, "13600136000 不在该企业的白名单中")
	d.get("/ops/enterprises/A/whitelist?number=abc").wantPage(t, "请输入 11 位手机号码")
	one := d.get("/ops/enterprises/A/whitelist?number=" + numA2)
	one.wantPage(t, `id="wl-`+numA2+`"`, `value="reject"`)
	if strings.Contains(one.Body, numA1) {
		t.Error("the look-up of one number lists another")
	}
	back := "/ops/enterprises/A/whitelist?number=" + numA2
	a := d.submit(back, "/ops/enterprises/A/whitelist/decide", url.Values{"number": {numA2}, "decision": {"reject"}})
	a.wantRedirect(t, back)
	d.get(a.Location).wantPage(t, "未拒绝：请填写拒绝原因")
	if st, _ := r.pol.WhitelistStatus("A", "+86"+numA2); st != policy.WhitelistApproved {
		t.Fatalf("rejected without a reason: %v", st)
	}
	a = d.submit(back, "/ops/enterprises/A/whitelist/decide", url.Values{"number": {numA2}, "decision": {"reject"}, "reason": {"客户投诉从未同意接收"}})
	a.wantRedirect(t, back)
	d.get(a.Location).wantPage(t, "已拒绝 "+numA2, "还没有发出的短信也不再发出", "拒绝原因：客户投诉从未同意接收", `value="approve"`)
	if st, _ := r.pol.WhitelistStatus("A", "+86"+numA2); st != policy.WhitelistRejected {
		t.Fatalf("after the desk's reject: %v", st)
	}
	mine, _ := stoppedAtItsTime(t, r, key, id, "not_whitelisted")
	mine.wantPage(t, "白名单审批被客户经理改为拒绝")
	a = d.submit(back, "/ops/enterprises/A/whitelist/decide", url.Values{"number": {numA2}, "decision": {"approve"}})
	d.get(a.Location).wantPage(t, "已通过 "+numA2)
	if st, _ := r.pol.WhitelistStatus("A", "+86"+numA2); st != policy.WhitelistApproved {
		t.Errorf("after the desk's approve: %v", st)
	}
	if a := d.submit(back, "/ops/enterprises/A/whitelist/decide", url.Values{"number": {numA2}, "decision": {"delete"}}); a.Status != http.StatusNotFound {
		t.Errorf("an unknown decision: %d", a.Status)
	}
}

// TestBrowserDeskWhitelist: in Chromium the desk goes from an
// enterprise's page to its whitelist, rejects an approved number with a
// reason, and the page says so; on a phone the list fits.
func TestBrowserDeskWhitelist(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "周末大促", SendAt: time.Now().Add(24 * time.Hour).Format(time.RFC3339)})[0]
	d := newBrowser(t)
	d.opsLogin(r.url + "/ops/enterprises/A")
	d.run("白名单 查看、审批", chromedp.Click(chromedp.CSS(`#ent-whitelist`)))
	d.waitText("#ops-whitelist", numA2, false)
	d.shot("ops-whitelist")
	row := `#wl-` + numA2
	d.run("reject with a reason",
		chromedp.SendKeys(chromedp.CSS(row+` input[name=reason]`), "客户投诉从未同意接收"),
		chromedp.Click(chromedp.CSS(row+` button[value=reject]`)))
	d.waitText(".notice[role=status]", "已拒绝 "+numA2, false)
	d.waitText(row, "拒绝原因：客户投诉从未同意接收", false)
	d.shot("ops-whitelist-rejected")
	if st, _ := r.pol.WhitelistStatus("A", "+86"+numA2); st != policy.WhitelistRejected {
		t.Errorf("after the reject: %v", st)
	}
	d.mobile()
	d.run("the list on a phone", chromedp.Navigate(r.url+"/ops/enterprises/A/whitelist"), chromedp.WaitVisible(chromedp.CSS(`#ops-whitelist`)))
	d.fits("#ops-whitelist")
	d.shot("ops-whitelist-mobile")

	// alice's message waiting for it is not sent, and its detail says why.
	stoppedAtItsTime(t, r, key, id, "not_whitelisted")
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.mobile()
	b.run("the stopped message on a phone", chromedp.Navigate(r.url+"/outbox/"+id))
	b.waitText("main", "已从本企业的白名单中删除", false)
	b.fits("main")
	b.shot("outbox-unlisted-mobile")
}

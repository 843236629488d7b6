package console

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
	"github.com/qxtd/qxtd/smpp"
)

// apiKey issues an API key of systemID, as the daemon's operator would.
func (r *rig) apiKey(systemID string) string {
	r.t.Helper()
	k, err := r.pol.IssueAPIKey(policy.OperatorActor("test"), systemID)
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

// apiSend sends through the HTTP API with key, as a program of the
// enterprise would; it returns the message ids.
func (r *rig) apiSend(key string, req api.SendRequest) []string {
	r.t.Helper()
	return r.apiPost(key, "/v1/messages", req)
}

// apiSendEach sends text to each of to as a message of its own (a
// personalized send: a number named twice gets two).
func (r *rig) apiSendEach(key string, to []string, text string) []string {
	r.t.Helper()
	req := api.PersonalizedRequest{}
	for _, n := range to {
		req.Messages = append(req.Messages, api.PersonalMessage{To: n, Text: text})
	}
	return r.apiPost(key, "/v1/messages/personalized", req)
}

func (r *rig) apiPost(key, path string, req any) []string {
	r.t.Helper()
	c := &api.Client{Base: r.url, Token: key}
	var out api.SendResponse
	if err := c.DoContext(context.Background(), http.MethodPost, path, req, &out); err != nil {
		r.t.Fatalf("send: %v", err)
	}
	var ids []string
	for _, res := range out.Results {
		if res.Status != "accepted" {
			r.t.Fatalf("send refused: %+v", res)
		}
		ids = append(ids, res.ID)
	}
	return ids
}

// waitState waits until message id (of key's user) is in state.
func (r *rig) waitState(key, id, state string) api.Message {
	r.t.Helper()
	c := &api.Client{Base: r.url, Token: key}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var m api.Message
		if err := c.DoContext(context.Background(), http.MethodGet, "/v1/messages/"+id, nil, &m); err != nil {
			r.t.Fatal(err)
		}
		if m.State == state {
			return m
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("message %s is %s, want %s", id, m.State, state)
		}
		<-tick.C
	}
}

// injectMO sends a reply from a handset to dest through the SMSC.
func (r *rig) injectMO(from, dest, text string) {
	r.t.Helper()
	if err := r.sim.InjectMO(from, dest, text); err != nil {
		r.t.Fatalf("inject: %v", err)
	}
}

func TestHomePage(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "首页可见"})[0]
	r.waitState(key, id, "delivered")
	c := r.client()
	c.login("alice")
	c.get("/").wantPage(t, "本月用量", "已计费 <b>1</b> / 包含 1700 条", "套餐 3",
		`href="/send/group"`, `href="/outbox"`, `href="/whitelist"`, "首页可见", `href="/outbox/`+id+`"`, "接收成功")
}

func TestOutboxTabsAndPaging(t *testing.T) {
	r := newRig(t)
	r.sim.SetFaults(smpp.Faults{UndelivPrefix: numA2[:4]})
	key := r.apiKey("alice")
	ok := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "收到了"})[0]
	bad := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "收不到"})[0]
	r.waitState(key, ok, "delivered")
	r.waitState(key, bad, "undeliverable")
	c := r.client()
	c.login("alice")
	all := c.get("/outbox")
	all.wantPage(t, "收到了", "收不到", `href="/outbox?outcome=failed"`, `class="on" aria-current="page">全部`)
	a := c.get("/outbox?outcome=received")
	a.wantPage(t, "收到了", `aria-current="page">接收成功`)
	if strings.Contains(a.Body, "收不到") {
		t.Errorf("接收成功 lists the failed message")
	}
	a = c.get("/outbox?outcome=failed")
	a.wantPage(t, "收不到", "接收失败")
	if strings.Contains(a.Body, "收到了") {
		t.Errorf("接收失败 lists the delivered message")
	}
	a = c.get("/outbox?outcome=pending")
	a.wantPage(t, "没有记录")
	if a = c.get("/outbox?outcome=bogus"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "输入有误") {
		t.Errorf("unknown tab: %d", a.Status)
	}

	// 51 more: two pages of 50, the second reached by 下一页.
	to := make([]string, 51)
	for i := range to {
		to[i] = numA3
	}
	r.apiSendEach(key, to, "分页")
	a = c.get("/outbox")
	a.wantPage(t, "下一页")
	if n := strings.Count(a.Body, `<td data-label="接收号码">`); n != 50 {
		t.Errorf("first page: %d rows, want 50", n)
	}
	m := regexpNext.FindStringSubmatch(a.Body)
	if m == nil {
		t.Fatal("no 下一页 link")
	}
	a = c.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	a.wantPage(t, "回到第一页", "收到了", "收不到")
	if n := strings.Count(a.Body, `<td data-label="接收号码">`); n != 3 || strings.Contains(a.Body, "下一页") {
		t.Errorf("second page: %d rows, want 3 and no 下一页", n)
	}
}

func TestMessageDetailWhy(t *testing.T) {
	r := newRig(t)
	r.sim.SetFaults(smpp.Faults{UndelivPrefix: numA2[:4]})
	key := r.apiKey("alice")
	ok := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "你好", Receipt: true})[0]
	bad := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "你好"})[0]
	okm := r.waitState(key, ok, "delivered")
	r.waitState(key, bad, "undeliverable")
	c := r.client()
	c.login("alice")
	c.get("/outbox/"+ok).wantPage(t, "短信详情", ok, numA1, "【甲公司】你好", "接收成功", "已请求",
		"为什么没有收到？", stateWhy["delivered"], "这条短信计 1 条", "<code>"+okm.Parts[0].SMSCID+"</code>", "分条明细")
	a := c.get("/outbox/" + bad)
	a.wantPage(t, "接收失败", stateWhy["undeliverable"], "001（号码无法送达", "手机内存已满", "屏蔽了短信",
		"没有向该号码发送的权限", "不收费")
	if strings.Contains(a.Body, "这条短信计") {
		t.Errorf("a failed message is said to be charged")
	}

	// Another enterprise's message, and one that does not exist: the 404 page.
	b := r.client()
	b.login("bob")
	for _, path := range []string{"/outbox/" + ok, "/outbox/99999999", "/outbox/x"} {
		if a := b.get(path); a.Status != http.StatusNotFound || !strings.Contains(a.Body, "未找到") || strings.Contains(a.Body, "你好") {
			t.Errorf("bob GET %s: %d, want the 404 page", path, a.Status)
		}
	}
}

// TestWhyTable: every state has its words, failures list FAQ 6's causes
// and are not charged, the error codes are explained.
func TestWhyTable(t *testing.T) {
	for _, st := range []string{"accepted", "submitted", "delivered", "undeliverable", "expired", "rejected", "unknown", "cancelled"} {
		if stateWhy[st] == "" || partStateZH[st] == "" {
			t.Errorf("state %s has no words", st)
		}
		w := whyFor(api.Message{State: st, StateZH: "x", Segments: 2})
		failed := st == "undeliverable" || st == "expired" || st == "rejected" || st == "unknown"
		if w.Failed != failed || (len(w.Causes) > 0) != failed {
			t.Errorf("%s: failed %v causes %d", st, w.Failed, len(w.Causes))
		}
		if failed && !strings.Contains(w.Charge, "不收费") {
			t.Errorf("%s: charge %q", st, w.Charge)
		}
		if st == "delivered" && !strings.Contains(w.Charge, "计 2 条") {
			t.Errorf("delivered: charge %q", w.Charge)
		}
	}
	if w := whyFor(api.Message{State: "accepted", Scheduled: true}); !strings.Contains(w.Verdict, "定时待发") {
		t.Errorf("scheduled: %q", w.Verdict)
	}
	if w := whyFor(api.Message{State: "rejected", ErrorCode: "opted_out", Segments: 1}); !w.OptedOut || len(w.Causes) != 0 ||
		!strings.Contains(w.Verdict, "已退订") || !strings.Contains(w.Code, "opted_out（该号码已退订）") || !strings.Contains(w.Charge, "不收费") {
		t.Errorf("stopped for an opt-out: %+v", w)
	}
	for code, grant := range map[string]string{"scope_national": "全网发送", "scope_offnet": "外网发送"} {
		if w := whyFor(api.Message{State: "rejected", ErrorCode: code, Segments: 1}); len(w.Causes) != 0 || !strings.Contains(w.Verdict, "取消了本企业的"+grant+"权限") ||
			!strings.Contains(w.Code, code+"（") || !strings.Contains(w.Charge, "不收费") {
			t.Errorf("stopped, %s withdrawn: %+v", grant, w)
		}
	}
	if w := whyFor(api.Message{State: "rejected", ErrorCode: "not_whitelisted", Segments: 1}); !w.Unlisted || w.OptedOut || len(w.Causes) != 0 ||
		!strings.Contains(w.Verdict, "白名单中删除") || !strings.Contains(w.Code, "not_whitelisted（号码不在已审批的白名单内）") || !strings.Contains(w.Charge, "不收费") {
		t.Errorf("stopped off the whitelist: %+v", w)
	}
	if w := whyFor(api.Message{State: "accepted", StateZH: "暂停发送", Held: "account_disabled"}); !strings.HasPrefix(w.Verdict, "暂停发送：企业账号已被停用") ||
		!strings.Contains(w.Code, "account_disabled（账号已停用（企业或用户））") || !strings.Contains(w.Charge, "没有发出的短信不收费") {
		t.Errorf("held while the enterprise is disabled: %+v", w)
	}
	if w := whyFor(api.Message{State: "accepted", Scheduled: true, Held: "account_disabled"}); !strings.HasPrefix(w.Verdict, "定时待发") || !strings.Contains(w.Verdict, "停用期间这条短信不会发出") {
		t.Errorf("scheduled and held: %+v", w)
	}
	if w := whyFor(api.Message{State: "expired", ErrorCode: "002"}); !strings.Contains(w.Verdict, "关机") || !strings.Contains(w.Code, "002（有效期内未能送达") {
		t.Errorf("expired: %+v", w)
	}
	for code, want := range map[string]string{
		"":           "",
		"0x00000045": "0x00000045（短信中心拒绝提交）",
		"0x0000000B": "0x0000000B（接收号码无效）",
		"no_route":   "no_route（" + reasonZH("no_route") + "）",
		"0x12345678": "0x12345678",
	} {
		if got := codeZH(code); got != want {
			t.Errorf("codeZH(%q) = %q, want %q", code, got, want)
		}
	}
	if reasonZH("no_route") == "" {
		t.Error("no_route has no Chinese in policy's table")
	}
}

func TestScheduledEditAndDelete(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	at := time.Now().Add(24 * time.Hour).Truncate(time.Minute)
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "明天开会", SendAt: at.Format(time.RFC3339)})[0]
	c := r.client()
	c.login("alice")
	c.get("/scheduled").wantPage(t, "定时发件箱", "【甲公司】明天开会", `href="/scheduled/`+id+`"`, `action="/scheduled/`+id+`/delete"`)
	if strings.Contains(c.get("/scheduled").Body, ">优先<") {
		t.Error("a message without priority marked 优先")
	}
	// One with priority is listed too (before 2026-12-07 a waiting
	// priority message was left out of every list), marked 优先.
	urgent := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "验证码 1234", SendAt: at.Format(time.RFC3339), Priority: true})[0]
	c.get("/scheduled").wantPage(t, `href="/scheduled/`+urgent+`"`, `验证码 1234 <span class="badge" title="发出时排在本企业其他待发短信之前">优先</span>`)
	c.get("/outbox/"+urgent).wantPage(t, "<dt>优先发送</dt>")
	if a := c.submit("/scheduled", "/scheduled/"+urgent+"/delete", url.Values{}); a.Status != http.StatusSeeOther {
		t.Fatalf("delete the priority one: %d", a.Status)
	}
	edit := "/scheduled/" + id
	local := at.In(reminder.Shanghai).Format(localLayout)
	a := c.get(edit)
	a.wantPage(t, "修改定时短信", `value="`+local+`"`, `<textarea name="text" required>明天开会</textarea>`, "企业签名 【甲公司】")

	// Without the token: refused, nothing changed.
	if a = c.post(edit, url.Values{"send_at": {local}, "text": {"改了"}}); a.Status != http.StatusForbidden {
		t.Errorf("edit without CSRF token: %d, want 403", a.Status)
	}
	if a = c.post(edit+"/delete", url.Values{}); a.Status != http.StatusForbidden {
		t.Errorf("delete without CSRF token: %d, want 403", a.Status)
	}
	// Refusals next to their field, the user's input kept.
	a = c.submit(edit, edit, url.Values{"send_at": {local}, "text": {strings.Repeat("长", 600)}})
	if a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Body, `<span class="ferr" role="alert">`+reasonZH("too_long")) {
		t.Errorf("too long: %d\n%s", a.Status, a.Body)
	}
	a = c.submit(edit, edit, url.Values{"send_at": {"明天"}, "text": {"改了"}})
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "输入有误（发送时间格式有误") || !strings.Contains(a.Body, `value="明天"`) {
		t.Errorf("bad time: %d\n%s", a.Status, a.Body)
	}
	// Changed: new time (Asia/Shanghai) and text.
	later := at.Add(90 * time.Minute).In(reminder.Shanghai)
	a = c.submit(edit, edit, url.Values{"send_at": {later.Format(localLayout)}, "text": {"改到下午开会"}})
	if a.Status != http.StatusSeeOther || a.Location != "/scheduled" {
		t.Fatalf("edit: %d %s", a.Status, a.Body)
	}
	c.get("/scheduled").wantPage(t, "定时短信已修改", "【甲公司】改到下午开会", later.Format("2006-01-02 15:04"))
	m := r.waitState(key, id, "accepted")
	if !m.SendAt.Equal(later) || m.Text != "【甲公司】改到下午开会" {
		t.Errorf("after the edit: %v %q, want %v", m.SendAt, m.Text, later)
	}

	// bob cannot open, change or delete it.
	b := r.client()
	b.login("bob")
	if a := b.get(edit); a.Status != http.StatusNotFound {
		t.Errorf("bob opens alice's: %d", a.Status)
	}
	if a := b.submit("/scheduled", edit+"/delete", url.Values{}); a.Status != http.StatusNotFound {
		t.Errorf("bob deletes alice's: %d", a.Status)
	}
	if a := b.submit("/scheduled", edit, url.Values{"send_at": {local}, "text": {"x"}}); a.Status != http.StatusNotFound {
		t.Errorf("bob edits alice's: %d", a.Status)
	}

	// Deleted: gone from the list, cancelled in the outbox.
	a = c.submit("/scheduled", edit+"/delete", url.Values{})
	if a.Status != http.StatusSeeOther || a.Location != "/scheduled" {
		t.Fatalf("delete: %d %s", a.Status, a.Body)
	}
	a = c.get("/scheduled")
	a.wantPage(t, "定时短信已删除", "没有等待发送的定时短信")
	r.waitState(key, id, "cancelled")
	// A message already sent: the API's not_scheduled, in Chinese, on the
	// message's page in the 发件箱 (FAQ 9).
	sent := r.apiSend(key, api.SendRequest{To: []string{numA2}, Text: "已发出"})[0]
	r.waitState(key, sent, "delivered")
	edit = "/scheduled/" + sent
	for what, try := range map[string]func() answer{
		"edit":   func() answer { return c.submit("/scheduled", edit, url.Values{"send_at": {local}, "text": {"再改"}}) },
		"delete": func() answer { return c.submit("/scheduled", edit+"/delete", url.Values{}) },
		"open":   func() answer { return c.get(edit) },
	} {
		a = try()
		if a.Status != http.StatusSeeOther || a.Location != "/outbox/"+sent {
			t.Fatalf("%s a sent message: %d → %q", what, a.Status, a.Location)
		}
		c.get(a.Location).wantPage(t, "不能再修改或删除", "发件箱", "接收成功", "【甲公司】已发出")
	}
	if m := r.waitState(key, sent, "delivered"); m.Text != "【甲公司】已发出" {
		t.Errorf("the sent message changed: %q", m.Text)
	}
}

// TestInboxReplyStates: each reply in 收件箱 and in the desk's 收发查询
// says how it went on: an SMPP receiver took it, refused it or (without
// a reply URL) has not yet; its POST to the reply URL was delivered,
// waits or was given up. A reply that went by the reply URL shows no
// SMPP 未收取, which would read as lost to an enterprise without a bind.
func TestInboxReplyStates(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	store := func(text, replyURL string) *queue.MO {
		m := &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001", Text: text, Upstream: "sim", ReceivedAt: time.Now(), ReplyURL: replyURL}
		if err := r.store.StoreMO(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	const hook = "https://a.example/replies"
	store("等待接收程序", "")
	taken := store("接收程序已收", "")
	refused := store("接收程序拒收的", "")
	store("等待推送", hook)
	store("已推送的", hook)
	store("推送放弃的", hook)
	both := store("两边都到了", hook)
	for _, m := range []*queue.MO{taken, both} {
		if err := r.store.AckMO(ctx, "A", m.ID, time.Now(), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.store.AckMO(ctx, "A", refused.ID, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	due, _, err := r.store.DueReplies("A", time.Now().Add(time.Hour), 0, nil)
	if err != nil || len(due) != 4 {
		t.Fatalf("due replies: %d (%v)", len(due), err)
	}
	// due is by due time: 等待推送, 已推送的, 推送放弃的, 两边都到了.
	if err := r.store.AckReplies(ctx, []queue.Reply{due[1], due[3]}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if err := r.store.AckReplies(ctx, due[2:3], time.Now(), true); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ // a reply's 转发 cell: what it says, and what it must not
		"等待接收程序":  {"SMPP 未收取"},
		"接收程序已收":  {"SMPP 已收取"},
		"接收程序拒收的": {"接收程序拒收"},
		"等待推送":    {"待推送", "!SMPP"},
		"已推送的":    {"已推送", "!SMPP"},
		"推送放弃的":   {"推送已放弃", "!SMPP"},
		"两边都到了":   {"SMPP 已收取", "已推送"},
	}
	if err := r.store.StoreMO(ctx, &queue.MO{Enterprise: "A", Source: numA3, Dest: "106575000001", Text: "TD", Upstream: "sim",
		ReceivedAt: time.Now(), OptOut: true}); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	c.login("amy")
	o := r.client()
	o.opsLogin()
	for _, page := range []string{c.get("/inbox").Body, o.get("/ops/enterprises/A/records?box=inbox").Body} {
		// An opt-out reply is marked so.
		if !strings.Contains(page, `>TD <span class="badge wait" title="这条回复是退订`) || strings.Count(page, `title="这条回复是退订`) != 1 {
			t.Errorf("the opt-out reply's mark:\n%s", page)
		}
		rows := strings.Split(page, "<tr>")
		for text, says := range want {
			var row string
			for _, r := range rows {
				if strings.Contains(r, ">"+text+"<") {
					row = r
				}
			}
			if !strings.Contains(row, `data-label="转发">`) {
				t.Fatalf("no row with %s and a 转发 cell in:\n%s", text, page)
			}
			_, cell, _ := strings.Cut(row, `data-label="转发">`)
			cell, _, _ = strings.Cut(cell, "</td>")
			for _, s := range says {
				if no, ok := strings.CutPrefix(s, "!"); ok == strings.Contains(cell, no) {
					t.Errorf("%s: the cell %q, want %q", text, cell, s)
				}
			}
		}
	}
}

func TestInboxPage(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	// A message out first: the upstream bind that carries replies is up.
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "请回复"})[0]
	r.waitState(key, id, "delivered")
	r.injectMO(numA1, "106575000001", "收到，谢谢")
	c := r.client()
	c.login("amy")
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(c.get("/inbox").Body, "收到，谢谢") {
		if time.Now().After(deadline) {
			t.Fatal("the reply never reached the inbox")
		}
		<-tick.C // polling the page, as a person reloads it
	}
	c.get("/inbox").wantPage(t, "收件箱", numA1, "106575000001", "收到，谢谢", `id="inbox-search"`)
	// 来自号码: the handset's number in another form finds its reply,
	// another number finds none, a number without digits is refused.
	c.get("/inbox?number="+url.QueryEscape("+86 "+numA1)).wantPage(t, "收到，谢谢", `value="&#43;86 `+numA1+`"`, "显示全部回复")
	if a := c.get("/inbox?number=13000000000"); !strings.Contains(a.Body, "没有来自该号码的回复") || strings.Contains(a.Body, "收到，谢谢") {
		t.Errorf("another number's search:\n%s", a.Body)
	}
	if a := c.get("/inbox?number=abc"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入手机号码") {
		t.Errorf("a number without digits: %d\n%s", a.Status, a.Body)
	}
	// A reply the enterprise's SMPP receiver refused for good says so.
	if a := c.get("/inbox"); strings.Contains(a.Body, "接收程序拒收") {
		t.Errorf("a reply not refused is marked refused:\n%s", a.Body)
	}
	refused := &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001", Text: "拒收的回复", Upstream: "sim"}
	if err := r.store.StoreMO(context.Background(), refused); err != nil {
		t.Fatal(err)
	}
	if err := r.store.AckMO(context.Background(), "A", refused.ID, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	c.get("/inbox").wantPage(t, "拒收的回复", `<span class="badge fail" title="企业的短信接收程序拒收了这条回复`)
	// A long reply stored at the timeout without all its parts says so.
	if err := r.store.StoreMO(context.Background(), &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001",
		Text: "长回复的前半", Upstream: "sim", PartsMissing: 2}); err != nil {
		t.Fatal(err)
	}
	c.get("/inbox").wantPage(t, "长回复的前半", `<span class="badge wait" title="这条长回复分段到达，有 2 段超时未到`, "缺 2 段")
	// A binary reply: its size and first octets, its coding, UDH and ports.
	long := bytes.Repeat([]byte{0xAB}, 30)
	if err := r.store.StoreMO(context.Background(), &queue.MO{Enterprise: "A", Source: numA2, Dest: "106575000001",
		Binary: long, DataCoding: 0xF5, UDH: []byte{6, 5, 4, 0x23, 0xF4, 0x23, 0xF0}, Upstream: "sim"}); err != nil {
		t.Fatal(err)
	}
	c.get("/inbox").wantPage(t, "二进制 30 字节", "data_coding 245 和 UDH 06050423f423f0；发往应用端口 9204（源端口 9200）",
		`<code class="hex">`+strings.Repeat("ab", 24)+`…</code> <span class="small">端口 9204</span>`)
	b := r.client()
	b.login("bob")
	a := b.get("/inbox")
	a.wantPage(t, "没有收到回复")
	if strings.Contains(a.Body, "收到，谢谢") {
		t.Error("bob sees A's reply")
	}
}

// beijingDay is 00:00 of the day n days before today in Asia/Shanghai,
// and its date as a date input gives it.
func beijingDay(n int) (time.Time, string) {
	now := time.Now().In(reminder.Shanghai)
	d := time.Date(now.Year(), now.Month(), now.Day()-n, 0, 0, 0, 0, reminder.Shanghai)
	return d, d.Format(time.DateOnly)
}

// storeSent puts a message of alice's in the store as accepted at at
// (the API's sends are accepted now).
func (r *rig) storeSent(text string, at time.Time) {
	r.t.Helper()
	m := &queue.Message{Account: "alice", Enterprise: "A", Upstream: "sim", Source: "106575000001", Dest: numA1,
		Text: "【甲公司】" + text, AcceptedAt: at, Parts: []queue.Part{{Body: []byte(text)}}}
	if err := r.store.Enqueue(context.Background(), m); err != nil {
		r.t.Fatal(err)
	}
}

// storeScheduled puts a message of alice's in the store, accepted now and
// to be sent at at.
func (r *rig) storeScheduled(text string, at time.Time) {
	r.t.Helper()
	m := &queue.Message{Account: "alice", Enterprise: "A", Upstream: "sim", Source: "106575000001", Dest: numA1,
		Text: "【甲公司】" + text, SendAt: at, Parts: []queue.Part{{Body: []byte(text)}}}
	if err := r.store.Enqueue(context.Background(), m); err != nil {
		r.t.Fatal(err)
	}
}

// storeReply puts a reply to enterprise A (its service number, no
// extension: its admins see it) in the store as received at at.
func (r *rig) storeReply(from, text string, at time.Time) {
	r.t.Helper()
	if err := r.store.StoreMO(context.Background(), &queue.MO{Enterprise: "A", Source: from, Dest: "106575000001",
		Text: text, Upstream: "sim", ReceivedAt: at}); err != nil {
		r.t.Fatal(err)
	}
}

// unamp is an href of a page as the browser follows it.
func unamp(href string) string { return strings.ReplaceAll(href, "&amp;", "&") }

// rows counts the rows of a page's list (the cells of one column).
func rows(a answer, label string) int { return strings.Count(a.Body, `<td data-label="`+label+`">`) }

// 发件箱 narrowed to Beijing dates: 开始日期 from its 00:00, 结束日期 to
// its end; the range kept by the tabs and the pages; a range that cannot
// be is refused next to the form, the list not fetched.
func TestOutboxDates(t *testing.T) {
	r := newRig(t)
	d3, day3 := beijingDay(3)
	_, day2 := beijingDay(2)
	_, day1 := beijingDay(1)
	d5, day5 := beijingDay(5)
	_, day4 := beijingDay(4)
	// The oldest stored first, as they came: a page lists the last
	// stored first.
	for i := range 51 {
		r.storeSent("五天前分页", d5.Add(12*time.Hour+time.Duration(i)*time.Second))
	}
	r.storeSent("四天前深夜", d3.Add(-time.Second))
	r.storeSent("三天前零点", d3)
	r.storeSent("三天前深夜", d3.Add(24*time.Hour-time.Second))
	r.storeSent("两天前零点", d3.Add(24*time.Hour))
	c := r.client()
	c.login("alice")
	c.get("/outbox").wantPage(t, `id="outbox-search"`, `<input name="from" type="date" value="">`, "结束日期（含）")

	a := c.get("/outbox?from=" + day3 + "&to=" + day3)
	a.wantPage(t, "三天前零点", "三天前深夜", `value="`+day3+`"`, `<a href="/outbox">显示全部日期</a>`,
		`href="/outbox?from=`+day3+`&amp;outcome=failed&amp;to=`+day3+`"`)
	for _, out := range []string{"四天前深夜", "两天前零点", "五天前分页"} {
		if strings.Contains(a.Body, out) {
			t.Errorf("%s to %s lists %s", day3, day3, out)
		}
	}
	if n := rows(a, "接收号码"); n != 2 {
		t.Errorf("%s to %s: %d rows, want 2", day3, day3, n)
	}
	// Either end open.
	a = c.get("/outbox?from=" + day3)
	a.wantPage(t, "三天前零点", "三天前深夜", "两天前零点")
	if strings.Contains(a.Body, "四天前深夜") {
		t.Errorf("from %s lists the day before", day3)
	}
	a = c.get("/outbox?to=" + day4)
	a.wantPage(t, "四天前深夜", "五天前分页")
	if strings.Contains(a.Body, "三天前零点") {
		t.Errorf("to %s lists the day after", day4)
	}
	// Nothing that day: said so.
	a = c.get("/outbox?from=" + day1 + "&to=" + day1)
	a.wantPage(t, "没有该时间段内的记录")
	if strings.Contains(a.Body, "<table") {
		t.Errorf("an empty range shows a table")
	}
	// The tab and the dates: both in the form, the link without the dates keeps the tab.
	c.get("/outbox?outcome=pending&from="+day2).wantPage(t, `<input type="hidden" name="outcome" value="pending">`,
		`<a href="/outbox?outcome=pending">显示全部日期</a>`, `class="on" aria-current="page">发送中`)

	// 51 that day: two pages, the range kept by 下一页 and 回到第一页.
	a = c.get("/outbox?from=" + day5 + "&to=" + day5)
	if n := rows(a, "接收号码"); n != 50 || strings.Contains(a.Body, "四天前深夜") {
		t.Errorf("%s, first page: %d rows, want 50 of that day", day5, n)
	}
	m := regexpNext.FindStringSubmatch(a.Body)
	if m == nil || !strings.Contains(m[1], "from="+day5) || !strings.Contains(m[1], "to="+day5) {
		t.Fatalf("下一页 without the range: %q", m)
	}
	a = c.get(unamp(m[1]))
	a.wantPage(t, "五天前分页", `<a class="button" href="/outbox?from=`+day5+`&amp;to=`+day5+`">回到第一页</a>`)
	if n := rows(a, "接收号码"); n != 1 || strings.Contains(a.Body, "下一页") {
		t.Errorf("%s, second page: %d rows, want 1 and no 下一页", day5, n)
	}

	wantRangesRefused(t, c, "/outbox", map[string]string{
		"from=" + day3 + "&to=" + day4: "结束日期不能早于开始日期",
		"from=2026-02-30":              "开始日期无效",
		"to=yesterday":                 "结束日期无效",
	})
	c.get("/outbox?from="+day3+"&to="+day4).wantStatus(t, http.StatusBadRequest, `value="`+day4+`"`)
}

// 定时发件箱 narrowed to Beijing dates of the send time (all were written
// now, so dates of the time written would list none): 开始日期 from its
// 00:00, 结束日期 to its end; the range kept by the pages; a range that
// cannot be is refused next to the form, the list not fetched.
func TestScheduledDates(t *testing.T) {
	r := newRig(t)
	d2, day2 := beijingDay(-2)
	_, day1 := beijingDay(-1)
	d3, day3 := beijingDay(-3)
	_, day4 := beijingDay(-4)
	// The oldest stored first: a page lists the last stored first.
	r.storeScheduled("明天深夜", d2.Add(-time.Second))
	r.storeScheduled("后天零点", d2)
	for i := range 49 {
		r.storeScheduled("后天分页", d2.Add(12*time.Hour+time.Duration(i)*time.Second))
	}
	r.storeScheduled("后天深夜", d3.Add(-time.Second))
	r.storeScheduled("三天后零点", d3)
	c := r.client()
	c.login("alice")
	c.get("/scheduled").wantPage(t, `id="scheduled-search"`, `<input name="from" type="date" value="">`, "结束日期（含）", "按短信的发送时间查找")

	// The day after tomorrow: 51, two pages, the range kept by 下一页 and 回到第一页.
	a := c.get("/scheduled?from=" + day2 + "&to=" + day2)
	a.wantPage(t, "后天深夜", "后天分页", `value="`+day2+`"`, `<a href="/scheduled">显示全部日期</a>`)
	if n := rows(a, "接收号码"); n != 50 || strings.Contains(a.Body, "明天深夜") || strings.Contains(a.Body, "三天后零点") {
		t.Errorf("%s, first page: %d rows, want 50 of that day\n%s", day2, n, a.Body)
	}
	m := regexpScheduledNext.FindStringSubmatch(a.Body)
	if m == nil || !strings.Contains(m[1], "from="+day2) || !strings.Contains(m[1], "to="+day2) || !strings.Contains(m[1], "after=") {
		t.Fatalf("下一页 without the range: %q", m)
	}
	a = c.get(unamp(m[1]))
	a.wantPage(t, "后天零点", `<a class="button" href="/scheduled?from=`+day2+`&amp;to=`+day2+`">回到第一页</a>`)
	if n := rows(a, "接收号码"); n != 1 || strings.Contains(a.Body, "下一页") {
		t.Errorf("%s, second page: %d rows, want 1 and no 下一页", day2, n)
	}
	// Either end open.
	a = c.get("/scheduled?from=" + day3)
	a.wantPage(t, "三天后零点")
	if n := rows(a, "接收号码"); n != 1 {
		t.Errorf("from %s: %d rows, want 1", day3, n)
	}
	a = c.get("/scheduled?to=" + day1)
	a.wantPage(t, "明天深夜")
	if n := rows(a, "接收号码"); n != 1 {
		t.Errorf("to %s: %d rows, want 1", day1, n)
	}
	// Nothing sent that day: said so.
	a = c.get("/scheduled?from=" + day4 + "&to=" + day4)
	a.wantPage(t, "没有在该时间段内发送的定时短信")
	if strings.Contains(a.Body, "<table") {
		t.Errorf("an empty range shows a table")
	}

	wantRangesRefused(t, c, "/scheduled", map[string]string{
		"from=" + day3 + "&to=" + day2: "结束日期不能早于开始日期",
		"from=2026-02-30":              "开始日期无效",
		"to=tomorrow":                  "结束日期无效",
	})
	c.get("/scheduled?from="+day3+"&to="+day2).wantStatus(t, http.StatusBadRequest, `value="`+day3+`"`)
}

// 收件箱 narrowed to Beijing dates, with the number or without; the range
// and the number kept by the pages; a range that cannot be is refused.
func TestInboxDates(t *testing.T) {
	r := newRig(t)
	d3, day3 := beijingDay(3)
	_, day2 := beijingDay(2)
	_, day1 := beijingDay(1)
	d5, day5 := beijingDay(5)
	_, day4 := beijingDay(4)
	// The oldest stored first, as they came: a page lists the last
	// stored first.
	for i := range 51 {
		r.storeReply(numA1, "五天前分页", d5.Add(12*time.Hour+time.Duration(i)*time.Second))
	}
	r.storeReply(numA2, "五天前另一号码", d5.Add(13*time.Hour))
	r.storeReply(numA1, "四天前深夜的回复", d3.Add(-time.Second))
	r.storeReply(numA1, "三天前零点的回复", d3)
	r.storeReply(numA2, "三天前另一号码", d3.Add(12*time.Hour))
	r.storeReply(numA1, "三天前深夜的回复", d3.Add(24*time.Hour-time.Second))
	r.storeReply(numA1, "两天前零点的回复", d3.Add(24*time.Hour))
	c := r.client()
	c.login("amy")

	a := c.get("/inbox?from=" + day3 + "&to=" + day3)
	a.wantPage(t, "三天前零点的回复", "三天前另一号码", "三天前深夜的回复", `value="`+day3+`"`, `<a href="/inbox">显示全部回复</a>`)
	for _, out := range []string{"四天前深夜的回复", "两天前零点的回复", "五天前分页"} {
		if strings.Contains(a.Body, out) {
			t.Errorf("%s to %s lists %s", day3, day3, out)
		}
	}
	// With the number: that day's replies from it.
	a = c.get("/inbox?number=" + numA2 + "&from=" + day3 + "&to=" + day3)
	a.wantPage(t, "三天前另一号码")
	if n := rows(a, "来自"); n != 1 {
		t.Errorf("%s on %s: %d rows, want 1", numA2, day3, n)
	}
	c.get("/inbox?number="+numA2+"&from="+day2).wantPage(t, "没有该时间段内来自该号码的回复")
	a = c.get("/inbox?from=" + day1 + "&to=" + day1)
	a.wantPage(t, "没有该时间段内的回复")
	if strings.Contains(a.Body, "<table") {
		t.Errorf("an empty range shows a table")
	}
	a = c.get("/inbox?to=" + day4)
	a.wantPage(t, "四天前深夜的回复", "五天前分页")
	if strings.Contains(a.Body, "三天前零点的回复") {
		t.Errorf("to %s lists the day after", day4)
	}

	// 51 from numA1 that day: two pages, the number and the range kept.
	a = c.get("/inbox?number=" + numA1 + "&from=" + day5 + "&to=" + day5)
	if n := rows(a, "来自"); n != 50 || strings.Contains(a.Body, "五天前另一号码") {
		t.Errorf("first page: %d rows, want 50 from %s", n, numA1)
	}
	m := regexpInboxNext.FindStringSubmatch(a.Body)
	if m == nil || !strings.Contains(m[1], "from="+day5) || !strings.Contains(m[1], "to="+day5) || !strings.Contains(m[1], "number="+numA1) {
		t.Fatalf("下一页 without the search: %q", m)
	}
	a = c.get(unamp(m[1]))
	a.wantPage(t, "五天前分页", `<a class="button" href="/inbox?from=`+day5+`&amp;number=`+numA1+`&amp;to=`+day5+`">回到第一页</a>`)
	if n := rows(a, "来自"); n != 1 || strings.Contains(a.Body, "下一页") || strings.Contains(a.Body, "五天前另一号码") {
		t.Errorf("second page: %d rows, want 1 and no 下一页", n)
	}

	// Refused: the reasons next to the form, no list.
	for q, want := range map[string][]string{
		"from=" + day3 + "&to=" + day4: {"结束日期不能早于开始日期"},
		"from=2026-13-01":              {"开始日期无效"},
		"number=abc&to=" + day3 + "x":  {"请输入手机号码", "结束日期无效"},
	} {
		a = c.get("/inbox?" + q)
		for _, w := range want {
			if !strings.Contains(a.Body, `<span class="ferr" role="alert">`+w) {
				t.Errorf("%s: lacks %q", q, w)
			}
		}
		if a.Status != http.StatusBadRequest || strings.Contains(a.Body, "<table") || strings.Contains(a.Body, "没有") {
			t.Errorf("%s: %d, want 400 and no list\n%s", q, a.Status, a.Body)
		}
	}
}

// TestReadDayRange: Beijing days, the last one to its end.
func TestReadDayRange(t *testing.T) {
	d := readDayRange(url.Values{"from": {" 2026-03-05 "}, "to": {"2026-03-05"}})
	v := url.Values{}
	d.apiQuery(v)
	if d.Bad != "" || v.Get("from") != "2026-03-05T00:00:00+08:00" || v.Get("to") != "2026-03-06T00:00:00+08:00" {
		t.Errorf("one day: %+v %v", d, v)
	}
	if d := readDayRange(url.Values{}); d.Any() || d.Bad != "" {
		t.Errorf("none: %+v", d)
	}
	for _, bad := range []url.Values{{"from": {"2026-3-5"}}, {"to": {"2026-02-29"}}, {"from": {"2026-03-06"}, "to": {"2026-03-05"}}} {
		if d := readDayRange(bad); d.Bad == "" {
			t.Errorf("%v taken", bad)
		}
	}
}

func TestBillingPage(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	id := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "计费"})[0]
	r.waitState(key, id, "delivered")
	c := r.client()
	c.login("alice")
	c.get("/billing").wantPage(t, "本月用量", "套餐 3", "月租 150.00 元", "1700 条", "已计费（接收成功）</span><b>1 条",
		"0.10 元/条", "150.00 元", "历史账单仅企业管理员可以查看", "只有<b>接收成功</b>的短信收费")
	a := r.client()
	a.login("amy")
	a.get("/billing").wantPage(t, "历史账单", "还没有历史账单", "收费说明")
}

var regexpNext = regexp.MustCompile(`href="(/outbox\?[^"]*after=[0-9]+[^"]*)"`)

var regexpInboxNext = regexp.MustCompile(`rel="next" href="(/inbox\?[^"]*)"`)

var regexpScheduledNext = regexp.MustCompile(`rel="next" href="(/scheduled\?[^"]*)"`)

// wantRangesRefused asks page with each query of bad (a date range that
// cannot be) and wants it refused: 400, the reason next to the form, no
// list.
func wantRangesRefused(t *testing.T, c *browserless, page string, bad map[string]string) {
	t.Helper()
	for q, want := range bad {
		a := c.get(page + "?" + q)
		if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `<span class="ferr" role="alert">`+want) ||
			strings.Contains(a.Body, "<table") || strings.Contains(a.Body, "没有") {
			t.Errorf("%s?%s: %d, want 400 with %q and no list\n%s", page, q, a.Status, want, a.Body)
		}
	}
}

// TestOutboxExport: 导出 on 发件箱 downloads every page of the tab and
// dates shown (51 messages of one day, more than a page), as a CSV for
// Excel: a BOM, Chinese headers, Beijing times, no other day's; a bad
// date comes back to 发件箱 with the reason.
func TestOutboxExport(t *testing.T) {
	r := newRig(t)
	d5, day5 := beijingDay(5)
	for i := range 51 {
		r.storeSent("五天前导出", d5.Add(12*time.Hour+time.Duration(i)*time.Second))
	}
	r.storeSent("四天前深夜", d5.Add(48*time.Hour-time.Second))
	c := r.client()
	c.login("alice")
	page := c.get("/outbox?from=" + day5 + "&to=" + day5)
	page.wantPage(t, `id="outbox-export" href="/outbox/export.csv?from=`+day5+`&amp;to=`+day5+`"`)

	a := c.get("/outbox/export.csv?from=" + day5 + "&to=" + day5)
	if a.Status != http.StatusOK || !strings.HasPrefix(a.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(a.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v\n%.300s", a.Status, a.Header, a.Body)
	}
	body, ok := strings.CutPrefix(a.Body, "\uFEFF")
	if !ok {
		t.Fatalf("no BOM: %.100q", a.Body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 52 || recs[0][2] != "接收号码" || recs[0][4] != "内容" {
		t.Fatalf("%d records (%v): %q", len(recs), err, recs[:min(len(recs), 2)])
	}
	last := d5.Add(12*time.Hour + 50*time.Second).In(reminder.Shanghai).Format(time.DateTime)
	if recs[1][4] != "【甲公司】五天前导出" || recs[1][8] != last || recs[1][2] != numA1 {
		t.Fatalf("the newest row %q, want accepted at %s", recs[1], last)
	}
	if strings.Contains(body, "四天前深夜") {
		t.Error("another day's message in the export")
	}
	a = c.get("/outbox/export.csv?from=2026-02-30")
	if a.Status != http.StatusSeeOther || a.Location != "/outbox?from=2026-02-30" {
		t.Fatalf("a bad date: %d %q", a.Status, a.Location)
	}
	if back := c.get(a.Location); back.Status != http.StatusBadRequest || !strings.Contains(back.Body, "开始日期无效") {
		t.Fatalf("发件箱 after a bad date: %d", back.Status)
	}
}

// TestInboxExport: 导出 on 收件箱 downloads the replies of the number and
// dates shown, every page (51 of one day), as a CSV for Excel; a reply
// that Excel would run as a formula is quoted.
func TestInboxExport(t *testing.T) {
	r := newRig(t)
	d5, day5 := beijingDay(5)
	for i := range 50 {
		r.storeReply(numA1, "五天前回复", d5.Add(12*time.Hour+time.Duration(i)*time.Second))
	}
	r.storeReply(numA1, "=1+1", d5.Add(13*time.Hour))
	r.storeReply(numA2, "别的号码", d5.Add(13*time.Hour))
	c := r.client()
	c.login("amy")
	c.get("/inbox?number="+numA1).wantPage(t, `id="inbox-export" href="/inbox/export.csv?number=`+numA1+`"`)
	a := c.get("/inbox/export.csv?number=" + numA1 + "&from=" + day5 + "&to=" + day5)
	body, ok := strings.CutPrefix(a.Body, "\uFEFF")
	if a.Status != http.StatusOK || !ok {
		t.Fatalf("export: %d %.200q", a.Status, a.Body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 52 || recs[0][1] != "来自" || recs[1][5] != "'=1+1" || recs[2][5] != "五天前回复" {
		t.Fatalf("%d records (%v): %q", len(recs), err, recs[:min(len(recs), 3)])
	}
	if strings.Contains(body, "别的号码") {
		t.Error("another number's reply in the export")
	}
	if a = c.get("/inbox/export.csv?to=x"); a.Status != http.StatusSeeOther || a.Location != "/inbox?to=x" {
		t.Fatalf("a bad date: %d %q", a.Status, a.Location)
	}
}

// TestScheduledExport: 导出 on 定时发件箱 downloads the messages that go out
// on the days shown (by their send time), as a CSV for Excel.
func TestScheduledExport(t *testing.T) {
	r := newRig(t)
	d2, day2 := beijingDay(-2) // the day after tomorrow
	r.storeScheduled("后天早上", d2.Add(8*time.Hour))
	r.storeScheduled("后天晚上", d2.Add(20*time.Hour))
	r.storeScheduled("再过一天", d2.Add(32*time.Hour))
	c := r.client()
	c.login("alice")
	c.get("/scheduled?from="+day2+"&to="+day2).wantPage(t, `id="scheduled-export" href="/scheduled/export.csv?from=`+day2+`&amp;to=`+day2+`"`)
	a := c.get("/scheduled/export.csv?from=" + day2 + "&to=" + day2)
	body, ok := strings.CutPrefix(a.Body, "\uFEFF")
	if a.Status != http.StatusOK || !ok {
		t.Fatalf("export: %d %.200q", a.Status, a.Body)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 3 || recs[0][9] != "定时发送时间" || strings.Contains(body, "再过一天") {
		t.Fatalf("%d records (%v):\n%s", len(recs), err, body)
	}
	if want := d2.Add(8 * time.Hour).In(reminder.Shanghai).Format(time.DateTime); !slices.ContainsFunc(recs[1:], func(r []string) bool { return r[9] == want }) {
		t.Fatalf("no row to go out at %s: %q", want, recs)
	}
}

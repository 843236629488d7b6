package console

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// deskPages are the desk's pages (GET).
var deskPages = []string{"/ops/", "/ops/enterprises", "/ops/enterprises/new", "/ops/enterprises/A",
	"/ops/approvals", "/ops/bills", "/ops/bills.csv", "/ops/export", "/ops/export/dlr.csv?from=2026-01-01&to=2026-02-01",
	"/ops/enterprises/A/records", "/ops/enterprises/A/records/export.csv", "/ops/trace"}

// deskPosts are the desk's forms' actions.
var deskPosts = []string{"/ops/enterprises/new", "/ops/enterprises/A", "/ops/enterprises/A/state",
	"/ops/enterprises/A/users", "/ops/enterprises/A/users/alice/password", "/ops/enterprises/A/users/alice/update", "/ops/approvals/whitelist",
	"/ops/approvals/signatures/1/approve", "/ops/approvals/signatures/1/reject",
	"/ops/approvals/applications/x/approve", "/ops/approvals/applications/x/reject", "/ops/logout"}

// Without an operator session no desk page opens: no cookie, an
// enterprise user's session, or an enterprise token in the desk's cookie
// all land on /ops/login.
func TestDeskNeedsOperator(t *testing.T) {
	r := newRig(t)
	c := r.client()
	for _, pg := range deskPages {
		c.get(pg).wantRedirect(t, "/ops/login")
	}
	c.login("amy") // an enterprise admin
	for _, pg := range deskPages {
		c.get(pg).wantRedirect(t, "/ops/login")
	}
	for _, a := range deskPosts {
		if got := c.post(a, url.Values{}); got.Status != http.StatusSeeOther || !strings.HasPrefix(got.Location, "/ops/login") {
			t.Errorf("POST %s as an enterprise user: %d → %q, want 303 → /ops/login", a, got.Status, got.Location)
		}
	}
	// The enterprise session's token in the desk's cookie: the admin API refuses it.
	u, _ := url.Parse(r.url)
	var tok string
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			tok = ck.Value
		}
	}
	if tok == "" {
		t.Fatal("no enterprise session cookie")
	}
	ou, _ := url.Parse(r.url + "/ops/")
	c.hc.Jar.SetCookies(ou, []*http.Cookie{{Name: opsCookie, Value: tok, Path: "/ops/"}})
	for _, pg := range []string{"/ops/", "/ops/enterprises", "/ops/approvals", "/ops/bills"} {
		c.get(pg).wantRedirect(t, "/ops/login")
	}
	// A wrong operator session likewise.
	c.hc.Jar.SetCookies(ou, []*http.Cookie{{Name: opsCookie, Value: "qxo_wrong", Path: "/ops/"}})
	c.get("/ops/enterprises").wantRedirect(t, "/ops/login")
	// Logged in at the desk: the pages open, and each POST needs its token.
	c.opsLogin()
	c.get("/ops/").wantPage(t, "运行概况")
	for _, a := range deskPosts {
		if got := c.post(a, url.Values{"disabled": {"true"}, "code": {"X"}, "name": {"x"}, "package": {"1"}}); got.Status != http.StatusForbidden {
			t.Errorf("POST %s without CSRF token: %d, want 403", a, got.Status)
		}
	}
	if e, _ := r.pol.Lookup("A"); e.Disabled {
		t.Error("a POST without token disabled A")
	}
	if _, ok := r.pol.Lookup("X"); ok {
		t.Error("a POST without token created X")
	}
}

// deskSend sends text to numbers as alice over the HTTP API, whatever
// the answer (a refusal is counted by the gateway).
func deskSend(t *testing.T, r *rig, to ...string) api.SendResponse {
	t.Helper()
	c := &api.Client{Base: r.url, Token: r.apiKey("alice")}
	var out api.SendResponse
	if err := c.DoContext(context.Background(), http.MethodPost, "/v1/messages", api.SendRequest{To: to, Text: "账单测试"}, &out); err != nil {
		t.Fatalf("send: %v", err)
	}
	return out
}

func TestDeskHome(t *testing.T) {
	r := newRig(t)
	deskSend(t, r, "13900000001") // not on A's whitelist: refused
	c := r.client()
	c.opsLogin()
	a := c.get("/ops/")
	a.wantPage(t, "运行概况", "通道 sim", "通道 sim 接收连接", "待发 0 条", "存储", "正常", "白名单号码", `href="/ops/approvals#whitelist"`,
		"已受理（待提交）", "接收成功", "等待定时或重试", "<code>not_whitelisted</code>", reasonZH("not_whitelisted"), "未出现的原因",
		`id="failing-webhooks"`, "各企业最近一次回执推送和回复推送都已成功")
	// The pending count: numPending.
	if !strings.Contains(a.Body, "<span>白名单号码</span><b>1</b>") {
		t.Errorf("pending whitelist count is not 1:\n%s", a.Body)
	}
	// The refusal row with its count, the zero reasons collapsed apart.
	i := strings.Index(a.Body, "<code>not_whitelisted</code>")
	j := strings.Index(a.Body, "未出现的原因")
	if i < 0 || j < i || !strings.Contains(a.Body[i:j], "<b>1</b>") {
		t.Errorf("not_whitelisted is not counted once before the zero reasons:\n%s", a.Body)
	}
	if strings.Contains(a.Body[i+10:j], "<code>quota_exceeded</code>") {
		t.Error("a reason with no refusal is listed with the counted ones")
	}
}

// The desk shows the node's last minute of load when the daemon measures
// it, and what a message cost; with nothing accepted, no cost a message.
func TestDeskHomeLoad(t *testing.T) {
	us, ms, pace, none := 364.4, 18.25, 1250.0, 0.0
	load := &api.LoadStatus{Seconds: 59.8, Accepted: 74_070, AcceptedPerSecond: 1238.6, CPUCores: 0.451,
		CPUMicrosPerMessage: &us, CommitsPerSecond: 812.2, WrittenBytesPerSecond: 3.5 * (1 << 20),
		TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E7", Accepted: 52_000, AcceptedPerSecond: 869.6}, {Enterprise: "E2", Accepted: 22_070, AcceptedPerSecond: 369.1}},
		Upstreams: []api.UpstreamLoad{
			{Name: "cmcc", Relayed: 74_000, RelayedPerSecond: 1237.5, Throttled: 412, Failed: 3, SubmitMeanMS: &ms, TPS: 2000, PacePerSecond: &pace, InFlight: 198, Slots: 200},
			{Name: "unicom", Slots: 100},
			{Name: "ctcc", TPS: 500, PacePerSecond: &none, Slots: 10},
		}}
	r := newRig(t, func(cfg *api.Config) { cfg.Load = func(func(string) bool) *api.LoadStatus { return load } })
	c := r.client()
	c.opsLogin()
	c.get("/ops/").wantPage(t, `id="load"`, "负载（最近 60 秒）", "1238.6 条/秒", "共 74070 条", "0.45 核",
		"364 微秒", "812 次/秒", "写入 3.5 MiB/秒", `id="top-senders"`, `<a href="/ops/enterprises/E7">E7</a>`,
		"869.6 条/秒", "52000", "70%", "369.1 条/秒", "30%",
		`id="upstream-load"`, "1237.5 条/秒", "1250 条/秒（配置 2000，因限流下调）", "412", "18.2 毫秒", "198 / 200", "不限", "0 / 100",
		"0 条/秒（本节点没有连上的连接）")
	if a := c.get("/ops/"); strings.Contains(a.Body, "配置 500") {
		t.Error("an upstream without a bind up shown as slowed by throttling")
	}
	load = &api.LoadStatus{Seconds: 5}
	a := c.get("/ops/")
	a.wantPage(t, "负载（最近 5 秒）", "0.0 条/秒", "期间没有接收短信")
	if strings.Contains(a.Body, "微秒") {
		t.Error("a cost a message with nothing accepted")
	}
	if strings.Contains(a.Body, `id="top-senders"`) {
		t.Error("a table of top senders with nothing accepted")
	}
	plain := newRig(t).client()
	plain.opsLogin()
	if strings.Contains(plain.get("/ops/").Body, `id="load"`) {
		t.Error("a load section without a measure")
	}
}

// On a cluster node the desk shows the live nodes and what this node
// leads, and labels the binds as this node's share of the cluster's total.
func TestDeskHomeCluster(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.opsLogin()
	if a := c.get("/ops/"); strings.Contains(a.Body, `id="cluster"`) {
		t.Fatal("a node alone shows a cluster section")
	}
	started := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	r.cluster.Store(&api.ClusterStatus{Node: 2, Leads: []string{"reminders"}, Members: []api.ClusterMember{
		{ID: 1, Name: "node-1", PeerURL: "http://10.0.0.1:7101", Started: started},
		{ID: 2, Name: "node-2", PeerURL: "http://10.0.0.2:7101", Started: started, Load: &api.LoadStatus{Seconds: 60, Accepted: 600,
			AcceptedPerSecond: 10, CPUCores: 0.61, TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E7", Accepted: 540, AcceptedPerSecond: 9}}}},
		{ID: 3, Name: "node-3", PeerURL: "http://10.0.0.3:7101", Started: started, Load: &api.LoadStatus{Seconds: 60, TopEnterprises: []api.EnterpriseLoad{}}},
	}})
	a := c.get("/ops/")
	a.wantPage(t, `id="cluster"`, "集群（本页来自节点 2）", "node-1", "<code>http://10.0.0.2:7101</code>", "2026-12-02 03:04:05",
		"本节点负责：日程提醒的发送。", "本节点的连接 / 集群共享的连接总数", "本节点的接收连接 / 集群共享的接收连接总数",
		"未应答", "10.0 条/秒", "0.61 核", `<a href="/ops/enterprises/E7">E7</a> 9.0 条/秒`, "0.0 条/秒")
	if n := strings.Count(a.Body, "未应答"); n != 1 {
		t.Errorf("%d members shown without an answer, want 1 (node-1)", n)
	}
	if strings.Contains(a.Body, `id="cluster-load"`) {
		t.Error("a cluster load shown where the status has none")
	}

	// The cluster's load: the members' added up, its top senders, and
	// the counts marked as lower bounds when a member named only its 50.
	st := r.cluster.Load()
	st.Load = &api.ClusterLoad{Members: 2, Accepted: 1200, AcceptedPerSecond: 20, CPUCores: 1.25,
		TopEnterprises: []api.EnterpriseLoad{{Enterprise: "E2", Accepted: 700, AcceptedPerSecond: 11.7}, {Enterprise: "E7", Accepted: 540, AcceptedPerSecond: 9}}}
	a = c.get("/ops/")
	a.wantPage(t, `id="cluster-load"`, "全集群接收", "20.0 条/秒", "共 1200 条，3 个节点中 2 个的最近一分钟", "1.25 核",
		`id="cluster-top-senders"`, `<a href="/ops/enterprises/E2">E2</a></td><td data-label="接收速率">11.7 条/秒</td><td data-label="条数">700</td><td data-label="占比">58%</td>`)
	if strings.Contains(a.Body, "≥") || strings.Contains(a.Body, "下限") {
		t.Error("complete counts shown as lower bounds")
	}
	st.Load.TopPartial = true
	c.get("/ops/").wantPage(t, "≥ 11.7 条/秒", "≥ 700", "表中的条数是下限")
	if strings.Contains(a.Body, "cluster-managers-differ") || strings.Contains(a.Body, "配置摘要") {
		t.Error("nodes whose configurations agree shown as unlike")
	}

	// Nodes running unlike account managers (one reloaded, one not) and
	// package tables: a warning each, and each node's digests of those
	// (none for node-1, an earlier release).
	st.Members[1].ConfigDigests = map[string]string{"account_managers": "76613896558daddd", "packages": "aaaa000011112222", "home_province": "1234"}
	st.Members[2].ConfigDigests = map[string]string{"account_managers": "ee8e009f232fe6ae", "packages": "bbbb000011112222", "home_province": "1234"}
	st.ConfigDiffers = []string{"account_managers", "packages"}
	a = c.get("/ops/")
	a.wantPage(t, `id="cluster-managers-differ"`, "各节点的客户经理配置（http.account_managers）不一致", "并重新加载",
		`id="cluster-packages-differ"`, "各节点的套餐表（policy.packages）不一致", "<th>配置摘要</th>",
		`<td data-label="配置摘要">客户经理 <code>76613896558daddd</code><br>套餐表 <code>aaaa000011112222</code></td>`,
		`<td data-label="配置摘要">客户经理 <code>ee8e009f232fe6ae</code><br>套餐表 <code>bbbb000011112222</code></td>`,
		`<td data-label="配置摘要">客户经理 <code>无</code><br>套餐表 <code>无</code></td>`)
	if strings.Contains(a.Body, "cluster-home-differ") || strings.Contains(a.Body, "本省 <code>") {
		t.Error("the home province shown as unlike, the nodes agreeing on it")
	}
}

func TestDeskEnterprises(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.opsLogin()
	c.get("/ops/enterprises").wantPage(t, "甲公司", "乙公司", `href="/ops/enterprises/A"`, "套餐 3", "106575000001", "开通", "正常")

	// 新建: the package select is the API's table (FAQ 16).
	c.get("/ops/enterprises/new").wantPage(t, "新建企业", `<option value="12"`, "套餐 12：月租 50000.00 元，含 1000000 条，超出 0.05 元/条")
	form := url.Values{"code": {"a b"}, "name": {"丙公司"}, "signature": {"【丙公司】"}, "package": {"2"}, "national": {"1"}}
	a := c.submit("/ops/enterprises/new", "/ops/enterprises/new", form)
	a.wantStatus(t, http.StatusBadRequest, `value="丙公司"`)
	wantFieldError(t, a, "code", "集团编码只能包含字母、数字、- 和 _")
	if strings.Contains(a.Body, "only letters") {
		t.Error("a bad group code: the English rule shown besides the Chinese")
	}
	form.Set("code", "A")
	a = c.submit("/ops/enterprises/new", "/ops/enterprises/new", form)
	a.wantStatus(t, http.StatusConflict)
	wantFieldError(t, a, "code", "集团编码：已被使用")
	form.Set("code", "C")
	form.Set("package", "99")
	a = c.submit("/ops/enterprises/new", "/ops/enterprises/new", form)
	a.wantStatus(t, http.StatusBadRequest)
	wantFieldError(t, a, "package", "套餐表中没有套餐 99")
	form.Set("package", "2")
	c.submit("/ops/enterprises/new", "/ops/enterprises/new", form).wantRedirect(t, "/ops/enterprises/C")
	e, ok := r.pol.Lookup("C")
	if !ok || e.Name != "丙公司" || !e.National || e.OffNet || e.Package != 2 {
		t.Fatalf("C after creation: %+v", e)
	}
	c.get("/ops/enterprises/C").wantPage(t, "已新建企业 丙公司（C）", "丙公司（C）", "全网发送", "套餐 2：月租 50.00 元",
		`<option value="2" selected>`, `name="national" value="1" checked`)

	// 修改: package 5 and 外网发送; a bad TPS is refused next to its field.
	edit := url.Values{"name": {"丙公司"}, "signature": {"【丙公司】"}, "package": {"5"}, "national": {"1"}, "offnet": {"1"},
		"ext_len": {"0"}, "tps": {"-5"}, "max_users": {"50"}}
	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C", edit)
	a.wantStatus(t, http.StatusBadRequest, `<option value="5" selected>`)
	wantFieldError(t, a, "tps", "每秒条数须为 0–100000")
	if e, _ := r.pol.Lookup("C"); e.Package != 2 {
		t.Errorf("a refused edit changed the package: %d", e.Package)
	}
	edit.Set("tps", "0")
	c.submit("/ops/enterprises/C", "/ops/enterprises/C", edit).wantRedirect(t, "/ops/enterprises/C")
	if e, _ := r.pol.Lookup("C"); e.Package != 5 || !e.OffNet || !e.National {
		t.Errorf("C after the edit: %+v", e)
	}
	c.submit("/ops/enterprises/C", "/ops/enterprises/C", edit).wantRedirect(t, "/ops/enterprises/C")
	c.get("/ops/enterprises/C").wantPage(t, "没有修改")

	// 停用 / 启用.
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/state", url.Values{"disabled": {"true"}}).wantRedirect(t, "/ops/enterprises/C")
	if e, _ := r.pol.Lookup("C"); !e.Disabled {
		t.Error("C is not disabled")
	}
	c.get("/ops/enterprises/C").wantPage(t, "已停用企业 C", `<span class="badge fail" id="ent-state">已停用</span>`, ">启用</button>")
	c.get("/ops/enterprises").wantPage(t, "已停用")
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/state", url.Values{"disabled": {"false"}}).wantRedirect(t, "/ops/enterprises/C")
	if e, _ := r.pol.Lookup("C"); e.Disabled {
		t.Error("C is still disabled")
	}

	// Users: A's are listed; add one (a bad password first); set a password.
	c.get("/ops/enterprises/A").wantPage(t, "甲用户", "alice", "甲管理员", "企业管理员")
	user := url.Values{"name": {"丙一"}, "system_id": {"c1"}, "password": {"1"}, "role": {"admin"}}
	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C/users", user)
	a.wantStatus(t, http.StatusBadRequest, `value="c1"`, `value="丙公司"`)
	i := strings.Index(a.Body, `id="user-add"`)
	if i < 0 {
		t.Fatal("no user form")
	}
	wantFieldError(t, answer{Body: a.Body[i:]}, "password", "密码须为 6–8 位字母、数字或英文符号")
	// 长短信回复: a value not of the select is refused next to it, the
	// operator's choice kept.
	user.Set("password", "abc12345")
	user.Set("long_replies", "udh7")
	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C/users", user)
	a.wantStatus(t, http.StatusBadRequest, `value="c1"`)
	wantFieldError(t, answer{Body: a.Body[strings.Index(a.Body, `id="user-add"`):]}, "long_replies", "长短信回复须为 payload（整条 message_payload）、udh8（分段 UDH 8位）")
	user.Set("long_replies", "udh16")
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/users", user).wantRedirect(t, "/ops/enterprises/C")
	pg := c.get("/ops/enterprises/C")
	pg.wantPage(t, "已添加用户 丙一（c1）", `id="user-c1"`, "<th>长短信回复</th>")
	if row := userRow(t, pg.Body, "c1"); !strings.Contains(row, `<option value="udh16" selected>分段 UDH 16位</option>`) ||
		strings.Count(row, "selected") != 1 {
		t.Errorf("c1's row does not show 分段 UDH 16位 alone selected:\n%s", row)
	}
	if u, err := r.pol.User(policy.OperatorActor("t"), "c1"); err != nil || u.LongReplies != "udh16" {
		t.Errorf("c1 as stored: %+v %v", u, err)
	}
	// … changed from its row (from its next reply); udh7 refused on the row.
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/c1/update", url.Values{"long_replies": {"sar"}}).wantRedirect(t, "/ops/enterprises/C")
	pg = c.get("/ops/enterprises/C")
	pg.wantPage(t, "用户 c1 的长短信回复已设为分段 SAR，下一条回复即生效。")
	if row := userRow(t, pg.Body, "c1"); !strings.Contains(row, `<option value="sar" selected>分段 SAR</option>`) {
		t.Errorf("c1's row after the change:\n%s", row)
	}
	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/c1/update", url.Values{"long_replies": {"udh7"}})
	a.wantStatus(t, http.StatusBadRequest)
	if row := userRow(t, a.Body, "c1"); !strings.Contains(row, `<span class="ferr" role="alert">长短信回复须为 payload（整条 message_payload）`) || strings.Contains(row, `long_replies &#34;udh7&#34;`) {
		t.Errorf("no refusal of udh7 on c1's row:\n%s", row)
	}
	if u, _ := r.pol.User(policy.OperatorActor("t"), "c1"); u.LongReplies != "sar" {
		t.Errorf("a refused change changed c1: %q", u.LongReplies)
	}
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/alice/update", url.Values{"long_replies": {"sar"}}).wantStatus(t, http.StatusNotFound, "未找到")
	user.Del("long_replies")
	user.Set("name", "丙二")
	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C/users", user)
	a.wantStatus(t, http.StatusConflict)
	wantFieldError(t, answer{Body: a.Body[strings.Index(a.Body, `id="user-add"`):]}, "system_id", "登录账号：已被使用")

	a = c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/c1/password", url.Values{"password": {"x"}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "密码须为 6–8 位")
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/c1/password", url.Values{"password": {"newpw12"}}).wantRedirect(t, "/ops/enterprises/C")
	if st := loginAs(r, "c1", "newpw12"); st != http.StatusSeeOther {
		t.Errorf("c1 cannot log in with the password set at the desk: %d", st)
	}
	// A user of another enterprise through C's page: not found.
	c.submit("/ops/enterprises/C", "/ops/enterprises/C/users/alice/password", url.Values{"password": {"newpw12"}}).wantStatus(t, http.StatusNotFound, "未找到")
	c.get("/ops/enterprises/NOPE").wantStatus(t, http.StatusNotFound, "未找到")
}

func TestDeskApprovals(t *testing.T) {
	r := newRig(t)
	amy := policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}
	if _, err := r.pol.AddWhitelist(amy, "A", []string{"13900000021", "13900000022", "13900000023"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.RequestSignature(amy, "A", "【甲科技】"); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	c.opsLogin()
	a := c.get("/ops/approvals")
	a.wantPage(t, "待审批", "13712345679", "13900000023", `value="A|8613712345679"`, "【甲科技】", "【甲公司】", "没有待审批的开户申请")
	c.get("/ops/").wantPage(t, "<span>白名单号码</span><b>4</b>", "<span>签名修改申请</span><b>1</b>")

	st := func(num string) policy.WhitelistState {
		t.Helper()
		entries, _, err := r.pol.ListWhitelist(policy.OperatorActor("t"), "A", 0, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Number == "+86"+num {
				return e.State
			}
		}
		t.Fatalf("%s is not on A's whitelist", num)
		return 0
	}
	// One entry: approve.
	c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"approve": {"A|8613712345679"}}).wantRedirect(t, "/ops/approvals")
	if s := st(numPending); s != policy.WhitelistApproved {
		t.Errorf("numPending: %v", s)
	}
	c.get("/ops/approvals").wantPage(t, "已通过 1 个号码")
	// One entry: reject without a reason → the reason's error beside the row.
	a = c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"reject": {"A|8613900000021"}})
	a.wantStatus(t, http.StatusBadRequest)
	wantFieldError(t, a, "r:A|8613900000021", "拒绝时须填写原因")
	c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"reject": {"A|8613900000021"}, "r:A|8613900000021": {"非本企业客户"}}).wantRedirect(t, "/ops/approvals")
	if s := st("13900000021"); s != policy.WhitelistRejected {
		t.Errorf("13900000021: %v", s)
	}
	// A selection: nothing ticked; reject without reason; approve.
	a = c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"bulk": {"approve"}})
	a.wantStatus(t, http.StatusUnprocessableEntity, "请先勾选要审批的号码")
	sel := url.Values{"bulk": {"reject"}, "e": {"A|8613900000022", "A|8613900000023"}}
	a = c.submit("/ops/approvals", "/ops/approvals/whitelist", sel)
	a.wantStatus(t, http.StatusBadRequest)
	wantFieldError(t, a, "reason", "原因：拒绝时须填写原因")
	sel.Set("bulk", "approve")
	c.submit("/ops/approvals", "/ops/approvals/whitelist", sel).wantRedirect(t, "/ops/approvals")
	if st("13900000022") != policy.WhitelistApproved || st("13900000023") != policy.WhitelistApproved {
		t.Error("the selection is not approved")
	}
	c.get("/ops/approvals").wantPage(t, "已通过 2 个号码", "没有待审批的号码")

	// Signature requests: reject without a reason, then approve.
	reqs, err := r.pol.SignatureRequests(policy.OperatorActor("t"), "", "pending")
	if err != nil || len(reqs) != 1 {
		t.Fatalf("signature requests: %v %v", reqs, err)
	}
	id := reqs[0].ID
	a = c.submit("/ops/approvals", "/ops/approvals/signatures/"+id+"/reject", url.Values{})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "原因")
	c.submit("/ops/approvals", "/ops/approvals/signatures/"+id+"/approve", url.Values{}).wantRedirect(t, "/ops/approvals")
	if e, _ := r.pol.Lookup("A"); e.Signature != "【甲科技】" {
		t.Errorf("A's signature: %s", e.Signature)
	}
	c.get("/ops/approvals").wantPage(t, "已通过企业 A 的签名 【甲科技】", "没有待审批的签名修改申请")
	c.submit("/ops/approvals", "/ops/approvals/signatures/"+id+"/approve", url.Values{}).wantStatus(t, http.StatusBadRequest)
}

func TestDeskBills(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	ids := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "账单"})
	r.waitState(key, ids[0], "delivered")
	c := r.client()
	c.opsLogin()
	month := policy.MonthOf(time.Now())
	a := c.get("/ops/bills")
	a.wantPage(t, `value="`+month+`"`, `id="bill-A"`, "甲公司", "套餐 3", "150.00", "1700", `href="/ops/bills.csv?month=`+month+`"`, "合计（2 家）")
	i := strings.Index(a.Body, `id="bill-A"`)
	if row := a.Body[i : i+strings.Index(a.Body[i:], "</tr>")]; !strings.Contains(row, `<td data-label="接收成功（条）">1`) {
		t.Errorf("A's bill does not count the delivered message: %s", row)
	}
	csv := c.get("/ops/bills.csv?month=" + month)
	csv.wantStatus(t, http.StatusOK, "\uFEFF集团编码,企业名称,月份,套餐,月租（元）", "\nA,甲公司,"+month+",3,150.00,1700,1,0,0.10,0.00,150.00,0,\n", "\nB,乙公司,")
	if ct := csv.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" || !strings.Contains(csv.Header.Get("Content-Disposition"), "bill-"+month+".csv") {
		t.Errorf("CSV headers: %v", csv.Header)
	}
	a = c.get("/ops/bills?month=2026-13")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "月份：请选择月份")
	c.get("/ops/bills?month=1999-01").wantPage(t, "1999-01 没有账单")
}

func TestDeskExport(t *testing.T) {
	r := newRig(t)
	key := r.apiKey("alice")
	ids := r.apiSend(key, api.SendRequest{To: []string{numA1}, Text: "回执"})
	r.waitState(key, ids[0], "delivered")
	c := r.client()
	c.opsLogin()
	c.get("/ops/export").wantPage(t, "回执导出", `<option value="A"`, `name="from"`, `action="/ops/export/dlr.csv"`)
	a := c.get("/ops/export/dlr.csv?enterprise=A&from=&to=2030-01-01")
	a.wantStatus(t, http.StatusBadRequest, `<option value="A" selected>`)
	wantFieldError(t, a, "from", "开始日期：必填")
	a = c.get("/ops/export/dlr.csv?from=2030-01-01&to=2020-01-01")
	a.wantStatus(t, http.StatusBadRequest)
	wantFieldError(t, a, "to", "结束日期早于开始日期")

	now := time.Now()
	q := url.Values{"enterprise": {"A"}, "from": {now.AddDate(0, 0, -1).Format("2006-01-02")}, "to": {now.AddDate(0, 0, 2).Format("2006-01-02")}}
	a = c.get("/ops/export/dlr.csv?" + q.Encode())
	a.wantStatus(t, http.StatusOK, "id,part,parts,enterprise,account", ",A,alice,", ","+numA1+",", ",delivered,")
	if !strings.HasPrefix(a.Header.Get("Content-Type"), "text/csv") || !strings.Contains(a.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("export headers: %v", a.Header)
	}
	q.Set("enterprise", "B")
	if a = c.get("/ops/export/dlr.csv?" + q.Encode()); strings.Contains(a.Body, ",alice,") {
		t.Errorf("B's export has A's message:\n%s", a.Body)
	}

	// 退订名单导出: one enterprise's list or all, as a CSV; an unknown
	// enterprise is said on the form.
	if _, err := r.pol.OptOut("A", numA1, 7, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.AddOptOuts(policy.Actor{Enterprise: "B", Name: "乙", Admin: true}, "B", []string{numA2}); err != nil {
		t.Fatal(err)
	}
	c.get("/ops/enterprises/A").wantPage(t, `<dt>退订名单</dt><dd>1 个号码（<a href="/ops/export/optouts.csv?enterprise=A">导出</a>）</dd>`)
	c.get("/ops/export").wantPage(t, "退订名单导出", `action="/ops/export/optouts.csv"`)
	a = c.get("/ops/export/optouts.csv?enterprise=A")
	a.wantStatus(t, http.StatusOK, "\uFEFFenterprise,number,at,mo_id,by\n", "A,+86"+numA1+",")
	if strings.Contains(a.Body, numA2) || !strings.Contains(a.Header.Get("Content-Disposition"), `filename="optouts-A.csv"`) {
		t.Errorf("A's opt-outs: %v\n%s", a.Header, a.Body)
	}
	c.get("/ops/export/optouts.csv").wantStatus(t, http.StatusOK, "A,+86"+numA1+",", "B,+86"+numA2+",", ",0,乙\n")
	a = c.get("/ops/export/optouts.csv?enterprise=NOPE")
	a.wantStatus(t, http.StatusNotFound, "退订名单导出")
	if _, form, _ := strings.Cut(a.Body, `id="export-optouts"`); !strings.Contains(form, `class="ferr" role="alert">`) {
		t.Errorf("an unknown enterprise, no error on the opt-outs' form:\n%s", a.Body)
	}
}

// userRow is the row of a user's table (id user-SID) in a page.
func userRow(t *testing.T, body, sid string) string {
	t.Helper()
	i := strings.Index(body, `<tr id="user-`+sid+`">`)
	if i < 0 {
		t.Fatalf("no row of %s:\n%s", sid, body)
	}
	row := body[i:]
	if j := strings.Index(row, "</tr>"); j >= 0 {
		row = row[:j]
	}
	return row
}

// TestDeskAccountManager: an account manager logs in to the desk with
// their own token (api.Config.Managers): the header names them, and the
// entry they approve shows their name to the enterprise (白名单维护's 审批
// column), not admin-api. Logging out forgets the name.
func TestDeskAccountManager(t *testing.T) {
	const token = "zhang-token-0123456789"
	r := newRig(t, func(c *api.Config) { c.Managers = []api.Manager{{Name: "张经理", Token: token}} })
	c := r.client()
	a := c.submit("/ops/login", "/ops/login", url.Values{"token": {token}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("张经理's login: %d %s", a.Status, a.Body)
	}
	c.get("/ops/").wantPage(t, `<span class="who">张经理</span>`)
	c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"approve": {"A|8613712345679"}}).wantRedirect(t, "/ops/approvals")
	amy := r.client()
	amy.login("amy")
	a = amy.get("/whitelist?state=approved")
	if i := strings.Index(a.Body, "13712345679"); i < 0 || !strings.Contains(a.Body[i:], "张经理") {
		t.Errorf("the enterprise's whitelist does not show 张经理 beside 13712345679:\n%s", a.Body)
	}
	c.post("/ops/logout", url.Values{})
	c.opsLogin() // the admin token: no manager's name
	if a := c.get("/ops/"); strings.Contains(a.Body, "张经理") || strings.Contains(a.Body, `class="who"`) {
		t.Errorf("the admin token's desk still shows 张经理:\n%s", a.Body)
	}
	// What the admin token decides and what the configuration seeded are
	// named in Chinese, not admin-api and seed.
	if _, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}, "A", []string{"13900000041"}); err != nil {
		t.Fatal(err)
	}
	c.submit("/ops/approvals", "/ops/approvals/whitelist", url.Values{"approve": {"A|8613900000041"}}).wantRedirect(t, "/ops/approvals")
	a = amy.get("/whitelist")
	if i := strings.Index(a.Body, "13900000041"); i < 0 || !strings.Contains(a.Body[i:], "客户经理") ||
		!strings.Contains(a.Body, "开户导入") || strings.Contains(a.Body, "admin-api") || strings.Contains(a.Body, " seed<") {
		t.Errorf("the enterprise's whitelist names the admin token or the seeding in English:\n%s", a.Body)
	}
}

// TestDeskManagerPortfolio: an account manager who serves A only (its
// portfolio) sees A's on the desk: the header says so; the pending
// entries, the enterprises and the export's choices are A's; what is not
// its to do (开户申请, 新建企业) is not offered; B's page is refused in Chinese. The admin token's desk has
// them all again.
func TestDeskManagerPortfolio(t *testing.T) {
	const token = "li-token-0123456789ab"
	r := newRig(t, func(c *api.Config) {
		c.Managers = []api.Manager{{Name: "李经理", Token: token, Enterprises: []string{"A"}}}
		// The daemon ranks the top senders among those keep holds.
		c.Load = func(keep func(string) bool) *api.LoadStatus {
			st := &api.LoadStatus{Seconds: 60, Accepted: 900, TopEnterprises: []api.EnterpriseLoad{}}
			for _, e := range []api.EnterpriseLoad{{Enterprise: "B", Accepted: 600}, {Enterprise: "A", Accepted: 300}} {
				if keep == nil || keep(e.Enterprise) {
					st.TopEnterprises = append(st.TopEnterprises, e)
				}
			}
			return st
		}
	})
	if _, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "B", Admin: true, Name: "bob"}, "B", []string{"13900000051"}); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	if a := c.submit("/ops/login", "/ops/login", url.Values{"token": {token}}); a.Status != http.StatusSeeOther {
		t.Fatalf("李经理's login: %d %s", a.Status, a.Body)
	}
	notOffered := func(path string, not ...string) {
		t.Helper()
		a := c.get(path)
		a.wantPage(t, `<span class="who">李经理 · 负责 A</span>`)
		for _, n := range not {
			if strings.Contains(a.Body, n) {
				t.Errorf("%s offers %q to 李经理 (A's):\n%s", path, n, a.Body)
			}
		}
	}
	notOffered("/ops/", "开户申请", `href="/ops/enterprises/B"`)
	// The senders are hers; the daemon's figures are said to be the
	// whole gateway's.
	c.get("/ops/").wantPage(t, "您负责的企业中发送最多的", `<a href="/ops/enterprises/A">A</a>`, "33%",
		"队列、负载与拒绝统计为整个网关的数字", "启动以来的拒绝（按原因，整个网关）")
	notOffered("/ops/approvals", "开户申请", "13900000051")
	c.get("/ops/approvals").wantPage(t, "13712345679") // A's pending entry
	notOffered("/ops/enterprises", "新建企业", "乙公司")
	c.get("/ops/enterprises").wantPage(t, "甲公司")
	notOffered("/ops/export", "全部企业", "乙公司")
	// 号码查询 is hers too, over A.
	c.get("/ops/trace?number="+numA1).wantPage(t, "号码查询", "您负责的企业：A", "该号码不在您负责的任何企业的退订名单中")
	// The address of 新建企业 typed: refused, and why (not a form that fails).
	if a := c.get("/ops/enterprises/new"); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "您只负责部分企业，新建企业请由负责全部企业的客户经理办理") || strings.Contains(a.Body, `id="ent-form"`) {
		t.Errorf("新建企业 to 李经理: %d, want 403 with the reason and no form:\n%s", a.Status, a.Body)
	}
	a := c.get("/ops/enterprises/B")
	if a.Status != http.StatusForbidden || !strings.Contains(a.Body, "无权执行此操作（企业 B 不在客户经理李经理负责的企业之中）") {
		t.Errorf("B's page to 李经理: %d, want 403 with the reason in Chinese:\n%s", a.Status, a.Body)
	}
	c.post("/ops/logout", url.Values{})
	c.opsLogin() // the admin token: every enterprise
	a = c.get("/ops/enterprises")
	a.wantPage(t, "新建企业", "乙公司")
	if strings.Contains(a.Body, "负责 A") {
		t.Errorf("the admin token's desk still shows 李经理's portfolio:\n%s", a.Body)
	}
	c.get("/ops/approvals").wantPage(t, "开户申请", "13900000051")
	a = c.get("/ops/")
	a.wantPage(t, "<h3>发送最多的企业</h3>", `<a href="/ops/enterprises/B">B</a>`, `<a href="/ops/enterprises/A">A</a>`)
	if strings.Contains(a.Body, "整个网关") {
		t.Errorf("the admin token's desk home speaks of a portfolio:\n%s", a.Body)
	}
}

// TestDeskReadOnly: a read-only account manager's desk (客服, an auditor)
// shows what the manager serves and no form that changes anything: no
// page it can open posts anywhere but its logout. A change posted all the
// same is refused by the API, and the desk says why.
func TestDeskReadOnly(t *testing.T) {
	const token = "wang-readonly-0123456789"
	r := newRig(t, func(c *api.Config) {
		c.Managers = []api.Manager{{Name: "王客服", Token: token, ReadOnly: true}}
	})
	c := r.client()
	if a := c.submit("/ops/login", "/ops/login", url.Values{"token": {token}}); a.Status != http.StatusSeeOther {
		t.Fatalf("王客服's login: %d %s", a.Status, a.Body)
	}
	posts := regexp.MustCompile(`method="post" action="([^"]*)"`)
	for _, path := range []string{"/ops/", "/ops/enterprises", "/ops/enterprises/A", "/ops/enterprises/A/whitelist",
		"/ops/approvals", "/ops/bills", "/ops/export", "/ops/enterprises/A/records", "/ops/trace?number=" + numA1} {
		a := c.get(path)
		a.wantPage(t, `<span class="who">王客服 · 只读</span>`)
		for _, m := range posts.FindAllStringSubmatch(a.Body, -1) {
			if m[1] != "/ops/logout" {
				t.Errorf("%s offers a change to 王客服 (read-only): a form posting to %s", path, m[1])
			}
		}
	}
	c.get("/ops/approvals").wantPage(t, numPending, "您是只读账号：只能查看")
	if a := c.get("/ops/enterprises/new"); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "客户经理王客服为只读账号，只能查看，不能新建企业") || strings.Contains(a.Body, `id="ent-form"`) {
		t.Errorf("新建企业 to 王客服 (read-only): %d, want 403 with the reason and no form:\n%s", a.Status, a.Body)
	}
	if a := c.get("/ops/"); !strings.Contains(a.Body, ">查看待审批</a>") || strings.Contains(a.Body, "去审批") {
		t.Errorf("the home offers 去审批 to 王客服 (read-only), want 查看待审批:\n%s", a.Body)
	}
	c.get("/ops/enterprises/A").wantPage(t, `id="ent-whitelist">查看</a>`, "整条 (message_payload)", `<dd id="ent-limits">每秒条数为默认；月消费不设上限</dd>`)
	a := c.submit("/ops/enterprises/A/whitelist", "/ops/enterprises/A/whitelist/decide", url.Values{"number": {numPending}, "decision": {"approve"}})
	if a.Status != http.StatusSeeOther {
		t.Fatalf("an approval posted by 王客服: %d, want 303 back to the list:\n%s", a.Status, a.Body)
	}
	c.get(a.Location).wantPage(t, "未变更：无权执行此操作（客户经理王客服为只读账号，只能查看，不能修改）")
	c.get("/ops/approvals").wantPage(t, numPending) // still pending

	// A disabled enterprise's page: no 启用, no 放弃暂停发送的短信.
	req, _ := http.NewRequest(http.MethodPatch, r.url+"/admin/v1/enterprises/A", strings.NewReader(`{"disabled":true}`))
	req.Header.Set("Authorization", "Bearer "+opsToken_)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("disabling A: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	a = c.get("/ops/enterprises/A")
	a.wantPage(t, `id="ent-state">已停用`)
	for _, m := range posts.FindAllStringSubmatch(a.Body, -1) {
		if m[1] != "/ops/logout" {
			t.Errorf("disabled A's page offers a change to 王客服 (read-only): a form posting to %s", m[1])
		}
	}

	// The admin token's desk has those forms (the check above can fail).
	c.post("/ops/logout", url.Values{"csrf": {c.csrf("/ops/")}})
	c.opsLogin()
	a = c.get("/ops/enterprises/A")
	a.wantPage(t, `id="ent-toggle"`, `id="user-add"`, `id="ent-form"`)
	if strings.Contains(a.Body, "· 只读") {
		t.Errorf("the admin token's desk says 只读:\n%s", a.Body)
	}
}

// TestDeskFollowsReload: the desk asks the API whom its session acts as
// on every page, so a reload that changes a manager (api.SetManagers)
// shows on the manager's next page without a new login: given a
// portfolio and made read-only, its header says so and its pages offer
// nothing to change; its token rotated, it is back at the login.
func TestDeskFollowsReload(t *testing.T) {
	const token = "zhao-token-0123456789ab"
	r := newRig(t, func(c *api.Config) {
		c.Managers = []api.Manager{{Name: "赵经理", Token: token}}
	})
	c := r.client()
	if a := c.submit("/ops/login", "/ops/login", url.Values{"token": {token}}); a.Status != http.StatusSeeOther {
		t.Fatalf("赵经理's login: %d %s", a.Status, a.Body)
	}
	c.get("/ops/enterprises/A").wantPage(t, `<span class="who">赵经理</span>`, `id="ent-toggle"`)
	c.get("/ops/approvals").wantPage(t, `id="applications"`)

	r.api.SetManagers([]api.Manager{{Name: "赵经理", Token: token, Enterprises: []string{"A"}, ReadOnly: true}})
	a := c.get("/ops/enterprises/A")
	a.wantPage(t, `<span class="who">赵经理 · 负责 A · 只读</span>`)
	if strings.Contains(a.Body, `id="ent-toggle"`) {
		t.Errorf("A's page still offers 停用 to 赵经理, now read-only:\n%s", a.Body)
	}
	if a := c.get("/ops/approvals"); strings.Contains(a.Body, `id="applications"`) {
		t.Errorf("待审批 still offers 开户申请 to 赵经理, now serving A:\n%s", a.Body)
	}

	r.api.SetManagers([]api.Manager{{Name: "赵经理", Token: token + "x", Enterprises: []string{"A"}}})
	if a := c.get("/ops/enterprises/A"); a.Status != http.StatusSeeOther || !strings.HasPrefix(a.Location, "/ops/login") {
		t.Errorf("赵经理's page after the token was rotated: %d to %q, want the login", a.Status, a.Location)
	}
}

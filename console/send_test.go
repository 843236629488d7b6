package console

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/reminder"
)

// sendUpload posts a multipart form as the browser's upload forms do:
// the fields, then the file, the CSRF token of page in the action's query
// ("" page: no token).
func sendUpload(c *browserless, page, action string, fields url.Values, name, content string) answer {
	c.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		c.t.Fatal(err)
	}
	fw.Write([]byte(content))
	mw.Close()
	if page != "" {
		sep := "?"
		if strings.Contains(action, "?") {
			sep = "&"
		}
		action += sep + "csrf=" + url.QueryEscape(c.csrf(page))
	}
	req, err := http.NewRequest(http.MethodPost, c.base+action, &buf)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", c.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return c.do(req)
}

// htmx posts a form as htmx does: the token in the header.
func (c *browserless) htmx(page, action string, form url.Values) answer {
	c.t.Helper()
	tok := c.csrf(page)
	req, err := http.NewRequest(http.MethodPost, c.base+action, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("HX-Request", "true")
	req.Header.Set(csrfHeader, tok)
	return c.do(req)
}

// waitJob opens the job page until it shows want (the job runs in the
// background); it returns the last page.
func waitJob(t *testing.T, c *browserless, path, want string) answer {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a := c.get(path)
		if a.Status == http.StatusOK && strings.Contains(a.Body, want) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s", path, want, a.Body)
		}
		time.Sleep(20 * time.Millisecond) // polling the page, as a person reloads it
	}
}

var counterRE = regexp.MustCompile(`共 <b class="chars">(\d+)</b> 字（含签名「【甲公司】」），按 <b class="segs">(\d+)</b> 条计费`)

func TestSendGroup(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	a := c.get("/send/group")
	a.wantPage(t, "<h1>短信群发</h1>", `hx-post="/send/count"`, `hx-trigger="input changed delay:200ms, load"`,
		"个人通讯录中还没有分组", `type="datetime-local" name="send_at"`, `name="priority" value="1" >优先发送`)
	if m := counterRE.FindStringSubmatch(a.Body); m == nil || m[1] != "5" || m[2] != "1" {
		t.Errorf("the empty text's counter: %v", m)
	}

	// The counter: the API's numbers, 70 characters one message, 71 two.
	for _, tc := range []struct{ n, chars, segs string }{{"65", "70", "1"}, {"66", "71", "2"}} {
		n := map[string]int{"65": 65, "66": 66}[tc.n]
		a = c.htmx("/send/group", "/send/count", url.Values{"text": {strings.Repeat("好", n)}})
		m := counterRE.FindStringSubmatch(a.Body)
		if a.Status != http.StatusOK || m == nil || m[1] != tc.chars || m[2] != tc.segs || strings.Contains(a.Body, "<html") {
			t.Errorf("count of %d 好: %d %s", n, a.Status, a.Body)
		}
	}
	a = c.htmx("/send/group", "/send/count", url.Values{"text": {strings.Repeat("长", 600)}})
	if !strings.Contains(a.Body, `class="counter over"`) || !strings.Contains(a.Body, "短信超过500个字（含签名）") || !strings.Contains(a.Body, "605") {
		t.Errorf("count of a too long text: %s", a.Body)
	}

	// Groups of both books: alice's personal one, amy's enterprise one.
	c.submit("/contacts", "/contacts", url.Values{"name": {"张三"}, "number": {numA3}, "groups": {"销售部"}}).wantRedirect(t, "/contacts")
	amy := r.client()
	amy.login("amy")
	amy.submit("/enterprise/contacts", "/enterprise/contacts", url.Values{"name": {"总机"}, "number": {numA2}, "groups": {"总部"}}).wantRedirect(t, "/enterprise/contacts")
	c.get("/send/group").wantPage(t, `value="销售部"`, "销售部（1）")
	a = c.get("/send/group?switch=enterprise&to=" + url.QueryEscape(numA1) + "&text=" + url.QueryEscape("你好"))
	a.wantPage(t, `value="总部"`, `name="book" value="enterprise"`, numA1+"</textarea>", "你好</textarea>")

	// Send: two whitelisted numbers (one from the group) and one not.
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA1 + "、13900000099"}, "book": {"enterprise"}, "groups": {"总部"}, "text": {"明天上午九点开会"}})
	a.wantPage(t, "发送结果", `<b class="accepted">2</b>`, `<b class="refused">1</b>`, "13900000099", "号码不在已审批的白名单内",
		"8613900000099：不在白名单中）", `href="/outbox"`, `href="/scheduled"`, "共 <b class=\"chars\">13</b> 字")

	// The same number twice, however written, and again in a group: one
	// message, and the page says so.
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA3 + "\n+86 " + numA3 + "\n86" + numA3 + "\n" + numA1}, "groups": {"销售部"}, "text": {"一次就好"}})
	a.wantPage(t, "发送结果", `<b class="accepted">2</b>`, `<b class="refused">0</b>`, `id="duplicates"><b>2</b> 个（同一号码只发送一条`)
	if strings.Contains(a.Body, `id="refused"`) {
		t.Errorf("duplicates listed as refused:\n%s", a.Body)
	}

	// A send time: the message waits in 定时发件箱.
	at := time.Now().In(reminder.Shanghai).Add(24 * time.Hour).Format(localLayout)
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA1}, "text": {"定时"}, "send_at": {at}})
	a.wantPage(t, "将于 "+strings.Replace(at, "T", " ", 1)+" 发送", "查看定时发件箱")
	c.get("/scheduled").wantPage(t, "定时")

	// 优先发送: a verification code ahead of the enterprise's backlog.
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA1}, "text": {"验证码 384921"}, "priority": {"1"}})
	a.wantPage(t, "发送结果", `<b class="accepted">1</b>`)

	// Refusals next to their field, the form kept (优先发送 too).
	a = c.submit("/send/group", "/send/group", url.Values{"to": {""}, "text": {"你好"}, "priority": {"1"}})
	a.wantStatus(t, http.StatusBadRequest, "你好</textarea>", `name="priority" value="1" checked`)
	fieldError(t, a.Body, "输入有误（请填写接收号码）")
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA1}, "text": {strings.Repeat("长", 600)}})
	a.wantStatus(t, http.StatusUnprocessableEntity, numA1+"</textarea>")
	fieldError(t, a.Body, "短信超过500个字（含签名）（共 605 个字（含签名），最多 500 个字）")
	if strings.Contains(a.Body, "characters") {
		t.Error("the too-long refusal says its detail in English")
	}
	a = c.submit("/send/group", "/send/group", url.Values{"to": {numA1}, "text": {"x"}, "send_at": {"明天"}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（发送时间格式有误")
	a = c.submit("/send/group", "/send/group", url.Values{"groups": {"没有这个组"}, "text": {"x"}})
	if a.Status < 400 || !regexp.MustCompile(`(?s)name="groups".*<span class="ferr"`).MatchString(a.Body) {
		t.Errorf("an unknown group: %d, no error after the groups:\n%s", a.Status, a.Body)
	}
	csrfRefused(t, c, "/send/group", "/send/count")
}

func TestSplitNumbers(t *testing.T) {
	got := strings.Join(splitNumbers("137 1234 5678\n13923412345 13800138000；+86 139 0000 0001、13900000002,13900000003"), "|")
	want := "137 1234 5678|13923412345|13800138000|+86 139 0000 0001|13900000002|13900000003"
	if got != want {
		t.Errorf("splitNumbers: %q, want %q", got, want)
	}
}

func TestSendBatch(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	c.get("/send/batch").wantPage(t, "<h1>批量发送</h1>", `action="/send/batch?csrf=`, `enctype="multipart/form-data"`,
		`href="/send/batch/template.xlsx"`, `href="/send/batch/template.csv"`)
	if a := c.get("/send/batch/template.csv"); a.Status != http.StatusOK || !strings.Contains(a.Body, "号码,内容") {
		t.Errorf("CSV template: %d %q", a.Status, a.Body)
	}
	if a := c.get("/send/batch/template.xlsx"); a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "PK") {
		t.Errorf("XLSX template: %d", a.Status)
	}
	if a := sendUpload(c, "", "/send/batch", nil, "b.csv", numA1+",你好\n"); a.Status != http.StatusForbidden {
		t.Errorf("batch upload without CSRF token: %d, want 403", a.Status)
	}

	// Refusals next to the file field.
	a := sendUpload(c, "/send/batch", "/send/batch", nil, "b.csv", "")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误")
	a = sendUpload(c, "/send/batch", "/send/batch", nil, "b.xls", "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest")
	a.wantStatus(t, http.StatusUnsupportedMediaType)
	fieldError(t, a.Body, "不支持的文件格式")

	// A file: two rows sent, one refused (not whitelisted), one empty text.
	file := "号码,内容\n" + numA1 + ",张先生您好\n" + numA2 + ",李女士您好\n13900000099,王先生您好\n" + numA3 + ",\n"
	a = sendUpload(c, "/send/batch", "/send/batch", nil, "批量.csv", file)
	a.wantRedirect(t, "/jobs/")
	job := a.Location
	a = waitJob(t, c, job, "已完成")
	a.wantPage(t, "批量发送", "批量.csv", `id="job-accepted">2<`, `id="job-refused">2<`, "号码不在已审批的白名单内", "13900000099",
		"8613900000099：不在白名单中）", `href="`+job+`/errors.csv"`, "下载错误明细")
	if strings.Contains(a.Body, "hx-trigger") {
		t.Errorf("a finished job's page still polls:\n%s", a.Body)
	}
	a = c.get(job + "/errors.csv")
	if a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "\ufeff行号,号码,原因,说明\n") || !strings.Contains(a.Body, "13900000099,号码不在已审批的白名单内,+8613900000099：不在白名单中\n") ||
		!strings.Contains(a.Header.Get("Content-Type"), "text/csv") || !strings.Contains(a.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("errors.csv: %d %v %q", a.Status, a.Header, a.Body)
	}
	c.get("/jobs").wantPage(t, "<h1>发送任务</h1>", `href="`+job+`"`, "已完成", "批量.csv")
	// The progress fragment of a finished job does not poll.
	a = c.get(job + "/progress")
	a.wantPage(t, `id="progress"`, "已完成")
	if strings.Contains(a.Body, "every 1s") || strings.Contains(a.Body, "<html") {
		t.Errorf("progress fragment: %s", a.Body)
	}
	// Cancelling a finished job says so.
	c.submit(job, job+"/cancel", url.Values{}).wantRedirect(t, job)
	c.get(job).wantPage(t, "任务已结束")

	// A send time: the rows wait in 定时发件箱.
	at := time.Now().In(reminder.Shanghai).Add(2 * time.Hour).Format(localLayout)
	a = sendUpload(c, "/send/batch", "/send/batch", url.Values{"send_at": {at}}, "later.csv", numA1+",稍后发送\n")
	a.wantRedirect(t, "/jobs/")
	waitJob(t, c, a.Location, "已完成")
	c.get("/scheduled").wantPage(t, "稍后发送", strings.Replace(at, "T", " ", 1))
	a = sendUpload(c, "/send/batch", "/send/batch", url.Values{"send_at": {"下周"}}, "later.csv", numA1+",稍后发送\n")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（发送时间格式有误")
	// 发送 with no file chosen: the browser sends the file part empty.
	a = sendUpload(c, "/send/batch", "/send/batch", nil, "", "")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（没有选择文件，或文件是空的）")

	// bob (enterprise B) does not see alice's job.
	bob := r.client()
	bob.login("bob")
	bob.get(job).wantStatus(t, http.StatusNotFound, "未找到")
	bob.get(job+"/errors.csv").wantStatus(t, http.StatusNotFound)
	bob.submit("/jobs", job+"/cancel", url.Values{}).wantStatus(t, http.StatusNotFound)
	if a := bob.get("/jobs"); strings.Contains(a.Body, job) {
		t.Errorf("bob's 发送任务 lists alice's job")
	}
	csrfRefused(t, c, job+"/cancel")
}

const customCSV = "姓名,手机,金额\n张三," + numA1 + ",100\n李四," + numA2 + ",\n王五,13900000099,7\n"

func TestSendCustom(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	c.get("/send/custom").wantPage(t, "<h1>定制发送</h1>", `action="/send/custom?csrf=`, `enctype="multipart/form-data"`)
	if a := sendUpload(c, "", "/send/custom", nil, "c.csv", customCSV); a.Status != http.StatusForbidden {
		t.Errorf("upload without CSRF token: %d, want 403", a.Status)
	}
	a := sendUpload(c, "/send/custom", "/send/custom", nil, "c.csv", "")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误")

	a = sendUpload(c, "/send/custom", "/send/custom", nil, "费用.csv", customCSV)
	a.wantRedirect(t, "/send/custom/upl_")
	page := a.Location
	a = c.get(page)
	a.wantPage(t, "费用.csv", "<th>姓名</th><th>手机</th><th>金额</th>", "张三", `<option value="手机" >手机</option>`,
		`data-insert="{金额}"`, `hx-post="`+page+`/preview"`, `<script src="/static/send.js" defer></script>`)

	// 预览 without JS: the whole page, the first row filled and counted.
	form := url.Values{"number_column": {"手机"}, "template": {"{姓名}您好，本月费用{金额}元"}}
	a = c.submit(page, page+"/preview", form)
	a.wantPage(t, "【甲公司】张三您好，本月费用100元", "18 字 / 1 条", "可发送", "本行的模板字段为空", "{姓名}您好，本月费用{金额}元</textarea>",
		`<option value="手机" selected>手机</option>`)
	// 预览 with htmx: the fragment alone.
	a = c.htmx(page, page+"/preview", form)
	a.wantPage(t, `id="preview"`, "【甲公司】张三您好，本月费用100元")
	if strings.Contains(a.Body, "<html") {
		t.Errorf("the htmx preview is a whole page")
	}
	// A field that names no column: next to the text box (page), in the
	// preview (fragment).
	bad := url.Values{"number_column": {"手机"}, "template": {"{年龄}岁"}}
	a = c.submit(page, page+"/preview", bad)
	a.wantStatus(t, http.StatusBadRequest, "{年龄}岁</textarea>")
	fieldError(t, a.Body, "模板中的字段在文件中不存在")
	c.htmx(page, page+"/preview", bad).wantPage(t, "模板中的字段在文件中不存在")
	a = c.submit(page, page, bad)
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "模板中的字段在文件中不存在")

	// bob sees the page that asks for a new upload.
	bob := r.client()
	bob.login("bob")
	bob.get(page).wantStatus(t, http.StatusNotFound, "文件已失效", "重新上传文件")
	bob.submit("/send/custom", page+"/delete", url.Values{}).wantStatus(t, http.StatusNotFound, "文件已失效")
	csrfRefused(t, c, page, page+"/preview", page+"/delete")

	// Send; the job completes; the upload is consumed.
	a = c.submit(page, page, form)
	a.wantRedirect(t, "/jobs/")
	a = waitJob(t, c, a.Location, "已完成")
	a.wantPage(t, "定制发送", `id="job-accepted">1<`, `id="job-refused">2<`, "本行的模板字段为空", "号码不在已审批的白名单内")
	c.get(page).wantStatus(t, http.StatusNotFound, "文件已失效")
	c.get("/outbox").wantPage(t, "【甲公司】张三您好，本月费用100元")
	// A preview the typing delayed, answered after 发送 took the upload:
	// said in the preview, and the browser is not sent away from the
	// job's page (it was redirected to one saying the file is gone).
	a = c.htmx(page, page+"/preview", form)
	a.wantPage(t, `id="preview-gone"`, "可能刚刚已经发送", `href="/jobs"`)
	if to := a.Header.Get("HX-Redirect"); to != "" || strings.Contains(a.Body, "<html") {
		t.Errorf("a preview of a sent upload: HX-Redirect %q, a whole page %v; want the fragment alone", to, strings.Contains(a.Body, "<html"))
	}

	// 删除.
	a = sendUpload(c, "/send/custom", "/send/custom", nil, "x.csv", customCSV)
	a.wantRedirect(t, "/send/custom/upl_")
	c.submit(a.Location, a.Location+"/delete", url.Values{}).wantRedirect(t, "/send/custom")
	c.get(a.Location).wantStatus(t, http.StatusNotFound, "文件已失效")
}

var onceRE = regexp.MustCompile(`action="/send/group\?csrf=[^"&]+&amp;once=([A-Za-z0-9_-]{22})"`)

// TestSendGroupOnce: the 短信群发 form posted twice (a double click, a
// reload of the answer page) sends once and shows the same answer; the
// form rendered again, for another send or corrected after a refusal,
// carries a new once value, so it sends again.
func TestSendGroupOnce(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	once := func(a answer) string {
		t.Helper()
		m := onceRE.FindStringSubmatch(a.Body)
		if m == nil {
			t.Fatalf("no once field in the form:\n%s", a.Body)
		}
		return m[1]
	}
	first := once(c.get("/send/group"))
	form := url.Values{"to": {numA1}, "text": {"只发一次的通知"}, "csrf": {c.csrf("/send/group")}}
	c.post("/send/group?once="+first, form).wantPage(t, "发送结果", `<b class="accepted">1</b>`)
	again := c.post("/send/group?once="+first, form)
	again.wantPage(t, "发送结果", `<b class="accepted">1</b>`, `id="send-replayed"`, "没有再次发送")
	if n := strings.Count(c.get("/outbox").Body, "只发一次的通知"); n != 1 {
		t.Fatalf("the outbox lists the message %d times after the form was posted twice, want once", n)
	}
	second := once(c.get("/send/group"))
	if second == first {
		t.Fatal("the form rendered again has the same once value")
	}
	refused := c.post("/send/group?once="+second, url.Values{"to": {""}, "text": {"改过再发"}, "csrf": {c.csrf("/send/group")}})
	if again := once(refused); again == second || refused.Status == http.StatusOK && strings.Contains(refused.Body, "发送结果") {
		t.Fatalf("a refused form shown again: once %q (was %q), status %d", again, second, refused.Status)
	}
	if a := c.post("/send/group?once="+once(refused), form); !strings.Contains(a.Body, `<b class="accepted">1</b>`) || strings.Contains(a.Body, "send-replayed") {
		t.Fatalf("a new form: %d\n%s", a.Status, a.Body)
	}
	if n := strings.Count(c.get("/outbox").Body, "只发一次的通知"); n != 2 {
		t.Fatalf("the outbox lists the message %d times after a new form, want twice", n)
	}
}

var batchOnceRE = regexp.MustCompile(`action="/send/batch\?csrf=[^"&]+&amp;once=([A-Za-z0-9_-]{22})"`)

// TestSendBatchOnce: the 批量发送 upload posted twice from one rendering
// of the form (a double click: the browser draws a new multipart
// boundary each time) starts one job, and both answers lead to it.
func TestSendBatchOnce(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	m := batchOnceRE.FindStringSubmatch(c.get("/send/batch").Body)
	if m == nil {
		t.Fatal("no once parameter in the batch form's action")
	}
	var jobs []string
	for i := range 2 {
		a := sendUpload(c, "/send/batch", "/send/batch?once="+m[1], nil, "批量.csv", numA1+",只发一次的批量\n")
		a.wantRedirect(t, "/jobs/")
		jobs = append(jobs, a.Location)
		page := c.get(a.Location)
		if said := strings.Contains(page.Body, "这份表单已经提交过"); said != (i == 1) {
			t.Errorf("post %d: the job page says it was posted before: %v", i+1, said)
		}
	}
	if jobs[0] != jobs[1] {
		t.Fatalf("the upload posted twice started jobs %s and %s, want one", jobs[0], jobs[1])
	}
	// The same form (Back in the browser) with another file: not sent,
	// and said so in Chinese, the form again with a new once value.
	a := sendUpload(c, "/send/batch", "/send/batch?once="+m[1], nil, "批量.csv", numA1+",换了一个文件\n")
	if a.Status != http.StatusOK && a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Body, "这份表单已经提交过，这次的内容") ||
		strings.Contains(a.Body, "Idempotency-Key") {
		t.Fatalf("the form posted again with another file: %d %s", a.Status, a.Body)
	}
	if again := batchOnceRE.FindStringSubmatch(a.Body); again == nil || again[1] == m[1] {
		t.Fatalf("the form shown again has once %v, want a new one (was %s)", again, m[1])
	}
	waitJob(t, c, jobs[0], "已完成")
	if n := strings.Count(c.get("/jobs").Body, `<td data-label="任务">`); n != 1 {
		t.Fatalf("%d jobs listed, want 1", n)
	}
}

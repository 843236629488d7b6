package console

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/reminder"
)

// booksUpload posts a file as the browser's multipart import form does:
// the file alone in the body, the CSRF token of page in the action's
// query ("" token: none).
func booksUpload(c *browserless, page, action, name, content string) answer {
	c.t.Helper()
	tok := ""
	if page != "" {
		tok = c.csrf(page)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		c.t.Fatal(err)
	}
	fw.Write([]byte(content))
	mw.Close()
	if tok != "" {
		action += "?csrf=" + url.QueryEscape(tok)
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

// wantStatus fails unless a has status code and contains every want.
func (a answer) wantStatus(t *testing.T, code int, want ...string) {
	t.Helper()
	if a.Status != code {
		t.Fatalf("status %d, want %d; body:\n%s", a.Status, code, a.Body)
	}
	for _, w := range want {
		if !strings.Contains(a.Body, w) {
			t.Errorf("answer lacks %q; body:\n%s", w, a.Body)
		}
	}
}

// wantRedirect fails unless a is a 303 to a path starting with to.
func (a answer) wantRedirect(t *testing.T, to string) {
	t.Helper()
	if a.Status != http.StatusSeeOther || !strings.HasPrefix(a.Location, to) {
		t.Fatalf("status %d → %q, want 303 → %s; body:\n%s", a.Status, a.Location, to, a.Body)
	}
}

// ferrRE finds the error shown next to a field: the span right after it.
func fieldError(t *testing.T, body, want string) {
	t.Helper()
	if !regexp.MustCompile(`<span class="ferr" role="alert">[^<]*` + regexp.QuoteMeta(want)).MatchString(body) {
		t.Errorf("no field error with %q; body:\n%s", want, body)
	}
}

// csrfRefused checks that each POST without its token is refused (403)
// and changes nothing the page at check shows.
func csrfRefused(t *testing.T, c *browserless, actions ...string) {
	t.Helper()
	for _, a := range actions {
		if got := c.post(a, url.Values{"name": {"x"}, "number": {"13900000009"}, "numbers": {"13900000009"}, "text": {"x"}}); got.Status != http.StatusForbidden {
			t.Errorf("POST %s without CSRF token: %d, want 403", a, got.Status)
		}
	}
}

func TestContactsPersonalBook(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	limit := strconv.Itoa(policy.MaxPersonalContacts)
	c.get("/contacts").wantPage(t, "个人通讯录", "个人设置 &gt; 个人通讯录", "已有 <b>0</b> 人 / 上限 <b>"+limit+"</b> 人",
		"导入", "/contacts/template.csv", "/contacts/template.xlsx")

	a := c.submit("/contacts", "/contacts", url.Values{"name": {"张三"}, "number": {"137 1234 5678"}, "groups": {"销售部，市场部"}})
	a.wantRedirect(t, "/contacts")
	c.submit("/contacts", "/contacts", url.Values{"name": {"李四"}, "number": {numA2}, "groups": {"市场部"}}).wantRedirect(t, "/contacts")
	a = c.get("/contacts")
	a.wantPage(t, "已添加联系人", "张三", ">13712345678<", "销售部（1）", "市场部（2）", "已有 <b>2</b> 人")
	// One group.
	a = c.get("/contacts?group=" + url.QueryEscape("销售部"))
	a.wantPage(t, "张三")
	if strings.Contains(a.Body, "李四") {
		t.Errorf("the 销售部 list shows 李四 of 市场部 only")
	}

	// Refusals, in Chinese next to their field, the form kept.
	a = c.submit("/contacts", "/contacts", url.Values{"name": {"坏号"}, "number": {"020-88888888"}})
	a.wantStatus(t, http.StatusBadRequest, `value="020-88888888"`)
	fieldError(t, a.Body, "不是有效的中国手机号码")
	a = c.submit("/contacts", "/contacts", url.Values{"name": {"重复"}, "number": {"13712345678"}})
	a.wantStatus(t, http.StatusConflict)
	fieldError(t, a.Body, "已存在")
	a = c.submit("/contacts", "/contacts", url.Values{"name": {""}, "number": {numA3}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "联系人姓名过长或无效")

	csrfRefused(t, c, "/contacts", "/contacts/+8613712345678/delete", "/contacts/import")
	if a := booksUpload(c, "", "/contacts/import", "c.csv", "姓名,号码\n甲,13900000001\n"); a.Status != http.StatusForbidden {
		t.Errorf("import without CSRF token: %d, want 403", a.Status)
	}

	// bob (enterprise B) neither sees nor deletes alice's contacts.
	bob := r.client()
	bob.login("bob")
	if a := bob.get("/contacts"); strings.Contains(a.Body, "张三") {
		t.Errorf("bob's book lists alice's contact")
	}
	bob.submit("/contacts", "/contacts/+8613712345678/delete", url.Values{}).wantStatus(t, http.StatusNotFound, "未找到")

	// Delete, back to the filtered list.
	back := "/contacts?group=" + url.QueryEscape("市场部")
	c.submit("/contacts", "/contacts/+8613712345678/delete", url.Values{"back": {back}}).wantRedirect(t, back)
	if a := c.get("/contacts"); strings.Contains(a.Body, "张三") || !strings.Contains(a.Body, "已删除联系人") {
		t.Errorf("after delete the list still shows 张三, or no notice:\n%s", a.Body)
	}

	// Import: the page, the result with each refused row in Chinese.
	c.get("/contacts/import").wantPage(t, "个人通讯录 · 导入", "文件模板下载（CSV）", `enctype="multipart/form-data"`, `action="/contacts/import?csrf=`)
	a = booksUpload(c, "/contacts/import", "/contacts/import", "book.csv", "姓名,号码,分组\n王五,13911112222,销售部\n坏号,12345,销售部\n李四改,"+numA2+",市场部\n")
	a.wantPage(t, "导入结果", "导入完成：接受 2 行，1 行有误", "不是有效的中国手机号码", "12345", "8612345：不是有效的中国号码）")
	c.get("/contacts").wantPage(t, "王五", "李四改", "已有 <b>2</b> 人")
	a = booksUpload(c, "/contacts/import", "/contacts/import", "book.txt", "")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（没有选择文件，或文件是空的）")
	a = booksUpload(c, "/contacts/import", "/contacts/import", "book.xlsx", "PK\x03\x04 not really")
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（文件无法读取：请用 Excel 另存为 .xlsx 或 .csv 文件后再上传）")

	// Templates are the API's files.
	a = c.get("/contacts/template.csv")
	if a.Status != http.StatusOK || !strings.Contains(a.Header.Get("Content-Type"), "csv") || !strings.Contains(a.Body, "姓名") {
		t.Errorf("CSV template: %d %q %q", a.Status, a.Header.Get("Content-Type"), a.Body)
	}
	if a = c.get("/contacts/template.xlsx"); a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "PK") {
		t.Errorf("XLSX template: %d, %d bytes", a.Status, len(a.Body))
	}
}

func TestContactsEnterpriseBook(t *testing.T) {
	r := newRig(t)
	alice, amy := r.client(), r.client()
	alice.login("alice")
	amy.login("amy")
	limit := strconv.Itoa(policy.MaxEnterpriseContacts)
	alice.get("/enterprise/contacts").wantPage(t, "企业通讯录", "企业设置 &gt; 通讯录管理", "上限 <b>"+limit+"</b> 人")

	// Who may change it is the API's rule: alice (a user) is refused.
	a := alice.submit("/enterprise/contacts", "/enterprise/contacts", url.Values{"name": {"总机"}, "number": {numA3}, "groups": {"总部"}})
	a.wantStatus(t, http.StatusForbidden, "无权执行此操作", `value="总机"`)
	a = booksUpload(alice, "/enterprise/contacts/import", "/enterprise/contacts/import", "e.csv", "姓名,号码\n甲,13900000001\n")
	a.wantStatus(t, http.StatusForbidden, "无权执行此操作")

	amy.submit("/enterprise/contacts", "/enterprise/contacts", url.Values{"name": {"总机"}, "number": {numA3}, "groups": {"总部"}}).wantRedirect(t, "/enterprise/contacts")
	alice.get("/enterprise/contacts").wantPage(t, "总机", "总部（1）", "已有 <b>1</b> 人")
	a = alice.submit("/enterprise/contacts", "/enterprise/contacts/+8613800138000/delete", url.Values{})
	a.wantStatus(t, http.StatusForbidden, "无权执行此操作", "总机")

	bob := r.client()
	bob.login("bob")
	if a := bob.get("/enterprise/contacts"); strings.Contains(a.Body, "总机") {
		t.Errorf("bob sees A's enterprise book")
	}
	bob.submit("/enterprise/contacts", "/enterprise/contacts/+8613800138000/delete", url.Values{}).wantStatus(t, http.StatusNotFound)
	csrfRefused(t, amy, "/enterprise/contacts", "/enterprise/contacts/+8613800138000/delete", "/enterprise/contacts/import")

	a = booksUpload(amy, "/enterprise/contacts/import", "/enterprise/contacts/import", "e.csv", "姓名,号码,分组\n前台,13900000001,总部\n")
	a.wantPage(t, "导入完成：接受 1 行。", "新增")
	amy.submit("/enterprise/contacts", "/enterprise/contacts/+8613800138000/delete", url.Values{}).wantRedirect(t, "/enterprise/contacts")
	if a := amy.get("/enterprise/contacts"); strings.Contains(a.Body, "总机") {
		t.Errorf("deleted contact still listed")
	}
	if a := amy.get("/enterprise/contacts/template.xlsx"); a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "PK") {
		t.Errorf("XLSX template: %d", a.Status)
	}
}

func TestWhitelistPage(t *testing.T) {
	r := newRig(t)
	if _, err := r.pol.AddWhitelist(policy.OperatorActor("t"), "A", []string{"13900000042"}); err != nil {
		t.Fatal(err)
	}
	// The account manager rejects one, with a reason.
	if _, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "A", Admin: true, Name: "amy"}, "A", []string{"13900000043"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pol.DecideWhitelist(policy.OperatorActor("t"), "A", policy.WhitelistRejected, "号码机主不同意", []string{"13900000043"}); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	c.login("alice")
	a := c.get("/whitelist")
	a.wantPage(t, "白名单维护", "客户经理审批", numA1, numPending, "已通过", "待审批", "已拒绝", "拒绝原因：号码机主不同意",
		"/whitelist/template.csv", "/whitelist/template.xlsx", `action="/whitelist/import?csrf=`)
	a = c.get("/whitelist?state=pending")
	a.wantPage(t, numPending)
	if strings.Contains(a.Body, numA1) {
		t.Errorf("the 待审批 tab lists approved %s", numA1)
	}

	// One number: pending after the add.
	c.submit("/whitelist", "/whitelist", url.Values{"numbers": {"13900000001"}}).wantRedirect(t, "/whitelist")
	a = c.get("/whitelist?state=pending")
	a.wantPage(t, "已添加 13900000001，待客户经理审批后生效", ">13900000001<")
	// Refusals next to the field, in Chinese.
	a = c.submit("/whitelist", "/whitelist", url.Values{"numbers": {"12345"}})
	a.wantStatus(t, http.StatusUnprocessableEntity, ">12345</textarea>")
	fieldError(t, a.Body, "不是有效的中国手机号码")
	a = c.submit("/whitelist", "/whitelist", url.Values{"numbers": {numA1}})
	a.wantStatus(t, http.StatusConflict)
	fieldError(t, a.Body, "号码已在白名单中")
	a = c.submit("/whitelist", "/whitelist", url.Values{"numbers": {""}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误")
	// Several, pasted: each one's fate.
	a = c.submit("/whitelist", "/whitelist", url.Values{"numbers": {"13900000002\n13900000003，12345\t" + numA2}})
	a.wantPage(t, "处理结果", "新增 2 个待审批，1 个已在白名单中，1 个有误", "不是有效的中国手机号码", "号码已在白名单中")

	// Import a file.
	a = booksUpload(c, "/whitelist", "/whitelist/import", "wl.csv", "号码,备注\n13900000004,甲\n1390000,乙\n")
	a.wantPage(t, "导入完成：读取 2 行，新增 1 个待审批，0 个已在白名单中，1 行有误", "不是有效的中国手机号码", ">13900000004<")
	if a := booksUpload(c, "", "/whitelist/import", "wl.csv", "13900000005\n"); a.Status != http.StatusForbidden {
		t.Errorf("import without CSRF token: %d, want 403", a.Status)
	}
	csrfRefused(t, c, "/whitelist", "/whitelist/+8613900000001/delete")

	// Removing is the admins' (the API's rule): alice is told so.
	a = c.submit("/whitelist", "/whitelist/+8613900000001/delete", url.Values{})
	a.wantStatus(t, http.StatusForbidden, "无权执行此操作", ">13900000001<")
	// bob: A's number is not on B's list.
	bob := r.client()
	bob.login("bob")
	if a := bob.get("/whitelist"); strings.Contains(a.Body, numPending) {
		t.Errorf("bob sees A's whitelist")
	}
	bob.submit("/whitelist", "/whitelist/+8613900000001/delete", url.Values{}).wantStatus(t, http.StatusNotFound, "未找到")
	amy := r.client()
	amy.login("amy")
	amy.submit("/whitelist", "/whitelist/+8613900000001/delete", url.Values{}).wantRedirect(t, "/whitelist")
	if a := amy.get("/whitelist"); strings.Contains(a.Body, ">13900000001<") || !strings.Contains(a.Body, "已从白名单删除") {
		t.Errorf("removed number still listed, or no notice")
	}
	if a := c.get("/whitelist/template.xlsx"); a.Status != http.StatusOK || !strings.HasPrefix(a.Body, "PK") {
		t.Errorf("XLSX template: %d", a.Status)
	}
	if a := c.get("/whitelist/template.csv"); a.Status != http.StatusOK || !strings.Contains(a.Body, "号码") {
		t.Errorf("CSV template: %d %q", a.Status, a.Body)
	}
}

// TestWhitelistPageBounds: past the bound on pending numbers (10,000 an
// enterprise) the console says so in Chinese, for one number next to the
// field and for each refused row of an import, the rows before it added.
func TestWhitelistPageBounds(t *testing.T) {
	r := newRig(t)
	// A has numPending: 9,998 more leave one place.
	numbers := make([]string, policy.DefaultMaxPendingWhitelist-2)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("1350%07d", i)
	}
	if res, err := r.pol.AddWhitelist(policy.Actor{Enterprise: "A", Name: "alice"}, "A", numbers); err != nil || res.Added != len(numbers) {
		t.Fatalf("filling: %+v %v", res.Added, err)
	}
	c := r.client()
	c.login("alice")
	a := booksUpload(c, "/whitelist", "/whitelist/import", "wl.csv", "13900000004\n13900000005\n")
	a.wantPage(t, "导入完成：读取 2 行，新增 1 个待审批，0 个已在白名单中，1 行有误", ">13900000005<", "待审批的号码已达上限")
	a = c.submit("/whitelist", "/whitelist", url.Values{"numbers": {"13900000006"}})
	a.wantStatus(t, http.StatusUnprocessableEntity, ">13900000006</textarea>")
	fieldError(t, a.Body, "待审批的号码已达上限")
}

var occLinkRE = regexp.MustCompile(`/reminders/(\d+)/occurrences/(\d{4}-\d\d-\d\d)`)

func TestReminderPages(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	now := reminder.WeekOf(time.Now())
	next := now.Next()
	c.get("/reminders").wantPage(t, "日程安排", "本周", "上一周", "下一周", "?week="+next.String(), "?week="+now.Prev().String(), "周一", "周日", "今天")
	c.get("/reminders?week=2026-W49").wantPage(t, "2026 年第 49 周（11月30日 – 12月6日）", "?week=2026-W50", "?week=2026-W48")
	c.get("/reminders?week=2026-W99").wantStatus(t, http.StatusBadRequest, "输入有误")
	c.get("/reminders/new").wantPage(t, "添加日程提醒", `name="freq"`, "每周", `name="weekdays"`, `name="to"`, `name="before"`)

	// Next week's Wednesday, 10:00: the browser lands on that week.
	wed := next.Start().AddDate(0, 0, 2).Add(10 * time.Hour)
	form := url.Values{"text": {"季度例会"}, "date": {wed.Format(reminder.Date)}, "time": {"10:00"}, "freq": {"once"}, "to": {numA1}}
	a := c.submit("/reminders/new", "/reminders/new", form)
	a.wantRedirect(t, "/reminders?week="+next.String())
	a = c.get(a.Location)
	a.wantPage(t, "日程提醒已添加", weekTitle(next), "季度例会", "10:00", "待发送")
	m := occLinkRE.FindStringSubmatch(a.Body)
	if m == nil || m[2] != wed.Format(reminder.Date) {
		t.Fatalf("no link to the occurrence of %s: %v", wed.Format(reminder.Date), m)
	}
	id, date := m[1], m[2]
	if a := c.get("/reminders"); strings.Contains(a.Body, "季度例会") {
		t.Errorf("this week lists next week's reminder")
	}

	// Refusals next to their field.
	bad := url.Values{"text": {""}, "date": {wed.Format(reminder.Date)}, "time": {"10:00"}, "freq": {"once"}, "to": {numA1}}
	a = c.submit("/reminders/new", "/reminders/new", bad)
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（请填写提醒内容）")
	past := url.Values{"text": {"过去"}, "date": {"2020-01-06"}, "time": {"10:00"}, "freq": {"once"}, "to": {numA1}}
	a = c.submit("/reminders/new", "/reminders/new", past)
	a.wantStatus(t, http.StatusBadRequest, `value="2020-01-06"`)
	fieldError(t, a.Body, "输入有误（提醒时间已过（2020-01-06 10:00））")
	if strings.Contains(a.Body, "in the past") {
		t.Error("a reminder in the past: the English rule shown")
	}
	noone := url.Values{"text": {"给自己"}, "date": {wed.Format(reminder.Date)}, "time": {"10:00"}, "freq": {"once"}}
	fieldError(t, c.submit("/reminders/new", "/reminders/new", noone).Body, "输入有误（您没有登记手机号码：请填写接收号码）")
	weekly := url.Values{"text": {"周会"}, "date": {wed.Format(reminder.Date)}, "time": {"10:00"}, "freq": {"weekly"}, "to": {numA1}}
	fieldError(t, c.submit("/reminders/new", "/reminders/new", weekly).Body, "输入有误（每周提醒请至少选一天）")

	// The series: its form, changed.
	c.get("/reminders/"+id).wantPage(t, "修改日程提醒", "季度例会", `value="`+wed.Format(reminder.Date)+`"`, `value="10:00"`, "删除整个日程")
	form.Set("text", "季度例会（改）")
	form.Set("time", "14:30")
	c.submit("/reminders/"+id, "/reminders/"+id, form).wantRedirect(t, "/reminders?week="+next.String())
	c.get("/reminders?week="+next.String()).wantPage(t, "日程提醒已修改", "季度例会（改）", "14:30")

	// One occurrence.
	occ := "/reminders/" + id + "/occurrences/" + date
	c.get(occ).wantPage(t, "修改一次提醒", "季度例会（改）", `value="14:30"`, "只删除这一次")
	a = c.submit(occ, occ, url.Values{"date": {date}, "time": {"09:00"}, "text": {"季度例会（提前）"}})
	a.wantRedirect(t, "/reminders?week="+next.String())
	c.get(a.Location).wantPage(t, "季度例会（提前）", "09:00", "已单独修改")
	a = c.submit(occ, occ, url.Values{"date": {wed.AddDate(0, 0, 9).Format(reminder.Date)}, "time": {"09:00"}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（改期最多提前或推后 7 天）")

	// Isolation: bob (B) and al2 (A, not an admin) see no such reminder.
	for _, who := range []string{"bob", "al2"} {
		o := r.client()
		o.login(who)
		o.get("/reminders/"+id).wantStatus(t, http.StatusNotFound, "未找到")
		o.get(occ).wantStatus(t, http.StatusNotFound, "未找到")
		o.submit("/reminders", "/reminders/"+id+"/delete", url.Values{}).wantStatus(t, http.StatusNotFound)
		o.submit("/reminders", occ+"/delete", url.Values{}).wantStatus(t, http.StatusNotFound)
		o.submit("/reminders", "/reminders/"+id, form).wantStatus(t, http.StatusNotFound)
		if a := o.get("/reminders?week=" + next.String()); strings.Contains(a.Body, "季度例会") {
			t.Errorf("%s's week lists alice's reminder", who)
		}
	}
	csrfRefused(t, c, "/reminders/new", "/reminders/"+id, "/reminders/"+id+"/delete", occ, occ+"/delete")
	c.get(occ).wantPage(t, "季度例会（提前）") // nothing changed by the refused POSTs

	// Delete the occurrence, then the series.
	c.submit(occ, occ+"/delete", url.Values{"week": {next.String()}}).wantRedirect(t, "/reminders?week="+next.String())
	if a := c.get("/reminders?week=" + next.String()); strings.Contains(a.Body, "季度例会") || !strings.Contains(a.Body, "已删除") {
		t.Errorf("deleted occurrence still listed, or no notice")
	}
	c.get(occ).wantStatus(t, http.StatusNotFound)
	c.submit("/reminders/"+id, "/reminders/"+id+"/delete", url.Values{}).wantRedirect(t, "/reminders")
	c.get("/reminders/"+id).wantStatus(t, http.StatusNotFound)
}

// The reminders' limits as the console shows them, in Chinese: a text
// too long next to its field (a series' and an occurrence's), the user's
// limit of series above the form, what was typed kept.
func TestReminderLimitPages(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	long := strings.Repeat("提", 501)
	start := time.Now().In(reminder.Shanghai).AddDate(0, 0, 3)
	start = time.Date(start.Year(), start.Month(), start.Day(), 10, 0, 0, 0, reminder.Shanghai)
	date := start.Format(reminder.Date)
	form := url.Values{"text": {long}, "date": {date}, "time": {"10:00"}, "freq": {"daily"}, "to": {numA1}}
	a := c.submit("/reminders/new", "/reminders/new", form)
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（共 501 个字，最多 500 个字（含签名））")

	alice, err := r.pol.User(policy.OperatorActor("test"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var first *reminder.Reminder
	for range reminder.DefaultMaxPerUser {
		rem, err := r.rem.Create(alice, reminder.Spec{Text: "每天十点", To: []string{numA1}, Rule: reminder.Rule{Freq: reminder.Daily, Start: start}})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = rem
		}
	}
	form.Set("text", "第一百零一个")
	a = c.submit("/reminders/new", "/reminders/new", form)
	a.wantStatus(t, http.StatusUnprocessableEntity, "第一百零一个")
	if !regexp.MustCompile(`<p class="error" role="alert">日程提醒已达上限，请先删除不再需要的提醒（alice has 100 reminders, at most 100 a user`).MatchString(a.Body) {
		t.Errorf("no form error for the limit; body:\n%s", a.Body)
	}

	occ := "/reminders/" + strconv.FormatUint(first.ID, 10) + "/occurrences/" + date
	a = c.submit(occ, occ, url.Values{"date": {date}, "time": {"10:00"}, "text": {strings.Repeat("提", 496)}})
	a.wantStatus(t, http.StatusBadRequest)
	fieldError(t, a.Body, "输入有误（共 501 个字（含签名），最多 500 个字）")
}

// A weekly reminder whose start is not one of its weekdays lands on the
// week of its first occurrence, not the start's (FAQ 11).
func TestReminderLandsOnFirstOccurrence(t *testing.T) {
	r := newRig(t)
	c := r.client()
	c.login("alice")
	// Start: next week's Sunday; weekly on Mondays: first the week after.
	next := reminder.WeekOf(time.Now()).Next()
	sun := next.Start().AddDate(0, 0, 6)
	a := c.submit("/reminders/new", "/reminders/new", url.Values{"text": {"周一例会"}, "date": {sun.Format(reminder.Date)},
		"time": {"09:00"}, "freq": {"weekly"}, "weekdays": {"mon"}, "count": {"2"}, "to": {numA1}})
	a.wantRedirect(t, "/reminders?week="+next.Next().String())
	c.get(a.Location).wantPage(t, "周一例会", "下一次提醒："+sun.AddDate(0, 0, 1).Format("2006年1月2日")+" 周一 09:00")
}

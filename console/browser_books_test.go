package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/qxtd/qxtd/reminder"
)

// A person adds a number to the whitelist and sees it await approval,
// then imports a file of numbers (FAQ 4).
func TestBrowserWhitelist(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("open 白名单维护",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/whitelist"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#wl-add textarea[name=numbers]`)),
	)
	b.waitText("h1", "白名单维护", false)
	b.run("add a number",
		chromedp.SendKeys(chromedp.CSS(`#wl-add textarea[name=numbers]`), "139 0000 0011"),
		chromedp.Click(chromedp.CSS(`#wl-add button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "待客户经理审批", false)
	row := b.text(`#whitelist tbody`)
	i := strings.Index(row, "13900000011")
	if i < 0 || !strings.Contains(row[i:], "待审批") {
		t.Errorf("the list does not show 13900000011 待审批:\n%s", row)
	}
	b.run("a wrong number",
		chromedp.SendKeys(chromedp.CSS(`#wl-add textarea[name=numbers]`), "12345"),
		chromedp.Click(chromedp.CSS(`#wl-add button[type=submit]`)),
	)
	b.waitText("#wl-add .ferr", "不是有效的中国手机号码", false)

	file := filepath.Join(t.TempDir(), "白名单.csv")
	if err := os.WriteFile(file, []byte("号码,备注\n13900000012,甲\n13900000013,乙\n1390000,坏\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run("import a file",
		chromedp.SetUploadFiles(chromedp.CSS(`#wl-import input[type=file]`), []string{file}),
		chromedp.Click(chromedp.CSS(`#wl-import button[type=submit]`)),
	)
	b.waitText("#wl-result", "有误", false)
	if res := b.text("#wl-result"); !strings.Contains(res, "不是有效的中国手机号码") || !strings.Contains(res, "1390000") ||
		!strings.Contains(res, "：不是有效的中国号码") || strings.Contains(res, "not a") {
		t.Errorf("import result: %q", res)
	}
	b.waitText(".notice[role=status]", "新增 2 个待审批", false)
	b.waitText("#whitelist", "13900000013", false)
	b.shot("whitelist")
	b.mobile()
	b.run("phone", chromedp.Navigate(r.url+"/whitelist"))
	b.waitText("h1", "白名单维护", false)
	b.shot("whitelist-mobile")
	b.desktop()
}

// A person adds a contact to the personal book and imports a file of
// contacts (FAQ 3).
func TestBrowserContacts(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	b.run("open 个人通讯录",
		chromedp.Click(chromedp.CSS(`nav.side a[href="/contacts"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#add-contact`)),
	)
	b.waitText("#usage", "上限 3000 人", false)
	b.run("add a contact",
		chromedp.SendKeys(chromedp.CSS(`#add-contact input[name=name]`), "张三"),
		chromedp.SendKeys(chromedp.CSS(`#add-contact input[name=number]`), "13712345678"),
		chromedp.SendKeys(chromedp.CSS(`#add-contact input[name=groups]`), "销售部"),
		chromedp.Click(chromedp.CSS(`#add-contact button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "已添加联系人：张三", false)
	b.waitText("#contacts", "13712345678", false)
	b.waitText("#usage", "已有 1 人", false)
	b.shot("contacts")

	file := filepath.Join(t.TempDir(), "通讯录.csv")
	if err := os.WriteFile(file, []byte("姓名,号码,分组\n李四,13923412345,市场部\n王五,abc,市场部\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.run("open 导入 and upload",
		chromedp.Click(chromedp.CSS(`.toolbar a[href="/contacts/import"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#import input[type=file]`)),
		chromedp.SetUploadFiles(chromedp.CSS(`#import input[type=file]`), []string{file}),
		chromedp.Click(chromedp.CSS(`#import button[type=submit]`)),
	)
	b.waitText("#import-result", "导入结果", false)
	if res := b.text("#import-result"); !strings.Contains(res, "不是有效的中国手机号码") || !strings.Contains(res, "abc") ||
		!strings.Contains(res, "不是电话号码") || strings.Contains(res, "not a") {
		t.Errorf("import result: %q", res)
	}
	b.waitText(".notice[role=status]", "接受 1 行，1 行有误", false)
	b.shot("contacts-import")
	b.run("back to the book", chromedp.Click(chromedp.CSS(`main a[href="/contacts"]`)))
	b.waitText("#contacts", "李四", false)
	b.waitText("nav.tabs", "市场部（1）", false)
	b.run("open 企业通讯录", chromedp.Click(chromedp.CSS(`nav.side a[href="/enterprise/contacts"]`)))
	b.waitText("#usage", "上限 5000 人", false)
	b.shot("enterprise-contacts")
}

// A person adds a reminder for next week, does not find it in this week
// (FAQ 11) but is taken to its week, changes it and deletes it.
func TestBrowserReminders(t *testing.T) {
	r := newRig(t)
	b := newBrowser(t)
	b.login(r.url, "alice")
	next := reminder.WeekOf(time.Now()).Next()
	thu := next.Start().AddDate(0, 0, 3)
	b.run("open 日程安排", chromedp.Click(chromedp.CSS(`nav.side a[href="/reminders"]`)))
	b.waitText("#week-title", "本周", false)
	b.shot("reminders")
	b.run("add a reminder",
		chromedp.Click(chromedp.CSS(`.toolbar a[href="/reminders/new"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#reminder textarea[name=text]`)),
		chromedp.SendKeys(chromedp.CSS(`#reminder textarea[name=text]`), "项目评审会"),
		chromedp.SetValue(chromedp.CSS(`#reminder input[name=date]`), thu.Format(reminder.Date)),
		chromedp.SetValue(chromedp.CSS(`#reminder input[name=time]`), "15:00"),
		chromedp.SendKeys(chromedp.CSS(`#reminder textarea[name=to]`), numA1),
	)
	b.shot("reminder-new")
	b.run("submit", chromedp.Click(chromedp.CSS(`#reminder button[type=submit]`)))
	b.waitText(".notice[role=status]", weekTitle(next), false)
	b.waitText("#week", "项目评审会", false)
	// This week does not have it; paging finds it again.
	b.run("this week", chromedp.Click(chromedp.CSS(`.toolbar a[href="/reminders"]`)))
	b.waitText("#week-title", "本周", false)
	if s := b.text("#week"); strings.Contains(s, "项目评审会") {
		t.Errorf("this week shows next week's reminder")
	}
	b.run("下一周", chromedp.Click(chromedp.CSS(`.toolbar a[rel=next]`)))
	b.waitText("#week-title", weekTitle(next), false)
	b.waitText("#week", "项目评审会", false)
	b.waitText("#week", "15:00", false)
	b.shot("reminders-week")

	// Change the whole series.
	b.run("整个日程",
		chromedp.Click(chromedp.CSS(`#week .item a[href^="/reminders/"]:not([href*=occurrences])`)),
		chromedp.WaitVisible(chromedp.CSS(`#reminder-delete`)),
		chromedp.SetValue(chromedp.CSS(`#reminder textarea[name=text]`), "项目评审会（延后）"),
		chromedp.SetValue(chromedp.CSS(`#reminder input[name=time]`), "16:30"),
	)
	b.shot("reminder-edit")
	b.run("save", chromedp.Click(chromedp.CSS(`#reminder button[type=submit]`)))
	b.waitText(".notice[role=status]", "日程提醒已修改", false)
	b.waitText("#week", "项目评审会（延后）", false)
	b.waitText("#week", "16:30", false)

	// One occurrence's page, then the series deleted.
	b.run("修改本次",
		chromedp.Click(chromedp.CSS(`#week .item a[href*=occurrences]`)),
		chromedp.WaitVisible(chromedp.CSS(`#occurrence-delete`)),
	)
	b.waitText("h1", "修改一次提醒", false)
	b.shot("reminder-occurrence")
	b.run("to the series and delete it",
		chromedp.Click(chromedp.CSS(`main p.small a[href^="/reminders/"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#reminder-delete`)),
		chromedp.Click(chromedp.CSS(`#reminder-delete button[type=submit]`)),
	)
	b.waitText(".notice[role=status]", "日程提醒已删除", false)
	b.run("下一周 again", chromedp.Click(chromedp.CSS(`.toolbar a[rel=next]`)))
	b.waitText("#week-title", weekTitle(next), false)
	if s := b.text("#week"); strings.Contains(s, "项目评审会") {
		t.Errorf("the deleted reminder is still in its week: %q", s)
	}
}

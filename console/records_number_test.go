package console

import (
	"context"
	"encoding/csv"
	"html"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/queue"
)

// storeSentTo puts a message of alice's to dest in the store, accepted
// at at (sendAt: to go out then; zero: now).
func (r *rig) storeSentTo(dest, text string, at, sendAt time.Time) {
	r.t.Helper()
	m := &queue.Message{Account: "alice", Enterprise: "A", Upstream: "sim", Source: "106575000001", Dest: dest,
		Text: "【甲公司】" + text, AcceptedAt: at, SendAt: sendAt, Parts: []queue.Part{{Body: []byte(text)}}}
	if err := r.store.Enqueue(context.Background(), m); err != nil {
		r.t.Fatal(err)
	}
}

// TestRecordsByNumber: 发件箱 and 定时发件箱 find the messages to one number
// (接收号码, in any form or its last digits), kept by the tabs, the pages
// and 导出; a number without digits is refused next to the field. 收件箱
// links each reply to an answer (回复: 短信群发 with the number filled
// in) and to what was sent to that number, and the outbox narrowed to
// a number links back to its replies. Before, 发件箱 could be narrowed by
// dates only: "did my message to this customer arrive?" meant paging.
func TestRecordsByNumber(t *testing.T) {
	r := newRig(t)
	_, day1 := beijingDay(1)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "给一号", d1.Add(9*time.Hour), time.Time{})
	r.storeSentTo(numA2, "给二号", d1.Add(10*time.Hour), time.Time{})
	r.storeSentTo("+86"+numA1, "再给一号", d1.Add(11*time.Hour), time.Time{})
	r.storeSentTo(numA1, "明天给一号", time.Now(), time.Now().Add(26*time.Hour))
	r.storeSentTo(numA2, "明天给二号", time.Now(), time.Now().Add(26*time.Hour))
	r.storeReply(numA1, "一号的回复", time.Now())
	c := r.client()
	c.login("alice")

	c.get("/outbox").wantPage(t, `<input name="number" type="search"`, "给一号", "给二号")
	for _, n := range []string{numA1, "+86 " + numA1, numA1[len(numA1)-4:]} {
		a := c.get("/outbox?number=" + url.QueryEscape(n))
		a.wantPage(t, "给一号", "再给一号", `id="outbox-number"`, `<a href="/inbox?number=`+strings.ReplaceAll(url.QueryEscape(n), "+", "&#43;")+`">查看该号码的回复</a>`,
			`<a href="/outbox">显示全部</a>`, `id="outbox-export" href="/outbox/export.csv?number=`+strings.ReplaceAll(url.QueryEscape(n), "+", "&#43;")+`"`)
		if strings.Contains(a.Body, "给二号") || rows(a, "接收号码") != 2 {
			t.Errorf("number %q: %d rows\n%s", n, rows(a, "接收号码"), a.Body)
		}
	}
	// The tabs and the dates keep the number; 显示全部 keeps the tab only.
	c.get("/outbox?outcome=pending&number="+numA2+"&from="+day1).wantPage(t, `<input type="hidden" name="outcome" value="pending">`,
		`href="/outbox?from=`+day1+`&amp;number=`+numA2+`&amp;outcome=failed"`, `<a href="/outbox?outcome=pending">显示全部</a>`)
	if a := c.get("/outbox?number=13000000000"); !strings.Contains(a.Body, "没有发给该号码的记录") || strings.Contains(a.Body, "<table") {
		t.Errorf("a number sent nothing:\n%s", a.Body)
	}
	for _, page := range []string{"/outbox", "/scheduled"} {
		if a := c.get(page + "?number=abc"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入手机号码") {
			t.Errorf("%s, a number without digits: %d\n%s", page, a.Status, a.Body)
		}
	}
	// 导出 of one number: its rows only.
	a := c.get("/outbox/export.csv?number=" + numA2)
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(a.Body, "\uFEFF"))).ReadAll()
	if a.Status != http.StatusOK || err != nil || len(recs) != 2 || recs[1][2] != numA2 {
		t.Fatalf("export of %s: %d %v %q", numA2, a.Status, err, recs)
	}

	// 定时发件箱 likewise.
	a = c.get("/scheduled?number=" + numA2)
	a.wantPage(t, "明天给二号", `id="scheduled-export" href="/scheduled/export.csv?number=`+numA2+`"`)
	if strings.Contains(a.Body, "明天给一号") {
		t.Errorf("定时发件箱 of %s lists another number's", numA2)
	}
	a = c.get("/scheduled/export.csv?number=" + numA1)
	recs, err = csv.NewReader(strings.NewReader(strings.TrimPrefix(a.Body, "\uFEFF"))).ReadAll()
	if a.Status != http.StatusOK || err != nil || len(recs) != 2 || !strings.Contains(recs[1][4], "明天给一号") {
		t.Fatalf("scheduled export of %s: %d %v %q", numA1, a.Status, err, recs)
	}

	// 收件箱: each reply links to an answer and to what was sent.
	b := r.client()
	b.login("amy")
	b.get("/inbox").wantPage(t, "一号的回复", `<a class="button" href="/send/group?to=`+numA1+`" aria-label="回复 `+numA1+`">回复</a>`,
		`<a href="/conversation?number=`+numA1+`"`)
	b.get("/send/group?to="+numA1).wantPage(t, numA1+"</textarea>")
}

// TestConversation: 往来记录 with a number is the messages sent to it and
// its replies in one thread, oldest first (a number in any form finds
// it), each message linking to its detail; another number's are not in
// it; a user sees her own half only; no number, or one without digits,
// is refused next to the field. When one list has more than a page, the
// other's items older than its oldest are left out (they would show
// without what came between) and the page says where the earlier ones
// are.
func TestConversation(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "第一条通知", d1.Add(9*time.Hour), time.Time{})
	r.storeReply(numA1, "第一次回复", d1.Add(10*time.Hour))
	r.storeSentTo("+86"+numA1, "第二条通知", d1.Add(11*time.Hour), time.Time{})
	r.storeSentTo(numA2, "别人的通知", d1.Add(12*time.Hour), time.Time{})
	r.storeReply(numA1, "第二次回复", d1.Add(13*time.Hour))
	c := r.client()
	c.login("amy")
	a := c.get("/conversation?number=" + url.QueryEscape("+86 "+numA1))
	a.wantPage(t, `id="conversation"`, `href="/send/group?to=%2B86&#43;`+numA1+`"`)
	if !inOrder(a.Body, "第一条通知", "第一次回复", "第二条通知", "第二次回复") || strings.Contains(a.Body, "别人的通知") {
		t.Errorf("the thread:\n%s", a.Body)
	}
	if strings.Count(a.Body, `<li class="out">`) != 2 || strings.Count(a.Body, `<li class="in">`) != 2 {
		t.Errorf("2 sent and 2 replies, want each on its side:\n%s", a.Body)
	}
	if strings.Contains(a.Body, "更早的记录") {
		t.Error("says earlier records exist")
	}
	// Last digits that two numbers share: both threads, each linked,
	// and no form (it answers one number).
	r.storeSentTo("13800005678", "另一个5678", d1.Add(14*time.Hour), time.Time{})
	a = c.get("/conversation?number=5678")
	if !strings.Contains(a.Body, "记录来自 2 个号码") || !strings.Contains(a.Body, `<a href="/conversation?number=13800005678">`) || strings.Contains(a.Body, `id="conversation-reply"`) {
		t.Errorf("a thread of several numbers:\n%s", a.Body)
	}
	for _, bad := range []string{"", "?number=abc"} {
		if a := c.get("/conversation" + bad); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "请输入手机号码") {
			t.Errorf("/conversation%s: %d", bad, a.Status)
		}
	}
	// alice: her messages; the replies are to the enterprise's number
	// (its admins'), not to her extension.
	u := r.client()
	u.login("alice")
	if a := u.get("/conversation?number=" + numA1); !strings.Contains(a.Body, "第二条通知") || strings.Contains(a.Body, "第一次回复") {
		t.Errorf("alice's thread:\n%s", a.Body)
	}

	// More than a page of messages: the replies older than the oldest
	// message shown are left out.
	for i := range conversationPage {
		r.storeSentTo(numA1, "群发"+strconv.Itoa(i), d1.Add(14*time.Hour+time.Duration(i)*time.Second), time.Time{})
	}
	a = c.get("/conversation?number=" + numA1)
	a.wantPage(t, "每页最多各 100 条", "群发0", "群发99", `rel="next"`)
	if strings.Contains(a.Body, "第二次回复") || strings.Contains(a.Body, "第二条通知") {
		t.Errorf("a cut thread shows what is older than its oldest message:\n%.2000s", a.Body)
	}
	// 更早的记录: what was left out, in order, and no earlier page.
	older := c.get(html.UnescapeString(between(a.Body, `rel="next" href="`, `"`)))
	older.wantPage(t, "回到最新")
	if !inOrder(older.Body, "第一条通知", "第一次回复", "第二条通知", "第二次回复") || strings.Contains(older.Body, "】群发") || strings.Contains(older.Body, `rel="next"`) {
		t.Errorf("the earlier page:\n%s", older.Body)
	}
}

// TestConversationPages: a thread of more than a page of each list, its
// messages and replies interleaved, three messages and a reply at each
// instant (so a page's cut falls between messages of one instant, and on
// a reply at the instant of the cut), read page by page through
// 更早的记录: every message and reply shows once, and the pages, last to
// first, read in time order.
func TestConversationPages(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	group := map[string]int{} // each text's instant
	for g := range 90 {
		at := d1.Add(8*time.Hour + time.Duration(g)*time.Second)
		for k := range 3 {
			text := "通知" + strconv.Itoa(g) + "-" + strconv.Itoa(k)
			r.storeSentTo(numA1, text, at, time.Time{})
			group[text] = g
		}
		text := "回复" + strconv.Itoa(g)
		r.storeReply(numA1, text, at)
		group[text] = g
	}
	c := r.client()
	c.login("amy")
	bubble := regexp.MustCompile(`<div class="bubble">([^<]*)</div>`)
	var pages [][]string
	for path := "/conversation?number=" + numA1; path != ""; {
		if len(pages) == 10 {
			t.Fatal("more than 10 pages")
		}
		a := c.get(path)
		var texts []string
		for _, m := range bubble.FindAllStringSubmatch(a.Body, -1) {
			texts = append(texts, strings.TrimPrefix(m[1], "【甲公司】"))
		}
		pages = append(pages, texts)
		path = html.UnescapeString(between(a.Body, `rel="next" href="`, `"`))
	}
	var got []string
	for _, p := range slices.Backward(pages) {
		got = append(got, p...)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(maps.Keys(group))) {
		t.Fatalf("%d pages hold %d items, want each of %d once: %q", len(pages), len(got), len(group), pages)
	}
	if len(pages) < 3 {
		t.Errorf("%d pages, want 3 or more (100 of each list a page)", len(pages))
	}
	for i := 1; i < len(got); i++ { // items of one instant in any order
		if group[got[i]] < group[got[i-1]] {
			t.Errorf("%s shown before %s", got[i-1], got[i])
		}
	}
}

// TestSearchWalksEmptyPages: a number whose only message is older than
// the 20,000 records an API page reads is shown at once, on 发件箱 and
// on the desk's 号码查询: the console asks on from the empty pages' next
// itself (walkList). Before, the page said 本页没有记录 and a person
// clicked 下一页 through the store, a page each 20,000 messages.
func TestSearchWalksEmptyPages(t *testing.T) {
	r := newRig(t)
	d1, _ := beijingDay(1)
	r.storeSentTo(numA1, "很早的一条", d1, time.Time{})
	// 20,000 newer ones that the sent outbox passes over (scheduled for
	// tomorrow: never dispatched here), to another number.
	later := time.Now().Add(30 * time.Hour)
	for range 20 {
		ms := make([]*queue.Message, 1000)
		for i := range ms {
			ms[i] = &queue.Message{Account: "alice", Enterprise: "A", Upstream: "sim", Source: "106575000001", Dest: numA2,
				Text: "【甲公司】明天", SendAt: later, Parts: []queue.Part{{Body: []byte("x")}}}
		}
		if err := r.store.Enqueue(t.Context(), ms...); err != nil {
			t.Fatal(err)
		}
	}
	c := r.client()
	c.login("alice")
	if a := c.get("/outbox?number=" + numA1); !strings.Contains(a.Body, "很早的一条") || strings.Contains(a.Body, "本页没有记录") {
		t.Errorf("发件箱 of %s:\n%.3000s", numA1, a.Body)
	}
	o := r.client()
	o.opsLogin()
	if a := o.get("/ops/trace?number=" + numA1); !strings.Contains(a.Body, "很早的一条") {
		t.Errorf("号码查询 of %s:\n%.3000s", numA1, a.Body)
	}
}

// TestConversationReply: 往来记录's form answers the number: the text goes
// as one message to it, signed, and the thread shows it; a number the
// enterprise may not reach is refused under the text, the text kept.
func TestConversationReply(t *testing.T) {
	r := newRig(t)
	r.storeReply(numA1, "明天几点？", time.Now())
	c := r.client()
	c.login("amy")
	c.get("/conversation?number="+numA1).wantPage(t, `id="conversation-reply"`, `<input type="hidden" name="number" value="`+numA1+`">`)
	a := c.submit("/conversation?number="+numA1, "/conversation", url.Values{"number": {numA1}, "text": {"上午十点"}})
	if a.Status != http.StatusSeeOther || a.Location != "/conversation?number="+numA1 {
		t.Fatalf("the reply: %d %q\n%s", a.Status, a.Location, a.Body)
	}
	if a := c.get(a.Location); !inOrder(a.Body, "明天几点？", "【甲公司】上午十点") || !strings.Contains(a.Body, "已提交") {
		t.Errorf("the thread after the reply:\n%s", a.Body)
	}
	// The form posted twice (a double click, a reload): one message.
	once := between(c.get("/conversation?number="+numA1).Body, "&amp;once=", `"`)
	for range 2 {
		if a := c.submit("/conversation?number="+numA1, "/conversation?once="+once, url.Values{"number": {numA1}, "text": {"只发一次"}}); a.Status != http.StatusSeeOther {
			t.Fatalf("the reply, posted again: %d\n%s", a.Status, a.Body)
		}
	}
	if n := strings.Count(c.get("/conversation?number="+numA1).Body, "【甲公司】只发一次"); n != 1 {
		t.Errorf("posted twice with one form, the thread shows it %d times", n)
	}
	// Not on the enterprise's whitelist.
	a = c.submit("/conversation?number=13000000000", "/conversation", url.Values{"number": {"13000000000"}, "text": {"不该发出"}})
	if a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Body, "未发送") || !strings.Contains(a.Body, "不该发出</textarea>") {
		t.Errorf("a number not whitelisted: %d\n%s", a.Status, a.Body)
	}
}

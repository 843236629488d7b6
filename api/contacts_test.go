package api

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qxtd/qxtd/smpp"
)

func contactsFile(n, from int, group string) []byte {
	var b strings.Builder
	b.WriteString("姓名,号码,分组\n")
	for i := range n {
		fmt.Fprintf(&b, "人%d,138%08d,%s\n", from+i, 130000+from+i, group)
	}
	return []byte(b.String())
}

func (r *userRig) importContacts(token, path string, file []byte) ContactImport {
	r.t.Helper()
	var res ContactImport
	name := "通讯录.csv"
	if bytes.HasPrefix(file, []byte("PK")) {
		name = "通讯录.xlsx"
	}
	ct, body := multipartBody(r.t, name, file, nil)
	if code, b := r.c().upload("POST", path, token, ct, body, &res); code != http.StatusOK {
		r.t.Fatalf("POST %s: %d %s", path, code, b)
	}
	return res
}

// TestContactsBooks: the personal and enterprise books over HTTP: add,
// list by group, delete, import with row errors, the limits, permissions
// and isolation.
func TestContactsBooks(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond}})
	alice, amy, bob := r.keys["alice"], r.keys["amy"], r.keys["bob"]

	var c Contact
	r.must(http.StatusCreated, "POST", "/v1/contacts", alice, ContactIn{Name: "张三", Number: "137 1234 5678", Groups: []string{"销售部"}}, &c)
	if c.Number != "+8613712345678" || c.Name != "张三" || !slices.Equal(c.Groups, []string{"销售部"}) || c.AddedBy != "alice" {
		t.Fatalf("added %+v", c)
	}
	r.wantError(http.StatusConflict, "exists", "POST", "/v1/contacts", alice, ContactIn{Name: "又一个", Number: uNumA1})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/contacts", alice, ContactIn{Name: "坏号", Number: "020-88888888"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/contacts", alice, ContactIn{Number: uNumA2})

	// The import: row errors by row number; the others stored.
	file := "姓名,号码,分组\n" +
		"李四," + uNumA2 + ",销售部;市场部\n" + // 2
		"王五,,市场部\n" + // 3: empty number
		"赵六,12345,市场部\n" + // 4
		"," + uNumA3 + ",市场部\n" // 5: no name
	res := r.importContacts(alice, "/v1/contacts/import", []byte(file))
	if res.Rows != 4 || res.Added != 1 || res.HeaderRow != 1 || len(res.Errors) != 3 {
		t.Fatalf("import %+v", res)
	}
	for i, want := range []struct {
		row    int
		reason string
	}{{3, "invalid_number"}, {4, "invalid_number"}, {5, "invalid_name"}} {
		if e := res.Errors[i]; e.Row != want.row || e.Reason != want.reason || e.Message == "" {
			t.Errorf("row error %d: %+v", i, e)
		}
	}
	var list ContactList
	r.must(http.StatusOK, "GET", "/v1/contacts?group="+"%E9%94%80%E5%94%AE%E9%83%A8", alice, nil, &list) // 销售部
	if list.Book != "personal" || list.Limit != 3000 || list.Total != 2 || len(list.Contacts) != 2 ||
		!slices.Equal(list.Groups, []ContactGroup{{"市场部", 1}, {"销售部", 2}}) {
		t.Fatalf("list %+v", list)
	}

	// The personal book is its user's only: another user of the enterprise
	// (even its admin) has its own, empty one.
	r.must(http.StatusOK, "GET", "/v1/contacts", amy, nil, &list)
	if list.Total != 0 {
		t.Errorf("amy sees %+v", list)
	}
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/contacts/"+uNumA1, amy, nil)
	r.must(http.StatusNoContent, "DELETE", "/v1/contacts/86"+uNumA2, alice, nil, nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/contacts/86"+uNumA2, alice, nil)
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/contacts/nonsense", alice, nil)

	// The enterprise book: admins write, users read, other enterprises
	// have their own.
	r.wantError(http.StatusForbidden, "forbidden", "POST", "/v1/enterprise-contacts", alice, ContactIn{Name: "x", Number: uNumA1})
	code, b := r.c().upload("POST", "/v1/enterprise-contacts/import", alice, "text/csv", contactsFile(1, 0, "x"), nil)
	if code != http.StatusForbidden {
		t.Errorf("user imports into the enterprise book: %d %s", code, b)
	}
	r.must(http.StatusCreated, "POST", "/v1/enterprise-contacts", amy, ContactIn{Name: "总机", Number: uNumA3, Groups: []string{"总部"}}, nil)
	r.must(http.StatusOK, "GET", "/v1/enterprise-contacts", alice, nil, &list)
	if list.Book != "enterprise" || list.Limit != 5000 || list.Total != 1 || list.Contacts[0].Name != "总机" {
		t.Errorf("alice reads the enterprise book: %+v", list)
	}
	r.wantError(http.StatusForbidden, "forbidden", "DELETE", "/v1/enterprise-contacts/"+uNumA3, alice, nil)
	r.must(http.StatusOK, "GET", "/v1/enterprise-contacts", bob, nil, &list)
	if list.Total != 0 {
		t.Errorf("B sees A's enterprise book: %+v", list)
	}
	r.wantError(http.StatusNotFound, "not_found", "DELETE", "/v1/enterprise-contacts/"+uNumA3, bob, nil)

	// The limits: 3,000 personal, 5,000 enterprise, with a clear error.
	for _, tc := range []struct {
		path, key string
		limit     int
		have      int
	}{{"/v1/contacts", alice, 3000, 1}, {"/v1/enterprise-contacts", amy, 5000, 1}} {
		res := r.importContacts(tc.key, tc.path+"/import", contactsFile(tc.limit, 100, "全员"))
		over := tc.have // the rows past the limit
		if res.Added != tc.limit-over || len(res.Errors) != over || res.Errors[0].Reason != "contacts_limit" || res.Errors[0].Row != tc.limit+1 {
			t.Fatalf("%s: import to the limit: added %d, errors %+v", tc.path, res.Added, res.Errors)
		}
		e := r.wantError(http.StatusUnprocessableEntity, "contacts_limit", "POST", tc.path, tc.key, ContactIn{Name: "x", Number: "13800139999"})
		if !strings.Contains(e.Error.Message, fmt.Sprintf("at most %d contacts", tc.limit)) {
			t.Errorf("%s: limit message %q", tc.path, e.Error.Message)
		}
		r.must(http.StatusOK, "GET", tc.path, tc.key, nil, &list)
		if list.Total != tc.limit {
			t.Errorf("%s: %d contacts", tc.path, list.Total)
		}
	}

	// Templates.
	_, csvT := r.call("GET", "/v1/contacts/template.csv", alice, nil, nil)
	if !bytes.HasPrefix(csvT, []byte("\ufeff姓名,号码,分组\r\n")) {
		t.Errorf("contacts CSV template %q", csvT)
	}
	code, xlsxT := r.call("GET", "/v1/enterprise-contacts/template.xlsx", amy, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("contacts XLSX template: %d", code)
	}
	// The template imports as it is (into B's empty book).
	res = r.importContacts(bob, "/v1/enterprise-contacts/import", xlsxT)
	if res.Added != 2 || res.HeaderRow != 1 || len(res.Errors) != 0 {
		t.Errorf("template import %+v", res)
	}
}

func (r *userRig) sendGroups(token string, req SendRequest) SendResponse {
	r.t.Helper()
	var out SendResponse
	r.must(http.StatusOK, "POST", "/v1/messages", token, req, &out)
	if len(out.Results) != out.Accepted+out.Refused {
		r.t.Fatalf("results %+v", out)
	}
	return out
}

// TestGroupSend: POST /v1/messages with groups sends to their members,
// each number once and after to, with per-recipient results; another
// enterprise cannot use the groups.
func TestGroupSend(t *testing.T) {
	r := newBulkRig(t, rigOptions{sim: smpp.SimOptions{DLRDelay: 10 * time.Millisecond, Record: true}})
	alice, amy, bob := r.keys["alice"], r.keys["amy"], r.keys["bob"]
	file := "姓名,号码,分组\n" +
		"一," + uNumA1 + ",销售部\n" +
		"二," + uNumA2 + ",销售部;市场部\n" +
		"三," + uNumPending + ",市场部\n"
	if res := r.importContacts(amy, "/v1/enterprise-contacts/import", []byte(file)); res.Added != 3 {
		t.Fatalf("import %+v", res)
	}
	out := r.sendGroups(alice, SendRequest{To: []string{"+86 137 1234 5678"}, Groups: []string{"销售部", "市场部"}, Book: "enterprise", Text: "部门通知"})
	var got []string
	for _, rr := range out.Results {
		got = append(got, rr.To+":"+rr.Status+":"+rr.Reason)
	}
	// to first, then the members in number order; uNumA1 once.
	want := []string{"+86 137 1234 5678:accepted:", uNumPending + ":refused:not_whitelisted", uNumA2 + ":accepted:"}
	if !slices.Equal(got, want) || out.Accepted != 2 || out.Refused != 1 {
		t.Fatalf("results %q", got)
	}
	r.waitReceived(uNumA1, "【甲公司】部门通知", 10*time.Second)
	r.waitReceived(uNumA2, "【甲公司】部门通知", 10*time.Second)
	if n := len(r.received(uNumA1)); n != 1 {
		t.Errorf("%s got %d messages", uNumA1, n)
	}

	// The personal book is the default; groups alone are enough.
	r.must(http.StatusCreated, "POST", "/v1/contacts", alice, ContactIn{Name: "自己人", Number: uNumA3, Groups: []string{"朋友"}}, nil)
	out = r.sendGroups(alice, SendRequest{Groups: []string{"朋友"}, Text: "周末聚餐"})
	if len(out.Results) != 1 || out.Results[0].To != uNumA3 || out.Accepted != 1 {
		t.Fatalf("personal group %+v", out)
	}
	r.waitReceived(uNumA3, "【甲公司】周末聚餐", 10*time.Second)

	// Refused: an unknown group (nothing sent), a bad book, book without groups.
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", alice, SendRequest{Groups: []string{"销售布"}, Book: "enterprise", Text: "x"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", alice, SendRequest{Groups: []string{"销售部"}, Book: "company", Text: "x"})
	r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", alice, SendRequest{To: []string{uNumA1}, Book: "enterprise", Text: "x"})
	// Another enterprise: its own (empty) books, never A's.
	e := r.wantError(http.StatusBadRequest, "invalid", "POST", "/v1/messages", bob, SendRequest{Groups: []string{"销售部"}, Book: "enterprise", Text: "偷发"})
	if !strings.Contains(e.Error.Message, "销售部") {
		t.Errorf("B's refusal %q", e.Error.Message)
	}
	var l ContactList
	r.must(http.StatusOK, "GET", "/v1/enterprise-contacts", bob, nil, &l)
	if l.Total != 0 {
		t.Errorf("B sees A's contacts: %+v", l)
	}
	for _, m := range r.sim.Received() {
		if strings.Contains(string(m.ShortMessage), "偷发") {
			t.Errorf("B's text was sent to %s", m.Dest)
		}
	}
}

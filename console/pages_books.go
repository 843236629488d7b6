package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// 个人通讯录 (个人设置 > 个人通讯录) and the enterprise's 通讯录 (企业设置 >
// 通讯录管理), FAQ 3: one set of handlers for both books; 白名单维护
// (FAQ 4); 日程安排 (FAQ 11) is in pages_reminders.go. The limits, the
// counts, who may change the enterprise book and every refusal are the
// API's.

var bookRoutes = concat(
	contactRoutes(&personalBook),
	contactRoutes(&enterpriseBook),
	[]route{
		{"GET /whitelist", (*Server).whitelist},
		{"POST /whitelist", (*Server).whitelistAdd},
		{"POST /whitelist/import", (*Server).whitelistImport},
		{"POST /whitelist/{id}/delete", (*Server).whitelistRemove},
		{"GET /whitelist/template.csv", (*Server).whitelistTemplate},
		{"GET /whitelist/template.xlsx", (*Server).whitelistTemplate},
	},
	reminderRoutes,
)

// book is one of the two address books as the console shows it.
type book struct {
	Path  string // the console's pages: Path, Path+"/import", …
	API   string // the API's collection
	Title string // the page's heading
	Menu  string // where the FAQ puts it
}

var (
	personalBook   = book{Path: "/contacts", API: "/v1/contacts", Title: "个人通讯录", Menu: "个人设置 > 个人通讯录"}
	enterpriseBook = book{Path: "/enterprise/contacts", API: "/v1/enterprise-contacts", Title: "企业通讯录", Menu: "企业设置 > 通讯录管理"}
)

func contactRoutes(b *book) []route {
	on := func(h func(*Server, *req, *book)) func(*Server, *req) {
		return func(s *Server, q *req) { h(s, q, b) }
	}
	return []route{
		{"GET " + b.Path, on((*Server).contacts)},
		{"POST " + b.Path, on((*Server).contactAdd)},
		{"POST " + b.Path + "/{id}/delete", on((*Server).contactDelete)},
		{"GET " + b.Path + "/import", on((*Server).contactsImportPage)},
		{"POST " + b.Path + "/import", on((*Server).contactsImport)},
		{"GET " + b.Path + "/template.csv", on((*Server).contactsTemplate)},
		{"GET " + b.Path + "/template.xlsx", on((*Server).contactsTemplate)},
	}
}

// contactsData is the page of a book: its list (or one group's), its
// groups, its limit and size as the API reports them.
type contactsData struct {
	Book   *book
	List   api.ContactList
	Group  string
	Import *api.ContactImport // the result of an import (import page)
}

func (s *Server) contacts(q *req, b *book) {
	s.contactsPage(q, b, http.StatusOK, nil)
}

// contactsPage renders the book's page; p carries a refused form, if any.
func (s *Server) contactsPage(q *req, b *book, code int, p *page) {
	group := strings.TrimSpace(q.r.URL.Query().Get("group"))
	path := b.API
	if group != "" {
		path += "?" + url.Values{"group": {group}}.Encode()
	}
	d := contactsData{Book: b, Group: group}
	if err := s.call(q.r, http.MethodGet, path, nil, &d.List); err != nil {
		q.fail(err)
		return
	}
	if p == nil {
		p = q.view(nil)
	}
	p.D = d
	q.render(code, "contacts", p)
}

// contactFields places the API's address-book refusals next to their field.
var contactFields = [][2]string{
	{"invalid_number", "number"}, {"already in", "number"}, {"number", "number"},
	{"invalid_name", "name"}, {"name", "name"},
	{"invalid_group", "groups"}, {"group", "groups"},
}

func (s *Server) contactAdd(q *req, b *book) {
	p := q.view(nil)
	in := api.ContactIn{
		Name:   strings.TrimSpace(q.r.PostFormValue("name")),
		Number: strings.TrimSpace(q.r.PostFormValue("number")),
		Groups: splitList(q.r.PostFormValue("groups")),
	}
	for _, k := range []string{"name", "number", "groups"} {
		p.Form.Set(k, q.r.PostFormValue(k))
	}
	var out api.Contact
	if err := s.call(q.r, http.MethodPost, b.API, in, &out); err != nil {
		code, ok := q.formErrorBy(p, err, contactFields)
		if !ok {
			return
		}
		s.contactsPage(q, b, code, p)
		return
	}
	q.redirect(b.Path, "已添加联系人："+out.Name+"（"+out.Number+"）。")
}

func (s *Server) contactDelete(q *req, b *book) {
	id := q.r.PathValue("id")
	if err := s.call(q.r, http.MethodDelete, b.API+"/"+pathSeg(id), nil, nil); err != nil {
		if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusUnauthorized) {
			q.fail(err)
			return
		}
		p := q.view(nil)
		p.Errors[""] = zhError(err)
		s.contactsPage(q, b, statusOf(err), p)
		return
	}
	q.redirect(back(q, b.Path), "已删除联系人 "+id+"。")
}

func (s *Server) contactsImportPage(q *req, b *book) {
	s.importPage(q, b, http.StatusOK, nil, nil)
}

// importPage is the import page of a book (FAQ 3: 导入, 文件模板下载),
// with the result of an import or its refusal.
func (s *Server) importPage(q *req, b *book, code int, res *api.ContactImport, p *page) {
	d := contactsData{Book: b, Import: res}
	if err := s.call(q.r, http.MethodGet, b.API, nil, &d.List); err != nil {
		q.fail(err)
		return
	}
	if p == nil {
		p = q.view(nil)
	}
	p.D = d
	q.render(code, "contacts_import", p)
}

// contactsImport passes the browser's multipart body (the file alone) to
// the API unread and shows the API's account of every row.
func (s *Server) contactsImport(q *req, b *book) {
	var res api.ContactImport
	err := s.upload(q.r, q.token, http.MethodPost, b.API+"/import", q.r.Header.Get("Content-Type"), q.r.Body, &res)
	if err != nil {
		p := q.view(nil)
		code, ok := q.formError(p, err, "file")
		if !ok {
			return
		}
		s.importPage(q, b, code, nil, p)
		return
	}
	p := q.view(nil)
	p.Flash = importNotice(res.Added+res.Updated, len(res.Errors))
	s.importPage(q, b, http.StatusOK, &res, p)
}

func (s *Server) contactsTemplate(q *req, b *book) {
	s.proxy(q.w, q.r, q.token, b.API+"/"+pathpart(q.r.URL.Path), nil)
}

// importNotice is the one-line account of an import.
func importNotice(accepted, refused int) string {
	if refused == 0 {
		return "导入完成：接受 " + strconv.Itoa(accepted) + " 行。"
	}
	return "导入完成：接受 " + strconv.Itoa(accepted) + " 行，" + strconv.Itoa(refused) + " 行有误（见下表）。"
}

// whitelistData is the 白名单维护 page.
type whitelistData struct {
	Rows   []whitelistRow
	Next   string
	State  string
	After  string
	Import *whitelistResult // the result of an add of several numbers, or of an import
}

// whitelistRow is one entry with its state in Chinese.
type whitelistRow struct {
	policy.WhitelistEntry
	StateZH, Class string
}

// whitelistResult is the API's account of an add or import.
type whitelistResult struct {
	Rows       int               `json:"rows"`
	Added      int               `json:"added"`
	Duplicates int               `json:"duplicates"`
	Errors     []whitelistRowErr `json:"errors"`
	Listed     []whitelistRowErr `json:"listed"`
}

type whitelistRowErr struct {
	Row      int    `json:"row"`
	Value    string `json:"value"`
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
	DetailZH string `json:"detail_zh"`
}

func (s *Server) whitelist(q *req) { s.whitelistPage(q, http.StatusOK, nil, nil) }

func (s *Server) whitelistPage(q *req, code int, res *whitelistResult, p *page) {
	v := url.Values{"limit": {"200"}}
	d := whitelistData{Import: res}
	if st := q.r.URL.Query().Get("state"); st != "" {
		v.Set("state", st)
		d.State = st
	}
	if a := q.r.URL.Query().Get("after"); a != "" {
		v.Set("after", a)
		d.After = a
	}
	var pg api.WhitelistPage
	if err := s.call(q.r, http.MethodGet, "/v1/whitelist?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	d.Next = pg.Next
	for _, e := range pg.Entries {
		d.Rows = append(d.Rows, whitelistRow{WhitelistEntry: e, StateZH: whitelistStateZH(e.State), Class: whitelistStateClass(e.State)})
	}
	if p == nil {
		p = q.view(nil)
	}
	p.D = d
	q.render(code, "whitelist", p)
}

func (s *Server) whitelistAdd(q *req) {
	again := func(p *page, code int) { s.whitelistPage(q, code, nil, p) }
	p, res, one, ok := s.addNumbers(q, "/v1/whitelist", again)
	if !ok {
		return
	}
	if one != "" {
		q.redirect("/whitelist", "已添加 "+one+"，待客户经理审批后生效。")
		return
	}
	p.Flash = "已提交 " + strconv.Itoa(res.Rows) + " 个号码：新增 " + strconv.Itoa(res.Added) + " 个待审批，" +
		strconv.Itoa(res.Duplicates) + " 个已在白名单中，" + strconv.Itoa(len(res.Errors)) + " 个有误。"
	s.whitelistPage(q, http.StatusOK, &res, p)
}

func (s *Server) whitelistImport(q *req) {
	again := func(p *page, code int) { s.whitelistPage(q, code, nil, p) }
	p, res, ok := s.importNumbers(q, "/v1/whitelist/import", again)
	if !ok {
		return
	}
	p.Flash = "导入完成：读取 " + strconv.Itoa(res.Rows) + " 行，新增 " + strconv.Itoa(res.Added) + " 个待审批，" +
		strconv.Itoa(res.Duplicates) + " 个已在白名单中，" + strconv.Itoa(len(res.Errors)) + " 行有误。"
	s.whitelistPage(q, http.StatusOK, &res, p)
}

// addNumbers sends a form's typed numbers (白名单, 退订名单: its "numbers"
// field) to path as one number or a list; the API answers one number with
// a status of its own. A refusal is shown next to the field by again.
// ok false: answered. one is the number when a single one was typed.
func (s *Server) addNumbers(q *req, path string, again func(*page, int)) (p *page, res whitelistResult, one string, ok bool) {
	p = q.view(nil)
	raw := q.r.PostFormValue("numbers")
	p.Form.Set("numbers", raw)
	numbers := splitList(raw)
	body := api.WhitelistAdd{Numbers: numbers}
	if len(numbers) == 1 {
		body, one = api.WhitelistAdd{Number: numbers[0]}, numbers[0]
	}
	if err := s.call(q.r, http.MethodPost, path, body, &res); err != nil {
		if code, shown := q.formError(p, err, "numbers"); shown {
			again(p, code)
		}
		return nil, res, "", false
	}
	return p, res, one, true
}

// importNumbers passes the browser's multipart body (the file alone) to
// path unread and returns the API's account of every row; a refusal is
// shown next to the file field by again. ok false: answered.
func (s *Server) importNumbers(q *req, path string, again func(*page, int)) (p *page, res whitelistResult, ok bool) {
	err := s.upload(q.r, q.token, http.MethodPost, path, q.r.Header.Get("Content-Type"), q.r.Body, &res)
	p = q.view(nil)
	if err != nil {
		if code, shown := q.formError(p, err, "file"); shown {
			again(p, code)
		}
		return nil, res, false
	}
	return p, res, true
}

func (s *Server) whitelistRemove(q *req) {
	id := q.r.PathValue("id")
	if err := s.call(q.r, http.MethodDelete, "/v1/whitelist/"+pathSeg(id), nil, nil); err != nil {
		if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusUnauthorized) {
			q.fail(err)
			return
		}
		p := q.view(nil)
		p.Errors[""] = zhError(err)
		s.whitelistPage(q, statusOf(err), nil, p)
		return
	}
	q.redirect("/whitelist", "已从白名单删除 "+id+"；发往该号码、还没有发出的短信也不再发出。")
}

func (s *Server) whitelistTemplate(q *req) {
	s.proxy(q.w, q.r, q.token, "/v1/whitelist/"+pathpart(q.r.URL.Path), nil)
}

// formErrorBy is formError for refusals whose message names the field in
// words: the first rule whose text the message contains places it.
func (q *req) formErrorBy(p *page, err error, rules [][2]string) (int, bool) {
	code, ok := q.formError(p, err)
	if !ok {
		return 0, false
	}
	var ae *api.APIError
	if msg, has := p.Errors[""]; has && errors.As(err, &ae) {
		low := strings.ToLower(ae.Message)
		if ae.Field != "" && slices.ContainsFunc(rules, func(r [2]string) bool { return r[1] == ae.Field }) {
			// The API names the field (policy.FieldError): a rule naming
			// it first places the error there.
			rules = append([][2]string{{"", ae.Field}}, rules...)
		}
		if zh, detail := innerReason(ae.Message); zh != "" {
			if ae.DetailZH != "" {
				detail = ae.DetailZH
			}
			msg = zh + "（" + detail + "）"
		}
		for _, r := range rules {
			if strings.Contains(low, r[0]) {
				delete(p.Errors, "")
				p.Errors[r[1]] = msg
				break
			}
		}
	}
	return code, true
}

// innerReason finds a row reason the API names inside an "invalid"
// message ("policy: invalid: invalid_number: +8620…: not a mobile
// number"): its Chinese and the detail after it.
func innerReason(msg string) (zh, detail string) {
	for _, r := range []string{policy.ReasonInvalidNumber.String(), policy.RowInvalidName, policy.RowInvalidGroup} {
		if i := strings.Index(msg, r+": "); i >= 0 {
			return reasonZH(r), msg[i+len(r)+2:]
		}
	}
	return "", ""
}

// splitList splits what a person types or pastes into a list: numbers or
// group names one a line, or separated by commas, semicolons, 、 or tabs
// (a column pasted from a sheet). Spaces stay: "137 1234 5678" is one
// number.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		switch r {
		case '\t', '\r', '\n', ',', '，', ';', '；', '、', '|', '｜':
			return true
		}
		return false
	}) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// back is the list page to return to: the form's "back" field if it is a
// path under list (a filtered list), else list.
func back(q *req, list string) string {
	if b := q.r.PostFormValue("back"); b == list || strings.HasPrefix(b, list+"?") {
		return b
	}
	return list
}

// pathpart is the last segment of a path (a template's file name).
func pathpart(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

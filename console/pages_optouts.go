package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// 退订名单 (白名单 > 退订名单): the numbers that replied an opt-out keyword
// (回复TD退订) to the enterprise, or that its users added themselves (a
// customer who asked by phone, the list of an earlier platform), which
// its sends are refused 该号码已退订 until an admin takes one off —
// when the customer asks to receive the enterprise's messages again.
// Every user reads the list, searches it by a number in any form and adds
// numbers, typed or from a file; only admins remove (the API decides: GET
// and POST /v1/optouts, POST /v1/optouts/import, DELETE
// /v1/optouts/{number}).

var optOutRoutes = []route{
	{"GET /optouts", (*Server).optOuts},
	{"POST /optouts", (*Server).optOutsAdd},
	{"POST /optouts/import", (*Server).optOutsImport},
	{"POST /optouts/remove", (*Server).optOutRemove},
	{"GET /optouts/export.csv", (*Server).optOutsExport},
}

// optOutsExport is 退订名单's 导出: the whole list as a CSV for Excel (GET
// /v1/optouts/export with lang=zh), streamed as the API writes it.
func (s *Server) optOutsExport(q *req) {
	s.listExport(q, "/optouts", nil, "/v1/optouts/export", false)
}

// optOutsPage is how many entries a page of the list shows.
const optOutsPage = 100

// optOutsData is the page: a page of the list (in number order, from
// After), or (Number) one number's entry.
type optOutsData struct {
	Number, BadNumber string
	Rows              []policy.OptOutEntry
	Paged             bool   // a page after the first
	NextURL, FirstURL string // the list's next page ("": none), its first
	// Import is the API's account of numbers added by hand, typed or
	// from a file (as the whitelist's).
	Import *whitelistResult
}

func (s *Server) optOuts(q *req) { s.optOutsPage(q, http.StatusOK, q.view(nil), nil) }

func (s *Server) optOutsPage(q *req, code int, p *page, res *whitelistResult) {
	in := q.r.URL.Query()
	d := &optOutsData{Number: strings.TrimSpace(in.Get("number")), FirstURL: "/optouts", Import: res}
	p.D = d
	var pg api.OptOutPage
	if d.Number != "" {
		err := s.call(q.r, http.MethodGet, "/v1/optouts?"+url.Values{"number": {d.Number}}.Encode(), nil, &pg)
		if isStatus(err, http.StatusUnprocessableEntity) {
			d.BadNumber = "请输入完整的手机号码（可带 +86、空格或短横线）。"
			q.render(http.StatusBadRequest, "optouts", p)
			return
		}
		if err != nil {
			q.fail(err)
			return
		}
		d.Rows = pg.Entries
		q.render(code, "optouts", p)
		return
	}
	v := url.Values{"limit": {strconv.Itoa(optOutsPage)}}
	if a := in.Get("after"); a != "" {
		v.Set("after", a)
		d.Paged = true
	}
	if err := s.call(q.r, http.MethodGet, "/v1/optouts?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	d.Rows = pg.Entries
	if pg.Next != "" {
		d.NextURL = link("/optouts", url.Values{"after": {pg.Next}})
	}
	q.render(code, "optouts", p)
}

// optOutsAdd puts the typed numbers on the list (POST /v1/optouts): one
// number goes back to the list with a notice, several show the account of
// each.
func (s *Server) optOutsAdd(q *req) {
	again := func(p *page, code int) { s.optOutsPage(q, code, p, nil) }
	p, res, one, ok := s.addNumbers(q, "/v1/optouts", again)
	if !ok {
		return
	}
	if one != "" {
		q.redirect(link("/optouts", url.Values{"number": {one}}), "已将 "+one+" 加入退订名单：本企业不会再向它发送短信。")
		return
	}
	p.Form.Del("numbers") // taken: each row's account is below
	p.Flash = optOutsNotice("已提交", res)
	s.optOutsPage(q, http.StatusOK, p, &res)
}

// optOutsImport passes the file to POST /v1/optouts/import and shows the
// API's account of every row.
func (s *Server) optOutsImport(q *req) {
	again := func(p *page, code int) { s.optOutsPage(q, code, p, nil) }
	p, res, ok := s.importNumbers(q, "/v1/optouts/import", again)
	if !ok {
		return
	}
	p.Flash = optOutsNotice("导入完成：读取", res)
	s.optOutsPage(q, http.StatusOK, p, &res)
}

// optOutsNotice is the one-line account of numbers added by hand.
func optOutsNotice(what string, res whitelistResult) string {
	return what + " " + strconv.Itoa(res.Rows) + " 个号码：新加入退订名单 " + strconv.Itoa(res.Added) + " 个，" +
		strconv.Itoa(res.Duplicates) + " 个已在名单中，" + strconv.Itoa(len(res.Errors)) + " 个有误。"
}

// optOutRemove takes a number off the list, once the admin has ticked
// that the customer asked to receive messages again.
func (s *Server) optOutRemove(q *req) {
	number := strings.TrimSpace(q.r.PostFormValue("number"))
	if q.r.PostFormValue("consent") != "yes" {
		q.redirect(link("/optouts", url.Values{"number": {number}}), "未移出：请先确认该客户已同意再次接收本企业的短信。")
		return
	}
	if err := s.call(q.r, http.MethodDelete, "/v1/optouts/"+pathSeg(number), nil, nil); err != nil {
		if isStatus(err, http.StatusUnauthorized) {
			q.fail(err)
			return
		}
		q.redirect(link("/optouts", url.Values{"number": {number}}), "未移出："+zhError(err))
		return
	}
	q.redirect("/optouts", "已将 "+number+" 移出退订名单，可以再次向它发送短信。")
}

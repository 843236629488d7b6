package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
)

// The desk's view of one enterprise's whitelist (白名单): every entry with
// its state, a number looked up, and the account manager's decision on any
// entry, not only the pending ones of 待审批: an approved number rejected
// (a customer who says he never agreed) stops what still waits for it
// (gateway.Stops), and a rejected one approved again.

// opsWhitelistData is the page: an enterprise's entries, a page of them
// (State: the tab; Next: the next page's cursor) or the one Number looked up.
type opsWhitelistData struct {
	Code          string
	Rows          []whitelistRow
	State, Next   string
	Number        string
	NotFound      bool // Number is not on the whitelist
	BadNumber     bool // Number is not an 11-digit mobile number
	NoWhitelist   bool
	EnterpriseURL string
}

// opsWhitelistPage is how many entries a page shows.
const opsWhitelistPage = 100

func (s *Server) opsWhitelist(q *req) {
	code := q.r.PathValue("code")
	qs := q.r.URL.Query()
	d := &opsWhitelistData{Code: code, State: qs.Get("state"),
		Number: strings.TrimSpace(qs.Get("number")), EnterpriseURL: "/ops/enterprises/" + url.PathEscape(code)}
	var e api.Enterprise
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(code), nil, &e); err != nil {
		q.fail(err)
		return
	}
	d.NoWhitelist = e.NoWhitelist
	v := url.Values{"limit": {strconv.Itoa(opsWhitelistPage)}}
	if d.State != "" {
		v.Set("state", d.State)
	}
	if a := qs.Get("after"); a != "" {
		v.Set("after", a)
	}
	if d.Number != "" {
		// One number: the first entry after the number just below it.
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(d.Number, "+86"), "86"), 10, 64)
		if err != nil || n < 10_000_000_000 || n > 19_999_999_999 {
			d.BadNumber = true
			s.renderOpsWhitelist(q, d)
			return
		}
		d.Number = strconv.FormatUint(n, 10)
		v = url.Values{"limit": {"1"}, "after": {"+86" + strconv.FormatUint(n-1, 10)}}
	}
	var pg api.WhitelistPage
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(code)+"/whitelist?"+v.Encode(), nil, &pg); err != nil {
		q.fail(err)
		return
	}
	for _, en := range pg.Entries {
		if d.Number != "" && en.Number != "+86"+d.Number {
			continue
		}
		d.Rows = append(d.Rows, whitelistRow{WhitelistEntry: en, StateZH: whitelistStateZH(en.State), Class: whitelistStateClass(en.State)})
	}
	if d.Number != "" {
		d.NotFound = len(d.Rows) == 0
	} else {
		d.Next = pg.Next
	}
	s.renderOpsWhitelist(q, d)
}

func (s *Server) renderOpsWhitelist(q *req, d *opsWhitelistData) {
	p := q.view(d)
	q.render(http.StatusOK, "ops_whitelist", p)
}

// opsWhitelistDecide approves or rejects one entry of the enterprise's
// whitelist, in any state; a rejection needs its reason (the enterprise
// sees it). Back to the number, saying what was done.
func (s *Server) opsWhitelistDecide(q *req) {
	code := q.r.PathValue("code")
	f := q.r.PostForm
	number, decision := strings.TrimPrefix(strings.TrimSpace(f.Get("number")), "+86"), f.Get("decision")
	back := "/ops/enterprises/" + url.PathEscape(code) + "/whitelist?number=" + url.QueryEscape(number)
	if decision != "approve" && decision != "reject" {
		q.notFound()
		return
	}
	in := api.Decision{Numbers: []string{number}}
	if decision == "reject" {
		in.Reason = strings.TrimSpace(f.Get("reason"))
		if in.Reason == "" {
			q.redirect(back, "未拒绝：请填写拒绝原因（企业可以看到）。")
			return
		}
	}
	var res struct {
		Changed int `json:"changed"`
	}
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(code)+"/whitelist/"+decision, in, &res); err != nil {
		q.redirect(back, "未变更："+zhError(err))
		return
	}
	switch {
	case res.Changed == 0:
		q.redirect(back, "未变更："+number+" 已是该状态，或不在白名单中。")
	case decision == "reject":
		q.redirect(back, "已拒绝 "+number+"：该企业不能再发短信给它，发往它、还没有发出的短信也不再发出。")
	default:
		q.redirect(back, "已通过 "+number+"：该企业可以发短信给它。")
	}
}

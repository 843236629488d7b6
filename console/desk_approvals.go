package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The desk's 待审批: whitelist entries, signature changes and account
// applications waiting for the account manager.

// --- 待审批 ---

type pendingRow struct {
	policy.PendingEntry
	Key string // "CODE|8613…" (E.164 without its +), the form's value
}

type opsApprovalsData struct {
	Entries []pendingRow
	Next    string // the next page's cursor
	After   string
	Sigs    []policy.SignatureRequest
	Apps    []api.Application
	Result  *policy.DecideResult
}

// pendingPage is how many pending entries one page of the queue shows.
const pendingPage = 200

func (s *Server) pendingWhitelist(q *req, after string) (*api.PendingPage, error) {
	v := url.Values{"limit": {strconv.Itoa(pendingPage)}}
	if after != "" {
		v.Set("after", after)
	}
	var pg api.PendingPage
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/whitelist/pending?"+v.Encode(), nil, &pg)
	return &pg, err
}

func (s *Server) pendingSignatures(q *req) ([]policy.SignatureRequest, error) {
	var l api.SignatureRequestList
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/signature-requests?state=pending", nil, &l)
	return l.Requests, err
}

func (s *Server) pendingApplications(q *req) ([]api.Application, error) {
	if q.opsWho().Enterprises != nil {
		return nil, nil // not a portfolio's: the desk does not show them
	}
	var l struct {
		Applications []api.Application `json:"applications"`
	}
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/applications?state=pending", nil, &l)
	return l.Applications, err
}

func (s *Server) opsApprovals(q *req) {
	s.opsApprovalsAgain(q, q.view(nil), http.StatusOK)
}

func (s *Server) opsApprovalsAgain(q *req, p *page, code int) {
	after := q.r.URL.Query().Get("after")
	pg, err := s.pendingWhitelist(q, after)
	if err != nil {
		q.fail(err)
		return
	}
	d, _ := p.D.(*opsApprovalsData)
	if d == nil {
		d = &opsApprovalsData{}
	}
	d.Entries, d.Next, d.After = nil, pg.Next, after
	for _, e := range pg.Entries {
		d.Entries = append(d.Entries, pendingRow{PendingEntry: e, Key: e.Enterprise + "|" + strings.TrimPrefix(e.Number, "+")})
	}
	if d.Sigs, err = s.pendingSignatures(q); err != nil {
		q.fail(err)
		return
	}
	if d.Apps, err = s.pendingApplications(q); err != nil {
		q.fail(err)
		return
	}
	p.D = d
	q.render(code, "ops_approvals", p)
}

// opsDecideWhitelist approves or rejects pending whitelist entries: one
// (a row's 通过 / 拒绝 button, the row's reason) or the selected ones
// (the checkboxes, the reason above them), in one API call.
func (s *Server) opsDecideWhitelist(q *req) {
	f := q.r.PostForm
	var keys []string
	approve, reasonField := true, "reason"
	switch {
	case f.Get("approve") != "":
		keys = []string{f.Get("approve")}
	case f.Get("reject") != "":
		keys, approve = []string{f.Get("reject")}, false
		reasonField = "r:" + f.Get("reject")
	default:
		keys, approve = f["e"], f.Get("bulk") != "reject"
	}
	p := q.view(&opsApprovalsData{})
	reason := strings.TrimSpace(f.Get(reasonField))
	if reasonField != "reason" && reason == "" {
		reason = strings.TrimSpace(f.Get("reason"))
	}
	p.Form.Set(reasonField, reason)
	if len(keys) == 0 {
		// Nothing ticked: a typing slip, not a rule.
		p.Errors["bulk"] = "请先勾选要审批的号码。"
		s.opsApprovalsAgain(q, p, http.StatusUnprocessableEntity)
		return
	}
	in := api.EntryDecision{}
	for _, k := range keys {
		ent, num, _ := strings.Cut(k, "|")
		in.Entries = append(in.Entries, policy.EntryRef{Enterprise: ent, Number: "+" + strings.TrimPrefix(num, "+")})
	}
	path := "/admin/v1/whitelist/approve"
	if !approve {
		path, in.Reason = "/admin/v1/whitelist/reject", reason
	}
	var res policy.DecideResult
	if err := s.opsCall(q.r, http.MethodPost, path, in, &res); err != nil {
		code, ok := q.deskErr(p, err, "reason")
		if !ok {
			return
		}
		if m, ok := p.Errors["reason"]; ok && reasonField != "reason" {
			p.Errors[reasonField] = m
			delete(p.Errors, "reason")
		}
		if m, ok := p.Errors[""]; ok {
			p.Errors["bulk"] = m
			delete(p.Errors, "")
		}
		s.opsApprovalsAgain(q, p, code)
		return
	}
	verb := "通过"
	if !approve {
		verb = "拒绝"
	}
	msg := "已" + verb + " " + strconv.Itoa(res.Changed) + " 个号码。"
	if n := res.Unchanged + len(res.NotFound) + len(res.Errors); n > 0 {
		msg += strconv.Itoa(n) + " 个号码未变更（已审批过或已删除）。"
	}
	q.redirect("/ops/approvals", msg)
}

func (s *Server) opsDecideSignature(q *req) {
	id, decision := q.r.PathValue("id"), q.r.PathValue("decision")
	if decision != "approve" && decision != "reject" {
		q.notFound()
		return
	}
	var body any
	reason := strings.TrimSpace(q.r.PostFormValue("reason"))
	if decision == "reject" {
		body = api.SignatureDecision{Reason: reason}
	}
	var out policy.SignatureRequest
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/signature-requests/"+pathSeg(id)+"/"+decision, body, &out); err != nil {
		p := q.view(nil)
		p.Form.Set("sig:"+id, reason)
		code, ok := q.deskErr(p, err, "reason")
		if !ok {
			return
		}
		p.Errors["sig:"+id] = p.Errors["reason"] + p.Errors[""]
		delete(p.Errors, "reason")
		delete(p.Errors, "")
		s.opsApprovalsAgain(q, p, code)
		return
	}
	msg := "已通过企业 " + out.Enterprise + " 的签名 " + out.Signature + "，下一条短信起使用。"
	if decision == "reject" {
		msg = "已拒绝企业 " + out.Enterprise + " 的签名申请 " + out.Signature + "。"
	}
	q.redirect("/ops/approvals", msg)
}

func (s *Server) opsDecideApplication(q *req) {
	num, decision := q.r.PathValue("number"), q.r.PathValue("decision")
	var body any
	reason := strings.TrimSpace(q.r.PostFormValue("reason"))
	switch decision {
	case "approve":
		body = api.ApplicationApproval{SystemID: strings.TrimSpace(q.r.PostFormValue("system_id"))}
	case "reject":
		body = api.ApplicationRejection{Reason: reason}
	default:
		q.notFound()
		return
	}
	var out struct {
		api.Application
		Approved *api.Application `json:"application"`
		Sent     bool             `json:"password_sent"`
	}
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/applications/"+pathSeg(num)+"/"+decision, body, &out); err != nil {
		p := q.view(nil)
		p.Form.Set("app:"+num, reason)
		code, ok := q.deskErr(p, err, "reason", "system_id")
		if !ok {
			return
		}
		var parts []string
		for _, k := range []string{"", "reason", "system_id"} {
			if m := p.Errors[k]; m != "" {
				parts = append(parts, m)
			}
			delete(p.Errors, k)
		}
		p.Errors["app:"+num] = strings.Join(parts, " ")
		s.opsApprovalsAgain(q, p, code)
		return
	}
	msg := "已拒绝开户申请 " + num + "。"
	if out.Approved != nil {
		msg = "已开户：企业 " + out.Approved.GroupCode + "，管理员账号 " + out.Approved.AdminSystemID + "。"
		if out.Sent {
			msg += "初始密码已以短信发送到联系手机。"
		} else {
			msg += "初始密码短信发送失败，请为该账号重置密码。"
		}
	}
	q.redirect("/ops/approvals", msg)
}

package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The account manager's desk (客户经理工作台, /ops/): 运行概况, 企业 (list,
// new, detail and edit with its users), 待审批 (whitelist entries of every
// enterprise, signature changes, account applications), 账单 (with its
// CSV) and 回执导出 (the API's DLR export streamed through). Every figure
// and every rule is the admin API's (/admin/v1, as the operator session).

var deskRoutes = []route{
	{"GET /ops/{$}", (*Server).opsHome},
	{"GET /ops/enterprises", (*Server).opsEnterprises},
	{"GET /ops/enterprises/new", (*Server).opsEnterpriseNewPage},
	{"POST /ops/enterprises/new", (*Server).opsEnterpriseCreate},
	{"GET /ops/enterprises/{code}", (*Server).opsEnterprise},
	{"POST /ops/enterprises/{code}", (*Server).opsEnterpriseUpdate},
	{"POST /ops/enterprises/{code}/state", (*Server).opsEnterpriseState},
	{"POST /ops/enterprises/{code}/users", (*Server).opsUserCreate},
	{"POST /ops/enterprises/{code}/users/{sid}/password", (*Server).opsUserPassword},
	{"GET /ops/approvals", (*Server).opsApprovals},
	{"POST /ops/approvals/whitelist", (*Server).opsDecideWhitelist},
	{"POST /ops/approvals/signatures/{id}/{decision}", (*Server).opsDecideSignature},
	{"POST /ops/approvals/applications/{number}/{decision}", (*Server).opsDecideApplication},
	{"GET /ops/bills", (*Server).opsBills},
	{"GET /ops/bills.csv", (*Server).opsBillsCSV},
	{"GET /ops/export", (*Server).opsExportPage},
	{"GET /ops/export/dlr.csv", (*Server).opsExportDLR},
}

// --- 运行概况 ---

// queueStates are the store's segment states in the order the desk shows
// them, with their Chinese names.
var queueStates = []struct{ State, ZH string }{
	{"accepted", "已受理（待提交）"},
	{"submitted", "已提交（待回执）"},
	{"waiting", "等待定时或重试"},
	{"delivered", "接收成功"},
	{"undeliverable", "接收失败"},
	{"expired", "已过期"},
	{"rejected", "被拒绝"},
	{"unknown", "状态未知"},
	{"cancelled", "已取消"},
}

type opsCount struct {
	Key, ZH string
	N       int
}

type refusalRow struct {
	Reason, ZH string
	Count      uint64
}

type opsHomeData struct {
	St        api.SystemStatus
	AllUp     bool
	Queue     []opsCount
	Refusals  []refusalRow // with a count
	Zero      []refusalRow // the reasons not seen since the start
	Whitelist int          // pending entries (at most pendingPage)
	More      bool         // more than Whitelist
	Sigs      int
	Apps      int
}

func (s *Server) opsHome(q *req) {
	d := &opsHomeData{AllUp: true}
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/status", nil, &d.St); err != nil {
		q.fail(err)
		return
	}
	for _, u := range d.St.Upstreams {
		if u.BindsUp < u.BindsConfigured {
			d.AllUp = false
		}
	}
	seen := map[string]bool{}
	for _, qs := range queueStates {
		seen[qs.State] = true
		d.Queue = append(d.Queue, opsCount{qs.State, qs.ZH, d.St.Queue[qs.State]})
	}
	for k, n := range d.St.Queue {
		if !seen[k] {
			d.Queue = append(d.Queue, opsCount{k, k, n})
		}
	}
	for _, rf := range d.St.Refusals {
		row := refusalRow{Reason: rf.Reason, ZH: reasonZH(rf.Reason), Count: rf.Count}
		if rf.Count == 0 {
			d.Zero = append(d.Zero, row)
		} else {
			d.Refusals = append(d.Refusals, row)
		}
	}
	pend, err := s.pendingWhitelist(q, "")
	if err != nil {
		q.fail(err)
		return
	}
	d.Whitelist, d.More = len(pend.Entries), pend.Next != ""
	sigs, err := s.pendingSignatures(q)
	if err != nil {
		q.fail(err)
		return
	}
	d.Sigs = len(sigs)
	apps, err := s.pendingApplications(q)
	if err != nil {
		q.fail(err)
		return
	}
	d.Apps = len(apps)
	q.render(http.StatusOK, "ops_home", q.view(d))
}

// --- 企业 ---

type opsEnterprisesData struct {
	Month       string
	Enterprises []api.Enterprise
	Bills       map[string]api.BillLine // this month's, by code
}

// thisMonth is the billing month now (Asia/Shanghai).
func thisMonth() string { return policy.MonthOf(time.Now()) }

func (s *Server) opsEnterprises(q *req) {
	var l api.EnterpriseList
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises", nil, &l); err != nil {
		q.fail(err)
		return
	}
	d := &opsEnterprisesData{Month: thisMonth(), Enterprises: l.Enterprises, Bills: map[string]api.BillLine{}}
	var bills []api.BillLine
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/bill?month="+d.Month, nil, &bills); err != nil {
		q.fail(err)
		return
	}
	for _, b := range bills {
		d.Bills[b.Enterprise] = b
	}
	q.render(http.StatusOK, "ops_enterprises", q.view(d))
}

// entFields are the enterprise form's fields, in the order the API's
// messages may name them.
var entFields = []string{"code", "name", "signature", "package", "national", "offnet", "service_number", "ext_len", "tps", "cap_yuan", "no_overage", "no_whitelist", "max_users"}

// fieldLabel is the Chinese label of a desk form field.
var fieldLabel = map[string]string{
	"code": "集团编码", "name": "名称", "signature": "企业签名", "package": "套餐",
	"service_number": "接入号", "ext_len": "扩展位数", "tps": "每秒条数", "cap_yuan": "月消费上限",
	"max_users": "用户数上限", "system_id": "登录账号", "password": "密码", "mobile": "注册手机",
	"role": "角色", "extension": "分机号", "reason": "原因", "month": "月份", "from": "开始日期", "to": "结束日期",
	"enterprise": "企业",
}

// deskField is the form field an admin API message is about: policy's
// messages name it in English ("group code …", "enterprise X: tps 0: …").
func deskField(ae *api.APIError, fields []string) string {
	msg := strings.ToLower(ae.Message)
	has := func(f string) bool {
		for _, x := range fields {
			if x == f {
				return true
			}
		}
		return false
	}
	for _, f := range fields {
		if strings.HasPrefix(msg, f+":") || strings.HasPrefix(msg, f+" ") {
			return f
		}
	}
	for _, m := range []struct{ word, field string }{
		{"group code", "code"}, {"ext_len", "ext_len"}, {"extension", "extension"}, {"service number", "service_number"},
		{"signature", "signature"}, {"package", "package"}, {"tps", "tps"}, {"cap", "cap_yuan"}, {"amount", "cap_yuan"},
		{"max_users", "max_users"}, {"system_id", "system_id"}, {"password", "password"}, {"mobile", "mobile"},
		{"role", "role"}, {"user name", "name"}, {"name ", "name"}, {"reason", "reason"}, {"month", "month"},
		{"to is before", "to"}, {"from", "from"}, {"enterprise", "enterprise"},
	} {
		if has(m.field) && strings.Contains(msg, m.word) {
			return m.field
		}
	}
	if ae.Reason == "exists" && has("code") && strings.Contains(msg, "enterprise") {
		return "code"
	}
	if len(fields) == 1 {
		return fields[0]
	}
	return ""
}

// deskMessages are the Chinese of the admin API's most frequent
// validation messages (policy's words), shown before the API's own.
var deskMessages = []struct{ en, zh string }{
	{"needs a reason", "拒绝时须填写原因（企业可以看到）"},
	{"reason: at most", "原因太长"},
	{"is not in the package table", "套餐表中没有这个套餐"},
	{"only letters, digits", "只能包含字母、数字、- 和 _"},
	{"group code", "集团编码须为 1–32 个字符"},
	{"must be wrapped in 【】", "签名须用【】括起来"},
	{"brackets inside", "签名内不能再有括号"},
	{"without a service number", "没有接入号时扩展位数须为 0"},
	{"service number", "接入号须为 3–20 位数字，且不能与其他企业的接入号重叠"},
	{"tps", "每秒条数超出范围"},
	{"amount", "金额格式有误（元，最多两位小数）"},
	{"password:", "密码须为 6–8 位字母、数字或英文符号，不能有空格"},
	{"system_id", "登录账号须为 1–15 位字母、数字或英文符号，不能有空格"},
	{"want YYYY-MM", "请选择月份"},
	{"is required", "必填"},
	{"to is before from", "结束日期早于开始日期"},
}

// deskErr puts an admin API refusal next to its field, in Chinese (the
// field's name, then zhError's text). ok is false when fail answered.
func (q *req) deskErr(p *page, err error, fields ...string) (int, bool) {
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status == http.StatusUnauthorized || ae.Status == http.StatusNotFound && len(fields) == 0 {
		q.fail(err)
		return 0, false
	}
	f := deskField(ae, fields)
	msg := zhError(err)
	if ae.Reason == "exists" {
		msg = "已被使用（" + ae.Message + "）"
	}
	for _, t := range deskMessages {
		if ae.Reason == "invalid" && strings.Contains(ae.Message, t.en) {
			msg = t.zh + "（" + ae.Message + "）"
			break
		}
	}
	if l := fieldLabel[f]; l != "" {
		msg = l + "：" + msg
	}
	p.Errors[f] = msg
	return statusOf(err), true
}

// packages is the API's package table (FAQ 16).
func (s *Server) packages(q *req) ([]api.PackageOut, error) {
	var l api.PackageList
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/packages", nil, &l)
	return l.Packages, err
}

type opsEntFormData struct {
	Packages []api.PackageOut
	Detail   *api.EnterpriseDetail // nil for a new enterprise
	Users    []api.User
}

func (s *Server) opsEnterpriseNewPage(q *req) {
	p := q.view(nil)
	p.Form.Set("package", "1")
	s.opsEnterpriseNewAgain(q, p, http.StatusOK)
}

func (s *Server) opsEnterpriseNewAgain(q *req, p *page, code int) {
	pk, err := s.packages(q)
	if err != nil {
		q.fail(err)
		return
	}
	p.D = &opsEntFormData{Packages: pk}
	q.render(code, "ops_enterprise", p)
}

// atoi is a form's integer ("" = 0); a non-number is passed on as -1 so
// that the API refuses it with its own message.
func atoi(s string) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func (s *Server) opsEnterpriseCreate(q *req) {
	p := q.view(nil)
	f := q.r.PostForm
	for _, k := range entFields {
		p.Form.Set(k, strings.TrimSpace(f.Get(k)))
	}
	in := api.NewEnterprise{
		Code: p.Form.Get("code"), Name: p.Form.Get("name"), Signature: p.Form.Get("signature"),
		Package: atoi(f.Get("package")), National: f.Get("national") != "", OffNet: f.Get("offnet") != "",
		ServiceNumber: p.Form.Get("service_number"), ExtLen: atoi(f.Get("ext_len")), TPS: atoi(f.Get("tps")),
		CapYuan: p.Form.Get("cap_yuan"), NoOverage: f.Get("no_overage") != "", NoWhitelist: f.Get("no_whitelist") != "",
		MaxUsers: atoi(f.Get("max_users")),
	}
	var e api.Enterprise
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises", in, &e); err != nil {
		code, ok := q.deskErr(p, err, entFields...)
		if !ok {
			return
		}
		s.opsEnterpriseNewAgain(q, p, code)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(e.Code), "已新建企业 "+e.Name+"（"+e.Code+"）。")
}

func (s *Server) opsEnterprise(q *req) {
	s.opsEnterpriseAgain(q, q.view(nil), http.StatusOK, true)
}

// opsEnterpriseAgain renders an enterprise's page; fill puts its values
// in the edit form (not after a refused edit: the operator's are kept).
func (s *Server) opsEnterpriseAgain(q *req, p *page, code int, fill bool) {
	ec := q.r.PathValue("code")
	d := &opsEntFormData{Detail: &api.EnterpriseDetail{}}
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(ec), nil, d.Detail); err != nil {
		q.fail(err)
		return
	}
	var ul api.UserList
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(ec)+"/users", nil, &ul); err != nil {
		q.fail(err)
		return
	}
	d.Users = ul.Users
	pk, err := s.packages(q)
	if err != nil {
		q.fail(err)
		return
	}
	d.Packages = pk
	if fill {
		e := d.Detail.Enterprise
		for k, v := range entValues(&e) {
			p.Form.Set(k, v)
		}
	}
	p.D = d
	q.render(code, "ops_enterprise", p)
}

// entValues is an enterprise as the edit form's values.
func entValues(e *api.Enterprise) map[string]string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return ""
	}
	capY := ""
	if e.CapFen != 0 {
		capY = e.CapYuan
	}
	return map[string]string{
		"name": e.Name, "signature": e.Signature, "package": strconv.Itoa(e.Package),
		"national": b(e.National), "offnet": b(e.OffNet), "service_number": e.ServiceNumber,
		"ext_len": strconv.Itoa(e.ExtLen), "tps": strconv.Itoa(e.TPS), "cap_yuan": capY,
		"no_overage": b(e.NoOverage), "no_whitelist": b(e.NoWhitelist), "max_users": strconv.Itoa(e.MaxUsers),
	}
}

// opsEnterpriseUpdate changes what the edit form changed (PATCH with the
// fields whose value differs from the enterprise's).
func (s *Server) opsEnterpriseUpdate(q *req) {
	ec := q.r.PathValue("code")
	var det api.EnterpriseDetail
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises/"+pathSeg(ec), nil, &det); err != nil {
		q.fail(err)
		return
	}
	p := q.view(nil)
	f := q.r.PostForm
	old := entValues(&det.Enterprise)
	var in api.EnterprisePatch
	changed := 0
	for _, k := range entFields[1:] {
		v := strings.TrimSpace(f.Get(k))
		if _, isBool := map[string]bool{"national": true, "offnet": true, "no_overage": true, "no_whitelist": true}[k]; isBool && v != "" {
			v = "1"
		}
		p.Form.Set(k, v)
		if v == old[k] {
			continue
		}
		changed++
		str, num, flag := v, atoi(v), v != ""
		switch k {
		case "name":
			in.Name = &str
		case "signature":
			in.Signature = &str
		case "package":
			in.Package = &num
		case "national":
			in.National = &flag
		case "offnet":
			in.OffNet = &flag
		case "service_number":
			in.ServiceNumber = &str
		case "ext_len":
			in.ExtLen = &num
		case "tps":
			in.TPS = &num
		case "cap_yuan":
			in.CapYuan = &str
		case "no_overage":
			in.NoOverage = &flag
		case "no_whitelist":
			in.NoWhitelist = &flag
		case "max_users":
			in.MaxUsers = &num
		}
	}
	to := "/ops/enterprises/" + url.PathEscape(ec)
	if changed == 0 {
		q.redirect(to, "没有修改。")
		return
	}
	if err := s.opsCall(q.r, http.MethodPatch, "/admin/v1/enterprises/"+pathSeg(ec), in, nil); err != nil {
		code, ok := q.deskErr(p, err, entFields[1:]...)
		if !ok {
			return
		}
		s.opsEnterpriseAgain(q, p, code, false)
		return
	}
	q.redirect(to, "已保存企业 "+ec+" 的修改，下一条短信起生效。")
}

// opsEnterpriseState is 停用 / 启用 (PATCH disabled).
func (s *Server) opsEnterpriseState(q *req) {
	ec := q.r.PathValue("code")
	dis := q.r.PostFormValue("disabled") == "true"
	if err := s.opsCall(q.r, http.MethodPatch, "/admin/v1/enterprises/"+pathSeg(ec), api.EnterprisePatch{Disabled: &dis}, nil); err != nil {
		p := q.view(nil)
		code, ok := q.deskErr(p, err)
		if !ok {
			return
		}
		s.opsEnterpriseAgain(q, p, code, true)
		return
	}
	msg := "已启用企业 " + ec + "。"
	if dis {
		msg = "已停用企业 " + ec + "：其用户不能再发送短信。"
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), msg)
}

var userFields = []string{"system_id", "password", "name", "mobile", "role", "extension"}

func (s *Server) opsUserCreate(q *req) {
	ec := q.r.PathValue("code")
	f := q.r.PostForm
	p := q.view(nil)
	in := api.NewUser{
		SystemID: strings.TrimSpace(f.Get("system_id")), Password: f.Get("password"),
		Name: strings.TrimSpace(f.Get("name")), Mobile: strings.TrimSpace(f.Get("mobile")),
		Role: f.Get("role"), Extension: strings.TrimSpace(f.Get("extension")), ShowSignature: f.Get("show_signature") != "",
	}
	var u api.User
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(ec)+"/users", in, &u); err != nil {
		code, ok := q.deskErr(p, err, userFields...)
		if !ok {
			return
		}
		// The user form's values and errors live under "u." so that they
		// do not fill the enterprise form's fields of the same name.
		for _, k := range userFields {
			if k != "password" {
				p.Form.Set("u."+k, strings.TrimSpace(f.Get(k)))
			}
			if m, ok := p.Errors[k]; ok {
				p.Errors["u."+k] = m
				delete(p.Errors, k)
			}
		}
		if m, ok := p.Errors[""]; ok {
			p.Errors["u."] = m
			delete(p.Errors, "")
		}
		s.opsEnterpriseAgain(q, p, code, true)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), "已添加用户 "+u.Name+"（"+u.SystemID+"）。")
}

func (s *Server) opsUserPassword(q *req) {
	ec, sid := q.r.PathValue("code"), q.r.PathValue("sid")
	var u api.User
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/users/"+pathSeg(sid), nil, &u); err != nil || u.Enterprise != ec {
		if err == nil {
			q.notFound()
			return
		}
		q.fail(err)
		return
	}
	err := s.opsCall(q.r, http.MethodPut, "/admin/v1/users/"+pathSeg(sid)+"/password", api.PasswordSet{Password: q.r.PostFormValue("password")}, nil)
	if err != nil {
		p := q.view(nil)
		code, ok := q.deskErr(p, err, "password")
		if !ok {
			return
		}
		p.Errors["pw:"+sid] = p.Errors["password"]
		delete(p.Errors, "password")
		s.opsEnterpriseAgain(q, p, code, true)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), "已为用户 "+sid+" 设置新密码。")
}

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

// --- 账单 ---

type opsBillsData struct {
	Month string
	Lines []api.BillLine
	Total api.BillLine // the sums
}

// billMonth is the month the bill pages show: ?month=, else this month.
func billMonth(q *req) string {
	if m := strings.TrimSpace(q.r.URL.Query().Get("month")); m != "" {
		return m
	}
	return thisMonth()
}

func (s *Server) bills(q *req, month string) ([]api.BillLine, error) {
	var lines []api.BillLine
	err := s.opsCall(q.r, http.MethodGet, "/admin/v1/bill?"+url.Values{"month": {month}}.Encode(), nil, &lines)
	return lines, err
}

func (s *Server) opsBills(q *req) {
	month := billMonth(q)
	d := &opsBillsData{Month: month}
	p := q.view(d)
	p.Form.Set("month", month)
	lines, err := s.bills(q, month)
	if err != nil {
		code, ok := q.deskErr(p, err, "month")
		if !ok {
			return
		}
		q.render(code, "ops_bills", p)
		return
	}
	d.Lines = lines
	for _, l := range lines {
		d.Total.FeeFen += l.FeeFen
		d.Total.Included += l.Included
		d.Total.Delivered += l.Delivered
		d.Total.Overage += l.Overage
		d.Total.OverageFen += l.OverageFen
		d.Total.TotalFen += l.TotalFen
		d.Total.Pending += l.Pending
	}
	q.render(http.StatusOK, "ops_bills", p)
}

// opsBillsCSV is the month's bill as CSV for Excel (UTF-8 with a BOM),
// written from the API's JSON lines (the API serves the bill as JSON).
func (s *Server) opsBillsCSV(q *req) {
	month := billMonth(q)
	lines, err := s.bills(q, month)
	if err != nil {
		q.fail(err)
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="bill-`+url.PathEscape(month)+`.csv"`)
	_, _ = q.w.Write([]byte("\uFEFF"))
	w := csv.NewWriter(q.w)
	_ = w.Write([]string{"集团编码", "企业名称", "月份", "套餐", "月租（元）", "包含条数", "接收成功条数", "超出条数",
		"超出单价（元/条）", "超出费用（元）", "合计（元）", "未出结果条数", "备注"})
	for _, l := range lines {
		_ = w.Write([]string{l.Enterprise, l.Name, l.Month, strconv.Itoa(l.Package), l.FeeYuan,
			strconv.FormatInt(l.Included, 10), strconv.FormatInt(l.Delivered, 10), strconv.FormatInt(l.Overage, 10),
			yuan(l.OverageRateFen), l.OverageYuan, l.TotalYuan, strconv.FormatInt(l.Pending, 10), l.Error})
	}
	w.Flush()
}

// --- 回执导出 ---

type opsExportData struct {
	Enterprises []api.Enterprise
}

func (s *Server) opsExportPage(q *req) {
	p := q.view(nil)
	start := policy.MonthStart(time.Now())
	p.Form.Set("from", start.Format("2006-01-02"))
	p.Form.Set("to", start.AddDate(0, 1, 0).Format("2006-01-02"))
	s.opsExportAgain(q, p, http.StatusOK)
}

func (s *Server) opsExportAgain(q *req, p *page, code int) {
	var l api.EnterpriseList
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/enterprises", nil, &l); err != nil {
		q.fail(err)
		return
	}
	p.D = &opsExportData{Enterprises: l.Enterprises}
	q.render(code, "ops_export", p)
}

// opsExportDLR streams the API's DLR export to the browser as it comes
// (never whole in the console). A refusal, which the API answers before
// any row, is shown on the export form instead, in Chinese.
func (s *Server) opsExportDLR(q *req) {
	in := q.r.URL.Query()
	v := url.Values{"format": {"csv"}}
	for _, k := range []string{"from", "to", "enterprise"} {
		if x := strings.TrimSpace(in.Get(k)); x != "" {
			v.Set(k, x)
		}
	}
	cw := &catchError{w: q.w}
	s.proxy(cw, q.r, q.token, "/admin/v1/export/dlr", v)
	if cw.code < 400 {
		return
	}
	ae := &api.APIError{Status: cw.code}
	var body struct {
		Error struct{ Reason, Message string } `json:"error"`
	}
	if json.Unmarshal(cw.buf.Bytes(), &body) == nil {
		ae.Reason, ae.Message = body.Error.Reason, body.Error.Message
	}
	p := q.view(nil)
	for _, k := range []string{"from", "to", "enterprise"} {
		p.Form.Set(k, in.Get(k))
	}
	code, ok := q.deskErr(p, ae, "from", "to", "enterprise")
	if !ok {
		return
	}
	s.opsExportAgain(q, p, code)
}

// catchError passes a download through as it comes, unless the API
// refuses it (a 4xx or 5xx status before any row): that answer, a small
// JSON error, is kept for the console to show on its form instead.
type catchError struct {
	w     http.ResponseWriter
	code  int
	wrote bool
	buf   bytes.Buffer
}

func (c *catchError) Header() http.Header { return c.w.Header() }

func (c *catchError) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote, c.code = true, code
	if code >= 400 {
		h := c.w.Header()
		for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Length", "Trailer"} {
			h.Del(k)
		}
		return
	}
	c.w.WriteHeader(code)
}

func (c *catchError) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.code >= 400 {
		if c.buf.Len() < 64<<10 {
			c.buf.Write(p)
		}
		return len(p), nil
	}
	return c.w.Write(p)
}

// Unwrap lets the API's http.ResponseController reach the connection
// (flushes, write deadlines) through the wrapper.
func (c *catchError) Unwrap() http.ResponseWriter { return c.w }

// Flush sends what the API has written so far.
func (c *catchError) Flush() {
	if c.wrote && c.code < 400 {
		_ = http.NewResponseController(c.w).Flush()
	}
}

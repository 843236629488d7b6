package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The desk's 企业 pages: the list, a new enterprise, one enterprise with
// its grants, package and users.

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
	"enterprise": "企业", "long_replies": "长短信回复",
}

// deskField is the form field an admin API message is about: policy's
// messages name it in English ("group code …", "enterprise X: tps 0: …").
func deskField(ae *api.APIError, fields []string) string {
	if ae.Field != "" && slices.Contains(fields, ae.Field) {
		return ae.Field // the API names it (policy.FieldError)
	}
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
		{"long_replies", "long_replies"}, {"group code", "code"}, {"ext_len", "ext_len"}, {"extension", "extension"}, {"service number", "service_number"},
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

// deskMessages are the Chinese of the admin API's validation messages
// that come without their own (a policy.FieldError has it, in
// detail_zh), shown before the API's English.
var deskMessages = []struct{ en, zh string }{
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
	if ae.Reason == "invalid" && ae.DetailZH != "" {
		msg = ae.DetailZH // the field's rule in Chinese (policy.FieldError)
	}
	for _, t := range deskMessages {
		if ae.Reason == "invalid" && strings.Contains(ae.Message, t.en) {
			msg = t.zh + "（" + ae.Message + "）"
			break
		}
	}
	if l := fieldLabel[f]; l != "" && !strings.HasPrefix(msg, l) {
		msg = l + "：" + msg // unless the Chinese names it already
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
	Test     *api.ReceiptWebhookTest // a test receipt just sent
}

func (s *Server) opsEnterpriseNewPage(q *req) {
	p := q.view(nil)
	// Only a manager of every enterprise may create one (the API refuses
	// the others): one who types the address is told so, not given an
	// empty page or a form that fails.
	switch {
	case p.OpsReadOnly:
		p.Errors[""] = fmt.Sprintf("无权执行此操作：客户经理%s为只读账号，只能查看，不能新建企业。", p.OpsName)
	case p.OpsScope != nil:
		p.Errors[""] = "无权执行此操作：您只负责部分企业，新建企业请由负责全部企业的客户经理办理。"
	}
	if p.Errors[""] != "" {
		q.render(http.StatusForbidden, "error", p)
		return
	}
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

// opsReceiptTest sends the enterprise's test receipt to its endpoint and
// shows the answer on its page.
func (s *Server) opsReceiptTest(q *req) {
	ec := q.r.PathValue("code")
	p := q.view(nil)
	var out api.ReceiptWebhookTest
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(ec)+"/receipt-test", api.ReceiptWebhookTestIn{}, &out); err != nil {
		code, ok := q.formError(p, err)
		if !ok {
			return
		}
		s.opsEnterpriseAgain(q, p, code, true)
		return
	}
	s.opsEnterpriseShow(q, p, http.StatusOK, true, &out)
}

// opsReceiptRetry makes the enterprise's receipts (with kind "reply" in
// the form, its replies) that wait for a retry due now (its endpoint is
// mended).
func (s *Server) opsReceiptRetry(q *req) {
	ec := q.r.PathValue("code")
	var out api.ReceiptWebhookRetry
	in := api.ReceiptWebhookRetryIn{Kind: q.r.PostFormValue("kind")}
	if err := s.opsCall(q.r, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(ec)+"/receipt-retry", in, &out); err != nil {
		p := q.view(nil)
		code, ok := q.formError(p, err)
		if !ok {
			return
		}
		s.opsEnterpriseAgain(q, p, code, true)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), retryNotice(out))
}

// opsEnterpriseAgain renders an enterprise's page; fill puts its values
// in the edit form (not after a refused edit: the operator's are kept).
func (s *Server) opsEnterpriseAgain(q *req, p *page, code int, fill bool) {
	s.opsEnterpriseShow(q, p, code, fill, nil)
}

// opsEnterpriseShow is opsEnterpriseAgain with a test receipt's outcome.
func (s *Server) opsEnterpriseShow(q *req, p *page, code int, fill bool, test *api.ReceiptWebhookTest) {
	ec := q.r.PathValue("code")
	d := &opsEntFormData{Detail: &api.EnterpriseDetail{}, Test: test}
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

// opsEnterpriseDropHeld is 放弃暂停发送的短信 of a disabled enterprise
// (POST …/held/drop), once its box is ticked: they will never go.
func (s *Server) opsEnterpriseDropHeld(q *req) {
	ec := q.r.PathValue("code")
	to := "/ops/enterprises/" + url.PathEscape(ec)
	if q.r.PostFormValue("confirm") != "yes" {
		q.redirect(to, "未放弃：请先勾选确认。")
		return
	}
	if !s.entCall(q, http.MethodPost, "/admin/v1/enterprises/"+pathSeg(ec)+"/held/drop", nil) {
		return
	}
	q.redirect(to, "已放弃企业 "+ec+" 暂停发送的短信：一分钟内它们都将标记为发送失败（account_disabled），不会发出，也不收费。")
}

// entCall makes the admin call of a form on an enterprise's page; on an
// error it shows the page again saying it, and returns false.
func (s *Server) entCall(q *req, method, path string, in any) bool {
	if err := s.opsCall(q.r, method, path, in, nil); err != nil {
		p := q.view(nil)
		if code, ok := q.deskErr(p, err); ok {
			s.opsEnterpriseAgain(q, p, code, true)
		}
		return false
	}
	return true
}

// opsEnterpriseState is 停用 / 启用 (PATCH disabled).
func (s *Server) opsEnterpriseState(q *req) {
	ec := q.r.PathValue("code")
	dis := q.r.PostFormValue("disabled") == "true"
	if !s.entCall(q, http.MethodPatch, "/admin/v1/enterprises/"+pathSeg(ec), api.EnterprisePatch{Disabled: &dis}) {
		return
	}
	msg := "已启用企业 " + ec + "：暂停发送的短信继续发出。"
	if dis {
		msg = "已停用企业 " + ec + "：其用户不能再发送短信，已接收、尚未发出的短信暂停发送。"
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), msg)
}

var userFields = []string{"system_id", "password", "name", "mobile", "role", "extension", "long_replies"}

func (s *Server) opsUserCreate(q *req) {
	ec := q.r.PathValue("code")
	f := q.r.PostForm
	p := q.view(nil)
	in := api.NewUser{
		SystemID: strings.TrimSpace(f.Get("system_id")), Password: f.Get("password"),
		Name: strings.TrimSpace(f.Get("name")), Mobile: strings.TrimSpace(f.Get("mobile")),
		Role: f.Get("role"), Extension: strings.TrimSpace(f.Get("extension")), ShowSignature: f.Get("show_signature") != "",
		LongReplies: f.Get("long_replies"),
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
	ec, sid, ok := s.opsUserOf(q)
	if !ok {
		return
	}
	err := s.opsCall(q.r, http.MethodPut, "/admin/v1/users/"+pathSeg(sid)+"/password", api.PasswordSet{Password: q.r.PostFormValue("password")}, nil)
	if err != nil {
		s.opsUserRowErr(q, err, "password", "pw:"+sid)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), "已为用户 "+sid+" 设置新密码。")
}

// opsUserUpdate changes a user's 长短信回复 (PATCH long_replies), from its
// row of the enterprise's users.
func (s *Server) opsUserUpdate(q *req) {
	ec, sid, ok := s.opsUserOf(q)
	if !ok {
		return
	}
	lr := q.r.PostFormValue("long_replies")
	var u api.User
	err := s.opsCall(q.r, http.MethodPatch, "/admin/v1/users/"+pathSeg(sid), api.UserPatch{LongReplies: &lr}, &u)
	if err != nil {
		s.opsUserRowErr(q, err, "long_replies", "lr:"+sid)
		return
	}
	q.redirect("/ops/enterprises/"+url.PathEscape(ec), longRepliesDone(sid, u.LongReplies))
}

// opsUserOf is the enterprise and user of a user row's form: false (the
// page answered: not found, or the API's error) unless the user is of
// that enterprise.
func (s *Server) opsUserOf(q *req) (ec, sid string, ok bool) {
	ec, sid = q.r.PathValue("code"), q.r.PathValue("sid")
	var u api.User
	if err := s.opsCall(q.r, http.MethodGet, "/admin/v1/users/"+pathSeg(sid), nil, &u); err != nil || u.Enterprise != ec {
		if err == nil {
			q.notFound()
			return "", "", false
		}
		q.fail(err)
		return "", "", false
	}
	return ec, sid, true
}

// opsUserRowErr shows the enterprise's page again with err, about field,
// next to the user's row (key: "pw:" or "lr:" and its system_id).
func (s *Server) opsUserRowErr(q *req, err error, field, key string) {
	p := q.view(nil)
	code, ok := q.deskErr(p, err, field)
	if !ok {
		return
	}
	p.Errors[key] = p.Errors[field]
	delete(p.Errors, field)
	s.opsEnterpriseAgain(q, p, code, true)
}

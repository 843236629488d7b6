package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// 忘记密码 and 修改密码 (FAQ 2), and 企业管理 (用户管理, 短信签名; FAQ 7).
// Every rule is the API's: who may reset, how a password looks, who is an
// admin, the throttles. The console only checks that the new password was
// typed the same twice.

var accountPublicRoutes = []route{
	{"GET /password/forgot", (*Server).forgotPage},
	{"POST /password/forgot", (*Server).forgot},
}

var accountRoutes = []route{
	{"GET /password", (*Server).passwordPage},
	{"POST /password", (*Server).changePassword},
	{"GET /enterprise/users", (*Server).usersPage},
	{"POST /enterprise/users", (*Server).addUser},
	{"POST /enterprise/users/{sid}/update", (*Server).updateUser},
	{"POST /enterprise/users/{sid}/password-reset", (*Server).resetUserPassword},
	{"GET /enterprise/signature", (*Server).signaturePage},
	{"POST /enterprise/signature", (*Server).requestSignature},
}

// forgotNotice is the one answer of a reset, whether or not the details
// matched (the API answers the same either way).
const forgotNotice = "如果您填写的集团编码、用户名和注册手机正确，新密码将以短信发送到注册手机，请注意查收，并在登录后尽快修改密码。"

// adminOnly is the API's forbidden on the 企业管理 pages.
const adminOnly = "无权执行此操作：企业管理仅限企业管理员使用，请联系本企业的管理员。"

// accountErrZH is the Chinese of a refusal on these pages: the password
// rules and the throttles get their own words, the rest zhError's.
func accountErrZH(err error) string {
	var ae *api.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Reason == "invalid_password", ae.Reason == "wrong_password":
			return reasonText[ae.Reason]
		case ae.Status == http.StatusTooManyRequests:
			return reasonText["too_many_requests"]
		case ae.Reason == "notifier_unavailable":
			return reasonText["notifier_unavailable"]
		case ae.Reason == "forbidden":
			return adminOnly
		}
	}
	return zhError(err)
}

// fieldErr puts err next to its field like formError, in accountErrZH's words.
func (q *req) fieldErr(p *page, err error, fields ...string) (int, bool) {
	code, ok := q.formError(p, err, fields...)
	if !ok {
		return 0, false
	}
	var ae *api.APIError
	if errors.As(err, &ae) {
		delete(p.Errors, fieldOf(ae, fields))
		f := accountField(ae, fields)
		p.Errors[f] = accountErrZH(err)
		if f == "password" && ae.Reason == "invalid" && ae.DetailZH == "" {
			// policy.ValidPassword's rule, the one invalid_password states.
			p.Errors[f] = reasonText["invalid"] + "：" + reasonText["invalid_password"]
		}
	}
	return code, true
}

// accountField is the field a policy message names: fieldOf's, or a
// field named anywhere in it ("user name …", "system_id \"a b\": …").
func accountField(ae *api.APIError, fields []string) string {
	if f := fieldOf(ae, fields); f != "" {
		return f
	}
	msg := strings.ToLower(ae.Message)
	for _, f := range fields {
		name := f
		if f == "name" {
			name = "user name"
		}
		if strings.Contains(msg, " "+name+" ") || strings.Contains(msg, " "+name+":") {
			return f
		}
	}
	return ""
}

// adminFail is fail for the 企业管理 pages: the API's 403 (not an
// enterprise admin) is an error page in plain Chinese.
func (q *req) adminFail(err error) {
	if isStatus(err, http.StatusForbidden) {
		p := q.view(nil)
		p.Errors[""] = accountErrZH(err)
		q.render(http.StatusForbidden, "error", p)
		return
	}
	q.fail(err)
}

// --- 忘记密码 ---

func (s *Server) forgotPage(q *req) {
	q.render(http.StatusOK, "password_forgot", q.view(nil))
}

func (s *Server) forgot(q *req) {
	p := q.view(nil)
	in := api.PasswordReset{
		GroupCode: strings.TrimSpace(q.r.PostFormValue("group_code")),
		UserName:  strings.TrimSpace(q.r.PostFormValue("user_name")),
		Mobile:    strings.TrimSpace(q.r.PostFormValue("mobile")),
	}
	p.Form.Set("group_code", in.GroupCode)
	p.Form.Set("user_name", in.UserName)
	p.Form.Set("mobile", in.Mobile)
	err := s.client(q.r, "").DoContext(q.r.Context(), http.MethodPost, "/v1/password-reset", in, nil)
	if err != nil {
		code, ok := q.fieldErr(p, err, "group_code", "user_name", "mobile")
		if !ok {
			return
		}
		q.render(code, "password_forgot", p)
		return
	}
	q.redirect("/login", forgotNotice)
}

// --- 修改密码 ---

func (s *Server) passwordPage(q *req) {
	q.render(http.StatusOK, "password", q.view(nil))
}

func (s *Server) changePassword(q *req) {
	p := q.view(nil)
	np := q.r.PostFormValue("new_password")
	if np != q.r.PostFormValue("new_password2") {
		// A typing check, not a rule: the API sees one new password.
		p.Errors["new_password2"] = "两次输入的新密码不一致，请重新输入。"
		q.render(http.StatusUnprocessableEntity, "password", p)
		return
	}
	err := s.call(q.r, http.MethodPut, "/v1/me/password",
		api.PasswordChange{OldPassword: q.r.PostFormValue("old_password"), NewPassword: np}, nil)
	if err != nil {
		code, ok := q.fieldErr(p, err, "old_password", "new_password")
		if !ok {
			return
		}
		q.render(code, "password", p)
		return
	}
	q.redirect("/password", "密码已修改。下次登录请使用新密码；您在其他浏览器的登录已退出。")
}

// --- 用户管理 ---

// usersData is the 用户管理 page.
type usersData struct {
	Users []api.User
	Reset *api.UserPasswordReset // a password just reset, shown this once
}

func (s *Server) users(q *req) ([]api.User, error) {
	var out api.UserList
	err := s.call(q.r, http.MethodGet, "/v1/users", nil, &out)
	return out.Users, err
}

func (s *Server) usersPage(q *req) {
	us, err := s.users(q)
	if err != nil {
		q.adminFail(err)
		return
	}
	q.render(http.StatusOK, "users", q.view(&usersData{Users: us}))
}

// usersAgain re-renders 用户管理 after a refused action, with p's errors.
func (s *Server) usersAgain(q *req, p *page, code int) {
	us, err := s.users(q)
	if err != nil {
		q.adminFail(err)
		return
	}
	d, _ := p.D.(*usersData)
	if d == nil {
		d = &usersData{}
	}
	d.Users = us
	p.D = d
	q.render(code, "users", p)
}

func (s *Server) addUser(q *req) {
	p := q.view(&usersData{})
	f := q.r.PostForm
	in := api.NewUser{
		Name:          strings.TrimSpace(f.Get("name")),
		SystemID:      strings.TrimSpace(f.Get("system_id")),
		Password:      f.Get("password"),
		Mobile:        strings.TrimSpace(f.Get("mobile")),
		Role:          f.Get("role"),
		ShowSignature: f.Get("show_signature") != "",
		LongReplies:   f.Get("long_replies"),
	}
	for _, k := range []string{"name", "system_id", "mobile", "role", "show_signature", "long_replies"} {
		p.Form.Set(k, strings.TrimSpace(f.Get(k)))
	}
	var u api.User
	if err := s.call(q.r, http.MethodPost, "/v1/users", in, &u); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		code, ok := q.fieldErr(p, err, "system_id", "password", "name", "mobile", "role", "long_replies")
		if !ok {
			return
		}
		s.usersAgain(q, p, code)
		return
	}
	q.redirect("/enterprise/users", "已添加用户 "+u.Name+"（"+u.SystemID+"）。")
}

// updateUser is one switch of a user: enabled/disabled, the user
// signature shown or not, or its 长短信回复 (PATCH /v1/users/{system_id}).
func (s *Server) updateUser(q *req) {
	sid := q.r.PathValue("sid")
	var in api.UserPatch
	var done string
	if v := q.r.PostFormValue("disabled"); v != "" {
		b := v == "true"
		in.Disabled = &b
		done = map[bool]string{true: "已停用用户 ", false: "已启用用户 "}[b] + sid + "。"
	}
	if v := q.r.PostFormValue("show_signature"); v != "" {
		b := v == "true"
		in.ShowSignature = &b
		done = "用户 " + sid + " 的用户签名已设为" + map[bool]string{true: "显示", false: "不显示"}[b] + "。"
	}
	if v := q.r.PostFormValue("long_replies"); v != "" {
		in.LongReplies = &v
	}
	back := "/enterprise/users"
	if q.r.PostFormValue("back") == "/enterprise/signature" {
		back = "/enterprise/signature"
	}
	var u api.User
	if err := s.call(q.r, http.MethodPatch, "/v1/users/"+pathSeg(sid), in, &u); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		p := q.view(&usersData{})
		code, ok := q.fieldErr(p, err)
		if !ok {
			return
		}
		msg := p.Errors[""]
		delete(p.Errors, "")
		p.Errors["user:"+sid] = msg
		if back == "/enterprise/signature" {
			s.signatureAgain(q, p, code)
			return
		}
		s.usersAgain(q, p, code)
		return
	}
	if in.LongReplies != nil {
		done = longRepliesDone(sid, u.LongReplies)
	}
	q.redirect(back, done)
}

// longRepliesZH is a user's long_replies as the 长短信回复 select words it.
func longRepliesZH(v string) string {
	switch v {
	case "", "payload":
		return "整条 (message_payload)"
	case "udh8":
		return "分段 UDH 8位"
	case "udh16":
		return "分段 UDH 16位"
	case "sar":
		return "分段 SAR"
	}
	return v
}

// longRepliesDone is the notice of a user's 长短信回复 changed to v: the
// gateway reads it when the user binds.
func longRepliesDone(sid, v string) string {
	return "用户 " + sid + " 的长短信回复已设为" + longRepliesZH(v) + "，下一条回复即生效。"
}

// resetUserPassword sets a new password for a user of the enterprise; it
// is shown on this answer only (never put in a cookie or a redirect).
func (s *Server) resetUserPassword(q *req) {
	sid := q.r.PathValue("sid")
	var out api.UserPasswordReset
	if err := s.call(q.r, http.MethodPost, "/v1/users/"+pathSeg(sid)+"/password-reset", nil, &out); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		p := q.view(&usersData{})
		code, ok := q.fieldErr(p, err)
		if !ok {
			return
		}
		p.Errors["user:"+sid] = p.Errors[""]
		delete(p.Errors, "")
		s.usersAgain(q, p, code)
		return
	}
	p := q.view(&usersData{Reset: &out})
	s.usersAgain(q, p, http.StatusOK)
}

// --- 短信签名 ---

// signatureData is the 短信签名 page.
type signatureData struct {
	State    api.SignatureState
	Requests []policy.SignatureRequest
	Users    []api.User // the user-signature switches (admins only)
}

func (s *Server) signatureData(q *req) (*signatureData, error) {
	d := &signatureData{}
	if err := s.call(q.r, http.MethodGet, "/v1/signature", nil, &d.State); err != nil {
		return nil, err
	}
	var l api.SignatureRequestList
	if err := s.call(q.r, http.MethodGet, "/v1/signature/requests", nil, &l); err != nil {
		return nil, err
	}
	d.Requests = l.Requests
	us, err := s.users(q)
	if err != nil {
		return nil, err
	}
	d.Users = us
	return d, nil
}

func (s *Server) signaturePage(q *req) {
	d, err := s.signatureData(q)
	if err != nil {
		q.adminFail(err)
		return
	}
	q.render(http.StatusOK, "signature", q.view(d))
}

// signatureAgain re-renders 短信签名 after a refused action.
func (s *Server) signatureAgain(q *req, p *page, code int) {
	d, err := s.signatureData(q)
	if err != nil {
		q.adminFail(err)
		return
	}
	p.D = d
	q.render(code, "signature", p)
}

func (s *Server) requestSignature(q *req) {
	p := q.view(nil)
	sig := strings.TrimSpace(q.r.PostFormValue("signature"))
	p.Form.Set("signature", sig)
	if err := s.call(q.r, http.MethodPost, "/v1/signature/requests", api.SignatureRequestIn{Signature: sig}, nil); err != nil {
		if isStatus(err, http.StatusForbidden) {
			q.adminFail(err)
			return
		}
		code, ok := q.fieldErr(p, err, "signature")
		if !ok {
			return
		}
		s.signatureAgain(q, p, code)
		return
	}
	q.redirect("/enterprise/signature", "已提交企业签名修改申请，客户经理审批通过后生效。")
}

package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/reminder"
)

// Pages are html/template files in templates/: layout.html is the frame
// (menus, notices), parts.html the pieces every page may use (a field's
// error, a pager), and each other file is one page that defines "title"
// and "content" (and, for htmx, any fragment it answers alone). To change
// a page, edit its one file; the daemon embeds them at build time.

// pageTemplate is one page parsed with the layout and the parts.
type pageTemplate struct{ t *template.Template }

func parseTemplates() (map[string]*pageTemplate, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	base := template.New("").Funcs(funcs)
	for _, shared := range []string{"templates/layout.html", "templates/parts.html"} {
		if _, err := base.ParseFS(templateFS, shared); err != nil {
			return nil, fmt.Errorf("console: %s: %w", shared, err)
		}
	}
	pages := map[string]*pageTemplate{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: %s: %w", n, err)
		}
		pages[name] = &pageTemplate{t: t}
	}
	return pages, nil
}

// page is what every template gets: who is logged in, the CSRF token of
// its forms, the notice to show, the form's values and errors (after a
// refused POST) and the page's own data D.
type page struct {
	Me      *api.Me
	Ops     bool
	OpsName string // the account manager the desk's session acts as
	// OpsScope is the group codes that manager serves (nil: every
	// enterprise): the desk leaves out what is not its to do.
	OpsScope []string
	// OpsReadOnly: that manager may look and not change; the desk shows
	// no form that changes anything.
	OpsReadOnly bool
	CSRF        string
	Path        string
	Flash       string
	Errors      map[string]string // field → Chinese message ("" key: the whole form)
	Form        url.Values
	D           any
}

// view is a page being prepared: handlers fill D, Errors and Form.
func (q *req) view(d any) *page {
	p := &page{Me: q.me, Ops: q.ops, CSRF: q.csrf, Path: q.r.URL.Path, D: d, Form: url.Values{}, Errors: map[string]string{}}
	if q.ops {
		who := q.opsWho()
		if who.Name != api.OperatorName { // the admin token's own is no one's name
			p.OpsName = who.Name
		}
		p.OpsScope, p.OpsReadOnly = who.Enterprises, who.ReadOnly
	}
	return p
}

// render writes a whole page (the layout around the page's "content").
func (q *req) render(code int, name string, p *page) {
	if p.Flash == "" {
		p.Flash = takeFlash(q.w, q.r)
	}
	q.execute(code, name, "layout", p)
}

// fragment writes one named template of a page alone (an htmx swap).
func (q *req) fragment(name, block string, p *page) {
	q.execute(http.StatusOK, name, block, p)
}

func (q *req) execute(code int, name, block string, p *page) {
	pt, ok := q.s.pages[name]
	if !ok {
		q.s.log.Error("console: no such page template", "page", name)
		http.Error(q.w, "page template missing: "+name, http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := pt.t.ExecuteTemplate(&buf, block, p); err != nil {
		q.s.log.Error("console: rendering", "page", name, "err", err)
		http.Error(q.w, "rendering failed", http.StatusInternalServerError)
		return
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.WriteHeader(code)
	_, _ = q.w.Write(buf.Bytes())
}

// redirect ends a successful POST: the browser goes to "to" (303) and
// shows the notice there. htmx requests get HX-Redirect.
func (q *req) redirect(to, notice string) {
	if notice != "" {
		setFlash(q.w, q.r, notice)
	}
	if q.r.Header.Get("HX-Request") != "" {
		q.w.Header().Set("HX-Redirect", to)
		q.w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
}

// fail answers an error of an API call that the page cannot show next to
// a field: an ended session goes to the login page, "not found" (also
// another enterprise's object) is the 404 page, anything else the error
// page with the reason in Chinese.
func (q *req) fail(err error) {
	var ae *api.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized:
			if q.ops {
				setCookie(q.w, q.r, opsCookie, "", "/ops/", -1)
				q.s.toLogin(q.w, q.r, "/ops/login", idleNotice)
			} else {
				setCookie(q.w, q.r, sessionCookie, "", "/", -1)
				q.s.toLogin(q.w, q.r, "/login", idleNotice)
			}
			return
		case http.StatusNotFound:
			q.notFound()
			return
		}
	} else {
		q.s.log.Error("console: API call", "path", q.r.URL.Path, "err", err)
	}
	p := q.view(nil)
	p.Errors[""] = zhError(err)
	q.render(statusOf(err), "error", p)
}

// notFound is the page of an unknown id: the same for another
// enterprise's object, as the API answers.
func (q *req) notFound() {
	p := q.view(nil)
	p.Errors[""] = "未找到：记录不存在，或不属于您的企业。"
	q.render(http.StatusNotFound, "error", p)
}

// forbidden answers a POST without a valid CSRF token.
func (q *req) forbidden() {
	p := q.view(nil)
	p.Errors[""] = "页面已过期或请求来源无效，请返回刷新页面后重试。"
	q.render(http.StatusForbidden, "error", p)
}

// statusOf is the HTTP status an API error is shown with.
func statusOf(err error) int {
	var ae *api.APIError
	if errors.As(err, &ae) && ae.Status >= 400 {
		return ae.Status
	}
	return http.StatusInternalServerError
}

// formError puts err next to the field it concerns: fields lists the form's
// fields in the order the API names them in its messages; an error naming
// none of them is the form's (key ""). It returns the HTTP status to
// answer with. Errors that are not about the input (session ended, not
// found) are left to fail: ok is false and the answer is written.
func (q *req) formError(p *page, err error, fields ...string) (status int, ok bool) {
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status == http.StatusUnauthorized || ae.Status == http.StatusNotFound && ae.Reason == "not_found" && len(fields) == 0 {
		q.fail(err)
		return 0, false
	}
	p.Errors[fieldOf(ae, fields)] = zhError(err)
	return statusOf(err), true
}

// fieldOf is the form field an API error names: its field, else the
// first one its message names ("to: …", "password …", "send_at: …"), or
// "".
func fieldOf(ae *api.APIError, fields []string) string {
	if ae.Field != "" && slices.Contains(fields, ae.Field) {
		return ae.Field // the API names it (policy.FieldError)
	}
	msg := strings.ToLower(ae.Message)
	for _, f := range fields {
		if strings.HasPrefix(msg, f+":") || strings.HasPrefix(msg, f+" ") || strings.Contains(msg, " "+f+":") {
			return f
		}
	}
	if len(fields) == 1 {
		return fields[0]
	}
	return ""
}

// funcs are the helpers templates may use.
var funcs = template.FuncMap{
	"dt":        func(t time.Time) string { return fmtTime(t, "2006-01-02 15:04") },
	"dts":       func(t time.Time) string { return fmtTime(t, "2006-01-02 15:04:05") },
	"date":      func(t time.Time) string { return fmtTime(t, "2006-01-02") },
	"hasPrefix": strings.HasPrefix,
	// mobile is a Chinese mobile number as people write it: an E.164
	// number (the opt-out lists') without its +86.
	"mobile":     func(e164 string) string { return strings.TrimPrefix(e164, "+86") },
	"stateClass": stateClass,
	"reasonZH":   reasonZH,
	"actorZH":    actorZH,
	// refusalDetail: what follows a refusal's Chinese reason (zh.go).
	"refusalDetail": refusalDetail,
	"yuan":          yuan,
	"add":           func(a, b int) int { return a + b },
	"nodeList":      nodeList,
	// once is a fresh value for a send form's once parameter (callOnce):
	// every rendering of the form its own.
	"once":    newOnce,
	"mib":     func(bytes float64) float64 { return bytes / (1 << 20) },
	"deref":   func(p *float64) float64 { return *p }, // under a with that checked it
	"percent": percent,
	// configPartZH names a part of the configuration the cluster's
	// nodes compare (api.ClusterStatus.ConfigDiffers).
	"configPartZH": func(part string) string {
		switch part {
		case "account_managers":
			return "客户经理"
		case "admin_token":
			return "管理员令牌"
		case "home_province":
			return "本省"
		case "packages":
			return "套餐表"
		}
		return part
	},
	// clip is s cut to its first n bytes and "…" (for ASCII, as hex).
	"clip": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"seq": func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		return s
	},
}

// percent is part of whole as a whole percentage ("37%"), "—" of nothing,
// at most 100% (the load's two counts are read a moment apart).
func percent(part, whole uint64) string {
	if whole == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(min(part, whole))/float64(whole))
}

// fmtTime shows t in Asia/Shanghai, the portal's zone ("" for zero).
func fmtTime(t time.Time, layout string) string {
	if t.IsZero() {
		return ""
	}
	return t.In(reminder.Shanghai).Format(layout)
}

// yuan formats an amount in fen as yuan with two decimals.
func yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/api"
	"github.com/qxtd/qxtd/policy"
)

// The desk's 账单 (bills per month, CSV) and 回执导出 (the DLR export,
// streamed from the API).

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
			yuan(l.OverageRateFen), l.OverageYuan, l.TotalYuan, strconv.FormatInt(l.Pending, 10), billNote(l)})
	}
	w.Flush()
}

// billNote is a line's 备注: its error, and in a cluster the nodes whose
// usage it lacks (the amounts are then too low: not to be billed).
func billNote(l api.BillLine) string {
	note := l.Error
	if l.Partial {
		if note != "" {
			note += "；"
		}
		note += fmt.Sprintf("不完整：节点 %v 的用量缺失（节点停机或无应答），金额偏低，请待其恢复后重新导出", l.MissingNodes)
	}
	return note
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
	ae := cw.refusal()
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

// opsExportOptOuts streams the opt-out lists (one enterprise's, or every
// enterprise's) as GET /admin/v1/optouts writes them in CSV: for a
// carrier's or a regulator's request, or a complaint's follow-up. A
// refusal (an unknown enterprise) is shown on the export form.
func (s *Server) opsExportOptOuts(q *req) {
	v := url.Values{"format": {"csv"}}
	ent := strings.TrimSpace(q.r.URL.Query().Get("enterprise"))
	if ent != "" {
		v.Set("enterprise", ent)
	}
	// A BOM first: Excel then reads the names in the by column as UTF-8.
	cw := &catchError{w: q.w, prefix: []byte("\uFEFF")}
	s.proxy(cw, q.r, q.token, "/admin/v1/optouts", v)
	if cw.code < 400 {
		return
	}
	ae := cw.refusal()
	if ae.Status == http.StatusUnauthorized {
		q.fail(ae)
		return
	}
	p := q.view(nil)
	p.Form.Set("optouts_enterprise", ent)
	p.Errors["optouts_enterprise"] = zhError(ae)
	s.opsExportAgain(q, p, ae.Status)
}

// catchError passes a download through as it comes, unless the API
// refuses it (a 4xx or 5xx status before any row): that answer, a small
// JSON error, is kept for the console to show on its form instead.
type catchError struct {
	w     http.ResponseWriter
	code  int
	wrote bool
	buf   bytes.Buffer
	// prefix goes before a download passed through (a BOM, for Excel).
	prefix []byte
}

func (c *catchError) Header() http.Header { return c.w.Header() }

// refusal is the API's refusal kept (code 400 or more): its status, and
// the reason and message of its JSON error.
func (c *catchError) refusal() *api.APIError {
	ae := &api.APIError{Status: c.code}
	var body struct {
		Error struct{ Reason, Message string } `json:"error"`
	}
	if json.Unmarshal(c.buf.Bytes(), &body) == nil {
		ae.Reason, ae.Message = body.Error.Reason, body.Error.Message
	}
	return ae
}

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
	if len(c.prefix) > 0 {
		c.w.Header().Del("Content-Length")
		c.w.WriteHeader(code)
		_, _ = c.w.Write(c.prefix)
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

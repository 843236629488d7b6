package api

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
)

// GET /v1/messages/export, /v1/scheduled/export and /v1/inbox/export: the
// outbox (发送记录), the scheduled outbox (定时发件箱) and the inbox (收件箱,
// the replies) as a file, with the filters of their lists, for whoever
// keeps its own records or opens them in Excel. A list is read a page at a time (MaxListLimit
// entries) and written as it is read, so memory holds one page whatever
// the range; in a cluster the pages merge every node's, as the lists do.
// An export takes a slot: at most MaxExportsPerEnterprise of one
// enterprise and MaxExports of all at once (429 beyond), since each holds
// a store read and a connection for as long as the client reads.
//
// A file is whole or fails: a node that cannot be asked before the first
// row is a 503 (the file would miss its entries), and a failure after it
// cuts the connection (no terminating chunk, no ExportRowsTrailer), as
// the DLR export does, rather than end a file that looks complete.
const (
	MaxExportsPerEnterprise = 2
	MaxExports              = 8
)

// MaxExportTime bounds an export: its slot is held while the client
// reads, and the write deadline moves at every write, so a client that
// reads a little now and then could hold it for ever. A million messages
// take some seconds (50,000 in 0.1 s, measured); past the bound the file
// is cut as on a failure.
const MaxExportTime = 30 * time.Minute

// ExportRowsTrailer is the trailer of a complete export: its rows.
const ExportRowsTrailer = "Qxtd-Rows"

// exportSlots counts the exports running, in all and per enterprise.
type exportSlots struct {
	mu  sync.Mutex
	all int
	per map[string]int
}

// take is an export's slot for the enterprise, or the refusal's message.
func (e *exportSlots) take(ent string) (release func(), refused string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.per[ent] >= MaxExportsPerEnterprise:
		return nil, fmt.Sprintf("%d exports of the enterprise are running (at most %d): wait for one to finish", e.per[ent], MaxExportsPerEnterprise)
	case e.all >= MaxExports:
		return nil, fmt.Sprintf("%d exports are running (at most %d): retry shortly", e.all, MaxExports)
	}
	if e.per == nil {
		e.per = map[string]int{}
	}
	e.per[ent]++
	e.all++
	return sync.OnceFunc(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.all--
		if e.per[ent]--; e.per[ent] <= 0 {
			delete(e.per, ent)
		}
	}), ""
}

// exportColumn is a column of a CSV export: its header in English and
// (lang=zh) in Chinese, as the console names it, and its cell of a row.
type exportColumn[T any] struct {
	en, zh string
	cell   func(row *T, zh bool) string
}

// messageColumns are the columns of the outbox's export.
var messageColumns = []exportColumn[Message]{
	{"id", "消息ID", func(m *Message, _ bool) string { return m.ID }},
	{"account", "账号", func(m *Message, _ bool) string { return m.Account }},
	{"to", "接收号码", func(m *Message, _ bool) string { return m.To }},
	{"source", "发送号码", func(m *Message, _ bool) string { return m.Source }},
	{"text", "内容", func(m *Message, _ bool) string { return m.Text }},
	{"state", "状态", func(m *Message, zh bool) string {
		if zh {
			return m.StateZH
		}
		return m.State
	}},
	{"segments", "条数", func(m *Message, _ bool) string { return strconv.Itoa(m.Segments) }},
	{"error_code", "错误码", func(m *Message, _ bool) string { return m.ErrorCode }},
	{"accepted_at", "提交时间", func(m *Message, zh bool) string { return exportTime(m.AcceptedAt, zh) }},
	{"send_at", "定时发送时间", func(m *Message, zh bool) string { return exportTime(m.SendAt, zh) }},
	{"submitted_at", "发出时间", func(m *Message, zh bool) string { return exportTime(m.SubmittedAt, zh) }},
	{"done_at", "完成时间", func(m *Message, zh bool) string { return exportTime(m.DoneAt, zh) }},
	// Last, so that a reader of the columns before it reads them as
	// before: why a message waiting does not go (Message.Held).
	{"held", "暂停原因", func(m *Message, zh bool) string {
		if r, ok := policy.ParseReason(m.Held); ok && zh {
			return r.MessageZH()
		}
		return m.Held
	}},
}

// replyColumns are the columns of the inbox's export.
var replyColumns = []exportColumn[InboxItem]{
	{"id", "消息ID", func(m *InboxItem, _ bool) string { return m.ID }},
	{"from", "来自", func(m *InboxItem, _ bool) string { return m.From }},
	{"to", "发到", func(m *InboxItem, _ bool) string { return m.To }},
	{"extension", "扩展号", func(m *InboxItem, _ bool) string { return m.Extension }},
	{"account", "账号", func(m *InboxItem, _ bool) string { return m.Account }},
	{"text", "内容", func(m *InboxItem, _ bool) string { return m.Text }},
	{"received_at", "接收时间", func(m *InboxItem, zh bool) string { return exportTime(m.ReceivedAt, zh) }},
	{"forwarded", "已转发", func(m *InboxItem, zh bool) string { return yesNo(m.Forwarded, zh) }},
	// Last, so that a reader of the columns before it reads them as before.
	{"refused", "被拒收", func(m *InboxItem, zh bool) string { return yesNo(m.Refused, zh) }},
	{"parts_missing", "缺失段数", func(m *InboxItem, _ bool) string { return strconv.Itoa(m.PartsMissing) }},
	{"binary", "二进制内容", func(m *InboxItem, _ bool) string { return m.Binary }},
	{"data_coding", "编码", func(m *InboxItem, _ bool) string { return optInt(m.DataCoding) }},
	{"udh", "UDH", func(m *InboxItem, _ bool) string { return m.UDH }},
	{"source_port", "源端口", func(m *InboxItem, _ bool) string { return optInt(m.SourcePort) }},
	{"destination_port", "目的端口", func(m *InboxItem, _ bool) string { return optInt(m.DestinationPort) }},
	{"webhook", "推送状态", func(m *InboxItem, zh bool) string {
		if zh {
			return replyWebhookZH[m.Webhook]
		}
		return m.Webhook
	}},
	{"webhook_at", "推送时间", func(m *InboxItem, zh bool) string { return exportTime(m.WebhookAt, zh) }},
	{"optout", "退订", func(m *InboxItem, zh bool) string { return yesNo(m.OptOut, zh) }},
}

// replyWebhookZH is InboxItem.Webhook for people ("" for none).
var replyWebhookZH = map[string]string{ReplyWebhookPending: "待推送", ReplyWebhookDelivered: "已推送", ReplyWebhookGaveUp: "已放弃"}

// yesNo is a yes-or-no cell: true / false, or 是 / 否 for people (zh).
func yesNo(b, zh bool) string {
	switch {
	case !zh:
		return strconv.FormatBool(b)
	case b:
		return "是"
	}
	return "否"
}

// optInt is *v in decimal, "" for nil.
func optInt(v *int) string {
	if v == nil {
		return ""
	}
	return strconv.Itoa(*v)
}

// exportTime is a time of an export: RFC 3339 in UTC, or Beijing time for
// people (zh); "" for none.
func exportTime(t time.Time, zh bool) string {
	switch {
	case t.IsZero():
		return ""
	case zh:
		return t.In(reminder.Shanghai).Format(time.DateTime)
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) exportMessages(c *caller, w http.ResponseWriter, r *http.Request) {
	s.exportList(c, w, r, queue.ListFilter{Sent: true})
}

func (s *Server) exportScheduled(c *caller, w http.ResponseWriter, r *http.Request) {
	s.exportList(c, w, r, queue.ListFilter{Scheduled: true})
}

// exportList exports the outbox (f.Sent) or the scheduled outbox
// (f.Scheduled), the file named by the range of its list: the time the
// messages were written, or (scheduled) the time they go out.
func (s *Server) exportList(c *caller, w http.ResponseWriter, r *http.Request, f queue.ListFilter) {
	q := r.URL.Query()
	format, zh, ok := s.exportFormat(w, q)
	if !ok {
		return
	}
	ok, none := listFilter(c, w, q, &f)
	if !ok {
		return
	}
	next := func() ([]Message, bool, error) { return nil, false, nil } // another user's: none visible
	if !none {
		next = s.messagePages(r.Context(), f, q.Get("outcome"))
	}
	what, from, to := "outbox", f.From, f.To
	if f.Scheduled {
		what, from, to = "scheduled", f.SendFrom, f.SendTo
	}
	exportFile(s, w, r, exportSpec[Message]{what: what, ent: c.ent.Code, account: f.Account,
		name: exportName(what, c.ent.Code, from, to), format: format, zh: zh, columns: messageColumns, next: next})
}

func (s *Server) exportInbox(c *caller, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format, zh, ok := s.exportFormat(w, q)
	if !ok {
		return
	}
	f, ok := inboxFilter(c, w, q)
	if !ok {
		return
	}
	exportFile(s, w, r, exportSpec[InboxItem]{what: "inbox", ent: c.ent.Code, account: f.Account,
		name: exportName("inbox", c.ent.Code, f.From, f.To), format: format, zh: zh, columns: replyColumns,
		next: s.inboxPages(r.Context(), c.ent.Code, f)})
}

// exportFormat reads format= (csv, jsonl) and lang= (en, zh), or writes
// the 400 (a 503 without a store).
func (s *Server) exportFormat(w http.ResponseWriter, q url.Values) (format string, zh, ok bool) {
	if s.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return "", false, false
	}
	format = cmp.Or(q.Get("format"), queue.FormatCSV)
	if format != queue.FormatCSV && format != queue.FormatJSONL {
		writeInvalid(w, "format", "导出格式须为 csv 或 jsonl", fmt.Sprintf("format %q: want csv or jsonl", format))
		return "", false, false
	}
	switch q.Get("lang") {
	case "", "en":
	case "zh":
		zh = true
	default:
		writeInvalid(w, "lang", "语言须为 en（英文）或 zh（中文）", "lang: en or zh")
		return "", false, false
	}
	return format, zh, true
}

// exportName is the file's name (without its extension): the list, the
// enterprise and the Beijing dates of the range.
func exportName(list, ent string, from, to time.Time) string {
	name := list + "-" + ent
	if !from.IsZero() {
		name += "-from-" + from.In(reminder.Shanghai).Format("20060102")
	}
	if !to.IsZero() {
		name += "-to-" + to.In(reminder.Shanghai).Format("20060102")
	}
	return name
}

// exportSpec is one export: of what, for whom, as what, and its pages
// (next: the page, whether another follows, or an error; errExportPartial
// for a node of the cluster missing).
type exportSpec[T any] struct {
	what, ent, account, name string
	format                   string
	zh                       bool
	columns                  []exportColumn[T]
	next                     func() ([]T, bool, error)
}

// exportFile answers an export: its slot, its first page (a refusal or an
// error before any row is a JSON error), then the file, page by page, the
// write deadline moved at each, ExportRowsTrailer at the end, or the
// connection cut on a failure after the first row.
func exportFile[T any](s *Server, w http.ResponseWriter, r *http.Request, x exportSpec[T]) {
	release, refused := s.user.exports.take(x.ent)
	if release == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "too_many_requests", refused)
		return
	}
	defer release()
	first, more, err := x.next()
	switch {
	case errors.Is(err, errExportPartial):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	case err != nil:
		s.log.Error("export", "list", x.what, "enterprise", x.ent, "err", err)
		writeOutboxErr(w, err)
		return
	}

	h := w.Header()
	h.Set("Content-Type", map[string]string{queue.FormatCSV: "text/csv; charset=utf-8", queue.FormatJSONL: "application/x-ndjson"}[x.format])
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, x.name, x.format))
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", ExportRowsTrailer)
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	s.extendWrite(rc)
	bw := bufio.NewWriterSize(deadlineWriter{w: w, extend: func() { s.extendWrite(rc) }}, 64<<10)
	write, err := exportWriter(bw, x)
	var n int64
	start := time.Now()
	maxTime := cmp.Or(s.user.exportMaxTime, MaxExportTime)
	for page := first; err == nil; {
		for i := range page {
			if err = write(&page[i]); err != nil {
				break
			}
			n++
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			if err = rc.Flush(); errors.Is(err, http.ErrNotSupported) {
				err = nil
			}
		}
		if err != nil || !more {
			break
		}
		if time.Since(start) > maxTime {
			err = fmt.Errorf("longer than %v: a client reading this slowly holds the slot from the enterprise's other exports", maxTime)
			break
		}
		page, more, err = x.next()
	}
	if err != nil {
		s.log.Warn("export cut short", "list", x.what, "enterprise", x.ent, "rows", n, "err", err)
		panic(http.ErrAbortHandler) // no trailer, no terminating chunk: the client sees the file is incomplete
	}
	h.Set(ExportRowsTrailer, strconv.FormatInt(n, 10))
	s.log.Info("export", "list", x.what, "enterprise", x.ent, "account", x.account, "format", x.format, "rows", n,
		"elapsed", time.Since(start).Round(time.Millisecond).String())
}

// errExportPartial: a node of the cluster could not be asked for its
// entries, so the export would miss them.
var errExportPartial = errors.New("a node of the cluster could not be asked for its messages; the export would miss them: retry shortly")

// messagePages returns the outbox's pages of f one after another.
func (s *Server) messagePages(ctx context.Context, f queue.ListFilter, outcome string) func() ([]Message, bool, error) {
	limit := cmp.Or(s.user.exportPage, MaxListLimit)
	if s.cfg.PeerLists == nil {
		var after uint64
		return func() ([]Message, bool, error) {
			ms, next, err := s.cfg.Store.List(f, after, limit)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %w", gateway.ErrStore, err)
			}
			page := make([]Message, len(ms))
			for i, m := range ms {
				page[i] = messageOut(m, f.Now, false)
				s.markHeld(&page[i], m)
			}
			after = next
			return page, next != 0, nil
		}
	}
	return clusterPages(s, ctx, "after", nodeQuery(f, outcome, limit), func(e listEntry) Message { return *e.Msg })
}

// inboxPages returns the inbox's pages of f one after another.
func (s *Server) inboxPages(ctx context.Context, ent string, f queue.InboxFilter) func() ([]InboxItem, bool, error) {
	limit := cmp.Or(s.user.exportPage, MaxListLimit)
	if s.cfg.PeerLists == nil {
		var before uint64
		return func() ([]InboxItem, bool, error) {
			list, next, err := s.cfg.Store.Inbox(ent, f, before, limit)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %w", gateway.ErrStore, err)
			}
			page := make([]InboxItem, len(list))
			for i, m := range list {
				page[i] = inboxItem(m)
			}
			before = next
			return page, next != 0, nil
		}
	}
	return clusterPages(s, ctx, "before", inboxNodeQuery(ent, f, limit), func(e listEntry) InboxItem { return *e.Reply })
}

// clusterPages returns the merged pages of q one after another, with one
// set of streams for the whole export: each page goes on where the last
// one's cursor would have.
func clusterPages[T any](s *Server, ctx context.Context, param string, q NodeListQuery, entry func(listEntry) T) func() ([]T, bool, error) {
	var streams []*listStream
	var unknown bool
	return func() ([]T, bool, error) {
		if streams == nil {
			var ok bool
			if streams, unknown, ok = s.listStreams(ctx, nil, param, ""); !ok {
				return nil, false, errExportPartial // refused only for a cursor, which is not given
			}
		}
		taken, next, missing := s.clusterPage(ctx, q, streams, unknown)
		if missing.Partial {
			return nil, false, errExportPartial
		}
		page := make([]T, len(taken))
		for i, e := range taken {
			page[i] = entry(e)
		}
		return page, next != "", nil
	}
}

// exportWriter writes one row a call as x.format: CSV (its header row
// written first, so an empty export has it too) or JSON Lines. x.zh is
// for people and Excel: a UTF-8 BOM (without it Excel reads the Chinese
// as GBK), Chinese headers and cells, Beijing times, and cells that Excel
// would run as formulas quoted.
func exportWriter[T any](w *bufio.Writer, x exportSpec[T]) (func(*T) error, error) {
	if x.format == queue.FormatJSONL {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(row *T) error { return enc.Encode(row) }, nil
	}
	cw := csv.NewWriter(w)
	rec := make([]string, len(x.columns))
	for i, col := range x.columns {
		rec[i] = col.en
		if x.zh {
			rec[i] = col.zh
		}
	}
	if x.zh {
		w.WriteString("\uFEFF")
	}
	if err := cw.Write(rec); err != nil {
		return nil, err
	}
	return func(row *T) error {
		for i, col := range x.columns {
			rec[i] = col.cell(row, x.zh)
			if x.zh {
				rec[i] = spreadsheetSafe(rec[i])
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
		cw.Flush() // into w, which buffers: csv's own buffer would hide a write error till the end
		return cw.Error()
	}, nil
}

// spreadsheetSafe quotes a cell a spreadsheet would read as a formula
// (=, +, -, @, or a tab or CR first: OWASP's CSV injection) with a
// leading apostrophe, which Excel shows as text. A text message may start
// with any of them ("-10% 优惠", "=号码="), and its sender is not the only
// one who wrote it: a reply's text is the handset's.
func spreadsheetSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

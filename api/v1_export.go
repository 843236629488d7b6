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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/queue"
	"github.com/qxtd/qxtd/reminder"
)

// GET /v1/messages/export: the outbox (发送记录) as a file, with the
// filters of GET /v1/messages (account, state, outcome, from, to), for
// whoever keeps its own records or opens them in Excel. It is read a page
// at a time (MaxListLimit messages) and written as it is read, so memory
// holds one page whatever the range; in a cluster the pages merge every
// node's, as GET /v1/messages does. An export takes a slot: at most
// MaxExportsPerEnterprise of one enterprise and MaxExports of all at once
// (429 beyond), since each holds a store read and a connection for as
// long as the client reads.
//
// A file is whole or fails: a node that cannot be asked before the first
// row is a 503 (the file would miss its messages), and a failure after it
// cuts the connection (no terminating chunk, no ExportRowsTrailer), as
// the DLR export does, rather than end a file that looks complete.
const (
	MaxExportsPerEnterprise = 2
	MaxExports              = 8
)

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

// exportColumns are the columns of a CSV export: the field of Message and
// the header in English and (lang=zh) in Chinese, as the console's 发件箱
// names them.
var exportColumns = []struct{ en, zh string }{
	{"id", "消息ID"}, {"account", "账号"}, {"to", "接收号码"}, {"source", "发送号码"}, {"text", "内容"},
	{"state", "状态"}, {"segments", "条数"}, {"error_code", "错误码"}, {"accepted_at", "提交时间"},
	{"send_at", "定时发送时间"}, {"submitted_at", "发出时间"}, {"done_at", "完成时间"},
}

func (s *Server) exportMessages(c *caller, w http.ResponseWriter, r *http.Request) {
	if s.cfg.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "messages are not configured")
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = queue.FormatCSV
	}
	if format != queue.FormatCSV && format != queue.FormatJSONL {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("format %q: want csv or jsonl", format))
		return
	}
	zh := q.Get("lang") == "zh"
	if v := q.Get("lang"); v != "" && v != "zh" && v != "en" {
		writeError(w, http.StatusBadRequest, "invalid", "lang: en or zh")
		return
	}
	f := queue.ListFilter{Sent: true}
	ok, none := listFilter(c, w, q, &f)
	if !ok {
		return
	}
	release, refused := s.user.exports.take(c.ent.Code)
	if release == nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "too_many_requests", refused)
		return
	}
	defer release()

	next := func() ([]Message, bool, error) { return nil, false, nil } // another user's: none visible
	if !none {
		next = s.exportPages(r.Context(), f, q.Get("outcome"))
	}
	first, more, err := next()
	switch {
	case errors.Is(err, errExportPartial):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	case err != nil:
		s.log.Error("export messages", "enterprise", f.Enterprise, "err", err)
		writeOutboxErr(w, err)
		return
	}

	h := w.Header()
	ctype := map[string]string{queue.FormatCSV: "text/csv; charset=utf-8", queue.FormatJSONL: "application/x-ndjson"}[format]
	h.Set("Content-Type", ctype)
	name := "outbox-" + f.Enterprise
	if !f.From.IsZero() {
		name += "-from-" + f.From.In(reminder.Shanghai).Format("20060102")
	}
	if !f.To.IsZero() {
		name += "-to-" + f.To.In(reminder.Shanghai).Format("20060102")
	}
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, name, format))
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", ExportRowsTrailer)
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	s.extendWrite(rc)
	bw := bufio.NewWriterSize(deadlineWriter{w: w, extend: func() { s.extendWrite(rc) }}, 64<<10)
	write, err := exportWriter(bw, format, zh)
	var n int64
	start := time.Now()
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
		if page, more, err = next(); err != nil {
			break
		}
	}
	if err != nil {
		s.log.Warn("outbox export cut short", "enterprise", f.Enterprise, "rows", n, "err", err)
		panic(http.ErrAbortHandler) // no trailer, no terminating chunk: the client sees the file is incomplete
	}
	h.Set(ExportRowsTrailer, strconv.FormatInt(n, 10))
	s.log.Info("outbox export", "enterprise", f.Enterprise, "account", f.Account, "format", format, "rows", n,
		"elapsed", time.Since(start).Round(time.Millisecond).String())
}

// errExportPartial: a node of the cluster could not be asked for its
// messages, so the export would miss them.
var errExportPartial = errors.New("a node of the cluster could not be asked for its messages; the export would miss them: retry shortly")

// exportPages returns the pages of f one after another: the page, whether
// another follows, or an error (errExportPartial for a node missing).
func (s *Server) exportPages(ctx context.Context, f queue.ListFilter, outcome string) func() ([]Message, bool, error) {
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
			}
			after = next
			return page, next != 0, nil
		}
	}
	// One set of streams for the whole export: each page goes on where
	// the last one's cursor would have.
	var streams []*listStream
	var unknown bool
	q := nodeQuery(f, outcome, limit)
	return func() ([]Message, bool, error) {
		if streams == nil {
			var ok bool
			if streams, unknown, ok = s.listStreams(ctx, nil, "after", ""); !ok {
				return nil, false, errExportPartial // a cursor was not given: never here
			}
		}
		taken, next, missing := s.clusterPage(ctx, q, streams, unknown)
		if missing.Partial {
			return nil, false, errExportPartial
		}
		page := make([]Message, len(taken))
		for i, e := range taken {
			page[i] = *e.Msg
		}
		return page, next != "", nil
	}
}

// exportWriter writes one message a call as format: CSV (a header row
// first) or JSON Lines. zh is for people and Excel: a UTF-8 BOM (without
// it Excel reads the Chinese as GBK), Chinese headers and states, Beijing
// times, and cells that Excel would run as formulas quoted.
func exportWriter(w *bufio.Writer, format string, zh bool) (func(*Message) error, error) {
	if format == queue.FormatJSONL {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return func(m *Message) error { return enc.Encode(m) }, nil
	}
	cw := csv.NewWriter(w)
	header := make([]string, len(exportColumns))
	for i, col := range exportColumns {
		header[i] = col.en
		if zh {
			header[i] = col.zh
		}
	}
	if zh {
		w.WriteString("\uFEFF")
	}
	if err := cw.Write(header); err != nil { // an empty export has its header too
		return nil, err
	}
	at := func(t time.Time) string {
		switch {
		case t.IsZero():
			return ""
		case zh:
			return t.In(reminder.Shanghai).Format(time.DateTime)
		}
		return t.UTC().Format(time.RFC3339)
	}
	cell := func(v string) string {
		if zh {
			return spreadsheetSafe(v)
		}
		return v
	}
	rec := make([]string, len(exportColumns))
	return func(m *Message) error {
		state := m.State
		if zh {
			state = m.StateZH
		}
		rec = append(rec[:0], m.ID, cell(m.Account), cell(m.To), cell(m.Source), cell(m.Text), state,
			strconv.Itoa(m.Segments), cell(m.ErrorCode), at(m.AcceptedAt), at(m.SendAt), at(m.SubmittedAt), at(m.DoneAt))
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

package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/batch"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/queue"
)

// The operations endpoints: DLR export, monthly bill, online backup (OPS.md
// explains them, admin.openapi.yaml is their reference). All need the
// operator token.

// RowsTrailer is the HTTP trailer of a complete export: the number of rows
// sent. An export cut short by an error has no trailer (and the connection
// is aborted, so the client sees an unexpected EOF).
const RowsTrailer = "X-Qxtd-Rows"

// NextCursorHeader is the response header of an incremental export
// (?after=CURSOR): the cursor to ask after next time. It is sent before the
// rows, but is valid only once the export is complete (RowsTrailer came).
const NextCursorHeader = "X-Qxtd-Next-Cursor"

// PurgedTrailer is the HTTP trailer of a complete incremental export: how
// many parts that became final within the cursor range retention deleted
// before this export (0 unless the job polls less often than the retention
// period).
const PurgedTrailer = "X-Qxtd-Purged"

// opsFlushRows is how many export rows go out between explicit flushes.
const opsFlushRows = 1000

// opsRoutes registers the operations endpoints (bill, DLR export, backup).
func (s *Server) opsRoutes() {
	for _, rt := range s.opsRouteList() {
		s.mux.HandleFunc(rt.pattern, s.operator(rt.h))
	}
}

// everyEnterprise refuses h to an account manager with a portfolio: it is
// the operator of every enterprise's (a backup of the whole store, the
// daemon's own operations).
func (s *Server) everyEnterprise(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a := s.actorOf(r.Context()); a.Scoped() {
			writeNotServed(w, a, "")
			return
		}
		h(w, r)
	}
}

// opsRouteList is every operations endpoint (admin.openapi.yaml documents
// each); registered behind the operator check.
func (s *Server) opsRouteList() []plainRoute {
	backups := make(chan struct{}, 1) // one backup at a time
	return []plainRoute{
		{"GET /admin/v1/export/dlr", s.exportDLR},
		{"GET /admin/v1/bill", s.bill},
		{"GET /admin/v1/backup", s.everyEnterprise(func(w http.ResponseWriter, r *http.Request) {
			// A read, but of everything: the whole store, every
			// enterprise's messages and its users' password hashes. Not a
			// read-only manager's (客服 looks up a number; it does not
			// take the store home).
			if a := s.actorOf(r.Context()); a.ReadOnly {
				writeReadOnly(w, a)
				return
			}
			select {
			case backups <- struct{}{}:
				defer func() { <-backups }()
				s.backup(w, r)
			default:
				writeError(w, http.StatusConflict, "busy", "another backup is running")
			}
		})},
	}
}

var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}()

// ParseWindowTime reads an export bound: RFC 3339 ("2026-11-01T00:00:00+08:00")
// or a date ("2026-11-01"), which is midnight in Asia/Shanghai.
func ParseWindowTime(s string) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, shanghai); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD (Asia/Shanghai) nor RFC 3339", s)
	}
	return t, nil
}

// windowZH names the from= and to= of an export in Chinese.
var windowZH = map[string]string{"from": "开始时间", "to": "结束时间"}

// ParseMonth reads a billing month "2006-01" and returns its first
// instant in Asia/Shanghai.
func ParseMonth(s string) (time.Time, error) {
	t, err := time.ParseInLocation("2006-01", s, shanghai)
	if err != nil || t.Format("2006-01") != s {
		return time.Time{}, fmt.Errorf("month %q: want YYYY-MM", s)
	}
	return t, nil
}

// lazyHeader sends the response header on the first write, so that an
// export that fails before producing anything still gets an error status.
type lazyHeader struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyHeader) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// exportDLR: GET /admin/v1/export/dlr?from=&to=[&enterprise=][&format=csv|jsonl],
// or ?after=CURSOR[&enterprise=][&format=] (the parts final since the cursor).
func (s *Server) exportDLR(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// An account manager with a portfolio exports one of its
	// enterprises' receipts at a time, never every enterprise's.
	if a := s.actorOf(r.Context()); a.Scoped() && !a.Serves(q.Get("enterprise")) {
		writeNotServed(w, a, q.Get("enterprise"))
		return
	}
	if q.Has("after") {
		s.exportFinal(w, r)
		return
	}
	var from, to time.Time
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(b.name)
		if v == "" {
			writeInvalid(w, b.name, "请填写"+windowZH[b.name]+"（YYYY-MM-DD 或 RFC 3339），或用 after（游标）", b.name+" is required (RFC 3339 or YYYY-MM-DD), or after (a cursor)")
			return
		}
		t, err := ParseWindowTime(v)
		if err != nil {
			writeInvalid(w, b.name, windowZH[b.name]+"须为 YYYY-MM-DD（北京时间）或 RFC 3339 时间", b.name+": "+err.Error())
			return
		}
		*b.t = t
	}
	if to.Before(from) {
		writeInvalid(w, "to", "结束时间早于开始时间", "to is before from")
		return
	}
	name := fmt.Sprintf("dlr-%s-%s", from.In(shanghai).Format("20060102T150405"), to.In(shanghai).Format("20060102T150405"))
	s.streamRows(w, r, name, func(fn func(queue.Row) error) error {
		return s.cfg.Store.ExportParts(from, to, q.Get("enterprise"), fn)
	}, nil, "from", from, "to", to)
}

// exportFinal: GET /admin/v1/export/dlr?after=CURSOR: the parts that became
// final after the cursor, up to the store's end when the request came; that
// end is the next cursor (NextCursorHeader), known before the first row.
func (s *Server) exportFinal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("from") || q.Has("to") {
		writeInvalid(w, "after", "after（游标）和 from/to 时间段不能同时使用", "after (a cursor) and a from/to window exclude each other")
		return
	}
	after, err := queue.ParseCursor(q.Get("after"))
	if err != nil {
		writeInvalid(w, "after", "游标无效：请使用本系统上次导出返回的游标", err.Error())
		return
	}
	until, err := s.cfg.Store.FinalCursor()
	if err != nil {
		writeErr(w, err)
		return
	}
	if after > until {
		writeInvalid(w, "after", "游标超出本系统的数据范围：不是本系统的游标，或数据已从较早的备份恢复",
			fmt.Sprintf("cursor %s is ahead of this store (at %s): not one of its cursors, or the store was restored from an older backup", after, until))
		return
	}
	w.Header().Set(NextCursorHeader, until.String())
	var purged int64
	s.streamRows(w, r, "dlr-after-"+after.String(), func(fn func(queue.Row) error) (err error) {
		purged, err = s.cfg.Store.ExportFinal(after, until, q.Get("enterprise"), fn)
		return err
	}, func(h http.Header) {
		h.Set(PurgedTrailer, strconv.FormatInt(purged, 10))
		if purged > 0 {
			s.log.Warn("dlr export: parts final after the cursor were purged before this export (retention shorter than the polling interval?)",
				"after", after.String(), "purged", purged)
		}
	}, "after", after.String(), "next", until.String())
}

// streamRows answers the rows export produces as CSV or JSON Lines (the
// format parameter), as an attachment named name, with RowsTrailer (and
// whatever trailers sets) when complete; logArgs go to the log line.
func (s *Server) streamRows(w http.ResponseWriter, r *http.Request, name string, export func(func(queue.Row) error) error,
	trailers func(http.Header), logArgs ...any) {
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = queue.FormatCSV
	}
	ctype := map[string]string{queue.FormatCSV: "text/csv; charset=utf-8", queue.FormatJSONL: "application/x-ndjson"}[format]
	if ctype == "" {
		w.Header().Del(NextCursorHeader)
		writeInvalid(w, "format", "导出格式须为 csv 或 jsonl", fmt.Sprintf("format %q: want csv or jsonl", format))
		return
	}
	ent := q.Get("enterprise")

	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, name, format))
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", RowsTrailer)
	if trailers != nil {
		h.Add("Trailer", PurgedTrailer)
	}
	out := &lazyHeader{w: w}
	enc, err := queue.NewRowWriter(out, format)
	if err != nil {
		writeErr(w, err)
		return
	}
	rc := http.NewResponseController(w)
	s.extendWrite(rc)
	var n int64
	start := time.Now()
	err = export(func(row queue.Row) error {
		if err := enc.Write(row); err != nil {
			return err
		}
		n++
		if n%opsFlushRows == 0 {
			s.extendWrite(rc)
			if err := enc.Flush(); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		if !out.started {
			h.Del("Content-Disposition")
			h.Del("Trailer")
			h.Del(NextCursorHeader)
			writeErr(w, err)
			return
		}
		s.log.Warn("dlr export cut short", "rows", n, "err", err)
		panic(http.ErrAbortHandler) // no trailer, no terminating chunk: the client sees the export is incomplete
	}
	if !out.started {
		w.WriteHeader(http.StatusOK)
	}
	h.Set(RowsTrailer, strconv.FormatInt(n, 10))
	if trailers != nil {
		trailers(h)
	}
	s.log.Info("dlr export", append(logArgs, "enterprise", ent, "format", format, "rows", n,
		"elapsed", time.Since(start).Round(time.Millisecond).String())...)
}

// extendWrite moves the answer's write deadline WriteTimeout ahead; a
// streaming answer calls it as it goes.
func (s *Server) extendWrite(rc *http.ResponseController) {
	if s.cfg.WriteTimeout > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) // ErrNotSupported: nothing to extend
	}
}

// deadlineWriter extends the write deadline before each write.
type deadlineWriter struct {
	w      io.Writer
	extend func()
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.extend()
	return d.w.Write(p)
}

// BillLine is one enterprise's bill for one month, as GET /admin/v1/bill
// answers it (a JSON array of them, sorted by enterprise). Money is integer
// fen (分) with the same amount as a yuan string beside it.
type BillLine struct {
	Enterprise string `json:"enterprise"`
	Name       string `json:"name"` // "" if the enterprise is not configured
	policy.Bill
	OverageRateFen int64  `json:"overage_rate_fen"` // price of one segment beyond Included
	FeeYuan        string `json:"fee_yuan"`
	OverageYuan    string `json:"overage_yuan"`
	TotalYuan      string `json:"total_yuan"`
	// Pending: segments accepted in the month with no final outcome yet.
	// While it is not 0 the bill may still grow (a late DELIVRD counts in
	// the month of acceptance).
	Pending int64 `json:"pending"`
	// Purged: delivered segments of the month whose messages retention has
	// deleted; they are billed but no longer in the DLR export.
	Purged int64 `json:"purged"`
	// Error: the bill could not be computed (the enterprise is not
	// configured, or its package is not in the package table); Delivered
	// is still right, the amounts are 0.
	Error string `json:"error,omitempty"`
	Missing
}

// billLine computes one enterprise's bill for month from its usage, with
// the package in force in that month. e is nil for an enterprise that is
// not configured. GET /admin/v1/bill, GET /v1/usage and GET /v1/bills all
// compute bills here.
func (s *Server) billLine(code string, e *policy.Enterprise, month string, u queue.EnterpriseUsage) BillLine {
	line := BillLine{Enterprise: code, Pending: u.Reserved, Purged: u.PurgedCharged}
	line.Month, line.Delivered = month, u.Charged
	switch {
	case e == nil:
		line.Error = "enterprise not configured"
	default:
		line.Name = e.Name
		b, err := s.cfg.Policy.Bill(e, month, u.Charged)
		if err != nil {
			line.Package = e.PackageIn(month)
			line.Error = err.Error()
			break
		}
		line.Bill = b
		if pkg, ok := s.cfg.Policy.Packages().Lookup(b.Package); ok {
			line.OverageRateFen = pkg.OverageFen
		}
	}
	line.FeeYuan, line.OverageYuan, line.TotalYuan =
		policy.FormatFen(line.FeeFen), policy.FormatFen(line.OverageFen), policy.FormatFen(line.TotalFen)
	return line
}

// bill: GET /admin/v1/bill?month=2006-01[&enterprise=X]
func (s *Server) bill(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no policy store configured")
		return
	}
	month := r.URL.Query().Get("month")
	start, err := ParseMonth(month)
	if err != nil {
		writeInvalid(w, "month", monthZH, err.Error())
		return
	}
	end := start.AddDate(0, 1, 0)
	only := r.URL.Query().Get("enterprise")
	a := s.actorOf(r.Context())
	if only != "" && a.Scoped() && !a.Serves(only) {
		writeNotServed(w, a, only)
		return
	}

	// Every node's usage of the month (usage_cluster.go); a line lacking
	// some is marked partial.
	byEnt, missing, err := s.usageByMonth(r.Context(), month, only)
	if err != nil {
		writeUsageErr(w, err)
		return
	}
	// Every configured enterprise that existed in the month owes its fee;
	// every enterprise with traffic in the month is listed, configured or not.
	codes := make(map[string]*policy.Enterprise)
	for _, e := range s.cfg.Policy.Enterprises(policy.OperatorActor("ops")) {
		if e.CreatedAt.Before(end) {
			codes[e.Code] = &e
		}
	}
	for code := range byEnt {
		if _, ok := codes[code]; !ok {
			codes[code] = nil
			if e, ok := s.cfg.Policy.Lookup(code); ok {
				codes[code] = e
			}
		}
	}
	if only != "" {
		e, _ := s.cfg.Policy.Lookup(only)
		if _, traffic := byEnt[only]; e == nil && !traffic {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("enterprise %s: not configured and no traffic in %s", only, month))
			return
		}
		codes = map[string]*policy.Enterprise{only: e}
	}
	out := make([]BillLine, 0, len(codes))
	for code, e := range codes {
		if !a.Serves(code) {
			continue // not one of the account manager's enterprises
		}
		line := s.billLine(code, e, month, byEnt[code])
		line.Missing = missingOf(missing)
		out = append(out, line)
	}
	slices.SortFunc(out, func(a, b BillLine) int { return strings.Compare(a.Enterprise, b.Enterprise) })
	writeJSON(w, http.StatusOK, out)
}

// backup: GET /admin/v1/backup. The snapshot is first written to a
// temporary file beside the store (unlinked at once: nothing is left
// behind, even by a crash), so that the read transaction lasts as long
// as a local copy, not as long as the client's download; then it is sent
// with its Content-Length, so a client can tell a cut-short download.
// The store's filesystem needs room for one more copy of the file.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	dir := filepath.Dir(s.cfg.Store.Path())
	f, err := os.CreateTemp(dir, ".qxtd-backup-*")
	if err != nil {
		writeErr(w, fmt.Errorf("backup: spool file: %w", err))
		return
	}
	removed := os.Remove(f.Name()) == nil // Unix: the open file lives on, unnamed
	defer func() {
		f.Close()
		if !removed {
			os.Remove(f.Name())
		}
	}()
	start := time.Now()
	// The files of the jobs running in the snapshot go into the copy, so
	// that restoring the one file resumes them; from before the snapshot
	// until they are in, an ended job's file stays (HoldFiles).
	release := func() {}
	if s.cfg.Gateway != nil && s.cfg.Policy != nil {
		release = s.batches().HoldFiles()
	}
	defer release()
	n, err := s.cfg.Store.Backup(f)
	var files int
	var fileBytes int64
	if err == nil {
		path := f.Name()
		if removed { // the unnamed file, through its descriptor (Linux)
			path = "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
		}
		files, fileBytes, err = queue.AddJobFiles(path, batch.RunningFile)
		release()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if err == nil {
		n = fi.Size()
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("backup snapshot taken", "bytes", n, "job_files", files, "job_file_bytes", fileBytes,
		"elapsed", time.Since(start).Round(time.Millisecond).String())
	rc := http.NewResponseController(w)
	s.extendWrite(rc) // the snapshot may have taken longer than the write timeout
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="qxtd-%s.db"`, time.Now().In(shanghai).Format("20060102T150405")))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// Each write gets WriteTimeout: a slow download goes on, a stalled one
	// is cut. io.Copy's 32 KiB chunks keep every write short.
	if c, err := io.Copy(deadlineWriter{w: w, extend: func() { s.extendWrite(rc) }}, f); err != nil && !errors.Is(err, r.Context().Err()) {
		s.log.Warn("backup download cut short", "sent", c, "bytes", n, "err", err)
	}
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// An enterprise's whitelist: add numbers, import a CSV or XLSX file, list
// by state, approve, reject and remove.

// XLSXContentType is the media type of an XLSX upload.
const XLSXContentType = sheet.XLSXContentType

// Numbers is the body of whitelist add and remove.
type Numbers struct {
	Numbers []string `json:"numbers"`
}

// Decision is the body of whitelist approve and reject: either numbers, or
// all_pending true; a rejection needs a reason (the enterprise sees it).
type Decision struct {
	Numbers    []string `json:"numbers,omitempty"`
	AllPending bool     `json:"all_pending,omitempty"`
	Reason     string   `json:"reason,omitempty"`
}

// WhitelistPage is the answer of GET /admin/v1/enterprises/{code}/whitelist.
type WhitelistPage struct {
	Entries []policy.WhitelistEntry `json:"entries"`
	Next    string                  `json:"next"` // pass as ?after= for the next page; "" at the end
}

func importOut(res policy.ImportResult) policy.ImportResult {
	res.Errors = nonNil(res.Errors)
	res.Listed = nonNil(res.Listed)
	return res
}

func bulkOut(res policy.BulkResult) policy.BulkResult {
	res.Errors = nonNil(res.Errors)
	res.NotFound = nonNil(res.NotFound)
	return res
}

func (s *Server) readNumbers(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var in Numbers
	if !s.readJSON(w, r, &in) {
		return nil, false
	}
	if err := checkList(in.Numbers); err != nil {
		writeErr(w, err)
		return nil, false
	}
	return in.Numbers, true
}

func checkList(numbers []string) error {
	switch {
	case len(numbers) == 0:
		return invalidZH("numbers", "请至少填写一个号码", "numbers: at least one number is required")
	case len(numbers) > maxListItems:
		return invalidZH("numbers", fmt.Sprintf("一次最多 %d 个号码（更多请导入文件）", maxListItems), "numbers: at most %d per request (import a file for more)", maxListItems)
	}
	return nil
}

func (s *Server) addWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	numbers, ok := s.readNumbers(w, r)
	if !ok {
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.AddWhitelist(a, code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "whitelist added", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

// importFormat picks the format of an uploaded whitelist file: ?format=
// first, else the Content-Type.
func importFormat(r *http.Request) (sheet.Format, error) {
	if f := r.URL.Query().Get("format"); f != "" {
		switch strings.ToLower(f) {
		case "csv":
			return sheet.CSV, nil
		case "xlsx":
			return sheet.XLSX, nil
		}
		return 0, fmt.Errorf("format %q: want csv or xlsx", f)
	}
	ct := r.Header.Get("Content-Type")
	if f, ok := sheet.FormatOfType(ct); ok {
		return f, nil
	}
	return 0, fmt.Errorf("Content-Type %q: want text/csv or %s, or ?format=csv|xlsx", ct, XLSXContentType)
}

func (s *Server) importWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	f, err := importFormat(r)
	if err != nil {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
		return
	}
	code := r.PathValue("code")
	release, ok := s.importSlot(w, code)
	if !ok {
		return
	}
	defer release()
	res, err := s.cfg.Policy.ImportWhitelist(a, code, http.MaxBytesReader(w, r.Body, s.admin.maxImport), f)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("file larger than %d bytes", mbe.Limit))
		case writeSheetErr(w, err):
		default:
			writeErr(w, err)
		}
		return
	}
	s.audit(a, "whitelist imported", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

func (s *Server) listWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	s.writeWhitelistPage(a, r.PathValue("code"), w, r)
}

// pageQuery reads ?limit= and ?after= of a paged list.
func pageQuery(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return "", 0, invalidZH("limit", fmt.Sprintf("每页条数须为 1–%d", policy.MaxPageSize), "limit %q: want a number from 1 to %d", v, policy.MaxPageSize)
		}
		limit = n
	}
	after = q.Get("after")
	if strings.HasPrefix(after, " ") { // an unescaped "+86…" in a query string reads as " 86…"
		after = "+" + after[1:]
	}
	return after, limit, nil
}

// writeWhitelistPage answers a page of an enterprise's whitelist
// (?state=, ?after=, ?limit=).
func (s *Server) writeWhitelistPage(a policy.Actor, code string, w http.ResponseWriter, r *http.Request) {
	var st policy.WhitelistState
	if v := r.URL.Query().Get("state"); v != "" && v != "all" {
		if err := st.UnmarshalText([]byte(v)); err != nil {
			writeErr(w, err) // a FieldError: field state, its rule in Chinese
			return
		}
	}
	after, limit, err := pageQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	entries, next, err := s.cfg.Policy.ListWhitelist(a, code, st, after, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, WhitelistPage{Entries: nonNil(entries), Next: next})
}

func (s *Server) decideWhitelist(st policy.WhitelistState) actorHandler {
	return func(a policy.Actor, w http.ResponseWriter, r *http.Request) {
		var in Decision
		if !s.readJSON(w, r, &in) {
			return
		}
		// policy decides every pending entry when numbers is nil: only an
		// explicit all_pending may ask for that.
		var numbers []string
		switch {
		case in.AllPending && len(in.Numbers) > 0:
			writeErr(w, invalidZH("", "号码（numbers）和全部待审批（all_pending）只能二选一", "give either numbers or all_pending, not both"))
			return
		case !in.AllPending:
			if err := checkList(in.Numbers); err != nil {
				writeErr(w, err)
				return
			}
			numbers = in.Numbers
		}
		code := r.PathValue("code")
		res, err := s.cfg.Policy.DecideWhitelist(a, code, st, in.Reason, numbers)
		if err != nil {
			writeErr(w, err)
			return
		}
		s.audit(a, "whitelist decided", "enterprise", code, "state", st.String(), "all_pending", in.AllPending, "changed", res.Changed)
		writeJSON(w, http.StatusOK, bulkOut(res))
	}
}

func (s *Server) removeWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	numbers, ok := s.readNumbers(w, r)
	if !ok {
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.RemoveWhitelist(a, code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "whitelist removed", "enterprise", code, "changed", res.Changed)
	writeJSON(w, http.StatusOK, bulkOut(res))
}

// The account manager's queue across enterprises: pending entries oldest
// first, decided in bulk.

// PendingPage is the answer of GET /admin/v1/whitelist/pending.
type PendingPage struct {
	Entries []policy.PendingEntry `json:"entries"`
	Next    string                `json:"next"` // pass as ?after= for the next page; "" at the end
}

// EntryDecision is the body of POST /admin/v1/whitelist/approve and
// /reject: entries of any enterprises; a rejection needs a reason.
type EntryDecision struct {
	Entries []policy.EntryRef `json:"entries"`
	Reason  string            `json:"reason,omitempty"`
}

func (s *Server) listPending(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	after, limit, err := pageQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	entries, next, err := s.cfg.Policy.ListPending(a, after, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, PendingPage{Entries: nonNil(entries), Next: next})
}

func (s *Server) decideEntries(st policy.WhitelistState) actorHandler {
	return func(a policy.Actor, w http.ResponseWriter, r *http.Request) {
		var in EntryDecision
		if !s.readJSON(w, r, &in) {
			return
		}
		switch {
		case len(in.Entries) == 0:
			writeErr(w, invalidZH("entries", "请至少选择一条（企业、号码）", "entries: at least one {enterprise, number} is required"))
			return
		case len(in.Entries) > maxListItems:
			writeErr(w, invalidZH("entries", fmt.Sprintf("一次最多 %d 条", maxListItems), "entries: at most %d per request", maxListItems))
			return
		}
		res, err := s.cfg.Policy.DecideEntries(a, st, in.Reason, in.Entries)
		if err != nil {
			writeErr(w, err)
			return
		}
		s.audit(a, "whitelist decided", "state", st.String(), "entries", len(in.Entries), "changed", res.Changed)
		res.NotFound, res.Errors = nonNil(res.NotFound), nonNil(res.Errors)
		writeJSON(w, http.StatusOK, res)
	}
}

// ListPending returns a page of the account manager's queue.
func (c *Client) ListPending(after string, limit int) (*PendingPage, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/admin/v1/whitelist/pending"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return call[PendingPage](c, http.MethodGet, p, nil)
}

// DecideEntries approves (reason "") or rejects entries of any enterprises.
func (c *Client) DecideEntries(approve bool, reason string, entries []policy.EntryRef) (*policy.DecideResult, error) {
	p := "/admin/v1/whitelist/reject"
	if approve {
		p = "/admin/v1/whitelist/approve"
	}
	return call[policy.DecideResult](c, http.MethodPost, p, EntryDecision{Entries: entries, Reason: reason})
}

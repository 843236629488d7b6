package api

import (
	"errors"
	"fmt"
	"net/http"
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
// all_pending true.
type Decision struct {
	Numbers    []string `json:"numbers,omitempty"`
	AllPending bool     `json:"all_pending,omitempty"`
}

// WhitelistPage is the answer of GET /admin/v1/enterprises/{code}/whitelist.
type WhitelistPage struct {
	Entries []policy.WhitelistEntry `json:"entries"`
	Next    string                  `json:"next"` // pass as ?after= for the next page; "" at the end
}

func importOut(res policy.ImportResult) policy.ImportResult {
	res.Errors = nonNil(res.Errors)
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
		return invalidf("numbers: at least one number is required")
	case len(numbers) > maxListItems:
		return invalidf("numbers: at most %d per request (import a file for more)", maxListItems)
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
		case writeSheetLimit(w, err):
		default:
			writeErr(w, err)
		}
		return
	}
	s.audit(a, "whitelist imported", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

func (s *Server) listWhitelist(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var st policy.WhitelistState
	if v := q.Get("state"); v != "" && v != "all" {
		if err := st.UnmarshalText([]byte(v)); err != nil {
			writeErr(w, err)
			return
		}
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeErr(w, invalidf("limit %q: want a number from 1 to %d", v, policy.MaxPageSize))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if strings.HasPrefix(after, " ") { // an unescaped "+86…" in a query string reads as " 86…"
		after = "+" + after[1:]
	}
	entries, next, err := s.cfg.Policy.ListWhitelist(a, r.PathValue("code"), st, after, limit)
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
			writeErr(w, invalidf("give either numbers or all_pending, not both"))
			return
		case !in.AllPending:
			if err := checkList(in.Numbers); err != nil {
				writeErr(w, err)
				return
			}
			numbers = in.Numbers
		}
		code := r.PathValue("code")
		res, err := s.cfg.Policy.DecideWhitelist(a, code, st, numbers)
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

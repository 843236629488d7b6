package api

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Opt-outs (回复TD退订): numbers that replied TD to the enterprise's
// service number, or that its users put there by hand (a customer who
// asked another way, the list of an earlier platform: POST /v1/optouts,
// POST /v1/optouts/import); sends to them are refused opted_out. Every
// user of the enterprise lists them (GET /v1/optouts, paged by number)
// and adds to them; its admins remove one (DELETE /v1/optouts/{id}, id =
// the number), after which sends to it go out again. The operator
// exports every list (GET /admin/v1/optouts).

// OptOutPage is a page of an enterprise's opt-out list.
type OptOutPage struct {
	Entries []policy.OptOutEntry `json:"entries"`
	Next    string               `json:"next"` // pass as ?after= for the next page; "" at the end
}

func (s *Server) listMyOptOuts(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	if number := r.URL.Query().Get("number"); number != "" {
		// One number, in any form: its entry, or none.
		e, err := s.cfg.Policy.FindOptOut(policy.ActorFor(c.user), c.ent.Code, number)
		if err != nil {
			writeErr(w, err)
			return
		}
		page := OptOutPage{Entries: []policy.OptOutEntry{}}
		if e != nil {
			page.Entries = append(page.Entries, *e)
		}
		writeJSON(w, http.StatusOK, page)
		return
	}
	after, limit, err := pageQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	entries, next, err := s.cfg.Policy.ListOptOuts(policy.ActorFor(c.user), c.ent.Code, after, limit)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, OptOutPage{Entries: nonNil(entries), Next: next})
}

// OptOutAdd is the body of POST /v1/optouts: one number, or a list.
type OptOutAdd = WhitelistAdd

// maxOptOutBody bounds an opt-out import file over /v1, as a whitelist's.
const maxOptOutBody = maxWhitelistBody

// addMyOptOuts is POST /v1/optouts: numbers put on the enterprise's
// opt-out list by hand, as the whitelist's POST takes them (one number:
// 201, 409 already_opted_out, 422; a list: 200 and the per-item result).
func (s *Server) addMyOptOuts(c *caller, w http.ResponseWriter, r *http.Request) {
	numbers, single, ok := numbersIn(w, r)
	if !ok || !s.accountStore(w) {
		return
	}
	a := policy.ActorFor(c.user)
	res, err := s.cfg.Policy.AddOptOuts(a, c.ent.Code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.log.Info("opt-outs added", "user", a.Name, "enterprise", c.ent.Code, "rows", res.Rows, "added", res.Added)
	writeAdded(w, res, single)
}

// importMyOptOuts is POST /v1/optouts/import: column A of a CSV or XLSX
// file, as the whitelist's import reads it (the same bounds and slots).
func (s *Server) importMyOptOuts(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	f, format, done, ok := s.importFile(w, r, maxOptOutBody, c.ent.Code)
	if !ok {
		return
	}
	defer done()
	a := policy.ActorFor(c.user)
	res, err := s.cfg.Policy.ImportOptOuts(a, c.ent.Code, f, format)
	if err != nil {
		if !writeSheetErr(w, err) {
			writeErr(w, err)
		}
		return
	}
	s.log.Info("opt-outs imported", "user", a.Name, "enterprise", c.ent.Code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

func (s *Server) removeMyOptOut(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	a := policy.ActorFor(c.user)
	number := r.PathValue("id")
	err := s.cfg.Policy.RemoveOptOut(a, c.ent.Code, number)
	switch {
	case err == policy.ErrForbidden:
		writeError(w, http.StatusForbidden, "forbidden", "only the enterprise's admins remove opt-outs")
	case err != nil:
		writeErr(w, err)
	default:
		s.log.Info("opt-out removed", "user", a.Name, "enterprise", c.ent.Code, "number", number)
		w.WriteHeader(http.StatusNoContent)
	}
}

// addOptOuts is POST /admin/v1/enterprises/{code}/optouts: the operator
// puts numbers on an enterprise's opt-out list (a complaint about its
// messages that reached the operator or the carrier: 号码查询 finds who
// sent). The entries say the operator added them (by_operator).
func (s *Server) addOptOuts(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	numbers, ok := s.readNumbers(w, r)
	if !ok {
		return
	}
	code := r.PathValue("code")
	res, err := s.cfg.Policy.AddOptOuts(a, code, numbers)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.audit(a, "opt-outs added", "enterprise", code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

// exportOptOuts answers GET /admin/v1/optouts?enterprise=CODE&format=csv|json:
// one enterprise's opt-outs, or every enterprise's without ?enterprise,
// as a JSON array (the default) or CSV (enterprise,number,at,mo_id,by).
// number= narrows it to one number's entries, on every list that has it
// (a whole mobile number in any form; the lists are keyed by it).
func (s *Server) exportOptOuts(a policy.Actor, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	code := r.URL.Query().Get("enterprise")
	format := r.URL.Query().Get("format")
	switch format {
	case "":
		format = "json"
	case "csv", "json":
	default:
		writeErr(w, invalidZH("format", "导出格式须为 csv 或 json", "format %q: want csv or json", format))
		return
	}
	// Refused before the answer starts (ExportOptOuts would refuse it
	// too, once the status is out): an account manager with a portfolio
	// exports one of its enterprises' lists, never every enterprise's.
	// One number's entries (OptOutsOf) are its enterprises' only.
	if number := r.URL.Query().Get("number"); a.Scoped() && number == "" && !a.Serves(code) {
		writeNotServed(w, a, code)
		return
	}
	if code != "" {
		if _, ok := s.cfg.Policy.Lookup(code); !ok {
			writeError(w, http.StatusNotFound, "not_found", "enterprise "+code)
			return
		}
	}
	// One number's entries are read before the answer starts: a number
	// that is no mobile is refused (422 invalid_number) with a status.
	number := r.URL.Query().Get("number")
	var ofNumber []policy.OptOutEntry
	if number != "" {
		var err error
		if ofNumber, err = s.cfg.Policy.OptOutsOf(a, number); err != nil {
			writeErr(w, err)
			return
		}
	}
	// The answer starts with the first row: an error after it can only
	// cut the body short (the client sees a truncated file).
	var write func(policy.OptOutEntry) error
	var end func()
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		name := "optouts"
		if code != "" {
			name += "-" + code
		}
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"enterprise", "number", "at", "mo_id", "by"})
		write = func(e policy.OptOutEntry) error {
			return cw.Write([]string{e.Enterprise, e.Number, e.At.UTC().Format(time.RFC3339), strconv.FormatUint(e.MOID, 10), e.By})
		}
		end = cw.Flush
	} else {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("["))
		n := 0
		write = func(e policy.OptOutEntry) error {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if n > 0 {
				b = append([]byte(","), b...)
			}
			n++
			_, err = w.Write(b)
			return err
		}
		end = func() { _, _ = w.Write([]byte("]\n")) }
	}
	if number != "" {
		for _, e := range ofNumber {
			if code == "" || e.Enterprise == code {
				if err := write(e); err != nil {
					return
				}
			}
		}
		end()
		return
	}
	if err := s.cfg.Policy.ExportOptOuts(a, code, write); err != nil {
		s.log.Error("export opt-outs", "enterprise", code, "err", err)
		return
	}
	end()
}

// optOutColumns are the columns of the enterprise's export of its list
// (GET /v1/optouts/export); for people (zh) the number as written in
// China, without +86.
var optOutColumns = []exportColumn[policy.OptOutEntry]{
	{"number", "手机号码", func(e *policy.OptOutEntry, zh bool) string {
		if zh {
			return strings.TrimPrefix(e.Number, "+86")
		}
		return e.Number
	}},
	{"at", "退订时间", func(e *policy.OptOutEntry, zh bool) string { return exportTime(e.At, zh) }},
	{"mo_id", "退订回复编号", func(e *policy.OptOutEntry, _ bool) string { return strconv.FormatUint(e.MOID, 10) }},
	{"by", "手工添加人", func(e *policy.OptOutEntry, _ bool) string { return e.By }},
}

// exportMyOptOuts is GET /v1/optouts/export: the enterprise's whole
// opt-out list as one file (CSV or JSON Lines, lang=zh for Excel), in
// number order, written and bounded as the outbox's export (its slots,
// the Qxtd-Rows trailer on a complete file): what an enterprise's CRM
// takes to mark its customers unsubscribed. Every user of the
// enterprise reads it, as the list.
func (s *Server) exportMyOptOuts(c *caller, w http.ResponseWriter, r *http.Request) {
	if !s.accountStore(w) {
		return
	}
	format, zh, ok := s.exportFormat(w, r.URL.Query())
	if !ok {
		return
	}
	a, after, done := policy.ActorFor(c.user), "", false
	next := func() ([]policy.OptOutEntry, bool, error) {
		if done {
			return nil, false, nil
		}
		entries, n, err := s.cfg.Policy.ListOptOuts(a, c.ent.Code, after, policy.MaxPageSize)
		if err != nil {
			return nil, false, err
		}
		after, done = n, n == ""
		return entries, !done, nil
	}
	exportFile(s, w, r, exportSpec[policy.OptOutEntry]{what: "optouts", ent: c.ent.Code, name: "optouts-" + c.ent.Code,
		format: format, zh: zh, columns: optOutColumns, next: next})
}

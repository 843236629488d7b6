package api

import (
	"net/http"

	"github.com/qxtd/qxtd/policy"
)

// The enterprise's whitelist (白名单, FAQ 4) under /v1/whitelist: every user
// of the enterprise lists it with each entry's state (pending, approved,
// rejected with the account manager's reason, who added and decided it,
// when), adds numbers one by one or in a list and imports the template
// file (CSV or XLSX, column A); its admins also remove entries. What the
// enterprise adds is pending until an account manager approves it (/admin/v1/whitelist):
// a send to it is refused not_whitelisted, saying it awaits approval.
// Numbers of another enterprise's whitelist are "not found".

// WhitelistAdd is the body of POST /v1/whitelist: one number, or a list.
type WhitelistAdd struct {
	Number  string   `json:"number,omitempty"`
	Numbers []string `json:"numbers,omitempty"`
}

// maxWhitelistBody bounds a whitelist import file over /v1.
const maxWhitelistBody = 10 << 20

// callerWhitelist is who acts on the caller's enterprise's whitelist.
// Without an account store it writes the answer itself.
func (s *Server) callerWhitelist(c *caller, w http.ResponseWriter) (policy.Actor, bool) {
	if !s.accountStore(w) {
		return policy.Actor{}, false
	}
	return policy.ActorFor(c.user), true
}

// writeWhitelistErr answers a whitelist error of the user API.
func writeWhitelistErr(w http.ResponseWriter, err error) {
	if err == policy.ErrForbidden {
		writeError(w, http.StatusForbidden, "forbidden", "only the enterprise's admins remove whitelist entries")
		return
	}
	writeErr(w, err)
}

func (s *Server) listMyWhitelist(c *caller, w http.ResponseWriter, r *http.Request) {
	a, ok := s.callerWhitelist(c, w)
	if !ok {
		return
	}
	s.writeWhitelistPage(a, c.ent.Code, w, r)
}

func (s *Server) addMyWhitelist(c *caller, w http.ResponseWriter, r *http.Request) {
	numbers, single, ok := numbersIn(w, r)
	if !ok {
		return
	}
	a, ok := s.callerWhitelist(c, w)
	if !ok {
		return
	}
	res, err := s.cfg.Policy.AddWhitelist(a, c.ent.Code, numbers)
	if err != nil {
		writeWhitelistErr(w, err)
		return
	}
	s.log.Info("whitelist added", "user", a.Name, "enterprise", c.ent.Code, "rows", res.Rows, "added", res.Added)
	writeAdded(w, res, single)
}

// numbersIn reads the body of a POST of one number or a list (WhitelistAdd,
// OptOutAdd): the numbers and whether it was one. It answers a bad body.
func numbersIn(w http.ResponseWriter, r *http.Request) (numbers []string, single, ok bool) {
	var in WhitelistAdd
	if !decodeBody(w, r, &in) {
		return nil, false, false
	}
	single = in.Number != ""
	switch {
	case single && len(in.Numbers) > 0:
		writeErr(w, invalidZH("", "一个号码（number）和号码列表（numbers）只能二选一", "give number or numbers, not both"))
		return nil, false, false
	case single:
		return []string{in.Number}, true, true
	}
	if err := checkList(in.Numbers); err != nil {
		writeErr(w, err)
		return nil, false, false
	}
	return in.Numbers, false, true
}

// writeAdded answers numbersIn's POST: one number's fate is the status
// (201 added, 409 listed already, 422 refused), a list's 200 with the
// account of every row.
func writeAdded(w http.ResponseWriter, res policy.ImportResult, single bool) {
	switch {
	case single && len(res.Errors) == 1:
		writeError(w, http.StatusUnprocessableEntity, res.Errors[0].Reason, res.Errors[0].Detail)
	case single && len(res.Listed) == 1:
		writeError(w, http.StatusConflict, res.Listed[0].Reason, res.Listed[0].Detail)
	case single:
		writeJSON(w, http.StatusCreated, importOut(res))
	default:
		writeJSON(w, http.StatusOK, importOut(res))
	}
}

func (s *Server) importMyWhitelist(c *caller, w http.ResponseWriter, r *http.Request) {
	a, ok := s.callerWhitelist(c, w)
	if !ok {
		return
	}
	f, format, done, ok := s.importFile(w, r, maxWhitelistBody, c.ent.Code)
	if !ok {
		return
	}
	defer done()
	res, err := s.cfg.Policy.ImportWhitelist(a, c.ent.Code, f, format)
	if err != nil {
		if !writeSheetErr(w, err) {
			writeWhitelistErr(w, err)
		}
		return
	}
	s.log.Info("whitelist imported", "user", a.Name, "enterprise", c.ent.Code, "rows", res.Rows, "added", res.Added, "errors", len(res.Errors))
	writeJSON(w, http.StatusOK, importOut(res))
}

func (s *Server) removeMyWhitelist(c *caller, w http.ResponseWriter, r *http.Request) {
	a, ok := s.callerWhitelist(c, w)
	if !ok {
		return
	}
	number := r.PathValue("id")
	res, err := s.cfg.Policy.RemoveWhitelist(a, c.ent.Code, []string{number})
	switch {
	case err != nil:
		writeWhitelistErr(w, err)
	case len(res.Errors) == 1:
		writeError(w, http.StatusUnprocessableEntity, res.Errors[0].Reason, res.Errors[0].Detail)
	case res.Changed == 0:
		writeError(w, http.StatusNotFound, "not_found", number+": not on the whitelist")
	default:
		s.log.Info("whitelist removed", "user", a.Name, "enterprise", c.ent.Code, "number", number)
		w.WriteHeader(http.StatusNoContent)
	}
}

var whitelistTemplate = templateFile{
	name:   "whitelist",
	sheet:  "白名单",
	header: []string{"号码", "备注"},
	rows: [][]string{
		{"13800138000", "张三"},
		{"13800138001", "李四"},
	},
	widths: []float64{16, 30},
}

func (s *Server) whitelistTemplateCSV(_ *caller, w http.ResponseWriter, _ *http.Request) {
	whitelistTemplate.writeCSV(w)
}

func (s *Server) whitelistTemplateXLSX(_ *caller, w http.ResponseWriter, _ *http.Request) {
	whitelistTemplate.writeXLSX(w)
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// Address books (个人通讯录 and the enterprise's 通讯录): /v1/contacts is the caller's personal book (at most
// 3,000 contacts, its user only), /v1/enterprise-contacts the enterprise
// book (at most 5,000; read by every user of the enterprise, written by its
// admins). Both list (optionally one group), add, delete and import the
// template file (CSV or XLSX: name, number, groups) with an error per
// refused row. A full book refuses with 422 contacts_limit. POST
// /v1/messages sends to their groups ("groups" and "book").

// Limits of the address book API.
const maxContactsBody = 10 << 20 // an import file

// ContactIn is the body of POST /v1/contacts.
type ContactIn struct {
	Name   string   `json:"name"`
	Number string   `json:"number"`
	Groups []string `json:"groups,omitempty"`
}

// Contact is an address book entry.
type Contact struct {
	Name      string    `json:"name"`
	Number    string    `json:"number"` // E.164
	Groups    []string  `json:"groups"`
	AddedAt   time.Time `json:"added_at"`
	AddedBy   string    `json:"added_by"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ContactGroup is a group of a book and its size.
type ContactGroup struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// ContactList is the answer of GET /v1/contacts.
type ContactList struct {
	Book     string         `json:"book"` // personal | enterprise
	Limit    int            `json:"limit"`
	Total    int            `json:"total"`    // contacts in the book
	Groups   []ContactGroup `json:"groups"`   // every group of the book
	Contacts []Contact      `json:"contacts"` // all, or the members of ?group=
}

// ContactImport is the answer of POST /v1/contacts/import.
type ContactImport struct {
	Rows       int        `json:"rows"`
	Added      int        `json:"added"`
	Updated    int        `json:"updated"`
	Unchanged  int        `json:"unchanged"`
	Duplicates int        `json:"duplicates"`
	HeaderRow  int        `json:"header_row"`
	Errors     []RowError `json:"errors"`
}

const (
	bookPersonal   = "personal"
	bookEnterprise = "enterprise"
)

// bookOf is the caller's book of that kind.
func bookOf(c *caller, kind string) policy.Book {
	if kind == bookEnterprise {
		return policy.EnterpriseBook(c.ent.Code)
	}
	return policy.PersonalBook(c.user)
}

// callerBook is who acts on which book in a handler of the caller's book of
// that kind. Without an account store it writes the answer itself.
func (s *Server) callerBook(c *caller, w http.ResponseWriter, kind string) (policy.Actor, policy.Book, bool) {
	if !s.accountStore(w) {
		return policy.Actor{}, policy.Book{}, false
	}
	return policy.ActorFor(c.user), bookOf(c, kind), true
}

func contactOut(c policy.Contact) Contact {
	return Contact{Name: c.Name, Number: c.Number, Groups: c.Groups, AddedAt: c.AddedAt, AddedBy: c.AddedBy, UpdatedAt: c.UpdatedAt}
}

// writeContactsErr answers an address book error.
func writeContactsErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, policy.ErrContactsLimit):
		writeError(w, http.StatusUnprocessableEntity, policy.RowContactsLimit, strings.TrimPrefix(err.Error(), policy.ErrContactsLimit.Error()+": "))
	case errors.Is(err, policy.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", "only the enterprise's admins change the enterprise book")
	case errors.Is(err, policy.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such contact")
	default:
		writeErr(w, err)
	}
}

func (s *Server) listContacts(kind string) userHandler {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		a, b, ok := s.callerBook(c, w, kind)
		if !ok {
			return
		}
		all, err := s.cfg.Policy.Contacts(a, b, "")
		if err != nil {
			writeContactsErr(w, err)
			return
		}
		groups, err := s.cfg.Policy.ContactGroups(a, b)
		if err != nil {
			writeContactsErr(w, err)
			return
		}
		out := ContactList{Book: kind, Limit: b.Limit(), Total: len(all), Groups: []ContactGroup{}, Contacts: []Contact{}}
		for _, g := range groups {
			out.Groups = append(out.Groups, ContactGroup{Name: g.Name, Count: g.Count})
		}
		group := strings.TrimSpace(r.URL.Query().Get("group"))
		for _, ct := range all {
			if group == "" || slices.Contains(ct.Groups, group) {
				out.Contacts = append(out.Contacts, contactOut(ct))
			}
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) addContact(kind string) userHandler {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		var in ContactIn
		if !decodeBody(w, r, &in) {
			return
		}
		a, b, ok := s.callerBook(c, w, kind)
		if !ok {
			return
		}
		ct, err := s.cfg.Policy.AddContact(a, b,
			policy.ContactInput{Name: in.Name, Number: in.Number, Groups: in.Groups})
		if err != nil {
			writeContactsErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, contactOut(*ct))
	}
}

func (s *Server) deleteContact(kind string) userHandler {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		a, b, ok := s.callerBook(c, w, kind)
		if !ok {
			return
		}
		if err := s.cfg.Policy.DeleteContact(a, b, r.PathValue("id")); err != nil {
			writeContactsErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) importContacts(kind string) userHandler {
	return func(c *caller, w http.ResponseWriter, r *http.Request) {
		a, b, ok := s.callerBook(c, w, kind)
		if !ok {
			return
		}
		if kind == bookEnterprise && !c.admin() {
			writeContactsErr(w, policy.ErrForbidden) // before reading the upload
			return
		}
		f, format, done, ok := s.importFile(w, r, maxContactsBody, c.ent.Code)
		if !ok {
			return
		}
		defer done()
		res, err := s.cfg.Policy.ImportContacts(a, b, f, format)
		if err != nil {
			if !writeSheetErr(w, err) {
				writeContactsErr(w, err)
			}
			return
		}
		out := ContactImport{Rows: res.Rows, Added: res.Added, Updated: res.Updated, Unchanged: res.Unchanged,
			Duplicates: res.Duplicates, HeaderRow: res.HeaderRow, Errors: []RowError{}}
		for _, e := range res.Errors {
			out.Errors = append(out.Errors, RowError{Row: e.Row, Number: e.Number, Reason: e.Reason, Message: e.Detail, DetailZH: e.DetailZH})
		}
		writeJSON(w, http.StatusOK, out)
	}
}

var contactsTemplate = templateFile{
	name:   "contacts",
	sheet:  "通讯录",
	header: []string{"姓名", "号码", "分组"},
	rows: [][]string{
		{"张三", "13800138000", "销售部"},
		{"李四", "13800138001", "销售部;市场部"},
	},
	widths: []float64{16, 16, 30},
}

func (s *Server) contactsTemplateCSV(_ *caller, w http.ResponseWriter, _ *http.Request) {
	contactsTemplate.writeCSV(w)
}

func (s *Server) contactsTemplateXLSX(_ *caller, w http.ResponseWriter, _ *http.Request) {
	contactsTemplate.writeXLSX(w)
}

// expandGroups returns the numbers of the groups of the caller's book that
// are not among to (compared in E.164), in national form. It writes the
// error answer itself.
func (s *Server) expandGroups(c *caller, w http.ResponseWriter, to, groups []string, kind string) ([]string, bool) {
	switch kind {
	case "":
		kind = bookPersonal
	case bookPersonal, bookEnterprise:
	default:
		writeInvalid(w, "book", "通讯录须为 personal（个人）或 enterprise（企业）", `book: "personal" or "enterprise"`)
		return nil, false
	}
	if !s.accountStore(w) {
		return nil, false
	}
	if len(groups) > maxGroupsPerSend {
		writeInvalid(w, "groups", fmt.Sprintf("最多 %d 个分组", maxGroupsPerSend), fmt.Sprintf("groups: at most %d", maxGroupsPerSend))
		return nil, false
	}
	numbers, err := s.cfg.Policy.GroupNumbers(policy.ActorFor(c.user), bookOf(c, kind), groups)
	if err != nil {
		writeContactsErr(w, err)
		return nil, false
	}
	seen := make(map[string]bool, len(to))
	cls := s.cfg.Policy.Classifier()
	for _, n := range to {
		if cl, err := cls.Classify(n); err == nil && cl.Mobile {
			seen[cl.E164] = true
		}
	}
	var out []string
	for _, n := range numbers {
		if !seen[n] {
			seen[n] = true
			out = append(out, strings.TrimPrefix(n, "+86"))
		}
	}
	return out, true
}

// maxGroupsPerSend bounds the groups of one POST /v1/messages.
const maxGroupsPerSend = 50

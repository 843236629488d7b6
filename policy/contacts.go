package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/sheet"
)

// Address books (the service's personal and enterprise 通讯录). Every user has a personal book of up to 3,000
// contacts; every enterprise has one enterprise book of up to 5,000. A
// contact is a name, a Chinese mobile number (stored in E.164, normalised by
// the classifier like whitelist entries) and the groups (departments) it
// belongs to; a number is at most once in a book. Books are imported from the
// template file (CSV or XLSX: name, number, groups) with an error per refused
// row, and their groups are expanded to numbers for group sends.
//
// Permissions: a personal book is read and written by its user only (and the
// operator); the enterprise book is read by every user of the enterprise and
// written by its admins (and the operator).
//
// Storage: bucket policy_contacts → enterprise code → book → E.164 → JSON
// contactRec. The enterprise book is "enterprise"; a personal book is
// "user:<system_id>@<the user's creation time, Unix seconds>", so a user
// deleted and created again under the same system_id starts with an empty
// book instead of inheriting the old one. Books are small and are not on the
// SMPP path: they are read from the file, not kept in the snapshot.

var bucketContacts = []byte("policy_contacts")

// Address book limits.
const (
	MaxPersonalContacts   = 3000   // contacts in a user's personal book (the operator's limit)
	MaxEnterpriseContacts = 5000   // contacts in the enterprise book (the operator's limit)
	MaxContactGroups      = 16     // groups of one contact
	MaxContactImportRows  = 10_000 // data rows of one import file
	maxContactNameLen     = 32     // characters
	maxGroupNameLen       = 32     // characters
)

// ErrContactsLimit: the book would hold more contacts than it may. The
// wrapping error names the book and its limit.
var ErrContactsLimit = errors.New("policy: address book full")

// Book names an address book: an enterprise's book (User "") or the personal
// book of one of its users.
type Book struct {
	Enterprise string
	User       string // system_id; "" = the enterprise book
}

// PersonalBook is the personal book of a user.
func PersonalBook(u *User) Book { return Book{Enterprise: u.Enterprise, User: u.SystemID} }

// EnterpriseBook is the enterprise book of code.
func EnterpriseBook(code string) Book { return Book{Enterprise: code} }

// Personal reports whether b is a personal book.
func (b Book) Personal() bool { return b.User != "" }

// Limit is the most contacts b may hold.
func (b Book) Limit() int {
	if b.Personal() {
		return MaxPersonalContacts
	}
	return MaxEnterpriseContacts
}

func (b Book) String() string {
	if b.Personal() {
		return "the personal book of " + b.User
	}
	return "the enterprise book of " + b.Enterprise
}

func (b Book) limitErr() error {
	return fmt.Errorf("%w: %s holds at most %d contacts", ErrContactsLimit, b, b.Limit())
}

// Contact is one entry of an address book.
type Contact struct {
	Number    string    `json:"number"` // E.164
	Name      string    `json:"name"`
	Groups    []string  `json:"groups"`
	AddedAt   time.Time `json:"added_at"`
	AddedBy   string    `json:"added_by"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ContactInput is a contact to add: any number format the classifier
// accepts; names and groups are trimmed.
type ContactInput struct {
	Name   string
	Number string
	Groups []string
}

type contactRec struct {
	Name      string    `json:"n"`
	Groups    []string  `json:"g,omitempty"`
	AddedAt   time.Time `json:"a"`
	AddedBy   string    `json:"ab"`
	UpdatedAt time.Time `json:"u,omitzero"`
}

func (r *contactRec) contact(number string) Contact {
	g := r.Groups
	if g == nil {
		g = []string{}
	}
	return Contact{Number: number, Name: r.Name, Groups: g, AddedAt: r.AddedAt, AddedBy: r.AddedBy, UpdatedAt: r.UpdatedAt}
}

// ContactRowError is one refused row of a contact import. Reason is
// invalid_number, invalid_name, invalid_group or contacts_limit.
type ContactRowError struct {
	Row      int    `json:"row"`
	Number   string `json:"number"` // as in the file
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
	DetailZH string `json:"detail_zh,omitempty"` // Detail in Chinese, as the consoles show it
}

// ContactImportResult accounts for every data row:
// Rows == Added + Updated + Unchanged + Duplicates + len(Errors).
type ContactImportResult struct {
	Rows       int               `json:"rows"`
	Added      int               `json:"added"`
	Updated    int               `json:"updated"`    // the number was in the book: name and groups replaced
	Unchanged  int               `json:"unchanged"`  // the number was in the book as it is in the file
	Duplicates int               `json:"duplicates"` // the number repeats an earlier row: its groups are merged into it
	HeaderRow  int               `json:"header_row"` // 1 if the first row was a header (its column B has no digit)
	Errors     []ContactRowError `json:"errors"`
}

// GroupCount is a group of a book and its number of contacts.
type GroupCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// bookKey checks the actor's access to b and returns its bucket key.
func (s *Store) bookKey(a Actor, b Book, write bool) ([]byte, error) {
	snap := s.snap.Load()
	if snap.ents[b.Enterprise] == nil {
		if a.Everywhere() {
			return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, b.Enterprise)
		}
		return nil, ErrForbidden
	}
	if !b.Personal() {
		if !a.member(b.Enterprise) || write && !a.admin(b.Enterprise) {
			return nil, ErrForbidden
		}
		return []byte("enterprise"), nil
	}
	if !a.Serves(b.Enterprise) && (a.Enterprise != b.Enterprise || a.Name != b.User) {
		return nil, ErrForbidden
	}
	rec := snap.bySID[b.User]
	if rec == nil || rec.Enterprise != b.Enterprise {
		return nil, fmt.Errorf("%w: user %s", ErrNotFound, b.User)
	}
	return []byte("user:" + b.User + "@" + strconv.FormatInt(rec.CreatedAt.Unix(), 10)), nil
}

// bookBucket returns the book's bucket, creating it if create (else nil
// when it does not exist yet).
func bookBucket(tx *bolt.Tx, code string, key []byte, create bool) (*bolt.Bucket, error) {
	if !create {
		top := tx.Bucket(bucketContacts)
		if top == nil {
			return nil, nil
		}
		ent := top.Bucket([]byte(code))
		if ent == nil {
			return nil, nil
		}
		return ent.Bucket(key), nil
	}
	top, err := tx.CreateBucketIfNotExists(bucketContacts)
	if err != nil {
		return nil, err
	}
	ent, err := top.CreateBucketIfNotExists([]byte(code))
	if err != nil {
		return nil, err
	}
	return ent.CreateBucketIfNotExists(key)
}

// cleanGroups trims, drops empty and repeated names, and checks each.
func cleanGroups(in []string) ([]string, error) {
	var out []string
	for _, g := range in {
		g = strings.TrimSpace(g)
		if g == "" || slices.Contains(out, g) {
			continue
		}
		if err := validText(groupField, g, 1, maxGroupNameLen); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if len(out) > MaxContactGroups {
		return nil, invalidField("groups", fmt.Sprintf("每个联系人最多 %d 个分组", MaxContactGroups), "groups: at most %d per contact", MaxContactGroups)
	}
	return out, nil
}

// splitGroups splits a group cell of an import file: groups are separated by
// ; , 、 | (ASCII or full-width).
func splitGroups(cell string) []string {
	return strings.FieldsFunc(cell, func(r rune) bool {
		switch r {
		case ';', '；', ',', '，', '、', '|', '｜':
			return true
		}
		return false
	})
}

// contactField is the field a checkContact reason is about.
var contactField = map[string]string{ReasonInvalidNumber.String(): "number", RowInvalidName: "name", RowInvalidGroup: "groups"}

// checkContact validates and normalises a contact; the error is a row
// error reason and its detail, in English and in Chinese.
func (s *Store) checkContact(in ContactInput) (number string, rec contactRec, reason, detail, detailZH string) {
	v := strings.TrimSpace(in.Number)
	if v == "" {
		return "", rec, ReasonInvalidNumber.String(), "empty number", "号码为空"
	}
	e164, err := s.cls.normalizeMobile(v)
	if err != nil {
		detail := err.Error()
		var ref *Refusal
		if errors.As(err, &ref) {
			detail = ref.Detail
		}
		return "", rec, ReasonInvalidNumber.String(), detail, DetailZH(err)
	}
	name := strings.TrimSpace(in.Name)
	if err := validText(contactNameField, name, 1, maxContactNameLen); err != nil {
		return "", rec, RowInvalidName, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "),
			fmt.Sprintf("姓名须为 1 到 %d 个字的文字", maxContactNameLen)
	}
	groups, err := cleanGroups(in.Groups)
	if err != nil {
		return "", rec, RowInvalidGroup, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "),
			fmt.Sprintf("分组名称须为 1 到 %d 个字的文字，一个联系人最多 %d 个分组", maxGroupNameLen, MaxContactGroups)
	}
	return e164, contactRec{Name: name, Groups: groups}, "", "", ""
}

// AddContact adds one contact to a book: ErrExists if its number is already
// there, ErrContactsLimit if the book is full, ErrInvalid for a bad field.
func (s *Store) AddContact(a Actor, b Book, in ContactInput) (*Contact, error) {
	key, err := s.bookKey(a, b, true)
	if err != nil {
		return nil, err
	}
	number, rec, reason, detail, zh := s.checkContact(in)
	if reason != "" {
		return nil, invalidField(contactField[reason], zh, "%s: %s", reason, detail)
	}
	rec.AddedAt, rec.AddedBy = s.now(), a.who()
	err = s.write(func(tx *bolt.Tx) error {
		bb, err := bookBucket(tx, b.Enterprise, key, true)
		if err != nil {
			return err
		}
		if bb.Get([]byte(number)) != nil {
			return fmt.Errorf("%w: %s is already in %s", ErrExists, number, b)
		}
		if bb.Stats().KeyN >= b.Limit() {
			return b.limitErr()
		}
		return putJSON(bb, number, &rec)
	})
	if err != nil {
		return nil, dbErr(err)
	}
	c := rec.contact(number)
	return &c, nil
}

// DeleteContact removes the contact with number (any format) from a book.
func (s *Store) DeleteContact(a Actor, b Book, number string) error {
	key, err := s.bookKey(a, b, true)
	if err != nil {
		return err
	}
	e164, err := s.cls.normalizeMobile(strings.TrimSpace(number))
	if err != nil {
		return fmt.Errorf("%w: contact %s", ErrNotFound, number)
	}
	return dbErr(s.write(func(tx *bolt.Tx) error {
		bb, err := bookBucket(tx, b.Enterprise, key, false)
		if err != nil {
			return err
		}
		if bb == nil || bb.Get([]byte(e164)) == nil {
			return fmt.Errorf("%w: contact %s", ErrNotFound, e164)
		}
		return bb.Delete([]byte(e164))
	}))
}

// eachContact calls fn for every contact of a readable book, in number order.
func (s *Store) eachContact(a Actor, b Book, fn func(number string, r *contactRec) error) error {
	key, err := s.bookKey(a, b, false)
	if err != nil {
		return err
	}
	return dbErr(s.db.View(func(tx *bolt.Tx) error {
		bb, err := bookBucket(tx, b.Enterprise, key, false)
		if err != nil || bb == nil {
			return err
		}
		return bb.ForEach(func(k, v []byte) error {
			var r contactRec
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("policy: contact %q of %s: %w", k, b, err)
			}
			return fn(string(k), &r)
		})
	}))
}

// Contacts lists a book, in number order: all contacts (group "") or the
// members of one group.
func (s *Store) Contacts(a Actor, b Book, group string) ([]Contact, error) {
	out := []Contact{}
	err := s.eachContact(a, b, func(n string, r *contactRec) error {
		if group == "" || slices.Contains(r.Groups, group) {
			out = append(out, r.contact(n))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ContactGroups lists the groups of a book with their sizes, by name.
func (s *Store) ContactGroups(a Actor, b Book) ([]GroupCount, error) {
	counts := map[string]int{}
	err := s.eachContact(a, b, func(_ string, r *contactRec) error {
		for _, g := range r.Groups {
			counts[g]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]GroupCount, 0, len(counts))
	for g, n := range counts {
		out = append(out, GroupCount{Name: g, Count: n})
	}
	slices.SortFunc(out, func(x, y GroupCount) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// GroupNumbers returns the E.164 numbers of the contacts of a book that
// belong to any of groups, each once, in number order. A group without any
// contact is ErrInvalid (a typo must not send to nobody in silence).
func (s *Store) GroupNumbers(a Actor, b Book, groups []string) ([]string, error) {
	want := map[string]bool{}
	for _, g := range groups {
		want[strings.TrimSpace(g)] = false
	}
	var out []string
	err := s.eachContact(a, b, func(n string, r *contactRec) error {
		in := false
		for _, g := range r.Groups {
			if _, ok := want[g]; ok {
				want[g] = true
				in = true
			}
		}
		if in {
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []string
	for g, found := range want {
		if !found {
			missing = append(missing, strconv.Quote(g))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, invalidField("groups", "分组 "+strings.Join(missing, "、")+" 中没有联系人", "group %s: no contact in %s", strings.Join(missing, ", "), b)
	}
	return out, nil
}

// ImportContacts imports a contact file into a book (its writers only):
// column A name, column B number, column C groups (separated by ; , 、 or |).
// A first row whose column B has no digit is a header; rows with no content
// are not rows. A number already in the book gets the file's name and groups
// (Updated); a number repeated in the file is merged into its first row
// (groups added). Every refused row is reported with its row number and
// reason: an empty or invalid number, an invalid name or group, and each new
// contact past the book's limit (contacts_limit); the other rows are stored in
// one transaction. More than MaxContactImportRows rows, or an unreadable file,
// fails the whole import. The caller bounds r's size.
func (s *Store) ImportContacts(a Actor, b Book, r io.Reader, f sheet.Format) (ContactImportResult, error) {
	key, err := s.bookKey(a, b, true)
	if err != nil {
		return ContactImportResult{}, err
	}
	// The header and a row past the limit are read, then refused below.
	sr, err := openImport(r, f, MaxContactImportRows+2)
	if err != nil {
		return ContactImportResult{}, err
	}
	defer sr.Close()
	type row struct {
		row         int
		raw, number string
		rec         contactRec
	}
	var rows []row
	res := ContactImportResult{Errors: []ContactRowError{}}
	first := true
	for {
		in, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ContactImportResult{}, importErr(err)
		}
		n, cell := in.N, in.Cell
		num, whole := sheet.NumericCell(strings.TrimSpace(cell(1)))
		if first {
			first = false
			if !strings.ContainsAny(num, "0123456789") && strings.TrimSpace(cell(0)+cell(1)) != "" && num != "" {
				res.HeaderRow = 1
				continue
			}
		}
		res.Rows++
		if res.Rows > MaxContactImportRows {
			return ContactImportResult{}, tooManyRows(MaxContactImportRows)
		}
		if !whole {
			res.Errors = append(res.Errors, ContactRowError{Row: n, Number: cell(1), Reason: RowNumberTruncated, Detail: TruncatedDetail(num), DetailZH: TruncatedDetailZH(num)})
			continue
		}
		e164, rec, reason, detail, detailZH := s.checkContact(ContactInput{Name: cell(0), Number: num, Groups: splitGroups(cell(2))})
		if reason != "" {
			res.Errors = append(res.Errors, ContactRowError{Row: n, Number: cell(1), Reason: reason, Detail: detail, DetailZH: detailZH})
			continue
		}
		rows = append(rows, row{n, cell(1), e164, rec})
	}
	// Repeated numbers: merged into the first row.
	at := map[string]int{}
	uniq := rows[:0]
	for _, r := range rows {
		if i, ok := at[r.number]; ok {
			merged, err := cleanGroups(append(slices.Clone(uniq[i].rec.Groups), r.rec.Groups...))
			if err != nil {
				res.Errors = append(res.Errors, ContactRowError{Row: r.row, Number: r.raw, Reason: RowInvalidGroup,
					Detail:   strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "),
					DetailZH: fmt.Sprintf("与前面同号码的行合并后超过 %d 个分组", MaxContactGroups)})
				continue
			}
			uniq[i].rec.Groups = merged
			res.Duplicates++
			continue
		}
		at[r.number] = len(uniq)
		uniq = append(uniq, r)
	}
	now := s.now()
	res0 := res
	res0.Errors = slices.Clone(res.Errors)
	err = s.write(func(tx *bolt.Tx) error {
		res = res0 // fn may run again (StoreOptions.Shared)
		res.Errors = slices.Clone(res0.Errors)
		bb, err := bookBucket(tx, b.Enterprise, key, true)
		if err != nil {
			return err
		}
		count := bb.Stats().KeyN
		for _, r := range uniq {
			rec := r.rec
			if v := bb.Get([]byte(r.number)); v != nil {
				var old contactRec
				if err := json.Unmarshal(v, &old); err != nil {
					return err
				}
				if old.Name == rec.Name && slices.Equal(old.Groups, rec.Groups) {
					res.Unchanged++
					continue
				}
				rec.AddedAt, rec.AddedBy, rec.UpdatedAt = old.AddedAt, old.AddedBy, now
				res.Updated++
			} else {
				if count >= b.Limit() {
					res.Errors = append(res.Errors, ContactRowError{Row: r.row, Number: r.raw, Reason: RowContactsLimit,
						Detail:   fmt.Sprintf("%s holds at most %d contacts", b, b.Limit()),
						DetailZH: fmt.Sprintf("通讯录最多 %d 个联系人", b.Limit())})
					continue
				}
				count++
				rec.AddedAt, rec.AddedBy = now, a.who()
				res.Added++
			}
			if err := putJSON(bb, r.number, &rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return ContactImportResult{}, dbErr(err)
	}
	slices.SortStableFunc(res.Errors, func(x, y ContactRowError) int { return x.Row - y.Row })
	return res, nil
}

// SubmitTPS is the submission rate (submissions per second) the rate limiter
// grants the enterprise: its TPS, or the configured default. Batch jobs pace
// their submissions with it rather than run into rate_limited refusals.
func (p *Policy) SubmitTPS(code string) int {
	if e, ok := p.Lookup(code); ok && e.TPS > 0 {
		return e.TPS
	}
	return p.limiter.defaultTPS
}

package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qxtd/qxtd/sheet"
)

// WhitelistState is the state of a whitelist entry.
type WhitelistState uint8

// Whitelist states. Only Approved entries may receive.
const (
	WhitelistPending  WhitelistState = iota + 1 // added by the enterprise, awaiting the account manager
	WhitelistApproved                           // usable
	WhitelistRejected                           // refused by the account manager
)

func (s WhitelistState) String() string {
	switch s {
	case WhitelistPending:
		return "pending"
	case WhitelistApproved:
		return "approved"
	case WhitelistRejected:
		return "rejected"
	}
	return "invalid"
}

// MarshalText implements encoding.TextMarshaler.
func (s WhitelistState) MarshalText() ([]byte, error) {
	if s < WhitelistPending || s > WhitelistRejected {
		return nil, fmt.Errorf("%w: whitelist state %d", ErrInvalid, uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *WhitelistState) UnmarshalText(b []byte) error {
	for v := WhitelistPending; v <= WhitelistRejected; v++ {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return invalidField("state", "状态须为 pending（待审批）、approved（已通过）、rejected（已拒绝）或 all", "unknown whitelist state %q", b)
}

// WhitelistEntry is one number of an enterprise's whitelist.
type WhitelistEntry struct {
	Number    string         `json:"number"` // E.164
	State     WhitelistState `json:"state"`
	AddedAt   time.Time      `json:"added_at"`
	AddedBy   string         `json:"added_by"`
	DecidedAt time.Time      `json:"decided_at,omitzero"`
	DecidedBy string         `json:"decided_by,omitempty"`
	Reason    string         `json:"reason,omitempty"` // why the account manager rejected it (rejected entries)
}

// wlMeta is stored after the state byte (the snapshot reads only that byte).
type wlMeta struct {
	AddedAt   time.Time `json:"a"`
	AddedBy   string    `json:"ab"`
	DecidedAt time.Time `json:"d,omitzero"`
	DecidedBy string    `json:"db,omitempty"`
	Reason    string    `json:"r,omitempty"` // a rejection's reason
}

func encodeEntry(st WhitelistState, m *wlMeta) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(st)}, js...), nil
}

func decodeEntry(k, v []byte) (WhitelistEntry, error) {
	if len(v) == 0 {
		return WhitelistEntry{}, fmt.Errorf("policy: whitelist entry %q: empty", k)
	}
	var m wlMeta
	if err := json.Unmarshal(v[1:], &m); err != nil {
		return WhitelistEntry{}, fmt.Errorf("policy: whitelist entry %q: %w", k, err)
	}
	return WhitelistEntry{Number: string(k), State: WhitelistState(v[0]), AddedAt: m.AddedAt,
		AddedBy: m.AddedBy, DecidedAt: m.DecidedAt, DecidedBy: m.DecidedBy, Reason: m.Reason}, nil
}

// RowError is one refused input row (or list item) of an import or a bulk
// operation: Row is 1-based (the line of a CSV file, the row of a sheet, the
// position in a list).
type RowError struct {
	Row    int    `json:"row"`
	Value  string `json:"value"`
	Reason string `json:"reason"` // invalid_number or number_truncated
	Detail string `json:"detail"`
	// DetailZH is Detail in Chinese, as the consoles show it.
	DetailZH string `json:"detail_zh,omitempty"`
}

func (e RowError) Error() string {
	return fmt.Sprintf("row %d: %q: %s", e.Row, e.Value, e.Detail)
}

// ImportResult accounts for every row: Rows == Added + Duplicates +
// len(Errors), and len(Listed) == Duplicates.
type ImportResult struct {
	Rows       int        `json:"rows"`       // data rows read (header and blank rows excluded)
	Added      int        `json:"added"`      // entries created, or moved back to pending (re-submitted after a rejection) or, by the operator, to approved
	Duplicates int        `json:"duplicates"` // already in that state, or repeated within the input
	HeaderRow  int        `json:"header_row"` // 1 if the first row was taken as a header (its column A has no digit), else 0
	Errors     []RowError `json:"errors"`
	// Listed names each duplicate row: reason RowAlreadyListed, the detail
	// saying the entry's state (or the earlier row of the input).
	Listed []RowError `json:"listed"`
}

// BulkResult is the outcome of a bulk decision or removal.
type BulkResult struct {
	Changed   int        `json:"changed"`
	Unchanged int        `json:"unchanged"` // already in the requested state
	NotFound  []string   `json:"not_found"` // valid numbers that are not on the whitelist
	Errors    []RowError `json:"errors"`    // invalid numbers
}

type inputRow struct {
	row       int
	value     string
	truncated bool // scientific notation that lost digits (sheet.NumericCell)
}

type validRow struct {
	row  int
	raw  string
	e164 string
}

// listedDetail says why a number already on the whitelist was not added.
func listedDetail(e164 string, st WhitelistState) string {
	switch st {
	case WhitelistPending:
		return e164 + ": already on the whitelist, awaiting the account manager's approval"
	case WhitelistApproved:
		return e164 + ": already on the whitelist, approved"
	}
	return e164 + ": already on the whitelist, " + st.String()
}

// listedDetailZH is listedDetail in Chinese.
func listedDetailZH(e164 string, st WhitelistState) string {
	switch st {
	case WhitelistPending:
		return e164 + "：已在白名单中，等待客户经理审批"
	case WhitelistApproved:
		return e164 + "：已在白名单中，已通过审批"
	case WhitelistRejected:
		return e164 + "：已在白名单中，已被客户经理拒绝"
	}
	return e164 + "：已在白名单中"
}

// repeatsZH is the Chinese detail of a row whose number an earlier row
// of the same list or file has.
func repeatsZH(e164 string, first int) string {
	return fmt.Sprintf("%s：与第 %d 行重复", e164, first)
}

// classifyRows normalises the rows' numbers; empty and invalid ones become errors.
func (s *Store) classifyRows(rows []inputRow) (ok []validRow, errs []RowError) {
	for _, r := range rows {
		v := strings.TrimSpace(r.value)
		switch {
		case v == "":
			errs = append(errs, RowError{Row: r.row, Value: r.value, Reason: ReasonInvalidNumber.String(), Detail: "empty number", DetailZH: "号码为空"})
			continue
		case r.truncated:
			errs = append(errs, RowError{Row: r.row, Value: r.value, Reason: RowNumberTruncated, Detail: TruncatedDetail(v), DetailZH: TruncatedDetailZH(v)})
			continue
		}
		e164, err := s.cls.normalizeMobile(v)
		if err != nil {
			var ref *Refusal
			detail := err.Error()
			if errors.As(err, &ref) {
				detail = ref.Detail
			}
			errs = append(errs, RowError{Row: r.row, Value: r.value, Reason: ReasonInvalidNumber.String(), Detail: detail, DetailZH: DetailZH(err)})
			continue
		}
		ok = append(ok, validRow{r.row, r.value, e164})
	}
	return ok, errs
}

func listRows(numbers []string) []inputRow {
	rows := make([]inputRow, len(numbers))
	for i, n := range numbers {
		rows[i] = inputRow{row: i + 1, value: n}
	}
	return rows
}

// Bounds of an enterprise's whitelist (StoreOptions.MaxWhitelist,
// MaxPendingWhitelist): any user of an enterprise may add numbers, and
// without a bound imports of 100,000 rows again and again grew its
// whitelist without end (the 139 block alone has 100 million numbers),
// every entry held in memory and every import holding the store's writer
// longer than the last (0.5 s at the start, 1.7 s at 1 million entries;
// BenchmarkWhitelistImportFlood).
const (
	// DefaultMaxWhitelist bounds the entries in any state: rejected ones
	// count too until an admin removes them.
	DefaultMaxWhitelist = 200_000
	// DefaultMaxPendingWhitelist bounds the entries awaiting the account
	// manager: more than a person reviews before they go stale.
	DefaultMaxPendingWhitelist = 10_000
)

// AddWhitelist adds numbers to an enterprise's whitelist (any of its users,
// or the operator). Entries added by the enterprise are pending until the
// account manager decides, so a plain user's request gives nobody a number
// to send to; a rejected entry added again goes back to pending. Entries
// added by the operator are approved at once. Invalid numbers are reported
// per item, the others are added, as many as the bounds allow: a number
// past them is refused per item too, whitelist_limit (a new entry beyond
// StoreOptions.MaxWhitelist) or pending_limit (a pending one beyond
// StoreOptions.MaxPendingWhitelist), the items before it added.
func (s *Store) AddWhitelist(a Actor, code string, numbers []string) (ImportResult, error) {
	if !a.member(code) {
		return ImportResult{}, ErrForbidden
	}
	return s.addRows(a, code, listRows(numbers), 0)
}

// openImport starts reading an imported file: maxRows rows with content at
// most (a header included), its size bounded by the caller.
func openImport(r io.Reader, f sheet.Format, maxRows int) (*sheet.Reader, error) {
	sr, err := sheet.Open(r, sheet.Options{Format: f, Limits: sheet.Limits{MaxBytes: math.MaxInt64, MaxRows: maxRows}})
	if err != nil {
		return nil, importErr(err)
	}
	return sr, nil
}

// importErr is a file that cannot be read: ErrInvalid, the sheet's error
// (and the reader's, e.g. an http.MaxBytesError) still reachable.
func importErr(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// ImportWhitelist imports column A of a file as AddWhitelist does: CSV
// (UTF-8, GB18030, UTF-16; comma or tab separated) or XLSX (first sheet),
// as package sheet reads them. A first row whose column A has no digit is a
// header. Rows with no content at all are not rows; a row with content but
// an empty column A is an error, as is every invalid number: each reported
// with its row number, never dropped, as is every row past the
// whitelist's bounds (AddWhitelist). More than MaxImportRows rows, or an
// unreadable file, fails the whole import (nothing is added). The caller
// bounds r's size.
func (s *Store) ImportWhitelist(a Actor, code string, r io.Reader, f sheet.Format) (ImportResult, error) {
	if !a.member(code) {
		return ImportResult{}, ErrForbidden
	}
	rows, header, err := s.readNumberColumn(r, f)
	if err != nil {
		return ImportResult{}, err
	}
	return s.addRows(a, code, rows, header)
}

// readNumberColumn reads column A of an imported file of numbers (a
// whitelist's, an opt-out list's): its rows with content, and 1 if the
// first was taken as a header (its column A has no digit), else 0.
func (s *Store) readNumberColumn(r io.Reader, f sheet.Format) (rows []inputRow, header int, err error) {
	sr, err := openImport(r, f, s.opts.MaxImportRows)
	if err != nil {
		return nil, 0, err
	}
	defer sr.Close()
	for {
		row, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, importErr(err)
		}
		v, whole := sheet.NumericCell(row.Cell(0))
		rows = append(rows, inputRow{row: row.N, value: v, truncated: !whole})
	}
	if len(rows) > 0 && rows[0].row == 1 && strings.TrimSpace(rows[0].value) != "" &&
		!strings.ContainsAny(rows[0].value, "0123456789") {
		header = 1
		rows = rows[1:]
	}
	return rows, header, nil
}

func tooManyRows(max int) error {
	return invalidField("file", fmt.Sprintf("文件超过 %d 行：请分成几个文件上传", max), "import: more than %d rows", max)
}

func (s *Store) addRows(a Actor, code string, rows []inputRow, header int) (ImportResult, error) {
	res := ImportResult{Rows: len(rows), HeaderRow: header}
	valid, errs := s.classifyRows(rows)
	res.Errors = errs
	target := WhitelistPending
	if a.Operator {
		target = WhitelistApproved
	}
	now := s.now()
	res0 := res
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		res = res0                             // fn may run again (StoreOptions.Shared)
		res.Errors = slices.Clone(res0.Errors) // its appends must not write into res0's array
		if e, err := loadEnterprise(tx, code); err != nil {
			return err
		} else if e == nil {
			return fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
		}
		b, err := tx.Bucket(bucketWhitelist).CreateBucketIfNotExists([]byte(code))
		if err != nil {
			return err
		}
		total, pending := s.whitelistSize(code)
		seen := make(map[string]int, len(valid)) // E.164 → its first row
		for _, r := range valid {
			if first, ok := seen[r.e164]; ok {
				res.Duplicates++
				res.Listed = append(res.Listed, RowError{Row: r.row, Value: r.raw, Reason: RowAlreadyListed,
					Detail: fmt.Sprintf("%s: repeats row %d", r.e164, first), DetailZH: repeatsZH(r.e164, first)})
				continue
			}
			seen[r.e164] = r.row
			m := wlMeta{AddedAt: now, AddedBy: a.who()}
			var oldState WhitelistState // 0: a new entry
			if v := b.Get([]byte(r.e164)); v != nil {
				old, err := decodeEntry([]byte(r.e164), v)
				if err != nil {
					return err
				}
				if old.State == target || old.State == WhitelistApproved && !a.Operator {
					res.Duplicates++
					res.Listed = append(res.Listed, RowError{Row: r.row, Value: r.raw, Reason: RowAlreadyListed,
						Detail: listedDetail(r.e164, old.State), DetailZH: listedDetailZH(r.e164, old.State)})
					continue
				}
				if old.State == WhitelistPending || a.Operator {
					m.AddedAt, m.AddedBy = old.AddedAt, old.AddedBy
				}
				oldState = old.State
			}
			if refused := s.overBounds(r, oldState, target, total, pending); refused != nil {
				res.Errors = append(res.Errors, *refused)
				continue
			}
			if oldState == 0 {
				total++
			}
			if target == WhitelistPending { // new, or rejected before
				pending++
			} // else the operator's, approved: its rows are not held to the pending bound
			if a.Operator {
				m.DecidedAt, m.DecidedBy = now, a.who()
			}
			val, err := encodeEntry(target, &m)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.e164), val); err != nil {
				return err
			}
			ch.wlKey(code, r.e164)
			res.Added++
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	slices.SortStableFunc(res.Errors, func(x, y RowError) int { return x.Row - y.Row })
	return res, nil
}

// whitelistSize returns the entries of code's whitelist and its pending
// ones, from the snapshot: inside update it is the state the write starts
// from (s.mu orders the writes and their publication; with
// StoreOptions.Shared a write only commits on the latest data, whose hooks
// ran before it), and it costs nothing, where counting the file would read
// every entry at each write.
func (s *Store) whitelistSize(code string) (total, pending int) {
	if es := s.snap.Load().ents[code]; es != nil {
		return len(es.wl), es.pending()
	}
	return 0, 0
}

// overBounds refuses the row r that would move an entry from oldState (0:
// none yet) to target when its whitelist holds total entries, pending of
// them pending; nil if it may.
func (s *Store) overBounds(r validRow, oldState, target WhitelistState, total, pending int) *RowError {
	if n := s.opts.MaxWhitelist; oldState == 0 && total >= n {
		return &RowError{Row: r.row, Value: r.raw, Reason: RowWhitelistLimit,
			Detail:   fmt.Sprintf("%s: the whitelist holds at most %d numbers, pending, approved and rejected together: remove numbers no longer needed first", r.e164, n),
			DetailZH: fmt.Sprintf("%s：白名单最多 %d 个号码（待审批、已通过和已拒绝的合计），请先删除不再需要的号码", r.e164, n)}
	}
	if n := s.opts.MaxPendingWhitelist; target == WhitelistPending && pending >= n {
		return &RowError{Row: r.row, Value: r.raw, Reason: RowPendingLimit,
			Detail:   fmt.Sprintf("%s: at most %d numbers may await the account manager's approval: add more once some are decided", r.e164, n),
			DetailZH: fmt.Sprintf("%s：最多 %d 个号码同时等待客户经理审批，请待部分号码审批后再添加", r.e164, n)}
	}
	return nil
}

// RemoveWhitelist removes numbers, in any state (the enterprise's admins, or
// the operator). Effective for sending at once.
func (s *Store) RemoveWhitelist(a Actor, code string, numbers []string) (BulkResult, error) {
	if !a.admin(code) {
		return BulkResult{}, ErrForbidden
	}
	return s.bulk(code, numbers, func(b *bolt.Bucket, key []byte, _ WhitelistEntry) (bool, error) {
		return true, b.Delete(key)
	})
}

// MaxDecisionReason bounds a rejection's reason, in characters.
const MaxDecisionReason = 200

func (s *Store) wlBucket(tx *bolt.Tx, code string) (*bolt.Bucket, error) {
	if e, err := loadEnterprise(tx, code); err != nil {
		return nil, err
	} else if e == nil {
		return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
	}
	return tx.Bucket(bucketWhitelist).Bucket([]byte(code)), nil
}

func (s *Store) bulk(code string, numbers []string, fn func(*bolt.Bucket, []byte, WhitelistEntry) (bool, error)) (BulkResult, error) {
	var res BulkResult
	valid, errs := s.classifyRows(listRows(numbers))
	res.Errors = errs
	err := s.update(func(tx *bolt.Tx, ch *change) error {
		res = BulkResult{Errors: errs} // fn may run again (StoreOptions.Shared)
		b, err := s.wlBucket(tx, code)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, r := range valid {
			if seen[r.e164] {
				continue
			}
			seen[r.e164] = true
			var v []byte
			if b != nil {
				v = b.Get([]byte(r.e164))
			}
			if v == nil {
				res.NotFound = append(res.NotFound, r.e164)
				continue
			}
			e, err := decodeEntry([]byte(r.e164), v)
			if err != nil {
				return err
			}
			changed, err := fn(b, []byte(r.e164), e)
			if err != nil {
				return err
			}
			if changed {
				res.Changed++
				ch.wlKey(code, r.e164)
			} else {
				res.Unchanged++
			}
		}
		return nil
	})
	if err != nil {
		return BulkResult{}, err
	}
	return res, nil
}

// Page size bounds of ListWhitelist.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListWhitelist returns up to limit entries of an enterprise's whitelist in
// the given state (0: all), in number order, starting after the number
// `after` (""; the first page). next is the cursor of the following page, ""
// at the end. Members of the enterprise and the operator may list. This reads
// the file (an admin operation, not the sending path).
func (s *Store) ListWhitelist(a Actor, code string, st WhitelistState, after string, limit int) (entries []WhitelistEntry, next string, err error) {
	if !a.member(code) {
		return nil, "", ErrForbidden
	}
	limit = pageLimit(limit)
	err = s.db.View(func(tx *bolt.Tx) error {
		b, err := s.wlBucket(tx, code)
		if err != nil || b == nil {
			return err
		}
		c := b.Cursor()
		k, v := seekAfter(c, after)
		for ; k != nil; k, v = c.Next() {
			if st != 0 && (len(v) == 0 || WhitelistState(v[0]) != st) {
				continue
			}
			if len(entries) == limit {
				next = entries[len(entries)-1].Number
				return nil
			}
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", dbErr(err)
	}
	return entries, next, nil
}

// WhitelistCounts returns the number of entries per state (members and the
// operator; from memory).
func (s *Store) WhitelistCounts(a Actor, code string) (map[WhitelistState]int, error) {
	if !a.member(code) {
		return nil, ErrForbidden
	}
	es := s.snap.Load().ents[code]
	if es == nil {
		return nil, fmt.Errorf("%w: enterprise %s", ErrNotFound, code)
	}
	out := map[WhitelistState]int{}
	for _, st := range es.wl {
		out[st]++
	}
	return out, nil
}

// Allowed reports whether e164 ("+86…") is an approved whitelist entry of the
// enterprise. Memory only, O(1); for the daemon's use (no actor check).
func (s *Store) Allowed(code, e164 string) bool {
	st, ok := s.WhitelistStatus(code, e164)
	return ok && st == WhitelistApproved
}

// WhitelistStatus returns the state of e164 in the enterprise's whitelist
// (ok false: not on it). Memory only.
func (s *Store) WhitelistStatus(code, e164 string) (WhitelistState, bool) {
	es := s.snap.Load().ents[code]
	if es == nil {
		return 0, false
	}
	nat, ok := nationalOf(e164)
	if !ok {
		return 0, false
	}
	st, ok := es.wl[nat]
	return st, ok
}

// whitelistInfo is WhitelistStatus plus a rejected entry's reason.
func (s *Store) whitelistInfo(code, e164 string) (st WhitelistState, why string, ok bool) {
	es := s.snap.Load().ents[code]
	if es == nil {
		return 0, "", false
	}
	nat, ok := nationalOf(e164)
	if !ok {
		return 0, "", false
	}
	st, ok = es.wl[nat]
	return st, es.why[nat], ok
}

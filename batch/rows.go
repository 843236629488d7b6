package batch

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

// FieldError is a request that does not fit its file's header: a template
// field or number column that names no column, or a malformed template.
// Reason is "unknown_field" or "invalid".
type FieldError struct{ Reason, Msg string }

func (e *FieldError) Error() string { return e.Msg }

// RowsOptions say how to read a batch file.
type RowsOptions struct {
	Format       sheet.Format // a hint: the content decides
	Template     string       // "": a batch file (column A number, column B text)
	NumberColumn string       // the template's number column ("": found by its header)
	MaxBytes     int64        // of the file
	TempDir      string       // XLSX: unpacked sheets
}

// Rows is an open batch file: its rows as numbers and texts.
type Rows struct {
	sr      *sheet.Reader
	file    io.Closer // nil once not needed
	pending *sheet.Row
	spec    rowSpec
}

// rowSpec turns a row's cells into a number and a text, or a row error.
type rowSpec func(row sheet.Row) (number, text, reason, msg string)

// OpenRows starts reading a batch file and checks its header against the
// options: a *FieldError if they do not fit, another error if the file
// cannot be read or has no data row. It takes ownership of f.
func OpenRows(f io.ReadCloser, o RowsOptions) (*Rows, error) {
	rs, err := openSheet(f, o, o.Template != "") // template fields as Excel shows them (dates, amounts)
	if err != nil {
		return nil, err
	}
	if o.Template != "" {
		rs.spec, err = rs.templateSpec(o.Template, o.NumberColumn)
	} else {
		rs.spec, err = rs.batchSpec()
	}
	if err != nil {
		rs.Close()
		return nil, err
	}
	return rs, nil
}

// openSheet opens f as a sheet, with cells as Excel shows them too if
// shown. It takes ownership of f.
func openSheet(f io.ReadCloser, o RowsOptions, shown bool) (*Rows, error) {
	sr, err := sheet.Open(f, sheet.Options{Format: o.Format, Limits: sheet.Limits{MaxBytes: o.MaxBytes}, TempDir: o.TempDir,
		Shown: shown})
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("the file cannot be read: %w", err)
	}
	rs := &Rows{sr: sr, file: f}
	if sr.Format() == sheet.XLSX { // read whole by Open
		_ = f.Close()
		rs.file = nil
	}
	return rs, nil
}

// Limits of Head: what it returns is kept by a staged upload for half
// an hour and shown on every read of it, so it is bounded whatever the
// file holds (a 1 MiB header of commas was a million columns).
const (
	// HeadCellBytes: bytes of a cell, header or data, cut beyond (Clip).
	HeadCellBytes = 256
	// HeadMaxBytes: bytes of the cells in all. The header is always there
	// (sheet's 1,024 columns × HeadCellBytes fit); data rows past this are
	// left out.
	HeadMaxBytes = 256 << 10
)

// Head reads the header row and the first n data rows of a templated
// send's file as OpenRows reads them with a template: the header's cells
// trimmed (what a {column} field and number_column name), the data cells
// as Excel shows them, each row cut or padded to the header's width. It
// takes ownership of f (closed on return). A file without a header row
// is an error; one without data rows is not (the send refuses it).
//
// The cells are copies, each cut to HeadCellBytes, and the data rows stop
// before they pass HeadMaxBytes with the header: cut tells that something
// was. A header name longer than HeadCellBytes is returned cut (a
// template must name it in full).
func Head(f io.ReadCloser, o RowsOptions, n int) (header []string, rows [][]string, cut bool, err error) {
	rs, err := openSheet(f, o, true)
	if err != nil {
		return nil, nil, false, err
	}
	defer rs.Close()
	h, err := rs.sr.Next()
	if err == io.EOF {
		return nil, nil, false, errors.New("the file has no header row")
	}
	if err != nil {
		return nil, nil, false, err
	}
	// keep copies cell, cut short; size counts what is kept.
	size := 0
	keep := func(cell string) string {
		cell = strings.TrimSpace(cell)
		if len(cell) > HeadCellBytes {
			cut = true
		}
		cell = Clip(cell, HeadCellBytes)
		size += len(cell)
		return cell
	}
	for _, c := range h.Cells {
		header = append(header, keep(c))
	}
	for len(rows) < n {
		row, err := rs.sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, false, err
		}
		cells := make([]string, len(header))
		for i := range cells {
			cells[i] = keep(row.ShownCell(i))
		}
		if size > HeadMaxBytes { // the row is left out whole
			cut = true
			break
		}
		rows = append(rows, cells)
	}
	return header, rows, cut, nil
}

// Row is a data row of a batch file as a job sends it: the number and the
// text (a templated send's filled in), or the row error that refuses it.
type Row struct {
	N       int // the line of a CSV file, the row of a sheet
	Number  string
	Text    string
	Reason  string // "" unless the row is refused before it is sent
	Message string
}

// Next returns the next data row as a job reads it (io.EOF at the end): a
// preview of a templated send reads its first rows with it.
func (rs *Rows) Next() (Row, error) {
	row, err := rs.next()
	if err != nil {
		return Row{}, err
	}
	number, text, reason, msg := rs.spec(row)
	return Row{N: row.N, Number: number, Text: text, Reason: reason, Message: msg}, nil
}

// Close releases the file.
func (rs *Rows) Close() {
	_ = rs.sr.Close()
	if rs.file != nil {
		_ = rs.file.Close()
	}
}

// readAhead reads the first data row (to be returned by next), or fails
// with msg when there is none.
func (rs *Rows) readAhead(msg string) error {
	row, err := rs.sr.Next()
	if err == io.EOF {
		return errors.New(msg)
	}
	if err != nil {
		return err
	}
	rs.keep(row)
	return nil
}

func (rs *Rows) keep(row sheet.Row) {
	rs.pending = &sheet.Row{N: row.N, Cells: slices.Clone(row.Cells), Shown: slices.Clone(row.Shown)}
}

// next returns the next row, first the one read ahead by the spec.
func (rs *Rows) next() (sheet.Row, error) {
	if p := rs.pending; p != nil {
		rs.pending = nil
		return *p, nil
	}
	return rs.sr.Next()
}

// batchSpec: column A the number, column B the text; a first row whose
// column A has no digit is a header.
func (rs *Rows) batchSpec() (rowSpec, error) {
	row, err := rs.sr.Next()
	if err == io.EOF {
		return nil, errors.New("the file has no rows")
	}
	if err != nil {
		return nil, err
	}
	if a := strings.TrimSpace(row.Cell(0)); a != "" && !strings.ContainsAny(a, "0123456789") {
		if err := rs.readAhead("the file has no data row below its header"); err != nil {
			return nil, err
		}
	} else {
		rs.keep(row)
	}
	return func(row sheet.Row) (string, string, string, string) {
		number, ok := sheet.NumericCell(strings.TrimSpace(row.Cell(0)))
		text := strings.TrimSpace(row.Cell(1))
		switch {
		case number == "":
			return "", "", policy.ReasonInvalidNumber.String(), "empty number (column A)"
		case !ok:
			return number, "", policy.RowNumberTruncated, "column A: " + policy.TruncatedDetail(number)
		case text == "":
			return number, "", policy.RowEmptyText, "empty text (column B)"
		}
		return number, text, "", ""
	}, nil
}

// numberHeaders are the header names taken as the number column when the
// request names none.
var numberHeaders = []string{"号码", "手机号", "手机号码", "手机", "电话", "number", "mobile", "phone"}

// templateSpec reads the header row and compiles the template against it.
func (rs *Rows) templateSpec(tmpl, numberColumn string) (rowSpec, error) {
	header, err := rs.sr.Next()
	if err == io.EOF {
		return nil, errors.New("the file has no header row")
	}
	if err != nil {
		return nil, err
	}
	cols := map[string]int{}
	dup := map[string]bool{}
	var names []string
	for i, h := range header.Cells {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, ok := cols[h]; ok {
			dup[h] = true
			continue
		}
		cols[h] = i
		names = append(names, h)
	}
	known := func() string { return "the header has " + strings.Join(names, ", ") }
	numCol := -1
	if numberColumn != "" {
		i, ok := cols[strings.TrimSpace(numberColumn)]
		if !ok {
			return nil, &FieldError{"unknown_field", fmt.Sprintf("number_column %q is not a column: %s", numberColumn, known())}
		}
		numCol = i
	} else {
		for _, h := range names {
			if slices.ContainsFunc(numberHeaders, func(n string) bool { return strings.EqualFold(n, h) }) {
				numCol = cols[h]
				break
			}
		}
		if numCol < 0 {
			return nil, &FieldError{"invalid", "number_column is required: no column is headed 号码 or 手机号; " + known()}
		}
	}
	parts, err := compileTemplate(tmpl)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if !p.field {
			continue
		}
		c, ok := cols[p.text]
		if !ok {
			return nil, &FieldError{"unknown_field", fmt.Sprintf("template field {%s} is not a column: %s", p.text, known())}
		}
		if dup[p.text] {
			return nil, &FieldError{"invalid", fmt.Sprintf("template field {%s}: two columns have that header", p.text)}
		}
		parts[i].col = c
	}
	numName := strings.TrimSpace(header.Cell(numCol))
	if err := rs.readAhead("the file has no data row below its header"); err != nil {
		return nil, err
	}
	return func(row sheet.Row) (string, string, string, string) {
		number, ok := sheet.NumericCell(strings.TrimSpace(row.Cell(numCol)))
		switch {
		case number == "":
			return "", "", policy.ReasonInvalidNumber.String(), "empty number (column " + numName + ")"
		case !ok:
			return number, "", policy.RowNumberTruncated, "column " + numName + ": " + policy.TruncatedDetail(number)
		}
		var b strings.Builder
		for _, p := range parts {
			if !p.field {
				b.WriteString(p.text)
				continue
			}
			v := strings.TrimSpace(row.ShownCell(p.col))
			if v == "" {
				return number, "", policy.RowEmptyField, "empty field {" + p.text + "}"
			}
			b.WriteString(v)
		}
		return number, b.String(), "", ""
	}, nil
}

type tmplPart struct {
	field bool
	text  string // literal text, or the field's column name
	col   int
}

// compileTemplate splits a template into literal text and {column} fields;
// "{{" and "}}" stand for literal braces.
func compileTemplate(t string) ([]tmplPart, error) {
	// A template that is not UTF-8 (a form field or a query parameter is
	// bytes) made every row's text invalid: each row was then refused by
	// the gateway one by one, for a fault of the request.
	if !utf8.ValidString(t) {
		return nil, &FieldError{"invalid", "template: not UTF-8 text"}
	}
	var parts []tmplPart
	var lit strings.Builder
	fields := 0
	for i := 0; i < len(t); {
		switch {
		case strings.HasPrefix(t[i:], "{{"):
			lit.WriteByte('{')
			i += 2
		case strings.HasPrefix(t[i:], "}}"):
			lit.WriteByte('}')
			i += 2
		case t[i] == '{':
			end := strings.IndexByte(t[i+1:], '}')
			if end < 0 {
				return nil, &FieldError{"invalid", fmt.Sprintf("template: { at byte %d is not closed (write {{ for a brace)", i)}
			}
			name := strings.TrimSpace(t[i+1 : i+1+end])
			if name == "" || strings.ContainsRune(name, '{') {
				return nil, &FieldError{"invalid", fmt.Sprintf("template: empty or malformed field at byte %d", i)}
			}
			if lit.Len() > 0 {
				parts = append(parts, tmplPart{text: lit.String()})
				lit.Reset()
			}
			parts = append(parts, tmplPart{field: true, text: name})
			fields++
			i += end + 2
		case t[i] == '}':
			return nil, &FieldError{"invalid", fmt.Sprintf("template: } at byte %d without { (write }} for a brace)", i)}
		default:
			lit.WriteByte(t[i])
			i++
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{text: lit.String()})
	}
	if fields == 0 {
		return nil, &FieldError{"invalid", "template: no {column} field (for one text to every row, use a batch file or a group send)"}
	}
	return parts, nil
}

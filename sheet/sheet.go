package sheet

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"mime"
	"path/filepath"
	"strconv"
	"strings"
)

// Format is the format of a file.
type Format uint8

// Formats. Detect (the zero value) lets the content decide.
const (
	Detect Format = iota
	CSV
	XLSX
	XLS // recognised, never read: ErrUnsupported
)

func (f Format) String() string {
	switch f {
	case Detect:
		return "detect"
	case CSV:
		return "CSV"
	case XLSX:
		return "XLSX"
	case XLS:
		return "XLS"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// FormatOf picks the format from a file name's extension (.csv and .txt are
// CSV, .xlsx is XLSX, .xls is XLS); ok is false for any other name.
func FormatOf(name string) (f Format, ok bool) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv", ".txt":
		return CSV, true
	case ".xlsx":
		return XLSX, true
	case ".xls":
		return XLS, true
	}
	return Detect, false
}

// FormatOfType picks the format from an upload's Content-Type: CSV
// (text/csv, text/plain, application/csv, text/comma-separated-values)
// or XLSX (XLSXContentType). Like the name, it is a hint: Open looks at
// the content.
func FormatOfType(contentType string) (f Format, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return Detect, false
	}
	switch mt {
	case "text/csv", "text/plain", "application/csv", "text/comma-separated-values":
		return CSV, true
	case XLSXContentType:
		return XLSX, true
	}
	return Detect, false
}

// XLSXContentType is the media type of an XLSX workbook.
const XLSXContentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

var (
	zipMagic = []byte("PK\x03\x04")
	oleMagic = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}
)

// Sniff tells the format from the first bytes of a file (8 are enough): XLSX
// for a zip archive, XLS for an OLE2 compound file, else Detect (text: CSV
// if anything).
func Sniff(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, zipMagic):
		return XLSX
	case len(head) >= 4 && bytes.HasPrefix(oleMagic, head[:min(len(head), len(oleMagic))]):
		return XLS
	}
	return Detect
}

// MaxColumns is the most cells a row may have, in either format: a CSV
// record of more cells, or an XLSX row with a value past column AMJ, is
// ErrLimit. A caller that pads rows to the header's width (a templated
// send's preview) would otherwise hold a million cells a row from 1 MiB of
// commas.
const MaxColumns = 1024

// Limits bound what a file may hold. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	MaxBytes    int64 // bytes of the file as uploaded
	MaxRows     int   // rows with content (a header row included)
	MaxCell     int   // bytes of one cell, as UTF-8
	MaxRow      int   // bytes of one row: a CSV record as decoded, the cells of a sheet row
	MaxUnpacked int64 // XLSX: bytes the archive may inflate to (temporary files)
	// MaxSharedStrings: XLSX: strings of the shared strings table (excelize
	// keeps an index of about 50 bytes per string in memory).
	MaxSharedStrings int
}

// DefaultLimits are the limits of a zero Limits field.
var DefaultLimits = Limits{
	MaxBytes:    64 << 20,
	MaxRows:     1_000_000,
	MaxCell:     32 << 10,
	MaxRow:      1 << 20,
	MaxUnpacked: 1 << 30,

	MaxSharedStrings: 1_000_000,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxRows <= 0 {
		l.MaxRows = d.MaxRows
	}
	if l.MaxCell <= 0 {
		l.MaxCell = d.MaxCell
	}
	if l.MaxRow <= 0 {
		l.MaxRow = d.MaxRow
	}
	if l.MaxUnpacked <= 0 {
		l.MaxUnpacked = d.MaxUnpacked
	}
	if l.MaxSharedStrings <= 0 {
		l.MaxSharedStrings = d.MaxSharedStrings
	}
	return l
}

// Options of Open.
type Options struct {
	// Format is a hint (from the file's name or Content-Type): a zip archive
	// is XLSX whatever it says; given XLSX, anything else is ErrMalformed.
	Format Format
	Limits Limits
	// Shown also reads each XLSX cell as Excel shows it, into Row.Shown:
	// for text that fills a template (a date, an amount with its format).
	// Row.Cells are always the values as stored, so that a number cell
	// formatted "0.00E+00" is "8613912345678", not "8.61E+12".
	Shown bool
	// TempDir holds an XLSX file as uploaded and its unpacked sheets ("":
	// os.TempDir()).
	TempDir string
}

// Row is one row with content.
type Row struct {
	N     int      // 1-based: the CSV line where it starts, the sheet's row
	Cells []string // as stored; valid until the next call of Next
	// Shown: with Options.Shown, the cells of an XLSX row as Excel shows
	// them (for CSV the same as Cells); else nil.
	Shown []string
}

// ShownCell is cell i as shown, "" past the row's end; Cell(i) when the
// reader was opened without Options.Shown.
func (r Row) ShownCell(i int) string {
	if r.Shown == nil {
		return r.Cell(i)
	}
	if i >= 0 && i < len(r.Shown) {
		return r.Shown[i]
	}
	return ""
}

// Cell is cell i of the row, "" past its end.
func (r Row) Cell(i int) string {
	if i >= 0 && i < len(r.Cells) {
		return r.Cells[i]
	}
	return ""
}

// Reader reads the rows of one file.
type Reader struct {
	format Format
	lim    Limits
	shown  bool // Options.Shown
	rows   int  // rows returned
	csv    *csvReader
	xlsx   *xlsxReader
	err    error // sticky
}

// Open starts reading r. Close the Reader when done (it does not close r).
func Open(r io.Reader, opts Options) (*Reader, error) {
	lim := opts.Limits.withDefaults()
	src := &countingReader{r: r, max: lim.MaxBytes}
	br := bufio.NewReaderSize(src, sniffSize)
	head, err := br.Peek(len(oleMagic))
	if err != nil && err != io.EOF {
		return nil, csvErr(0, lim, err)
	}
	format, refusal := decide(opts.Format, Sniff(head))
	if refusal != nil {
		// As excelize would: read the file whole first, so that a file over
		// the limit (or a failing source) is that, whatever else is wrong.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, csvErr(0, lim, err)
		}
		return nil, refusal
	}
	sr := &Reader{format: format, lim: lim, shown: opts.Shown}
	if format == XLSX {
		sr.xlsx, err = openXLSX(br, src, lim, opts)
	} else {
		sr.csv, err = openCSV(br, src, lim)
	}
	if err != nil {
		return nil, err
	}
	return sr, nil
}

// decide is the format to read, given the caller's hint and the content.
func decide(hint, content Format) (Format, error) {
	switch {
	case content == XLS:
		return 0, rowErr(0, ErrUnsupported, "XLS (Excel 97–2003) files are not supported: save the sheet as .xlsx or .csv")
	case content == XLSX:
		return XLSX, nil
	case hint == XLSX:
		return 0, rowErr(0, ErrMalformed, "not an XLSX file (no zip archive)")
	case hint == XLS:
		return 0, rowErr(0, ErrMalformed, "not an XLS file")
	case hint == Detect, hint == CSV:
		return CSV, nil
	}
	return 0, rowErr(0, ErrUnsupported, "%v", hint)
}

// Format is the format being read: CSV or XLSX.
func (r *Reader) Format() Format { return r.format }

// Next returns the next row with content, io.EOF after the last. After an
// error (an *Error) every call returns it again.
func (r *Reader) Next() (Row, error) {
	if r.err != nil {
		return Row{}, r.err
	}
	var row Row
	var err error
	if r.csv != nil {
		row, err = r.csv.next()
	} else {
		row, err = r.xlsx.next()
	}
	if err == nil {
		if r.shown && row.Shown == nil {
			row.Shown = row.Cells
		}
		err = r.check(row)
	}
	if err != nil {
		r.err = err
		return Row{}, err
	}
	r.rows++
	return row, nil
}

// check applies the row and cell limits to a row with content.
func (r *Reader) check(row Row) error {
	if r.rows >= r.lim.MaxRows {
		return rowErr(row.N, ErrLimit, "more than %d rows", r.lim.MaxRows)
	}
	total := 0
	for i, c := range row.Cells {
		if len(c) > r.lim.MaxCell {
			return rowErr(row.N, ErrLimit, "cell %s holds %d bytes (at most %d)", columnName(i), len(c), r.lim.MaxCell)
		}
		total += len(c)
	}
	for i, c := range row.Shown {
		if len(c) > r.lim.MaxCell {
			return rowErr(row.N, ErrLimit, "cell %s holds %d bytes as shown (at most %d)", columnName(i), len(c), r.lim.MaxCell)
		}
	}
	if total > r.lim.MaxRow {
		return rowErr(row.N, ErrLimit, "the row holds %d bytes (at most %d)", total, r.lim.MaxRow)
	}
	return nil
}

// Close releases the reader's temporary files.
func (r *Reader) Close() error {
	if r.xlsx != nil {
		return r.xlsx.close()
	}
	return nil
}

// blank reports whether a row has no content.
func blank(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// columnName is the spreadsheet name of column i (0: A, 26: AA).
func columnName(i int) string {
	var b []byte
	for i++; i > 0; i = (i - 1) / 26 {
		b = append([]byte{byte('A' + (i-1)%26)}, b...)
	}
	return string(b)
}

// NumericCell turns a number written in scientific or decimal notation
// ("1.3800138000E+10", "13800138000.0") back into its digits; anything
// else (a fraction, a negative or huge number, text) is returned unchanged.
// ok is false for scientific notation that lost digits: "1.38001E+10"
// (Excel's display of 13800138000, or of 13800112345, in a narrow column)
// stands for a number nobody wrote, so the caller must refuse the row, not
// guess. A mantissa with at least as many decimals as the exponent
// ("1.3800138000E+10") has every digit and is read.
func NumericCell(v string) (digits string, ok bool) {
	if !strings.ContainsAny(v, "eE.") {
		return v, true
	}
	t := strings.TrimSpace(v)
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f >= 1e15 || f != math.Trunc(f) {
		return v, true
	}
	if mant, exp, sci := strings.Cut(strings.ToUpper(t), "E"); sci {
		e, err := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		_, frac, _ := strings.Cut(mant, ".")
		if err != nil || len(frac) < e {
			return v, false
		}
	}
	return strconv.FormatFloat(f, 'f', 0, 64), true
}

// countingReader fails once more than max bytes were read, and keeps the
// first error other than io.EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
	err error
}

var errTooBig = errors.New("too many bytes")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if rem := c.max - c.n; rem < int64(len(p)) { // read one byte past max to tell
		p = p[:rem+1]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		err = errTooBig
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

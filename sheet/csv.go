package sheet

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

const (
	sniffSize = 64 << 10 // bytes that choose the encoding and the separator
	csvBuffer = 64 << 10 // the CSV parser's read-ahead
)

type csvReader struct {
	cr  *csv.Reader
	src *countingReader // the file's bytes
	row *rowWindow      // the decoded bytes of the record being read
	lim Limits
	at  int // the line where the next record starts, at the latest
}

// openCSV picks the encoding and the separator of the file behind br.
func openCSV(br *bufio.Reader, src *countingReader, lim Limits) (*csvReader, error) {
	head, err := br.Peek(sniffSize)
	truncated := err == nil
	if err != nil && err != io.EOF {
		return nil, csvErr(0, lim, err)
	}
	var text io.Reader = br
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		text = transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder())
	case bytes.HasPrefix(head, []byte("\xEF\xBB\xBF")):
		_, _ = br.Discard(3)
	case !utf8Prefix(head, truncated):
		text = transform.NewReader(br, simplifiedchinese.GB18030.NewDecoder())
	}
	row := &rowWindow{r: text, max: int64(lim.MaxRow) + csvBuffer}
	dr := bufio.NewReaderSize(row, csvBuffer)
	line, err := dr.Peek(csvBuffer)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, csvErr(1, lim, err)
	}
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	comma := ','
	if bytes.IndexByte(line, '\t') >= 0 && bytes.IndexByte(line, ',') < 0 {
		comma = '\t'
	}
	cr := csv.NewReader(dr) // dr is a large enough *bufio.Reader: used as it is
	cr.Comma = comma
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	return &csvReader{cr: cr, src: src, row: row, lim: lim, at: 1}, nil
}

func (r *csvReader) next() (Row, error) {
	for {
		r.row.reset()
		rec, err := r.cr.Read()
		if err == io.EOF {
			return Row{}, io.EOF
		}
		if err != nil {
			return Row{}, csvErr(r.at, r.lim, err)
		}
		line, _ := r.cr.FieldPos(0)
		end, _ := r.cr.FieldPos(len(rec) - 1)
		r.at = end + 1
		if len(rec) > MaxColumns { // blank or not: the parser holds them all
			return Row{}, rowErr(line, ErrLimit, "CSV: more than %d cells in a row", MaxColumns)
		}
		if blank(rec) {
			continue
		}
		return Row{N: line, Cells: rec}, nil
	}
}

// csvErr turns an error of the CSV parser or below into an *Error.
func csvErr(row int, lim Limits, err error) error {
	var pe *csv.ParseError
	switch {
	case errors.Is(err, errTooBig):
		return rowErr(row, ErrLimit, "the file is larger than %d bytes", lim.MaxBytes)
	case errors.Is(err, errRowTooBig):
		return rowErr(row, ErrLimit, "the row holds more than %d bytes", lim.MaxRow)
	case errors.As(err, &pe):
		return &Error{Row: pe.StartLine, Err: fmt.Errorf("%w: CSV: %w", ErrMalformed, pe.Err)}
	}
	return &Error{Row: row, Err: err}
}

// utf8Prefix reports whether head is UTF-8; if more follows (truncated), a
// rune cut at the end is allowed.
func utf8Prefix(head []byte, truncated bool) bool {
	if !truncated {
		return utf8.Valid(head)
	}
	for i := 0; i < utf8.UTFMax && i <= len(head); i++ {
		if utf8.Valid(head[:len(head)-i]) {
			return true
		}
	}
	return false
}

// rowWindow fails once more than max bytes were read since the last reset:
// the parser holds one record plus its read-ahead, never more.
type rowWindow struct {
	r   io.Reader
	n   int64
	max int64
}

var errRowTooBig = errors.New("row too long")

func (w *rowWindow) reset() { w.n = 0 }

func (w *rowWindow) Read(p []byte) (int, error) {
	if w.n > w.max {
		return 0, errRowTooBig
	}
	n, err := w.r.Read(p)
	w.n += int64(n)
	return n, err
}

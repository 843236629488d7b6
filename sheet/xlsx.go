package sheet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/xuri/excelize/v2"
)

// xlsxFree: after excelize opened a file larger than this, the memory it
// read the file into is returned to the system at once.
const xlsxFree = 4 << 20

type xlsxReader struct {
	f     *excelize.File
	rows  *excelize.Rows
	shown *excelize.Rows // with Options.Shown: the same rows, formatted
	spool *os.File       // the file as uploaded
	lim   Limits
	n     int // the current row of the sheet
}

// openXLSX spools the file to a temporary file (at most Limits.MaxBytes),
// checks the archive with checkXLSX and opens it with excelize.
func openXLSX(r io.Reader, src *countingReader, lim Limits, o Options) (_ *xlsxReader, err error) {
	defer recoverMalformed(0, &err)
	spool, err := os.CreateTemp(o.TempDir, "qxtd-sheet-*")
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("XLSX: %w", err)}
	}
	x := &xlsxReader{spool: spool, lim: lim}
	defer func() {
		if err != nil {
			_ = x.close()
		}
	}()
	size, err := io.Copy(spool, r)
	if err != nil {
		if errors.Is(err, errTooBig) {
			return nil, rowErr(0, ErrLimit, "the file is larger than %d bytes", lim.MaxBytes)
		}
		if src.err != nil { // reading failed, not parsing
			return nil, &Error{Err: src.err}
		}
		return nil, &Error{Err: fmt.Errorf("XLSX: %w", err)}
	}
	if err := checkXLSX(spool, size, lim); err != nil {
		return nil, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, &Error{Err: fmt.Errorf("XLSX: %w", err)}
	}
	opts := excelize.Options{UnzipSizeLimit: lim.MaxUnpacked, UnzipXMLSizeLimit: min(xlsxInMemory, lim.MaxUnpacked), TmpDir: o.TempDir}
	x.f, err = excelize.OpenReader(spool, opts)
	if size > xlsxFree {
		// excelize read the whole file (twice its size, in growing
		// chunks and the final copy): hand that back to the system now
		// rather than let the heap grow to twice it before collecting.
		debug.FreeOSMemory()
	}
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	sheets := x.f.GetSheetList()
	if len(sheets) == 0 {
		return nil, rowErr(0, ErrMalformed, "XLSX: no sheet")
	}
	if x.rows, err = x.f.Rows(sheets[0]); err != nil {
		return nil, &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	if o.Shown {
		if x.shown, err = x.f.Rows(sheets[0]); err != nil {
			return nil, &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
		}
	}
	return x, nil
}

var rawCells = excelize.Options{RawCellValue: true}

func (x *xlsxReader) next() (_ Row, err error) {
	defer recoverMalformed(x.n, &err)
	for x.rows.Next() {
		x.n++
		cells, err := x.rows.Columns(rawCells)
		if err != nil {
			return Row{}, &Error{Row: x.n, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
		}
		var shown []string
		if x.shown != nil {
			if !x.shown.Next() {
				return Row{}, &Error{Row: x.n, Err: fmt.Errorf("%w: XLSX: the row cannot be read twice", ErrMalformed)}
			}
			if shown, err = x.shown.Columns(); err != nil {
				return Row{}, &Error{Row: x.n, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
			}
			if shown == nil {
				shown = []string{}
			}
		}
		// The guard counted the cell elements; a value's reference (r="XFD1")
		// pads the row up to its column.
		if len(cells) > MaxColumns || len(shown) > MaxColumns {
			return Row{}, rowErr(x.n, ErrLimit, "XLSX: a cell past column %s (at most %d columns)", columnName(MaxColumns-1), MaxColumns)
		}
		if blank(cells) {
			continue
		}
		return Row{N: x.n, Cells: cells, Shown: shown}, nil
	}
	if err := x.rows.Error(); err != nil {
		return Row{}, &Error{Row: x.n + 1, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	return Row{}, io.EOF
}

func (x *xlsxReader) close() error {
	var errs []error
	for _, rows := range []*excelize.Rows{x.rows, x.shown} {
		if rows != nil {
			errs = append(errs, rows.Close())
		}
	}
	if x.f != nil {
		errs = append(errs, x.f.Close())
	}
	if x.spool != nil {
		errs = append(errs, x.spool.Close(), os.Remove(x.spool.Name()))
		x.spool = nil
	}
	return errors.Join(errs...)
}

// recoverMalformed turns a panic of the XLSX parser on a hostile file into
// an error naming the row.
func recoverMalformed(row int, err *error) {
	if p := recover(); p != nil {
		*err = &Error{Row: row, Err: fmt.Errorf("%w: XLSX: %v", ErrMalformed, p)}
	}
}
